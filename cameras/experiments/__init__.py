"""Experiments behind the book's chapters, runnable headless.

Each module ``cameras.experiments.<name>`` holds a ``PROFILES`` dict (``ci``, ``offline``,
``paper``) and a ``run(profile, results=None, device="auto", **overrides)`` function that
writes its rows as it goes (resumable, see :mod:`cameras.runs`) and returns them as a
DataFrame. Notebooks call ``run`` and draw tables and figures from what it returns; the
same computation runs without Jupyter, e.g. on a GPU machine::

    python -m cameras.experiments table2 --profile offline --device cuda
"""

from __future__ import annotations

import importlib
import pkgutil

__all__ = ["available", "load"]


def available() -> list[str]:
    """Names of the experiment modules."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def load(name: str):
    """Import ``cameras.experiments.<name>`` with a clear error for unknown names."""
    if name not in available():
        raise ValueError(f"unknown experiment {name!r}; available: {', '.join(available())}")
    return importlib.import_module(f"{__name__}.{name}")

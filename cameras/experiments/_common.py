"""Small helpers shared by the experiment modules (results folders, image selection)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["loader_workers", "results_subdir", "spread_indices"]


def results_subdir(name: str, ci: bool, results: str | os.PathLike | None = None) -> Path:
    """``<results>/<name>``, or ``<results>/_ci/<name>`` for the ci profile (so a test run
    never touches the stored offline results). ``results``: see :func:`cameras.runs.results_dir`."""
    from ..runs import results_dir

    base = results_dir(results)
    return (base / "_ci" / name) if ci else (base / name)


def spread_indices(n_total: int, n: int | None) -> list[int]:
    """``n`` indices spread evenly over ``range(n_total)`` (all of them for ``None``)."""
    if n is None or n >= n_total:
        return list(range(n_total))
    return sorted({int(round(v)) for v in np.linspace(0, n_total - 1, n)})


def loader_workers(w: int | str) -> int:
    """Data-loader worker processes: ``"auto"`` is 0 on a machine with 2 CPUs or fewer (the
    workers would compete with the model for the cores), else up to 8; an int is used as is."""
    if w == "auto":
        cpus = os.cpu_count() or 1
        return 0 if cpus <= 2 else min(8, cpus - 1)
    return int(w)

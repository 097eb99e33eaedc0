"""Small helpers shared by the experiment modules (results folders, image selection)."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["check_skip", "loader_workers", "methods_for", "profile_copy", "results_subdir", "spread_indices"]


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


def profile_copy(profiles: Mapping[str, Mapping[str, Any]], profile: str | Mapping[str, Any], *,
                 base: str | None = None, record_name: bool = True) -> dict[str, Any]:
    """A deep copy of the settings of ``profile``: a name in ``profiles`` or a settings dict.

    A dict starts from ``profiles[base]`` (when ``base`` is given) and overrides it. With
    ``record_name`` the result's ``"profile"`` is the name (``"custom"`` for a dict without one).
    Raises ``ValueError`` for an unknown name and ``TypeError`` for anything else.
    """
    if isinstance(profile, str):
        if profile not in profiles:
            raise ValueError(f"unknown profile {profile!r}; choose from {', '.join(profiles)}")
        s = copy.deepcopy(dict(profiles[profile]))
        if record_name:
            s["profile"] = profile
    elif isinstance(profile, Mapping):
        s = copy.deepcopy(dict(profiles[base])) if base is not None else {}
        s.update(copy.deepcopy(dict(profile)))
        if record_name:
            s.setdefault("profile", "custom")
    else:
        raise TypeError(f"profile must be a name or a settings dict, got {type(profile).__name__}")
    return s


def check_skip(s: dict[str, Any]) -> None:
    """Validate and normalise ``s["skip"]``, ``{model: [methods]}``: the (model, method) pairs a
    profile does not compute (names resolved through the model and method registries)."""
    from ..methods import info
    from ..models import get_spec

    skip = s.get("skip") or {}
    if not isinstance(skip, Mapping):
        raise TypeError(f"skip must be a dict {{model: [methods]}}, got {skip!r}")
    s["skip"] = {get_spec(m).name: [info(x).name for x in ([v] if isinstance(v, str) else v)]
                 for m, v in skip.items()}


def methods_for(s: Mapping[str, Any], model: str) -> list[str]:
    """The methods computed for ``model``: ``s["methods"]`` less the profile's ``skip``."""
    skip = set((s.get("skip") or {}).get(model, ()))
    return [m for m in s["methods"] if m not in skip]

"""Small helpers shared by the experiment modules."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["methods_for", "profile_copy", "results_subdir"]


def results_subdir(name: str, ci: bool, results: str | os.PathLike | None = None) -> Path:
    """``<results>/<name>``, or ``<results>/_ci/<name>`` for the ci profile (so a test run
    never touches the stored offline results). ``results``: see :func:`cameras.runs.results_dir`."""
    from ..runs import results_dir

    base = results_dir(results)
    return (base / "_ci" / name) if ci else (base / name)


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


def methods_for(s: Mapping[str, Any], model: str) -> list[str]:
    """The methods computed for ``model``: ``s["methods"]`` less the profile's ``skip``."""
    skip = set((s.get("skip") or {}).get(model, ()))
    return [m for m in s["methods"] if m not in skip]

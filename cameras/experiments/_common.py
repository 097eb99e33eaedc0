"""Small helpers shared by the experiment modules."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["methods_for"]


def methods_for(s: Mapping[str, Any], model: str) -> list[str]:
    """The methods computed for ``model``: ``s["methods"]`` less the profile's ``skip``."""
    skip = set((s.get("skip") or {}).get(model, ()))
    return [m for m in s["methods"] if m not in skip]

"""Uncertainty of the numbers the chapters report: proportions and means over images."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["wilson", "bootstrap_ci"]


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``k / n`` (95 % for ``z = 1.96``); it contains
    ``k / n`` also at 0 and 1. ``(nan, nan)`` for ``n = 0``."""
    if n <= 0:
        return math.nan, math.nan
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def bootstrap_ci(values: Sequence[float] | np.ndarray, stat: Callable[[np.ndarray], float] = np.mean,
                 n_boot: int = 2000, level: float = 0.95, seed: int = 0,
                 paired: np.ndarray | None = None) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat`` over the rows of ``values`` (resampled with
    replacement, seeded). ``values`` may be ``(n,)`` or ``(n, k)`` (rows resampled together,
    e.g. pairs for a correlation). ``(nan, nan)`` for fewer than 2 rows."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(v), size=(n_boot, len(v)))
    boots = np.array([stat(v[i]) for i in idx], dtype=float)
    boots = boots[np.isfinite(boots)]
    if not len(boots):
        return math.nan, math.nan
    a = (1 - level) / 2
    return float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a))

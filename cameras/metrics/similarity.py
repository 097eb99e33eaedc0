r"""Similarity and concentration of saliency maps: one implementation of each.

Between two maps (for the sanity checks, class sensitivity and the analyses):

* :func:`spearman` -- Spearman rank correlation (average ranks for ties), batched in torch;
  :func:`spearman_abs` of the absolute values (Adebayo et al., NeurIPS 2018).
* :func:`ssim` -- structural similarity (scikit-image), :func:`hog_similarity` -- Pearson
  correlation of HOG descriptors (Adebayo et al.), one pair at a time.
* :func:`iou_top` -- IoU of the top-``fraction`` pixel sets.

Of one map (how concentrated it is):

* :func:`top_mass` -- share of the map's mass in its top-``fraction`` pixels;
* :func:`entropy` -- Shannon entropy over pixels / log(#pixels) (1 = flat);
* :func:`high_frequency_share` -- share of spectral power above a grid's Nyquist frequency.

Correlations follow one rule for constant inputs (never NaN): two constant maps correlate 1
if equal, else 0; one constant map correlates 0 with anything. The batched functions take
``(N, H, W)`` (or numpy) and return ``(N,)`` float64 tensors; given two ``(H, W)`` maps they
return a Python float.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ._info import MetricInfo, describe

__all__ = [
    "METRICS",
    "average_ranks",
    "pearson",
    "spearman",
    "spearman_abs",
    "ssim",
    "hog_similarity",
    "iou_top",
    "top_mass",
    "entropy",
    "high_frequency_share",
    "map_similarities",
    "similarity_values",
]

#: similarity metrics of the randomisation check (Adebayo et al. 2018)
METRICS = ("spearman", "spearman_abs", "ssim", "hog")

for _name, _label in (("spearman", "Spearman"), ("spearman_abs", "Spearman of |map|"),
                      ("ssim", "SSIM"), ("hog", "HOG similarity")):
    describe(MetricInfo(_name, _label, None, (-1, 1), reference="Adebayo et al., NeurIPS 2018"))


def _batch(a: Any, name: str) -> tuple[Tensor, bool]:
    """``(N, H, W)`` float64 tensor of finite maps, and whether a single map was given."""
    t = torch.as_tensor(a.detach().cpu() if isinstance(a, Tensor) else np.asarray(a))
    single = t.dim() == 2
    t = t[None] if single else t
    if t.dim() != 3:
        raise ValueError(f"{name} must be a map (H, W) or maps (N, H, W), got shape {tuple(t.shape)}")
    t = t.to(torch.float64)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or inf")
    return t, single


def _pair(a: Any, b: Any) -> tuple[Tensor, Tensor, bool]:
    ta, single = _batch(a, "map a")
    tb, _ = _batch(b, "map b")
    if ta.shape != tb.shape:
        raise ValueError(f"maps must have the same shape, got {tuple(ta.shape)} and {tuple(tb.shape)}")
    return ta, tb, single


def _out(v: Tensor, single: bool) -> Tensor | float:
    return float(v[0]) if single else v


def average_ranks(x: Tensor) -> Tensor:
    """Ranks ``1..P`` of each row of ``(N, P)``, ties given their average rank (float64)."""
    x = x.reshape(x.shape[0], -1)
    N, P = x.shape
    s, idx = x.sort(dim=1)
    new = torch.ones_like(s, dtype=torch.bool)
    new[:, 1:] = s[:, 1:] != s[:, :-1]
    gid = (new.cumsum(1) - 1) + (torch.arange(N, device=x.device) * P)[:, None]
    pos = torch.arange(P, device=x.device, dtype=torch.float64).expand(N, P).reshape(-1)
    g = gid.reshape(-1)
    first = torch.full((N * P,), float("inf"), dtype=torch.float64, device=x.device)
    last = torch.full((N * P,), float("-inf"), dtype=torch.float64, device=x.device)
    first = first.scatter_reduce(0, g, pos, "amin")
    last = last.scatter_reduce(0, g, pos, "amax")
    r_sorted = ((first[g] + last[g]) / 2 + 1).view(N, P)
    return torch.empty_like(r_sorted).scatter_(1, idx, r_sorted)


def pearson(u: Tensor, v: Tensor, tol: float = 1e-12) -> Tensor:
    """Row-wise Pearson correlation of ``(N, P)`` with the rule for constant rows (module doc)."""
    u = u.reshape(u.shape[0], -1).double()
    v = v.reshape(v.shape[0], -1).double()
    du, dv = u - u.mean(1, keepdim=True), v - v.mean(1, keepdim=True)
    su, sv = du.pow(2).mean(1).sqrt(), dv.pow(2).mean(1).sqrt()
    r = ((du * dv).mean(1) / (su * sv).clamp_min(1e-300)).clamp(-1, 1)
    const_u, const_v = su <= tol, sv <= tol
    equal = (u - v).abs().amax(1) <= 1e-8 + 1e-5 * v.abs().amax(1)
    r = torch.where(const_u ^ const_v, torch.zeros_like(r), r)
    return torch.where(const_u & const_v, equal.double(), r)


def spearman(a: Any, b: Any) -> Tensor | float:
    """Spearman rank correlation of paired maps (ties get average ranks)."""
    ta, tb, single = _pair(a, b)
    return _out(pearson(average_ranks(ta), average_ranks(tb)), single)


def spearman_abs(a: Any, b: Any) -> Tensor | float:
    """Spearman rank correlation of ``|a|`` and ``|b|`` (equals :func:`spearman` for maps in [0, 1])."""
    ta, tb, single = _pair(a, b)
    return _out(pearson(average_ranks(ta.abs()), average_ranks(tb.abs())), single)


def _minmax(a: np.ndarray) -> np.ndarray:
    lo, hi = a.min(), a.max()
    return (a - lo) / (hi - lo) if hi - lo > 1e-12 else np.zeros_like(a)


def _numpy_pair(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    ta, tb, single = _pair(a, b)
    if not single:
        raise ValueError("ssim / hog_similarity take one pair of (H, W) maps")
    return ta[0].numpy(), tb[0].numpy()


def ssim(a: Any, b: Any) -> float:
    """Structural similarity (``skimage.metrics.structural_similarity``, ``data_range=1``).

    Each map is min-max normalised to [0, 1] first (a constant map becomes zeros); the window
    is 7 px, or the largest odd size that fits a smaller map.
    """
    from skimage.metrics import structural_similarity

    a, b = _numpy_pair(a, b)
    a, b = _minmax(a), _minmax(b)
    side = min(a.shape)
    if side < 3:
        raise ValueError(f"SSIM needs maps of at least 3x3 pixels, got {a.shape}")
    win = min(7, side if side % 2 else side - 1)
    if np.array_equal(a, b):
        return 1.0
    return float(structural_similarity(a, b, data_range=1.0, win_size=win))


def hog_similarity(a: Any, b: Any, cell: int | None = None) -> float:
    """Pearson correlation of the HOG descriptors (``skimage.feature.hog``) of two maps.

    ``cell`` is the HOG cell side in pixels (default ``max(2, min(H, W) // 16)``: 14 px at
    224, about 16 x 16 cells), 9 orientations, 2 x 2 cells per block.
    """
    from skimage.feature import hog

    a, b = _numpy_pair(a, b)
    c = cell or max(2, min(a.shape) // 16)
    if min(a.shape) < 2 * c:
        raise ValueError(f"HOG needs maps of at least 2 cells ({2 * c} px) per side, got {a.shape}")
    kw = dict(orientations=9, pixels_per_cell=(c, c), cells_per_block=(2, 2), feature_vector=True)
    ha = torch.from_numpy(hog(_minmax(a), **kw))[None]
    hb = torch.from_numpy(hog(_minmax(b), **kw))[None]
    return float(pearson(ha, hb)[0])


_PAIR_FNS: dict[str, Callable[[Any, Any], float]] = {
    "spearman": spearman, "spearman_abs": spearman_abs, "ssim": ssim, "hog": hog_similarity,
}


def map_similarities(a: Any, b: Any, metrics: Sequence[str] = METRICS) -> dict[str, float]:
    """The requested similarity metrics of one pair of maps, as ``{name: value}``."""
    bad = [m for m in metrics if m not in _PAIR_FNS]
    if bad:
        raise ValueError(f"unknown metric(s) {bad}; choose from {list(_PAIR_FNS)}")
    return {m: float(_PAIR_FNS[m](a, b)) for m in metrics}


def similarity_values(a: Any, b: Any, metrics: Sequence[str]) -> list[float]:
    """:func:`map_similarities` as a list in the order of ``metrics`` (picklable, for worker
    processes)."""
    return list(map_similarities(a, b, metrics).values())


def _top_sets(m: Tensor, fraction: float) -> Tensor:
    flat = m.reshape(m.shape[0], -1)
    n = max(1, math.ceil(fraction * flat.shape[1]))
    idx = flat.topk(n, dim=1).indices
    sel = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, idx, True)
    return sel & (flat > 0)


def iou_top(a: Any, b: Any, fraction: float) -> Tensor | float:
    """IoU of the top-``fraction`` pixel sets of paired maps (zero pixels never count).

    NaN where both sets are empty (two all-zero maps).
    """
    ta, tb, single = _pair(a, b)
    sa, sb = _top_sets(ta, fraction), _top_sets(tb, fraction)
    inter = (sa & sb).sum(1).double()
    union = (sa | sb).sum(1).double()
    out = torch.where(union > 0, inter / union.clamp_min(1), torch.full_like(inter, math.nan))
    return _out(out, single)


def top_mass(m: Any, fraction: float = 0.05, empty: float = math.nan) -> Tensor | float:
    """Share of each map's mass in its top-``fraction`` pixels (1 = all of it; ``fraction`` =
    a flat map). An all-zero map gives ``empty``. Maps must be non-negative."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    t, single = _batch(m, "map")
    if bool((t < 0).any()):
        raise ValueError("saliency maps must be non-negative")
    flat = t.reshape(t.shape[0], -1)
    n = max(1, math.ceil(fraction * flat.shape[1]))
    total = flat.sum(1)
    top = flat.topk(n, dim=1).values.sum(1)
    return _out(torch.where(total > 0, top / total.clamp_min(1e-300),
                            torch.full_like(total, empty)), single)


def entropy(m: Any, empty: float = math.nan) -> Tensor | float:
    """Entropy of each map as a distribution over pixels / log(#pixels): 1 = flat, 0 = one
    pixel. An all-zero map gives ``empty``. Maps must be non-negative."""
    t, single = _batch(m, "map")
    if bool((t < 0).any()):
        raise ValueError("saliency maps must be non-negative")
    flat = t.reshape(t.shape[0], -1)
    if flat.shape[1] < 2:
        return _out(torch.full((flat.shape[0],), float(empty), dtype=torch.float64), single)
    total = flat.sum(1, keepdim=True)
    p = flat / total.clamp_min(1e-300)
    h = -(p * torch.log(p.clamp_min(1e-300))).sum(1) / math.log(flat.shape[1])
    return _out(torch.where(total[:, 0] > 0, h, torch.full_like(h, empty)), single)


def high_frequency_share(m: Any, grid: tuple[int, int] = (7, 7)) -> Tensor | float:
    """Share of each map's spectral power beyond the Nyquist frequency of a ``grid``.

    The map's mean is removed; power at spatial frequencies (cycles per image)
    :math:`(f_y, f_x)` with :math:`(f_y / (h/2))^2 + (f_x / (w/2))^2 > 1` counts as high. A map
    bilinearly upsampled from an ``h x w`` grid has little power there. Constant map: 0.
    """
    t, single = _batch(m, "map")
    t = t - t.mean(dim=(1, 2), keepdim=True)
    power = torch.fft.fft2(t).abs() ** 2
    total = power.sum(dim=(1, 2))
    H, W = t.shape[-2:]
    fy = torch.fft.fftfreq(H, dtype=torch.float64) * H
    fx = torch.fft.fftfreq(W, dtype=torch.float64) * W
    r = (fy[:, None] / (grid[0] / 2)) ** 2 + (fx[None, :] / (grid[1] / 2)) ** 2
    high = (power * (r > 1)).sum(dim=(1, 2))
    return _out(torch.where(total > 1e-20, high / total.clamp_min(1e-300), torch.zeros_like(total)), single)

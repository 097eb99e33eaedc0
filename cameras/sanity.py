"""Sanity checks for saliency maps: model randomisation, adversarial check, class sensitivity.

A saliency map is only an explanation of a *model* if it depends on what the model has
learned. The paper argues (Fig. 1, Sec. 6.1) that CAMERAS keeps this property while being
high-resolution. Three checks are implemented here; all take methods by registry name
(:func:`cameras.methods.saliency`) or as callables ``fn(model, images, targets) -> (B, H, W)``
and return tidy pandas DataFrames.

1. :func:`cascading_randomization` -- Adebayo et al., *Sanity checks for saliency maps*,
   NeurIPS 2018 (the paper's Fig. 1, bottom). Re-initialise the network's blocks from the
   logits downwards, one block at a time, recompute the maps on the randomised copy and
   measure their similarity to the original maps (Spearman rank correlation of the map and
   of its absolute value, SSIM, HOG similarity). A method that *passes* loses similarity once
   the top layers are random; a method whose maps stay similar (Guided backprop, or an edge
   detector that ignores the weights) fails.
2. :func:`adversarial_sanity` -- the paper's Sec. 6.1 idea that the pixels a map ranks as
   important should be where an adversarial perturbation hurts most. The paper's exact
   protocol is in a supplement we do not have; **the protocol below is ours**, derived from
   the paper's description (see the function's docstring).
3. :func:`class_sensitivity` -- Rebuffi et al., *There and back again: revisiting
   backpropagation saliency methods*, CVPR 2020: a map that explains a class should change
   when another class is explained. We compare each image's map for its top-1 class with its
   map for its least-likely class.

Everything is seeded; loops over depths / images show tqdm progress bars.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "METRICS",
    "spearman",
    "spearman_abs",
    "ssim",
    "hog_similarity",
    "map_similarities",
    "cascade_blocks",
    "randomize_block",
    "cascading_randomization",
    "adversarial_sanity",
    "summarize_adversarial",
    "class_sensitivity",
]

MapFn = Callable[[nn.Module, Tensor, Tensor], Tensor]

#: similarity metrics of the randomisation check (Adebayo et al. 2018)
METRICS = ("spearman", "spearman_abs", "ssim", "hog")


# ======================================================================================
# Similarity metrics (numpy, one pair of 2-d maps at a time)
# ======================================================================================
def _as2d(a: Any, name: str) -> np.ndarray:
    if isinstance(a, Tensor):
        a = a.detach().cpu().numpy()
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-d map (H, W), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf")
    return a


def _pair(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as2d(a, "map a"), _as2d(b, "map b")
    if a.shape != b.shape:
        raise ValueError(f"maps must have the same shape, got {a.shape} and {b.shape}")
    return a, b


def _corr(u: np.ndarray, v: np.ndarray) -> float:
    """Pearson correlation with a defined value for constant inputs (never NaN).

    Both constant: 1.0 if they are equal, else 0.0. One constant: 0.0 (it carries no ranking
    that could agree with the other).
    """
    u = u.ravel()
    v = v.ravel()
    su, sv = u.std(), v.std()
    tol = 1e-12
    if su <= tol and sv <= tol:
        return 1.0 if np.allclose(u, v) else 0.0
    if su <= tol or sv <= tol:
        return 0.0
    r = float(np.mean((u - u.mean()) * (v - v.mean())) / (su * sv))
    return float(np.clip(r, -1.0, 1.0))


def spearman(a: Any, b: Any) -> float:
    """Spearman rank correlation of two maps (ties get average ranks)."""
    from scipy.stats import rankdata

    a, b = _pair(a, b)
    return _corr(rankdata(a.ravel()), rankdata(b.ravel()))


def spearman_abs(a: Any, b: Any) -> float:
    """Spearman rank correlation of ``|a|`` and ``|b|`` (equals :func:`spearman` for maps in [0, 1])."""
    a, b = _pair(a, b)
    return spearman(np.abs(a), np.abs(b))


def _minmax(a: np.ndarray) -> np.ndarray:
    lo, hi = a.min(), a.max()
    return (a - lo) / (hi - lo) if hi - lo > 1e-12 else np.zeros_like(a)


def ssim(a: Any, b: Any) -> float:
    """Structural similarity (``skimage.metrics.structural_similarity``, ``data_range=1``).

    Each map is min-max normalised to [0, 1] first (a constant map becomes zeros); the window
    is 7 px, or the largest odd size that fits a smaller map.
    """
    from skimage.metrics import structural_similarity

    a, b = _pair(a, b)
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

    a, b = _pair(a, b)
    c = cell or max(2, min(a.shape) // 16)
    if min(a.shape) < 2 * c:
        raise ValueError(f"HOG needs maps of at least 2 cells ({2 * c} px) per side, got {a.shape}")
    kw = dict(orientations=9, pixels_per_cell=(c, c), cells_per_block=(2, 2), feature_vector=True)
    return _corr(hog(_minmax(a), **kw), hog(_minmax(b), **kw))


_METRIC_FNS: dict[str, Callable[[Any, Any], float]] = {
    "spearman": spearman,
    "spearman_abs": spearman_abs,
    "ssim": ssim,
    "hog": hog_similarity,
}


def _similarities(a: np.ndarray, b: np.ndarray, metrics: Sequence[str]) -> list[float]:
    """The metrics of one pair of maps, in order (top level: runs in worker processes)."""
    return [_METRIC_FNS[m](a, b) for m in metrics]


def map_similarities(a: Any, b: Any, metrics: Sequence[str] = METRICS) -> dict[str, float]:
    """All requested similarity metrics of two maps, as ``{name: value}``."""
    bad = [m for m in metrics if m not in _METRIC_FNS]
    if bad:
        raise ValueError(f"unknown metric(s) {bad}; choose from {list(_METRIC_FNS)}")
    return {m: _METRIC_FNS[m](a, b) for m in metrics}


# ======================================================================================
# Methods: registry names or callables
# ======================================================================================
def _layer_name(model: nn.Module, layer: Any) -> Any:
    """A layer given as a module is turned into its name (so it resolves on a deep copy)."""
    if isinstance(layer, nn.Module):
        for name, m in model.named_modules():
            if m is layer:
                return name
        raise ValueError("the given layer module is not a sub-module of the model")
    if isinstance(layer, tuple):
        return tuple(_layer_name(model, x) for x in layer)
    return layer


def _resolve_methods(
    methods: str | Sequence[str | tuple[str, MapFn]] | Mapping[str, str | MapFn],
    model: nn.Module,
    layer: Any = None,
    settings: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, MapFn]:
    """``{name: fn(model, images, targets) -> (B, H, W)}`` from names and/or callables.

    A registry name uses :func:`cameras.methods.saliency` with ``settings[name]``; ``layer``
    (if given) goes to the methods that need a layer (others use their default).
    """
    if isinstance(methods, str) or callable(methods):
        methods = [methods]
    if isinstance(methods, Mapping):
        items = list(methods.items())
    else:
        items = []
        for m in methods:
            if isinstance(m, str):
                items.append((m, m))
            elif isinstance(m, tuple) and len(m) == 2:
                items.append(m)
            elif callable(m):
                items.append((getattr(m, "__name__", repr(m)), m))
            else:
                raise TypeError(f"a method must be a registry name or a callable, got {type(m).__name__}")
    if not items:
        raise ValueError("no methods given")
    settings = dict(settings or {})
    layer = _layer_name(model, layer)
    out: dict[str, MapFn] = {}
    for name, spec in items:
        if callable(spec) and not isinstance(spec, str):
            out[str(name)] = spec
            continue
        if not isinstance(spec, str):
            raise TypeError(f"method {name!r} must be a registry name or a callable")
        from .methods import info, saliency

        mspec = info(spec)  # clear error for an unknown name
        kw = dict(settings.get(name, settings.get(mspec.name, {})))
        lay = layer if (layer is not None and mspec.layer == "required") else None

        def fn(model, images, targets, _n=mspec.name, _kw=kw, _lay=lay):
            return saliency(_n, model, images, targets, layer=_lay, **_kw)

        out[str(name)] = fn
    return out


def _device_of(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _check_images(images: Tensor, name: str = "images") -> Tensor:
    if not isinstance(images, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4 or not images.is_floating_point():
        raise ValueError(f"{name} must be a float tensor (B, C, H, W), got {tuple(images.shape)} {images.dtype}")
    return images


def _maps(fn: MapFn, model: nn.Module, x: Tensor, t: Tensor, batch_size: int | None, name: str) -> Tensor:
    """Run one method in chunks; check and return ``(B, H, W)`` float maps on the CPU."""
    bs = batch_size or x.shape[0]
    out = []
    for i in range(0, x.shape[0], bs):
        m = fn(model, x[i : i + bs], t[i : i + bs])
        if not isinstance(m, Tensor):
            raise TypeError(f"method {name!r} returned {type(m).__name__}, expected a tensor")
        m = m.detach()
        if m.dim() == 4 and m.shape[1] == 1:
            m = m[:, 0]
        if m.dim() != 3 or m.shape[0] != min(bs, x.shape[0] - i):
            raise ValueError(f"method {name!r} returned maps of shape {tuple(m.shape)}, expected (B, H, W)")
        out.append(m.float().cpu())
    maps = torch.cat(out)
    if not torch.isfinite(maps).all():
        raise ValueError(f"method {name!r} returned NaN or inf maps")
    return maps


def _ids(image_ids: Sequence[Any] | None, n: int) -> list[Any]:
    ids = list(range(n)) if image_ids is None else list(image_ids)
    if len(ids) != n:
        raise ValueError(f"image_ids has {len(ids)} entries for {n} images")
    return ids


# ======================================================================================
# 1. Cascading model-parameter randomisation (Adebayo et al. 2018)
# ======================================================================================
def _has_params(m: nn.Module) -> bool:
    return any(True for _ in m.parameters())


def cascade_blocks(model: nn.Module) -> list[str]:
    """Names of the parameterised blocks of ``model`` in top-down order (logits first).

    Rule: take the top-level children that have parameters, in registration order; a child
    that is a container (``Sequential``, ``ModuleList``, ``ModuleDict``) with at least two
    parameterised children is split into those children (one level). The list is reversed.
    A model whose only parameterised child is a wrapper (e.g. a normalisation + network
    ``Sequential``) is descended into. Parameters registered on the model itself come last
    (``"(own)"``).

    torchvision ResNet-50: ``fc, layer4.2, layer4.1, layer4.0, layer3.5, ..., layer1.0, bn1,
    conv1``; VGG: ``classifier.6, classifier.3, classifier.0, features.28, ..., features.0``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    prefix, root = "", model
    while True:
        kids = [(n, c) for n, c in root.named_children() if _has_params(c)]
        own = any(True for _ in root.parameters(recurse=False))
        if len(kids) == 1 and not own and any(True for _ in kids[0][1].children()):
            prefix = f"{prefix}{kids[0][0]}."
            root = kids[0][1]
            continue
        break
    blocks: list[str] = []
    for n, c in kids:
        if isinstance(c, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
            sub = [f"{prefix}{n}.{sn}" for sn, sc in c.named_children() if _has_params(sc)]
            if len(sub) >= 2:
                blocks.extend(sub)
                continue
        blocks.append(f"{prefix}{n}")
    blocks.reverse()
    if any(True for _ in root.parameters(recurse=False)):
        blocks.append(f"{prefix}(own)" if prefix else "(own)")
    if not blocks:
        raise ValueError(f"{type(model).__name__} has no parameters to randomise")
    return blocks


def _get_block(model: nn.Module, name: str) -> tuple[nn.Module, bool]:
    """The module called ``name`` and whether only its own (non-recursive) parameters count."""
    if name.endswith("(own)"):
        parent = name[: -len("(own)")].rstrip(".")
        return (model.get_submodule(parent) if parent else model), True
    try:
        return model.get_submodule(name), False
    except AttributeError as e:
        raise ValueError(f"unknown block {name!r}; see cascade_blocks(model)") from e


def randomize_block(block: nn.Module, seed: int, own_only: bool = False) -> None:
    """Re-initialise a block's parameters in place, reproducibly.

    Each sub-module with a ``reset_parameters()`` (conv, linear, batch norm -- which also
    resets its running statistics) uses it; parameters not covered that way are drawn from
    ``N(0, 1/fan_in)`` (matrices / kernels) or ``N(0, 0.01^2)`` (vectors). The global RNG is
    left as it was (``torch.random.fork_rng``) and the draw depends only on ``seed``.
    """
    params = list(block.parameters(recurse=not own_only))
    if not params:
        return
    devices = sorted({p.device.index or 0 for p in params if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(int(seed))
        covered: set[int] = set()
        if not own_only:
            for m in block.modules():
                reset = getattr(m, "reset_parameters", None)
                if callable(reset):
                    reset()
                    covered.update(id(p) for p in m.parameters())
        for p in params:
            if id(p) in covered:
                continue
            if p.dim() > 1:
                fan_in = p[0].numel()
                p.normal_(0.0, 1.0 / math.sqrt(max(1, fan_in)))
            else:
                p.normal_(0.0, 0.01)


def cascading_randomization(
    methods: Any,
    model: nn.Module,
    images: Tensor,
    targets: Tensor | Sequence[int] | None = None,
    *,
    layer: Any = None,
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    blocks: Sequence[str] | None = None,
    max_depth: int | None = None,
    metrics: Sequence[str] = METRICS,
    seed: int = 0,
    batch_size: int | None = None,
    image_ids: Sequence[Any] | None = None,
    progress: bool = True,
    depths: Sequence[int] | None = None,
    maps_out: dict | None = None,
    maps_images: int = 1,
    workers: int = 1,
) -> Any:
    """Cascading randomisation check (Adebayo et al. 2018; the paper's Fig. 1, bottom).

    1. Maps ``M_0`` of every method for ``images`` (normalised model inputs) on the original
       model, for ``targets`` (default: the original model's top-1, kept fixed at all depths).
    2. A deep copy of the model (the original is never modified). For depth ``d = 0, 1, ...``
       the first ``d`` blocks of ``blocks`` (default :func:`cascade_blocks`: logits first)
       are re-initialised -- cumulatively, block ``i`` with seed ``seed + i`` -- the maps are
       recomputed on the copy and compared with ``M_0``.
    3. Similarity per method, image and depth: Spearman rank correlation of the maps and of
       their absolute values, SSIM and HOG similarity (:data:`METRICS`).

    Depth 0 (``block="none"``) recomputes on the untouched copy: 1.0 for a deterministic
    method, a check of the pipeline. A method that passes falls towards 0 as soon as the top
    blocks are random; one whose similarity stays high does not explain the model.

    Options for large runs:

    * ``depths``: evaluate (compute maps and similarities) only at these depths, in
      ``0 .. len(blocks)``. The randomisation stays cumulative, block by block, with the
      same seeds, so the values at a depth are those of the full cascade.
    * ``maps_out``: a dict that receives the maps of the first ``maps_images`` images,
      ``maps_out[method][depth] = (n, H, W)`` CPU tensor (for figures such as Fig. 1).
    * ``workers``: compute the similarity metrics (numpy/scipy/scikit-image, CPU) in that
      many worker processes (spawned); the values do not depend on it.

    Returns a DataFrame with columns ``method, image, depth, block, metric, value``.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    images = _check_images(images)
    fns = _resolve_methods(methods, model, layer, settings)
    bad = [m for m in metrics if m not in _METRIC_FNS]
    if bad:
        raise ValueError(f"unknown metric(s) {bad}; choose from {list(_METRIC_FNS)}")
    order = list(blocks) if blocks is not None else cascade_blocks(model)
    if max_depth is not None:
        if not isinstance(max_depth, int) or max_depth < 0:
            raise ValueError(f"max_depth must be a non-negative int, got {max_depth!r}")
        order = order[:max_depth]
    for b in order:
        _get_block(model, b)  # validate names against the original
    if depths is None:
        evaluate = set(range(len(order) + 1))
    else:
        evaluate = set()
        for d in depths:
            if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or not 0 <= int(d) <= len(order):
                raise ValueError(f"depths must be ints in 0..{len(order)} (the number of blocks), got {d!r}")
            evaluate.add(int(d))
        if not evaluate:
            raise ValueError("depths is empty: give at least one depth to evaluate")
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive int, got {workers!r}")
    if maps_out is not None and not isinstance(maps_out, dict):
        raise TypeError(f"maps_out must be a dict (filled with the maps), got {type(maps_out).__name__}")
    ids = _ids(image_ids, images.shape[0])
    device = _device_of(model)
    x = images.to(device)
    was_training = model.training
    model.eval()
    try:
        if targets is None:
            with torch.no_grad():
                t = model(x).argmax(1)
        else:
            from .core import as_targets

            with torch.no_grad():
                nc = model(x[:1]).shape[1]
            t = as_targets(targets, x.shape[0], nc, device=device)
        reference = {n: _maps(f, model, x, t, batch_size, n) for n, f in fns.items()}
    finally:
        model.train(was_training)

    work = copy.deepcopy(model).eval()
    rows: list[dict[str, Any]] = []
    last = max(evaluate)
    pool = None
    if workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn: safe with CUDA (or other threads) in the parent
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))

    try:
        bar = tqdm(range(last + 1), desc="randomisation depth", disable=not progress)
        for depth in bar:
            if depth > 0:
                block, own = _get_block(work, order[depth - 1])
                randomize_block(block, seed + depth - 1, own_only=own)
            if depth not in evaluate:
                continue
            name = "none" if depth == 0 else order[depth - 1]
            for mname, fn in fns.items():
                maps = _maps(fn, work, x, t, batch_size, mname)
                if maps_out is not None:
                    maps_out.setdefault(mname, {})[depth] = maps[:maps_images].clone()
                ref = reference[mname]
                pairs = [(ref[i].numpy(), maps[i].numpy()) for i in range(len(ids))]
                if pool is not None:
                    chunk = max(1, len(pairs) // (4 * workers))
                    values = list(pool.map(_similarities, *zip(*pairs, strict=True),
                                           [tuple(metrics)] * len(pairs), chunksize=chunk))
                else:
                    values = [_similarities(a, b, metrics) for a, b in pairs]
                for i, vals in enumerate(values):
                    for metric, v in zip(metrics, vals, strict=True):
                        rows.append(
                            dict(method=mname, image=ids[i], depth=depth, block=name, metric=metric, value=v)
                        )
    finally:
        if pool is not None:
            pool.shutdown()
    return pd.DataFrame(rows, columns=["method", "image", "depth", "block", "metric", "value"])


# ======================================================================================
# 2. Adversarial sanity check (paper Sec. 6.1; protocol ours)
# ======================================================================================
def _rank_pixels(m: Tensor, gen: torch.Generator) -> Tensor:
    """Pixel indices of a flattened map from most to least salient; ties in random order."""
    flat = m.flatten()
    perm = torch.randperm(flat.numel(), generator=gen)
    order = torch.argsort(flat[perm], descending=True, stable=True)
    return perm[order]


def _mask_from(idx: Tensor, n: int, shape: tuple[int, int]) -> Tensor:
    mask = torch.zeros(shape[0] * shape[1])
    mask[idx[:n]] = 1.0
    return mask.view(shape)


def adversarial_sanity(
    methods: Any,
    model: Any,
    images: Tensor,
    *,
    normalize: Callable[[Tensor], Tensor] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    layer: Any = None,
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    ks: Sequence[float] = (1, 5, 10, 20, 50),
    eps: float = 8 / 255,
    alpha: float = 2 / 255,
    steps: int = 10,
    n_random: int = 5,
    seed: int = 0,
    maps: Mapping[str, Tensor] | None = None,
    batch_size: int | None = None,
    image_ids: Sequence[Any] | None = None,
    progress: bool = True,
) -> Any:
    """Adversarial sanity check: does the perturbation hurt most where the map points?

    **Our protocol** (the paper, Sec. 6.1, describes the idea; its exact protocol is in a
    supplement we do not have):

    1. ``images`` are in pixel space [0, 1]; the model is wrapped with its normalisation
       (as in :mod:`cameras.attacks`). ``y`` = the clean top-1 class.
    2. One *untargeted* l_inf PGD perturbation ``p`` per image (``eps``, ``alpha``, a fixed
       ``steps`` with no early stop, start at the clean image) that lowers the confidence of
       ``y``. Untargeted because the measured quantity is the drop of ``y``'s confidence,
       exactly what this attack maximises; a least-likely targeted attack would lower it only
       as a side effect.
    3. Maps of each method for ``y`` on the clean image (``maps`` may supply them).
    4. For each ``k`` in ``ks`` (percent of the H x W pixel positions) the perturbation is
       applied only on the ``k`` % most salient pixels (``top``), on the ``k`` % least
       salient (``bottom``) and on ``n_random`` seeded random sets of ``k`` % (``random``,
       averaged; the same sets for every method), all channels of a chosen pixel. Ties in a
       map are broken in a seeded random order.
    5. ``drop = p_y(clean) - p_y(clean + mask ⊙ p)`` (softmax probability of ``y``).

    A method whose maps mark what the model uses gives ``top > random > bottom``.

    Returns a DataFrame with columns ``method, image, label, k, selection, clean_conf, conf,
    drop, full_drop, flipped`` (``full_drop``: the drop with the whole perturbation;
    ``flipped``: the top-1 class changed; for ``random`` the mean over draws and the fraction
    of flipped draws).
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from .attacks import as_pixel_model, pgd_attack

    pixel_model, base, norm = as_pixel_model(model, normalize, mean, std)
    if not isinstance(model, nn.Module) and layer is None:
        layer = getattr(model, "layer", None)
    images = _check_images(images)
    if images.min() < -1e-6 or images.max() > 1 + 1e-6:
        raise ValueError("images must be in pixel space [0, 1] (not normalised)")
    ks = [float(k) for k in ks]
    if not ks or any(not (0 < k <= 100) for k in ks):
        raise ValueError(f"ks must be percentages in (0, 100], got {ks}")
    if not isinstance(n_random, int) or n_random < 1:
        raise ValueError(f"n_random must be a positive int, got {n_random!r}")
    fns = _resolve_methods(methods, base, layer, settings) if methods is not None else {}
    given = dict(maps or {})
    if not fns and not given:
        raise ValueError("give methods and/or precomputed maps")
    ids = _ids(image_ids, images.shape[0])
    device = _device_of(base)
    B, _, H, W = images.shape
    bs = batch_size or B
    gen = torch.Generator().manual_seed(int(seed))

    names = list(fns) + [n for n in given if n not in fns]
    rows: list[dict[str, Any]] = []
    chunks = tqdm(range(0, B, bs), desc="adversarial sanity (batches)", disable=not progress)
    for start in chunks:
        x = images[start : start + bs].to(device).clamp(0, 1)
        b = x.shape[0]
        with torch.no_grad():
            logits = pixel_model(x)
        y = logits.argmax(1)
        clean_conf = logits.softmax(1).gather(1, y[:, None]).squeeze(1)
        atk = pgd_attack(base, x, normalize=norm, target="untargeted", labels=y, eps=eps,
                         alpha=alpha, max_iter=steps, stop_early=False)
        delta = atk.delta.to(device)

        def conf_with(mask: Tensor, x=x, delta=delta, y=y) -> tuple[Tensor, Tensor]:
            """Confidence of ``y`` (and whether top-1 left ``y``) with ``mask ⊙ delta`` applied."""
            with torch.no_grad():
                out = pixel_model((x + delta * mask.to(device)[:, None]).clamp(0, 1))
            return out.softmax(1).gather(1, y[:, None]).squeeze(1).cpu(), (out.argmax(1) != y).cpu()

        full_conf, _ = conf_with(torch.ones(b, H, W))
        method_maps: dict[str, Tensor] = {}
        for n in names:
            if n in given:
                m = torch.as_tensor(given[n])[start : start + bs].float()
                if m.dim() != 3 or m.shape[0] != b:
                    raise ValueError(f"maps[{n!r}] must have shape (B, H, W) with B={B}")
            else:
                m = _maps(fns[n], base, norm(x), y, None, n)
            if m.shape[-2:] != (H, W):
                m = F.interpolate(m[:, None], size=(H, W), mode="bilinear", align_corners=False)[:, 0]
            method_maps[n] = m.cpu()
        ranks = {n: [_rank_pixels(mm[i], gen) for i in range(b)] for n, mm in method_maps.items()}
        for k in ks:
            npx = max(1, int(round(k / 100 * H * W)))
            rand_conf = torch.zeros(b)
            rand_flip = torch.zeros(b)
            for _ in range(n_random):
                mask = torch.stack([_mask_from(torch.randperm(H * W, generator=gen), npx, (H, W)) for _ in range(b)])
                c, f = conf_with(mask)
                rand_conf += c / n_random
                rand_flip += f.float() / n_random
            for n in names:
                top = torch.stack([_mask_from(r, npx, (H, W)) for r in ranks[n]])
                bot = torch.stack([_mask_from(r.flip(0), npx, (H, W)) for r in ranks[n]])
                ct, ft = conf_with(top)
                cb, fb = conf_with(bot)
                for i in range(b):
                    base_row = dict(method=n, image=ids[start + i], label=int(y[i]), k=k,
                                    clean_conf=float(clean_conf[i]),
                                    full_drop=float(clean_conf[i] - full_conf[i]))
                    for sel, c, f in (("top", ct[i], ft[i]), ("random", rand_conf[i], rand_flip[i]),
                                      ("bottom", cb[i], fb[i])):
                        rows.append(base_row | dict(selection=sel, conf=float(c),
                                                    drop=float(clean_conf[i]) - float(c), flipped=float(f)))
    cols = ["method", "image", "label", "k", "selection", "clean_conf", "conf", "drop", "full_drop", "flipped"]
    return pd.DataFrame(rows)[cols] if rows else pd.DataFrame(columns=cols)


def summarize_adversarial(df: Any) -> Any:
    """Mean confidence drop per method, ``k`` and selection, plus the share of images with
    ``top > random > bottom`` (``ordered``). One row per method and ``k``."""
    import pandas as pd

    if len(df) == 0:
        return pd.DataFrame()
    piv = df.pivot_table(index=["method", "image", "k"], columns="selection", values="drop").reset_index()
    piv["ordered"] = (piv["top"] > piv["random"]) & (piv["random"] > piv["bottom"])
    out = piv.groupby(["method", "k"]).agg(
        top=("top", "mean"), random=("random", "mean"), bottom=("bottom", "mean"),
        ordered=("ordered", "mean"), n_images=("image", "count"),
    )
    return out.reset_index()


# ======================================================================================
# 3. Class sensitivity (Rebuffi et al. 2020)
# ======================================================================================
def class_sensitivity(
    methods: Any,
    model: nn.Module,
    images: Tensor,
    *,
    layer: Any = None,
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    batch_size: int | None = None,
    image_ids: Sequence[Any] | None = None,
    progress: bool = True,
) -> Any:
    """How much a method's map changes between the top-1 and the least-likely class.

    For each image (normalised model input) and method: the map for the top-1 class and the
    map for the least-likely class (lowest logit) of the original model, both min-max
    normalised, then

    * ``1-spearman``: 1 minus their Spearman rank correlation,
    * ``1-ssim``: 1 minus their SSIM,
    * ``mad``: mean absolute difference of the normalised maps.

    All three are 0 for a class-insensitive method (identical maps) and grow with the
    difference (Rebuffi et al., CVPR 2020, report that several backprop methods are nearly
    class-insensitive). Returns a DataFrame ``method, image, top1, least_likely, metric,
    value``.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    images = _check_images(images)
    fns = _resolve_methods(methods, model, layer, settings)
    ids = _ids(image_ids, images.shape[0])
    device = _device_of(model)
    x = images.to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(x)
        top, ll = logits.argmax(1), logits.argmin(1)
        rows: list[dict[str, Any]] = []
        for n, fn in tqdm(fns.items(), desc="class sensitivity (methods)", disable=not progress):
            m_top = _maps(fn, model, x, top, batch_size, n)
            m_ll = _maps(fn, model, x, ll, batch_size, n)
            for i in range(len(ids)):
                a, b = _minmax(m_top[i].double().numpy()), _minmax(m_ll[i].double().numpy())
                vals = {"1-spearman": 1.0 - spearman(a, b), "1-ssim": 1.0 - ssim(a, b),
                        "mad": float(np.abs(a - b).mean())}
                for metric, v in vals.items():
                    rows.append(dict(method=n, image=ids[i], top1=int(top[i]), least_likely=int(ll[i]),
                                     metric=metric, value=v))
    finally:
        model.train(was_training)
    return pd.DataFrame(rows, columns=["method", "image", "top1", "least_likely", "metric", "value"])

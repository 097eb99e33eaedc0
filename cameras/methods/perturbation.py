r"""Perturbation methods (RISE, extremal perturbation) and the center baseline.

* ``rise`` (Petsiuk, Das & Saenko, BMVC 2018) through TorchRay's ``rise``: ``num_masks``
  random binary ``num_cells x num_cells`` grids (cell on with probability ``p``), upsampled
  and randomly shifted; the map is the score of the target class averaged over the masked
  images, weighted by the masks. TorchRay scores a masked image with the *sigmoid* of the
  logit, right for its multi-label VOC/COCO models; for a single-label ImageNet classifier
  the RISE paper uses the *softmax* probability (a confident model's sigmoid is ~1 masked or
  not, and the map is noise). ``scores="softmax"`` (default) feeds TorchRay
  ``logit(softmax)``; ``scores="sigmoid"`` keeps TorchRay's choice (the paper profile's
  multi-label pointing-game models). TorchRay's ``rise`` scores *all* classes at once, so
  each distinct image is evaluated once and the map of each requested target is picked;
  identical images in a batch (e.g. one image with several targets) share the run.
  The masks come from ``torch.manual_seed(seed)`` (TorchRay saves and restores the CPU random
  state; the CUDA state is saved and restored here), so maps are reproducible and the same
  masks are used for every image. TorchRay draws the masks on the images' device, so CPU and
  CUDA runs with the same seed use *different* mask sets (runs record the device). **Paper / TorchRay setting:** ``num_masks=8000``,
  ``num_cells=7``, ``p=0.5`` -- 8000 forward passes per image (minutes per image on a CPU);
  lower ``num_masks`` for quick runs and record it (:func:`method_settings`).
* ``extremal_perturbation`` (Fong, Patrick & Vedaldi, ICCV 2019) through TorchRay, with the
  pointing-game benchmark's setting: areas ``(0.025, 0.05, 0.1, 0.2)`` (TorchRay used
  ``(0.018, 0.025, 0.05, 0.1)`` for COCO), 800 iterations, blur perturbation, preserve
  variant, ``step=7``, ``sigma=21``, jitter, ``smooth=0.09``; the map is the sum of the masks
  of all areas. One optimisation per (image, target): slow (800 forward/backward passes of
  ``len(areas)`` images). ``max_iter`` and ``areas`` make it cheaper.
* ``center``: TorchRay's center baseline, which points at the image centre ``(W/2, H/2)``.
  Here it is a map that decreases linearly with the distance from that point (pixel-index
  coordinates), independent of model and target; the pointing game uses the point itself.

RISE and extremal perturbation use TorchRay's code in float32 (they build float32 masks):
other image dtypes raise a ``TypeError``.
"""

from __future__ import annotations

import torch
from torch import Tensor

try:  # TorchRay is optional (the `paper` extra); saliency() names the extra when it is missing
    from torchray.attribution import extremal_perturbation as _ep
    from torchray.attribution.rise import rise as _tr_rise
except ImportError:  # placeholders, never called (see cameras.methods._registry._require_backend)
    _ep = _tr_rise = None

from ._registry import Call, MethodSpec, register

__all__ = ["center_map", "center_point"]


def _require_float32(call: Call, method: str) -> None:
    if call.images.dtype != torch.float32:
        raise TypeError(f"{method} runs TorchRay's float32 code; got images of dtype "
                        f"{call.images.dtype} (use float32 images and model)")


def _positive_int(s: dict, key: str) -> None:
    v = s[key]
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{key} must be a positive int, got {v!r}")


# ----------------------------------------------------------------------------------------
# RISE
# ----------------------------------------------------------------------------------------
class _SoftmaxScores(torch.nn.Module):
    """``model`` with logits ``z`` replaced by ``logit(softmax(z))``, so that TorchRay's RISE,
    which scores masked images with ``sigmoid(output)``, scores them with the softmax
    probability. ``logit(p_c) = z_c - log sum_{j != c} exp(z_j)``, computed without
    cancellation (the top class's sum over the others is taken directly)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        z = self.model(x).float()
        m = z.amax(dim=1, keepdim=True)
        e = (z - m).exp()
        rest = (e.sum(dim=1, keepdim=True) - e).clamp_min(torch.finfo(z.dtype).tiny).log() + m
        top = z.argmax(dim=1, keepdim=True)
        others_of_top = z.scatter(1, top, float("-inf")).logsumexp(dim=1, keepdim=True)
        rest = rest.scatter(1, top, others_of_top)
        return z - rest


def _rise(call: Call) -> Tensor:
    _require_float32(call, "rise")
    s = call.settings
    images = call.images.detach()
    model = _SoftmaxScores(call.model) if s["scores"] == "softmax" else call.model
    cuda_state = None
    if images.is_cuda:
        cuda_state = torch.cuda.get_rng_state(images.device)
    try:
        out = torch.empty(images.shape[0], *images.shape[-2:], dtype=images.dtype,
                          device=images.device)
        done: list[tuple[Tensor, Tensor]] = []  # (image, all-class saliency)
        for b in range(images.shape[0]):
            sal = next((v for img, v in done if torch.equal(img, images[b])), None)
            if sal is None:
                with torch.no_grad():
                    sal = _tr_rise(model, images[b : b + 1], seed=s["seed"],
                                   num_masks=s["num_masks"], num_cells=s["num_cells"],
                                   batch_size=s["batch_size"], p=s["p"])[0]  # (C, H, W)
                done.append((images[b], sal))
            out[b] = sal[call.targets[b]]
        return out
    finally:
        if cuda_state is not None:
            torch.cuda.set_rng_state(cuda_state, images.device)


def _check_rise(s: dict) -> None:
    for k in ("num_masks", "num_cells", "batch_size"):
        _positive_int(s, k)
    if not isinstance(s["seed"], int):
        raise TypeError(f"seed must be an int, got {s['seed']!r}")
    if not 0 < float(s["p"]) < 1:
        raise ValueError(f"p must be in (0, 1), got {s['p']!r}")
    if s["scores"] not in ("softmax", "sigmoid"):
        raise ValueError(f"scores must be 'softmax' (single-label models) or 'sigmoid' "
                         f"(multi-label models), got {s['scores']!r}")


register(MethodSpec(
    "rise", _rise,
    defaults={"num_masks": 8000, "num_cells": 7, "p": 0.5, "batch_size": 32, "seed": 0,
              "scores": "softmax"},
    layer="none", batched=False, deterministic=True, source="torchray 1.0.0.2",
    check=_check_rise,
    reference="Petsiuk, Das & Saenko, RISE, BMVC 2018",
    summary="mask-weighted average of the target's score (softmax or sigmoid) over random masks",
    label="RISE", group="paper", layer_role=None, order=8,
))


# ----------------------------------------------------------------------------------------
# extremal perturbation
# ----------------------------------------------------------------------------------------
def _extremal(call: Call) -> Tensor:
    _require_float32(call, "extremal_perturbation")
    s = call.settings
    reward = {"simple": _ep.simple_reward, "contrastive": _ep.contrastive_reward}[s["reward"]]
    maps = []
    for b in range(call.images.shape[0]):
        mask, _ = _ep.extremal_perturbation(
            call.model, call.images[b : b + 1].detach(), int(call.targets[b]),
            areas=[float(a) for a in s["areas"]], perturbation=s["perturbation"],
            max_iter=s["max_iter"], num_levels=s["num_levels"], step=s["step"],
            sigma=s["sigma"], jitter=s["jitter"], variant=s["variant"], reward_func=reward,
            resize=True, smooth=s["smooth"],
        )
        maps.append(mask.sum(dim=0))  # (1, H, W): sum over areas, as TorchRay's benchmark
    return torch.cat(maps).detach()


def _check_extremal(s: dict) -> None:
    for k in ("max_iter", "num_levels", "step"):
        _positive_int(s, k)
    areas = s["areas"]
    if isinstance(areas, (int, float)):
        areas = [areas]
    areas = [float(a) for a in areas]
    if not areas or not all(0 < a < 1 for a in areas):
        raise ValueError(f"areas must be fractions in (0, 1), got {s['areas']!r}")
    s["areas"] = areas
    if s["perturbation"] not in ("blur", "fade"):
        raise ValueError(f"perturbation must be 'blur' or 'fade', got {s['perturbation']!r}")
    if s["variant"] not in ("preserve", "delete", "dual"):
        raise ValueError(f"variant must be 'preserve', 'delete' or 'dual', got {s['variant']!r}")
    if s["reward"] not in ("simple", "contrastive"):
        raise ValueError(f"reward must be 'simple' or 'contrastive', got {s['reward']!r}")


register(MethodSpec(
    "extremal_perturbation", _extremal,
    defaults={"areas": [0.025, 0.05, 0.1, 0.2], "max_iter": 800, "perturbation": "blur",
              "variant": "preserve", "reward": "simple", "num_levels": 8, "step": 7,
              "sigma": 21, "jitter": True, "smooth": 0.09},
    layer="none", batched=False, deterministic=True, source="torchray 1.0.0.2",
    check=_check_extremal,
    reference="Fong, Patrick & Vedaldi, Understanding deep networks via extremal "
              "perturbations and smooth masks, ICCV 2019",
    summary="sum over areas of the optimised smooth masks that preserve the target score",
    label="Extremal perturbation", short="Extremal", group="paper", layer_role=None, order=9,
))


# ----------------------------------------------------------------------------------------
# center baseline
# ----------------------------------------------------------------------------------------
#: The point TorchRay's center baseline points at, ``(u, v) = (W / 2, H / 2)`` in pixel-index
#: coordinates (column, row); the pointing game tests that point itself (a float on odd sides).
def center_point(height: int, width: int) -> tuple[float, float]:
    return width / 2, height / 2


def center_map(height: int, width: int, batch: int = 1, dtype=torch.float32, device=None) -> Tensor:
    """``(batch, H, W)`` map ``1 - d / d_max``, ``d`` the distance of each pixel index to
    :func:`center_point` ``(W / 2, H / 2)``, TorchRay's center baseline.

    On an even side the maximum is the pixel at ``W / 2`` (or ``H / 2``); on an odd side two
    pixels tie, and the pointing game uses the float point itself (:func:`center_point`).
    """
    u0, v0 = center_point(height, width)
    v = torch.arange(height, dtype=dtype, device=device) - v0
    u = torch.arange(width, dtype=dtype, device=device) - u0
    d = (v[:, None] ** 2 + u[None, :] ** 2).sqrt()
    m = 1 - d / d.max().clamp_min(torch.finfo(dtype).tiny)
    return m.expand(batch, height, width).clone()


def _center(call: Call) -> Tensor:
    H, W = call.shape
    return center_map(H, W, call.images.shape[0], call.images.dtype, call.images.device)


register(MethodSpec(
    "center", _center, layer="none", source="TorchRay benchmark baseline", own_top1=True,
    reference="Zhang et al., ECCV 2016 (pointing game); TorchRay's center baseline",
    summary="a map peaked at the image centre (ignores model and target)",
    label="Center baseline", short="Center", group="paper", layer_role=None, order=10,
))

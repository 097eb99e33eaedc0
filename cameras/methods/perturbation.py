r"""Perturbation methods (RISE, extremal perturbation) and the center baseline.

* ``rise`` (Petsiuk, Das & Saenko, BMVC 2018), TorchRay's ``rise`` batched over images
  (:func:`rise_batched`): ``num_masks`` random binary ``num_cells x num_cells`` grids (cell on
  with probability ``p``), upsampled and randomly shifted; the map is the score of the target
  class averaged over the masked images, weighted by the masks. TorchRay scores a masked image
  with the *sigmoid* of the logit, right for its multi-label VOC/COCO models; for a
  single-label ImageNet classifier the RISE paper uses the *softmax* probability (a confident
  model's sigmoid is ~1 masked or not, and the map is noise). ``scores="softmax"`` (default)
  scores ``sigmoid(logit(softmax))``; ``scores="sigmoid"`` keeps TorchRay's choice (the paper
  profile's multi-label pointing-game models). The masks come from ``torch.manual_seed(seed)``
  and are drawn chunk by chunk (``batch_size`` masks) exactly as TorchRay draws them, so every
  image gets the same masks: each chunk is drawn *once per call* and evaluated on up to
  ``RISE_FORWARD_BATCH // batch_size`` distinct images per forward pass (identical images in
  a batch, e.g. one image with several targets, are evaluated once). The CPU and CUDA random
  states are restored afterwards. The maps equal TorchRay's per-image run
  (:func:`rise_torchray`, kept as the reference) to float tolerance. The masks are drawn on
  the images' device, so CPU and CUDA runs with the same seed use *different* mask sets (runs
  record the device). **Paper / TorchRay setting:** ``num_masks=8000``, ``num_cells=7``,
  ``p=0.5`` -- 8000 forward passes per image (minutes per image on a CPU); lower
  ``num_masks`` for quick runs and record it (:func:`method_settings`).
* ``extremal_perturbation`` (Fong, Patrick & Vedaldi, ICCV 2019), TorchRay's optimisation
  batched over images (:func:`extremal_batched`), with the pointing-game benchmark's setting:
  areas ``(0.025, 0.05, 0.1, 0.2)`` (TorchRay used ``(0.018, 0.025, 0.05, 0.1)`` for COCO),
  800 iterations, blur perturbation, preserve variant, ``step=7``, ``sigma=21``, jitter,
  ``smooth=0.09``; the map is the sum of the masks of all areas. The masks of up to
  ``EP_BATCH`` images x ``len(areas)`` areas are optimised together (800 forward/backward
  passes of ``EP_BATCH x len(areas)`` images instead of 800 per image); each image's
  optimisation is independent and equals TorchRay's one-image run (:func:`extremal_torchray`,
  kept as the reference) to float tolerance (TorchRay's jitter is a deterministic flip on
  even iterations; nothing is random). ``max_iter`` and ``areas`` make it cheaper.
  ``EP_BATCH`` and ``RISE_FORWARD_BATCH`` are module constants, not settings: they bound
  memory and do not change the maps, so they are not part of a run's recorded settings.
* ``center``: TorchRay's center baseline, which points at the image centre ``(W/2, H/2)``.
  Here it is a map that decreases linearly with the distance from that point (pixel-index
  coordinates), independent of model and target; the pointing game uses the point itself.

Through :func:`saliency`, RISE and extremal perturbation take float32 images (TorchRay's
masks and kernels are float32; other image dtypes raise a ``TypeError``); the batched
functions also run in float64 (the float32 masks and kernels cast), which the tests use to
compare them with TorchRay's code.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

try:  # TorchRay is optional (the `paper` extra); saliency() names the extra when it is missing
    from torchray.attribution import extremal_perturbation as _ep
    from torchray.attribution.rise import rise as _tr_rise
    from torchray.utils import EPSILON_SINGLE, SQRT_TWO_SINGLE
except ImportError:  # placeholders, never called (see cameras.methods._registry._require_backend)
    _ep = _tr_rise = EPSILON_SINGLE = SQRT_TWO_SINGLE = None

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
        z = self.model(x)
        z = z if z.dtype == torch.float64 else z.float()
        m = z.amax(dim=1, keepdim=True)
        e = (z - m).exp()
        rest = (e.sum(dim=1, keepdim=True) - e).clamp_min(torch.finfo(z.dtype).tiny).log() + m
        top = z.argmax(dim=1, keepdim=True)
        others_of_top = z.scatter(1, top, float("-inf")).logsumexp(dim=1, keepdim=True)
        rest = rest.scatter(1, top, others_of_top)
        return z - rest


def _rise(call: Call) -> Tensor:
    _require_float32(call, "rise")
    return rise_batched(call.model, call.images, call.targets, call.settings)


#: Forward batch budget of :func:`rise_batched`: ``max(1, RISE_FORWARD_BATCH // batch_size)``
#: distinct images times one chunk of ``batch_size`` masks per forward pass (maps do not depend
#: on it; it bounds memory).
RISE_FORWARD_BATCH = 256


def _distinct(images: Tensor) -> tuple[list[int], list[int]]:
    """``(first, which)``: the indices of the distinct images and, per image, the position of
    its first copy in ``first`` (identical images share one RISE run)."""
    first: list[int] = []
    which: list[int] = []
    for b in range(images.shape[0]):
        pos = next((i for i, f in enumerate(first) if torch.equal(images[f], images[b])), None)
        if pos is None:
            pos = len(first)
            first.append(b)
        which.append(pos)
    return first, which


def _rise_masks(n: int, num_cells: int, p: float, shape: tuple[int, int], device) -> Tensor:
    """One chunk of ``n`` RISE masks ``(n, 1, H, W)`` (float32), drawn from the global random
    state exactly as TorchRay's ``rise`` draws them: the grid on ``device``, then the two shifts
    on the CPU; the grid is upsampled bilinearly with a one-cell reflection border."""
    H, W = shape
    cell = (math.ceil(H / num_cells), math.ceil(W / num_cells))  # the shifts' range
    size = (H + cell[0], W + cell[1])  # upsampled size (TorchRay's _upsample_reflect)
    c = (math.ceil(size[0] / num_cells), math.ceil(size[1] / num_cells))
    grid = (torch.rand(n, 1, num_cells, num_cells, device=device) < p).float()
    up = F.interpolate(F.pad(grid, (1, 1, 1, 1), mode="reflect"),
                       (c[0] * (num_cells + 2), c[1] * (num_cells + 2)),
                       mode="bilinear", align_corners=False)
    up = up[:, :, c[0]:c[0] + size[0], c[1]:c[1] + size[1]]
    sy = torch.randint(0, cell[0], (n,), device="cpu").to(device)
    sx = torch.randint(0, cell[1], (n,), device="cpu").to(device)
    rows = (sy[:, None] + torch.arange(H, device=device)).view(n, 1, H, 1)
    up = up.gather(2, rows.expand(n, 1, H, up.shape[3]))
    cols = (sx[:, None] + torch.arange(W, device=device)).view(n, 1, 1, W)
    return up.gather(3, cols.expand(n, 1, H, W))


def rise_batched(model: torch.nn.Module, images: Tensor, targets: Tensor, s: dict) -> Tensor:
    """RISE maps ``(B, H, W)`` of ``targets`` (settings ``s`` as :func:`method_settings`), with
    one set of masks per call shared by all images: each chunk of ``batch_size`` masks is drawn
    once (seeded, as TorchRay draws it) and evaluated on several distinct images per forward
    pass. Equal to TorchRay's per-image ``rise`` (:func:`rise_torchray`) to float tolerance. Any
    float dtype: the masks are drawn as TorchRay draws them (uniforms in the default dtype,
    masks in float32), then cast to the images' dtype."""
    images = images.detach()
    dev, dtype = images.device, images.dtype
    B, _, H, W = images.shape
    scorer = _SoftmaxScores(model) if s["scores"] == "softmax" else model
    first, which = _distinct(images)
    group = max(1, RISE_FORWARD_BATCH // s["batch_size"])
    plan = []  # per group of distinct images: (its images, the pairs' rows, positions, targets)
    for g0 in range(0, len(first), group):
        rows = [b for b in range(B) if g0 <= which[b] < g0 + group]
        plan.append((images[first[g0:g0 + group]], torch.tensor(rows, device=dev),
                     torch.tensor([which[b] - g0 for b in rows], device=dev),
                     targets.to(dev)[rows]))
    acc = torch.zeros(B, H * W, dtype=dtype, device=dev)
    n = s["num_masks"]
    with torch.no_grad(), torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(s["seed"])
        for c0 in range(0, n, s["batch_size"]):
            masks = _rise_masks(min(s["batch_size"], n - c0), s["num_cells"], s["p"], (H, W),
                                dev).to(dtype)
            m = masks.shape[0]
            for imgs, rows, pos, tgt in plan:
                x = (imgs[:, None] * masks[None]).reshape(-1, *imgs.shape[1:])
                out = torch.sigmoid(scorer(x)).view(len(imgs), m, -1)
                acc[rows] = acc[rows] + out[pos, :, tgt] @ masks.view(m, H * W)
    return (acc / n).view(B, H, W)


def rise_torchray(model: torch.nn.Module, images: Tensor, targets: Tensor, s: dict) -> Tensor:
    """The reference: TorchRay's ``rise`` once per distinct image (it scores all classes and
    draws the masks again for every image; the target's map is picked). Float32 as TorchRay
    builds its masks and maps in the default dtype."""
    images = images.detach()
    model = _SoftmaxScores(model) if s["scores"] == "softmax" else model
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
            out[b] = sal[targets[b]]
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
    layer="none", batched=True, deterministic=True, source="torchray 1.0.0.2",
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
    B, n = call.images.shape[0], EP_BATCH
    return torch.cat([extremal_batched(call.model, call.images[i:i + n], call.targets[i:i + n],
                                       call.settings) for i in range(0, B, n)])


#: Images whose masks :func:`extremal_batched` optimises together when called through
#: ``saliency()`` (``EP_BATCH x len(areas)`` perturbed images per forward/backward pass); the
#: maps do not depend on it, it bounds memory.
EP_BATCH = 32


#: Masks generated per call of TorchRay's ``MaskGenerator`` on the CPU: its ``(N, 81, H', W')``
#: intermediates outgrow the caches when N is large (3x slower per mask at N = 32 than at 4, on
#: one core); on CUDA all ``EP_BATCH x len(areas)`` masks are generated in one call.
EP_CPU_MASK_CHUNK = 2


def _generate(gen, pmask: Tensor, chunk: int) -> tuple[Tensor, Tensor]:
    """``gen.generate(pmask)`` (cropped and full masks), ``chunk`` masks at a time (the
    generator works on each mask separately)."""
    if chunk >= len(pmask):
        return gen.generate(pmask)
    outs = [gen.generate(p) for p in pmask.split(chunk)]
    return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])


def _imsmooth(x: Tensor, sigma) -> Tensor:
    """TorchRay's ``imsmooth`` (separable Gaussian, zero padding, the float32 filter computed
    as TorchRay computes it) in the dtype of ``x``."""
    width = math.ceil(4 * sigma)
    filt = (torch.arange(-width, width + 1, dtype=torch.float32, device=x.device)
            / (SQRT_TWO_SINGLE * sigma + EPSILON_SINGLE))
    filt = torch.exp(-filt * filt)
    filt = (filt / torch.sum(filt)).to(x.dtype)
    C = x.shape[1]
    x = F.conv2d(x, filt.reshape(1, 1, -1, 1).expand(C, -1, -1, -1), padding=(width, 0), groups=C)
    return F.conv2d(x, filt.reshape(1, 1, 1, -1).expand(C, -1, -1, -1), padding=(0, width), groups=C)


def _pyramid(images: Tensor, num_levels: int, kind: str) -> Tensor:
    """``(B, L, C, H, W)``: TorchRay's perturbation pyramid of each image (level ``L - 1`` is
    the image, level 0 the most perturbed: blur ``sigma = 20 (1 - l / (L - 1))`` or fade)."""
    levels = []
    for sigma in torch.linspace(0, 1, num_levels, dtype=images.dtype):
        levels.append(_imsmooth(images, (1 - sigma) * 20) if kind == "blur" else images * sigma)
    return torch.stack(levels, dim=1)


def _perturb(pyramid: Tensor, mask: Tensor) -> Tensor:
    """TorchRay's ``Perturbation.apply`` per image: ``pyramid (B, L, C, H, W)``, masks
    ``(B, K, 1, H, W)`` in [0, 1] -> ``(B, K, C, H, W)``, the level ``mask * (L - 1)``
    interpolated linearly."""
    (B, L), K = pyramid.shape[:2], mask.shape[1]
    w = mask.unsqueeze(2) * (L - 1)  # (B, K, 1, 1, H, W)
    k = w.floor()
    w = w - k
    k = k.long().expand(B, K, 1, *pyramid.shape[2:])
    y = pyramid[:, None].expand(B, K, *pyramid.shape[1:])
    y0 = torch.gather(y, 2, k)
    y1 = torch.gather(y, 2, torch.clamp(k + 1, max=L - 1))
    return ((1 - w) * y0 + w * y1).squeeze(2)


def _ep_inputs(pyramid: Tensor, m: Tensor, variant: str) -> Tensor:
    """``(B, V * A, C, H, W)``: each image perturbed by its masks ``m (B, A, 1, H, W)`` as
    TorchRay's variants do (dual: the preserved images, then the deleted ones)."""
    if variant == "preserve":
        return _perturb(pyramid, m)
    if variant == "delete":
        return _perturb(pyramid, 1 - m)
    return torch.cat((_perturb(pyramid, m), _perturb(pyramid, 1 - m)), dim=1)


def _ep_reward(y: Tensor, targets: Tensor, reward: str, variant: str, A: int) -> Tensor:
    """``(B, A)`` rewards of TorchRay's ``simple_reward`` / ``contrastive_reward`` for the
    logits ``y (B, V * A, C)`` (``V = 2`` for the dual variant: preserved then deleted).

    TorchRay's contrastive reward broadcasts ``(A,) - (A, 1)`` and averages rows: area ``j``
    gets ``mean_i(s_i) - m_j`` (``s`` the target logit, ``m`` the largest other logit, the
    target set to -100); reproduced as is (the energy, a sum over areas, is unaffected)."""
    idx = targets.view(-1, 1, 1).expand(-1, y.shape[1], 1)
    score = y.gather(2, idx).squeeze(2)  # (B, V * A)
    if reward == "simple":
        parts = [score[:, :A], score[:, A:]]
    else:
        other = y.scatter(2, idx, -100.0).max(dim=2)[0]
        parts = [score[:, None, :A] - other[:, :A, None], score[:, None, A:] - other[:, A:, None]]
    r = {"preserve": parts[0], "delete": -parts[0]}.get(variant)
    r = parts[0] - parts[1] if r is None else r
    return r if reward == "simple" else r.mean(dim=2)


def extremal_batched(model: torch.nn.Module, images: Tensor, targets: Tensor, s: dict) -> Tensor:
    """Extremal perturbation maps ``(B, H, W)`` (the sum over ``s["areas"]`` of the masks) with
    the ``B x len(areas)`` masks optimised in one batch: each image's optimisation is TorchRay's
    one-image run (:func:`extremal_torchray`), independent of the others (same pyramid, mask
    generator, area reference, SGD, deterministic jitter and area-weight schedule), without its
    per-iteration history (no host syncs). Any float dtype (TorchRay's float32 kernel weights
    cast to it). The model's parameters are frozen as TorchRay does (``saliency`` restores)."""
    images, dev, dtype = images.detach(), images.device, images.dtype
    (B, C, H, W), areas = images.shape, [float(a) for a in s["areas"]]
    A, V = len(areas), 2 if s["variant"] == "dual" else 1
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        pyramid = _pyramid(images, s["num_levels"], s["perturbation"])
    with warnings.catch_warnings():  # TorchRay calls torch.meshgrid without indexing=
        warnings.filterwarnings("ignore", message=r"torch\.meshgrid: in an upcoming release")
        gen = _ep.MaskGenerator((H, W), s["step"], s["sigma"]).to(dev)
    gen.weight = gen.weight.to(dtype)
    pmask = torch.ones(B * A, 1, *gen.shape_in, dtype=dtype, device=dev)
    max_area = math.prod(gen.shape_out)
    reference = torch.ones(A, max_area, dtype=dtype, device=dev)
    for i, a in enumerate(areas):
        reference[i, :int(max_area * (1 - a))] = 0
    optimizer = torch.optim.SGD([pmask], lr=0.01, momentum=0.9, dampening=0.9)
    targets, regul_weight = targets.to(dev), 300.0
    for t in range(s["max_iter"]):
        pmask.requires_grad_(True)
        mask_, mask = _generate(gen, pmask, len(pmask) if dev.type == "cuda" else EP_CPU_MASK_CHUNK)
        x = _ep_inputs(pyramid, mask_.view(B, A, 1, H, W), s["variant"]).view(B * V * A, C, H, W)
        if s["jitter"] and t % 2 == 0:
            x = torch.flip(x, dims=(3,))
        y = model(x)
        if y.dim() != 2:
            raise ValueError(f"extremal perturbation needs logits (N, classes), got {tuple(y.shape)}")
        reward = _ep_reward(y.view(B, V * A, -1), targets, s["reward"], s["variant"], A)
        mask_sorted = mask.reshape(B, A, -1).sort(dim=2)[0]
        regul = -((mask_sorted - reference) ** 2).mean(dim=2) * regul_weight
        energy = (reward + regul).sum()
        optimizer.zero_grad()
        (-energy).backward()
        optimizer.step()
        pmask.data = pmask.data.clamp(0, 1)
        regul_weight *= 1.0035
    out = F.interpolate(mask_.detach(), (H, W), mode="bilinear", align_corners=False)
    if s["smooth"] > 0:
        out = _imsmooth(out, s["smooth"] * min(out.shape[2:]))
    return out.view(B, A, H, W).sum(dim=1)


def extremal_torchray(model: torch.nn.Module, images: Tensor, targets: Tensor, s: dict) -> Tensor:
    """The reference: TorchRay's ``extremal_perturbation`` once per image (its areas one batch
    of ``len(areas)``), the masks summed over areas as TorchRay's benchmark does. Float32."""
    reward = {"simple": _ep.simple_reward, "contrastive": _ep.contrastive_reward}[s["reward"]]
    maps = []
    for b in range(images.shape[0]):
        mask, _ = _ep.extremal_perturbation(
            model, images[b : b + 1].detach(), int(targets[b]),
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
    layer="none", batched=True, deterministic=True, source="torchray 1.0.0.2",
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

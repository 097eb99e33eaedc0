"""A plain implementation of CAMERAS, written like the authors' code, for tests and benchmarks.

Per image and per size: a full forward and backward pass (parameter gradients included), the
layer's activations and gradients upsampled to the input grid and *stored* for every size,
then averaged, multiplied and summed. It is slow and memory-hungry on purpose: it is the
baseline that :class:`cameras.Cameras` must match (to 1e-6 in float64) and beat.
:func:`manual_fusion` forms the fused map literally from a :meth:`cameras.Cameras.capture`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .core import DEFAULT_SIZES, Capture, normalize_maps, resize_to
from .hooks import resolve_layer
from .methods.cam import upsample

__all__ = ["cameras_reference", "manual_fusion"]


def _one_image(model: nn.Module, module: nn.Module, image: Tensor, sizes, target):
    H, W = image.shape[-2:]
    store = {}

    def fwd(_m, _i, out):
        store["A"] = out.detach().clone()
        out.register_hook(lambda g: store.__setitem__("G", g.detach().clone()))

    handle = module.register_forward_hook(fwd)
    feats, grads, classes = [], [], []
    try:
        for size in sizes:
            x = resize_to(image, size)
            model.zero_grad(set_to_none=True)
            logits = model(x)
            top1 = int(logits.argmax(1))
            cls = top1 if target is None else int(target)
            classes.append(top1)
            if target is None and len(classes) == 1:
                target_used = top1
            one_hot = torch.zeros_like(logits)
            one_hot[0, target_used if target is None else cls] = 1.0
            logits.backward(gradient=one_hot)
            feats.append(F.interpolate(store["A"], (H, W), mode="bilinear", align_corners=False))
            grads.append(F.interpolate(store["G"], (H, W), mode="bilinear", align_corners=False))
    finally:
        handle.remove()
        model.zero_grad(set_to_none=True)
    keep = [True if target is not None else c == classes[0] for c in classes]
    n = sum(keep)
    fmean = sum(f for f, k in zip(feats, keep, strict=True) if k) / n
    gmean = sum(g for g, k in zip(grads, keep, strict=True) if k) / n
    return F.relu((fmean * gmean).sum(dim=1))[0]


def cameras_reference(
    model: nn.Module,
    images: Tensor,
    targets=None,
    layer: str | nn.Module = "layer4",
    sizes: Sequence[int] = DEFAULT_SIZES,
) -> Tensor:
    """CAMERAS maps ``(B, H, W)`` by the straightforward per-image, per-size loop."""
    module = resolve_layer(model, layer)
    if isinstance(targets, int):
        targets = [targets] * images.shape[0]
    out = []
    for b in range(images.shape[0]):
        t = None if targets is None else int(targets[b])
        with torch.enable_grad():
            out.append(_one_image(model, module, images[b : b + 1], sizes, t))
    return normalize_maps(torch.stack(out))


def manual_fusion(cap: Capture, b: int = 0, channels: Sequence[int] = (),
                  sizes: Sequence[int] | None = None, chunk: int = 128) -> dict[str, Any]:
    r"""Lines 6-9 of Algorithm 1, literally, for image ``b`` of a :meth:`cameras.Cameras.capture`:
    :math:`\bar A`, :math:`\bar G` formed on the input grid ``chunk`` channels at a time (weights
    1/n over the kept sizes), then :math:`\mathrm{ReLU}(\sum_k \bar A_k \bar G_k)`, min-max
    normalised.

    ``{"map", "raw" (before ReLU), "abar_norm" (channel norm of Ā), "abar"/"gbar" (the
    ``channels`` of Ā, Ḡ), "gbar_rel_std" (largest spatial std of a channel of Ḡ over its mean
    magnitude: 0 for constant gradients), "weights" ({size: w_s})}``.
    """
    sizes = list(cap.sizes if sizes is None else sizes)
    idx, w, A0 = [cap.index(s) for s in sizes], cap.weights(sizes)[:, b], cap.activations[0]
    shape = cap.out_shape
    raw = torch.zeros(shape, dtype=A0.dtype, device=A0.device)
    energy = torch.zeros_like(raw)
    out: dict[str, Any] = {"abar": {}, "gbar": {}, "gbar_rel_std": 0.0}
    for c0 in range(0, A0.shape[1], chunk):
        c1 = min(A0.shape[1], c0 + chunk)
        abar = sum(w[j] * upsample(cap.activations[i][b, c0:c1], shape) for j, i in enumerate(idx))
        gbar = sum(w[j] * upsample(cap.gradients[i][b, 0, c0:c1], shape) for j, i in enumerate(idx))
        raw += (abar * gbar).sum(dim=0)
        energy += (abar * abar).sum(dim=0)
        scale = gbar.abs().mean(dim=(1, 2)).clamp_min(torch.finfo(A0.dtype).tiny)
        out["gbar_rel_std"] = max(out["gbar_rel_std"], float((gbar.std(dim=(1, 2)) / scale).max()))
        for c in (c for c in channels if c0 <= c < c1):
            out["abar"][int(c)], out["gbar"][int(c)] = abar[c - c0].clone(), gbar[c - c0].clone()
    return {**out, "map": normalize_maps(raw.clamp_min(0)[None])[0], "raw": raw,
            "abar_norm": energy.sqrt(), "weights": dict(zip(sizes, w.tolist(), strict=True))}

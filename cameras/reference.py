"""A plain implementation of CAMERAS, written like the authors' code, for tests and benchmarks.

Per image and per size: a full forward and backward pass (parameter gradients included), the
layer's activations and gradients upsampled to the input grid and *stored* for every size,
then averaged, multiplied and summed. It is slow and memory-hungry on purpose: it is the
baseline that :class:`cameras.Cameras` must match (to 1e-6 in float64) and beat.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .core import DEFAULT_SIZES, normalize_maps, resize_to
from .hooks import resolve_layer

__all__ = ["cameras_reference"]


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

"""Insertion and deletion (Petsiuk, Das & Saenko, *RISE*, BMVC 2018).

Pixels are ranked by the map (descending; ties in row-major order). *Deletion* starts from
the image and replaces the top ``k`` pixels by a substrate (default black); *insertion*
starts from the substrate (default the blurred image, Gaussian kernel 11 / sigma 5 as in
RISE) and puts back the top ``k`` pixels. The curve is the softmax probability of the true
label as ``k`` grows from 0 to all pixels; the score is its area (:func:`auc`). CAMERAS does
not report these metrics; the map-density chapter adds them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ._common import as_labels, baseline01, check_maps, stats
from ._info import MetricInfo, describe

__all__ = ["auc", "insertion_deletion", "pixel_counts", "INSERTION", "DELETION"]

INSERTION = describe(MetricInfo("insertion", "insertion AUC", True, (0, 1),
                                reference="Petsiuk et al., BMVC 2018",
                                summary="area under P(label) while the top pixels are put back"))
DELETION = describe(MetricInfo("deletion", "deletion AUC", False, (0, 1),
                               reference="Petsiuk et al., BMVC 2018",
                               summary="area under P(label) while the top pixels are removed"))


def auc(curve: Tensor) -> Tensor:
    """Trapezoidal area under curves ``(..., S+1)`` sampled uniformly on [0, 1] (RISE's)."""
    n = curve.shape[-1] - 1
    if n < 1:
        raise ValueError("a curve needs at least two points")
    return (curve.sum(dim=-1) - curve[..., 0] / 2 - curve[..., -1] / 2) / n


def pixel_counts(pixels: int, width: int, step: int | None = None, n_steps: int | None = None) -> list[int]:
    """The numbers of pixels ``k`` at which the curve is sampled: every ``step`` pixels
    (default: the image width, RISE's one row per step) or ``n_steps`` equal steps."""
    if n_steps is not None and step is not None:
        raise ValueError("give step or n_steps, not both")
    if n_steps is None:
        step = int(step or width)
        if step < 1:
            raise ValueError(f"step must be positive, got {step}")
        return [min(i * step, pixels) for i in range(math.ceil(pixels / step) + 1)]
    if n_steps < 1:
        raise ValueError(f"n_steps must be positive, got {n_steps}")
    return [round(i * pixels / n_steps) for i in range(n_steps + 1)]


@torch.no_grad()
def insertion_deletion(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    labels,
    mode: str = "deletion",
    *,
    mean: Sequence[float],
    std: Sequence[float],
    step: int | None = None,
    n_steps: int | None = None,
    substrate: str | float | Tensor | None = None,
    batch_size: int = 32,
    blur_kernel: int = 11,
    blur_sigma: float = 5.0,
) -> tuple[Tensor, Tensor]:
    """Insertion or deletion AUC: ``(auc (B,), curves (B, S+1))`` on the CPU.

    ``k`` grows by ``step`` pixels or in ``n_steps`` equal steps (:func:`pixel_counts`).
    ``substrate``: ``"black"``, ``"mean"`` (the mean colour, 0 in normalised space -- what
    RISE's code calls ``zeros_like``), ``"blur"``, a gray level or a pixel-space tensor. The
    ``B x (S+1)`` perturbed images of all images go through the model together, in chunks of
    ``batch_size``.
    """
    if mode not in ("insertion", "deletion"):
        raise ValueError(f"mode must be 'insertion' or 'deletion', got {mode!r}")
    maps = check_maps(maps, images, unit=False)
    B, _, H, W = images.shape
    P = H * W
    dev = images.device
    counts = torch.tensor(pixel_counts(P, W, step, n_steps), device=dev)
    labels = as_labels(labels, B, dev)
    m, s = stats(mean, std, images)
    x01 = images * s + m
    sub01 = baseline01(substrate or ("blur" if mode == "insertion" else "black"), x01, m,
                       (blur_kernel, blur_sigma))
    order = torch.argsort(maps.reshape(B, -1), dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(P, device=dev).expand(B, P).contiguous())
    S = counts.numel()
    img_idx = torch.arange(B, device=dev).repeat_interleave(S)
    step_idx = torch.arange(S, device=dev).repeat(B)
    was = model.training
    model.eval()
    probs = []
    try:
        for i in range(0, B * S, batch_size):
            bi, si = img_idx[i : i + batch_size], step_idx[i : i + batch_size]
            top = (rank[bi] < counts[si][:, None]).reshape(-1, 1, H, W)
            z = torch.where(top, sub01[bi], x01[bi]) if mode == "deletion" else torch.where(top, x01[bi], sub01[bi])
            p = model((z - m) / s).float().softmax(dim=1)
            probs.append(p.gather(1, labels[bi].view(-1, 1))[:, 0].cpu())
    finally:
        model.train(was)
    curves = torch.cat(probs).reshape(B, S)
    return auc(curves), curves

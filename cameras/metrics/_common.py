"""Helpers shared by the metrics: pixel space, baselines, class probabilities, map checks."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def stats(mean, std, like: Tensor) -> tuple[Tensor, Tensor]:
    """The normalisation ``mean``/``std`` as ``(1, C, 1, 1)`` tensors like ``like``."""
    m = torch.as_tensor(mean, dtype=like.dtype, device=like.device).reshape(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=like.dtype, device=like.device).reshape(1, -1, 1, 1)
    if m.shape[1] not in (1, like.shape[1]) or s.shape[1] not in (1, like.shape[1]):
        raise ValueError(f"mean/std must have 1 or {like.shape[1]} values")
    return m, s


def baseline01(baseline, images01: Tensor, mean: Tensor, blur: tuple[int, float] = (11, 5.0)) -> Tensor:
    """The replacement image in [0, 1] pixel space: ``"black"``, ``"mean"`` (the mean colour,
    0 in normalised space), ``"blur"`` (Gaussian, kernel 11 / sigma 5 as RISE), a gray level
    or a pixel-space tensor."""
    if isinstance(baseline, Tensor):
        return baseline.to(images01).expand_as(images01)
    if baseline == "black":
        return torch.zeros_like(images01)
    if baseline == "mean":
        return mean.expand_as(images01)
    if baseline == "blur":
        from torchvision.transforms.functional import gaussian_blur

        # blur is linear: blurring pixels or the normalised tensor is the same up to the
        # affine normalisation
        return gaussian_blur(images01, kernel_size=[blur[0], blur[0]], sigma=[blur[1], blur[1]])
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        return torch.full_like(images01, float(baseline))
    raise ValueError(f"baseline must be 'black', 'mean', 'blur', a gray level in [0, 1] or a "
                     f"tensor, got {baseline!r}")


@torch.no_grad()
def class_probability(model: nn.Module, x: Tensor, labels: Tensor, batch_size: int) -> Tensor:
    """Softmax probability of ``labels`` for ``x``, in chunks of ``batch_size`` (eval mode)."""
    out = []
    was = model.training
    model.eval()
    try:
        for i in range(0, x.shape[0], batch_size):
            p = model(x[i : i + batch_size]).float().softmax(dim=1)
            out.append(p.gather(1, labels[i : i + batch_size].view(-1, 1).to(p.device))[:, 0])
    finally:
        model.train(was)
    return torch.cat(out)


def as_labels(labels, batch: int, device=None) -> Tensor:
    """``labels`` (an int or ``batch`` ints) as a ``(batch,)`` LongTensor."""
    t = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    if t.numel() == 1:
        t = t.expand(batch)
    if t.numel() != batch:
        raise ValueError(f"got {t.numel()} labels for {batch} images")
    return t.to(device) if device is not None else t


def check_maps(maps: Tensor, images: Tensor, unit: bool = True) -> Tensor:
    """``(B, H, W)`` maps matching ``images`` ``(B, C, H, W)``, finite (and in [0, 1])."""
    if images.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got {tuple(images.shape)}")
    if maps.dim() == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.dim() != 3 or tuple(maps.shape) != (images.shape[0], *images.shape[-2:]):
        raise ValueError(f"maps must be (B, H, W) matching images {tuple(images.shape)}, "
                         f"got {tuple(maps.shape)}")
    if not bool(torch.isfinite(maps).all()):
        raise ValueError("maps contain NaN or inf")
    if unit and (float(maps.min()) < 0 or float(maps.max()) > 1):
        raise ValueError("maps must be in [0, 1] (use cameras.core.normalize_maps)")
    return maps.to(images)


def saliency_point(maps: Tensor) -> Tensor:
    """``(B, 2)`` LongTensor of ``(u, v) = (column, row)`` of each map's maximum.

    The first maximum in row-major order, as TorchRay's benchmark (``argmax`` of the
    flattened map). ``maps``: ``(B, H, W)``, ``(B, 1, H, W)`` or ``(H, W)``.
    """
    if maps.dim() == 2:
        maps = maps[None]
    if maps.dim() == 4:
        maps = maps[:, 0]
    if bool(torch.isnan(maps).any()):
        raise ValueError("maps contain NaN: a map with NaN points nowhere (use "
                         "cameras.core.normalize_maps, or torch.nan_to_num, first)")
    w = maps.shape[-1]
    flat = maps.reshape(maps.shape[0], -1)
    # torch.argmax does not promise the first index on ties; use it explicitly
    m = flat.max(dim=1, keepdim=True).values
    idx = (flat == m).to(torch.uint8).argmax(dim=1)
    return torch.stack((idx % w, idx // w), dim=1)

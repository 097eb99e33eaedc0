"""Saliency maps as pictures: colour maps and overlays as arrays, PNG files.

* :func:`overlay` blends a colour-mapped saliency map onto an image and returns an
  ``(H, W, 3)`` uint8 array (ready for ``PIL.Image.fromarray(...).save("x.png")``).
* Figures (grids of maps) are drawn by :mod:`cameras.plots`, the one plotting layer.

Maps are expected in [0, 1] (what :class:`cameras.Cameras` returns). Maps outside that range
are min-max normalised for display; a constant map is drawn as zeros. A map of another size
than the image is resized bilinearly to the image.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .images import load_image, to_uint8_array

__all__ = ["overlay", "as_rgb_uint8", "as_map", "colorize", "save_png"]


def _to_numpy(x: Any) -> Any:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return x
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy() if x.is_floating_point() else x.detach().cpu().numpy()
    return x


def as_rgb_uint8(image: Any) -> np.ndarray:
    """An image as an ``(H, W, 3)`` uint8 array.

    Accepts what :func:`cameras.images.load_image` accepts (path, PIL image, array: uint8,
    uint16, bool, float in [0, 1]; gray, RGB, RGBA) and torch tensors ``(H, W, 3)`` or
    channel-first ``(3, H, W)`` / ``(1, 3, H, W)`` with values in [0, 1] (e.g. a model's
    ``denormalize`` output).
    """
    x = _to_numpy(image)
    if isinstance(x, np.ndarray) and not isinstance(image, np.ndarray):  # came from a tensor
        if x.ndim == 4 and x.shape[0] == 1:
            x = x[0]
        if x.ndim == 3 and x.shape[0] in (1, 3) and x.shape[-1] not in (1, 3, 4):
            x = x.transpose(1, 2, 0)
    if isinstance(x, np.ndarray):
        u8 = to_uint8_array(x, "image")
        if u8.shape[-1] == 3:
            return np.ascontiguousarray(u8)
        return np.asarray(load_image(u8))  # gray -> RGB, RGBA -> on white
    return np.asarray(load_image(x))


def as_map(saliency_map: Any, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A saliency map as a 2-D float32 array in [0, 1], optionally resized to ``shape``.

    Accepts ``(H, W)``, ``(1, H, W)`` or ``(1, 1, H, W)`` numpy arrays or tensors. Values
    outside [0, 1] are min-max normalised (a constant map becomes zeros); NaN or infinite
    values raise :class:`ValueError`.
    """
    m = np.asarray(_to_numpy(saliency_map), dtype=np.float64)
    while m.ndim > 2 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"a saliency map must be 2-D (H, W), got shape {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError("the saliency map contains NaN or infinite values")
    lo, hi = float(m.min()), float(m.max())
    if lo < 0.0 or hi > 1.0:
        m = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
    m = m.astype(np.float32)
    if shape is not None and tuple(m.shape) != tuple(shape):
        import torch
        import torch.nn.functional as F

        t = torch.from_numpy(m)[None, None]
        m = F.interpolate(t, size=tuple(shape), mode="bilinear", align_corners=False)[0, 0].numpy()
        m = np.clip(m, 0.0, 1.0)
    return m


def _cmap(cmap: Any):
    import matplotlib

    if not isinstance(cmap, str):
        return cmap
    try:
        return matplotlib.colormaps[cmap]
    except KeyError:
        raise ValueError(f"unknown matplotlib colormap {cmap!r}") from None


def colorize(saliency_map: Any, cmap: Any = "jet") -> np.ndarray:
    """A map in [0, 1] as an ``(H, W, 3)`` uint8 colour image."""
    m = as_map(saliency_map)
    rgb = _cmap(cmap)(m)[..., :3]
    return np.rint(rgb * 255.0).astype(np.uint8)


def overlay(image: Any, saliency_map: Any, alpha: float = 0.5, cmap: Any = "jet") -> np.ndarray:
    """Blend ``cmap(saliency_map)`` onto ``image``: ``(1 - alpha) * image + alpha * colour``.

    Parameters
    ----------
    image:
        ``(H, W, 3)`` uint8 or float in [0, 1] (or anything :func:`as_rgb_uint8` accepts).
    saliency_map:
        2-D map, ideally in [0, 1]; resized to the image if needed (see :func:`as_map`).
    alpha:
        Weight of the colour map, in [0, 1].
    cmap:
        A matplotlib colormap name or object.

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` uint8 RGB.
    """
    if not isinstance(alpha, (int, float)) or not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    img = as_rgb_uint8(image)
    m = as_map(saliency_map, img.shape[:2])
    heat = _cmap(cmap)(m)[..., :3] * 255.0
    out = (1.0 - float(alpha)) * img.astype(np.float64) + float(alpha) * heat
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def save_png(array: np.ndarray, path: str | os.PathLike) -> Path:
    """Write an ``(H, W, 3)`` uint8 array as PNG (creating the folder)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(as_rgb_uint8(array)).save(p, format="PNG")
    return p

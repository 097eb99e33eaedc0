"""Drawing saliency maps: colour overlays and figure grids (PNG, no pyplot state).

* :func:`overlay` blends a colour-mapped saliency map onto an image and returns an
  ``(H, W, 3)`` uint8 array (ready for ``PIL.Image.fromarray(...).save("x.png")``).
* :func:`show_maps` lays out images and their maps in a grid and returns a
  :class:`matplotlib.figure.Figure`. It does not go through ``pyplot``: a notebook shows the
  returned figure once (as PNG, the inline default; this project writes no SVG) and no
  figures pile up in pyplot's registry. ``save=`` writes a PNG.

Maps are expected in [0, 1] (what :class:`cameras.Cameras` returns). Maps outside that range
are min-max normalised for display; a constant map is drawn as zeros. A map of another size
than the image is resized bilinearly to the image.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .images import load_image, to_uint8_array

__all__ = ["overlay", "as_rgb_uint8", "as_map", "show_maps", "colorize", "save_png"]


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


def _is_single_image(x: Any) -> bool:
    return not isinstance(x, (list, tuple))


def _row_maps(maps: Any, titles: Sequence[str] | None) -> list[tuple[str, Any]]:
    if isinstance(maps, Mapping):
        items = [(str(k), v) for k, v in maps.items()]
    elif isinstance(maps, (list, tuple)):
        items = [("", v) for v in maps]
    else:
        items = [("", maps)]
    if titles is not None:
        if len(titles) != len(items):
            raise ValueError(f"{len(titles)} titles for {len(items)} maps")
        items = [(str(t), v) for t, (_, v) in zip(titles, items, strict=True)]
    return items


def show_maps(
    images: Any,
    maps: Any,
    titles: Sequence[str] | None = None,
    row_titles: Sequence[str] | None = None,
    *,
    alpha: float = 0.5,
    cmap: Any = "jet",
    show_image: bool = True,
    overlay_maps: bool = True,
    cell_size: float = 2.6,
    suptitle: str | None = None,
    save: str | os.PathLike | None = None,
    dpi: int = 100,
):
    """A grid: one row per image, the image then one panel per map.

    Parameters
    ----------
    images:
        One image, or a list of ``R`` images (anything :func:`as_rgb_uint8` accepts).
    maps:
        For one image: a map, a list of maps or a dict ``{title: map}``. For ``R`` images:
        a list of ``R`` such entries, or a dict ``{title: list of R maps}``.
    titles, row_titles:
        Column titles for the maps (default: the dict keys) and per-row labels.
    alpha, cmap:
        Passed to :func:`overlay`; with ``overlay_maps=False`` maps are drawn alone.
    show_image:
        Include the input image as the first column.
    save:
        Write the figure as PNG to this path (``.png`` only).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    if _is_single_image(images):
        images = [images]
        rows = [_row_maps(maps, titles)]
    else:
        images = list(images)
        if isinstance(maps, Mapping):
            cols = {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in maps.items()}
            for k, v in cols.items():
                if not isinstance(v, list) or len(v) != len(images):
                    raise ValueError(f"maps[{k!r}] must be a list of {len(images)} maps (one per image)")
            rows = [_row_maps({k: v[r] for k, v in cols.items()}, titles) for r in range(len(images))]
        else:
            if not isinstance(maps, (list, tuple)) or len(maps) != len(images):
                raise ValueError(f"maps must hold one entry per image ({len(images)})")
            rows = [_row_maps(m, titles) for m in maps]
    if not images:
        raise ValueError("show_maps needs at least one image")
    if row_titles is not None and len(row_titles) != len(images):
        raise ValueError(f"{len(row_titles)} row titles for {len(images)} images")
    ncols = max(len(r) for r in rows) + int(show_image)
    if ncols == 0:
        raise ValueError("nothing to show: no maps and show_image=False")
    nrows = len(images)
    fig = Figure(figsize=(cell_size * ncols, cell_size * nrows + (0.4 if suptitle else 0.0)))
    axes = np.atleast_2d(fig.subplots(nrows, ncols, squeeze=False))
    for r, (img, row) in enumerate(zip(images, rows, strict=True)):
        rgb = as_rgb_uint8(img)
        c0 = 0
        if show_image:
            axes[r, 0].imshow(rgb)
            if r == 0:
                axes[r, 0].set_title("image", fontsize=9)
            c0 = 1
        for c, (title, m) in enumerate(row):
            ax = axes[r, c0 + c]
            if overlay_maps:
                ax.imshow(overlay(rgb, m, alpha=alpha, cmap=cmap))
            else:
                ax.imshow(as_map(m), cmap=_cmap(cmap), vmin=0.0, vmax=1.0)
            if title and (r == 0 or len(rows) == 1):
                ax.set_title(title, fontsize=9)
        if row_titles is not None:
            axes[r, 0].set_ylabel(str(row_titles[r]), fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        if not ax.images:
            ax.set_axis_off()
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    if save is not None:
        path = Path(save)
        if path.suffix.lower() != ".png":
            raise ValueError(f"figures are saved as PNG; use a .png path, got {path.name}")
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi, format="png")
    return fig


def save_png(array: np.ndarray, path: str | os.PathLike) -> Path:
    """Write an ``(H, W, 3)`` uint8 array as PNG (creating the folder)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(as_rgb_uint8(array)).save(p, format="PNG")
    return p

"""Turning files, PIL images and arrays into 8-bit RGB images and model-ready batches.

:func:`load_image` is the single entry point every part of the project uses to read an
image, so that odd inputs behave the same everywhere:

========================  ==================================================================
input                     result
========================  ==================================================================
RGB, 8-bit                unchanged
gray (``L``), ``1``       replicated to three channels
palette (``P``)           its colours (transparent entries composited on white)
RGBA / LA / PA / RGBa     **composited on a white background** (a transparent PNG then looks
                          as it does in a browser; dropping alpha would expose whatever
                          colour the transparent pixels happen to store, often black)
16-bit (``I;16*``)        scaled to 8 bit: ``v * 255 / 65535``, rounded
32-bit int (``I``)        16-bit range (0..65535) scaled as above; values outside -> error
float (``F``)             values in [0, 1] times 255; values outside -> error
CMYK, YCbCr, LAB, HSV     converted by Pillow
EXIF orientation          applied (photos from phones come out upright)
multi-frame (GIF, TIFF)   the first frame
========================  ==================================================================

Arrays: ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` (alpha composited on
white as above); ``uint8``; ``uint16`` (scaled from 0..65535); ``bool``; other integer types
with values in 0..255; floats with values in [0, 1]. A channel-first ``(3, H, W)`` array is
refused with a hint rather than silently misread.

Errors name the file: a missing file raises :class:`FileNotFoundError`; a directory, a file
that is not an image, or a truncated / corrupt image raises :class:`ValueError`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["ImageLike", "load_image", "load_batch", "to_uint8_array", "model_view"]

#: Anything :func:`load_image` accepts.
ImageLike = str | os.PathLike | Image.Image | np.ndarray

_WHITE = (255, 255, 255)


def _composite_on_white(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, _WHITE + (255,))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _scale_16bit(a: np.ndarray, what: str) -> np.ndarray:
    a = a.astype(np.int64)
    if a.size and (a.min() < 0 or a.max() > 65535):
        raise ValueError(
            f"{what}: integer values in [{a.min()}, {a.max()}] are outside the 16-bit range 0..65535"
        )
    return np.rint(a * (255.0 / 65535.0)).astype(np.uint8)


def _pil_to_rgb(img: Image.Image, what: str) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB following the table in the module docstring."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return _composite_on_white(img)
    if mode == "P":
        if "transparency" in img.info:
            return _composite_on_white(img)
        return img.convert("RGB")
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(img)
        return Image.fromarray(_scale_16bit(a, what), mode="L").convert("RGB")
    if mode == "F":
        a = np.asarray(img, dtype=np.float64)
        return Image.fromarray(_float_to_uint8(a, what), mode="L").convert("RGB")
    return img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV, ...


def _float_to_uint8(a: np.ndarray, what: str) -> np.ndarray:
    if not np.isfinite(a).all():
        raise ValueError(f"{what}: float image contains NaN or infinite values")
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise ValueError(
            f"{what}: float images must have values in [0, 1], got [{lo:.4g}, {hi:.4g}] "
            "(divide 8-bit data by 255, or pass a uint8 array)"
        )
    return np.rint(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)


def to_uint8_array(a: np.ndarray, what: str = "array") -> np.ndarray:
    """An image array (see module docstring) as an ``(H, W, C)`` uint8 array, C in {1, 3, 4}."""
    a = np.asarray(a)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[-1] not in (1, 3, 4):
        hint = ""
        if a.ndim == 3 and a.shape[0] in (1, 3, 4):
            hint = " (this looks channel-first; use a.transpose(1, 2, 0))"
        raise ValueError(
            f"{what}: expected an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array, "
            f"got shape {a.shape}{hint}"
        )
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{what}: empty image of shape {a.shape}")
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if a.dtype == np.uint16:
        return _scale_16bit(a, what)
    if np.issubdtype(a.dtype, np.integer):
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi > 255:
            raise ValueError(
                f"{what}: {a.dtype} values in [{lo}, {hi}] are outside 0..255; pass uint16 "
                "for 16-bit data or floats in [0, 1]"
            )
        return a.astype(np.uint8)
    if np.issubdtype(a.dtype, np.floating):
        return _float_to_uint8(a.astype(np.float64), what)
    raise TypeError(f"{what}: unsupported array dtype {a.dtype}")


def _array_to_rgb(a: np.ndarray) -> Image.Image:
    u8 = to_uint8_array(a)
    c = u8.shape[-1]
    if c == 1:
        return Image.fromarray(u8[..., 0], mode="L").convert("RGB")
    if c == 3:
        return Image.fromarray(np.ascontiguousarray(u8), mode="RGB")
    return _composite_on_white(Image.fromarray(np.ascontiguousarray(u8), mode="RGBA"))


def _open_file(path: Path) -> Image.Image:
    if not path.exists():
        raise FileNotFoundError(f"image file not found: {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a directory, not an image file")
    try:
        with Image.open(path) as opened:
            opened.seek(0)
            opened.load()  # decode now: truncated / corrupt data fails here, inside the try
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                img = ImageOps.exif_transpose(opened)
            out = _pil_to_rgb(img, str(path))
            return out.copy() if out is opened else out  # outlive the closed file
    except UnidentifiedImageError:
        raise ValueError(f"{path} is not an image file Pillow can read") from None
    except (OSError, SyntaxError, Image.DecompressionBombError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from None


def load_image(x: ImageLike) -> Image.Image:
    """Load ``x`` (a path, a PIL image or an array) as an 8-bit RGB :class:`PIL.Image.Image`.

    See the module docstring for how each mode and dtype is converted (alpha is composited
    on white, 16-bit data is scaled, EXIF orientation is applied to files).

    Raises
    ------
    FileNotFoundError
        ``x`` is a path that does not exist.
    ValueError
        Unreadable, non-image or truncated files, arrays of the wrong shape or range.
    TypeError
        ``x`` is of another type.
    """
    if isinstance(x, (str, os.PathLike)):
        return _open_file(Path(x))
    if isinstance(x, Image.Image):
        try:
            x.load()
        except OSError as err:
            raise ValueError(f"cannot read PIL image: {err}") from None
        return _pil_to_rgb(x, "PIL image")
    if isinstance(x, np.ndarray):
        return _array_to_rgb(x)
    raise TypeError(
        "an image must be a path (str / pathlib.Path), a PIL.Image.Image or a numpy array, "
        f"got {type(x).__name__}"
    )


def load_batch(items: Iterable[ImageLike] | ImageLike, preprocess: Callable[[Image.Image], Any]):
    """Load images and stack ``preprocess(load_image(item))`` into a ``(B, 3, H, W)`` tensor.

    ``items`` is an iterable of anything :func:`load_image` accepts (a single path, PIL image
    or array is treated as a batch of one). ``preprocess`` maps an RGB PIL image to a
    ``(3, H, W)`` tensor, e.g. ``cameras.models.load_model(...).preprocess``.
    """
    import torch

    if isinstance(items, (str, os.PathLike, Image.Image, np.ndarray)):
        items = [items]
    tensors = []
    for item in items:
        t = preprocess(load_image(item))
        if not isinstance(t, torch.Tensor) or t.dim() != 3:
            raise ValueError(
                "preprocess must return a (3, H, W) tensor, got "
                + (f"shape {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__)
            )
        if tensors and t.shape != tensors[0].shape:
            raise ValueError(
                f"preprocess returned tensors of different shapes ({tuple(tensors[0].shape)} and "
                f"{tuple(t.shape)}); use a preprocess that crops to a fixed size"
            )
        tensors.append(t)
    if not tensors:
        raise ValueError("load_batch needs at least one image")
    return torch.stack(tensors)


def model_view(model: str, image: ImageLike) -> np.ndarray:
    """``image`` as the model named ``model`` sees it (its native resize and center crop, no
    normalisation), ``(H, W, 3)`` uint8."""
    import torchvision.transforms.functional as TF

    from .models import get_spec

    spec = get_spec(model)
    pil = TF.resize(load_image(image), spec.resize_size, antialias=True)
    return np.asarray(TF.center_crop(pil, [spec.input_size, spec.input_size]))

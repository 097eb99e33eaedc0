"""Methods given by registry name or as callables, as one kind of function (for the checks).

:func:`map_functions` turns ``"gradcam"``, ``("mine", fn)`` or ``{"name": fn_or_name}`` into
``{name: fn(model, images, targets) -> (B, H, W)}``; :func:`compute_maps` runs one of them in
chunks and checks what it returns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..hooks import eval_mode  # noqa: F401  (re-exported for the checks)
from ._registry import info, saliency

__all__ = ["MapFn", "map_functions", "compute_maps", "device_of", "eval_mode", "check_images", "ids_or_range"]

MapFn = Callable[[nn.Module, Tensor, Tensor], Tensor]


def _layer_name(model: nn.Module, layer: Any) -> Any:
    """A layer given as a module is turned into its name (so it resolves on a deep copy)."""
    if isinstance(layer, nn.Module):
        for name, m in model.named_modules():
            if m is layer:
                return name
        raise ValueError("the given layer module is not a sub-module of the model")
    if isinstance(layer, tuple):
        return tuple(_layer_name(model, x) for x in layer)
    return layer


def map_functions(
    methods: str | Sequence[str | tuple[str, MapFn]] | Mapping[str, str | MapFn],
    model: nn.Module,
    layer: Any = None,
    settings: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, MapFn]:
    """``{name: fn(model, images, targets) -> (B, H, W)}`` from names and/or callables.

    A registry name uses :func:`cameras.methods.saliency` with ``settings[name]``; ``layer``
    (if given) goes to the methods that need a layer (others use their default).
    """
    if isinstance(methods, str) or callable(methods):
        methods = [methods]
    if isinstance(methods, Mapping):
        items = list(methods.items())
    else:
        items = []
        for m in methods:
            if isinstance(m, str):
                items.append((m, m))
            elif isinstance(m, tuple) and len(m) == 2:
                items.append(m)
            elif callable(m):
                items.append((getattr(m, "__name__", repr(m)), m))
            else:
                raise TypeError(f"a method must be a registry name or a callable, got {type(m).__name__}")
    if not items:
        raise ValueError("no methods given")
    settings = dict(settings or {})
    layer = _layer_name(model, layer)
    out: dict[str, MapFn] = {}
    for name, spec in items:
        if callable(spec) and not isinstance(spec, str):
            out[str(name)] = spec
            continue
        if not isinstance(spec, str):
            raise TypeError(f"method {name!r} must be a registry name or a callable")

        mspec = info(spec)  # clear error for an unknown name
        kw = dict(settings.get(name, settings.get(mspec.name, {})))
        lay = layer if (layer is not None and mspec.layer == "required") else None

        def fn(model, images, targets, _n=mspec.name, _kw=kw, _lay=lay):
            return saliency(_n, model, images, targets, layer=_lay, **_kw)

        out[str(name)] = fn
    return out


def compute_maps(fn: MapFn, model: nn.Module, x: Tensor, t: Tensor, batch_size: int | None, name: str) -> Tensor:
    """Run one method in chunks; check and return ``(B, H, W)`` float maps on the CPU."""
    bs = batch_size or x.shape[0]
    out = []
    for i in range(0, x.shape[0], bs):
        m = fn(model, x[i : i + bs], t[i : i + bs])
        if not isinstance(m, Tensor):
            raise TypeError(f"method {name!r} returned {type(m).__name__}, expected a tensor")
        m = m.detach()
        if m.dim() == 4 and m.shape[1] == 1:
            m = m[:, 0]
        if m.dim() != 3 or m.shape[0] != min(bs, x.shape[0] - i):
            raise ValueError(f"method {name!r} returned maps of shape {tuple(m.shape)}, expected (B, H, W)")
        out.append(m.float().cpu())
    maps = torch.cat(out)
    if not torch.isfinite(maps).all():
        raise ValueError(f"method {name!r} returned NaN or inf maps")
    return maps


def device_of(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def check_images(images: Tensor, name: str = "images") -> Tensor:
    if not isinstance(images, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4 or not images.is_floating_point():
        raise ValueError(f"{name} must be a float tensor (B, C, H, W), got {tuple(images.shape)} {images.dtype}")
    return images


def ids_or_range(image_ids: Sequence[Any] | None, n: int) -> list[Any]:
    ids = list(range(n)) if image_ids is None else list(image_ids)
    if len(ids) != n:
        raise ValueError(f"image_ids has {len(ids)} entries for {n} images")
    return ids

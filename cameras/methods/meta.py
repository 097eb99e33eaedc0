r"""Meta-saliency (Rebuffi, Fong, Ji & Vedaldi, CVPR 2020): explain the model one SGD step later.

The paper's "meta-learning inspired paradigm, applicable to any saliency method": take one
step of SGD on the cross-entropy of the class being explained,
:math:`\theta' = \theta - \eta\,\nabla_\theta \mathrm{CE}(f_\theta(x), c)`, compute the saliency
map of :math:`f_{\theta'}` for :math:`(x, c)`, and put :math:`\theta` back. The authors'
``meta_saliency`` (ruthcfong/TorchRay, ``torchray/attribution/meta_saliency.py``) uses
``lr=1e-4`` by default and ``lr=2.5e-3`` in its class-selectivity script; the model is in eval
mode and every parameter takes the step.

Here, each image of a batch gets its *own* step (the authors run one image at a time):

* ``mode="vmap"``: the per-image gradients come from ``torch.func.vmap(grad(...))`` over
  ``functional_call`` (one batched pass), the B stepped parameter sets stay functional (the
  model's own tensors are never written), and the activations and gradients at the method's
  layer(s) come from one more vmapped pass (a zero "probe" added to each layer's output gives
  :math:`\partial S_c / \partial a`). Available for the methods whose map is a function of a
  layer's activations and gradients: ``normgrad`` (every cell, layer lists), ``gradcam``,
  ``hirescam``, ``layercam``, ``gradcam++``. Parameters are processed ``chunk`` images at a
  time (memory: two copies of the parameters per image).
* ``mode="loop"``: for every image, the step is taken *in place*, the registered method runs
  through :func:`cameras.methods.saliency`, and the saved tensors are copied back -- any
  registered method, with its settings.
* ``mode="auto"`` (default): ``vmap`` where available, else ``loop``.

Either way the model comes back bit-identical (every parameter and buffer of its
``state_dict``, ``requires_grad`` flags, mode, hooks), also when the method raises. The tests
check that the two modes agree to 1e-6 in float64.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import normalize_maps
from ._guard import ModelGuard
from ._registry import (
    _check_images,
    _resolve_layer,
    info,
    method_settings,
    resolve_targets,
    saliency,
)

__all__ = ["meta_saliency", "meta_capture", "compare_modes", "VMAP_METHODS", "sgd_step"]


def _gradcam(A: Tensor, G: Tensor) -> Tensor:
    return (G.mean((2, 3), keepdim=True) * A).sum(1).clamp_min(0)


def _layer_fn(name: str) -> Callable[[dict], Callable[[Tensor, Tensor], Tensor]]:
    from . import cam

    fn = {"hirescam": cam.hirescam_map, "layercam": cam.layercam_map, "gradcam++": cam.gradcampp_map,
          "gradcam": _gradcam}[name]
    return lambda s: fn


def _normgrad_fn(s: dict) -> Callable[[Tensor, Tensor], Tensor]:
    from .normgrad import layer_map

    return lambda A, G: layer_map(A, G, s["phase1"], s["phase2"])


#: methods with a batched (vmap) meta-saliency: ``{name: settings -> f(A, G) -> (B, h, w)}``
VMAP_METHODS: dict[str, Callable[[dict], Callable[[Tensor, Tensor], Tensor]]] = {
    "normgrad": _normgrad_fn, "gradcam": _layer_fn("gradcam"), "hirescam": _layer_fn("hirescam"),
    "layercam": _layer_fn("layercam"), "gradcam++": _layer_fn("gradcam++"),
}


def _check_lr(lr: Any) -> float:
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr < 0:
        raise ValueError(f"lr must be a finite number >= 0, got {lr!r}")
    return float(lr)


# ----------------------------------------------------------------------------------------
# the loop: one in-place step per image, any method
# ----------------------------------------------------------------------------------------
def sgd_step(model: nn.Module, images: Tensor, targets: Tensor, lr: float) -> None:
    """One SGD step, in place, on the mean cross-entropy of ``targets`` (every parameter;
    ``.grad`` is not touched). Call with the model in eval mode."""
    params = list(model.parameters())
    for p in params:
        p.requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(images), targets)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
    with torch.no_grad():
        for p, g in zip(params, grads, strict=True):
            if g is not None:
                p.sub_(lr * g)


def _snapshot(model: nn.Module) -> list[tuple[Tensor, Tensor]]:
    return [(t, t.detach().clone()) for t in model.state_dict(keep_vars=True).values()]


def _restore(saved: list[tuple[Tensor, Tensor]]) -> None:
    with torch.no_grad():
        for t, copy in saved:
            t.copy_(copy)


def _loop(name: str, model: nn.Module, x: Tensor, t: Tensor, lr: float, layer: Any, s: dict) -> Tensor:
    saved = _snapshot(model)
    out = []
    try:
        for i in range(x.shape[0]):
            model.eval()
            sgd_step(model, x[i : i + 1], t[i : i + 1], lr)
            out.append(saliency(name, model, x[i : i + 1], t[i : i + 1], layer=layer, **s))
            _restore(saved)
    finally:
        _restore(saved)
    return torch.cat(out)


# ----------------------------------------------------------------------------------------
# vmap: per-image steps and maps in batched functional passes
# ----------------------------------------------------------------------------------------
class _Probe:
    """Forward hooks that record each layer's output and add a zero probe to it."""

    def __init__(self, model: nn.Module, layers: list):
        from ..hooks import resolve_layer

        self.deltas: list[Tensor] | None = None
        self.acts: dict[int, Tensor] = {}
        self.names = layers
        self.handles = [resolve_layer(model, v).register_forward_hook(self._hook(k))
                        for k, v in enumerate(layers)]

    def _hook(self, k: int):
        def fn(module, inputs, output):
            if self.deltas is None:
                return None
            if k in self.acts:
                raise RuntimeError(f"layer {self.names[k]!r} ran more than once in one forward pass")
            self.acts[k] = output
            return output + self.deltas[k]

        return fn

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _stepped_params(model, buffers, params, x, t, lr):
    from torch.func import functional_call, grad, vmap

    def loss(p, xi, ti):
        return F.cross_entropy(functional_call(model, (p, buffers), (xi[None],)), ti[None])

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*performance drop because we have not yet implemented.*")
        per = vmap(grad(loss), in_dims=(None, 0, 0))(params, x, t)
    return {n: params[n] - lr * per[n] for n in params}


def _vmap_chunk(model, probe, shapes, x, t, lr) -> tuple[list[Tensor], list[Tensor]]:
    """``(A, G)`` per layer for the images ``x`` after each one's own SGD step."""
    from torch.func import functional_call, grad, vmap

    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b.detach() for n, b in model.named_buffers()}
    new = _stepped_params(model, buffers, params, x, t, lr)
    zeros = [torch.zeros(s, dtype=x.dtype, device=x.device) for s in shapes]

    def score(deltas, p, xi, ti):
        probe.deltas, probe.acts = deltas, {}
        try:
            out = functional_call(model, (p, buffers), (xi[None],))
            acts = [probe.acts[k] for k in range(len(deltas))]
        finally:
            probe.deltas, probe.acts = None, {}
        return out[0].gather(0, ti[None])[0], acts

    with warnings.catch_warnings():  # functorch's note that some op (adaptive pooling) loops inside vmap
        warnings.filterwarnings("ignore", message=".*performance drop because we have not yet implemented.*")
        G, A = vmap(grad(score, has_aux=True), in_dims=(None, 0, 0, 0))(zeros, new, x, t)
    return [a[:, 0] for a in A], [g[:, 0] for g in G]


def _layer_shapes(model: nn.Module, probe: _Probe, x: Tensor) -> list[torch.Size]:
    probe.deltas, probe.acts = [0.0] * len(probe.names), {}  # type: ignore[list-item]
    try:
        with torch.no_grad():
            model(x[:1])
        missing = [probe.names[k] for k in range(len(probe.names)) if k not in probe.acts]
        if missing:
            raise RuntimeError(f"layer(s) {missing} did not run during the forward pass")
        return [probe.acts[k].shape for k in range(len(probe.names))]
    finally:
        probe.deltas, probe.acts = None, {}


def meta_capture(model: nn.Module, images: Tensor, targets: Tensor, layers: Any, lr: float,
                 chunk: int | None = None) -> list[tuple[Tensor, Tensor]]:
    """``[(A, G)]`` per layer, each image seen by the model after its own SGD step (``lr``) on
    the cross-entropy of its target: the batched (vmap) counterpart of
    :func:`cameras.methods.normgrad.capture_layers`. The model is not modified."""
    from .normgrad import as_layer_list

    layers = as_layer_list(layers)
    lr = _check_lr(lr)
    with ModelGuard(model):
        model.eval()
        for m in model.modules():
            if hasattr(m, "inplace"):
                m.inplace = False  # the guard restores the flags
        probe = _Probe(model, layers)
        try:
            shapes = _layer_shapes(model, probe, images)
            n_params = sum(p.numel() for p in model.parameters())
            step = chunk or max(1, int(5e7 // max(1, n_params)))
            parts = [_vmap_chunk(model, probe, shapes, images[i : i + step], targets[i : i + step], lr)
                     for i in range(0, images.shape[0], step)]
        finally:
            probe.remove()
    return [(torch.cat([p[0][k] for p in parts]).detach(), torch.cat([p[1][k] for p in parts]).detach())
            for k in range(len(layers))]


def _vmap(name: str, model: nn.Module, x: Tensor, t: Tensor, lr: float, layer: Any, s: dict,
          chunk: int | None) -> Tensor:
    from .cam import upsample
    from .normgrad import combine_maps

    fn = VMAP_METHODS[name](s)
    caps = meta_capture(model, x, t, layer, lr, chunk)
    raw = [fn(A, G) for A, G in caps]
    shape = tuple(x.shape[-2:])
    return combine_maps(raw, shape) if name == "normgrad" else upsample(raw[0], shape)


def compare_modes(method: str, model: nn.Module, images: Tensor, targets=None, *, lr: float = 1e-4,
                  **kwargs: Any) -> dict[str, float]:
    """Wall-clock seconds per image of :func:`meta_saliency` in ``"vmap"`` and ``"loop"`` mode
    on the same call, and the largest absolute difference of their maps."""
    import time

    maps, out = {}, {}
    for mode in ("vmap", "loop"):
        t0 = time.perf_counter()
        maps[mode] = meta_saliency(method, model, images, targets, lr=lr, mode=mode, **kwargs)
        out[mode] = (time.perf_counter() - t0) / images.shape[0]
    out["max_abs_diff"] = float((maps["vmap"].double() - maps["loop"].double()).abs().max())
    return out


# ----------------------------------------------------------------------------------------
# the entry point
# ----------------------------------------------------------------------------------------
def meta_saliency(method: str, model: nn.Module, images: Tensor, targets=None, *, lr: float = 1e-4,
                  layer=None, mode: str = "auto", chunk: int | None = None, **settings: Any) -> Tensor:
    """Maps of ``method`` on the model after one SGD step per image towards its target.

    ``targets``: as for :func:`cameras.methods.saliency` (``None``: the top-1 of the model as it
    is; the step and the map use the same class). ``lr``: the step (the authors: 1e-4, and
    2.5e-3 for class selectivity). ``mode``: ``"auto"`` / ``"vmap"`` / ``"loop"`` (see the
    module docstring). ``chunk``: images per vmapped pass (default: as many as fit 5e7
    parameter copies). Returns ``(B, H, W)`` in [0, 1] like :func:`saliency`; the model is left
    exactly as it was.
    """
    spec = info(method)
    s = method_settings(spec.name, **settings)
    lr = _check_lr(lr)
    if mode not in ("auto", "vmap", "loop"):
        raise ValueError(f"mode must be 'auto', 'vmap' or 'loop', got {mode!r}")
    if mode == "vmap" and spec.name not in VMAP_METHODS:
        raise ValueError(f"no batched meta-saliency for {spec.name!r} (vmap: {', '.join(VMAP_METHODS)}); "
                         "use mode='loop'")
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise ValueError(f"chunk must be a positive int or None, got {chunk!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    given = _check_images(images)
    use_vmap = spec.name in VMAP_METHODS and mode != "loop"
    with torch.inference_mode(False), ModelGuard(model):
        model.eval()
        from ._registry import _as_model_input

        x = _as_model_input(model, given)
        t = resolve_targets(model, x, targets)
        if use_vmap:
            lay = _resolve_layer(spec, model, layer)
            maps = normalize_maps(_vmap(spec.name, model, x, t, lr, lay, s, chunk).detach())
        else:
            maps = _loop(spec.name, model, x, t, lr, layer, s)
    return maps.to(device=given.device, dtype=given.dtype)

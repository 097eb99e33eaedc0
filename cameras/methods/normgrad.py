r"""NormGrad and the backprop-saliency framework of Rebuffi, Fong, Ji & Vedaldi (CVPR 2020).

*There and Back Again: Revisiting Backpropagation Saliency Methods* unifies backprop saliency
in two phases. Insert a **virtual identity layer** after a layer with activations
:math:`a(u) \in \mathbb{R}^K` at location :math:`u` and gradients :math:`g(u) = \partial S_c /
\partial a(u)` of the class score; the gradient of that layer's parameters is a sum over
locations, and each location's term is its *spatial contribution*:

=====================  ============================================  ======================
phase 1 (``phase1``)   virtual identity layer                        contribution at u
=====================  ============================================  ======================
``scaling``            per-channel scale :math:`a_k \mapsto s_k a_k`  :math:`a(u)\odot g(u)`
``conv1x1``            1x1 convolution (:math:`K\times K`)           :math:`g(u)\,a(u)^\top`
``conv3x3``            3x3 convolution (:math:`K\times 9K`)          :math:`g(u)\,\tilde a(u)^\top`
``conv3x3_depthwise``  depthwise 3x3 convolution (:math:`K\times 9`)  :math:`g_k(u)\,\tilde a_k(u)`
``bias``               per-channel bias                              :math:`g(u)`
=====================  ============================================  ======================

(:math:`\tilde a(u)`: the 3x3 neighbourhood of :math:`a` around :math:`u`, zero padded, i.e.
``F.unfold(a, 3, padding=1)``). **Phase 2** aggregates each contribution into one number per
location: ``sum`` (of its entries), ``filter_norm`` (the 2-norm of its positive entries),
``norm`` (its Frobenius norm) or ``max`` (its largest entry). **NormGrad** is
(``conv1x1``, ``norm``), :math:`\|g(u)\|\,\|a(u)\|`; **selective NormGrad**, the fork's
``norm_grad_selective``, is (``scaling``, ``filter_norm``), :math:`\|\max(a(u)\odot g(u),
0)\|`; (``scaling``, ``sum``) is HiResCAM's / gradient x activation's map before its ReLU.

**Post-processing, as the authors' grid scripts** (``resnet50_grid_saliency.py``,
``vgg16_grid_saliency.py`` of srebuffi/revisiting_saliency): each layer's map is upsampled
bilinearly to the input (``align_corners=False``) and min-max normalised per image, with *no*
ReLU (a ``sum`` map keeps its sign until the normalisation); several layers are combined by
the **product** of their normalised maps. A layer whose map is constant for an image (the
``bias`` map of a layer that feeds a global average pool) carries no information and is left
out of that image's product -- the authors skip ResNet's ``layer4`` for ``bias`` by name;
alone, such a layer gives the all-zero map (:func:`cameras.core.normalize_maps`' rule; the
scripts divide 0 by 0 there).

**Closed forms, never the outer products.** Every aggregation of an outer product
:math:`x y^\top` is a function of a few statistics of :math:`x` and :math:`y` alone: sum
:math:`= (\sum x)(\sum y)`, norm :math:`= \|x\|\|y\|`, filter norm :math:`=
\sqrt{\|x^+\|^2\|y^+\|^2 + \|x^-\|^2\|y^-\|^2}`, max :math:`= \max(x_{\max} y_{\max}, x_{\max}
y_{\min}, x_{\min} y_{\max}, x_{\min} y_{\min})`. For ``conv3x3`` the statistics of the unfolded
:math:`\tilde a(u)` are 3x3 zero-padded box sums (or max/min pools) of per-location channel
statistics, so not even the 9x unfolded activations are built; ``conv3x3_depthwise`` needs
per-channel 3x3 pools of :math:`a`. Memory stays that of :math:`a` itself; everything is
batched over images and runs on the activations' device. The tests check every
(``phase1``, ``phase2``) cell, at four layers and combined, against a plain transcription of
the authors' script in float64 on ResNet-50 and VGG16 (random weights).

The gradients of several layers come from one forward and one backward pass
(:func:`capture_layers`); :func:`normgrad_grid` turns one capture into every cell of the grid.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._registry import Call, MethodSpec, register

__all__ = [
    "PHASE1",
    "PHASE2",
    "VARIANTS",
    "normgrad_map",
    "layer_map",
    "capture_layers",
    "combine_maps",
    "normgrad_maps",
    "normgrad_grid",
    "cell_name",
    "gradient_mean_share",
    "grid_arrays",
    "grid_layers",
    "as_layer_list",
]

PHASE1 = ("scaling", "conv1x1", "conv3x3", "conv3x3_depthwise", "bias")
PHASE2 = ("sum", "filter_norm", "norm", "max")
#: named cells of the grid: NormGrad, and the fork's selective NormGrad
VARIANTS = {"normgrad": ("conv1x1", "norm"), "selective": ("scaling", "filter_norm")}
COMBINED = "combined"


def check_phases(phase1: Any, phase2: Any) -> None:
    """One-line ``ValueError`` for an unknown phase 1 or phase 2."""
    if phase1 not in PHASE1:
        raise ValueError(f"phase1 must be one of {', '.join(PHASE1)}; got {phase1!r}")
    if phase2 not in PHASE2:
        raise ValueError(f"phase2 must be one of {', '.join(PHASE2)}; got {phase2!r}")


# ----------------------------------------------------------------------------------------
# phase 1 x phase 2 at one layer, in closed form
# ----------------------------------------------------------------------------------------
def _box(x: Tensor) -> Tensor:
    """3x3 sums with zero padding (what summing an unfolded neighbourhood gives)."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=True) * 9


def _maxpool0(x: Tensor) -> Tensor:
    """3x3 maxima with *zero* padding (``F.unfold`` pads with zeros, not -inf)."""
    return F.max_pool2d(F.pad(x, (1, 1, 1, 1), value=0.0), 3, stride=1)


def _stats(x: Tensor, phase2: str) -> dict[str, Tensor]:
    """The statistics over channels (dim 1) of ``(B, K, h, w)`` that ``phase2`` needs, as
    ``(B, 1, h, w)``."""
    if phase2 == "sum":
        return {"s": x.sum(1, keepdim=True)}
    if phase2 == "norm":
        return {"n2": x.pow(2).sum(1, keepdim=True)}
    if phase2 == "filter_norm":
        return {"p2": x.clamp_min(0).pow(2).sum(1, keepdim=True),
                "m2": x.clamp_max(0).pow(2).sum(1, keepdim=True)}
    return {"mx": x.amax(1, keepdim=True), "mn": x.amin(1, keepdim=True)}


def _unfolded(st: dict[str, Tensor]) -> dict[str, Tensor]:
    """Statistics of the zero-padded 3x3 neighbourhood vector from per-location ones."""
    out = {}
    for k, v in st.items():
        if k == "mx":
            out[k] = _maxpool0(v)
        elif k == "mn":
            out[k] = -_maxpool0(-v)
        else:
            out[k] = _box(v)
    return out


def _outer(x: dict[str, Tensor], y: dict[str, Tensor], phase2: str) -> Tensor:
    """``phase2`` of the outer products ``x(u) y(u)^T`` from the two vectors' statistics."""
    if phase2 == "sum":
        return x["s"] * y["s"]
    if phase2 == "norm":
        return x["n2"].sqrt() * y["n2"].sqrt()
    if phase2 == "filter_norm":
        return torch.hypot(x["p2"].sqrt() * y["p2"].sqrt(), x["m2"].sqrt() * y["m2"].sqrt())
    pairs = (x["mx"] * y["mx"], x["mx"] * y["mn"], x["mn"] * y["mx"], x["mn"] * y["mn"])
    return torch.stack(pairs).amax(0)


def _vector(w: Tensor, phase2: str) -> Tensor:
    """``phase2`` of the per-location vectors ``w(u)`` (channels in dim 1)."""
    if phase2 == "sum":
        return w.sum(1, keepdim=True)
    if phase2 == "norm":
        return w.norm(dim=1, keepdim=True)
    if phase2 == "filter_norm":
        return w.clamp_min(0).norm(dim=1, keepdim=True)
    return w.amax(1, keepdim=True)


def _depthwise(A: Tensor, G: Tensor, phase2: str) -> Tensor:
    """``phase2`` of ``g_k(u) * unfold(a)_k(u)`` over (channel k, 3x3 offset)."""
    if phase2 == "sum":
        return (G * _box(A)).sum(1, keepdim=True)
    g2 = G.pow(2)
    if phase2 == "norm":
        return (g2 * _box(A.pow(2))).sum(1, keepdim=True).sqrt()
    if phase2 == "filter_norm":
        pos = torch.where(G > 0, _box(A.clamp_min(0).pow(2)), _box(A.clamp_max(0).pow(2)))
        return (g2 * pos).sum(1, keepdim=True).sqrt()
    best = torch.where(G >= 0, G * _maxpool0(A), G * -_maxpool0(-A))
    return best.amax(1, keepdim=True)


def layer_map(A: Tensor, G: Tensor, phase1: str = "conv1x1", phase2: str = "norm") -> Tensor:
    """The framework's map at a layer's resolution: ``(B, h, w)`` from activations ``A`` and
    gradients ``G`` (both ``(B, K, h, w)``), no ReLU, no normalisation."""
    check_phases(phase1, phase2)
    if A.shape != G.shape or A.dim() != 4:
        raise ValueError(f"A and G must be (B, K, h, w) of one shape, got {tuple(A.shape)} and {tuple(G.shape)}")
    if phase1 == "scaling":
        out = _vector(A * G, phase2)
    elif phase1 == "bias":
        out = _vector(G, phase2)
    elif phase1 == "conv3x3_depthwise":
        out = _depthwise(A, G, phase2)
    else:
        a = _stats(A, phase2)
        out = _outer(_unfolded(a) if phase1 == "conv3x3" else a, _stats(G, phase2), phase2)
    return out[:, 0]


def normgrad_map(A: Tensor, G: Tensor) -> Tensor:
    """NormGrad at the layer's resolution: ``||g(u)|| * ||a(u)||`` per location ``u``."""
    return G.norm(dim=1) * A.norm(dim=1)


# ----------------------------------------------------------------------------------------
# one forward / backward pass for several layers
# ----------------------------------------------------------------------------------------
def as_layer_list(layer: Any) -> list:
    """``layer`` (a name / module, or a list or tuple of them) as a non-empty list without
    repeats."""
    layers = list(layer) if isinstance(layer, (list, tuple)) else [layer]
    if not layers:
        raise ValueError("layer must name at least one layer (got an empty list)")
    keys = [id(v) if isinstance(v, nn.Module) else v for v in layers]
    if len(set(keys)) != len(keys):
        raise ValueError(f"layer lists a layer twice: {layer!r}")
    return layers


def capture_layers(model: nn.Module, images: Tensor, targets: Tensor, layers: Sequence
                   ) -> list[tuple[Tensor, Tensor]]:
    """``[(A, G)]`` per layer: its output and ``d sum_b logit[b, targets[b]] / d A``.

    One forward pass (recorded from the first listed layer that runs; nothing below it) and
    one backward pass. Each hooked module hands a *clone* of its output on, so in-place
    operations after it (ReLU(inplace), DenseNet's ``F.relu(..., inplace=True)``) cannot change
    the recorded ``A``. A layer whose output does not depend on an earlier recorded layer
    becomes a leaf of its own (its gradient is exact either way).
    """
    from ..hooks import resolve_layer

    modules = [resolve_layer(model, v) for v in layers]
    rec: dict[int, Tensor] = {}

    def hook(k: int):
        def fn(module, inputs, output):
            if k in rec:
                raise RuntimeError(f"layer {layers[k]!r} ran more than once in one forward pass")
            if not isinstance(output, Tensor) or output.dim() != 4:
                raise ValueError(f"layer {layers[k]!r} must output a (B, K, h, w) tensor")
            torch.set_grad_enabled(True)  # record from here on (restored after the pass)
            if not output.requires_grad:
                output = output.detach().requires_grad_(True)
            rec[k] = output
            return output.clone()

        return fn

    handles = [m.register_forward_hook(hook(k)) for k, m in enumerate(modules)]
    try:
        with torch.no_grad():
            logits = model(images)
    finally:
        for h in handles:
            h.remove()
    missing = [layers[k] for k in range(len(layers)) if k not in rec]
    if missing:
        raise RuntimeError(f"layer(s) {missing} did not run during the forward pass")
    if not isinstance(logits, Tensor) or logits.dim() != 2:
        raise ValueError("the model must return logits of shape (B, num_classes)")
    with torch.enable_grad():
        score = logits.gather(1, targets.view(-1, 1).to(logits.device)).sum()
        wrt = [rec[k] for k in range(len(layers))]
        grads = torch.autograd.grad(score, wrt, allow_unused=True) if score.requires_grad else [None] * len(wrt)
    dead = [layers[k] for k, g in enumerate(grads) if g is None]
    if dead:
        raise RuntimeError(f"the logits do not depend on layer(s) {dead} (no gradient path)")
    return [(rec[k].detach(), g.detach()) for k, g in enumerate(grads)]


# ----------------------------------------------------------------------------------------
# post-processing: upsample, min-max, product
# ----------------------------------------------------------------------------------------
def _constant(m: Tensor) -> Tensor:
    """``(B,)``: whether each ``(h, w)`` map is constant (up to rounding)."""
    lo, hi = m.reshape(m.shape[0], -1).aminmax(dim=1)
    return (hi - lo) <= 64 * torch.finfo(m.dtype).eps * torch.maximum(hi.abs(), lo.abs())


def _minmax_(m: Tensor) -> Tensor:
    """Min-max normalise each map of ``(B, H, W)`` in place (the authors' ``out - min; out / max``)."""
    flat = m.view(m.shape[0], -1)
    lo, hi = flat.aminmax(dim=1)
    flat.sub_(lo[:, None]).div_((hi - lo).clamp_min(torch.finfo(m.dtype).tiny)[:, None])
    return m


def combine_maps(raw: Sequence[Tensor], shape: tuple[int, int]) -> Tensor:
    """The authors' post-processing of layer maps ``[(B, h_l, w_l)]``: each upsampled to
    ``shape`` (bilinear), min-max normalised per image, multiplied; a map that is constant
    for an image is left out of that image's product (alone it gives zeros)."""
    from .cam import upsample

    out, used = None, None
    for m in raw:
        const = _constant(m)
        any_const = bool(const.any())
        if any_const:
            m = torch.where(const[:, None, None], torch.zeros_like(m), m)
        up = upsample(m, shape)
        norm = _minmax_(up.clone() if up.data_ptr() == m.data_ptr() else up.contiguous())
        if any_const:
            norm[const] = 1.0
        out = norm if out is None else out.mul_(norm)
        used = ~const if used is None else used | ~const
    assert out is not None and used is not None
    if not bool(used.all()):
        out[~used] = 0.0
    return out


def normgrad_maps(model: nn.Module, images: Tensor, targets: Tensor, layer: Any,
                  phase1: str = "conv1x1", phase2: str = "norm") -> Tensor:
    """One cell of the framework for one layer or the product over a list of layers:
    ``(B, H, W)`` in [0, 1] (call with the model in eval mode; :func:`saliency` does)."""
    check_phases(phase1, phase2)
    layers = as_layer_list(layer)
    caps = capture_layers(model, images, targets, layers)
    return combine_maps([layer_map(A, G, phase1, phase2) for A, G in caps], tuple(images.shape[-2:]))


def cell_name(phase1: str, phase2: str) -> str:
    """The grid cell's key in :func:`normgrad_grid`: ``"conv1x1/norm"``."""
    return f"{phase1}/{phase2}"


def normgrad_grid(model: nn.Module, images: Tensor, targets: Tensor, layers: Sequence,
                  phase1: Sequence[str] = PHASE1, phase2: Sequence[str] = PHASE2,
                  combined: bool = True, extra: Sequence[str] = (), meta_lr: float | None = None,
                  ) -> dict[tuple[str, str], Tensor]:
    """Every (phase 1, phase 2) cell at every layer of ``layers`` (and their product, layer
    ``"combined"``) from one forward and one backward pass.

    Returns ``{(layer, "phase1/phase2"): (B, H, W)}`` maps in [0, 1], layers as given (module
    names). ``extra``: other activation x gradient methods of the same pass, one map per layer
    (``"gradcam"``, ``"hirescam"``, ``"layercam"``, ``"gradcam++"``, as the registered
    methods). ``meta_lr``: the maps after one SGD step per image on the cross-entropy of its
    target (:func:`cameras.methods.meta.meta_capture`). Targets: a ``(B,)`` LongTensor.
    """
    from ..hooks import eval_mode
    from .meta import VMAP_METHODS, meta_capture

    layers = as_layer_list(layers)
    for p1 in phase1:
        for p2 in phase2:
            check_phases(p1, p2)
    unknown = [e for e in extra if e not in VMAP_METHODS or e == "normgrad"]
    if unknown:
        raise ValueError(f"extra must name methods of {', '.join(m for m in VMAP_METHODS if m != 'normgrad')}; "
                         f"got {unknown}")
    shape = tuple(images.shape[-2:])
    with eval_mode(model), torch.enable_grad():
        if meta_lr is None:
            caps = capture_layers(model, images, targets, layers)
        else:
            caps = meta_capture(model, images, targets, layers, meta_lr)
    out: dict[tuple[str, str], Tensor] = {}
    for p1 in phase1:
        for p2 in phase2:
            raw = [layer_map(A, G, p1, p2) for A, G in caps]
            for name, m in zip(layers, raw, strict=True):
                out[(str(name), cell_name(p1, p2))] = combine_maps([m], shape)
            if combined and len(layers) > 1:
                out[(COMBINED, cell_name(p1, p2))] = combine_maps(raw, shape)
    for e in extra:
        fn = VMAP_METHODS[e]({})
        for name, (A, G) in zip(layers, caps, strict=True):
            out[(str(name), e)] = combine_maps([fn(A, G)], shape)
    return out


def grid_arrays(maps: dict[tuple[str, str], Tensor], names: Sequence[str], keep=None, scale: float = 0.5
                ) -> dict[str, Any]:
    """:func:`normgrad_grid` maps as 8-bit arrays ``{"name|layer|cell": (h, w) uint8}`` resized
    by ``scale`` (bilinear), for storing figures; ``keep(cell) -> bool`` selects cells."""
    out = {}
    for (layer, cell), m in maps.items():
        if keep is None or keep(cell):
            small = F.interpolate(m[:, None].float(), scale_factor=scale, mode="bilinear", align_corners=False)[:, 0]
            q = (small.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
            out.update({f"{n}|{layer}|{cell}": q[j] for j, n in enumerate(names)})
    return out


def gradient_mean_share(G: Tensor) -> Tensor:
    r"""``(B,)``: how much of the gradient is its spatial mean,
    :math:`\|\sum_u g(u)\|^2 / (HW \sum_u \|g(u)\|^2)` in [0, 1]; 1 when the gradient is the
    same at every location (a layer that feeds a global average pool), where Grad-CAM's
    spatial averaging loses nothing."""
    B, K, h, w = G.shape
    mean = G.sum((2, 3))
    return mean.pow(2).sum(1) / (h * w * G.pow(2).sum((1, 2, 3))).clamp_min(torch.finfo(G.dtype).tiny)


# ----------------------------------------------------------------------------------------
# the layers of the authors' grid scripts
# ----------------------------------------------------------------------------------------
def grid_layers(model: nn.Module | str) -> list[str]:
    """Four depths as in the authors' grid scripts: after the 2nd, 3rd and 4th downsampling
    of the feature extractor and right before global pooling (``model``: a network, or a name
    of :func:`cameras.models.available_models`).

    ResNet: ``layer2.0``, ``layer3.0``, ``layer4.0``, ``layer4`` (``resnet50_grid_saliency.py``).
    VGG: the 2nd to 5th max-pool (``vgg16_grid_saliency.py`` uses VGG16-BN's
    ``features.13/23/33/43``; VGG16 without BN: ``features.9/16/23/30``). EfficientNet-Lite:
    the first block at stride 8, 16 and 32, then the head activation (the same rule).
    Names are prefixed when the network is wrapped; other networks raise a ``ValueError``.
    """
    from .layers import _find

    if isinstance(model, str):
        return list(_grid_layers_of(model))
    found = _find(model)
    if found is None:
        raise ValueError(f"no grid layers for {type(model).__name__}; pass the layers yourself")
    family, prefix, net = found
    if family == "resnet":
        names = ["layer2.0", "layer3.0", "layer4.0", "layer4"]
    elif family == "vgg":
        pools = [i for i, m in enumerate(net.features) if isinstance(m, nn.MaxPool2d)]
        names = [f"features.{i}" for i in pools[1:5]]
    elif family == "efficientnet":
        names = _lite_grid_layers(net)
    else:
        raise ValueError(f"no grid layers for {family}; pass the layers yourself")
    return [prefix + n for n in names]


@functools.cache
def _grid_layers_of(name: str) -> tuple[str, ...]:
    from ..models import get_spec

    return tuple(grid_layers(get_spec(name).build(False)[0]))


def _lite_grid_layers(net: nn.Module) -> list[str]:
    stride, first = 2, {}
    for i, b in enumerate(net._blocks):
        st = b._depthwise_conv.stride
        stride *= st[0] if isinstance(st, (tuple, list)) else st
        first.setdefault(stride, i)
    head = "_head_act" if hasattr(net, "_head_act") else "_bn1"
    return [f"_blocks.{first[s]}" for s in (8, 16, 32)] + [head]


# ----------------------------------------------------------------------------------------
# the registered method
# ----------------------------------------------------------------------------------------
def _check(s: dict) -> None:
    check_phases(s["phase1"], s["phase2"])


def _normgrad(call: Call) -> Tensor:
    s = call.settings
    return normgrad_maps(call.model, call.images, call.targets, call.layer, s["phase1"], s["phase2"])


register(MethodSpec(
    "normgrad", _normgrad, defaults={"phase1": "conv1x1", "phase2": "norm"}, check=_check,
    reference="Rebuffi, Fong, Ji & Vedaldi, There and back again, CVPR 2020",
    summary="minmax(up(||g_u|| * ||a_u||)): norm of a virtual 1x1 identity conv's weight-gradient "
            "term per location; other phase1/phase2 cells and layer lists (product) as settings",
    label="NormGrad", group="paper", layer_role="normgrad", order=2,
))

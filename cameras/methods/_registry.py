"""The registry behind :func:`cameras.methods.saliency` (one call for every method)."""

from __future__ import annotations

import copy
import difflib
import json
import re
import warnings
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..core import as_targets, normalize_maps
from ._guard import ModelGuard

__all__ = [
    "MethodSpec",
    "Call",
    "register",
    "names",
    "label",
    "LAYER_ROLES",
    "info",
    "method_settings",
    "saliency",
    "resolve_targets",
]

LayerKind = Literal["required", "optional", "none"]
Group = Literal["paper", "extra"]
#: What a method's default layer is, per architecture (see :mod:`cameras.methods.layers`):
#: ``"cam"`` the last convolutional block (CAM-type methods), ``"ebp"`` the excitation-backprop
#: layer, ``("ebp", "contrast")`` a (saliency, contrast) pair, ``"normgrad"`` the end of the
#: penultimate stage (NormGrad's layer in the CAMERAS paper's comparison: VGG16 relu4_3, ResNet
#: layer3), ``None`` the input / no layer.
LAYER_ROLES = ("cam", "ebp", ("ebp", "contrast"), "normgrad", None)


@dataclass
class Call:
    """Everything a method implementation receives (already validated)."""

    model: nn.Module
    images: Tensor  # (B, C, H, W)
    targets: Tensor | None  # (B,) LongTensor on images.device; None only for own-top-1 methods
    layer: Any  # str / module / tuple for cMWP / None
    settings: dict[str, Any]
    guard: ModelGuard

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.images.shape[-2:])  # type: ignore[return-value]


@dataclass(frozen=True)
class MethodSpec:
    """Description of one registered saliency method.

    Attributes
    ----------
    name: registry name (``saliency(name, ...)``).
    fn: ``fn(call: Call) -> Tensor`` returning raw maps ``(B, H, W)`` at input resolution.
    defaults: the settings the method takes and their defaults (the paper / TorchRay setting).
    layer: ``"required"`` (a layer is needed; default from :func:`default_layers`),
        ``"optional"`` (default: the input image), ``"none"`` (takes no layer).
    batched: whether the B images run through the model together.
    deterministic: whether two calls give the same maps (RISE is seeded, so it is).
    source: where the computation comes from (``"torchray"``, ``"cameras"``, ...).
    reference: the paper.
    summary: one line on what the map is.
    own_top1: with ``targets=None`` the method picks its own class (CAMERAS: top-1 at the
        reference size) instead of the top-1 at the input resolution.
    check: optional validator ``check(settings) -> None`` raising ``ValueError``/``TypeError``.
    label: display name (the paper's wording where it has one), for tables and legends.
    short: short display name for figure panels (default: ``label``).
    group: ``"paper"`` (CAMERAS and the baselines of the paper's Table 1) or ``"extra"``.
    layer_role: which layer of an architecture the method uses by default (:data:`LAYER_ROLES`);
        :func:`cameras.methods.default_layers` builds its table from it.
    order: position in :func:`names` (lower first; ties in registration order).
    """

    name: str
    fn: Callable[[Call], Tensor]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    layer: LayerKind = "required"
    batched: bool = True
    deterministic: bool = True
    source: str = "cameras"
    reference: str = ""
    summary: str = ""
    own_top1: bool = False
    check: Callable[[dict], None] | None = None
    label: str = ""
    short: str = ""
    group: Group = "extra"
    layer_role: Any = "cam"
    order: float = float("inf")

    def __post_init__(self):
        if not self.label:
            object.__setattr__(self, "label", self.name)
        if not self.short:
            object.__setattr__(self, "short", self.label)


_REGISTRY: dict[str, MethodSpec] = {}

# Warnings of TorchRay 1.0.0.2 under recent PyTorch that say nothing about the user's call:
# it instantiates autograd Functions (ReLU patches) and calls torch.meshgrid without indexing.
_QUIET = (
    r".*should not be instantiated.*",
    r"torch\.meshgrid: in an upcoming release.*",
)


def register(spec: MethodSpec) -> MethodSpec:
    """Add a method to the registry (names are unique)."""
    if spec.name in _REGISTRY:
        raise ValueError(f"saliency method {spec.name!r} is already registered")
    if spec.group not in ("paper", "extra"):
        raise ValueError(f"{spec.name}: group must be 'paper' or 'extra', got {spec.group!r}")
    if spec.layer_role not in LAYER_ROLES:
        raise ValueError(f"{spec.name}: layer_role must be one of {LAYER_ROLES}, got {spec.layer_role!r}")
    _REGISTRY[spec.name] = spec
    return spec


def names(group: Group | None = None) -> list[str]:
    """Names of the registered saliency methods (of one ``group`` if given), in canonical order.

    The order is the specs' ``order`` (CAMERAS, then the paper's baselines in Table 1's order,
    then the extras), ties broken by registration order.
    """
    ranked = sorted(enumerate(_REGISTRY.values()), key=lambda t: (t[1].order, t[0]))
    return [s.name for _, s in ranked if group is None or s.group == group]


def label(name: str, short: bool = False) -> str:
    """Display name of a method (``short=True``: the one for figure panels); unknown names are
    returned unchanged, so tables can hold non-method rows too."""
    spec = _REGISTRY.get(name)
    if spec is None:
        return name
    return spec.short if short else spec.label


def info(name: str) -> MethodSpec:
    """The :class:`MethodSpec` of ``name`` (clear error listing the valid names)."""
    if not isinstance(name, str):
        raise TypeError(f"method name must be a str, got {type(name).__name__}")
    key = name.strip().lower()
    if key in _REGISTRY:
        return _REGISTRY[key]
    close = difflib.get_close_matches(key, list(_REGISTRY), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(
        f"unknown saliency method {name!r}.{hint} Valid methods: {', '.join(_REGISTRY)}."
    )


def method_settings(name: str, **overrides: Any) -> dict[str, Any]:
    """The full settings of method ``name``: its defaults updated with ``overrides``.

    Raises a :class:`ValueError` naming the method, the unknown setting(s) and the settings it
    does take. The result is what a run records (JSON-serialisable for the built-in methods).
    """
    spec = info(name)
    unknown = sorted(set(overrides) - set(spec.defaults))
    if unknown:
        takes = ", ".join(spec.defaults) if spec.defaults else "no settings"
        extra = ""
        if "layer" in unknown or "layers" in unknown:
            extra = " (pass the layer as saliency(..., layer=...))"
        raise ValueError(
            f"saliency method {spec.name!r} does not take setting(s) {', '.join(unknown)}{extra}; "
            f"it takes: {takes}"
        )
    settings = {k: copy.deepcopy(v) for k, v in spec.defaults.items()}
    settings.update(overrides)
    if spec.check is not None:
        spec.check(settings)
    return settings


def settings_json(settings: Mapping[str, Any]) -> str:
    """Settings as compact JSON (tuples become lists; other objects their ``repr``)."""
    return json.dumps(settings, sort_keys=True, default=repr, separators=(",", ":"))


# ----------------------------------------------------------------------------------------
# targets
# ----------------------------------------------------------------------------------------
_NUM_CLASSES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _logits(model: nn.Module, images: Tensor) -> Tensor:
    with torch.no_grad():
        out = model(images)
    if not isinstance(out, Tensor) or out.dim() != 2:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"the model must return logits of shape (B, num_classes); got {shape}")
    return out


def resolve_targets(model: nn.Module, images: Tensor, targets) -> Tensor:
    """``targets`` (None = top-1, an int, or B ints / LongTensor) as a validated ``(B,)`` tensor.

    Call with the model in eval mode. The number of classes is found with one forward pass of
    one image and cached per model.
    """
    B = images.shape[0]
    if targets is None:
        logits = _logits(model, images)
        _NUM_CLASSES[model] = logits.shape[1]
        return logits.argmax(dim=1).to(images.device)
    if model not in _NUM_CLASSES:
        _NUM_CLASSES[model] = _logits(model, images[:1]).shape[1]
    return as_targets(targets, B, _NUM_CLASSES[model], device=images.device)


# ----------------------------------------------------------------------------------------
# checks
# ----------------------------------------------------------------------------------------
def _check_images(images) -> Tensor:
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a (B, C, H, W) float tensor, got {type(images).__name__}")
    if images.dim() == 3:
        raise ValueError(
            f"images must be a batch (B, C, H, W); got shape {tuple(images.shape)} "
            "(use images.unsqueeze(0))"
        )
    if images.dim() != 4 or min(images.shape) == 0:
        raise ValueError(f"images must have shape (B, C, H, W) with no empty axis, got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"images must be a normalised float tensor, got dtype {images.dtype}")
    if not bool(torch.isfinite(images).all()):
        raise ValueError("images contain NaN or infinite values")
    return images


def _resolve_layer(spec: MethodSpec, model: nn.Module, layer):
    if spec.layer == "none":
        if layer is not None:
            raise ValueError(
                f"saliency method {spec.name!r} works on the whole image and takes no layer "
                f"(got layer={layer!r})"
            )
        return None
    if layer is not None:
        return layer
    if spec.layer == "optional":
        return None
    from .layers import architecture, default_layers

    chosen = default_layers(model).get(spec.name)
    if chosen is None:
        raise ValueError(
            f"no default layer for {spec.name!r} on {architecture(model)}; "
            "pass layer=... (see cameras.methods.default_layers and cameras.hooks.layer_names)"
        )
    return chosen


def _require_backend(spec: MethodSpec) -> None:
    """TorchRay-backed methods (``source="torchray <version>"``) need the optional ``paper``
    extra: say so in one line."""
    if not re.match(r"torchray \d", spec.source.lower()):
        return
    import importlib.util

    if importlib.util.find_spec("torchray") is None:
        raise ImportError(
            f"saliency method {spec.name!r} runs TorchRay, which is not installed: "
            "pip install 'cameras[paper]' (or pip install torchray==1.0.0.2)"
        )


def _as_model_input(model: nn.Module, images: Tensor) -> Tensor:
    """``images`` in the model's floating dtype, on its device, as a normal (not inference)
    tensor; the maps are returned in the caller's dtype and device."""
    from ..hooks import model_dtype_device

    dtype, device = model_dtype_device(model)
    if images.is_inference():
        images = images.clone()
    return images.to(dtype=dtype or images.dtype, device=device or images.device)


def _refuse_reused_layers(model: nn.Module, layer, settings: dict) -> None:
    """Refuse a layer that runs more than once in one forward pass (for every method).

    A forward pre-hook on the model starts each pass; a forward hook on each layer counts
    its calls and raises on the second. Both hooks are removed by the :class:`ModelGuard`
    the caller holds (they are registered inside it).
    """
    from ..hooks import layer_name, resolve_layer

    named = list(layer) if isinstance(layer, (tuple, list)) else [layer]
    named += [settings.get("contrast_layer"), settings.get("classifier_layer")]
    modules = {id(m): m for m in (resolve_layer(model, n) for n in named if n is not None)}
    if not modules:
        return
    calls: dict[int, int] = {}

    def start(module, inputs):
        calls.clear()

    def count(module, inputs, output):
        calls[id(module)] = calls.get(id(module), 0) + 1
        if calls[id(module)] > 1:
            raise RuntimeError(
                f"layer {layer_name(model, module)!r} ran more than once in one forward pass; "
                "choose a layer that runs exactly once (e.g. a block, not a shared activation)"
            )

    model.register_forward_pre_hook(start)
    for m in modules.values():
        m.register_forward_hook(count)


# ----------------------------------------------------------------------------------------
# the one entry point
# ----------------------------------------------------------------------------------------
def saliency(
    method: str,
    model: nn.Module,
    images: Tensor,
    targets=None,
    layer=None,
    **settings: Any,
) -> Tensor:
    """Saliency maps of ``method`` for ``images``: ``(B, H, W)`` in [0, 1], never NaN.

    Parameters
    ----------
    method:
        One of :func:`names` (``"cameras"``, ``"gradcam"``, ``"rise"``, ...).
    model:
        Classifier returning logits ``(B, num_classes)``. It is used in eval mode for the call
        and left exactly as it was (hooks, flags, ``requires_grad``, mode) even on error.
    images:
        ``(B, C, H, W)`` normalised float tensor; another float dtype than the model's is cast
        to the model's (maps come back in the images' dtype and device).
    targets:
        ``None`` (each image's top-1 at the input resolution; CAMERAS uses its own reference
        size, see :class:`cameras.Cameras`), an int (also a numpy integer), an ImageNet class
        name (1000-class models), or ``B`` ints / names / a LongTensor.
    layer:
        Layer name or module for layer-based methods (default: :func:`default_layers`); for
        ``contrastive_excitation_backprop`` a ``(saliency_layer, contrast_layer)`` pair is
        accepted too. Methods that work on the whole image reject a layer. A layer that runs
        more than once in one forward pass is refused by every method (``RuntimeError``).
    **settings:
        Method settings (see :func:`method_settings`); unknown ones raise a ``ValueError``.

    Notes
    -----
    Every map is brought to the input's resolution by the method (bilinear, as TorchRay) and
    then min-max normalised per map with :func:`cameras.core.normalize_maps` (a constant map
    becomes zeros).
    """
    spec = info(method)
    s = method_settings(spec.name, **settings)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _require_backend(spec)
    given = _check_images(images)
    lay = _resolve_layer(spec, model, layer)
    with torch.inference_mode(False), ModelGuard(model) as guard:
        model.eval()
        images = _as_model_input(model, given)
        if targets is None and spec.own_top1:
            tgt = None
        else:
            tgt = resolve_targets(model, images, targets)
        _refuse_reused_layers(model, lay, s)
        with torch.enable_grad(), warnings.catch_warnings():
            for msg in _QUIET:
                warnings.filterwarnings("ignore", message=msg)
            raw = spec.fn(Call(model, images, tgt, lay, s, guard))
    images = given
    raw = raw.detach()
    if raw.dim() == 4 and raw.shape[1] == 1:
        raw = raw[:, 0]
    expected = (images.shape[0], *images.shape[-2:])
    if tuple(raw.shape) != expected:
        raise RuntimeError(
            f"method {spec.name!r} returned maps of shape {tuple(raw.shape)}, expected {expected}"
        )
    if not bool(torch.isfinite(raw).all()):
        warnings.warn(
            f"{spec.name}: the raw maps contained NaN/inf values; they were replaced "
            "(NaN -> 0, +-inf -> the largest/smallest finite value) before normalisation",
            RuntimeWarning,
            stacklevel=2,
        )
        raw = torch.nan_to_num(raw.float(), nan=0.0)
    return normalize_maps(raw.to(images.device)).to(images.dtype)

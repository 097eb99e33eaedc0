"""Capturing one layer's activations and the gradients of a class score with respect to them.

Every map in this project that is built from a layer's activations (CAMERAS, Grad-CAM,
HiResCAM, NormGrad, ...) goes through :class:`LayerCapture`. It owns a single forward hook,
is used as a context manager and always removes the hook, also when the forward pass or the
backward pass raises.

Two details matter for speed and for correctness:

* **No graph below the layer.** :meth:`LayerCapture.forward` runs the model under
  :func:`torch.no_grad` and switches gradient recording on inside the hook, right where the
  layer hands its output on. Nothing below the layer is recorded (no saved tensors, no
  parameter gradients), and the backward pass runs only from the logits down to the layer.
* **The module's own output, even with in-place ops after it.** The hook records a detached
  leaf ``A`` (sharing storage with the module's output) and hands a *clone* of it on to the
  rest of the network. An in-place operation after the layer (torchvision's DenseNet applies
  ``F.relu(features, inplace=True)`` to the ``features`` output) then changes the clone, never
  ``A``, and ``d score / d A`` is exact. This plays the role that tensor hooks play in
  pytorch-grad-cam.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

__all__ = [
    "LayerCapture",
    "resolve_layer",
    "layer_names",
    "layer_name",
    "class_scores_grad",
    "locate_layer",
    "eval_mode",
    "check_input_channels",
    "model_dtype_device",
]

# Modules whose output is a pooled summary (its grid is set by the pooling, not by the input):
# never the layer whose activations are explained.
_POOLING = (
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.modules.pooling._LPPoolNd,
)


def layer_names(model: nn.Module) -> list[str]:
    """Names of all sub-modules of ``model`` (as accepted by :func:`resolve_layer`)."""
    return [name for name, _ in model.named_modules() if name]


def resolve_layer(model: nn.Module, layer: str | nn.Module) -> nn.Module:
    """Return the sub-module of ``model`` called ``layer`` (or ``layer`` itself if a module).

    An unknown name raises a :class:`ValueError` that lists the closest valid names and the
    top-level ones.
    """
    if isinstance(layer, nn.Module):
        if not any(m is layer for m in model.modules()):
            raise ValueError("the given layer module is not a sub-module of the model")
        return layer
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a module name (str) or an nn.Module, got {type(layer).__name__}")
    modules = dict(model.named_modules())
    if layer and layer in modules:
        return modules[layer]
    names = layer_names(model)
    close = difflib.get_close_matches(layer, names, n=5, cutoff=0.5)
    top = [n for n in names if "." not in n]
    msg = f"unknown layer {layer!r} for {type(model).__name__}."
    if close:
        msg += f" Closest names: {', '.join(close)}."
    msg += f" Top-level layers: {', '.join(top)}. ({len(names)} valid names in all; see cameras.hooks.layer_names(model).)"
    raise ValueError(msg)


def layer_name(model: nn.Module, layer: str | nn.Module) -> str:
    """The qualified name of ``layer`` (a name or a sub-module) inside ``model``."""
    if isinstance(layer, str):
        resolve_layer(model, layer)
        return layer
    module = resolve_layer(model, layer)
    return next(name for name, m in model.named_modules() if m is module)


def model_dtype_device(model: nn.Module) -> tuple[torch.dtype | None, torch.device | None]:
    """Floating dtype and device of the model's first floating parameter (or buffer)."""
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            return t.dtype, t.device
    return None, None


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` in eval mode inside the block and restore every module's ``training``
    flag afterwards (also on error). Batch-norm running statistics are not updated in eval
    mode, so a model in training mode comes back exactly as it was."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


@contextmanager
def check_input_channels(model: nn.Module) -> Iterator[None]:
    """Inside the block, the first 2-d convolution that runs checks the channels it receives.

    A wrong channel count (a gray or RGBA tensor for an RGB network) then raises a
    :class:`ValueError` naming both numbers before any convolution has run, instead of a
    shape error from inside the convolution.
    """
    state = {"done": False}

    def pre_hook(module: nn.Conv2d, inputs):
        if state["done"]:
            return
        state["done"] = True
        x = inputs[0] if inputs else None
        if isinstance(x, Tensor) and x.dim() == 4 and x.shape[1] != module.in_channels:
            name = next((n for n, m in model.named_modules() if m is module), "?")
            raise ValueError(
                f"images have {x.shape[1]} channel{'s' if x.shape[1] != 1 else ''} but the model's first convolution "
                f"({name!r}) expects {module.in_channels}; convert the images (e.g. gray -> RGB "
                "by repeating the channel, RGBA -> RGB by compositing)"
            )

    handles = [m.register_forward_pre_hook(pre_hook) for m in model.modules()
               if isinstance(m, nn.Conv2d)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _layer_candidates(model: nn.Module, example: Tensor) -> list[tuple[str, tuple[int, ...]]]:
    """``(name, output shape)`` of the modules that may be explained, last to run first.

    Runs ``model(example)`` once with a forward hook on every sub-module. A candidate ran
    exactly once, returned a 4-d tensor on a grid larger than 1 x 1, and is not a pooling
    layer, nor a module that passes a pooling layer's output on unchanged (a container that
    ends in one).
    """
    order: list[tuple[str, Tensor, bool]] = []  # completion order; outputs kept alive
    calls: dict[str, int] = {}
    pooled: set[int] = set()

    def make(name: str):
        def hook(module, inputs, output):
            calls[name] = calls.get(name, 0) + 1
            if isinstance(output, Tensor) and output.dim() == 4:
                is_pool = isinstance(module, _POOLING) or id(output) in pooled
                if is_pool:
                    pooled.add(id(output))
                order.append((name, output, is_pool))

        return hook

    handles = [m.register_forward_hook(make(n)) for n, m in model.named_modules() if n]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    out = []
    for name, output, is_pool in reversed(order):
        if calls[name] == 1 and not is_pool and output.shape[-2] * output.shape[-1] > 1:
            out.append((name, tuple(output.shape)))
    return out


def locate_layer(model: nn.Module, example: Tensor, tries: int = 8) -> tuple[str, tuple[int, ...]]:
    """The layer CAMERAS explains by default: ``(name, output shape on example)``.

    The last module (in the order modules finish during ``model(example)``) with a 4-d
    ``(B, K, h, w)`` output on a grid larger than 1 x 1 that runs exactly once, is not a
    pooling layer, and whose output the logits depend on (checked with one backward pass).
    For torchvision's classifiers this is ``layer4`` (ResNet), ``features`` (DenseNet,
    MobileNet, ConvNeXt, EfficientNet), ``features.29`` (VGG16: the ReLU after conv5_3, before
    the last max-pool) and ``Mixed_7c`` (Inception-v3); ``_head_act`` for EfficientNet-Lite.
    Call with the model in eval mode. Raises :class:`ValueError` if no module qualifies.
    """
    candidates = _layer_candidates(model, example)
    for name, shape in candidates[:tries]:
        try:
            with LayerCapture(model, name) as cap:
                logits = cap.forward(example)
                cap.gradients(logits, logits.argmax(dim=1))
        except (RuntimeError, ValueError):
            continue
        return name, shape
    raise ValueError(
        f"could not find a layer to explain in {type(model).__name__}: no module with a "
        "4-d (B, K, h, w) output that runs once and feeds the logits; pass layer=... "
        "(see cameras.hooks.layer_names(model))"
    )


class LayerCapture:
    """Context manager that records one layer's output as a gradient-ready leaf.

    Example::

        with LayerCapture(model, "layer4") as cap:
            logits = cap.forward(images)              # graph only from layer4 to the logits
            grads = cap.gradients(logits, targets)    # d logit[target] / d activations
        acts = cap.activations                        # (B, K, h, w), the module's own output

    Parameters
    ----------
    model:
        Any ``nn.Module`` mapping images to logits ``(B, C)``.
    layer:
        Name of the sub-module (``"layer4"``, ``"features"``, ``"features.29"``) or the module.
    float32_above:
        Under :func:`torch.autocast`, switch autocast off from the layer on: the layer's
        output is recorded in float32 and the part of the network above it (and the gradient
        through it) runs in float32. Mixed precision then only touches the part below the
        layer, where nearly all the cost is (for CAMERAS' last-block layers, what is above is
        a pooling and a classifier).
    """

    def __init__(self, model: nn.Module, layer: str | nn.Module, float32_above: bool = False):
        self.model = model
        self.float32_above = float32_above
        self.layer_name = layer if isinstance(layer, str) else type(layer).__name__
        self.module = resolve_layer(model, layer)
        self.activations: Tensor | None = None
        self._calls = 0
        self._handle = None

    # -- context management -------------------------------------------------------------
    def __enter__(self) -> LayerCapture:
        self._handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove the hook (idempotent)."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _hook(self, module: nn.Module, inputs, output):
        self._calls += 1
        if self._calls > 1:
            raise RuntimeError(
                f"layer {self.layer_name!r} ran more than once in one forward pass; "
                "choose a layer that runs exactly once (e.g. a block, not a shared activation)"
            )
        if not isinstance(output, Tensor) or output.dim() != 4:
            what = type(output).__name__ if not isinstance(output, Tensor) else f"a {output.dim()}-d tensor"
            raise ValueError(
                f"layer {self.layer_name!r} must output a 4-d (B, K, h, w) tensor, got {what}"
            )
        torch.set_grad_enabled(True)  # record from here on (restored by forward())
        leaf = output.detach()
        if self.float32_above:
            # autocast off from here; torch.autocast's exit restores the caller's state
            torch.set_autocast_enabled(output.device.type, False)
            leaf = leaf.float()
        leaf = leaf.requires_grad_(True)
        self.activations = leaf
        return leaf.clone()

    # -- running -------------------------------------------------------------------------
    def forward(self, images: Tensor) -> Tensor:
        """Run the model; only the part above the layer is recorded for autograd."""
        if self._handle is None:
            raise RuntimeError("LayerCapture.forward must be called inside a `with` block")
        self._calls = 0
        self.activations = None
        with torch.no_grad():  # restores the caller's grad mode on exit
            logits = self.model(images)
        if self.activations is None:
            raise RuntimeError(f"layer {self.layer_name!r} was not called during the forward pass")
        if not isinstance(logits, Tensor) or logits.dim() != 2:
            raise ValueError(
                "the model must return logits of shape (B, num_classes); got "
                + (f"shape {tuple(logits.shape)}" if isinstance(logits, Tensor) else type(logits).__name__)
            )
        return logits

    def gradients(self, logits: Tensor, targets: Tensor, retain_graph: bool = False) -> Tensor:
        """Gradients of ``logits[b, targets[b]]`` with respect to the activations.

        Images in a batch are independent (eval mode), so one backward pass of the summed
        scores gives every image's own gradient.
        """
        return class_scores_grad(logits, targets, self.activations, retain_graph=retain_graph)


def class_scores_grad(
    logits: Tensor, targets: Tensor, wrt: Tensor | Iterable[Tensor], retain_graph: bool = False
) -> Tensor:
    """``d sum_b logits[b, targets[b]] / d wrt`` with a clear error if ``wrt`` is disconnected."""
    if not logits.requires_grad:
        raise RuntimeError("the logits do not depend on the captured layer (no gradient path)")
    with torch.enable_grad():  # the caller may be in no_grad mode; the graph above exists
        score = logits.gather(1, targets.view(-1, 1).to(logits.device)).sum()
        (grad,) = torch.autograd.grad(score, wrt, retain_graph=retain_graph, allow_unused=True)
    if grad is None:
        raise RuntimeError("the logits do not depend on the captured layer (no gradient path)")
    return grad

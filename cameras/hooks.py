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
from collections.abc import Iterable

import torch
from torch import Tensor, nn

__all__ = ["LayerCapture", "resolve_layer", "layer_names", "class_scores_grad"]


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
    """

    def __init__(self, model: nn.Module, layer: str | nn.Module):
        self.model = model
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
        leaf = output.detach().requires_grad_(True)
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

r"""TorchRay's backpropagation methods behind the common :func:`saliency` API.

CAMERAS (Jalwana et al., CVPR 2021, Table 1) takes its baselines from TorchRay's
pointing-game benchmark (``examples/attribution_benchmark.py`` in facebookresearch/TorchRay),
so these wrappers call TorchRay 1.0.0.2 with that benchmark's settings:

* ``gradient`` (Simonyan et al. 2014), ``deconvnet`` (Zeiler & Fergus 2014),
  ``guided_backprop`` (Springenberg et al. 2015): the (modified) gradient at the **input**;
  the channel dimension is reduced like TorchRay (``max_c |dx_c|``, TorchRay's
  ``gradient_to_saliency``), the map is resized to the input (bilinear) and smoothed with a
  Gaussian of ``sigma = smooth * max(H, W)`` (``smooth=0.02`` in the benchmark; ``smooth=0``
  for the raw map). A ``layer=`` moves the probe to that layer's output.
* ``gradcam`` (Selvaraju et al. 2017): TorchRay's ``grad_cam`` at the default layer
  (``features.29`` / ``layer4``), ``ReLU(sum_k mean_uv(G_k) A_k)``, resized to the input.
* ``excitation_backprop`` (MWP, Zhang et al. 2016) at ``features.23`` (pool4) / ``layer3``;
  TorchRay's map is ``sum_c`` of the excitation at that layer. ResNet blocks are patched to
  TorchRay's ``EltwiseSum`` skip connection for the duration of the call (TorchRay's
  ``update_resnet``), then restored.
* ``contrastive_excitation_backprop`` (cMWP): the same, with the contrast taken at
  ``classifier.4`` (relu7) / ``avgpool`` and the classifier layer found automatically; map
  ``ReLU(sum_c ...)``.

Targets are per sample (TorchRay's one-hot backward gradient takes a LongTensor), so every
method here runs the whole batch at once. TorchRay's probes, ``torch.relu`` patches,
``inplace`` and ``requires_grad`` changes are undone by :class:`ModelGuard` also on error.

**Activations other than ReLU.** TorchRay's guided backprop and deconvnet replace
``torch.relu`` only. Networks built from ``nn.ReLU6`` modules (EfficientNet-Lite, MobileNet-V2)
get the same rule on their ReLU6 modules here, through forward hooks (guided: pass positive
gradients where ``0 <= x <= 6``; deconvnet: pass positive gradients). The DeConvNet rule
ignores the input, so it passes a positive gradient *through the cap at 6* as well, where the
plain gradient is 0: this is our choice of extending "backward ReLU on the signal" to
ReLU6 (the cap is an input-dependent gate, which DeConvNet's rule never looks at); guided
backprop, which gates by the input, zeroes it above 6. Other activation
modules (SiLU/Swish, GELU, Hardswish, ...) have no rule: these two methods and excitation
backprop raise a ``ValueError`` unless called with ``strict=False`` (then those activations
backpropagate the plain gradient). Excitation backprop also refuses ReLU6 /
inverted-residual networks (EfficientNet, MobileNet): its rules assume non-negative inputs to
every linear layer, which linear bottlenecks break.
"""

from __future__ import annotations

import types
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck

try:  # TorchRay is optional (the `paper` extra); saliency() names the extra when it is missing
    from torchray.attribution.common import NullContext
    from torchray.attribution.common import saliency as _tr_saliency
    from torchray.attribution.deconvnet import DeConvNetContext
    from torchray.attribution.excitation_backprop import (
        EltwiseSum,
        contrastive_excitation_backprop,
        excitation_backprop,
    )
    from torchray.attribution.grad_cam import grad_cam
    from torchray.attribution.guided_backprop import GuidedBackpropContext
    from torchray.utils import imsmooth
except ImportError:  # placeholders, never called (see cameras.methods._registry._require_backend)
    NullContext = type("NullContext", (), {})
    DeConvNetContext = type("DeConvNetContext", (), {})
    GuidedBackpropContext = type("GuidedBackpropContext", (), {})
    _tr_saliency = EltwiseSum = contrastive_excitation_backprop = excitation_backprop = None
    grad_cam = imsmooth = None

from ..hooks import resolve_layer
from ._registry import Call, MethodSpec, register

__all__ = ["unsupported_activations", "patch_resnet_skips"]

# activation modules with no guided/deconvnet/EBP rule (nn.ReLU6 is handled separately)
_OTHER_ACTIVATIONS = (
    nn.SiLU, nn.GELU, nn.Hardswish, nn.Hardsigmoid, nn.ELU, nn.SELU, nn.CELU, nn.LeakyReLU,
    nn.PReLU, nn.RReLU, nn.Mish, nn.Softplus, nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.GLU,
    nn.LogSigmoid, nn.Softsign, nn.Tanhshrink,
)


def unsupported_activations(model: nn.Module, allow_relu6: bool) -> list[tuple[str, str]]:
    """``(name, type)`` of activation modules other than ReLU (and ReLU6 if allowed)."""
    found = []
    for name, m in model.named_modules():
        if isinstance(m, nn.ReLU):
            continue
        if isinstance(m, nn.ReLU6):
            if not allow_relu6:
                found.append((name, type(m).__name__))
            continue
        if isinstance(m, _OTHER_ACTIVATIONS) or "swish" in type(m).__name__.lower():
            found.append((name, type(m).__name__))
    return found


def _describe(found: list[tuple[str, str]]) -> str:
    kinds = sorted({t for _, t in found})
    return f"{', '.join(kinds)} (e.g. module {found[0][0]!r})"


# ----------------------------------------------------------------------------------------
# ReLU6: the guided-backprop / deconvnet rules through module hooks
# ----------------------------------------------------------------------------------------
class _GuidedReLU6(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(0, 6)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad.clamp_min(0) * ((x >= 0) & (x <= 6)).to(grad.dtype)


class _DeconvReLU6(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clamp(0, 6)

    @staticmethod
    def backward(ctx, grad):
        return grad.clamp_min(0)


def _hook_relu6(call: Call, fn) -> None:
    for m in call.model.modules():
        if isinstance(m, nn.ReLU6):
            m.inplace = False  # restored by the guard
            m.register_forward_hook(lambda mod, inp, out: fn.apply(inp[0]))  # removed by the guard


# ----------------------------------------------------------------------------------------
# pointwise methods (gradient, deconvnet, guided backprop)
# ----------------------------------------------------------------------------------------
def _smooth(maps: Tensor, smooth: float) -> Tensor:
    if smooth <= 0:
        return maps
    sigma = smooth * max(maps.shape[-2:])
    # TorchRay's imsmooth builds a float32 kernel: smooth in float32, return the input dtype
    return imsmooth(maps.float(), sigma=sigma, padding_mode="replicate").to(maps.dtype)


def _probe_layer(call: Call):
    return "" if call.layer is None else resolve_layer(call.model, call.layer)


def _pointwise(context, relu6_fn, method):
    def fn(call: Call) -> Tensor:
        s = call.settings
        if context is not NullContext:
            bad = unsupported_activations(call.model, allow_relu6=True)
            if bad and s["strict"]:
                raise ValueError(
                    f"{method} has a backward rule for ReLU (TorchRay) and ReLU6 (here) only; "
                    f"the model also has {_describe(bad)}. Pass strict=False to backpropagate "
                    "the plain gradient through those activations."
                )
            _hook_relu6(call, relu6_fn)
        x = call.images.detach().clone()  # TorchRay sets requires_grad on its input
        sal = _tr_saliency(
            call.model, x, call.targets, saliency_layer=_probe_layer(call), resize=True,
            context_builder=context,
        )
        return _smooth(sal, s["smooth"])[:, 0]

    return fn


def _check_smooth(s: dict) -> None:
    if not isinstance(s["smooth"], (int, float)) or s["smooth"] < 0:
        raise ValueError(f"smooth must be a non-negative number, got {s['smooth']!r}")


_TORCHRAY = "torchray 1.0.0.2"

register(MethodSpec(
    "gradient", _pointwise(NullContext, None, "gradient"), defaults={"smooth": 0.02},
    layer="optional", source=_TORCHRAY, check=_check_smooth,
    reference="Simonyan, Vedaldi & Zisserman, Deep inside convolutional networks, ICLRw 2014",
    summary="max_c |d logit / d x_c|, smoothed (TorchRay benchmark)",
    label="Gradient", group="paper", layer_role=None, order=3,
))


def _check_pointwise(s: dict) -> None:
    _check_smooth(s)
    if not isinstance(s["strict"], bool):
        raise TypeError(f"strict must be True or False, got {s['strict']!r}")


def _register_pointwise(name: str, context, relu6_fn, reference: str, summary: str, **labels: Any):
    register(MethodSpec(
        name, _pointwise(context, relu6_fn, name), defaults={"smooth": 0.02, "strict": True},
        layer="optional", source=_TORCHRAY, check=_check_pointwise, reference=reference,
        summary=summary, group="paper", layer_role=None, **labels,
    ))


_register_pointwise(
    "deconvnet", DeConvNetContext, _DeconvReLU6,
    "Zeiler & Fergus, Visualizing and understanding convolutional networks, ECCV 2014",
    "max_c |deconvnet signal at x_c|, smoothed (TorchRay benchmark)", label="DeConvNet", order=4)
_register_pointwise(
    "guided_backprop", GuidedBackpropContext, _GuidedReLU6,
    "Springenberg et al., Striving for simplicity, ICLRw 2015",
    "max_c |guided backprop signal at x_c|, smoothed (TorchRay benchmark)",
    label="Guided backprop", short="Guided BP", order=5)


# ----------------------------------------------------------------------------------------
# Grad-CAM
# ----------------------------------------------------------------------------------------
def _gradcam(call: Call) -> Tensor:
    layer = resolve_layer(call.model, call.layer)
    sal = grad_cam(call.model, call.images.detach().clone(), call.targets,
                   saliency_layer=layer, resize=True)
    return sal[:, 0]


register(MethodSpec(
    "gradcam", _gradcam, source=_TORCHRAY,
    reference="Selvaraju et al., Grad-CAM, ICCV 2017",
    summary="up(ReLU(sum_k mean_uv(G_k) A_k)) (TorchRay's grad_cam)",
    label="Grad-CAM", group="paper", layer_role="cam", order=1,
))


# ----------------------------------------------------------------------------------------
# excitation backprop (MWP) and its contrastive variant (cMWP)
# ----------------------------------------------------------------------------------------
def _bottleneck_forward(self, x):
    identity = x
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.relu(self.bn2(self.conv2(out)))
    out = self.bn3(self.conv3(out))
    if self.downsample is not None:
        identity = self.downsample(x)
    return self.relu(self.skip(out, identity))


def _basicblock_forward(self, x):
    identity = x
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    if self.downsample is not None:
        identity = self.downsample(x)
    return self.relu(self.skip(out, identity))


def patch_resnet_skips(call: Call) -> int:
    """TorchRay's ``update_resnet`` for the duration of the call (undone by the guard).

    Every torchvision ``BasicBlock``/``Bottleneck`` gets an ``EltwiseSum`` skip module and a
    forward that uses it, so that EBP distributes the excitation over the two branches of
    the residual sum in proportion to their inputs. Returns the number of patched blocks.
    """
    n = 0
    for m in call.model.modules():
        if isinstance(m, (BasicBlock, Bottleneck)):
            fwd = _bottleneck_forward if isinstance(m, Bottleneck) else _basicblock_forward
            call.guard.patch_attr(m, "skip", EltwiseSum())
            call.guard.patch_attr(m, "forward", types.MethodType(fwd, m))
            n += 1
    return n


def _check_ebp_model(call: Call, method: str) -> None:
    if not call.settings["strict"]:
        return
    from .layers import _is_efficientnet

    bad = unsupported_activations(call.model, allow_relu6=False)
    inverted = [n for n, m in call.model.named_modules()
                if _is_efficientnet(m) or type(m).__name__ in ("InvertedResidual", "MobileNetV2",
                                                             "MobileNetV3", "EfficientNet")]
    if bad or inverted:
        what = _describe(bad) if bad else f"inverted-residual blocks ({inverted[0] or 'the model'})"
        raise ValueError(
            f"{method} is defined for ReLU networks with non-negative inputs to every linear "
            f"layer (TorchRay supports torchvision VGG and ResNet); this model has {what}, "
            "whose linear bottlenecks / other activations break that assumption. Pass "
            "strict=False to run TorchRay's rules anyway (the map then has no EBP meaning)."
        )


def _ebp(call: Call) -> Tensor:
    _check_ebp_model(call, "excitation_backprop")
    patch_resnet_skips(call)
    layer = resolve_layer(call.model, call.layer)
    sal = excitation_backprop(call.model, call.images.detach().clone(), call.targets,
                              saliency_layer=layer, resize=True)
    return sal[:, 0]


def _cebp(call: Call) -> Tensor:
    _check_ebp_model(call, "contrastive_excitation_backprop")
    s = call.settings
    layer, contrast = call.layer, s["contrast_layer"]
    if isinstance(layer, (tuple, list)):
        if len(layer) != 2:
            raise ValueError("layer for contrastive_excitation_backprop must be a name or a "
                             "(saliency_layer, contrast_layer) pair")
        layer, table_contrast = layer
        contrast = contrast if contrast is not None else table_contrast
    if contrast is None:
        from .layers import default_layers

        pair = default_layers(call.model).get("contrastive_excitation_backprop")
        if pair is None:
            raise ValueError("no default contrast layer for this model; pass contrast_layer=...")
        contrast = pair[1]
    sal_layer = resolve_layer(call.model, layer)
    con_layer = resolve_layer(call.model, contrast)
    cls_layer = None if s["classifier_layer"] is None else resolve_layer(call.model, s["classifier_layer"])
    patch_resnet_skips(call)
    sal = contrastive_excitation_backprop(
        call.model, call.images.detach().clone(), call.targets, saliency_layer=sal_layer,
        contrast_layer=con_layer, classifier_layer=cls_layer, resize=True,
    )
    return sal[:, 0]


def _check_strict(s: dict) -> None:
    if not isinstance(s["strict"], bool):
        raise TypeError(f"strict must be True or False, got {s['strict']!r}")


register(MethodSpec(
    "excitation_backprop", _ebp, defaults={"strict": True}, source=_TORCHRAY, check=_check_strict,
    reference="Zhang et al., Top-down neural attention by excitation backprop, ECCV 2016",
    summary="sum_c of the marginal winning probability at the layer (MWP)",
    label="Excitation backprop (MWP)", short="MWP", group="paper", layer_role="ebp", order=6,
))
register(MethodSpec(
    "contrastive_excitation_backprop", _cebp,
    defaults={"contrast_layer": None, "classifier_layer": None, "strict": True},
    source=_TORCHRAY, check=_check_strict,
    reference="Zhang et al., Top-down neural attention by excitation backprop, ECCV 2016",
    summary="ReLU(sum_c MWP(target) - MWP(contrast)) at the layer (cMWP)",
    label="Contrastive EBP (cMWP)", short="cMWP", group="paper", layer_role=("ebp", "contrast"), order=7,
))

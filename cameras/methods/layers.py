r"""Default layer of every saliency method, per architecture.

The layers follow TorchRay's pointing-game benchmark (``examples/attribution_benchmark.py``
of facebookresearch/TorchRay, the setup behind the baselines of CAMERAS' Table 1) where it
has one, and the CAMERAS paper's "last convolutional block" otherwise:

=================  =====================  ==================  =====================================
architecture       Grad-CAM & the other   excitation backprop contrastive EBP (saliency, contrast)
                   CAM-type methods       (MWP)
=================  =====================  ==================  =====================================
VGG-16             ``features.29``        ``features.23``     (``features.23``, ``classifier.4``)
                   (ReLU after conv5_3,   (pool4)             (relu7)
                   before pool5)
ResNet-*           ``layer4``             ``layer3``          (``layer3``, ``avgpool``)
DenseNet-*         ``features`` (norm5)   --                  --
Inception-v3       ``Mixed_7c``           --                  --
EfficientNet-Lite  ``_head_act`` (ReLU6   ``_blocks.10`` /    (``_blocks.10``, ``_avg_pooling``)
                   after head conv + BN;  ``_blocks.14``      -- both refused by default, see below
                   ``_bn1`` without it)   (Lite0 / Lite1-2:
                                          last block at
                                          stride 16)
=================  =====================  ==================  =====================================

* "CAM-type" = ``cameras``, ``gradcam``, ``hirescam``, ``layercam``, ``gradcam++``.
  TorchRay's comment for ResNet-50's contrast layer is "pool before fc layer";
  for VGG-16 the (saliency, contrast) pair is (pool4, relu7). Other VGG depths use the same
  rule (last ReLU of ``features``; the 4th max-pool; the 2nd ReLU of ``classifier``).
* ``gradient``, ``deconvnet``, ``guided_backprop``: ``None`` = the input image (TorchRay's
  benchmark). ``rise``, ``extremal_perturbation``, ``center``: ``None`` = no layer.
* ``--`` (``None``): TorchRay has no setup; pass ``layer=`` yourself.
* **NormGrad** (layer role ``"normgrad"``): the end of the penultimate convolutional stage,
  i.e. the last layer before the downsampling into the last stage -- VGG: the last ReLU
  before pool4 (``features.22``, relu4_3, for VGG16: 28x28 at 224 px, stride 8, since VGG's
  last stage conv5 runs at stride 16; ``features.32`` for VGG16-BN); ResNet: ``layer3``;
  DenseNet: ``features.denseblock3``; Inception-v3: ``Mixed_6e``; EfficientNet-Lite: the last
  block at stride 16 (the EBP layer above). All but VGG's are at stride 16 (14x14 to 17x17).
  *Evidence.* The CAMERAS paper's NormGrad row of Table 1 (VOC07 test, All: VGG16 81.9,
  ResNet50 84.6) equals, to the printed digit, the per-layer NormGrad pointing accuracies in
  the NormGrad authors' benchmark (ruthcfong/TorchRay, ``examples/attribution_benchmark.py``
  at commit 9aee454: VGG16 ``features.22`` 0.81925, ResNet-50 ``layer3`` 0.84613), and no
  other layer there does (VGG16 ``features.29``: 0.77689, ResNet-50 ``layer4``: 0.78765).
  The last convolutional block is also a poor choice for NormGrad: at ResNet-50's ``layer4``
  (feeding the global average pool) the gradient is spatially constant, so
  :math:`\|g(u)\|\,\|a(u)\|` is the activation norm for every class -- class-agnostic.
  Selective NormGrad (``saliency("normgrad", ..., phase1="scaling", phase2="filter_norm")``)
  uses the same default layer.
* **EfficientNet-Lite and excitation backprop.** EBP's rules assume that every linear layer
  sees non-negative inputs (true after a ReLU) and that residual sums are patched
  (TorchRay patches torchvision ResNet blocks only). EfficientNet-Lite's MBConv blocks end in
  a *linear* bottleneck (no activation: negative values feed the next block and the
  residual sum ``x + inputs`` is a plain addition). The entries above are what one would
  use, but ``excitation_backprop``/``contrastive_excitation_backprop`` refuse such networks
  unless called with ``strict=False`` (see :mod:`cameras.methods.backprop`).
"""

from __future__ import annotations

from torch import nn

__all__ = ["default_layers", "architecture", "KNOWN_ARCHITECTURES"]

# torchvision VGG configurations (torchvision.models.vgg.cfgs)
_VGG_CFG = {
    "vgg11": "A",
    "vgg13": "B",
    "vgg16": "D",
    "vgg19": "E",
}

KNOWN_ARCHITECTURES = (
    [f"{v}{bn}" for v in _VGG_CFG for bn in ("", "_bn")]
    + ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
    + ["densenet121", "densenet161", "densenet169", "densenet201", "inception_v3"]
    + ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
)


def _table(cam, ebp, contrast, normgrad=None) -> dict[str, object]:
    """``{method: layer}`` from an architecture's layers for each role (the registry's
    ``layer_role`` of every method)."""
    from ._registry import _REGISTRY, names

    roles = {"cam": cam, "ebp": ebp, "normgrad": normgrad, None: None,
             ("ebp", "contrast"): (ebp, contrast) if ebp and contrast else None}
    return {name: roles[_REGISTRY[name].layer_role] for name in names()}


def _vgg_indices_from_cfg(cfg_key: str, batch_norm: bool) -> tuple[int, int, int]:
    """(last ReLU, 4th max-pool, last ReLU before the 4th max-pool) of a torchvision VGG."""
    from torchvision.models.vgg import cfgs

    idx, last_relu, pools, relus = 0, -1, [], []
    for v in cfgs[cfg_key]:
        if v == "M":
            pools.append(idx)
            idx += 1
        else:
            last_relu = idx + (2 if batch_norm else 1)
            relus.append(last_relu)
            idx += 3 if batch_norm else 2
    return last_relu, pools[3], max(r for r in relus if r < pools[3])


def _vgg_table_from_module(vgg: nn.Module, prefix: str) -> dict[str, object]:
    feats = list(vgg.features.children())
    relus = [i for i, m in enumerate(feats) if isinstance(m, nn.ReLU)]
    pools = [i for i, m in enumerate(feats) if isinstance(m, nn.MaxPool2d)]
    cls_relus = [i for i, m in enumerate(vgg.classifier.children()) if isinstance(m, nn.ReLU)]
    cam = f"{prefix}features.{relus[-1]}" if relus else None
    ebp = f"{prefix}features.{pools[3]}" if len(pools) >= 4 else None
    before4 = [r for r in relus if len(pools) >= 4 and r < pools[3]]
    normgrad = f"{prefix}features.{before4[-1]}" if before4 else None
    contrast = f"{prefix}classifier.{cls_relus[1]}" if len(cls_relus) >= 2 else None
    return _table(cam, ebp, contrast, normgrad)


#: the last block at stride 16 of EfficientNet-Lite0/1/2 (what the module path computes;
#: checked in the tests)
_LITE_STRIDE16 = {"efficientnet_lite0": 10, "efficientnet_lite1": 14, "efficientnet_lite2": 14}


def _is_efficientnet(m: nn.Module) -> bool:
    return type(m).__name__.startswith("EfficientNet") and hasattr(m, "_blocks")


def _find(model: nn.Module) -> tuple[str, str, nn.Module] | None:
    """(architecture family, name prefix, sub-module) of the first known network in ``model``."""
    import torchvision.models as tvm

    kinds = [
        ("vgg", tvm.VGG),
        ("resnet", tvm.ResNet),
        ("densenet", tvm.DenseNet),
        ("inception_v3", tvm.Inception3),
    ]
    for name, mod in model.named_modules():
        prefix = f"{name}." if name else ""
        for family, cls in kinds:
            if isinstance(mod, cls):
                return family, prefix, mod
        if _is_efficientnet(mod):
            return "efficientnet", prefix, mod
    return None


def architecture(model: nn.Module | str) -> str:
    """The architecture family used for the default layers (``"vgg"``, ``"resnet"``, ...)."""
    if isinstance(model, str):
        name = model.lower().replace("-", "_")
        for fam in ("vgg", "resnet", "densenet", "inception_v3", "efficientnet"):
            if name.startswith(fam):
                return fam
        raise ValueError(_unknown(model))
    found = _find(model)
    return found[0] if found else type(model).__name__


def _unknown(name: str) -> str:
    return (
        f"no default layers for architecture {name!r}; known: {', '.join(KNOWN_ARCHITECTURES)} "
        "(or pass an nn.Module containing one of them). Pass layer=... to saliency() otherwise."
    )


def default_layers(model: nn.Module | str) -> dict[str, object]:
    """``{method: layer}`` for a model or an architecture name (see the module docstring).

    ``layer`` is a module name (prefixed with the path of the network inside ``model`` when it
    is wrapped, e.g. ``"1.layer4"`` for ``nn.Sequential(normalize, resnet)``), a
    ``(saliency_layer, contrast_layer)`` pair for ``contrastive_excitation_backprop``, or
    ``None`` (the input image / no layer / no default). An unknown module type gives a table of
    ``None`` for the CAM-type methods so that :func:`saliency` asks for ``layer=``; an
    unknown name raises a ``ValueError``.
    """
    if isinstance(model, str):
        name = model.lower().replace("-", "_")
        if name.startswith("vgg"):
            base = name.removesuffix("_bn")
            if base not in _VGG_CFG:
                raise ValueError(_unknown(model))
            relu, pool4, relu4 = _vgg_indices_from_cfg(_VGG_CFG[base], name.endswith("_bn"))
            return _table(f"features.{relu}", f"features.{pool4}", "classifier.4", f"features.{relu4}")
        if name.startswith("resnet"):
            return _table("layer4", "layer3", "avgpool", "layer3")
        if name.startswith("densenet"):
            return _table("features", None, None, "features.denseblock3")
        if name == "inception_v3":
            return _table("Mixed_7c", None, None, "Mixed_6e")
        if name in _LITE_STRIDE16:
            block = f"_blocks.{_LITE_STRIDE16[name]}"
            return _table("_head_act", block, "_avg_pooling", block)
        raise ValueError(_unknown(model))
    if not isinstance(model, nn.Module):
        raise TypeError(f"default_layers takes an nn.Module or a name, got {type(model).__name__}")
    found = _find(model)
    if found is None:
        return _table(None, None, None)
    family, prefix, net = found
    if family == "vgg":
        return _vgg_table_from_module(net, prefix)
    if family == "resnet":
        return _table(f"{prefix}layer4", f"{prefix}layer3", f"{prefix}avgpool", f"{prefix}layer3")
    if family == "densenet":
        return _table(f"{prefix}features", None, None, f"{prefix}features.denseblock3")
    if family == "inception_v3":
        return _table(f"{prefix}Mixed_7c", None, None, f"{prefix}Mixed_6e")
    # EfficientNet(-Lite): the head activation if it has its own module, else the head BN
    head = "_head_act" if hasattr(net, "_head_act") else "_bn1"
    blocks = len(net._blocks)
    ebp = None
    # the last block at stride 16 (14x14 at 224 px): the analogue of VGG pool4 / ResNet res4
    strides = [b._depthwise_conv.stride for b in net._blocks]
    s = 2  # the stem convolution has stride 2
    for i, st in enumerate(strides):
        s *= st[0] if isinstance(st, (tuple, list)) else st
        if s == 16:
            ebp = i
    if ebp is None:
        ebp = blocks // 2
    block = f"{prefix}_blocks.{ebp}"
    return _table(f"{prefix}{head}", block, f"{prefix}_avg_pooling", block)

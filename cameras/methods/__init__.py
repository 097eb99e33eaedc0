"""One API for every saliency method: ``saliency(name, model, images, targets, layer=..., **settings)``.

>>> from cameras.methods import saliency, names
>>> maps = saliency("gradcam", model, images, targets, layer="layer4")   # (B, H, W) in [0, 1]

Methods (``names()``):

===================================  =========================================================================  ==============================
name                                 what                                                                       computed by
===================================  =========================================================================  ==============================
``cameras``                          CAMERAS, Algorithm 1 (``sizes=``)                                          cameras.core
``gradcam``                          Grad-CAM                                                                   TorchRay
``normgrad``                         NormGrad and its framework (phase1 x phase2, layer lists; Rebuffi et al.)  here (one pass for all layers)
``gradient``                         gradient (max_c abs, smoothed)                                             TorchRay
``deconvnet``                        DeConvNet                                                                  TorchRay
``guided_backprop``                  guided backprop                                                            TorchRay
``excitation_backprop``              excitation backprop (MWP)                                                  TorchRay
``contrastive_excitation_backprop``  contrastive EBP (cMWP)                                                     TorchRay
``rise``                             RISE (``num_masks=``, seeded)                                              TorchRay
``extremal_perturbation``            extremal perturbation (``max_iter=``)                                      TorchRay
``center``                           center baseline                                                            here
``hirescam``                         HiResCAM                                                                   here (LayerCapture)
``layercam``                         LayerCAM                                                                   here (LayerCapture)
``gradcam++``                        Grad-CAM++                                                                 here (LayerCapture)
===================================  =========================================================================  ==============================

:func:`meta_saliency` runs any of them on the model after one SGD step towards the class
(Rebuffi et al.'s meta-saliency), restoring the weights bit for bit.

Every method returns ``(B, H, W)`` maps at the input's resolution, min-max normalised per map
(:func:`cameras.core.normalize_maps`: constant maps become zeros, never NaN). Targets:
``None`` (top-1), an int, or ``B`` ints / a LongTensor. Settings default to the paper's /
TorchRay benchmark's values; :func:`method_settings` returns them (with overrides) for
recording; unknown settings and unknown names raise a ``ValueError``. The model is left as
it was found (hooks, flags, mode), also on error. Default layers per architecture:
:func:`default_layers` (see :mod:`cameras.methods.layers`).
"""

from . import backprop as _backprop  # noqa: F401  (registers methods)
from . import cam as _cam  # noqa: F401
from . import normgrad as _normgrad  # noqa: F401
from . import perturbation as _perturbation  # noqa: F401
from ._guard import ModelGuard, hook_count
from ._registry import (
    LAYER_ROLES,
    Call,
    MethodSpec,
    info,
    label,
    method_settings,
    names,
    register,
    resolve_targets,
    saliency,
    settings_json,
)
from .layers import KNOWN_ARCHITECTURES, architecture, default_layers
from .meta import meta_saliency
from .perturbation import center_map

#: The methods of the paper's comparison (Table 1 baselines + CAMERAS), then the extras
#: (derived from the registry's ``group``; the order is :func:`names`').
PAPER_METHODS = tuple(names("paper"))
EXTRA_METHODS = tuple(names("extra"))

__all__ = [
    "saliency",
    "names",
    "label",
    "LAYER_ROLES",
    "info",
    "method_settings",
    "settings_json",
    "default_layers",
    "architecture",
    "KNOWN_ARCHITECTURES",
    "PAPER_METHODS",
    "EXTRA_METHODS",
    "MethodSpec",
    "Call",
    "register",
    "resolve_targets",
    "ModelGuard",
    "hook_count",
    "center_map",
    "meta_saliency",
]

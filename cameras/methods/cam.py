r"""Activation x gradient maps at one layer: CAMERAS, HiResCAM, LayerCAM, Grad-CAM++.

All of them read the layer's activations :math:`A \in \mathbb{R}^{K\times h\times w}` and the
gradients :math:`G = \partial S_c / \partial A` of the class logit :math:`S_c` through
:class:`cameras.hooks.LayerCapture` (one forward pass above the layer, one backward pass) and
combine them; the result is brought to the input grid with bilinear interpolation
(``align_corners=False``, as TorchRay) and min-max normalised by :func:`saliency`.

* **HiResCAM** (Draelos & Carin 2020): :math:`\mathrm{up}(\mathrm{ReLU}(\sum_k A_k\odot
  G_k))`. Grad-CAM replaces :math:`G_k` by its spatial mean.
* **CAMERAS** (Jalwana et al., CVPR 2021) with one size is the same element-wise product, but
  *after* bringing :math:`A` and :math:`G` to the input grid:
  :math:`\mathrm{ReLU}(\sum_k \mathrm{up}(A_k)\odot \mathrm{up}(G_k))`. With several sizes it
  averages the upsampled :math:`A` and :math:`G` over input sizes first
  (:class:`cameras.Cameras`).
* **LayerCAM** (Jiang et al., TIP 2021): :math:`\mathrm{ReLU}(\sum_k \mathrm{ReLU}(G_k)
  \odot A_k)`.
* **Grad-CAM++** (Chattopadhay et al., WACV 2018), in the closed form used by
  pytorch-grad-cam (exponential-free, second/third powers of the gradient): per channel
  :math:`\alpha^{kc}_{ij} = g^2 / (2 g^2 + \sum_{ab} A^k_{ab}\, g^3 + \epsilon)` (0 where
  :math:`g = 0`), :math:`w_k = \sum_{ij} \alpha_{ij}^{kc}\,\mathrm{ReLU}(g_{ij})`, map
  :math:`\mathrm{ReLU}(\sum_k w_k A_k)`.

NormGrad and the rest of Rebuffi et al.'s framework live in :mod:`cameras.methods.normgrad`
(``normgrad_map`` is still importable from here).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core import DEFAULT_SIZES, KEEP_RULES, Cameras, Capture, normalize_maps
from ..hooks import LayerCapture
from ._registry import Call, MethodSpec, register

__all__ = [
    "layer_activations_gradients",
    "upsample",
    "hirescam_map",
    "layercam_map",
    "gradcampp_map",
    "capture_map",
    "top_channels",
]


def layer_activations_gradients(model, images: Tensor, targets: Tensor, layer) -> tuple[Tensor, Tensor]:
    """``(A, G)``: the layer's output and ``d logit[target] / d A``, both ``(B, K, h, w)``."""
    with LayerCapture(model, layer) as cap:
        logits = cap.forward(images)
        grads = cap.gradients(logits, targets)
    return cap.activations.detach(), grads.detach()


def upsample(maps: Tensor, shape: tuple[int, int]) -> Tensor:
    """``(B, h, w)`` -> ``(B, H, W)``, bilinear with ``align_corners=False`` (TorchRay's resize)."""
    if tuple(maps.shape[-2:]) == tuple(shape):
        return maps
    return F.interpolate(maps.unsqueeze(1), size=shape, mode="bilinear", align_corners=False)[:, 0]


def hirescam_map(A: Tensor, G: Tensor) -> Tensor:
    """HiResCAM at the layer's resolution: ``ReLU(sum_k A_k * G_k)``."""
    return (A * G).sum(dim=1).clamp_min(0)


def layercam_map(A: Tensor, G: Tensor) -> Tensor:
    """LayerCAM at the layer's resolution: ``ReLU(sum_k ReLU(G_k) * A_k)``."""
    return (G.clamp_min(0) * A).sum(dim=1).clamp_min(0)


def gradcampp_map(A: Tensor, G: Tensor, eps: float = 1e-6) -> Tensor:
    """Grad-CAM++ at the layer's resolution (pytorch-grad-cam's closed form, see module doc)."""
    g2 = G.pow(2)
    g3 = g2 * G
    sum_a = A.sum(dim=(2, 3), keepdim=True)
    alpha = g2 / (2 * g2 + sum_a * g3 + eps)
    alpha = torch.where(G != 0, alpha, torch.zeros_like(alpha))
    weights = (G.clamp_min(0) * alpha).sum(dim=(2, 3), keepdim=True)
    return (weights * A).sum(dim=1).clamp_min(0)


def _layer_method(combine):
    def fn(call: Call) -> Tensor:
        A, G = layer_activations_gradients(call.model, call.images, call.targets, call.layer)
        return upsample(combine(A, G), call.shape)

    return fn


def _cameras(call: Call) -> Tensor:
    s = call.settings
    cam = Cameras(call.model, layer=call.layer, sizes=s["sizes"], batch_size=s["batch_size"],
                  progress=s["progress"], keep=s["keep"])
    return cam(call.images, call.targets)


def _check_sizes(s: dict) -> None:
    sizes = s["sizes"]
    if isinstance(sizes, int):
        s["sizes"] = [sizes]
    s["sizes"] = [int(v) for v in s["sizes"]]
    if s["keep"] not in KEEP_RULES:
        raise ValueError(f"keep must be one of {', '.join(KEEP_RULES)}, got {s['keep']!r}")


_CITE_CAMERAS = "Jalwana, Akhtar, Bennamoun & Mian, CAMERAS, CVPR 2021"

register(MethodSpec(
    "cameras", _cameras,
    defaults={"sizes": list(DEFAULT_SIZES), "batch_size": None, "progress": None, "keep": "auto"},
    source="cameras.core.Cameras", reference=_CITE_CAMERAS, own_top1=True, check=_check_sizes,
    summary="ReLU(sum_k mean_s up(A_k,s) * mean_s up(G_k,s)) over input sizes (Algorithm 1)",
    label="CAMERAS", group="paper", layer_role="cam", order=0,
))


def _register_layer_method(name: str, combine, label: str, order: int, ref: str, summary: str):
    register(MethodSpec(name, _layer_method(combine), reference=ref, summary=summary, label=label,
                        group="extra", layer_role="cam", order=order))


_register_layer_method(
    "hirescam", hirescam_map, "HiResCAM", 11,
    "Draelos & Carin, Use HiResCAM instead of Grad-CAM, arXiv:2011.08891 (2020)",
    "up(ReLU(sum_k A_k * G_k)): element-wise grad x activation at the layer")
_register_layer_method("layercam", layercam_map, "LayerCAM", 12,
                       "Jiang et al., LayerCAM, IEEE TIP 2021", "up(ReLU(sum_k ReLU(G_k) * A_k))")
_register_layer_method(
    "gradcam++", gradcampp_map, "Grad-CAM++", 13,
    "Chattopadhay et al., Grad-CAM++, WACV 2018 (pytorch-grad-cam's closed form)",
    "up(ReLU(sum_k w_k A_k)) with Grad-CAM++ weights")


# -- maps from a capture of :class:`cameras.Cameras` ----------------------------------------
def capture_map(cap: Capture, method: str = "gradcam", size: int | None = None,
                target: int = 0) -> Tensor:
    r"""Grad-CAM (:math:`\alpha_k` = spatial mean of :math:`G_k`, Selvaraju et al. 2017) or
    HiResCAM (:math:`A \odot G`) of the ``target``-th explained class of a
    :meth:`cameras.Cameras.capture` at ``size`` (default: the reference), upsampled to the
    input grid and min-max normalised; ``(B, H, W)``."""
    i = cap.index(cap.sizes[0] if size is None else size)
    G = cap.gradients[i][:, target]
    if method == "gradcam":
        G = G.mean(dim=(2, 3), keepdim=True)
    elif method != "hirescam":
        raise ValueError(f"method must be 'gradcam' or 'hirescam', got {method!r}")
    return normalize_maps(upsample(hirescam_map(cap.activations[i], G), cap.out_shape))


def top_channels(cap: Capture, b: int = 0, k: int = 3, size: int | None = None) -> list[int]:
    r"""Image ``b``'s ``k`` channels with the largest contribution :math:`\sum_{ij} A_k G_k` at
    ``size`` (default: the reference) of a capture, for the first explained class."""
    i = cap.index(cap.sizes[0] if size is None else size)
    contrib = (cap.activations[i][b] * cap.gradients[i][b, 0]).sum(dim=(1, 2))
    return [int(c) for c in contrib.topk(k).indices]


def __getattr__(name: str):
    """``normgrad_map`` moved to :mod:`cameras.methods.normgrad`; importable here as before."""
    if name == "normgrad_map":
        from .normgrad import normgrad_map

        return normgrad_map
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

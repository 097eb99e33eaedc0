"""Data helpers: ImageNet class names, the shared ImageNet sample and scikit-image photos.

* :func:`imagenet_classes`, :func:`imagenet_wnids` and :func:`find_class` give the 1000
  ImageNet-1k classes in the standard (torchvision / Caffe) order, which is the order of the
  sorted WordNet ids. Names are torchvision's (``ResNet50_Weights.IMAGENET1K_V1.meta
  ["categories"]``); the WordNet ids come with them in ``cameras/imagenet_classes.txt``
  (``<wnid><TAB><name>`` per line, generated once from the shared sample's file names).
* :class:`ImageNetSample` reads a folder of ImageNet-style files ``<wnid>_<name>.JPEG``,
  such as the shared 1000-image sample (one image per class; sorted file *i* belongs to
  class *i*). Labels come from the WordNet id, so subsets and other folders work too.
  The folder is never copied into the project: it is found through
  ``CAMERAS_IMAGENET_SAMPLE`` (default ``../shared/data/imagenet-sample`` beside the repo).
* :func:`skimage_photos` returns scikit-image's bundled real photographs (no download),
  handy as examples and in tests.
* :func:`image_items` is the one way the experiments pick their images: an
  :class:`ImageItem` (path, label, name) per image of the ImageNet sample, of ImageNet val
  (:func:`imagenet_val_dir`, under ``$CAMERAS_DATA_ROOT``) or of the scikit-image photos,
  optionally filtered by class and thinned evenly (:func:`spread_indices`) or by a stride.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .images import load_image

__all__ = [
    "REPO_ROOT",
    "IMAGE_SUFFIXES",
    "imagenet_classes",
    "imagenet_wnids",
    "find_class",
    "imagenet_sample_dir",
    "SampleInfo",
    "ImageNetSample",
    "SKIMAGE_PHOTOS",
    "skimage_photos",
    "ENV_ROOT",
    "MissingDataError",
    "data_root",
    "imagenet_val_dir",
    "ImageItem",
    "image_items",
    "spread_indices",
]

#: The repository root (``cameras/..``); relative default paths are resolved against it.
REPO_ROOT = Path(__file__).resolve().parents[1]
#: File suffixes (lower case) that :class:`ImageNetSample` treats as images.
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".webp", ".tif", ".tiff")

_CLASSES_FILE = Path(__file__).with_name("imagenet_classes.txt")
_SAMPLE_ENV = "CAMERAS_IMAGENET_SAMPLE"
_SAMPLE_DEFAULT = Path("..") / "shared" / "data" / "imagenet-sample"
_WNID = re.compile(r"^n\d{8}$")
#: The environment variable naming the root of the paper profile's data.
ENV_ROOT = "CAMERAS_DATA_ROOT"


class MissingDataError(FileNotFoundError):
    """Data or model files are missing (and could not be downloaded); says what goes where."""


def data_root(root: str | os.PathLike | None = None) -> Path:
    """``root``, else ``$CAMERAS_DATA_ROOT``; a :class:`MissingDataError` if neither is set."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(ENV_ROOT)
    if env:
        return Path(env).expanduser()
    raise MissingDataError(
        f"no data root: pass root=... or set {ENV_ROOT} to the folder that holds "
        "imagenet/val, VOCdevkit/VOC2007 and/or coco/ (see cameras.data and cameras.datasets)"
    )


# ----------------------------------------------------------------------------------------
# class names
# ----------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _class_table() -> tuple[tuple[str, ...], tuple[str, ...]]:
    wnids, names = [], []
    for line in _CLASSES_FILE.read_text(encoding="utf-8").splitlines():
        if line.strip():
            wnid, name = line.split("\t", 1)
            wnids.append(wnid)
            names.append(name)
    if len(names) != 1000 or wnids != sorted(wnids):
        raise RuntimeError(f"{_CLASSES_FILE} is corrupt: expected 1000 sorted WordNet ids")
    return tuple(wnids), tuple(names)


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet-1k class names in index order (torchvision's names)."""
    return list(_class_table()[1])


def imagenet_wnids() -> list[str]:
    """The 1000 ImageNet-1k WordNet ids in index order (sorted, ``n01440764`` = tench)."""
    return list(_class_table()[0])


def _norm(s: str) -> str:
    return " ".join(s.lower().replace("_", " ").replace("-", " ").split())


def find_class(query: str | int) -> int:
    """Index of an ImageNet class given its index, WordNet id, name or part of its name.

    Matching is case-insensitive and treats ``_``/``-`` as spaces. In order: an int or digit
    string (the index itself, checked to be in 0..999); a WordNet id (``"n02123045"``); an
    exact name (``"tabby"``); a unique whole-word match (``"hognose"``); a unique substring
    (``"retriev"`` is ambiguous, ``"golden retr"`` is not).

    Raises
    ------
    ValueError
        If nothing matches (with the closest names) or several classes match (listing them).
    """
    if isinstance(query, bool):
        raise TypeError("class query must be a str or int, not bool")
    if isinstance(query, (int, np.integer)):
        idx = int(query)
        if not 0 <= idx < 1000:
            raise ValueError(f"class index must be in 0..999, got {idx}")
        return idx
    if not isinstance(query, str):
        raise TypeError(f"class query must be a str or int, got {type(query).__name__}")
    q = query.strip()
    if not q:
        raise ValueError("empty class name")
    if q.isdigit():
        return find_class(int(q))
    wnids, names = _class_table()
    if _WNID.match(q):
        if q in wnids:
            return wnids.index(q)
        raise ValueError(f"unknown WordNet id {q!r} (not one of the 1000 ImageNet-1k classes)")
    nq = _norm(q)
    normed = [_norm(n) for n in names]
    if nq in normed:
        return normed.index(nq)
    word = re.compile(rf"\b{re.escape(nq)}\b")
    for matches in (
        [i for i, n in enumerate(normed) if word.search(n)],
        [i for i, n in enumerate(normed) if nq in n],
    ):
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            shown = ", ".join(f"{i} {names[i]!r}" for i in matches[:12])
            more = f" and {len(matches) - 12} more" if len(matches) > 12 else ""
            raise ValueError(
                f"class {query!r} is ambiguous: {len(matches)} classes match ({shown}{more}); "
                "give the full name or the index"
            )
    close = difflib.get_close_matches(nq, normed, n=5, cutoff=0.6)
    hint = f" Closest: {', '.join(repr(names[normed.index(c)]) for c in close)}." if close else ""
    raise ValueError(f"no ImageNet class matches {query!r}.{hint}")


# ----------------------------------------------------------------------------------------
# the ImageNet sample
# ----------------------------------------------------------------------------------------
def imagenet_sample_dir(path: str | os.PathLike | None = None) -> Path:
    """The folder of the ImageNet sample.

    ``path`` if given, else the environment variable ``CAMERAS_IMAGENET_SAMPLE``, else
    ``../shared/data/imagenet-sample`` relative to the repository root. A relative path given
    by argument or variable is taken relative to the current directory if it exists there,
    else to the repo root.

    Raises
    ------
    FileNotFoundError
        If the folder does not exist (the message says how to point to it).
    """
    source = "argument"
    if path is None:
        env = os.environ.get(_SAMPLE_ENV)
        if env:
            path, source = env, f"${_SAMPLE_ENV}"
        else:
            path, source = _SAMPLE_DEFAULT, "default"
    p = Path(path).expanduser()
    if not p.is_absolute() and (source == "default" or not p.exists()):
        p = REPO_ROOT / p
    p = p.resolve()
    if not p.is_dir():
        raise FileNotFoundError(
            f"ImageNet sample folder not found: {p} (from the {source}). Set "
            f"{_SAMPLE_ENV} to a folder of ImageNet-style images named <wnid>_<name>.JPEG, "
            "e.g. the 1000-image 'imagenet-sample-images' collection."
        )
    return p


@dataclass(frozen=True)
class SampleInfo:
    """One image of an :class:`ImageNetSample`."""

    path: Path
    label: int  #: ImageNet class index (from the WordNet id)
    wnid: str
    name: str  #: class name as written in the file name (``_`` -> space)

    @property
    def class_name(self) -> str:
        """torchvision's name of the class ``label``."""
        return _class_table()[1][self.label]


def _parse_sample_name(path: Path) -> SampleInfo:
    wnid, sep, rest = path.stem.partition("_")
    if not _WNID.match(wnid):
        raise ValueError(
            f"{path.name}: expected a file name '<wnid>_<name>.<ext>' starting with an "
            "ImageNet WordNet id such as n01440764"
        )
    wnids = _class_table()[0]
    try:
        label = wnids.index(wnid)
    except ValueError:
        raise ValueError(f"{path.name}: {wnid} is not one of the 1000 ImageNet-1k classes") from None
    name = rest.replace("_", " ") if sep else _class_table()[1][label]
    return SampleInfo(path=path, label=label, wnid=wnid, name=name)


class ImageNetSample:
    """A folder of ImageNet-style images ``<wnid>_<name>.<ext>`` as a (map-style) dataset.

    ``dataset[i]`` returns ``(image, label)``: the RGB :class:`PIL.Image.Image` (see
    :func:`cameras.images.load_image`), passed through ``transform`` if one is given (e.g. a
    model's ``preprocess``), and the ImageNet class index taken from the WordNet id. Files
    are in sorted order; for the shared sample (one image per class) ``label == i``.
    :attr:`samples` / :meth:`info` give paths, WordNet ids and names without loading.

    Parameters
    ----------
    root:
        The folder (default: :func:`imagenet_sample_dir`).
    transform:
        Applied to each PIL image.
    indices:
        Optional subset (positions in the sorted file list) to keep, e.g. ``range(0, 1000, 50)``.
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        transform: Callable[[Any], Any] | None = None,
        indices: Sequence[int] | None = None,
    ):
        self.root = imagenet_sample_dir(root)
        self.transform = transform
        files = sorted(
            p for p in self.root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not files:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {self.root}")
        samples = [_parse_sample_name(p) for p in files]
        if indices is not None:
            try:
                samples = [samples[i] for i in indices]
            except IndexError:
                raise IndexError(
                    f"indices out of range for {len(samples)} images in {self.root}"
                ) from None
        self.samples: list[SampleInfo] = samples

    def __len__(self) -> int:
        return len(self.samples)

    def info(self, i: int) -> SampleInfo:
        """Path, label, WordNet id and name of item ``i`` (no image loading)."""
        return self.samples[i]

    @property
    def labels(self) -> list[int]:
        """All labels, in order."""
        return [s.label for s in self.samples]

    def __getitem__(self, i: int):
        s = self.samples[i]
        img = load_image(s.path)
        if self.transform is not None:
            img = self.transform(img)
        return img, s.label

    def __repr__(self) -> str:
        return f"ImageNetSample({str(self.root)!r}, {len(self)} images)"


# ----------------------------------------------------------------------------------------
# scikit-image photos
# ----------------------------------------------------------------------------------------
#: The real photographs bundled with scikit-image that :func:`skimage_photos` returns.
SKIMAGE_PHOTOS = ("chelsea", "coffee", "rocket", "astronaut", "motorcycle_left")


def skimage_photos(names: Sequence[str] | str | None = None) -> dict[str, np.ndarray]:
    """scikit-image's bundled photographs as ``{name: (H, W, 3) uint8 RGB array}``.

    ``names``: a subset of :data:`SKIMAGE_PHOTOS` (default: all, in that order). chelsea is a
    tabby cat, coffee a cup of coffee, rocket a launch pad, astronaut Eileen Collins, and
    motorcycle_left the left view of the Middlebury stereo motorcycle. All ship inside the
    scikit-image wheel (no download).
    """
    from skimage import data as skdata

    if names is None:
        names = SKIMAGE_PHOTOS
    elif isinstance(names, str):
        names = [names]
    out: dict[str, np.ndarray] = {}
    for n in names:
        if n not in SKIMAGE_PHOTOS:
            raise ValueError(f"unknown scikit-image photo {n!r}; choose from {', '.join(SKIMAGE_PHOTOS)}")
        img = skdata.stereo_motorcycle()[0] if n == "motorcycle_left" else getattr(skdata, n)()
        img = np.ascontiguousarray(img[..., :3]).astype(np.uint8, copy=False)
        out[n] = img
    return out


# ----------------------------------------------------------------------------------------
# the images of an experiment
# ----------------------------------------------------------------------------------------
#: Where ImageNet val may sit under the data root (one folder per WordNet id in each).
VAL_LAYOUTS = ("imagenet/val", "ImageNet/val", "ILSVRC2012/val", "ILSVRC2012_img_val",
               "imagenet-val", "val")


def imagenet_val_dir(root: str | os.PathLike | None = None) -> Path:
    """ImageNet val as ``<wnid>/<file>.JPEG`` class folders under the data root.

    Looked up in :data:`VAL_LAYOUTS` under ``root`` or ``$CAMERAS_DATA_ROOT``. Raises
    :class:`MissingDataError` saying what to put where.
    """
    base = data_root(root)
    for rel in VAL_LAYOUTS:
        d = base / rel
        if (d / "n01440764").is_dir() or (d.is_dir() and any(_WNID.match(p.name) and p.is_dir()
                                                              for p in d.iterdir())):
            return d
    raise MissingDataError(
        f"ImageNet val not found under {base}: expected one folder per class "
        f"(<wnid>/ILSVRC2012_val_*.JPEG) in one of {', '.join(VAL_LAYOUTS)}. "
        "torchvision.datasets.ImageNet(root, split='val') creates this layout from "
        "ILSVRC2012_img_val.tar and ILSVRC2012_devkit_t12.tar.gz. The offline profiles use the "
        "ImageNet sample instead."
    )


@dataclass(frozen=True)
class ImageItem:
    """One image of an experiment: its file (or array), ImageNet label and name.

    ``name`` is the file stem (the results' ``image`` column); ``label`` is -1 for photos
    without an ImageNet class; ``source`` is a path or, for scikit-image photos, the array.
    """

    source: Any
    label: int
    name: str

    @property
    def path(self) -> Path:
        if not isinstance(self.source, Path):
            raise AttributeError(f"image {self.name!r} is an array, not a file")
        return self.source


def spread_indices(n_total: int, n: int | None) -> list[int]:
    """``n`` indices spread evenly over ``range(n_total)`` (all of them for ``None``)."""
    if n is None or n >= n_total:
        return list(range(n_total))
    return sorted({int(round(v)) for v in np.linspace(0, n_total - 1, n)})


def _all_items(data: str, root: str | os.PathLike | None, photos: Sequence[str] | None
               ) -> list[ImageItem]:
    if data == "imagenet_sample":
        return [ImageItem(s.path, s.label, s.path.stem) for s in ImageNetSample(root).samples]
    if data == "imagenet_val":
        base = imagenet_val_dir(root)
        index = {w: i for i, w in enumerate(imagenet_wnids())}
        files = sorted((f for d in base.iterdir() if d.is_dir() and d.name in index
                        for f in d.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES),
                       key=lambda f: (f.parent.name, f.name))
        if not files:
            raise MissingDataError(f"no images in the class folders of {base}")
        return [ImageItem(f, index[f.parent.name], f.stem) for f in files]
    if data == "skimage":
        return [ImageItem(a, -1, k) for k, a in skimage_photos(photos).items()]
    raise ValueError(f"data must be 'imagenet_sample', 'imagenet_val' or 'skimage', got {data!r}")


def image_items(
    data: str = "imagenet_sample",
    root: str | os.PathLike | None = None,
    *,
    n: int | None = None,
    stride: int = 1,
    classes: Sequence[str | int] | None = None,
    photos: Sequence[str] | None = None,
) -> list[ImageItem]:
    """The images an experiment uses, in a fixed order.

    ``data``: ``"imagenet_sample"`` (``root`` or ``$CAMERAS_IMAGENET_SAMPLE``; sorted file i is
    class i), ``"imagenet_val"`` (``root`` or ``$CAMERAS_DATA_ROOT``; sorted by class folder,
    then file) or ``"skimage"`` (:data:`SKIMAGE_PHOTOS`, or ``photos``). ``classes``: the first
    image of each class, in the order given (names or indices, :func:`find_class`).
    ``stride``: every stride-th image; then ``n``: that many, spread evenly
    (:func:`spread_indices`).
    """
    items = _all_items(data, root, photos)
    if classes is not None:
        first: dict[int, ImageItem] = {}
        for it in items:
            first.setdefault(it.label, it)
        wanted = [find_class(c) for c in classes]
        missing = [c for c, w in zip(classes, wanted, strict=True) if w not in first]
        if missing:
            raise ValueError(f"no image of class(es) {missing} in the {data} images")
        items = [first[w] for w in wanted]
    items = items[::stride]
    return [items[i] for i in spread_indices(len(items), n)]

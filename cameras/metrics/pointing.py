r"""Pointing game (Zhang et al., ECCV 2016; TorchRay's protocol, CAMERAS Table 1).

For every (image, class present in the image) pair, the maximum of the class's saliency map
(first maximum in row-major order, TorchRay's ``_saliency_to_point``) is a *hit* if it lies
within 15 pixels of the class's ground truth (the union of its boxes on VOC, of its instance
masks on COCO): TorchRay's :class:`~torchray.benchmark.pointing_game.PointingGame` accepts
the point if some ground-truth pixel is at squared distance ``< 15**2``. The score is the
**mean over classes of the per-class hit rate** (not the mean over pairs). TorchRay skips
a (VOC image, class) pair whose boxes are all marked PASCAL-*difficult*, and the *Difficult*
subset keeps only the pairs flagged in TorchRay's ``pointing_game_ebp_voc07_difficult.txt``
/ ``pointing_game_ebp_coco_difficult.txt`` (the lists of Zhang et al.: images with a small
object or several classes). :func:`pointing_game_run` runs the whole protocol through
TorchRay's :class:`~torchray.benchmark.pointing_game.PointingGameBenchmark` and writes one
row per pair with :mod:`cameras.runs`; :func:`pointing_game_summary` turns rows into scores.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from typing import Any
from xml.etree import ElementTree

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchray.benchmark.pointing_game import PointingGame

from ._common import saliency_point

__all__ = [
    "TOLERANCE",
    "saliency_point",
    "boxes_to_mask",
    "pointing_hit",
    "PointingScore",
    "load_difficult_flags",
    "pointing_game_summary",
    "pointing_game_run",
]

TOLERANCE = 15  #: pointing-game tolerance in pixels (Zhang et al.; TorchRay)


def boxes_to_mask(boxes: Iterable[Sequence[float]], height: int, width: int) -> Tensor:
    """Boolean ``(H, W)`` union of boxes ``(x0, y0, x1, y1)`` in 0-based *inclusive* pixels.

    (VOC XML boxes are 1-based inclusive: subtract 1 from each coordinate first, as TorchRay's
    ``voc_as_mask`` does.)
    """
    mask = torch.zeros(height, width, dtype=torch.bool)
    for b in boxes:
        x0, y0, x1, y1 = (int(round(float(v))) for v in b)
        mask[max(0, y0) : max(0, y1 + 1), max(0, x0) : max(0, x1 + 1)] = True
    return mask


def pointing_hit(mask: Tensor, point: Sequence[int] | Tensor, tolerance: int = TOLERANCE) -> bool:
    """TorchRay's test: is some pixel of ``mask`` at squared distance ``< tolerance**2``?

    ``point`` is ``(u, v)`` = (column, row). Computed by TorchRay's ``PointingGame.evaluate``.
    """
    if mask.dim() != 2:
        raise ValueError(f"mask must be (H, W), got shape {tuple(mask.shape)}")
    pg = PointingGame(1, tolerance=int(tolerance))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.meshgrid")
        return pg.evaluate(mask.bool().cpu(), [int(point[0]), int(point[1])]) == 1


class PointingScore(PointingGame):
    """TorchRay's :class:`PointingGame` accumulator with counts and both averages.

    ``add(class_id, outcome)`` with outcome ``+1`` (hit), ``-1`` (miss) or ``0`` (skipped).
    :attr:`accuracy` is TorchRay's: the mean over **all** ``num_classes`` of
    ``hits / max(1, hits + misses)`` -- the paper protocol; a class never evaluated counts as
    0, which only matters for partial runs. :attr:`accuracy_evaluated` averages over the
    classes with at least one evaluated pair (equal to :attr:`accuracy` on full VOC/COCO).
    """

    def __init__(self, num_classes: int, tolerance: int = TOLERANCE):
        super().__init__(int(num_classes), tolerance=int(tolerance))

    def add(self, class_id: int, outcome: int) -> None:
        if outcome not in (-1, 0, 1):
            raise ValueError(f"outcome must be +1 (hit), -1 (miss) or 0 (skip), got {outcome!r}")
        self.aggregate(int(outcome), int(class_id))

    @property
    def evaluated(self) -> int:
        return int((self.hits + self.misses).sum())

    @property
    def accuracy_evaluated(self) -> float:
        n = self.hits + self.misses
        seen = n > 0
        if not bool(seen.any()):
            return 0.0
        return float((self.hits[seen] / n[seen]).mean())

    @property
    def classes_evaluated(self) -> int:
        return int(((self.hits + self.misses) > 0).sum())


def load_difficult_flags(dataset: str) -> dict[str, list[bool]]:
    """TorchRay's difficult-subset flags: ``{image_name: [flag per class]}``.

    ``dataset``: ``"voc07"`` (4952 VOC 2007 test images x 20 classes) or ``"coco14"``
    (40137 COCO 2014 val images x 80 classes); files shipped with torchray.
    """
    import importlib.resources as res

    name = {"voc": "voc07", "voc07": "voc07", "voc_2007": "voc07", "coco": "coco",
            "coco14": "coco", "coco2014": "coco"}.get(dataset.lower())
    if name is None:
        raise ValueError(f"dataset must be 'voc07' or 'coco14', got {dataset!r}")
    fname = f"pointing_game_ebp_{name}_difficult.txt"
    text = res.files("torchray.benchmark").joinpath(fname).read_text()
    flags = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.rstrip("\n").split("\t")
        flags[parts[0]] = [bool(int(x)) for x in parts[1:]]
    return flags


def pointing_game_summary(
    rows, num_classes: int | None = None, by: Sequence[str] = ("model", "method")
) -> list[dict[str, Any]]:
    """Scores of pointing-game rows (a CSV path, a DataFrame or a list of dicts).

    Rows need ``class_id``, ``hit_all`` and ``hit_difficult`` (+1 / -1 / 0) and the ``by``
    columns. Returns one dict per group with ``all`` and ``difficult`` (TorchRay's mean of
    per-class accuracies over ``num_classes``), ``all_evaluated``/``difficult_evaluated``
    (mean over evaluated classes only), and the pair counts.
    """
    import pandas as pd

    from ..runs import read_results

    if isinstance(rows, (str, os.PathLike)):
        df = read_results(rows)
    elif isinstance(rows, pd.DataFrame):
        df = rows
    else:
        df = pd.DataFrame(list(rows))
    out = []
    if df.empty:
        return out
    if num_classes is None:
        if "num_classes" in df.columns:
            num_classes = int(df["num_classes"].max())
        else:
            raise ValueError("pass num_classes (20 for VOC, 80 for COCO)")
    for group, g in df.groupby(list(by), sort=True):
        s_all, s_diff = PointingScore(num_classes), PointingScore(num_classes)
        for c, a, d in zip(g["class_id"], g["hit_all"], g["hit_difficult"], strict=True):
            s_all.add(int(c), int(a))
            s_diff.add(int(c), int(d))
        rec = dict(zip(by, group if isinstance(group, tuple) else (group,), strict=True))
        rec.update(
            all=float(s_all.accuracy), difficult=float(s_diff.accuracy),
            all_evaluated=s_all.accuracy_evaluated, difficult_evaluated=s_diff.accuracy_evaluated,
            pairs=len(g), pairs_all=s_all.evaluated, pairs_difficult=s_diff.evaluated,
            images=int(g["image"].nunique()) if "image" in g.columns else None,
        )
        out.append(rec)
    return out


_COLUMNS = ["model", "method", "image", "target", "class_id", "class_name", "num_classes",
            "dataset", "width", "height", "point_u", "point_v", "hit_all", "hit_difficult",
            "layer", "settings"]


def _annotation(dataset, i: int):
    """The annotation of item ``i`` without decoding its image."""
    from torchvision import datasets as tvd

    if isinstance(dataset, tvd.VOCDetection):
        return dataset.parse_voc_xml(ElementTree.parse(dataset.annotations[dataset.selection[i]]).getroot())
    return dataset._load_target(dataset.ids[dataset.selection[i]])


class _PointingItem:
    """Maps and hits of one image of a TorchRay pointing-game dataset (all its classes)."""

    def __init__(self, model, dataset, spec, model_name, layer, settings, full_settings,
                 transform, device):
        from torchray.benchmark.pointing_game import PointingGameBenchmark

        from ..methods import default_layers, settings_json

        self.model, self.dataset, self.spec, self.name = model, dataset, spec, model_name
        self.layer, self.settings, self.full, self.transform = layer, settings, full_settings, transform
        self.device = torch.device(device)
        self.all = PointingGameBenchmark(dataset, difficult=False)
        self.diff = PointingGameBenchmark(dataset, difficult=True)
        used = layer if layer is not None or spec.layer != "required" else default_layers(model).get(spec.name)
        self.layer_used = used if isinstance(used, (str, type(None))) else settings_json({"layer": used})

    def keys(self, i: int) -> list[tuple]:
        label = _annotation(self.dataset, i)
        name = self.dataset.as_image_name(label)
        return [(self.name, self.spec.name, name, c) for c in self.dataset.as_class_ids(label)]

    def maps(self, img, class_ids, height: int, width: int) -> Tensor:
        from ..methods import saliency

        x = (img if isinstance(img, Tensor) else self.transform(img)).unsqueeze(0).to(self.device)
        maps = saliency(self.spec.name, self.model, x.expand(len(class_ids), -1, -1, -1), class_ids,
                        layer=self.layer, **self.settings)
        return F.interpolate(maps[:, None].float(), size=(height, width), mode="bilinear",
                             align_corners=False)[:, 0]

    def __call__(self, i: int) -> list[dict[str, Any]] | None:
        img, label = self.dataset[i]
        class_ids = self.dataset.as_class_ids(label)
        if not class_ids:
            return None
        width, height = self.dataset.as_image_size(label)
        if self.spec.name == "center":  # TorchRay's benchmark tests the point (w/2, h/2) itself
            from ..methods.perturbation import center_point

            points = torch.tensor([center_point(height, width)] * len(class_ids))
        else:
            points = saliency_point(self.maps(img, class_ids, height, width).cpu())
        rows = []
        for c, p in zip(class_ids, points.tolist(), strict=True):
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=r"torch\.meshgrid")
                a, d = self.all.evaluate(label, c, p), self.diff.evaluate(label, c, p)
            rows.append({
                "model": self.name, "method": self.spec.name, "image": self.dataset.as_image_name(label),
                "target": c, "class_id": c, "class_name": self.dataset.classes[c],
                "num_classes": self.all.num_classes, "dataset": _kind(self.dataset), "width": width,
                "height": height, "point_u": p[0], "point_v": p[1], "hit_all": a, "hit_difficult": d,
                "layer": self.layer_used, "settings": self.full,
            })
        return rows


def _kind(dataset) -> str:
    from ..datasets import dataset_kind

    return dataset_kind(dataset)


def _benchmark_settings(method: str, kind: str, settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` with TorchRay's benchmark defaults: extremal perturbation's areas on COCO,
    RISE's sigmoid scores (TorchRay's VOC/COCO models are multi-label)."""
    if method == "extremal_perturbation" and kind == "coco14" and "areas" not in settings:
        settings["areas"] = [0.018, 0.025, 0.05, 0.1]  # TorchRay's benchmark for COCO
    if method == "rise":
        settings.setdefault("scores", "sigmoid")
    return settings


def _file_summary(path, model_name: str, method: str, num_classes: int) -> list[dict[str, Any]]:
    """:func:`pointing_game_summary` of the rows of ``model_name`` and ``method`` in ``path``."""
    import pandas as pd

    from ..runs import read_results

    df = read_results(path)
    return pointing_game_summary(pd.DataFrame(df[(df["model"] == model_name) & (df["method"] == method)]),
                                 num_classes)


def pointing_game_run(
    model: nn.Module | str,
    dataset,
    method: str,
    *,
    path: str | os.PathLike | None = None,
    model_name: str | None = None,
    layer=None,
    limit: int | None = None,
    indices: Sequence[int] | None = None,
    device: str | torch.device = "cpu",
    input_size: int | None = None,
    progress: bool = True,
    **settings: Any,
) -> list[dict[str, Any]]:
    """The paper profile of Table 1: TorchRay's pointing game of ``method`` on a dataset.

    Parameters
    ----------
    model:
        A TorchRay fine-tuned model prepared for the method
        (:func:`cameras.datasets.pointing_model`), or its architecture name (``"vgg16"``,
        ``"resnet50"``), which loads it.
    dataset:
        :func:`cameras.datasets.voc2007_test` / :func:`cameras.datasets.coco2014_val` (TorchRay
        dataset returning PIL images; a tensor-returning transform is used as is).
    method, layer, settings:
        Passed to :func:`cameras.methods.saliency` (defaults: TorchRay's benchmark layers;
        for ``extremal_perturbation`` on COCO the benchmark's COCO areas).
    path:
        Results CSV (default ``$CAMERAS_RESULTS/pointing_<dataset>_<model>_<method>.csv``);
        one row per (image, class) written as it goes; re-running resumes.
    limit, indices:
        Evaluate only the first ``limit`` images / these dataset indices.
    input_size:
        Shorter side of the network input (TorchRay: 224; RISE uses a 224 x 224 square, as
        TorchRay's benchmark).

    Returns :func:`pointing_game_summary` of the rows in the file for this model and method.

    Like TorchRay's benchmark, each image is preprocessed with the Caffe transform of the
    fine-tuned models, the map of every class present is computed (one batch per image), it
    is resized to the original image size (bilinear) and its maximum is tested by
    ``PointingGameBenchmark`` in the *All* and *Difficult* settings.
    """
    from torchvision import datasets as tvd

    from ..datasets import pointing_model, pointing_transform
    from ..methods import info, method_settings
    from ..runs import results_dir, run_evaluation

    if not isinstance(dataset, (tvd.VOCDetection, tvd.CocoDetection)):
        raise TypeError("dataset must be a (TorchRay) VOCDetection or CocoDetection")
    kind, spec = _kind(dataset), info(method)
    if isinstance(model, str):
        model_name = model_name or f"{model}_{kind}"
        model = pointing_model(model, kind, spec.name, device=device)
    model_name = model_name or type(model).__name__
    full = method_settings(spec.name, **_benchmark_settings(spec.name, kind, settings))
    size = input_size or 224
    shape = (size, size) if spec.name == "rise" else size
    item = _PointingItem(model, dataset, spec, model_name, layer, settings, full,
                         pointing_transform(kind, shape), device)
    path = path or results_dir() / f"pointing_{kind}_{model_name}_{spec.name}.csv"
    todo = list(indices) if indices is not None else list(range(len(dataset)))
    todo = todo[: int(limit)] if limit is not None else todo
    meta = {"task": "pointing_game", "dataset": kind, "model": model_name, "method": spec.name,
            "layer": item.layer_used, "settings": full, "tolerance": item.all.tolerance,
            "input_size": list(shape) if isinstance(shape, tuple) else shape}
    model.eval()
    run_evaluation(todo, item, path, keys_of=item.keys, columns=_COLUMNS, meta=meta,
                   device=item.device, identity={"settings": full, "input_size": meta["input_size"]},
                   desc=f"pointing {kind} {model_name} {spec.name}", progress=progress)
    return _file_summary(path, model_name, spec.name, item.all.num_classes)

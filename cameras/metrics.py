r"""Metrics for saliency maps: pointing game, grid pointing game, map density, insertion/deletion.

Pointing game (Zhang et al., ECCV 2016; TorchRay's protocol, CAMERAS Table 1)
-----------------------------------------------------------------------------
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

Grid pointing game (Böhle, Fritz & Schiele, CVPR 2022, "B-cos networks")
-----------------------------------------------------------------------
An offline proxy for localisation without box annotations: 2x2 grids of *confidently*
classified images of four different classes (:func:`make_grids`); for the class of each
cell, the share of the map's positive mass inside that cell and whether the map's maximum
falls in it (:func:`grid_pointing_game`).

Map density (CAMERAS, Table 2)
------------------------------
:func:`map_density`: :math:`\rho^+ = P(y \mid I\odot\Psi) / \mathrm{mean}(\Psi)` and
:math:`\rho^- = P(y \mid I\odot(1-\Psi)) / \mathrm{mean}(1-\Psi)`.

Insertion / deletion (Petsiuk, Das & Saenko, BMVC 2018)
-------------------------------------------------------
:func:`insertion_deletion`: the area under the curve of the true class's softmax probability
while pixels are inserted into a blurred canvas / deleted to black in the map's order.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchray.benchmark.pointing_game import PointingGame

__all__ = [
    "saliency_point",
    "boxes_to_mask",
    "pointing_hit",
    "PointingScore",
    "load_difficult_flags",
    "pointing_game_summary",
    "pointing_game_run",
    "Grids",
    "confident_indices",
    "make_grids",
    "grid_cell_bounds",
    "grid_pointing_game",
    "grid_pointing_run",
    "map_density",
    "insertion_deletion",
    "auc",
]

TOLERANCE = 15  #: pointing-game tolerance in pixels (Zhang et al.; TorchRay)


# ========================================================================================
# pointing game
# ========================================================================================
def saliency_point(maps: Tensor) -> Tensor:
    """``(B, 2)`` LongTensor of ``(u, v) = (column, row)`` of each map's maximum.

    The first maximum in row-major order, as TorchRay's benchmark (``argmax`` of the
    flattened map). ``maps``: ``(B, H, W)``, ``(B, 1, H, W)`` or ``(H, W)``.
    """
    if maps.dim() == 2:
        maps = maps[None]
    if maps.dim() == 4:
        maps = maps[:, 0]
    w = maps.shape[-1]
    flat = maps.reshape(maps.shape[0], -1)
    # torch.argmax does not promise the first index on ties; use it explicitly
    m = flat.max(dim=1, keepdim=True).values
    idx = (flat == m).to(torch.uint8).argmax(dim=1)
    return torch.stack((idx % w, idx // w), dim=1)


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

    from .runs import read_results

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
    from torchray.benchmark.pointing_game import PointingGameBenchmark
    from torchvision import datasets as tvd

    from .datasets import dataset_kind, pointing_model, pointing_transform
    from .methods import info, method_settings, saliency, settings_json
    from .methods.perturbation import center_map
    from .runs import results_dir, run_evaluation

    kind = dataset_kind(dataset)  # "voc07" or "coco14"
    spec = info(method)
    if isinstance(model, str):
        arch = model
        model = pointing_model(arch, kind, spec.name, device=device)
        model_name = model_name or f"{arch}_{kind}"
    model_name = model_name or type(model).__name__
    if spec.name == "extremal_perturbation" and kind == "coco14" and "areas" not in settings:
        settings["areas"] = [0.018, 0.025, 0.05, 0.1]  # TorchRay's benchmark for COCO
    full_settings = method_settings(spec.name, **settings)
    square = spec.name == "rise"
    size = input_size or 224
    transform = pointing_transform(kind, (size, size) if square else size)
    if path is None:
        path = results_dir() / f"pointing_{kind}_{model_name}_{spec.name}.csv"
    bench_all = PointingGameBenchmark(dataset, difficult=False)
    bench_diff = PointingGameBenchmark(dataset, difficult=True)
    num_classes = bench_all.num_classes
    if not isinstance(dataset, (tvd.VOCDetection, tvd.CocoDetection)):  # pragma: no cover
        raise TypeError("dataset must be a (TorchRay) VOCDetection or CocoDetection")
    todo = list(indices) if indices is not None else list(range(len(dataset)))
    if limit is not None:
        todo = todo[: int(limit)]

    def label_of(i):
        # annotations only: avoid decoding the image for items that are already done
        if isinstance(dataset, tvd.VOCDetection):
            target = dataset.parse_voc_xml(
                ElementTree.parse(dataset.annotations[dataset.selection[i]]).getroot())
        else:
            image_id = dataset.ids[dataset.selection[i]]
            target = dataset._load_target(image_id)
        return target

    def keys_of(i):
        label = label_of(i)
        name = dataset.as_image_name(label)
        return [(model_name, spec.name, name, c) for c in dataset.as_class_ids(label)]

    layer_used = layer
    if layer is None and spec.layer == "required":
        from .methods import default_layers

        layer_used = default_layers(model).get(spec.name)
    meta = {
        "task": "pointing_game", "dataset": kind, "model": model_name, "method": spec.name,
        "layer": layer_used, "settings": full_settings, "tolerance": bench_all.tolerance,
        "input_size": [size, size] if square else size,
    }
    dev = torch.device(device)

    def evaluate(i):
        img, label = dataset[i]
        class_ids = dataset.as_class_ids(label)
        if not class_ids:
            return None
        width, height = dataset.as_image_size(label)
        name = dataset.as_image_name(label)
        x = img if isinstance(img, Tensor) else transform(img)
        x = x.unsqueeze(0).to(dev)
        if spec.name == "center":
            maps = center_map(height, width, len(class_ids))
        else:
            maps = saliency(spec.name, model, x.expand(len(class_ids), -1, -1, -1), class_ids,
                            layer=layer, **settings)
            maps = F.interpolate(maps[:, None].float(), size=(height, width), mode="bilinear",
                                 align_corners=False)[:, 0]
        points = saliency_point(maps.cpu())
        rows = []
        for c, p in zip(class_ids, points.tolist(), strict=True):
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=r"torch\.meshgrid")
                a = bench_all.evaluate(label, c, p)
                d = bench_diff.evaluate(label, c, p)
            rows.append({
                "model": model_name, "method": spec.name, "image": name, "target": c,
                "class_id": c, "class_name": dataset.classes[c], "num_classes": num_classes,
                "dataset": kind, "width": width, "height": height, "point_u": p[0],
                "point_v": p[1], "hit_all": a, "hit_difficult": d,
                "layer": layer_used if isinstance(layer_used, str) else settings_json(
                    {"layer": layer_used}),
                "settings": full_settings,
            })
        return rows

    columns = ["model", "method", "image", "target", "class_id", "class_name", "num_classes",
               "dataset", "width", "height", "point_u", "point_v", "hit_all", "hit_difficult",
               "layer", "settings"]
    model.eval()
    run_evaluation(todo, evaluate, path, keys_of=keys_of, columns=columns, meta=meta,
                   device=dev, desc=f"pointing {kind} {model_name} {spec.name}",
                   progress=progress)
    import pandas as pd

    from .runs import read_results

    df = read_results(path)
    df = df[(df["model"] == model_name) & (df["method"] == spec.name)]
    return pointing_game_summary(pd.DataFrame(df), num_classes)


# ========================================================================================
# grid pointing game
# ========================================================================================
@dataclass
class Grids:
    """2x2 (``grid x grid``) image grids for the grid pointing game.

    Attributes
    ----------
    images: ``(N, C, grid*h, grid*w)`` normalised images.
    labels: ``(N, grid*grid)`` class of each cell, cells in row-major order.
    sources: ``(N, grid*grid)`` index of each cell's image in the input collection.
    confidence: ``(N, grid*grid)`` softmax probability of each cell's class on its own image.
    grid: cells per side.
    """

    images: Tensor
    labels: Tensor
    sources: Tensor
    confidence: Tensor
    grid: int = 2

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def cells(self) -> int:
        return self.grid * self.grid


def _probabilities(model: nn.Module, images: Tensor, batch_size: int) -> Tensor:
    probs = []
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i in range(0, images.shape[0], batch_size):
                probs.append(model(images[i : i + batch_size]).softmax(dim=1).float().cpu())
    finally:
        model.train(was)
    return torch.cat(probs)


def confident_indices(
    model: nn.Module, images: Tensor, labels, threshold: float = 0.5,
    require_correct: bool = True, batch_size: int = 32,
) -> tuple[Tensor, Tensor]:
    """Indices of images classified as their label with softmax probability ``>= threshold``.

    Returns ``(indices, probability of the label for every image)``.
    """
    labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    if labels.numel() != images.shape[0]:
        raise ValueError(f"got {labels.numel()} labels for {images.shape[0]} images")
    p = _probabilities(model, images, batch_size)
    p_label = p.gather(1, labels.view(-1, 1))[:, 0]
    ok = p_label >= threshold
    if require_correct:
        ok &= p.argmax(dim=1) == labels
    return ok.nonzero()[:, 0], p_label


def make_grids(
    model: nn.Module,
    images: Tensor,
    labels,
    n_grids: int,
    rng: np.random.Generator | int | None = 0,
    *,
    threshold: float = 0.5,
    require_correct: bool = True,
    grid: int = 2,
    cell_size: int | None = None,
    batch_size: int = 32,
) -> Grids:
    """Grids of confidently classified images of ``grid*grid`` different classes.

    Following Böhle et al. (CVPR 2022), only images that the model classifies correctly
    (``require_correct``) with softmax probability ``>= threshold`` are used, so that each
    cell's class is evidently present in that cell and only there. Each grid draws
    ``grid*grid`` distinct classes at random (``rng``: a NumPy generator or a seed), then one
    confident image of each class at random; grids differ in their class sets or images
    where possible.

    ``images``: ``(M, C, H, W)`` normalised images of one size; ``cell_size`` resizes every
    cell to ``cell_size x cell_size`` first (bilinear, antialiased) so that a grid can have the
    model's native size (e.g. 112 px cells for a 224 px grid); by default the grid is
    ``(grid*H, grid*W)``.
    """
    if grid < 2:
        raise ValueError(f"grid must be at least 2, got {grid}")
    if images.dim() != 4:
        raise ValueError(f"images must be (M, C, H, W), got {tuple(images.shape)}")
    if not isinstance(n_grids, int) or n_grids < 1:
        raise ValueError(f"n_grids must be a positive int, got {n_grids!r}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    labels_t = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    idx, p_label = confident_indices(model, images, labels_t, threshold, require_correct,
                                     batch_size)
    by_class: dict[int, list[int]] = {}
    for i in idx.tolist():
        by_class.setdefault(int(labels_t[i]), []).append(i)
    k = grid * grid
    if len(by_class) < k:
        raise ValueError(
            f"only {len(by_class)} classes have confidently classified images "
            f"({len(idx)} images with p >= {threshold}{' and correct' if require_correct else ''}); "
            f"a {grid}x{grid} grid needs {k} different classes. Lower the threshold or add images."
        )
    classes = sorted(by_class)
    cells = images
    if cell_size is not None:
        cells = F.interpolate(images, size=(cell_size, cell_size), mode="bilinear",
                              align_corners=False, antialias=True)
    C, h, w = cells.shape[1:]
    out = torch.empty(n_grids, C, grid * h, grid * w, dtype=images.dtype, device=images.device)
    lab = torch.empty(n_grids, k, dtype=torch.long)
    src = torch.empty(n_grids, k, dtype=torch.long)
    seen: set[tuple[int, ...]] = set()
    for n in range(n_grids):
        for _attempt in range(20):
            chosen = rng.choice(len(classes), size=k, replace=False)
            picks = [int(rng.choice(by_class[classes[c]])) for c in chosen]
            if tuple(picks) not in seen:
                break
        seen.add(tuple(picks))
        for j, i in enumerate(picks):
            r, c = divmod(j, grid)
            out[n, :, r * h : (r + 1) * h, c * w : (c + 1) * w] = cells[i]
            lab[n, j] = labels_t[i]
            src[n, j] = i
    return Grids(out, lab, src, p_label[src], grid)


def grid_cell_bounds(height: int, width: int, cell: int, grid: int = 2) -> tuple[slice, slice]:
    """Row and column slices of cell ``cell`` (row-major) of a ``grid x grid`` layout."""
    if not 0 <= cell < grid * grid:
        raise ValueError(f"cell must be in [0, {grid * grid}), got {cell}")
    r, c = divmod(int(cell), grid)
    return (slice(r * height // grid, (r + 1) * height // grid),
            slice(c * width // grid, (c + 1) * width // grid))


def grid_pointing_game(maps: Tensor, cell_index, grid: int = 2) -> dict[str, Any]:
    """Localisation of each map in its grid cell (Böhle et al., CVPR 2022).

    Parameters
    ----------
    maps:
        ``(N, H, W)`` maps (or one ``(H, W)``) of a grid image, each for the class of its cell.
        Negative values are ignored (only positive saliency counts).
    cell_index:
        The cell (row-major, ``0 .. grid*grid-1``) of each map's class: an int or ``N`` ints.

    Returns ``{"share": (N,), "hit": (N,) bool, "mean_share", "hit_rate", "n"}`` where
    ``share`` is the fraction of the map's positive mass inside the cell (the B-cos paper's
    localisation score) and ``hit`` whether the maximum (first in row-major order) lies in
    it. An all-zero map has share 0 and no hit (it points nowhere).
    """
    if maps.dim() == 2:
        maps = maps[None]
    if maps.dim() != 3:
        raise ValueError(f"maps must be (N, H, W), got {tuple(maps.shape)}")
    N, H, W = maps.shape
    cells = torch.as_tensor(cell_index, dtype=torch.long).reshape(-1)
    if cells.numel() == 1:
        cells = cells.expand(N)
    if cells.numel() != N:
        raise ValueError(f"got {cells.numel()} cell indices for {N} maps")
    pos = maps.detach().float().clamp_min(0).cpu()
    total = pos.sum(dim=(1, 2))
    share = torch.zeros(N)
    hit = torch.zeros(N, dtype=torch.bool)
    pts = saliency_point(pos)
    for n in range(N):
        rs, cs = grid_cell_bounds(H, W, int(cells[n]), grid)
        if total[n] > 0:
            share[n] = pos[n, rs, cs].sum() / total[n]
            u, v = int(pts[n, 0]), int(pts[n, 1])
            hit[n] = rs.start <= v < rs.stop and cs.start <= u < cs.stop
    return {
        "share": share,
        "hit": hit,
        "mean_share": float(share.mean()) if N else math.nan,
        "hit_rate": float(hit.float().mean()) if N else math.nan,
        "n": N,
    }


def grid_pointing_run(
    model: nn.Module,
    grids: Grids,
    method: str,
    *,
    model_name: str,
    path: str | os.PathLike | None = None,
    layer=None,
    progress: bool = True,
    **settings: Any,
) -> dict[str, Any]:
    """Grid pointing game of ``method`` over ``grids`` (one batch of ``grid*grid`` maps per grid).

    With ``path``, one row per (grid, cell) is written with :mod:`cameras.runs` (key
    ``model, method, image=grid<n>, target=<class>``) and the run resumes after a crash.
    Returns ``{"mean_share", "hit_rate", "n", "share": (N*cells,), "hit": ...}`` over all
    rows in the file for this model and method (or over this call without ``path``).
    """
    from .methods import info, method_settings, saliency
    from .runs import read_results, run_evaluation

    spec = info(method)
    full = method_settings(spec.name, **settings)
    k = grids.cells

    def evaluate(n):
        x = grids.images[n : n + 1].expand(k, -1, -1, -1)
        maps = saliency(spec.name, model, x, grids.labels[n].tolist(), layer=layer, **settings)
        res = grid_pointing_game(maps, list(range(k)), grids.grid)
        return [
            {"model": model_name, "method": spec.name, "image": f"grid{n:05d}",
             "target": int(grids.labels[n, j]), "cell": j, "source": int(grids.sources[n, j]),
             "confidence": float(grids.confidence[n, j]), "share": float(res["share"][j]),
             "hit": int(res["hit"][j]), "settings": full}
            for j in range(k)
        ]

    if path is None:
        rows = [r for n in range(len(grids)) for r in evaluate(n)]
        share = torch.tensor([r["share"] for r in rows])
        hit = torch.tensor([bool(r["hit"]) for r in rows])
    else:
        def keys_of(n):
            return [(model_name, spec.name, f"grid{n:05d}", int(c)) for c in grids.labels[n]]

        run_evaluation(range(len(grids)), evaluate, path, keys_of=keys_of,
                       meta={"task": "grid_pointing_game", "method": spec.name,
                             "model": model_name, "settings": full, "layer": layer,
                             "grid": grids.grid, "n_grids": len(grids)},
                       desc=f"grid pointing {model_name} {spec.name}", progress=progress)
        df = read_results(path)
        df = df[(df["model"] == model_name) & (df["method"] == spec.name)]
        share = torch.tensor(df["share"].to_numpy(dtype=float))
        hit = torch.tensor(df["hit"].to_numpy(dtype=int)).bool()
    return {"mean_share": float(share.mean()) if len(share) else math.nan,
            "hit_rate": float(hit.float().mean()) if len(hit) else math.nan,
            "n": len(share), "share": share, "hit": hit}


# ========================================================================================
# map density (CAMERAS Table 2)
# ========================================================================================
def _stats(mean, std, like: Tensor) -> tuple[Tensor, Tensor]:
    m = torch.as_tensor(mean, dtype=like.dtype, device=like.device).reshape(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=like.dtype, device=like.device).reshape(1, -1, 1, 1)
    if m.shape[1] not in (1, like.shape[1]) or s.shape[1] not in (1, like.shape[1]):
        raise ValueError(f"mean/std must have 1 or {like.shape[1]} values")
    return m, s


def _baseline01(baseline, images01: Tensor, mean: Tensor) -> Tensor:
    """The replacement image in [0, 1] pixel space."""
    if isinstance(baseline, Tensor):
        return baseline.to(images01).expand_as(images01)
    if baseline == "black":
        return torch.zeros_like(images01)
    if baseline == "mean":
        return mean.expand_as(images01)
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        return torch.full_like(images01, float(baseline))
    raise ValueError(f"baseline must be 'black', 'mean', a gray level in [0, 1] or a tensor, got {baseline!r}")


def _class_probability(model: nn.Module, x: Tensor, labels: Tensor, batch_size: int) -> Tensor:
    out = []
    with torch.no_grad():
        for i in range(0, x.shape[0], batch_size):
            p = model(x[i : i + batch_size]).float().softmax(dim=1)
            out.append(p.gather(1, labels[i : i + batch_size].view(-1, 1).to(p.device))[:, 0])
    return torch.cat(out)


def _prepare_maps(maps: Tensor, images: Tensor) -> Tensor:
    if maps.dim() == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.dim() != 3 or maps.shape[0] != images.shape[0]:
        raise ValueError(f"maps must be (B, H, W) for {images.shape[0]} images, got {tuple(maps.shape)}")
    if tuple(maps.shape[-2:]) != tuple(images.shape[-2:]):
        raise ValueError(
            f"maps are {tuple(maps.shape[-2:])} but images are {tuple(images.shape[-2:])}"
        )
    if not bool(torch.isfinite(maps).all()):
        raise ValueError("maps contain NaN or inf")
    if float(maps.min()) < 0 or float(maps.max()) > 1:
        raise ValueError("maps must be in [0, 1] (use cameras.core.normalize_maps)")
    return maps.to(images)


def map_density(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    labels,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    baseline: str | float | Tensor = "black",
    batch_size: int = 32,
    return_details: bool = False,
):
    r"""Map density of CAMERAS (Table 2): ``(rho_plus, rho_minus)``, one value per image.

    .. math::
        \rho^+ = \frac{P(y \mid I\odot\Psi)}{\mathrm{mean}(\Psi)}, \qquad
        \rho^- = \frac{P(y \mid I\odot(1-\Psi))}{\mathrm{mean}(1-\Psi)}

    with :math:`P` the softmax probability of the true label ``y`` and :math:`\Psi` the map
    in [0, 1] (higher :math:`\rho^+` and lower :math:`\rho^-` are better: the map packs the
    class evidence into little area).

    **Masking.** The product is taken in *pixel* space ([0, 1] images): the masked image is
    :math:`I\odot\Psi + B\odot(1-\Psi)`, i.e. pixels fade towards a baseline image ``B`` where
    the map is low. ``baseline="black"`` (default) is the paper's literal :math:`I\odot\Psi`
    (multiplying pixels by the map fades them to black, 0 in pixel space, which is *not* 0 in
    the model's normalised space); ``"mean"`` fades to the dataset mean colour (0 in
    normalised space, i.e. multiplying the *normalised* tensor); a number is a gray level; a
    tensor is any baseline image in pixel space. ``images`` are normalised model inputs;
    ``mean``/``std`` are the model's normalisation (e.g. ``LoadedModel.mean``/``.std``).

    **Empty maps.** If :math:`\mathrm{mean}(\Psi) = 0` (an all-zero map -- what
    :func:`~cameras.core.normalize_maps` returns for a constant map) the masked image holds
    only the baseline and the ratio is 0/0-like: its limit for :math:`\Psi = \epsilon \to 0`
    is :math:`+\infty`, which would make an empty map the best possible. We return
    :math:`\rho^+ = 0` instead: a map that keeps nothing explains nothing. Symmetrically, if
    :math:`\mathrm{mean}(1-\Psi) = 0` (an all-ones map; impossible after min-max
    normalisation) we return :math:`\rho^- = +\infty` (worst). So a degenerate map always gets
    the worst value, never NaN; ``return_details=True`` also returns a dict with the two
    probabilities, the map means and the boolean masks ``empty`` / ``full`` so such maps can
    be counted or excluded.
    """
    if images.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got {tuple(images.shape)}")
    maps = _prepare_maps(maps, images)
    labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    if labels.numel() == 1:
        labels = labels.expand(images.shape[0])
    if labels.numel() != images.shape[0]:
        raise ValueError(f"got {labels.numel()} labels for {images.shape[0]} images")
    m, s = _stats(mean, std, images)
    x01 = images * s + m
    b01 = _baseline01(baseline, x01, m)
    psi = maps[:, None]
    keep = (x01 * psi + b01 * (1 - psi) - m) / s
    drop = (x01 * (1 - psi) + b01 * psi - m) / s
    was = model.training
    model.eval()
    try:
        p_plus = _class_probability(model, keep, labels, batch_size).cpu()
        p_minus = _class_probability(model, drop, labels, batch_size).cpu()
    finally:
        model.train(was)
    a_plus = maps.float().mean(dim=(1, 2)).cpu()
    a_minus = (1 - maps.float()).mean(dim=(1, 2)).cpu()
    empty = a_plus <= 0
    full = a_minus <= 0
    rho_plus = torch.where(empty, torch.zeros_like(p_plus), p_plus / a_plus.clamp_min(1e-30))
    rho_minus = torch.where(full, torch.full_like(p_minus, math.inf),
                            p_minus / a_minus.clamp_min(1e-30))
    if return_details:
        return rho_plus, rho_minus, {
            "p_plus": p_plus, "p_minus": p_minus, "mean_map": a_plus,
            "mean_complement": a_minus, "empty": empty, "full": full,
        }
    return rho_plus, rho_minus


# ========================================================================================
# insertion / deletion (RISE paper)
# ========================================================================================
def auc(curve: Tensor) -> Tensor:
    """Trapezoidal area under curves ``(..., S+1)`` sampled uniformly on [0, 1] (RISE's)."""
    n = curve.shape[-1] - 1
    if n < 1:
        raise ValueError("a curve needs at least two points")
    return (curve.sum(dim=-1) - curve[..., 0] / 2 - curve[..., -1] / 2) / n


def _substrate01(kind, x01: Tensor, images: Tensor, m: Tensor, s: Tensor,
                 blur_kernel: int, blur_sigma: float) -> Tensor:
    if isinstance(kind, Tensor):
        return kind.to(x01).expand_as(x01)
    if kind == "blur":
        from torchvision.transforms.functional import gaussian_blur

        # RISE blurs the model input (kernel 11, sigma 5); blur is linear, so blurring the
        # normalised tensor and the pixels is the same up to the affine normalisation.
        return gaussian_blur(x01, kernel_size=[blur_kernel, blur_kernel],
                             sigma=[blur_sigma, blur_sigma])
    return _baseline01(kind, x01, m)


def insertion_deletion(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    labels,
    mode: str = "deletion",
    *,
    mean: Sequence[float],
    std: Sequence[float],
    step: int | None = None,
    n_steps: int | None = None,
    substrate: str | float | Tensor | None = None,
    batch_size: int = 32,
    blur_kernel: int = 11,
    blur_sigma: float = 5.0,
) -> tuple[Tensor, Tensor]:
    """Insertion or deletion AUC (Petsiuk et al., BMVC 2018): ``(auc (B,), curves (B, S+1))``.

    Pixels are ranked by the map (descending; ties in row-major order). *Deletion* starts
    from the image and replaces the top ``k`` pixels by the substrate (default black, 0 in
    pixel space); *insertion* starts from the substrate (default the blurred image, Gaussian
    kernel 11 / sigma 5 as in RISE) and puts back the top ``k`` pixels of the image. ``k``
    grows by ``step`` pixels (default: the image width, i.e. 224 per step at 224 px as in
    RISE) or in ``n_steps`` equal steps, from 0 to all pixels; the curve is the softmax
    probability of the true label at each step and the score its trapezoidal area on [0, 1]
    (:func:`auc`). All steps of an image run through the model in batches of ``batch_size``.
    ``substrate``: ``"black"``, ``"mean"`` (the mean colour, 0 in normalised space -- what
    RISE's code calls ``zeros_like``), ``"blur"``, a gray level or a pixel-space tensor.
    """
    if mode not in ("insertion", "deletion"):
        raise ValueError(f"mode must be 'insertion' or 'deletion', got {mode!r}")
    if images.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got {tuple(images.shape)}")
    if maps.dim() == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.dim() != 3 or tuple(maps.shape) != (images.shape[0], *images.shape[-2:]):
        raise ValueError(f"maps must be (B, H, W) matching images {tuple(images.shape)}, "
                         f"got {tuple(maps.shape)}")
    if not bool(torch.isfinite(maps).all()):
        raise ValueError("maps contain NaN or inf")
    B, C, H, W = images.shape
    P = H * W
    if n_steps is not None and step is not None:
        raise ValueError("give step or n_steps, not both")
    if n_steps is None:
        step = int(step or W)
        if step < 1:
            raise ValueError(f"step must be positive, got {step}")
        n_steps = math.ceil(P / step)
        counts = [min(i * step, P) for i in range(n_steps + 1)]
    else:
        if n_steps < 1:
            raise ValueError(f"n_steps must be positive, got {n_steps}")
        counts = [round(i * P / n_steps) for i in range(n_steps + 1)]
    labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    if labels.numel() == 1:
        labels = labels.expand(B)
    if labels.numel() != B:
        raise ValueError(f"got {labels.numel()} labels for {B} images")
    if substrate is None:
        substrate = "blur" if mode == "insertion" else "black"
    m, s = _stats(mean, std, images)
    x01 = images * s + m
    sub01 = _substrate01(substrate, x01, images, m, s, blur_kernel, blur_sigma)
    counts_t = torch.tensor(counts, device=images.device)
    curves = torch.empty(B, len(counts))
    was = model.training
    model.eval()
    try:
        for b in range(B):
            order = torch.argsort(maps[b].reshape(-1), descending=True, stable=True)
            rank = torch.empty(P, dtype=torch.long, device=images.device)
            rank[order] = torch.arange(P, device=images.device)
            probs = []
            for i in range(0, len(counts), batch_size):
                k = counts_t[i : i + batch_size]
                top = (rank[None, :] < k[:, None]).reshape(-1, 1, H, W)  # (S, 1, H, W)
                if mode == "deletion":
                    z = torch.where(top, sub01[b : b + 1], x01[b : b + 1])
                else:
                    z = torch.where(top, x01[b : b + 1], sub01[b : b + 1])
                z = (z - m) / s
                probs.append(_class_probability(model, z, labels[b : b + 1].expand(len(k)),
                                                len(k)).cpu())
            curves[b] = torch.cat(probs)
    finally:
        model.train(was)
    return auc(curves), curves

"""Grid pointing game (Böhle, Fritz & Schiele, CVPR 2022, "B-cos networks").

An offline proxy for localisation without box annotations: 2x2 grids of *confidently*
classified images of four different classes (:func:`make_grids`); for the class of each
cell, the share of the map's positive mass inside that cell and whether the map's maximum
falls in it (:func:`grid_pointing_game`); :func:`grid_pointing_rows` scores a chunk of grids
for one method (all their cells in one batch).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._common import saliency_point
from ._info import MetricInfo, describe

__all__ = ["Grids", "confident_indices", "make_grids", "grid_cell_bounds", "grid_pointing_game",
           "grid_pointing_rows", "GRID_COLUMNS"]

describe(MetricInfo("share", "mass in the right cell", True, (0, 100), "%",
                    "Böhle et al., CVPR 2022", "share of the map's positive mass in the class's cell"))
describe(MetricInfo("hit", "maximum in the right cell", True, (0, 100), "%",
                    "Böhle et al., CVPR 2022", "whether the map's maximum lies in the class's cell"))

#: columns of the rows of :func:`grid_pointing_rows`
GRID_COLUMNS: tuple[str, ...] = ("model", "method", "image", "target", "cell", "source",
                                 "confidence", "share", "hit", "settings")

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


@torch.no_grad()
def _probabilities(model: nn.Module, images: Tensor, batch_size: int) -> Tensor:
    probs = []
    was = model.training
    model.eval()
    try:
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

    Notes
    -----
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


def grid_pointing_rows(model: nn.Module, grids: Grids, indices: Sequence[int], method: str, *,
                       model_name: str, layer=None, **settings: Any) -> tuple[list[dict], Tensor]:
    """Score ``method`` on the grids ``indices``: all their cells in one batch of maps.

    Returns one row per (grid, cell) (columns :data:`GRID_COLUMNS`; ``image`` is
    ``grid<n>``, ``target`` the cell's class) and the maps ``(len(indices) * cells, H, W)``.
    """
    from ..methods import method_settings, saliency

    full = method_settings(method, **settings)
    cells = grids.cells
    idx = list(indices)
    x = grids.images[idx].repeat_interleave(cells, dim=0)
    maps = saliency(method, model, x, grids.labels[idx].reshape(-1).tolist(), layer=layer, **settings)
    res = grid_pointing_game(maps, list(range(cells)) * len(idx), grids.grid)
    rows = [{"model": model_name, "method": method, "image": f"grid{n:05d}",
             "target": int(grids.labels[n, j]), "cell": j, "source": int(grids.sources[n, j]),
             "confidence": float(grids.confidence[n, j]), "share": float(res["share"][i * cells + j]),
             "hit": int(res["hit"][i * cells + j]), "settings": full}
            for i, n in enumerate(idx) for j in range(cells)]
    return rows, maps

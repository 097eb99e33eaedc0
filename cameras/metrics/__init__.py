"""Metrics for saliency maps, one module per metric family (one implementation of each).

==========================  ===========================================================
module                      metrics
==========================  ===========================================================
:mod:`.pointing`            pointing game, the paper's Table 1 protocol (TorchRay)
:mod:`.grid`                grid pointing game (Böhle et al. 2022), the offline proxy
:mod:`.density`             map density rho+ / rho- (CAMERAS, Table 2)
:mod:`.insertion_deletion`  insertion / deletion AUC (Petsiuk et al. 2018)
:mod:`.similarity`          Spearman, SSIM, HOG, IoU of top pixels, top-mass, entropy, ...
:mod:`.class_sensitivity`   most vs least likely class maps (Rebuffi et al. 2020; ours)
:mod:`.intervals`           Wilson intervals of rates, bootstrap intervals of means
==========================  ===========================================================

Each module describes its metrics with a :class:`MetricInfo` (display name, unit, which way
is better, range, reference), available through :func:`metric_info`; tables and figures take
their headings from it. The pointing-game module needs TorchRay and is imported on first use.
"""

from __future__ import annotations

import importlib

from ._common import saliency_point
from ._info import MetricInfo, describe
from ._info import info as metric_info
from .class_sensitivity import (
    class_sensitivity,
    class_sensitivity_extras,
    class_sensitivity_rebuffi,
    class_sensitivity_table,
    grid_class_sensitivity,
    grid_class_sensitivity_table,
    spearman_no_abs,
    summarize_class_sensitivity,
)
from .density import map_density, masked_images
from .grid import (
    GRID_COLUMNS,
    Grids,
    confident_indices,
    grid_cell_bounds,
    grid_pointing_game,
    grid_pointing_rows,
    make_grids,
)
from .insertion_deletion import auc, insertion_deletion, pixel_counts
from .intervals import bootstrap_ci, wilson
from .similarity import (
    METRICS,
    entropy,
    high_frequency_share,
    hog_similarity,
    iou_top,
    map_similarities,
    spearman,
    spearman_abs,
    ssim,
    top_mass,
)

_LAZY = {  # the pointing game needs TorchRay
    "pointing": ("TOLERANCE", "boxes_to_mask", "pointing_hit", "PointingScore",
                 "load_difficult_flags", "pointing_game_summary", "pointing_game_run"),
}
describe(MetricInfo("all", "pointing accuracy, All", True, (0, 100), "%",
                    "Zhang et al., ECCV 2016", "mean over classes of the per-class hit rate"))
describe(MetricInfo("difficult", "pointing accuracy, Diff", True, (0, 100), "%",
                    "Zhang et al., ECCV 2016", "the same on the difficult subset"))
_WHERE = {name: mod for mod, names in _LAZY.items() for name in names}

__all__ = [
    "MetricInfo", "metric_info", "class_sensitivity", "class_sensitivity_rebuffi",
    "grid_class_sensitivity", "grid_class_sensitivity_table", "class_sensitivity_table", "class_sensitivity_extras", "summarize_class_sensitivity", "spearman_no_abs", "map_density", "masked_images", "auc",
    "insertion_deletion", "pixel_counts", "METRICS", "entropy", "high_frequency_share",
    "hog_similarity", "iou_top", "map_similarities", "spearman", "spearman_abs", "ssim",
    "top_mass", "wilson", "bootstrap_ci", "saliency_point", "GRID_COLUMNS", "Grids", "confident_indices",
    "grid_cell_bounds", "grid_pointing_game", "grid_pointing_rows", "make_grids", *_WHERE,
]


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The numbers the CAMERAS paper reports, as data (always shown labelled as the paper's).

Jalwana, Akhtar, Bennamoun & Mian, *CAMERAS: Enhanced Resolution And Sanity preserving Class
Activation Mapping for image saliency*, CVPR 2021. Its Table 1 (pointing game) and Table 2
(map density) are transcribed in the CSV files beside this module (copied from the project's
shared paper folder); :data:`STATED` holds the other numbers its text states. Nothing here is
computed by this project: tables put these beside our numbers under a "paper (reported)"
label, and the verdict page compares them.
"""

from __future__ import annotations

import math
from importlib import resources
from typing import Any

__all__ = ["CITATION", "STATED", "table1", "table2", "error_reduction", "TABLE1_METHODS",
           "TABLE2_MODELS"]

CITATION = "Jalwana, Akhtar, Bennamoun & Mian, CVPR 2021"

#: Numbers the paper's text states (section or figure in ``where``).
STATED: dict[str, dict[str, Any]] = {
    "sizes": {"value": [224, 324, 424, 524, 624, 724, 824, 924], "where": "Sec. 3.4 (N = 7 steps to "
              "about 1000 px; the authors' code uses these sizes)"},
    "max_size": {"value": 1000, "where": "Sec. 3.4: quality saturates near 1000 px for 224 px inputs"},
    "steps_insensitive": {"value": [5, 10], "where": "Sec. 3.4: insensitive to N in [5, 10]"},
    "error_reduction_pct": {"value": 27.5, "where": "Sec. 1 and 4.2: up to 27.5 % error "
                            "reduction in the pointing game"},
    "beta": {"value": 50, "where": "Eq. 4"},
    "fooling_confidence": {"value": 0.9999, "where": "Sec. 6: 99.99 % confidence on the least-"
                           "likely label, ResNet-50, all of ImageNet val"},
    "norm_reduction_pct": {"value": 56.5, "where": "Sec. 6: PGD perturbation norm reduced by 56.5 % "
                           "on average"},
    "fig6_eps": {"value": 12 / 255, "where": "Fig. 6: l-infinity budget 12/255"},
    "fig3_extremal_areas": {"value": [0.08, 0.09], "where": "Fig. 3: extremal perturbation confined "
                            "to 8 % and 9 % of the image"},
}

_T1_DATASETS = {"voc07": "VOC07 test", "coco14": "COCO14 val"}
_T1_MODELS = {"vgg16": "VGG16", "resnet50": "ResNet50"}
#: Table 1's rows as named in the paper, and our registry name for each
TABLE1_METHODS = {"Center": "center", "Gradient": "gradient", "DeConv.": "deconvnet",
                  "Guid": "guided_backprop", "MWP": "excitation_backprop",
                  "cMWP": "contrastive_excitation_backprop", "RISE*": "rise", "GradCAM": "gradcam",
                  "Extremal*": "extremal_perturbation", "NormGrad": "normgrad", "CAMERAS": "cameras"}
#: Table 2's models as named in the paper, and the torchvision model each stands for
TABLE2_MODELS = {"ResNet": "resnet50", "DenseNet": "densenet121", "Inception": "inception_v3"}


def _csv(name: str):
    import pandas as pd

    with resources.files(__name__).joinpath(name).open("r", encoding="utf-8") as f:
        return pd.read_csv(f)


def table1():
    """Table 1 (pointing-game accuracy, %), long format: one row per (method, dataset, model,
    split) with ``paper_method`` (the paper's row name), ``method`` (registry name) and
    ``value`` (NaN where the paper prints '-': NormGrad on COCO)."""
    wide = _csv("paper_table1_pointing_game.csv")
    long = wide.melt(id_vars="method", var_name="column", value_name="value")
    parts = long["column"].str.split("_", expand=True)
    long = long.assign(paper_method=long["method"], method=long["method"].map(TABLE1_METHODS),
                       dataset=parts[0], model=parts[1], split=parts[2].map({"all": "All", "diff": "Diff"}))
    return long[["paper_method", "method", "dataset", "model", "split", "value"]]


def table2():
    """Table 2 (map density on ImageNet val), one row per (model, method): ``paper_model``,
    ``model`` (torchvision name), ``method`` (registry name), ``rho_plus``, ``rho_minus``."""
    import pandas as pd

    wide = _csv("paper_table2_map_density.csv")
    rows = []
    for _, r in wide.iterrows():
        for m in ("normgrad", "gradcam", "cameras"):
            rows.append({"paper_model": r["model"], "model": TABLE2_MODELS[r["model"]], "method": m,
                         "rho_plus": float(r[f"rho_plus_{m}"]), "rho_minus": float(r[f"rho_minus_{m}"])})
    return pd.DataFrame(rows)


def error_reduction(reference: str = "cameras"):
    """For each (dataset, model, split) of Table 1: the best other method, its accuracy, and
    the relative reduction of the pointing *error* (100 - accuracy) by ``reference``:
    ``(err_best - err_ref) / err_best`` in %, negative where ``reference`` is worse."""
    import pandas as pd

    t = table1().dropna(subset=["value"])
    rows = []
    for (d, m, sp), g in t.groupby(["dataset", "model", "split"], sort=False):
        ref = g[g["method"] == reference]["value"]
        others = g[g["method"] != reference]
        if ref.empty or others.empty:
            continue
        best = others.loc[others["value"].idxmax()]
        e_best, e_ref = 100 - best["value"], 100 - float(ref.iloc[0])
        rows.append({"dataset": d, "model": m, "split": sp, "cameras": float(ref.iloc[0]),
                     "best_other": best["paper_method"], "best_other_value": best["value"],
                     "error_reduction_pct": 100 * (e_best - e_ref) / e_best if e_best > 0 else math.nan,
                     "below": list(others[others["value"] > float(ref.iloc[0])]["paper_method"])})
    return pd.DataFrame(rows)

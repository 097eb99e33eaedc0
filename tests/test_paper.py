"""The paper's reported numbers as data: complete, as transcribed, never ours."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from cameras.paper import STATED, TABLE1_METHODS, error_reduction, table1, table2

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "paper"


def test_table1_is_complete_and_maps_to_registered_methods():
    from cameras.methods import names

    t = table1()
    assert len(t) == 11 * 8 and set(t["method"]) <= set(names())
    assert set(TABLE1_METHODS.values()) == set(t["method"])
    cam = t[t["method"] == "cameras"].set_index(["dataset", "model", "split"])["value"]
    assert cam[("voc07", "vgg16", "All")] == 86.2 and cam[("coco14", "resnet50", "Diff")] == 66.4
    assert t[t["method"] == "normgrad"]["value"].isna().sum() == 4  # no COCO numbers


def test_table2_has_18_values():
    t = table2()
    assert len(t) == 9 and t[["rho_plus", "rho_minus"]].notna().all().all()
    assert t.set_index(["model", "method"]).loc[("densenet121", "cameras"), "rho_plus"] == 3.23


@pytest.mark.skipif(not SHARED.is_dir(), reason="the shared paper folder is not beside the repo")
def test_package_copies_equal_the_shared_transcriptions():
    here = Path(__file__).resolve().parents[1] / "cameras" / "paper"
    for name in ("paper_table1_pointing_game.csv", "paper_table2_map_density.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(here / name), pd.read_csv(SHARED / name))


def test_error_reduction_recomputes_the_27_5_percent_claim():
    e = error_reduction().set_index(["dataset", "model", "split"])
    coco = e.loc[("coco14", "resnet50", "All")]
    assert coco["best_other"] == "cMWP"
    assert coco["error_reduction_pct"] == pytest.approx(100 * (41.5 - 30.1) / 41.5)
    assert round(coco["error_reduction_pct"], 1) == STATED["error_reduction_pct"]["value"]
    # the same table has CAMERAS below three methods on VOC07 VGG16 All
    assert set(e.loc[("voc07", "vgg16", "All"), "below"]) == {"RISE*", "GradCAM", "Extremal*"}
    assert e.loc[("voc07", "vgg16", "All"), "error_reduction_pct"] < 0
    assert not math.isnan(e["error_reduction_pct"].max())

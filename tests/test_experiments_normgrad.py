"""Chapter 8's experiment (cameras.experiments.normgrad): settings, the layers of each method,
a ci run (every table, resume without recomputing, changed settings refused), the summaries,
and the committed offline results."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cameras.experiments import available
from cameras.experiments import normgrad as E
from cameras.methods import names
from cameras.runs import SettingsMismatch

SMALL = dict(n_images=2, figure_classes=["goldfinch"], methods=["normgrad", "center"])


def test_registered_and_profiles_complete():
    assert "normgrad" in available()
    assert set(E.PROFILES) == {"ci", "offline", "paper"}
    for name in E.PROFILES:
        E.settings(name)  # valid as shipped
    assert E.PROFILES["paper"]["models"] == ["resnet50", "vgg16"]
    assert E.settings("offline")["models"] == ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]


@pytest.mark.parametrize(("overrides", "match"), [
    ({"n_imgs": 3}, "unknown setting"), ({"n_images": 0}, "n_images"), ({"methods": ["gradcamm"]}, "unknown saliency"),
    ({"cs_depths": [4]}, "cs_depths"), ({"models": ["resnet5"]}, "unknown model"), ({"meta_lr": "big"}, "meta_lr"),
    ({"method_settings": {"normgrad": {"phase1": "conv5x5"}}}, "phase1"),
])
def test_bad_settings_raise(overrides, match):
    with pytest.raises(ValueError, match=match):
        E.settings("ci", **overrides)


def test_method_layers_are_the_default_and_two_depths():
    s = E.settings("offline")
    grid = ["_blocks.3", "_blocks.5", "_blocks.11", "_head_act"]
    assert E.method_layers(s, "efficientnet_lite0", "normgrad") == [
        ("_blocks.10", "_blocks.10"), ("_blocks.3", "_blocks.3"), ("_head_act", "_head_act"), ("combined", grid)]
    assert E.method_layers(s, "efficientnet_lite0", "gradcam") == [("_head_act", "_head_act"), ("_blocks.3", "_blocks.3")]
    assert E.method_layers(s, "efficientnet_lite0", "gradient")[0] == ("input", None)
    assert E.method_layers(s, "efficientnet_lite0", "contrastive_excitation_backprop")[0] == ("_blocks.10", "_blocks.10")
    assert E.method_layers(s, "efficientnet_lite0", "rise") == [("-", None)]
    assert E.method_layers(s, "resnet50", "normgrad")[0] == ("layer3", "layer3")


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("res")
    return folder, E.run("ci", results=folder, device="cpu", progress=False, **SMALL)


def test_ci_run_writes_every_table(ci_run):
    folder, out = ci_run
    s = E.settings("ci", **SMALL)
    assert set(out) == set(E.TABLES)
    for table, df in out.items():
        want = sum(len(u.keys) for u in E.EXPERIMENT.units(s) if u.table == table)
        assert len(df) == want and want > 0, table
        assert list(df.columns) == list(E.TABLES[table].columns)
    g = out["grid"]
    assert set(g["meta_lr"]) == {0.0, s["meta_lr"]} and set(g["layer"]) == {*E.ng.grid_layers("efficientnet_lite0"), "combined"}
    r = g["class_spearman"].dropna()
    assert r.between(-1, 1).all() and len(r) > 0.9 * len(g)
    m = out["methods"]
    assert (m[m["method"] == "center"]["class_spearman"] == 1).all()  # the same map for every class
    assert set(m["method"]) == {"normgrad", "center"}
    lay = out["layers"]
    assert lay["grad_mean_share"].between(0, 1 + 1e-9).all()
    assert (lay[lay["layer"] == "_head_act"]["grad_mean_share"] > 0.999).all()  # feeds the global pool
    t = out["timing"].set_index("mode")
    assert set(t.index) == {"vmap", "loop"} and (t["max_abs_diff"] < 1e-4).all()
    c = out["contrast"]
    assert set(c["variant"]) == set(E.VARIANTS) and c["share"].between(0, 1).all() and c["hit"].isin([0, 1]).all()
    fm = E.MapStore(E.EXPERIMENT.folder(s, folder) / "maps").read("efficientnet_lite0", "figure")
    assert fm["n01531178_goldfinch|combined|conv1x1/norm"].dtype == np.uint8
    assert fm["image|n01531178_goldfinch"].shape == (128, 128, 3)
    assert len([k for k in fm if k.startswith("n01531178_goldfinch|")]) == 4 * 24 + 20


def test_second_run_computes_nothing_and_changed_settings_are_refused(ci_run, monkeypatch):
    folder, out = ci_run

    def boom(*a, **k):
        raise AssertionError("recomputed")

    for fn in ("_layers", "_grid", "_methods", "_timing", "_contrast"):
        monkeypatch.setattr(E, fn, boom)
    again = E.run("ci", results=folder, device="cpu", progress=False, **SMALL)
    for t in E.TABLES:
        pd.testing.assert_frame_equal(again[t], out[t])
    with pytest.raises(SettingsMismatch, match="meta_lr"):
        E.run("ci", results=folder, device="cpu", progress=False, **{**SMALL, "meta_lr": 1e-4})


def test_summaries_and_figures(ci_run):
    folder, out = ci_run
    s = E.settings("ci", **SMALL)
    d = E.depth_summary(out, "efficientnet_lite0")
    assert set(d["series"]) == {"gradient", *E.SERIES.values()} and set(d["depth"]) == {1, 2, 3, 4}
    c = E.contrast_table(out)
    assert list(c["variant"]) == list(E.VARIANTS) and c["share"].between(0, 100).all()
    fm = E.MapStore(E.EXPERIMENT.folder(s, folder) / "maps").read("efficientnet_lite0", "figure")
    fig = E.plot_grid(fm, "n01531178_goldfinch", "combined")
    assert len([a for a in fig.axes if a.images]) == 20
    fig = E.plot_depths(fm, [("n01531178_goldfinch", "gradcam", "Grad-CAM")], E.ng.grid_layers("efficientnet_lite0"),
                        ["1", "2", "3", "4"])
    assert len([a for a in fig.axes if a.images]) == 4


def test_methods_table_covers_every_registered_method_offline():
    s = E.settings("offline")
    units = [u for u in E.EXPERIMENT.units(s) if u.table == "methods"]
    assert [u.data for u in units] == names()
    assert all(u.model == "efficientnet_lite0" for u in units)


def test_paper_profile_fails_before_computing(tmp_path, monkeypatch):
    from cameras.data import MissingDataError

    monkeypatch.setenv("CAMERAS_DATA_ROOT", str(tmp_path / "empty"))
    with pytest.raises(MissingDataError, match="ImageNet val"):
        E.run("paper", results=tmp_path / "res", device="cpu", progress=False)
    assert not (tmp_path / "res").exists()
    s = E.settings("paper")
    assert E.ng.grid_layers("resnet50") == ["layer2.0", "layer3.0", "layer4.0", "layer4"]
    assert E.ng.grid_layers("vgg16") == ["features.9", "features.16", "features.23", "features.30"]
    assert E.method_layers(s, "vgg16", "normgrad")[0] == ("features.22", "features.22")

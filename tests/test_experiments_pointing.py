"""cameras.experiments.pointing: settings, the reported table, the grid run and its resume."""

from __future__ import annotations

import pytest
import torch

from cameras.experiments import pointing as P


def test_profiles_are_complete_and_valid() -> None:
    for name in ("ci", "offline", "paper"):
        s = P.resolve_settings(name)
        assert s["profile"] == name
    off = P.resolve_settings("offline")
    assert off["models"] == ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
    # every method of the paper's comparison plus the extras
    from cameras.methods import names

    assert sorted(off["methods"]) == sorted(names())
    # the expensive methods are cheaper offline than at their defaults, and recorded
    assert off["method_settings"]["rise"]["num_masks"] < 8000
    assert off["method_settings"]["extremal_perturbation"]["max_iter"] < 800
    assert P.resolve_settings("paper")["method_settings"] == {}


def test_bad_settings_raise() -> None:
    with pytest.raises(ValueError, match="unknown profile"):
        P.resolve_settings("fast")
    with pytest.raises(ValueError, match="unknown setting"):
        P.resolve_settings("ci", n_grid=3)
    with pytest.raises(ValueError, match="unknown saliency method"):
        P.resolve_settings("ci", methods=["gradcamm"])
    with pytest.raises(ValueError, match="does not take"):
        P.resolve_settings("ci", method_settings={"rise": {"masks": 3}})
    with pytest.raises(ValueError, match="cameras_zoom"):
        P.resolve_settings("ci", method_settings={"cameras": {"sizes": [224]}})
    with pytest.raises(ValueError, match="n_grids"):
        P.resolve_settings("ci", n_grids=0)
    with pytest.raises(ValueError, match="TorchRay"):
        P.resolve_settings("paper", models=["densenet121"])
    # method_settings overrides merge per method
    s = P.resolve_settings("ci", method_settings={"rise": {"num_masks": 10}})
    assert s["method_settings"]["rise"] == {"num_masks": 10, "batch_size": 16}


def test_cameras_sizes_follow_the_papers_zoom() -> None:
    zoom = P.PROFILES["offline"]["cameras_zoom"]
    assert P.cameras_sizes(224, zoom) == [224, 324, 424, 524, 624, 724, 824, 924]
    assert P.cameras_sizes(P.grid_side(224), zoom) == [448, 648, 848, 1048, 1248, 1448, 1648, 1848]
    s = P.resolve_settings("offline")
    assert P.method_settings_for(s, "cameras", 448)["sizes"][0] == 448
    assert P.method_settings_for(s, "gradcam", 448) == {}
    assert s["cell_size"] is None  # offline: native cells


def test_reported_table_is_torchrays() -> None:
    t = P.paper_table()
    assert t.shape == (9, 8)
    assert t.loc["Center baseline", ("VOC07 test", "VGG16", "All")] == 69.6
    assert t.loc["Grad-CAM", ("COCO14 val", "ResNet50", "Diff")] == 52.3
    assert "CAMERAS" not in t.index  # not retrieved: not printed
    assert "TorchRay" in P.PAPER_TABLE1["source"]


def test_paper_profile_fails_early_without_data(tmp_path, monkeypatch) -> None:
    from cameras.datasets import MissingDataError

    monkeypatch.setenv("CAMERAS_DATA_ROOT", str(tmp_path / "nothing"))
    with pytest.raises(MissingDataError, match="VOC 2007"):
        P.run("paper", results=tmp_path, device="cpu")
    assert not (tmp_path / "pointing").exists() or not any((tmp_path / "pointing").iterdir())


def test_summary_of_synthetic_rows() -> None:
    import pandas as pd

    rows = pd.DataFrame({
        "model": ["m"] * 4, "method": ["gradcam"] * 4,
        "image": ["grid00000"] * 4, "target": [1, 2, 3, 4],
        "share": [1.0, 0.5, 0.0, 0.5], "hit": [1, 1, 0, 0], "settings": [{}] * 4,
    })
    s = P.summary(rows)
    assert s.loc[0, "mean_share"] == pytest.approx(50.0)
    assert s.loc[0, "hit_rate"] == pytest.approx(50.0)
    assert s.loc[0, "grids"] == 1 and s.loc[0, "maps"] == 4
    assert s.loc[0, "hit_lo"] < 50 < s.loc[0, "hit_hi"]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    torch.manual_seed(0)
    tmp = tmp_path_factory.mktemp("pointing")
    df = P.run("ci", results=tmp, device="cpu", progress=False,
               methods=["gradcam", "center", "cameras"], n_grids=1, candidates=40)
    return tmp, df


def test_ci_run_writes_rows(small_run) -> None:
    tmp, df = small_run
    assert len(df) == 3 * 4  # 3 methods x 1 grid x 4 cells
    assert set(df["method"]) == {"gradcam", "center", "cameras"}
    assert df["share"].between(0, 1).all() and df["share"].notna().all()
    assert set(df["hit"].unique()) <= {0, 1}
    # four different classes per grid
    assert df[df["method"] == "gradcam"]["target"].nunique() == 4
    # the center baseline points at the centre pixel (112, 112): the bottom-right cell
    c = df[df["method"] == "center"].sort_values("cell")
    assert c["hit"].tolist() == [0, 0, 0, 1]
    assert (tmp / "_ci" / "pointing" / "grid_efficientnet_lite0" / "gradcam.csv").is_file()
    # CAMERAS ran at the grid's zoomed sizes
    cam = df[df["method"] == "cameras"]["settings"].iloc[0]
    assert cam["sizes"] == [224, 336]  # ci: 112 px cells, 224 px grids, zoom 1 and 1.5
    table = P.summary_table(df)
    assert ("EfficientNet-Lite0", "share in cell (%)") in table.columns
    # example maps of grid 0 for every method, and the time each method took
    image, labels, maps = P.load_example("ci", "efficientnet_lite0", results=tmp)
    assert image.shape == (224, 224, 3) and image.dtype.name == "uint8"
    assert set(maps) == {"gradcam", "center", "cameras"}
    assert all(m.shape == (224, 224) and 0 <= m.min() and m.max() <= 1 for m in maps.values())
    timing = P.load_timing("ci", results=tmp)
    assert set(timing["method"]) == {"gradcam", "center", "cameras"}
    assert (timing["seconds_per_map"] > 0).all()


def test_batched_grids_match_one_grid_at_a_time(small_run) -> None:
    """Several grids per call (grid_batch) give the rows of one grid per call."""
    from cameras.metrics import grid_pointing_rows
    from cameras.models import load_model

    tmp, df = small_run
    s = P.resolve_settings("ci", candidates=40, n_grids=2)
    lm = load_model("efficientnet_lite0")
    images, labels, _ = P.load_candidates("efficientnet_lite0", 40)
    grids = P.build_grids(lm, images, labels, s)
    ref = [r for n in range(2) for r in
           grid_pointing_rows(lm.model, grids, [n], "gradcam", model_name="efficientnet_lite0")[0]]
    path = tmp / "batched.csv"
    assert P._grid_method(lm, "efficientnet_lite0", "gradcam", grids, 2, path, {}, 2, False) == 8
    from cameras.runs import read_results

    got = read_results(path)
    assert got["share"].to_numpy() == pytest.approx([r["share"] for r in ref], abs=1e-5)
    assert got["hit"].tolist() == [r["hit"] for r in ref]


def test_second_call_resumes_without_computing(small_run, monkeypatch) -> None:
    tmp, df = small_run

    def boom(*a, **k):
        raise AssertionError("nothing should be recomputed")

    monkeypatch.setattr("cameras.models.load_model", boom)
    monkeypatch.setattr("cameras.methods.saliency", boom)
    monkeypatch.setattr(P, "_grid_method", boom)
    again = P.run("ci", results=tmp, device="cpu", progress=False,
                  methods=["gradcam", "center", "cameras"], n_grids=1, candidates=40)
    assert len(again) == len(df)
    assert again["share"].tolist() == df["share"].tolist()


def test_skip_leaves_out_model_method_pairs(small_run, monkeypatch) -> None:
    """``skip`` drops a (model, method) pair from the run and from the loaded rows only."""
    tmp, df = small_run
    s = P.resolve_settings("ci", methods=["gradcam", "center", "cameras"], n_grids=1, candidates=40,
                           skip={"efficientnet_lite0": "cameras"})
    assert s["skip"] == {"efficientnet_lite0": ["cameras"]}
    assert P.methods_for(s, "efficientnet_lite0") == ["gradcam", "center"]
    assert P.methods_for(s, "efficientnet_lite1") == ["gradcam", "center", "cameras"]
    rows = P.load_results(s, results=tmp)
    assert set(rows["method"]) == {"gradcam", "center"} and len(rows) == 8
    offline = P.resolve_settings("offline")
    assert "extremal_perturbation" not in P.methods_for(offline, "efficientnet_lite2")
    assert "extremal_perturbation" in P.methods_for(offline, "efficientnet_lite0")
    with pytest.raises(ValueError, match="unknown saliency method"):
        P.resolve_settings("ci", skip={"efficientnet_lite0": ["gradcamm"]})
    with pytest.raises(TypeError, match="skip must be a dict"):
        P.resolve_settings("ci", skip=["cameras"])


def test_wilson_interval_contains_the_rate() -> None:
    """At a hit rate of 0 or 1 an end of the interval equals the rate exactly (error bars >= 0)."""
    for k, n in [(0, 128), (128, 128), (127, 128), (1, 3), (12, 12)]:
        lo, hi = P._wilson(k, n)
        assert 0 <= lo <= k / n <= hi <= 1
    assert P._wilson(128, 128)[1] == 1.0 and P._wilson(0, 128)[0] == 0.0

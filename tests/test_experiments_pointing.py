"""cameras.experiments.pointing: settings, the reported table, the grid run, its resume, its
identity and the stored example."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from cameras.engine import MapStore, zoomed_sizes
from cameras.experiments import pointing as P
from cameras.runs import SettingsMismatch

KW = dict(methods=["gradcam", "center", "cameras"], n_grids=1, candidates=40)


def test_profiles_are_complete_and_valid() -> None:
    for name in ("ci", "offline", "paper"):
        assert P.settings(name)["profile"] == name
    off = P.settings("offline")
    assert off["models"] == ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
    from cameras.methods import names

    assert off["methods"] == list(names())  # every method, in the registry's order
    # the expensive methods are cheaper offline than at their defaults, and recorded
    assert off["method_settings"]["rise"]["num_masks"] < 8000
    assert off["method_settings"]["extremal_perturbation"]["max_iter"] < 800
    assert off["cell_size"] is None  # offline: native cells
    # Algorithm 1's keep rule; RISE only where the CPU could afford it, stated as settings
    assert off["method_settings"]["cameras"]["keep"] == "prediction"
    assert "rise" not in P.methods_for(off, "efficientnet_lite1") and P._n_grids(off, "rise") < off["n_grids"]
    paper = P.settings("paper")
    assert paper["method_settings"] == {"cameras": {"keep": "prediction"}} and paper["task"] == "pointing_game"
    assert paper["models"] == ["vgg16", "resnet50"] and len(paper["methods"]) == 11


def test_bad_settings_raise() -> None:
    with pytest.raises(ValueError, match="unknown profile"):
        P.settings("fast")
    with pytest.raises(ValueError, match="unknown setting"):
        P.settings("ci", n_grid=3)
    with pytest.raises(ValueError, match="unknown saliency method"):
        P.settings("ci", methods=["gradcamm"])
    with pytest.raises(ValueError, match="does not take"):
        P.settings("ci", method_settings={"rise": {"masks": 3}})
    with pytest.raises(ValueError, match="cameras_zoom"):
        P.settings("ci", method_settings={"cameras": {"sizes": [224]}})
    with pytest.raises(ValueError, match="cameras_zoom"):
        P.settings("ci", cameras_zoom=[1.0, -2.0])
    with pytest.raises(ValueError, match="n_grids"):
        P.settings("ci", n_grids=0)
    with pytest.raises(ValueError, match="method_grids"):
        P.settings("ci", method_grids={"rise": 0})
    with pytest.raises(ValueError, match="TorchRay"):
        P.settings("paper", models=["densenet121"])
    # method_settings overrides merge per method
    s = P.settings("ci", method_settings={"rise": {"num_masks": 10}})
    assert s["method_settings"]["rise"] == {"num_masks": 10, "batch_size": 16}


def test_cameras_sizes_follow_the_papers_zoom() -> None:
    assert zoomed_sizes(224, P.ZOOM) == [224, 324, 424, 524, 624, 724, 824, 924]
    assert zoomed_sizes(448, P.ZOOM) == [448, 648, 848, 1048, 1248, 1448, 1648, 1848]
    s = P.settings("offline")
    assert P.method_kwargs(s, "cameras", 448)["sizes"][0] == 448
    assert P.method_kwargs(s, "gradcam", 448) == {}


def test_paper_table_is_the_papers() -> None:
    from cameras.paper import table1

    t = P.paper_table()
    assert t.shape == (11, 9) and list(t.iloc[:, 0])[-2:] == ["NormGrad", "CAMERAS"]
    row = t.set_index(t.columns[0])
    assert row.loc["CAMERAS", "COCO14 ResNet50 All"] == 69.9 and row.loc["MWP", "VOC07 ResNet50 All"] == 84.4
    assert math.isnan(row.loc["NormGrad", "COCO14 VGG16 Diff"])  # '-' in the paper
    assert row.values.size - row.isna().values.sum() == table1()["value"].notna().sum()


def test_paper_profile_fails_early_without_data(tmp_path, monkeypatch) -> None:
    from cameras.datasets import MissingDataError

    monkeypatch.setenv("CAMERAS_DATA_ROOT", str(tmp_path / "nothing"))
    with pytest.raises(MissingDataError, match="VOC 2007"):
        P.run("paper", results=tmp_path, device="cpu")
    assert not (tmp_path / "pointing").exists() or not any((tmp_path / "pointing").iterdir())


def test_summary_of_synthetic_rows() -> None:
    rows = pd.DataFrame({
        "model": ["m"] * 8, "method": ["gradcam"] * 4 + ["cameras"] * 4,
        "image": ["grid00000"] * 8, "target": [1, 2, 3, 4] * 2, "cell": [0, 1, 2, 3] * 2,
        "share": [1.0, 0.5, 0.0, 0.5] + [0.9] * 4, "hit": [1, 1, 0, 0] + [1] * 4,
        "settings": [{}] * 4 + [{"sizes": [448, 648]}] * 4,
    })
    s = P.summary(rows)
    assert s["method"].tolist() == ["cameras", "gradcam"]  # the registry's order
    g = s.set_index("method").loc["gradcam"]
    assert g["mean_share"] == pytest.approx(50.0) and g["hit_rate"] == pytest.approx(50.0)
    assert g["grids"] == 1 and g["maps"] == 4 and g["hit_lo"] < 50 < g["hit_hi"]
    c = s.set_index("method").loc["cameras"]
    # at a hit rate of 100 % the interval ends exactly there (error bars >= 0)
    assert c["hit_hi"] == 100.0 and 0 < c["hit_lo"] < 100
    assert c["settings"] == "sizes 448..648 (2)"
    # the error-reduction analogue: CAMERAS 90 % vs best other 50 % -> (50 - 10) / 50 = 80 %
    er = P.proxy_error_reduction(rows).set_index("score")
    assert er.loc["share in cell", "error_reduction_pct"] == pytest.approx(80.0)
    assert er.loc["share in cell", "above_cameras"] == "none"
    diff = P.paired_difference(rows).iloc[0]
    assert diff["difference"] == pytest.approx(40.0) and diff["grids"] == 1


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    torch.manual_seed(0)
    tmp = tmp_path_factory.mktemp("pointing")
    df = P.run("ci", results=tmp, device="cpu", progress=False, **KW)
    return tmp, df


def test_ci_run_writes_rows(small_run) -> None:
    tmp, df = small_run
    assert len(df) == 3 * 4  # 3 methods x 1 grid x 4 cells
    assert set(df["method"]) == {"gradcam", "center", "cameras"}
    assert df["share"].between(0, 1).all() and df["share"].notna().all()
    assert set(df["hit"].unique()) <= {0, 1}
    assert df[df["method"] == "gradcam"]["target"].nunique() == 4  # four classes per grid
    # the center baseline points at the centre pixel (112, 112): the bottom-right cell
    c = df[df["method"] == "center"].sort_values("cell")
    assert c["hit"].tolist() == [0, 0, 0, 1]
    folder = tmp / "_ci" / "pointing" / "grid_efficientnet_lite0"
    assert (folder / "gradcam.csv").is_file()
    cam = df[df["method"] == "cameras"]["settings"].iloc[0]
    assert cam["sizes"] == [224, 336] and cam["keep"] == "prediction"  # ci: 112 px cells, 224 px grids
    kept = df[df["method"] == "cameras"]["sizes_kept"]
    assert kept.between(1, 2).all() and kept.groupby(df["image"]).nunique().eq(1).all()  # one capture per grid
    assert "EfficientNet-Lite0: share in cell (%)" in P.summary_table(df).columns
    # example maps of grid 0 for every method, and the time each method took
    ex = MapStore(folder.parent).read("grid_efficientnet_lite0", "example")
    assert ex["image"].shape == (224, 224, 3) and ex["image"].dtype.name == "uint8"
    assert {k for k in ex if k.startswith("map/")} == {"map/gradcam", "map/center", "map/cameras"}
    assert ex["labels"].tolist() == df[df["method"] == "gradcam"].sort_values("cell")["target"].tolist()
    timing = P.load_timing("ci", results=tmp)
    assert set(timing["method"]) == {"gradcam", "center", "cameras"}
    assert (timing["seconds_per_map"] > 0).all()
    fig = P.plot_example("ci", "efficientnet_lite0", results=tmp)
    assert len([ax for ax in fig.axes if ax.images]) == 4  # the grid and three maps


def test_batched_grids_match_one_grid_at_a_time(tmp_path) -> None:
    """Several grids per call (grid_batch) give the rows of one grid per call."""
    kw = dict(device="cpu", progress=False, methods=["gradcam"], n_grids=2, candidates=40, example=False)
    one = P.run("ci", results=tmp_path / "one", grid_batch=1, **kw)
    two = P.run("ci", results=tmp_path / "two", grid_batch=2, **kw)
    assert len(one) == len(two) == 8
    assert two["share"].to_numpy() == pytest.approx(one["share"].to_numpy(), abs=1e-5)
    assert two["hit"].tolist() == one["hit"].tolist()
    assert not (tmp_path / "one" / "_ci" / "pointing" / "grid_efficientnet_lite0" / "example.npz").exists()


def test_second_call_resumes_without_computing(small_run, monkeypatch) -> None:
    tmp, df = small_run

    def boom(*a, **k):
        raise AssertionError("nothing should be recomputed")

    monkeypatch.setattr("cameras.models.load_model", boom)
    monkeypatch.setattr("cameras.methods.saliency", boom)
    monkeypatch.setattr(P.EXPERIMENT, "compute", boom)
    again = P.run("ci", results=tmp, device="cpu", progress=False, **KW)
    assert again["share"].tolist() == df["share"].tolist()


def test_changed_settings_are_refused(small_run) -> None:
    """A complete file computed under other grid or method settings is an error, not reused."""
    tmp, _ = small_run
    with pytest.raises(SettingsMismatch, match="threshold"):
        P.run("ci", results=tmp, device="cpu", progress=False, threshold=0.6, **KW)
    with pytest.raises(SettingsMismatch, match="methods.cameras"):
        P.run("ci", results=tmp, device="cpu", progress=False, cameras_zoom=[1.0, 2.0], **KW)
    with pytest.raises(SettingsMismatch, match="methods.cameras"):  # the keep rule defines the rows
        P.run("ci", results=tmp, device="cpu", progress=False, method_settings={"cameras": {"keep": "all"}}, **KW)


def test_missing_example_map_is_recomputed(tmp_path) -> None:
    """The rows are complete but the example lost its file: only the example is computed."""
    kw = dict(device="cpu", progress=False, methods=["gradcam"], n_grids=1, candidates=40)
    rows = P.run("ci", results=tmp_path, **kw)
    folder = tmp_path / "_ci" / "pointing" / "grid_efficientnet_lite0"
    ex = MapStore(folder.parent).read("grid_efficientnet_lite0", "example")
    csv = (folder / "gradcam.csv").read_bytes()
    (folder / "example.npz").unlink()
    again = P.run("ci", results=tmp_path, **kw)
    assert again["share"].tolist() == rows["share"].tolist() and (folder / "gradcam.csv").read_bytes() == csv
    new = MapStore(folder.parent).read("grid_efficientnet_lite0", "example")
    assert (new["map/gradcam"] == ex["map/gradcam"]).all() and (new["image"] == ex["image"]).all()


def test_skip_leaves_out_model_method_pairs(small_run) -> None:
    """``skip`` drops a (model, method) pair from the run and from the loaded rows only."""
    tmp, df = small_run
    s = P.settings("ci", **KW, skip={"efficientnet_lite0": "cameras"})
    assert s["skip"] == {"efficientnet_lite0": ["cameras"]}
    assert P.methods_for(s, "efficientnet_lite0") == ["gradcam", "center"]
    assert P.methods_for(s, "efficientnet_lite1") == ["gradcam", "center", "cameras"]
    rows = P.EXPERIMENT.load(s, tmp)
    assert set(rows["method"]) == {"gradcam", "center"} and len(rows) == 8
    offline = P.settings("offline")
    assert "extremal_perturbation" not in P.methods_for(offline, "efficientnet_lite2")
    assert "extremal_perturbation" in P.methods_for(offline, "efficientnet_lite0")
    with pytest.raises(ValueError, match="unknown saliency method"):
        P.settings("ci", skip={"efficientnet_lite0": ["gradcamm"]})
    with pytest.raises(TypeError, match="must be a dict"):
        P.settings("ci", skip=["cameras"])


def test_identity_records_each_methods_settings_and_layer() -> None:
    off = P.settings("offline")
    ng = P.EXPERIMENT.identity_of(off, "grid_efficientnet_lite0/normgrad.csv")
    assert ng["methods"]["normgrad"]["layer"] == "_blocks.10" and ng["threshold"] == 0.5
    cam = P.EXPERIMENT.identity_of(off, "grid_efficientnet_lite1/cameras.csv")["methods"]["cameras"]
    assert cam["keep"] == "prediction" and cam["sizes"][0] == 480 and cam["layer"] == "_head_act"
    rise = P.EXPERIMENT.identity_of(off, "grid_efficientnet_lite0/rise.csv")["methods"]["rise"]
    assert rise["scores"] == "softmax" and rise["layer"] is None
    ebp = P.EXPERIMENT.identity_of(off, "grid_efficientnet_lite2/contrastive_excitation_backprop.csv")
    assert ebp["methods"]["contrastive_excitation_backprop"]["layer"] == ["_blocks.14", "_avg_pooling"]


def test_cameras_capture_equals_the_registered_method() -> None:
    """One capture for T classes per image gives the maps of saliency("cameras") per class."""
    from torch import nn

    from cameras.methods import saliency

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 6)).eval()
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([[0, 1, 2], [3, 4, 5]])
    kw = dict(sizes=[32, 48, 64], keep="prediction")
    maps, kept = P.cameras_capture(net, x, t, "3", **kw)
    ref = saliency("cameras", net, x.repeat_interleave(3, 0), t.reshape(-1).tolist(), layer="3", **kw)
    assert maps.shape == (2, 3, 32, 32) and torch.allclose(maps.flatten(0, 1), ref, atol=1e-5)
    assert kept.tolist() == [int(v) for v in kept] and all(1 <= k <= 3 for k in kept.tolist())


def test_verdict_numbers_from_the_committed_results() -> None:
    from cameras.runs import results_dir

    if not (results_dir(None) / "pointing" / "grid_efficientnet_lite0" / "gradcam.csv").exists():
        pytest.skip("no committed results here")
    v = P.verdict_numbers()
    assert v["chance_hit"] == 25.0 and v["models"] == ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
    g = v["grid"]["efficientnet_lite0"]["gradcam"]
    assert g["share_lo"] <= g["share"] <= g["share_hi"] and g["hit_lo"] <= g["hit"] <= g["hit_hi"] and g["maps"] == 128
    assert v["grid"]["efficientnet_lite0"]["center"]["hit"] == pytest.approx(25.0)

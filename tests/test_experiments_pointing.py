"""cameras.experiments.pointing: settings, the reported table, the grid run, its resume, its
identity and the stored example."""

from __future__ import annotations

import json

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
    paper = P.settings("paper")
    assert paper["method_settings"] == {} and paper["task"] == "pointing_game"
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
    rows = pd.DataFrame({
        "model": ["m"] * 8, "method": ["gradcam"] * 4 + ["cameras"] * 4,
        "image": ["grid00000"] * 8, "target": [1, 2, 3, 4] * 2,
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
    assert cam["sizes"] == [224, 336]  # ci: 112 px cells, 224 px grids, zoom 1 and 1.5
    assert ("EfficientNet-Lite0", "share in cell (%)") in P.summary_table(df).columns
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
    with pytest.raises(SettingsMismatch, match="settings"):
        P.run("ci", results=tmp, device="cpu", progress=False, cameras_zoom=[1.0, 2.0], **KW)


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


def test_identity_of_files_written_before_identities() -> None:
    """The migration's identity: the method's settings of the first session and the offline
    grid settings, the same as what the offline profile asks of that file now."""
    meta = {"settings": {"sizes": [480, 694, 909, 1123, 1337, 1551, 1766, 1980], "batch_size": 8,
                         "progress": None}}
    file = "grid_efficientnet_lite1/cameras.csv"
    old = P.EXPERIMENT.identity_from_meta(meta, file)
    assert json.loads(json.dumps(old)) == json.loads(json.dumps(P.EXPERIMENT.identity_of(P.settings("offline"), file)))
    assert P.EXPERIMENT.identity_of(P.settings("offline"), "grid_efficientnet_lite0/gradcampp.csv")["settings"] == {}

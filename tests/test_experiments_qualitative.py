"""cameras.experiments.qualitative: settings, stored maps, n/a rows, resume and the figure."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cameras.experiments import qualitative as Q


def test_profiles_are_valid_and_use_the_papers_classes() -> None:
    for name in ("ci", "offline", "paper"):
        assert Q.resolve_settings(name)["profile"] == name
    off = Q.resolve_settings("offline")
    assert off["classes"] == Q.PAPER_CLASSES and len(Q.PAPER_CLASSES) == 9
    assert Q.resolve_settings("paper")["models"] == ["resnet50", "densenet121", "inception_v3"]
    items = Q.select_images(Q.PAPER_CLASSES)
    assert len(items) == 9
    assert all(info.label == t for info, t in items)


def test_bad_settings_raise() -> None:
    with pytest.raises(ValueError, match="unknown profile"):
        Q.resolve_settings("quick")
    with pytest.raises(ValueError, match="unknown setting"):
        Q.resolve_settings("ci", images=["bulbul"])
    with pytest.raises(ValueError, match="no ImageNet class"):
        Q.resolve_settings("ci", classes=["flux capacitor"])
    with pytest.raises(ValueError, match="unknown model"):
        Q.resolve_settings("ci", models=["resnet5"])
    with pytest.raises(ValueError, match="cameras_zoom"):
        Q.resolve_settings("ci", method_settings={"cameras": {"sizes": [224]}})


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    torch.manual_seed(0)
    tmp = tmp_path_factory.mktemp("qualitative")
    kw = dict(classes=["bulbul"], methods=["gradcam", "cameras", "excitation_backprop"],
              method_settings={"excitation_backprop": {"strict": True}})
    df = Q.run("ci", results=tmp, device="cpu", progress=False, **kw)
    return tmp, kw, df


def test_rows_and_maps(small_run) -> None:
    tmp, kw, df = small_run
    assert len(df) == 3
    ok = df[df["status"] == "ok"]
    assert set(ok["method"]) == {"gradcam", "cameras"}
    # strict excitation backprop refuses EfficientNet-Lite: recorded, not hidden
    na = df[df["method"] == "excitation_backprop"]["status"].iloc[0]
    assert na.startswith("n/a:") and "strict" in na
    assert (ok["target"] == 16).all()  # bulbul
    s = Q.resolve_settings("ci", **kw)
    maps = Q.load_maps(s, "efficientnet_lite0", results=tmp)
    m = maps["cameras"]["n01560419_bulbul"]
    assert m.shape == (224, 224) and m.min() >= 0 and m.max() == pytest.approx(1.0)
    assert maps["excitation_backprop"] == {}
    cam = df[df["method"] == "cameras"]["settings"].iloc[0]
    assert cam["sizes"] == [224, 336]


def test_second_call_resumes(small_run, monkeypatch) -> None:
    tmp, kw, df = small_run

    def boom(*a, **k):
        raise AssertionError("nothing should be recomputed")

    monkeypatch.setattr("cameras.models.load_model", boom)
    again = Q.run("ci", results=tmp, device="cpu", progress=False, **kw)
    assert len(again) == len(df)


def test_missing_map_is_recomputed(small_run) -> None:
    tmp, kw, df = small_run
    s = Q.resolve_settings("ci", **kw)
    p = Q.maps_path(Q.results_folder(s, tmp), "efficientnet_lite0", "gradcam")
    before = np.load(p)["n01560419_bulbul"].copy()
    p.unlink()
    Q.run("ci", results=tmp, device="cpu", progress=False, **kw)
    after = np.load(p)["n01560419_bulbul"]
    np.testing.assert_array_equal(before, after)


def test_figure_marks_missing_panels(small_run, tmp_path) -> None:
    tmp, kw, df = small_run
    s = Q.resolve_settings("ci", **kw)
    fig = Q.figure(s, "efficientnet_lite0", results=tmp, save=tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 1000
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert texts.count("n/a") == 1
    t = Q.status_table(df)
    assert t.loc["Grad-CAM", "EfficientNet-Lite0"] == "ok"
    assert Q.timing_table(df).shape[0] == 2


def test_skip_leaves_out_model_method_pairs(small_run) -> None:
    """``skip`` drops (model, method) pairs from the run, the rows and the status table."""
    tmp, kw, df = small_run
    s = Q.resolve_settings("ci", **kw, skip={"efficientnet_lite0": "cameras"})
    assert s["skip"] == {"efficientnet_lite0": ["cameras"]}
    assert Q.methods_for(s, "efficientnet_lite0") == ["gradcam", "excitation_backprop"]
    assert Q.methods_for(s, "efficientnet_lite1") == ["gradcam", "cameras", "excitation_backprop"]
    rows = Q.load_results(s, results=tmp)
    assert set(rows["method"]) == {"gradcam", "excitation_backprop"}
    # rows of another model with that method skipped show as not run in the status table
    other = df.assign(model="efficientnet_lite1")
    table = Q.status_table(__import__("pandas").concat([rows, other]))
    assert table.loc["CAMERAS", "EfficientNet-Lite0"].startswith("not run")
    assert table.loc["CAMERAS", "EfficientNet-Lite1"] == "ok"
    off = Q.resolve_settings("offline")
    assert Q.methods_for(off, "efficientnet_lite2") == [
        m for m in off["methods"] if m not in ("rise", "extremal_perturbation")]
    with pytest.raises(TypeError, match="skip must be a dict"):
        Q.resolve_settings("ci", skip=["cameras"])
    with pytest.raises(ValueError, match="unknown saliency method"):
        Q.resolve_settings("ci", skip={"efficientnet_lite0": ["gradcamm"]})

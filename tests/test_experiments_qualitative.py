"""cameras.experiments.qualitative: settings, stored maps, n/a rows, resume, the identity of
each method's settings and layer, the keep rule's record, the figure and tables."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from cameras.engine import MapStore
from cameras.experiments import qualitative as Q
from cameras.runs import SettingsMismatch

KW = dict(classes=["bulbul"], methods=["gradcam", "cameras", "excitation_backprop"],
          method_settings={"excitation_backprop": {"strict": True}})


def test_profiles_are_valid_and_use_the_papers_classes() -> None:
    for name in ("ci", "offline", "paper"):
        assert Q.settings(name)["profile"] == name
    off = Q.settings("offline")
    assert off["classes"] == Q.PAPER_CLASSES and len(Q.PAPER_CLASSES) == 9
    assert Q.settings("paper")["models"] == ["resnet50", "densenet121", "inception_v3"]
    items = Q.items(off)
    assert len(items) == 9
    assert [it.name for it in items][:2] == ["n03691459_loudspeaker", "n03792972_mountain_tent"]


def test_bad_settings_raise() -> None:
    with pytest.raises(ValueError, match="unknown profile"):
        Q.settings("quick")
    with pytest.raises(ValueError, match="unknown setting"):
        Q.settings("ci", images=["bulbul"])
    with pytest.raises(ValueError, match="no ImageNet class"):
        Q.settings("ci", classes=["flux capacitor"])
    with pytest.raises(ValueError, match="unknown model"):
        Q.settings("ci", models=["resnet5"])
    with pytest.raises(ValueError, match="cameras_zoom"):
        Q.settings("ci", method_settings={"cameras": {"sizes": [224]}})
    with pytest.raises(ValueError, match="cameras_zoom"):
        Q.settings("ci", cameras_zoom=[0.0])


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    torch.manual_seed(0)
    tmp = tmp_path_factory.mktemp("qualitative")
    df = Q.run("ci", results=tmp, device="cpu", progress=False, **KW)
    return tmp, df


def test_rows_and_maps(small_run) -> None:
    tmp, df = small_run
    assert len(df) == 3
    ok = df[df["status"] == "ok"]
    assert set(ok["method"]) == {"gradcam", "cameras"}
    # strict excitation backprop refuses EfficientNet-Lite: recorded, not hidden
    na = df[df["method"] == "excitation_backprop"]["status"].iloc[0]
    assert na.startswith("n/a:") and "strict" in na
    assert (ok["target"] == 16).all()  # bulbul
    maps = Q.load_maps(Q.settings("ci", **KW), "efficientnet_lite0", results=tmp)
    m = maps["cameras"]["n01560419_bulbul"]
    assert m.shape == (224, 224) and m.min() >= 0 and m.max() == pytest.approx(1.0)
    assert maps["excitation_backprop"] == {}
    cam = df[df["method"] == "cameras"].iloc[0]
    assert cam["settings"]["sizes"] == [224, 336] and cam["settings"]["keep"] == "prediction"
    assert 1 <= cam["sizes_kept"] <= 2 and df[df["method"] != "cameras"]["sizes_kept"].isna().all()
    assert df[df["method"] == "gradcam"]["layer"].iloc[0] == "_head_act"


def test_second_call_resumes(small_run, monkeypatch) -> None:
    tmp, df = small_run

    def boom(*a, **k):
        raise AssertionError("nothing should be recomputed")

    monkeypatch.setattr("cameras.models.load_model", boom)
    again = Q.run("ci", results=tmp, device="cpu", progress=False, **KW)
    pd.testing.assert_frame_equal(again, df)


def test_missing_map_is_recomputed(small_run) -> None:
    tmp, df = small_run
    p = MapStore(tmp / "_ci" / "qualitative" / "maps").path("efficientnet_lite0", "gradcam")
    before = np.load(p)["n01560419_bulbul"].copy()
    csv = (tmp / "_ci" / "qualitative" / "efficientnet_lite0.csv").read_bytes()
    p.unlink()
    Q.run("ci", results=tmp, device="cpu", progress=False, **KW)
    np.testing.assert_array_equal(np.load(p)["n01560419_bulbul"], before)
    assert (tmp / "_ci" / "qualitative" / "efficientnet_lite0.csv").read_bytes() == csv  # rows kept


def test_rows_of_other_method_settings_are_refused(small_run, tmp_path) -> None:
    tmp, _ = small_run
    kw = dict(KW, method_settings={"excitation_backprop": {"strict": False}})
    with pytest.raises(SettingsMismatch, match="methods.excitation_backprop"):
        Q.run("ci", results=tmp, device="cpu", progress=False, **kw)
    with pytest.raises(SettingsMismatch, match="methods.cameras"):  # CAMERAS' sizes
        Q.run("ci", results=tmp, device="cpu", progress=False, cameras_zoom=[1.0], **KW)
    with pytest.raises(SettingsMismatch, match="methods.gradcam"):  # another layer
        Q.EXPERIMENT.load(Q.settings("ci", layers={"efficientnet_lite0": {"gradcam": "_blocks.15"}}, **KW), tmp)
    # a method added later joins the file's identity; the stored methods are untouched
    run = dict(results=tmp_path, device="cpu", progress=False, classes=["bulbul"])
    Q.run("ci", methods=["gradient"], **run)
    rows = Q.run("ci", methods=["gradient", "center"], **run)
    assert list(rows["method"]) == ["gradient", "center"]
    ident = Q.EXPERIMENT.identity_of(Q.settings("offline"), "efficientnet_lite0.csv")["methods"]
    assert ident["normgrad"]["layer"] == "_blocks.10" and ident["rise"]["scores"] == "softmax"


def test_figure_and_tables(small_run) -> None:
    tmp, df = small_run
    s = Q.settings("ci", **KW)
    fig = Q.plot_maps(s, "efficientnet_lite0", results=tmp, rows=df)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.tell() > 1000
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert texts.count("n/a") == 1  # excitation backprop refused the model
    notes = [ax.get_xlabel() for ax in fig.axes]
    assert any(n.endswith("of 2 sizes kept") for n in notes)
    t = Q.status_table(df).set_index("method")
    assert t.loc["gradcam", "EfficientNet-Lite0"] == "ok"
    assert t.loc["excitation_backprop", "EfficientNet-Lite0"].startswith("n/a")
    timing = Q.timing_table(df).set_index("method")
    assert timing.shape[0] == 2 and timing.loc["cameras", "settings"] == "sizes 224..336 (2), keep rule: prediction"
    area = Q.area_table(s, results=tmp).set_index("method")
    assert area.loc["cameras", "EfficientNet-Lite0"] > 0 and np.isnan(area.loc["excitation_backprop", "EfficientNet-Lite0"])
    kept = Q.kept_table(df)
    assert list(kept.columns) == ["class", "EfficientNet-Lite0"] and kept.iloc[0, 1].endswith("of 2")


def test_skip_leaves_out_model_method_pairs(small_run) -> None:
    """``skip`` drops (model, method) pairs from the run, the rows and the status table."""
    tmp, df = small_run
    s = Q.settings("ci", **KW, skip={"efficientnet_lite0": "cameras"})
    assert s["skip"] == {"efficientnet_lite0": ["cameras"]}
    assert Q.methods_for(s, "efficientnet_lite0") == ["gradcam", "excitation_backprop"]
    assert Q.methods_for(s, "efficientnet_lite1") == ["gradcam", "cameras", "excitation_backprop"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rows = Q.EXPERIMENT.load(s, tmp)
    assert set(rows["method"]) == {"gradcam", "excitation_backprop"}
    other = df.assign(model="efficientnet_lite1")
    table = Q.status_table(pd.concat([rows, other])).set_index("method")
    assert table.loc["cameras", "EfficientNet-Lite0"].startswith("not run")
    assert table.loc["cameras", "EfficientNet-Lite1"] == "ok"
    off = Q.settings("offline")
    assert Q.methods_for(off, "efficientnet_lite2") == [
        m for m in off["methods"] if m not in ("rise", "extremal_perturbation")]


def test_verdict_numbers_from_the_committed_results() -> None:
    from cameras.runs import results_dir

    if not (results_dir(None) / "qualitative" / "maps" / "efficientnet_lite0" / "gradcam.npz").exists():
        pytest.skip("no committed results here")
    v = Q.verdict_numbers()
    assert v["n_images"] == 9 and v["models"] == ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
    assert 0 < v["area"]["efficientnet_lite0"]["gradcam"] < 100
    with pytest.raises(TypeError, match="must be a dict"):
        Q.settings("ci", skip=["cameras"])
    with pytest.raises(ValueError, match="unknown saliency method"):
        Q.settings("ci", skip={"efficientnet_lite0": ["gradcamm"]})

"""cameras.experiments.qualitative: settings, stored maps, n/a rows, resume, the per-row
settings check and the figure."""

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
    assert df[df["method"] == "cameras"]["settings"].iloc[0]["sizes"] == [224, 336]
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


def test_rows_of_other_method_settings_are_not_returned_silently(small_run, tmp_path) -> None:
    tmp, _ = small_run
    kw = dict(KW, method_settings={"excitation_backprop": {"strict": False}})
    with pytest.raises(SettingsMismatch, match="excitation_backprop"):
        Q.EXPERIMENT.load(Q.settings("ci", **kw), tmp)
    with pytest.raises(SettingsMismatch, match="cameras_zoom"):  # the file's identity
        Q.run("ci", results=tmp, device="cpu", progress=False, cameras_zoom=[1.0], **KW)
    # an interrupted run resumed with other settings: the old rows are named in a warning
    run = dict(results=tmp_path, device="cpu", progress=False, methods=["gradient"])
    Q.run("ci", classes=["bulbul"], method_settings={"gradient": {"smooth": 0.0}}, **run)
    with pytest.warns(RuntimeWarning, match="1 of 2 rows .* n01560419_bulbul"):
        rows = Q.run("ci", classes=["bulbul", "volleyball"], **run)
    assert [st["smooth"] for st in rows["settings"]] == [0.0, 0.02]


def test_figure_and_tables(small_run) -> None:
    tmp, df = small_run
    s = Q.settings("ci", **KW)
    fig = Q.plot_maps(s, "efficientnet_lite0", results=tmp)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.tell() > 1000
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert texts.count("n/a") == 1  # excitation backprop refused the model
    t = Q.status_table(df)
    assert t.loc["Grad-CAM", "EfficientNet-Lite0"] == "ok"
    assert t.loc["Excitation backprop (MWP)", "EfficientNet-Lite0"].startswith("n/a")
    timing = Q.timing_table(df)
    assert timing.shape[0] == 2 and timing.loc["CAMERAS", "settings"] == "sizes 224..336 (2)"
    area = Q.area_table(s, results=tmp)
    assert area.loc["CAMERAS", "EfficientNet-Lite0"] > 0 and "Excitation backprop (MWP)" not in area.index


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
    table = Q.status_table(pd.concat([rows, other]))
    assert table.loc["CAMERAS", "EfficientNet-Lite0"].startswith("not run")
    assert table.loc["CAMERAS", "EfficientNet-Lite1"] == "ok"
    off = Q.settings("offline")
    assert Q.methods_for(off, "efficientnet_lite2") == [
        m for m in off["methods"] if m not in ("rise", "extremal_perturbation")]
    with pytest.raises(TypeError, match="must be a dict"):
        Q.settings("ci", skip=["cameras"])
    with pytest.raises(ValueError, match="unknown saliency method"):
        Q.settings("ci", skip={"efficientnet_lite0": ["gradcamm"]})

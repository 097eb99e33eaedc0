"""cameras.experiments.sanity: rows of a tiny ci run of the three checks, resume, figures, the
identity of each check's file, the committed offline results."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

import cameras.sanity
from cameras.experiments import sanity as S

TINY = dict(
    cascade_images=1,
    cascade_depths=[0, 1, 2],
    cascade_methods=["gradcam", "gradient", "cameras"],
    adversarial_images=1,
    adversarial_methods=["gradcam", "center", "cameras"],
    ks=[10],
    adv_steps=2,
    n_random=1,
    class_images=1,
    class_slow_images=1,
    class_methods=["gradcam", "center", "rise", "cameras"],
    method_settings={"rise": {"num_masks": 16, "batch_size": 16}},
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    res = S.run("ci", results=results, device="cpu", progress=False, **TINY)
    return results, res


def test_cascade_rows_and_maps(tiny_run):
    results, res = tiny_run
    df = res["cascade"]
    assert (results / "_ci" / "sanity" / "cascade.csv").is_file()
    assert len(df) == 3 * 1 * 3 * 3  # methods x images x depths x metrics
    assert list(df.groupby("depth")["block"].first()) == ["none", "_fc", "_bn1"]
    d0 = df[df["depth"] == 0]
    assert np.allclose(d0["value"], 1.0)  # depth 0: the untouched copy gives the same maps
    assert df["value"].notna().all()
    maps = S.cascade_maps(S.settings("ci", **TINY), results=results)
    assert maps["methods"] == ["gradcam", "gradient", "cameras"] and maps["depths"] == [0, 1, 2]
    assert maps["maps"]["gradient"].shape == (3, 1, 224, 224)
    assert isinstance(S.plot_cascade_maps(maps), Figure)
    assert isinstance(S.plot_cascade_curves(df), Figure)
    summ = S.cascade_summary(df)
    assert set(summ["n_images"]) == {1}
    cam = df[df["method"] == "cameras"]  # Algorithm 1: the sizes kept, at every depth
    assert cam["sizes_kept"].between(1, 2).all() and df[df["method"] != "cameras"]["sizes_kept"].isna().all()
    assert summ[summ["method"] == "cameras"]["sizes_kept"].notna().all()


def test_adversarial_rows(tiny_run):
    _, res = tiny_run
    df = res["adversarial"]
    assert len(df) == 3 * 1 * 1 * 3  # methods x images x ks x selections
    assert set(df["selection"]) == {"top", "random", "bottom"}
    assert (df["drop"] <= df["clean_conf"] + 1e-6).all()
    assert df[df["method"] == "cameras"]["sizes_kept"].between(1, 2).all()
    summ = S.adversarial_summary(df)
    assert list(summ["method"]) == ["gradcam", "center", "cameras"] and (summ["n_images"] == 1).all()
    assert np.allclose(summ["gap"], summ["top"] - summ["random"])
    assert isinstance(S.plot_adversarial(df), Figure)


def test_class_sensitivity_rows(tiny_run):
    _, res = tiny_run
    df = res["class_sensitivity"]
    assert len(df) == 4 * 1  # methods x images, the authors' definition
    assert (df["most"] != df["least"]).all() and (df["p_most"] >= df["p_least"]).all()
    centre = df[df["method"] == "center"]
    assert np.allclose(centre["class_spearman"], 1.0)  # the centre map ignores the class
    assert df[df["method"] == "rise"]["settings"].iloc[0]["num_masks"] == 16  # recorded
    assert df[df["method"] == "cameras"]["settings"].iloc[0]["keep"] == "prediction"
    assert df[df["method"] == "cameras"]["sizes_kept"].between(1, 2).all()
    summ = S.class_summary(df)
    assert list(summ["method"]) == ["cameras", "gradcam", "rise", "center"]
    assert (summ["n"] + summ["dropped"] == 1).all()
    assert "ignores model and class" in summ.set_index("method").loc["center", "note"]
    assert isinstance(S.plot_class_sensitivity(summ), Figure)
    kept = S.kept_summary(res)
    assert set(kept["check"]) == set(S.CHECKS) and kept["mean"].between(1, 2).all()


def test_second_call_resumes_without_computing(tiny_run, monkeypatch):
    results, res = tiny_run

    def boom(*a, **k):
        raise AssertionError("recomputed a check that was in the results")

    for fn in ("cascading_randomization", "adversarial_sanity", "class_spearman"):
        monkeypatch.setattr(cameras.sanity, fn, boom)
    metas = sorted((results / "_ci" / "sanity").glob("*.meta.json"))
    before = [m.read_text() for m in metas]
    again = S.run("ci", results=results, device="cpu", progress=False, **TINY)
    assert len(metas) == 3 and [m.read_text() for m in metas] == before  # no new sessions
    for k, df in res.items():
        assert len(again[k]) == len(df)
        col = {"cascade": "value", "adversarial": "drop", "class_sensitivity": "class_spearman"}[k]
        assert again[k][col].equals(df[col])


def test_settings_and_errors(monkeypatch):
    with pytest.raises(ValueError, match="unknown setting"):
        S.settings("ci", images_n=2)
    with pytest.raises(ValueError, match="cascade_images must be an int >= 1"):
        S.settings("ci", cascade_images=0)
    with pytest.raises(ValueError, match="checks must be one of"):
        S.run("ci", checks=("cascade", "pointing"))
    with pytest.raises(ValueError, match="unknown saliency method|unknown method"):
        S.settings("ci", cascade_methods=["gradcam", "nope"])
    from cameras.data import MissingDataError

    monkeypatch.delenv("CAMERAS_DATA_ROOT", raising=False)
    with pytest.raises(MissingDataError):
        S.run("paper", device="cpu")
    assert S.PROFILES["offline"]["cascade_methods"] == ["cameras", "gradcam", "gradient", "guided_backprop"]
    # method settings given on top of a profile's are merged per method
    ms = S.settings("ci", method_settings={"rise": {"num_masks": 8}})["method_settings"]
    assert ms["rise"]["num_masks"] == 8 and ms["excitation_backprop"] == {"strict": False}
    assert S.settings("paper")["method_settings"] == {"cameras": {"sizes": list(range(224, 1000, 100)),
                                                                  "keep": "prediction"}}
    assert all(S.settings(p)["method_settings"]["cameras"]["keep"] == "prediction" for p in S.PROFILES)


def test_each_file_has_its_own_identity(tiny_run, monkeypatch):
    from cameras.runs import SettingsMismatch

    results, _ = tiny_run
    for fn in ("cascading_randomization", "adversarial_sanity", "class_spearman"):
        monkeypatch.setattr(cameras.sanity, fn, lambda *a, **k: pytest.fail("computed"))
    with pytest.raises(SettingsMismatch, match="adv_steps=2"):  # the attack defines the adversarial rows
        S.run("ci", results=results, device="cpu", progress=False, **{**TINY, "adv_steps": 3})
    with pytest.raises(SettingsMismatch, match="methods.rise"):  # RISE's masks define its rows
        S.run("ci", results=results, device="cpu", progress=False, checks=["class_sensitivity"],
              **{**TINY, "method_settings": {"rise": {"num_masks": 8}}})
    # ... but not the cascade's, nor the other checks' settings
    again = S.run("ci", results=results, device="cpu", progress=False, checks=["cascade"],
                  **{**TINY, "adv_steps": 3, "method_settings": {"rise": {"num_masks": 8}}})
    assert list(again) == ["cascade"] and len(again["cascade"]) == 3 * 3 * 3
    with pytest.raises(SettingsMismatch, match="methods.cameras"):  # so does CAMERAS' keep rule
        S.run("ci", results=results, device="cpu", progress=False, checks=["cascade"],
              **{**TINY, "method_settings": {"cameras": {"keep": "auto"}}})


def test_identity_holds_each_methods_full_settings_and_layer():
    s = S.settings("offline")
    ident = S.EXPERIMENT.identity_of(s, "class_sensitivity.csv")["methods"]
    assert ident["cameras"]["keep"] == "prediction" and ident["cameras"]["layer"] == "_head_act"
    assert ident["normgrad"]["layer"] == "_blocks.10" and ident["rise"]["scores"] == "softmax"
    two = S.methods_identity({}, ["normgrad", "cameras"], ["efficientnet_lite0", "efficientnet_lite1"])
    assert two["normgrad"]["layer"] == {"efficientnet_lite0": "_blocks.10", "efficientnet_lite1": "_blocks.14"}
    assert two["cameras"]["layer"] == "_head_act"  # one name where the models agree


def test_block_labels_are_words():
    blocks = ["_fc", "_bn1", "_conv_head", *[f"_blocks.{i}" for i in range(15, -1, -1)], "_bn0", "_conv_stem"]
    assert S.block_label("_blocks.12", blocks) == "block 13 of 16 (depth 7 of 21)"
    assert S.block_label("_fc", blocks) == "classifier (depth 1 of 21)"
    assert S.block_label("none", blocks) == "original"
    assert S.block_label("layer4.2", ["fc", "layer4.2"]) == "layer4.2 (depth 2 of 2)"


def test_committed_offline_results_load_without_computing(tmp_path, monkeypatch):
    stored = Path(__file__).resolve().parents[1] / "results" / "sanity"
    try:
        S.EXPERIMENT.units(S.settings("offline"))
    except FileNotFoundError:
        pytest.skip("ImageNet sample not available")
    shutil.copytree(stored, tmp_path / "sanity")
    for fn in ("cascading_randomization", "adversarial_sanity", "class_spearman"):
        monkeypatch.setattr(cameras.sanity, fn, lambda *a, **k: pytest.fail("computed"))
    res = S.run("offline", results=tmp_path, device="cpu", progress=False)
    assert {k: len(v) for k, v in res.items()} == {"cascade": 1152, "adversarial": 3000, "class_sensitivity": 12 * 20 + 2 * 4}
    maps = S.cascade_maps(S.settings("offline"), results=tmp_path)
    assert maps["depths"] == [0, 1, 2, 3, 6, 11, 16, 21] and maps["maps"]["cameras"].shape == (8, 1, 224, 224)
    assert sorted(p.name for p in (tmp_path / "sanity").iterdir()) == sorted(p.name for p in stored.iterdir())


def test_fewer_depths_return_only_those_rows_and_redo_the_figure_maps(tiny_run):
    results, res = tiny_run
    kw = dict(TINY, cascade_depths=[0, 1])
    again = S.run("ci", results=results, device="cpu", progress=False, checks=("cascade",), **kw)
    assert sorted(again["cascade"]["depth"].unique()) == [0, 1]
    maps = S.cascade_maps(S.settings("ci", **kw), results=results)
    assert maps["depths"] == [0, 1] and maps["maps"]["gradcam"].shape[0] == 2

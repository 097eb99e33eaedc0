"""The map-density experiment (chapter 4): settings, the batched insertion/deletion against
the metric module, the masked images, the ImageNet-val layout, the run (rows, resume,
recovery after a torn write), the paper profile's early failure and the summaries."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from cameras.data import MissingDataError, image_items, imagenet_val_dir, spread_indices
from cameras.engine import shifted_sizes
from cameras.experiments import available
from cameras.experiments import density as D
from cameras.metrics import insertion_deletion, map_density, masked_images

MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.3, 0.25)


def _tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 5)
    ).eval()


# ========================================================================================
# settings
# ========================================================================================
def test_experiment_is_registered_and_profiles_are_complete():
    assert "density" in available()
    assert set(D.PROFILES) == {"ci", "offline", "paper"}
    keys = set(D.PROFILES["offline"])
    for name, prof in D.PROFILES.items():
        assert set(prof) == keys, name
        D.settings(name)  # valid as shipped
    assert D.PROFILES["offline"]["cameras_sizes"] == list(range(224, 1000, 100))
    assert D.PROFILES["paper"]["models"] == ["resnet50", "densenet121", "inception_v3"]


@pytest.mark.parametrize(
    ("profile", "overrides", "match"),
    [
        ("nope", {}, "unknown profile"),
        ("ci", {"n_imgs": 3}, "unknown setting"),
        ("ci", {"baselines": ["white"]}, "baselines"),
        ("ci", {"n_images": 0}, "n_images"),
        ("ci", {"methods": ["rise"]}, "too slow"),
        ("ci", {"methods": ["gradcamm"]}, "unknown saliency method"),
        ("ci", {"models": ["resnet5"]}, "unknown model"),
        ("ci", {"insdel_steps": 0}, "insdel_steps"),
        ("ci", {"loader_workers": -1}, "loader_workers"),
        ("ci", {"method_images": {"cameras": 0}}, "method_images"),
        ("ci", {"method_images": {"gradcamm": 3}}, "unknown saliency method"),
        ("ci", {"skip": {"resnet5": ["cameras"]}}, "unknown model"),
        ("ci", {"method_settings": {"cameras": {"keep": "sometimes"}}}, "keep"),
        ("ci", {"method_settings": {"cameras": {"sizes": [224]}}}, "cameras_sizes"),
    ],
)
def test_bad_settings_raise(profile, overrides, match):
    with pytest.raises(ValueError, match=match):
        D.settings(profile, **overrides)


def test_model_sizes_start_at_the_native_input_and_indices_spread():
    assert shifted_sizes([224, 324, 924], 224) == [224, 324, 924]
    assert shifted_sizes(list(range(224, 1000, 100)), 240) == list(range(240, 1000, 100))
    assert shifted_sizes([224, 924], 260) == [260, 960]
    assert shifted_sizes([224, 324], 299) == [299, 399]
    assert spread_indices(1000, 4) == [0, 333, 666, 999]
    assert spread_indices(5, None) == [0, 1, 2, 3, 4]
    assert spread_indices(3, 10) == [0, 1, 2]


# ========================================================================================
# measurements
# ========================================================================================
def _plain_curve(model, x, m, y, mode, counts, sub01):
    """The insertion/deletion curve of one image, step by step (the reference)."""
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    x01 = x[None] * std + mean
    order = torch.argsort(m.reshape(-1), descending=True, stable=True)
    out = []
    for k in counts:
        top = torch.zeros(m.numel(), dtype=torch.bool)
        top[order[:k]] = True
        top = top.view(1, 1, *m.shape)
        z = torch.where(top, sub01, x01) if mode == "deletion" else torch.where(top, x01, sub01)
        with torch.no_grad():
            out.append(model((z - mean) / std).softmax(1)[0, y])
    return torch.stack(out)


@pytest.mark.parametrize("mode", ["insertion", "deletion"])
@pytest.mark.parametrize("substrate", [None, "black", "mean", "blur"])
def test_batched_insertion_deletion_equals_a_plain_loop(mode, substrate):
    from cameras.metrics._common import baseline01, stats

    model = _tiny_model().double()
    x = torch.randn(3, 3, 12, 10, dtype=torch.float64)
    maps = torch.rand(3, 12, 10, dtype=torch.float64)
    maps[0, :4] = 0.5  # ties: row-major order decides
    maps[1] = 0  # an all-zero map
    y = torch.tensor([1, 2, 3])
    a, c = insertion_deletion(model, x, maps, y, mode, mean=MEAN, std=STD, n_steps=7,
                              substrate=substrate, batch_size=5)
    counts = [round(i * 120 / 7) for i in range(8)]
    m, s = stats(MEAN, STD, x)
    for i in range(3):
        sub = baseline01(substrate or ("blur" if mode == "insertion" else "black"), x[i : i + 1] * s + m, m)
        torch.testing.assert_close(c[i].double(), _plain_curve(model, x[i], maps[i], y[i], mode, counts, sub),
                                   atol=1e-6, rtol=0)
    assert c.shape == (3, 8) and torch.allclose(a, (c.sum(1) - c[:, 0] / 2 - c[:, -1] / 2) / 7)


def test_batched_deletion_curve_ends_at_the_substrate():
    model = _tiny_model()
    x = torch.randn(2, 3, 8, 8)
    maps = torch.rand(2, 8, 8)
    _, c = insertion_deletion(model, x, maps, [0, 4], "deletion", mean=MEAN, std=STD, n_steps=4)
    m = torch.tensor(MEAN).view(1, 3, 1, 1)
    s = torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        p_full = model(x).softmax(1)[[0, 1], [0, 4]]
        p_black = model((torch.zeros_like(x) - m) / s).softmax(1)[[0, 1], [0, 4]]
    torch.testing.assert_close(c[:, 0], p_full)
    torch.testing.assert_close(c[:, -1], p_black)


@pytest.mark.parametrize("baseline", ["black", "mean"])
def test_masked_images_are_the_inputs_map_density_scores(baseline):
    model = _tiny_model()
    x = torch.randn(3, 3, 9, 11)
    maps = torch.rand(3, 9, 11)
    y = torch.tensor([0, 2, 4])
    _, _, det = map_density(model, x, maps, y, mean=MEAN, std=STD, baseline=baseline, return_details=True)
    keep, drop = masked_images(x, maps, mean=MEAN, std=STD, baseline=baseline)
    m = torch.tensor(MEAN).view(1, 3, 1, 1)
    s = torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        pk = model((keep - m) / s).softmax(1)[torch.arange(3), y]
        pd_ = model((drop - m) / s).softmax(1)[torch.arange(3), y]
    torch.testing.assert_close(pk, det["p_plus"])
    torch.testing.assert_close(pd_, det["p_minus"])
    # where the map is 1 the kept image is the image; where it is 0, the baseline
    ones = torch.ones(1, 9, 11)
    k1, d1 = masked_images(x[:1], ones, mean=MEAN, std=STD, baseline=baseline)
    torch.testing.assert_close(k1, x[:1] * s + m)
    fill = torch.zeros_like(d1) if baseline == "black" else m.expand_as(d1)
    torch.testing.assert_close(d1, fill)


# ========================================================================================
# data
# ========================================================================================
def test_imagenet_val_layout_and_missing_data(tmp_path, monkeypatch):
    monkeypatch.delenv("CAMERAS_DATA_ROOT", raising=False)
    with pytest.raises(MissingDataError, match="CAMERAS_DATA_ROOT"):
        imagenet_val_dir()
    with pytest.raises(MissingDataError, match="ImageNet val not found"):
        imagenet_val_dir(tmp_path)
    val = tmp_path / "imagenet" / "val"
    for wnid, n in (("n01440764", 2), ("n01443537", 1)):
        (val / wnid).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (40, 30), (i * 50, 80, 120)).save(val / wnid / f"ILSVRC2012_val_{wnid[-3:]}{i}.JPEG")
    (val / "README.txt").write_text("not a class folder")
    items = image_items("imagenet_val", tmp_path)
    assert [it.label for it in items] == [0, 0, 1]
    assert items[0].name == "ILSVRC2012_val_7640"
    monkeypatch.setenv("CAMERAS_DATA_ROOT", str(tmp_path))
    assert imagenet_val_dir() == val


def test_paper_profile_fails_before_computing(tmp_path, monkeypatch):
    monkeypatch.setenv("CAMERAS_DATA_ROOT", str(tmp_path / "empty"))
    with pytest.raises(MissingDataError, match="ImageNet val"):
        D.run("paper", results=tmp_path / "res", device="cpu", progress=False)
    assert not (tmp_path / "res").exists()


# ========================================================================================
# the run
# ========================================================================================
SMALL = dict(n_images=2, methods=["gradcam", "cameras"], cameras_sizes=[224, 256], insdel_steps=2,
             loader_workers=1)  # one loader worker: the multi-process path the GPU run takes


def test_run_writes_rows_resumes_and_recovers(tmp_path, monkeypatch):
    df = D.run("ci", results=tmp_path, device="cpu", progress=False, **SMALL)
    path = tmp_path / "_ci" / "density" / "imagenet_sample_efficientnet_lite0.csv"
    assert path.is_file() and path.with_name(path.stem + ".meta.json").is_file()
    assert list(df.columns) == list(D.COLUMNS)
    assert len(df) == 2 * 2 * 2  # images x methods x baselines
    assert set(df["method"]) == {"gradcam", "cameras"} and set(df["baseline"]) == {"black", "mean"}
    assert df[list(D.COLUMNS[5:-1])].notna().all().all()
    # Algorithm 1's keep rule: the sizes kept are those whose top-1 is the reference top-1
    cam, gc = df[df["method"] == "cameras"], df[df["method"] == "gradcam"]
    assert gc["sizes_kept"].isna().all() and cam["sizes_kept"].between(1, 2).all()
    _check_kept(cam)
    assert ((df["map_mean"] > 0) & (df["map_mean"] < 1)).all()
    for col in ("p_plus", "p_minus", "p_full", "insertion", "deletion"):
        assert df[col].between(0, 1).all(), col
    np.testing.assert_allclose(df["rho_plus"], df["p_plus"] / df["map_mean"], rtol=1e-4)
    np.testing.assert_allclose(df["rho_minus"], df["p_minus"] / (1 - df["map_mean"]), rtol=1e-4)
    # the true label is the target (the sample's file i is class i; 2 images -> 0 and 999)
    assert sorted(set(df["target"])) == [0, 999]
    # insertion does not depend on the baseline; rho+ does
    piv = df.pivot_table(index=["method", "image"], columns="baseline", values=["insertion", "rho_plus"])
    np.testing.assert_allclose(piv["insertion"]["black"], piv["insertion"]["mean"])
    assert not np.allclose(piv["rho_plus"]["black"], piv["rho_plus"]["mean"])

    # resume: nothing recomputed, files untouched
    calls = []
    real = D._evaluate

    def counting(ctx, lm, x, *args, **kwargs):
        calls.append(x.shape[0])
        return real(ctx, lm, x, *args, **kwargs)

    monkeypatch.setattr(D, "_evaluate", counting)
    before = path.read_bytes(), path.with_name(path.stem + ".meta.json").read_bytes()
    df2 = D.run("ci", results=tmp_path, device="cpu", progress=False, **SMALL)
    assert calls == []
    assert (path.read_bytes(), path.with_name(path.stem + ".meta.json").read_bytes()) == before
    pd.testing.assert_frame_equal(df2, df)

    # a torn last row (crash during a write) is dropped and only that image is recomputed
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 7])
    with pytest.warns(RuntimeWarning, match="incomplete last row"):
        df3 = D.run("ci", results=tmp_path, device="cpu", progress=False, **SMALL)
    assert calls == [1]
    assert len(df3) == len(df)
    assert len(D.load_results("ci", results=tmp_path, **SMALL)) == len(df)


# ========================================================================================
# summaries
# ========================================================================================
def _fake_rows() -> pd.DataFrame:
    rows = []
    for model in ("m1", "m2"):
        for method, rp in (("cameras", [4.0, 2.0, 6.0]), ("gradcam", [3.0, 3.0, 1.0])):
            for i, r in enumerate(rp):
                for b in ("black", "mean"):
                    rows.append({"model": model, "method": method, "image": f"im{i}", "target": i,
                                 "baseline": b, "rho_plus": r + (b == "mean"), "rho_minus": 1.0 / r,
                                 "p_plus": 0.5, "p_minus": 0.5, "map_mean": 0.0 if i == 2 and method == "gradcam" else 0.3,
                                 "p_full": 0.9, "top1": i if i < 2 else 7, "insertion": r / 10,
                                 "deletion": 0.1, "map_seconds": 0.01})
    return pd.DataFrame(rows)


def test_summary_table2_and_win_rates():
    df = _fake_rows()
    s = D.summary(df, "black")
    assert list(s.index) == [("m1", "cameras"), ("m1", "gradcam"), ("m2", "cameras"), ("m2", "gradcam")]
    r = s.loc[("m1", "cameras")]
    assert r["rho_plus_mean"] == 4.0 and r["rho_plus_median"] == 4.0
    assert r["n"] == 3 and math.isclose(r["top1_correct"], 2 / 3)
    assert s.loc[("m1", "gradcam"), "empty_maps"] == 1
    assert D.summary(df, "mean").loc[("m1", "cameras"), "rho_plus_mean"] == 5.0

    t = D.table2(df, "black", methods=("gradcam", "cameras"))
    r = t.set_index(["model", "method"]).loc[("m2", "gradcam")]
    assert r["rho_plus"] == pytest.approx(7 / 3) and r["n"] == 3
    assert r["rho_plus_lo"] <= r["rho_plus"] <= r["rho_plus_hi"]
    # a method computed on fewer images: every method is averaged over the common images
    t = D.table2(df[~((df["method"] == "cameras") & (df["image"] == "im2"))], "black", ("gradcam", "cameras"))
    assert (t["n"] == 2).all() and t.set_index(["model", "method"]).loc[("m1", "gradcam"), "rho_plus"] == 3.0

    w = D.win_rates(df, "cameras", "black")
    assert list(w["other"]) == ["gradcam", "gradcam"]
    row = w.iloc[0]
    # rho+: cameras 4,2,6 vs 3,3,1 -> wins 2 of 3; rho-: 1/r, lower is better -> same
    assert row["rho_plus"] == pytest.approx(2 / 3) and row["rho_minus"] == pytest.approx(2 / 3)
    assert row["deletion"] == 0.5 and row["n"] == 3


def test_comparison_table_puts_the_papers_values_beside_ours():
    from cameras.paper import table2

    df = _fake_rows().replace({"m1": "efficientnet_lite0", "m2": "efficientnet_lite1"})
    df = pd.concat([df, df[df["method"] == "gradcam"].assign(method="normgrad", rho_plus=0.5)])
    t = D.comparison_table(df, "black", "rho_plus")
    assert list(t["method"]) == list(D.PAPER_METHODS)
    paper_cols = [c for c in t.columns if c.startswith("paper (reported)")]
    assert paper_cols == ["paper (reported): ResNet-50", "paper (reported): DenseNet-121",
                          "paper (reported): Inception-v3"]
    p = table2().set_index(["model", "method"])
    assert t.loc[2, paper_cols[0]] == f"{p.loc[('resnet50', 'cameras'), 'rho_plus']:.2f} (1)"
    assert t.loc[0, paper_cols[2]].endswith("(2)")  # Inception: NormGrad 2.19 above Grad-CAM 2.18
    ours = [c for c in t.columns if c.startswith("ours")]
    assert ours[0] == "ours: EfficientNet-Lite0, n = 3" and t.loc[2, ours[0]].startswith("4.00 [")
    assert t.loc[2, ours[0]].endswith("(1)") and t.loc[0, ours[0]].endswith("(3)")
    minus = D.comparison_table(df, "black", "rho_minus")  # lower is better: rank 1 = smallest
    assert minus.loc[2, "paper (reported): ResNet-50"].endswith("(1)")


def test_identity_records_every_methods_settings_layer_and_keep_rule():
    from cameras.methods import default_layers

    s = D.settings("offline")
    ident = D.EXPERIMENT.identity_of(s, "imagenet_sample_efficientnet_lite0.csv")
    m = ident["methods"]
    assert m["cameras"]["keep"] == "prediction" and m["cameras"]["sizes"] == list(range(224, 1000, 100))
    assert m["normgrad"]["layer"] == default_layers("efficientnet_lite0")["normgrad"] == "_blocks.10"
    assert m["gradcam"]["layer"] == m["cameras"]["layer"] == "_head_act" and m["gradient"]["layer"] is None
    lite2 = D.EXPERIMENT.identity_of(s, "imagenet_sample_efficientnet_lite2.csv")["methods"]
    assert lite2["cameras"]["sizes"][0] == 260 and lite2["normgrad"]["layer"] == "_blocks.14"
    # the offline profile computes CAMERAS and NormGrad on the same spread subset of every model
    units = D.EXPERIMENT.units(s)
    for model in s["models"]:
        n_cam = {k[2] for u in units for k in u.keys if k[:2] == (model, "cameras")}
        n_gc = {k[2] for u in units for k in u.keys if k[:2] == (model, "gradcam")}
        assert len(n_cam) == s["method_images"]["cameras"] < len(n_gc) == len(D.items(s))
    # a skipped (model, method) has no unit
    units = D.EXPERIMENT.units(D.settings("offline", skip={"efficientnet_lite1": ["cameras"]}))
    keys = {(k[0], k[1]) for u in units for k in u.keys}
    assert ("efficientnet_lite1", "cameras") not in keys and ("efficientnet_lite1", "gradcam") in keys


def test_changed_settings_on_complete_results_are_an_error_not_old_rows(tmp_path):
    from cameras.runs import SettingsMismatch

    small = dict(n_images=1, methods=["gradcam"], insdel_steps=2, loader_workers=0)
    D.run("ci", results=tmp_path, device="cpu", progress=False, **small)
    with pytest.raises(SettingsMismatch) as err:
        D.run("ci", results=tmp_path, device="cpu", progress=False,
              **{**small, "cameras_sizes": [224], "insdel_steps": 16})
    assert "cameras_sizes=[224, 324, 424]" in str(err.value) and "insdel_steps=2" in str(err.value)
    assert "cameras_sizes=[224]" in str(err.value) and "insdel_steps=16" in str(err.value)
    with pytest.raises(SettingsMismatch):  # reading is checked too
        D.load_results("ci", results=tmp_path, insdel_steps=16, **{k: v for k, v in small.items()
                                                                   if k != "insdel_steps"})
    # more images with the same settings extend the file
    assert len(D.run("ci", results=tmp_path, device="cpu", progress=False,
                     **{**small, "n_images": 2})) == 2 * 2


def _check_kept(cam):
    """sizes_kept = the sizes whose top-1 equals the reference top-1 (recomputed here)."""
    from cameras import Cameras
    from cameras.images import load_image
    from cameras.models import load_model

    lm = load_model("efficientnet_lite0", device="cpu")
    its = [it for it in D.items(D.settings("ci", **SMALL)) if it.name in set(cam["image"])]
    x = torch.stack([lm.preprocess(load_image(it.source)) for it in its])
    c = Cameras(lm.model, layer="_head_act", sizes=[224, 256], keep="prediction", progress=False)
    c(x, [it.label for it in its])
    got = cam.drop_duplicates("image").set_index("image")["sizes_kept"]
    assert [int(got[it.name]) for it in its] == c.kept.sum(0).tolist()


def test_committed_results_match_the_offline_profile_and_feed_the_verdict():
    """The stored offline rows carry the offline identity (every method's settings) and cover
    every key the profile asks for: the chapter reads them back instead of recomputing."""
    import json

    from cameras.data import REPO_ROOT
    from cameras.runs import meta_path

    s = D.settings("offline")
    folder = D.EXPERIMENT.folder(s, REPO_ROOT / "results")
    for model in s["models"]:
        file = f"{s['data']}_{model}.csv"
        stored = json.loads(meta_path(folder / file).read_text())["identity"]
        want = json.loads(json.dumps(D.EXPERIMENT.identity_of(s, file)))
        assert {k: v for k, v in stored["methods"].items() if k in want["methods"]} == want["methods"]
    assert D.EXPERIMENT.pending(s, folder, D.EXPERIMENT.units(s)) == []
    v = D.verdict_numbers(REPO_ROOT / "results")
    assert v["models"] == s["models"] and v["n_images"] == s["method_images"]["cameras"]
    for model in s["models"]:
        r = v["black"][model]
        assert set(r) == set(D.PAPER_METHODS)
        assert all(x["rho_plus_lo"] <= x["rho_plus"] <= x["rho_plus_hi"] for x in r.values())
        assert 1 <= v["sizes_kept"][model] <= 8

"""The analysis experiment (chapter 5): settings, maps of several classes from one capture
(Algorithm 1's keep rule), the paper's three cases (rows, stored maps, curves, summaries), the
stored results' identity, the run (rows, resume, changed settings) and the figures."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from cameras import Cameras
from cameras.data import REPO_ROOT, MissingDataError, find_class
from cameras.experiments import analysis as an
from cameras.runs import SettingsMismatch, meta_path

SMALL = dict(
    models=["efficientnet_lite0"],
    classes=["tabby"],
    cameras_sizes=[224, 256],
    cases={"fig3": {"images": ["chocolate sauce"], "classes": ["chocolate sauce", "spatula"]},
           "fig5": {"images": ["swing"], "classes": ["chainlink fence", "swing"]}},
    extremal={"areas": [0.08], "max_iter": 2},
    area_steps=5,
    batch_size=2,
)


def _sample_available() -> bool:
    try:
        from cameras.data import imagenet_sample_dir

        imagenet_sample_dir()
        return True
    except FileNotFoundError:
        return False


needs_sample = pytest.mark.skipif(not _sample_available(), reason="ImageNet sample not found")


class TinyNet(nn.Module):
    """conv -> ReLU -> conv (the explained layer; spatially varying gradients) -> pool -> fc."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.Conv2d(8, 16, 3, stride=2, padding=1))
        self.act = nn.ReLU()
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        return self.fc(self.act(self.features(x)).mean((2, 3)))


def _tiny_lm(layer: str):
    torch.manual_seed(0)
    return SimpleNamespace(model=TinyNet().eval(), layer=layer, classes=None, device=torch.device("cpu"))


# ---------------------------------------------------------------------------- settings
def test_profiles_are_valid_and_complete() -> None:
    assert set(an.PROFILES) == {"ci", "offline", "paper"}
    keys = set(an.PROFILES["offline"])
    for name, prof in an.PROFILES.items():
        assert set(prof) == keys, name
        an.settings(name)
        json.dumps(prof)
    s = an.settings("offline")
    assert s["cameras_sizes"] == [224, 324, 424, 524, 624, 724, 824, 924] and s["keep"] == "prediction"
    assert s["extremal"]["areas"] == [0.08, 0.09]  # the paper's Fig. 3 areas
    assert an.EXPERIMENT.folder(an.settings("ci")).parts[-2:] == ("_ci", "analysis")
    assert an.settings("ci", models=["efficientnet_lite0"] * 2)["models"] == ["efficientnet_lite0"]


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"n_imgs": 3}, "unknown setting"),
        ({"methods": ["rise"]}, "methods"),
        ({"keep": "sometimes"}, "keep"),
        ({"top_fraction": 0}, "top_fraction"),
        ({"mass_fraction": 1.5}, "mass_fraction"),
        ({"cases": {"fig3": {"images": ["tabby"], "classes": ["tabby"]}}}, "two classes"),
        ({"cases": {"fig3": {"images": ["tabby"]}}}, "two classes"),
        ({"cases": {"fig3": {"images": ["no such class xyz"], "classes": ["tabby", "boxer"]}}}, "cases"),
        ({"extremal": {"areas": [2.0]}}, "areas"),
        ({"extremal": {"iterations": 3}}, "does not take"),
        ({"classes": ["no such class xyz"]}, "classes"),
        ({"cameras_sizes": [4]}, "cameras_sizes"),
        ({"models": ["resnet5"]}, "unknown model"),
    ],
)
def test_bad_settings_raise(overrides, match) -> None:
    with pytest.raises(ValueError, match=match):
        an.settings("ci", **overrides)
    with pytest.raises(ValueError, match="unknown profile"):
        an.settings("nope")


def test_identity_holds_the_keep_rule_and_extremal_settings() -> None:
    s = an.settings("offline")
    ident = an.EXPERIMENT.identity_of(s, "analysis.csv")
    assert ident["methods"]["cameras"]["keep"] == "prediction"
    assert ident["methods"]["extremal_perturbation"]["max_iter"] == s["extremal"]["max_iter"]
    assert ident["area_steps"] == 100 and ident["cameras_sizes"] == s["cameras_sizes"]
    other = an.EXPERIMENT.identity_of(an.settings("offline", keep="all"), "analysis.csv")
    assert other["methods"]["cameras"]["keep"] == "all"


@needs_sample
def test_units_targets_and_keys_of_the_cases() -> None:
    s = an.settings("offline")
    units = an.EXPERIMENT.units(s)
    kinds = [u.data[0] for u in units]
    assert kinds[:3] == ["case"] * 3 and set(kinds[3:]) == {"image"}
    case = {u.data[1][0].name: u for u in units if u.data[0] == "case"}
    keys = case["n07836838_chocolate_sauce"].keys
    assert ("case", "efficientnet_lite0", "extremal_perturbation", "n07836838_chocolate_sauce",
            "class:spatula") in keys
    assert not any(k[1] == "efficientnet_lite1" and k[2] == "extremal_perturbation" for k in keys)
    assert {k[4] for k in case["n04371774_swing"].keys} == {"top1", "label", "class:chainlink fence"}
    img = [u for u in units if u.data[0] == "image"]
    assert sum(len(u.data[1]) for u in img) == s["n_images"]
    assert sum(k[0] == "model_pair" for u in img for k in u.keys) == s["n_images"] * 3 * 2


# ---------------------------------------------------------------------------- maps
@pytest.mark.parametrize("keep", ["all", "prediction"])
@pytest.mark.parametrize("layer", ["features", "act"])
def test_explain_equals_cameras_per_target(layer: str, keep: str) -> None:
    lm = _tiny_lm(layer)
    x = torch.randn(2, 3, 32, 40)
    targets = torch.tensor([[0, 3, 4], [2, 2, 1]])
    # sizes shifted to the shorter side: 224, 240, 256 -> 32, 48, 64
    mm = an.explain(lm, x, targets, {"cameras_sizes": [224, 240, 256], "keep": keep})
    assert mm.sizes == (32, 48, 64)
    assert mm.cameras.shape == (2, 3, 32, 40) and mm.gradcam.shape == (2, 3, 32, 40)
    for t in range(3):
        cam = Cameras(lm.model, layer=layer, sizes=[32, 48, 64], keep=keep)
        torch.testing.assert_close(mm.cameras[:, t], cam(x, targets[:, t]), atol=1e-5, rtol=1e-5)
        assert mm.kept.tolist() == cam.kept.sum(0).tolist()
    assert float(mm.cameras.min()) >= 0 and float(mm.cameras.max()) <= 1
    assert not torch.isnan(mm.gradcam).any()


def test_the_keep_rule_drops_sizes_whose_top1_changes() -> None:
    lm = _tiny_lm("act")
    torch.manual_seed(3)
    x = torch.randn(6, 3, 32, 32)
    sizes = {"cameras_sizes": [224, 448, 896]}
    kept = an.explain(lm, x, lambda lg: lg.argmax(1, keepdim=True), {**sizes, "keep": "prediction"}).kept
    allk = an.explain(lm, x, lambda lg: lg.argmax(1, keepdim=True), {**sizes, "keep": "all"}).kept
    with torch.no_grad():
        top = torch.stack([lm.model(nn.functional.interpolate(x, size=s, mode="bicubic", align_corners=False))
                           .argmax(1) for s in (32, 64, 128)])
    assert allk.tolist() == [3] * 6 and kept.tolist() == (top == top[0]).sum(0).tolist()


def test_explain_gradcam_by_hand() -> None:
    lm = _tiny_lm("act")
    model = lm.model
    x = torch.randn(1, 3, 32, 32)
    mm = an.explain(lm, x, lambda lg: lg.topk(2, dim=1).indices, {"cameras_sizes": [224]})
    assert mm.targets.tolist() == [model(x).topk(2, dim=1).indices[0].tolist()]
    torch.testing.assert_close(mm.logits, model(x).detach())
    with torch.no_grad():
        A = model.act(model.features(x))
    A.requires_grad_(True)
    for j in range(2):
        (G,) = torch.autograd.grad(model.fc(A.mean((2, 3)))[0, mm.targets[0, j]], A)
        cam = (G.mean((2, 3), keepdim=True) * A).sum(1).clamp_min(0)
        cam = nn.functional.interpolate(cam[:, None], size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
        cam = (cam - cam.min()) / (cam.max() - cam.min())
        torch.testing.assert_close(mm.gradcam[:, j], cam.detach(), atol=1e-5, rtol=1e-5)


def test_explain_rejects_bad_targets() -> None:
    lm = _tiny_lm("act")
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(ValueError, match="class indices"):
        an.explain(lm, x, torch.tensor([[7]]), {"cameras_sizes": [224]})
    with pytest.raises(ValueError, match=r"\(B=1, T\)"):
        an.explain(lm, x, lambda logits: torch.tensor([[1], [2]]), {"cameras_sizes": [224]})


# ---------------------------------------------------------------------------- summaries
def _pairs(gap_of_iou, n=12, seed=0):
    """Fake rows: label rows of three models and their model-pair rows (IoU given)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        p = {"a": rng.random(), "b": rng.random(), "c": rng.random()}
        for m, v in p.items():
            rows.append({"kind": "image", "model": m, "method": "cameras", "image": f"im{i}", "target": "label",
                         "prob": v})
        for x, y in (("a", "b"), ("a", "c"), ("b", "c")):
            rows.append({"kind": "model_pair", "model": f"{x}|{y}", "method": "cameras", "image": f"im{i}",
                         "target": "label", "iou_ref": gap_of_iou(abs(p[x] - p[y])), "spearman_ref": 0.5})
    return pd.DataFrame(rows)


def test_fig4_correlation_finds_the_sign_and_resamples_images() -> None:
    df = _pairs(lambda gap: 1 - gap)  # similar maps <-> similar confidence
    pts = an.fig4_points(df)
    assert len(pts) == 36 and set(pts["pair"]) == {"a|b", "a|c", "b|c"}
    r = an.fig4_correlation(df, "cameras", "iou")
    assert r["r"] == pytest.approx(-1.0) and r["n"] == 12 and r["pairs"] == 36
    assert r["lo"] <= r["r"] <= r["hi"] and r["hi"] < 0
    pos = an.fig4_correlation(_pairs(lambda gap: gap), "cameras", "iou")
    assert pos["r"] == pytest.approx(1.0)
    assert math.isnan(an.fig4_correlation(df, "cameras", "spearman")["r"])  # constant similarity
    empty = an.fig4_correlation(df[df["kind"] == "image"], "cameras", "iou")
    assert empty["n"] == 0 and math.isnan(empty["r"])


# ---------------------------------------------------------------------------- the run
def test_paper_profile_fails_early_without_data(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("CAMERAS_DATA_ROOT", raising=False)
    with pytest.raises(MissingDataError, match="CAMERAS_DATA_ROOT"):
        an.run("paper", results=tmp_path)
    monkeypatch.setenv("CAMERAS_DATA_ROOT", str(tmp_path))
    with pytest.raises(MissingDataError, match="ImageNet val not found"):
        an.run("paper", results=tmp_path)
    assert not list(tmp_path.rglob("*.csv"))


@needs_sample
def test_run_cases_rows_maps_resume_and_changed_settings(tmp_path, monkeypatch) -> None:
    df = an.run("ci", results=tmp_path, device="cpu", progress=False, **SMALL)
    path = tmp_path / "_ci" / "analysis" / "analysis.csv"
    assert path.is_file() and not df.duplicated(list(an.KEY)).any()
    img = df[df["kind"] == "image"]
    assert len(img) == 2 * 2 and not (df["kind"] == "model_pair").any()  # one model: no pairs
    case = df[df["kind"] == "case"]
    choc = case[case["image"] == "n07836838_chocolate_sauce"]
    # 2 methods x (top1, label, class:spatula) + extremal perturbation (Fig. 3 only)
    assert len(choc) == 3 * 3 and set(choc["method"]) == {"cameras", "gradcam", "extremal_perturbation"}
    sw = case[case["image"] == "n04371774_swing"]
    assert len(sw) == 2 * 3 and set(sw["class_name"]) >= {"chainlink fence", "swing"}
    other = case[case["target"].str.startswith("class:")]
    assert (other["ref"] == "label").all() and other["spearman_ref"].between(-1, 1).all()
    cam = df[df["method"] == "cameras"]
    assert cam["sizes_kept"].between(1, 2).all() and df[df["method"] != "cameras"]["sizes_kept"].isna().all()
    top1 = df[df["target"] == "top1"]
    assert (top1["rank"] == 1).all() and (top1["prob"] == top1["top1_prob"]).all()
    same = df[(df["target"] == "label") & (df["rank"] == 1)]  # the label is the top-1: the same map
    assert np.allclose(same["spearman_ref"], 1.0) and np.allclose(same["l1_ref"], 0.0)

    s = an.settings("ci", **SMALL)
    doc = an.case_maps(s, "fig3", tmp_path)["n07836838_chocolate_sauce"]
    c = find_class("chocolate sauce")
    assert doc["efficientnet_lite0|image"].shape == (224, 224, 3)
    assert doc[f"efficientnet_lite0|cameras|{c}"].dtype == np.uint8
    curve = doc[f"efficientnet_lite0|extremal_perturbation|{c}|curve"]
    assert len(curve) == 6 and np.isclose(curve[-1], choc[choc["target"] == "label"]["prob"].iloc[0], atol=1e-4)
    f3 = an.fig3_summary(df, s, tmp_path)
    assert len(f3) == 3 * 2 and f3["area_needed"].between(0, 100).all()
    assert set(an.area_curves(s, tmp_path)["share"]) == {0, 20, 40, 60, 80, 100}
    f5 = an.fig5_summary(df, s)
    assert len(f5) == 2 and set(f5["class_name"]) == {"chainlink fence"} and set(f5["label_name"]) == {"swing"}
    assert an.model_summary(df)["images"].tolist() == [1]

    # a second call resumes: nothing is loaded or computed, the files are untouched
    meta = path.with_name("analysis.meta.json")
    before = (path.read_bytes(), meta.read_bytes())

    def boom(*a, **k):
        raise AssertionError("recomputed")

    import cameras.models

    monkeypatch.setattr(cameras.models, "load_model", boom)
    monkeypatch.setattr(an.Analysis, "compute", boom)
    df2 = an.run("ci", results=tmp_path, device="cpu", progress=False, **SMALL)
    assert len(df2) == len(df) and before == (path.read_bytes(), meta.read_bytes())
    for bad in ({"compare_size": 112}, {"keep": "all"}, {"extremal": {"areas": [0.08], "max_iter": 3}}):
        with pytest.raises(SettingsMismatch):
            an.run("ci", results=tmp_path, device="cpu", progress=False, **{**SMALL, **bad})


@needs_sample
def test_committed_results_cover_the_offline_profile() -> None:
    """The stored offline rows and case maps are found (identity, every key): the chapter reads
    them back instead of recomputing, and the verdict page gets its numbers."""
    s = an.settings("offline")
    folder = an.EXPERIMENT.folder(s, REPO_ROOT / "results")
    stored = json.loads(meta_path(folder / "analysis.csv").read_text())["identity"]
    assert stored == json.loads(json.dumps(an.EXPERIMENT.identity_of(s, "analysis.csv")))
    assert an.EXPERIMENT.pending(s, folder, an.EXPERIMENT.units(s)) == []
    v = an.verdict_numbers(REPO_ROOT / "results")
    assert set(v["fig3"]["models"]) == set(s["models"]) and v["fig3"]["paper_extremal_area"] == [8, 9]
    assert "extremal_perturbation" in v["fig3"]["models"]["efficientnet_lite0"]
    assert v["fig4"]["n"] == s["n_images"] and -1 <= v["fig4"]["r"] <= 1
    assert set(v["fig5"]) == set(s["models"]) and all(d["n_images"] == 2 for d in v["fig5"].values())


def test_figures_are_page_figures() -> None:
    from matplotlib.figure import Figure

    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    doc = {"m|image": img, "m|cameras|1": (rng.random((32, 32)) * 255).astype(np.uint8)}
    fig = an.plot_case(doc, [[("m",), ("m", "cameras", 1), ("m", "gradcam", 1)]], ["m"], {("m", "cameras", 1): "x"})
    assert isinstance(fig, Figure) and "not run on this CPU" in [t.get_text() for ax in fig.axes for t in ax.texts]
    curves = pd.DataFrame({"model": "m", "method": ["cameras"] * 3, "class": "c", "share": [0, 50, 100],
                           "prob": [0.1, 0.5, 0.6], "ratio": [0.2, 0.8, 1.0]})
    assert isinstance(an.plot_area(curves, "c"), Figure)
    pts = pd.DataFrame({"pair": ["a|b"] * 3, "method": "cameras", "iou": [0.1, 0.2, 0.3], "gap": [0.3, 0.2, 0.1]})
    assert isinstance(an.plot_fig4(pts), Figure)

"""The analysis experiment (chapter 5): settings, maps of several classes from one capture,
composites, the stored results' identity, the run (rows, resume, changed settings) and the
summaries."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from cameras import Cameras
from cameras.data import REPO_ROOT, MissingDataError
from cameras.experiments import analysis as an
from cameras.runs import SettingsMismatch, meta_path

SMALL = dict(
    models=["efficientnet_lite0"],
    classes=["tabby", "bull mastiff"],
    cameras_sizes=[224, 256],
    top_k=2,
    lookalike_groups=[["tabby", "tiger cat"]],
    composites=[["tabby", "bull mastiff"]],
    n_random_composites=0,
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
    return SimpleNamespace(model=TinyNet().eval(), layer=layer, classes=None,
                           device=torch.device("cpu"))


# ---------------------------------------------------------------------------- settings
def test_profiles_are_valid_and_complete() -> None:
    assert set(an.PROFILES) == {"ci", "offline", "paper"}
    keys = set(an.PROFILES["offline"])
    for name, prof in an.PROFILES.items():
        assert set(prof) == keys, name
        an.settings(name)
        json.dumps(prof)
    s = an.settings("offline")
    assert s["cameras_sizes"] == [224, 324, 424, 524, 624, 724, 824, 924]
    assert an.EXPERIMENT.folder(an.settings("ci")).parts[-2:] == ("_ci", "analysis")
    assert an.settings("ci", models=["efficientnet_lite0"] * 2)["models"] == ["efficientnet_lite0"]


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"n_imgs": 3}, "unknown setting"),
        ({"methods": ["rise"]}, "methods"),
        ({"top_k": 1}, "top_k"),
        ({"top_fraction": 0}, "top_fraction"),
        ({"mass_fraction": 1.5}, "mass_fraction"),
        ({"composites": [["tabby", "tabby"]]}, "two different classes"),
        ({"composites": [["tabby"]]}, "two different classes"),
        ({"lookalike_groups": [["tabby", "no such class xyz"]]}, "lookalike_groups"),
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


def test_identity_of_files_written_before_cameras_sizes() -> None:
    old = {"sizes": None, "n_sizes": 8, "size_step": 100, "data": "imagenet_sample",
           "compare_size": 224, "top_fraction": 0.1, "mass_fraction": 0.05, "subdir": "analysis"}
    got = an.EXPERIMENT.identity_from_meta({"settings": old}, "analysis.csv")
    assert got == an.EXPERIMENT.identity_of(an.settings("offline"), "analysis.csv")
    got = an.EXPERIMENT.identity_from_meta({"settings": {**old, "n_sizes": 3}}, "analysis.csv")
    assert got["cameras_sizes"] == [224, 324, 424]
    assert an.EXPERIMENT.identity_from_meta({"settings": {**old, "sizes": [224, 256]}}, "x")[
        "cameras_sizes"] == [224, 256]


@needs_sample
def test_committed_results_cover_the_offline_profile() -> None:
    """The stored offline rows are found (identity migrated, every key present): the chapter
    reads them back instead of recomputing."""
    s = an.settings("offline")
    folder = an.EXPERIMENT.folder(s, REPO_ROOT / "results")
    stored = json.loads(meta_path(folder / "analysis.csv").read_text())["identity"]
    assert stored == an.EXPERIMENT.identity_of(s, "analysis.csv")
    assert an.EXPERIMENT.pending(s, folder, an.EXPERIMENT.units(s)) == []


# ---------------------------------------------------------------------------- maps
@pytest.mark.parametrize("layer", ["features", "act"])
def test_explain_equals_cameras_per_target(layer: str) -> None:
    lm = _tiny_lm(layer)
    x = torch.randn(2, 3, 32, 40)
    targets = torch.tensor([[0, 3, 4], [2, 2, 1]])
    # sizes shifted to the shorter side: 224, 240, 256 -> 32, 48, 64
    mm = an.explain(lm, x, targets, {"cameras_sizes": [224, 240, 256]})
    assert mm.sizes == (32, 48, 64)
    assert mm.cameras.shape == (2, 3, 32, 40) and mm.gradcam.shape == (2, 3, 32, 40)
    for t in range(3):
        ref = Cameras(lm.model, layer=layer, sizes=[32, 48, 64])(x, targets[:, t])
        torch.testing.assert_close(mm.cameras[:, t], ref, atol=1e-5, rtol=1e-5)
    assert float(mm.cameras.min()) >= 0 and float(mm.cameras.max()) <= 1
    assert not torch.isnan(mm.gradcam).any()


def test_explain_top_k_and_gradcam_by_hand() -> None:
    lm = _tiny_lm("act")
    model = lm.model
    x = torch.randn(1, 3, 32, 32)
    mm = an.explain(lm, x, 2, {"cameras_sizes": [224]})
    assert mm.targets.tolist() == [model(x).topk(2, dim=1).indices[0].tolist()]
    torch.testing.assert_close(mm.logits, model(x).detach())
    with torch.no_grad():
        A = model.act(model.features(x))
    A.requires_grad_(True)
    for j in range(2):
        (G,) = torch.autograd.grad(model.fc(A.mean((2, 3)))[0, mm.targets[0, j]], A)
        cam = (G.mean((2, 3), keepdim=True) * A).sum(1).clamp_min(0)
        cam = nn.functional.interpolate(cam[:, None], size=(32, 32), mode="bilinear",
                                        align_corners=False)[:, 0]
        cam = (cam - cam.min()) / (cam.max() - cam.min())
        torch.testing.assert_close(mm.gradcam[:, j], cam.detach(), atol=1e-5, rtol=1e-5)


def test_explain_rejects_bad_targets() -> None:
    lm = _tiny_lm("act")
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(ValueError, match="class indices"):
        an.explain(lm, x, torch.tensor([[7]]), {"cameras_sizes": [224]})
    with pytest.raises(ValueError, match=r"\(B=1, T\)"):
        an.explain(lm, x, lambda logits: torch.tensor([[1], [2]]), {"cameras_sizes": [224]})


@needs_sample
def test_composites_are_seeded_distinct_and_named_by_their_halves() -> None:
    s = an.settings("offline", n_images=40, n_random_composites=10)
    its = an.items(s)
    comps = an.composite_pairs(s, its)
    assert len(comps) == 12 and len({c.name for c in comps}) == 12
    assert comps[0].name == "n02123045_tabby+n02108422_bull_mastiff"
    assert all(c.left.label != c.right.label for c in comps)
    assert all(c.name == f"{c.left.name}+{c.right.name}" for c in comps)
    assert [c.name for c in an.composite_pairs(s, its)] == [c.name for c in comps]
    assert [c.name for c in an.composite_pairs({**s, "seed": 1}, its)] != [c.name for c in comps]
    x = an.composite_image(torch.zeros(3, 4, 4), torch.ones(3, 4, 4))
    assert x.shape == (3, 4, 8) and x[..., 4:].eq(1).all() and x[..., :4].eq(0).all()


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
def test_run_rows_resume_and_changed_settings(tmp_path, monkeypatch) -> None:
    df = an.run("ci", results=tmp_path, device="cpu", progress=False, **SMALL)
    path = tmp_path / "_ci" / "analysis" / "analysis.csv"
    assert path.is_file()
    img = df[df["kind"] == "image"]
    # 2 images x 2 methods x (top1, top2, label, one look-alike for tabby)
    assert len(img) == 2 * (4 + 3)
    assert set(img["method"]) == {"cameras", "gradcam"}
    comp = df[df["kind"] == "composite"]
    assert len(comp) == 2 * 2 and set(comp["target"]) == {"left", "right"}
    assert not (df["kind"] == "model_pair").any()  # one model
    top1 = img[img["target"] == "top1"]
    assert top1["prob"].between(0, 1).all() and (top1["rank"] == 1).all()
    assert (top1["prob"] == top1["top1_prob"]).all()
    assert img["mass_top"].between(0.05, 1).all() and img["entropy"].between(0, 1).all()
    pairs = img[img["target"] != "top1"]
    assert pairs["spearman_ref"].between(-1, 1).all() and pairs["ref"].notna().all()
    alike = img[img["target"].str.startswith("alike:")]
    assert set(alike["class_name"]) == {"tiger cat"} and set(alike["ref"]) == {"label"}
    assert comp["own_half_mass"].between(0, 1).all()
    assert (comp["class"] == comp["label"]).all() and comp["correct"].isna().all()
    # the label map of an image whose top-1 is its label is the top-1 map
    same = img[(img["target"] == "label") & (img["rank"] == 1)]
    assert np.allclose(same["spearman_ref"], 1.0) and np.allclose(same["l1_ref"], 0.0)
    # the class explained for top-2 is the second most probable class
    t2 = img[img["target"] == "top2"]
    assert (t2["rank"] == 2).all() and (t2["prob"] == t2["top2_prob"]).all()

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
    # a setting that changes the values of the rows is refused, naming it
    with pytest.raises(SettingsMismatch, match="compare_size"):
        an.run("ci", results=tmp_path, device="cpu", progress=False, **{**SMALL, "compare_size": 112})

    # summaries work on these rows
    la = an.label_attribution_summary(df)
    assert set(la["method"]) == {"cameras", "gradcam"} and (la["composites"] == 1).all()
    assert la["spearman top1-top3"].isna().all()  # top_k = 2
    ms = an.model_summary(df)
    assert ms["images"].tolist() == [2]
    ls = an.lookalike_summary(df)
    assert len(ls) == 2 and (ls["pairs"] == 1).all()
    cc = an.confidence_correlation(df)
    assert len(cc) == 2 and cc["rho(confidence, mass_top)"].isna().all()  # too few images


@needs_sample
@pytest.mark.filterwarnings("ignore:.*resuming with different meta")
def test_run_resumes_after_a_partial_run(tmp_path) -> None:
    small = {**SMALL, "methods": ["gradcam"], "cameras_sizes": [224], "composites": []}
    an.run("ci", results=tmp_path, device="cpu", progress=False, **{**small, "classes": ["tabby"]})
    df = an.run("ci", results=tmp_path, device="cpu", progress=False, **small)
    assert set(df["image"]) == {"n02123045_tabby", "n02108422_bull_mastiff"}
    assert not df.duplicated(list(an.KEY)).any()


def test_model_pair_matrix_is_symmetric() -> None:
    import pandas as pd

    df = pd.DataFrame({"kind": "model_pair", "method": "cameras",
                       "model": ["a|b", "a|b", "a|c", "b|c"], "spearman_ref": [0.2, 0.4, 0.5, 0.9]})
    m = an.model_pair_matrix(df)
    assert list(m.index) == ["a", "b", "c"]
    assert m.loc["a", "b"] == m.loc["b", "a"] == pytest.approx(0.3)
    assert m.loc["b", "c"] == pytest.approx(0.9) and (np.diag(m) == 1).all()


def test_figures_are_page_figures() -> None:
    import pandas as pd
    from matplotlib.figure import Figure

    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (32, 64, 3), dtype=np.uint8)
    maps = [rng.random((32, 64)) for _ in range(3)]
    fig = an.plot_grid([img, img], [maps[:2], maps[1:]], [["a", "b"], ["c", "d"]], row_titles=["x", "y"])
    assert isinstance(fig, Figure)
    fig = an.plot_difference(img, maps, ["p", "q", "r"])
    assert isinstance(fig, Figure) and any(im.get_cmap().name == "RdBu_r" for ax in fig.axes
                                           for im in ax.images)
    df = pd.DataFrame({"kind": "image", "target": "top1", "method": "cameras", "model": ["m1", "m2"],
                       "prob": [0.5, 0.6], "mass_top": [0.1, 0.2], "correct": [True, False]})
    assert isinstance(an.plot_confidence(df), Figure)
    with pytest.raises(ValueError, match="no top-1 rows"):
        an.plot_confidence(df, method="gradcam")

"""Tests of cameras.experiments.analysis: metrics, multi-target maps, the resumable run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cameras import Cameras
from cameras.experiments import analysis as an
from cameras.sanity import spearman

SMALL = dict(
    models=["efficientnet_lite0"],
    classes=["tabby", "bull mastiff"],
    sizes=[224, 256],
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


# ---------------------------------------------------------------------------- metrics
def test_spearman_maps_matches_sanity_spearman_with_ties() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.rand(4, 12, 12, generator=g)
    b = torch.rand(4, 12, 12, generator=g)
    a[a < 0.5] = 0  # many ties at zero, as after a ReLU
    b[:, :3] = 0.25
    a[3] = 0.0  # constant map
    got = an.spearman_maps(a, b)
    want = [spearman(a[i].numpy(), b[i].numpy()) for i in range(4)]
    np.testing.assert_allclose(got.numpy(), want, atol=1e-10)
    assert an.spearman_maps(b, b).tolist() == pytest.approx([1.0] * 4)


def test_average_ranks_ties() -> None:
    r = an.average_ranks(torch.tensor([[3.0, 1.0, 1.0, 2.0]]))
    assert r.tolist() == [[4.0, 1.5, 1.5, 3.0]]


def test_concentration_metrics() -> None:
    m = torch.zeros(3, 10, 10)
    m[0, 0, 0] = 1.0  # one pixel
    m[1] = 1.0  # uniform
    # m[2] all zero
    mt = an.mass_top(m, 0.05)
    assert mt[0] == pytest.approx(1.0) and mt[1] == pytest.approx(0.05) and torch.isnan(mt[2])
    h = an.map_entropy(m)
    assert h[0] == pytest.approx(0.0) and h[1] == pytest.approx(1.0) and torch.isnan(h[2])


def test_iou_top() -> None:
    a = torch.zeros(2, 10, 10)
    b = torch.zeros(2, 10, 10)
    a[0, :1] = 1.0  # top-10 % = first row
    b[0, :1, :5] = 1.0
    b[0, 1, :5] = 0.5  # top-10 % = half of the first row and half of the second
    iou = an.iou_top(a, b, 0.10)
    assert iou[0] == pytest.approx(5 / 15)
    assert torch.isnan(iou[1])  # two all-zero maps


def test_difference_map_sign_and_shape_check() -> None:
    d = an.difference_map(np.ones((2, 2)), np.zeros((2, 2)))
    assert (d == 1).all()
    with pytest.raises(ValueError, match="two 2-d maps"):
        an.difference_map(np.ones((2, 2)), np.ones((3, 2)))


# ---------------------------------------------------------------------------- maps
@pytest.mark.parametrize("layer", ["features", "act"])
def test_multi_target_maps_equal_cameras_per_target(layer: str) -> None:
    torch.manual_seed(0)
    model = TinyNet().eval()
    x = torch.randn(2, 3, 32, 40)
    targets = torch.tensor([[0, 3, 4], [2, 2, 1]])
    mm = an.multi_target_maps(model, layer, x, targets, sizes=[32, 48, 64])
    assert mm.cameras.shape == (2, 3, 32, 40) and mm.gradcam.shape == (2, 3, 32, 40)
    for t in range(3):
        ref = Cameras(model, layer=layer, sizes=[32, 48, 64])(x, targets[:, t])
        torch.testing.assert_close(mm.cameras[:, t], ref, atol=1e-5, rtol=1e-5)
    assert float(mm.cameras.min()) >= 0 and float(mm.cameras.max()) <= 1
    assert not torch.isnan(mm.gradcam).any()


def test_multi_target_maps_callable_targets_and_gradcam() -> None:
    torch.manual_seed(1)
    model = TinyNet().eval()
    x = torch.randn(1, 3, 32, 32)
    mm = an.multi_target_maps(model, "act", x, lambda logits: logits.topk(2, dim=1).indices, sizes=[32])
    assert mm.targets.tolist() == [model(x).topk(2, dim=1).indices[0].tolist()]
    # Grad-CAM by hand
    with torch.no_grad():
        A = model.act(model.features(x))
    A.requires_grad_(True)
    score = model.fc(A.mean((2, 3)))[0, mm.targets[0, 0]]
    (G,) = torch.autograd.grad(score, A)
    cam = (G.mean((2, 3), keepdim=True) * A).sum(1).clamp_min(0)
    cam = torch.nn.functional.interpolate(cam[:, None], size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
    cam = (cam - cam.min()) / (cam.max() - cam.min())
    torch.testing.assert_close(mm.gradcam[:, 0], cam.detach(), atol=1e-5, rtol=1e-5)


def test_multi_target_maps_rejects_bad_targets() -> None:
    model = TinyNet().eval()
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(ValueError, match="class indices"):
        an.multi_target_maps(model, "act", x, torch.tensor([[7]]), sizes=[32])
    with pytest.raises(ValueError, match=r"\(B=1, T\)"):
        an.multi_target_maps(model, "act", x, torch.tensor([1]), sizes=[32])


# ---------------------------------------------------------------------------- settings
def test_settings_validation() -> None:
    with pytest.raises(ValueError, match="unknown profile"):
        an.resolve_settings("nope")
    with pytest.raises(ValueError, match="unknown setting"):
        an.resolve_settings("ci", n_imgs=3)
    with pytest.raises(ValueError, match="methods"):
        an.resolve_settings("ci", methods=["rise"])
    with pytest.raises(ValueError, match="top_k"):
        an.resolve_settings("ci", top_k=1)
    s = an.resolve_settings("offline")
    assert an.model_sizes(224, s) == [224, 324, 424, 524, 624, 724, 824, 924]
    assert an.model_sizes(260, s)[0] == 260
    assert an.resolve_settings("ci")["subdir"].startswith("_ci")
    import json

    for p in an.PROFILES.values():
        json.dumps(p)


def test_paper_profile_fails_early_without_data(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("CAMERAS_DATA_ROOT", raising=False)
    with pytest.raises(FileNotFoundError, match="CAMERAS_DATA_ROOT"):
        an.run("paper", results=tmp_path)
    monkeypatch.setenv("CAMERAS_DATA_ROOT", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="imagenet"):
        an.run("paper", results=tmp_path)
    assert not list(tmp_path.rglob("*.csv"))


# ---------------------------------------------------------------------------- the run
@needs_sample
def test_run_rows_and_resume(tmp_path, monkeypatch) -> None:
    df = an.run("ci", results=tmp_path, device="cpu", progress=False, **SMALL)
    path = an.results_file(an.resolve_settings("ci", **SMALL), tmp_path)
    assert path.is_file() and path.parent.name == "analysis" and path.parent.parent.name == "_ci"
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
    # the label map of an image whose top-1 is its label is the top-1 map
    same = img[(img["target"] == "label") & (img["rank"] == 1)]
    assert np.allclose(same["spearman_ref"], 1.0)

    # a second call resumes: nothing is computed, the files are untouched
    before = (path.read_bytes(), an.results_file(an.resolve_settings("ci", **SMALL), tmp_path)
              .with_name("analysis.meta.json").read_bytes())

    def boom(*a, **k):
        raise AssertionError("recomputed")

    import cameras.models

    monkeypatch.setattr(cameras.models, "load_model", boom)
    monkeypatch.setattr(an._Computer, "__call__", boom)
    df2 = an.run("ci", results=tmp_path, device="cpu", progress=False, **SMALL)
    assert len(df2) == len(df)
    after = (path.read_bytes(), path.with_name("analysis.meta.json").read_bytes())
    assert before == after

    # summaries work on these rows
    la = an.label_attribution_summary(df)
    assert set(la["method"]) == {"cameras", "gradcam"} and (la["composites"] == 1).all()
    ms = an.model_summary(df)
    assert ms["images"].tolist() == [2]
    assert len(an.lookalike_summary(df)) == 2
    cc = an.confidence_correlation(df)
    assert len(cc) == 2  # too few images: NaN, never an error


@needs_sample
@pytest.mark.filterwarnings("ignore:.*resuming with different meta")
def test_run_resumes_after_a_partial_run(tmp_path) -> None:
    small = {**SMALL, "methods": ["gradcam"], "sizes": [224], "composites": []}
    an.run("ci", results=tmp_path, device="cpu", progress=False, **{**small, "classes": ["tabby"]})
    df = an.run("ci", results=tmp_path, device="cpu", progress=False, **small)
    assert set(df["image"]) == {"n02123045_tabby", "n02108422_bull_mastiff"}
    # the first run's rows are not written twice
    assert not df.duplicated(list(an.KEY)).any()

"""Chapter 1 (method): the step-by-step helpers, the study's metrics, run() and its resumption."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from cameras import Cameras
from cameras.datasets import MissingDataError
from cameras.experiments import method


# ----------------------------------------------------------------------------------------
# settings and configurations
# ----------------------------------------------------------------------------------------
def test_profiles_and_overrides():
    for name in ("ci", "offline", "paper"):
        s = method.settings_for(name)
        assert s["profile"] == name
        assert method.study_sizes(s, 224)[0] == 224
    assert method.settings_for("paper")["model"] == "resnet50"
    assert method.settings_for("ci", n_images=None)["n_images"] == method.PROFILES["ci"]["n_images"]
    assert method.settings_for("ci", n_images=7)["n_images"] == 7
    with pytest.raises(ValueError, match="unknown profile"):
        method.settings_for("gpu")
    with pytest.raises(ValueError, match="unknown setting"):
        method.settings_for("ci", n_imgs=3)
    with pytest.raises(ValueError, match="positive int"):
        method.settings_for("ci", n_images=0)
    with pytest.raises(ValueError, match="at least 2"):
        method.settings_for("ci", steps=[1, 2])


def test_linspace_sizes_and_configs():
    assert method.linspace_sizes(2, 224, 924) == [224, 924]
    assert method.linspace_sizes(5, 224, 924) == [224, 399, 574, 749, 924]
    assert method.linspace_sizes(8, 224, 924) == list(range(224, 925, 100))
    assert method.linspace_sizes(15, 224, 924) == list(range(224, 925, 50))
    with pytest.raises(ValueError):
        method.linspace_sizes(1, 224, 924)
    s = method.settings_for("offline")
    configs = method.study_configs(s, 224)
    by = {(st, p): sizes for st, p, sizes in configs}
    assert len(by) == len(configs)
    assert by[("max_size", 224)] == [224] and by[("max_size_all", 524)] == [224, 324, 424, 524]
    assert by[("steps_all", 5)] == by[("steps", 5)] == [224, 399, 574, 749, 924]
    assert by[("max_size", 1124)] == list(range(224, 1125, 100))
    assert by[("method", "cameras")] == list(range(224, 925, 100))
    assert by[("method", "gradcam")] == [224]
    sizes = method.study_sizes(s, 224)
    assert sizes == sorted(set(sizes)) and 399 in sizes and 1124 in sizes and len(sizes) == 19


# ----------------------------------------------------------------------------------------
# metrics
# ----------------------------------------------------------------------------------------
def test_top_mass_and_entropy():
    flat = np.ones((20, 20))
    delta = np.zeros((20, 20))
    delta[3, 4] = 1.0
    assert method.top_mass(flat) == pytest.approx(20 / 400)  # ceil(0.05 * 400) = 20 pixels
    assert method.top_mass(delta) == pytest.approx(1.0)
    assert method.top_mass(np.zeros((20, 20))) == pytest.approx(0.05)
    assert method.map_entropy(flat) == pytest.approx(1.0)
    assert method.map_entropy(delta) == pytest.approx(0.0)
    assert method.map_entropy(np.zeros((5, 5))) == 1.0
    half = np.zeros((20, 20))
    half[:10] = 1
    assert method.map_entropy(half) == pytest.approx(np.log(200) / np.log(400))
    with pytest.raises(ValueError, match="non-negative"):
        method.top_mass(-flat)
    with pytest.raises(ValueError, match="NaN"):
        method.map_entropy(np.full((3, 3), np.nan))
    with pytest.raises(ValueError, match="2-d"):
        method.top_mass(np.ones(5))


def test_high_frequency_share_separates_coarse_from_fine_maps():
    g = torch.Generator().manual_seed(0)
    coarse = torch.rand(1, 1, 7, 7, generator=g)
    fine = torch.rand(1, 1, 29, 29, generator=g)
    up = lambda t: F.interpolate(t, (224, 224), mode="bilinear", align_corners=False)[0, 0]  # noqa: E731
    hf_coarse = method.high_frequency_share(up(coarse), (7, 7))
    hf_fine = method.high_frequency_share(up(fine), (7, 7))
    assert 0.0 <= hf_coarse < hf_fine <= 1.0
    assert method.high_frequency_share(np.ones((16, 16))) == 0.0
    # a pure low frequency (1 cycle per image) has no power above the 7x7 Nyquist
    y = np.cos(2 * np.pi * np.arange(64) / 64)[:, None] * np.ones((1, 64)) + 1
    assert method.high_frequency_share(y) == pytest.approx(0.0, abs=1e-12)


# ----------------------------------------------------------------------------------------
# Algorithm 1 by hand == Cameras
# ----------------------------------------------------------------------------------------
class _TinyNet(nn.Module):
    """Conv net whose explained layer ("c2") is *not* followed directly by the pooling."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 6, 3, stride=2, padding=1)
        self.c2 = nn.Conv2d(6, 8, 3, stride=2, padding=1)
        self.c3 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = F.relu(self.c1(x))
        x = F.relu(self.c3(F.relu(self.c2(x))))
        return self.fc(x.mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return _TinyNet().eval()


def test_manual_fusion_and_fused_map_equal_cameras(tiny):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 24, 24)
    sizes = [24, 32, 40, 48]
    cap = method.capture_sizes(tiny, "c2", x, sizes, keep_inputs=True)
    assert [tuple(i.shape[-2:]) for i in cap.inputs] == [(s, s) for s in sizes]
    assert cap.grid(24) == (6, 6) and cap.grid(48) == (12, 12)
    cam = Cameras(tiny, "c2", sizes=sizes, progress=False)
    ref = cam(x)
    assert torch.equal(cam.kept, cap.kept)
    assert torch.allclose(method.fused_map(cap), ref, atol=1e-5)
    for b in range(2):
        manual = method.manual_fusion(cap, b, channels=[0, 3], chunk=3)
        assert torch.allclose(manual["map"], ref[b], atol=1e-5)
        assert set(manual["abar"]) == {0, 3} and manual["abar"][0].shape == (24, 24)
        assert manual["gbar_rel_std"] > 1e-3  # gradients vary in space at this layer
    sub = [24, 40]
    assert torch.allclose(method.fused_map(cap, sub), Cameras(tiny, "c2", sizes=sub)(x), atol=1e-5)
    with pytest.raises(ValueError, match="start with the reference size"):
        method.fused_map(cap, [32, 40])
    with pytest.raises(ValueError, match="was not captured"):
        method.fused_map(cap, [24, 56])
    # single size: CAMERAS = ReLU(sum up(A) up(G)) = size_map at the reference size
    assert torch.allclose(method.size_map(cap, 24), Cameras(tiny, "c2", sizes=[24])(x), atol=1e-5)
    gc, hr = method.gradcam_map(cap), method.hirescam_map(cap)
    for m in (gc, hr):
        assert m.shape == (2, 24, 24) and float(m.min()) >= 0 and float(m.max()) <= 1
    assert not torch.allclose(gc, hr)  # different when gradients vary in space
    assert len(method.top_channels(cap, 0, 3)) == 3


def test_explicit_targets_keep_every_size(tiny):
    x = torch.randn(1, 3, 24, 24)
    cap = method.capture_sizes(tiny, "c2", x, [24, 40, 56], targets=[4])
    assert bool(cap.kept.all()) and int(cap.targets[0]) == 4
    ref = Cameras(tiny, "c2", sizes=[24, 40, 56])(x, [4])
    assert torch.allclose(method.fused_map(cap), ref, atol=1e-5)


def test_keep_all_equals_cameras_with_explicit_targets(tiny):
    torch.manual_seed(3)
    x = torch.randn(3, 3, 24, 24)
    sizes = [24, 40, 56, 72]
    cap = method.capture_sizes(tiny, "c2", x, sizes)
    ref = Cameras(tiny, "c2", sizes=sizes)(x, cap.targets)
    assert torch.allclose(method.fused_map(cap, keep_all=True), ref, atol=1e-5)
    if not bool(cap.kept.all()):  # the keep rule dropped a size somewhere: the maps differ
        assert not torch.allclose(method.fused_map(cap), ref, atol=1e-5)


def test_constant_gradients_make_gradcam_equal_hirescam():
    """A layer followed directly by global average pooling: G = W_c / (h w) everywhere."""
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(4, 3)).eval()
    x = torch.randn(1, 3, 16, 16)
    cap = method.capture_sizes(net, "1", x, [16, 24, 32])
    for i, s in enumerate(cap.sizes):
        G = cap.gradients[i][0]
        assert torch.allclose(G, G[:, :1, :1].expand_as(G))
        assert torch.allclose(G[:, 0, 0] * s * s, net[4].weight[int(cap.targets[0])], atol=1e-6)
    assert torch.allclose(method.gradcam_map(cap), method.hirescam_map(cap), atol=1e-6)
    assert method.manual_fusion(cap, 0)["gbar_rel_std"] < 1e-5


def test_study_rows_columns(tiny):
    s = method.settings_for("ci", max_sizes=[24, 32], size_step=8, steps=[2, 3], steps_max=40,
                            cameras_max=32)
    sizes = method.study_sizes(s, 24)
    assert sizes == [24, 32, 40]
    cap = method.capture_sizes(tiny, "c2", torch.randn(2, 3, 24, 24), sizes)
    rows = method.study_rows(cap, ["a", "b"], [1, None], s, "tiny")
    n_cfg = len(method.study_configs(s, 24))
    assert len(rows) == 2 * (n_cfg + len(sizes))
    for r in rows:
        if r["study"] == "size_top1":
            assert r["agree"] in (0, 1) and 0 <= r["prob"] <= 1
            continue
        for c in ("spearman_ref", "ssim_ref", "top5_mass", "entropy", "hf_share"):
            assert np.isfinite(r[c]), (r, c)
        assert 0 <= r["top5_mass"] <= 1 and 0 <= r["entropy"] <= 1 and 0 <= r["hf_share"] <= 1
    ref_rows = [r for r in rows if r["study"] == "max_size" and r["param"] == 32]
    assert all(r["spearman_ref"] == pytest.approx(1.0) for r in ref_rows)
    first = [r for r in rows if r["study"] == "steps" and r["param"] == 2]
    assert all(r["spearman_prev"] is None for r in first)


# ----------------------------------------------------------------------------------------
# run(): rows, resumption, the paper profile's clear failure
# ----------------------------------------------------------------------------------------
@pytest.fixture()
def tiny_sample(tmp_path, monkeypatch):
    folder = tmp_path / "sample"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("n01440764_tench", "n01443537_goldfish"):
        Image.fromarray(rng.integers(0, 256, (180, 240, 3), dtype=np.uint8)).save(folder / f"{name}.JPEG")
    monkeypatch.setenv("CAMERAS_IMAGENET_SAMPLE", str(folder))
    return folder


_SMALL = dict(n_images=2, image_stride=1, max_sizes=[224, 274], size_step=50, steps=[2, 3],
              steps_max=274, cameras_max=274)


def test_run_ci_writes_rows_and_resumes(tiny_sample, tmp_path, monkeypatch):
    out = tmp_path / "results"
    df = method.run("ci", results=out, device="cpu", progress=False, **_SMALL)
    path = out / "method" / "study_efficientnet_lite0.csv"
    assert path.is_file() and (out / "method" / "study_efficientnet_lite0.meta.json").is_file()
    s = method.settings_for("ci", **_SMALL)
    per_image = len(method.study_configs(s, 224)) + len(method.study_sizes(s, 224))
    assert df["image"].nunique() == 2 and len(df) == 2 * per_image
    assert set(df["study"]) == {"max_size", "max_size_all", "steps", "steps_all", "method",
                                "size_top1"}
    assert (df[df["study"] == "max_size_all"]["n_kept"] == df[df["study"] == "max_size_all"]["n_sizes"]).all()
    maps = df[df["study"] != "size_top1"]
    for c in ("spearman_ref", "ssim_ref", "top5_mass", "entropy", "hf_share"):
        assert maps[c].notna().all() and maps[c].astype(float).between(-1, 1).all()
    top1 = df[df["study"] == "size_top1"]
    assert (top1[top1["param"].astype(int) == 224]["agree"].astype(int) == 1).all()

    summ = method.summarize(df, "max_size")
    assert list(summ.index) == [224, 274] and summ.loc[274, "spearman_ref"] == pytest.approx(1.0)
    assert list(method.summarize(df, "method").index) == ["gradcam", "hirescam", "single", "cameras"]
    agree = method.top1_agreement(df)
    assert list(agree.index) == [224, 249, 274] and agree.loc[224, "top1_agrees"] == 1.0
    fig = method.study_figure(df)
    assert len(fig.axes) == 8
    assert len(method.top1_figure(df).axes) == 1

    # a second call resumes: nothing is recomputed, the same rows come back
    size_before = path.stat().st_size

    def boom(*a, **k):
        raise AssertionError("recomputed a finished image")

    monkeypatch.setattr(method, "capture_sizes", boom)
    again = method.run("ci", results=out, device="cpu", progress=False, **_SMALL)
    assert path.stat().st_size == size_before
    assert len(again) == len(df)


def test_ci_profile_default_folder_is_underscore_ci(tmp_path, monkeypatch):
    monkeypatch.setenv("CAMERAS_RESULTS", str(tmp_path))
    assert method.results_file(method.settings_for("ci")) == tmp_path / "_ci" / "method" / "study_efficientnet_lite0.csv"
    assert method.results_file(method.settings_for("offline")) == tmp_path / "method" / "study_efficientnet_lite0.csv"
    assert method.results_file(method.settings_for("ci"), tmp_path / "x").parent == tmp_path / "x" / "method"


def test_paper_profile_fails_clearly_without_data(tmp_path, monkeypatch):
    monkeypatch.delenv("CAMERAS_DATA_ROOT", raising=False)
    with pytest.raises(MissingDataError, match="CAMERAS_DATA_ROOT"):
        method.run("paper", results=tmp_path, device="cpu")
    monkeypatch.setenv("CAMERAS_DATA_ROOT", str(tmp_path))
    with pytest.raises(MissingDataError, match="imagenet/val"):
        method.run("paper", results=tmp_path, device="cpu")


def test_paper_profile_reads_imagenet_val_folders(tmp_path, monkeypatch):
    val = tmp_path / "imagenet" / "val"
    for wnid, n in (("n01440764", 3), ("n01443537", 2)):
        (val / wnid).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (8, 8)).save(val / wnid / f"ILSVRC2012_val_{wnid[-2:]}{i:06d}.JPEG")
    monkeypatch.setenv("CAMERAS_DATA_ROOT", str(tmp_path))
    items = method.study_items(method.settings_for("paper", n_images=3, image_stride=2))
    assert [it["label"] for it in items] == [1, 0, 0]  # sorted by file name
    assert all(it["path"].is_file() for it in items)


class _StubLM:
    """What the figures need of a LoadedModel: class names and to_image."""

    classes = [f"class {i}" for i in range(5)]

    def to_image(self, x):
        x = x.detach().float()
        x = (x - x.min()) / (x.max() - x.min() + 1e-12)
        return (x.permute(1, 2, 0) * 255).round().byte().numpy()


def test_walk_and_fusion_figures(tiny):
    x = torch.randn(1, 3, 24, 24)
    cap = method.capture_sizes(tiny, "c2", x, [24, 32, 40], keep_inputs=True)
    ch = method.top_channels(cap, 0, 2)
    fig = method.walk_figure(_StubLM(), cap, 0, [24, 40], ch, title="t")
    assert len(fig.axes) == 2 * 6
    assert "40x40" in fig.axes[6].get_title()
    manual = method.manual_fusion(cap, 0, channels=ch)
    fig = method.fusion_figure(_StubLM(), x[0], manual, method.fused_map(cap)[0], ch[0])
    assert len(fig.axes) == 7  # six panels and a colour bar


def test_maps_grid_wraps_rows():
    img = np.zeros((16, 16, 3), dtype=np.uint8)
    maps = {f"m{i}": np.random.default_rng(i).random((16, 16)) for i in range(7)}
    fig = method.maps_grid(img, maps, ncols=3, title="t")
    axes = fig.axes
    assert len(axes) == 9  # 3 x 3 grid: the image and 7 maps, one empty
    assert [a.get_title() for a in axes[:3]] == ["image", "m0", "m1"]

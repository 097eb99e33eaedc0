"""Chapter 1 (method): settings, Algorithm 1 by hand against Cameras, the study's rows and their
conventions, run() (rows, resume, identity), the committed results and the figures."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from cameras import Cameras
from cameras.data import MissingDataError
from cameras.experiments import available, method
from cameras.runs import SettingsMismatch, results_dir


# ========================================================================================
# settings and configurations
# ========================================================================================
def test_profiles_and_overrides():
    assert "method" in available()
    keys = set(method.PROFILES["offline"])
    for name in ("ci", "offline", "paper"):
        assert set(method.PROFILES[name]) == keys
        s = method.settings(name)
        assert s["profile"] == name and method.study_sizes(s, 224)[0] == 224
    assert method.settings("paper")["model"] == "resnet50"
    assert method.settings("ci", n_images=None)["n_images"] == method.PROFILES["ci"]["n_images"]
    assert method.settings("ci", n_images=7)["n_images"] == 7
    assert method.settings("ci", batch_size=3)["batch_size"] == 3


@pytest.mark.parametrize(("overrides", "match"), [
    ({"n_imgs": 3}, "unknown setting"), ({"n_images": 0}, "n_images"), ({"steps": [1, 2]}, "steps"),
    ({"data": "voc"}, "data"), ({"batch_size": 0}, "batch_size"), ({"max_sizes": []}, "max_sizes"),
])
def test_bad_settings_raise(overrides, match):
    with pytest.raises(ValueError, match=match):
        method.settings("ci", **overrides)
    with pytest.raises(ValueError, match="unknown profile"):
        method.settings("gpu")


def test_linspace_sizes_and_configs():
    assert method.linspace_sizes(2, 224, 924) == [224, 924]
    assert method.linspace_sizes(5, 224, 924) == [224, 399, 574, 749, 924]
    assert method.linspace_sizes(8, 224, 924) == list(range(224, 925, 100))
    assert method.linspace_sizes(15, 224, 924) == list(range(224, 925, 50))
    with pytest.raises(ValueError):
        method.linspace_sizes(1, 224, 924)
    s = method.settings("offline")
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
    with pytest.raises(ValueError, match="below the input size"):
        method.study_configs(s, 240)


# ========================================================================================
# Algorithm 1 by hand == Cameras
# ========================================================================================
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


def _gap_net(sign: float = 1.0) -> nn.Sequential:
    """A layer ("1", after a ReLU) followed directly by global average pooling."""
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(4, 3)).eval()
    with torch.no_grad():
        net[4].weight.copy_(sign * net[4].weight.abs())
    return net


def test_manual_fusion_and_fuse_equal_cameras(tiny):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 24, 24)
    sizes = [24, 32, 40, 48]
    cam = Cameras(tiny, "c2", sizes=sizes, progress=False)
    cap = cam.capture(x, keep_inputs=True)
    assert [tuple(i.shape[-2:]) for i in cap.inputs] == [(s, s) for s in sizes]
    ref = cam(x)
    assert torch.equal(cam.kept, cap.kept)
    for b in range(2):
        manual = method.manual_fusion(cap, b, channels=[0, 3], chunk=3)
        assert torch.allclose(manual["map"], ref[b], atol=1e-5)
        assert set(manual["abar"]) == {0, 3} and manual["abar"][0].shape == (24, 24)
        assert manual["gbar_rel_std"] > 1e-3  # gradients vary in space at this layer
        w = manual["weights"]
        assert math.isclose(sum(w.values()), 1.0, rel_tol=1e-6)
        assert all((v > 0) == bool(k) for v, k in zip(w.values(), cap.kept[:, b].tolist(), strict=True))
    sub = [24, 40]
    maps = method.study_maps(cam, cap, method.settings("ci", max_sizes=[24, 40], size_step=16,
                                                        steps=[2], steps_max=48, cameras_max=40))
    assert torch.allclose(maps[("max_size", 40)], Cameras(tiny, "c2", sizes=sub)(x), atol=1e-5)
    assert torch.allclose(maps[("max_size", 24)], Cameras(tiny, "c2", sizes=[24])(x), atol=1e-5)
    assert torch.allclose(maps[("steps_all", 2)], Cameras(tiny, "c2", sizes=[24, 48])(x, cap.targets[:, 0]),
                          atol=1e-5)
    gc, hr = method.layer_map(cap, "gradcam"), method.layer_map(cap, "hirescam")
    for m in (gc, hr):
        assert m.shape == (2, 24, 24) and float(m.min()) >= 0 and float(m.max()) <= 1
    assert not torch.allclose(gc, hr)  # different when gradients vary in space
    # Grad-CAM from the capture is the registry's Grad-CAM at the reference size (a plain loop)
    A, G = cap.activations[0], cap.gradients[0][:, 0]
    low = F.relu((A * G.mean(dim=(2, 3), keepdim=True)).sum(1, keepdim=True))
    plain = F.interpolate(low, (24, 24), mode="bilinear", align_corners=False)[:, 0]
    plain = (plain - plain.amin((1, 2), keepdim=True)) / (plain.amax((1, 2), keepdim=True)
                                                         - plain.amin((1, 2), keepdim=True))
    assert torch.allclose(gc, plain, atol=1e-6)
    assert len(method.top_channels(cap, 0, 3)) == 3
    with pytest.raises(ValueError, match="gradcam"):
        method.layer_map(cap, "layercam")


def test_constant_gradients_make_gradcam_equal_hirescam():
    """A layer followed directly by global average pooling: G = W_c / (h w) everywhere."""
    net = _gap_net()
    x = torch.randn(1, 3, 16, 16)
    cap = Cameras(net, "1", sizes=[16, 24, 32], progress=False).capture(x)
    for i, s in enumerate(cap.sizes):
        G = cap.gradients[i][0, 0]
        assert torch.allclose(G, G[:, :1, :1].expand_as(G))
        assert torch.allclose(G[:, 0, 0] * s * s, net[4].weight[int(cap.targets[0, 0])], atol=1e-6)
    assert torch.allclose(method.layer_map(cap, "gradcam"), method.layer_map(cap, "hirescam"), atol=1e-6)
    assert method.manual_fusion(cap, 0)["gbar_rel_std"] < 1e-5


# ========================================================================================
# the study's rows
# ========================================================================================
def _small(**kw):
    return method.settings("ci", **{**dict(max_sizes=[24, 32], size_step=8, steps=[2, 3],
                                           steps_max=40, cameras_max=32), **kw})


def test_study_rows_columns_and_values(tiny):
    s = _small()
    sizes = method.study_sizes(s, 24)
    assert sizes == [24, 32, 40]
    cam = Cameras(tiny, "c2", sizes=sizes, progress=False)
    cap = cam.capture(torch.randn(2, 3, 24, 24))
    rows = method.study_rows(cam, cap, ["a", "b"], [1, -1], s, "tiny")
    n_cfg = len(method.study_configs(s, 24))
    assert len(rows) == 2 * (n_cfg + len(sizes))
    for r in rows:
        if r["study"] == "size_top1":
            assert r["agree"] in (0, 1) and 0 <= r["prob"] <= 1
            continue
        for c in ("spearman_ref", "ssim_ref", "top5_mass", "entropy", "hf_share"):
            assert np.isfinite(r[c]), (r, c)
        assert 0 <= r["top5_mass"] <= 1 and 0 <= r["entropy"] <= 1 and 0 <= r["hf_share"] <= 1
    assert all(r["spearman_ref"] == pytest.approx(1.0) for r in rows
               if r["study"] == "max_size" and r["param"] == 32)
    assert all(r["spearman_prev"] is None for r in rows if r["study"] == "steps" and r["param"] == 2)
    # the metrics are those of the maps, per image (plain numpy references)
    maps = method.study_maps(cam, cap, s)
    r = next(r for r in rows if (r["study"], r["param"], r["image"]) == ("steps", 3, "b"))
    m = maps[("steps", 3)][1].double().numpy().ravel()
    k = math.ceil(0.05 * m.size)
    assert r["top5_mass"] == pytest.approx(np.sort(m)[-k:].sum() / m.sum(), rel=1e-9)
    p = m[m > 0] / m.sum()
    assert r["entropy"] == pytest.approx(-(p * np.log(p)).sum() / math.log(m.size), rel=1e-9)


def test_all_zero_maps_keep_the_chapters_conventions():
    """Every location negative before the ReLU: top-5 % mass = 0.05 (flat), entropy = 1."""
    net = _gap_net(sign=-1.0)  # A >= 0 after the ReLU, G = W_c / (h w) < 0
    s = method.settings("ci", max_sizes=[16, 24], size_step=8, steps=[2], steps_max=24,
                        cameras_max=24)
    cam = Cameras(net, "1", sizes=method.study_sizes(s, 16), progress=False)
    cap = cam.capture(torch.rand(1, 3, 16, 16))
    rows = [r for r in method.study_rows(cam, cap, ["z"], [0], s, "gap") if r["study"] != "size_top1"]
    assert rows and all(r["top5_mass"] == 0.05 and r["entropy"] == 1.0 and r["hf_share"] == 0.0
                        for r in rows)


# ========================================================================================
# run(): rows, resumption, identity, the paper profile's clear failure
# ========================================================================================
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


def test_chapter_images_by_name(tiny_sample):
    ims = method.chapter_images(method.settings("ci", photos=["coffee"], sample_classes=["goldfish"]))
    assert list(ims) == ["coffee", "goldfish"]
    assert ims["coffee"].label == -1 and ims["goldfish"].label == 1
    assert ims["goldfish"].name == "n01443537_goldfish"


def test_run_ci_writes_rows_resumes_and_checks_identity(tiny_sample, tmp_path, monkeypatch):
    out = tmp_path / "results"
    df = method.run("ci", results=out, device="cpu", progress=False, **_SMALL)
    path = out / "_ci" / "method" / "study_efficientnet_lite0.csv"
    assert path.is_file() and path.with_name(path.stem + ".meta.json").is_file()
    s = method.settings("ci", **_SMALL)
    per_image = len(method.study_configs(s, 224)) + len(method.study_sizes(s, 224))
    assert df["image"].nunique() == 2 and len(df) == 2 * per_image
    assert list(df.columns) == list(method.COLUMNS)
    assert set(df["study"]) == {"max_size", "max_size_all", "steps", "steps_all", "method", "size_top1"}
    assert sorted(set(df["label"])) == [0, 1]
    all_kept = df[df["study"] == "max_size_all"]
    assert (all_kept["n_kept"] == all_kept["n_sizes"]).all()
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
    with pytest.raises(ValueError, match="no rows"):
        method.summarize(df, "nothing")
    fig = method.plot_study(df, "steps")
    assert len([ax for ax in fig.axes if ax.lines]) == 6  # one panel per metric
    assert {t.get_text() for t in fig.legends[0].texts} == set(method.RULES.values())
    assert len(method.plot_top1(df).axes) == 1

    # a second call resumes: nothing is recomputed, the same rows come back
    before = path.read_bytes()

    def boom(*a, **k):
        raise AssertionError("recomputed a finished image")

    monkeypatch.setattr(method, "study_rows", boom)
    again = method.run("ci", results=out, device="cpu", progress=False, **_SMALL)
    assert path.read_bytes() == before and again.equals(df)
    # settings that define the rows' values cannot reuse the file
    with pytest.raises(SettingsMismatch, match="max_sizes"):
        method.run("ci", results=out, device="cpu", progress=False, **{**_SMALL, "max_sizes": [224]})


def test_paper_profile_fails_clearly_without_data(tmp_path, monkeypatch):
    monkeypatch.delenv("CAMERAS_DATA_ROOT", raising=False)
    with pytest.raises(MissingDataError, match="CAMERAS_DATA_ROOT"):
        method.run("paper", results=tmp_path, device="cpu")
    monkeypatch.setenv("CAMERAS_DATA_ROOT", str(tmp_path))
    with pytest.raises(MissingDataError, match="ImageNet val"):
        method.run("paper", results=tmp_path / "res", device="cpu")
    assert not (tmp_path / "res").exists()


def test_paper_profile_takes_every_stride_th_val_image(tmp_path, monkeypatch):
    val = tmp_path / "imagenet" / "val"
    for wnid, n in (("n01440764", 3), ("n01443537", 2)):
        (val / wnid).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (8, 8)).save(val / wnid / f"ILSVRC2012_val_{wnid[-2:]}{i:06d}.JPEG")
    monkeypatch.setenv("CAMERAS_DATA_ROOT", str(tmp_path))
    items = method.study_items(method.settings("paper", n_images=2, image_stride=2))
    assert [it.label for it in items] == [0, 0] and items[1].name == "ILSVRC2012_val_64000002"


def test_saturation_size():
    import pandas as pd

    summ = pd.DataFrame({"spearman_prev": [float("nan"), 0.95, 0.995, 0.98, 0.995, 0.999]},
                        index=[224, 324, 424, 524, 624, 724])
    assert method.saturation_size(summ) == 624  # from 624 on every added size keeps >= 0.99
    assert method.saturation_size(summ, level=0.9) == 324
    assert method.saturation_size(summ, level=0.9999) is None


def test_committed_offline_results_are_complete():
    """The chapter reads the stored rows: nothing left to compute, identity as stored."""
    s = method.settings("offline")
    folder = method.EXPERIMENT.folder(s, results_dir(None))
    if not (folder / "study_efficientnet_lite0.csv").exists():
        pytest.skip("no committed results here")
    assert method.EXPERIMENT.pending(s, folder, method.EXPERIMENT.units(s)) == []
    v = method.verdict_numbers()
    assert v["model"] == "efficientnet_lite0" and v["n_images"] == s["n_images"] and v["steps_max"] == 924
    assert v["max_size_spearman"][max(s["max_sizes"])] == pytest.approx(1.0)
    assert v["steps_spearman"][max(s["steps"])] == pytest.approx(1.0)
    assert v["saturation_size"] is None or v["saturation_size"] in s["max_sizes"]


# ========================================================================================
# figures
# ========================================================================================
class _StubLM:
    """What the figures need of a LoadedModel: class names and to_image."""

    classes = [f"class {i}" for i in range(5)]

    def to_image(self, x):
        x = x.detach().float()
        x = (x - x.min()) / (x.max() - x.min() + 1e-12)
        return (x.permute(1, 2, 0) * 255).round().byte().numpy()


def test_walk_and_fusion_figures(tiny):
    x = torch.randn(1, 3, 24, 24)
    cam = Cameras(tiny, "c2", sizes=[24, 32, 40], progress=False)
    cap = cam.capture(x, keep_inputs=True)
    ch = method.top_channels(cap, 0, 2)
    fig = method.plot_walk(_StubLM(), cam, cap, 0, [24, 40], ch, title="t")
    assert len(fig.axes) == 5 * 2 + 1  # (input, |A|, 2 channels, map) x 2 sizes, colorbar
    assert fig.axes[1].get_title() == "40 px"
    with pytest.raises(ValueError, match="keep_inputs"):
        method.plot_walk(_StubLM(), cam, cam.capture(x))
    manual = method.manual_fusion(cap, 0, channels=ch)
    fig = method.plot_fusion(_StubLM(), x[0], manual, cam(x)[0], ch[0])
    assert len(fig.axes) == 7  # six panels and a colour bar

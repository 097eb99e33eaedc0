"""Tests for cameras.sanity: similarity metrics, cascading randomisation, adversarial sanity
check and class sensitivity, on small seeded random CNNs and hand-made maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from cameras.sanity import (
    KeptSizes,
    adversarial_sanity,
    cascade_blocks,
    cascading_randomization,
    class_sensitivity,
    class_spearman,
    hog_similarity,
    map_similarities,
    randomize_block,
    spearman,
    ssim,
    summarize_adversarial,
)


# -------------------------------------------------------------------------------------
# helpers: a small CNN and three "methods"
# -------------------------------------------------------------------------------------
def small_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(4), nn.Flatten(),
        nn.Linear(16 * 16, 10),
    ).eval()


def images(n: int = 3, size: int = 32, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g)
    return F.avg_pool2d(x, 3, 1, 1)  # some spatial structure for the edge "method"


def _norm(m: torch.Tensor) -> torch.Tensor:
    lo = m.flatten(1).min(1).values.view(-1, 1, 1)
    hi = m.flatten(1).max(1).values.view(-1, 1, 1)
    return (m - lo) / (hi - lo).clamp_min(1e-12)


def input_gradient(model, x, t):
    """A weight-dependent method: |d logit_t / d x|, max over channels."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        score = model(x).gather(1, t.view(-1, 1)).sum()
        (g,) = torch.autograd.grad(score, x)
    return _norm(g.abs().amax(1))


def edges(model, x, t):
    """A weight-independent 'method': gradient magnitude of the image (ignores model and class)."""
    gray = x.mean(1, keepdim=True)
    kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]).view(1, 1, 3, 3)
    gx = F.conv2d(gray, kx, padding=1)
    gy = F.conv2d(gray, kx.transpose(2, 3), padding=1)
    return _norm((gx**2 + gy**2).sqrt()[:, 0])


# -------------------------------------------------------------------------------------
# metrics
# -------------------------------------------------------------------------------------
def test_metrics_identical_maps_are_one_and_unrelated_maps_near_zero():
    rng = np.random.default_rng(0)
    a, b = rng.random((64, 64)), rng.random((64, 64))
    same = map_similarities(a, a)
    assert all(v == pytest.approx(1.0) for v in same.values()), same
    diff = map_similarities(a, b)
    assert all(abs(v) < 0.15 for v in diff.values()), diff
    assert spearman(a, 1 - a) == pytest.approx(-1.0)
    assert spearman(a, 2 * a + 5) == pytest.approx(1.0)  # rank-based: monotone maps agree


def test_metrics_on_structured_maps_and_degenerate_inputs():
    yy, xx = np.mgrid[0:64, 0:64]
    blob = np.exp(-((yy - 20) ** 2 + (xx - 20) ** 2) / 50.0)
    moved = np.exp(-((yy - 44) ** 2 + (xx - 44) ** 2) / 50.0)
    assert ssim(blob, blob + 0.01 * blob) > 0.95
    assert hog_similarity(blob, moved) < hog_similarity(blob, blob)
    zero = np.zeros((64, 64))
    vals = map_similarities(zero, zero)
    assert all(v == 1.0 for v in vals.values())
    vals = map_similarities(zero, blob)
    assert all(np.isfinite(v) for v in vals.values())
    assert vals["spearman"] == 0.0 and vals["hog"] == 0.0
    with pytest.raises(ValueError, match="same shape"):
        spearman(blob, blob[:32])
    with pytest.raises(ValueError, match="unknown metric"):
        map_similarities(blob, blob, metrics=("pearson",))


# -------------------------------------------------------------------------------------
# cascading randomisation
# -------------------------------------------------------------------------------------
def test_cascade_blocks_orders_from_logits_down():
    r18 = torchvision.models.resnet18(weights=None)
    expected = ["fc"] + [f"layer{i}.{j}" for i in (4, 3, 2, 1) for j in (1, 0)] + ["bn1", "conv1"]
    assert cascade_blocks(r18) == expected
    assert cascade_blocks(small_cnn()) == ["6", "2", "0"]
    wrapped = nn.Sequential(nn.Identity(), r18)  # e.g. a normalisation layer in front
    assert cascade_blocks(wrapped)[:2] == ["1.fc", "1.layer4.1"]
    with pytest.raises(ValueError, match="no parameters"):
        cascade_blocks(nn.ReLU())


def test_randomize_block_is_seeded_and_leaves_global_rng_alone():
    a, b = small_cnn(), small_cnn()
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    randomize_block(a[6], seed=5)
    after = torch.rand(1)
    assert torch.equal(before, after)
    randomize_block(b[6], seed=5)
    assert torch.equal(a[6].weight, b[6].weight)
    assert not torch.equal(a[6].weight, small_cnn()[6].weight)
    randomize_block(b[6], seed=6)
    assert not torch.equal(a[6].weight, b[6].weight)


def test_cascade_detects_weight_independent_method_and_leaves_model_untouched():
    model, x = small_cnn(), images()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    df = cascading_randomization({"gradient": input_gradient, "edges": edges}, model, x,
                                 seed=0, progress=False)
    # the original model is untouched
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    # expected depths and blocks, tidy columns
    assert list(df.columns) == ["method", "image", "depth", "block", "metric", "value", "sizes_kept"]
    assert df["sizes_kept"].isna().all()  # only CAMERAS (KeptSizes) records the sizes it kept
    assert sorted(df["depth"].unique()) == [0, 1, 2, 3]
    assert df.groupby("depth")["block"].first().tolist() == ["none", "6", "2", "0"]
    assert len(df) == 2 * 3 * 4 * 4  # methods x images x depths x metrics
    assert df["value"].notna().all()

    mean = df.groupby(["method", "depth"])["value"].mean()
    # depth 0 recomputes on the untouched copy: identical maps
    assert mean["gradient", 0] == pytest.approx(1.0)
    # the weight-independent "method" keeps similarity 1 at every depth: the check fails it
    assert (df[df.method == "edges"]["value"] > 1 - 1e-9).all()
    # randomising the top layer already changes a gradient map
    assert mean["gradient", 1] < 0.6
    assert mean["gradient", 3] < 0.5
    sp = df[(df.method == "gradient") & (df.metric == "spearman")].groupby("depth")["value"].mean()
    assert sp[3] < sp[0] - 0.1


def test_cascade_restores_the_train_mode_and_evaluates_in_eval_mode():
    model, x = nn.Sequential(small_cnn(), nn.Dropout(0.9)), images(2)  # dropout: train mode would be random
    model.train()
    df = cascading_randomization({"gradient": input_gradient}, model, x, depths=[0], metrics=("spearman",),
                                 progress=False)
    assert model.training and all(m.training for m in model.modules())
    assert np.allclose(df["value"], 1.0)  # the reference and the copy are both evaluated in eval mode


def test_cascade_max_depth_and_registry_method():
    model, x = small_cnn(), images(2)
    df = cascading_randomization(["gradient"], model, x, max_depth=1, metrics=("spearman",),
                                 progress=False)
    assert sorted(df["depth"].unique()) == [0, 1]
    assert set(df["method"]) == {"gradient"}
    assert df["value"].between(-1, 1).all()
    with pytest.raises(ValueError, match="unknown block"):
        cascading_randomization({"e": edges}, model, x, blocks=["nope"], progress=False)


def test_cascade_depth_subset_matches_full_cascade_and_keeps_maps():
    """Evaluating only some depths gives the full cascade's values there (cumulative, seeded)."""
    model, x = small_cnn(), images(2)
    full = cascading_randomization({"gradient": input_gradient}, model, x, metrics=("spearman", "ssim"),
                                   seed=3, progress=False)
    maps: dict = {}
    part = cascading_randomization({"gradient": input_gradient}, model, x, metrics=("spearman", "ssim"),
                                   seed=3, progress=False, depths=[0, 2], maps_out=maps, maps_images=1)
    assert sorted(part["depth"].unique()) == [0, 2]
    key = ["method", "image", "depth", "metric"]
    merged = part.merge(full, on=key, suffixes=("_part", "_full"))
    assert len(merged) == len(part) == 2 * 2 * 2
    assert np.allclose(merged["value_part"], merged["value_full"])
    assert (merged["block_part"] == merged["block_full"]).all()
    # the maps of the first image at the evaluated depths, as (1, H, W)
    assert set(maps) == {"gradient"} and set(maps["gradient"]) == {0, 2}
    assert maps["gradient"][2].shape == (1, 32, 32)
    assert torch.allclose(maps["gradient"][0][0], input_gradient(model, x[:1], model(x[:1]).argmax(1))[0], atol=1e-6)
    with pytest.raises(ValueError, match="depths"):
        cascading_randomization({"e": edges}, model, x, depths=[9], progress=False)
    with pytest.raises(ValueError, match="workers"):
        cascading_randomization({"e": edges}, model, x, workers=0, progress=False)


def test_cascade_metrics_in_worker_processes_give_the_same_values():
    model, x = small_cnn(), images(2)
    kw = dict(metrics=("spearman", "hog"), depths=[0, 1], progress=False)
    one = cascading_randomization({"gradient": input_gradient}, model, x, **kw)
    two = cascading_randomization({"gradient": input_gradient}, model, x, workers=2, **kw)
    assert np.allclose(one["value"].to_numpy(), two["value"].to_numpy())
    assert one[["method", "image", "depth", "metric"]].equals(two[["method", "image", "depth", "metric"]])


# -------------------------------------------------------------------------------------
# adversarial sanity check
# -------------------------------------------------------------------------------------
class RegionLinear(nn.Module):
    """Logits depend only on the pixels inside a fixed region (a known ground truth)."""

    def __init__(self, size: int = 32, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        region = torch.zeros(size, size)
        region[4:12, 18:26] = 1.0  # 64 of 1024 pixel positions (6.25 %)
        self.register_buffer("region", region)
        self.fc = nn.Linear(3 * size * size, 10)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(10, 3 * size * size, generator=g))
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc((x * self.region).flatten(1))


def test_adversarial_check_ranks_oracle_above_random_map():
    model = RegionLinear().eval()
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    oracle = model.region.expand(4, 32, 32)
    random_map = torch.rand(4, 32, 32, generator=torch.Generator().manual_seed(3))
    df = adversarial_sanity(None, model, x, normalize=lambda t: t, maps={"oracle": oracle,
                            "random_map": random_map}, ks=(2, 5), eps=8 / 255, steps=5,
                            n_random=3, seed=0, progress=False)
    assert set(df["selection"]) == {"top", "random", "bottom"}
    assert (df["full_drop"] > 0).all()
    s = summarize_adversarial(df).set_index(["method", "k"])
    for k in (2.0, 5.0):
        o, r = s.loc[("oracle", k)], s.loc[("random_map", k)]
        assert o["top"] > o["random"] > o["bottom"]
        assert o["bottom"] == pytest.approx(0.0, abs=1e-6)  # outside the region nothing happens
        assert o["ordered"] == 1.0
        assert o["top"] > r["top"] + 0.05
    # the random sets are shared by all methods
    rnd = df[df.selection == "random"].pivot_table(index=["image", "k"], columns="method", values="conf")
    assert np.allclose(rnd["oracle"], rnd["random_map"])


def test_adversarial_check_with_a_method_callable():
    model = RegionLinear().eval()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    df = adversarial_sanity({"gradient": input_gradient}, model, x, normalize=lambda t: t,
                            ks=(5,), steps=3, n_random=2, progress=False)
    s = summarize_adversarial(df).iloc[0]
    assert s["top"] > s["bottom"]  # input gradients are zero outside the region
    with pytest.raises(ValueError, match="pixel space"):
        adversarial_sanity({"g": input_gradient}, model, x * 3 - 1, normalize=lambda t: t)
    with pytest.raises(ValueError, match="ks"):
        adversarial_sanity({"g": input_gradient}, model, x, normalize=lambda t: t, ks=(0,))


# -------------------------------------------------------------------------------------
# class sensitivity
# -------------------------------------------------------------------------------------
def test_class_sensitivity_is_zero_for_a_class_independent_method():
    model, x = small_cnn(), images()
    df = class_sensitivity({"edges": edges, "gradient": input_gradient}, model, x, progress=False)
    assert set(df["metric"]) == {"1-spearman", "1-ssim", "mad"}
    assert (df["top1"] != df["least_likely"]).all()
    mean = df.groupby(["method", "metric"])["value"].mean()
    for metric in ("1-spearman", "1-ssim", "mad"):
        assert mean["edges", metric] == pytest.approx(0.0, abs=1e-9)
        assert mean["gradient", metric] > 0.01


# -------------------------------------------------------------------------------------
# CAMERAS with the sizes it kept
# -------------------------------------------------------------------------------------
def test_kept_sizes_gives_the_registry_maps_and_counts_algorithm_1s_sizes():
    from cameras.core import Cameras
    from cameras.methods import saliency

    model, x = small_cnn(), images(3)
    t = model(x).argmax(1)
    settings = {"sizes": [32, 48, 64, 96], "keep": "prediction"}
    fn = KeptSizes(settings, layer="2")
    maps = fn(model, x, t)
    assert torch.allclose(maps, saliency("cameras", model, x, t, layer="2", **settings), atol=1e-6)
    cam = Cameras(model, layer="2", sizes=settings["sizes"], keep="prediction")
    cam(x, t)
    kept = fn.pop()
    assert torch.equal(kept, cam.kept.sum(0)) and fn.pop() is None  # pop empties the log
    fn(model, x, (t + 1) % 10)  # another class: the same sizes (the rule compares top-1s only)
    assert torch.equal(fn.pop(), kept)
    df = cascading_randomization({"cameras": fn, "gradient": input_gradient}, model, x, max_depth=2,
                                 metrics=("spearman",), progress=False)
    cam_rows = df[df["method"] == "cameras"]
    assert cam_rows["sizes_kept"].between(1, 4).all() and df[df["method"] == "gradient"]["sizes_kept"].isna().all()
    assert list(cam_rows[cam_rows["depth"] == 0]["sizes_kept"]) == kept.tolist()
    adv = adversarial_sanity({"cameras": fn}, model, x, normalize=lambda v: v, ks=(5,), steps=2, n_random=1,
                             progress=False)
    assert set(adv["sizes_kept"]) <= set(range(1, 5))


def test_class_spearman_is_the_authors_score_and_one_for_a_class_independent_method():
    from cameras.metrics.class_sensitivity import class_sensitivity_rebuffi

    model, x = small_cnn(), images()
    df = class_spearman({"edges": edges, "gradient": input_gradient}, model, x)
    assert list(df.columns) == ["method", "image", "most", "least", "p_most", "p_least", "class_spearman", "sizes_kept"]
    assert (df["most"] != df["least"]).all()
    edges_r = df[df["method"] == "edges"]["class_spearman"]
    assert np.allclose(edges_r, 1.0)  # the same map for every class
    assert df[df["method"] == "gradient"]["class_spearman"].mean() < 0.99
    ours = class_spearman(["gradcam"], model, x, layer="2")
    theirs = class_sensitivity_rebuffi(["gradcam"], model, x, layer="2")
    assert np.allclose(ours["class_spearman"], theirs["class_spearman"], equal_nan=True)
    assert list(ours["most"]) == list(theirs["most"]) and list(ours["least"]) == list(theirs["least"])

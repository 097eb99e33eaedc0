"""cameras.agnostic (input-agnostic saliency, our reading of Akhtar & Jalwana, AAAI 2023) and
cameras.backdoor (data, triggers, poisoning, scores)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from cameras import agnostic as A
from cameras import backdoor as BD

SHAPE = (3, 16, 16)
FAST = {"n_samples": 3, "n_steps": 2, "refine_steps": 2}


def _net(classes: int = 5, channels: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(channels, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                         nn.Linear(6 * 16, classes)).eval()


@pytest.fixture(scope="module")
def net() -> nn.Module:
    return _net()


# ----------------------------------------------------------------------------------------
# the map
# ----------------------------------------------------------------------------------------
def test_seed_gives_the_same_map_and_another_seed_another(net):
    a = A.input_agnostic_map(net, 2, SHAPE, seed=3, progress=False, **FAST)
    b = A.input_agnostic_map(net, 2, SHAPE, seed=3, progress=False, **FAST)
    c = A.input_agnostic_map(net, 2, SHAPE, seed=4, progress=False, **FAST)
    assert a.shape == SHAPE and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_several_targets_and_batches_agree_with_one_at_a_time(net):
    together = A.input_agnostic_map(net, [1, 4, 2], SHAPE, seed=0, progress=False, **FAST)
    alone = torch.stack([A.input_agnostic_map(net, t, SHAPE, seed=0, progress=False, **FAST) for t in (1, 4, 2)])
    small = A.input_agnostic_map(net, [1, 4, 2], SHAPE, seed=0, batch_size=2, progress=False, **FAST)
    assert together.shape == (3, *SHAPE)
    torch.testing.assert_close(together, alone, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(together, small, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("norm,radius", [("inf", 16 / 255), ("inf", 0.25), (2, 1.0), ("2", 3.7)])
def test_the_norm_bound_holds_exactly(net, norm, radius):
    m = A.input_agnostic_map(net, [0, 3], SHAPE, seed=1, progress=False, norm=norm, radius=radius, **FAST)
    n = A.norm_of(m, norm)
    assert (n <= radius).all(), n
    assert (n >= radius * (1 - 1e-6)).all(), n


@pytest.mark.parametrize("norm", ["inf", "2"])
def test_project_and_ball_project(norm):
    g = torch.randn(6, *SHAPE) * torch.logspace(-8, 8, 6).view(-1, 1, 1, 1)
    for r in (1e-3, 0.1, 7.0):
        p = A.project(g, norm, r)
        n = A.norm_of(p, norm)
        assert (n <= r).all() and (n >= r * (1 - 1e-6)).all()
        b = A.ball_project(g, norm, r)
        assert (A.norm_of(b, norm) <= r).all()
    inside = A.project(g, norm, 0.5) * 0.5
    torch.testing.assert_close(A.ball_project(inside, norm, 0.5), inside)
    assert torch.equal(A.project(torch.zeros(1, *SHAPE), norm, 1.0), torch.zeros(1, *SHAPE))


def test_history_and_refinement(net):
    ia = A.InputAgnostic(net, progress=False, n_samples=2, n_steps=3, refine_steps=4)
    ia([0, 1], SHAPE)
    assert ia.history["nudge"].shape == (3, 2) and ia.history["refine"].shape == (4, 2)
    assert np.isfinite(ia.history["refine"]).all()
    ia0 = A.InputAgnostic(net, progress=False, n_samples=2, n_steps=3, refine_steps=0)
    m = ia0(0, SHAPE)
    assert "refine" not in ia0.history and torch.isfinite(m).all()


@pytest.mark.parametrize("cfg", [{"distribution": "gaussian"}, {"distribution": "lowres", "lowres_factor": 4},
                                 {"step_rule": "sign"}, {"accumulate": "displacement"}, {"smooth_sigma": 1.0}])
def test_every_option_gives_a_bounded_finite_map(net, cfg):
    m = A.input_agnostic_map(net, 1, SHAPE, seed=0, progress=False, **{**FAST, **cfg})
    assert torch.isfinite(m).all() and float(A.norm_of(m[None])[0]) <= 16 / 255


def test_nudging_raises_the_target_probability(net):
    ia = A.InputAgnostic(net, progress=False, n_samples=8, n_steps=10, step_size=0.05, refine_steps=0)
    ia([0, 1, 2], SHAPE)
    h = ia.history["nudge"]
    assert (h[-1] > h[0]).all()


def test_sampling_is_seeded_and_in_range():
    for d in A.DISTRIBUTIONS:
        a = A.sample(d, (2, *SHAPE), A._generator(0, 1))
        b = A.sample(d, (2, *SHAPE), A._generator(0, 1))
        c = A.sample(d, (2, *SHAPE), A._generator(0, 2))
        assert torch.equal(a, b) and not torch.equal(a, c)
        assert a.min() >= 0 and a.max() <= 1 and a.shape == (2, *SHAPE)


@pytest.mark.parametrize("target", [5, -1, 2.0, "cat", [], [0, 9], True, None])
def test_bad_targets_raise_one_clear_error(net, target):
    with pytest.raises(ValueError, match="target must be"):
        A.input_agnostic_map(net, target, SHAPE, progress=False, **FAST)


@pytest.mark.parametrize("shape,match", [((3, 16), "image_shape"), ((1, 16, 16), "channel"),
                                         ((3, 0, 16), "image_shape"), ("3x16x16", "image_shape")])
def test_bad_shapes_raise(net, shape, match):
    with pytest.raises(ValueError, match=match):
        A.input_agnostic_map(net, 0, shape, progress=False, **FAST)


@pytest.mark.parametrize("kw,match", [({"n_samples": 0}, "n_samples"), ({"norm": 3}, "norm"),
                                      ({"distribution": "normal"}, "distribution"), ({"radius": -1}, "radius"),
                                      ({"step_rule": "adam"}, "step_rule"), ({"n_step": 3}, "unknown setting"),
                                      ({"refine_steps": 1.5}, "refine_steps"), ({"batch_size": 0}, "batch_size")])
def test_bad_settings_raise(net, kw, match):
    with pytest.raises(ValueError, match=match):
        A.InputAgnostic(net, **kw)


def test_bad_model_and_stats_raise(net):
    with pytest.raises(TypeError, match="model"):
        A.InputAgnostic(lambda x: x)
    with pytest.raises(ValueError, match="same"):
        A.InputAgnostic(net, mean=(0.5, 0.5), std=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="std"):
        A.InputAgnostic(net, std=(0.5, 0.0, 0.5))
    with pytest.raises(ValueError, match="seed"):
        A.input_agnostic_map(net, 0, SHAPE, seed=1.5, progress=False, **FAST)


def test_training_mode_warns():
    m = _net().train()
    with pytest.warns(UserWarning, match="training mode"):
        A.input_agnostic_map(m, 0, SHAPE, progress=False, **FAST)


# ----------------------------------------------------------------------------------------
# display and controls
# ----------------------------------------------------------------------------------------
def test_visualize_and_magnitude():
    m = A.project(torch.randn(2, *SHAPE), "inf", 0.1)
    v = A.visualize(m)
    assert v.shape == (2, 16, 16, 3) and v.min() >= 0 and v.max() <= 1
    assert math.isclose(float(np.abs(v - 0.5).max()), 0.5, rel_tol=1e-5)
    assert np.allclose(A.visualize(torch.zeros(SHAPE)), 0.5)
    g = A.magnitude(m[0])
    assert g.shape == (16, 16) and g.min() == 0 and math.isclose(float(g.max()), 1.0, rel_tol=1e-6)
    assert (A.magnitude(torch.zeros(SHAPE)) == 0).all()
    with pytest.raises(ValueError, match="maps must be"):
        A.visualize(torch.zeros(16, 16))


@pytest.mark.parametrize("norm", ["inf", "2"])
def test_controls_have_the_same_norm(norm):
    m = A.project(torch.randn(1, *SHAPE), norm, 0.3)[0]
    r = A.random_map(SHAPE, norm, 0.3, seed=1)
    s = A.shuffled_map(m, seed=1)
    for x in (r, s):
        assert math.isclose(float(A.norm_of(x[None], norm)[0]), float(A.norm_of(m[None], norm)[0]), rel_tol=1e-5)
    assert torch.equal(s.flatten().sort().values, m.flatten().sort().values) and not torch.equal(s, m)
    assert A.random_map(SHAPE, norm, 0.3, seed=0, n=3).shape == (3, *SHAPE)


def test_target_scores(net):
    x = A.sample("uniform", (5, *SHAPE), A._generator(0, 9))
    maps = torch.stack([torch.zeros(SHAPE), A.random_map(SHAPE, "inf", 0.2)])
    hit, prob = A.target_scores(net, x, maps, [1, 1], batch_size=2)
    assert hit.shape == prob.shape == (2, 5)
    with torch.no_grad():
        p = net((x - 0.5) / 0.5).softmax(1)
    torch.testing.assert_close(prob[0], p[:, 1])
    assert torch.equal(hit[0], p.argmax(1) == 1)
    with pytest.raises(ValueError, match="one target per map"):
        A.target_scores(net, x, maps, [1])
    with pytest.raises(ValueError, match="share"):
        A.target_scores(net, x, maps[:, :, :8], [1, 1])


# ----------------------------------------------------------------------------------------
# backdoor helpers
# ----------------------------------------------------------------------------------------
def test_trigger_stamp_mask_and_poison():
    t = BD.Trigger("checker", 3, 13, 0)
    x = torch.zeros(4, 1, 16, 16)
    s = t.stamp(x)
    assert torch.equal(s[0, 0, 13:16, 0:3], t.patch()) and s[:, :, :13].sum() == 0 and x.sum() == 0
    assert t.mask(16, 16).sum() == 9
    with pytest.raises(ValueError, match="does not fit"):
        BD.Trigger("square", 4, 14, 0).mask(16, 16)
    with pytest.raises(ValueError, match="pattern"):
        BD.Trigger("star")
    y = torch.arange(40) % 4
    xp, yp, mask = BD.poison(torch.zeros(40, 1, 16, 16), y, t, target=2, fraction=0.2, seed=0)
    assert mask.sum() == 6 and (yp[mask] == 2).all() and (y[mask] != 2).all()
    assert torch.equal(yp[~mask], y[~mask]) and (xp[mask, 0, 13:16, 0:3] == t.patch()).all()


def test_digits_and_training_are_seeded():
    d = BD.digits(16, seed=0)
    assert d.x_train.shape[1:] == (1, 16, 16) and 0 <= d.x_train.min() and d.x_train.max() <= 1
    assert len(d.y_train) + len(d.y_test) == 1797
    a = BD.train(d.x_train[:128], d.y_train[:128], seed=1, epochs=1)
    b = BD.train(d.x_train[:128], d.y_train[:128], seed=1, epochs=1)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    assert 0 <= BD.accuracy(a, d.x_test, d.y_test) <= 1
    assert 0 <= BD.attack_success(a, d.x_test, d.y_test, BD.Trigger(), 0) <= 1


def test_trigger_mass_peak_window_and_anomaly():
    maps = torch.full((3, 1, 16, 16), 0.001)
    maps[1, 0, 2:5, 10:13] = 1.0
    mask = BD.Trigger("square", 3, 2, 10).mask(16, 16)
    tm = BD.trigger_mass(maps, mask)
    assert math.isclose(tm[0], 9 / 256) and tm[1] > 0.9
    share, where = BD.peak_window(maps, 3)
    assert tuple(where[1]) == (2, 10) and share[1] > 0.9 and math.isclose(share[0], 9 / 256)
    a = BD.anomaly_index([1, 2, 3, 2, 10])
    assert a.argmax() == 4 and a[4] > 2
    assert np.isinf(BD.anomaly_index([1, 1, 1, 5])[3])
    assert np.isnan(BD.trigger_mass(torch.zeros(1, 1, 4, 4), torch.ones(4, 4, dtype=torch.bool))[0])


def test_wilson_interval():
    lo, hi = BD.wilson(0, 10)
    assert lo == 0 and math.isclose(hi, 0.2775, abs_tol=1e-3)
    lo, hi = BD.wilson(10, 10)
    assert hi == 1 and math.isclose(lo, 0.7225, abs_tol=1e-3)
    lo, hi = BD.wilson(7, 20)
    assert lo < 0.35 < hi
    assert all(math.isnan(v) for v in BD.wilson(0, 0))
    with pytest.raises(ValueError):
        BD.wilson(3, 2)


def test_finetune_backdoor_runs_on_a_tiny_model():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 5)).eval()
    lm = SimpleNamespace(model=net, device=torch.device("cpu"), mean=(0.5,) * 3, std=(0.5,) * 3)
    x = torch.rand(10, 3, 16, 16)
    y = torch.arange(10) % 5
    before = net[0].weight.clone()
    model, stats = BD.finetune_backdoor(lm, x, y, BD.Trigger("square", 4, 10, 10), 3, fraction=0.5, epochs=2,
                                        trainable=("4",), progress=False)
    assert torch.equal(net[0].weight, before)  # the original is untouched
    assert torch.equal(model[0].weight, before) and not torch.equal(model[4].weight, net[4].weight)
    assert set(stats) == {"clean_accuracy", "attack_success"}
    with pytest.raises(ValueError, match="unknown module"):
        BD.finetune_backdoor(lm, x, y, BD.Trigger(), 3, trainable=("nope",), progress=False)

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


def test_rate_text_uses_the_wilson_interval_of_cameras_metrics():
    from cameras.metrics import wilson

    lo, hi = wilson(18, 20)
    assert BD.rate_text(18, 20) == f"18/20 = 90 % [{100 * lo:.0f}, {100 * hi:.0f}]" == "18/20 = 90 % [70, 97]"
    assert BD.rate_text(0, 0) == "not run"
    assert not hasattr(BD, "wilson")  # one implementation: cameras.metrics.intervals


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


def test_imagenet_trial_rows_on_a_tiny_model():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 6)).eval()
    lm = SimpleNamespace(model=net, device=torch.device("cpu"), mean=(0.5,) * 3, std=(0.5,) * 3)
    x, y = torch.rand(12, 3, 32, 32), torch.arange(12) % 6
    cfg = A.AgnosticConfig(n_samples=2, n_steps=1, refine_steps=1)
    rows = BD.imagenet_trial(lm, x, y, 0, cfg, epochs=1, trigger_size=4, classes=4, num_classes=6,
                             trainable=("4",), progress=False)
    assert len(rows) == 4 and len({r["class"] for r in rows}) == 4 and all(r["target"] == rows[0]["class"] for r in rows)
    assert sum(r["flagged"] for r in rows) <= 1 and all(0 <= r["trigger_mass"] <= 1 for r in rows)
    assert rows == [{**r, "seconds": rows[i]["seconds"]} for i, r in enumerate(BD.imagenet_trial(
        lm, x, y, 0, cfg, epochs=1, trigger_size=4, classes=4, num_classes=6, trainable=("4",), progress=False))]


# ----------------------------------------------------------------------------------------
# fidelity, its controls and summaries
# ----------------------------------------------------------------------------------------
def test_fresh_samples_and_probabilities(net):
    cfg = A.AgnosticConfig(distribution="lowres")
    a, b = A.fresh_samples(cfg, 5, SHAPE, seed=1), A.fresh_samples(cfg, 5, SHAPE, seed=1)
    assert a.shape == (5, *SHAPE) and torch.equal(a, b) and not torch.equal(a, A.fresh_samples(cfg, 5, SHAPE, 2))
    p = A.probabilities(net, a, batch_size=2)
    with torch.no_grad():
        torch.testing.assert_close(p, net((a - 0.5) / 0.5).softmax(1))


def test_controls_and_fidelity_rows(net):
    maps = A.project(torch.randn(3, *SHAPE), "inf", 0.2)
    ctrl = A.controls(maps, 2, [4, 1, 3], "inf", 0.2, seed=1)
    assert [(c, mc) for c, _, mc in ctrl] == [("map", 3), ("random", -1), ("shuffled", 3), ("other", 4)]
    assert torch.equal(ctrl[0][1], maps[2]) and torch.equal(ctrl[3][1], maps[0])
    noise = A.fresh_samples(A.AgnosticConfig(), 4, SHAPE)
    real, labels = torch.rand(5, *SHAPE), torch.tensor([4, 1, 1, 0, 2])
    rows = A.fidelity(net, maps, [4, 1, 3], {"noise": (noise, torch.full((4,), -1)), "real": (real, labels)},
                      norm="inf", radius=0.2, batch_size=2)
    assert len(rows) == 3 * len(A.CONTROLS) * 2 and {r["control"] for r in rows} == set(A.CONTROLS)
    by = {(r["target"], r["control"], r["data"]): r for r in rows}
    assert by[(1, "map", "real")]["n"] == 3 and by[(1, "map", "noise")]["n"] == 4  # the class's own images left out
    assert by[(4, "none", "noise")]["norm_value"] == 0 and math.isclose(by[(4, "random", "real")]["norm_value"], 0.2,
                                                                         rel_tol=1e-6)
    clean = A.probabilities(net, real[labels != 3])[:, 3]
    assert math.isclose(by[(3, "none", "real")]["p_target"], float(clean.mean()), rel_tol=1e-6)
    hit, prob = A.target_scores(net, noise, maps[1:2], [1])
    assert math.isclose(by[(1, "map", "noise")]["rate"], float(hit.float().mean()))
    assert math.isclose(by[(1, "map", "noise")]["p_target"], float(prob.mean()), rel_tol=1e-6)


def _fid_rows():
    import pandas as pd

    rows = []
    for t, (pm, pr) in {1: (0.9, 0.1), 281: (0.05, 0.2)}.items():
        for c in A.CONTROLS:
            for d in ("noise", "real"):
                p = {"map": pm, "random": pr}.get(c, 0.01)
                rows.append({"model": "efficientnet_lite0", "target": t, "control": c, "data": d,
                             "map_class": {"other": 281 if t == 1 else 1, "random": -1, "none": -1}.get(c, t),
                             "rate": p, "p_target": p})
    return pd.DataFrame(rows)


def test_fidelity_summaries():
    fid = _fid_rows()
    t = A.fidelity_table(fid, "rate")
    assert list(t.columns[:3]) == ["model", "class", "other class"] and "ImageNet images: target map" in t.columns
    assert t["class"].tolist() == ["goldfish", "tabby"] and t["other class"].tolist() == ["tabby", "goldfish"]
    assert t.loc[0, "fresh samples: target map"] == 0.9 and t.loc[1, "ImageNet images: random map, same norm"] == 0.2
    summ = A.summary_rates(fid)
    assert set(summ["map added"]) == set(A.CONTROL_NAMES.values()) and summ["model"].iloc[0] == "EfficientNet-Lite0"
    rnd = summ[(summ["map added"] == "random map, same norm") & (summ["data set"] == "fresh samples")].iloc[0]
    assert rnd["classes where the target map is higher"] == "1 / 2"
    assert A.beats_random(fid).tolist() == [True, True, False, False]
    pt = A.parameter_table(A.AgnosticConfig().as_dict(), {"norm": "2"})
    assert list(pt["parameter"]) == list(A.PARAMETERS) == A.AgnosticConfig.names()
    assert pt.set_index("parameter").loc["norm", "backdoor maps"] == "2"


def test_config_validated():
    assert A.AgnosticConfig.validated({"norm": 2}) == A.AgnosticConfig(norm="2").as_dict()
    with pytest.raises(ValueError, match="agnostic: unknown setting.*steps"):
        A.AgnosticConfig.validated({"steps": 3}, "agnostic")


def test_class_maps_and_pixel_images(net):
    cfg = A.AgnosticConfig(**FAST)
    maps, last, seconds = A.class_maps(net, [1, 2], SHAPE, (0.5,) * 3, (0.5,) * 3, cfg, seed=3)
    ia = A.InputAgnostic(net, config=cfg, progress=False)
    assert torch.equal(maps, ia([1, 2], SHAPE, seed=3)) and np.array_equal(last, ia.history["refine"][-1])
    assert seconds > 0
    lm = SimpleNamespace(preprocess=lambda path, size=None: torch.full((3, size, size), float(path)),
                         denormalize=lambda x: (x * 0.5 + 0.5).clamp(0, 1))
    x, y = A.pixel_images(lm, [SimpleNamespace(path=0.2, label=3), SimpleNamespace(path=4, label=1)], 8)
    assert x.shape == (2, 3, 8, 8) and torch.allclose(x[0], torch.tensor(0.6)) and x[1].max() == 1
    assert y.tolist() == [3, 1]


# ----------------------------------------------------------------------------------------
# sanity: cascading randomisation
# ----------------------------------------------------------------------------------------
def test_randomize_cascade_block_matches_cameras_sanity():
    from cameras.sanity import cascade_blocks, randomize_block

    class Own(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = _net()
            self.scale = nn.Parameter(torch.ones(1))

    a, b = Own(), Own()
    b.load_state_dict(a.state_dict())
    blocks = cascade_blocks(a)
    assert blocks == ["body.4", "body.0", "(own)"]
    A.randomize_cascade_block(a, "(own)", 5)
    randomize_block(b, 5, own_only=True)
    assert torch.equal(a.scale, b.scale) and not torch.equal(a.scale, torch.ones(1))
    assert torch.equal(a.body[0].weight, b.body[0].weight)  # own_only: the children untouched
    A.randomize_cascade_block(a, "body.4", 6)
    randomize_block(b.body[4], 6)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_magnitude_similarity():
    m = A.magnitude(torch.randn(2, *SHAPE))
    assert A.magnitude_similarity(m[0], m[0]) == pytest.approx((1.0, 1.0))
    rho, ssim = A.magnitude_similarity(m[0], m[1])
    assert -0.5 < rho < 0.5 and ssim < 0.9
    assert A.magnitude_similarity(np.zeros((16, 16), np.float32), m[1])[0] == 0.0


def test_randomization_check(net):
    cfg = A.AgnosticConfig(**FAST)
    noise = A.fresh_samples(cfg, 3, SHAPE)
    before = [p.clone() for p in net.parameters()]
    rows, maps = A.randomization_check(net, [1, 2], SHAPE, (0.5,) * 3, (0.5,) * 3, cfg, [2, 0], noise, seed=1)
    assert all(torch.equal(p, q) for p, q in zip(before, net.parameters(), strict=True))  # a copy is randomised
    assert [(r["target"], r["depth"]) for r in rows] == [(1, 0), (2, 0), (1, 2), (2, 2)]
    assert rows[0]["block"] == "none" and rows[2]["block"] == "0" and set(maps) == {"1_0", "2_0", "1_2", "2_2"}
    assert rows[0]["spearman"] == pytest.approx(1.0) and abs(rows[2]["spearman"]) < 0.9
    assert maps["1_0"].shape == (16, 16, 3) and all(0 <= r["p_noise"] <= 1 for r in rows)
    with pytest.raises(ValueError, match="depths go up to"):
        A.randomization_check(net, [1], SHAPE, (0.5,) * 3, (0.5,) * 3, cfg, [9], noise)


# ----------------------------------------------------------------------------------------
# backdoor trials and what they say
# ----------------------------------------------------------------------------------------
def test_trial_plan_is_seeded_and_fits():
    plans = [BD.trial_plan(0, i, 16, BD.PATTERNS, (3, 4)) for i in range(20)]
    assert plans == [BD.trial_plan(0, i, 16, BD.PATTERNS, (3, 4)) for i in range(20)]
    assert plans != [BD.trial_plan(1, i, 16, BD.PATTERNS, (3, 4)) for i in range(20)]
    assert len({p["target"] for p in plans}) > 3 and len({p["pattern"] for p in plans}) > 1
    for p in plans:
        assert p["row"] in (0, 16 - p["trigger_size"]) and p["col"] in (0, 16 - p["trigger_size"])


def test_map_scores_flag_at_most_one_class():
    maps = 0.01 + 0.01 * torch.rand((5, 1, 16, 16), generator=torch.Generator().manual_seed(0))
    maps[3, 0, 0:4, 0:4] = 1.0
    sc = BD.map_scores(maps, BD.Trigger("square", 4, 0, 0).mask(16, 16), window=4, threshold=2.0)
    assert sc["flagged"].tolist() == [False, False, False, True, False]
    assert (sc["peak_row"][3], sc["peak_col"][3]) == (0, 0) and sc["trigger_mass"][3] > 0.8
    assert not BD.map_scores(maps, BD.Trigger().mask(16, 16), threshold=1e9)["flagged"].any()


def test_one_thread_restores_the_thread_count():
    n = torch.get_num_threads()
    with BD.one_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == n


def test_run_trial_is_seeded():
    plan = BD.trial_plan(0, 0, 16)
    tiny = {"n_samples": 2, "n_steps": 2, "norm": "2", "radius": 1.0, "refine_steps": 1}
    rows, maps = BD.run_trial(plan, tiny, epochs=1, distributions=("lowres", "uniform"))
    again, _ = BD.run_trial(plan, tiny, epochs=1, distributions=("lowres", "uniform"))
    assert len(rows) == 2 * 2 * 10 and set(maps) == {"clean_lowres", "clean_uniform", "poisoned_lowres",
                                                       "poisoned_uniform"}
    drop = ("train_seconds", "map_seconds")
    assert [{k: v for k, v in r.items() if k not in drop} for r in rows] == \
        [{k: v for k, v in r.items() if k not in drop} for r in again]
    assert maps["clean_lowres"].shape == (10, 16, 16) and all(r["target"] == plan["target"] for r in rows)


def _bd_rows(flags):
    import pandas as pd

    rows = []
    for trial, (kind, flag) in enumerate(flags):
        for c in range(10):
            rows.append({"trial": trial, "kind": kind, "distribution": "lowres", "class": c, "target": 3,
                         "anomaly": 5.0 if c == flag else 0.1 * c, "flagged": c == flag,
                         "trigger_mass": 0.5 if c == flag else 0.05, "attack_success": 1.0, "clean_accuracy": 0.9,
                         "pattern": "square", "trigger_size": 3})
    return pd.DataFrame(rows)


def test_detection_counts_a_flag_of_the_attacked_class_only():
    bd = _bd_rows([("poisoned", 3), ("clean", -1), ("poisoned", 7)])
    d = BD.detection(bd)
    assert d["flagged"].tolist() == [3, -1, 7] and d["rank_target"].tolist() == [1, 7, 7]
    t = BD.detection_table(bd).iloc[0]
    assert t["attacked class flagged"].startswith("1/2") and t["clean models flagged (false alarm)"].startswith("0/1")
    sweep = BD.threshold_sweep(bd, (0.5, 6))
    assert sweep["threshold"].tolist() == [0.5, 6]
    assert sweep["attacked class flagged"].str[:3].tolist() == ["1/2", "0/2"]
    assert sweep["clean models flagged (false alarm)"].str[:3].tolist() == ["1/1", "0/1"]
    s = BD.score_series(bd)
    assert len(s) == 5 and set(s["series"]) == set(BD.SERIES)
    assert s[s["series"] == BD.SERIES[0]]["mass"].tolist() == [0.5, 0.05]

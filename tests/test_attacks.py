"""Tests for cameras.attacks: PGD, the CAMERAS-focused PGD (Eq. 4) and the fair comparison."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cameras.attacks import (
    compare_attacks,
    focused_pgd_attack,
    pgd_attack,
    summarize_comparison,
)

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
EPS = 16 / 255


def small_cnn(seed: int = 0, classes: int = 10) -> nn.Module:
    """Seeded random CNN for 32 px inputs; no pooling, so the input matters (attacks are easy)."""
    torch.manual_seed(seed)
    model = nn.Sequential()
    model.add_module("conv1", nn.Conv2d(3, 16, 3, padding=1))
    model.add_module("relu1", nn.ReLU())
    model.add_module("conv2", nn.Conv2d(16, 32, 3, padding=1, stride=2))
    model.add_module("relu2", nn.ReLU())
    model.add_module("pool", nn.AdaptiveAvgPool2d(16))  # identity at 32 px, pools larger inputs
    model.add_module("flat", nn.Flatten())
    model.add_module("fc", nn.Linear(32 * 16 * 16, classes))
    with torch.no_grad():
        model.fc.weight.mul_(10)  # a sharp classifier, so that high confidence is reachable
    return model.eval()


def images(n: int = 4, size: int = 32, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g)


def centre_map(n: int, size: int = 32, half: int = 8) -> torch.Tensor:
    psi = torch.zeros(n, size, size)
    c = size // 2
    psi[:, c - half : c + half, c - half : c + half] = 1.0
    return psi


KW = dict(mean=MEAN, std=STD, eps=EPS, alpha=1 / 255, max_iter=60, confidence=0.99)


def test_pgd_reaches_least_likely_target_within_budget():
    model, x = small_cnn(), images()
    with torch.no_grad():
        ll = model((x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)).argmin(1)
    r = pgd_attack(model, x, **KW)
    assert torch.equal(r.target, ll)
    assert r.success.all(), r.confidence
    assert torch.equal(r.prediction, r.target)
    assert (r.confidence >= 0.99).all()
    # budget and valid image
    assert r.linf.max() <= EPS + 1e-6
    assert r.adv.min() >= 0 and r.adv.max() <= 1
    assert torch.allclose(r.delta, r.adv.cpu() - x, atol=1e-7)
    assert torch.allclose(r.l2, r.delta.flatten(1).norm(dim=1))
    # the model was not trained on anything: success must come from the perturbation
    assert (r.iterations > 0).all()


def test_budget_and_box_hold_with_random_start_and_bright_images():
    model = small_cnn()
    x = images()
    x[:2] = x[:2].clamp(0.9, 1.0)  # near the upper box edge
    r = pgd_attack(model, x, **(KW | dict(eps=4 / 255, max_iter=15, random_start=True)))
    assert r.linf.max() <= 4 / 255 + 1e-6
    assert r.adv.min() >= 0 and r.adv.max() <= 1


def test_stopping_rule_is_per_image():
    model, x = small_cnn(), images(4)
    r = pgd_attack(model, x, **KW)
    assert r.success.all()
    assert len(set(r.iterations.tolist())) > 1, "the test case should need different step counts"
    for i in {int(r.iterations.argmin()), int(r.iterations.argmax())}:
        alone = pgd_attack(model, x[i : i + 1], **KW)
        assert alone.iterations.item() == r.iterations[i].item()
        assert torch.allclose(alone.delta[0], r.delta[i], atol=1e-6)
        # one step fewer does not reach the target: the image stopped as soon as it could
        short = pgd_attack(model, x[i : i + 1], **(KW | dict(max_iter=int(r.iterations[i]) - 1)))
        assert not short.success.item()
    full = pgd_attack(model, x, **(KW | dict(stop_early=False)))
    assert (full.iterations == KW["max_iter"]).all()
    assert (full.l2 >= r.l2 - 1e-6).all()


def test_focused_with_beta_zero_is_plain_pgd_exactly():
    model, x = small_cnn(), images()
    psi = torch.rand(4, 32, 32, generator=torch.Generator().manual_seed(3))
    kw = KW | dict(max_iter=20)
    for rs in (False, True):
        plain = pgd_attack(model, x, random_start=rs, seed=7, **kw)
        focused = pgd_attack(model, x, saliency=psi, beta=0.0, random_start=rs, seed=7, **kw)
        assert torch.equal(plain.delta, focused.delta)
        assert torch.equal(plain.iterations, focused.iterations)
    other_seed = pgd_attack(model, x, random_start=True, seed=8, **kw)
    assert not torch.equal(other_seed.delta, plain.delta)


def test_large_beta_keeps_perturbation_inside_the_map():
    model, x = small_cnn(), images()
    psi = centre_map(4)
    kw = KW | dict(max_iter=25, stop_early=False)  # same number of steps for both
    plain = pgd_attack(model, x, **kw)
    focused = pgd_attack(model, x, saliency=psi, beta=50.0, **kw)
    outside = (1 - psi).unsqueeze(1)
    out_plain = (plain.delta * outside).flatten(1).norm(dim=1)
    out_focused = (focused.delta * outside).flatten(1).norm(dim=1)
    assert (out_focused < 0.5 * out_plain).all(), (out_focused, out_plain)
    inside_share = 1 - out_focused**2 / focused.l2.clamp_min(1e-12) ** 2
    assert (inside_share > 0.5).all()


def test_normalize_callable_equals_mean_std_and_loaded_model_duck_type():
    model, x = small_cnn(), images(2)
    m, s = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    kw = {k: v for k, v in KW.items() if k not in ("mean", "std")}
    a = pgd_attack(model, x, mean=MEAN, std=STD, **kw)
    b = pgd_attack(model, x, normalize=lambda t: (t - m) / s, **kw)
    assert torch.allclose(a.delta, b.delta) and torch.equal(a.iterations, b.iterations)

    class Loaded:  # what cameras.models.load_model returns, duck-typed
        def __init__(self):
            self.model, self.layer = model, "conv2"

        def normalize(self, t):
            return (t - m) / s

    c = pgd_attack(Loaded(), x, **kw)
    assert torch.allclose(a.delta, c.delta)


def test_bad_inputs_raise_clear_errors():
    model, x = small_cnn(), images(2)
    with pytest.raises(ValueError, match="normalisation"):
        pgd_attack(model, x)
    with pytest.raises(ValueError, match="pixel space"):
        pgd_attack(model, x * 4 - 2, **KW)
    with pytest.raises(ValueError, match="saliency"):
        pgd_attack(model, x, beta=1.0, **KW)
    with pytest.raises(ValueError, match="shape"):
        pgd_attack(model, x, saliency=torch.rand(3, 32, 32), beta=1.0, **KW)
    with pytest.raises(ValueError, match="eps"):
        pgd_attack(model, x, **(KW | dict(eps=-1.0)))
    with pytest.raises(ValueError, match="target"):
        pgd_attack(model, x, **(KW | dict(target=torch.tensor([0, 99]))))
    model.train()
    with pytest.raises(ValueError, match="eval"):
        pgd_attack(model, x, **KW)


def test_untargeted_mode_leaves_the_clean_class():
    model, x = small_cnn(), images()
    r = pgd_attack(model, x, **(KW | dict(target="untargeted")))
    assert r.success.all()
    assert (r.prediction != r.clean_prediction).all()
    assert torch.equal(r.target, r.clean_prediction)


def test_compare_attacks_is_paired_and_summary_uses_common_successes():
    model, x = small_cnn(), images()
    # a random CNN has no salient region: give the focused attack a large region and budget
    cmp = compare_attacks(model, x, saliency=centre_map(4, half=12), beta=50.0, image_ids=list("abcd"),
                          **(KW | dict(max_iter=100, eps=32 / 255)))
    df = cmp.rows
    assert list(df["image"]) == list("abcd")
    assert (df["plain_target"] == df["focused_target"]).all()
    s = cmp.summary
    assert s["n_images"] == 4 and s["n_common"] >= 2
    common = df[df["plain_success"] & df["focused_success"]]
    assert s["plain_l2_mean"] == pytest.approx(common["plain_l2"].mean())
    assert s["l2_change_pct"] == pytest.approx(
        100 * (common["focused_l2"].mean() - common["plain_l2"].mean()) / common["plain_l2"].mean()
    )

    # a failure with a huge norm must not enter the norm comparison
    rows = [
        dict(plain_success=True, focused_success=True, plain_l2=2.0, focused_l2=1.0,
             plain_linf=0.1, focused_linf=0.1, plain_iterations=5, focused_iterations=9),
        dict(plain_success=True, focused_success=False, plain_l2=2.0, focused_l2=100.0,
             plain_linf=0.1, focused_linf=0.1, plain_iterations=5, focused_iterations=300),
    ]
    s = summarize_comparison(rows)
    assert s["n_common"] == 1
    assert s["plain_success_rate"] == 1.0 and s["focused_success_rate"] == 0.5
    assert s["l2_change_pct"] == pytest.approx(-50.0)


def test_focused_attack_computes_cameras_map_itself():
    model, x = small_cnn(), images(2)
    r = focused_pgd_attack(model, x, layer="conv2", cameras_kwargs=dict(sizes=(32, 48)),
                           **(KW | dict(max_iter=10)))
    assert r.settings["beta"] == 50.0
    assert r.linf.max() <= EPS + 1e-6


def test_rms_penalty_equals_literal_penalty_with_rescaled_beta():
    """penalty_norm="rms" is the literal Eq. 4 penalty divided by sqrt(C*H*W)."""
    model, x = small_cnn(), images(3)
    psi = centre_map(3)
    kw = KW | dict(max_iter=25)
    n = x[0].numel()
    rms = pgd_attack(model, x, saliency=psi, beta=5.0, penalty_norm="rms", **kw)
    lit = pgd_attack(model, x, saliency=psi, beta=5.0 / n**0.5, penalty_norm="l2", **kw)
    assert torch.allclose(rms.delta, lit.delta, atol=1e-6)
    assert torch.equal(rms.iterations, lit.iterations)
    assert rms.settings["penalty_norm"] == "rms" and lit.settings["penalty_norm"] == "l2"
    # and it is a real change: the same beta in literal units holds the perturbation back more
    strong = pgd_attack(model, x, saliency=psi, beta=5.0, penalty_norm="l2", **kw)
    outside = (1 - psi)[:, None]
    assert (strong.delta * outside).flatten(1).norm(dim=1).sum() < (rms.delta * outside).flatten(1).norm(dim=1).sum()


def test_l2_step_respects_budget_and_reaches_target():
    model, x = small_cnn(), images()
    r = pgd_attack(model, x, step="l2", **KW)
    assert r.settings["step"] == "l2"
    assert r.linf.max() <= EPS + 1e-6
    assert r.adv.min() >= 0 and r.adv.max() <= 1
    assert r.success.all(), r.confidence
    sign = pgd_attack(model, x, **KW)
    assert not torch.allclose(r.delta, sign.delta)  # a different update rule


def test_variant_options_are_validated():
    model, x = small_cnn(), images(2)
    with pytest.raises(ValueError, match="penalty_norm"):
        pgd_attack(model, x, saliency=centre_map(2), beta=1.0, penalty_norm="l1", **KW)
    with pytest.raises(ValueError, match="step"):
        pgd_attack(model, x, step="adam", **KW)

"""The verdict page's rules: computed from numbers, in the fixed vocabulary."""

from __future__ import annotations

import pytest

from cameras.verdict import VERDICTS, Claim, claims, counts, markdown, table

L = ("efficientnet_lite0", "efficientnet_lite1")


def _numbers(cameras_wins: bool = True) -> dict:
    good, bad = (0.1, 0.9) if cameras_wins else (0.9, 0.1)
    return {
        "method": {"model": "efficientnet_lite0", "n_images": 10, "saturation_size": 924,
                   "max_size_spearman": {424: 0.9, 924: 1.0}, "steps_spearman": {5: 0.97, 8: 0.99},
                   "steps_max": 15},
        "qualitative": {"models": list(L), "n_images": 9,
                        "area": {m: {"cameras": 10.0 if cameras_wins else 30.0, "gradcam": 20.0} for m in L}},
        "pointing": {"models": list(L), "chance_hit": 25.0, "grid": {m: {
            "cameras": {"share": 80.0 if cameras_wins else 70.0, "hit": 99.0},
            "gradcam": {"share": 75.0, "hit": 98.0}, "center": {"share": 25.0, "hit": 25.0}} for m in L}},
        "density": {"models": list(L), "n_images": 1000, "black": {m: {
            "cameras": {"rho_plus": 3.0 if cameras_wins else 1.0, "rho_minus": 0.5 if cameras_wins else 0.8,
                        "rho_plus_lo": 2.8 if cameras_wins else 0.9, "rho_plus_hi": 3.2 if cameras_wins else 1.1},
            "gradcam": {"rho_plus": 2.0, "rho_minus": 0.6, "rho_plus_lo": 1.8, "rho_plus_hi": 2.2},
            "normgrad": {"rho_plus": 1.5, "rho_minus": 0.7, "rho_plus_lo": 1.3, "rho_plus_hi": 1.7}} for m in L}},
        "analysis": {"fig3": {"paper_extremal_area": [8, 9], "models": {m: {
            "cameras": {"area_needed": 5.0}, "gradcam": {"area_needed": 9.0}} for m in L}},
            "fig4": {"r": -0.4 if cameras_wins else 0.2, "lo": -0.6, "hi": -0.2, "n": 30,
                     "measure": "top-5 % IoU"},
            "fig5": {m: {"cameras": good, "gradcam": bad, "n_images": 1} for m in L}},
        "attacks": {"paper_l2_change_pct": -56.5, "fig6_eps": 12 / 255, "rows": [
            {"model": "efficientnet_lite0", "attack": "focused/l2/beta=50", "units": "l2", "beta": 50,
             "eps": 16 / 255, "n_images": 50, "plain_success": 1.0, "focused_success": 0.0, "l2_change_pct": None, "n_common": 0},
            {"model": "efficientnet_lite0", "attack": "focused/rms/beta=50", "units": "rms", "beta": 50,
             "eps": 16 / 255, "n_images": 50, "plain_success": 1.0, "focused_success": 0.4, "l2_change_pct": -48.5, "n_common": 50}]},
        "sanity": {"cascade": {"efficientnet_lite0": {"cameras": {"top": -0.04 if cameras_wins else 0.9, "all": 0.07},
                                                      "gradcam": {"top": 0.09, "all": 0.2},
                                                      "guided_backprop": {"top": 0.99, "all": 0.4}}},
                   "adversarial": {"efficientnet_lite0": {"cameras": {"gap": 0.1, "ordered": 0.6, "n_images": 40},
                                                          "gradcam": {"gap": 0.05, "ordered": 0.5, "n_images": 40}}},
                   "class_sensitivity": {"efficientnet_lite0": {"cameras": 1.2}}, "class_metric": "1-spearman"},
    }


def test_every_claim_gets_a_verdict_from_its_rule():
    cs = claims(numbers=_numbers())
    assert len(cs) >= 15 and len({c.id for c in cs}) == len(cs)
    assert all(c.verdict in VERDICTS and c.rule and c.ours and c.paper and c.chapter for c in cs)
    by = {c.id: c.verdict for c in cs}
    assert by["table1"] == by["table2"] == "not testable offline"
    assert by["alg1-size"] == by["table2-rank"] == by["fig1"] == by["fig4"] == "reproduced"
    assert by["eq4"] == "partly"  # Eq. 4 as written fails, another reading works
    assert "37.6" in next(c for c in cs if c.id == "error-27.5").ours  # recomputed from Table 1
    assert sum(counts(cs).values()) == len(cs)
    assert len(table(cs)) == len(cs) and "| claim |" in markdown(cs)


def test_verdicts_follow_the_numbers_when_cameras_loses():
    by = {c.id: c.verdict for c in claims(numbers=_numbers(cameras_wins=False))}
    assert by["table2-rank"] == "not reproduced" and by["table1-best"] == "not reproduced"
    assert by["fig1"] == "not reproduced" and by["fig4"] == "not reproduced"
    assert by["fig2"] == "not reproduced"


def test_unknown_verdicts_are_refused():
    with pytest.raises(ValueError, match="verdict must be one of"):
        Claim("x", "Sec. 1", "c", "p", "o", "maybe", "r", "01_method")


def test_map_density_rank_is_partly_within_the_intervals_or_with_models_missing():
    n = _numbers()
    n["density"]["black"]["efficientnet_lite0"]["cameras"]["rho_plus_lo"] = 1.9  # overlaps Grad-CAM's
    c = next(c for c in claims(numbers=n) if c.id == "table2-rank")
    assert c.verdict == "partly" and "overlap" in c.ours
    n = _numbers()
    n["density"]["not_computed"] = {"efficientnet_lite2": ["cameras", "normgrad"]}
    c = next(c for c in claims(numbers=n) if c.id == "table2-rank")
    assert c.verdict == "partly" and "EfficientNet-Lite2" in c.ours

"""cameras.experiments.agnostic: profiles, the ci run, resuming, identity, tables."""

from __future__ import annotations

import pandas as pd
import pytest

from cameras.experiments import agnostic as E
from cameras.runs import SettingsMismatch

#: the ci profile made smaller still for the test (same code paths)
SMALL = {"image_size": 32, "n_real": 3, "n_noise": 3, "cameras_sizes": 1}


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    return results, E.run("ci", results=results, progress=False, **SMALL)


def test_profiles_validate():
    for p in ("ci", "offline", "paper"):
        s = E.settings(p)
        assert s["profile"] == p and len(s["classes"]) >= 2
    off = E.settings("offline")
    assert len(off["classes"]) == 12 and len(off["models"]) == 3
    assert E.settings("ci", classes=["goldfish", "tabby"])["classes"] == [1, 281]
    with pytest.raises(ValueError, match="unknown profile"):
        E.settings("nope")
    with pytest.raises(ValueError, match="unknown setting"):
        E.settings("ci", n_images=3)
    with pytest.raises(ValueError, match="agnostic: unknown"):
        E.settings("ci", agnostic={"steps": 3})
    with pytest.raises(ValueError, match="n_samples"):
        E.settings("ci", agnostic={"n_samples": 0})
    with pytest.raises(ValueError, match="at least two"):
        E.settings("ci", classes=[1])


def test_ci_run_writes_every_table(ci_run):
    _, r = ci_run
    s = E.settings("ci", **SMALL)
    fid = r["fidelity"]
    assert len(fid) == len(s["classes"]) * len(E.CONTROLS) * 2
    assert not fid.duplicated(["model", "target", "control", "data"]).any()
    assert fid["rate"].between(0, 1).all() and fid["p_target"].between(0, 1).all()
    bounded = fid[fid["control"] != "none"]
    assert (bounded["norm_value"] <= s["agnostic"]["radius"]).all()
    assert (bounded["norm_value"] >= s["agnostic"]["radius"] * (1 - 1e-6)).all()
    assert len(r["cameras"]) == len(s["classes"])
    assert len(r["sanity"]) == len(s["sanity_classes"]) * len(s["sanity_depths"])
    assert (r["sanity"].query("depth == 0")["spearman"] - 1).abs().max() < 1e-9
    bd = r["backdoor"]
    assert len(bd) == s["backdoor_trials"] * 2 * len(s["backdoor_distributions"]) * 10
    assert bd["trigger_mass"].between(0, 1).all() and len(r["imagenet_backdoor"]) == 0


def test_second_run_resumes_without_recomputing(ci_run, monkeypatch):
    results, first = ci_run

    def boom(*a, **k):
        raise AssertionError("recomputed a finished unit")

    for name in ("_fidelity", "_cameras", "_sanity", "_backdoor"):
        monkeypatch.setattr(E, name, boom)
    monkeypatch.setattr("cameras.models.load_model", boom)
    again = E.run("ci", results=results, progress=False, **SMALL)
    for k in first:
        pd.testing.assert_frame_equal(first[k], again[k])


def test_other_settings_are_refused_not_mixed(ci_run):
    results, _ = ci_run
    with pytest.raises(SettingsMismatch, match="agnostic"):
        E.run("ci", results=results, progress=False, **{**SMALL, "agnostic": {"n_samples": 3}})


def test_tables_and_figures(ci_run):
    results, r = ci_run
    s = E.settings("ci", **SMALL)
    t = E.fidelity_table(r["fidelity"])
    assert len(t) == len(s["classes"]) and t.isna().sum().sum() == 0
    assert ("", "class") in t.columns and ("ImageNet images", "target map") in t.columns
    summ = E.summary_rates(r["fidelity"])
    assert set(summ["map added"]) == set(E.CONTROL_NAMES.values())
    det = E.detection_table(r["backdoor"])
    assert len(det) == len(s["backdoor_distributions"]) and "attacked class flagged" in det
    assert E.beats_random(r["fidelity"]).shape[0] == len(s["classes"]) * 2
    from cameras.engine import MapStore

    store = MapStore(E.EXPERIMENT.folder(s, results) / "maps")
    m = s["models"][0]
    figs = [E.plot_pairs(m, s["classes"], store.read(m, "agnostic"), store.read(m, "cameras"), size=32),
            E.plot_fidelity(r["fidelity"]), E.plot_sanity(r["sanity"], store.read(m, "sanity")),
            E.plot_backdoor_maps(r["backdoor"], store.read("backdoor", "trial0"), 0, "lowres"),
            E.plot_backdoor_scores(r["backdoor"], s["anomaly_threshold"])]
    assert all(f.get_figwidth() <= 7.5 for f in figs)


def test_trial_plan_is_seeded_and_fits():
    s = E.settings("offline")
    plans = [E.trial_plan(s, i) for i in range(s["backdoor_trials"])]
    assert plans == [E.trial_plan(s, i) for i in range(s["backdoor_trials"])]
    assert len({p["target"] for p in plans}) > 3 and len({p["pattern"] for p in plans}) > 1
    for p in plans:
        assert 0 <= p["row"] <= s["backdoor_size"] - p["trigger_size"]
        assert p["row"] in (0, s["backdoor_size"] - p["trigger_size"])


def test_detection_counts_a_flag_of_the_attacked_class_only():
    rows = []
    for kind, flag in (("poisoned", 3), ("clean", -1)):
        for c in range(10):
            rows.append({"trial": 0, "kind": kind, "distribution": "lowres", "class": c, "target": 3,
                         "anomaly": 5.0 if c == flag else 0.1 * c, "flagged": c == flag,
                         "trigger_mass": 0.5 if c == flag else 0.05, "attack_success": 1.0, "clean_accuracy": 0.9,
                         "pattern": "square", "trigger_size": 3})
    d = E.detection(pd.DataFrame(rows))
    assert d.set_index("kind").loc["poisoned", "flagged"] == 3 and d.set_index("kind").loc["clean", "flagged"] == -1
    t = E.detection_table(pd.DataFrame(rows)).iloc[0]
    assert t["attacked class flagged"].startswith("1/1") and t["clean models flagged (false alarm)"].startswith("0/1")

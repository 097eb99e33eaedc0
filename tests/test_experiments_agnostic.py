"""cameras.experiments.agnostic: profiles, the ci run, resuming, identity, tables."""

from __future__ import annotations

import pandas as pd
import pytest

from cameras import agnostic as A
from cameras import backdoor as BD
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
    assert len(fid) == len(s["classes"]) * len(A.CONTROLS) * 2
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
    t = A.fidelity_table(r["fidelity"])
    assert len(t) == len(s["classes"]) and t.isna().sum().sum() == 0
    assert "class" in t.columns and "ImageNet images: target map" in t.columns
    summ = A.summary_rates(r["fidelity"])
    assert set(summ["map added"]) == set(A.CONTROL_NAMES.values())
    det = BD.detection_table(r["backdoor"])
    assert len(det) == len(s["backdoor_distributions"]) and "attacked class flagged" in det
    assert A.beats_random(r["fidelity"]).shape[0] == len(s["classes"]) * 2
    from cameras.engine import MapStore

    store = MapStore(E.EXPERIMENT.folder(s, results) / "maps")
    m = s["models"][0]
    figs = [E.plot_pairs(m, s["classes"], store.read(m, "agnostic"), store.read(m, "cameras")),
            E.plot_fidelity(r["fidelity"]), E.plot_sanity(r["sanity"], store.read(m, "sanity")),
            E.plot_backdoor_maps(r["backdoor"], store.read("backdoor", "trial0"), 0, "lowres"),
            E.plot_backdoor_scores(r["backdoor"], s["anomaly_threshold"])]
    assert all(f.get_figwidth() <= 7.5 for f in figs)
    # missing maps are "not run" panels, not errors
    assert E.plot_pairs(m, s["classes"], {}, {}).get_figwidth() <= 7.5


def test_the_chapter_uses_the_library_plan():
    s = E.settings("offline")
    plans = [BD.trial_plan(s["seed"], i, s["backdoor_size"], s["backdoor_patterns"], s["backdoor_trigger_sizes"])
             for i in range(s["backdoor_trials"])]
    assert len({p["target"] for p in plans}) > 3 and len({p["pattern"] for p in plans}) > 1
    for p in plans:
        assert p["trigger_size"] in s["backdoor_trigger_sizes"] and p["row"] in (0, 16 - p["trigger_size"])
    with pytest.raises(ValueError, match="backdoor_size"):
        E.settings("ci", backdoor_size=18)
    with pytest.raises(ValueError, match="backdoor_trigger_sizes"):
        E.settings("ci", backdoor_trigger_sizes=[9])

"""cameras.experiments.attacks: rows of a tiny ci run, pairing, resume, figure data, identity of the
results, the committed offline results, paper-profile errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

import cameras.attacks
from cameras.experiments import attacks as A

TINY = dict(
    n_images=1,
    max_iter=3,
    cameras_sizes=[224],
    variants=[{"penalty_norm": "l2", "beta": 50.0}, {"penalty_norm": "rms", "beta": 50.0}],
    figure_images=1,
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    df = A.run("ci", results=results, device="cpu", progress=False, **TINY)
    return results, df


def test_rows_one_per_image_and_attack(tiny_run):
    results, df = tiny_run
    assert (results / "_ci" / "attacks" / "attacks.csv").is_file()  # ci never writes results/attacks
    assert not (results / "attacks").exists()
    assert sorted(df["attack"]) == sorted(["plain", "focused/l2/beta=50", "focused/rms/beta=50"])
    assert set(df["model"]) == {"efficientnet_lite0"} and set(df["image"]) == {"chelsea"}
    assert df["target"].nunique() == 1  # the same least-likely target for every attack
    assert (df["linf"] <= 16 / 255 + 1e-6).all() and (df["l2"] >= 0).all()
    assert (df["iterations"] <= 3).all()
    assert df.loc[df["attack"] == "plain", "beta"].iloc[0] == 0.0
    assert df[["confidence", "l2", "psi_mean"]].notna().all().all()


def test_summary_pairs_plain_with_each_focused_attack(tiny_run):
    _, df = tiny_run
    p = A.paired(df)
    assert len(p) == 2 and (p["plain_target"] == p["focused_target"]).all()
    s = A.summary(df)
    assert list(s["attack"]) == ["focused/l2/beta=50", "focused/rms/beta=50"]
    assert (s["n_images"] == 1).all()
    assert s["plain_success_rate"].between(0, 1).all()


def test_second_call_resumes_without_computing(tiny_run, monkeypatch):
    results, df = tiny_run

    def boom(*a, **k):
        raise AssertionError("recomputed an attack that was in the results")

    monkeypatch.setattr(cameras.attacks, "pgd_attack", boom)
    monkeypatch.setattr(cameras.attacks, "cameras_saliency", boom)
    meta = results / "_ci" / "attacks" / "attacks.meta.json"
    before = meta.read_text()
    again = A.run("ci", results=results, device="cpu", progress=False, **TINY)
    assert len(again) == len(df)
    assert list(again["l2"]) == list(df["l2"])
    assert meta.read_text() == before  # nothing to do: no new session in the sidecar


def test_extending_the_sweep_computes_only_the_new_attack(tiny_run, monkeypatch):
    results, df = tiny_run
    calls = []
    real = cameras.attacks.pgd_attack

    def spy(*a, **k):
        calls.append(k.get("beta", 0.0))
        return real(*a, **k)

    monkeypatch.setattr(cameras.attacks, "pgd_attack", spy)
    more = dict(TINY, variants=TINY["variants"] + [{"penalty_norm": "l2", "beta": 0.5}])
    out = A.run("ci", results=results, device="cpu", progress=False, **more)
    assert calls == [0.5]
    assert len(out) == len(df) + 1


def test_fig6_data_and_plots(tiny_run):
    results, df = tiny_run
    d = A.fig6_data("ci", results=results, **TINY)
    assert d["ids"] == ["chelsea"] and d["x"].shape == (1, 3, 224, 224)
    assert d["psi"].shape == (1, 224, 224) and 0 <= d["psi"].min() and d["psi"].max() <= 1
    assert d["attacks"] == ["plain", "focused/l2/beta=50", "focused/rms/beta=50"]
    plain = df[df["attack"] == "plain"].iloc[0]
    delta = d["delta"]["plain"][0]
    assert np.abs(delta).max() <= 16 / 255 + 1e-3
    assert np.linalg.norm(delta) == pytest.approx(plain["l2"], rel=1e-2)  # float16 storage
    assert isinstance(A.plot_fig6(d), Figure)
    assert isinstance(A.plot_sweep(A.summary(df)), Figure)


def test_settings_are_validated():
    with pytest.raises(ValueError, match="unknown profile"):
        A.settings("fast")
    with pytest.raises(ValueError, match="unknown setting"):
        A.settings("ci", n_imgs=3)
    with pytest.raises(ValueError, match="variant"):
        A.settings("ci", variants=[{"beta": 1.0}])
    with pytest.raises(ValueError, match="penalty_norm"):
        A.settings("ci", variants=[{"penalty_norm": "l1", "beta": 1.0}])
    with pytest.raises(ValueError, match="max_iter"):
        A.settings("ci", max_iter=0)
    s = A.settings("offline", n_images=None, models="efficientnet_lite0")
    assert s["n_images"] == A.PROFILES["offline"]["n_images"] and s["models"] == ["efficientnet_lite0"]
    assert {"penalty_norm": "l2", "beta": 50.0} in A.PROFILES["offline"]["variants"]  # the paper's


def test_changed_attack_settings_on_complete_results_are_an_error(tiny_run, monkeypatch):
    from cameras.runs import SettingsMismatch

    results, _ = tiny_run
    monkeypatch.setattr(cameras.attacks, "pgd_attack", lambda *a, **k: pytest.fail("computed"))
    with pytest.raises(SettingsMismatch, match="max_iter=3"):
        A.run("ci", results=results, device="cpu", progress=False, **{**TINY, "max_iter": 5})
    # batch sizes and the variants swept do not define the values of a row
    assert len(A.run("ci", results=results, device="cpu", progress=False,
                     **{**TINY, "batch_size": 1, "variants": TINY["variants"][:1]})) == 2


def test_offline_images_are_spread_over_the_sample():
    pytest.importorskip("PIL")
    try:
        items = A.items({**A.settings("offline"), "n_images": 5})
    except FileNotFoundError:
        pytest.skip("ImageNet sample not available")
    assert len(items) == 5 and len({it.label for it in items}) == 5
    assert items[0].label == 0 and items[-1].label == 999


def test_committed_offline_results_load_without_computing(tmp_path, monkeypatch):
    """attacks.csv also holds Lite2 rows (an unfinished GPU run): the offline profile's identity
    check accepts the file, its rows and the figure load, and nothing is computed."""
    stored = Path(__file__).resolve().parents[1] / "results" / "attacks"
    try:
        A.items(A.settings("offline"))
    except FileNotFoundError:
        pytest.skip("ImageNet sample not available")
    shutil.copytree(stored, tmp_path / "attacks")
    monkeypatch.setattr(cameras.attacks, "pgd_attack", lambda *a, **k: pytest.fail("computed"))
    df = A.run("offline", results=tmp_path, device="cpu", progress=False)
    assert len(df) == 2 * 120 * 6 and set(df["model"]) == {"efficientnet_lite0", "efficientnet_lite1"}
    assert "efficientnet_lite2" in set(pd.read_csv(tmp_path / "attacks" / "attacks.csv")["model"])
    d = A.fig6_data("offline", results=tmp_path)
    assert d["ids"] == list(df["image"].iloc[:3]) and len(d["attacks"]) == 6
    assert sorted(p.name for p in (tmp_path / "attacks").iterdir()) == sorted(p.name for p in stored.iterdir())


def test_paper_profile_fails_early_without_data(monkeypatch):
    import cameras.models
    from cameras.data import MissingDataError

    monkeypatch.delenv("CAMERAS_DATA_ROOT", raising=False)
    monkeypatch.setattr(cameras.models, "load_model", lambda *a, **k: pytest.fail("loaded a model"))
    with pytest.raises(MissingDataError, match="CAMERAS_DATA_ROOT"):
        A.run("paper", device="cpu")


def test_paper_profile_names_the_imagenet_layout(tmp_path, monkeypatch):
    from cameras.data import MissingDataError

    monkeypatch.setenv("CAMERAS_DATA_ROOT", str(tmp_path))
    with pytest.raises(MissingDataError, match="imagenet/val"):
        A.run("paper", device="cpu")

"""cameras.experiments.attacks: rows of a tiny ci run, pairing, resume, figure data, identity of the
results, the committed offline results, paper-profile errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
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
    fig6_images=1,
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    df = A.run("ci", results=results, device="cpu", progress=False, **TINY)
    return results, df


def test_rows_one_per_budget_image_and_attack(tiny_run):
    results, df = tiny_run
    folder = results / "_ci" / "attacks"  # ci never writes results/attacks
    assert (folder / "attacks_eps16.csv").is_file() and (folder / "attacks_eps12.csv").is_file()
    assert not (results / "attacks").exists()
    assert sorted(df["attack"]) == sorted(2 * ["plain", "focused/l2/beta=50", "focused/rms/beta=50"])
    assert set(df["model"]) == {"efficientnet_lite0"} and set(df["image"]) == {"chelsea"}
    assert sorted(set(df["eps"] * 255)) == pytest.approx([12, 16])  # the sweep's and Fig. 6's budget
    assert df["target"].nunique() == 1  # the same least-likely target for every attack
    assert (df["linf"] <= df["eps"] + 1e-6).all() and (df["l2"] >= 0).all()
    assert (df["iterations"] <= 3).all()
    assert df.loc[df["attack"] == "plain", "beta"].iloc[0] == 0.0
    assert df[["confidence", "l2", "psi_mean"]].notna().all().all()
    assert df["sizes_kept"].isin([1]).all()  # one size (224 px): Algorithm 1 keeps it


def test_summary_pairs_plain_with_each_focused_attack(tiny_run):
    results, df = tiny_run
    p = A.paired(df)
    assert len(p) == 4 and (p["plain_target"] == p["focused_target"]).all()
    s = A.summary(df)
    assert list(s["attack"]) == 2 * ["focused/l2/beta=50", "focused/rms/beta=50"]
    assert list(s["eps"] * 255) == pytest.approx([16, 16, 12, 12])
    assert (s["n_images"] == 1).all()
    assert s["plain_success_rate"].between(0, 1).all()
    cov = A.coverage(A.settings("ci", **TINY), results=results)
    assert list(cov["complete"]) == [1, 1] and list(cov["not_run"]) == [0, 0]


def test_second_call_resumes_without_computing(tiny_run, monkeypatch):
    results, df = tiny_run

    def boom(*a, **k):
        raise AssertionError("recomputed an attack that was in the results")

    monkeypatch.setattr(cameras.attacks, "pgd_attack", boom)
    monkeypatch.setattr(cameras.attacks, "cameras_saliency", boom)
    metas = sorted((results / "_ci" / "attacks").glob("*.meta.json"))
    before = [m.read_text() for m in metas]
    again = A.run("ci", results=results, device="cpu", progress=False, **TINY)
    assert len(again) == len(df)
    assert list(again["l2"]) == list(df["l2"])
    assert len(metas) == 2 and [m.read_text() for m in metas] == before  # nothing to do: no new session


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
    assert calls == [0.5, 0.5]  # once per budget
    assert len(out) == len(df) + 2


def test_fig6_data_and_plots(tiny_run):
    results, df = tiny_run
    d = A.fig6_data("ci", results=results, **TINY)
    assert d["ids"] == ["chelsea"] and d["x"].shape == (1, 3, 224, 224) and d["eps"] == pytest.approx(12 / 255)
    assert (results / "_ci" / "attacks" / "fig6_efficientnet_lite0_eps12.npz").is_file()
    assert d["psi"].shape == (1, 224, 224) and 0 <= d["psi"].min() and d["psi"].max() <= 1
    assert d["attacks"] == ["plain", "focused/l2/beta=50", "focused/rms/beta=50"]
    plain = df[(df["attack"] == "plain") & np.isclose(df["eps"], 12 / 255)].iloc[0]
    delta = d["delta"]["plain"][0]
    assert np.abs(delta).max() <= 12 / 255 + 1e-3
    assert np.linalg.norm(delta) == pytest.approx(plain["l2"], rel=1e-2)  # float16 storage
    assert isinstance(A.plot_fig6(d, attacks=d["attacks"], adversarial=["plain"]), Figure)
    assert isinstance(A.plot_sweep(A.summary(df)), Figure)
    assert A.attack_label("focused/l2/beta=50") == "Eq. 4, β=50" and A.attack_label("plain") == "plain PGD"
    with pytest.raises(FileNotFoundError, match="Fig. 6"):
        A.fig6_data("ci", results=results / "nowhere", **TINY)


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
    with pytest.raises(SettingsMismatch, match="methods.cameras"):  # Psi's sizes define the focused rows
        A.run("ci", results=results, device="cpu", progress=False, **{**TINY, "cameras_sizes": [224, 256]})
    # batch sizes and the variants swept do not define the values of a row
    assert len(A.run("ci", results=results, device="cpu", progress=False,
                     **{**TINY, "batch_size": 1, "variants": TINY["variants"][:1]})) == 4


def test_identity_records_the_budget_and_psis_full_settings():
    s = A.settings("offline")
    ident = A.EXPERIMENT.identity_of(s, "attacks_eps12.csv")
    assert ident["eps"] == pytest.approx(12 / 255) and A.file_name(s["eps"]) == "attacks_eps16.csv"
    assert ident["methods"]["cameras"] == {"sizes": s["cameras_sizes"], "batch_size": None, "progress": None,
                                           "keep": "prediction", "layer": "_head_act"}


def test_offline_images_are_spread_over_the_sample():
    pytest.importorskip("PIL")
    try:
        items = A.items({**A.settings("offline"), "n_images": 5})
    except FileNotFoundError:
        pytest.skip("ImageNet sample not available")
    assert len(items) == 5 and len({it.label for it in items}) == 5
    assert items[0].label == 0 and items[-1].label == 999


def test_committed_offline_results_load_without_computing(tmp_path, monkeypatch):
    """The stored rows pass the identity check and load, nothing is computed or written; the
    images whose rows are not stored are counted as not run; the verdict's numbers come from them."""
    stored = Path(__file__).resolve().parents[1] / "results" / "attacks"
    s = A.settings("offline")
    try:
        A.items(s)
    except FileNotFoundError:
        pytest.skip("ImageNet sample not available")
    shutil.copytree(stored, tmp_path / "attacks")
    monkeypatch.setattr(cameras.attacks, "pgd_attack", lambda *a, **k: pytest.fail("computed"))
    df = A.EXPERIMENT.rows(s, tmp_path)
    cov = A.coverage(s, results=tmp_path)
    assert list(cov["images"]) == [120, 120, 12] and (cov["complete"] > 0).all()
    assert (df.groupby(["eps", "model", "image"]).size() == 6).all()  # complete images only
    assert (df["sizes_kept"].between(1, 8)).all()
    assert (df[np.isclose(df["eps"], 16 / 255)]["sizes_kept"] == 8).all()  # carried over: Psi unchanged
    d = A.fig6_data("offline", results=tmp_path)
    assert len(d["ids"]) == 3 and len(d["attacks"]) == 6 and d["eps"] == pytest.approx(12 / 255)
    v = A.verdict_numbers(tmp_path)
    assert v["paper_l2_change_pct"] == -56.5 and v["fig6_eps"] == pytest.approx(12 / 255)
    lit = [r for r in v["rows"] if r["units"] == "l2" and r["beta"] == 50]
    assert lit and all(r["n_common"] == 0 or r["l2_change_pct"] is not None for r in v["rows"])
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

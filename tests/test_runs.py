"""Resumable result files (cameras.runs): crashes, Ctrl-C, truncated lines, metadata."""

from __future__ import annotations

import csv
import json

import pytest

from cameras.runs import ResultsWriter, meta_path, read_results, run_evaluation

KEY = ("model", "method", "image", "target")


def items(n=20):
    return [{"model": "m", "method": "gradcam", "image": f"img{i:03d}", "target": i % 3}
            for i in range(n)]


def compute(item):
    return {**item, "score": int(item["image"][3:]) * 10, "settings": {"sizes": [1, 2]}}


def rows_of(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


class Crash(Exception):
    pass


def crashing_after(n, exc=Crash):
    calls = {"n": 0}

    def fn(item):
        if calls["n"] == n:
            raise exc("simulated crash")
        calls["n"] += 1
        return compute(item)

    return fn


@pytest.mark.parametrize("exc", [Crash, KeyboardInterrupt])
def test_crash_then_resume_has_no_duplicates_and_no_losses(tmp_path, exc):
    path = tmp_path / "res.csv"
    with pytest.raises(exc):
        run_evaluation(items(), crashing_after(7, exc), path, progress=False)
    assert len(rows_of(path)) == 7
    seen = []

    def fn(item):
        seen.append(item["image"])
        return compute(item)

    stats = run_evaluation(items(), fn, path, progress=False)
    assert stats.written == 13 and stats.skipped_items == 7 and stats.total_rows == 20
    assert seen == [f"img{i:03d}" for i in range(7, 20)]  # nothing recomputed
    rows = rows_of(path)
    assert [r["image"] for r in rows] == [f"img{i:03d}" for i in range(20)]
    assert all(int(r["score"]) == int(r["image"][3:]) * 10 for r in rows)
    # a third run does nothing
    stats = run_evaluation(items(), fn, path, progress=True)
    assert stats.written == 0 and stats.skipped_items == 20 and len(rows_of(path)) == 20


def test_truncated_last_line_is_dropped_and_recomputed(tmp_path):
    path = tmp_path / "res.csv"
    run_evaluation(items(5), compute, path, progress=False)
    with open(path, "a") as f:
        f.write("m,gradcam,img005,2,5")  # a crash in the middle of writing row 6
    with pytest.warns(RuntimeWarning, match="incomplete last row"):
        w = ResultsWriter(path)
    assert len(w) == 5 and not w.done(("m", "gradcam", "img005", 2))
    assert w.recovered_truncated
    w.close()
    stats = run_evaluation(items(8), compute, path, progress=False)
    assert stats.written == 3
    rows = rows_of(path)
    assert [r["image"] for r in rows] == [f"img{i:03d}" for i in range(8)]
    assert rows[5]["score"] == "50"
    sessions = json.loads(meta_path(path).read_text())["sessions"]
    assert any(s["recovered_truncated_row"] for s in sessions)


def test_last_line_with_missing_fields_is_dropped_but_corruption_inside_raises(tmp_path):
    path = tmp_path / "res.csv"
    run_evaluation(items(3), compute, path, progress=False)
    text = path.read_text()
    path.write_text(text + "m,gradcam,img003\n")
    with pytest.warns(RuntimeWarning):
        w = ResultsWriter(path)
    assert len(w) == 3
    w.close()
    lines = path.read_text().splitlines()
    lines.insert(2, "m,gradcam")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="corrupted"):
        ResultsWriter(path)


def test_partial_header_is_rewritten(tmp_path):
    path = tmp_path / "res.csv"
    path.write_text("model,meth")
    with pytest.warns(RuntimeWarning):
        run_evaluation(items(2), compute, path, progress=False)
    rows = rows_of(path)
    assert len(rows) == 2 and "score" in rows[0]


def test_writer_semantics(tmp_path):
    path = tmp_path / "sub" / "res.csv"
    with ResultsWriter(path, meta={"settings": {"num_masks": 8}}, device="cpu") as w:
        assert w.write({"model": "m", "method": "rise", "image": "a", "target": 1, "v": 0.5})
        assert not w.write({"model": "m", "method": "rise", "image": "a", "target": "1", "v": 9})
        assert w.done(("m", "rise", "a", 1)) and w.done({"model": "m", "method": "rise",
                                                          "image": "a", "target": 1})
        with pytest.raises(ValueError, match="does not have"):
            w.write({"model": "m", "method": "rise", "image": "b", "target": 1, "zzz": 1})
        with pytest.raises(ValueError, match="key column"):
            w.write({"model": "m", "image": "b", "target": 1})
    # rows are on disk right after write (flushed), and values round-trip
    assert rows_of(path) == [{"model": "m", "method": "rise", "image": "a", "target": "1",
                              "v": "0.5"}]
    with pytest.raises(ValueError, match="columns"):
        ResultsWriter(path, columns=["model", "method", "image", "target", "other"])


def test_meta_sidecar_records_environment_and_sessions(tmp_path):
    path = tmp_path / "res.csv"
    run_evaluation(items(2), compute, path, meta={"settings": {"sizes": [224, 324]}},
                   device="cpu", progress=False)
    doc = json.loads(meta_path(path).read_text())
    assert meta_path(path).name == "res.meta.json"
    (s,) = doc["sessions"]
    env = s["environment"]
    for k in ("torch", "torchvision", "cameras", "python", "numpy", "device", "torchray"):
        assert env[k], k
    assert s["meta"] == {"settings": {"sizes": [224, 324]}}
    assert doc["key"] == list(KEY)
    with pytest.warns(RuntimeWarning, match="different meta"):
        run_evaluation(items(3), compute, path, meta={"settings": {"sizes": [224]}},
                       progress=False)
    doc = json.loads(meta_path(path).read_text())
    assert len(doc["sessions"]) == 2 and doc["sessions"][1]["rows_at_start"] == 2


def test_items_with_several_rows_resume_inside_an_item(tmp_path):
    path = tmp_path / "res.csv"
    images = ["a", "b", "c"]

    def keys_of(img):
        return [("m", "g", img, t) for t in range(3)]

    calls = []

    def fn(img):
        calls.append(img)
        return [{"model": "m", "method": "g", "image": img, "target": t, "v": t} for t in range(3)]

    # a crash after the first row of image "b" was written
    with ResultsWriter(path, columns=["model", "method", "image", "target", "v"]) as w:
        for r in fn("a") + fn("b")[:1]:
            w.write(r)
    calls.clear()
    stats = run_evaluation(images, fn, path, keys_of=keys_of, progress=False)
    assert calls == ["b", "c"]  # "a" complete: skipped; "b" partial: recomputed
    assert stats.written == 5
    rows = rows_of(path)
    keys = [(r["image"], r["target"]) for r in rows]
    assert len(keys) == len(set(keys)) == 9


def test_read_results_parses_settings_and_ignores_a_partial_line(tmp_path):
    path = tmp_path / "res.csv"
    run_evaluation(items(3), compute, path, progress=False)
    with open(path, "a") as f:
        f.write("m,gradcam,img0")
    df = read_results(path)
    assert len(df) == 3 and df["settings"][0] == {"sizes": [1, 2]}


def test_items_must_hold_the_key(tmp_path):
    with pytest.raises(TypeError, match="keys_of"):
        run_evaluation([1, 2], compute, tmp_path / "x.csv", progress=False)
    with pytest.raises(KeyError):
        run_evaluation([{"model": "m"}], compute, tmp_path / "y.csv", progress=False)

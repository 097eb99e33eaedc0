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


# -- result files that never lie -----------------------------------------------------------
def _write(path, rows, identity=None, meta=None):
    with ResultsWriter(path, identity=identity, meta=meta,
                       columns=["model", "method", "image", "target", "v"]) as w:
        for r in rows:
            w.write(r)


def _row(i, v=None):
    return {"model": "m", "method": "g", "image": f"i{i}", "target": 0, "v": i if v is None else v}


def test_changed_settings_on_a_complete_file_are_refused(tmp_path):
    from cameras.runs import SettingsMismatch, check_identity

    path = tmp_path / "res.csv"
    ident = {"cameras_sizes": [224, 324, 424], "insdel_steps": 4, "n": 1}
    _write(path, [_row(i) for i in range(3)], identity=ident)
    check_identity(path, dict(ident))  # same settings (tuples and lists alike): fine
    check_identity(path, {**ident, "cameras_sizes": (224, 324, 424)})
    changed = {**ident, "cameras_sizes": [224], "insdel_steps": 16}
    with pytest.raises(SettingsMismatch) as err:
        check_identity(path, changed)
    msg = str(err.value)
    assert "cameras_sizes=[224, 324, 424], insdel_steps=4" in msg
    assert "cameras_sizes=[224], insdel_steps=16" in msg and "n=" not in msg
    assert "--results" in msg and "\n" not in msg
    with pytest.raises(SettingsMismatch):
        ResultsWriter(path, identity=changed)
    # an empty or missing file takes any settings; a file without recorded settings does not
    check_identity(tmp_path / "none.csv", changed)
    _write(tmp_path / "old.csv", [_row(0)])
    with pytest.raises(SettingsMismatch, match="does not record the settings"):
        check_identity(tmp_path / "old.csv", changed)
    assert json.loads(meta_path(path).read_text())["identity"] == ident


def test_quoted_newlines_and_commas_round_trip_and_resume(tmp_path):
    path = tmp_path / "res.csv"
    odd = 'line one\nline "two", with a comma\r\nand a third'
    _write(path, [_row(0, odd), _row(1, "é ü ✓")])
    w = ResultsWriter(path)  # reopening neither corrupts nor truncates
    assert len(w) == 2 and not w.recovered_truncated
    w.write(_row(2, "x"))
    w.close()
    df = read_results(path)
    assert list(df["v"]) == [odd, "é ü ✓", "x"] and list(df["image"]) == ["i0", "i1", "i2"]


def test_a_crash_inside_a_quoted_field_or_a_utf8_character_is_the_tail(tmp_path):
    path = tmp_path / "res.csv"
    _write(path, [_row(0), _row(1)])
    good = path.read_bytes()
    for tail in (b'm,g,i2,0,"half a\nfield', "m,g,i2,0,é".encode()[:-1],
                 b'm,g,i2,0,"open\n'):
        path.write_bytes(good + tail)
        assert len(read_results(path)) == 2
        with pytest.warns(RuntimeWarning, match="incomplete last row"):
            w = ResultsWriter(path)
        w.write(_row(2))
        w.close()
        assert path.read_bytes() == good + b"m,g,i2,0,2\n"  # the next row is not glued to the tail
        path.write_bytes(good)


def test_damage_before_the_last_row_raises_in_writer_and_reader(tmp_path):
    from cameras.runs import ResultsError

    path = tmp_path / "res.csv"
    _write(path, [_row(i) for i in range(4)])
    lines = path.read_bytes().split(b"\n")
    damaged = {
        "non-UTF-8": lines[:2] + [lines[2].replace(b"i1", b"i\xff")] + lines[3:],
        "extra field": lines[:2] + [lines[2] + b",9"] + lines[3:],
        "short row": lines[:2] + [b"m,g,i1"] + lines[3:],
        "quoting": lines[:2] + [b'm,g,"i1"x,0,1'] + lines[3:],
    }
    for what, ls in damaged.items():
        path.write_bytes(b"\n".join(ls))
        with pytest.raises(ResultsError, match="corrupted"):
            ResultsWriter(path)
        with pytest.raises(ResultsError, match="corrupted"):
            read_results(path)
        assert path.read_bytes() == b"\n".join(ls), what  # untouched


@pytest.mark.parametrize("content", [b"[]", b"null", b"42", b'"x"', b'{"sessions": {}}',
                                     b'{"sessions": [1]}', b'{"identity": []}', b"{not json",
                                     b'{"sessions": ["\xff"]}'])
def test_a_bad_sidecar_is_refused_at_open_and_kept(tmp_path, content):
    from cameras.runs import ResultsError

    path = tmp_path / "res.csv"
    meta_path(path).write_bytes(content)
    computed = []

    def fn(item):
        computed.append(item)
        return compute(item)

    with pytest.raises(ResultsError, match="sidecar"):
        run_evaluation(items(2), fn, path, progress=False)
    assert computed == [] and not path.exists()
    assert meta_path(path).read_bytes() == content


def test_a_second_writer_is_refused(tmp_path):
    import subprocess
    import sys

    from cameras.runs import ResultsLocked

    path = tmp_path / "res.csv"
    w = ResultsWriter(path, identity={"a": 1})
    w.write(_row(0))
    with pytest.raises(ResultsLocked, match="another writer"):
        ResultsWriter(path, identity={"a": 1})
    code = ("import sys; from cameras.runs import ResultsWriter, ResultsLocked\n"
            "try:\n    ResultsWriter(sys.argv[1])\nexcept ResultsLocked as e:\n"
            "    print(e); sys.exit(3)\n")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True)
    assert out.returncode == 3 and "another writer" in out.stdout
    w.close()
    with ResultsWriter(path, identity={"a": 1}) as w2:  # free again after close
        w2.write(_row(1))
    assert len(read_results(path)) == 2


def test_identity_methods_may_be_added_but_not_changed(tmp_path):
    from cameras.runs import SettingsMismatch, check_identity

    path = tmp_path / "res.csv"
    ident = {"sizes": [1, 2], "methods": {"rise": {"num_masks": 8, "scores": "softmax"}}}
    _write(path, [_row(0)], identity=ident)
    more = {"sizes": [1, 2], "methods": {"rise": {"num_masks": 8, "scores": "softmax"}, "g": {}}}
    check_identity(path, more)  # a new method adds rows
    check_identity(path, {"sizes": [1, 2], "methods": {"g": {}}})  # a subset reads its own rows
    with ResultsWriter(path, identity=more, columns=["model", "method", "image", "target", "v"]) as w:
        w.write(_row(1))
    stored = json.loads(meta_path(path).read_text())["identity"]
    assert stored["methods"] == more["methods"]  # the new method joined the file's identity
    with pytest.raises(SettingsMismatch, match="methods.rise="):
        check_identity(path, {"sizes": [1, 2], "methods": {"rise": {"num_masks": 8, "scores": "sigmoid"}}})
    with pytest.raises(SettingsMismatch, match="sizes="):
        check_identity(path, {"sizes": [1], "methods": {}})


def test_a_file_without_method_settings_cannot_vouch_for_them(tmp_path):
    from cameras.runs import SettingsMismatch, check_identity

    path = tmp_path / "res.csv"
    _write(path, [_row(0)], identity={"sizes": [1]})
    with pytest.raises(SettingsMismatch, match="settings of its methods"):
        check_identity(path, {"sizes": [1], "methods": {"g": {}}})

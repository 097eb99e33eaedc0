"""One-off migration of results/pointing after the fidelity fixes of issue 9 (run once, committed).

    .venv/bin/python scripts/migrate_fidelity_pointing.py [RESULTS_DIR] [--check]

What changed in the library, and what it does to the stored grid rows:

* CAMERAS: the chapter now uses Algorithm 1's keep rule (``keep="prediction"``); the stored
  rows averaged every size (explicit targets, the authors' code). On a grid the reference top-1
  is one class and the targets are four, so the weights can differ: every CAMERAS row is
  removed (recomputed; the file gains a ``sizes_kept`` column).
* NormGrad: its default layer is now the authors' (last stride-16 block, not the head):
  every NormGrad row is removed.
* RISE: single-label models are now scored with the softmax (was: the sigmoid of the logit):
  every RISE row is removed. The offline profile recomputes Lite0 on 4 grids on the CPU; the
  Lite1/Lite2 files are deleted (not run on this CPU; see ``pointing.GPU_COMMAND``).
* Center: the map now peaks at the float point (W/2, H/2); the grids' sides are even, so the
  rows must be unchanged: checked here against a fresh center map, row by row.

Every other file keeps its rows; its sidecar gets the new identity (``methods``: the method's
full settings and layer), after checking that the settings stored with its rows are the ones
the offline profile asks for. The old summaries of the removed rows (share and max-in-cell
rate, as the chapter computes them) are written to ``fidelity_migration.json`` so the chapter
can show old vs new. ``example.npz`` loses the removed methods' maps, ``timing.json`` their
times (also kept in the JSON). ``--check`` only reports.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from pathlib import Path

import numpy as np

from cameras.engine import MapStore
from cameras.experiments import pointing as P
from cameras.metrics import grid_pointing_game
from cameras.runs import read_results, read_sidecar, results_dir

REMOVED = ("cameras", "normgrad", "rise")


def _write_json(path: Path, doc) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=repr))
    os.replace(tmp, path)


def _rewrite_csv(path: Path, header: list[str]) -> None:
    """``path`` with only ``header`` (every row removed), written like the results writer."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(header)
    path.write_text(buf.getvalue(), encoding="utf-8")


def _old_summary(df) -> dict:
    sm = P.summary(df).iloc[0]
    return {"grids": int(sm["grids"]), "maps": int(sm["maps"]), "settings": str(sm["settings"]),
            **{k: float(sm[k]) for k in ("mean_share", "share_lo", "share_hi", "hit_rate", "hit_lo", "hit_hi")}}


def _check_center(df, side: int) -> None:
    """The stored center rows equal the pointing scores of today's center map."""
    from cameras.core import normalize_maps
    from cameras.methods import center_map

    m = normalize_maps(center_map(side, side, batch=4))  # what saliency("center", ...) returns
    res = grid_pointing_game(m, [0, 1, 2, 3], 2)
    for cell in range(4):
        rows = df[df["cell"] == cell]
        assert np.allclose(rows["share"].astype(float), float(res["share"][cell]), atol=1e-6), (side, cell)
        assert (rows["hit"].astype(int) == int(res["hit"][cell])).all(), (side, cell)


def migrate(root: Path, check: bool) -> dict:
    from cameras.models import get_spec

    s = P.settings("offline")
    folder = root / "pointing"
    report: dict = {"removed": {}, "old_timing": {}, "center_checked": []}
    for model in s["models"]:
        sub = folder / f"grid_{model}"
        side = 2 * get_spec(model).input_size
        for path in sorted(sub.glob("*.csv")):
            _, method = P._parse(f"{sub.name}/{path.name}")
            df = read_results(path)
            doc = read_sidecar(path)
            new_id = P.EXPERIMENT.identity_of(s, f"{sub.name}/{path.name}") if method in P.methods_for(s, model) else None
            if method in REMOVED:
                first = sorted(df["image"].unique())[:P._n_grids(s, method)]  # the grids run now
                report["removed"].setdefault(model, {})[method] = {
                    **_old_summary(df), "rows": len(df), "old_identity": doc.get("identity"),
                    "on_the_grids_run_now": _old_summary(df[df["image"].isin(first)])}
                print(f"{sub.name}/{path.name}: remove {len(df)} rows"
                      + (" and the file (not run offline)" if new_id is None else ""))
                if check:
                    continue
                if new_id is None:
                    path.unlink()
                    path.with_name(path.stem + ".meta.json").unlink()
                    continue
                _rewrite_csv(path, list(P.EXPERIMENT.table("cameras" if method == "cameras" else "").columns))
            else:
                if method == "center":
                    _check_center(df, side)
                    report["center_checked"].append(model)
                stored = {json.dumps(v, sort_keys=True) for v in df["settings"]}
                want = {k: v for k, v in new_id["methods"][method].items() if k != "layer"}
                assert stored == {json.dumps(want, sort_keys=True)}, (path, stored, want)
                print(f"{sub.name}/{path.name}: keep {len(df)} rows, layer {new_id['methods'][method]['layer']}")
            if not check:
                doc["identity"] = new_id
                _write_json(path.with_name(path.stem + ".meta.json"), doc)
        _clean_example_and_timing(sub, model, report, check)
    if not check:
        _write_json(folder / "fidelity_migration.json", report)
    return report


def _clean_example_and_timing(sub: Path, model: str, report: dict, check: bool) -> None:
    store = MapStore(sub.parent)
    ex = store.read(sub.name, "example")
    timing = json.loads((sub / "timing.json").read_text())
    report["old_timing"][model] = {m: timing[m] for m in REMOVED if m in timing}
    if check:
        return
    store.write((sub.name, "example"), {k: v for k, v in ex.items() if k.removeprefix("map/") not in REMOVED})
    (sub / "timing.json").write_text(json.dumps({m: v for m, v in timing.items() if m not in REMOVED},
                                                indent=1, sort_keys=True))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="?", type=Path, default=None)
    p.add_argument("--check", action="store_true", help="only report what would change")
    args = p.parse_args(argv)
    report = migrate(results_dir(args.results), args.check)
    for model, d in report["removed"].items():
        for m, v in d.items():
            print(f"old {model} {m}: share {v['mean_share']:.1f} %, max in cell {v['hit_rate']:.1f} % ({v['maps']} maps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One-off migration of results/qualitative after the fidelity fixes of issue 9 (run once, committed).

    .venv/bin/python scripts/migrate_fidelity_qualitative.py [RESULTS_DIR] [--check]

What changed in the library, and what it does to the stored rows (one CSV per model):

* CAMERAS: the chapter now uses Algorithm 1's keep rule (``keep="prediction"``) and records
  the sizes each image keeps (a new column ``sizes_kept``). Maps of images whose every size
  keeps the reference top-1 would be unchanged, but finding out needs the same forward passes
  as recomputing them (about a minute per model on the CPU), so every CAMERAS row is removed
  and recomputed.
* NormGrad: its default layer is now the authors' (the last stride-16 block, not the head):
  every NormGrad row is removed.
* RISE: single-label models are now scored with the softmax: every RISE row is removed (one of Lite0's
  nine was computed with 4000 masks by an early session, the profile asks for 500).

Every file gains the ``sizes_kept`` column (empty outside CAMERAS); the maps of the removed
rows are deleted; the sidecar gets the new identity (``methods``: every method's full settings
and layer), after checking that the settings and layer stored with each kept row are the ones
the offline profile asks for. The old areas of the removed maps (% of pixels >= 0.5, as the
chapter computes them) and their per-row settings go to ``fidelity_migration.json``, so the
chapter can show old vs new. ``--check`` only reports.
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
from cameras.experiments import qualitative as Q
from cameras.runs import read_sidecar, results_dir, scan_csv

REMOVED = ("cameras", "normgrad", "rise")


def _write_json(path: Path, doc) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=repr))
    os.replace(tmp, path)


def migrate(root: Path, check: bool) -> dict:
    s = Q.settings("offline")
    folder = root / "qualitative"
    store = MapStore(folder / "maps")
    report: dict = {"removed": {}}
    for model in s["models"]:
        path = folder / f"{model}.csv"
        scan = scan_csv(path)
        h = scan.header
        new_id = Q.EXPERIMENT.identity_of(s, path.name)
        keep, gone = [], {}
        for r in scan.rows:
            method = r[h.index("method")]
            if method in REMOVED:
                gone.setdefault(method, []).append(r)
                continue
            want = new_id["methods"][method]
            stored = json.loads(r[h.index("settings")])
            assert stored == {k: v for k, v in want.items() if k != "layer"}, (model, method, stored, want)
            layer = r[h.index("layer")] or None
            assert layer == (want["layer"] if not isinstance(want["layer"], list) else json.dumps(
                {"layer": want["layer"]}, separators=(",", ":"))), (model, method, layer, want["layer"])
            keep.append(r)
        for method, rs in gone.items():
            maps = store.read(model, method)
            area = [100 * float((MapStore.dequantise(maps[r[h.index("image")]]) >= 0.5).mean())
                    for r in rs if r[h.index("image")] in maps]
            report["removed"].setdefault(model, {})[method] = {
                "rows": len(rs), "area_pct": float(np.mean(area)) if area else None,
                "settings": sorted({r[h.index("settings")] for r in rs}),
                "layer": sorted({r[h.index("layer")] for r in rs})}
            print(f"{model} {method}: remove {len(rs)} rows (old mean area {np.mean(area):.1f} %)")
        print(f"{model}: keep {len(keep)} rows")
        if check:
            continue
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(list(Q.EXPERIMENT.columns))
        for r in keep:
            w.writerow(list(r) + [""])
        path.write_text(buf.getvalue(), encoding="utf-8")
        for method in gone:
            store.path(model, method).unlink(missing_ok=True)
        doc = read_sidecar(path)
        doc["identity"] = new_id
        _write_json(path.with_name(path.stem + ".meta.json"), doc)
    if not check:
        _write_json(folder / "fidelity_migration.json", report)
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="?", type=Path, default=None)
    p.add_argument("--check", action="store_true", help="only report what would change")
    args = p.parse_args(argv)
    migrate(results_dir(args.results), args.check)
    return 0


if __name__ == "__main__":
    sys.exit(main())

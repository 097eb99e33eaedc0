"""One-off migration of results/density after the fidelity fixes of issue 9 (run once, committed).

    .venv/bin/python scripts/migrate_fidelity_density.py [RESULTS_DIR] [--check] [--verify N]

Two library changes invalidate stored rows of chapter 4:

* **CAMERAS' keep rule.** The rows were computed with an explicit target (the true label),
  so every size was averaged (the authors' code); the chapter now uses Algorithm 1's rule
  (``keep="prediction"``: a size is kept when the top-1 there equals the top-1 at the
  reference size). Rows of images whose every size keeps the reference top-1 would carry
  over, but checking that costs forward passes at all 8 sizes (about a third of recomputing
  the map on this CPU), so every CAMERAS row is removed and recomputed.
* **NormGrad's layer.** Its rows were computed at the last block (``_head_act``, where its map
  is class-agnostic); NormGrad now runs at its authors' layer (the last stride-16 block).
  Every NormGrad row is removed.

The other methods' rows (Grad-CAM, LayerCAM, Grad-CAM++, gradient, and HiResCAM, no longer
run) are kept: their settings did not change. ``--verify N`` (default 2) first recomputes
them for N images of EfficientNet-Lite0 on this machine and compares (the stored rows come
from a GPU: within 2 % relative, the gradient within 20 %, see ``TOLERANCE``). The files get a ``sizes_kept`` column (empty for old rows) and
an identity with every method's full settings (layer, CAMERAS' keep rule). The means of the
removed rows are written to ``fidelity_migration.json`` beside the files (old numbers, for
the record). ``--check`` only reports.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from cameras.data import spread_indices
from cameras.experiments import density as D
from cameras.methods import method_settings
from cameras.runs import read_results, read_sidecar, results_dir

REMOVED = ("cameras", "normgrad")
#: largest relative difference to a CPU recomputation of GPU rows: the gradient's map is scaled by
#: its largest pixel, which float differences between devices move (its map mean by ~2 %)
TOLERANCE = {"gradient": 0.2}
OLD_LAYER = "_head_act"  # what the stored sessions' meta records as the layer of every layer method


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def verify(folder: Path, n: int) -> None:
    """Recompute the kept methods for ``n`` images of Lite0 and compare with the stored rows."""
    s = D.settings("offline")
    kept = [m for m in s["methods"] + s["extra_methods"] if m not in REMOVED]
    model = s["models"][0]
    stored = read_results(folder / f"{s['data']}_{model}.csv", str_columns=["model", "method", "image"])
    with tempfile.TemporaryDirectory() as tmp:
        new = D.run({**s, "profile": "custom"}, results=tmp, device="cpu", progress=False, models=[model],
                    methods=["gradcam"], extra_methods=[m for m in kept if m != "gradcam"], n_images=n,
                    method_images={}, skip={})
    key = list(D.KEY)
    old, new = stored.set_index(key).loc[new.set_index(key).index], new.set_index(key)
    cols = ["rho_plus", "rho_minus", "p_plus", "p_minus", "map_mean", "p_full", "insertion", "deletion"]
    for m in kept:
        a, b = (t.xs(m, level="method")[cols].to_numpy(float) for t in (old, new))
        worst = float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-3)))
        print(f"verified {m} ({len(b)} rows, {n} images of {model}): largest relative difference {worst:.2g}")
        if worst > TOLERANCE.get(m, 0.02):
            raise SystemExit(f"stored {m} rows differ from a recomputation: not migrated")


def _old_means(rows: list[dict], n_all: int, subset: set[str]) -> dict:
    out: dict = {}
    for m in REMOVED:
        for b in ("black", "mean"):
            for name, pick in (("all images", lambda r: True), ("offline subset", lambda r: r["image"] in subset)):
                v = [r for r in rows if r["method"] == m and r["baseline"] == b and pick(r)]
                out.setdefault(m, {}).setdefault(b, {})[name] = {
                    "n": len(v), **{c: float(np.mean([float(r[c]) for r in v])) if v else math.nan
                                    for c in ("rho_plus", "rho_minus", "insertion", "deletion")}}
    return out


def migrate_file(folder: Path, model: str, s: dict, check: bool) -> dict:
    name = f"{s['data']}_{model}.csv"
    path = folder / name
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = [dict(zip(header, r, strict=True)) for r in reader]
    if header == list(D.COLUMNS):
        raise SystemExit(f"{name} already has the new columns: already migrated")
    assert header == [c for c in D.COLUMNS if c != "sizes_kept"], header
    doc = read_sidecar(path)
    layers = {ses["meta"].get("layer") for ses in doc["sessions"]}
    assert layers == {OLD_LAYER}, layers
    its = D.items(s)
    subset = {its[i].name for i in spread_indices(len(its), 100)}
    old = _old_means(rows, len(its), subset)
    keep = [r for r in rows if r["method"] not in REMOVED]
    identity = D.EXPERIMENT.identity_of(s, name)
    for m in sorted({r["method"] for r in keep}):  # the kept methods: settings as computed
        rec = identity["methods"].setdefault(m, {**method_settings(m), "layer": OLD_LAYER})
        assert rec["layer"] in (OLD_LAYER, None), (m, rec)
    print(f"{name}: {len(rows)} rows -> {len(keep)} (removed {len(rows) - len(keep)}: "
          f"{', '.join(REMOVED)}); + column sizes_kept; identity methods: "
          + "; ".join(f"{m} {json.dumps(v)}" for m, v in identity["methods"].items()))
    if not check:
        with open(path.with_name(name + ".tmp"), "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(D.COLUMNS)
            for r in keep:
                w.writerow([r.get(c, "") for c in D.COLUMNS])
        os.replace(path.with_name(name + ".tmp"), path)
        doc["identity"] = json.loads(json.dumps(identity))
        doc.setdefault("migrations", []).append({
            "script": "scripts/migrate_fidelity_density.py", "date": dt.date.today().isoformat(),
            "removed_rows": len(rows) - len(keep), "removed_methods": list(REMOVED),
            "added_columns": ["sizes_kept"], "why": "CAMERAS: Algorithm 1's keep rule; NormGrad: "
            "its authors' layer (issue 9)"})
        _write_atomic(path.with_name(path.stem + ".meta.json"), json.dumps(doc, indent=2, default=repr))
    return old


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="?", type=Path, default=None)
    p.add_argument("--check", action="store_true", help="only report what would change")
    p.add_argument("--verify", type=int, default=2, help="images to recompute and compare (0: none)")
    args = p.parse_args(argv)
    folder = results_dir(args.results) / "density"
    s = D.settings("offline")
    if args.verify:
        verify(folder, args.verify)
    old = {m: migrate_file(folder, m, s, args.check) for m in s["models"]}
    print(json.dumps(old, indent=1))
    if not args.check:
        _write_atomic(folder / "fidelity_migration.json", json.dumps({
            "note": "means of the rows removed by scripts/migrate_fidelity_density.py (old settings: "
                    "CAMERAS averaged every size, NormGrad at _head_act); 'offline subset' = the 100 "
                    "evenly spaced images the offline profile recomputes", "old": old}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

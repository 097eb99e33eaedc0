"""One-off migration of results/analysis after the fidelity fixes of issue 9 (run once, committed).

    .venv/bin/python scripts/migrate_fidelity_analysis.py [RESULTS_DIR] [--check] [--verify N]

The stored CAMERAS maps of chapter 5 were captured with explicit targets, so every size was
averaged (the authors' code); the chapter now uses Algorithm 1's keep rule
(``keep="prediction"``). Checking which images keep the reference top-1 at every size costs
forward passes at all 8 sizes, so every CAMERAS row (images, composites, model pairs) is
removed; the chapter's runner recomputes those of its images. Grad-CAM's rows (from the
reference size of the same capture) do not change and are kept, including those of the
studies the chapter no longer runs (top-2/top-3 and look-alike targets, composites): the
chapter reads only its own keys. ``--verify N`` (default 2) first recomputes the Grad-CAM
rows of N images on every model and compares them with the stored ones (the stored rows come
from a GPU: within 1 % relative). The file gets a ``sizes_kept`` column (empty for old rows)
and an identity with the methods' settings (CAMERAS' keep rule, extremal perturbation's
settings, ``area_steps``). ``--check`` only reports.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from cameras.experiments import analysis as A
from cameras.runs import read_results, read_sidecar, results_dir


def verify(path: Path, n: int) -> None:
    """Recompute the Grad-CAM top-1 / label rows of ``n`` images and compare."""
    from cameras.engine import Context

    s = A.settings("offline")
    stored = read_results(path, str_columns=list(A.KEY)).set_index(list(A.KEY))
    its = A.items(s)[:n]
    cols = ["prob", "top1_prob", "mass_top", "entropy", "area_half", "spearman_ref", "iou_ref"]
    worst = 0.0
    ctx = Context(A.EXPERIMENT, {**s, "cameras_sizes": s["cameras_sizes"][:1], "methods": ["gradcam"]},
                  path.parent, torch.device("cpu"), progress=False)
    with ctx:
        for model in s["models"]:
            lm = ctx.model(model)
            x = torch.stack([lm.preprocess(it.path) for it in its])
            rows = list(A._batch_rows(ctx, lm, "image", its, x, ctx.settings, {}))
            for r in rows:
                old = stored.loc[tuple(r[k] for k in A.KEY)]
                a, b = old[cols].to_numpy(float), np.array([np.nan if r[c] is None else r[c] for c in cols], float)
                ok = np.isfinite(a) & np.isfinite(b)
                worst = max(worst, float(np.max(np.abs(a[ok] - b[ok]) / np.maximum(np.abs(a[ok]), 1e-2))))
    print(f"verified Grad-CAM rows of {n} images x {len(s['models'])} models: largest relative difference {worst:.2g}")
    if worst > 0.01:
        raise SystemExit("stored Grad-CAM rows differ from a recomputation: not migrated")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="?", type=Path, default=None)
    p.add_argument("--check", action="store_true", help="only report what would change")
    p.add_argument("--verify", type=int, default=2, help="images to recompute and compare (0: none)")
    args = p.parse_args(argv)
    path = results_dir(args.results) / "analysis" / "analysis.csv"
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = [dict(zip(header, r, strict=True)) for r in reader]
    if header == list(A.COLUMNS):
        raise SystemExit("analysis.csv already has the new columns: already migrated")
    assert header == [c for c in A.COLUMNS if c != "sizes_kept"], header
    if args.verify:
        verify(path, args.verify)
    keep = [r for r in rows if r["method"] != "cameras"]
    assert {r["method"] for r in keep} == {"gradcam"}
    s = A.settings("offline")
    doc = read_sidecar(path)
    identity = json.loads(json.dumps(A.EXPERIMENT.identity_of(s, path.name)))
    old = {k: v for k, v in doc["identity"].items() if k in identity}
    assert all(identity[k] == v for k, v in old.items()), (old, identity)
    print(f"{path.name}: {len(rows)} rows -> {len(keep)} (removed {len(rows) - len(keep)} CAMERAS rows); "
          f"+ column sizes_kept; identity {json.dumps(doc['identity'])} -> {json.dumps(identity)}")
    if args.check:
        return 0
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(A.COLUMNS)
        for r in keep:
            w.writerow([r.get(c, "") for c in A.COLUMNS])
    os.replace(tmp, path)
    doc["identity"] = identity
    doc.setdefault("migrations", []).append({
        "script": "scripts/migrate_fidelity_analysis.py", "date": dt.date.today().isoformat(),
        "removed_rows": len(rows) - len(keep), "removed_methods": ["cameras"], "added_columns": ["sizes_kept"],
        "why": "CAMERAS: Algorithm 1's keep rule (issue 9)"})
    mp = path.with_name("analysis.meta.json")
    mp.with_name(mp.name + ".tmp").write_text(json.dumps(doc, indent=2, default=repr))
    os.replace(mp.with_name(mp.name + ".tmp"), mp)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One-off migration of results/sanity after the fidelity fixes of issue 9 (run once, committed).

    .venv/bin/python scripts/migrate_fidelity_sanity.py [RESULTS_DIR] [--check]

What changed in the library, and what it does to the stored rows (EfficientNet-Lite0, offline
profile, computed on the 2-core CPU):

* CAMERAS now follows Algorithm 1's keep rule (``keep="prediction"``); the stored maps averaged
  every size. Every CAMERAS row of the three checks is removed: the checks recompute a whole unit
  together (the cascade: each image at every depth, against its depth-0 map; the adversarial
  check: a batch of 25 images; class sensitivity: a method's batch), so carrying over the rows of
  images whose top-1 is the same at every size would save no computation, and checking it at the
  cascade's depths would need forward passes through every randomised network. The cascade maps
  (``cascade_maps_efficientnet_lite0.npz``, which hold CAMERAS' maps) are deleted and redrawn.
* NormGrad's default layer is now the authors' (the last stride-16 block) and its settings the
  framework's (``phase1``, ``phase2``); RISE scores single-label models with the softmax
  (``scores``): their class-sensitivity rows would change.
* Class sensitivity now follows its authors' definition (Rebuffi et al. 2020: the Spearman
  correlation of the maps of the most and the least probable class, constant maps left out),
  with new columns: every row of ``class_sensitivity.csv`` is removed (the file keeps its
  sessions and gets the new header and identity); the numbers of our earlier variant
  (1 - Spearman, 1 - SSIM, mean absolute difference) are kept in the report below.
* The centre baseline peaks at TorchRay's float point (W/2, H/2): at 224 px (even sides) that is
  the same map as before (checked here), so its rows stay.
* Every other row stays. The cascade and adversarial files gain the column ``sizes_kept`` (empty
  outside CAMERAS); every sidecar keeps its sessions and gets the new identity (each method's
  full settings and layer). A file whose identity already records its methods is left alone, so
  running the script twice changes nothing.
* ``fidelity_migration.json`` keeps the old numbers of the removed rows (per method: mean
  similarity per depth and metric, adversarial drops, mean class sensitivity) so the chapter can
  show old against new. ``--check`` only reports.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from pathlib import Path

import torch

from cameras.experiments import sanity as S
from cameras.methods.perturbation import center_map
from cameras.runs import read_results, read_sidecar, results_dir, scan_csv

REMOVED = {"cascade": {"cameras"}, "adversarial": {"cameras"}, "class_sensitivity": {"cameras", "normgrad", "rise"}}
#: checks whose every row goes (the chapter now uses the authors' class-sensitivity definition)
REDEFINED = {"class_sensitivity"}


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _old_numbers(check: str, df) -> list[dict]:
    """The removed rows' summary: what the chapter showed for these methods before."""
    df = df if check in REDEFINED else df[df["method"].isin(REMOVED[check])]
    if check == "cascade":
        out = S.cascade_summary(df)
    elif check == "adversarial":
        out = S.adversarial_summary(df)
    else:
        out = df.groupby(["model", "method", "metric"])["value"].agg(["mean", "std", "count"]).reset_index()
    return json.loads(out.to_json(orient="records"))


def migrate(root: Path, check: bool) -> dict:
    folder, s = root / "sanity", S.settings("offline")
    new = center_map(224, 224)[0]  # vs the old centre: 1 - d / d_max from the pixel (112, 112)
    yy, xx = torch.meshgrid(torch.arange(224.0), torch.arange(224.0), indexing="ij")
    d = ((yy - 112) ** 2 + (xx - 112) ** 2).sqrt()
    assert torch.allclose(new, 1 - d / d.max()), "the centre map changed at 224 px: its rows must go too"
    report: dict = {}
    for c in S.CHECKS:
        path = folder / f"{c}.csv"
        scan, doc = scan_csv(path), read_sidecar(path)
        if "methods" in doc.get("identity", {}):
            print(f"{c}: already migrated")
            continue
        h, columns = scan.header, list(S.EXPERIMENT.table(c).columns)
        kept = [] if c in REDEFINED else [r + [""] for r in scan.rows if r[h.index("method")] not in REMOVED[c]]
        assert c in REDEFINED or h + ["sizes_kept"] == columns, (h, columns)
        report[c] = {"rows": len(scan.rows), "removed_rows": len(scan.rows) - len(kept),
                     "removed_methods": sorted(REMOVED[c]), "old_identity": doc["identity"],
                     "old": _old_numbers(c, read_results(path))}
        print(f"{c}: {report[c]['removed_rows']} of {len(scan.rows)} rows removed")
        if check:
            continue
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows([columns, *kept])
        _write(path, buf.getvalue())
        doc["identity"] = S.EXPERIMENT.identity_of(s, path.name)
        doc.setdefault("migrations", []).append({"script": "scripts/migrate_fidelity_sanity.py",
                                                 "removed_rows": report[c]["removed_rows"]})
        _write(folder / f"{c}.meta.json", json.dumps(doc, indent=2, default=repr))
    if not check and report:
        if "cascade" in report:
            (folder / "cascade_maps_efficientnet_lite0.npz").unlink(missing_ok=True)
        rec = folder / "fidelity_migration.json"
        _write(rec, json.dumps({**(json.loads(rec.read_text()) if rec.exists() else {}), **report}, indent=1,
                               default=repr))
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="?", type=Path, default=None)
    p.add_argument("--check", action="store_true", help="only report what would change")
    a = p.parse_args(argv)
    migrate(results_dir(a.results), a.check)
    return 0


if __name__ == "__main__":
    sys.exit(main())

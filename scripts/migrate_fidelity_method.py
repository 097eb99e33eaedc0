"""One-off migration of results/method after the fidelity fixes of issue 9 (run once, committed).

    .venv/bin/python scripts/migrate_fidelity_method.py [RESULTS_DIR] [--check] [--verify N]

The study of chapter 1 captures every image without a target (the class explained is the top-1
at the reference size), so ``Cameras``' default keep rule (``"auto"``) already was Algorithm 1's
(``"prediction"``): no stored row changes. The chapter now passes ``keep="prediction"``
explicitly and its files' identity records CAMERAS' settings (sizes captured, keep rule,
layer), so the sidecar gets that identity. ``--verify N`` (default 1) first recomputes the
first N images of the study in a temporary folder and checks that every number of their rows
equals the stored one (to 1e-6). ``--check`` only reports.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

from cameras.experiments import method as M
from cameras.runs import read_results, read_sidecar, results_dir


def verify(folder: Path, n: int) -> None:
    s = M.settings("offline")
    stored = read_results(folder / f"study_{s['model']}.csv", str_columns=["model", "study", "image", "param"])
    with tempfile.TemporaryDirectory() as tmp:
        new = M.run("offline", results=tmp, device="cpu", progress=False, n_images=n)
    cols = [c for c in M.COLUMNS if c not in M.KEY]
    old = stored.set_index(list(M.KEY)).loc[new.set_index(list(M.KEY)).index]
    new = new.set_index(list(M.KEY))
    bad = 0
    for c in cols:
        for a, b in zip(old[c], new[c], strict=True):
            same = (str(a) == str(b)) or (a == a and b == b and math.isclose(float(a), float(b), abs_tol=1e-6))
            same = same or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
            bad += not same
    print(f"verified {len(new)} rows of {n} image(s): {bad} values differ")
    if bad:
        raise SystemExit("stored rows differ from a recomputation: not migrated")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="?", type=Path, default=None)
    p.add_argument("--check", action="store_true", help="only report what would change")
    p.add_argument("--verify", type=int, default=1, help="images to recompute and compare (0: none)")
    args = p.parse_args(argv)
    folder = results_dir(args.results) / "method"
    s = M.settings("offline")
    path = folder / f"study_{s['model']}.csv"
    if args.verify:
        verify(folder, args.verify)
    doc = read_sidecar(path)
    new_id = json.loads(json.dumps(M.EXPERIMENT.identity_of(s, path.name)))
    print(f"{path.name}: identity {json.dumps(doc.get('identity'))} -> {json.dumps(new_id)}")
    if not args.check:
        doc["identity"] = new_id
        mp = path.with_name(path.stem + ".meta.json")
        tmp = mp.with_name(mp.name + ".tmp")
        tmp.write_text(json.dumps(doc, indent=2, default=repr))
        os.replace(tmp, mp)
    return 0


if __name__ == "__main__":
    sys.exit(main())

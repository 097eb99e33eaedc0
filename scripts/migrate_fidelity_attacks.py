"""One-off migration of results/attacks after the fidelity fixes of issue 9 (run once, committed).

    .venv/bin/python scripts/migrate_fidelity_attacks.py [RESULTS_DIR] [--check]

What changed, and what it does to the stored rows of ``attacks.csv`` (l-inf budget 16/255; Lite0
and Lite1 complete, Lite2 in part, computed on a GPU):

* ``Psi``, the CAMERAS map of the focused attacks, now follows Algorithm 1's keep rule
  (``keep="prediction"``: a size is averaged only if the model's top-1 there is its top-1 at the
  reference size 224 px); the stored rows averaged every size (the authors' code with a given
  class). For an image whose top-1 is the same at all 8 sizes the two rules give the same
  weights, hence the same ``Psi`` and the same attacks: its rows are carried over. This is
  checked here, per model and image, with forward passes at the 8 sizes on this machine (the
  chapter's preprocessing and sizes). Every row of any other image is removed (the focused
  attacks use its ``Psi``; its plain row records ``psi_mean``), to be recomputed by the runner.
* Rows gain the column ``sizes_kept`` (8 for the carried-over rows); the file is renamed
  ``attacks_eps16.csv`` (one file per budget: the Fig. 6 analogue now uses the paper's 12/255,
  in ``attacks_eps12.csv``); its sidecar keeps its sessions and gets the new identity (CAMERAS'
  full settings: sizes, keep rule, layer). The Fig. 6 arrays at 16/255 with the old ``Psi``
  (``fig6_efficientnet_lite0.npz``) are deleted.
* ``fidelity_migration.json`` records per model and image the top-1 at each size, what was removed,
  and the old summary (success rates and paired l2 change per model and attack), so the
  chapter can show old against new numbers.

``--check`` only reports (the forward passes still run).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import time
from pathlib import Path

import torch

from cameras.core import resize_to
from cameras.experiments import attacks as A
from cameras.models import load_model
from cameras.runs import read_results, read_sidecar, results_dir, scan_csv

OLD = "attacks.csv"


def top1_per_size(model: str, items, sizes, batch: int = 8) -> dict[str, list[int | None]]:
    """Per image: the top-1 class at each size (the chapter's ``Psi`` input, forward passes only).

    The reference size comes first; the other sizes are tried from the largest down, each only
    on the images whose top-1 has not changed yet (``None``: not evaluated, the image already
    changed its top-1 at a larger size)."""
    lm = load_model(model, device="cpu")
    out: dict[str, list[int | None]] = {}
    order = [0, *sorted(range(1, len(sizes)), key=lambda j: -sizes[j])]
    t0 = time.time()
    for i in range(0, len(items), batch):
        its = items[i : i + batch]
        x = lm.normalize(torch.stack([lm.denormalize(lm.preprocess(it.source)) for it in its]))
        top = torch.full((len(its), len(sizes)), -1, dtype=torch.long)
        alive = torch.ones(len(its), dtype=torch.bool)
        for j in order:
            with torch.no_grad():
                top[alive, j] = lm.model(resize_to(x[alive], sizes[j], False)).argmax(1)
            alive &= top[:, j] == top[:, 0]
            if not alive.any():
                break
        out.update({it.name: [None if v < 0 else int(v) for v in t] for it, t in zip(its, top, strict=True)})
        print(f"  {model}: {len(out)}/{len(items)} images, {time.time() - t0:.0f} s", flush=True)
    return out


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def migrate(root: Path, check: bool) -> dict:
    folder = root / "attacks"
    path, s = folder / OLD, A.settings("offline")
    scan, doc = scan_csv(path), read_sidecar(path)
    old_id = doc["identity"]
    assert old_id["eps"] == s["eps"] and old_id["cameras_sizes"] == s["cameras_sizes"], old_id
    h = scan.header
    names = {it.name: it for it in A.items(s)}
    old = read_results(path, str_columns=["model", "image", "attack"])
    report: dict = {"old_summary": A.summary(old).to_dict("records"), "models": {}}
    keep_rows = []
    for model in dict.fromkeys(r[h.index("model")] for r in scan.rows):
        images = list(dict.fromkeys(r[h.index("image")] for r in scan.rows if r[h.index("model")] == model))
        top = top1_per_size(model, [names[i] for i in images], s["cameras_sizes"])
        same = {i for i, t in top.items() if all(v == t[0] for v in t)}
        rows = [r for r in scan.rows if r[h.index("model")] == model]
        keep_rows += [r + [str(len(s["cameras_sizes"]))] for r in rows if r[h.index("image")] in same]
        report["models"][model] = {"images": len(images), "unchanged_images": len(same),
                                   "rows": len(rows), "removed_rows": sum(r[h.index("image")] not in same for r in rows),
                                   "top1": top}
        print(f"{model}: {len(same)} of {len(images)} images keep their top-1 at every size; "
              f"{report['models'][model]['removed_rows']} of {len(rows)} rows removed", flush=True)
    if check:
        return report
    assert h + ["sizes_kept"] == list(A.COLUMNS), h
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([list(A.COLUMNS), *keep_rows])
    new = folder / A.file_name(s["eps"])
    _write(new, buf.getvalue())
    doc["identity"], doc["results"] = A.EXPERIMENT.identity_of(s, new.name), new.name
    doc.setdefault("migrations", []).append({"script": "scripts/migrate_fidelity_attacks.py", "from": OLD,
                                             "removed_rows": len(scan.rows) - len(keep_rows)})
    _write(folder / (new.stem + ".meta.json"), json.dumps(doc, indent=2, default=repr))
    _write(folder / "fidelity_migration.json", json.dumps(report, indent=1, default=repr))
    for old in (path, folder / "attacks.meta.json", folder / "fig6_efficientnet_lite0.npz"):
        old.unlink(missing_ok=True)
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="?", type=Path, default=None)
    p.add_argument("--check", action="store_true", help="only report what would change")
    a = p.parse_args(argv)
    root = results_dir(a.results)
    if not (root / "attacks" / OLD).exists():
        print(f"nothing to migrate: no attacks/{OLD} under the results folder")
        return 0
    torch.set_num_threads(2)
    migrate(root, a.check)
    return 0


if __name__ == "__main__":
    sys.exit(main())

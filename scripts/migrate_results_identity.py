"""One-off migration of the committed results to the sidecar format 2 (a stored ``identity``).

    .venv/bin/python scripts/migrate_results_identity.py [RESULTS_DIR] [--check]

Result files written before the engine stored the settings that define their rows (the
``identity``, see :mod:`cameras.runs`) recorded those settings only in the ``meta`` of each
session. For every sidecar ``<results>/<experiment>/**/<name>.meta.json`` without an identity
this script asks the experiment that owns the folder for the identity of that file
(:meth:`cameras.engine.Experiment.identity_from_meta`, from the first session's settings) and
writes it, with ``"format": 2``. It checks that every later session recorded the same
identity (else it stops: such a file mixes rows of other settings). Sidecars that have an
identity are left alone, so running it twice changes nothing. ``--check`` only reports.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from cameras.experiments import available, load
from cameras.runs import FORMAT, meta_path, results_dir


def migrate(root: Path, check: bool = False) -> int:
    changed = 0
    for mp in sorted(root.rglob("*.meta.json")):
        rel = mp.relative_to(root)
        if rel.parts[0] == "_ci" or rel.parts[0] not in available():
            continue
        doc = json.loads(mp.read_text())
        if "identity" in doc:
            continue
        exp = getattr(load(rel.parts[0]), "EXPERIMENT", None)
        if exp is None:
            print(f"skip {rel}: {rel.parts[0]} is not an engine experiment")
            continue
        csv_name = mp.name.removesuffix(".meta.json") + ".csv"
        file = str(Path(*rel.parts[1:-1], csv_name))
        ids = [exp.identity_from_meta(s["meta"], file) for s in doc["sessions"]]
        ids = [json.loads(json.dumps(i, default=repr)) for i in ids]
        if any(i != ids[0] for i in ids[1:]):
            raise SystemExit(f"{mp}: sessions disagree on the settings {ids}; not migrated")
        print(f"{'would set' if check else 'set'} {rel}: identity {json.dumps(ids[0])}")
        changed += 1
        if not check:
            doc["format"], doc["identity"] = FORMAT, ids[0]
            tmp = mp.with_name(mp.name + ".tmp")
            tmp.write_text(json.dumps(doc, indent=2, default=repr))
            os.replace(tmp, mp)
            assert meta_path(mp.with_name(csv_name)) == mp
    return changed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="?", type=Path, default=None)
    p.add_argument("--check", action="store_true", help="only report what would change")
    args = p.parse_args(argv)
    n = migrate(results_dir(args.results), args.check)
    print(f"{n} sidecar(s) {'to migrate' if args.check else 'migrated'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

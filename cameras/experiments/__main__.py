"""``python -m cameras.experiments NAME [--profile P] [--device D] [--results DIR] [--set k=v ...]``

Runs (or resumes) one chapter's experiment headless, e.g. on a GPU machine. Every row is
written as it is computed; after Ctrl-C (exit status 130) or a crash the same command
continues where it stopped. A bad option or setting is one line on stderr (exit status 2).
``--workers N`` / ``--ray-address ADDR`` shard the units over Ray tasks (:mod:`cameras.shard`).
"""

from __future__ import annotations

import argparse
import json
import sys

from . import available, load


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _parse(argv: list[str] | None) -> tuple[argparse.Namespace, dict]:
    p = argparse.ArgumentParser(prog="python -m cameras.experiments", description=__doc__.splitlines()[0])
    p.add_argument("name", choices=available())
    p.add_argument("--profile", default="offline", help="ci | offline | paper")
    p.add_argument("--device", default="auto", help="auto (CUDA if available) | cpu | cuda | cuda:N")
    p.add_argument("--results", default=None, help="results folder (default: $CAMERAS_RESULTS or results/)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a profile setting (a JSON value), e.g. --set n_images=50")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="shard the work over N Ray workers on this machine (pip install '.[distributed]')")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="shard the work over an existing Ray cluster (e.g. 'auto' on one of its nodes)")
    args = p.parse_args(argv)
    overrides = {}
    for item in args.set:
        if "=" not in item:
            p.error(f"--set needs KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        overrides[k.strip()] = _value(v)
    return args, overrides


def main(argv: list[str] | None = None) -> int:
    args, overrides = _parse(argv)
    try:
        out = load(args.name).run(args.profile, results=args.results, device=args.device,
                                  progress=not args.quiet, ray_workers=args.workers,
                                  ray_address=args.ray_address, **overrides)
    except KeyboardInterrupt:
        print("\ninterrupted: the rows written so far are kept; run the same command to resume",
              file=sys.stderr)
        return 130
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    frames = out.items() if isinstance(out, dict) else [(args.name, out)]
    for name, df in frames:
        print(f"{name}: {len(df)} rows")
        if hasattr(df, "tail") and len(df):
            print(df.tail(5).to_string(max_colwidth=40))
    return 0


if __name__ == "__main__":
    sys.exit(main())

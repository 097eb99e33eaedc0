"""``python -m cameras.experiments NAME --profile offline --device cuda [--results DIR] [--set k=v ...]``."""

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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cameras.experiments", description=__doc__)
    p.add_argument("name", choices=available())
    p.add_argument("--profile", default="offline", help="ci | offline | paper")
    p.add_argument("--device", default="auto")
    p.add_argument("--results", default=None, help="results folder (default: $CAMERAS_RESULTS or results/)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a profile setting (JSON value), e.g. --set n_images=50")
    args = p.parse_args(argv)
    overrides = {}
    for item in args.set:
        if "=" not in item:
            p.error(f"--set needs KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        overrides[k] = _value(v)
    mod = load(args.name)
    df = mod.run(args.profile, results=args.results, device=args.device, **overrides)
    print(df.tail(10).to_string() if hasattr(df, "tail") else df)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Screenshots of every page of the built book, as a reader sees it (headless Chromium).

Usage: ``python book/scripts/screenshots.py _build/html _build/screenshots [--widths 1400 400]``.
Writes ``<page>_<width>.png`` (full page height, capped) for each HTML page and width, for
review. Needs ``chromium`` (``apt-get install chromium``).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path


def shoot(chromium: str, page: Path, out: Path, width: int, height: int) -> bool:
    cmd = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--run-all-compositor-stages-before-draw", "--virtual-time-budget=4000",
           f"--window-size={width},{height}", f"--screenshot={out}", page.resolve().as_uri()]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    return r.returncode == 0 and out.exists()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("html", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--widths", type=int, nargs="+", default=[1400, 400])
    p.add_argument("--height", type=int, default=12000, help="page height captured (px)")
    args = p.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        print("screenshots: no chromium found (apt-get install chromium)", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    pages = sorted(q for q in args.html.glob("**/*.html")
                   if "_static" not in q.parts and q.name not in ("genindex.html", "search.html"))
    failed = 0
    for page in pages:
        stem = str(page.relative_to(args.html).with_suffix("")).replace("/", "__")
        for w in args.widths:
            ok = shoot(chromium, page, args.out / f"{stem}_{w}.png", w, args.height)
            failed += not ok
            print(f"{'ok  ' if ok else 'FAIL'} {stem} @ {w}px")
    print(f"screenshots: {len(pages)} pages x {len(args.widths)} widths in {args.out} ({failed} failed)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

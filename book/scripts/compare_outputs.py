"""Compare the numbers two sets of executed chapters print (did a refactor change a result?).

    python book/scripts/compare_outputs.py OLD_DIR NEW_DIR [--ignore REGEX ...]

For every chapter ``NN_name.ipynb`` present in both folders, the text a reader sees (stdout
streams, the ``text/plain`` of results and displays, and the cells of ``text/html`` tables)
is split into numbers; the two multisets of numbers are compared per chapter. Numbers are
compared as printed (``0.80`` and ``0.8`` differ), so a change of formatting shows up as well
as a change of value. Lines matching an ``--ignore`` regex (e.g. wall-clock timings) are
skipped on both sides. Exit status 0 when every chapter prints the same numbers, 1 otherwise.
"""

from __future__ import annotations

import argparse
import collections
import html
import json
import re
import sys
from pathlib import Path

NUMBER = re.compile(r"(?<![\w.])[-+−]?\d+(?:[.,]\d+)*(?:e[-+]?\d+)?%?", re.IGNORECASE)
TAG = re.compile(r"<[^>]+>")


def _text(output: dict) -> str:
    if output.get("output_type") == "stream" and output.get("name") == "stdout":
        return "".join(output.get("text", ""))
    data = output.get("data", {})
    if "text/html" in data and "<table" in "".join(data["text/html"]):
        cells = re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", "".join(data["text/html"]), flags=re.S)
        return "\n".join(html.unescape(TAG.sub("", c)).strip() for c in cells)
    if "text/plain" in data and "image/png" not in data:
        return "".join(data["text/plain"])
    if "text/markdown" in data:
        return "".join(data["text/markdown"])
    return ""


def numbers(path: Path, ignore: list[re.Pattern]) -> collections.Counter:
    """The multiset of numbers printed by the executed notebook ``path``."""
    nb = json.loads(path.read_text())
    out: collections.Counter = collections.Counter()
    for cell in nb.get("cells", []):
        for o in cell.get("outputs", []):
            for line in _text(o).splitlines():
                if any(p.search(line) for p in ignore):
                    continue
                out.update(m.replace("−", "-") for m in NUMBER.findall(line))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old", type=Path)
    p.add_argument("new", type=Path)
    p.add_argument("--ignore", action="append", default=[], metavar="REGEX",
                   help="skip output lines that match (repeatable)")
    p.add_argument("--show", type=int, default=20, help="differing numbers to list per chapter")
    args = p.parse_args(argv)
    ignore = [re.compile(r) for r in args.ignore]
    same = True
    for old in sorted(args.old.glob("[0-9][0-9]_*.ipynb")):
        new = args.new / old.name
        if not new.exists():
            print(f"{old.stem}: missing in {args.new}")
            same = False
            continue
        a, b = numbers(old, ignore), numbers(new, ignore)
        gone, added = a - b, b - a
        status = "same numbers" if not gone and not added else "DIFFERENT"
        print(f"{old.stem}: {sum(a.values())} numbers before, {sum(b.values())} after: {status}")
        if gone or added:
            same = False
            print("  only before:", " ".join(sorted(gone.elements())[: args.show]),
                  "..." if sum(gone.values()) > args.show else "")
            print("  only after: ", " ".join(sorted(added.elements())[: args.show]),
                  "..." if sum(added.values()) > args.show else "")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

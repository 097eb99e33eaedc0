"""Write the verdict summary table into README.md (between the verdict markers).

    .venv/bin/python scripts/update_readme.py [--check]

The table is :func:`cameras.verdict.markdown` of :func:`cameras.verdict.claims` on the stored
offline results, so the README says what the book's verdict page says. ``--check`` only
compares (exit status 1 if the README is out of date); a test runs it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

START, END = "<!-- verdict:start -->", "<!-- verdict:end -->"
README = Path(__file__).resolve().parents[1] / "README.md"


def rendered() -> str:
    from cameras.verdict import claims, counts, markdown

    cs = claims()
    n = counts(cs)
    head = (f"{len(cs)} claims: " + ", ".join(f"{k} {v}" for k, v in n.items()) + ".")
    return f"{START}\n{head}\n\n{markdown(cs)}\n{END}"


def updated(text: str) -> str:
    a, b = text.index(START), text.index(END) + len(END)
    return text[:a] + rendered() + text[b:]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true")
    args = p.parse_args(argv)
    text = README.read_text(encoding="utf-8")
    new = updated(text)
    if args.check:
        if new != text:
            print("README.md's verdict table is out of date: run scripts/update_readme.py")
            return 1
        return 0
    README.write_text(new, encoding="utf-8")
    print("README.md verdict table updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Check the built book as a reader sees it.

Usage: ``python book/scripts/check_html.py _build/html``; exit status 1 lists every problem:

1. no page shows an absolute machine path (``/tmp/...``, ``/work/...``, ``/root/...``,
   ``/home/...``, ``C:\\...``) in its text;
2. no table cell reads ``NaN`` / ``nan`` / ``None`` (missing values are written out, e.g.
   "not run");
3. every figure a chapter draws (an ``<img>`` of a cell output) sits in a numbered
   ``<figure>`` with a ``<figcaption>``;
4. no page shows papermill's injected-parameters cell.
"""

from __future__ import annotations

import re
import sys
from html.parser import HTMLParser
from pathlib import Path

ABS_PATH = re.compile(r"(?<![\w.:/])(/(tmp|work|root|home|Users|var|opt)/[\w.@+-]+/|[A-Z]:\\\\[\w])")
MISSING = {"nan", "<na>", "nat"}  #: any case; and Python's "None" (the English "none" is a word)


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.text: list[str] = []
        self.cells: list[str] = []
        self.images: list[tuple[bool, bool]] = []  # (inside a cell output, inside a figure)
        self.stack: list[tuple[str, dict]] = []
        self._cell: list[str] | None = None
        self.injected = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = a.get("class") or ""
        if "tag_injected-parameters" in cls:
            self.injected = True
        if tag in ("td", "th"):
            self._cell = []
        if tag == "img":
            classes = " ".join(c for _, d in self.stack for c in [d.get("class") or ""])
            in_output = "cell_output" in classes or "output" in classes
            in_figure = any(t == "figure" for t, _ in self.stack)
            self.images.append((in_output, in_figure))
        if tag not in ("img", "br", "hr", "meta", "link", "input"):
            self.stack.append((tag, a))

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.cells.append("".join(self._cell).strip())
            self._cell = None
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                break

    def handle_data(self, data):
        if any(t in ("script", "style") for t, _ in self.stack):
            return
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def check(root: Path) -> list[str]:
    problems = []
    pages = sorted(p for p in root.rglob("*.html") if "_static" not in p.parts and p.name != "genindex.html")
    for page in pages:
        rel = page.relative_to(root)
        doc = _Page()
        doc.feed(page.read_text(encoding="utf-8", errors="replace"))
        text = " ".join(doc.text)
        for m in sorted(set(m.group(0) for m in ABS_PATH.finditer(text)))[:3]:
            problems.append(f"{rel}: shows an absolute path {m!r}")
        bad = [c for c in doc.cells if c.lower() in MISSING or c == "None"]
        if bad:
            problems.append(f"{rel}: {len(bad)} table cell(s) read {bad[0]!r}")
        loose = sum(1 for out, fig in doc.images if out and not fig)
        if loose:
            problems.append(f"{rel}: {loose} figure(s) without a numbered caption")
        if doc.injected:
            problems.append(f"{rel}: shows papermill's injected-parameters cell")
    if not pages:
        problems.append(f"no HTML pages under {root}")
    return problems


def main(argv: list[str]) -> int:
    root = Path(argv[1] if len(argv) > 1 else "_build/html")
    problems = check(root)
    for p in problems:
        print(p)
    print(f"check_html: {'FAILED' if problems else 'OK'}: {len(list(root.rglob('*.html')))} pages")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

#!/usr/bin/env python3
"""Check that the built book loads every asset it needs from its own folder.

The book must render offline: MathJax is served from ``_static/mathjax`` (fetched from
the npm registry by ``make book``), and no page may load a script, stylesheet, font,
image or frame from another host. Plain hyperlinks (``<a href>``) to papers or repositories
are fine: they are not needed to show the page.

Usage: ``python book/scripts/check_offline.py _build/html``; exit status 1 lists every
problem. The checks:

1. every ``<script src>``, ``<link href>`` (stylesheet, preload, icon, ...), ``<img src>``,
   ``<iframe src>``, ``<source src>``, ``<video/audio src>`` and ``<object data>`` in every
   HTML page is a relative (local) path, and that file exists in the build;
2. no HTML page and no stylesheet mentions a known CDN host (jsdelivr, cdnjs, unpkg, ...);
3. stylesheets do not ``@import`` or ``url()`` anything remote;
4. every page that contains math loads the local MathJax (``_static/mathjax/...``), and
   at least one page does (so the check cannot pass vacuously on a book with no math).

One CDN mention is tolerated: sphinx-thebe (always loaded by Jupyter Book) defines the
constant ``THEBE_JS_URL``, which its script fetches only when a reader clicks a Thebe
"launch" button. Thebe is off in ``_config.yml``, so no page has that button; the check
makes sure of that instead of tolerating the constant blindly.
"""

from __future__ import annotations

import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

CDN_HOSTS = (
    "cdn.jsdelivr.net",
    "cdnjs.cloudflare.com",
    "unpkg.com",
    "ajax.googleapis.com",
    "fonts.googleapis.com",
    "fonts.gstatic.com",
    "code.jquery.com",
    "stackpath.bootstrapcdn.com",
    "use.fontawesome.com",
    "polyfill.io",
    "mathjax.org",
)
ASSET_ATTRS = {
    "script": ("src",),
    "img": ("src", "srcset"),
    "iframe": ("src",),
    "source": ("src", "srcset"),
    "video": ("src", "poster"),
    "audio": ("src",),
    "embed": ("src",),
    "object": ("data",),
}
# <link rel=...> values that make the browser fetch the target.
FETCHING_RELS = {"stylesheet", "preload", "modulepreload", "prefetch", "icon", "shortcut",
                 "apple-touch-icon", "manifest"}
# sphinx-thebe's lazily used constant (see the module docstring).
THEBE_CONST = re.compile(r'const THEBE_JS_URL = "[^"]*"')
CSS_REMOTE = re.compile(r"""(?:@import\s+|url\(\s*)['"]?\s*(?:https?:)?//""", re.IGNORECASE)


def is_remote(url: str) -> bool:
    """True for absolute (``http://``, ``https://``) and protocol-relative (``//``) URLs."""
    parts = urlsplit(url.strip())
    return bool(parts.scheme and parts.scheme not in ("data", "blob")) or url.strip().startswith("//")


class AssetParser(HTMLParser):
    """Collects the URLs an HTML page makes the browser fetch, and whether it has math."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.assets: list[tuple[str, str]] = []  # (tag, url)
        self.has_math = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v or "") for k, v in attrs}
        classes = a.get("class", "").split()
        if "math" in classes or "MathJax" in classes:
            self.has_math = True
        if tag == "link":
            rels = set(a.get("rel", "").lower().split())
            if rels & FETCHING_RELS and a.get("href"):
                self.assets.append((tag, a["href"]))
            return
        for attr in ASSET_ATTRS.get(tag, ()):
            value = a.get(attr)
            if not value:
                continue
            urls = [c.strip().split()[0] for c in value.split(",") if c.strip()] if attr == "srcset" else [value]
            self.assets.extend((tag, u) for u in urls)


def check(html_root: Path) -> tuple[list[str], dict[str, int]]:
    """Return (problems, stats) for the built HTML under ``html_root``."""
    problems: list[str] = []
    pages = sorted(p for p in html_root.rglob("*.html") if "_static" not in p.relative_to(html_root).parts)
    stats = {"pages": len(pages), "assets": 0, "math_pages": 0}
    if not pages:
        return [f"no HTML pages under {html_root} (build the book first: make book)"], stats
    for page in pages:
        rel = page.relative_to(html_root)
        text = page.read_text(encoding="utf-8", errors="replace")
        parser = AssetParser()
        parser.feed(text)
        if "thebe-launch-button" in text:
            problems.append(f"{rel}: has a Thebe launch button (it would load Thebe from a CDN)")
        scanned = THEBE_CONST.sub("", text)
        for host in CDN_HOSTS:
            if host in scanned:
                problems.append(f"{rel}: mentions CDN host {host}")
        loads_local_mathjax = False
        for tag, url in parser.assets:
            stats["assets"] += 1
            if is_remote(url):
                problems.append(f"{rel}: <{tag}> loads remote {url}")
                continue
            path = unquote(urlsplit(url).path)
            if not path:
                continue
            target = (page.parent / path).resolve()
            if not target.exists():
                problems.append(f"{rel}: <{tag}> refers to missing local file {url}")
            if tag == "script" and "_static/mathjax/" in path:
                loads_local_mathjax = True
        if parser.has_math:
            stats["math_pages"] += 1
            if not loads_local_mathjax:
                problems.append(f"{rel}: has math but does not load _static/mathjax/")
    if stats["math_pages"] == 0:
        problems.append("no page contains math; the MathJax check would be vacuous (intro.md has math)")
    static = html_root / "_static"
    for css in sorted(static.rglob("*.css")) if static.is_dir() else []:
        if "mathjax" in css.relative_to(static).parts:
            continue
        text = css.read_text(encoding="utf-8", errors="replace")
        rel = css.relative_to(html_root)
        if CSS_REMOTE.search(text):
            problems.append(f"{rel}: stylesheet imports or url()s a remote resource")
        for host in CDN_HOSTS:
            if host in text:
                problems.append(f"{rel}: mentions CDN host {host}")
    return problems, stats


def main(argv: list[str]) -> int:
    root = Path(argv[1] if len(argv) > 1 else "_build/html")
    problems, stats = check(root)
    if problems:
        print(f"check_offline: {len(problems)} problem(s) in {root}:", file=sys.stderr)
        for p in problems:
            print("  " + p, file=sys.stderr)
        return 1
    print(
        f"check_offline: OK: {stats['pages']} pages, {stats['assets']} asset references, all local; "
        f"{stats['math_pages']} page(s) with math load _static/mathjax"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

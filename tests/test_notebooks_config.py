"""The book's plumbing: _toc.yml, _config.yml, the chapter notebooks, the offline check.

These guard what `make book` relies on: every chapter in the table of contents has a source
notebook with a title and a papermill ``parameters`` cell that reads ``CAMERAS_PROFILE``;
the build never executes notebooks itself; MathJax is local; the Makefile sees the same
chapters as the YAML; environment.yml mirrors requirements.txt; and the HTML check in
``book/scripts/check_offline.py`` really fails on a page that loads from a CDN.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = (
    "00_verdict",
    "tutorial_own_model",
    "01_method",
    "02_qualitative",
    "03_table1_pointing_game",
    "04_table2_map_density",
    "05_analysis",
    "06_attacks",
    "07_sanity",
    "08_normgrad",
    "09_input_agnostic",
)
EXECUTED_PREFIX = "book/_executed/"


def _toc() -> dict:
    return yaml.safe_load((ROOT / "_toc.yml").read_text())


def _config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def _toc_files() -> list[str]:
    toc = _toc()
    files: list[str] = []

    def walk(entries: list[dict]) -> None:
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections", []))
            for part in entry.get("parts", []):
                walk(part.get("chapters", []))

    walk(toc.get("chapters", []))
    for part in toc.get("parts", []):
        walk(part.get("chapters", []))
    return files


def _toc_chapters() -> list[str]:
    return [f[len(EXECUTED_PREFIX):] for f in _toc_files() if f.startswith(EXECUTED_PREFIX)]


def _check_offline():
    spec = importlib.util.spec_from_file_location("check_offline", ROOT / "book/scripts/check_offline.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_toc_root_and_pages_exist() -> None:
    toc = _toc()
    assert toc["format"] == "jb-book"
    assert toc["root"] == "book/intro"
    assert (ROOT / "book/intro.md").is_file()
    for f in _toc_files():
        if not f.startswith(EXECUTED_PREFIX):
            assert (ROOT / f"{f}.md").is_file(), f"_toc.yml lists {f}, which has no .md file"


def test_toc_chapters_are_known_and_have_source_notebooks() -> None:
    chapters = _toc_chapters()
    assert len(chapters) == len(set(chapters)), f"duplicate chapters in _toc.yml: {chapters}"
    for name in chapters:
        assert name in CHAPTERS, f"{name} is not one of the book's chapters {CHAPTERS}"
        assert (ROOT / "notebooks" / f"{name}.ipynb").is_file(), (
            f"_toc.yml lists {name} but notebooks/{name}.ipynb does not exist"
        )
    numbered = [c for c in chapters if c[:2].isdigit()]
    assert numbered == sorted(numbered), "chapters should appear in their numbered order"


def test_every_chapter_is_listed_in_the_toc_file() -> None:
    """The chapters are named in _toc.yml, live or commented out, so adding one is one line."""
    text = (ROOT / "_toc.yml").read_text()
    for name in [c for c in CHAPTERS if (ROOT / "notebooks" / f"{c}.ipynb").exists()]:
        assert re.search(rf"^#?\s*- file: {EXECUTED_PREFIX}{name}\s*$", text, re.M), name


@pytest.mark.parametrize("name", _toc_chapters() or [pytest.param(None, marks=pytest.mark.skip("no chapter in _toc.yml yet"))])
def test_chapter_notebook_has_title_and_parameters_cell(name: str) -> None:
    nb = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())
    cells = nb["cells"]
    first = cells[0]
    assert first["cell_type"] == "markdown" and "".join(first["source"]).lstrip().startswith("# "), (
        f"{name}: the first cell must be a markdown cell with the chapter's '# Title'"
    )
    params = [c for c in cells if c["cell_type"] == "code" and "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, f"{name}: needs exactly one code cell tagged 'parameters' (has {len(params)})"
    src = "".join(params[0]["source"])
    assert re.search(r"""^PROFILE\s*=\s*os\.environ\.get\(\s*["']CAMERAS_PROFILE["']\s*,\s*["']offline["']\s*\)""", src, re.M), (
        f"{name}: the parameters cell must set PROFILE = os.environ.get('CAMERAS_PROFILE', 'offline')"
    )
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert re.search(r"""%config InlineBackend\.figure_formats\s*=\s*\[\s*["']png["']\s*\]""", code), (
        f"{name}: set %config InlineBackend.figure_formats = ['png'] (PNG figures in the book and nbval)"
    )


def test_config_builds_executed_copies_only_with_local_mathjax() -> None:
    cfg = _config()
    assert cfg["execute"]["execute_notebooks"] == "off", "papermill executes; the build must not"
    assert cfg["only_build_toc_files"] is True
    excluded = set(cfg["exclude_patterns"])
    for pattern in ("_build", "notebooks", "README.md", "docs", ".*"):
        assert pattern in excluded, f"exclude_patterns lacks {pattern}"
    sphinx = cfg["sphinx"]["config"]
    assert "://" not in sphinx["mathjax_path"] and not sphinx["mathjax_path"].startswith("//")
    assert sphinx["mathjax_path"].startswith("mathjax/")
    assert "book/_static" in sphinx["html_static_path"]
    assert sphinx["nb_output_stderr"] == "remove"
    assert sphinx["nb_ipywidgets_js"] == {}
    assert cfg["launch_buttons"]["thebe"] is False
    for bib in cfg["bibtex_bibfiles"]:
        assert (ROOT / bib).is_file()


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_makefile_reads_the_same_chapters_as_yaml() -> None:
    out = subprocess.run(
        ["make", "--no-print-directory", "-s", "print-chapters"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == _toc_chapters()


def test_environment_yml_mirrors_requirements() -> None:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["name"] == "cameras"
    assert env["channels"] == ["pytorch", "nvidia", "conda-forge"]
    deps = env["dependencies"]
    conda = [d for d in deps if isinstance(d, str)]
    assert "python=3.11" in conda
    assert any(d.startswith("pytorch=2") for d in conda)
    assert any(d.startswith("torchvision") for d in conda)
    assert any(d.startswith("pytorch-cuda") for d in conda)
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    reqs = [
        line.strip()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    expected = [r for r in reqs if not re.match(r"torch(vision)?\b", r)]
    missing = [r for r in expected if r not in pip]
    assert not missing, f"environment.yml pip section lacks {missing} from requirements.txt"
    assert "-e ." in pip


CLEAN_PAGE = """<html><head>
<link rel="stylesheet" href="_static/style.css">
<script defer src="_static/mathjax/tex-mml-chtml.js"></script>
<script>const THEBE_JS_URL = "https://unpkg.com/thebe@0.8.2/lib/index.js"</script>
</head><body><span class="math notranslate nohighlight">\\(x\\)</span>
<a href="https://doi.org/10.1109/CVPR46437.2021.01606">paper</a></body></html>"""


def _write_site(root: Path, page: str) -> Path:
    (root / "_static/mathjax").mkdir(parents=True)
    (root / "_static/style.css").write_text("body { background: url(img.png); }")
    (root / "_static/mathjax/tex-mml-chtml.js").write_text("// stub")
    (root / "index.html").write_text(page)
    return root


def test_check_offline_accepts_a_local_page(tmp_path: Path) -> None:
    problems, stats = _check_offline().check(_write_site(tmp_path, CLEAN_PAGE))
    assert problems == []
    assert stats == {"pages": 1, "assets": 2, "math_pages": 1}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (('src="_static/mathjax/tex-mml-chtml.js"', 'src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"'), "remote"),
        (('href="_static/style.css"', 'href="//fonts.googleapis.com/css?family=Lato"'), "remote"),
        (('src="_static/mathjax/tex-mml-chtml.js"', 'src="_static/mathjax/missing.js"'), "missing local file"),
        (('<script defer src="_static/mathjax/tex-mml-chtml.js"></script>', ""), "does not load _static/mathjax"),
        (("</body>", "<p>see cdnjs.cloudflare.com</p></body>"), "CDN host"),
        (("</body>", '<button class="thebe-launch-button">Launch</button></body>'), "Thebe launch button"),
    ],
)
def test_check_offline_rejects_remote_or_missing_assets(tmp_path: Path, change: tuple[str, str], expected: str) -> None:
    old, new = change
    assert old in CLEAN_PAGE
    problems, _ = _check_offline().check(_write_site(tmp_path, CLEAN_PAGE.replace(old, new)))
    assert any(expected in p for p in problems), problems


def test_check_offline_rejects_remote_css_and_a_book_without_math(tmp_path: Path) -> None:
    site = _write_site(tmp_path, CLEAN_PAGE.replace('class="math notranslate nohighlight"', 'class="x"'))
    (site / "_static/style.css").write_text("@import url('https://fonts.googleapis.com/css2?family=Inter');")
    problems, _ = _check_offline().check(site)
    assert any("stylesheet imports" in p for p in problems), problems
    assert any("vacuous" in p for p in problems), problems


def test_built_book_is_offline_if_built() -> None:
    """When `make book` has run here, its output passes the offline check too."""
    html = ROOT / "_build/html"
    if not (html / "index.html").is_file():
        pytest.skip("no built book in _build/html (run `make book`)")
    problems, stats = _check_offline().check(html)
    assert problems == [], problems
    assert stats["math_pages"] >= 1

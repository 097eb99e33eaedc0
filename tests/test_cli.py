"""The ``cameras`` command line, end to end on a real photo with the offline model."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cameras.cli import main
from cameras.data import skimage_photos

REPO = Path(__file__).resolve().parents[1]
TOP_LINE = re.compile(r"^\s+([1-5])\.\s+(\d+) .+\s(\d+\.\d\d)%$", re.M)


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("img") / "chelsea.png"
    Image.fromarray(skimage_photos("chelsea")["chelsea"]).save(p)
    return p


def check_outputs(out: Path, stem: str, text: str, size: int = 224) -> np.ndarray:
    m = np.load(out / f"{stem}_map.npy")
    assert m.shape == (size, size) and m.dtype == np.float32
    assert np.isfinite(m).all() and m.min() >= 0.0 and m.max() <= 1.0 and m.max() > 0.0
    ov = np.asarray(Image.open(out / f"{stem}_overlay.png"))
    assert ov.shape == (size, size, 3) and ov.dtype == np.uint8
    ranks = TOP_LINE.findall(text)
    assert [r for r, _, _ in ranks[:5]] == ["1", "2", "3", "4", "5"], text
    probs = [float(p) for _, _, p in ranks[:5]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 100.01
    return m


def test_explain_main(photo, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["explain", str(photo), "--sizes", "224", "288", "--out", str(out), "--no-progress"])
    text = capsys.readouterr().out
    assert rc == 0, text
    check_outputs(out, "chelsea", text)
    assert re.search(r"explained class (281|282|285) ", text), text  # a cat
    assert "2/2 sizes kept" in text or "1/2 sizes kept" in text


def test_explain_subprocess_with_named_target(photo, tmp_path):
    out = tmp_path / "sub"
    proc = subprocess.run(
        [sys.executable, "-m", "cameras", "explain", str(photo), "--sizes", "224", "288",
         "--target", "tabby", "--out", str(out), "--device", "cpu"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "explained class 281 'tabby'" in proc.stdout
    check_outputs(out, "chelsea", proc.stdout)
    assert "CAMERAS" in proc.stderr  # the tqdm bar


def test_same_stem_twice_is_not_overwritten():
    from cameras.cli import _output_stems

    paths = [Path("a/x.jpg"), Path("b/x.png"), Path("y.png"), Path("x_1.gif"), Path("c/x.gif")]
    assert _output_stems(paths) == ["x", "x_1", "y", "x_1_1", "x_2"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "resnet5"], "unknown model 'resnet5'"),
        (["--sizes", "0", "224"], "--sizes must be between"),
        (["--sizes", "224", "224"], "must not repeat"),
        (["--target", "1000"], "class index in 0..999"),
        (["--target", "cat"], "ambiguous"),
        (["--alpha", "3"], "--alpha"),
    ],
)
def test_usage_errors(photo, tmp_path, capsys, args, message):
    rc = main(["explain", str(photo), "--out", str(tmp_path), *args])
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and "Traceback" not in err
    assert not list(tmp_path.glob("*.npy"))


def test_bad_image_files(photo, tmp_path, capsys):
    (tmp_path / "fake.jpg").write_text("hello")
    rc = main(["explain", str(photo), str(tmp_path / "fake.jpg"), str(tmp_path / "gone.png"),
               "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "fake.jpg" in err and "gone.png" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()  # nothing is done before all images are readable


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_unavailable(photo, tmp_path, capsys):
    rc = main(["explain", str(photo), "--device", "cuda", "--out", str(tmp_path)])
    assert rc == 2 and "CUDA is not available" in capsys.readouterr().err


def test_weights_download_error(photo, tmp_path, capsys, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    rc = main(["explain", str(photo), "--model", "resnet50", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "resnet50-0676ba61.pth" in err and "Traceback" not in err


def test_argparse_errors_and_models(capsys):
    assert main([]) == 2
    assert main(["explain"]) == 2  # no image
    assert main(["explain", "x.png", "--sizes", "abc"]) == 2
    capsys.readouterr()
    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    assert "efficientnet_lite0" in listing and "layer4" in listing and "Mixed_7c" in listing

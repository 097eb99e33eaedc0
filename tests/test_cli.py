"""The ``cameras`` command line, end to end on real photos with the offline model."""

from __future__ import annotations

import csv
import errno
import os
import re
import shutil
import subprocess
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cameras
from cameras import cli
from cameras.cli import main
from cameras.data import imagenet_classes, skimage_photos

REPO = Path(__file__).resolve().parents[1]
TOP_LINE = re.compile(r"^\s+([1-5])\.\s+(\d+) .+\s(\d+\.\d\d)%$", re.M)
QUICK = ["--sizes", "224", "--no-progress"]  # one size: the quickest run


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("img") / "chelsea.png"
    Image.fromarray(skimage_photos("chelsea")["chelsea"]).save(p)  # 451 x 300, a tabby cat
    return p


def check_outputs(out: Path, stem: str, text: str, shape=(300, 451)) -> np.ndarray:
    m = np.load(out / f"{stem}_map.npy")
    assert m.shape == shape and m.dtype == np.float32
    assert np.isfinite(m).all() and m.min() >= 0.0 and m.max() <= 1.0 and m.max() > 0.0
    ov = np.asarray(Image.open(out / f"{stem}_overlay.png"))
    assert ov.shape[1] == shape[1] and ov.shape[0] > shape[0] and ov.dtype == np.uint8  # + band
    ranks = TOP_LINE.findall(text)
    assert [r for r, _, _ in ranks[:5]] == ["1", "2", "3", "4", "5"], text
    probs = [float(p) for _, _, p in ranks[:5]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 100.01
    return m


def read_index(out: Path) -> list[dict]:
    with open(out / "explanations.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_explain_full_resolution(photo, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["explain", str(photo), "--sizes", "224", "288", "--out", str(out), "--no-progress"])
    text = capsys.readouterr().out
    assert rc == 0, text
    m = check_outputs(out, "chelsea", text)  # the photo's own 300 x 451, no crop
    assert re.search(r"explained class (281|282|285) ", text), text  # a cat
    assert "2/2 sizes kept" in text or "1/2 sizes kept" in text
    # the whole image is explained: the map is not confined to a centre crop
    assert m[:, :60].max() > 0 or m[:, -60:].max() > 0
    (row,) = read_index(out)
    assert row["input"] == str(photo) and row["map"] == "chelsea_map.npy"
    assert (row["height"], row["width"], row["map_height"], row["map_width"]) == ("300", "451", "300", "451")
    assert row["top1_class"] == row["explained_class"] and float(row["explained_prob"]) > 0
    assert not list(out.glob(".*.part"))  # no temporary file left


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


def test_max_side_side_by_side_and_cmap(photo, tmp_path, capsys):
    out = tmp_path / "small"
    rc = main(["explain", str(photo), "--out", str(out), "--max-side", "100", "--side-by-side",
               "--cmap", "inferno", *QUICK])
    text = capsys.readouterr().out
    assert rc == 0
    m = np.load(out / "chelsea_map.npy")
    assert m.shape == (67, 100)  # 300 x 451 with the longer side at 100
    ov = Image.open(out / "chelsea_overlay.png")
    assert ov.width == 200 and ov.height > 67  # photo | overlay, then the labelled band
    left = np.asarray(ov)[:67, :100].astype(int)
    photo_small = np.asarray(Image.open(photo).convert("RGB").resize((100, 67), Image.Resampling.BICUBIC))
    assert np.abs(left - photo_small).mean() < 3  # the left half is the photo itself
    assert "(67x100)" in text


def test_overlay_band_carries_class_probability_and_colorbar(photo, tmp_path, capsys):
    from cameras.cli import _annotate, _colormap_lut

    panel = Image.new("RGB", (451, 300), "gray")
    out = _annotate(panel, "tabby (class 281): p = 51.0%", _colormap_lut("jet"))
    band = np.asarray(out)[300:]
    assert out.size[0] == 451 and band.shape[0] > 20
    assert (band < 64).all(axis=2).any()  # dark text on the white band
    lut = _colormap_lut("jet")
    # the colour bar holds the colour map's two ends
    colours = {tuple(c) for c in band.reshape(-1, 3)}
    assert tuple(lut[0]) in colours and tuple(lut[-1]) in colours


def test_outputs_mirror_input_paths_and_index(photo, tmp_path, capsys):
    for d in ("d1", "d2"):
        (tmp_path / d).mkdir()
        shutil.copy(photo, tmp_path / d / "cat.png")
    Image.open(photo).convert("RGB").save(tmp_path / "d1" / "cat.jpg")
    inputs = [tmp_path / "d1" / "cat.png", tmp_path / "d2" / "cat.png", tmp_path / "d1" / "cat.jpg"]
    out = tmp_path / "out"
    rc = main(["explain", *map(str, inputs), "--out", str(out), *QUICK])
    assert rc == 0, capsys.readouterr().err
    rows = read_index(out)
    assert [r["input"] for r in rows] == list(map(str, inputs))
    assert [r["map"] for r in rows] == ["d1/cat.png_map.npy", "d2/cat_map.npy", "d1/cat.jpg_map.npy"]
    for r in rows:
        assert (out / r["map"]).is_file() and (out / r["overlay"]).is_file()
    # the stems are unique across folders and never the ambiguous cat_1, cat_1_1
    assert not list(out.rglob("cat_1*"))


def test_output_stems():
    from cameras.cli import _output_stems

    paths = [Path("a/x.jpg"), Path("b/x.png"), Path("y.png"), Path("x_1.gif"), Path("c/x.gif")]
    assert _output_stems(paths) == [Path("a/x"), Path("b/x"), Path("y"), Path("x_1"), Path("c/x")]
    same_folder = [Path("d/cat.jpg"), Path("d/CAT.png"), Path("d/dog.png")]
    assert _output_stems(same_folder) == [Path("cat.jpg"), Path("CAT.png"), Path("dog")]
    # a file name that meets another file's stem: the whole folder keeps its extensions
    assert _output_stems([Path("d/a.jpg"), Path("d/a.png"), Path("d/a.jpg.png")]) == [
        Path("a.jpg"), Path("a.png"), Path("a.jpg.png")]


def test_repeated_input_is_explained_once(photo, tmp_path, capsys):
    rc = main(["explain", str(photo), str(photo), "--out", str(tmp_path / "o"), *QUICK])
    captured = capsys.readouterr()
    assert rc == 0 and "more than once" in captured.err
    assert len(read_index(tmp_path / "o")) == 1


def test_images_are_loaded_one_at_a_time(photo, tmp_path, capsys, monkeypatch):
    events = []
    load, save = cli._load_photo, cli._save_outputs

    def logged_load(path, *a):
        events.append("load")
        return load(path, *a)

    def logged_save(*a):
        events.append("save")
        return save(*a)

    monkeypatch.setattr(cli, "_load_photo", logged_load)
    monkeypatch.setattr(cli, "_save_outputs", logged_save)
    other = tmp_path / "coffee.png"
    Image.fromarray(skimage_photos("coffee")["coffee"]).save(other)
    assert main(["explain", str(photo), str(other), "--out", str(tmp_path / "o"), *QUICK]) == 0
    assert events == ["load", "save", "load", "save"]


# -- targets ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "target, index",
    [("cardigan", 474), ("Cardigan", 264), ("tabby", 281), ("281", 281), ("٣", 3),
     ("n02113186", 264), ("golden retr", 207), ("auto", None)],
)
def test_target_names(target, index):
    assert cli._check_target(target, imagenet_classes()) == index


@pytest.mark.parametrize(
    "target, message",
    [("CARDIGAN", "264 'Cardigan', 474 'cardigan'"), ("cat", "ambiguous"), ("²", "no class matches"),
     ("-1", "out of range"), ("1000", "out of range (0..999)"), ("n99999999", "unknown WordNet id")],
)
def test_target_errors(target, message):
    with pytest.raises(cli.CLIError, match=re.escape(message)):
        cli._check_target(target, imagenet_classes())


# -- mistakes and failures ----------------------------------------------------------------
@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "resnet5"], "unknown model 'resnet5'"),
        (["--sizes", "0", "224"], "--sizes must be between"),
        (["--sizes", "224", "224"], "must not repeat"),
        (["--target", "1000"], "out of range"),
        (["--target", "cat"], "ambiguous"),
        (["--target", "²"], "no class matches"),
        (["--alpha", "3"], "--alpha"),
        (["--cmap", "nocmap"], "unknown matplotlib colour map"),
        (["--max-side", "3"], "--max-side"),
    ],
)
def test_usage_errors(photo, tmp_path, capsys, args, message):
    rc = main(["explain", str(photo), "--out", str(tmp_path), *args])
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*.npy"))


def test_bad_image_files(photo, tmp_path, capsys):
    (tmp_path / "fake.jpg").write_text("hello")
    rc = main(["explain", str(photo), str(tmp_path / "fake.jpg"), str(tmp_path / "gone.png"),
               "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "fake.jpg" in err and "gone.png" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()  # nothing is done before all images are readable


def test_folder_named_like_an_output(photo, tmp_path, capsys):
    out = tmp_path / "o"
    (out / "chelsea_map.npy").mkdir(parents=True)
    rc = main(["explain", str(photo), "--out", str(out), *QUICK])
    err = capsys.readouterr().err
    assert rc == 1 and err.strip().splitlines() == [
        f"cameras: error: cannot write {out / 'chelsea_map.npy'}: a folder of that name is in the way"]
    assert sorted(p.name for p in out.iterdir()) == ["chelsea_map.npy"]  # no partial file


def test_full_disk_leaves_no_partial_file(photo, tmp_path, capsys, monkeypatch):
    class Full:
        def __init__(self, f):
            self.f = f
            self.n = 0

        def write(self, data):  # the disk fills up after 1000 bytes
            data = bytes(data)
            if self.n + len(data) > 1000:
                self.f.write(data[: 1000 - self.n])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.n += len(data)
            return self.f.write(data)

    monkeypatch.setattr(cli, "_Stream", Full)
    out = tmp_path / "o"
    rc = main(["explain", str(photo), "--out", str(out), *QUICK])
    err = capsys.readouterr().err
    assert rc == 1 and "No space left on device" in err and len(err.strip().splitlines()) == 1
    assert list(out.iterdir()) == []


def test_unwritable_output_folder(photo, tmp_path, capsys, monkeypatch):
    import tempfile

    def refuse(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    rc = main(["explain", str(photo), "--out", str(tmp_path / "ro"), *QUICK])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot write to the output folder" in err and "Permission denied" in err


def _can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-r", "-m", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _can_unshare(), reason="needs `unshare -r -m` to mount a tmpfs")
def test_real_read_only_and_full_disk(photo, tmp_path):
    """A read-only folder and a full disk, for real: tmpfs mounts in a private namespace."""
    ro, full = tmp_path / "ro", tmp_path / "full"
    ro.mkdir()
    full.mkdir()
    exe = f"{sys.executable} -m cameras explain {photo} --sizes 224 --no-progress"
    script = (f"mount -t tmpfs -o ro,size=1m tmpfs {ro} && mount -t tmpfs -o size=200k tmpfs {full} "
              f"&& {{ {exe} --out {ro}/out; echo rc=$?; {exe} --out {full}; echo rc=$?; ls -A {full}; }}")
    proc = subprocess.run(["unshare", "-r", "-m", "sh", "-c", script], capture_output=True,
                          text=True, cwd=REPO, timeout=300)
    assert proc.stdout.count("rc=") == 2, proc.stderr
    assert "rc=2" in proc.stdout and "rc=1" in proc.stdout
    assert proc.stderr.splitlines() == [
        f"cameras: error: cannot write to the output folder {ro}/out: Read-only file system",
        f"cameras: error: cannot write {full}/chelsea_map.npy: No space left on device",
    ]
    assert proc.stdout.strip().endswith("rc=1")  # `ls -A` printed nothing: no partial file


def test_broken_pipe_ends_quietly(photo, tmp_path):
    """``cameras explain a b | head -1``: no traceback, the shell's SIGPIPE status."""
    second = tmp_path / "x.png"
    shutil.copy(photo, second)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cameras", "explain", str(photo), str(second),
         "--out", str(tmp_path / "o"), "--sizes", "224", "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO,
    )
    first = proc.stdout.readline()
    proc.stdout.close()  # what `head -1` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 141, err
    assert first.startswith(b"model efficientnet_lite0") and "Traceback" not in err and err == ""


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


def test_argparse_errors_version_and_models(capsys):
    assert main([]) == 2
    assert main(["explain"]) == 2  # no image
    assert main(["explain", "x.png", "--sizes", "abc"]) == 2
    capsys.readouterr()
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"cameras {cameras.__version__}"
    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    assert "efficientnet_lite0" in listing and "layer4" in listing and "Mixed_7c" in listing

"""``python -m cameras.experiments``: one clear line for bad input, exit 130 on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from cameras.experiments.__main__ import main


@pytest.mark.parametrize(("args", "match"), [
    (["density", "--profile", "nope"], "unknown profile"),
    (["density", "--profile", "ci", "--set", "n_imgs=3"], "unknown setting"),
    (["density", "--profile", "ci", "--set", "insdel_steps=zero"], "insdel_steps must be"),
])
def test_bad_settings_are_one_line(args, match, capsys, tmp_path):
    assert main(args + ["--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1 and "Traceback" not in err


def test_bad_option_is_argparse_usage(capsys):
    with pytest.raises(SystemExit) as e:
        main(["density", "--set", "novalue"])
    assert e.value.code == 2 and "KEY=VALUE" in capsys.readouterr().err


def test_ctrl_c_exits_130_with_one_line(tmp_path):
    env = {**os.environ, "CAMERAS_RESULTS": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cameras.experiments", "density", "--profile", "ci", "--quiet",
         "--set", "n_images=40", "--set", "loader_workers=0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    csv = tmp_path / "_ci" / "density" / "imagenet_sample_efficientnet_lite0.csv"
    deadline = time.time() + 240
    while time.time() < deadline and not (csv.exists() and csv.stat().st_size > 200):
        time.sleep(0.5)  # wait until rows are being written
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert csv.exists()  # the rows written so far are kept

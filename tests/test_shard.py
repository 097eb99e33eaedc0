"""Sharded runs on Ray: the same rows as one process, no row lost or doubled by a dead worker."""

from __future__ import annotations

import os
import sys

import pandas as pd
import pytest

from cameras.experiments import method as M

ray = pytest.importorskip("ray")
SMALL = {"n_images": 2}


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.shutdown()


def _rows(df):
    return df.sort_values(list(M.EXPERIMENT.key)).reset_index(drop=True)


def _same(a, b):
    """The same rows (keys exactly; values to float rounding: a Ray worker runs torch with
    its own thread count, which changes the order of float reductions)."""
    a, b = _rows(a), _rows(b)
    key = list(M.EXPERIMENT.key)
    pd.testing.assert_frame_equal(a[key], b[key])
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-4, atol=1e-6)


def test_two_workers_give_the_rows_of_one_process(tmp_path, local_ray):
    one = M.run("ci", results=tmp_path / "one", device="cpu", progress=False, **SMALL)
    two = M.run("ci", results=tmp_path / "two", device="cpu", progress=False, ray_workers=2, **SMALL)
    assert len(one) > 0
    _same(one, two)


class CrashOnce(type(M.EXPERIMENT)):
    """The chapter's experiment, whose worker process dies (os._exit) in its first unit."""

    marker = ""

    def compute(self, ctx, unit):
        if not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(1)  # a worker killed mid-unit: no rows returned
        return super().compute(ctx, unit)


def test_a_killed_worker_loses_and_doubles_nothing(tmp_path, local_ray):
    exp = CrashOnce()
    exp.marker = str(tmp_path / "crashed")
    ref = M.run("ci", results=tmp_path / "ref", device="cpu", progress=False, **SMALL)
    got = exp.run("ci", results=tmp_path / "ray", device="cpu", progress=False, ray_workers=2, **SMALL)
    assert os.path.exists(exp.marker)  # a worker did die
    assert not got.duplicated(list(M.EXPERIMENT.key)).any()
    _same(ref, got)
    # a second sharded run has nothing left to do
    again = exp.run("ci", results=tmp_path / "ray", device="cpu", progress=False, ray_workers=2, **SMALL)
    assert len(again) == len(got)


def test_without_ray_a_sharded_run_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(RuntimeError, match=r"pip install '\.\[distributed\]'"):
        M.run("ci", results=tmp_path, device="cpu", progress=False, ray_workers=2, **SMALL)
    assert len(M.run("ci", results=tmp_path, device="cpu", progress=False, **SMALL)) > 0

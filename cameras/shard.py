"""Sharded runs on Ray: the units of a chapter's experiment as Ray tasks, one writer.

``python -m cameras.experiments <name> --workers N`` (a local Ray started on this machine)
or ``--ray-address ADDR`` (an existing Ray cluster, e.g. ``auto`` on a node of it) sends the
*pending* units of :meth:`cameras.engine.Experiment.run` to Ray tasks; ``--device cuda`` gives
each task one GPU (``num_gpus=1``), so a node with 8 GPUs runs 8 units at once.

**Design: workers compute, the driver writes.** A task computes one unit and returns its rows;
the driver is the only writer of each results file (:class:`cameras.runs.ResultsWriter`, with
its lock, identity check and strict parser), and writes a unit's rows when its task returns.
So there is one file per table as in a single-process run (nothing to merge on read), a row
is written once (the writer refuses a key it has), and a crash loses at most the units in
flight:

* a *worker* that dies mid-unit returns nothing; Ray retries the task (``max_retries``) and
  its rows arrive once, from the retry;
* the *driver* that dies keeps every row written so far; the same command resumes with the
  units still pending, like a single-process run.

Returning rows to the driver costs a few kilobytes per unit, negligible next to a unit's
compute. The 8-bit map files and other side files a unit writes (``ctx.maps``) go straight to
the results folder under a per-file lock, so the results folder must be on a filesystem all
workers see (the local disk for one node; a shared filesystem for a cluster).

Ray is optional (``pip install .[distributed]``); without it a run without ``--workers`` /
``--ray-address`` takes the single-process path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["run_sharded", "RemoteContext", "compute_unit"]

#: Models loaded in a worker process, reused by the units it runs (one at a time).
_MODELS: dict[str, Any] = {}


def _ray():
    try:
        import ray
    except ImportError:
        raise RuntimeError("sharded runs (--workers / --ray-address) need Ray: "
                           "pip install '.[distributed]'") from None
    return ray


class RemoteContext:
    """The :class:`cameras.engine.Context` of a unit computed in a Ray worker.

    Models are cached per worker process; :meth:`done` answers from the keys the driver saw
    when it sent the unit; there is no writer (rows go back to the driver).
    """

    def __init__(self, exp, settings: dict[str, Any], folder: Path, device, done: set,
                 progress: bool = False):
        from .engine import Context

        self._base = Context(exp, settings, folder, device, progress)
        self._done = done

    def __getattr__(self, name: str):
        return getattr(self._base, name)

    def model(self, name: str):
        from .models import load_model

        if name not in _MODELS:
            _MODELS.clear()
            _MODELS[name] = load_model(name, device=self._base.device)
        return _MODELS[name]

    def done(self, file: str, key: Sequence[Any], table: str = "") -> bool:
        from .engine import _key_str

        return (file, _key_str(key)) in self._done

    def writer(self, file: str, table: str = ""):  # pragma: no cover - a chapter bug
        raise RuntimeError("a sharded unit returns its rows; it cannot open a writer")


def compute_unit(exp, settings: dict[str, Any], folder: str, unit, done: set,
                 device: str) -> list[dict[str, Any]]:
    """Compute one unit in this process (what a Ray task runs)."""
    import torch

    from .models import resolve_device

    torch.manual_seed(settings.get("seed", 0))
    ctx = RemoteContext(exp, settings, Path(folder), resolve_device(device), done)
    return list(exp.compute(ctx, unit))


def _done_keys(exp, folder: Path, units: Sequence[Any]) -> dict[str, set]:
    """``{file: {(file, key), ...}}``: the keys already written, per file."""
    from .runs import done_keys

    out: dict[str, set] = {}
    for u in units:
        if u.file not in out:
            keys = done_keys(folder / u.file, exp.table(u.table).key)
            out[u.file] = {(u.file, k) for k in keys}
    return out


def run_sharded(exp, s: Mapping[str, Any], folder: Path, todo: Sequence[Any], device: str,
                progress: bool, workers: int | None, address: str | None,
                max_retries: int = 3) -> None:
    """Compute the pending units ``todo`` of ``exp`` as Ray tasks and write their rows."""
    from tqdm.auto import tqdm

    from .engine import Context
    from .models import resolve_device

    ray = _ray()
    if not ray.is_initialized():
        ray.init(address=address, num_cpus=workers if address is None else None,
                 include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
                 runtime_env={"env_vars": {k: v for k, v in os.environ.items()
                                           if k.startswith("CAMERAS_")}})
    gpus = 1 if resolve_device(device).type == "cuda" else 0
    task = ray.remote(num_gpus=gpus, max_retries=max_retries)(compute_unit)
    done = _done_keys(exp, folder, todo)
    exp_ref, s_ref = ray.put(exp), ray.put(dict(s))
    pending = {task.remote(exp_ref, s_ref, str(folder), u, done[u.file], device): u for u in todo}
    with Context(exp, dict(s), folder, resolve_device("cpu"), progress) as ctx, \
            tqdm(total=len(pending), desc=f"{exp.name} ({s['profile']}, Ray)", disable=not progress) as bar:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            unit = pending.pop(ready[0])
            w = ctx.writer(unit.file, unit.table)
            for row in ray.get(ready[0]):
                w.write(row)
            bar.update(1)

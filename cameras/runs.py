"""Evaluations that survive crashes: one CSV row per result, written as it goes, resumable.

An evaluation over many items (images x targets x methods x models) takes hours on a CPU.
:class:`ResultsWriter` appends one row per result to a CSV file and flushes it right away;
:func:`run_evaluation` drives a loop over items with a progress bar and skips what is
already in the file. After a crash or Ctrl-C the same call continues where it stopped:

* **Identity.** The key columns (default ``model, method, image, target``) identify a row.
  On start the existing keys are read; items whose keys are all present are skipped, and a
  row whose key is already present is never written again (no duplicates).
* **Truncated last line.** A crash in the middle of a write can leave a partial last line
  (no newline, or fewer fields than the header). It is cut off the file on open and that row
  is recomputed. A malformed row anywhere else raises a ``ValueError`` (the file is not
  silently "repaired").
* **What was run.** A JSON sidecar ``<name>.meta.json`` holds one entry per session (start
  time, versions of Python/torch/torchvision/numpy/cameras/TorchRay, git commit, device,
  host, and the caller's ``meta`` such as method settings and CAMERAS sizes). Rows may carry
  their own ``settings`` column (JSON; dicts are serialised automatically).

Values are written with :mod:`csv` (``str(value)``); :func:`read_results` reads the file back
as a pandas ``DataFrame``.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import os
import platform
import socket
import subprocess
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_KEY",
    "ResultsWriter",
    "RunStats",
    "run_evaluation",
    "read_results",
    "environment",
    "meta_path",
    "results_dir",
]

DEFAULT_KEY: tuple[str, ...] = ("model", "method", "image", "target")


def results_dir(path: str | os.PathLike | None = None) -> Path:
    """``path``, else ``$CAMERAS_RESULTS``, else ``results/`` in the repository root."""
    if path is not None:
        return Path(path)
    env = os.environ.get("CAMERAS_RESULTS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1] / "results"


def meta_path(path: str | os.PathLike) -> Path:
    """The JSON sidecar of a results CSV: ``results/x.csv`` -> ``results/x.meta.json``."""
    p = Path(path)
    return p.with_name(p.name.removesuffix(".csv") + ".meta.json")


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
            capture_output=True, text=True, timeout=5,
        )
        if out.returncode == 0:
            commit = out.stdout.strip()
            dirty = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=5,
            )
            return commit + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return None


def environment(device: Any = None) -> dict[str, Any]:
    """Versions and machine facts recorded with every run."""
    import numpy
    import torch
    import torchvision

    try:
        from . import __version__ as cameras_version
    except ImportError:  # pragma: no cover
        cameras_version = None
    try:
        import torchray

        torchray_version = getattr(torchray, "__version__", None)
        if torchray_version is None:
            from importlib.metadata import version

            torchray_version = version("torchray")
    except Exception:  # pragma: no cover - optional
        torchray_version = None
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "cameras": cameras_version,
        "torchray": torchray_version,
        "git_commit": _git_commit(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
    }
    if device is not None:
        dev = torch.device(device)
        env["device"] = str(dev)
        if dev.type == "cuda" and torch.cuda.is_available():
            env["device_name"] = torch.cuda.get_device_name(dev)
    return env


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, default=repr, separators=(",", ":"))
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # 0-d tensors / numpy scalars
        value = value.item()
    return str(value)


class ResultsWriter:
    """Append-only CSV of results with resumable identity (see the module docstring).

    Parameters
    ----------
    path:
        The CSV file (parent folders are created).
    key:
        Column names whose values identify a row.
    columns:
        All columns, in order (must include ``key``). ``None``: taken from the existing file,
        else from the first row written (its keys in order).
    meta:
        JSON-serialisable facts about this run (method settings, sizes, profile, ...) stored
        in the sidecar ``<name>.meta.json`` with :func:`environment`.
    device:
        Recorded in the sidecar.
    fsync_every:
        Also ``os.fsync`` every so many rows (flushes happen after every row regardless).

    One writer per file at a time: two processes appending to the same CSV concurrently can
    interleave lines and duplicate rows (there is no file lock). Run parallel jobs into
    different files (e.g. one per model and method, as the pointing experiment does) or one
    after another.

    Use as a context manager::

        with ResultsWriter("results/pg.csv", meta={"settings": s}) as w:
            if not w.done(("resnet50", "gradcam", "img1", 3)):
                w.write({"model": "resnet50", "method": "gradcam", "image": "img1",
                         "target": 3, "hit": 1})
    """

    def __init__(
        self,
        path: str | os.PathLike,
        key: Sequence[str] = DEFAULT_KEY,
        columns: Sequence[str] | None = None,
        meta: Mapping[str, Any] | None = None,
        device: Any = None,
        fsync_every: int = 50,
    ):
        self.path = Path(path)
        self.key = tuple(key)
        if not self.key:
            raise ValueError("key must name at least one column")
        self.columns: list[str] | None = list(columns) if columns is not None else None
        if self.columns is not None:
            missing = [k for k in self.key if k not in self.columns]
            if missing:
                raise ValueError(f"columns must include the key columns; missing {missing}")
            if len(set(self.columns)) != len(self.columns):
                raise ValueError(f"duplicate column names in {self.columns}")
        self.meta = dict(meta or {})
        self.device = device
        self.fsync_every = max(1, int(fsync_every))
        self._keys: set[tuple[str, ...]] = set()
        self._file: io.TextIOWrapper | None = None
        self._writer = None
        self._since_sync = 0
        self.written = 0
        self.skipped = 0
        self.recovered_truncated = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._load_existing()
        # The session is recorded in the sidecar when the first row is written (or now, if a
        # truncated row was dropped), so opening a complete file to resume it (nothing left
        # to do) leaves both files untouched.
        self._meta_pending = True
        if self.recovered_truncated:
            self._write_meta()
            self._meta_pending = False

    # -- opening ---------------------------------------------------------------------------
    def _load_existing(self) -> None:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        raw = self.path.read_bytes()
        text = raw.decode("utf-8", errors="replace")
        lines = text.split("\n")
        # lines[-1] is '' when the file ends with a newline; otherwise it is a partial line
        keep_upto = len(raw)
        if lines[-1] != "":
            keep_upto = raw.rfind(b"\n") + 1  # drop the partial last line
            lines[-1] = ""
            self.recovered_truncated = True
        complete = lines[:-1]
        if not complete:  # not even a whole header line
            self._truncate(keep_upto)
            self._warn_recovered()
            return
        header = next(csv.reader([complete[0]]))
        if self.columns is None:
            self.columns = header
        elif header != self.columns:
            raise ValueError(
                f"{self.path} has columns {header}, but this run writes {self.columns}; "
                "use another file name (or delete the file to start over)"
            )
        missing = [k for k in self.key if k not in header]
        if missing:
            raise ValueError(f"{self.path} lacks the key column(s) {missing} (header: {header})")
        idx = [header.index(k) for k in self.key]
        offset = len((complete[0] + "\n").encode())
        rows = complete[1:]
        for i, line in enumerate(rows):
            fields = next(csv.reader([line])) if line else []
            is_last = i == len(rows) - 1
            if len(fields) != len(header):
                if is_last:  # written in part before a crash: drop it and recompute
                    keep_upto = offset
                    self.recovered_truncated = True
                    break
                raise ValueError(
                    f"{self.path}: line {i + 2} has {len(fields)} fields, expected {len(header)} "
                    "(the file is corrupted in the middle; fix or remove it)"
                )
            self._keys.add(tuple(fields[j] for j in idx))
            offset += len((line + "\n").encode())
        if keep_upto != len(raw):
            self._truncate(keep_upto)
        self._warn_recovered()

    def _warn_recovered(self) -> None:
        if self.recovered_truncated:
            warnings.warn(
                f"{self.path}: dropped an incomplete last row (left by an interrupted write); "
                "it will be recomputed",
                RuntimeWarning,
                stacklevel=4,
            )

    def _truncate(self, size: int) -> None:
        with open(self.path, "r+b") as f:
            f.truncate(size)

    def _write_meta(self) -> None:
        mp = meta_path(self.path)
        doc: dict[str, Any] = {"results": self.path.name, "key": list(self.key), "sessions": []}
        if mp.exists():
            try:
                doc = json.loads(mp.read_text())
            except json.JSONDecodeError:
                warnings.warn(f"{mp} was unreadable; starting a new one", RuntimeWarning,
                              stacklevel=3)
        sessions = doc.setdefault("sessions", [])
        if sessions and self.meta and sessions[0].get("meta") != json.loads(
            json.dumps(self.meta, default=repr)
        ):
            warnings.warn(
                f"{self.path}: resuming with different meta (e.g. settings) than the first "
                "session; both are recorded in the .meta.json sidecar",
                RuntimeWarning,
                stacklevel=3,
            )
        sessions.append({
            "started": _now(),
            "rows_at_start": len(self._keys),
            "recovered_truncated_row": self.recovered_truncated,
            "environment": environment(self.device),
            "meta": self.meta,
        })
        tmp = mp.with_name(mp.name + ".tmp")
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=False, default=repr))
        os.replace(tmp, mp)

    # -- API -------------------------------------------------------------------------------
    def key_of(self, row_or_key: Mapping[str, Any] | Sequence[Any]) -> tuple[str, ...]:
        """The identity tuple (as strings) of a row dict or of a key sequence."""
        if isinstance(row_or_key, Mapping):
            missing = [k for k in self.key if k not in row_or_key]
            if missing:
                raise ValueError(f"row lacks the key column(s) {missing}")
            return tuple(_cell(row_or_key[k]) for k in self.key)
        vals = tuple(row_or_key)
        if len(vals) != len(self.key):
            raise ValueError(f"a key has {len(self.key)} values ({self.key}), got {vals!r}")
        return tuple(_cell(v) for v in vals)

    def done(self, key: Mapping[str, Any] | Sequence[Any]) -> bool:
        """Whether a row with this key is already in the file."""
        return self.key_of(key) in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def _open(self) -> None:
        if self._file is not None:
            return
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._file = open(self.path, "a", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file, lineterminator="\n")
        if new:
            self._writer.writerow(self.columns)
            self._file.flush()

    def write(self, row: Mapping[str, Any]) -> bool:
        """Append ``row`` (flushed at once). Returns ``False`` (and writes nothing) if its key
        is already present. Unknown columns raise a ``ValueError``; missing ones are empty."""
        k = self.key_of(row)
        if k in self._keys:
            self.skipped += 1
            return False
        if self.columns is None:
            cols = list(row)
            for c in self.key:
                if c not in cols:  # pragma: no cover - key_of checked this
                    cols.insert(0, c)
            self.columns = cols
        extra = [c for c in row if c not in self.columns]
        if extra:
            raise ValueError(
                f"row has column(s) {extra} that {self.path.name} does not have "
                f"(columns: {self.columns})"
            )
        if self._meta_pending:
            self._write_meta()
            self._meta_pending = False
        self._open()
        self._writer.writerow([_cell(row.get(c)) for c in self.columns])
        self._file.flush()
        self._since_sync += 1
        if self._since_sync >= self.fsync_every:
            os.fsync(self._file.fileno())
            self._since_sync = 0
        self._keys.add(k)
        self.written += 1
        return True

    def close(self) -> None:
        if self._file is not None:
            self._file.flush()
            try:
                os.fsync(self._file.fileno())
            except OSError:  # pragma: no cover
                pass
            self._file.close()
            self._file = None
            self._writer = None

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class RunStats:
    """What :func:`run_evaluation` did."""

    path: Path
    written: int  #: rows written in this call
    skipped_items: int  #: items whose rows were all present already
    total_rows: int  #: rows in the file now


def _default_keys_of(key: Sequence[str]) -> Callable[[Mapping[str, Any]], list[tuple]]:
    def keys_of(item: Mapping[str, Any]) -> list[tuple]:
        if not isinstance(item, Mapping):
            raise TypeError(
                "items must be mappings holding the key columns "
                f"{tuple(key)} (or pass keys_of=...), got {type(item).__name__}"
            )
        return [tuple(item[k] for k in key)]

    return keys_of


def run_evaluation(
    items: Iterable[Any],
    fn: Callable[[Any], Mapping[str, Any] | Sequence[Mapping[str, Any]] | None],
    path: str | os.PathLike,
    *,
    key: Sequence[str] = DEFAULT_KEY,
    columns: Sequence[str] | None = None,
    keys_of: Callable[[Any], Iterable[Sequence[Any]]] | None = None,
    meta: Mapping[str, Any] | None = None,
    device: Any = None,
    desc: str | None = None,
    progress: bool = True,
    total: int | None = None,
) -> RunStats:
    """Run ``fn`` over ``items``, appending its rows to ``path``, skipping finished items.

    Parameters
    ----------
    items:
        What to evaluate. By default each item is a mapping that holds the key columns (one
        row per item); pass ``keys_of(item) -> [key, ...]`` when an item yields several rows
        (e.g. one image with several target classes); an item with no keys is skipped.
    fn:
        ``fn(item)`` returns a row (mapping), a list of rows, or ``None`` (nothing to write).
        It is called only for items with at least one key not yet in the file; rows whose key
        is present are not written again.
    path, key, columns, meta, device:
        See :class:`ResultsWriter`.
    desc, progress, total:
        The tqdm progress bar (``total`` defaults to ``len(items)`` when available).

    A ``KeyboardInterrupt`` or an exception in ``fn`` stops the loop; every row written before
    it is on disk, and the next call resumes from there.
    """
    from tqdm.auto import tqdm

    keys_of = keys_of or _default_keys_of(key)
    if total is None:
        try:
            total = len(items)  # type: ignore[arg-type]
        except TypeError:
            total = None
    skipped = 0
    with ResultsWriter(path, key=key, columns=columns, meta=meta, device=device) as w:
        bar = tqdm(items, total=total, desc=desc or Path(path).stem, disable=not progress)
        try:
            for item in bar:
                ks = list(keys_of(item))
                if all(w.done(k) for k in ks):  # also: items that yield no rows at all
                    skipped += 1
                    bar.set_postfix(skipped=skipped, refresh=False)
                    continue
                out = fn(item)
                if out is None:
                    continue
                rows = [out] if isinstance(out, Mapping) else list(out)
                for row in rows:
                    w.write(row)
        finally:
            bar.close()
        return RunStats(Path(path), w.written, skipped, len(w))


def read_results(
    path: str | os.PathLike,
    parse_json: Sequence[str] = ("settings",),
    str_columns: Sequence[str] = ("model", "method", "image", "layer", "dataset"),
):
    """The results CSV as a pandas ``DataFrame`` (``settings``-like JSON columns parsed).

    ``str_columns`` stay strings (image names such as ``000001`` are not numbers). A truncated
    last line (crash during a write) is ignored.
    """
    import pandas as pd

    p = Path(path)
    raw = p.read_bytes()
    if raw and not raw.endswith(b"\n"):
        raw = raw[: raw.rfind(b"\n") + 1]
    df = pd.read_csv(io.BytesIO(raw), keep_default_na=True, on_bad_lines="skip",
                     dtype={c: str for c in str_columns})
    for col in parse_json:
        if col in df.columns:
            df[col] = df[col].map(lambda s: json.loads(s) if isinstance(s, str) and s else None)
    return df

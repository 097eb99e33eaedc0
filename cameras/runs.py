"""Result files that never lie: one CSV row per result, written as it goes, resumable.

An evaluation over many items (images x targets x methods x models) takes hours on a CPU.
:class:`ResultsWriter` appends one row per result to a CSV file and flushes it right away;
:func:`run_evaluation` drives a loop over items with a progress bar and skips what is already
in the file. After a crash or Ctrl-C the same call continues where it stopped. The rules:

* **Identity of a row.** The key columns (default ``model, method, image, target``) identify
  a row. Items whose keys are all present are skipped; a key is never written twice.
* **Identity of a file.** The settings that define the *values* of the rows (CAMERAS' sizes,
  RISE's number of masks, ...) are the file's ``identity``, stored in its JSON sidecar
  ``<name>.meta.json``. Opening a file that has rows with another identity raises
  :class:`SettingsMismatch` naming the settings that differ, so old rows are never returned as
  if computed under new settings (:func:`check_identity` makes the same check for a reader).
  An identity may hold ``methods``, ``{method: its settings}``: those define the rows of
  each method, so a run may add a method to a file but never change a stored method's settings.
* **One parser.** The CSV is read with :mod:`csv` (quoted newlines and commas are data) while
  the byte offset of every complete record is tracked (:func:`scan_csv`). Only the *tail*
  after the last complete record can be damaged by a crash (a row written in part, possibly
  cutting a UTF-8 character); the writer cuts it off and recomputes that row, the reader
  ignores it. Anything wrong before the tail (a non-UTF-8 byte, a row with the wrong number of
  fields, broken quoting) raises :class:`ResultsError` in both: the file is never "repaired"
  silently and the reader never skips or pads a row.
* **Sidecar.** ``<name>.meta.json`` holds the key, the identity and one entry per session
  (start time, versions of Python/torch/torchvision/numpy/cameras/TorchRay, git commit,
  device, host, and the caller's ``meta``). It is validated when a writer opens (wrong JSON,
  wrong shape or non-UTF-8 bytes raise before anything is computed) and rewritten atomically;
  its history is never discarded.
* **One writer per file.** A writer holds an exclusive lock (``fcntl.flock`` on
  ``<name>.csv.lock``); a second writer on the same file, in this process or another, raises
  :class:`ResultsLocked` instead of duplicating rows.

:func:`read_results` reads a file back as a pandas ``DataFrame`` with the same strict rule.
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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:  # POSIX; elsewhere writers are not locked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "DEFAULT_KEY",
    "FORMAT",
    "ResultsError",
    "SettingsMismatch",
    "ResultsLocked",
    "ResultsWriter",
    "RunStats",
    "Scan",
    "scan_csv",
    "read_sidecar",
    "check_identity",
    "done_keys",
    "run_evaluation",
    "read_results",
    "environment",
    "meta_path",
    "lock_path",
    "results_dir",
]

DEFAULT_KEY: tuple[str, ...] = ("model", "method", "image", "target")
#: Version of the sidecar layout (2: top-level ``identity``).
FORMAT = 2


class ResultsError(ValueError):
    """A results file or its sidecar cannot be used as it is (the message says why and what to do)."""


class SettingsMismatch(ResultsError):
    """The file's rows were computed under other settings than the ones asked for."""


class ResultsLocked(ResultsError):
    """Another writer holds the file."""


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


def lock_path(path: str | os.PathLike) -> Path:
    """The lock file of a results CSV: ``results/x.csv`` -> ``results/x.csv.lock``."""
    p = Path(path)
    return p.with_name(p.name + ".lock")


# ----------------------------------------------------------------------------------------
# the environment of a session
# ----------------------------------------------------------------------------------------
def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5)
        if out.returncode == 0:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                   cwd=here, capture_output=True, text=True, timeout=5)
            return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return None


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # pragma: no cover - optional
        return None


def environment(device: Any = None) -> dict[str, Any]:
    """Versions and machine facts recorded with every run."""
    import numpy
    import torch
    import torchvision

    from . import __version__ as cameras_version

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "cameras": cameras_version,
        "torchray": _version("torchray"),
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


def _plain(value: Any) -> Any:
    """``value`` as JSON would give it back (tuples -> lists, objects -> repr)."""
    return json.loads(json.dumps(value, sort_keys=True, default=repr))


# ----------------------------------------------------------------------------------------
# reading: one strict parser for the writer and the reader
# ----------------------------------------------------------------------------------------
@dataclass
class Scan:
    """What :func:`scan_csv` found: the header, the complete rows and where they end."""

    header: list[str] | None
    rows: list[list[str]] = field(default_factory=list)
    good: int = 0  #: bytes up to the end of the last complete record
    size: int = 0  #: bytes in the file

    @property
    def partial(self) -> bool:
        """Whether bytes follow the last complete record (a row cut by a crash)."""
        return self.good < self.size


class _Lines:
    """Newline-terminated chunks of ``raw`` decoded one by one, counting the bytes consumed."""

    def __init__(self, raw: bytes, path: Path):
        self.raw, self.path, self.pos, self.line = raw, path, 0, 0

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        end = self.raw.find(b"\n", self.pos)
        if end < 0:  # the unterminated tail is never part of a complete record
            raise StopIteration
        chunk = self.raw[self.pos : end + 1]
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ResultsError(
                f"{self.path}: line {self.line + 1} is not UTF-8 (byte {self.pos + err.start}); "
                "the file is corrupted before its last row: fix or move it"
            ) from None
        self.pos = end + 1
        self.line += 1
        return text


def scan_csv(path: str | os.PathLike) -> Scan:
    """Parse a results CSV strictly (see the module docstring); missing file: empty scan."""
    p = Path(path)
    if not p.exists():
        return Scan(None)
    raw = p.read_bytes()
    lines = _Lines(raw, p)
    reader = csv.reader(lines, strict=True)
    scan = Scan(None, size=len(raw))
    pending: tuple[list[str], int, int] | None = None  # a row whose validity depends on what follows
    try:
        for fields in reader:
            if scan.header is None:
                scan.header, scan.good = fields, lines.pos
                continue
            if pending is not None:
                _bad_row(p, *pending[:2], len(scan.header))
            if len(fields) != len(scan.header):
                pending = (fields, reader.line_num, lines.pos)
                continue
            scan.rows.append(fields)
            scan.good = lines.pos
    except csv.Error as err:  # an open quote at the end of the data: the tail of a crash
        if "end of data" not in str(err):
            raise ResultsError(f"{p}: broken CSV quoting at line {reader.line_num} ({err}); "
                               "the file is corrupted before its last row: fix or move it") from None
    # a last row with the wrong number of fields is the tail of a crash too
    return scan


def _bad_row(path: Path, fields: list[str], line: int, expected: int) -> None:
    raise ResultsError(
        f"{path}: line {line} has {len(fields)} fields, expected {expected} "
        "(the file is corrupted before its last row: fix or move it)"
    )


def read_sidecar(path: str | os.PathLike) -> dict[str, Any] | None:
    """The validated sidecar of results CSV ``path`` (``None`` if there is none).

    Raises :class:`ResultsError` when it is not UTF-8, not JSON, or not of the expected shape
    (an object with a ``sessions`` list of objects and an ``identity`` object).
    """
    mp = meta_path(path)
    if not mp.exists():
        return None
    what = f"{mp} (the sidecar of {Path(path).name})"
    try:
        doc = json.loads(mp.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise ResultsError(f"{what} is not UTF-8; fix or move it (its session history is kept)") from None
    except json.JSONDecodeError as err:
        raise ResultsError(f"{what} is not valid JSON ({err}); fix or move it "
                           "(its session history is kept)") from None
    if not isinstance(doc, dict):
        raise ResultsError(f"{what} must hold a JSON object, got {type(doc).__name__}; fix or move it")
    sessions = doc.get("sessions", [])
    if not isinstance(sessions, list) or not all(isinstance(s, dict) for s in sessions):
        raise ResultsError(f"{what}: 'sessions' must be a list of objects; fix or move it")
    if not isinstance(doc.get("identity", {}), dict):
        raise ResultsError(f"{what}: 'identity' must be an object; fix or move it")
    return doc


def _describe(d: Mapping[str, Any], keys: Iterable[str]) -> str:
    return ", ".join(f"{k}={json.dumps(d[k]) if k in d else '(not set)'}" for k in keys)


def check_identity(path: str | os.PathLike, identity: Mapping[str, Any] | None,
                   scan: Scan | None = None) -> None:
    """Raise :class:`SettingsMismatch` if the rows of ``path`` were computed under another
    ``identity`` (the settings that define their values). No rows, or ``identity=None``: OK."""
    if identity is None:
        return
    scan = scan_csv(path) if scan is None else scan
    if not scan.rows:
        return
    doc = read_sidecar(path)
    stored = None if doc is None else doc.get("identity")
    fresh = ("start a fresh file with another results folder (--results DIR, or results=...) "
             f"or move {Path(path).name} and its .meta.json away")
    if stored is None:
        raise SettingsMismatch(
            f"{path} has {len(scan.rows)} rows but does not record the settings they were computed "
            f"with, so they cannot be checked against this run: {fresh}")
    if isinstance(identity.get("methods"), dict) and not isinstance(stored.get("methods"), dict):
        raise SettingsMismatch(
            f"{path} has {len(scan.rows)} rows but does not record the settings of its methods, "
            f"so they cannot be checked against this run: {fresh}")
    asked, stored = _flat(_plain(dict(identity))), _flat(stored)
    differ = sorted(k for k in set(stored) | set(asked) if stored.get(k, None) != asked.get(k, None)
                    and not (k.startswith("methods.") and (k not in stored or k not in asked)))
    if differ:
        raise SettingsMismatch(
            f"{path} holds {len(scan.rows)} rows computed with {_describe(stored, differ)}; this run "
            f"asks for {_describe(asked, differ)}. Its rows would be returned as if computed "
            f"under the new settings: {fresh}")


def _flat(identity: Mapping[str, Any]) -> dict[str, Any]:
    """The identity with its ``methods`` entry (``{method: settings}``) spread into
    ``methods.<name>`` keys: a method's settings define that method's rows only, so a method
    one side has and the other has not is no mismatch (it adds rows), but a method both have
    must have the same settings."""
    out = {k: v for k, v in identity.items() if k != "methods" or not isinstance(v, dict)}
    if isinstance(identity.get("methods"), dict):
        out.update({f"methods.{m}": v for m, v in identity["methods"].items()})
    return out


def done_keys(path: str | os.PathLike, key: Sequence[str], scan: Scan | None = None) -> set[tuple[str, ...]]:
    """The key tuples (as strings) of the complete rows of ``path`` (strict, see :func:`scan_csv`)."""
    scan = scan_csv(path) if scan is None else scan
    if scan.header is None:
        return set()
    missing = [k for k in key if k not in scan.header]
    if missing:
        raise ResultsError(f"{path} lacks the key column(s) {missing} (header: {scan.header})")
    idx = [scan.header.index(k) for k in key]
    return {tuple(r[i] for i in idx) for r in scan.rows}


def read_results(
    path: str | os.PathLike,
    parse_json: Sequence[str] = ("settings",),
    str_columns: Sequence[str] = ("model", "method", "image", "layer", "dataset"),
):
    """The results CSV as a pandas ``DataFrame`` (``settings``-like JSON columns parsed).

    The same strict rule as the writer (:func:`scan_csv`): a row cut by a crash at the end is
    ignored, damage anywhere else raises :class:`ResultsError`. ``str_columns`` stay strings
    (image names such as ``000001`` are not numbers).
    """
    import pandas as pd

    p = Path(path)
    scan = scan_csv(p)
    if scan.header is None:
        return pd.DataFrame()
    raw = p.read_bytes()[: scan.good]
    df = pd.read_csv(io.BytesIO(raw), keep_default_na=True,
                     dtype={c: str for c in str_columns if c in scan.header})
    for col in parse_json:
        if col in df.columns:
            df[col] = df[col].map(lambda s: json.loads(s) if isinstance(s, str) and s else None)
    return df


# ----------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------
class _Lock:
    """An exclusive, non-blocking ``flock`` on ``<file>.lock`` (released by :meth:`release`)."""

    def __init__(self, path: Path):
        self.path = lock_path(path)
        self.file = None
        if fcntl is None:  # pragma: no cover
            return
        f = open(self.path, "a+")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise ResultsLocked(
                f"{path} is being written by another writer (pid {holder}); wait for it to "
                "finish, or write to another results folder") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self.file = f

    def release(self) -> None:
        if self.file is not None:
            fcntl.flock(self.file.fileno(), fcntl.LOCK_UN)
            self.file.close()
            self.file = None


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
        with :func:`environment` in the sidecar, one entry per session.
    device:
        Recorded in the sidecar.
    identity:
        The settings that define the values of the rows; opening a file whose rows were
        computed under another identity raises :class:`SettingsMismatch`. ``None``: unchecked.
    fsync_every:
        Also ``os.fsync`` every so many rows (flushes happen after every row regardless).

    Use as a context manager::

        with ResultsWriter("results/pg.csv", identity={"num_masks": 8000}) as w:
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
        identity: Mapping[str, Any] | None = None,
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
        self.identity = None if identity is None else _plain(dict(identity))
        self.fsync_every = max(1, int(fsync_every))
        self._keys: set[tuple[str, ...]] = set()
        self._file: io.TextIOWrapper | None = None
        self._writer = None
        self._since_sync = 0
        self.written = 0
        self.skipped = 0
        self.recovered_truncated = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = _Lock(self.path)
        try:
            self._sidecar = read_sidecar(self.path)  # validated before any work is done
            self._load_existing()
        except BaseException:
            self._lock.release()
            raise
        # The session is recorded in the sidecar when the first row is written (or now, if a
        # truncated row was dropped), so opening a complete file to resume it (nothing left
        # to do) leaves both files untouched.
        self._meta_pending = True
        if self.recovered_truncated:
            self._write_meta()
            self._meta_pending = False

    # -- opening ---------------------------------------------------------------------------
    def _load_existing(self) -> None:
        scan = scan_csv(self.path)
        check_identity(self.path, self.identity, scan)
        if scan.header is not None:
            if self.columns is None:
                self.columns = scan.header
            elif scan.header != self.columns:
                raise ResultsError(
                    f"{self.path} has columns {scan.header}, but this run writes {self.columns}; "
                    "use another file name (or move the file away to start over)")
            self._keys = done_keys(self.path, self.key, scan)
        if scan.partial:
            self.recovered_truncated = True
            with open(self.path, "r+b") as f:
                f.truncate(scan.good)
            warnings.warn(f"{self.path}: dropped an incomplete last row (left by an interrupted "
                          "write); it will be recomputed", RuntimeWarning, stacklevel=3)

    def _write_meta(self) -> None:
        doc = self._sidecar or {"results": self.path.name, "key": list(self.key), "sessions": []}
        doc["format"] = FORMAT
        if self.identity is not None and "identity" not in doc:
            doc["identity"] = self.identity
        elif self.identity is not None and isinstance(self.identity.get("methods"), dict):
            # a method this session adds rows for joins the file's identity
            doc["identity"].setdefault("methods", {})
            for m, v in self.identity["methods"].items():
                doc["identity"]["methods"].setdefault(m, v)
        sessions = doc.setdefault("sessions", [])
        meta = _plain(self.meta)
        if sessions and self.meta and sessions[0].get("meta") != meta:
            warnings.warn(
                f"{self.path}: resuming with different meta (e.g. settings) than the first "
                "session; both are recorded in the .meta.json sidecar", RuntimeWarning, stacklevel=3)
        sessions.append({
            "started": _now(),
            "rows_at_start": len(self._keys),
            "recovered_truncated_row": self.recovered_truncated,
            "environment": environment(self.device),
            "meta": self.meta,
        })
        mp = meta_path(self.path)
        tmp = mp.with_name(mp.name + ".tmp")
        tmp.write_text(json.dumps(doc, indent=2, default=repr))
        os.replace(tmp, mp)
        self._sidecar = doc

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
        if self._lock is None:
            raise RuntimeError(f"{self.path}: this writer is closed")
        k = self.key_of(row)
        if k in self._keys:
            self.skipped += 1
            return False
        if self.columns is None:
            self.columns = [c for c in self.key if c not in row] + list(row)
        extra = [c for c in row if c not in self.columns]
        if extra:
            raise ValueError(f"row has column(s) {extra} that {self.path.name} does not have "
                             f"(columns: {self.columns})")
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
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # pragma: no cover - a writer left open by an exception
        try:
            self.close()
        except Exception:
            pass


# ----------------------------------------------------------------------------------------
# a loop over items
# ----------------------------------------------------------------------------------------
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
            raise TypeError("items must be mappings holding the key columns "
                            f"{tuple(key)} (or pass keys_of=...), got {type(item).__name__}")
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
    identity: Mapping[str, Any] | None = None,
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
    path, key, columns, meta, device, identity:
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
    with ResultsWriter(path, key=key, columns=columns, meta=meta, device=device,
                       identity=identity) as w:
        bar = tqdm(items, total=total, desc=desc or Path(path).stem, disable=not progress)
        try:
            for item in bar:
                if all(w.done(k) for k in keys_of(item)):  # also: items that yield no rows
                    skipped += 1
                    bar.set_postfix(skipped=skipped, refresh=False)
                    continue
                out = fn(item)
                for row in [] if out is None else [out] if isinstance(out, Mapping) else out:
                    w.write(row)
        finally:
            bar.close()
        return RunStats(Path(path), w.written, skipped, len(w))

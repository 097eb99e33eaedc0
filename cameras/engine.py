"""One experiment engine: settings, units of work, resumable result files, models and maps.

Every chapter of the book is an :class:`Experiment` (a module of :mod:`cameras.experiments`).
A chapter declares only what is specific to it:

* its **settings**: ``base`` (shared by every profile), ``profiles`` (what ``ci``, ``offline``
  and ``paper`` change; :data:`COMMON` is inherited by all) and a ``schema`` that validates
  and normalises each setting (the :class:`Check` functions below);
* its **identity**: the settings that define the *values* of its rows. A results file
  remembers them (:mod:`cameras.runs`), so rerunning with other values of those settings is an
  error that names them instead of silently returning the old rows;
* its **units of work** (:meth:`Experiment.units`): each :class:`Unit` names the file its rows
  go to, the keys of those rows and the model it needs;
* how to **compute** a unit (:meth:`Experiment.compute`), returning its rows.

:meth:`Experiment.run` does the rest the same way for every chapter: settings resolution
(:meth:`Experiment.settings`), the results folder (``<results>/<name>``, and
``<results>/_ci/<name>`` for the ``ci`` profile so a test never touches stored results), the
identity check of every file (also of complete ones), skipping finished units, loading each
model once (:class:`Context`), a progress bar, writing rows as they come
(:class:`cameras.runs.ResultsWriter`), timing (:meth:`Context.timer`), 8-bit map storage
(:class:`MapStore`) and reading the rows back (:meth:`Experiment.load`).
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import os
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

try:  # POSIX; elsewhere map files are not locked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

from .runs import (
    ResultsWriter,
    check_identity,
    done_keys,
    read_results,
    results_dir,
    scan_csv,
)

__all__ = [
    "COMMON",
    "PROFILE_NAMES",
    "Check",
    "Experiment",
    "Unit",
    "Table",
    "Context",
    "MapStore",
    "load_batches",
    "loader_workers",
    "shifted_sizes",
    "zoomed_sizes",
    "linspace_sizes",
    "chunks",
]

#: Settings every profile of every chapter has (a chapter's ``base`` may override them):
#: the random seed, and ``data_root``: where the images are (``None``: the default of the
#: chapter's data, see :func:`cameras.data.image_items`).
COMMON: dict[str, Any] = {"seed": 0, "data_root": None}
PROFILE_NAMES = ("ci", "offline", "paper")


# ========================================================================================
# settings
# ========================================================================================
class Check:
    """Validators for a chapter's ``schema``: ``check(value, key) -> normalised value``.

    Each raises a ``ValueError`` / ``TypeError`` that names the setting.
    """

    @staticmethod
    def any(v: Any, key: str) -> Any:
        return v

    @staticmethod
    def int(v: Any, key: str, low: int = 1, optional: bool = False) -> int | None:
        if v is None and optional:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) < low:
            what = f"an int >= {low}" + (" or None" if optional else "")
            raise ValueError(f"{key} must be {what}, got {v!r}")
        return int(v)

    @staticmethod
    def positive(v: Any, key: str) -> int:
        return Check.int(v, key)

    @staticmethod
    def optional_positive(v: Any, key: str) -> int | None:
        return Check.int(v, key, optional=True)

    @staticmethod
    def natural(v: Any, key: str) -> int:
        return Check.int(v, key, low=0)

    @staticmethod
    def number(v: Any, key: str) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{key} must be a finite number, got {v!r}")
        return v

    @staticmethod
    def fraction(v: Any, key: str) -> float:
        v = Check.number(v, key)
        if not 0 <= v <= 1:
            raise ValueError(f"{key} must be in [0, 1], got {v!r}")
        return v

    @staticmethod
    def flag(v: Any, key: str) -> bool:
        if not isinstance(v, bool):
            raise ValueError(f"{key} must be true or false, got {v!r}")
        return v

    @staticmethod
    def text(v: Any, key: str) -> str:
        if not isinstance(v, str):
            raise ValueError(f"{key} must be a string, got {v!r}")
        return v

    @staticmethod
    def listof(item: Callable[[Any, str], Any], empty: bool = False) -> Callable[[Any, str], list]:
        """A list (a single value becomes a one-item list) of ``item``-checked values."""
        def check(v: Any, key: str) -> list:
            vals = [v] if isinstance(v, (str, int, float)) else v
            if not isinstance(vals, (list, tuple)):
                raise ValueError(f"{key} must be a list, got {v!r}")
            if not vals and not empty:
                raise ValueError(f"{key} must name at least one entry")
            return [item(x, key) for x in vals]

        return check

    @staticmethod
    def choice(*options: Any) -> Callable[[Any, str], Any]:
        def check(v: Any, key: str) -> Any:
            if v not in options:
                raise ValueError(f"{key} must be one of {', '.join(map(repr, options))}, got {v!r}")
            return v

        return check

    @staticmethod
    def model(v: Any, key: str) -> str:
        from .models import get_spec

        return get_spec(v).name

    @staticmethod
    def method(v: Any, key: str) -> str:
        from .methods import info

        return info(v).name

    @staticmethod
    def size(v: Any, key: str) -> int:
        return Check.int(v, key, low=8)

    @staticmethod
    def workers(v: Any, key: str) -> int | str:
        return v if v == "auto" else Check.int(v, key, low=0)

    @staticmethod
    def mapping(v: Any, key: str) -> dict:
        if v is None:
            return {}
        if not isinstance(v, Mapping):
            raise TypeError(f"{key} must be a dict, got {v!r}")
        return copy.deepcopy(dict(v))

    @staticmethod
    def method_settings(v: Any, key: str) -> dict[str, dict]:
        """``{method: {setting: value}}``, checked against each method's settings."""
        from .methods import info, method_settings

        out = {info(m).name: dict(ms) for m, ms in Check.mapping(v, key).items()}
        for m, ms in out.items():
            method_settings(m, **ms)
        return out

    @staticmethod
    def skip(v: Any, key: str) -> dict[str, list[str]]:
        """``{model: [methods]}``: the (model, method) pairs a profile does not compute."""
        return {Check.model(m, key): Check.listof(Check.method)(ms, key)
                for m, ms in Check.mapping(v, key).items()}


Schema = Mapping[str, Callable[[Any, str], Any]]


def merge_method_settings(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Per-method merge: ``new``'s settings of a method update ``old``'s."""
    merged = copy.deepcopy(dict(old))
    for m, ms in new.items():
        merged[m] = {**merged.get(m, {}), **dict(ms)}
    return merged


# ========================================================================================
# units of work and their results
# ========================================================================================
@dataclass(frozen=True)
class Table:
    """The row identity (``key``), the ``columns`` of one kind of results file, and the
    columns read back as strings whatever they hold (``strings``; default: the usual name
    columns, so image names such as ``000001`` stay names)."""

    key: tuple[str, ...]
    columns: tuple[str, ...]
    strings: tuple[str, ...] | None = None

    def string_columns(self) -> list[str]:
        names = self.strings if self.strings is not None else _STR_COLUMNS
        return [c for c in self.columns if c in names]

    @classmethod
    def parse(cls, spec: str, strings: tuple[str, ...] | None = None) -> Table:
        """A table from ``"key columns | the other columns"`` (names separated by spaces)."""
        key, rest = spec.split("|")
        return cls(tuple(key.split()), tuple(key.split() + rest.split()), strings)


@dataclass
class Unit:
    """One piece of work: the rows with ``keys`` in results ``file``, computed with ``model``.

    ``data`` holds whatever :meth:`Experiment.compute` needs (images, a method, ...);
    ``table`` names the :class:`Table` of the file (chapters with one table leave it ``""``).
    """

    file: str
    keys: list[tuple]
    model: str | None = None
    data: Any = None
    table: str = ""


def _key_str(key: Sequence[Any]) -> tuple[str, ...]:
    from .runs import _cell

    return tuple(_cell(v) for v in key)


# ========================================================================================
# what compute() gets: models, writers, timing, maps
# ========================================================================================
class MapStore:
    """Maps as 8-bit ``.npz`` files under a folder, one file per group (e.g. model/method).

    Written atomically (a temporary file, then a rename); a file cut by a crash reads as empty,
    so its maps are recomputed.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def path(self, *parts: str) -> Path:
        return self.folder.joinpath(*[p.replace("+", "p") for p in parts[:-1]],
                                    parts[-1].replace("+", "p") + ".npz")

    def read(self, *parts: str) -> dict[str, np.ndarray]:
        p = self.path(*parts)
        if not p.exists():
            return {}
        try:
            with np.load(p) as z:
                return {k: z[k] for k in z.files}
        except (zipfile.BadZipFile, OSError, ValueError, EOFError):
            return {}  # a torn write: the maps are recomputed

    def write(self, parts: Sequence[str], arrays: Mapping[str, np.ndarray]) -> None:
        with self._locked(parts) as p:
            self._write(p, arrays)

    def update(self, parts: Sequence[str], arrays: Mapping[str, np.ndarray]) -> None:
        """Add (or replace) ``arrays`` in the file of ``parts`` (read and write under one lock,
        so parallel workers of a sharded run do not lose each other's maps)."""
        with self._locked(parts) as p:
            self._write(p, {**self.read(*parts), **arrays})

    @contextlib.contextmanager
    def _locked(self, parts: Sequence[str]) -> Iterator[Path]:
        p = self.path(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p.with_name(p.name + ".lock"), "a") as lock:
            if fcntl is not None:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            yield p

    @staticmethod
    def _write(p: Path, arrays: Mapping[str, np.ndarray]) -> None:
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        tmp = p.with_name(f"{p.name}.{os.getpid()}.tmp")
        tmp.write_bytes(buf.getvalue())
        os.replace(tmp, p)

    @staticmethod
    def quantise(m: Any) -> np.ndarray:
        """A map in [0, 1] as uint8 (1/255 steps)."""
        if isinstance(m, torch.Tensor):
            m = m.detach().float().clamp(0, 1).cpu().numpy()
        return (np.clip(m, 0, 1) * 255).round().astype(np.uint8)

    @staticmethod
    def dequantise(a: np.ndarray) -> np.ndarray:
        return a.astype(np.float32) / 255.0


def shifted_sizes(sizes: Sequence[int], input_size: int, base: int = 224) -> list[int]:
    """CAMERAS sizes for a model with native input ``input_size``: ``sizes`` shifted so that
    the first one, ``base``, becomes ``input_size`` (the same 100 px steps; Lite1: 240 ... 940)."""
    return [int(v) - int(base) + int(input_size) for v in sizes]


def zoomed_sizes(side: int, zoom: Sequence[float]) -> list[int]:
    """CAMERAS sizes as zoom factors of an input ``side``: ``round(side * z)`` (with the paper's
    factors s / 224 and a 224 px side, the paper's sizes; on a 448 px grid 448 ... 1848)."""
    return [int(round(side * float(z))) for z in zoom]


def linspace_sizes(n: int, lo: int, hi: int) -> list[int]:
    """``n`` sizes evenly spaced from ``lo`` to ``hi`` (rounded half up): the "number of steps"."""
    if n < 2:
        raise ValueError(f"need at least 2 steps, got {n}")
    return [int(math.floor(lo + i * (hi - lo) / (n - 1) + 0.5)) for i in range(n)]


def chunks(items: Sequence[Any], n: int) -> list[Sequence[Any]]:
    """``items`` in consecutive slices of ``n`` (the last one shorter)."""
    return [items[i : i + n] for i in range(0, len(items), n)]


def loader_workers(w: int | str) -> int:
    """Data-loader worker processes: ``"auto"`` is 0 on a machine with 2 CPUs or fewer (the
    workers would compete with the model for the cores), else up to 8; an int is used as is."""
    if w == "auto":
        cpus = os.cpu_count() or 1
        return 0 if cpus <= 2 else min(8, cpus - 1)
    return int(w)


class _Images(torch.utils.data.Dataset):
    def __init__(self, items: Sequence[Any], preprocess: Callable[[Any], Any]):
        self.items, self.preprocess = list(items), preprocess

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        from .images import load_image

        it = self.items[i]
        return self.preprocess(load_image(it.source)), it.label, i


def load_batches(items: Sequence[Any], preprocess: Callable[[Any], Any], batch_size: int,
                 workers: int | str = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[int]]]:
    """``(images, labels, positions)`` batches of :class:`~cameras.data.ImageItem` s, decoded
    and preprocessed by ``workers`` loader processes (:func:`loader_workers`)."""
    n = loader_workers(workers)
    loader = torch.utils.data.DataLoader(_Images(items, preprocess), batch_size=batch_size,
                                         shuffle=False, num_workers=n, persistent_workers=False)
    for x, labels, idx in loader:
        yield x, labels, idx.tolist()


class Context:
    """What :meth:`Experiment.compute` works with during one :meth:`Experiment.run`.

    ``settings``, ``device``, ``folder`` (the results folder), ``progress``, ``maps`` (a
    :class:`MapStore` under ``folder/maps``), :meth:`model` (loaded once, one at a time),
    :meth:`writer` (one per file, opened on first use) and :meth:`timer`.
    """

    def __init__(self, exp: Experiment, settings: dict[str, Any], folder: Path, device,
                 progress: bool = True):
        self.exp, self.settings, self.folder = exp, settings, folder
        self.device, self.progress = device, progress
        self.maps = MapStore(folder / "maps")
        #: anything a chapter computes once per run and reuses across units (e.g. its grids)
        self.cache: dict[str, Any] = {}
        self._model: tuple[str, Any] | None = None
        self._writers: dict[str, ResultsWriter] = {}

    def model(self, name: str):
        """The :class:`~cameras.models.LoadedModel` ``name`` (the previous one is released)."""
        from .models import load_model

        if self._model is None or self._model[0] != name:
            self._model = None
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            self._model = (name, load_model(name, device=self.device))
        return self._model[1]

    def writer(self, file: str, table: str = "") -> ResultsWriter:
        if file not in self._writers:
            t = self.exp.table(table)
            meta = {"experiment": self.exp.name, "settings": self.settings,
                    **self.exp.meta(self, file)}
            self._writers[file] = ResultsWriter(
                self.folder / file, key=t.key, columns=t.columns, meta=meta, device=self.device,
                identity=self.exp.identity_of(self.settings, file))
        return self._writers[file]

    def done(self, file: str, key: Sequence[Any], table: str = "") -> bool:
        """Whether the row ``key`` is already in ``file``."""
        return self.writer(file, table).done(key)

    @contextlib.contextmanager
    def timer(self) -> Iterator[dict[str, float]]:
        """``with ctx.timer() as t: ...`` then ``t["seconds"]`` (device synchronised)."""
        out = {"seconds": math.nan}
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda *_: None)
        sync(self.device)
        t0 = time.perf_counter()
        yield out
        sync(self.device)
        out["seconds"] = time.perf_counter() - t0

    def close(self) -> None:
        for w in self._writers.values():
            w.close()
        self._writers.clear()
        self._model = None

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ========================================================================================
# the experiment
# ========================================================================================
class Experiment:
    """Base class of a chapter's experiment (see the module docstring).

    Subclasses set :attr:`name`, :attr:`base`, :attr:`profiles`, :attr:`schema`,
    :attr:`identity`, :attr:`key` / :attr:`columns` (or :attr:`tables`), and implement
    :meth:`units` and :meth:`compute`; :meth:`validate`, :meth:`meta`, :meth:`identity_of` and
    :meth:`load` can be refined.
    """

    name: ClassVar[str] = ""
    base: ClassVar[dict[str, Any]] = {}
    profiles: ClassVar[dict[str, dict[str, Any]]] = {}
    schema: ClassVar[Schema] = {}
    identity: ClassVar[tuple[str, ...]] = ()
    key: ClassVar[tuple[str, ...]] = ("model", "method", "image", "target")
    columns: ClassVar[tuple[str, ...]] = ()
    tables: ClassVar[dict[str, Table]] = {}
    #: settings merged per method instead of replaced (``{method: {setting: value}}``)
    merged: ClassVar[tuple[str, ...]] = ("method_settings",)

    # -- settings --------------------------------------------------------------------------
    @property
    def PROFILES(self) -> dict[str, dict[str, Any]]:  # noqa: N802 - the chapters' name for it
        """Every profile's full settings (before validation)."""
        return {p: self._profile(p) for p in self.profiles}

    def _profile(self, name: str) -> dict[str, Any]:
        s = copy.deepcopy({**COMMON, **self.base})
        for k, v in copy.deepcopy(self.profiles[name]).items():
            s[k] = merge_method_settings(s.get(k, {}), v) if k in self.merged else v
        s["profile"] = name
        return s

    def settings(self, profile: str | Mapping[str, Any] = "offline", **overrides: Any) -> dict[str, Any]:
        """The validated settings of ``profile`` (a name, or a dict of settings that start
        from ``offline``) with ``overrides``; ``None`` overrides are ignored.

        A ``ValueError`` names an unknown profile or setting, or a bad value.
        """
        if isinstance(profile, str):
            if profile not in self.profiles:
                raise ValueError(f"unknown profile {profile!r}; choose from {', '.join(self.profiles)}")
            s = self._profile(profile)
        elif isinstance(profile, Mapping):
            s = self._profile("offline") if "offline" in self.profiles else {}
            s.update(copy.deepcopy(dict(profile)))
            s.setdefault("profile", "custom")
        else:
            raise TypeError(f"profile must be a name or a settings dict, got {type(profile).__name__}")
        valid = set(s)
        unknown = sorted(set(overrides) - valid)
        if unknown:
            raise ValueError(f"unknown setting(s) {', '.join(unknown)} for {self.name}; "
                             f"valid: {', '.join(sorted(valid - {'profile'}))}")
        for k, v in copy.deepcopy(overrides).items():
            if v is not None:
                s[k] = merge_method_settings(s.get(k, {}), v) if k in self.merged else v
        for k, check in self.schema.items():
            if k in s:
                s[k] = check(s[k], k)
        self.validate(s)
        return s

    def validate(self, s: dict[str, Any]) -> None:
        """Checks across settings (after the schema); may normalise ``s`` in place."""

    def identity_of(self, s: Mapping[str, Any], file: str) -> dict[str, Any]:
        """The settings that define the values of the rows of ``file``."""
        return {k: s[k] for k in self.identity if k in s}

    def identity_from_meta(self, meta: Mapping[str, Any], file: str) -> dict[str, Any]:
        """The identity of a file written before identities were stored, from the ``meta`` of
        its first session (used once by ``scripts/migrate_results_identity.py``)."""
        return self.identity_of(meta["settings"], file)

    # -- files -----------------------------------------------------------------------------
    def folder(self, s: Mapping[str, Any], results: str | os.PathLike | None = None) -> Path:
        """``<results>/<name>``, or ``<results>/_ci/<name>`` for the ``ci`` profile."""
        base = results_dir(results)
        return (base / "_ci" / self.name) if s.get("profile") == "ci" else (base / self.name)

    def table(self, name: str = "") -> Table:
        if name in self.tables:
            return self.tables[name]
        if name:
            raise ValueError(f"{self.name} has no table {name!r}")
        return Table(tuple(self.key), tuple(self.columns))

    def meta(self, ctx: Context, file: str) -> dict[str, Any]:
        """Extra facts recorded in a file's sidecar (model weights, layer, ...)."""
        return {}

    # -- the work --------------------------------------------------------------------------
    def units(self, s: Mapping[str, Any]) -> Iterable[Unit]:
        raise NotImplementedError

    def compute(self, ctx: Context, unit: Unit) -> Iterable[dict[str, Any]]:
        """The rows of ``unit``: a list, or a generator (rows are written as they come; a unit
        whose rows are partly done can skip them with ``ctx.done(unit.file, key)``)."""
        raise NotImplementedError

    def pending(self, s: Mapping[str, Any], folder: Path, units: Sequence[Unit]) -> list[Unit]:
        """The units with a row still missing; every file's identity is checked first."""
        done: dict[str, set] = {}
        for file in dict.fromkeys(u.file for u in units):
            path = folder / file
            scan = scan_csv(path)
            check_identity(path, self.identity_of(s, file), scan)
            table = next(u.table for u in units if u.file == file)
            done[file] = done_keys(path, self.table(table).key, scan) if scan.header else set()
        return [u for u in units if not all(_key_str(k) in done[u.file] for k in u.keys)]

    def run(self, profile: str | Mapping[str, Any] = "offline",
            results: str | os.PathLike | None = None, device: str | torch.device = "auto",
            progress: bool = True, ray_workers: int | None = None, ray_address: str | None = None,
            **overrides: Any):
        """Compute (or resume) the rows of ``profile`` and return :meth:`load`'s result.

        Nothing is loaded, computed or written when every row is already in the files.
        ``ray_workers`` / ``ray_address``: shard the units over Ray tasks (:mod:`cameras.shard`);
        without them, one process computes every unit. (``workers`` is a setting of some
        experiments, the data loader's processes: pass it in ``overrides``.)
        """
        from tqdm.auto import tqdm

        from .models import resolve_device

        s = self.settings(profile, **overrides)
        folder = self.folder(s, results)
        units = list(self.units(s))
        todo = self.pending(s, folder, units)
        if todo and (ray_workers or ray_address):
            from .shard import run_sharded

            run_sharded(self, s, folder, todo, str(device), progress, ray_workers, ray_address)
        elif todo:
            torch.manual_seed(s.get("seed", 0))
            with Context(self, s, folder, resolve_device(device), progress) as ctx:
                for unit in tqdm(todo, desc=f"{self.name} ({s['profile']})", disable=not progress):
                    w = ctx.writer(unit.file, unit.table)
                    for row in self.compute(ctx, unit):  # a list, or a generator of rows
                        w.write(row)
        return self.load(s, results)

    # -- reading ---------------------------------------------------------------------------
    def rows(self, s: Mapping[str, Any], results: str | os.PathLike | None = None,
             units: Sequence[Unit] | None = None, table: str = ""):
        """The rows of the units of ``s`` (of one ``table``) in their files, in file order."""
        import pandas as pd

        folder = self.folder(s, results)
        units = [u for u in (self.units(s) if units is None else units) if u.table == table]
        frames = []
        t = self.table(table)
        for file in dict.fromkeys(u.file for u in units):
            path = folder / file
            scan = scan_csv(path)
            if not scan.rows:
                continue
            check_identity(path, self.identity_of(s, file), scan)
            want = {_key_str(k) for u in units if u.file == file for k in u.keys}
            idx = [scan.header.index(k) for k in t.key]
            mask = [tuple(r[i] for i in idx) in want for r in scan.rows]
            df = read_results(path, str_columns=t.string_columns())
            frames.append(df[mask])
        if not frames:
            return pd.DataFrame(columns=list(t.columns))
        return pd.concat(frames, ignore_index=True)

    def load(self, s: Mapping[str, Any], results: str | os.PathLike | None = None):
        """What :meth:`run` returns: by default :meth:`rows`."""
        return self.rows(s, results)


#: columns read as strings by default (:class:`Table`)
_STR_COLUMNS = ("model", "method", "image", "layer", "dataset")


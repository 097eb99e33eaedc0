r"""Pointing game: the paper's Table 1 (TorchRay's protocol) and our offline grid pointing game.

Table 1 of Jalwana et al. (CVPR 2021) is Zhang et al.'s pointing game (ECCV 2016) as TorchRay
runs it (VOC07 test / COCO14 val, fine-tuned VGG16 / ResNet50, *All* / *Difficult* pairs), with
TorchRay's benchmark as baselines (:data:`PAPER_TABLE1`, the only numbers shown as reported);
the ``paper`` profile runs it (:func:`cameras.metrics.pointing_game_run`). Offline: the grid
pointing game of Böhle et al. (CVPR 2022), 2x2 grids of confidently classified ImageNet-sample
images of four classes (:func:`cameras.metrics.make_grids`), each cell's map scored by its mass
and its maximum in the cell (chance 25 %). Cells are the model's native crops; CAMERAS keeps
the paper's zoom factors on the grid (:func:`cameras.engine.zoomed_sizes`). Files per model:
``grid_<model>/<method>.csv`` (a row per cell), ``example.npz`` (grid 0, each method's map for
its first cell), ``timing.json``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core import DEFAULT_SIZES
from ..datasets import CHECKPOINTS, _norm_kind
from ..engine import Check, Context, Experiment, MapStore, Unit, load_batches, zoomed_sizes
from ..methods import PAPER_METHODS, names
from ..metrics import GRID_COLUMNS
from ._common import methods_for

__all__ = ["EXPERIMENT", "PROFILES", "PAPER_TABLE1", "ZOOM", "settings", "run", "methods_for", "method_kwargs", "zoom_factor",
           "load_timing", "settings_note", "summary", "summary_table", "paper_table", "paper_summary", "plot_example"]

ZOOM: list[float] = [s / 224 for s in DEFAULT_SIZES]  #: the paper's zoom factors s / 224
GRID_SETTINGS, CELLS = ("candidates", "cell_size", "seed", "threshold"), 4  #: what picks the 2x2 grids
_NONSTRICT = {"excitation_backprop": {"strict": False}, "contrastive_excitation_backprop": {"strict": False}}

#: Published pointing-game accuracies (%) of TorchRay's benchmark, the source of the baseline
#: rows of the paper's Table 1: TorchRay's ``docs/pointing.csv`` (facebookresearch/TorchRay,
#: commit 6a198ee61d229360a3def590410378d2ed6f1f06; RISE and extremal perturbation are means of
#: 3 runs). The paper's own rows (CAMERAS; NormGrad) could not be retrieved and are not listed.
PAPER_TABLE1: dict[str, Any] = {
    "source": (
        "TorchRay pointing-game benchmark table, docs/pointing.csv of facebookresearch/TorchRay "
        "(commit 6a198ee); the CAMERAS paper (Table 1) takes its baselines from TorchRay's "
        "benchmark. CAMERAS' and NormGrad's own rows of Table 1 could not be retrieved here."
    ),
    "columns": [(d, m, sub) for d in ("VOC07 test", "COCO14 val") for m in ("VGG16", "ResNet50")
                for sub in ("All", "Diff")],
    "rows": {
        "center": [69.6, 42.4, 69.6, 42.4, 27.8, 19.5, 27.8, 19.5],
        "gradient": [76.3, 56.9, 72.3, 56.8, 37.7, 31.4, 35.0, 29.4],
        "deconvnet": [67.5, 44.2, 68.6, 44.7, 30.7, 23.0, 30.0, 21.9],
        "guided_backprop": [75.9, 53.0, 77.2, 59.4, 39.1, 31.4, 42.1, 35.3],
        "excitation_backprop": [77.1, 56.6, 84.5, 70.8, 39.8, 32.8, 49.6, 43.9],
        "contrastive_excitation_backprop": [79.9, 66.5, 90.7, 82.1, 49.7, 44.3, 58.5, 53.6],
        "rise": [86.9, 75.1, 86.4, 78.8, 50.8, 45.3, 54.7, 50.0],
        "gradcam": [86.6, 74.0, 90.4, 82.3, 54.2, 49.0, 57.3, 52.3],
        "extremal_perturbation": [88.0, 76.1, 88.9, 78.7, 51.5, 45.9, 56.5, 51.5],
    },
}
_TABLE1_NAMES = {"voc07": "VOC07 test", "coco14": "COCO14 val", "vgg16": "VGG16", "resnet50": "ResNet50"}


def zoom_factor(v: Any, key: str) -> float:
    if Check.number(v, key) <= 0:
        raise ValueError(f"{key} must be positive factors, got {v!r}")
    return float(v)


class Pointing(Experiment):
    name = "pointing"
    key, columns = ("model", "method", "image", "cell"), GRID_COLUMNS
    base = {
        "task": "grid", "models": ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"],
        "methods": list(names()), "candidates": None, "cell_size": None, "n_grids": 32,
        "method_grids": {}, "threshold": 0.5, "cameras_zoom": list(ZOOM), "method_settings": {},
        "batch_size": 128, "grid_batch": 8, "workers": "auto", "example": True, "skip": {},
        "datasets": ["voc07", "coco14"], "limit": None,
    }
    profiles = {
        "ci": {"models": ["efficientnet_lite0"], "candidates": 60, "cell_size": 112, "n_grids": 2,
               "method_grids": {"extremal_perturbation": 1, "rise": 1}, "cameras_zoom": [1.0, 1.5],
               "method_settings": {"rise": {"num_masks": 32, "batch_size": 16},
                                   "extremal_perturbation": {"max_iter": 2, "areas": [0.1]}, **_NONSTRICT},
               "batch_size": 32, "grid_batch": 2, "workers": 0},
        # extremal perturbation: the 2 grids the stored GPU run scored, and not on Lite2's 520 px
        # grids (about an hour for 12 maps on the 2-core CPU that computed Lite2's last methods;
        # a GPU run adds it with --set 'skip={}')
        "offline": {"method_grids": {"extremal_perturbation": 2},
                    "method_settings": {"cameras": {"batch_size": 8},
                                        "rise": {"num_masks": 2000, "batch_size": 250},
                                        "extremal_perturbation": {"max_iter": 100}, **_NONSTRICT},
                    "skip": {"efficientnet_lite2": ["extremal_perturbation"]}},
        "paper": {"task": "pointing_game", "models": ["vgg16", "resnet50"], "methods": list(PAPER_METHODS)},
    }
    schema = {
        "task": Check.choice("grid", "pointing_game"), "models": Check.listof(Check.model),
        "methods": Check.listof(Check.method), "candidates": Check.optional_positive,
        "cell_size": Check.optional_positive, "n_grids": Check.positive, "method_grids": lambda v, k: {
            Check.method(m, k): Check.positive(n, f"{k}[{m!r}]") for m, n in Check.mapping(v, k).items()},
        "threshold": Check.fraction, "seed": Check.natural, "cameras_zoom": Check.listof(zoom_factor),
        "method_settings": Check.method_settings, "batch_size": Check.positive,
        "grid_batch": Check.positive, "workers": Check.workers, "example": Check.flag,
        "skip": Check.skip, "datasets": Check.listof(lambda v, k: _norm_kind(v)), "limit": Check.optional_positive,
    }

    def validate(self, s: dict[str, Any]) -> None:
        if s["task"] == "grid" and "sizes" in s["method_settings"].get("cameras", {}):
            raise ValueError("set CAMERAS' sizes through cameras_zoom for the grid task")
        archs = sorted({a for a, _ in CHECKPOINTS})
        if s["task"] == "pointing_game" and not set(s["models"]) <= set(archs):
            raise ValueError(f"the pointing game models are TorchRay's {archs}, not {s['models']}")

    def units(self, s: Mapping[str, Any]) -> list[Unit]:
        """One unit per (model, method) of the grid task: the rows of its grids' cells."""
        if s["task"] != "grid":
            return []
        return [Unit(f"grid_{model}/{method.replace('+', 'p')}.csv",
                     [(model, method, f"grid{n:05d}", c) for n in range(min(s["n_grids"], s["method_grids"].get(method, s["n_grids"])))
                      for c in range(CELLS)], model, method)
                for model in s["models"] for method in methods_for(s, model)]

    def identity_of(self, s: Mapping[str, Any], file: str) -> dict[str, Any]:
        """The method's full settings (CAMERAS' sizes included) and the grid settings."""
        from ..methods import method_settings
        from ..models import get_spec

        model, method = _parse(file)
        side = 2 * (s["cell_size"] or get_spec(model).input_size)
        return {"settings": method_settings(method, **method_kwargs(s, method, side)),
                **{k: s[k] for k in GRID_SETTINGS}}

    def identity_from_meta(self, meta: Mapping[str, Any], file: str) -> dict[str, Any]:
        """The method's full settings recorded by the first session, and the ``offline``
        profile's grid settings (never changed in its history; the stored rows agree: every
        source is a class index, i.e. all 1000 candidates, and every confidence >= 0.5)."""
        off = self._profile("offline")
        return {"settings": meta["settings"], **{k: off[k] for k in GRID_SETTINGS}}

    def pending(self, s: Mapping[str, Any], folder, units: Sequence[Unit]) -> list[Unit]:
        """Also the units whose method lacks its map in the model's ``example.npz``."""
        todo = {id(u) for u in super().pending(s, folder, units)}
        ex = {m: MapStore(folder).read(f"grid_{m}", "example") for m in s["models"]}
        return [u for u in units if id(u) in todo or s["example"] and f"map/{u.data}" not in ex[u.model]]

    def compute(self, ctx: Context, unit: Unit):
        from ..methods import info
        from ..metrics import grid_pointing_rows

        s, model, method = ctx.settings, unit.model, unit.data
        lm = ctx.model(model)
        grids = _grids(ctx, lm)
        kw = method_kwargs(s, method, grids.images.shape[-1])
        todo = [n for n in range(len(unit.keys) // CELLS) if not all(
            ctx.done(unit.file, (model, method, f"grid{n:05d}", c)) for c in range(CELLS))]
        step = s["grid_batch"] if info(method).batched else 1
        seconds, first = 0.0, None
        for i in range(0, len(todo), step):
            with ctx.timer() as t:
                rows, maps = grid_pointing_rows(lm.model, grids, todo[i : i + step], method,
                                                model_name=model, **kw)
            seconds += t["seconds"]
            first = maps[0] if todo[i] == 0 else first
            yield from rows
        if todo:  # seconds per map of this run, in grid_<model>/timing.json
            p, dev, n = ctx.folder / f"grid_{model}" / "timing.json", ctx.device, CELLS * len(todo)
            doc = json.loads(p.read_text()) if p.exists() else {}
            doc.setdefault(method, []).append({
                "seconds": round(seconds, 3), "maps": n, "seconds_per_map": round(seconds / n, 4), "device":
                str(dev), "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"})
            p.write_text(json.dumps(doc, indent=1, sort_keys=True))
        if s["example"]:
            _save_example(ctx, lm, grids, method, kw, first)

    def run(self, profile: str | Mapping[str, Any] = "offline", results=None, device="auto",
            progress: bool = True, **overrides: Any):
        """The grid task through the engine; the ``paper`` task, once every dataset and checkpoint
        is found, through :func:`cameras.metrics.pointing_game_run` (a file per dataset, model, method)."""
        s = self.settings(profile, **overrides)
        if s["task"] == "grid":
            return super().run(s, results, device, progress)
        from ..datasets import checkpoint_path, pointing_dataset
        from ..metrics import pointing_game_run
        from ..models import resolve_device

        datasets = {kind: pointing_dataset(kind) for kind in s["datasets"]}
        _ = [checkpoint_path(arch, kind) for kind in datasets for arch in s["models"]]
        for (kind, arch, method), path in _paper_paths(s, self.folder(s, results)).items():
            pointing_game_run(arch, datasets[kind], method, path=path, limit=s["limit"],
                              device=resolve_device(device), progress=progress,
                              **s["method_settings"].get(method, {}))
        return self.load(s, results)

    def load(self, s: Mapping[str, Any], results=None):
        import pandas as pd

        from ..runs import read_results

        if s["task"] == "grid":
            return self.rows(s, results)
        frames = [read_results(p) for p in _paper_paths(s, self.folder(s, results)).values() if p.exists()]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _paper_paths(s: Mapping[str, Any], folder) -> dict[tuple[str, str, str], Any]:
    return {(k, a, m): folder / f"pointing_{k}_{a}_{k}_{m.replace('+', 'p')}.csv"
            for k in s["datasets"] for a in s["models"] for m in s["methods"]}


def _parse(file: str) -> tuple[str, str]:
    """``(model, method)`` of a grid file ``grid_<model>/<method>.csv``."""
    folder, _, name = file.partition("/")
    return folder.removeprefix("grid_"), next(m for m in names() if m.replace("+", "p") + ".csv" == name)


def method_kwargs(s: Mapping[str, Any], method: str, side: int) -> dict[str, Any]:
    """The settings of ``method`` on a grid of side ``side`` (CAMERAS: the zoom factors of it)."""
    out = dict(s["method_settings"].get(method, {}))
    if method == "cameras":
        out["sizes"] = zoomed_sizes(side, s["cameras_zoom"])
    return out


def _grids(ctx: Context, lm):
    """The grids of ``lm`` from its native crops (built once per model and run)."""
    from ..data import image_items
    from ..metrics import make_grids

    cache, s = ctx.cache.setdefault("grids", {}), ctx.settings
    if lm.name not in cache:
        cache.clear()
        items = image_items("imagenet_sample", s["data_root"], n=s["candidates"])
        pre = dataclasses.replace(lm, model=nn.Identity(), device=torch.device("cpu")).preprocess
        batches = list(load_batches(items, pre, 64, s["workers"] if len(items) > 64 else 0))
        images, labels = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
        cache[lm.name] = make_grids(lm.model, images.to(lm.device), labels, s["n_grids"],
                                    rng=s["seed"], threshold=s["threshold"], require_correct=True,
                                    batch_size=s["batch_size"], cell_size=s["cell_size"])
    return cache[lm.name]


def _save_example(ctx: Context, lm, grids, method: str, kw: dict[str, Any], first=None) -> None:
    """``method``'s map of grid 0, cell 0 (``first``, if the run computed it) into ``example.npz``."""
    from ..methods import saliency

    store, parts = MapStore(ctx.folder), (f"grid_{lm.name}", "example")
    ex = store.read(*parts)
    if f"map/{method}" in ex:
        return
    if first is None:
        first = saliency(method, lm.model, grids.images[:1], [int(grids.labels[0, 0])], **kw)[0]
    new = {f"map/{method}": MapStore.quantise(first)}
    if "image" not in ex:
        new.update(image=lm.to_image(grids.images[0]), labels=grids.labels[0].cpu().numpy(), cell=np.array(0))
    store.update(parts, new)


EXPERIMENT = Pointing()
PROFILES = EXPERIMENT.PROFILES
settings = EXPERIMENT.settings
run = EXPERIMENT.run


def _resolved(profile: str | Mapping[str, Any], **overrides: Any) -> dict[str, Any]:
    return settings(profile, **overrides) if isinstance(profile, str) or overrides else dict(profile)


def load_timing(profile: str | Mapping[str, Any], results=None):
    """Seconds per map of each (model, method), from the runs that computed them."""
    import pandas as pd

    s = _resolved(profile)
    paths = {m: EXPERIMENT.folder(s, results) / f"grid_{m}" / "timing.json" for m in s["models"]}
    return pd.DataFrame([
        {"model": model, "method": method, "device": runs[-1].get("device_name", runs[-1].get("device")),
         "seconds_per_map": sum(r["seconds"] for r in runs) / sum(r["maps"] for r in runs)}
        for model, p in paths.items() if p.exists()
        for method, runs in json.loads(p.read_text()).items() if method in s["methods"]])


def settings_note(method: str, settings: Mapping[str, Any] | None) -> str:
    """The cost-relevant settings of a method in a few words (e.g. RISE's number of masks)."""
    if not settings:
        return ""
    if method == "cameras":
        sz = settings.get("sizes", [])
        return f"sizes {sz[0]}..{sz[-1]} ({len(sz)})" if len(sz) > 1 else f"size {sz}"
    if method == "rise":
        return f"{settings.get('num_masks')} masks, {settings.get('num_cells')} cells"
    if method == "extremal_perturbation":
        return f"{settings.get('max_iter')} iterations, areas {settings.get('areas')}"
    if "excitation_backprop" in method and settings.get("strict") is False:
        return "strict=False (rules' assumptions violated)"
    return f"smooth {settings['smooth']}" if "smooth" in settings else ""


def summary(rows):
    """One row per (model, method) of grid rows, methods in the registry's order: ``grids,
    maps, mean_share, share_sem, hit_rate, hit_lo, hit_hi`` (%, the hit rate's 95 % Wilson
    interval) and the method's ``settings`` in words (:func:`settings_note`)."""
    import pandas as pd

    from ..metrics import wilson

    out = []
    for (model, method), g in (() if rows is None else rows.groupby(["model", "method"], sort=False)):
        share, hit = g["share"].to_numpy(dtype=float), g["hit"].to_numpy(dtype=int)
        lo, hi = wilson(int(hit.sum()), len(hit))
        st = g["settings"].iloc[0] if "settings" in g.columns else None
        out.append({"model": model, "method": method, "grids": int(g["image"].nunique()), "maps": len(g),
                    "mean_share": 100 * share.mean(), "share_sem": 100 * share.std(ddof=1) / math.sqrt(len(share))
                    if len(share) > 1 else math.nan, "hit_rate": 100 * hit.mean(), "hit_lo": 100 * lo,
                    "hit_hi": 100 * hi, "settings": settings_note(method, st if isinstance(st, Mapping) else None)})
    order = {m: i for i, m in enumerate([*dict.fromkeys(rows["model"]), *names()])} if out else {}
    df = pd.DataFrame(out, columns=["model", "method", "grids", "maps", "mean_share", "share_sem",
                                    "hit_rate", "hit_lo", "hit_hi", "settings"])
    return df.sort_values(["model", "method"], key=lambda c: c.map(order)).reset_index(drop=True)


def summary_table(rows, decimals: int = 1):
    """The offline table as printed in the chapter: methods x (model: share, hit rate)."""
    import pandas as pd

    from ..plots import method_label, model_label

    sm = summary(rows)
    if sm.empty:
        return pd.DataFrame()
    sm = sm.assign(method=sm["method"].map(method_label), model=sm["model"].map(model_label))
    wide = sm.pivot_table(index="method", columns="model", values=["mean_share", "hit_rate"],
                          sort=False).swaplevel(0, 1, axis=1)
    cols = [(m, v) for m in dict.fromkeys(sm["model"]) for v in ("mean_share", "hit_rate")
            if (m, v) in wide.columns]
    wide = wide[cols].round(decimals).reindex(list(dict.fromkeys(sm["method"])))
    wide.columns = pd.MultiIndex.from_tuples(
        [(m, "share in cell (%)" if v == "mean_share" else "max in cell (%)") for m, v in cols])
    wide.index.name = "ours (grid pointing game)"
    return wide


def paper_table():
    """TorchRay's published table (:data:`PAPER_TABLE1`, %): methods x (dataset, model, subset)."""
    import pandas as pd

    from ..plots import method_label

    df = pd.DataFrame.from_dict(PAPER_TABLE1["rows"], orient="index",
                                columns=pd.MultiIndex.from_tuples(PAPER_TABLE1["columns"]))
    df.index = [method_label(m) for m in df.index]
    df.index.name = "paper (reported): TorchRay benchmark"
    return df


def paper_summary(rows):
    """Our results of the ``paper`` profile in the layout of :func:`paper_table` (%)."""
    import pandas as pd

    from ..metrics import pointing_game_summary
    from ..plots import method_label

    data: dict[tuple, dict[str, float]] = {}
    for kind, g in rows.groupby("dataset") if rows is not None and len(rows) else ():
        for r, (sub, key) in ((r, c) for r in pointing_game_summary(g) for c in (("All", "all"), ("Diff", "difficult"))):
            arch = r["model"].split("_")[0]
            col = (_TABLE1_NAMES.get(kind, kind), _TABLE1_NAMES.get(arch, arch), sub)
            data.setdefault(col, {})[method_label(r["method"])] = 100 * r[key]
    out = pd.DataFrame(data)  # tuple keys: (dataset, model, subset) columns
    out.index.name = "ours (paper protocol)"
    return out


def plot_example(profile: str | Mapping[str, Any], model: str, results=None):
    """Grid 0 of ``model``, then each method's map for the class of its top-left cell
    (framed); ``None`` if nothing is stored."""
    from matplotlib.patches import Rectangle

    from ..data import imagenet_classes
    from ..plots import Panel, map_grid, method_label, model_label

    s = _resolved(profile)
    ex = MapStore(EXPERIMENT.folder(s, results)).read(f"grid_{model}", "example")
    if not ex:
        return None
    image, labels = ex["image"], ex["labels"]
    maps = {k[4:]: MapStore.dequantise(v) for k, v in ex.items() if k.startswith("map/")}
    methods = [m for m in s["methods"] if m in maps] + [m for m in maps if m not in s["methods"]]
    panels = [Panel(image=image, title="grid")] + [
        Panel(map=maps[m], image=image, title=method_label(m, short=True)) for m in methods]
    cls = imagenet_classes()
    fig = map_grid([panels], title=f"{model_label(model)}: maps for '{cls[int(labels[0])]}' "
                   f"(top-left cell; others: {', '.join(cls[int(c)] for c in labels[1:])})")
    h, w = image.shape[:2]
    for ax in fig.axes[: len(panels)]:
        ax.add_patch(Rectangle((-0.5, -0.5), w / 2, h / 2, fill=False, edgecolor="white", lw=1.5))
    return fig


r"""Pointing game: the paper's Table 1 (:func:`cameras.paper.table1`; the ``paper`` profile runs its
protocol with :func:`cameras.metrics.pointing_game_run`) and our offline proxy, the grid pointing
game of Böhle et al. (CVPR 2022) on 2x2 grids of ImageNet-sample images of four classes, each
cell's map scored by its mass and its maximum in the cell (chance 25 %). CAMERAS keeps the paper's
zoom factors and Algorithm 1's keep rule (one capture per grid for its four classes). Files per
model: ``grid_<model>/<method>.csv``, ``example.npz`` (grid 0's maps), ``timing.json``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import metrics
from ..core import DEFAULT_SIZES, Cameras
from ..data import image_items, imagenet_classes
from ..datasets import CHECKPOINTS, _norm_kind, checkpoint_path, pointing_dataset
from ..engine import Check, Context, Experiment, MapStore, Table, Unit, load_batches, zoomed_sizes
from ..methods import PAPER_METHODS, default_layers, method_settings, names, saliency
from ..methods import info as method_info
from ..metrics import GRID_COLUMNS, grid_pointing_game, grid_pointing_rows, make_grids, wilson
from ..metrics.intervals import bootstrap_ci
from ..models import get_spec, resolve_device
from ..paper import table1
from ..plots import Panel, bar_chart, map_grid, method_label, model_label
from ..runs import read_results
from ._common import methods_for

__all__ = ["EXPERIMENT", "PROFILES", "ZOOM", "settings", "run", "load_timing", "settings_note", "summary",
           "summary_table", "paired_difference", "paper_table", "proxy_error_reduction", "paper_summary",
           "plot_example", "plot_summary", "fidelity_changes", "verdict_numbers"]

ZOOM: list[float] = [s / 224 for s in DEFAULT_SIZES]  #: the paper's zoom factors s / 224
GRID_SETTINGS, CELLS = ("candidates", "cell_size", "seed", "threshold"), 4  #: what picks the 2x2 grids
_NONSTRICT = {"excitation_backprop": {"strict": False}, "contrastive_excitation_backprop": {"strict": False}}
_T1 = {"voc07": "VOC07", "coco14": "COCO14", "vgg16": "VGG16", "resnet50": "ResNet50"}
GPU_COMMAND = ("python -m cameras.experiments pointing --profile offline --device cuda "
               "--set 'skip={}' --set 'method_grids={}'")


def zoom_factor(v: Any, key: str) -> float:
    if Check.number(v, key) <= 0:
        raise ValueError(f"{key} must be positive factors, got {v!r}")
    return float(v)


class Pointing(Experiment):
    name = "pointing"
    key = ("model", "method", "image", "cell")
    tables = {"": Table(key, GRID_COLUMNS), "cameras": Table(key, GRID_COLUMNS + ("sizes_kept",))}
    base = {
        "task": "grid", "models": ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"],
        "methods": list(names()), "candidates": None, "cell_size": None, "n_grids": 32,
        "method_grids": {}, "threshold": 0.5, "cameras_zoom": list(ZOOM),
        "method_settings": {"cameras": {"keep": "prediction"}},
        "batch_size": 128, "grid_batch": 8, "workers": "auto", "example": True, "skip": {},
        "datasets": ["voc07", "coco14"], "limit": None,
    }
    profiles = {
        "ci": {"models": ["efficientnet_lite0"], "candidates": 60, "cell_size": 112, "n_grids": 2,
               "method_grids": {"extremal_perturbation": 1, "rise": 1}, "cameras_zoom": [1.0, 1.5],
               "method_settings": {"rise": {"num_masks": 32, "batch_size": 16},
                                   "extremal_perturbation": {"max_iter": 2, "areas": [0.1]}, **_NONSTRICT},
               "batch_size": 32, "grid_batch": 2, "workers": 0},
        # sized for the shared 2-core CPU: extremal perturbation on 2 grids and not Lite2, RISE
        # not at all (2000 masks: 17+ min per Lite0 grid there); a GPU runs both: GPU_COMMAND
        "offline": {"method_grids": {"extremal_perturbation": 2, "rise": 4},
                    "method_settings": {"cameras": {"batch_size": 8},
                                        "rise": {"num_masks": 2000, "batch_size": 250},
                                        "extremal_perturbation": {"max_iter": 100}, **_NONSTRICT},
                    "skip": {"efficientnet_lite0": ["rise"], "efficientnet_lite1": ["rise"],
                             "efficientnet_lite2": ["rise", "extremal_perturbation"]}},
        # TorchRay's models are multi-label: RISE scores them with the sigmoid (set by the run)
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
        if s["task"] == "pointing_game" and not set(s["models"]) <= (archs := {a for a, _ in CHECKPOINTS}):
            raise ValueError(f"the pointing game models are TorchRay's {sorted(archs)}, not {s['models']}")

    def units(self, s: Mapping[str, Any]) -> list[Unit]:  # one per (model, method) of the grid task
        if s["task"] != "grid":
            return []
        return [Unit(f"grid_{model}/{method.replace('+', 'p')}.csv",
                     [(model, method, f"grid{n:05d}", c) for n in range(_n_grids(s, method)) for c in range(CELLS)],
                     model, method, "cameras" if method == "cameras" else "")
                for model in s["models"] for method in methods_for(s, model)]

    def identity_of(self, s: Mapping[str, Any], file: str) -> dict[str, Any]:
        """The method's full settings and layer (:func:`method_identity`) and the grids' settings."""
        model, method = _parse(file)
        side = 2 * (s["cell_size"] or get_spec(model).input_size)
        return {"methods": {method: method_identity(s, method, model, side)}, **{k: s[k] for k in GRID_SETTINGS}}

    def pending(self, s: Mapping[str, Any], folder, units: Sequence[Unit]) -> list[Unit]:
        """Also the units whose method lacks its map in the model's ``example.npz``."""
        todo = {id(u) for u in super().pending(s, folder, units)}
        ex = {m: MapStore(folder).read(f"grid_{m}", "example") for m in s["models"]}
        return [u for u in units if id(u) in todo or s["example"] and f"map/{u.data}" not in ex[u.model]]

    def compute(self, ctx: Context, unit: Unit):
        s, model, method = ctx.settings, unit.model, unit.data
        grids = _grids(ctx, lm := ctx.model(model))
        kw = method_kwargs(s, method, grids.images.shape[-1])
        todo = [n for n in range(len(unit.keys) // CELLS) if not all(
            ctx.done(unit.file, (model, method, f"grid{n:05d}", c), unit.table) for c in range(CELLS))]
        step = s["grid_batch"] if method_info(method).batched else 1
        seconds, first = 0.0, None
        for i in range(0, len(todo), step):
            with ctx.timer() as t:
                rows, maps = (_cameras_rows(lm, grids, todo[i : i + step], kw) if method == "cameras" else
                              grid_pointing_rows(lm.model, grids, todo[i : i + step], method, model_name=model, **kw))
            seconds += t["seconds"]
            first = maps[0] if todo[i] == 0 else first
            yield from rows
        if todo:  # seconds per map of this run, in grid_<model>/timing.json
            p, dev, n = ctx.folder / f"grid_{model}" / "timing.json", ctx.device, CELLS * len(todo)
            doc = json.loads(p.read_text()) if p.exists() else {}
            doc.setdefault(method, []).append({"seconds": round(seconds, 3), "maps": n, "seconds_per_map": round(
                seconds / n, 4), "device": str(dev), "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"})
            p.write_text(json.dumps(doc, indent=1, sort_keys=True))
        if s["example"]:
            _save_example(ctx, lm, grids, method, kw, first)

    def run(self, profile: str | Mapping[str, Any] = "offline", results=None, device="auto",
            progress: bool = True, ray_workers: int | None = None, ray_address: str | None = None, **overrides: Any):
        """The grid task through the engine; the ``paper`` task (once every dataset and checkpoint is
        found) through :func:`cameras.metrics.pointing_game_run`, a file per dataset, model, method."""
        s = self.settings(profile, **overrides)
        if s["task"] == "grid":
            return super().run(s, results, device, progress, ray_workers, ray_address)
        datasets = {kind: pointing_dataset(kind) for kind in s["datasets"]}
        _ = [checkpoint_path(arch, kind) for kind in datasets for arch in s["models"]]
        for (kind, arch, method), path in _paper_paths(s, self.folder(s, results)).items():
            metrics.pointing_game_run(arch, datasets[kind], method, path=path, limit=s["limit"], device=resolve_device(
                device), progress=progress, **s["method_settings"].get(method, {}))
        return self.load(s, results)

    def load(self, s: Mapping[str, Any], results=None):
        if s["task"] == "grid":
            frames = [f for f in (self.rows(s, results), self.rows(s, results, table="cameras")) if len(f)]
            return pd.concat(frames, ignore_index=True) if frames else self.rows(s, results)
        frames = [read_results(p) for p in _paper_paths(s, self.folder(s, results)).values() if p.exists()]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _n_grids(s: Mapping[str, Any], method: str) -> int:
    return min(s["n_grids"], s["method_grids"].get(method, s["n_grids"]))


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
    return {**out, "sizes": zoomed_sizes(side, s["cameras_zoom"])} if method == "cameras" else out


def method_identity(s: Mapping[str, Any], method: str, model: str, side: int) -> dict[str, Any]:
    """A method's full settings on ``side`` px inputs and its layer (``layers`` or the default)."""
    layer = (s.get("layers") or {}).get(model, {}).get(method) or default_layers(model).get(method)
    return {**method_settings(method, **method_kwargs(s, method, side)),
            "layer": list(layer) if isinstance(layer, tuple) else layer}


def cameras_capture(model: nn.Module, images, targets, layer=None, **settings: Any):
    """The maps of ``saliency("cameras", ...)`` for ``targets`` ``(B, T)``, ``(B, T, H, W)``, from one
    capture per batch, and the number of sizes each image keeps ``(B,)``."""
    st = method_settings("cameras", **settings)
    cam = Cameras(model, layer, sizes=st["sizes"], batch_size=st["batch_size"], progress=st["progress"], keep=st["keep"])
    cap = cam.capture(images, torch.as_tensor(targets, device=images.device).long())
    return cam.fuse(cap), cap.kept.sum(dim=0).cpu()


def _cameras_rows(lm, grids, idx: list[int], kw: dict[str, Any]):
    """CAMERAS' rows on the grids ``idx`` (``grid_pointing_rows``' and ``sizes_kept``) and maps."""
    maps, kept = cameras_capture(lm.model, grids.images[idx], grids.labels[idx],
                                 default_layers(lm.model)["cameras"], **kw)
    maps, cells, full = maps.flatten(0, 1), grids.cells, method_settings("cameras", **kw)
    res = grid_pointing_game(maps, list(range(cells)) * len(idx), grids.grid)
    rows = [{"model": lm.name, "method": "cameras", "image": f"grid{n:05d}", "target": int(grids.labels[n, j]),
             "cell": j, "source": int(grids.sources[n, j]), "confidence": float(grids.confidence[n, j]),
             "share": float(res["share"][i * cells + j]), "hit": int(res["hit"][i * cells + j]),
             "settings": full, "sizes_kept": int(kept[i])} for i, n in enumerate(idx) for j in range(cells)]
    return rows, maps


def _grids(ctx: Context, lm):
    """The grids of ``lm`` from its native crops (built once per model and run)."""
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
    store, parts = MapStore(ctx.folder), (f"grid_{lm.name}", "example")
    if f"map/{method}" in (ex := store.read(*parts)):
        return
    first = saliency(method, lm.model, grids.images[:1], [int(grids.labels[0, 0])], **kw)[0] if first is None else first
    new = {f"map/{method}": MapStore.quantise(first)}
    if "image" not in ex:
        new.update(image=lm.to_image(grids.images[0]), labels=grids.labels[0].cpu().numpy(), cell=np.array(0))
    store.update(parts, new)


EXPERIMENT = Pointing()
PROFILES = EXPERIMENT.PROFILES
settings = EXPERIMENT.settings
run = EXPERIMENT.run


def _resolved(profile: str | Mapping[str, Any]) -> dict[str, Any]:
    return settings(profile) if isinstance(profile, str) else dict(profile)


def load_timing(profile: str | Mapping[str, Any], results=None):
    """Seconds per map of each (model, method), from the runs that computed them."""
    s = _resolved(profile)
    return pd.DataFrame([
        {"model": model, "method": method, "device": runs[-1].get("device_name", runs[-1].get("device")),
         "seconds_per_map": sum(r["seconds"] for r in runs) / sum(r["maps"] for r in runs)}
        for model in s["models"] if (p := EXPERIMENT.folder(s, results) / f"grid_{model}" / "timing.json").exists()
        for method, runs in json.loads(p.read_text()).items() if method in s["methods"]])


def settings_note(method: str, st: Mapping[str, Any] | None) -> str:
    """The cost-relevant settings of a method in a few words (e.g. RISE's number of masks)."""
    st, sz = st or {}, (st or {}).get("sizes", [0])
    return "" if not st else {
        "cameras": f"sizes {sz[0]}..{sz[-1]} ({len(sz)})" + (", keep rule: prediction" if st.get("keep") == "prediction" else ""),
        "rise": f"{st.get('num_masks')} masks, {st.get('num_cells')} cells, {st.get('scores', 'sigmoid')}",
        "extremal_perturbation": f"{st.get('max_iter')} iterations, areas {st.get('areas')}",
    }.get(method, "strict=False (rules' assumptions violated)" if "excitation" in method and st.get("strict") is False
          else f"smooth {st['smooth']}" if "smooth" in st else "")


def summary(rows):
    """Per (model, method), registry order: ``grids, maps, mean_share`` (%; ``share_lo/hi``: 95 %
    bootstrap over grids), ``hit_rate`` (%; ``hit_lo/hi``: Wilson), ``sizes_kept``, ``settings``."""
    out = []
    for (model, method), g in (() if rows is None or not len(rows) else rows.groupby(["model", "method"], sort=False)):
        share, hit = g["share"].to_numpy(dtype=float), g["hit"].to_numpy(dtype=int)
        (lo, hi), (slo, shi) = wilson(int(hit.sum()), len(hit)), bootstrap_ci(g.groupby("image")["share"].mean())
        st = g["settings"].iloc[0] if "settings" in g.columns else None
        out.append({"model": model, "method": method, "grids": int(g["image"].nunique()), "maps": len(g),
                    "mean_share": 100 * share.mean(), "share_lo": 100 * slo, "share_hi": 100 * shi,
                    "hit_rate": 100 * hit.mean(), "hit_lo": 100 * lo, "hit_hi": 100 * hi,
                    "sizes_kept": g["sizes_kept"].astype(float).mean() if "sizes_kept" in g else math.nan,
                    "settings": settings_note(method, st if isinstance(st, Mapping) else None)})
    order = {m: i for i, m in enumerate([*(dict.fromkeys(rows["model"]) if out else ()), *names()])}
    df = pd.DataFrame(out, columns=["model", "method", "grids", "maps", "mean_share", "share_lo", "share_hi",
                                    "hit_rate", "hit_lo", "hit_hi", "sizes_kept", "settings"])
    return df.sort_values(["model", "method"], key=lambda c: c.map(order)).reset_index(drop=True)


def summary_table(rows, models: Sequence[str] | None = None):
    """A row per method, per model its share and max-in-cell rate (%; NaN: not run)."""
    sm = summary(rows)
    by, out = sm.set_index(["model", "method"]), pd.DataFrame({"method": list(dict.fromkeys(sm["method"]))})
    for mo in models or dict.fromkeys(sm["model"]):
        for col, what in (("mean_share", "share in cell (%)"), ("hit_rate", "max in cell (%)")):
            out[f"{model_label(mo)}: {what}"] = [by[col].get((mo, m), math.nan) for m in out["method"]]
    return out


def paired_difference(rows, a: str = "cameras", b: str = "gradcam"):
    """Per model: share of ``a`` minus ``b`` on the same cells (points), 95 % bootstrap over grids."""
    out = []
    for model, g in rows.groupby("model", sort=False):
        w = g[g["method"].isin([a, b])].pivot_table(index=["image", "cell"], columns="method", values="share")
        if a in w and b in w:
            d = (100 * (w[a] - w[b])).dropna().groupby(level="image").mean()
            out.append({"model": model, "difference": float(d.mean()), "lo": (ci := bootstrap_ci(d))[0], "hi": ci[1], "grids": len(d)})
    return pd.DataFrame(out, columns=["model", "difference", "lo", "hi", "grids"])


def paper_table():
    """The paper's Table 1 (%, :func:`cameras.paper.table1`), its rows and columns; "-" is NaN."""
    t = table1()
    t["column"] = [f"{_T1[d]} {_T1[m]} {sp}" for d, m, sp in zip(t["dataset"], t["model"], t["split"], strict=True)]
    wide = t.pivot(index="paper_method", columns="column", values="value")
    wide = wide.reindex(index=list(dict.fromkeys(t["paper_method"])), columns=list(dict.fromkeys(t["column"])))
    return wide.rename_axis(index="paper (reported): method", columns=None).reset_index()


def proxy_error_reduction(rows, methods: Sequence[str] = PAPER_METHODS):
    """The paper's error reduction on our grids: per model and score, CAMERAS vs the best other of
    ``methods``, ``(err_best - err_cameras) / err_best`` in % (err = 100 - score), methods above it."""
    sm, out = summary(rows), []
    for model in dict.fromkeys(sm["model"]):
        for col, what in (("mean_share", "share in cell"), ("hit_rate", "max in cell")):
            d = sm[(sm["model"] == model) & sm["method"].isin(methods)].set_index("method")[col]
            if "cameras" not in d or len(d) < 2:
                continue
            others, cam = d.drop("cameras"), float(d["cameras"])
            e_best, e_cam = 100 - float(others.max()), 100 - cam
            out.append({"model": model, "score": what, "cameras": cam, "best_other": method_label(others.idxmax()),
                        "best_other_value": float(others.max()),
                        "error_reduction_pct": 100 * (e_best - e_cam) / e_best if e_best > 0 else math.nan,
                        "above_cameras": ", ".join(map(method_label, others[others > cam].index)) or "none"})
    return pd.DataFrame(out)


def paper_summary(rows):
    """Our results of the ``paper`` profile in the layout of :func:`paper_table` (%)."""
    data: dict[str, dict[str, float]] = {}
    for kind, g in rows.groupby("dataset") if rows is not None and len(rows) else ():
        for r, (sub, key) in ((r, c) for r in metrics.pointing_game_summary(g) for c in (("All", "all"), ("Diff", "difficult"))):
            col = f"{_T1.get(kind, kind)} {_T1.get(r['model'].split('_')[0], r['model'])} {sub}"
            data.setdefault(col, {})[r["method"]] = 100 * r[key]
    return pd.DataFrame(data).rename_axis("method").reset_index()


def fidelity_changes(rows, profile: str | Mapping[str, Any] = "offline", results=None):
    """Old (``fidelity_migration.json``) vs new share and max-in-cell rate (%) on the same grids."""
    path = EXPERIMENT.folder(_resolved(profile), results) / "fidelity_migration.json"
    new = summary(rows).set_index(["model", "method"])
    return pd.DataFrame([
        {"model": mo, "method": me, "grids": o["grids"], "old settings": o["settings"], "old share": o["mean_share"],
         "new share": n.get("mean_share", math.nan), "old max in cell": o["hit_rate"],
         "new max in cell": n.get("hit_rate", math.nan), "new settings": n.get("settings", "not run")}
        for mo, d in (json.loads(path.read_text())["removed"] if path.exists() else {}).items()
        for me, v in d.items() for o, n in [(v["on_the_grids_run_now"], new.loc[(mo, me)] if (mo, me) in new.index else {})]])


def plot_example(profile: str | Mapping[str, Any], model: str, results=None, methods: Sequence[str] | None = None):
    """Grid 0 of ``model`` and each method's map for its top-left cell's class (framed), or None."""
    from matplotlib.patches import Rectangle

    s, cls = _resolved(profile), imagenet_classes()
    ex = MapStore(EXPERIMENT.folder(s, results)).read(f"grid_{model}", "example")
    if not ex:
        return None
    image, labels, maps = ex["image"], ex["labels"], {k[4:]: MapStore.dequantise(v) for k, v in ex.items() if k[:4] == "map/"}
    panels = [Panel(image=image, title="grid")] + [
        Panel(map=maps.get(m), image=image if m in maps else None, title=method_label(m, short=True),
              note="" if m in maps else "not run") for m in (methods or s["methods"])]
    fig = map_grid([panels], title=f"map for '{cls[int(labels[0])]}' (top-left, framed); other cells: "
                   f"{', '.join(cls[int(c)] for c in labels[1:])}")
    for ax in [ax for ax in fig.axes if ax.images]:
        ax.add_patch(Rectangle((-0.5, -0.5), image.shape[1] / 2, image.shape[0] / 2, fill=False, edgecolor="white", lw=1.5))
    return fig


def plot_summary(rows):
    """Share in the right cell and max-in-cell rate per method and model (%), 95 % intervals."""
    sm = summary(rows)
    parts = [sm.assign(score=what, value=sm[c], lo=sm[lo], hi=sm[hi]) for c, lo, hi, what in (
        ("mean_share", "share_lo", "share_hi", "share of the map's mass in the cell (%)"),
        ("hit_rate", "hit_lo", "hit_hi", "maximum of the map in the cell (%)"))]
    return bar_chart(pd.concat(parts), x="method", y="value", hue="model", panel="score", yerr=("lo", "hi"),
                     ylabel="%", ref=25.0, ncols=1, height_px=270)


def verdict_numbers(results=None) -> dict[str, Any]:
    """The stored offline grid results for the verdict page: share and hit (%), intervals, maps."""
    s, grid = settings("offline"), {}
    for r in summary(EXPERIMENT.load(s, results)).itertuples():
        grid.setdefault(r.model, {})[r.method] = {
            "share": r.mean_share, "share_lo": r.share_lo, "share_hi": r.share_hi, "hit": r.hit_rate,
            "hit_lo": r.hit_lo, "hit_hi": r.hit_hi, "maps": int(r.maps)}
    return {"models": list(s["models"]), "grid": grid, "chance_hit": 100.0 / CELLS}

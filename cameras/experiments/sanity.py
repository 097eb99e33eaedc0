"""Sanity checks of Fig. 1 (bottom) and Sec. 6.1 of the paper, and class sensitivity.

The checks of :mod:`cameras.sanity`, one file each in ``<results>/sanity/``: ``cascade.csv``,
cascading randomisation (Adebayo et al., NeurIPS 2018; Fig. 1, bottom), with the maps of the first
images at every depth in ``cascade_maps_<model>.npz``; ``adversarial.csv``, the adversarial check
of Sec. 6.1 (**our protocol**: the paper's is in a supplement we do not have); and
``class_sensitivity.csv`` (Rebuffi et al., CVPR 2020). Methods use their registry default layer.
Headless: ``python -m cameras.experiments sanity --profile offline --device cuda``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..engine import Check, Context, Experiment, MapStore, Table, Unit

__all__ = ["EXPERIMENT", "PROFILES", "CHECKS", "CASCADE_METHODS", "SLOW_METHODS", "settings", "run",
           "cascade_maps", "cascade_summary", "adversarial_summary", "class_summary",
           "plot_cascade_maps", "plot_cascade_curves", "plot_adversarial", "plot_class_sensitivity"]

CHECKS = ("cascade", "adversarial", "class_sensitivity")
#: the methods of the cascade (the paper's Fig. 1 compares CAMERAS with these)
CASCADE_METHODS = ["cameras", "gradcam", "gradient", "guided_backprop"]
#: methods that need many forward passes per image: fewer images in class sensitivity
SLOW_METHODS = ("rise", "extremal_perturbation")
SELECTIONS = ("top", "random", "bottom")
CLASS_METRICS = ("1-spearman", "1-ssim", "mad")
_MMI = ("model", "method", "image")
#: registry settings on EfficientNet-Lite: EBP refuses its linear bottlenecks unless strict=False
_LITE_EBP = {"excitation_backprop": {"strict": False}, "contrastive_excitation_backprop": {"strict": False}}
#: the settings besides the methods' that define the rows of each check's file
_IDENTITY = {"cascade": ("data", "seed"), "class_sensitivity": ("data",),
             "adversarial": ("data", "seed", "batch_size", "ks", "adversarial_methods", "adv_eps",
                             "adv_alpha", "adv_steps", "n_random")}


class Sanity(Experiment):
    name = "sanity"
    base = {"data": "imagenet_sample", "photos": None, "checks": list(CHECKS), "batch_size": 25, "workers": 2,
            "cascade_models": ["efficientnet_lite0"], "cascade_images": 12, "cascade_methods": CASCADE_METHODS,
            "cascade_depths": [0, 1, 2, 3, 6, 11, 16, 21], "metrics": ["spearman", "ssim", "hog"], "maps_images": 1,
            "adversarial_models": ["efficientnet_lite0"], "adversarial_images": 40, "ks": [1, 5, 10, 20, 50],
            "adversarial_methods": [*CASCADE_METHODS, "center"], "adv_eps": 8 / 255, "adv_alpha": 2 / 255,
            "adv_steps": 10, "n_random": 5, "class_models": ["efficientnet_lite0"], "class_images": 20,
            "class_slow_images": 4, "class_methods": "all", "method_settings": {}}
    # offline: sized for the 2-core CPU that computed the stored results (CAMERAS at 8 sizes: ~10 s an
    # image): Lite0, the cascade at 8 of its 21 depths for 12 images, the adversarial check on 40, class
    # sensitivity on 20 (RISE / extremal perturbation on 4). On a GPU: --set cascade_depths=null etc.
    profiles = {
        "ci": {"data": "skimage", "photos": ["chelsea", "coffee"], "cascade_images": 2, "adversarial_images": 2,
               "ks": [5, 20, 50], "adv_steps": 5, "n_random": 2, "class_images": 2, "class_slow_images": 1,
               "method_settings": {"cameras": {"sizes": [224, 324]}, "rise": {"num_masks": 32, "batch_size": 32},
                                   "extremal_perturbation": {"max_iter": 8, "areas": [0.1], "num_levels": 4},
                                   **_LITE_EBP},
               "batch_size": 2, "workers": 1},
        "offline": {"method_settings": {"rise": {"num_masks": 500, "batch_size": 100},
                                        "extremal_perturbation": {"max_iter": 100, "areas": [0.1]}, **_LITE_EBP}},
        "paper": {"data": "imagenet_val", "cascade_models": ["resnet50"], "cascade_images": 100, "maps_images": 2,
                  "cascade_depths": None, "adversarial_models": ["resnet50"], "adversarial_images": 500,
                  "class_models": ["resnet50"], "class_images": 100, "class_slow_images": 20, "workers": 12,
                  "method_settings": {"cameras": {"sizes": list(range(224, 1000, 100))}}}}
    schema = {
        "data": Check.choice("skimage", "imagenet_sample", "imagenet_val"),
        "photos": lambda v, k: v and Check.listof(Check.text)(v, k), "checks": Check.listof(Check.choice(*CHECKS)),
        "metrics": Check.listof(Check.choice("spearman", "spearman_abs", "ssim", "hog")),
        "cascade_depths": lambda v, k: None if v is None else sorted(set(Check.listof(Check.natural)(v, k))),
        "ks": Check.listof(Check.number), "adv_eps": Check.number, "adv_alpha": Check.number,
        "class_methods": lambda v, k: v if v == "all" else Check.listof(Check.method)(v, k),
        "method_settings": Check.method_settings, **{f"{c}_models": Check.listof(Check.model) for c in ("cascade", "adversarial", "class")},
        **{f"{c}_methods": Check.listof(Check.method) for c in ("cascade", "adversarial")},
        **{k: Check.positive for k in ("cascade_images", "maps_images", "adversarial_images", "adv_steps",
                                       "n_random", "class_images", "class_slow_images", "batch_size", "workers")}}
    tables = {"cascade": Table((*_MMI, "depth", "metric"), (*_MMI, "depth", "block", "metric", "value")),
              "adversarial": Table((*_MMI, "k", "selection"), (*_MMI, "k", "selection", "label", "clean_conf",
                                                               "conf", "drop", "full_drop", "flipped")),
              "class_sensitivity": Table((*_MMI, "metric"), (*_MMI, "top1", "least_likely", "metric", "value",
                                                             "settings"))}

    def identity_of(self, s: Mapping[str, Any], file: str) -> dict[str, Any]:
        """Per check: the settings of ``_IDENTITY`` and the method settings of its methods."""
        check = file.removesuffix(".csv")
        methods = _class_methods(s) if check == "class_sensitivity" else s[f"{check}_methods"]
        ms = s.get("method_settings") or {}
        return {**{k: s[k] for k in _IDENTITY[check]}, "method_settings": {m: ms[m] for m in methods if m in ms}}

    def identity_from_meta(self, meta: Mapping[str, Any], file: str) -> dict[str, Any]:
        s = dict(meta["settings"])  # written before the engine: "images" named the data
        return self.identity_of({"data": s.pop("images", None), **s}, file)

    def units(self, s: Mapping[str, Any]) -> list[Unit]:
        """Per model: the cascade; batches of the adversarial check and, per method, of class sensitivity."""
        out, bs, checks = [], s["batch_size"], s["checks"]
        for model in s["cascade_models"] if "cascade" in checks else []:
            its, n = _items(s, s["cascade_images"]), _n_blocks(model)  # depths: up to the number of blocks
            depths = list(range(n + 1)) if s["cascade_depths"] is None else [d for d in s["cascade_depths"] if d <= n]
            keys = product([model], s["cascade_methods"], [it.name for it in its], depths, s["metrics"])
            out.append(Unit("cascade.csv", list(keys), model, (its, depths), "cascade"))
        its = _items(s, s["adversarial_images"])
        for model, i in product(s["adversarial_models"], range(0, len(its), bs)) if "adversarial" in checks else []:
            names = [it.name for it in its[i : i + bs]]
            keys = product([model], s["adversarial_methods"], names, map(float, s["ks"]), SELECTIONS)
            out.append(Unit("adversarial.csv", list(keys), model, (i, its[i : i + bs]), "adversarial"))
        for model, m in product(s["class_models"], _class_methods(s)) if "class_sensitivity" in checks else []:
            its = _items(s, s["class_slow_images"] if m in SLOW_METHODS else s["class_images"])
            out += [Unit("class_sensitivity.csv", list(product([model], [m], [it.name for it in its[i : i + bs]],
                                                               CLASS_METRICS)), model, (m, its[i : i + bs]),
                         "class_sensitivity") for i in range(0, len(its), bs)]
        return out

    def pending(self, s: Mapping[str, Any], folder: Path, units: Sequence[Unit]) -> list[Unit]:
        todo = {id(u) for u in super().pending(s, folder, units)}
        return [u for u in units if id(u) in todo or u.table == "cascade" and not _same_maps(
            MapStore(folder).read(f"cascade_maps_{u.model}"), u.data[1], s["cascade_methods"])]

    def compute(self, ctx: Context, unit: Unit):
        return {"cascade": _cascade, "adversarial": _adversarial,
                "class_sensitivity": _class_sensitivity}[unit.table](ctx, unit)

    def load(self, s: Mapping[str, Any], results=None) -> dict[str, Any]:
        """``{check: its rows}`` for the checks of ``s``."""
        return {c: self.rows(s, results, units, table=c) for units in [self.units(s)] for c in s["checks"]}


def _items(s: Mapping[str, Any], n: int):
    from ..data import image_items

    return image_items(s["data"], s.get("data_root"), n=n, photos=s.get("photos"))


@functools.cache
def _n_blocks(model: str) -> int:
    from ..models import get_spec
    from ..sanity import cascade_blocks

    return len(cascade_blocks(get_spec(model).build(False)[0]))


def _class_methods(s: Mapping[str, Any]) -> list[str]:
    from ..methods import names

    return names() if s["class_methods"] == "all" else list(s["class_methods"])


def _settings(s: Mapping[str, Any], methods: Sequence[str]) -> dict[str, dict]:
    return {m: dict(s["method_settings"].get(m, {})) for m in methods}


def _same_maps(d: Mapping[str, np.ndarray], depths: Sequence[int], methods: Sequence[str]) -> bool:
    """Whether stored cascade maps hold these depths and methods (8-bit)."""
    return bool(d) and [int(v) for v in d["depths"]] == list(depths) and [str(m) for m in d["methods"]] == list(
        methods) and all(d.get(f"maps_{m}", np.zeros(0)).dtype == np.uint8 for m in methods)


def _cascade(ctx: Context, unit: Unit):
    """The missing rows; all methods on the first ``maps_images`` images too if the maps are missing."""
    from .. import sanity as lib

    s, lm, (its, depths) = ctx.settings, ctx.model(unit.model), unit.data
    store, name = MapStore(ctx.folder), f"cascade_maps_{lm.name}"
    need_maps = not _same_maps(store.read(name), depths, s["cascade_methods"])

    def missing(m, it) -> bool:
        return any(not ctx.done(unit.file, (lm.name, m, it.name, d, k), unit.table)
                   for d in depths for k in s["metrics"])

    methods = [m for m in s["cascade_methods"] if need_maps or any(missing(m, it) for it in its)]
    first = its[: s["maps_images"]] if need_maps else []
    todo = first + [it for it in its[len(first):] if any(missing(m, it) for m in methods)]
    x = torch.stack([lm.preprocess(it.source) for it in todo])
    maps: dict = {}
    df = lib.cascading_randomization(
        methods, lm.model, x.to(lm.device), settings=_settings(s, methods), metrics=tuple(s["metrics"]),
        seed=s["seed"], batch_size=s["batch_size"], image_ids=[it.name for it in todo], progress=ctx.progress,
        depths=depths, maps_out=maps, maps_images=s["maps_images"], workers=s["workers"])
    yield from ({"model": lm.name} | row for row in df.to_dict("records"))
    if need_maps:
        blocks = ["none", *lib.cascade_blocks(lm.model)]
        store.write((name,), {
            "image": np.stack([lm.to_image(lm.preprocess(it.source)) for it in first]),
            "ids": np.array([it.name for it in first]), "methods": np.array(methods), "depths": np.array(depths),
            "blocks": np.array([blocks[d] for d in depths]),
            **{f"maps_{m}": MapStore.quantise(torch.stack([maps[m][d] for d in depths])) for m in methods}})


def _adversarial(ctx: Context, unit: Unit):
    """The whole batch (its random draws depend on it); rows already in the file are skipped."""
    from .. import sanity as lib

    s, lm, (start, batch) = ctx.settings, ctx.model(unit.model), unit.data
    x, methods = torch.stack([lm.denormalize(lm.preprocess(it.source)) for it in batch]), s["adversarial_methods"]
    df = lib.adversarial_sanity(
        methods, lm.model, x.to(lm.device), normalize=lm.normalize, settings=_settings(s, methods),
        ks=[float(k) for k in s["ks"]], eps=s["adv_eps"], alpha=s["adv_alpha"], steps=s["adv_steps"],
        n_random=s["n_random"], seed=s["seed"] + start, image_ids=[it.name for it in batch], progress=False)
    yield from ({"model": lm.name} | row for row in df.to_dict("records"))


def _class_sensitivity(ctx: Context, unit: Unit):
    from .. import sanity as lib
    from ..methods import method_settings

    s, lm = ctx.settings, ctx.model(unit.model)
    (m, batch), kw = unit.data, _settings(s, unit.data[:1])
    x = torch.stack([lm.preprocess(it.source) for it in batch]).to(lm.device)
    df = lib.class_sensitivity({m: m}, lm.model, x, settings=kw, image_ids=[it.name for it in batch], progress=False)
    recorded = method_settings(m, **kw[m])
    yield from ({"model": lm.name} | row | {"settings": recorded} for row in df.to_dict("records"))


EXPERIMENT = Sanity()
PROFILES = EXPERIMENT.PROFILES
settings = EXPERIMENT.settings
run = EXPERIMENT.run


def cascade_maps(s: Mapping[str, Any], results=None, model: str | None = None) -> dict[str, Any]:
    """The stored cascade maps of ``model`` (default: the first): ``maps[method]`` (depths, n, H, W)."""
    model = model or s["cascade_models"][0]
    d = MapStore(EXPERIMENT.folder(s, results)).read(f"cascade_maps_{model}")
    if not d:
        raise FileNotFoundError(f"no cascade maps of {model} in the results: run the cascade first")
    out = {k: [t(v) for v in d[k]] for k, t in (("ids", str), ("methods", str), ("depths", int), ("blocks", str))}
    return {**out, "model": model, "image": d["image"],
            "maps": {m: MapStore.dequantise(d[f"maps_{m}"]) for m in out["methods"]}}


# -- summaries ----------------------------------------------------------------------------
def cascade_summary(df):
    """Mean, std and quartiles over images per model, method, depth and metric."""
    g = df.groupby(["model", "method", "metric", "depth", "block"], sort=False)["value"]
    out = g.agg(mean="mean", std="std", q25=lambda v: v.quantile(0.25), q75=lambda v: v.quantile(0.75),
                n_images="count").reset_index()
    return out.sort_values(["model", "method", "metric", "depth"]).reset_index(drop=True)


def adversarial_summary(df):
    """Mean drops per model, method and ``k``, and the share ordered top > random > bottom."""
    import pandas as pd

    from ..sanity import summarize_adversarial

    parts = [summarize_adversarial(g.drop(columns="model")).assign(model=m) for m, g in df.groupby("model", sort=False)]
    if not parts:
        return pd.DataFrame()
    out = pd.concat(parts, ignore_index=True)
    order = {m: i for i, m in enumerate(dict.fromkeys(df["method"]))}  # the run's method order
    out = out.sort_values(["model", "method", "k"], key=lambda c: c.map(order) if c.name == "method" else c,
                          kind="stable")
    return out[["model"] + [c for c in out.columns if c != "model"]].reset_index(drop=True)


def _caveat(row) -> str:
    m = row["method"]
    return "; ".join(n for n, on in (
        ("strict=False: EBP rules assume ReLU nets without linear bottlenecks", m in _LITE_EBP and "lite" in row["model"]),
        ("ignores model and class (control: 0 by construction)", m == "center"),
        ("fewer images (slow method)", m in SLOW_METHODS)) if on)


def class_summary(df):
    """Mean and std over images per model, method and metric (wide), with a caveat column."""
    import pandas as pd

    from ..methods import names

    if df.empty:
        return pd.DataFrame()
    g = df.groupby(["model", "method", "metric"], sort=False)["value"].agg(["mean", "std", "count"]).reset_index()
    wide = g.set_index(["model", "method", "metric"])[["mean", "std"]].unstack("metric")  # keeps all-NaN std
    wide.columns = [f"{metric} {stat}" for stat, metric in wide.columns]
    wide = wide.join(g.groupby(["model", "method"])["count"].max().rename("n_images")).reset_index()
    order = {m: i for i, m in enumerate(names())}
    wide = wide.sort_values(["model", "method"], key=lambda c: c.map(order) if c.name == "method" else c)
    wide["note"] = wide.apply(_caveat, axis=1)
    cols = ["model", "method", "n_images"] + [c for c in wide.columns if c.endswith((" mean", " std"))]
    return wide[cols + ["note"]].reset_index(drop=True)


# -- figures ------------------------------------------------------------------------------
def plot_cascade_maps(data: Mapping[str, Any], image: int = 0):
    """Fig. 1 (bottom) analogue: per method, the maps as blocks are randomised from the logits down."""
    from ..plots import Panel, map_grid, method_label, model_label

    titles = ["original" if b == "none" else f"+ {b}" for b in data["blocks"]]
    rows = [[Panel(image=data["image"][image], title="image")]] + [
        [Panel(map=data["maps"][m][c, image], title=t) for c, t in enumerate(titles)] for m in data["methods"]]
    return map_grid(rows, row_titles=[data["ids"][image]] + [method_label(m, short=True) for m in data["methods"]],
                    title=f"{model_label(data['model'])}: maps as blocks are randomised from the logits down")


def plot_cascade_curves(df, model: str | None = None):
    """Similarity to the original maps against depth: mean over images, band 25-75 %."""
    from ..plots import chart, legend_below, method_label, model_label

    summ = cascade_summary(df).pipe(lambda d: d[d["model"] == (model or d["model"].iloc[0])])
    metrics = list(dict.fromkeys(summ["metric"]))
    fig, axes = chart(len(metrics), height_px=300)
    for ax, metric in zip(axes, metrics, strict=True):
        part = summ[summ["metric"] == metric]
        for m, g in part.groupby("method", sort=False):
            line = ax.plot(g["depth"], g["mean"], "o-", ms=3, label=method_label(m, short=True))[0]
            ax.fill_between(g["depth"], g["q25"], g["q75"], color=line.get_color(), alpha=0.15)
        ticks = part.drop_duplicates("depth")
        ax.set_xticks(ticks["depth"], ["orig." if b == "none" else b.replace("_blocks.", "b") for b in ticks["block"]],
                      rotation=90)
        ax.set(title=f"{model_label(summ['model'].iloc[0])}: {metric}")
        ax.axhline(0, color="k", lw=0.5)
    axes[0].set_ylabel("similarity to the original map")
    legend_below(fig, axes=axes)
    return fig


def plot_adversarial(df, model: str | None = None):
    """Drop of the clean class's confidence against k, perturbing top / random / bottom pixels."""
    from ..plots import chart, legend_below, method_label

    summ = adversarial_summary(df).pipe(lambda d: d[d["model"] == (model or d["model"].iloc[0])])
    methods = list(dict.fromkeys(summ["method"]))
    fig, axes = chart(len(methods), ncols=min(len(methods), 3), height_px=230, sharey=True)
    for ax, m in zip(axes, methods, strict=True):
        g = summ[summ["method"] == m].sort_values("k")
        for sel, style in zip(SELECTIONS, ("o-", "s--", "v:"), strict=True):
            ax.plot(g["k"], g[sel], style, ms=4, label=f"{sel} pixels")
        ax.set(xscale="log", title=method_label(m), xlabel="k: % of pixels perturbed")
        ax.set_xticks(list(g["k"]), [f"{k:g}" for k in g["k"]], minor=False)
        ax.minorticks_off()
    axes[0].set_ylabel("mean confidence drop")
    legend_below(fig, axes=axes)
    return fig


def plot_class_sensitivity(summ):
    """Mean 1 - Spearman (top-1 vs least-likely map) per method, with std (0: ignores the class)."""
    from ..plots import bar_groups, chart, method_label, model_label

    models = list(dict.fromkeys(summ["model"]))
    fig, axes = chart(len(models), ncols=1, height_px=300)
    for ax, model in zip(axes, models, strict=True):
        g = summ[summ["model"] == model]
        bar_groups(ax, [method_label(m, short=True) for m in g["method"]], {"1 − Spearman": g["1-spearman mean"]},
                   errors={"1 − Spearman": g["1-spearman std"].fillna(0)})
        ax.set(ylabel="1 − Spearman(top-1, least-likely)", title=f"{model_label(model)}: class sensitivity")
    return fig

"""Sanity checks of Fig. 1 (bottom) and Sec. 6.1 of the paper, and class sensitivity.

One file per check of :mod:`cameras.sanity` in ``<results>/sanity/``: ``cascade.csv`` (cascading
randomisation, Adebayo et al. 2018; maps of the first images in ``cascade_maps_<model>.npz``),
``adversarial.csv`` (Sec. 6.1, **our protocol**: the paper's is in a supplement we do not have),
``class_sensitivity.csv`` (Rebuffi et al. 2020, the authors' definition). Methods at their registry
default layer; CAMERAS with Algorithm 1's keep rule, its rows record the sizes kept
(``sizes_kept``). A file's identity holds each method's full settings and layer. Headless:
``python -m cameras.experiments sanity --profile offline --device cuda``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..engine import Check, Context, Experiment, MapStore, Table, Unit
from ..sanity import block_label
from ..sanity import summarize_adversarial as adversarial_summary
from ..sanity import summarize_cascade as cascade_summary
from ..sanity import summarize_kept as kept_summary

__all__ = ["EXPERIMENT", "PROFILES", "CHECKS", "CASCADE_METHODS", "SLOW_METHODS", "CLASS_METRIC", "settings",
           "run", "methods_identity", "block_label", "cascade_maps", "cascade_summary", "adversarial_summary",
           "class_summary", "kept_summary", "verdict_numbers", "plot_cascade_maps", "plot_cascade_curves",
           "plot_adversarial", "plot_class_sensitivity"]

CHECKS = ("cascade", "adversarial", "class_sensitivity")
#: the methods of the cascade (the paper's Fig. 1 compares CAMERAS with these)
CASCADE_METHODS = ["cameras", "gradcam", "gradient", "guided_backprop"]
#: methods that need many forward passes per image: fewer images in class sensitivity
SLOW_METHODS = ("rise", "extremal_perturbation")
SELECTIONS = ("top", "random", "bottom")
#: the class-sensitivity number (Rebuffi et al.'s: Spearman of the most vs least probable class's maps)
CLASS_METRIC = "class_spearman"
_MMI = ("model", "method", "image")
#: registry settings on EfficientNet-Lite: EBP refuses its linear bottlenecks unless strict=False
_LITE_EBP = {"excitation_backprop": {"strict": False}, "contrastive_excitation_backprop": {"strict": False}}
#: the settings besides the methods' that define the rows of each check's file
_IDENTITY = {"cascade": ("data", "seed"), "class_sensitivity": ("data",),
             "adversarial": ("data", "seed", "batch_size", "ks", "adversarial_methods", "adv_eps",
                             "adv_alpha", "adv_steps", "n_random")}
_MODELS = {"cascade": "cascade_models", "adversarial": "adversarial_models", "class_sensitivity": "class_models"}


class Sanity(Experiment):
    name = "sanity"
    base = {"data": "imagenet_sample", "photos": None, "checks": list(CHECKS), "batch_size": 25, "workers": 2,
            "cascade_models": ["efficientnet_lite0"], "cascade_images": 12, "cascade_methods": CASCADE_METHODS,
            "cascade_depths": [0, 1, 2, 3, 6, 11, 16, 21], "metrics": ["spearman", "ssim", "hog"], "maps_images": 1,
            "adversarial_models": ["efficientnet_lite0"], "adversarial_images": 40, "ks": [1, 5, 10, 20, 50],
            "adversarial_methods": [*CASCADE_METHODS, "center"], "adv_eps": 8 / 255, "adv_alpha": 2 / 255,
            "adv_steps": 10, "n_random": 5, "class_models": ["efficientnet_lite0"], "class_images": 20,
            "class_slow_images": 4, "class_methods": "all", "method_settings": {"cameras": {"keep": "prediction"}}}
    # offline: sized for the shared 2-core CPU that computes it; on a GPU: --set cascade_depths=null etc.
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
    tables = {"cascade": Table((*_MMI, "depth", "metric"), (*_MMI, "depth", "block", "metric", "value", "sizes_kept")),
              "adversarial": Table((*_MMI, "k", "selection"), (*_MMI, "k", "selection", "label", "clean_conf", "conf",
                                                               "drop", "full_drop", "flipped", "sizes_kept")),
              "class_sensitivity": Table(_MMI, (*_MMI, "most", "least", "p_most", "p_least", CLASS_METRIC,
                                                "settings", "sizes_kept"))}

    def identity_of(self, s: Mapping[str, Any], file: str) -> dict[str, Any]:
        """Per check: the settings of ``_IDENTITY`` and each method's full settings and layer."""
        check = file.removesuffix(".csv")
        methods = _class_methods(s) if check == "class_sensitivity" else s[f"{check}_methods"]
        return {**{k: s[k] for k in _IDENTITY[check]},
                "methods": methods_identity(s["method_settings"], methods, s[_MODELS[check]])}

    def units(self, s: Mapping[str, Any]) -> list[Unit]:
        """Per model: the cascade; batches of the adversarial check and, per method, of class sensitivity."""
        out, bs, checks = [], s["batch_size"], s["checks"]
        for model in s["cascade_models"] if "cascade" in checks else []:
            its, n = _items(s, s["cascade_images"]), len(_blocks(model))  # depths: up to the number of blocks
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
            out += [Unit("class_sensitivity.csv", list(product([model], [m], [it.name for it in its[i : i + bs]])),
                         model, (m, its[i : i + bs]), "class_sensitivity") for i in range(0, len(its), bs)]
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


def methods_identity(method_settings: Mapping[str, Any], methods: Sequence[str], models: Sequence[str]) -> dict:
    """``{method: its full settings and "layer"}`` (:func:`cameras.methods.method_settings` with
    ``method_settings``; the registry's default layer, one name if ``models`` agree, else per model)."""
    from ..methods import default_layers
    from ..methods import method_settings as full

    out = {}
    for m in methods:
        layers = {model: default_layers(model).get(m) for model in models}
        same = len({json.dumps(v) for v in layers.values()}) == 1
        out[m] = {**full(m, **method_settings.get(m, {})), "layer": layers[models[0]] if same else layers}
    return out


def _items(s: Mapping[str, Any], n: int):
    from ..data import image_items

    return image_items(s["data"], s.get("data_root"), n=n, photos=s.get("photos"))


@functools.cache
def _blocks(model: str) -> tuple[str, ...]:
    from ..models import get_spec
    from ..sanity import cascade_blocks

    return tuple(cascade_blocks(get_spec(model).build(False)[0]))


def _class_methods(s: Mapping[str, Any]) -> list[str]:
    from ..methods import names

    return names() if s["class_methods"] == "all" else list(s["class_methods"])


def _functions(s: Mapping[str, Any], methods: Sequence[str]) -> tuple[dict[str, Any], dict[str, dict]]:
    """The methods for :mod:`cameras.sanity` (CAMERAS as :class:`~cameras.sanity.KeptSizes`, which
    records the sizes each map kept) and the settings of the others."""
    from ..sanity import KeptSizes

    ms = {m: dict(s["method_settings"].get(m, {})) for m in methods}
    return {m: KeptSizes(ms[m]) if m == "cameras" else m for m in methods}, ms


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
    fns, ms = _functions(s, methods)
    df = lib.cascading_randomization(
        fns, lm.model, x.to(lm.device), settings=ms, metrics=tuple(s["metrics"]), seed=s["seed"],
        batch_size=s["batch_size"], image_ids=[it.name for it in todo], progress=ctx.progress, depths=depths,
        maps_out=maps, maps_images=s["maps_images"], workers=s["workers"])
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
    x = torch.stack([lm.denormalize(lm.preprocess(it.source)) for it in batch])
    fns, ms = _functions(s, s["adversarial_methods"])
    df = lib.adversarial_sanity(
        fns, lm.model, x.to(lm.device), normalize=lm.normalize, settings=ms, ks=[float(k) for k in s["ks"]],
        eps=s["adv_eps"], alpha=s["adv_alpha"], steps=s["adv_steps"], n_random=s["n_random"],
        seed=s["seed"] + start, image_ids=[it.name for it in batch], progress=False)
    yield from ({"model": lm.name} | row for row in df.to_dict("records"))


def _class_sensitivity(ctx: Context, unit: Unit):
    from .. import sanity as lib
    from ..methods import method_settings

    s, lm, (m, batch) = ctx.settings, ctx.model(unit.model), unit.data
    fns, ms = _functions(s, [m])
    x = torch.stack([lm.preprocess(it.source) for it in batch]).to(lm.device)
    df = lib.class_spearman(fns, lm.model, x, settings=ms, image_ids=[it.name for it in batch])
    recorded = method_settings(m, **ms[m])
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
    return {**out, "model": model, "image": d["image"], "all_blocks": list(_blocks(model)),
            "maps": {m: MapStore.dequantise(d[f"maps_{m}"]) for m in out["methods"]}}


# -- summaries ----------------------------------------------------------------------------
def class_summary(df):
    """Per model and method: the mean Spearman of the most vs least probable class's maps over the
    images where it is defined (the authors' rule), a 95 % bootstrap interval, ``n``, ``dropped``."""
    from ..methods import names
    from ..metrics.class_sensitivity import summarize_class_sensitivity

    out = summarize_class_sensitivity(df, by=("model", "method"), column=CLASS_METRIC)
    out["note"] = ["; ".join(n for n, on in (
        ("strict=False: EBP rules assume ReLU nets without linear bottlenecks", me in _LITE_EBP and "lite" in mo),
        ("ignores model and class (control: 1 by construction)", me == "center"),
        ("fewer images (slow method)", me in SLOW_METHODS)) if on) for mo, me in zip(out["model"], out["method"], strict=True)]
    order = {m: i for i, m in enumerate(names())}
    return out.sort_values(["model", "method"], key=lambda c: c.map(order) if c.name == "method" else c,
                           ignore_index=True)


def verdict_numbers(results=None) -> dict[str, Any]:
    """The chapter's numbers for :mod:`cameras.verdict`, from the stored offline results (nothing is
    computed): the cascade's mean Spearman with the original map once the top block (``top``) and
    every evaluated block (``all``) are random; the adversarial check at the middle ``k`` (top minus
    random drop, share ordered top > random > bottom); class sensitivity (the authors' Spearman)."""
    s = settings("offline")
    res = {c: EXPERIMENT.rows(s, results, units, table=c) for units in [EXPERIMENT.units(s)] for c in CHECKS}
    out: dict[str, Any] = {"cascade": {}, "adversarial": {}, "class_sensitivity": {}, "class_metric": CLASS_METRIC}
    cs = cascade_summary(res["cascade"]) if len(res["cascade"]) else None
    for (model, method), g in ([] if cs is None else cs[cs["metric"] == "spearman"].groupby(["model", "method"])):
        g = g.set_index("depth")["mean"]
        if 1 in g.index:
            out["cascade"].setdefault(model, {})[method] = {"top": float(g[1]), "all": float(g[g.index.max()])}
    adv = adversarial_summary(res["adversarial"])
    ks = sorted(adv["k"].unique()) if len(adv) else []
    for r in (adv[adv["k"] == ks[len(ks) // 2]].itertuples() if ks else []):
        out["adversarial"].setdefault(r.model, {})[r.method] = {"gap": float(r.gap), "ordered": float(r.ordered),
                                                                "n_images": int(r.n_images)}
    for r in (class_summary(res["class_sensitivity"]).itertuples() if len(res["class_sensitivity"]) else []):
        out["class_sensitivity"].setdefault(r.model, {})[r.method] = float(r.mean)
    return out


# -- figures ------------------------------------------------------------------------------
def plot_cascade_maps(data: Mapping[str, Any], image: int = 0, depths: Sequence[int] | None = None):
    """Fig. 1 (bottom) analogue: per method, the maps as blocks are randomised from the logits down
    (``depths``: default the original, the top block, the head and the deepest evaluated depth)."""
    from ..plots import Panel, map_grid, method_label, model_label

    have = data["depths"]
    depths = [d for d in (depths or dict.fromkeys([0, 1, 3, have[-1]])) if d in have]
    cols = [have.index(d) for d in depths]
    titles = ["original" if d == 0 else f"{d} block{'s' * (d > 1)} random" for d in depths]
    notes = ["" if d == 0 else "down to " + block_label(data["blocks"][c], data["all_blocks"]).split(" (")[0]
             for d, c in zip(depths, cols, strict=True)]
    rows = [[Panel(image=data["image"][image], title="image")]] + [
        [Panel(map=data["maps"][m][c, image], title=titles[i], note=notes[i]) for i, c in enumerate(cols)]
        for m in data["methods"]]
    return map_grid(rows, row_titles=[data["ids"][image]] + [method_label(m, short=True) for m in data["methods"]],
                    title=f"{model_label(data['model'])}: maps as blocks are randomised from the logits down")


def plot_cascade_curves(df, model: str | None = None):
    """Similarity to the original maps against the number of randomised blocks: mean over
    images, band 25-75 %, one panel per metric."""
    from ..plots import line_chart

    summ = cascade_summary(df).pipe(lambda d: d[d["model"] == (model or d["model"].iloc[0])])
    return line_chart(summ.assign(metric=summ["metric"].map({"spearman": "Spearman", "ssim": "SSIM", "hog": "HOG"})),
                      x="depth", y="mean", hue="method", panel="metric", yerr=("q25", "q75"), ref=0.0,
                      xlabel="blocks randomised (from the logits)", ylabel="similarity to the original map",
                      height_px=260)


def plot_adversarial(df, model: str | None = None):
    """Drop of the clean class's confidence against k, perturbing top / random / bottom pixels."""
    import pandas as pd

    from ..plots import line_chart

    summ = adversarial_summary(df).pipe(lambda d: d[d["model"] == (model or d["model"].iloc[0])])
    tidy = pd.concat([summ.assign(selection=f"{sel} pixels", drop=summ[sel]) for sel in SELECTIONS])
    fig = line_chart(tidy, x="k", y="drop", hue="selection", panel="method", logx=True, height_px=220,
                     xlabel="k: % of pixels perturbed", ylabel="mean confidence drop")
    for ax in fig.axes[: tidy["method"].nunique()]:
        ax.set_xticks(sorted(tidy["k"].unique()), [f"{k:g}" for k in sorted(tidy["k"].unique())])
        ax.minorticks_off()
    return fig


def plot_class_sensitivity(summ):
    """Class sensitivity as its authors define it, per method: the mean Spearman correlation of the
    maps of the most and the least probable class (lower: more class-sensitive), 95 % intervals."""
    from ..plots import bar_chart

    return bar_chart(summ, x="method", y="mean", panel="model", yerr=("ci_low", "ci_high"), ncols=1, ref=0.0,
                     ylabel="Spearman ρ, most vs least\nprobable class (lower: more\nclass-sensitive)", height_px=300)

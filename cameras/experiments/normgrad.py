r"""Chapter 8: NormGrad and the backprop-saliency framework (Rebuffi, Fong, Ji & Vedaldi, CVPR 2020).

Tables (:data:`TABLES`, a CSV per table and model): ``grid`` (class sensitivity of every phase1 x
phase2 cell and :data:`EXTRA` at four depths and combined, +/- meta-saliency), ``layers`` (share of
each depth's gradient in its spatial mean), ``methods`` (every registered method, several layers,
+/- meta-saliency), ``contrast`` (:data:`VARIANTS`: grid pointing game and map density of the same
maps), ``timing`` (batched vs looped meta-saliency). Figure maps: ``maps/<model>/figure.npz``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch

from .. import metrics as M
from ..data import image_items
from ..engine import Check, Context, Experiment, MapStore, Table, Unit, load_batches, zoomed_sizes
from ..engine import chunks as _chunks
from ..images import load_image
from ..methods import default_layers, info, names
from ..methods import normgrad as ng
from ..methods.meta import compare_modes
from ..plots import Panel, map_grid

__all__ = ["EXPERIMENT", "PROFILES", "TABLES", "VARIANTS", "EXTRA", "SERIES", "settings", "run", "items",
           "method_layers", "plot_grid", "plot_depths", "depth_summary", "contrast_table"]

EXTRA, CELLS = ("gradcam", "hirescam", "layercam", "gradcam++"), [f"{a}/{b}" for a in ng.PHASE1 for b in ng.PHASE2]
#: the contrast: ``{variant: (method, layer)}``; layer ``None``: the method's default, ``"grid"``: the 4 depths
VARIANTS = {"cameras": ("cameras", None), "normgrad": ("normgrad", None), "normgrad_combined": ("normgrad", "grid"),
            "gradcam": ("gradcam", None)}
#: the cells and methods followed across depths (``grid`` table cell -> series name)
SERIES = {"gradcam": "gradcam", "hirescam": "hirescam", "conv1x1/norm": "normgrad", "scaling/filter_norm": "selective NormGrad"}
TABLES = {name: Table(tuple(k.split()), tuple(k.split() + c.split()), ("model", "method", "image", "layer", "cell",
                                                                          "variant", "mode", "source"))
          for name, k, c in [("grid", "model meta_lr layer cell image", "most least class_spearman"),
                             ("layers", "model layer image", "height width grad_mean_share"),
                             ("methods", "model method layer meta_lr image", "most least class_spearman seconds"),
                             ("contrast", "model variant image cell",
                              "target source share hit rho_plus rho_minus map_mean seconds"),
                             ("timing", "model method mode", "images seconds_per_image max_abs_diff")]}


class NormGrad(Experiment):
    name, tables = "normgrad", TABLES
    base = {"data": "imagenet_sample", "models": ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"],
            "image_size": None, "figure_classes": ["golden retriever", "goldfinch", "teddy"], "n_images": 32,
            "meta_lr": 2.5e-3, "cs_models": ["efficientnet_lite0"], "cs_every": 4, "cs_depths": [0, 3],
            "methods": "all", "method_images": {"rise": 2, "extremal_perturbation": 2},
            "method_settings": {"cameras": {"sizes": [224, 324, 424]}, "rise": {"num_masks": 128, "batch_size": 64},
                                "extremal_perturbation": {"max_iter": 30, "areas": [0.1]},
                                "excitation_backprop": {"strict": False}, "contrastive_excitation_backprop": {"strict": False}},
            "n_grids": 4, "candidate_every": 5, "threshold": 0.5, "cameras_zoom": [1.0, 2.0, 3.0],
            "timing_images": 8, "batch_size": 8}
    profiles = {
        "ci": {"models": ["efficientnet_lite0"], "image_size": 128, "figure_classes": ["goldfinch"], "n_images": 2,
               "cs_every": 1, "methods": ["normgrad", "gradcam", "center"], "n_grids": 1,
               "candidate_every": 40, "threshold": 0.2, "method_settings": {"cameras": {"sizes": [128, 160]}},
               "cameras_zoom": [1.0, 1.25], "timing_images": 2},
        "offline": {},
        "paper": {"data": "imagenet_val", "models": ["resnet50", "vgg16"], "cs_models": ["resnet50", "vgg16"],
                  "n_images": 200, "cs_every": 4, "n_grids": 32, "candidate_every": 10,
                  "cameras_zoom": [1.0, 324 / 224, 424 / 224, 524 / 224, 624 / 224, 724 / 224, 824 / 224, 924 / 224],
                  "method_settings": {"cameras": {}, "rise": {}, "extremal_perturbation": {}}}}
    schema = {"data": Check.choice("imagenet_sample", "imagenet_val"), "models": Check.listof(Check.model),
              "image_size": lambda v, k: Check.int(v, k, low=32, optional=True), "n_images": Check.positive,
              "figure_classes": Check.listof(Check.text), "meta_lr": Check.number, "cs_models": Check.listof(Check.model),
              "cs_every": Check.positive, "cs_depths": Check.listof(Check.choice(0, 1, 2, 3)),
              "methods": lambda v, k: v if v == "all" else Check.listof(Check.method)(v, k),
              "method_images": lambda v, k: {Check.method(m, k): Check.positive(n, k) for m, n in Check.mapping(v, k).items()},
              "method_settings": Check.method_settings, "n_grids": Check.positive, "candidate_every": Check.positive,
              "threshold": Check.fraction, "cameras_zoom": Check.listof(Check.number),
              "timing_images": Check.positive, "batch_size": Check.positive}

    def identity_of(self, s: Mapping[str, Any], file: str) -> dict[str, Any]:
        more = {"grid": "meta_lr", "layers": "", "methods": "meta_lr method_settings cs_depths", "timing": "meta_lr",
                "contrast": "n_grids candidate_every threshold cameras_zoom seed"}[file.split("_")[0]]
        return {k: s[k] for k in ("data", "image_size", *more.split())}

    def units(self, s: Mapping[str, Any]) -> list[Unit]:
        its, fig, lrs, out = items(s), items(s, figure=True), (0.0, float(s["meta_lr"])), []
        for m in s["models"]:
            grid = ng.grid_layers(m)
            out.append(Unit(f"layers_{m}.csv", [(m, lay, it.name) for lay in grid for it in fig + its], m, None, "layers"))
            if m in s["cs_models"]:
                cells = [(lay, c) for lay in grid for c in CELLS + list(EXTRA)] + [("combined", c) for c in CELLS]
                out.append(Unit(f"grid_{m}.csv", [(m, lr, *lc, it.name) for lr in lrs for lc in cells for it in its], m,
                                None, "grid"))
                for me in names() if s["methods"] == "all" else s["methods"]:
                    sub = its[:: s["cs_every"]][: s["method_images"].get(me)]
                    out.append(Unit(f"methods_{m}.csv", [(m, me, k, lr, it.name) for k, _ in method_layers(s, m, me)
                                                         for lr in lrs for it in sub], m, me, "methods"))
                out.append(Unit(f"timing_{m}.csv", [(m, "normgrad", md) for md in ("vmap", "loop")], m, None, "timing"))
            keys = [(m, v, f"grid{n:05d}", c) for v in VARIANTS for n in range(s["n_grids"]) for c in range(4)]
            out.append(Unit(f"contrast_{m}.csv", keys, m, None, "contrast"))
        return out

    def compute(self, ctx: Context, unit: Unit):
        fn = {"layers": _layers, "grid": _grid, "methods": _methods, "timing": _timing, "contrast": _contrast}[unit.table]
        return fn(ctx, unit, ctx.model(unit.model))

    def load(self, s: Mapping[str, Any], results=None) -> dict[str, pd.DataFrame]:
        return {t: self.rows(s, results, table=t) for t in TABLES}


def items(s: Mapping[str, Any], figure: bool = False):
    return image_items(s["data"], s.get("data_root"), **({"classes": s["figure_classes"]} if figure else {"n": s["n_images"]}))


def method_layers(s: Mapping[str, Any], model: str, method: str) -> list[tuple[str, Any]]:
    """``[(key, layer)]`` of a method in the ``methods`` table: its default layer (``"input"`` /
    ``"-"`` where it has none) and the depths ``cs_depths``; NormGrad also the four combined."""
    grid, d = ng.grid_layers(model), default_layers(model).get(method)
    if info(method).layer == "none":
        return [("-", None)]
    d = d[0] if isinstance(d, tuple) else d
    out = {("input" if d is None else d): d, **{grid[i]: grid[i] for i in s["cs_depths"]}}
    return list({**out, **({"combined": grid} if method == "normgrad" else {})}.items())


def _x(ctx: Context, lm, its) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.stack([lm.preprocess(load_image(it.source), ctx.settings["image_size"]) for it in its])
    return x.to(lm.device), torch.tensor([it.label for it in its], device=lm.device)


def _layers(ctx: Context, unit: Unit, lm):
    """The figure's maps (true class; every cell for the first model), then the gradient shares."""
    s, fig, grid, bs = ctx.settings, items(ctx.settings, figure=True), ng.grid_layers(lm.name), ctx.settings["batch_size"]
    x, y = _x(ctx, lm, fig)
    keep = None if lm.name == s["models"][0] else (lambda c: c in SERIES or c == "scaling/sum")
    arrays = ng.grid_arrays(ng.normgrad_grid(lm.model, x, y, grid, extra=EXTRA), [it.name for it in fig], keep)
    ctx.maps.write((lm.name, "figure"), {**arrays, **{f"image|{it.name}": lm.to_image(x[j]) for j, it in enumerate(fig)}})
    for batch in _chunks(fig + items(s), bs):
        for lay, (A, G) in zip(grid, ng.capture_layers(lm.model, *_x(ctx, lm, batch), grid), strict=True):
            share = ng.gradient_mean_share(G.double())
            yield from ({"model": lm.name, "layer": lay, "image": it.name, "height": A.shape[2], "width": A.shape[3],
                         "grad_mean_share": float(share[j])} for j, it in enumerate(batch))


def _grid(ctx: Context, unit: Unit, lm):
    for lr in (0.0, float(ctx.settings["meta_lr"])):
        for batch in _chunks(items(ctx.settings), ctx.settings["batch_size"]):
            df = M.grid_class_sensitivity(lm.model, _x(ctx, lm, batch)[0], ng.grid_layers(lm.name), meta_lr=lr or None,
                                        extra=EXTRA, image_ids=[it.name for it in batch])
            yield from df.assign(model=lm.name, meta_lr=lr).to_dict("records")


def _methods(ctx: Context, unit: Unit, lm):
    s, me = ctx.settings, unit.data
    for key, layer in method_layers(s, lm.name, me):
        for lr in (0.0, float(s["meta_lr"])):
            for batch in _chunks(items(s)[:: s["cs_every"]][: s["method_images"].get(me)], s["batch_size"]):
                t0 = time.perf_counter()
                df = M.class_sensitivity_rebuffi(me, lm.model, _x(ctx, lm, batch)[0], layer=layer, meta_lr=lr or None,
                                               settings=s["method_settings"], image_ids=[it.name for it in batch])
                yield from df.drop(columns=["p_most", "p_least"]).assign(
                    model=lm.name, layer=key, meta_lr=lr, seconds=(time.perf_counter() - t0) / len(batch) / 2
                ).to_dict("records")


def _timing(ctx: Context, unit: Unit, lm):
    x, y = _x(ctx, lm, items(ctx.settings)[: ctx.settings["timing_images"]])
    r = compare_modes("normgrad", lm.model, x, y, lr=ctx.settings["meta_lr"])
    return [{"model": lm.name, "method": "normgrad", "mode": md, "images": len(x), "seconds_per_image": r[md],
             "max_abs_diff": r["max_abs_diff"]} for md in ("vmap", "loop")]


def _contrast(ctx: Context, unit: Unit, lm):
    """2x2 grids of confidently classified candidates (cells of half the input side); each
    variant's map of every cell: pointing game and map density (of the grid image) of the same map."""
    s = ctx.settings
    side, its = s["image_size"] or lm.input_size, items({**s, "n_images": None})[:: s["candidate_every"]]
    x, y = (torch.cat(t) for t in zip(*[b[:2] for b in load_batches(its, lambda im: lm.preprocess(im, side), 64)],
                                      strict=True))
    grids = M.make_grids(lm.model, x.to(lm.device), y, s["n_grids"], rng=s["seed"], threshold=s["threshold"],
                         cell_size=side // 2)
    for v, (method, layer) in VARIANTS.items():
        kw = {"sizes": zoomed_sizes(grids.images.shape[-1], s["cameras_zoom"]), "progress": False} if method == "cameras" else {}
        for n in range(len(grids)):
            t0 = time.perf_counter()
            rows, maps = M.grid_pointing_rows(lm.model, grids, [n], method, model_name=lm.name, **kw,
                                              layer=ng.grid_layers(lm.name) if layer == "grid" else None)
            sec = (time.perf_counter() - t0) / len(rows)
            x, y = grids.images[[n] * len(rows)].to(lm.device), grids.labels[n].to(lm.device)
            rp, rm, d = M.map_density(lm.model, x, maps.to(lm.device), y, mean=lm.mean, std=lm.std, return_details=True)
            yield from ({**{k: r[k] for k in TABLES["contrast"].columns if k in r}, "variant": v, "seconds": sec,
                         "rho_plus": float(rp[j]), "rho_minus": float(rm[j]), "map_mean": float(d["mean_map"][j])}
                        for j, r in enumerate(rows))


EXPERIMENT = NormGrad()
PROFILES, settings, run = EXPERIMENT.PROFILES, EXPERIMENT.settings, EXPERIMENT.run


# -- figures and tables -------------------------------------------------------------------
def _panel(fm: Mapping, image: str, layer: str, cell: str, title: str = "") -> Panel:
    k = f"{image}|{layer}|{cell}"
    return Panel(MapStore.dequantise(fm[k]) if k in fm else None, fm[f"image|{image}"], title)


def plot_grid(fm: Mapping, image: str, layer: str, **kw):
    """The authors' grid at one layer (or ``"combined"``): phase 1 down, phase 2 across."""
    return map_grid([[_panel(fm, image, layer, f"{p1}/{p2}", p2) for p2 in ng.PHASE2] for p1 in ng.PHASE1],
                    row_titles=list(ng.PHASE1), **kw)


def plot_depths(fm: Mapping, rows: Sequence[tuple[str, str, str]], layers: Sequence[str], titles: Sequence[str], **kw):
    """One row per ``(image, cell, row title)``, one panel per layer of ``layers``."""
    return map_grid([[_panel(fm, im, lay, c, t) for lay, t in zip(layers, titles, strict=True)] for im, c, _ in rows],
                    row_titles=[r[2] for r in rows], **kw)


def depth_summary(tables: Mapping[str, pd.DataFrame], model: str) -> pd.DataFrame:
    """Per depth (1-4): the share of the gradient in its spatial mean and the class sensitivity
    of :data:`SERIES` (no meta-saliency), means with 95 % bootstrap intervals."""
    lay, g = tables["layers"], tables["grid"]
    a = M.summarize_class_sensitivity(lay[lay["model"] == model], by=("layer",), column="grad_mean_share")
    b = M.summarize_class_sensitivity(g[(g["model"] == model) & (g["meta_lr"] == 0) & g["cell"].isin(list(SERIES))],
                                    by=("layer", "cell"))
    df = pd.concat([a.assign(series="gradient"), b.assign(series=b["cell"].map(SERIES))], ignore_index=True)
    return df.assign(depth=df["layer"].map({lay: i + 1 for i, lay in enumerate(ng.grid_layers(model))})).dropna(subset=["depth"])


def contrast_table(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Per (model, variant): mass and maximum in the right cell (%, 95 % bootstrap / Wilson
    intervals), median map density ρ+ / ρ−, mean map area, seconds per map."""
    out, ci = [], lambda lo, hi: "–" if lo != lo else f"{100 * lo:.0f}–{100 * hi:.0f}"  # noqa: E731 (NaN: 1 grid)
    for (model, v), p in tables["contrast"].groupby(["model", "variant"], sort=False):
        share, hit = M.bootstrap_ci(p.groupby("image")["share"].mean()), M.wilson(int(p["hit"].sum()), len(p))
        out.append({"model": model, "variant": v, "maps": len(p), "share": 100 * p["share"].mean(),
                    "share 95 % CI": ci(*share), "hit": 100 * p["hit"].mean(), "hit 95 % CI": ci(*hit),
                    "rho_plus": p["rho_plus"].median(), "rho_minus": p["rho_minus"].median(), "map area": p["map_mean"].mean(),
                    "seconds per map": p["seconds"].mean()})
    return pd.DataFrame(out)

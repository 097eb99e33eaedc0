r"""Map density (CAMERAS, Table 2) and insertion/deletion over an ImageNet image set.

The paper's Table 2 (Jalwana et al., CVPR 2021; :func:`cameras.paper.table2`) scores maps by
their *map density* for the true label (:mod:`cameras.metrics.density`): NormGrad, Grad-CAM and
CAMERAS on ResNet-50, DenseNet-121, Inception-v3. Here, per (model, method, image, true label,
masking baseline): :math:`\rho^\pm`, the probabilities behind them, and the insertion/deletion
AUCs (Petsiuk et al., BMVC 2018). A masked pixel becomes black (``"black"``) or the mean colour
(``"mean"``, 0 in the normalised input): the paper does not say. Each method runs at its
default layer for the architecture (:func:`cameras.methods.default_layers`; NormGrad at the
last stride-16 block, as its authors) with ``method_settings``; CAMERAS keeps a size only if
the top-1 there is the top-1 at the reference size (Algorithm 1, ``keep="prediction"``;
``sizes_kept``), at the paper's sizes shifted to the model's input
(:func:`cameras.engine.shifted_sizes`). A file's identity holds every method's settings.

Profiles: ``ci`` (Lite0, 4 images, 3 sizes), ``offline`` (Lite0/1/2, the 1000-image ImageNet
sample, extra methods LayerCAM, Grad-CAM++, gradient; what a shared 2-core CPU affords:
``method_images`` computes CAMERAS and NormGrad on 32 evenly spaced images and ``skip`` leaves
them out on Lite1/2; a GPU run: ``--set 'skip={}' --set 'method_images={}'``), ``paper``
(ResNet-50, DenseNet-121, Inception-v3 on ImageNet val under ``$CAMERAS_DATA_ROOT``). One
file per (data, model): ``<results>/density/<data>_<model>.csv``. :func:`table2`
(``density_table``), :func:`win_rates` and :func:`common_images`: :mod:`cameras.metrics.density`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core import DEFAULT_SIZES, Cameras
from ..data import image_items, spread_indices
from ..engine import Check, Context, Experiment, Unit, load_batches, shifted_sizes
from ..metrics.density import common_images, win_rates
from ..metrics.density import density_table as table2

__all__ = ["EXPERIMENT", "PROFILES", "KEY", "COLUMNS", "settings", "run", "load_results", "items",
           "method_items", "method_kwargs", "summary", "table2", "comparison_table",
           "common_images", "win_rates", "kept_sizes", "verdict_numbers", "example", "plot_example",
           "plot_distributions", "plot_insertion_deletion", "plot_kept"]

KEY: tuple[str, ...] = ("model", "method", "image", "target", "baseline")
COLUMNS: tuple[str, ...] = KEY + (
    "rho_plus", "rho_minus",  # P(y | I*Psi) / mean(Psi), P(y | I*(1-Psi)) / mean(1-Psi)
    "p_plus", "p_minus", "map_mean",  # P(y | I*Psi), P(y | I*(1-Psi)), mean(Psi)
    "p_full", "top1",  # P(y | I) and the model's top-1 on I
    "insertion", "deletion",  # AUCs (insertion on a blurred canvas; deletion to the baseline)
    "map_seconds",  # time to compute the map, per image (batch average)
    "sizes_kept",  # CAMERAS: how many sizes Algorithm 1 averaged (empty for other methods)
)
PAPER_METHODS = ("normgrad", "gradcam", "cameras")


class Density(Experiment):
    name = "density"
    key, columns = KEY, COLUMNS
    base = {
        "data": "imagenet_sample", "models": ["efficientnet_lite0", "efficientnet_lite1",
                                              "efficientnet_lite2"],
        "n_images": None, "methods": ["cameras", "gradcam", "normgrad"],
        # HiResCAM is left out: at a layer that feeds the global average pool directly (all
        # models here) its map equals Grad-CAM's, since the gradient is spatially constant
        "extra_methods": ["layercam", "gradcam++", "gradient"],
        "method_settings": {"cameras": {"keep": "prediction"}}, "method_images": {}, "skip": {},
        "cameras_sizes": list(DEFAULT_SIZES), "baselines": ["black", "mean"],
        "insdel_steps": 16, "batch_size": 64, "eval_batch": 256, "loader_workers": "auto",
    }
    profiles = {
        "ci": {"models": ["efficientnet_lite0"], "n_images": 4, "extra_methods": [],
               "cameras_sizes": [224, 324, 424], "insdel_steps": 4, "batch_size": 4,
               "eval_batch": 32, "loader_workers": 0},
        # the shared 2-core CPU recomputed CAMERAS (Algorithm 1's keep rule) and NormGrad (the
        # authors' layer) on 32 evenly spaced images of each model; a GPU: --set 'method_images={}'
        "offline": {"method_images": {"cameras": 32, "normgrad": 32}, "batch_size": 16},
        "paper": {"data": "imagenet_val", "models": ["resnet50", "densenet121", "inception_v3"],
                  "extra_methods": [], "batch_size": 32},
    }
    schema = {
        "data": Check.choice("imagenet_sample", "imagenet_val"),
        "models": Check.listof(Check.model), "n_images": Check.optional_positive,
        "methods": Check.listof(Check.method), "extra_methods": Check.listof(Check.method, empty=True),
        "method_settings": Check.method_settings, "method_images": lambda v, k: {
            Check.method(m, k): Check.positive(n, k) for m, n in Check.mapping(v, k).items()}, "skip": Check.skip,
        "cameras_sizes": Check.listof(Check.size), "baselines": Check.listof(Check.choice("black", "mean")),
        "insdel_steps": Check.positive, "batch_size": Check.positive, "eval_batch": Check.positive,
        "loader_workers": Check.workers,
    }
    identity = ("data", "cameras_sizes", "insdel_steps")

    def validate(self, s: dict[str, Any]) -> None:
        s["extra_methods"] = [m for m in s["extra_methods"] if m not in s["methods"]]
        if slow := [m for m in s["methods"] + s["extra_methods"] if m in ("rise", "extremal_perturbation")]:
            raise ValueError(f"{slow}: perturbation methods are too slow for this experiment")
        if "sizes" in s["method_settings"].get("cameras", {}):
            raise ValueError("set CAMERAS' sizes through cameras_sizes (shifted to each model's input)")

    def identity_of(self, s: Mapping[str, Any], file: str) -> dict[str, Any]:
        """The data, sizes and steps, and every method's full settings on the file's model."""
        from ..methods import method_settings

        model, methods = next(m for m in s["models"] if file == f"{s['data']}_{m}.csv"), {}
        for m in s["methods"] + s["extra_methods"]:
            kw = method_kwargs(m, model, s)
            methods[m] = {**method_settings(m, **{k: v for k, v in kw.items() if k != "layer"}), "layer": kw.get("layer")}
        return {**super().identity_of(s, file), "methods": methods}

    def units(self, s: Mapping[str, Any]) -> list[Unit]:
        """One unit per (method group, model): the paper's three methods first, for all
        models, then the extras, so an interrupted run has the paper's comparison first."""
        its, out = items(s), []
        for group in (g for g in (s["methods"], s["extra_methods"]) if g):
            for model in s["models"]:
                ms = [m for m in group if m not in s["skip"].get(model, [])]
                keys = [(model, m, it.name, it.label, b) for m in ms for it in method_items(s, m)
                        for b in s["baselines"]]
                if keys:
                    out.append(Unit(f"{s['data']}_{model}.csv", keys, model, (ms, its)))
        return out

    def meta(self, ctx: Context, file: str) -> dict[str, Any]:
        lm = ctx.model(next(m for m in ctx.settings["models"] if file == f"{ctx.settings['data']}_{m}.csv"))
        return {"task": "map_density", "model": lm.name, "weights": lm.weights, "target": "true label"}

    def compute(self, ctx: Context, unit: Unit):
        s, lm = ctx.settings, ctx.model(unit.model)
        group, its = unit.data
        allowed = {m: {it.name for it in method_items(s, m)} for m in group}

        def todo(it, method):
            return it.name in allowed[method] and not all(
                ctx.done(unit.file, (lm.name, method, it.name, it.label, b)) for b in s["baselines"])

        pending = [it for it in its if any(todo(it, m) for m in group)]
        # loader workers get the preprocessing without the network (nothing on the GPU)
        pre = dataclasses.replace(lm, model=nn.Identity(), device=torch.device("cpu")).preprocess
        for x, labels, idx in load_batches(pending, pre, s["batch_size"], s["loader_workers"]):
            x, labels = x.to(lm.device), labels.to(lm.device)
            batch = [pending[i] for i in idx]
            with torch.no_grad():
                probs = lm.model(x).float().softmax(dim=1)
            p_full = probs.gather(1, labels.view(-1, 1))[:, 0].cpu()
            top1 = probs.argmax(dim=1).cpu()
            for method in group:
                need = [j for j, it in enumerate(batch) if todo(it, method)]
                if not need:
                    continue
                sel = torch.tensor(need, device=lm.device)
                rows = _evaluate(ctx, lm, x[sel], labels[sel], method, p_full[need], top1[need])
                for j, per_image in zip(need, rows, strict=True):
                    for r in per_image:
                        yield {"model": lm.name, "method": method, "image": batch[j].name,
                               "target": batch[j].label, **r}

    def load(self, s: Mapping[str, Any], results=None):
        rank = {m: i for i, m in enumerate(s["models"] + s["methods"] + s["extra_methods"])}
        return self.rows(s, results).sort_values(["model", "method", "baseline", "image"], key=lambda c: c.map(
            rank) if c.name in ("model", "method") else c).reset_index(drop=True)


def _fmt(v: float) -> str:
    return str(float(v)) if not math.isfinite(float(v)) else f"{float(v):.6g}"


def method_kwargs(method: str, model: str, s: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments of :func:`cameras.methods.saliency` for ``method`` on ``model`` (a name):
    its layer for the architecture, ``method_settings`` and CAMERAS' shifted sizes."""
    from ..methods import default_layers, info
    from ..models import get_spec

    kw: dict[str, Any] = dict(s["method_settings"].get(method, {}))
    if info(method).layer == "required":
        kw["layer"] = default_layers(model)[method]
    if method == "cameras":
        kw.update(sizes=shifted_sizes(s["cameras_sizes"], get_spec(model).input_size), progress=False)
    return kw


def _maps(method: str, lm, x, labels, s: Mapping[str, Any]):
    """``(maps, sizes kept per image or None)`` of one method on one batch."""
    from ..methods import method_settings, saliency

    kw = method_kwargs(method, lm.name, s)
    if method != "cameras":
        return saliency(method, lm.model, x, labels, **kw), None
    layer, ms = kw.pop("layer"), method_settings("cameras", **kw)
    cam = Cameras(lm.model, layer=layer, sizes=ms["sizes"], batch_size=ms["batch_size"],
                  progress=False, keep=ms["keep"])
    maps = cam(x, labels)
    return maps, cam.kept.sum(dim=0).cpu()


def _evaluate(ctx: Context, lm, x, labels, method: str, p_full, top1) -> list[list[dict[str, Any]]]:
    """Rows (one list per image, one row per baseline) of one method on one batch."""
    from ..metrics import insertion_deletion, map_density

    s = ctx.settings
    with ctx.timer() as t:
        maps, kept = _maps(method, lm, x, labels, s)
    seconds = t["seconds"] / x.shape[0]
    kw = dict(mean=lm.mean, std=lm.std, batch_size=s["eval_batch"])
    ins, _ = insertion_deletion(lm.model, x, maps, labels, "insertion", n_steps=s["insdel_steps"], **kw)
    out: list[list[dict[str, Any]]] = [[] for _ in range(x.shape[0])]
    for b in s["baselines"]:
        rp, rm, d = map_density(lm.model, x, maps, labels, baseline=b, return_details=True, **kw)
        dele, _ = insertion_deletion(lm.model, x, maps, labels, "deletion", n_steps=s["insdel_steps"],
                                     substrate=b, **kw)
        for i in range(x.shape[0]):
            out[i].append({
                "baseline": b, "rho_plus": _fmt(rp[i]), "rho_minus": _fmt(rm[i]),
                "p_plus": _fmt(d["p_plus"][i]), "p_minus": _fmt(d["p_minus"][i]),
                "map_mean": _fmt(d["mean_map"][i]), "p_full": _fmt(p_full[i]), "top1": int(top1[i]),
                "insertion": _fmt(ins[i]), "deletion": _fmt(dele[i]), "map_seconds": f"{seconds:.4g}",
                "sizes_kept": None if kept is None else int(kept[i]),
            })
    return out


EXPERIMENT = Density()
PROFILES, settings, run = EXPERIMENT.PROFILES, EXPERIMENT.settings, EXPERIMENT.run


def items(s: Mapping[str, Any]):
    """The images of the settings (:func:`cameras.data.image_items`)."""
    return image_items(s["data"], s.get("data_root"), n=s["n_images"])


def method_items(s: Mapping[str, Any], method: str):
    """The images of ``method``: :func:`items`, or ``method_images[method]`` of them, evenly spaced."""
    its, n = items(s), s["method_images"].get(method)
    return its if n is None else [its[i] for i in spread_indices(len(its), n)]


def load_results(profile: str | Mapping[str, Any] = "offline", results=None, **overrides: Any):
    """The rows of ``profile`` already in the results files (no computation)."""
    s = settings(profile, **overrides) if isinstance(profile, str) or overrides else dict(profile)
    return EXPERIMENT.load(s, results)


def summary(df, baseline: str = "black", metrics: Sequence[str] = ("rho_plus", "rho_minus", "insertion", "deletion")):
    """Per (model, method), one baseline: mean and median of each metric, ``n``, the share of
    images classified correctly and the number of all-zero maps."""
    d = df[df["baseline"] == baseline]
    d = d.assign(top1_correct=(d["top1"] == d["target"]).astype(float), empty_maps=(d["map_mean"] <= 0).astype(int))
    g = d.groupby(["model", "method"], sort=False)
    out = g[list(metrics)].agg(["mean", "median"])
    out.columns = [f"{m}_{c}" for m, c in out.columns]
    return out.assign(n=g.size(), top1_correct=g["top1_correct"].mean(), empty_maps=g["empty_maps"].sum())


def comparison_table(df, baseline: str = "black", metric: str = "rho_plus"):
    """Table 2 side by side, one row per method: the paper's value (its rank among the three
    methods, 1 = best) on each of its models, then ours: mean [95 % interval] (rank) per model."""
    import pandas as pd

    from ..paper import table2 as paper_table2
    from ..plots import model_label

    higher = metric == "rho_plus"
    out = pd.DataFrame({"method": list(PAPER_METHODS)})
    for who, t in (("paper", paper_table2()), ("ours", table2(df, baseline))):
        t = t.assign(rank=t.groupby("model")[metric].rank(ascending=not higher, method="min"))
        for model, g in t.groupby("model", sort=False):
            g, n = g.set_index("method").reindex(PAPER_METHODS), f", n = {int(g['n'].max())}" if who == "ours" else ""
            out[f"{'paper (reported)' if who == 'paper' else 'ours'}: {model_label(model)}{n}"] = [
                None if not np.isfinite(r[metric]) else f"{r[metric]:.2f}" + (
                    f" [{r[metric + '_lo']:.2f}, {r[metric + '_hi']:.2f}]" if who == "ours" else "")
                + (f" ({int(r['rank'])})" if g[metric].notna().all() else "") for _, r in g.iterrows()]
    return out


def kept_sizes(df):
    """Per model: the number of images by how many of CAMERAS' sizes Algorithm 1 kept."""
    d = df[(df["method"] == "cameras") & (df["baseline"] == "black")].astype({"sizes_kept": float})
    return d.groupby(["model", "sizes_kept"], sort=False).size().rename("images").reset_index().sort_values(
        ["model", "sizes_kept"], kind="stable").astype({"sizes_kept": int})


def verdict_numbers(results=None, profile: str = "offline") -> dict[str, Any]:
    """Table 2's numbers of the stored ``profile`` results (no computation): ``{"models": the
    models with all three methods, "n_images": their common images, "black"/"mean": {model:
    {method: {"rho_plus", "rho_plus_lo", "rho_plus_hi", "rho_minus", ...}}}, "not_computed":
    {model: [methods]}, "sizes_kept": {model: mean of CAMERAS' kept sizes}}``."""
    s = settings(profile)
    df = load_results(s, results)
    t = {b: table2(df, b) for b in ("black", "mean")}
    full = [m for m, g in t["black"].groupby("model", sort=False) if (g["n"] > 0).all()]
    kept = df[(df["method"] == "cameras") & (df["baseline"] == "black")].groupby("model")["sizes_kept"].mean()
    num = {b: {m: {r["method"]: {k: float(r[k]) for k in r.index if k.startswith("rho")} for _, r in g.iterrows()}
               for m, g in v.groupby("model", sort=False)} for b, v in t.items()}
    return {"models": full, "profile": profile, "data": s["data"], "n_sizes": len(s["cameras_sizes"]),
            "n_images": int(t["black"][t["black"]["model"].isin(full)]["n"].min()) if full else 0,
            "not_computed": {m: list(v) for m, v in s["skip"].items()}, "sizes_kept": kept.astype(float).to_dict(),
            **{b: {m: v[m] for m in full} for b, v in num.items()}}


def example(lm, item, s: Mapping[str, Any], methods: Sequence[str] | None = None) -> dict[str, Any]:
    """Maps, masked inputs and map densities of one image, computed as :func:`run` does:
    ``{"image", "maps": {method: (H, W)}, "masked": {(method, baseline): (keep, drop) (H, W, 3)},
    "rho": {(method, baseline): (rho_plus, rho_minus)}, "kept": sizes CAMERAS kept}``."""
    from ..images import load_image
    from ..metrics import map_density, masked_images

    x = lm.preprocess(load_image(item.source))[None].to(lm.device)
    y = torch.tensor([item.label], device=lm.device)
    out: dict[str, Any] = {"image": lm.to_image(x[0]), "maps": {}, "masked": {}, "rho": {}, "kept": None}
    for method in methods or s["methods"]:
        maps, kept = _maps(method, lm, x, y, s)
        out["kept"] = int(kept[0]) if kept is not None else out["kept"]
        out["maps"][method] = maps[0].float().cpu().numpy()
        for b in s["baselines"]:
            keep, drop = masked_images(x, maps, mean=lm.mean, std=lm.std, baseline=b)
            rp, rm = map_density(lm.model, x, maps, y, mean=lm.mean, std=lm.std, baseline=b)
            out["masked"][(method, b)] = [t[0].permute(1, 2, 0).clamp(0, 1).cpu().numpy() for t in (keep, drop)]
            out["rho"][(method, b)] = (float(rp[0]), float(rm[0]))
    return out


def plot_example(ex: Mapping[str, Any]):
    """One row per method: the kept and the removed input of each baseline, with ρ±."""
    from ..plots import Panel, map_grid, method_label

    names, bs = {"black": "black", "mean": "mean colour"}, list(dict.fromkeys(b for _, b in ex["masked"]))
    rows = [[Panel(image=ex["masked"][(m, b)][k], title=f"{('I·Ψ', 'I·(1−Ψ)')[k]}, {names[b]}",
                   note=f"{('ρ+', 'ρ−')[k]} = {ex['rho'][(m, b)][k]:.2f}") for b in bs for k in (0, 1)]
            for m in ex["maps"]]
    return map_grid(rows, row_titles=[method_label(m) for m in ex["maps"]], colorbar=False)


def plot_distributions(df, metric: str = "rho_plus", log: bool = True):
    """Box plots of ``metric`` over images: one panel per model, one box per method and
    baseline (boxes: quartiles, whiskers: 5th/95th percentiles)."""
    from ..plots import box_chart

    d = df.assign(baseline=df["baseline"].map({"black": "black baseline", "mean": "mean-colour baseline"}))
    return box_chart(d, x="method", y=metric, hue="baseline", panel="model", log=log)


def plot_insertion_deletion(df, baseline: str = "black"):
    """Mean insertion AUC (up is better) against mean deletion AUC (left is better)."""
    from ..plots import scatter_chart

    s = summary(df, baseline, metrics=("insertion", "deletion")).reset_index()
    return scatter_chart(s, x="deletion_mean", y="insertion_mean", hue="model", marker="method",
                         xlabel=f"deletion AUC ({baseline}), mean over images (lower is better)",
                         ylabel="insertion AUC (blur), mean (higher is better)", height_px=380)


def plot_kept(df):
    """How many sizes CAMERAS kept per image (Algorithm 1's rule), per model."""
    from ..plots import bar_chart

    fig = bar_chart(kept_sizes(df), x="sizes_kept", y="images", panel="model", ylabel="images")
    fig.axes[0].set_xlabel("sizes kept")
    return fig

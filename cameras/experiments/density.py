r"""Map density (CAMERAS, Table 2) and insertion/deletion over an ImageNet image set.

The paper's Table 2 (Jalwana et al., CVPR 2021) scores saliency maps by their *map density*
for the true label (:mod:`cameras.metrics.density`), for NormGrad, Grad-CAM and CAMERAS on
ResNet-50, DenseNet-121 and Inception-v3 (ImageNet val). This experiment computes, per
(model, method, image, true label, masking baseline), :math:`\rho^\pm`, the probabilities
behind them, and the insertion/deletion AUCs of Petsiuk et al. (BMVC 2018), which the paper
does not report.

**Masking baseline.** The paper does not say what a masked pixel becomes. ``"black"`` fades
masked pixels to black; ``"mean"`` to the dataset mean colour (0 in the normalised input).
Both are computed; each row names its ``baseline``. *Deletion* replaces the top pixels by the
row's baseline; *insertion* starts from a blurred copy (the same for both baselines), in
``insdel_steps`` equal steps (RISE uses one row of pixels per step).

**CAMERAS sizes.** The paper's 224, 324, ..., 924 start at ResNet-50's native 224 px; for a
model with native input ``n`` (EfficientNet-Lite1: 240, Lite2: 260, Inception-v3: 299) they
start at ``n`` with the same 100 px steps (:func:`cameras.engine.shifted_sizes`).

Profiles: ``ci`` (Lite0, 4 images, CAMERAS at 224/324/424, 4 steps), ``offline``
(Lite0/1/2, the 1000-image ImageNet sample, the paper's sizes, then the extra methods
LayerCAM, Grad-CAM++ and the gradient; HiResCAM is not run: at a layer feeding the global
average pool its map is Grad-CAM's), ``paper`` (torchvision ResNet-50, DenseNet-121,
Inception-v3 on ImageNet val under ``$CAMERAS_DATA_ROOT``; fails early without the data or
weights). One results file per (data, model): ``<results>/density/<data>_<model>.csv``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core import DEFAULT_SIZES
from ..engine import Check, Context, Experiment, Unit, load_batches, shifted_sizes

__all__ = ["EXPERIMENT", "PROFILES", "KEY", "COLUMNS", "PAPER_TABLE2", "settings", "run",
           "load_results", "items", "summary", "wide_table", "paper_table", "win_rates",
           "example", "plot_example", "plot_distributions", "plot_insertion_deletion"]

KEY: tuple[str, ...] = ("model", "method", "image", "target", "baseline")
COLUMNS: tuple[str, ...] = KEY + (
    "rho_plus", "rho_minus",  # P(y | I*Psi) / mean(Psi), P(y | I*(1-Psi)) / mean(1-Psi)
    "p_plus", "p_minus", "map_mean",  # P(y | I*Psi), P(y | I*(1-Psi)), mean(Psi)
    "p_full", "top1",  # P(y | I) and the model's top-1 on I
    "insertion", "deletion",  # AUCs (insertion on a blurred canvas; deletion to the baseline)
    "map_seconds",  # time to compute the map, per image (batch average)
)

#: The paper's Table 2 as printed, for the "paper (reported)" columns (``None``: not read).
PAPER_TABLE2: dict[str, Any] | None = None


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
        "cameras_sizes": list(DEFAULT_SIZES), "baselines": ["black", "mean"],
        "insdel_steps": 16, "batch_size": 64, "eval_batch": 256, "workers": "auto",
    }
    profiles = {
        "ci": {"models": ["efficientnet_lite0"], "n_images": 4, "extra_methods": [],
               "cameras_sizes": [224, 324, 424], "insdel_steps": 4, "batch_size": 4,
               "eval_batch": 32, "workers": 0},
        "offline": {},
        "paper": {"data": "imagenet_val", "models": ["resnet50", "densenet121", "inception_v3"],
                  "extra_methods": [], "batch_size": 32},
    }
    schema = {
        "data": Check.choice("imagenet_sample", "imagenet_val"),
        "models": Check.listof(Check.model), "n_images": Check.optional_positive,
        "methods": Check.listof(Check.method), "extra_methods": Check.listof(Check.method, empty=True),
        "cameras_sizes": Check.listof(Check.size), "baselines": Check.listof(Check.choice("black", "mean")),
        "insdel_steps": Check.positive, "batch_size": Check.positive, "eval_batch": Check.positive,
        "workers": Check.workers,
    }
    identity = ("data", "cameras_sizes", "insdel_steps")

    def validate(self, s: dict[str, Any]) -> None:
        s["extra_methods"] = [m for m in s["extra_methods"] if m not in s["methods"]]
        slow = [m for m in s["methods"] + s["extra_methods"] if m in ("rise", "extremal_perturbation")]
        if slow:
            raise ValueError(f"{slow}: perturbation methods are too slow for this experiment")

    def units(self, s: Mapping[str, Any]) -> list[Unit]:
        """One unit per (method group, model): the paper's three methods first, for all
        models, then the extras, so an interrupted run has the paper's comparison first."""
        its = items(s)
        out = []
        for group in (g for g in (s["methods"], s["extra_methods"]) if g):
            for model in s["models"]:
                keys = [(model, m, it.name, it.label, b) for m in group for it in its
                        for b in s["baselines"]]
                out.append(Unit(f"{s['data']}_{model}.csv", keys, model, (group, its)))
        return out

    def meta(self, ctx: Context, file: str) -> dict[str, Any]:
        lm = ctx.model(_model_of(ctx, file))
        return {"task": "map_density", "model": lm.name, "weights": lm.weights, "layer": lm.layer,
                "input_size": lm.input_size, "mean": list(lm.mean), "std": list(lm.std),
                "target": "true label"}

    def compute(self, ctx: Context, unit: Unit):
        s, lm = ctx.settings, ctx.model(unit.model)
        group, its = unit.data

        def todo(it, method):
            return not all(ctx.done(unit.file, (lm.name, method, it.name, it.label, b))
                           for b in s["baselines"])

        pending = [it for it in its if any(todo(it, m) for m in group)]
        # loader workers get the preprocessing without the network (nothing on the GPU)
        pre = dataclasses.replace(lm, model=nn.Identity(), device=torch.device("cpu")).preprocess
        for x, labels, idx in load_batches(pending, pre, s["batch_size"], s["workers"]):
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
        df = self.rows(s, results)
        order = {m: i for i, m in enumerate(s["methods"] + s["extra_methods"])}
        morder = {m: i for i, m in enumerate(s["models"])}
        return df.sort_values(by=["model", "method", "baseline", "image"], key=lambda c: c.map(
            morder) if c.name == "model" else (c.map(order) if c.name == "method" else c)
        ).reset_index(drop=True)


def _model_of(ctx: Context, file: str) -> str:
    return next(m for m in ctx.settings["models"] if file == f"{ctx.settings['data']}_{m}.csv")


def _fmt(v: float) -> str:
    v = float(v)
    return str(v) if math.isnan(v) or math.isinf(v) else f"{v:.6g}"


def method_kwargs(method: str, lm, s: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments of :func:`cameras.methods.saliency` for ``method`` on ``lm``."""
    from ..methods import info

    kw: dict[str, Any] = {"layer": lm.layer} if info(method).layer == "required" else {}
    if method == "cameras":
        kw.update(sizes=shifted_sizes(s["cameras_sizes"], lm.input_size), progress=False)
    return kw


def _evaluate(ctx: Context, lm, x, labels, method: str, p_full, top1) -> list[list[dict[str, Any]]]:
    """Rows (one list per image, one row per baseline) of one method on one batch."""
    from ..methods import saliency
    from ..metrics import insertion_deletion, map_density

    s = ctx.settings
    with ctx.timer() as t:
        maps = saliency(method, lm.model, x, labels, **method_kwargs(method, lm, s))
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
            })
    return out


EXPERIMENT = Density()
PROFILES = EXPERIMENT.PROFILES
settings = EXPERIMENT.settings
run = EXPERIMENT.run


def items(s: Mapping[str, Any]):
    """The images of the settings (:func:`cameras.data.image_items`)."""
    from ..data import image_items

    return image_items(s["data"], s.get("data_root"), n=s["n_images"])


def load_results(profile: str | Mapping[str, Any] = "offline", results=None, **overrides: Any):
    """The rows of ``profile`` already in the results files (no computation)."""
    s = settings(profile, **overrides) if isinstance(profile, str) or overrides else dict(profile)
    return EXPERIMENT.load(s, results)


# ========================================================================================
# summaries
# ========================================================================================
def _q(p):
    def f(x):
        return float(np.quantile(x, p)) if len(x) else math.nan

    f.__name__ = f"q{int(p * 100)}"
    return f


def summary(df, baseline: str = "black",
            metrics: Sequence[str] = ("rho_plus", "rho_minus", "insertion", "deletion"),
            correct_only: bool = False):
    """Per (model, method): mean, median, 25th and 75th percentile of each metric, ``n``, the
    share of images classified correctly and the number of all-zero maps, for one baseline."""
    import pandas as pd

    d = df[df["baseline"] == baseline]
    if correct_only:
        d = d[d["top1"] == d["target"]]
    if d.empty:
        return pd.DataFrame()
    d = d.assign(_correct=(d["top1"] == d["target"]).astype(float), _empty=(d["map_mean"] <= 0).astype(int))
    g = d.groupby(["model", "method"], sort=False)
    parts = []
    for m in metrics:
        a = g[m].agg(["mean", "median", _q(0.25), _q(0.75)])
        a.columns = [f"{m}_{c}" for c in a.columns]
        parts.append(a)
    out = pd.concat(parts, axis=1)
    out["n"] = g.size()
    out["top1_correct"] = g["_correct"].mean()
    out["empty_maps"] = g["_empty"].sum()
    return out


def wide_table(df, baseline: str = "black", stat: str = "mean"):
    """Table 2's layout: one row per method, columns (model, rho+ / rho-) of ``stat``."""
    import pandas as pd

    from ..plots import method_label, model_label

    s = summary(df, baseline, metrics=("rho_plus", "rho_minus"))
    if s.empty:
        return pd.DataFrame()
    t = s[[f"rho_plus_{stat}", f"rho_minus_{stat}"]].rename(
        columns={f"rho_plus_{stat}": "ρ+", f"rho_minus_{stat}": "ρ−"}).unstack("model")
    t.columns = t.columns.swaplevel(0, 1)
    models = list(dict.fromkeys(df["model"]))
    t = t.reindex(columns=pd.MultiIndex.from_product([models, ["ρ+", "ρ−"]]))
    t.columns = pd.MultiIndex.from_tuples([(model_label(m), r) for m, r in t.columns])
    t = t.reindex(list(dict.fromkeys(df["method"])))
    t.index = [method_label(m) for m in t.index]
    return t


def paper_table():
    """The paper's Table 2 in :func:`wide_table`'s layout, or ``None`` without numbers."""
    import pandas as pd

    if not PAPER_TABLE2:
        return None
    df = pd.DataFrame(PAPER_TABLE2["rows"])
    t = df.set_index(["method", "model"])[["rho_plus", "rho_minus"]].rename(
        columns={"rho_plus": "ρ+", "rho_minus": "ρ−"}).unstack("model")
    t.columns = t.columns.swaplevel(0, 1)
    return t.sort_index(axis=1)


def win_rates(df, reference: str = "cameras", baseline: str = "black"):
    """Per model and other method: the share of images where ``reference`` has a higher rho+,
    a lower rho-, a higher insertion and a lower deletion AUC (ties count half)."""
    import pandas as pd

    d = df[df["baseline"] == baseline]
    out = []
    for model, g in d.groupby("model", sort=False):
        piv = {m: g.pivot_table(index="image", columns="method", values=m)
               for m in ("rho_plus", "rho_minus", "insertion", "deletion")}
        if reference not in piv["rho_plus"].columns:
            continue
        for other in (c for c in piv["rho_plus"].columns if c != reference):
            rec = {"model": model, "other": other}
            for m, better in (("rho_plus", 1), ("rho_minus", -1), ("insertion", 1), ("deletion", -1)):
                p = piv[m][[reference, other]].dropna()
                diff = better * (p[reference] - p[other])
                rec[m] = float(((diff > 0) + 0.5 * (diff == 0)).mean()) if len(p) else math.nan
            rec["n"] = len(piv["rho_plus"][[reference, other]].dropna())
            out.append(rec)
    return pd.DataFrame(out)


# ========================================================================================
# an example and figures
# ========================================================================================
def example(lm, item, s: Mapping[str, Any], methods: Sequence[str] | None = None) -> dict[str, Any]:
    """Maps, masked inputs and map densities of one image, computed as :func:`run` does.

    ``{"image": (H, W, 3) uint8, "label", "name", "maps": {method: (H, W)},
    "masked": {(method, baseline): (keep, drop) (H, W, 3) in [0, 1]}, "rho": {(method,
    baseline): (rho_plus, rho_minus)}}``.
    """
    from ..images import load_image
    from ..methods import saliency
    from ..metrics import map_density, masked_images

    x = lm.preprocess(load_image(item.source))[None].to(lm.device)
    out: dict[str, Any] = {"image": lm.to_image(x[0]), "label": item.label, "name": item.name,
                           "maps": {}, "masked": {}, "rho": {}}
    for method in methods or s["methods"]:
        maps = saliency(method, lm.model, x, [item.label], **method_kwargs(method, lm, s))
        out["maps"][method] = maps[0].float().cpu().numpy()
        for b in s["baselines"]:
            keep, drop = masked_images(x, maps, mean=lm.mean, std=lm.std, baseline=b)
            rp, rm = map_density(lm.model, x, maps, [item.label], mean=lm.mean, std=lm.std, baseline=b)
            out["masked"][(method, b)] = tuple(t[0].permute(1, 2, 0).clamp(0, 1).cpu().numpy()
                                               for t in (keep, drop))
            out["rho"][(method, b)] = (float(rp[0]), float(rm[0]))
    return out


def plot_example(ex: Mapping[str, Any]):
    """One row per method: the map, then the kept / dropped input of each baseline with ρ±."""
    from ..plots import Panel, map_grid, method_label

    baselines = list(dict.fromkeys(b for _, b in ex["masked"]))
    rows = []
    for m, mp in ex["maps"].items():
        row = [Panel(map=mp, image=ex["image"], title="map", note=f"mean(Ψ) = {mp.mean():.2f}")]
        for b in baselines:
            keep, drop = ex["masked"][(m, b)]
            rp, rm = ex["rho"][(m, b)]
            row += [Panel(image=keep, title=f"I·Ψ, {b}", note=f"ρ+ = {rp:.2f}"),
                    Panel(image=drop, title=f"I·(1−Ψ), {b}", note=f"ρ− = {rm:.2f}")]
        rows.append(row)
    return map_grid(rows, row_titles=[method_label(m) for m in ex["maps"]], max_cols=5,
                    colorbar=False, panel_px=128)


def plot_distributions(df, metrics: Sequence[str] = ("rho_plus", "rho_minus"), log: bool = True):
    """Box plots over images: one panel per (metric, model), one pair of boxes (black, mean
    baseline) per method; whiskers at the 5th/95th percentiles, y on a log scale."""
    from matplotlib.patches import Patch

    from ..plots import chart, heading, legend_below, method_label, model_label

    models, methods = list(dict.fromkeys(df["model"])), list(dict.fromkeys(df["method"]))
    baselines = list(dict.fromkeys(df["baseline"]))
    colors = {"black": "0.35", "mean": "tab:orange"}
    fig, axes = chart(len(metrics) * len(models), ncols=len(models), height_px=250)
    width = 0.8 / len(baselines)
    for k, (metric, model) in enumerate((m, mo) for m in metrics for mo in models):
        ax = axes[k]
        for j, b in enumerate(baselines):
            sel = df[(df["model"] == model) & (df["baseline"] == b)]
            data = [v[np.isfinite(v) & (v > 0)] if log else v[np.isfinite(v)]
                    for v in (sel[sel["method"] == m][metric].to_numpy() for m in methods)]
            pos = [p + (j - (len(baselines) - 1) / 2) * width for p in range(len(methods))]
            bp = ax.boxplot(data, positions=pos, widths=width * 0.9, whis=(5, 95), showfliers=False,
                            patch_artist=True, medianprops={"color": "k"})
            for patch in bp["boxes"]:
                patch.set(facecolor=colors.get(b, "tab:blue"), alpha=0.7)
        ax.set_xticks(range(len(methods)))
        ax.set_xticklabels([method_label(m, short=True) for m in methods], rotation=30, ha="right")
        if log:
            ax.set_yscale("log")
        ax.set_title(f"{model_label(model)}: {heading(metric)}")
    legend_below(fig, [Patch(color=colors.get(b, "tab:blue"), alpha=0.7) for b in baselines],
                 [f"{b} baseline" for b in baselines])
    return fig


def plot_insertion_deletion(df, baseline: str = "black"):
    """Mean insertion AUC (up is better) against mean deletion AUC (left is better)."""
    from ..plots import chart, legend_below, method_label, model_label

    s = summary(df, baseline, metrics=("insertion", "deletion"))
    models, methods = list(dict.fromkeys(df["model"])), list(dict.fromkeys(df["method"]))
    markers = "osD^v<>p*"
    fig, (ax,) = chart(1, height_px=380, width_px=560)
    for j, model in enumerate(models):
        ax.plot([], [], color=f"C{j}", lw=5, label=model_label(model))
        for k, m in enumerate(methods):
            if (model, m) in s.index:
                r = s.loc[(model, m)]
                ax.scatter(r["deletion_mean"], r["insertion_mean"], marker=markers[k % len(markers)],
                           color=f"C{j}", s=45)
    for k, m in enumerate(methods):
        ax.scatter([], [], color="0.4", marker=markers[k % len(markers)], label=method_label(m, short=True))
    ax.set_xlabel(f"deletion AUC ({baseline}), mean over images (lower is better)")
    ax.set_ylabel("insertion AUC (blur), mean (higher is better)")
    legend_below(fig, axes=[ax], ncol=4)
    return fig

"""Sanity checks of Fig. 1 (bottom) and Sec. 6.1 of the paper, and class sensitivity.

Three checks from :mod:`cameras.sanity`, each writing its rows as it goes (resumable):

1. **Cascading randomisation** (Adebayo et al., NeurIPS 2018; the paper's Fig. 1, bottom):
   the blocks of the network are re-initialised from the logits down, and the maps of
   CAMERAS, Grad-CAM, Gradient and Guided backprop are compared with the original ones
   (Spearman rank correlation, SSIM, HOG similarity). Guided backprop is known to *fail*
   this check (its maps stay similar to the original when the weights are random).
   ``cascade.csv`` plus ``cascade_maps_<model>.npz`` (the maps of the first image at every
   depth, for the figure).
2. **Adversarial sanity check** -- the paper's Sec. 6.1 describes the idea (the pixels a
   map ranks highest should be where an adversarial perturbation hurts most); the exact
   protocol is in a supplement we do not have, so **the protocol is ours**
   (:func:`cameras.sanity.adversarial_sanity`). ``adversarial.csv``.
3. **Class sensitivity** (Rebuffi et al., CVPR 2020) for every method of the registry:
   how much the map changes between the top-1 and the least-likely class.
   ``class_sensitivity.csv``.

Rows go to ``<results>/sanity/`` (``<results>/_ci/sanity/`` for the ci profile). Headless::

    python -m cameras.experiments sanity --profile offline --device cuda

Every method uses its registry default layer (:func:`cameras.methods.default_layers`: the
model's last convolutional block for the CAM-type methods -- ``_head_act`` for EfficientNet-Lite,
``layer4`` for ResNet-50 --, and the input for the backpropagation methods; excitation backprop
has its own). ``cameras.methods`` (Grad-CAM, Gradient, Guided backprop, ...) needs TorchRay.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..runs import ResultsWriter
from ._common import profile_copy, results_subdir
from .attacks import Item, check_data, image_items, load_pixels

__all__ = [
    "PROFILES",
    "CASCADE_METHODS",
    "SLOW_METHODS",
    "settings_for",
    "results_path",
    "run",
    "run_cascade",
    "run_adversarial",
    "run_class_sensitivity",
    "cascade_maps",
    "cascade_summary",
    "adversarial_summary",
    "class_summary",
    "plot_cascade_maps",
    "plot_cascade_curves",
    "plot_adversarial",
    "plot_class_sensitivity",
]

#: the methods of the cascade (the paper's Fig. 1 compares CAMERAS with these)
CASCADE_METHODS = ["cameras", "gradcam", "gradient", "guided_backprop"]
#: methods that need many forward passes per image: fewer images in class sensitivity
SLOW_METHODS = ("rise", "extremal_perturbation")
#: registry settings on EfficientNet-Lite: EBP refuses its linear bottlenecks unless strict=False
_LITE_EBP = {"excitation_backprop": {"strict": False}, "contrastive_excitation_backprop": {"strict": False}}
_PAPER_SIZES = list(range(224, 1000, 100))

PROFILES: dict[str, dict[str, Any]] = {
    "ci": {
        "name": "ci",
        "images": "skimage",
        "photos": ["chelsea", "coffee"],
        "cascade_models": ["efficientnet_lite0"],
        "cascade_images": 2,
        "cascade_methods": CASCADE_METHODS,
        "cascade_depths": [0, 1, 2, 3, 6, 11, 16, 21],
        "metrics": ["spearman", "ssim", "hog"],
        "maps_images": 1,
        "adversarial_models": ["efficientnet_lite0"],
        "adversarial_images": 2,
        "adversarial_methods": ["cameras", "gradcam", "gradient", "guided_backprop", "center"],
        "ks": [5, 20, 50],
        "adv_eps": 8 / 255,
        "adv_alpha": 2 / 255,
        "adv_steps": 5,
        "n_random": 2,
        "class_models": ["efficientnet_lite0"],
        "class_images": 2,
        "class_slow_images": 1,
        "class_methods": "all",
        "method_settings": {
            "cameras": {"sizes": [224, 324]},
            "rise": {"num_masks": 32, "batch_size": 32},
            "extremal_perturbation": {"max_iter": 8, "areas": [0.1], "num_levels": 4},
            **_LITE_EBP,
        },
        "batch_size": 2,
        "workers": 1,
        "seed": 0,
    },
    # Sized for a 2-core CPU, where the stored offline results were computed (a CAMERAS map at
    # 8 sizes costs ~10 s an image there): the cascade on Lite0 at 8 of its 21 depths for 12
    # images, the adversarial check on 40 images, class sensitivity on 20 (RISE / extremal
    # perturbation on 4, with cheap settings). On a GPU, --set cascade_depths=null
    # cascade_models=... cascade_images=... etc. runs the full checks.
    "offline": {
        "name": "offline",
        "images": "imagenet_sample",
        "cascade_models": ["efficientnet_lite0"],
        "cascade_images": 12,
        "cascade_methods": CASCADE_METHODS,
        "cascade_depths": [0, 1, 2, 3, 6, 11, 16, 21],
        "metrics": ["spearman", "ssim", "hog"],
        "maps_images": 1,
        "adversarial_models": ["efficientnet_lite0"],
        "adversarial_images": 40,
        "adversarial_methods": ["cameras", "gradcam", "gradient", "guided_backprop", "center"],
        "ks": [1, 5, 10, 20, 50],
        "adv_eps": 8 / 255,
        "adv_alpha": 2 / 255,
        "adv_steps": 10,
        "n_random": 5,
        "class_models": ["efficientnet_lite0"],
        "class_images": 20,
        "class_slow_images": 4,
        "class_methods": "all",
        "method_settings": {
            "rise": {"num_masks": 500, "batch_size": 100},
            "extremal_perturbation": {"max_iter": 100, "areas": [0.1]},
            **_LITE_EBP,
        },
        "batch_size": 25,
        "workers": 2,
        "seed": 0,
    },
    "paper": {
        "name": "paper",
        "images": "imagenet_val",
        "cascade_models": ["resnet50"],
        "cascade_images": 100,
        "cascade_methods": CASCADE_METHODS,
        "cascade_depths": None,
        "metrics": ["spearman", "ssim", "hog"],
        "maps_images": 2,
        "adversarial_models": ["resnet50"],
        "adversarial_images": 500,
        "adversarial_methods": ["cameras", "gradcam", "gradient", "guided_backprop", "center"],
        "ks": [1, 5, 10, 20, 50],
        "adv_eps": 8 / 255,
        "adv_alpha": 2 / 255,
        "adv_steps": 10,
        "n_random": 5,
        "class_models": ["resnet50"],
        "class_images": 100,
        "class_slow_images": 20,
        "class_methods": "all",
        "method_settings": {"cameras": {"sizes": _PAPER_SIZES}},
        "batch_size": 25,
        "workers": 12,
        "seed": 0,
    },
}

_INT_KEYS = ("cascade_images", "maps_images", "adversarial_images", "adv_steps", "n_random",
             "class_images", "class_slow_images", "batch_size", "workers")


def settings_for(profile: str | Mapping[str, Any], **overrides: Any) -> dict[str, Any]:
    """The profile's settings (a copy) with ``overrides`` (``None`` values ignored)."""
    s = profile_copy(PROFILES, profile, record_name=False)
    known = set(PROFILES["offline"]) | {"sample_dir", "data_root", "photos"}
    for k, v in overrides.items():
        if k not in known:
            raise ValueError(f"unknown setting {k!r} for the sanity experiment; known: {', '.join(sorted(known))}")
        if v is not None:
            s[k] = v
    for k in _INT_KEYS:
        if not isinstance(s[k], int) or isinstance(s[k], bool) or s[k] < 1:
            raise ValueError(f"{k} must be a positive int, got {s[k]!r}")
    for k in ("cascade_models", "adversarial_models", "class_models"):
        if isinstance(s[k], str):
            s[k] = [s[k]]
    s.setdefault("name", "custom")
    return s


def results_path(settings: Mapping[str, Any], results: str | os.PathLike | None = None) -> Path:
    """``<results>/sanity`` (``<results>/_ci/sanity`` for the ci profile)."""
    return results_subdir("sanity", settings.get("name") == "ci", results)


def _items(s: Mapping[str, Any], n: int) -> list[Item]:
    return image_items(dict(s) | {"n_images": n})


def _method_settings(s: Mapping[str, Any], method: str) -> dict[str, Any]:
    return dict(s.get("method_settings", {}).get(method, {}))


def _class_methods(s: Mapping[str, Any]) -> list[str]:
    from ..methods import names

    m = s["class_methods"]
    return names() if m == "all" else list(m)


def _read(path: Path):
    import pandas as pd

    from ..runs import read_results

    return read_results(path) if path.exists() and path.stat().st_size else pd.DataFrame()


# ----------------------------------------------------------------------------------------
# 1. cascading randomisation
# ----------------------------------------------------------------------------------------
_CASCADE_COLS = ["model", "method", "image", "depth", "block", "metric", "value"]


def run_cascade(s: Mapping[str, Any], out: Path, dev: torch.device, progress: bool = True):
    """Cascading randomisation per model in ``cascade_models`` (see the module docstring)."""
    from ..models import load_model
    from ..sanity import cascade_blocks, cascading_randomization

    csv = out / "cascade.csv"
    items = _items(s, s["cascade_images"])
    methods = list(s["cascade_methods"])
    meta = {"experiment": "sanity/cascade", "settings": dict(s)}
    evaluated: dict[str, list[int]] = {}
    for name in s["cascade_models"]:
        maps_file = out / f"cascade_maps_{name}.npz"
        with ResultsWriter(csv, key=("model", "method", "image", "depth", "metric"), columns=_CASCADE_COLS,
                           meta=meta, device=dev) as w:
            depths = s["cascade_depths"]
            lm = load_model(name, device=dev)
            n_blocks = len(cascade_blocks(lm.model))
            depths = list(range(n_blocks + 1)) if depths is None else sorted({d for d in depths if d <= n_blocks})
            evaluated[name] = depths
            if maps_file.exists() and not _same_maps(maps_file, depths, methods):
                maps_file.unlink()  # saved for other depths or methods: redo the figure's maps
            todo_m = [m for m in methods if any(not w.done((name, m, it.id, d, k)) for it in items
                                                for d in depths for k in s["metrics"])]
            if not maps_file.exists():
                todo_m = methods  # the figure needs every method's maps
            if not todo_m:
                continue
            todo_i = [it for it in items if any(not w.done((name, m, it.id, d, k)) for m in todo_m
                                                for d in depths for k in s["metrics"])]
            if not maps_file.exists() and items[: s["maps_images"]]:
                first = items[: s["maps_images"]]
                todo_i = first + [it for it in todo_i if it not in first]
            t0 = time.time()
            x = torch.stack([lm.preprocess(it.source) for it in todo_i])
            settings = {m: _method_settings(s, m) for m in todo_m}
            maps: dict = {}
            df = cascading_randomization(
                todo_m, lm.model, x.to(dev), settings=settings, metrics=tuple(s["metrics"]),
                seed=s["seed"], batch_size=s["batch_size"], image_ids=[it.id for it in todo_i],
                progress=progress, depths=depths, maps_out=maps, maps_images=s["maps_images"],
                workers=s["workers"],
            )
            for row in df.to_dict("records"):
                w.write({"model": name} | row)
            if not maps_file.exists():
                blocks = ["none"] + cascade_blocks(lm.model)
                np.savez_compressed(
                    maps_file,
                    image=np.stack([lm.to_image(lm.preprocess(it.source)) for it in todo_i[: s["maps_images"]]]),
                    ids=np.array([it.id for it in todo_i[: s["maps_images"]]]),
                    methods=np.array(todo_m), depths=np.array(depths),
                    blocks=np.array([blocks[d] for d in depths]),
                    # maps in [0, 1] stored as 8-bit (1/255 steps): small enough to commit
                    **{f"maps_{m}": np.round(255 * np.stack([maps[m][d].clamp(0, 1).numpy() for d in depths]))
                       .astype(np.uint8)
                       for m in todo_m},
                )
            if progress:
                print(f"cascade: {name}: {len(todo_i)} images x {len(depths)} depths x {len(todo_m)} methods "
                      f"in {time.time() - t0:.1f} s on {dev}")
            del lm
    df = _read(csv)
    if df.empty:
        return df
    ids = [it.id for it in items]
    in_depths = np.array([d in evaluated.get(m, ()) for m, d in zip(df["model"], df["depth"], strict=True)], dtype=bool)
    return df[df["model"].isin(s["cascade_models"]) & df["method"].isin(methods) & df["image"].isin(ids)
              & df["metric"].isin(s["metrics"]) & in_depths].reset_index(drop=True)


def _same_maps(path: Path, depths: Sequence[int], methods: Sequence[str]) -> bool:
    """Whether a saved ``cascade_maps_*.npz`` holds these depths and methods."""
    try:
        with np.load(path, allow_pickle=False) as z:
            same = [int(d) for d in z["depths"]] == list(depths) and [str(m) for m in z["methods"]] == list(methods)
            return same and all(z[f"maps_{m}"].dtype == np.uint8 for m in methods)
    except (OSError, KeyError, ValueError):
        return False


def cascade_maps(s: Mapping[str, Any], results: str | os.PathLike | None = None, model: str | None = None):
    """The saved cascade maps of ``model`` (default: the first cascade model) as a dict."""
    model = model or s["cascade_models"][0]
    path = results_path(s, results) / f"cascade_maps_{model}.npz"
    with np.load(path, allow_pickle=False) as z:
        d = {k: z[k] for k in z.files}
    methods = [str(m) for m in d["methods"]]
    return {
        "model": model, "image": d["image"], "ids": [str(i) for i in d["ids"]], "methods": methods,
        "depths": [int(v) for v in d["depths"]], "blocks": [str(b) for b in d["blocks"]],
        "maps": {m: d[f"maps_{m}"].astype(np.float32) / 255 for m in methods},  # (depths, n, H, W) in [0, 1]
    }


def cascade_summary(df):
    """Mean, std and quartiles over images per model, method, depth and metric."""
    g = df.groupby(["model", "method", "metric", "depth", "block"], sort=False)["value"]
    out = g.agg(mean="mean", std="std", q25=lambda v: v.quantile(0.25), q75=lambda v: v.quantile(0.75),
                n_images="count").reset_index()
    return out.sort_values(["model", "method", "metric", "depth"]).reset_index(drop=True)


# ----------------------------------------------------------------------------------------
# 2. adversarial sanity check (our protocol)
# ----------------------------------------------------------------------------------------
_ADV_COLS = ["model", "method", "image", "k", "selection", "label", "clean_conf", "conf", "drop",
             "full_drop", "flipped"]


def run_adversarial(s: Mapping[str, Any], out: Path, dev: torch.device, progress: bool = True):
    """Adversarial sanity check per model in ``adversarial_models`` (protocol: ours)."""
    from ..models import load_model
    from ..sanity import adversarial_sanity

    csv = out / "adversarial.csv"
    items = _items(s, s["adversarial_images"])
    methods = list(s["adversarial_methods"])
    ks = [float(k) for k in s["ks"]]
    sels = ("top", "random", "bottom")
    meta = {"experiment": "sanity/adversarial", "settings": dict(s)}
    for name in s["adversarial_models"]:
        with ResultsWriter(csv, key=("model", "method", "image", "k", "selection"), columns=_ADV_COLS,
                           meta=meta, device=dev) as w:
            todo = [it for it in items if any(not w.done((name, m, it.id, k, sel)) for m in methods
                                              for k in ks for sel in sels)]
            if not todo:
                continue
            t0 = time.time()
            lm = load_model(name, device=dev)
            bs = s["batch_size"]
            for start in range(0, len(todo), bs):
                batch = todo[start : start + bs]
                x = load_pixels(lm, batch)
                df = adversarial_sanity(
                    methods, lm.model, x.to(dev), normalize=lm.normalize,
                    settings={m: _method_settings(s, m) for m in methods},
                    ks=ks, eps=s["adv_eps"], alpha=s["adv_alpha"], steps=s["adv_steps"], n_random=s["n_random"],
                    seed=s["seed"] + start, image_ids=[it.id for it in batch], progress=False,
                )
                for row in df.to_dict("records"):
                    w.write({"model": name} | row)
            if progress:
                print(f"adversarial: {name}: {len(todo)} images in {time.time() - t0:.1f} s on {dev}")
            del lm
    df = _read(csv)
    if df.empty:
        return df
    return df[df["model"].isin(s["adversarial_models"]) & df["method"].isin(methods)
              & df["image"].isin([it.id for it in items]) & df["k"].isin(ks)].reset_index(drop=True)


def adversarial_summary(df):
    """Mean confidence drop (top / random / bottom) per model, method and ``k``, and the share
    of images ordered ``top > random > bottom`` (:func:`cameras.sanity.summarize_adversarial`)."""
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


# ----------------------------------------------------------------------------------------
# 3. class sensitivity (Rebuffi et al. 2020)
# ----------------------------------------------------------------------------------------
_CLASS_COLS = ["model", "method", "image", "top1", "least_likely", "metric", "value", "settings"]


def run_class_sensitivity(s: Mapping[str, Any], out: Path, dev: torch.device, progress: bool = True):
    """Class sensitivity of every method (``class_methods``) per model in ``class_models``."""
    from ..methods import method_settings
    from ..models import load_model
    from ..sanity import class_sensitivity

    csv = out / "class_sensitivity.csv"
    methods = _class_methods(s)
    metrics = ("1-spearman", "1-ssim", "mad")
    meta = {"experiment": "sanity/class_sensitivity", "settings": dict(s)}
    all_ids = set()
    for name in s["class_models"]:
        with ResultsWriter(csv, key=("model", "method", "image", "metric"), columns=_CLASS_COLS,
                           meta=meta, device=dev) as w:
            lm = None
            t0 = time.time()
            for m in methods:
                n = s["class_slow_images"] if m in SLOW_METHODS else s["class_images"]
                items = _items(s, n)
                all_ids |= {(m, it.id) for it in items}
                todo = [it for it in items if any(not w.done((name, m, it.id, k)) for k in metrics)]
                if not todo:
                    continue
                lm = lm or load_model(name, device=dev)
                kw = _method_settings(s, m)
                recorded = method_settings(m, **kw)
                bs = s["batch_size"]
                for start in range(0, len(todo), bs):
                    batch = todo[start : start + bs]
                    x = torch.stack([lm.preprocess(it.source) for it in batch]).to(dev)
                    df = class_sensitivity({m: m}, lm.model, x, settings={m: kw},
                                           image_ids=[it.id for it in batch], progress=False)
                    for row in df.to_dict("records"):
                        w.write({"model": name} | row | {"settings": recorded})
                if progress:
                    print(f"class sensitivity: {name}: {m}: {len(todo)} images ({time.time() - t0:.1f} s so far)")
            del lm
    df = _read(csv)
    if df.empty:
        return df
    keep = np.array([(m, i) in all_ids for m, i in zip(df["method"], df["image"], strict=True)], dtype=bool)
    return df[df["model"].isin(s["class_models"]) & keep].reset_index(drop=True)


def class_summary(df):
    """Mean and std over images per model, method and metric (wide), with a caveat column."""
    import pandas as pd

    from ..methods import names

    if df.empty:
        return pd.DataFrame()
    g = df.groupby(["model", "method", "metric"], sort=False)["value"].agg(["mean", "std", "count"]).reset_index()
    wide = g.set_index(["model", "method", "metric"])[["mean", "std"]].unstack("metric")  # keeps all-NaN std
    wide.columns = [f"{metric} {stat}" for stat, metric in wide.columns]
    n = g.groupby(["model", "method"])["count"].max().rename("n_images")
    wide = wide.join(n).reset_index()
    order = {m: i for i, m in enumerate(names())}
    wide = wide.sort_values(["model", "method"], key=lambda c: c.map(order) if c.name == "method" else c)

    def caveat(row) -> str:
        notes = []
        if row["method"] in ("excitation_backprop", "contrastive_excitation_backprop") and "lite" in row["model"]:
            notes.append("strict=False: EBP rules assume ReLU nets without linear bottlenecks")
        if row["method"] == "center":
            notes.append("ignores model and class (control: 0 by construction)")
        if row["method"] in SLOW_METHODS:
            notes.append("fewer images (slow method)")
        return "; ".join(notes)

    wide["note"] = wide.apply(caveat, axis=1)
    cols = ["model", "method", "n_images"] + [c for c in wide.columns if c.endswith(" mean") or c.endswith(" std")]
    return wide[cols + ["note"]].reset_index(drop=True)


# ----------------------------------------------------------------------------------------
# everything
# ----------------------------------------------------------------------------------------
def run(
    profile: str | Mapping[str, Any] = "offline",
    results: str | os.PathLike | None = None,
    device: str = "auto",
    progress: bool = True,
    checks: Sequence[str] = ("cascade", "adversarial", "class_sensitivity"),
    **overrides: Any,
) -> dict[str, Any]:
    """Run (or resume) the three checks; returns ``{check: DataFrame of its rows}``."""
    from ..models import resolve_device

    s = settings_for(profile, **overrides)
    bad = [c for c in checks if c not in ("cascade", "adversarial", "class_sensitivity")]
    if bad:
        raise ValueError(f"unknown check(s) {bad}; choose from cascade, adversarial, class_sensitivity")
    dev = resolve_device(device)
    check_data(s)  # the paper profile fails here, before any download
    out = results_path(s, results)
    out.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {}
    t0 = time.time()
    if "cascade" in checks:
        res["cascade"] = run_cascade(s, out, dev, progress)
    if "adversarial" in checks:
        res["adversarial"] = run_adversarial(s, out, dev, progress)
    if "class_sensitivity" in checks:
        res["class_sensitivity"] = run_class_sensitivity(s, out, dev, progress)
    if progress:
        print(f"sanity: done in {time.time() - t0:.1f} s ({', '.join(f'{k}: {len(v)} rows' for k, v in res.items())})")
    return res


# ----------------------------------------------------------------------------------------
# figures
# ----------------------------------------------------------------------------------------
_LABELS = {"cameras": "CAMERAS", "gradcam": "Grad-CAM", "gradient": "Gradient", "guided_backprop": "Guided BP",
           "center": "center (control)"}


def plot_cascade_maps(data: Mapping[str, Any], image: int = 0, max_cols: int = 9):
    """Fig. 1 (bottom) analogue: one row per method, one column per randomisation depth."""
    from matplotlib.figure import Figure

    depths = data["depths"]
    cols = list(range(len(depths)))
    if len(cols) > max_cols:  # the first few depths and an even spread of the rest
        head = cols[:4]
        tail = np.linspace(4, len(cols) - 1, max_cols - 4).round().astype(int).tolist()
        cols = sorted(set(head + tail))
    methods = data["methods"]
    fig = Figure(figsize=(1.55 * (len(cols) + 1), 1.65 * len(methods) + 0.4))
    axes = np.atleast_2d(fig.subplots(len(methods), len(cols) + 1, squeeze=False))
    for r, m in enumerate(methods):
        axes[r, 0].imshow(data["image"][image])
        axes[r, 0].set_ylabel(_LABELS.get(m, m), fontsize=8)
        for c, ci in enumerate(cols):
            ax = axes[r, c + 1]
            ax.imshow(data["maps"][m][ci, image], cmap="jet", vmin=0, vmax=1)
            if r == 0:
                blk = data["blocks"][ci]
                ax.set_title("original" if blk == "none" else f"+ {blk}", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{data['model']}: maps as blocks are randomised from the logits down (cumulative)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_cascade_curves(df, model: str | None = None):
    """Similarity to the original maps against depth: mean over images with an interquartile band."""
    from matplotlib.figure import Figure

    summ = cascade_summary(df)
    model = model or summ["model"].iloc[0]
    summ = summ[summ["model"] == model]
    metrics = list(dict.fromkeys(summ["metric"]))
    fig = Figure(figsize=(4.4 * len(metrics), 3.8))
    axes = np.atleast_1d(fig.subplots(1, len(metrics)))
    for ax, metric in zip(axes, metrics, strict=True):
        for m, g in summ[summ["metric"] == metric].groupby("method", sort=False):
            g = g.sort_values("depth")
            line = ax.plot(g["depth"], g["mean"], "o-", ms=3, label=_LABELS.get(m, m))[0]
            ax.fill_between(g["depth"], g["q25"], g["q75"], color=line.get_color(), alpha=0.15)
        g0 = summ[summ["metric"] == metric].drop_duplicates("depth").sort_values("depth")
        ax.set_xticks(g0["depth"])
        ax.set_xticklabels(["orig." if b == "none" else b.replace("_blocks.", "b") for b in g0["block"]],
                           rotation=90, fontsize=6)
        ax.set_title(metric, fontsize=9)
        ax.set_ylabel("similarity to the original map")
        ax.axhline(0, color="k", lw=0.5)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{model}: cascading randomisation (mean over images, band: 25-75 %)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_adversarial(df, model: str | None = None):
    """Confidence drop against k (% of pixels perturbed) for top / random / bottom pixels."""
    from matplotlib.figure import Figure

    summ = adversarial_summary(df)
    model = model or summ["model"].iloc[0]
    summ = summ[summ["model"] == model]
    methods = list(dict.fromkeys(summ["method"]))
    fig = Figure(figsize=(3.2 * len(methods), 3.2))
    axes = np.atleast_1d(fig.subplots(1, len(methods), sharey=True))
    for ax, m in zip(axes, methods, strict=True):
        g = summ[summ["method"] == m].sort_values("k")
        for sel, style in (("top", "o-"), ("random", "s--"), ("bottom", "v:")):
            ax.plot(g["k"], g[sel], style, ms=4, label=sel)
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(list(g["k"]))
        ax.set_xticklabels([f"{k:g}" for k in g["k"]])
        ax.set_xlabel("k: % of pixels perturbed")
        ax.set_title(_LABELS.get(m, m), fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean drop of the clean class's confidence")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{model}: adversarial sanity check (our protocol)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_class_sensitivity(summ):
    """Bar chart of mean 1 - Spearman (top-1 vs least-likely map) per method, with std."""
    from matplotlib.figure import Figure

    models = list(dict.fromkeys(summ["model"]))
    fig = Figure(figsize=(10, 3.4 * len(models)))
    axes = np.atleast_1d(fig.subplots(len(models), 1))
    for ax, model in zip(axes, models, strict=True):
        g = summ[summ["model"] == model]
        ax.bar(range(len(g)), g["1-spearman mean"], yerr=g["1-spearman std"].fillna(0), capsize=2, color="tab:blue")
        ax.set_xticks(range(len(g)))
        ax.set_xticklabels(g["method"], rotation=35, ha="right", fontsize=8)
        ax.set_ylabel("1 - Spearman(top-1, least-likely)")
        ax.set_title(f"{model}: class sensitivity (0 = the map ignores the class)", fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig

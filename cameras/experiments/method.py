r"""Chapter 1 (method): Algorithm 1 step by step, and what the largest size and the steps change.

Jalwana et al., *CAMERAS*, CVPR 2021, Sec. 3.4 and Algorithm 1. :func:`manual_fusion`
(:mod:`cameras.reference`) forms :math:`\bar A`, :math:`\bar G` and the map literally from a
:meth:`cameras.Cameras.capture`. The study (:data:`EXPERIMENT`) measures the paper's words
(saturation near 1000 px, insensitive to 5-10 steps): per image one capture at all sizes with
Algorithm 1's keep rule, every configuration fused from it with that rule and (``*_all``) every
size kept, scored against a reference and the previous configuration; per size, whether the
top-1 is the smallest size's. Rows: ``study_<model>.csv``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from ..core import Cameras, Capture
from ..data import SKIMAGE_PHOTOS, image_items
from ..engine import Check, Context, Experiment, Unit, chunks, linspace_sizes
from ..methods import default_layers, method_settings
from ..methods.cam import capture_map as layer_map
from ..methods.cam import top_channels
from ..metrics.similarity import entropy, high_frequency_share, spearman, ssim, top_mass
from ..models import get_spec
from ..plots import capture_walk as plot_walk
from ..plots import fusion_check as plot_fusion
from ..plots import line_chart, mean_sem
from ..reference import manual_fusion

__all__ = ["EXPERIMENT", "PROFILES", "KEY", "COLUMNS", "STUDY_METRICS", "HEADINGS", "RULES", "KEEP", "settings",
           "run", "chapter_images", "study_items", "layer_map", "top_channels", "manual_fusion", "linspace_sizes",
           "study_configs", "study_sizes", "study_maps", "study_rows", "summarize", "top1_agreement",
           "saturation_size", "verdict_numbers", "plot_walk", "plot_fusion", "plot_study", "plot_top1"]

#: the per-map columns of the study rows
STUDY_METRICS = ("spearman_ref", "ssim_ref", "spearman_prev", "top5_mass", "entropy", "hf_share")
KEY: tuple[str, ...] = ("model", "study", "image", "param")
COLUMNS: tuple[str, ...] = KEY + ("label", "target", "sizes", "n_sizes", "n_kept", *STUDY_METRICS,
                                  "top1", "agree", "prob")
_SIZES = list(range(224, 1000, 100))
KEEP = "prediction"  #: Algorithm 1's keep rule: a size counts if its top-1 is the reference size's


class Method(Experiment):
    name = "method"
    key, columns = KEY, COLUMNS
    base = {
        "model": "efficientnet_lite0", "photos": ["chelsea", "coffee"],
        "sample_classes": ["bull mastiff", "tiger", "flamingo", "African elephant"],
        "walk_images": ["chelsea", "bull mastiff"], "walk_sizes": _SIZES, "compare_sizes": _SIZES,
        "strip_image": "African elephant", "data": "imagenet_sample",
        # 10 images: the committed rows took 3-4 min per image on the 2-core CPU (on a GPU: 100)
        "n_images": 10, "image_stride": 10, "max_sizes": list(range(224, 1200, 100)),
        "size_step": 100, "steps": [2, 3, 5, 8, 15], "steps_max": 924, "cameras_max": 924,
        "batch_size": "auto",  # 8 images per capture where CUDA is available, else 1
    }
    profiles = {
        "ci": {"sample_classes": ["bull mastiff"], "walk_images": ["chelsea"],
               "walk_sizes": [224, 324, 424], "compare_sizes": [224, 324, 424],
               "strip_image": "chelsea", "n_images": 2, "image_stride": 500,
               "max_sizes": [224, 274, 324], "size_step": 50, "steps": [2, 3, 5],
               "steps_max": 324, "cameras_max": 324},
        "offline": {},
        # the paper's model (torchvision ResNet-50, layer4) and ImageNet val, on a GPU
        "paper": {"model": "resnet50", "photos": list(SKIMAGE_PHOTOS), "sample_classes": [],
                  "walk_images": ["chelsea", "coffee"], "strip_image": "chelsea", "data": "imagenet_val",
                  "n_images": 1000, "image_stride": 50, "max_sizes": list(range(224, 1300, 100))},
    }
    schema = {
        "model": Check.model, "photos": Check.listof(Check.text, empty=True),
        "sample_classes": Check.listof(Check.text, empty=True),
        "walk_images": Check.listof(Check.text), "walk_sizes": Check.listof(Check.size),
        "compare_sizes": Check.listof(Check.size), "strip_image": Check.text,
        "data": Check.choice("imagenet_sample", "imagenet_val"), "n_images": Check.positive,
        "image_stride": Check.positive, "max_sizes": Check.listof(Check.size),
        "size_step": Check.positive, "steps": Check.listof(lambda v, k: Check.int(v, k, low=2)),
        "steps_max": Check.size, "cameras_max": Check.size,
        "batch_size": lambda v, k: v if v == "auto" else Check.positive(v, k),
    }
    # what defines the rows' values (each configuration's sizes, the references): not the images
    identity = ("data", "max_sizes", "size_step", "steps", "steps_max", "cameras_max")

    def identity_of(self, s: Mapping[str, Any], file: str) -> dict[str, Any]:
        """The study's settings and CAMERAS' (the sizes captured, Algorithm 1's keep rule, layer)."""
        cam = method_settings("cameras", sizes=study_sizes(s, get_spec(s["model"]).input_size), keep=KEEP)
        return {**super().identity_of(s, file), "methods": {"cameras": {**cam, "layer": default_layers(s["model"])["cameras"]}}}

    def units(self, s: Mapping[str, Any]) -> list[Unit]:
        items = study_items(s)  # data first: a missing dataset fails before the model loads
        min_size = get_spec(s["model"]).input_size
        bs = s["batch_size"] if s["batch_size"] != "auto" else (8 if torch.cuda.is_available() else 1)
        params = [c[:2] for c in study_configs(s, min_size)]
        params += [("size_top1", v) for v in study_sizes(s, min_size)]
        return [Unit(f"study_{s['model']}.csv", [(s["model"], st, it.name, p) for it in batch
                                                  for st, p in params], s["model"], batch)
                for batch in chunks(items, bs)]

    def meta(self, ctx: Context, file: str) -> dict[str, Any]:
        lm = ctx.model(ctx.settings["model"])
        return {"sizes": study_sizes(ctx.settings, lm.input_size), "layer": lm.layer, "weights": lm.weights}

    def compute(self, ctx: Context, unit: Unit) -> list[dict[str, Any]]:
        s, lm = ctx.settings, ctx.model(unit.model)
        x = torch.stack([lm.preprocess(it.source) for it in unit.data]).to(lm.device)
        cam = Cameras(lm, sizes=study_sizes(s, lm.input_size), progress=False, keep=KEEP)
        return study_rows(cam, cam.capture(x), [it.name for it in unit.data],
                          [it.label for it in unit.data], s, lm.name)


EXPERIMENT = Method()
PROFILES, settings, run = EXPERIMENT.PROFILES, EXPERIMENT.settings, EXPERIMENT.run


def chapter_images(s: Mapping[str, Any]) -> dict[str, Any]:
    """``{name: ImageItem}``: the scikit-image ``photos`` (label -1), then the first image of
    each of ``sample_classes`` in the ImageNet sample, named by the class asked for."""
    out = dict(zip(s["photos"], image_items("skimage", photos=s["photos"]), strict=True))
    if s["sample_classes"]:
        items = image_items("imagenet_sample", classes=s["sample_classes"])
        out.update(zip(s["sample_classes"], items, strict=True))
    return out


def study_items(s: Mapping[str, Any]) -> list[Any]:
    """The first ``n_images`` of every ``image_stride``-th image of ``data``."""
    return image_items(s["data"], s.get("data_root"), stride=s["image_stride"])[:s["n_images"]]


# -- the study ---------------------------------------------------------------------------
def study_configs(s: Mapping[str, Any], min_size: int) -> list[tuple[str, Any, list[int]]]:
    """``[(study, param, sizes), ...]``: ``max_size`` M (``min, min + step, ..., M``),
    ``steps`` n (:func:`linspace_sizes` up to ``steps_max``), both again as ``*_all`` (every
    size averaged), and ``method``: Grad-CAM, HiResCAM and the single size at ``min``,
    CAMERAS up to ``cameras_max``."""
    step = s["size_step"]
    if min(s["max_sizes"]) < min_size:
        raise ValueError(f"max size {min(s['max_sizes'])} is below the input size {min_size}")
    out = [(st, M, list(range(min_size, M + 1, step))) for st in ("max_size", "max_size_all")
           for M in sorted(s["max_sizes"])]
    out += [(st, n, linspace_sizes(n, min_size, s["steps_max"])) for st in ("steps", "steps_all")
            for n in sorted(s["steps"])]
    out += [("method", p, [min_size]) for p in ("gradcam", "hirescam", "single")]
    return out + [("method", "cameras", list(range(min_size, s["cameras_max"] + 1, step)))]


def study_sizes(s: Mapping[str, Any], min_size: int) -> list[int]:
    """All sizes any configuration needs, sorted (``min_size`` first)."""
    return sorted({v for _, _, sizes in study_configs(s, min_size) for v in sizes})


def study_maps(cam: Cameras, cap: Capture, s: Mapping[str, Any]) -> dict[tuple[str, Any], Tensor]:
    """``{(study, param): (B, H, W) map}`` for every configuration, from one capture."""
    return {(st, p): layer_map(cap, p) if p in ("gradcam", "hirescam") else
            cam.fuse(cap, 0, sizes, keep="all" if st.endswith("_all") else None)
            for st, p, sizes in study_configs(s, cap.sizes[0])}


def study_rows(cam: Cameras, cap: Capture, names: Sequence[str], labels: Sequence[int],
               s: Mapping[str, Any], model: str) -> list[dict[str, Any]]:
    """The rows of one capture's images: per configuration its sizes and :data:`STUDY_METRICS`
    (reference: the study's largest ``param``; for ``method`` the largest max size); per size
    (``size_top1``) ``top1``, ``agree`` (as at the smallest size), ``prob`` (explained class)."""
    configs = study_configs(s, cap.sizes[0])
    maps = {k: m.float().cpu() for k, m in study_maps(cam, cap, s).items()}
    refs = {st: maps[(st, max(p for c, p, _ in configs if c == st))]
            for st in ("max_size", "max_size_all", "steps", "steps_all")}
    refs["method"] = refs["max_size"]
    values, prev = {}, {}
    for st, p, _ in configs:
        m, ref = maps[(st, p)], refs[st]
        values[(st, p)] = {
            "spearman_ref": spearman(m, ref).tolist(),
            "ssim_ref": [ssim(m[b], ref[b]) for b in range(len(names))],
            "spearman_prev": spearman(m, prev[st]).tolist() if st in prev else [None] * len(names),
            "top5_mass": top_mass(m, 0.05, empty=0.05).tolist(),  # all-zero map: as flat
            "entropy": entropy(m, empty=1.0).tolist(),
            "hf_share": high_frequency_share(m, cap.grid(cap.sizes[0])).tolist()}
        if st != "method":
            prev[st] = m
    rows = []
    for b, (name, label) in enumerate(zip(names, labels, strict=True)):
        base = {"model": model, "image": name, "label": label, "target": int(cap.targets[b, 0])}
        for st, p, sizes in configs:
            kept = len(sizes) if st.endswith("_all") else int(cap.kept[[cap.index(v) for v in sizes], b].sum())
            rows.append(dict(base, study=st, param=p, sizes=sizes, n_sizes=len(sizes), n_kept=kept,
                             **{k: v[b] for k, v in values[(st, p)].items()}))
        rows += [dict(base, study="size_top1", param=v, sizes=[v], n_sizes=1, top1=int(cap.top1[i, b]),
                      agree=int(cap.top1[i, b] == cap.top1[0, b]), prob=float(cap.probs[i, b, 0]))
                 for i, v in enumerate(cap.sizes)]
    return rows


# -- summaries ---------------------------------------------------------------------------
#: human headings of the study's columns (for :func:`cameras.plots.table`)
HEADINGS = {"param": "configuration", "images": "images", "spearman_ref": "Spearman vs reference",
            "ssim_ref": "SSIM vs reference", "spearman_prev": "Spearman vs previous", "top5_mass": "top-5 % mass ↑",
            "entropy": "entropy ↓", "hf_share": "power above Nyquist", "n_sizes": "sizes", "n_kept": "sizes kept",
            "size": "input size (px)", "top1_agrees": "top-1 as at the smallest size", "prob_target":
            "probability of the explained class"}
RULES = {"": "Algorithm 1's keep rule", "_all": "every size kept"}


def summarize(df, study: str):
    """Per ``param`` of ``study``: image count, mean of every metric, mean kept sizes."""
    sub = _prep(df, study)
    cols = [c for c in (*STUDY_METRICS, "n_sizes", "n_kept") if c in sub.columns]
    out = sub.groupby("param")[cols].mean()
    out.insert(0, "images", sub.groupby("param")["image"].nunique())
    if study == "method":
        out = out.loc[[p for p in ("gradcam", "hirescam", "single", "cameras") if p in out.index]]
    return out


def top1_agreement(df):
    """Per size: share of images whose top-1 matches the smallest size's, and mean probability."""
    g = _prep(df, "size_top1").groupby("param")
    out = g[["agree", "prob"]].mean().rename(columns={"agree": "top1_agrees", "prob": "prob_target"})
    out.insert(0, "images", g["image"].nunique())
    out.index.name = "size"
    return out


def saturation_size(summary, level: float = 0.99) -> int | None:
    """The first largest size from which one more size keeps the map's Spearman correlation with
    the previous map at ``level`` or more (for every larger size); ``None`` if there is none."""
    prev = summary["spearman_prev"].astype(float)
    ok = [int(p) for p in prev.index[1:] if (prev.loc[p:] >= level).all()]
    return ok[0] if ok else None


def verdict_numbers(results=None) -> dict[str, Any]:
    """The stored offline study for the verdict page (Sec. 3.4's claims; no computation)."""
    df = EXPERIMENT.load(s := settings("offline"), results)
    ms, ss = summarize(df, "max_size"), summarize(df, "steps")
    return {"model": s["model"], "n_images": int(df["image"].nunique()), "saturation_size": saturation_size(ms),
            "max_size_spearman": {int(k): float(v) for k, v in ms["spearman_ref"].items()},
            "steps_spearman": {int(k): float(v) for k, v in ss["spearman_ref"].items()},
            "steps_max": int(s["steps_max"])}


def _prep(df, study):
    """The rows of ``study``, numbers as floats, ``param`` as int (a name for ``method``)."""
    sub = df[df["study"] == study].copy()
    if sub.empty:
        raise ValueError(f"no rows for study {study!r}")
    sub["param"] = sub["param"].astype(str) if study == "method" else sub["param"].astype(float).astype(int)
    cols = [c for c in (*STUDY_METRICS, "n_sizes", "n_kept", "agree", "prob") if c in sub.columns]
    sub[cols] = sub[cols].astype(float)
    return sub


# -- figures -----------------------------------------------------------------------------
def plot_study(df, study: str = "max_size"):
    """One panel per metric of ``study`` (``max_size`` or ``steps``) against its parameter:
    Algorithm 1's keep rule and every size kept; means over images, band: ± s.e.m."""
    cols = {c: HEADINGS[c] for c in STUDY_METRICS}
    d = pd.concat([mean_sem(_prep(df, study + k), "param", cols, rule=rule)
                   for k, rule in RULES.items() if (df["study"] == study + k).any()])
    xlabel = {"max_size": "largest size (px)", "steps": "number of sizes (steps)"}[study]
    return line_chart(d, x="param", y="value", hue="rule", panel="metric", yerr="sem", xlabel=xlabel,
                      ylabel="mean over images", ncols=3, height_px=220, sharey=False)


def plot_top1(df):
    """Per input size: share of images whose top-1 is the one at the smallest size (the sizes
    Algorithm 1 keeps) and the mean probability of the explained class (band: ± s.e.m.)."""
    d = mean_sem(_prep(df, "size_top1"), "param", {"agree": "top-1 as at the smallest size (size kept)",
                                                   "prob": "probability of the explained class"})
    return line_chart(d, x="param", y="value", hue="metric", yerr="sem", xlabel="input size (px)",
                      ylabel="share of images / probability", height_px=260)

r"""Chapter 1 (method): Algorithm 1 step by step, and what the largest size and the steps change.

Jalwana et al., *CAMERAS*, CVPR 2021, Sec. 3 and Algorithm 1. :func:`manual_fusion` forms
:math:`\bar A`, :math:`\bar G` and :math:`\mathrm{ReLU}(\sum_k \bar A_k \bar G_k)` literally from a
:meth:`cameras.Cameras.capture`, the slow way ``Cameras`` must agree with. The study
(:data:`EXPERIMENT`) measures the paper's words (quality saturates near 1000 px, barely changes
between 5 and 10 steps): per image one capture at all sizes, every configuration fused from it
(:meth:`cameras.Cameras.fuse`) with Algorithm 1's keep rule and (``*_all``) every size kept, and
scored by Spearman / SSIM to a reference and to the previous configuration, top-5 % mass,
entropy and power above the Nyquist frequency of the smallest size's grid; per size, whether the
top-1 class is the smallest size's. Rows: ``<results>/method/study_<model>.csv``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from ..core import Cameras, Capture, normalize_maps
from ..data import SKIMAGE_PHOTOS, image_items
from ..engine import Check, Context, Experiment, Unit

__all__ = ["EXPERIMENT", "PROFILES", "KEY", "COLUMNS", "STUDY_METRICS", "settings", "run",
           "chapter_images", "study_items", "layer_map", "top_channels", "manual_fusion",
           "linspace_sizes", "study_configs", "study_sizes", "study_maps", "study_rows",
           "summarize", "top1_agreement", "plot_walk", "plot_fusion", "plot_study", "plot_top1"]

#: the per-map columns of the study rows
STUDY_METRICS = ("spearman_ref", "ssim_ref", "spearman_prev", "top5_mass", "entropy", "hf_share")
KEY: tuple[str, ...] = ("model", "study", "image", "param")
COLUMNS: tuple[str, ...] = KEY + ("label", "target", "sizes", "n_sizes", "n_kept", *STUDY_METRICS,
                                  "top1", "agree", "prob")
_SIZES = list(range(224, 1000, 100))


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

    def units(self, s: Mapping[str, Any]) -> list[Unit]:
        from ..models import get_spec

        items = study_items(s)  # data first: a missing dataset fails before the model loads
        min_size = get_spec(s["model"]).input_size
        bs = s["batch_size"] if s["batch_size"] != "auto" else (8 if torch.cuda.is_available() else 1)
        params = [c[:2] for c in study_configs(s, min_size)]
        params += [("size_top1", v) for v in study_sizes(s, min_size)]
        return [Unit(f"study_{s['model']}.csv", [(s["model"], st, it.name, p) for it in batch
                                                  for st, p in params], s["model"], batch)
                for batch in (items[i:i + bs] for i in range(0, len(items), bs))]

    def meta(self, ctx: Context, file: str) -> dict[str, Any]:
        lm = ctx.model(ctx.settings["model"])
        return {"sizes": study_sizes(ctx.settings, lm.input_size), "layer": lm.layer, "weights": lm.weights}

    def compute(self, ctx: Context, unit: Unit) -> list[dict[str, Any]]:
        s, lm = ctx.settings, ctx.model(unit.model)
        x = torch.stack([lm.preprocess(it.source) for it in unit.data]).to(lm.device)
        cam = Cameras(lm, sizes=study_sizes(s, lm.input_size), progress=False)
        return study_rows(cam, cam.capture(x), [it.name for it in unit.data],
                          [it.label for it in unit.data], s, lm.name)


EXPERIMENT = Method()
PROFILES = EXPERIMENT.PROFILES
settings = EXPERIMENT.settings
run = EXPERIMENT.run


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


# -- Algorithm 1 by hand, and the maps of one capture ------------------------------------
def layer_map(cap: Capture, method: str, size: int | None = None) -> Tensor:
    r"""Grad-CAM (:math:`\alpha_k` = spatial mean of :math:`G_k`, Selvaraju et al. 2017) or
    HiResCAM (:math:`A \odot G`) from a capture at ``size`` (default: the reference), upsampled
    to the input grid and min-max normalised; ``(B, H, W)``."""
    from ..methods.cam import hirescam_map, upsample

    i = cap.index(cap.sizes[0] if size is None else size)
    G = cap.gradients[i][:, 0]
    if method == "gradcam":
        G = G.mean(dim=(2, 3), keepdim=True)
    elif method != "hirescam":
        raise ValueError(f"method must be 'gradcam' or 'hirescam', got {method!r}")
    return normalize_maps(upsample(hirescam_map(cap.activations[i], G), cap.out_shape))


def top_channels(cap: Capture, b: int = 0, k: int = 3, size: int | None = None) -> list[int]:
    r"""The ``k`` channels with the largest contribution :math:`\sum_{ij} A_k G_k` at ``size``."""
    i = cap.index(cap.sizes[0] if size is None else size)
    contrib = (cap.activations[i][b] * cap.gradients[i][b, 0]).sum(dim=(1, 2))
    return [int(c) for c in contrib.topk(k).indices]


def manual_fusion(cap: Capture, b: int = 0, channels: Sequence[int] = (),
                  sizes: Sequence[int] | None = None, chunk: int = 128) -> dict[str, Any]:
    r"""Lines 6-9 of Algorithm 1, literally, for image ``b``: :math:`\bar A`, :math:`\bar G`
    formed on the input grid ``chunk`` channels at a time (weights 1/n over the kept sizes),
    then :math:`\mathrm{ReLU}(\sum_k \bar A_k \bar G_k)`, min-max normalised.

    ``{"map", "raw" (before ReLU), "abar_norm" (channel norm of Ā), "abar"/"gbar" (the
    ``channels`` of Ā, Ḡ), "gbar_rel_std" (largest spatial std of a channel of Ḡ over its mean
    magnitude: 0 for constant gradients), "weights" ({size: w_s})}``.
    """
    from ..methods.cam import upsample

    sizes = list(cap.sizes if sizes is None else sizes)
    idx, w, A0 = [cap.index(s) for s in sizes], cap.weights(sizes)[:, b], cap.activations[0]
    raw = torch.zeros(cap.out_shape, dtype=A0.dtype, device=A0.device)
    energy = torch.zeros_like(raw)
    out: dict[str, Any] = {"abar": {}, "gbar": {}, "gbar_rel_std": 0.0}
    for c0 in range(0, A0.shape[1], chunk):
        c1 = min(A0.shape[1], c0 + chunk)
        abar = sum(w[j] * upsample(cap.activations[i][b, c0:c1], cap.out_shape) for j, i in enumerate(idx))
        gbar = sum(w[j] * upsample(cap.gradients[i][b, 0, c0:c1], cap.out_shape) for j, i in enumerate(idx))
        raw += (abar * gbar).sum(dim=0)
        energy += (abar * abar).sum(dim=0)
        scale = gbar.abs().mean(dim=(1, 2)).clamp_min(torch.finfo(A0.dtype).tiny)
        out["gbar_rel_std"] = max(out["gbar_rel_std"], float((gbar.std(dim=(1, 2)) / scale).max()))
        for c in (c for c in channels if c0 <= c < c1):
            out["abar"][int(c)], out["gbar"][int(c)] = abar[c - c0].clone(), gbar[c - c0].clone()
    return {**out, "map": normalize_maps(raw.clamp_min(0)[None])[0], "raw": raw,
            "abar_norm": energy.sqrt(), "weights": dict(zip(sizes, w.tolist(), strict=True))}


# -- the study ---------------------------------------------------------------------------
def linspace_sizes(n: int, lo: int, hi: int) -> list[int]:
    """``n`` sizes evenly spaced from ``lo`` to ``hi`` (rounded half up): the "number of steps"."""
    if n < 2:
        raise ValueError(f"need at least 2 steps, got {n}")
    return [int(math.floor(lo + i * (hi - lo) / (n - 1) + 0.5)) for i in range(n)]


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
    from ..metrics.similarity import entropy, high_frequency_share, spearman, ssim, top_mass

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
    sub = _prep(df, "size_top1")
    g = sub.groupby("param")
    out = g[["agree", "prob"]].mean().rename(columns={"agree": "top1_agrees", "prob": "prob_target"})
    out.insert(0, "images", g["image"].nunique())
    out.index.name = "size"
    return out


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
def _unit(t: Tensor) -> Tensor:
    return normalize_maps(t.detach().float().cpu()[None])[0]


def plot_walk(lm, cam: Cameras, cap: Capture, b: int = 0, sizes: Sequence[int] | None = None,
              channels: Sequence[int] = (), title: str | None = None):
    """Columns = sizes; rows: the upsampled input (top-1, kept or not), :math:`\\|A_s\\|`
    and two channels of :math:`A_s` on the layer's grid (the gradient of the first in the
    note), and the map of that size alone on the input grid."""
    from ..plots import Panel, map_grid

    if not cap.inputs:
        raise ValueError("plot_walk needs a capture with keep_inputs=True")
    channels = list(channels)[:2] or top_channels(cap, b, 2)
    rows: list[list[Panel]] = [[] for _ in range(3 + len(channels))]
    for v in (cap.sizes if sizes is None else sizes):
        i = cap.index(v)
        x, A, g = cap.inputs[i][b], cap.activations[i][b], cap.gradients[i][b, 0, channels[0]].float()
        kept = "kept" if bool(cap.kept[i, b]) else "dropped"
        rows[0].append(Panel(image=lm.to_image(x), title=f"{v} px",
                             note=f"{lm.classes[int(cap.top1[i, b])][:12]} ({kept})"))
        rows[1].append(Panel(map=_unit(A.norm(dim=0)), note="grid {}x{}".format(*A.shape[-2:])))
        for r, c in enumerate(channels):
            rows[2 + r].append(Panel(map=_unit(A[c]), note="" if r else f"G: {float(g.mean()):.2e} ± {float(g.max() - g.min()):.0e}"))
        rows[-1].append(Panel(map=cam.fuse(cap, 0, [v], keep="all")[b], image=lm.to_image(cap.inputs[0][b])))
    titles = ["input", "‖A_s‖", *(f"A_s, ch. {c}" for c in channels), "size alone"]
    return map_grid(rows, row_titles=titles, title=title,
                    colorbar="normalised per panel (0 = low, 1 = high)")


def plot_fusion(lm, image: Tensor, manual: Mapping[str, Any], cam_map: Tensor, channel: int,
                title: str | None = None):
    """Top: :math:`\\|\\bar A\\|`, one channel of :math:`\\bar A` and of :math:`\\bar G` on the
    input grid; bottom: the literal map, the :class:`cameras.Cameras` map, their difference."""
    from ..plots import Panel, map_grid

    rgb, g = lm.to_image(image), manual["gbar"][channel].float()
    d = (manual["map"] - cam_map).abs().float().cpu()
    rows = [[Panel(map=_unit(manual["abar_norm"]), title="‖Ā‖"),
             Panel(map=_unit(manual["abar"][channel]), title=f"Ā, channel {channel}"),
             Panel(map=_unit(g), title=f"Ḡ, channel {channel}",
                   note=f"{float(g.mean()):.2e} ± {float(g.max() - g.min()):.0e}")],
            [Panel(map=manual["map"], image=rgb, note="ReLU(Σ_k Ā_k Ḡ_k), by hand"),
             Panel(map=cam_map, image=rgb, note="Cameras(...)"),
             Panel(map=d / d.max().clamp_min(1e-30), note=f"|difference| / {float(d.max()):.1e}")]]
    return map_grid(rows, row_titles=["Ā and Ḡ", "maps"], title=title)


def _errorbar(ax, sub, col, **kw):
    g = sub.groupby("param")[col]
    ax.errorbar(g.mean().index, g.mean().values, yerr=g.sem().fillna(0.0).values, marker="o", ms=3, capsize=2, **kw)


def plot_study(df, title: str | None = None):
    """Rows: largest size, number of steps; panels: similarity to the reference and to the
    previous one, top-5 % mass and entropy (↑/↓: higher/lower is sharper), power above Nyquist.
    Solid: Algorithm 1's keep rule, dashed: every size kept; means ± s.e.m. over images."""
    from matplotlib.lines import Line2D

    from ..plots import chart, legend_below

    fig, axes = chart(8, ncols=4, height_px=230)
    rows = [(st, f"{int(_prep(df, st)['param'].max())} {unit}", xlabel) for st, unit, xlabel in
            (("max_size", "px", "largest size (px)"), ("steps", "steps", "number of sizes (steps)"))]
    series = [["spearman_ref", "ssim_ref", "spearman_prev"], ["top5_mass"], ["hf_share"], ["entropy"]]
    names = ["vs ref. {}", "top-5 % mass ↑", "power > Nyquist", "entropy ↓"]
    for r, (study, ref, xlabel) in enumerate(rows):
        for k, ax in enumerate(axes[4 * r:4 * r + 4]):
            for suffix, ls in (("", "-"), ("_all", "--")):
                if (df["study"] == study + suffix).any():
                    for j, col in enumerate(series[k]):
                        _errorbar(ax, _prep(df, study + suffix), col, color=f"C{j + (k and k + 2)}", ls=ls)
            ax.set_xticks(ticks := sorted(_prep(df, study)["param"].unique()))
            ax.tick_params(axis="x", labelrotation=90 if len(ticks) > 6 else 0)
            ax.set(xlabel=xlabel, title=f"({'abcdefgh'[4 * r + k]}) {names[k].format(ref)}")
    handles = [Line2D([], [], color=f"C{i}", marker="o", ms=3) for i in range(3)]
    handles += [Line2D([], [], color="0.3", ls=ls) for ls in ("-", "--")]
    legend_below(fig, handles, ["Spearman vs reference", "SSIM vs reference", "Spearman vs previous",
                                "Algorithm 1's keep rule", "every size kept"], ncol=5)
    fig.suptitle(title or "", wrap=True)
    return fig


def plot_top1(df, title: str | None = None):
    """Per input size: share of images whose top-1 is the one at the smallest size (the sizes
    Algorithm 1 keeps) and the mean probability of the explained class."""
    from ..plots import chart, legend_below

    t1 = _prep(df, "size_top1")
    fig, (ax,) = chart(1, height_px=300)
    _errorbar(ax, t1, "agree", label="top-1 as at the smallest size (kept)")
    _errorbar(ax, t1, "prob", label="probability of the explained class")
    ax.set(xlabel="input size (px)", ylim=(-0.02, 1.02), title=title or "which sizes Algorithm 1 keeps")
    legend_below(fig, axes=[ax])
    return fig

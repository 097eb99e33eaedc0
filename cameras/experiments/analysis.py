r"""What CAMERAS' high-resolution maps say about models: labels, models, look-alike classes.

The paper (Jalwana et al., CVPR 2021) shows in figures how CAMERAS maps articulate "relative
importance of input features for different models" and discriminate "visually similar objects".
**Our protocol, our numbers**, with Grad-CAM from the same capture as contrast: (a) maps of one
image for its top-``k`` classes and label, and of two-object composites (``S x 2S``) for each
half's label; (b) confidence and concentration of the top-1 map per model, label maps of two
models compared; (c) the label's map against look-alike classes' (:data:`LOOKALIKE_GROUPS`). One
:meth:`cameras.Cameras.capture` per batch; sizes :func:`cameras.engine.shifted_sizes`; metrics
(:mod:`cameras.metrics.similarity`) on maps resized to ``compare_size``.
"""

from __future__ import annotations

import math
from collections import namedtuple
from collections.abc import Mapping, Sequence
from itertools import combinations, product
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..core import DEFAULT_SIZES, Cameras, normalize_maps
from ..data import find_class, image_items, imagenet_classes
from ..engine import Check, Context, Experiment, Table, Unit, shifted_sizes
from ..methods.cam import upsample
from ..metrics import MetricInfo, describe, entropy, iou_top, spearman, top_mass

__all__ = ["EXPERIMENT", "PROFILES", "LOOKALIKE_GROUPS", "KEY", "COLUMNS", "settings", "run", "items",
           "composite_pairs", "Maps", "explain", "composite_image", "label_attribution_summary",
           "model_summary", "model_pair_matrix", "confidence_correlation", "lookalike_summary",
           "plot_grid", "plot_difference", "plot_confidence"]

#: Hand-picked groups of visually similar ImageNet classes (:func:`cameras.data.find_class`).
LOOKALIKE_GROUPS: list[list[str]] = [
    ["tabby", "tiger cat", "Egyptian cat"], ["bull mastiff", "boxer"],
    ["Siberian husky", "Eskimo dog", "malamute"], ["African elephant", "Indian elephant", "tusker"],
    ["Norwich terrier", "Norfolk terrier"], ["Cardigan", "Pembroke"],
    ["golden retriever", "Labrador retriever"], ["kuvasz", "Great Pyrenees"],
    ["timber wolf", "white wolf", "coyote"], ["red fox", "kit fox", "grey fox"],
    ["leopard", "jaguar", "cheetah"], ["great white shark", "tiger shark"],
    ["African crocodile", "American alligator"], ["laptop", "notebook"]]
KEY: tuple[str, ...] = ("kind", "model", "method", "image", "target")
COLUMNS: tuple[str, ...] = (*KEY, "label", "class", "rank", "prob", "top1_prob", "top2_prob",
                            "correct", "mass_top", "entropy", "area_half", "zero_map", "ref",
                            "spearman_ref", "iou_ref", "l1_ref", "own_half_mass", "point_own")
describe(MetricInfo("mass_top", "share of map mass in its top pixels", None, (0, 1)))


def _classes(v: Any, key: str) -> list:
    try:
        return [c for c in Check.listof(Check.any)(v, key) if find_class(c) is not None]
    except (ValueError, TypeError) as err:
        raise ValueError(f"{key}: {err}") from None


class Analysis(Experiment):
    name = "analysis"
    tables = {"": Table(KEY, COLUMNS, strings=KEY)}
    base = {
        "data": "imagenet_sample", "classes": None, "n_images": None,
        "models": ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"],
        "methods": ["cameras", "gradcam"], "cameras_sizes": list(DEFAULT_SIZES), "top_k": 3,
        "lookalike_groups": LOOKALIKE_GROUPS,
        "composites": [["tabby", "bull mastiff"], ["Siberian husky", "tabby"]],
        "n_random_composites": 200, "top_fraction": 0.10, "mass_fraction": 0.05,
        "compare_size": 224, "batch_size": 32,
    }
    profiles = {
        "ci": {"models": ["efficientnet_lite0"], "classes": ["tabby", "tiger cat", "bull mastiff"],
               "cameras_sizes": [224, 324, 424], "top_k": 2,
               "lookalike_groups": [["tabby", "tiger cat", "Egyptian cat"], ["bull mastiff", "boxer"]],
               "composites": [["tabby", "bull mastiff"]], "n_random_composites": 0, "batch_size": 4},
        "offline": {},
        # one image per class: 1000 spread over the 50 000 val images sorted by class
        "paper": {"data": "imagenet_val", "models": ["resnet50", "densenet121", "inception_v3"],
                  "n_images": 1000},
    }
    schema = {
        "data": Check.choice("imagenet_sample", "imagenet_val"),
        "classes": lambda v, k: None if v is None else _classes(v, k),
        "n_images": Check.optional_positive,
        "models": lambda v, k: list(dict.fromkeys(Check.listof(Check.model)(v, k))),
        "methods": Check.listof(Check.choice("cameras", "gradcam")),
        "cameras_sizes": Check.listof(Check.size), "top_k": lambda v, k: Check.int(v, k, low=2),
        "lookalike_groups": Check.listof(_classes, empty=True),
        "composites": Check.listof(_classes, empty=True),
        "n_random_composites": Check.natural, "top_fraction": Check.fraction, "mass_fraction": Check.fraction,
        "compare_size": Check.size, "batch_size": Check.positive,
    }
    identity = ("data", "cameras_sizes", "compare_size", "top_fraction", "mass_fraction")

    def validate(self, s: dict[str, Any]) -> None:
        for pair in s["composites"]:
            if len(pair) != 2 or find_class(pair[0]) == find_class(pair[1]):
                raise ValueError(f"a composite is a pair of two different classes, got {pair!r}")
        if min(s["top_fraction"], s["mass_fraction"]) <= 0:
            raise ValueError("top_fraction and mass_fraction must be in (0, 1]")

    def identity_from_meta(self, meta: Mapping[str, Any], file: str) -> dict[str, Any]:
        """Before ``cameras_sizes``: ``sizes`` (None: ``224 + size_step * i``, ``i < n_sizes``)."""
        s = dict(meta["settings"])
        if "cameras_sizes" not in s:
            s["cameras_sizes"] = s["sizes"] or [224 + s["size_step"] * i for i in range(s["n_sizes"])]
        return self.identity_of(s, file)

    def units(self, s: Mapping[str, Any]) -> list[Unit]:
        """Batches of images (every model, then model pairs), then of composites (half as many)."""
        its, alikes = items(s), _lookalikes(s)
        file = "analysis.csv" if s["data"] == "imagenet_sample" else f"analysis_{s['data']}.csv"
        bs, half = s["batch_size"], max(1, s["batch_size"] // 2)
        groups = [("image", its[i : i + bs]) for i in range(0, len(its), bs)]
        comps = composite_pairs(s, its)
        groups += [("composite", comps[i : i + half]) for i in range(0, len(comps), half)]
        return [Unit(file, _keys(kind, g, s, alikes), data=(kind, g)) for kind, g in groups]

    def compute(self, ctx: Context, unit: Unit):
        """The rows of one batch for every model (each image decoded once)."""
        from ..images import load_image

        s, (kind, group) = ctx.settings, unit.data
        pils = [load_image(it.source) for it in group] if kind == "image" else [
            load_image(h.source) for c in group for h in (c.left, c.right)]
        label_maps: dict[tuple[str, str, str], Tensor] = {}
        for model in s["models"]:
            lm = ctx.model(model)
            x = [lm.preprocess(p) for p in pils]
            x = torch.stack(x if kind == "image" else [composite_image(*x[i : i + 2])
                                                         for i in range(0, len(x), 2)])
            yield from _batch_rows(lm, kind, group, x, s, label_maps)
        pairs = combinations(s["models"], 2) if kind == "image" else []
        for (a, b), method in product(pairs, s["methods"]):  # the same image and label, two models
            pm = _pair(*(torch.stack([label_maps[(m, method, it.name)].cpu() for it in group])
                         for m in (a, b)), s)
            for n, it in enumerate(group):
                yield {**_row("model_pair", f"{a}|{b}", method, it.name, "label", it.label, it.label,
                              **{m: v[n] for m, v in pm.items()}), "ref": b}

    def load(self, s: Mapping[str, Any], results=None):
        df = self.rows(s, results)
        names = np.asarray(imagenet_classes(), dtype=object)
        for col in ("label", "class"):
            df.insert(df.columns.get_loc(col) + 1, f"{col}_name", names[df[col].to_numpy(int)])
        return df


EXPERIMENT = Analysis()
PROFILES = EXPERIMENT.PROFILES
settings = EXPERIMENT.settings
run = EXPERIMENT.run


# ---- images, composites, targets -----------------------------------------------------
def items(s: Mapping[str, Any], classes: Sequence[str | int] | None = None):
    """The images of the settings, or the first image of each of ``classes`` in their data."""
    return image_items(s["data"], s.get("data_root"), classes=s["classes"] if classes is None
                       else classes, n=s["n_images"] if classes is None else None)


#: two images side by side, ``left | right``, named ``<left>+<right>``
Composite = namedtuple("Composite", "name left right")


def composite_pairs(s: Mapping[str, Any], images: Sequence[Any]) -> list[Composite]:
    """``composites`` (by class), then ``n_random_composites`` seeded pairs of ``images``."""
    out: dict[str, Composite] = {}

    def add(a, b) -> None:
        out.setdefault(f"{a.name}+{b.name}", Composite(f"{a.name}+{b.name}", a, b))

    for pair in s["composites"]:
        add(*items(s, pair))
    n = s["n_random_composites"]
    rng, tries = np.random.default_rng(s["seed"]), 0
    while n and len(out) < len(s["composites"]) + n and tries < 100 * n:
        tries += 1
        i, j = rng.choice(len(images), size=2, replace=False)
        if images[i].label != images[j].label:
            add(images[i], images[j])
    return list(out.values())


def composite_image(left: Tensor, right: Tensor) -> Tensor:
    """Two ``(3, S, S)`` images side by side as one ``(3, S, 2S)`` image."""
    return torch.cat([left, right], dim=-1)


def _lookalikes(s: Mapping[str, Any]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for group in s["lookalike_groups"]:
        idx = [find_class(c) for c in group]
        for c in idx:
            out[c] = out.get(c, []) + [o for o in idx if o != c and o not in out.get(c, [])]
    return out


def _targets(kind: str, label: int, s: Mapping[str, Any], alikes: Mapping[int, list[int]]) -> list[str]:
    """Target keys: ``top1`` .. ``top<k>``, ``label``, ``alike:<name>`` (composites: ``left``, ``right``)."""
    if kind == "composite":
        return ["left", "right"]
    return ([f"top{r}" for r in range(1, s["top_k"] + 1)] + ["label"]
            + [f"alike:{imagenet_classes()[c]}" for c in alikes.get(label, [])])


def _keys(kind: str, group: Sequence[Any], s: Mapping[str, Any], alikes) -> list[tuple]:
    models = s["models"]
    keys = [(kind, model, method, it.name, t) for model in models for method in s["methods"]
            for it in group for t in _targets(kind, getattr(it, "label", -1), s, alikes)]
    if kind == "image":
        keys += [("model_pair", f"{a}|{b}", method, it.name, "label")
                 for (a, b), method in product(combinations(models, 2), s["methods"]) for it in group]
    return keys


# ---- maps ----------------------------------------------------------------------------
#: :func:`explain`: ``logits`` (B, C), ``targets`` (B, T), maps (B, T, H, W) in [0, 1], ``sizes``
Maps = namedtuple("Maps", "logits targets cameras gradcam sizes")


def explain(lm, images: Sequence[Any] | Tensor, targets: Any, s: Mapping[str, Any],
            methods: Sequence[str] = ("cameras", "gradcam")) -> Maps:
    """Maps of several classes per image of ``lm`` (a :class:`~cameras.models.LoadedModel`) from
    one :meth:`cameras.Cameras.capture`. ``images``: paths / arrays or a ``(B, 3, H, W)`` batch;
    ``targets``: ``k`` (the top-``k``), one list of classes per image, a ``(B, T)`` tensor or a
    function of the reference logits. Sizes: ``cameras_sizes`` shifted to the shorter side."""
    x = images if isinstance(images, Tensor) else torch.stack([lm.preprocess(im) for im in images])
    if isinstance(targets, int) and not isinstance(targets, bool) and targets >= 1:
        k = targets
        targets = lambda logits: logits.topk(k, dim=1).indices  # noqa: E731
    elif not isinstance(targets, Tensor) and not callable(targets):
        targets = torch.tensor([[find_class(c) for c in row] for row in targets], dtype=torch.long)
    cam = Cameras(lm, sizes=shifted_sizes(s["cameras_sizes"], min(x.shape[-2:])), progress=False)
    cap = cam.capture(x.to(lm.device), targets)
    A, G = cap.activations[0], cap.gradients[0]
    gc = torch.stack([normalize_maps(upsample(  # Grad-CAM: the gradient's spatial mean as weights
        (G[:, j].mean(dim=(2, 3), keepdim=True) * A).sum(dim=1).clamp_min(0), cap.out_shape))
        for j in range(cap.targets.shape[1])], dim=1) if "gradcam" in methods else None
    return Maps(cap.logits[0], cap.targets, cam.fuse(cap) if "cameras" in methods else None, gc,
                cap.sizes)


# ---- rows ----------------------------------------------------------------------------
def _f(x: Any) -> Any:
    """A tensor / numpy element or number as a plain value (floats to 5 decimals, NaN stays)."""
    x = x.item() if hasattr(x, "item") else x
    return x if isinstance(x, (bool, int)) else round(float(x), 5)


def _row(kind, model, method, name, target, label, c, **values) -> dict[str, Any]:
    return {**dict.fromkeys(COLUMNS), "kind": kind, "model": model, "method": method, "image": name,
            "target": target, "label": label, "class": c, **{k: _f(v) for k, v in values.items()}}


def _pair(a: Tensor, b: Tensor, s: Mapping[str, Any]) -> dict[str, np.ndarray]:
    out = {"spearman_ref": spearman(a, b), "iou_ref": iou_top(a, b, s["top_fraction"]),
           "l1_ref": (a.double() - b.double()).abs().reshape(a.shape[0], -1).mean(1)}
    return {k: v.cpu().numpy() for k, v in out.items()}


def _per_map(kind: str, grid: Tensor, s: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Concentration of each map (composites: also its mass share on, and maximum in, the left)."""
    flat, half = grid.flatten(1), grid.shape[-1] // 2
    out = {"mass_top": top_mass(grid, s["mass_fraction"]), "entropy": entropy(grid),
           "area_half": (flat >= 0.5).double().mean(1), "zero_map": flat.amax(1) <= 0}
    if kind == "composite":
        mass = grid.double().sum((1, 2))
        out["left"] = torch.where(mass > 0, grid[..., :half].double().sum((1, 2)) / mass.clamp_min(
            1e-300), torch.full_like(mass, math.nan))
        out["max_left"] = flat.argmax(1) % grid.shape[-1] < half
    return {k: v.cpu().numpy() for k, v in out.items()}


def _batch_rows(lm, kind: str, group, x: Tensor, s: Mapping[str, Any], label_maps: dict):
    """The rows of one batch of images or composites on one model; keeps the label maps."""
    cs, alikes, cols, names = s["compare_size"], _lookalikes(s), [], imagenet_classes()
    keys = [_targets(kind, getattr(it, "label", -1), s, alikes) for it in group]

    def choose(logits: Tensor) -> Tensor:  # each key's class (each class once, rows padded)
        top, per = logits.topk(s["top_k"], dim=1).indices.tolist(), []
        for b, it in enumerate(group):
            cls = {k: top[b][int(k[3:]) - 1] if k.startswith("top") else it.label if k == "label"
                   else names.index(k.split(":", 1)[1]) for k in keys[b]}
            per.append(list(dict.fromkeys(cls.values())))
            cols.append({k: per[-1].index(c) for k, c in cls.items()})
        n = max(len(c) for c in per)
        return torch.tensor([c + [c[0]] * (n - len(c)) for c in per], dtype=torch.long)

    if kind == "image":
        t = choose
    else:
        t = torch.tensor([[c.left.label, c.right.label] for c in group], dtype=torch.long)
        cols += [{"left": 0, "right": 1}] * len(group)
    mm = explain(lm, x, t, s, s["methods"])
    probs, targets = mm.logits.float().softmax(1).cpu(), mm.targets.cpu()
    p2 = probs.topk(2, dim=1).values
    for method in s["methods"]:
        maps = getattr(mm, method)
        B, T = maps.shape[:2]
        grid = upsample(maps.flatten(0, 1), (cs, cs * x.shape[-1] // x.shape[-2])).clamp(0, 1)
        per = _per_map(kind, grid, s)
        ref = {"top1": None, "left": None, "right": "left"}  # else: look-alikes vs label, vs top-1
        rows = [(b, k, b * T + cols[b][k], ref.get(k, "label" if k[:6] == "alike:" else "top1"))
                for b in range(B) for k in keys[b]]
        ia, ib = zip(*[(i, i - cols[b][k] + cols[b][r]) for b, k, i, r in rows if r], strict=True)
        pm, n = _pair(grid[list(ia)], grid[list(ib)], s), 0
        for b, it in enumerate(group):
            label_maps[(lm.name, method, it.name)] = grid[b * T + cols[b].get("label", 0)]
        for b, k, i, r in rows:
            c = int(targets[b, cols[b][k]])
            label = group[b].label if kind == "image" else c
            row = _row(kind, lm.name, method, group[b].name, k, label, c,
                       rank=int((probs[b] > probs[b, c]).sum()) + 1, prob=probs[b, c],
                       top1_prob=p2[b, 0], top2_prob=p2[b, 1],
                       **{m: v[i] for m, v in per.items() if m not in ("left", "max_left")})
            row["correct"] = bool(int(probs[b].argmax()) == label) if kind == "image" else None
            if kind == "composite":
                own = k == "left"
                row["own_half_mass"] = _f(per["left"][i] if own else 1 - per["left"][i])
                row["point_own"] = None if per["zero_map"][i] else bool(per["max_left"][i]) == own
            if r is not None:
                row.update(ref=r, **{m: _f(v[n]) for m, v in pm.items()})
                n += 1
            yield row


# ---- summaries -----------------------------------------------------------------------
def _top1(df, method: str | None = None):
    d = df[(df["kind"] == "image") & (df["target"] == "top1")]
    return d if method is None else d[d["method"] == method]


def _summary(d, by: list[str], fn):
    """One row per group of ``d`` by ``by`` (in order of appearance): the keys, then ``fn(group)``."""
    import pandas as pd

    return pd.DataFrame([{**dict(zip(by, k, strict=True)), **fn(g)}
                         for k, g in d.groupby(by, sort=False)])


def label_attribution_summary(df):
    """Per model and method: Spearman and IoU of the top-1 vs top-2 (top-3) maps; on composites,
    the mean share of a label's map mass on its own half and how often its maximum lies there."""
    def f(g):
        (t2, t3), co = (g[g["target"] == t] for t in ("top2", "top3")), g[g["kind"] == "composite"]
        return {"images": int(t2["image"].nunique()), "spearman top1-top2": t2["spearman_ref"].mean(),
                "IoU top1-top2": t2["iou_ref"].mean(), "spearman top1-top3": t3["spearman_ref"].mean(),
                "composites": int(co["image"].nunique()), "own-half mass": co["own_half_mass"].mean(),
                "max in own half": co["point_own"].astype(float).mean()}

    return _summary(df[df["kind"].isin(["image", "composite"])], ["model", "method"], f)


def model_summary(df, method: str = "cameras"):
    """Per model: top-1 accuracy on the images, mean confidence and map concentration (top-1 maps)."""
    return _summary(_top1(df, method), ["model"], lambda g: {
        "method": method, "images": len(g), "top-1 accuracy": g["correct"].astype(float).mean(),
        "mean confidence": g["prob"].mean(), "mass in top pixels": g["mass_top"].mean(),
        "entropy": g["entropy"].mean(), "area >= 0.5": g["area_half"].mean()})


def model_pair_matrix(df, method: str = "cameras", metric: str = "spearman_ref"):
    """Mean similarity of the label maps of every pair of models (symmetric, 1 on the diagonal)."""
    import pandas as pd

    mp = df[(df["kind"] == "model_pair") & (df["method"] == method)].groupby("model", sort=False)
    pairs = {tuple(p.split("|")): v for p, v in mp[metric].mean().items()}
    models = list(dict.fromkeys(m for p in pairs for m in p))
    mat = pd.DataFrame(np.eye(len(models)), index=models, columns=models)
    for (a, b), v in pairs.items():
        mat.loc[a, b] = mat.loc[b, a] = v
    return mat


def confidence_correlation(df, metrics: Sequence[str] = ("mass_top", "entropy")):
    """Per model and method: Spearman correlation over images of the top-1 confidence and the
    concentration of the top-1 map, with its two-sided p-value (NaN with too few images)."""
    from scipy.stats import spearmanr

    def f(g):
        row: dict[str, Any] = {"images": len(g)}
        for m in metrics:
            ok = g[["prob", m]].dropna()
            rho, p = (spearmanr(ok["prob"], ok[m]) if len(ok) >= 3 and ok["prob"].nunique() > 1
                      and ok[m].nunique() > 1 else (np.nan, np.nan))
            row.update({f"rho(confidence, {m})": float(rho), f"p ({m})": float(p)})
        return row

    return _summary(_top1(df), ["model", "method"], f)


def lookalike_summary(df):
    """Per model and method: the label's map vs each look-alike's (Spearman, IoU, mean
    |difference|) and the median ratio of the look-alike's to the label's probability."""
    def f(g):
        al = g[g["target"].str.startswith("alike:")]
        label_prob = al["image"].map(g[g["target"] == "label"].set_index("image")["prob"])
        return {"pairs": len(al), "spearman label-alike": al["spearman_ref"].mean(),
                "IoU label-alike": al["iou_ref"].mean(), "mean |difference|": al["l1_ref"].mean(),
                "look-alike prob / label prob": (al["prob"] / label_prob.to_numpy()).median()}

    return _summary(df[df["kind"] == "image"], ["model", "method"], f)


# ---- figures -------------------------------------------------------------------------
def plot_grid(images: Sequence[Any], maps: Sequence[Sequence[Any]], notes: Sequence[Sequence[str]]
              | None = None, row_titles: Sequence[str] | None = None, title: str | None = None):
    """One row per image: the image, then its maps over it with a note under each."""
    from ..plots import Panel, map_grid

    rows = [[Panel(image=im, title="image")]
            + [Panel(map=m, image=im, note=notes[r][j] if notes else "") for j, m in enumerate(row)]
            for r, (im, row) in enumerate(zip(images, maps, strict=True))]
    return map_grid(rows, row_titles=row_titles, title=title)


def plot_difference(image, maps: Sequence[Any], notes: Sequence[str], diff_title: str | None = None):
    """The image, the maps of two or more classes, and ``maps[0] - maps[1]`` over the image in
    gray on a symmetric scale (red: the first class's map is higher, blue: the second's)."""
    from ..viz import as_map, as_rgb_uint8

    rgb = as_rgb_uint8(image)
    d = as_map(maps[0], rgb.shape[:2]).astype(np.float64) - as_map(maps[1], rgb.shape[:2])
    fig = plot_grid([rgb], [[*maps, None]], [[*notes, diff_title or f"{notes[0]} minus {notes[1]}"]])
    ax, v = fig.axes[len(maps) + 1], max(float(np.abs(d).max()), 1e-3)
    ax.images[0].set_data(np.repeat(rgb.mean(-1, keepdims=True), 3, -1).astype(np.uint8))
    im = ax.imshow(d, cmap="RdBu_r", vmin=-v, vmax=v, alpha=0.85)
    fig.colorbar(im, cax=ax.inset_axes([1.04, 0, 0.06, 1], in_layout=False), label="difference")
    return fig


def plot_confidence(df, metric: str = "mass_top", method: str = "cameras"):
    """Top-1 confidence against the concentration of the top-1 map, one panel per model."""
    from ..plots import chart, heading, legend_below, model_label

    t1 = _top1(df, method)
    models = list(dict.fromkeys(t1["model"]))
    if not models:
        raise ValueError(f"no top-1 rows for method {method!r}")
    fig, axes = chart(len(models), sharey=True)
    for ax, model in zip(axes, models, strict=True):
        g = t1[t1["model"] == model]
        ok = g["correct"].astype(bool)
        ax.scatter(g.loc[ok, "prob"], g.loc[ok, metric], s=6, alpha=0.5, label="top-1 correct")
        ax.scatter(g.loc[~ok, "prob"], g.loc[~ok, metric], s=6, alpha=0.5, label="top-1 wrong")
        ax.set(title=model_label(model), xlabel="top-1 softmax confidence")
    axes[0].set_ylabel(heading(metric))
    legend_below(fig, axes=axes)
    return fig

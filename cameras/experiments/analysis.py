r"""CAMERAS for analysis (Jalwana et al., CVPR 2021, Sec. 5): the paper's three cases.

**Fig. 3** (label attribution; the paper: Inception ties *chocolate sauce* to the spoon,
extremal perturbation needs 8 % and 9 % of the image): the sample's chocolate-sauce image and
its utensil's class (*spatula*), both classes' maps by CAMERAS, Grad-CAM and extremal
perturbation, their overlap, and the area each method needs (the smallest share of its
top-ranked pixels, on a blurred canvas, that keeps the class's full-image probability).
**Fig. 4** (similar attention on fine-grained features, similar confidence): per image and
model pair, the similarity of the label maps (IoU of the top ``top_fraction`` pixels;
Spearman) against the gap of the label's probabilities, correlated over ``n_images``.
**Fig. 5** (chain-link fence vs swing): both classes' maps on each image, and how different.

One :meth:`cameras.Cameras.capture` per batch and model explains ``top1``, ``label`` and a
case's ``class:<name>``; Grad-CAM from the same capture at the reference size; CAMERAS keeps
a size only if its top-1 is the reference top-1 (Algorithm 1, ``keep``; ``sizes_kept``).
Case maps and Fig. 3's curves are stored 8-bit under ``<results>/analysis/maps/cases``.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Mapping, Sequence
from itertools import combinations, product
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..core import DEFAULT_SIZES, KEEP_RULES, Cameras
from ..data import find_class, image_items, imagenet_classes
from ..engine import Check, Context, Experiment, MapStore, Table, Unit, chunks, shifted_sizes
from ..methods.cam import capture_map, upsample
from ..metrics import MetricInfo, describe, entropy, iou_top, spearman, top_mass

__all__ = ["EXPERIMENT", "PROFILES", "KEY", "COLUMNS", "settings", "run", "items", "case_items", "Maps", "explain",
           "case_maps", "model_summary", "fig3_summary", "area_curves", "fig4_points", "fig4_correlation",
           "fig5_summary", "verdict_numbers", "plot_case", "plot_area", "plot_fig4"]

KEY: tuple[str, ...] = ("kind", "model", "method", "image", "target")
COLUMNS: tuple[str, ...] = (*KEY, "label", "class", "rank", "prob", "top1_prob", "top2_prob", "correct",
                            "mass_top", "entropy", "area_half", "zero_map", "ref", "spearman_ref", "iou_ref", "l1_ref",
                            "own_half_mass", "point_own", "sizes_kept")  # own_half_mass, point_own: old Grad-CAM rows
describe(MetricInfo("mass_top", "share of map mass in its top pixels", None, (0, 1)))
describe(MetricInfo("iou_ref", "IoU of the top 10 % pixels", None, (0, 1)))
describe(MetricInfo("spearman_ref", "Spearman correlation of the maps", None, (-1, 1)))
EXTREMAL = "extremal_perturbation"


def _classes(v: Any, key: str) -> list:
    try:
        return [c for c in Check.listof(Check.any)(v, key) if find_class(c) is not None]
    except (ValueError, TypeError) as err:
        raise ValueError(f"{key}: {err}") from None


def _cases(v: Any, key: str) -> dict[str, dict[str, list]]:
    for name, c in Check.mapping(v, key).items():
        if not isinstance(c, Mapping) or set(c) != {"images", "classes"} or len(c["classes"]) != 2:
            raise ValueError(f"{key}[{name!r}] must be {{'images': [...], 'classes': [two classes]}}")
    return {n: {k: _classes(c[k], f"{key}[{n!r}]") for k in ("images", "classes")} for n, c in v.items()}


class Analysis(Experiment):
    name = "analysis"
    tables = {"": Table(KEY, COLUMNS, strings=KEY)}
    base = {
        "data": "imagenet_sample", "classes": None, "n_images": 16,
        "models": ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"],
        "methods": ["cameras", "gradcam"], "cameras_sizes": list(DEFAULT_SIZES), "keep": "prediction",
        "cases": {"fig3": {"images": ["chocolate sauce"], "classes": ["chocolate sauce", "spatula"]},
                  "fig5": {"images": ["chainlink fence", "swing"], "classes": ["chainlink fence", "swing"]}},
        # extremal perturbation (Fig. 3 only): the paper's areas; 300 of TorchRay's 800 iterations
        # and Lite0 only on the shared 2-core CPU (~25 min per class); a GPU run: all models, 800
        "extremal_models": ["efficientnet_lite0"], "extremal": {"areas": [0.08, 0.09], "max_iter": 300},
        "area_steps": 100, "top_fraction": 0.10, "mass_fraction": 0.05, "compare_size": 224, "batch_size": 8,
    }
    profiles = {
        "ci": {"models": ["efficientnet_lite0"], "classes": ["tabby", "bull mastiff"], "n_images": None,
               "cameras_sizes": [224, 324, 424], "extremal": {"areas": [0.08], "max_iter": 3},
               "area_steps": 10, "batch_size": 4},
        "offline": {},
        "paper": {"data": "imagenet_val", "models": ["resnet50", "densenet121", "inception_v3"], "n_images": 200,
                  "extremal_models": ["resnet50", "densenet121", "inception_v3"], "extremal": {"areas": [0.08, 0.09], "max_iter": 800}},
    }
    schema = {
        "data": Check.choice("imagenet_sample", "imagenet_val"),
        "classes": lambda v, k: None if v is None else _classes(v, k), "n_images": Check.optional_positive,
        "models": lambda v, k: list(dict.fromkeys(Check.listof(Check.model)(v, k))),
        "methods": Check.listof(Check.choice("cameras", "gradcam")), "cameras_sizes": Check.listof(Check.size),
        "keep": Check.choice(*KEEP_RULES), "cases": _cases,
        "extremal_models": Check.listof(Check.model, empty=True), "extremal": Check.mapping,
        "area_steps": Check.positive, "top_fraction": Check.fraction, "mass_fraction": Check.fraction,
        "compare_size": Check.size, "batch_size": Check.positive,
    }
    identity = ("data", "cameras_sizes", "compare_size", "top_fraction", "mass_fraction", "area_steps")

    def validate(self, s: dict[str, Any]) -> None:
        if min(s["top_fraction"], s["mass_fraction"]) <= 0:
            raise ValueError("top_fraction and mass_fraction must be in (0, 1]")
        self.identity_of(s, "")  # extremal perturbation's settings, with a clear error

    def identity_of(self, s: Mapping[str, Any], file: str) -> dict[str, Any]:
        """The settings that define the rows, and each method's (CAMERAS' keep rule)."""
        from ..methods import method_settings

        layer = "the model's default (default_layers(model)['cameras'])"
        return {**super().identity_of(s, file), "methods": {
            "cameras": {"keep": s["keep"], "layer": layer, "sizes": "cameras_sizes from the input size"},
            "gradcam": {"layer": layer, "size": "the reference size of the CAMERAS capture"},
            EXTREMAL: method_settings(EXTREMAL, **s["extremal"])}}

    def units(self, s: Mapping[str, Any]) -> list[Unit]:
        """One unit per case image, then batches of the Fig. 4 images (every model, then model pairs)."""
        cases = [it for its in case_items(s).values() for it in its]
        its = [it for it in items(s) if it.name not in {c.name for c in cases}]
        file = "analysis.csv" if s["data"] == "imagenet_sample" else f"analysis_{s['data']}.csv"
        groups = [("case", [it]) for it in dict((c.name, c) for c in cases).values()]
        groups += [("image", g) for g in chunks(its, s["batch_size"])]
        return [Unit(file, _keys(kind, g, s), data=(kind, g)) for kind, g in groups]

    def pending(self, s: Mapping[str, Any], folder, units: Sequence[Unit]) -> list[Unit]:
        """Also the case units whose maps are missing from the map store."""
        todo, store = {id(u) for u in super().pending(s, folder, units)}, MapStore(folder / "maps")
        return [u for u in units if id(u) in todo or u.data[0] == "case" and not store.read("cases", u.data[1][0].name)]

    def compute(self, ctx: Context, unit: Unit):
        """The rows of one batch for every model (each image decoded once)."""
        from ..images import load_image

        s, (kind, group) = ctx.settings, unit.data
        pils = [load_image(it.source) for it in group]
        label_maps: dict[tuple[str, str, str], Tensor] = {}
        for model in s["models"]:
            lm = ctx.model(model)
            x = torch.stack([lm.preprocess(p) for p in pils])
            yield from _batch_rows(ctx, lm, kind, group, x, s, label_maps)
        pairs = combinations(s["models"], 2) if kind == "image" else []
        for (a, b), method in product(pairs, s["methods"]):  # the same image and label, two models
            pm = _pair(*(torch.stack([label_maps[(m, method, it.name)].cpu() for it in group])
                         for m in (a, b)), s)
            for n, it in enumerate(group):
                yield {**_row("model_pair", f"{a}|{b}", method, it.name, "label", it.label, it.label,
                              **{m: v[n] for m, v in pm.items()}), "ref": b}

    def load(self, s: Mapping[str, Any], results=None):
        df, names = self.rows(s, results), np.asarray(imagenet_classes(), dtype=object)
        for col in ("label", "class"):
            df.insert(df.columns.get_loc(col) + 1, f"{col}_name", names[df[col].to_numpy(int)])
        return df


EXPERIMENT = Analysis()
PROFILES, settings, run = EXPERIMENT.PROFILES, EXPERIMENT.settings, EXPERIMENT.run


def items(s: Mapping[str, Any], classes: Sequence[str | int] | None = None):
    """The Fig. 4 images of the settings, or the first image of each of ``classes``."""
    return image_items(s["data"], s.get("data_root"), classes=s["classes"] if classes is None
                       else classes, n=s["n_images"] if classes is None and not s["classes"] else None)


def case_items(s: Mapping[str, Any]) -> dict[str, list]:
    """``{case: [images]}``: the first image of each of a case's ``images`` classes."""
    return {k: items(s, c["images"]) for k, c in s["cases"].items()}


def _case_classes(s: Mapping[str, Any], label: int) -> tuple[str | None, list[int]]:
    return next(((k, [find_class(i) for i in c["classes"]]) for k, c in s["cases"].items()
                 if label in [find_class(i) for i in c["images"]]), (None, []))


def _targets(s: Mapping[str, Any], kind: str, label: int) -> list[str]:
    """Target keys: ``top1``, ``label`` and, on a case image, ``class:<name>`` of its other class."""
    return ["top1", "label"] + [f"class:{imagenet_classes()[c]}" for c in (_case_classes(s, label)[1] if kind == "case"
                                                                           else []) if c != label]


def _keys(kind: str, group: Sequence[Any], s: Mapping[str, Any]) -> list[tuple]:
    keys = []
    for model, it in product(s["models"], group):
        ms = list(s["methods"]) + ([EXTREMAL] if kind == "case" and model in s["extremal_models"]
                                   and _case_classes(s, it.label)[0] == "fig3" else [])
        keys += [(kind, model, m, it.name, t) for m in ms for t in _targets(s, kind, it.label)]
    if kind == "image":
        keys += [("model_pair", f"{a}|{b}", method, it.name, "label")
                 for (a, b), method in product(combinations(s["models"], 2), s["methods"]) for it in group]
    return keys


#: :func:`explain`: logits (B, C), targets (B, T), maps (B, T, H, W) in [0, 1], sizes, kept (B,) sizes per image
Maps = namedtuple("Maps", "logits targets cameras gradcam sizes kept")


def explain(lm, images: Sequence[Any] | Tensor, targets: Any, s: Mapping[str, Any],
            methods: Sequence[str] = ("cameras", "gradcam")) -> Maps:
    """Maps of several classes per image of ``lm`` (a :class:`~cameras.models.LoadedModel`) from
    one :meth:`cameras.Cameras.capture`: ``images`` ``(B, 3, H, W)`` or paths, ``targets`` a
    ``(B, T)`` tensor or a function of the reference logits; sizes ``cameras_sizes`` shifted to
    the shorter side, keep rule ``s["keep"]`` (default Algorithm 1's ``"prediction"``)."""
    x = images if isinstance(images, Tensor) else torch.stack([lm.preprocess(im) for im in images])
    cam = Cameras(lm, sizes=shifted_sizes(s["cameras_sizes"], min(x.shape[-2:])), progress=False,
                  keep=s.get("keep", "prediction"))
    cap = cam.capture(x.to(lm.device), targets)
    gc = torch.stack([capture_map(cap, "gradcam", target=j) for j in range(cap.targets.shape[1])],
                     dim=1) if "gradcam" in methods else None
    return Maps(cap.logits[0], cap.targets, cam.fuse(cap) if "cameras" in methods else None, gc,
                cap.sizes, cap.kept.sum(dim=0))


def _f(x: Any) -> Any:
    x = x.item() if hasattr(x, "item") else x  # a plain value: floats to 5 decimals, NaN stays
    return x if isinstance(x, (bool, int)) else round(float(x), 5)


def _row(kind, model, method, name, target, label, c, **values) -> dict[str, Any]:
    return {**dict.fromkeys(COLUMNS), "kind": kind, "model": model, "method": method, "image": name,
            "target": target, "label": label, "class": c, **{k: _f(v) for k, v in values.items()}}


def _pair(a: Tensor, b: Tensor, s: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {k: v.cpu().numpy() for k, v in {"spearman_ref": spearman(a, b), "iou_ref": iou_top(
        a, b, s["top_fraction"]), "l1_ref": (a.double() - b.double()).abs().flatten(1).mean(1)}.items()}


def _per_map(grid: Tensor, s: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {k: v.cpu().numpy() for k, v in {"mass_top": top_mass(grid, s["mass_fraction"]), "entropy": entropy(
        grid), "area_half": (grid.flatten(1) >= 0.5).double().mean(1), "zero_map": grid.flatten(1).amax(1) <= 0}.items()}


def _chooser(group, keys: list[list[str]]):
    """``(targets(logits) -> (B, T), cols)``: each key's class, each class once; ``cols[b]``
    maps image ``b``'s keys to their column (filled when the capture calls it)."""
    cols: list[dict[str, int]] = []

    def choose(logits: Tensor) -> Tensor:
        top = logits.argmax(dim=1).tolist()
        per = []
        for b, it in enumerate(group):
            cls = {k: top[b] if k == "top1" else it.label if k == "label" else find_class(k[6:])
                   for k in keys[b]}
            per.append(list(dict.fromkeys(cls.values())))
            cols.append({k: per[-1].index(c) for k, c in cls.items()})
        n = max(len(c) for c in per)
        return torch.tensor([c + [c[0]] * (n - len(c)) for c in per], dtype=torch.long)

    return choose, cols


def _batch_rows(ctx: Context, lm, kind: str, group, x: Tensor, s: Mapping[str, Any], label_maps: dict):
    """The rows of one batch on one model; keeps the label maps; stores a case image's maps."""
    cs = s["compare_size"]
    keys = [_targets(s, kind, it.label) for it in group]
    choose, cols = _chooser(group, keys)
    mm = explain(lm, x, choose, s, s["methods"])
    probs, targets = mm.logits.float().softmax(1).cpu(), mm.targets.cpu()
    p2 = probs.topk(2, dim=1).values
    maps = {m: getattr(mm, m) for m in s["methods"]}
    if kind == "case" and lm.name in s["extremal_models"] and _case_classes(s, group[0].label)[0] == "fig3":
        from ..methods import saliency

        ep = saliency(EXTREMAL, lm.model, x.repeat_interleave(targets.shape[1], 0).to(lm.device), targets.reshape(-1),
                      **s["extremal"])  # extremal perturbation, one optimisation per class
        maps[EXTREMAL] = ep.reshape(*targets.shape, *ep.shape[-2:])
    if kind == "case":
        _store_case(ctx, lm, group[0], x, maps, targets, s)
    for method, mp in maps.items():
        B, T = mp.shape[:2]
        grid = upsample(mp.flatten(0, 1).float(), (cs, cs * x.shape[-1] // x.shape[-2])).clamp(0, 1)
        per = _per_map(grid, s)
        rows = [(b, k, b * T + cols[b][k], "label" if k.startswith("class:") else "top1" if k == "label"
                 else None) for b in range(B) for k in keys[b]]
        ia, ib = zip(*[(i, i - cols[b][k] + cols[b][r]) for b, k, i, r in rows if r], strict=True)
        pm, n = _pair(grid[list(ia)], grid[list(ib)], s), 0
        for b, it in enumerate(group):
            label_maps[(lm.name, method, it.name)] = grid[b * T + cols[b]["label"]]
        for b, k, i, r in rows:
            c = int(targets[b, cols[b][k]])
            row = _row(kind, lm.name, method, group[b].name, k, group[b].label, c,
                       rank=int((probs[b] > probs[b, c]).sum()) + 1, prob=probs[b, c], top1_prob=p2[b, 0],
                       top2_prob=p2[b, 1], correct=bool(int(probs[b].argmax()) == group[b].label),
                       **{m: v[i] for m, v in per.items()})
            row["sizes_kept"] = int(mm.kept[b]) if method == "cameras" else None
            if r is not None:
                row.update(ref=r, **{m: _f(v[n]) for m, v in pm.items()})
                n += 1
            yield row


def _store_case(ctx: Context, lm, it, x: Tensor, maps: dict, targets: Tensor, s: Mapping[str, Any]) -> None:
    """A case image's crop, maps and (Fig. 3) insertion curves of each class, in the map store."""
    from ..metrics import insertion_deletion

    out = {f"{lm.name}|image": lm.to_image(x[0])}
    for method, mp in maps.items():
        for j, c in enumerate(targets[0].tolist()):
            out[f"{lm.name}|{method}|{c}"] = MapStore.quantise(mp[0, j])
        if _case_classes(s, it.label)[0] == "fig3":
            _, curves = insertion_deletion(lm.model, x.repeat(mp.shape[1], 1, 1, 1).to(lm.device), mp[0],
                                           targets[0], "insertion", mean=lm.mean, std=lm.std,
                                           n_steps=s["area_steps"], substrate="blur", batch_size=64)
            out.update({f"{lm.name}|{method}|{c}|curve": curves[j].numpy()
                        for j, c in enumerate(targets[0].tolist())})
    ctx.maps.update(("cases", it.name), out)


def case_maps(s: Mapping[str, Any], case: str, results=None) -> dict[str, dict[str, np.ndarray]]:
    """``{image name: {"<model>|image" | "<model>|<method>|<class>"[|curve]: array}}`` of a case."""
    store = MapStore(EXPERIMENT.folder(s, results) / "maps")
    return {it.name: store.read("cases", it.name) for it in case_items(s)[case]}


def model_summary(df, method: str = "cameras"):
    """Per model (Fig. 4 images, top-1 maps): accuracy, confidence, map concentration, sizes kept."""
    import pandas as pd

    t1 = df[(df["kind"] == "image") & (df["target"] == "top1") & (df["method"] == method)]
    return pd.DataFrame([{"model": m, "images": len(g), "top-1 accuracy": g["correct"].astype(float).mean(), "mean "
                          "confidence": g["prob"].mean(), "mass in top pixels": g["mass_top"].mean(), "sizes kept":
                          g["sizes_kept"].mean()} for m, g in t1.groupby("model", sort=False)])


def _rho(v: np.ndarray) -> float:
    from scipy.stats import spearmanr

    x, y = v[:, 0::2].ravel(), v[:, 1::2].ravel()
    ok = np.isfinite(x) & np.isfinite(y)
    return float(spearmanr(x[ok], y[ok])[0]) if ok.sum() >= 3 and np.ptp(x[ok]) and np.ptp(y[ok]) else np.nan


def area_curves(s: Mapping[str, Any], results=None):
    """Fig. 3's curves, tidy: model, method, class, share of top pixels kept (%), the class's
    probability there and relative to the full image (``ratio``)."""
    import pandas as pd

    return pd.DataFrame([{"model": k.split("|")[0], "method": k.split("|")[1], "class": imagenet_classes()[int(
        k.split("|")[2])], "share": a, "prob": p, "ratio": p / v[-1]} for doc in case_maps(s, "fig3", results).values()
        for k, v in doc.items() if k.endswith("|curve") for a, p in zip(np.linspace(0, 100, len(v)), v, strict=True)])


def fig3_summary(df, s: Mapping[str, Any], results=None):
    """Per model, method and class of Fig. 3: probability, rank, area needed (%: the smallest share of top
    pixels whose probability reaches the full image's), overlap (IoU, Spearman) of the two classes' maps."""
    need = {k: float(g.loc[g["ratio"] >= 1, "share"].min())
            for k, g in area_curves(s, results).groupby(["model", "method", "class"])}
    d = df[(df["kind"] == "case") & (df["image"] == case_items(s)["fig3"][0].name)].copy()
    d["area_needed"] = [need.get((r.model, r.method, r.class_name), np.nan) for r in d.itertuples()]
    pair = d[d["target"].str.startswith("class:")].set_index(["model", "method"])[["iou_ref", "spearman_ref"]]
    d = d[d["target"] != "top1"].join(pair, on=["model", "method"], rsuffix="_pair")
    return d[["model", "method", "class_name", "prob", "rank", "area_needed", "iou_ref_pair",
              "spearman_ref_pair", "sizes_kept"]].rename(columns={"iou_ref_pair": "iou", "spearman_ref_pair": "spearman"})


def fig4_points(df, method: str = "cameras"):
    """Per Fig. 4 image and model pair: the two label maps' similarity and the confidence gap."""
    lab = df[(df["kind"] == "image") & (df["target"] == "label") & (df["method"] == method)]
    p = lab.set_index(["model", "image"])["prob"]
    mp = df[(df["kind"] == "model_pair") & (df["method"] == method)].copy()
    a, b = mp["model"].str.split("|").str[0], mp["model"].str.split("|").str[1]
    mp["gap"] = [abs(p[(i, n)] - p[(j, n)]) for i, j, n in zip(a, b, mp["image"], strict=True)]
    return mp.rename(columns={"model": "pair", "iou_ref": "iou", "spearman_ref": "spearman"})[
        ["pair", "method", "image", "iou", "spearman", "gap"]]


def fig4_correlation(df, method: str = "cameras", measure: str = "iou") -> dict[str, Any]:
    """Spearman correlation over (image, model pair) of map similarity and confidence gap, with a
    95 % bootstrap interval that resamples images (an image's pairs together)."""
    from ..metrics import bootstrap_ci

    pts = fig4_points(df, method)
    w = pts.pivot(index="image", columns="pair", values=[measure, "gap"]) if len(pts) else None
    v = np.stack([w[(c, p)].to_numpy(float) for p in w[measure].columns for c in (measure, "gap")], 1) if len(
        pts) else np.empty((0, 2))
    lo, hi = bootstrap_ci(v, _rho)
    return {"r": _rho(v), "lo": lo, "hi": hi, "n": len(v), "pairs": len(pts), "measure": measure, "method": method}


def fig5_summary(df, s: Mapping[str, Any]):
    """Per Fig. 5 image, model and method: both classes' probabilities and their maps' similarity."""
    names = [it.name for it in case_items(s)["fig5"]]
    d = df[(df["kind"] == "case") & df["image"].isin(names)]
    other = d[d["target"].str.startswith("class:")].set_index(["model", "method", "image"])
    lab = d[d["target"] == "label"].set_index(["model", "method", "image"])
    return other[["class_name", "prob", "spearman_ref", "iou_ref"]].join(
        lab[["label_name", "prob"]], rsuffix="_label").reset_index()


def verdict_numbers(results=None, profile: str = "offline") -> dict[str, Any]:
    """The numbers of the paper's three cases from the stored ``profile`` results (no computation):
    ``fig3`` (per model and method, for the label: area needed %, probability, IoU of the two
    classes' maps), ``fig4`` (correlation ``r`` [``lo``, ``hi``] over ``n`` images), ``fig5``
    (per model: mean Spearman / IoU of the two classes' maps per method)."""
    from ..paper import STATED

    s = settings(profile)
    df = EXPERIMENT.load(s, results)
    f3, f5, label = fig3_summary(df, s, results), fig5_summary(df, s), s["cases"]["fig3"]["classes"][0]
    f3 = f3[f3["class_name"] == imagenet_classes()[find_class(label)]]
    return {"profile": profile, "models": list(s["models"]), "fig3": {
        "models": {m: {r.method: {"area_needed": r.area_needed, "prob": r.prob, "iou_classes": r.iou}
                       for r in g.itertuples()} for m, g in f3.groupby("model", sort=False)},
        "paper_extremal_area": [round(100 * a) for a in STATED["fig3_extremal_areas"]["value"]],
        "classes": s["cases"]["fig3"]["classes"], "extremal_models": s["extremal_models"], "extremal": s["extremal"]},
        "fig4": {**fig4_correlation(df, "cameras", "iou"), "gradcam": fig4_correlation(df, "gradcam", "iou"),
                 "spearman": fig4_correlation(df, "cameras", "spearman")},
        "fig5": {m: {"n_images": int(g["image"].nunique()), **{f"{meth}{suffix}": float(g[g["method"] == meth][col].mean())
                                                                for meth in s["methods"] for suffix, col in (
                                                                    ("", "spearman_ref"), ("_iou", "iou_ref"))}}
                 for m, g in f5.groupby("model", sort=False)}}


def plot_case(doc: Mapping[str, np.ndarray], rows: Sequence[Sequence[tuple]], row_titles: Sequence[str],
              notes: Mapping[tuple, str] | None = None, classes: bool = True):
    """Stored maps of a case image (:func:`case_maps`): ``rows`` of ``(model, method, class)`` panels
    (``(model,)``: the model's crop; ``classes``: class names in the titles); a map not computed
    is a "not run on this CPU" panel."""
    from ..plots import Panel, map_grid, method_label

    def panel(model, method=None, c=None):
        if method is None:
            return Panel(image=doc[f"{model}|image"], title="image")
        m, title = doc.get(f"{model}|{method}|{c}"), method_label(method, short=True)
        title += f": {imagenet_classes()[c]}" if classes else ""
        if m is None:
            return Panel(title=title, note="not run on this CPU")
        return Panel(map=MapStore.dequantise(m), image=doc[f"{model}|image"], title=title,
                     note=(notes or {}).get((model, method, c), ""))

    return map_grid([[panel(*p) for p in row] for row in rows], row_titles=row_titles)


def plot_area(curves, cls: str):
    """Fig. 3: the class's probability / the full image's, top-ranked pixels kept on a blurred canvas."""
    from ..plots import line_chart

    d = curves[(curves["class"] == cls) & (curves["share"] > 0)]
    return line_chart(d, x="share", y="ratio", hue="method", panel="model", logx=True, ref=1.0,
                      xlabel="top-ranked pixels kept (%)", ylabel="probability / full image's")


def plot_fig4(points, measure: str = "iou"):
    """Fig. 4's test: per image and model pair, map similarity against the confidence gap."""
    from ..plots import scatter_chart

    return scatter_chart(points, x=measure, y="gap", hue="pair", panel="method", ylabel="confidence gap")

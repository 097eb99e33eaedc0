r"""Qualitative comparison of saliency methods: the analogue of Fig. 2 of the CAMERAS paper.

Fig. 2 of Jalwana et al. (CVPR 2021) shows the maps of the methods of its comparison on
ImageNet images of nine classes (:data:`PAPER_CLASSES`). :func:`run` computes, for the
ImageNet-sample image of each class at the model's native crop and its true class, the map of
every method of ``methods`` at its default layer (CAMERAS at the paper's zoom factors
``s / 224`` of the native side, :func:`cameras.engine.zoomed_sizes`, with Algorithm 1's keep
rule; the sizes it keeps are in ``sizes_kept``); a method that cannot run records why
(``status``). Files: a CSV per model (a row per (method, image)) whose identity holds every
method's full settings and layer, and the 8-bit maps in ``maps/<model>/<method>.npz``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

from ..data import find_class, image_items, imagenet_classes
from ..engine import Check, Context, Experiment, MapStore, Unit
from ..images import load_image
from ..methods import PAPER_METHODS, default_layers, info, method_settings, saliency, settings_json
from ..models import get_spec
from ..plots import method_label, model_label, overlay_grid
from ..runs import read_results
from . import pointing as _pt
from ._common import methods_for

__all__ = ["EXPERIMENT", "PROFILES", "PAPER_CLASSES", "settings", "run", "items", "methods_for", "load_maps",
           "display_image", "plot_maps", "status_table", "timing_table", "area_table", "kept_table",
           "verdict_numbers"]

#: The classes of the paper's Fig. 2, as ImageNet class names (:func:`cameras.data.find_class`).
PAPER_CLASSES: list[str] = ["loudspeaker", "mountain tent", "bulbul", "accordion", "shopping basket",
                             "volleyball", "spotlight", "Loafer", "hognose snake"]
_NONSTRICT = {"excitation_backprop": {"strict": False}, "contrastive_excitation_backprop": {"strict": False}}


class Qualitative(Experiment):
    name = "qualitative"
    columns = Experiment.key + ("class_name", "status", "seconds", "height", "width", "map_mean", "map_max",
                                "top1", "top1_name", "p_target", "layer", "settings", "sizes_kept")
    base = {
        "models": ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"],
        "classes": list(PAPER_CLASSES),
        # the figure's columns: the paper's order, then the later CAM variants and CAMERAS
        "methods": ["gradient", "deconvnet", "guided_backprop", "excitation_backprop",
                    "contrastive_excitation_backprop", "rise", "gradcam", "extremal_perturbation",
                    "normgrad", "center", "hirescam", "layercam", "gradcam++", "cameras"],
        "cameras_zoom": list(_pt.ZOOM), "method_settings": {"cameras": {"keep": "prediction"}}, "layers": {},
        "skip": {},
    }
    profiles = {
        "ci": {"models": ["efficientnet_lite0"], "classes": ["bulbul", "volleyball"], "cameras_zoom": [1.0, 1.5],
               "method_settings": {"rise": {"num_masks": 48, "batch_size": 16},
                                   "extremal_perturbation": {"max_iter": 3, "areas": [0.1]}, **_NONSTRICT}},
        # sized for the 2-core CPU that computed the stored maps (neither RISE nor extremal
        # perturbation on Lite2: an hour more); a GPU run: --set 'skip={}' --set method_settings=...
        "offline": {"method_settings": {"rise": {"num_masks": 500, "batch_size": 100},
                                        "extremal_perturbation": {"max_iter": 100, "areas": [0.1]},
                                        **_NONSTRICT},
                    "skip": {"efficientnet_lite2": ["rise", "extremal_perturbation"]}},
        "paper": {"models": ["resnet50", "densenet121", "inception_v3"]},
    }
    schema = {
        "models": Check.listof(Check.model), "classes": Check.listof(lambda v, k: (find_class(v), v)[1]),
        "methods": Check.listof(Check.method), "cameras_zoom": Check.listof(_pt.zoom_factor),
        "method_settings": Check.method_settings, "skip": Check.skip,
        "layers": lambda v, k: {Check.model(m, k): {Check.method(x, k): layer for x, layer in Check.mapping(d, k).items()}
                                for m, d in Check.mapping(v, k).items()},  # {model: {method: layer}}
    }

    def validate(self, s: dict[str, Any]) -> None:
        if "sizes" in s["method_settings"].get("cameras", {}):
            raise ValueError("set CAMERAS' sizes through cameras_zoom (factors of the native side)")

    def identity_of(self, s: Mapping[str, Any], file: str) -> dict[str, Any]:
        """Every method's full settings and layer on the model's native crop."""
        model = file.removesuffix(".csv")
        side = get_spec(model).input_size
        return {"methods": {m: _pt.method_identity(s, m, model, side) for m in methods_for(s, model)}}

    def units(self, s: Mapping[str, Any]) -> list[Unit]:
        """One unit per model: a row per (method, image) it computes."""
        its = items(s)
        return [Unit(f"{model}.csv", [(model, m, it.name, it.label) for m in methods_for(s, model) for it in its],
                     model, {"items": its, "remap": set()}) for model in s["models"]]

    def pending(self, s: Mapping[str, Any], folder, units: Sequence[Unit]) -> list[Unit]:
        """Also the models with an ``ok`` row whose map is missing (its maps are recomputed)."""
        todo = {id(u) for u in super().pending(s, folder, units)}
        store = MapStore(folder / "maps")
        for u in units:
            df = read_results(folder / u.file) if (folder / u.file).exists() else None
            ok = [] if df is None or df.empty else df.loc[df["status"] == "ok", ["method", "image"]].values.tolist()
            want, stored = {(k[1], k[2]) for k in u.keys}, {m: store.read(u.model, m) for m, _ in ok}
            u.data["remap"] = {(m, i) for m, i in ok if (m, i) in want and i not in stored[m]}
        return [u for u in units if id(u) in todo or u.data["remap"]]

    def compute(self, ctx: Context, unit: Unit):
        lm, its, remap = ctx.model(unit.model), unit.data["items"], unit.data["remap"]
        x = torch.stack([lm.preprocess(it.source) for it in its]).to(lm.device)
        with torch.no_grad():
            probs = lm.model(x).softmax(dim=1).cpu()
        for method in methods_for(ctx.settings, lm.name):
            work = [j for j, it in enumerate(its) if (method, it.name) in remap
                    or not ctx.done(unit.file, (lm.name, method, it.name, it.label))]
            for g in ([work] if info(method).batched else [[j] for j in work]) if work else []:
                yield from _rows(ctx, lm, method, x, probs, [its[j] for j in g], g)


def _rows(ctx: Context, lm, method: str, x, probs, its, g: list[int]):
    """Maps (stored) and rows of ``method`` for the images ``g`` of ``x`` (one call)."""
    s = ctx.settings
    kw = _pt.method_kwargs(s, method, lm.input_size)
    layer = s["layers"].get(lm.name, {}).get(method) or default_layers(lm.model).get(method)
    status, maps, kept = "ok", None, None
    with ctx.timer() as t:
        try:
            if method == "cameras":
                maps, kept = _pt.cameras_capture(lm.model, x[g], [[it.label] for it in its], layer, **kw)
                maps = maps[:, 0]
            else:
                maps = saliency(method, lm.model, x[g], [it.label for it in its], layer=layer, **kw)
        except ValueError as err:  # the method cannot run on this model / layer
            status = f"n/a: {err}"
    if maps is not None:
        ctx.maps.update((lm.name, method), {it.name: MapStore.quantise(m) for it, m in zip(its, maps, strict=True)})
    for k, (it, j) in enumerate(zip(its, g, strict=True)):
        top1 = int(probs[j].argmax())
        yield {"model": lm.name, "method": method, "image": it.name, "target": it.label,
               "class_name": lm.classes[it.label], "status": status, "seconds": round(t["seconds"] / len(g), 4),
               "height": int(x.shape[-2]), "width": int(x.shape[-1]),
               "map_mean": None if maps is None else float(maps[k].mean()),
               "map_max": None if maps is None else float(maps[k].max()),
               "top1": top1, "top1_name": lm.classes[top1], "p_target": float(probs[j, it.label]),
               "layer": layer if isinstance(layer, (str, type(None))) else settings_json({"layer": layer}),
               "settings": method_settings(method, **kw), "sizes_kept": None if kept is None else int(kept[k])}


EXPERIMENT = Qualitative()
PROFILES = EXPERIMENT.PROFILES
settings = EXPERIMENT.settings
run = EXPERIMENT.run


def _resolved(profile: str | Mapping[str, Any]) -> dict[str, Any]:
    return settings(profile) if isinstance(profile, str) else dict(profile)


def items(s: Mapping[str, Any]):
    """The ImageNet-sample image of each class of the settings (:func:`cameras.data.image_items`)."""
    return image_items("imagenet_sample", s.get("data_root"), classes=s["classes"])


def load_maps(profile, model: str, results=None) -> dict[str, dict[str, np.ndarray]]:
    """``{method: {image: float32 map in [0, 1]}}`` of one model (8-bit precision)."""
    s = _resolved(profile)
    store = MapStore(EXPERIMENT.folder(s, results) / "maps")
    return {m: {k: MapStore.dequantise(v) for k, v in store.read(model, m).items()} for m in s["methods"]}


def display_image(model: str, path) -> np.ndarray:
    """The image as the model sees it (native resize + center crop), ``(H, W, 3)`` uint8."""
    spec = get_spec(model)
    pil = TF.resize(load_image(path), spec.resize_size, interpolation=InterpolationMode.BILINEAR, antialias=True)
    return np.asarray(TF.center_crop(pil, [spec.input_size, spec.input_size]))


def plot_maps(profile, model: str, results=None, methods: Sequence[str] | None = None,
              classes: Sequence[str] | None = None, rows=None):
    """Fig. 2 analogue for one model: per image (``classes``, default all) the image, then a
    panel per method (default: the paper's methods; "n/a": the method refused the model; "not
    run": the profile skips it); with ``rows``, CAMERAS' panel notes the sizes it kept."""
    s = _resolved(profile)
    its = [it for it in items(s) if classes is None or it.name.split("_", 1)[1].replace("_", " ") in classes
           or imagenet_classes()[it.label] in classes]
    methods = list(methods or [m for m in s["methods"] if m in PAPER_METHODS])
    maps, ran = load_maps(s, model, results), methods_for(s, model)
    kept = {} if rows is None else rows[(rows["model"] == model) & (rows["method"] == "cameras")].set_index("image")["sizes_kept"]
    n_sizes = len(s["cameras_zoom"])
    cols = {method_label(m, short=True): [maps.get(m, {}).get(it.name) for it in its] for m in methods}
    notes = {c: ["" if v is not None else "n/a" if m in ran else "not run" for v in cols[c]]
             for c, m in zip(cols, methods, strict=True)}
    if "cameras" in methods and len(kept):
        notes[method_label("cameras", short=True)] = [f"{int(kept[it.name])} of {n_sizes} sizes kept"
                                                      if it.name in kept else "" for it in its]
    return overlay_grid([display_image(model, it.path) for it in its], cols, notes=notes,
                        row_titles=[imagenet_classes()[it.label] for it in its])


def _by_model(rows, fn, order: Sequence[str] | None = None):
    """A row per method (registry name, for :func:`cameras.plots.table`), a column per model of
    ``fn(group of one (method, model))``."""
    t = rows.groupby(["method", "model"], sort=False).apply(fn, include_groups=False).unstack("model")
    t = t.reindex(list(order or dict.fromkeys(rows["method"])))
    return t.rename(columns=model_label).rename_axis(index="method", columns=None).reset_index()


def status_table(rows):
    """Methods x models: ``ok``, why the method did not run (first reason), or "not run
    (skipped in this profile)"."""
    t = _by_model(rows, lambda g: "ok" if (g["status"] == "ok").all() else next(x for x in g["status"] if x != "ok"))
    return t.fillna("not run (skipped in this profile)")


def timing_table(rows):
    """Methods x models: mean seconds per map (NaN: not run), and the cost-relevant settings."""
    ok = rows[rows["status"] == "ok"]
    t = _by_model(ok, lambda g: float(g["seconds"].mean()))
    notes = ok.groupby("method", sort=False)["settings"].first()
    t["settings"] = [_pt.settings_note(m, notes.get(m) if isinstance(notes.get(m), Mapping) else None) for m in t["method"]]
    return t


def kept_table(rows):
    """CAMERAS per class and model: the sizes Algorithm 1 kept (of the number of sizes)."""
    c = rows[rows["method"] == "cameras"]
    n = c["settings"].map(lambda st: len(st["sizes"]) if isinstance(st, Mapping) else np.nan)
    c = c.assign(kept=[f"{int(k)} of {int(m)}" if k == k else "not run" for k, m in zip(c["sizes_kept"], n, strict=True)])
    t = c.pivot(index="class_name", columns="model", values="kept").reindex(list(dict.fromkeys(c["class_name"])))
    return t.rename(columns=model_label).rename_axis(index="class", columns=None).reset_index().pipe(pd.DataFrame)


def area_table(profile, results=None, level: float = 0.5):
    """Methods x models: mean share (%) of the image where the stored map is ``>= level`` (how
    concentrated the maps are; lower: more compact); NaN where not run."""
    s = _resolved(profile)
    area = {model_label(model): {m: 100 * float(np.mean([(v >= level).mean() for v in d.values()]))
                                 for m, d in load_maps(s, model, results).items() if d}
            for model in s["models"]}
    return pd.DataFrame(area).reindex(s["methods"]).rename_axis("method").reset_index()


def verdict_numbers(results=None) -> dict[str, Any]:
    """The stored offline maps for the verdict page: models, images per model and, per model
    and method, the mean % of pixels with map >= 0.5."""
    s = settings("offline")
    area = {m: {k: 100 * float(np.mean([(v >= 0.5).mean() for v in d.values()]))
                for k, d in load_maps(s, m, results).items() if d} for m in s["models"]}
    return {"models": list(s["models"]), "n_images": len(items(s)), "area": area}

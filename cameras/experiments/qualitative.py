r"""Qualitative comparison of saliency methods: the analogue of Fig. 2 of the CAMERAS paper.

Fig. 2 of Jalwana et al. (CVPR 2021) shows the maps of the methods of its comparison on
ImageNet images of nine classes (:data:`PAPER_CLASSES`). :func:`run` computes, for the
ImageNet-sample image of each class at the model's native crop and its true class, the map of
every method of ``methods`` (CAMERAS at the paper's zoom factors ``s / 224`` of the native
side, :func:`cameras.engine.zoomed_sizes`); a method that cannot run records why (``status``).
Files: a CSV per model (a row per (method, image), with the method's full settings) and the
8-bit maps in ``maps/<model>/<method>.npz`` (:class:`cameras.engine.MapStore`). A file's
identity is ``cameras_zoom`` and the model's ``layers``; the method settings recorded per row
are checked when the rows are read (:meth:`Qualitative.load`).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..data import find_class
from ..engine import Check, Context, Experiment, MapStore, Unit
from ._common import methods_for
from .pointing import ZOOM, method_kwargs, settings_note, zoom_factor

__all__ = ["EXPERIMENT", "PROFILES", "PAPER_CLASSES", "settings", "run", "items", "methods_for", "load_maps",
           "display_image", "plot_maps", "status_table", "timing_table", "area_table"]

#: The classes of the paper's Fig. 2, as ImageNet class names (:func:`cameras.data.find_class`).
PAPER_CLASSES: list[str] = ["loudspeaker", "mountain tent", "bulbul", "accordion", "shopping basket",
                             "volleyball", "spotlight", "Loafer", "hognose snake"]
_NONSTRICT = {"excitation_backprop": {"strict": False}, "contrastive_excitation_backprop": {"strict": False}}


class Qualitative(Experiment):
    name = "qualitative"
    columns = Experiment.key + ("class_name", "status", "seconds", "height", "width", "map_mean", "map_max",
                                "top1", "top1_name", "p_target", "layer", "settings")
    base = {
        "models": ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"],
        "classes": list(PAPER_CLASSES),
        # the figure's columns: the paper's order, then the later CAM variants and CAMERAS
        "methods": ["gradient", "deconvnet", "guided_backprop", "excitation_backprop",
                    "contrastive_excitation_backprop", "rise", "gradcam", "extremal_perturbation",
                    "normgrad", "center", "hirescam", "layercam", "gradcam++", "cameras"],
        "cameras_zoom": list(ZOOM), "method_settings": {}, "layers": {}, "skip": {},
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
        "methods": Check.listof(Check.method), "cameras_zoom": Check.listof(zoom_factor),
        "method_settings": Check.method_settings, "skip": Check.skip,
        "layers": lambda v, k: {Check.model(m, k): {Check.method(x, k): layer for x, layer in Check.mapping(d, k).items()}
                                for m, d in Check.mapping(v, k).items()},  # {model: {method: layer}}
    }

    def validate(self, s: dict[str, Any]) -> None:
        if "sizes" in s["method_settings"].get("cameras", {}):
            raise ValueError("set CAMERAS' sizes through cameras_zoom (factors of the native side)")

    def identity_of(self, s: Mapping[str, Any], file: str) -> dict[str, Any]:
        return {"cameras_zoom": s["cameras_zoom"], "layers": s["layers"].get(file.removesuffix(".csv"), {})}

    def units(self, s: Mapping[str, Any]) -> list[Unit]:
        """One unit per model: a row per (method, image) it computes."""
        its = items(s)
        return [Unit(f"{model}.csv", [(model, m, it.name, it.label) for m in methods_for(s, model) for it in its],
                     model, {"items": its, "remap": set()}) for model in s["models"]]

    def pending(self, s: Mapping[str, Any], folder, units: Sequence[Unit]) -> list[Unit]:
        """Also the models with an ``ok`` row whose map is missing (its maps are recomputed)."""
        from ..runs import read_results

        todo = {id(u) for u in super().pending(s, folder, units)}
        store = MapStore(folder / "maps")
        for u in units:
            df = read_results(folder / u.file) if (folder / u.file).exists() else None
            ok = [] if df is None or df.empty else df.loc[df["status"] == "ok", ["method", "image"]].values.tolist()
            want, stored = {(k[1], k[2]) for k in u.keys}, {m: store.read(u.model, m) for m, _ in ok}
            u.data["remap"] = {(m, i) for m, i in ok if (m, i) in want and i not in stored[m]}
        return [u for u in units if id(u) in todo or u.data["remap"]]

    def compute(self, ctx: Context, unit: Unit):
        from ..methods import info

        lm, its, remap = ctx.model(unit.model), unit.data["items"], unit.data["remap"]
        x = torch.stack([lm.preprocess(it.source) for it in its]).to(lm.device)
        with torch.no_grad():
            probs = lm.model(x).softmax(dim=1).cpu()
        for method in methods_for(ctx.settings, lm.name):
            work = [j for j, it in enumerate(its) if (method, it.name) in remap
                    or not ctx.done(unit.file, (lm.name, method, it.name, it.label))]
            for g in ([work] if info(method).batched else [[j] for j in work]) if work else []:
                yield from _rows(ctx, lm, method, x, probs, [its[j] for j in g], g)

    def load(self, s: Mapping[str, Any], results=None):
        """The rows, after checking each method's recorded settings against ``s``: an error if
        none of a (model, method)'s rows was computed with them, a warning naming the rows that
        were not (e.g. an interrupted run resumed with other settings)."""
        from ..methods import method_settings
        from ..models import get_spec
        from ..runs import SettingsMismatch

        df = self.rows(s, results)
        for (model, method), g in df.groupby(["model", "method"], sort=False):
            asked = _json(method_settings(method, **method_kwargs(s, method, get_spec(model).input_size)))
            other = g[[_json(v) != asked for v in g["settings"]]]
            if len(other) == len(g):
                raise SettingsMismatch(f"{model} {method}: the stored rows were computed with {_json(g['settings'].iloc[0])}"
                                       f", not {asked}; start a fresh folder (--results DIR) or move the files")
            if len(other):
                warnings.warn(f"{model} {method}: {len(other)} of {len(g)} rows were computed with other "
                              f"settings ({', '.join(sorted({_json(v) for v in other['settings']}))}) "
                              f"than {asked}: {', '.join(other['image'])}", RuntimeWarning, stacklevel=2)
        return df


def _json(v: Any) -> str:
    return json.dumps(v, sort_keys=True, default=repr)


def _rows(ctx: Context, lm, method: str, x, probs, its, g: list[int]):
    """Maps (stored) and rows of ``method`` for the images ``g`` of ``x`` (one call)."""
    from ..methods import default_layers, method_settings, saliency, settings_json

    s = ctx.settings
    kw = method_kwargs(s, method, lm.input_size)
    layer = s["layers"].get(lm.name, {}).get(method)
    used = layer if layer is not None else default_layers(lm.model).get(method)
    status, maps = "ok", None
    with ctx.timer() as t:
        try:
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
               "layer": used if isinstance(used, (str, type(None))) else settings_json({"layer": used}),
               "settings": method_settings(method, **kw)}


EXPERIMENT = Qualitative()
PROFILES = EXPERIMENT.PROFILES
settings = EXPERIMENT.settings
run = EXPERIMENT.run


def _resolved(profile: str | Mapping[str, Any]) -> dict[str, Any]:
    return settings(profile) if isinstance(profile, str) else dict(profile)


def items(s: Mapping[str, Any]):
    """The ImageNet-sample image of each class of the settings (:func:`cameras.data.image_items`)."""
    from ..data import image_items

    return image_items("imagenet_sample", s.get("data_root"), classes=s["classes"])


def load_maps(profile, model: str, results=None) -> dict[str, dict[str, np.ndarray]]:
    """``{method: {image: float32 map in [0, 1]}}`` of one model (8-bit precision)."""
    s = _resolved(profile)
    store = MapStore(EXPERIMENT.folder(s, results) / "maps")
    return {m: {k: MapStore.dequantise(v) for k, v in store.read(model, m).items()} for m in s["methods"]}


def display_image(model: str, path) -> np.ndarray:
    """The image as the model sees it (native resize + center crop), ``(H, W, 3)`` uint8."""
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode

    from ..images import load_image
    from ..models import get_spec

    spec = get_spec(model)
    pil = TF.resize(load_image(path), spec.resize_size, interpolation=InterpolationMode.BILINEAR, antialias=True)
    return np.asarray(TF.center_crop(pil, [spec.input_size, spec.input_size]))


def plot_maps(profile, model: str, results=None, methods: Sequence[str] | None = None):
    """Fig. 2 analogue for one model: a row per image, the image then a panel per method
    ("n/a": the method refused the model; "not run": the profile skips it)."""
    from ..data import imagenet_classes
    from ..plots import method_label, model_label, overlay_grid

    s = _resolved(profile)
    its, maps, ran = items(s), load_maps(s, model, results), methods_for(s, model)
    cols = {method_label(m, short=True): [maps[m].get(it.name) for it in its] for m in methods or s["methods"]}
    notes = {c: ["" if v is not None else "n/a" if m in ran else "not run" for v in cols[c]]
             for c, m in zip(cols, methods or s["methods"], strict=True)}
    return overlay_grid([display_image(model, it.path) for it in its], cols, notes=notes,
                        row_titles=[imagenet_classes()[it.label] for it in its],
                        title=f"{model_label(model)}: maps for the true class (ours)")


def status_table(rows):
    """Methods x models: ``ok`` or why the method did not run (first reason)."""
    from ..plots import method_label, model_label

    t = rows.groupby(["method", "model"], sort=False)["status"].agg(
        lambda v: "ok" if (v == "ok").all() else next(x for x in v if x != "ok"))
    t = t.unstack("model").fillna("not run (profile's skip)")
    return t.rename(index=method_label, columns=model_label).rename_axis(index=None, columns=None)


def timing_table(rows, decimals: int = 3):
    """Methods x models: mean seconds per map, with the cost-relevant settings."""
    from ..plots import method_label, model_label

    ok = rows[rows["status"] == "ok"]
    t = ok.pivot_table(index="method", columns="model", values="seconds", aggfunc="mean", sort=False).round(decimals)
    notes = ok.groupby("method", sort=False)["settings"].first()
    t["settings"] = [settings_note(m, st if isinstance(st, Mapping) else None) for m, st in notes.reindex(t.index).items()]
    return t.rename(index=method_label, columns=model_label).rename_axis(index=None, columns=None)


def area_table(profile, results=None, level: float = 0.5, decimals: int = 1):
    """Methods x models: mean share (%) of the image where the stored map is ``>= level`` (how
    concentrated the maps are; lower: more compact)."""
    import pandas as pd

    from ..plots import method_label, model_label

    s = _resolved(profile)
    t = pd.DataFrame({model_label(model): {method_label(m): 100 * float(np.mean([(v >= level).mean() for v in d.values()]))
                                           for m, d in load_maps(s, model, results).items() if d}
                      for model in s["models"]}).round(decimals)
    t.index.name = f"area with map >= {level} (%)"
    return t

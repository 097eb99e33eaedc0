r"""Qualitative comparison of saliency methods: the analogue of Fig. 2 of the CAMERAS paper.

Fig. 2 of Jalwana et al. (CVPR 2021) shows, for ResNet-50, DenseNet-121 and Inception-v3,
ImageNet images of a few classes (loudspeaker, mountain tent, bulbul, accordion, basket,
volleyball, spotlight, loafer, hognose snake) with the maps of the methods of its comparison:
gradient, DeConvNet, guided backprop, excitation backprop (MWP), contrastive excitation
backprop (cMWP), RISE, Grad-CAM, extremal perturbation, NormGrad and CAMERAS. :func:`run`
computes the maps of every registered method (:func:`cameras.methods.names`: the paper's ones
plus the center baseline, HiResCAM, LayerCAM and Grad-CAM++) for the image of each of those
classes in the ImageNet sample, for the *true* class, and stores them; :func:`figure` draws
them.

*Images.* One image per class: the ImageNet-sample image of the class (the paper's images are
not published), resized and center-cropped to the model's native input (224 px for
EfficientNet-Lite0, 240 for Lite1, 260 for Lite2; 224 / 224 / 299 for ResNet-50 /
DenseNet-121 / Inception-v3). "Basket" is ImageNet's *shopping basket* (the other basket
class is *hamper*).

*CAMERAS' sizes.* The paper's zoom factors ``s / 224`` (s = 224, 324, ..., 924) applied to the
model's native side (224 ... 924 px for a 224 px model, 260 ... 1073 px for Lite2).

*Cost.* RISE (8000 masks) and extremal perturbation (800 iterations) are run with fewer
masks / iterations in the ``ci`` and ``offline`` profiles; every row records the method's full
settings. Excitation backprop and its contrastive variant refuse EfficientNet-Lite (its
linear bottlenecks break the rules' assumptions); ``ci``/``offline`` run them with
``strict=False`` and say so. Where a method cannot run on a model (e.g. no layer known for
excitation backprop on DenseNet-121 in the ``paper`` profile) the row records why
(``status``) and the figure leaves the panel empty.

Storage: one CSV per model (``<results>/qualitative/<model>.csv``, one row per (method,
image): status, seconds per map, map statistics, the model's top-1 and probability of the
target, settings) and the maps themselves, quantised to 8 bits, in
``<results>/qualitative/maps/<model>/<method>.npz`` (one array per image). A second call
resumes: finished (method, image) pairs are not recomputed, and a model whose pairs are all
done is not loaded.

Profiles (:data:`PROFILES`)
---------------------------
* ``ci``: EfficientNet-Lite0, 2 images, all methods with tiny RISE / extremal settings and
  CAMERAS at zoom 1 and 1.5; ``<results>/_ci/qualitative/``.
* ``offline``: EfficientNet-Lite0/1/2, the 9 images, all methods (RISE 4000 masks, extremal
  perturbation 300 iterations, CAMERAS at the paper's zoom factors). Meant for a GPU::

      python -m cameras.experiments qualitative --profile offline --device cuda

* ``paper``: torchvision ResNet-50, DenseNet-121, Inception-v3 (ImageNet weights, downloaded
  by torchvision), the 9 images, all methods at the paper's settings.
"""

from __future__ import annotations

import copy
import io
import os
import time
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core import DEFAULT_SIZES
from ._common import check_skip, methods_for, profile_copy, results_subdir
from .pointing import METHOD_NAMES, MODEL_NAMES, cameras_sizes

__all__ = [
    "PROFILES",
    "PAPER_CLASSES",
    "SHORT_NAMES",
    "KEY",
    "COLUMNS",
    "resolve_settings",
    "results_folder",
    "rows_path",
    "maps_path",
    "select_images",
    "display_image",
    "run",
    "load_results",
    "load_maps",
    "figure",
    "status_table",
    "timing_table",
    "area_table",
]

#: The classes of the paper's Fig. 2, as ImageNet class names (``cameras.data.find_class``).
PAPER_CLASSES: list[str] = [
    "loudspeaker", "mountain tent", "bulbul", "accordion", "shopping basket", "volleyball",
    "spotlight", "Loafer", "hognose snake",
]

_ALL_METHODS = [
    "gradient", "deconvnet", "guided_backprop", "excitation_backprop",
    "contrastive_excitation_backprop", "rise", "gradcam", "extremal_perturbation", "normgrad",
    "center", "hirescam", "layercam", "gradcam++", "cameras",
]
_ZOOM = [s / 224 for s in DEFAULT_SIZES]
_LITE = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
_NONSTRICT = {"excitation_backprop": {"strict": False},
              "contrastive_excitation_backprop": {"strict": False}}

#: Settings of each profile (plain, JSON-able).
PROFILES: dict[str, dict[str, Any]] = {
    "ci": {
        "models": ["efficientnet_lite0"],
        "classes": ["bulbul", "volleyball"],
        "methods": list(_ALL_METHODS),
        "cameras_zoom": [1.0, 1.5],
        "method_settings": {"rise": {"num_masks": 48, "batch_size": 16},
                            "extremal_perturbation": {"max_iter": 3, "areas": [0.1]},
                            **_NONSTRICT},
        "layers": {},
        "skip": {},
    },
    "offline": {
        "models": list(_LITE),
        "classes": list(PAPER_CLASSES),
        "methods": list(_ALL_METHODS),
        "cameras_zoom": list(_ZOOM),
        # Sized for a 2-core CPU (the stored maps were computed on one): on EfficientNet-Lite a
        # CPU forward pass costs ~60 ms, so RISE's 8000 masks would take ~8 min an image and
        # extremal perturbation's 4 areas x 800 steps far more. RISE gets 500 masks (noisier
        # maps), extremal perturbation one area (10 %) and 100 steps; the paper profile keeps
        # TorchRay's defaults. Rerun on a GPU with --set method_settings=... for more.
        "method_settings": {"rise": {"num_masks": 500, "batch_size": 100},
                            "extremal_perturbation": {"max_iter": 100, "areas": [0.1]},
                            **_NONSTRICT},
        "layers": {},
        # (model, method) pairs not computed: on the 2-core CPU that computed the stored maps,
        # RISE and extremal perturbation on Lite2 (260 px) would have taken about an hour more
        # (extremal perturbation alone took 1.5-15 min an image on Lite0/Lite1 there). A GPU
        # run adds them with --set 'skip={}'.
        "skip": {"efficientnet_lite2": ["rise", "extremal_perturbation"]},
    },
    "paper": {
        "models": ["resnet50", "densenet121", "inception_v3"],
        "classes": list(PAPER_CLASSES),
        "methods": list(_ALL_METHODS),
        "cameras_zoom": list(_ZOOM),
        "method_settings": {},
        "layers": {},
        "skip": {},
    },
}

#: Short column titles of the figures.
SHORT_NAMES: dict[str, str] = {
    "gradient": "Gradient", "deconvnet": "DeConvNet", "guided_backprop": "Guided BP",
    "excitation_backprop": "MWP", "contrastive_excitation_backprop": "cMWP", "rise": "RISE",
    "gradcam": "Grad-CAM", "extremal_perturbation": "Extremal", "normgrad": "NormGrad",
    "center": "Center", "hirescam": "HiResCAM", "layercam": "LayerCAM",
    "gradcam++": "Grad-CAM++", "cameras": "CAMERAS",
}

#: Row identity and columns of the results files.
KEY: tuple[str, ...] = ("model", "method", "image", "target")
COLUMNS: tuple[str, ...] = KEY + (
    "class_name", "status", "seconds", "height", "width", "map_mean", "map_max",
    "top1", "top1_name", "p_target", "layer", "settings",
)


# ========================================================================================
# settings and files
# ========================================================================================
def resolve_settings(profile: str | Mapping[str, Any], **overrides: Any) -> dict[str, Any]:
    """The settings of ``profile`` (a name in :data:`PROFILES` or a dict) with ``overrides``.

    ``method_settings`` overrides are merged per method. A ``ValueError`` names an unknown
    profile, setting, model, method or class.
    """
    from ..data import find_class
    from ..methods import info, method_settings
    from ..models import get_spec

    s = profile_copy(PROFILES, profile, base="offline")
    unknown = sorted(set(overrides) - set(s))
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}; valid: {', '.join(sorted(s))}")
    for k, v in copy.deepcopy(overrides).items():
        if k == "method_settings" and isinstance(v, Mapping):
            merged = dict(s["method_settings"])
            for m, ms in v.items():
                merged[m] = {**merged.get(m, {}), **dict(ms)}
            s[k] = merged
        else:
            s[k] = v
    for key in ("models", "methods", "classes"):
        if isinstance(s[key], (str, int)):
            s[key] = [s[key]]
        s[key] = list(s[key])
        if not s[key]:
            raise ValueError(f"{key} must name at least one entry")
    s["models"] = [get_spec(m).name for m in s["models"]]
    s["methods"] = [info(m).name for m in s["methods"]]
    for c in s["classes"]:
        find_class(c)  # ValueError for unknown / ambiguous names
    ms = s["method_settings"] or {}
    if not isinstance(ms, Mapping):
        raise TypeError("method_settings must be a dict {method: {setting: value}}")
    s["method_settings"] = {info(m).name: dict(v) for m, v in ms.items()}
    for m, v in s["method_settings"].items():
        if m == "cameras" and "sizes" in v:
            raise ValueError("set CAMERAS' sizes through cameras_zoom (factors of the native side)")
        method_settings(m, **v)
    z = s["cameras_zoom"]
    z = [float(v) for v in ([z] if isinstance(z, (int, float)) else z)]
    if not z or any(v <= 0 for v in z):
        raise ValueError(f"cameras_zoom must be positive factors, got {s['cameras_zoom']!r}")
    s["cameras_zoom"] = z
    check_skip(s)
    layers = s["layers"] or {}
    if not isinstance(layers, Mapping):
        raise TypeError("layers must be a dict {model: {method: layer}}")
    s["layers"] = {get_spec(m).name: {info(k).name: v for k, v in d.items()}
                   for m, d in layers.items()}
    return s


def _resolved(profile) -> dict[str, Any]:
    if isinstance(profile, Mapping) and "profile" in profile and "cameras_zoom" in profile:
        return dict(profile)
    return resolve_settings(profile)


def results_folder(s: Mapping[str, Any], results: str | os.PathLike | None = None) -> Path:
    """``<results>/_ci/qualitative`` for the ``ci`` profile, else ``<results>/qualitative``."""
    return results_subdir("qualitative", s.get("profile") == "ci", results)


def rows_path(folder: Path, model: str) -> Path:
    """The CSV of one model."""
    return Path(folder) / f"{model}.csv"


def maps_path(folder: Path, model: str, method: str) -> Path:
    """The ``.npz`` with the maps of one (model, method), one uint8 array per image."""
    return Path(folder) / "maps" / model / f"{method.replace('+', 'p')}.npz"


def select_images(classes: Sequence[str], root: str | os.PathLike | None = None):
    """``[(SampleInfo, class index)]``: the ImageNet-sample image of each class."""
    from ..data import ImageNetSample, find_class

    ds = ImageNetSample(root)
    by_label = {s.label: s for s in ds.samples}
    out = []
    for c in classes:
        idx = find_class(c)
        if idx not in by_label:
            raise FileNotFoundError(f"no image of class {idx} ({c!r}) in {ds.root}")
        out.append((by_label[idx], idx))
    return out


def display_image(model: str, path: str | os.PathLike) -> np.ndarray:
    """The image as the model sees it (native resize + center crop), ``(H, W, 3)`` uint8."""
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode

    from ..images import load_image
    from ..models import get_spec

    spec = get_spec(model)
    pil = TF.resize(load_image(path), spec.resize_size, interpolation=InterpolationMode.BILINEAR,
                    antialias=True)
    return np.asarray(TF.center_crop(pil, [spec.input_size, spec.input_size]))


# ========================================================================================
# maps on disk
# ========================================================================================
def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        return {}
    try:
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return {}  # a torn write: the rows without maps are recomputed


def _write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)


def _quantise(m: torch.Tensor) -> np.ndarray:
    return (m.detach().float().clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)


# ========================================================================================
# the run
# ========================================================================================
def _settings_for(s: Mapping[str, Any], method: str, input_size: int) -> dict[str, Any]:
    out = dict(s["method_settings"].get(method, {}))
    if method == "cameras":
        out["sizes"] = cameras_sizes(input_size, s["cameras_zoom"])
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _run_model(s, folder: Path, model_name: str, items, device, progress: bool) -> None:
    from tqdm.auto import tqdm

    from ..methods import default_layers, info, method_settings, saliency, settings_json
    from ..models import get_spec, load_model
    from ..runs import ResultsWriter

    spec = get_spec(model_name)
    path = rows_path(folder, model_name)
    meta = {"task": "qualitative", "model": model_name, "settings": s}
    with ResultsWriter(path, key=KEY, columns=COLUMNS, meta=meta, device=device) as w:
        status = _statuses(path, model_name)

        def pending(method):
            maps = _read_npz(maps_path(folder, model_name, method))
            out = []
            for info_, t in items:
                st = status.get((method, info_.path.stem, int(t)))
                if not w.done((model_name, method, info_.path.stem, t)) or (
                        st == "ok" and info_.path.stem not in maps):
                    out.append((info_, t))
            return out

        todo = {m: pending(m) for m in methods_for(s, model_name)}
        if not any(todo.values()):
            return
        lm = load_model(model_name, device=device)
        x_all = torch.stack([lm.preprocess(i.path) for i, _ in items]).to(lm.device)
        names = [i.path.stem for i, _ in items]
        targets = [t for _, t in items]
        with torch.no_grad():
            probs = lm.model(x_all).softmax(dim=1).cpu()
        layers = default_layers(lm.model)
        bar = tqdm(total=sum(len(v) for v in todo.values()), desc=f"qualitative {model_name}",
                   disable=not progress)
        for method in s["methods"]:
            work = todo.get(method)
            if not work:
                continue
            mspec = info(method)
            settings = _settings_for(s, method, spec.input_size)
            full = method_settings(method, **settings)
            layer = s["layers"].get(model_name, {}).get(method)
            layer_used = layer if layer is not None else layers.get(method)
            idx = [names.index(i.path.stem) for i, _ in work]
            groups = [idx] if mspec.batched else [[j] for j in idx]
            for g in groups:
                x = x_all[g]
                tg = [targets[j] for j in g]
                status, maps = "ok", None
                _sync(lm.device)
                t0 = time.perf_counter()
                try:
                    maps = saliency(method, lm.model, x, tg, layer=layer, **settings)
                except ValueError as err:  # the method cannot run on this model / layer
                    status = f"n/a: {err}"
                _sync(lm.device)
                dt = (time.perf_counter() - t0) / len(g)
                if maps is not None:
                    if not bool(torch.isfinite(maps).all()):  # pragma: no cover - registry guards
                        raise RuntimeError(f"{method} returned non-finite maps")
                    stored = _read_npz(maps_path(folder, model_name, method))
                    for k, j in enumerate(g):
                        stored[names[j]] = _quantise(maps[k])
                    _write_npz(maps_path(folder, model_name, method), stored)
                for k, j in enumerate(g):
                    top1 = int(probs[j].argmax())
                    w.write({
                        "model": model_name, "method": method, "image": names[j],
                        "target": targets[j], "class_name": lm.classes[targets[j]],
                        "status": status, "seconds": round(dt, 4),
                        "height": int(x.shape[-2]), "width": int(x.shape[-1]),
                        "map_mean": float(maps[k].mean()) if maps is not None else None,
                        "map_max": float(maps[k].max()) if maps is not None else None,
                        "top1": top1, "top1_name": lm.classes[top1],
                        "p_target": float(probs[j, targets[j]]),
                        "layer": layer_used if isinstance(layer_used, (str, type(None)))
                        else settings_json({"layer": layer_used}),
                        "settings": full,
                    })
                bar.update(len(g))
        bar.close()
        del lm, x_all
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _statuses(path: Path, model: str) -> dict[tuple[str, str, int], str]:
    """``{(method, image, target): status}`` of the rows already in ``path``."""
    from ..runs import read_results

    if not path.exists() or path.stat().st_size == 0:
        return {}
    df = read_results(path)
    if df.empty:
        return {}
    df = df[df["model"] == model]
    return {(str(m), str(i), int(t)): str(st)
            for m, i, t, st in zip(df["method"], df["image"], df["target"], df["status"],
                                   strict=True)}


def run(
    profile: str | Mapping[str, Any] = "offline",
    results: str | os.PathLike | None = None,
    device: str | torch.device = "auto",
    progress: bool = True,
    **overrides: Any,
):
    """Compute (or resume) the maps of ``profile`` and return all rows (a DataFrame)."""
    from ..models import resolve_device

    s = resolve_settings(profile, **overrides)
    folder = results_folder(s, results)
    dev = resolve_device(device)
    items = select_images(s["classes"])
    for model_name in s["models"]:
        _run_model(s, folder, model_name, items, dev, progress)
    return load_results(s, results)


def load_results(profile: str | Mapping[str, Any] = "offline",
                 results: str | os.PathLike | None = None):
    """The rows of the models, methods and images of ``profile`` written so far."""
    import pandas as pd

    from ..data import find_class
    from ..runs import read_results

    s = _resolved(profile)
    folder = results_folder(s, results)
    targets = {find_class(c) for c in s["classes"]}
    frames = []
    for model in s["models"]:
        p = rows_path(folder, model)
        if p.exists():
            df = read_results(p)
            frames.append(df[df["method"].isin(methods_for(s, model)) & df["target"].isin(targets)])
    if not frames:
        return pd.DataFrame(columns=list(COLUMNS))
    return pd.concat(frames, ignore_index=True)


def load_maps(profile, model: str, results: str | os.PathLike | None = None
              ) -> dict[str, dict[str, np.ndarray]]:
    """``{method: {image: float32 map in [0, 1]}}`` of one model (8-bit precision)."""
    s = _resolved(profile)
    folder = results_folder(s, results)
    out = {}
    for method in s["methods"]:
        out[method] = {k: v.astype(np.float32) / 255.0
                       for k, v in _read_npz(maps_path(folder, model, method)).items()}
    return out


# ========================================================================================
# figures and tables
# ========================================================================================
def figure(profile, model: str, results: str | os.PathLike | None = None, *,
           methods: Sequence[str] | None = None, cell_size: float = 1.25, dpi: int = 80,
           save: str | os.PathLike | None = None):
    """Fig. 2 analogue for one model: one row per image, the image then one panel per method.

    Panels of methods that could not run (or have no stored map) are left empty with "n/a".
    Returns a :class:`matplotlib.figure.Figure` (``save=``: also write a PNG).
    """
    from ..viz import show_maps

    s = _resolved(profile)
    methods = list(methods or s["methods"])
    items = select_images(s["classes"])
    maps = load_maps(s, model, results)
    images = [display_image(model, i.path) for i, _ in items]
    names = [i.path.stem for i, _ in items]
    blank = np.zeros(images[0].shape[:2], dtype=np.float32)
    cols = {SHORT_NAMES.get(m, m): [maps.get(m, {}).get(n, None) for n in names]
            for m in methods}
    missing = {(r, c) for c, v in enumerate(cols.values()) for r, mm in enumerate(v) if mm is None}
    cols = {k: [blank if m is None else m for m in v] for k, v in cols.items()}
    from ..data import imagenet_classes

    classes = imagenet_classes()
    row_titles = [classes[t] for _, t in items]
    fig = show_maps(images, cols, row_titles=row_titles, cell_size=cell_size,
                    suptitle=f"{MODEL_NAMES.get(model, model)}: maps for the true class (ours)")
    axes = np.asarray(fig.axes).reshape(len(images), len(cols) + 1)
    for r, c in missing:
        ax = axes[r, c + 1]
        ax.images[0].remove() if ax.images else None
        ax.text(0.5, 0.5, "n/a", ha="center", va="center", transform=ax.transAxes)
    for ax in axes[0]:
        ax.title.set_fontsize(7)
    for ax in axes[:, 0]:
        ax.yaxis.label.set_fontsize(7)
    if save is not None:
        p = Path(save)
        p.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(p, dpi=dpi, format="png")
    return fig


def status_table(rows):
    """Methods x models: ``ok`` or why the method did not run (first reason)."""
    import pandas as pd

    if rows is None or len(rows) == 0:
        return pd.DataFrame()
    g = rows.groupby(["method", "model"], sort=False)["status"].agg(
        lambda v: "ok" if (v == "ok").all() else next(x for x in v if x != "ok"))
    t = g.unstack("model").fillna("not run (profile's skip)")
    t.index = [METHOD_NAMES.get(m, m) for m in t.index]
    t.columns = [MODEL_NAMES.get(m, m) for m in t.columns]
    return t


def timing_table(rows, decimals: int = 3):
    """Methods x models: mean seconds per map, with the cost-relevant settings."""
    import pandas as pd

    from .pointing import _settings_note

    if rows is None or len(rows) == 0:
        return pd.DataFrame()
    ok = rows[rows["status"] == "ok"]
    t = ok.pivot_table(index="method", columns="model", values="seconds", aggfunc="mean",
                       sort=False).round(decimals)
    notes = ok.groupby("method", sort=False)["settings"].first().map(
        lambda st: st if isinstance(st, Mapping) else None)
    t["settings"] = [_settings_note(m, notes.get(m)) for m in t.index]
    t.index = [METHOD_NAMES.get(m, m) for m in t.index]
    t.columns = [MODEL_NAMES.get(c, c) for c in t.columns]
    return t


def area_table(profile, results: str | os.PathLike | None = None, level: float = 0.5,
               decimals: int = 1):
    """Methods x models: mean share (%) of the image where the map is ``>= level``.

    A rough measure of how concentrated the maps are (lower: more compact), computed from the
    stored maps of every image.
    """
    import pandas as pd

    s = _resolved(profile)
    data = {}
    for model in s["models"]:
        maps = load_maps(s, model, results)
        data[MODEL_NAMES.get(model, model)] = {
            METHOD_NAMES.get(m, m): 100 * float(np.mean([(v >= level).mean() for v in d.values()]))
            for m, d in maps.items() if d
        }
    t = pd.DataFrame(data).round(decimals)
    t.index.name = f"area with map >= {level} (%)"
    return t

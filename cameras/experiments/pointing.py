r"""Pointing game: the paper's Table 1 (TorchRay's protocol) and our offline grid pointing game.

**The paper's experiment (Table 1 of Jalwana et al., CVPR 2021).** The pointing game of
Zhang et al. (ECCV 2016) in TorchRay's implementation: for every (image, class present) pair
of PASCAL VOC 2007 *test* and COCO 2014 *val*, the maximum of the class's saliency map is a
hit if it lies within 15 px of the class's ground truth; the score is the mean over classes
of the per-class hit rate, on *All* pairs and on the *Difficult* subset. The models are
TorchRay's VGG16 and ResNet50 fine-tuned on each dataset. The paper takes the baselines'
numbers from TorchRay's benchmark. :data:`PAPER_TABLE1` holds TorchRay's published table
(the only numbers we print as reported); the ``paper`` profile runs the whole protocol
through :func:`cameras.metrics.pointing_game_run` (data under ``$CAMERAS_DATA_ROOT``, see
:mod:`cameras.datasets`) and fails before computing anything when data or weights are
missing.

**Our offline experiment: the grid pointing game** (Böhle, Fritz & Schiele, CVPR 2022). VOC
and COCO are not available offline, so localisation is measured without boxes: 2x2 grids of
four ImageNet-sample images of four *different* classes that the model classifies correctly
with softmax probability >= ``threshold`` (:func:`cameras.metrics.make_grids`). For the class
of each cell, the map is computed on the whole grid and scored by the share of its positive
mass inside that cell and by whether its maximum falls in the cell
(:func:`cameras.metrics.grid_pointing_game`). Chance is 25 % for both.

*Grid resolution.* Each cell is the model's native input (the usual resize + center crop:
224 px for EfficientNet-Lite0, 240 for Lite1, 260 for Lite2), so a grid is twice the native
side (448 / 480 / 520 px), as in Böhle et al., and every cell is exactly the image the model
classified confidently. Shrinking four images into one native-size input would instead
change what the model sees (objects at half size) and test the models at a resolution they
were not checked on. *CAMERAS' sizes* follow from the same choice: the paper upsamples a
native-size input by the zoom factors ``224/224 ... 924/224`` (sizes 224, ..., 924), so on a
grid of side ``g`` we use ``round(g * s / 224)`` -- each cell is then seen at 224 ... 924 px
on Lite0, exactly the paper's per-object resolutions (448 ... 1848 px for the whole grid).
Starting CAMERAS at 224 px on a 448 px grid would *downsample* the reference input, which
is not the method.

*Cost.* RISE and extremal perturbation run with fewer masks / iterations than the paper
(8000 masks; 800 iterations), and extremal perturbation on fewer grids
(``method_grids``); every row records the method's full settings. Excitation backprop and
its contrastive variant assume ReLU networks without linear bottlenecks; on EfficientNet-Lite
they run with ``strict=False`` (TorchRay's rules applied anyway, see
:mod:`cameras.methods.backprop`), so their scores are not those of the method as designed.

Profiles (:data:`PROFILES`)
---------------------------
* ``ci``: EfficientNet-Lite0, 2 grids drawn from 60 ImageNet-sample images, cells shrunk to
  112 px (224 px grids, 4x cheaper than native cells), CAMERAS zoom factors 1 and 1.5, RISE
  with 32 masks and extremal perturbation with 2 iterations and one area on 1 grid;
  a smoke test on 2 CPU cores. Results under ``<results>/_ci/pointing/``.
* ``offline``: EfficientNet-Lite0/1/2, grids from all 1000 ImageNet-sample images, 32 grids
  (128 maps) per model and method, 3 grids (12 maps, 100 iterations) for extremal
  perturbation, RISE with 2000 masks; 8 grids per call; meant for a GPU::

      python -m cameras.experiments pointing --profile offline --device cuda

  Results under ``<results>/pointing/`` (committed; the chapter resumes from them).
* ``paper``: TorchRay's VGG16/ResNet50 on VOC07 test and COCO14 val, all of the paper's
  methods at the paper's / TorchRay's settings. Results under ``<results>/pointing/``.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core import DEFAULT_SIZES
from ._common import (
    check_skip,
    loader_workers,
    methods_for,
    profile_copy,
    results_subdir,
    spread_indices,
)

__all__ = [
    "PROFILES",
    "PAPER_TABLE1",
    "METHOD_NAMES",
    "MODEL_NAMES",
    "resolve_settings",
    "grid_side",
    "cameras_sizes",
    "method_settings_for",
    "results_folder",
    "grid_path",
    "candidate_indices",
    "load_candidates",
    "build_grids",
    "example_path",
    "load_example",
    "example_figure",
    "timing_path",
    "load_timing",
    "run",
    "load_results",
    "summary",
    "summary_table",
    "paper_table",
    "paper_summary",
]

_ALL_METHODS = [
    "cameras", "gradcam", "normgrad", "gradient", "deconvnet", "guided_backprop",
    "excitation_backprop", "contrastive_excitation_backprop", "rise",
    "extremal_perturbation", "center", "hirescam", "layercam", "gradcam++",
]
_PAPER_METHODS = _ALL_METHODS[:11]
_ZOOM = [s / 224 for s in DEFAULT_SIZES]  # the paper's zoom factors 1 ... 4.125

#: Settings of each profile (plain, JSON-able). ``run(profile, **overrides)`` changes them.
PROFILES: dict[str, dict[str, Any]] = {
    "ci": {
        "task": "grid",
        "models": ["efficientnet_lite0"],
        "methods": list(_ALL_METHODS),
        "candidates": 60,
        "cell_size": 112,
        "n_grids": 2,
        "method_grids": {"extremal_perturbation": 1, "rise": 1},
        "threshold": 0.5,
        "seed": 0,
        "cameras_zoom": [1.0, 1.5],
        "method_settings": {
            "rise": {"num_masks": 32, "batch_size": 16},
            "extremal_perturbation": {"max_iter": 2, "areas": [0.1]},
            "excitation_backprop": {"strict": False},
            "contrastive_excitation_backprop": {"strict": False},
        },
        "batch_size": 32,
        "grid_batch": 2,
        "workers": 0,
        "example": True,
        "skip": {},
    },
    "offline": {
        "task": "grid",
        "models": ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"],
        "methods": list(_ALL_METHODS),
        "candidates": None,
        "cell_size": None,
        "n_grids": 32,
        "method_grids": {"extremal_perturbation": 2},  # the grids the stored GPU run scored
        "threshold": 0.5,
        "seed": 0,
        "cameras_zoom": list(_ZOOM),
        "method_settings": {
            "cameras": {"batch_size": 8},
            "rise": {"num_masks": 2000, "batch_size": 250},
            "extremal_perturbation": {"max_iter": 100},
            "excitation_backprop": {"strict": False},
            "contrastive_excitation_backprop": {"strict": False},
        },
        "batch_size": 128,
        "grid_batch": 8,
        "workers": "auto",
        "example": True,
        # (model, method) pairs this profile does not run. Extremal perturbation on Lite2's
        # 520 px grids is the one pair left: Lite0/Lite1 were run on a GPU, and on the 2-core
        # CPU where Lite2's last methods were computed it would take about an hour for its 12
        # maps. A GPU run adds it with --set 'skip={}'.
        "skip": {"efficientnet_lite2": ["extremal_perturbation"]},
    },
    "paper": {
        "task": "pointing_game",
        "datasets": ["voc07", "coco14"],
        "models": ["vgg16", "resnet50"],
        "methods": list(_PAPER_METHODS),
        "method_settings": {},
        "limit": None,
    },
}

#: Display names of the methods (paper's wording where it has one).
METHOD_NAMES: dict[str, str] = {
    "cameras": "CAMERAS", "gradcam": "Grad-CAM", "normgrad": "NormGrad",
    "gradient": "Gradient", "deconvnet": "DeConvNet", "guided_backprop": "Guided backprop",
    "excitation_backprop": "Excitation backprop (MWP)",
    "contrastive_excitation_backprop": "Contrastive EBP (cMWP)", "rise": "RISE",
    "extremal_perturbation": "Extremal perturbation", "center": "Center baseline",
    "hirescam": "HiResCAM", "layercam": "LayerCAM", "gradcam++": "Grad-CAM++",
}
#: Display names of the models.
MODEL_NAMES: dict[str, str] = {
    "efficientnet_lite0": "EfficientNet-Lite0", "efficientnet_lite1": "EfficientNet-Lite1",
    "efficientnet_lite2": "EfficientNet-Lite2", "vgg16": "VGG16", "resnet50": "ResNet50",
    "resnet50_voc07": "ResNet50 (VOC07)", "vgg16_voc07": "VGG16 (VOC07)",
}

#: Published pointing-game accuracies (%) of TorchRay's benchmark, the source of the baseline
#: rows of the paper's Table 1. Read from TorchRay's documentation table ``docs/pointing.csv``
#: (facebookresearch/TorchRay, commit 6a198ee61d229360a3def590410378d2ed6f1f06; rendered in
#: its "Benchmarking" page, which notes that RISE and extremal perturbation are averaged over
#: 3 runs). Columns: (dataset, model, subset). The paper's own rows that TorchRay does not
#: have (CAMERAS; NormGrad) could not be retrieved from the sources available to this project
#: and are therefore not listed -- no number here is guessed.
PAPER_TABLE1: dict[str, Any] = {
    "source": (
        "TorchRay pointing-game benchmark table, docs/pointing.csv of facebookresearch/TorchRay "
        "(commit 6a198ee); the CAMERAS paper (Table 1) takes its baselines from TorchRay's "
        "benchmark. CAMERAS' and NormGrad's own rows of Table 1 could not be retrieved here."
    ),
    "columns": [
        ("VOC07 test", "VGG16", "All"), ("VOC07 test", "VGG16", "Diff"),
        ("VOC07 test", "ResNet50", "All"), ("VOC07 test", "ResNet50", "Diff"),
        ("COCO14 val", "VGG16", "All"), ("COCO14 val", "VGG16", "Diff"),
        ("COCO14 val", "ResNet50", "All"), ("COCO14 val", "ResNet50", "Diff"),
    ],
    "rows": {
        "center": [69.6, 42.4, 69.6, 42.4, 27.8, 19.5, 27.8, 19.5],
        "gradient": [76.3, 56.9, 72.3, 56.8, 37.7, 31.4, 35.0, 29.4],
        "deconvnet": [67.5, 44.2, 68.6, 44.7, 30.7, 23.0, 30.0, 21.9],
        "guided_backprop": [75.9, 53.0, 77.2, 59.4, 39.1, 31.4, 42.1, 35.3],
        "excitation_backprop": [77.1, 56.6, 84.5, 70.8, 39.8, 32.8, 49.6, 43.9],
        "contrastive_excitation_backprop": [79.9, 66.5, 90.7, 82.1, 49.7, 44.3, 58.5, 53.6],
        "rise": [86.9, 75.1, 86.4, 78.8, 50.8, 45.3, 54.7, 50.0],
        "gradcam": [86.6, 74.0, 90.4, 82.3, 54.2, 49.0, 57.3, 52.3],
        "extremal_perturbation": [88.0, 76.1, 88.9, 78.7, 51.5, 45.9, 56.5, 51.5],
    },
}


# ========================================================================================
# settings
# ========================================================================================
def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive int, got {value!r}")
    return value


def resolve_settings(profile: str | Mapping[str, Any], **overrides: Any) -> dict[str, Any]:
    """The settings of ``profile`` (a name in :data:`PROFILES` or a dict) with ``overrides``.

    A dict profile starts from the ``offline`` settings (``task="pointing_game"`` from
    ``paper``). ``method_settings`` overrides are merged per method. Raises a ``ValueError``
    for an unknown profile, setting, model or method, or a value of the wrong kind.
    """
    base = "paper" if isinstance(profile, Mapping) and profile.get("task") == "pointing_game" else "offline"
    s = profile_copy(PROFILES, profile, base=base)
    valid = set(s) | {"profile"}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ValueError(
            f"unknown setting(s) {unknown} for task {s['task']!r}; valid: {', '.join(sorted(valid))}"
        )
    for k, v in copy.deepcopy(overrides).items():
        if k == "method_settings" and isinstance(v, Mapping):
            merged = dict(s.get("method_settings", {}))
            for m, ms in v.items():
                merged[m] = {**merged.get(m, {}), **dict(ms)}
            s[k] = merged
        else:
            s[k] = v
    _check(s)
    return s


def _check(s: dict[str, Any]) -> None:
    from ..methods import info, method_settings

    if s["task"] not in ("grid", "pointing_game"):
        raise ValueError(f"task must be 'grid' or 'pointing_game', got {s['task']!r}")
    for key in ("models", "methods"):
        if isinstance(s[key], str):
            s[key] = [s[key]]
        s[key] = list(s[key])
        if not s[key]:
            raise ValueError(f"{key} must name at least one entry")
    s["methods"] = [info(m).name for m in s["methods"]]
    ms = s.get("method_settings") or {}
    if not isinstance(ms, Mapping):
        raise TypeError(f"method_settings must be a dict {{method: {{setting: value}}}}, got {ms!r}")
    s["method_settings"] = {info(m).name: dict(v) for m, v in ms.items()}
    for m, v in s["method_settings"].items():
        if m == "cameras" and "sizes" in v and s["task"] == "grid":
            raise ValueError("set CAMERAS' sizes through cameras_zoom for the grid task")
        method_settings(m, **v)  # raises for unknown settings / bad values
    if s["task"] == "grid":
        from ..models import get_spec

        s["models"] = [get_spec(m).name for m in s["models"]]
        _positive_int(s["n_grids"], "n_grids")
        _positive_int(s["batch_size"], "batch_size")
        _positive_int(s["grid_batch"], "grid_batch")
        c = s["candidates"]
        if c is not None:
            _positive_int(c, "candidates")
        if s["cell_size"] is not None:
            _positive_int(s["cell_size"], "cell_size")
        mg = s.get("method_grids") or {}
        s["method_grids"] = {info(m).name: _positive_int(v, f"method_grids[{m!r}]")
                             for m, v in mg.items()}
        if not 0.0 <= float(s["threshold"]) < 1.0:
            raise ValueError(f"threshold must be in [0, 1), got {s['threshold']!r}")
        if isinstance(s["seed"], bool) or not isinstance(s["seed"], int):
            raise TypeError(f"seed must be an int, got {s['seed']!r}")
        z = s["cameras_zoom"]
        if isinstance(z, (int, float)):
            z = [z]
        z = [float(v) for v in z]
        if not z or any(v <= 0 for v in z):
            raise ValueError(f"cameras_zoom must be positive factors, got {s['cameras_zoom']!r}")
        s["cameras_zoom"] = z
        if not isinstance(s["example"], bool):
            raise TypeError(f"example must be True or False, got {s['example']!r}")
        check_skip(s)
        w = s["workers"]
        if w != "auto" and (isinstance(w, bool) or not isinstance(w, int) or w < 0):
            raise ValueError(f"workers must be 'auto' or an int >= 0, got {w!r}")
    else:
        from ..datasets import CHECKPOINTS, _norm_kind

        if isinstance(s["datasets"], str):
            s["datasets"] = [s["datasets"]]
        s["datasets"] = [_norm_kind(d) for d in s["datasets"]]
        archs = sorted({a for a, _ in CHECKPOINTS})
        bad = [m for m in s["models"] if m not in archs]
        if bad:
            raise ValueError(f"the pointing game models are TorchRay's {archs}, not {bad}")
        if s["limit"] is not None:
            _positive_int(s["limit"], "limit")


def grid_side(input_size: int, grid: int = 2) -> int:
    """Side of a grid of ``grid x grid`` native-size cells."""
    return grid * int(input_size)


def cameras_sizes(side: int, zoom: Sequence[float]) -> list[int]:
    """CAMERAS sizes for an input of side ``side``: ``round(side * z)`` for each zoom factor.

    With the paper's factors ``s / 224`` (s = 224, ..., 924) and ``side = 224`` these are the
    paper's sizes; on a 448 px grid they are 448, 648, ..., 1848.
    """
    return [int(round(side * float(z))) for z in zoom]


def method_settings_for(s: Mapping[str, Any], method: str, side: int) -> dict[str, Any]:
    """The settings passed to :func:`cameras.methods.saliency` for ``method`` on a grid."""
    out = dict(s["method_settings"].get(method, {}))
    if method == "cameras":
        out["sizes"] = cameras_sizes(side, s["cameras_zoom"])
    return out


# ========================================================================================
# files
# ========================================================================================
def results_folder(s: Mapping[str, Any], results: str | os.PathLike | None = None) -> Path:
    """``<results>/_ci/pointing`` for the ``ci`` profile, else ``<results>/pointing``."""
    return results_subdir("pointing", s.get("profile") == "ci", results)


def _safe(name: str) -> str:
    return name.replace("+", "p")


def grid_path(folder: Path, model: str, method: str) -> Path:
    """Rows of the grid pointing game of one (model, method)."""
    return Path(folder) / f"grid_{model}" / f"{_safe(method)}.csv"


def _paper_path(folder: Path, kind: str, arch: str, method: str) -> Path:
    return Path(folder) / f"pointing_{kind}_{arch}_{kind}_{_safe(method)}.csv"


# ========================================================================================
# grid pointing game
# ========================================================================================
#: ``n`` indices spread evenly over ``range(n_total)`` (all of them for ``None``)
candidate_indices = spread_indices
_workers = loader_workers


class _Preprocess:
    """Picklable preprocessing (resize shorter side, center crop, normalise), as
    :meth:`cameras.models.LoadedModel.preprocess` at the model's native size."""

    def __init__(self, resize: int, crop: int, mean, std):
        self.resize, self.crop = int(resize), int(crop)
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, img):
        import torchvision.transforms.functional as TF
        from torchvision.transforms import InterpolationMode

        from ..images import load_image

        pil = TF.resize(load_image(img), self.resize, interpolation=InterpolationMode.BILINEAR,
                        antialias=True)
        pil = TF.center_crop(pil, [self.crop, self.crop])
        return TF.normalize(TF.to_tensor(pil), self.mean, self.std)


def load_candidates(model_name: str, n: int | None, workers: int | str = 0,
                    root: str | os.PathLike | None = None):
    """``(images, labels, names)`` of ImageNet-sample images at the model's native crop.

    ``n`` images spread over the sample (``None``: all). ``images`` is a CPU tensor.
    """
    from ..data import ImageNetSample
    from ..models import get_spec

    spec = get_spec(model_name)
    full = ImageNetSample(root)
    idx = candidate_indices(len(full), n)
    ds = ImageNetSample(root, transform=_Preprocess(spec.resize_size, spec.input_size,
                                                     spec.mean, spec.std), indices=idx)
    nw = _workers(workers) if len(ds) > 64 else 0
    loader = torch.utils.data.DataLoader(ds, batch_size=64, num_workers=nw, shuffle=False)
    xs, ys = [], []
    for x, y in loader:
        xs.append(x)
        ys.append(y)
    names = [s.path.stem for s in ds.samples]
    return torch.cat(xs), torch.cat(ys), names


def build_grids(lm, images, labels, s: Mapping[str, Any]):
    """The grids of one model (:func:`cameras.metrics.make_grids` with the settings' seed)."""
    from ..metrics import make_grids

    return make_grids(lm.model, images.to(lm.device), labels, int(s["n_grids"]),
                      rng=int(s["seed"]), threshold=float(s["threshold"]),
                      require_correct=True, batch_size=int(s["batch_size"]),
                      cell_size=s.get("cell_size"))


def _complete(path: Path, n_grids: int, cells: int = 4) -> bool:
    """Whether ``path`` holds the rows of grids 0 .. n_grids-1 (``cells`` rows each)."""
    if not path.exists():
        return False
    from ..runs import read_results

    try:
        df = read_results(path)
    except Exception:  # noqa: BLE001 - unreadable: recompute (the writer will complain)
        return False
    if df.empty or "image" not in df.columns:
        return False
    want = {f"grid{n:05d}" for n in range(n_grids)}
    counts = df["image"].value_counts()
    return all(counts.get(g, 0) >= cells for g in want)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timing_path(folder: Path, model: str) -> Path:
    """JSON with the wall-clock time of each (model, method) computation."""
    return Path(folder) / f"grid_{model}" / "timing.json"


def _record_time(folder: Path, model: str, method: str, seconds: float, rows: int,
                 device: torch.device) -> None:
    if rows <= 0:
        return
    p = timing_path(folder, model)
    doc = json.loads(p.read_text()) if p.exists() else {}
    doc.setdefault(method, []).append({
        "seconds": round(seconds, 3), "maps": rows, "seconds_per_map": round(seconds / rows, 4),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
    })
    p.write_text(json.dumps(doc, indent=1, sort_keys=True))


def load_timing(profile, results: str | os.PathLike | None = None):
    """Seconds per map of each (model, method), from the runs that computed them."""
    import pandas as pd

    s = _resolved(profile)
    folder = results_folder(s, results)
    recs = []
    for model in s["models"]:
        p = timing_path(folder, model)
        if not p.exists():
            continue
        for method, runs in json.loads(p.read_text()).items():
            if method not in s["methods"]:
                continue
            secs = sum(r["seconds"] for r in runs)
            maps = sum(r["maps"] for r in runs)
            recs.append({"model": model, "method": method, "seconds_per_map": secs / maps,
                         "device": runs[-1].get("device_name", runs[-1].get("device"))})
    return pd.DataFrame(recs)


def example_path(folder: Path, model: str) -> Path:
    """The example maps of one model: grid 0, the class of its first cell, every method."""
    return Path(folder) / f"grid_{model}" / "example.npz"


def _read_example(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        return {}
    try:
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    except Exception:  # noqa: BLE001 - torn write: recompute
        return {}


def _save_example(path: Path, lm, grids, methods: Sequence[str], s: Mapping[str, Any],
                  side: int, computed: Mapping[str, torch.Tensor] | None = None) -> None:
    """Maps of every method for cell 0 of grid 0 (uint8), with the grid image, for figures.

    ``computed``: maps of that cell already computed by the run (not recomputed).
    """
    import io

    from ..methods import saliency

    computed = computed or {}
    ex = _read_example(path)
    missing = [m for m in methods if f"map/{m}" not in ex]
    if not missing:
        return
    x = grids.images[:1]
    target = int(grids.labels[0, 0])
    if "image" not in ex:
        ex["image"] = (lm.denormalize(x[0]).permute(1, 2, 0).cpu().numpy() * 255).round() \
            .astype(np.uint8)
        ex["labels"] = grids.labels[0].cpu().numpy()
        ex["cell"] = np.array(0)
    for m in missing:
        if m in computed:
            m0 = computed[m]
        else:
            m0 = saliency(m, lm.model, x, [target], **method_settings_for(s, m, side))[0]
        ex[f"map/{m}"] = (m0.float().clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez_compressed(buf, **ex)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)


def load_example(profile, model: str, results: str | os.PathLike | None = None):
    """``(grid image uint8, cell labels, {method: map in [0, 1]})`` saved by :func:`run`."""
    s = _resolved(profile)
    ex = _read_example(example_path(results_folder(s, results), model))
    if not ex:
        return None
    maps = {k.split("/", 1)[1]: v.astype(np.float32) / 255.0 for k, v in ex.items()
            if k.startswith("map/")}
    return ex["image"], ex["labels"], maps


GRID_COLUMNS: tuple[str, ...] = ("model", "method", "image", "target", "cell", "source",
                                 "confidence", "share", "hit", "settings")


def _grid_method(lm, model_name: str, method: str, grids, k: int, path: Path,
                 settings: dict[str, Any], grid_batch: int, progress: bool,
                 keep: dict[str, torch.Tensor] | None = None) -> int:
    """Maps and scores of ``method`` on grids ``0 .. k-1``; returns the rows written.

    ``keep``: if given, the map of grid 0, cell 0 is stored in it under the method's name
    (for the example figure).

    The rows are those of :func:`cameras.metrics.grid_pointing_run` (same columns and key,
    scored by :func:`cameras.metrics.grid_pointing_game`), but ``grid_batch`` grids (x 4
    cells) go through the model in one call for the batched methods.
    """
    from tqdm.auto import tqdm

    from ..methods import info, method_settings, saliency
    from ..metrics import grid_pointing_game
    from ..runs import ResultsWriter

    spec = info(method)
    full = method_settings(method, **settings)
    cells = grids.cells
    meta = {"task": "grid_pointing_game", "method": method, "model": model_name,
            "settings": full, "layer": None, "grid": grids.grid, "n_grids": k}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*resuming with different meta.*")
        writer = ResultsWriter(path, columns=GRID_COLUMNS, meta=meta, device=lm.device)
    with writer as w:
        def pending(n: int) -> bool:
            return not all(w.done((model_name, method, f"grid{n:05d}", int(c)))
                           for c in grids.labels[n])

        todo = [n for n in range(k) if pending(n)]
        step = max(1, int(grid_batch)) if spec.batched else 1
        chunks = [todo[i:i + step] for i in range(0, len(todo), step)]
        for chunk in tqdm(chunks, desc=f"grid {model_name} {method}", disable=not progress):
            x = grids.images[chunk].repeat_interleave(cells, dim=0)
            targets = grids.labels[chunk].reshape(-1).tolist()
            maps = saliency(method, lm.model, x, targets, **settings)
            res = grid_pointing_game(maps, list(range(cells)) * len(chunk), grids.grid)
            if keep is not None and chunk[0] == 0:
                keep[method] = maps[0].detach().cpu()
            for i, n in enumerate(chunk):
                for j in range(cells):
                    r = i * cells + j
                    w.write({"model": model_name, "method": method, "image": f"grid{n:05d}",
                             "target": int(grids.labels[n, j]), "cell": j,
                             "source": int(grids.sources[n, j]),
                             "confidence": float(grids.confidence[n, j]),
                             "share": float(res["share"][r]), "hit": int(res["hit"][r]),
                             "settings": full})
        return w.written


def _run_grid(s: dict[str, Any], folder: Path, device, progress: bool) -> None:
    from ..models import get_spec, load_model

    for model_name in s["models"]:
        spec = get_spec(model_name)
        side = grid_side(s.get("cell_size") or spec.input_size)
        methods = methods_for(s, model_name)
        todo = [m for m in methods
                if not _complete(grid_path(folder, model_name, m),
                                 min(s["n_grids"], s["method_grids"].get(m, s["n_grids"])))]
        ex = _read_example(example_path(folder, model_name))
        need_example = s["example"] and any(f"map/{m}" not in ex for m in methods)
        if not todo and not need_example:
            continue
        # images first: the loader's worker processes fork before CUDA is initialised
        images, labels, _names = load_candidates(model_name, s["candidates"], s["workers"])
        lm = load_model(model_name, device=device)
        grids = build_grids(lm, images, labels, s)
        del images
        computed: dict[str, torch.Tensor] = {}
        for method in todo:
            k = min(s["n_grids"], s["method_grids"].get(method, s["n_grids"]))
            settings = method_settings_for(s, method, side)
            path = grid_path(folder, model_name, method)
            _sync(lm.device)
            t0 = time.perf_counter()
            written = _grid_method(lm, model_name, method, grids, k, path, settings,
                                   s["grid_batch"], progress, keep=computed)
            _sync(lm.device)
            _record_time(folder, model_name, method, time.perf_counter() - t0, written,
                         lm.device)
        if s["example"]:
            _save_example(example_path(folder, model_name), lm, grids, methods, s, side,
                          computed)
        del lm, grids
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


# ========================================================================================
# the paper's pointing game
# ========================================================================================
def _check_paper_inputs(s: Mapping[str, Any]) -> dict[str, Any]:
    """Open every dataset and find every checkpoint first: fail before computing anything."""
    from ..datasets import checkpoint_path, pointing_dataset

    datasets = {}
    for kind in s["datasets"]:
        datasets[kind] = pointing_dataset(kind)  # MissingDataError says what goes where
        for arch in s["models"]:
            checkpoint_path(arch, kind)  # MissingDataError names file, URL and folders
    return datasets


def _run_paper(s: dict[str, Any], folder: Path, device, progress: bool) -> None:
    from ..metrics import pointing_game_run
    from ..models import resolve_device

    dev = resolve_device(device)
    datasets = _check_paper_inputs(s)
    for kind, ds in datasets.items():
        for arch in s["models"]:
            for method in s["methods"]:
                pointing_game_run(arch, ds, method, path=_paper_path(folder, kind, arch, method),
                                  limit=s["limit"], device=dev, progress=progress,
                                  **s["method_settings"].get(method, {}))


# ========================================================================================
# entry point
# ========================================================================================
def run(
    profile: str | Mapping[str, Any] = "offline",
    results: str | os.PathLike | None = None,
    device: str | torch.device = "auto",
    progress: bool = True,
    **overrides: Any,
):
    """Run the pointing-game experiment of ``profile`` and return all its rows (DataFrame).

    ``grid`` task (``ci``/``offline``): one CSV per (model, method) under
    ``<results>/pointing/grid_<model>/`` with one row per (grid, cell): ``model, method,
    image=grid<n>, target`` (the cell's class), ``cell``, ``source`` (index of the cell's
    image among the candidates), ``confidence``, ``share``, ``hit``, ``settings``. A (model,
    method) whose file already covers its grids is not recomputed; if every method of a
    model is complete the model is not even loaded.

    ``pointing_game`` task (``paper``): one CSV per (dataset, model, method) with one row per
    (image, class) (see :func:`cameras.metrics.pointing_game_run`).
    """
    s = resolve_settings(profile, **overrides)
    folder = results_folder(s, results)
    if s["task"] == "grid":
        from ..models import resolve_device

        _run_grid(s, folder, resolve_device(device), progress)
    else:
        _run_paper(s, folder, device, progress)
    return load_results(s, results)


def _resolved(profile) -> dict[str, Any]:
    if isinstance(profile, Mapping) and "task" in profile and "profile" in profile:
        return dict(profile)
    return resolve_settings(profile)


def load_results(profile: str | Mapping[str, Any] = "offline",
                 results: str | os.PathLike | None = None):
    """The rows written so far for the models and methods of ``profile`` (a DataFrame)."""
    import pandas as pd

    from ..runs import read_results

    s = _resolved(profile)
    folder = results_folder(s, results)
    frames = []
    if s["task"] == "grid":
        for model in s["models"]:
            for method in methods_for(s, model):
                p = grid_path(folder, model, method)
                if p.exists():
                    df = read_results(p)
                    k = min(s["n_grids"], s["method_grids"].get(method, s["n_grids"]))
                    keep = {f"grid{n:05d}" for n in range(k)}
                    frames.append(df[df["image"].isin(keep)])
    else:
        for kind in s["datasets"]:
            for arch in s["models"]:
                for method in s["methods"]:
                    p = _paper_path(folder, kind, arch, method)
                    if p.exists():
                        frames.append(read_results(p))
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True)


# ========================================================================================
# tables
# ========================================================================================
def _settings_note(method: str, settings: Mapping[str, Any] | None) -> str:
    if not settings:
        return ""
    if method == "cameras":
        sz = settings.get("sizes", [])
        return f"sizes {sz[0]}..{sz[-1]} ({len(sz)})" if len(sz) > 1 else f"size {sz}"
    if method == "rise":
        return f"{settings.get('num_masks')} masks, {settings.get('num_cells')} cells"
    if method == "extremal_perturbation":
        return f"{settings.get('max_iter')} iterations, areas {settings.get('areas')}"
    if method in ("excitation_backprop", "contrastive_excitation_backprop") and \
            settings.get("strict") is False:
        return "strict=False (rules' assumptions violated)"
    if "smooth" in settings:
        return f"smooth {settings['smooth']}"
    return ""


def _wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return math.nan, math.nan
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    # the interval contains p; at p = 0 or 1 one end equals p, which rounding can push past it
    return min(c - h, p), max(c + h, p)


def summary(rows):
    """One row per (model, method) of grid pointing-game rows.

    Columns: ``model, method, grids, maps, mean_share`` (%), ``share_sem`` (standard error,
    %), ``hit_rate`` (%), ``hit_lo``/``hit_hi`` (95 % Wilson interval, %), ``settings`` (the
    method's cost-relevant settings, e.g. RISE masks).
    """
    import pandas as pd

    if rows is None or len(rows) == 0:
        return pd.DataFrame(columns=["model", "method", "grids", "maps", "mean_share",
                                     "share_sem", "hit_rate", "hit_lo", "hit_hi", "settings"])
    order = {m: i for i, m in enumerate(_ALL_METHODS)}
    out = []
    for (model, method), g in rows.groupby(["model", "method"], sort=False):
        share = g["share"].to_numpy(dtype=float)
        hit = g["hit"].to_numpy(dtype=int)
        lo, hi = _wilson(int(hit.sum()), len(hit))
        st = g["settings"].iloc[0] if "settings" in g.columns else None
        out.append({
            "model": model, "method": method, "grids": int(g["image"].nunique()),
            "maps": len(g), "mean_share": 100 * share.mean(),
            "share_sem": 100 * share.std(ddof=1) / math.sqrt(len(share)) if len(share) > 1 else math.nan,
            "hit_rate": 100 * hit.mean(), "hit_lo": 100 * lo, "hit_hi": 100 * hi,
            "settings": _settings_note(method, st if isinstance(st, Mapping) else None),
        })
    df = pd.DataFrame(out)
    df["_o"] = df["method"].map(lambda m: order.get(m, len(order)))
    mo = {m: i for i, m in enumerate(MODEL_NAMES)}
    df["_m"] = df["model"].map(lambda m: mo.get(m, len(mo)))
    return df.sort_values(["_m", "_o"]).drop(columns=["_o", "_m"]).reset_index(drop=True)


def summary_table(rows, decimals: int = 1):
    """The offline table as printed in the chapter: methods x (model: share, hit rate)."""
    import pandas as pd

    sm = summary(rows)
    if sm.empty:
        return pd.DataFrame()
    sm = sm.assign(method=sm["method"].map(lambda m: METHOD_NAMES.get(m, m)),
                   model=sm["model"].map(lambda m: MODEL_NAMES.get(m, m)))
    wide = sm.pivot_table(index="method", columns="model", values=["mean_share", "hit_rate"],
                          sort=False)
    wide = wide.swaplevel(0, 1, axis=1)
    models = list(dict.fromkeys(sm["model"]))
    cols = [(m, v) for m in models for v in ("mean_share", "hit_rate") if (m, v) in wide.columns]
    wide = wide[cols].round(decimals)
    wide.columns = pd.MultiIndex.from_tuples(
        [(m, "share in cell (%)" if v == "mean_share" else "max in cell (%)") for m, v in cols])
    order = list(dict.fromkeys(sm["method"]))
    wide = wide.reindex(order)
    wide.index.name = "ours (grid pointing game)"
    return wide


def paper_table():
    """TorchRay's published pointing-game table (:data:`PAPER_TABLE1`) as a DataFrame (%).

    The index is the method (the paper's wording), the columns ``(dataset, model, subset)``.
    """
    import pandas as pd

    cols = pd.MultiIndex.from_tuples(PAPER_TABLE1["columns"])
    df = pd.DataFrame.from_dict(PAPER_TABLE1["rows"], orient="index", columns=cols)
    df.index = [METHOD_NAMES.get(m, m) for m in df.index]
    df.index.name = "paper (reported): TorchRay benchmark"
    return df


def paper_summary(rows):
    """Our results of the ``paper`` profile in the layout of :func:`paper_table` (%)."""
    import pandas as pd

    from ..metrics import pointing_game_summary

    if rows is None or len(rows) == 0:
        return pd.DataFrame()
    recs = []
    for kind, g in rows.groupby("dataset"):
        for r in pointing_game_summary(g, by=("model", "method")):
            recs.append({"dataset": kind, **r})
    df = pd.DataFrame(recs)
    label = {"voc07": "VOC07 test", "coco14": "COCO14 val"}
    arch = {"vgg16": "VGG16", "resnet50": "ResNet50"}
    data = {}
    for r in recs:
        a = r["model"].split("_")[0]
        for sub, key in (("All", "all"), ("Diff", "difficult")):
            col = (label.get(r["dataset"], r["dataset"]), arch.get(a, a), sub)
            data.setdefault(col, {})[METHOD_NAMES.get(r["method"], r["method"])] = 100 * r[key]
    out = pd.DataFrame(data)
    out.columns = pd.MultiIndex.from_tuples(out.columns)
    out.index.name = "ours (paper protocol)"
    del df
    return out


def example_figure(profile, model: str, results: str | os.PathLike | None = None, *,
                   ncols: int = 8, cell_size: float = 1.55, alpha: float = 0.5):
    """The saved example of one model: the grid, then each method's map for the class of the
    top-left cell (framed in white), ``ncols`` panels per row. ``None`` if nothing is saved."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    from ..data import imagenet_classes
    from ..viz import overlay

    s = _resolved(profile)
    ex = load_example(s, model, results)
    if ex is None:
        return None
    image, labels, maps = ex
    methods = [m for m in s["methods"] if m in maps] + [m for m in maps if m not in s["methods"]]
    panels = [("grid", None)] + [(METHOD_NAMES.get(m, m), maps[m]) for m in methods]
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(cell_size * ncols, cell_size * nrows + 0.35))
    axes = np.atleast_2d(fig.subplots(nrows, ncols, squeeze=False))
    h, w = image.shape[:2]
    for ax, (title, m) in zip(axes.flat, panels, strict=False):
        ax.imshow(image if m is None else overlay(image, m, alpha=alpha))
        ax.add_patch(Rectangle((-0.5, -0.5), w / 2, h / 2, fill=False, edgecolor="white", lw=1.5))
        ax.set_title(title, fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        if not ax.images:
            ax.set_axis_off()
    cls = imagenet_classes()
    fig.suptitle(f"{MODEL_NAMES.get(model, model)}: maps for '{cls[int(labels[0])]}' (top-left "
                 f"cell; others: {', '.join(cls[int(c)] for c in labels[1:])})", fontsize=8)
    fig.tight_layout()
    return fig

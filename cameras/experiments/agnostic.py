r"""Chapter 9: input-agnostic saliency (Akhtar & Jalwana, AAAI 2023), as we read it.

Tables (``<results>/agnostic/``): ``fidelity_<model>``, the maps of ``classes`` and their fidelity
against controls (:func:`cameras.agnostic.fidelity`); ``cameras_<model>``, the CAMERAS map of the
sample's image of each class; ``sanity``, cascading randomisation
(:func:`cameras.agnostic.randomization_check`); ``backdoor``, a clean and a poisoned digits CNN per
trial (:func:`cameras.backdoor.run_trial`); ``backdoor_imagenet`` (``paper``, GPU:
:func:`cameras.backdoor.imagenet_trial`). Profiles: ``ci`` (Lite0, two classes at 64 px: seconds),
``offline`` (Lite0/1/2, twelve classes, 2-core CPU, committed), ``paper`` (adds ResNet-50 and
DenseNet-121, more samples, steps and trials).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import product
from typing import Any

import numpy as np
import pandas as pd
import torch

from .. import agnostic as A
from .. import backdoor as BD
from .. import plots as P
from ..core import Cameras
from ..data import find_class, image_items
from ..engine import Check, Context, Experiment, Table, Unit
from ..images import model_view

__all__ = ["AgnosticExperiment", "EXPERIMENT", "PROFILES", "CLASSES", "run", "settings", "photo",
           "plot_pairs", "plot_fidelity", "plot_sanity", "plot_backdoor_maps", "plot_backdoor_scores"]

#: a dozen ImageNet classes a reader recognises (index: torchvision name)
CLASSES = [1, 11, 130, 207, 281, 323, 340, 417, 779, 947, 954, 980]
_LITE = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
_table = Table.parse  # "key columns | the other columns"


def _map(n, steps, size, norm, radius, refine, refine_size=0.25, **kw) -> dict[str, Any]:  # AgnosticConfig
    return {"n_samples": n, "n_steps": steps, "step_size": size, "norm": norm, "radius": radius,
            "refine_steps": refine, "refine_step_size": refine_size, **kw}


class AgnosticExperiment(Experiment):
    name = "agnostic"
    base = {
        "models": _LITE, "classes": CLASSES, "image_size": None,  # None: each model's input size
        "agnostic": _map(8, 8, 0.02, "inf", 0.25, 20), "batch_size": 16, "n_real": 40, "n_noise": 40,
        "eval_seed": 1, "cameras_sizes": 4, "sanity_model": "efficientnet_lite0", "sanity_classes": [281, 954],
        "sanity_depths": [0, 1, 3, 8, 21], "backdoor_trials": 20, "backdoor_size": 16, "backdoor_epochs": 15,
        "backdoor_fraction": 0.1, "backdoor_patterns": ["square", "checker", "cross"],
        "backdoor_trigger_sizes": [3, 4], "backdoor_distributions": ["lowres", "uniform"],
        "backdoor_agnostic": _map(32, 20, 0.02, "2", 1.0, 20, lowres_factor=4),
        "window": 4, "anomaly_threshold": 2.0, "imagenet_backdoor_trials": 0,
        "imagenet_backdoor": {"fraction": 0.1, "epochs": 5, "lr": 1e-3, "trigger_size": 24, "classes": 10},
    }
    profiles = {
        "ci": {"models": ["efficientnet_lite0"], "classes": [1, 281], "image_size": 64,
               "agnostic": _map(2, 2, 0.02, "inf", 0.25, 2), "batch_size": 8, "n_real": 4, "n_noise": 4,
               "cameras_sizes": 2, "sanity_classes": [281], "sanity_depths": [0, 1], "backdoor_trials": 1,
               "backdoor_epochs": 2, "backdoor_distributions": ["lowres"],
               "backdoor_agnostic": _map(4, 3, 0.05, "2", 1.0, 3, lowres_factor=4)},
        "offline": {},
        # torchvision models need their ImageNet weights (downloaded on first use; without
        # them load_model fails before anything is computed, naming the file)
        "paper": {"models": ["resnet50", "densenet121", *_LITE], "agnostic": _map(64, 20, 0.02, "inf", 0.25, 200, 0.1),
                  "n_real": 999, "n_noise": 500, "cameras_sizes": 7, "backdoor_trials": 100,
                  "sanity_depths": [0, 1, 2, 3, 5, 8, 12, 16, 21], "imagenet_backdoor_trials": 5},
    }
    schema = {
        "models": Check.listof(Check.model), "sanity_model": Check.model,
        **dict.fromkeys(["classes", "sanity_classes"], lambda v, k: [find_class(c) for c in Check.listof(Check.any)(v, k)]),
        **dict.fromkeys(["agnostic", "backdoor_agnostic"], lambda v, k: A.AgnosticConfig.validated(Check.mapping(v, k), k)),
        "image_size": lambda v, k: None if v is None else Check.int(v, k, low=16),
        **dict.fromkeys(["batch_size", "n_real", "n_noise", "backdoor_epochs", "window"], Check.positive),
        **dict.fromkeys(["eval_seed", "seed", "cameras_sizes", "backdoor_trials", "imagenet_backdoor_trials"],
                        Check.natural),
        "sanity_depths": Check.listof(Check.natural), "backdoor_size": Check.size,
        "backdoor_fraction": Check.fraction, "backdoor_patterns": Check.listof(Check.choice(*BD.PATTERNS)),
        "backdoor_trigger_sizes": Check.listof(Check.positive), "anomaly_threshold": Check.number,
        "backdoor_distributions": Check.listof(Check.choice(*A.DISTRIBUTIONS)), "imagenet_backdoor": Check.mapping,
    }
    tables = {  # key columns | the other columns, in file order
        "fidelity": _table("model target control data | map_class n rate p_target p_refined norm_value map_seconds"),
        "cameras": _table("model target | image top1 p_label seconds"),
        "sanity": _table("model target depth | block spearman ssim rate_noise p_noise seconds"),
        "backdoor": _table("trial kind distribution class | seed target pattern trigger_size row col clean_accuracy "
                           "attack_success trigger_mass peak_window peak_row peak_col anomaly flagged train_seconds "
                           "map_seconds", strings=("kind", "distribution", "pattern")),
        "imagenet_backdoor": _table("trial class | target clean_accuracy attack_success trigger_mass peak_window "
                                    "anomaly flagged seconds"),
    }
    merged = ()
    _identity = {  # the settings that define the rows of each file (by the start of its name)
        "fidelity": "agnostic image_size classes n_real n_noise eval_seed seed",
        "cameras": "image_size cameras_sizes", "sanity": "agnostic image_size n_noise eval_seed seed",
        "backdoor_imagenet": "agnostic imagenet_backdoor window anomaly_threshold seed",
        "backdoor": "backdoor_size backdoor_epochs backdoor_fraction backdoor_patterns backdoor_trigger_sizes "
                    "backdoor_agnostic window anomaly_threshold seed"}

    def validate(self, s: dict[str, Any]) -> None:
        if s["backdoor_size"] % 4 or max(s["backdoor_trigger_sizes"]) > s["backdoor_size"] // 2:
            raise ValueError(f"backdoor_size must be divisible by 4 and backdoor_trigger_sizes fit in a quarter of "
                             f"the image, got {s['backdoor_size']} and {s['backdoor_trigger_sizes']}")
        if len(s["classes"]) < 2:
            raise ValueError("classes needs at least two classes (the 'other' control)")

    def identity_of(self, s: Mapping[str, Any], file: str) -> dict[str, Any]:
        return {k: s[k] for k in next(v for k, v in self._identity.items() if file.startswith(k)).split()}

    def units(self, s: Mapping[str, Any]) -> Iterable[Unit]:
        cs, sm, ms = s["classes"], s["sanity_model"], s["models"]
        for m in ms:
            yield Unit(f"fidelity_{m}.csv", list(product([m], cs, A.CONTROLS, ("noise", "real"))), m, table="fidelity")
        yield from (Unit(f"cameras_{m}.csv", list(product([m], cs)), m, table="cameras") for m in ms if s["cameras_sizes"])
        if s["sanity_depths"]:
            yield Unit("sanity.csv", list(product([sm], s["sanity_classes"], s["sanity_depths"])), sm, table="sanity")
        for i in range(s["backdoor_trials"]):
            yield Unit("backdoor.csv", list(product([i], ("clean", "poisoned"), s["backdoor_distributions"], range(10))),
                       table="backdoor", data=i)
        for i in range(s["imagenet_backdoor_trials"]):
            yield Unit("backdoor_imagenet.csv", list(product([i], range(s["imagenet_backdoor"].get("classes", 10)))),
                       "efficientnet_lite0", table="imagenet_backdoor", data=i)

    def meta(self, ctx: Context, file: str) -> dict[str, Any]:
        return {"method": A.CITATION, "reading": "cameras.agnostic (our reading of the abstract)"}

    def compute(self, ctx: Context, unit: Unit) -> list[dict[str, Any]]:
        return _COMPUTE[unit.table](ctx, unit)

    def load(self, s: Mapping[str, Any], results=None) -> dict[str, pd.DataFrame]:  # {table: rows}
        return {t: self.rows(s, results, list(self.units(s)), table=t) for t in self.tables}


# -- the units: each computes with the library and stores its maps ---------------------------
def _shape(s: Mapping[str, Any], lm) -> tuple[int, int, int]:
    return (3, s["image_size"] or lm.input_size, s["image_size"] or lm.input_size)


def _out(ctx: Context, where: tuple[str, str], maps: Mapping[str, Any], rows: list[dict], **key: Any) -> list[dict]:
    """Store ``maps`` (8-bit) under ``where``; return the ``rows`` with the ``key`` columns added."""
    ctx.maps.write(where, {k: ctx.maps.quantise(v) for k, v in maps.items()})
    return [{**key, **r} for r in rows]


def _fidelity(ctx: Context, unit: Unit) -> list[dict[str, Any]]:
    s, lm = ctx.settings, ctx.model(unit.model)
    shape, classes, c = _shape(s, lm), list(s["classes"]), A.AgnosticConfig(**s["agnostic"])
    maps, last, seconds = A.class_maps(lm.model, classes, shape, lm.mean, lm.std, c, seed=s["seed"],
                                       batch_size=s["batch_size"], progress=ctx.progress)
    data = {"noise": (A.fresh_samples(c, s["n_noise"], shape, s["eval_seed"]), torch.full((s["n_noise"],), -1)),
            "real": A.pixel_images(lm, image_items("imagenet_sample", n=s["n_real"]), shape[1])}
    rows = A.fidelity(lm.model, maps, classes, data, lm.mean, lm.std, c.norm, c.radius, seed=s["eval_seed"],
                      batch_size=s["batch_size"])
    return _out(ctx, (unit.model, "agnostic"), {str(t): A.visualize(m) for t, m in zip(classes, maps, strict=True)},
                [{**r, "p_refined": float(last[classes.index(r["target"])]), "map_seconds": seconds} for r in rows],
                model=unit.model)


def _cameras(ctx: Context, unit: Unit) -> list[dict[str, Any]]:
    s, lm = ctx.settings, ctx.model(unit.model)
    size = _shape(s, lm)[1]
    cam = Cameras(lm.model, layer=lm.layer, sizes=[size + 100 * i for i in range(s["cameras_sizes"])], progress=False)
    sd, mean = torch.tensor(lm.std).view(1, -1, 1, 1), torch.tensor(lm.mean).view(1, -1, 1, 1)
    rows, maps = [], {}
    for it in image_items("imagenet_sample", classes=list(s["classes"])):
        x = lm.preprocess(it.path, size=size)[None].to(lm.device)
        with ctx.timer() as tm:
            maps[str(it.label)] = cam(x, [it.label])[0]
        p = A.probabilities(lm.model, x.cpu() * sd + mean, lm.mean, lm.std, 1)[0]
        rows.append({"model": unit.model, "target": it.label, "image": it.name, "top1": int(p.argmax()),
                     "p_label": float(p[it.label]), "seconds": tm["seconds"]})
    return _out(ctx, (unit.model, "cameras"), maps, rows)


def _sanity(ctx: Context, unit: Unit) -> list[dict[str, Any]]:
    s, lm = ctx.settings, ctx.model(unit.model)
    shape, c = _shape(s, lm), A.AgnosticConfig(**s["agnostic"])
    rows, maps = A.randomization_check(lm.model, s["sanity_classes"], shape, lm.mean, lm.std, c, s["sanity_depths"],
                                       A.fresh_samples(c, s["n_noise"], shape, s["eval_seed"]), seed=s["seed"],
                                       batch_size=s["batch_size"], progress=ctx.progress)
    return _out(ctx, (unit.model, "sanity"), maps, rows, model=unit.model)


def _backdoor(ctx: Context, unit: Unit) -> list[dict[str, Any]]:
    s = ctx.settings
    plan = BD.trial_plan(s["seed"], unit.data, s["backdoor_size"], s["backdoor_patterns"], s["backdoor_trigger_sizes"])
    rows, maps = BD.run_trial(plan, s["backdoor_agnostic"], s["backdoor_size"], s["backdoor_epochs"],
                              s["backdoor_fraction"], s["backdoor_distributions"], s["window"], s["anomaly_threshold"])
    return _out(ctx, ("backdoor", f"trial{unit.data}"), maps, rows, trial=unit.data)


def _imagenet_backdoor(ctx: Context, unit: Unit) -> list[dict[str, Any]]:
    s, lm = ctx.settings, ctx.model(unit.model)
    x01, labels = A.pixel_images(lm, image_items("imagenet_sample"), _shape(s, lm)[1])
    return [{"trial": unit.data, **r} for r in BD.imagenet_trial(
        lm, x01, labels, unit.data, A.AgnosticConfig(**s["agnostic"]), seed=s["seed"], threshold=s["anomaly_threshold"],
        batch_size=s["batch_size"], progress=ctx.progress, **s["imagenet_backdoor"])]


#: the unit function of each table
_COMPUTE = {"fidelity": _fidelity, "cameras": _cameras, "sanity": _sanity, "backdoor": _backdoor,
            "imagenet_backdoor": _imagenet_backdoor}


# -- module-level API (the notebook and `python -m cameras.experiments agnostic`) ----------
EXPERIMENT = AgnosticExperiment()
PROFILES, settings, run = EXPERIMENT.PROFILES, EXPERIMENT.settings, EXPERIMENT.run


# -- figures (cameras.plots; the library draws its own rows: fidelity, randomisation, backdoor) --
plot_fidelity, plot_sanity = A.plot_fidelity, A.plot_randomization
plot_backdoor_maps, plot_backdoor_scores = BD.plot_trial, BD.plot_scores


def photo(model: str, cls: int) -> np.ndarray:
    """The sample's image of class ``cls`` as ``model`` sees it (resize, center crop), uint8."""
    return model_view(model, image_items("imagenet_sample", classes=[cls])[0].path)


def plot_pairs(model: str, classes: Sequence[int], agnostic_maps: Mapping[str, np.ndarray],
               cameras_maps: Mapping[str, np.ndarray]):
    """Per class (two per line): its photo with its CAMERAS map, and its input-agnostic map (Eq. 6)."""
    panels = []
    for c in classes:
        cam = P.stored_map(cameras_maps.get(str(c)))
        name, agn = P.class_label(c), P.stored_map(agnostic_maps.get(str(c)))
        panels += [P.Panel(map=cam, image=photo(model, c), title=f"{name}\nCAMERAS (this photo)",
                           note="" if cam is not None else "CAMERAS not run"),
                   P.Panel(image=agn, title=f"{name}\ninput-agnostic")]
    return P.map_grid([panels], colorbar="CAMERAS map")

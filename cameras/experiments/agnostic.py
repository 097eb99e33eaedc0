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

import re
from collections.abc import Iterable, Mapping, Sequence
from itertools import product
from typing import Any

import numpy as np
import pandas as pd
import torch
import torchvision.transforms.functional as TF
from matplotlib.patches import Rectangle

from .. import agnostic as A
from .. import backdoor as BD
from .. import plots as P
from ..core import Cameras
from ..data import find_class, image_items, imagenet_classes
from ..engine import Check, Context, Experiment, MapStore, Table, Unit
from ..images import load_image
from ..models import get_spec

__all__ = ["AgnosticExperiment", "EXPERIMENT", "PROFILES", "CLASSES", "run", "settings", "photo",
           "plot_pairs", "plot_fidelity", "plot_sanity", "plot_backdoor_maps", "plot_backdoor_scores"]

#: a dozen ImageNet classes a reader recognises (index: torchvision name)
CLASSES = [1, 11, 130, 207, 281, 323, 340, 417, 779, 947, 954, 980]
_LITE = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]


def _map(n, steps, size, norm, radius, refine, refine_size=0.25, **kw) -> dict[str, Any]:  # AgnosticConfig
    return {"n_samples": n, "n_steps": steps, "step_size": size, "norm": norm, "radius": radius,
            "refine_steps": refine, "refine_step_size": refine_size, **kw}


def _table(spec: str, strings: tuple[str, ...] | None = None) -> Table:
    key, rest = spec.split("|")
    return Table(tuple(key.split()), tuple(key.split() + rest.split()), strings)


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
        return globals()[f"_{unit.table}"](ctx, unit)

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


# -- module-level API (the notebook and `python -m cameras.experiments agnostic`) ----------
EXPERIMENT = AgnosticExperiment()
PROFILES = EXPERIMENT.PROFILES
settings, run = EXPERIMENT.settings, EXPERIMENT.run


# -- figures (cameras.plots) -----------------------------------------------------------------
def _name(c: int, n: int = 18) -> str:
    name = imagenet_classes()[int(c)]
    return name if len(name) <= n else name[: n - 1] + "…"


def _deq(a: np.ndarray | None) -> np.ndarray | None:
    return None if a is None else MapStore.dequantise(a)


def photo(model: str, cls: int) -> np.ndarray:
    """The sample's image of class ``cls`` as ``model`` sees it (resize, center crop), uint8."""
    spec = get_spec(model)
    img = TF.resize(load_image(image_items("imagenet_sample", classes=[cls])[0].path), spec.resize_size, antialias=True)
    return np.asarray(TF.center_crop(img, [spec.input_size, spec.input_size]))


def plot_pairs(model: str, classes: Sequence[int], agnostic_maps: Mapping[str, np.ndarray],
               cameras_maps: Mapping[str, np.ndarray]):
    """Per class (two per line): its photo with its CAMERAS map, and its input-agnostic map (Eq. 6)."""
    panels = []
    for c in classes:
        cam = _deq(cameras_maps.get(str(c)))
        panels += [P.Panel(map=cam, image=photo(model, c), title=f"{_name(c)}\nCAMERAS (this photo)",
                           note="" if cam is not None else "CAMERAS not run"),
                   P.Panel(image=_deq(agnostic_maps.get(str(c))), title=f"{_name(c)}\ninput-agnostic")]
    return P.map_grid([panels], colorbar="CAMERAS map")


def plot_fidelity(fid, controls: Sequence[str] = ("map", "other", "random", "none")):
    """Mean target probability per class (log scale), a colour per control (drawn in the order of ``controls``)."""
    d = fid[fid["control"].isin(controls)].sort_values("control", key=lambda c: c.map(list(controls).index), kind="stable")
    d = d.assign(cls=d["target"].map(lambda c: _name(c, 10)), control=d["control"].map(A.CONTROL_NAMES),
                 p=d["p_target"].clip(lower=1e-7), where=d["model"].map(P.model_label) + ": "
                 + d["data"].map(A.DATA_NAMES))
    fig = P.scatter_chart(d, x="cls", y="p", hue="control", panel="where", xlabel="class", ylabel="mean P(target)",
                          ncols=2, height_px=250)
    for ax in fig.axes:
        ax.set(yscale="log", ylim=(1e-7, 1.5))
        ax.tick_params(axis="x", rotation=60)
    return fig


def plot_sanity(san, maps: Mapping[str, np.ndarray]):
    """Per class its maps as more blocks are random, their similarity to the intact one and P(target) on noise."""
    rows, names = [], []
    for c, g in san.sort_values("depth", kind="stable").groupby("target", sort=False):
        names.append(_name(c, 14))
        rows.append([P.Panel(image=_deq(maps.get(f"{c}_{r.depth}")),
                             title="intact" if r.depth == 0 else f"{r.depth} block{'s' if r.depth > 1 else ''} random",
                             note=f"Spearman {r.spearman:.2f}, SSIM {r.ssim:.2f}\nP(target) {r.p_noise:.1e}")
                     for r in g.itertuples()])
    return P.map_grid(rows, row_titles=names, colorbar=False)


def plot_backdoor_maps(bd, maps: Mapping[str, np.ndarray], trial: int, distribution: str, S: int = 16):
    """One trial: test image and class maps per model; trigger outlined, attacked class in red, a: anomaly index."""
    g = bd[(bd["trial"] == trial) & (bd["distribution"] == distribution)]
    r0, rows = g.iloc[0], []
    tr = BD.Trigger(str(r0["pattern"]), int(r0["trigger_size"]), int(r0["row"]), int(r0["col"]))
    x = BD.digits(S, seed=int(r0["seed"])).x_test
    for k, kind in enumerate(("poisoned", "clean")):
        m, h = maps.get(f"{kind}_{distribution}"), g[g["kind"] == kind].set_index("class")
        img = tr.stamp(x[0])[0] if k == 0 else x[1, 0]
        rows.append([P.Panel(image=img.numpy(), title="with trigger" if k == 0 else "clean image",
                             note=f"attack success {100 * h['attack_success'].iloc[0]:.0f} %")]
                    + [P.Panel(map=None if m is None else _deq(m[c]), title=f"{c}: a={h.loc[c, 'anomaly']:.1f}")
                       for c in range(10)])
    fig = P.map_grid(rows, row_titles=["poisoned model", "clean model"], cmap="magma", colorbar="map magnitude m")
    for ax in fig.axes:
        if (hit := re.match(r"(\d+): a=", ax.get_title())) is not None:
            ax.add_patch(Rectangle((tr.col - 0.5, tr.row - 0.5), tr.size, tr.size, fill=False, ec="c", lw=1.5))
            ax.title.set_color("r" if int(hit.group(1)) == int(r0["target"]) else "k")
    return fig


def plot_backdoor_scores(bd, threshold: float):
    """Anomaly index (clipped at 30) against trigger mass, :func:`cameras.backdoor.score_series`."""
    d = BD.score_series(bd)
    d = d.assign(anomaly=d["anomaly"].clip(upper=30), where=d["distribution"] + " samples")
    fig = P.scatter_chart(d, x="anomaly", y="mass", hue="series", panel="where", xlabel="anomaly index",
                          ylabel="map mass in trigger region", ncols=2, height_px=300)
    for ax in fig.axes:
        ax.axvline(threshold, ls="--", color="k", lw=0.8)
    return fig

r"""Chapter 9: input-agnostic saliency (Akhtar & Jalwana, AAAI 2023), as we read it.

Four parts, each a table of results files under ``<results>/agnostic/`` (``results/_ci/agnostic``
for the ``ci`` profile):

* **maps and fidelity** (``fidelity_<model>.csv``, one unit per model): the input-agnostic map
  :math:`\rho_t` of every class :math:`t` of ``classes`` (:func:`cameras.agnostic.InputAgnostic`,
  settings ``agnostic``), then its *fidelity*: :math:`\rho_t` is added (at the projection's
  norm bound) to ``n_noise`` fresh samples of the map's distribution and to ``n_real`` images of
  the ImageNet sample (not of class :math:`t`), and we count how often the top-1 becomes
  :math:`t` (targeting rate) and the mean probability of :math:`t`. Controls, same images:
  no map (``none``), a Gaussian-direction map on the same :math:`\ell_p` sphere (``random``),
  the map's own values shuffled (``shuffled``: same histogram, so same every norm) and the map
  of the next class of the list (``other``). The maps are stored (8-bit, as
  :func:`~cameras.agnostic.visualize` shows them) for the figures.
* **CAMERAS** (``cameras_<model>.csv``): the CAMERAS map of the sample's image of each class
  (the sample has one image per class, so the class average is that image's map), for the
  input-specific vs input-agnostic figure; sizes from the model's native input in 100 px
  steps (``cameras_sizes`` of them).
* **sanity** (``sanity.csv``): cascading randomisation (Adebayo et al. 2018) of
  ``sanity_model`` from the logits down (:func:`cameras.sanity.cascade_blocks`), the maps of
  ``sanity_classes`` recomputed at ``sanity_depths`` and compared with the intact model's:
  Spearman correlation of the magnitude maps, SSIM, and the maps' fidelity on noise.
* **backdoor** (``backdoor.csv``, one unit per trial): a small CNN on scikit-learn's digits
  (:mod:`cameras.backdoor`), trained clean and with a BadNets trigger (pattern, size, corner
  and attacked class drawn per trial from the trial's seed); the input-agnostic map of every
  class of both models, for each distribution of ``backdoor_distributions``; per class the
  share of the map's mass in the trigger region, the peak ``window x window`` share and its
  anomaly index over the classes. A model is *flagged* when its largest anomaly index exceeds
  ``anomaly_threshold``; a detection is a flag of the attacked class on the poisoned model.

Profiles: ``ci`` (EfficientNet-Lite0, two classes at 64 px, tiny settings: seconds), ``offline``
(EfficientNet-Lite0/1/2, twelve classes, computed on a 2-core CPU and committed), ``paper``
(adds torchvision ResNet-50 and DenseNet-121, more samples and steps, all other images of the
sample, 100 backdoor trials; for a GPU). The ``paper`` profile also runs
``imagenet_backdoor_trials`` fine-tunings of
EfficientNet-Lite0 on the ImageNet sample with a trigger
(:func:`cameras.backdoor.finetune_backdoor`, ``backdoor_imagenet.csv``): meant for a GPU, not
run on the CPU profiles.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .. import agnostic as A
from .. import backdoor as BD
from ..engine import Check, Context, Experiment, Table, Unit

__all__ = ["AgnosticExperiment", "EXPERIMENT", "PROFILES", "CONTROLS", "CLASSES", "run", "load",
           "settings", "trial_plan", "fidelity_table", "detection_table", "summary_rates"]

#: a dozen ImageNet classes a reader recognises (index: torchvision name)
CLASSES = [1, 11, 130, 207, 281, 323, 340, 417, 779, 947, 954, 980]
#: the maps each fidelity row adds: none, the class's map, its controls
CONTROLS = ("none", "map", "random", "shuffled", "other")

_MAP_KEYS = tuple(A.AgnosticConfig.names())


def _agnostic(v: Any, key: str) -> dict:
    d = Check.mapping(v, key)
    unknown = sorted(set(d) - set(_MAP_KEYS))
    if unknown:
        raise ValueError(f"{key}: unknown setting(s) {', '.join(unknown)}; valid: {', '.join(_MAP_KEYS)}")
    return A.AgnosticConfig(**d).as_dict()


def _classes(v: Any, key: str) -> list[int]:
    from ..data import find_class

    return [find_class(c) for c in Check.listof(Check.any)(v, key)]


def _size(v: Any, key: str) -> int | None:
    return None if v is None else Check.int(v, key, low=16)


class AgnosticExperiment(Experiment):
    name = "agnostic"
    base = {
        "models": ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"],
        "classes": CLASSES,
        "image_size": None,  # None: each model's native input size
        "agnostic": {"n_samples": 8, "n_steps": 8, "step_size": 0.02, "norm": "inf", "radius": 0.25,
                     "refine_steps": 20, "refine_step_size": 0.25},
        "batch_size": 16,
        "n_real": 40,
        "n_noise": 40,
        "eval_seed": 1,
        "cameras_sizes": 4,
        "sanity_model": "efficientnet_lite0",
        "sanity_classes": [281, 954],
        "sanity_depths": [0, 1, 3, 8, 21],
        "backdoor_trials": 20,
        "backdoor_size": 16,
        "backdoor_epochs": 15,
        "backdoor_fraction": 0.1,
        "backdoor_patterns": ["square", "checker", "cross"],
        "backdoor_trigger_sizes": [3, 4],
        "backdoor_distributions": ["lowres", "uniform"],
        "backdoor_agnostic": {"n_samples": 32, "n_steps": 20, "step_size": 0.02, "norm": "2", "radius": 1.0,
                              "refine_steps": 20, "refine_step_size": 0.25, "lowres_factor": 4},
        "window": 4,
        "anomaly_threshold": 2.0,
        "imagenet_backdoor_trials": 0,
        "imagenet_backdoor": {"fraction": 0.1, "epochs": 5, "lr": 1e-3, "trigger_size": 24,
                              "classes": 10},
    }
    profiles = {
        "ci": {
            "models": ["efficientnet_lite0"], "classes": [1, 281], "image_size": 64,
            "agnostic": {"n_samples": 2, "n_steps": 2, "step_size": 0.02, "norm": "inf", "radius": 0.25,
                         "refine_steps": 2, "refine_step_size": 0.25},
            "batch_size": 8, "n_real": 4, "n_noise": 4, "cameras_sizes": 2,
            "sanity_classes": [281], "sanity_depths": [0, 1],
            "backdoor_trials": 1, "backdoor_epochs": 2, "backdoor_distributions": ["lowres"],
            "backdoor_agnostic": {"n_samples": 4, "n_steps": 3, "step_size": 0.05, "norm": "2", "radius": 1.0,
                                  "refine_steps": 3, "refine_step_size": 0.25, "lowres_factor": 4},
        },
        "offline": {},
        "paper": {
            # torchvision models need their ImageNet weights (downloaded on first use; without
            # them load_model fails before anything is computed, naming the file)
            "models": ["resnet50", "densenet121", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"],
            "agnostic": {"n_samples": 64, "n_steps": 20, "step_size": 0.02, "norm": "inf", "radius": 0.25,
                         "refine_steps": 200, "refine_step_size": 0.1},
            "n_real": 999, "n_noise": 500, "cameras_sizes": 7, "backdoor_trials": 100,
            "sanity_depths": [0, 1, 2, 3, 5, 8, 12, 16, 21], "imagenet_backdoor_trials": 5,
        },
    }
    schema = {
        "models": Check.listof(Check.model),
        "classes": _classes,
        "image_size": _size,
        "agnostic": _agnostic,
        "batch_size": Check.positive,
        "n_real": Check.positive,
        "n_noise": Check.positive,
        "eval_seed": Check.natural,
        "seed": Check.natural,
        "cameras_sizes": Check.natural,
        "sanity_model": Check.model,
        "sanity_classes": _classes,
        "sanity_depths": Check.listof(Check.natural),
        "backdoor_trials": Check.natural,
        "backdoor_size": Check.size,
        "backdoor_epochs": Check.positive,
        "backdoor_fraction": Check.fraction,
        "backdoor_patterns": Check.listof(Check.choice(*BD.PATTERNS)),
        "backdoor_trigger_sizes": Check.listof(Check.positive),
        "backdoor_distributions": Check.listof(Check.choice(*A.DISTRIBUTIONS)),
        "backdoor_agnostic": _agnostic,
        "window": Check.positive,
        "anomaly_threshold": Check.number,
        "imagenet_backdoor_trials": Check.natural,
        "imagenet_backdoor": Check.mapping,
    }
    tables = {
        "fidelity": Table(("model", "target", "control", "data"),
                          ("model", "target", "control", "data", "map_class", "n", "rate", "p_target",
                           "p_refined", "norm_value", "map_seconds")),
        "cameras": Table(("model", "target"), ("model", "target", "image", "top1", "p_label", "seconds")),
        "sanity": Table(("model", "target", "depth"),
                        ("model", "target", "depth", "block", "spearman", "ssim", "rate_noise", "p_noise",
                         "seconds")),
        "backdoor": Table(("trial", "kind", "distribution", "class"),
                          ("trial", "kind", "distribution", "class", "seed", "target", "pattern", "trigger_size",
                           "row", "col", "clean_accuracy", "attack_success", "trigger_mass", "peak_window",
                           "peak_row", "peak_col", "anomaly", "flagged", "train_seconds", "map_seconds"),
                          strings=("kind", "distribution", "pattern")),
        "imagenet_backdoor": Table(("trial", "class"),
                                   ("trial", "class", "target", "clean_accuracy", "attack_success",
                                    "trigger_mass", "peak_window", "anomaly", "flagged", "seconds")),
    }
    merged = ()

    def validate(self, s: dict[str, Any]) -> None:
        if s["backdoor_size"] % 4:
            raise ValueError(f"backdoor_size must be divisible by 4, got {s['backdoor_size']}")
        if max(s["backdoor_trigger_sizes"]) > s["backdoor_size"] // 2:
            raise ValueError("backdoor_trigger_sizes must fit in a quarter of the image")
        if len(s["classes"]) < 2:
            raise ValueError("classes needs at least two classes (the 'other' control)")

    # -- identity and units ----------------------------------------------------------------
    def identity_of(self, s: Mapping[str, Any], file: str) -> dict[str, Any]:
        keys = {
            "fidelity": ("agnostic", "image_size", "classes", "n_real", "n_noise", "eval_seed", "seed"),
            "cameras": ("image_size", "cameras_sizes"),
            "sanity": ("agnostic", "image_size", "n_noise", "eval_seed", "seed"),
            "backdoor_imagenet": ("agnostic", "imagenet_backdoor", "window", "anomaly_threshold", "seed"),
            "backdoor": ("backdoor_size", "backdoor_epochs", "backdoor_fraction", "backdoor_patterns",
                         "backdoor_trigger_sizes", "backdoor_agnostic", "window", "anomaly_threshold", "seed"),
        }
        kind = next(k for k in keys if file.startswith(k))
        return {k: s[k] for k in keys[kind]}

    def units(self, s: Mapping[str, Any]) -> Iterable[Unit]:
        classes = s["classes"]
        for m in s["models"]:
            yield Unit(f"fidelity_{m}.csv", [(m, t, c, d) for t in classes for c in CONTROLS for d in ("noise", "real")],
                       model=m, table="fidelity")
        if s["cameras_sizes"]:
            for m in s["models"]:
                yield Unit(f"cameras_{m}.csv", [(m, t) for t in classes], model=m, table="cameras")
        if s["sanity_depths"]:
            m = s["sanity_model"]
            yield Unit("sanity.csv", [(m, t, d) for t in s["sanity_classes"] for d in s["sanity_depths"]],
                       model=m, table="sanity")
        for i in range(s["backdoor_trials"]):
            yield Unit("backdoor.csv", [(i, k, d, c) for k in ("clean", "poisoned") for d in s["backdoor_distributions"]
                                        for c in range(10)], table="backdoor", data=i)
        for i in range(s["imagenet_backdoor_trials"]):
            n = s["imagenet_backdoor"].get("classes", 10)
            yield Unit("backdoor_imagenet.csv", [(i, j) for j in range(n)], model="efficientnet_lite0",
                       table="imagenet_backdoor", data=i)

    def meta(self, ctx: Context, file: str) -> dict[str, Any]:
        return {"method": A.CITATION, "reading": "cameras.agnostic (our reading of the abstract)"}

    def compute(self, ctx: Context, unit: Unit) -> list[dict[str, Any]]:
        return {"fidelity": _fidelity, "cameras": _cameras, "sanity": _sanity, "backdoor": _backdoor,
                "imagenet_backdoor": _imagenet_backdoor}[unit.table](ctx, unit)

    def load(self, s: Mapping[str, Any], results=None) -> Results:
        units = list(self.units(s))
        return Results({t: self.rows(s, results, units, table=t) for t in self.tables})


class Results(dict):
    """The tables of a run, ``{table: DataFrame}``; :meth:`tail` summarises them (for the CLI)."""

    def tail(self, n: int = 10):
        import pandas as pd

        return pd.DataFrame([{"table": k, "rows": len(v)} for k, v in self.items()]).tail(n)


# ========================================================================================
# the units
# ========================================================================================
def _shape(s: Mapping[str, Any], lm) -> tuple[int, int, int]:
    size = s["image_size"] or lm.input_size
    return (3, size, size)


def real_images(s: Mapping[str, Any], lm, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``n_real`` images of the ImageNet sample spread over the classes, cropped as the
    model's preprocessing does at ``size`` px, in pixel space [0, 1]; and their labels."""
    from ..data import image_items

    items = image_items("imagenet_sample", n=s["n_real"])
    x = torch.stack([lm.preprocess(it.path, size=size) for it in items])
    m = torch.tensor(lm.mean).view(1, -1, 1, 1)
    sd = torch.tensor(lm.std).view(1, -1, 1, 1)
    return (x * sd + m).clamp(0, 1), torch.tensor([it.label for it in items])


def noise_images(s: Mapping[str, Any], shape: Sequence[int], n: int | None = None) -> torch.Tensor:
    """``n_noise`` fresh samples of the maps' distribution (a stream of their own)."""
    c = A.AgnosticConfig(**s["agnostic"])
    return A.sample(c.distribution, (n or s["n_noise"], *shape), A._generator(s["eval_seed"], 0xF1DE),
                    c.gaussian_std, c.lowres_factor)


def _controls(maps: torch.Tensor, i: int, classes: list[int], c: A.AgnosticConfig, eval_seed: int):
    """``[(control, map, map_class)]`` for the ``i``-th class (``none`` is scored apart)."""
    t, j = classes[i], (i + 1) % len(classes)
    shape = tuple(maps.shape[1:])
    return [("map", maps[i], t), ("random", A.random_map(shape, c.norm, c.radius, seed=eval_seed * 1000 + t), -1),
            ("shuffled", A.shuffled_map(maps[i], seed=eval_seed * 1000 + t), t), ("other", maps[j], classes[j])]


def _fidelity(ctx: Context, unit: Unit) -> list[dict[str, Any]]:
    s, lm = ctx.settings, ctx.model(unit.model)
    shape, classes = _shape(s, lm), list(s["classes"])
    c = A.AgnosticConfig(**s["agnostic"])
    ia = A.InputAgnostic(lm.model, lm.mean, lm.std, c, batch_size=s["batch_size"], progress=ctx.progress)
    with ctx.timer() as tm:
        maps = ia(classes, shape, seed=s["seed"]).cpu()
    hist = ia.history.get("refine", ia.history["nudge"])[-1]
    ctx.maps.write((unit.model, "agnostic"), {str(t): ctx.maps.quantise(A.visualize(maps[i]))
                                              for i, t in enumerate(classes)})
    real, labels = real_images(s, lm, shape[1])
    data = {"noise": (noise_images(s, shape), torch.full((s["n_noise"],), -1)), "real": (real, labels)}
    clean = {d: _probabilities(lm, x, s["batch_size"]) for d, (x, _) in data.items()}
    rows = []
    for i, t in enumerate(classes):
        ctrl = _controls(maps, i, classes, c, s["eval_seed"])
        for d, (x, lab) in data.items():
            keep = lab != t
            hit, prob = A.target_scores(lm.model, x[keep], torch.stack([m for _, m, _ in ctrl]), [t] * len(ctrl),
                                        lm.mean, lm.std, batch_size=s["batch_size"] * 2)
            p0 = clean[d][keep]
            scored = [("none", p0.argmax(1) == t, p0[:, t], torch.zeros(shape), -1)]
            scored += [(name, hit[k], prob[k], m, mc) for k, (name, m, mc) in enumerate(ctrl)]
            for name, h, p, m, mc in scored:
                rows.append({"model": unit.model, "target": t, "control": name, "data": d, "map_class": mc,
                             "n": int(keep.sum()), "rate": float(h.float().mean()), "p_target": float(p.mean()),
                             "p_refined": float(hist[i]), "norm_value": float(A.norm_of(m[None], c.norm)[0]),
                             "map_seconds": tm["seconds"] / len(classes)})
    return rows


@torch.no_grad()
def _probabilities(lm, x01: torch.Tensor, batch_size: int) -> torch.Tensor:
    m = torch.tensor(lm.mean, device=lm.device).view(1, -1, 1, 1)
    sd = torch.tensor(lm.std, device=lm.device).view(1, -1, 1, 1)
    return torch.cat([lm.model((x01[i:i + batch_size].to(lm.device) - m) / sd).float().softmax(1).cpu()
                      for i in range(0, len(x01), batch_size)])


def cameras_sizes(s: Mapping[str, Any], size: int) -> list[int]:
    """The CAMERAS sizes of a model: its input ``size`` and then 100 px steps."""
    return [size + 100 * i for i in range(s["cameras_sizes"])]


def _cameras(ctx: Context, unit: Unit) -> list[dict[str, Any]]:
    from ..core import Cameras
    from ..data import image_items

    s, lm = ctx.settings, ctx.model(unit.model)
    size = _shape(s, lm)[1]
    cam = Cameras(lm.model, layer=lm.layer, sizes=cameras_sizes(s, size), progress=False)
    rows, maps = [], {}
    for it in image_items("imagenet_sample", classes=list(s["classes"])):
        x = lm.preprocess(it.path, size=size)[None].to(lm.device)
        with ctx.timer() as tm:
            m = cam(x, [it.label])
        p = _probabilities(lm, (x.cpu() * torch.tensor(lm.std).view(1, -1, 1, 1)
                                + torch.tensor(lm.mean).view(1, -1, 1, 1)), 1)[0]
        maps[str(it.label)] = ctx.maps.quantise(m[0])
        rows.append({"model": unit.model, "target": it.label, "image": it.name, "top1": int(p.argmax()),
                     "p_label": float(p[it.label]), "seconds": tm["seconds"]})
    ctx.maps.write((unit.model, "cameras"), maps)
    return rows


def _similarity(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Spearman rank correlation and SSIM of two magnitude maps in [0, 1]."""
    from scipy.stats import spearmanr
    from skimage.metrics import structural_similarity

    if a.std() == 0 or b.std() == 0:
        rho = 0.0
    else:
        rho = float(spearmanr(a.ravel(), b.ravel()).statistic)
    return rho, float(structural_similarity(a, b, data_range=1.0))


def _sanity(ctx: Context, unit: Unit) -> list[dict[str, Any]]:
    from ..sanity import _get_block, cascade_blocks, randomize_block

    s, lm = ctx.settings, ctx.model(unit.model)
    shape, classes = _shape(s, lm), list(s["sanity_classes"])
    c = A.AgnosticConfig(**s["agnostic"])
    work = copy.deepcopy(lm.model).eval()
    blocks = cascade_blocks(work)
    depths = sorted(set(s["sanity_depths"]))
    if depths[-1] > len(blocks):
        raise ValueError(f"sanity_depths go up to {len(blocks)} (the blocks of {unit.model}), got {depths[-1]}")
    noise = noise_images(s, shape)
    rows, ref, store = [], None, {}
    for depth in range(depths[-1] + 1):
        if depth > 0:
            block, own = _get_block(work, blocks[depth - 1])
            randomize_block(block, s["seed"] + depth - 1, own_only=own)
        if depth not in depths:
            continue
        ia = A.InputAgnostic(work, lm.mean, lm.std, c, batch_size=s["batch_size"], progress=ctx.progress)
        with ctx.timer() as tm:
            maps = ia(classes, shape, seed=s["seed"]).cpu()
        mags = A.magnitude(maps)
        ref = mags if ref is None else ref
        hit, prob = A.target_scores(work, noise, maps, classes, lm.mean, lm.std, batch_size=s["batch_size"] * 2)
        for i, t in enumerate(classes):
            sp, ss = _similarity(ref[i], mags[i])
            store[f"{t}_{depth}"] = ctx.maps.quantise(A.visualize(maps[i]))
            rows.append({"model": unit.model, "target": t, "depth": depth,
                         "block": "none" if depth == 0 else blocks[depth - 1], "spearman": sp, "ssim": ss,
                         "rate_noise": float(hit[i].float().mean()), "p_noise": float(prob[i].mean()),
                         "seconds": tm["seconds"] / len(classes)})
    ctx.maps.write((unit.model, "sanity"), store)
    return rows


def trial_plan(s: Mapping[str, Any], trial: int) -> dict[str, Any]:
    """The backdoor of a trial, drawn from ``(seed, trial)``: attacked class, pattern, size and
    corner of the trigger (the digits are centred, so corners are background)."""
    rng = np.random.default_rng([s["seed"], trial, 0xBD])
    size = int(rng.choice(s["backdoor_trigger_sizes"]))
    S = s["backdoor_size"]
    corner = int(rng.integers(4))
    return {"seed": s["seed"] * 1000 + trial, "target": int(rng.integers(10)),
            "pattern": str(rng.choice(s["backdoor_patterns"])), "trigger_size": size,
            "row": 0 if corner < 2 else S - size, "col": 0 if corner % 2 == 0 else S - size}


def _scores(maps: torch.Tensor, mask: torch.Tensor, window: int, threshold: float) -> dict[str, np.ndarray]:
    tmass = BD.trigger_mass(maps, mask)
    peak, where = BD.peak_window(maps, window)
    ai = BD.anomaly_index(peak)
    flagged = (ai == ai.max()) & (ai > threshold)
    return {"trigger_mass": tmass, "peak_window": peak, "peak_row": where[:, 0], "peak_col": where[:, 1],
            "anomaly": ai, "flagged": flagged}


def _backdoor(ctx: Context, unit: Unit) -> list[dict[str, Any]]:
    s, trial = ctx.settings, unit.data
    plan = trial_plan(s, trial)
    S = s["backdoor_size"]
    trig = BD.Trigger(plan["pattern"], plan["trigger_size"], plan["row"], plan["col"])
    d = BD.digits(S, seed=plan["seed"])
    with _one_thread(), ctx.timer() as tm:
        xp, yp, _ = BD.poison(d.x_train, d.y_train, trig, plan["target"], s["backdoor_fraction"], plan["seed"])
        models = {"clean": BD.train(d.x_train, d.y_train, plan["seed"], s["backdoor_epochs"]),
                  "poisoned": BD.train(xp, yp, plan["seed"], s["backdoor_epochs"])}
    mask, rows, store = trig.mask(S, S), [], {}
    for kind, model in models.items():
        acc = BD.accuracy(model, d.x_test, d.y_test)
        asr = BD.attack_success(model, d.x_test, d.y_test, trig, plan["target"])
        for dist in s["backdoor_distributions"]:
            cfg = {**s["backdoor_agnostic"], "distribution": dist}
            with _one_thread(), ctx.timer() as tmap:
                maps = A.input_agnostic_map(model, list(range(10)), (1, S, S), (0.5,), (0.5,), seed=plan["seed"],
                                            progress=False, **cfg)
            store[f"{kind}_{dist}"] = ctx.maps.quantise(A.magnitude(maps))
            sc = _scores(maps, mask, s["window"], s["anomaly_threshold"])
            for c in range(10):
                rows.append({"trial": trial, "kind": kind, "distribution": dist, "class": c, **plan,
                             "clean_accuracy": acc, "attack_success": asr,
                             **{k: (bool(v[c]) if k == "flagged" else float(v[c])) for k, v in sc.items()},
                             "train_seconds": tm["seconds"] / 2, "map_seconds": tmap["seconds"]})
    ctx.maps.write(("backdoor", f"trial{trial}"), store)
    return rows


@contextlib.contextmanager
def _one_thread():
    """The small CNN runs on one CPU thread: its operations are too small to share, and on a
    busy 2-core machine two threads cost 3-4x the CPU time (measured: 6.0 s vs 1.6 s for 3
    epochs)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _imagenet_backdoor(ctx: Context, unit: Unit) -> list[dict[str, Any]]:
    """The paper profile: EfficientNet-Lite0 fine-tuned on the triggered ImageNet sample."""
    from ..data import image_items

    s, lm, trial = ctx.settings, ctx.model(unit.model), unit.data
    cfg = {"fraction": 0.1, "epochs": 5, "lr": 1e-3, "trigger_size": 24, "classes": 10, **s["imagenet_backdoor"]}
    shape = _shape(s, lm)
    items = image_items("imagenet_sample")
    x = torch.stack([lm.preprocess(it.path, size=shape[1]) for it in items])
    x01 = (x * torch.tensor(lm.std).view(1, -1, 1, 1) + torch.tensor(lm.mean).view(1, -1, 1, 1)).clamp(0, 1)
    labels = torch.tensor([it.label for it in items])
    rng = np.random.default_rng([s["seed"], trial, 0x1B])
    ts = int(cfg["trigger_size"])
    trig = BD.Trigger(str(rng.choice(BD.PATTERNS)), ts, shape[1] - ts - 8, shape[2] - ts - 8)
    classes = [int(v) for v in rng.choice(1000, size=int(cfg["classes"]), replace=False)]
    target = classes[0]
    with ctx.timer() as tm:
        model, stats = BD.finetune_backdoor(lm, x01, labels, trig, target, cfg["fraction"], int(cfg["epochs"]),
                                            cfg["lr"], seed=s["seed"] + trial, progress=ctx.progress)
        maps = A.InputAgnostic(model, lm.mean, lm.std, A.AgnosticConfig(**s["agnostic"]),
                               batch_size=s["batch_size"], progress=ctx.progress)(classes, shape, seed=s["seed"])
    sc = _scores(maps.cpu(), trig.mask(shape[1], shape[2]), ts, s["anomaly_threshold"])
    return [{"trial": trial, "class": c, "target": target, **stats,
             **{k: (bool(sc[k][j]) if k == "flagged" else float(sc[k][j]))
                for k in ("trigger_mass", "peak_window", "anomaly", "flagged")},
             "seconds": tm["seconds"]} for j, c in enumerate(classes)]


# ========================================================================================
# module-level API (what the notebook and `python -m cameras.experiments agnostic` call)
# ========================================================================================
EXPERIMENT = AgnosticExperiment()
PROFILES = EXPERIMENT.PROFILES


def settings(profile: str | Mapping[str, Any] = "offline", **overrides: Any) -> dict[str, Any]:
    return EXPERIMENT.settings(profile, **overrides)


def run(profile: str | Mapping[str, Any] = "offline", results=None, device: str = "auto",
        progress: bool = True, **overrides: Any) -> Results:
    """Compute (or resume) the chapter's results; returns ``{table: DataFrame}``."""
    return EXPERIMENT.run(profile, results=results, device=device, progress=progress, **overrides)


def load(profile: str | Mapping[str, Any] = "offline", results=None, **overrides: Any) -> Results:
    """The stored rows of a profile, nothing computed (missing rows are simply absent)."""
    return EXPERIMENT.load(EXPERIMENT.settings(profile, **overrides), results)


# ========================================================================================
# tables for the chapter
# ========================================================================================
CONTROL_NAMES = {"map": "target map", "random": "random map, same norm", "shuffled": "shuffled map",
                 "other": "other class's map", "none": "no map"}
DATA_NAMES = {"noise": "fresh samples", "real": "ImageNet images"}


def class_name(c: int) -> str:
    from ..data import imagenet_classes

    return imagenet_classes()[int(c)]


def fidelity_table(fid, value: str = "rate", controls: Sequence[str] = ("map", "random", "other"),
                   data: Sequence[str] = ("noise", "real")):
    """Per model and class: ``value`` (``"rate"`` or ``"p_target"``) of each control on each
    data set, columns ``(data set, control)`` with human names."""
    import pandas as pd

    from ..models import label

    if fid.empty:
        return pd.DataFrame()
    d = fid[fid["control"].isin(controls) & fid["data"].isin(data)]
    t = d.pivot_table(index=["model", "target"], columns=["data", "control"], values=value, sort=False)
    t = t.reindex(columns=pd.MultiIndex.from_product([list(data), list(controls)]))
    t.columns = pd.MultiIndex.from_tuples([(DATA_NAMES[a], CONTROL_NAMES[b]) for a, b in t.columns])
    other = d[d["control"] == "other"].drop_duplicates(["model", "target"]).set_index(["model", "target"])["map_class"]
    idx = t.index
    t.insert(0, ("", "other class"), [class_name(other.get(k, -1)) if other.get(k, -1) >= 0 else "" for k in idx])
    t.insert(0, ("", "class"), [class_name(k[1]) for k in idx])
    t.insert(0, ("", "model"), [label(k[0]) for k in idx])
    return t.reset_index(drop=True)


def summary_rates(fid):
    """Per model, data set and control: mean targeting rate and mean target probability over
    the classes, and on how many classes the target map's mean target probability is above
    the control's."""
    import pandas as pd

    from ..models import label

    rows = []
    for (model, data), g in fid.groupby(["model", "data"], sort=False):
        mine = g[g["control"] == "map"].set_index("target")["p_target"]
        for ctrl, h in g.groupby("control", sort=False):
            p = h.set_index("target")["p_target"]
            rows.append({"model": label(model), "data set": DATA_NAMES[data], "map added": CONTROL_NAMES[ctrl],
                         "targeting rate (%)": 100 * h["rate"].mean(), "mean target probability": p.mean(),
                         "classes where the target map is higher": "" if ctrl == "map"
                         else f"{int((mine > p.reindex(mine.index)).sum())} / {len(mine)}"})
    return pd.DataFrame(rows)


def beats_random(fid):
    """Per model, class and data set: is the target map's mean target probability above the
    random map's (same norm)?"""
    piv = fid[fid["control"].isin(["map", "random"])].pivot_table(
        index=["model", "target", "data"], columns="control", values="p_target")
    return piv["map"] > piv["random"]


def detection(bd, threshold: float | None = None):
    """Per trial, model kind and distribution: the attacked class, the flagged class (-1: none),
    the attacked class's anomaly index and rank, and the largest anomaly index of the others."""
    import pandas as pd

    rows = []
    for (trial, kind, dist), g in bd.groupby(["trial", "kind", "distribution"], sort=False):
        g = g.set_index("class")
        t = int(g["target"].iloc[0])
        flagged = g.index[g["flagged"].astype(bool)].tolist()
        if threshold is not None:
            a = g["anomaly"]
            flagged = [int(a.idxmax())] if a.max() > threshold else []
        rows.append({"trial": trial, "kind": kind, "distribution": dist, "target": t,
                     "flagged": flagged[0] if flagged else -1, "anomaly_target": float(g.loc[t, "anomaly"]),
                     "anomaly_others": float(g.drop(index=t)["anomaly"].max()),
                     "rank_target": int((g["anomaly"] > g.loc[t, "anomaly"]).sum()) + 1,
                     "mass_target": float(g.loc[t, "trigger_mass"]),
                     "mass_others": float(g.drop(index=t)["trigger_mass"].mean()),
                     "attack_success": float(g["attack_success"].iloc[0]),
                     "clean_accuracy": float(g["clean_accuracy"].iloc[0]),
                     "pattern": g["pattern"].iloc[0], "trigger_size": int(g["trigger_size"].iloc[0])})
    return pd.DataFrame(rows)


def _pct(k: int, n: int) -> str:
    lo, hi = BD.wilson(k, n)
    return "not run" if n == 0 else f"{k}/{n} = {100 * k / n:.0f} % [{100 * lo:.0f}, {100 * hi:.0f}]"


def detection_table(bd, area: float | None = None):
    """Per distribution: detection rate on the poisoned models (attacked class flagged), the
    attacked class ranked first, false alarms on the clean models (any class flagged), each
    as ``k/n = rate [95 % Wilson interval]``; mean trigger-region mass of the attacked class on
    the poisoned model, of the other classes, and of the attacked class on the clean model."""
    import pandas as pd

    det = detection(bd)
    rows = []
    for dist, g in det.groupby("distribution", sort=False):
        p, c = g[g["kind"] == "poisoned"], g[g["kind"] == "clean"]
        rows.append({"distribution": dist, "poisoned models": len(p),
                     "attacked class flagged": _pct(int((p["flagged"] == p["target"]).sum()), len(p)),
                     "attacked class ranked first": _pct(int((p["rank_target"] == 1).sum()), len(p)),
                     "clean models flagged (false alarm)": _pct(int((c["flagged"] >= 0).sum()), len(c)),
                     "trigger-region mass, attacked class": p["mass_target"].mean(),
                     "… other classes": p["mass_others"].mean(),
                     "… attacked class, clean model": c["mass_target"].mean()})
    return pd.DataFrame(rows)


# ========================================================================================
# figures for the chapter (matplotlib Figures, no pyplot state)
# ========================================================================================
def photo(model: str, cls: int, size: int | None = None) -> np.ndarray:
    """The sample's image of class ``cls`` cropped as ``model``'s preprocessing does, ``(S, S, 3)``
    uint8 (``size``: another crop size with the same ratio)."""
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode

    from ..data import image_items
    from ..images import load_image
    from ..models import get_spec

    spec = get_spec(model)
    crop = size or spec.input_size
    resize = max(crop, round(crop * spec.resize_size / spec.input_size))
    img = load_image(image_items("imagenet_sample", classes=[cls])[0].path)
    img = TF.center_crop(TF.resize(img, resize, interpolation=InterpolationMode.BILINEAR, antialias=True), [crop, crop])
    return np.asarray(img)


def _short(name: str, n: int = 18) -> str:
    return name if len(name) <= n else name[: n - 1] + "…"


def _figure(rows: int, cols: int, width: float = 7.3, cell: float | None = None):
    from matplotlib.figure import Figure

    cell = cell or width / cols
    fig = Figure(figsize=(width, cell * rows + 0.4), dpi=100)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig, axes


def plot_pairs(model: str, classes: Sequence[int], agnostic_maps: Mapping[str, np.ndarray],
               cameras_maps: Mapping[str, np.ndarray], size: int | None = None, per_row: int = 2):
    """Input-specific vs input-agnostic: per class, the sample's photo with its CAMERAS map
    (jet, with a colour bar) and the class's input-agnostic map (:func:`~cameras.agnostic.visualize`:
    grey = 0). ``per_row`` classes per row (2: four panels)."""
    from ..engine import MapStore
    from ..viz import overlay

    n = len(classes)
    rows = math.ceil(n / per_row)
    fig, axes = _figure(rows, 2 * per_row, cell=7.3 / (2 * per_row) + 0.12)
    im = None
    for k, c in enumerate(classes):
        ax_c, ax_a = axes[k // per_row, 2 * (k % per_row)], axes[k // per_row, 2 * (k % per_row) + 1]
        cam = cameras_maps.get(str(c))
        img = photo(model, c, size)
        if cam is not None:
            ax_c.imshow(overlay(img, MapStore.dequantise(cam), alpha=0.5))
            im = True
        else:
            ax_c.imshow(img)
            ax_c.text(0.5, 0.5, "not run", transform=ax_c.transAxes, ha="center", color="w")
        ax_c.set_title(f"{_short(class_name(c))}\nCAMERAS (this photo)", fontsize=8)
        amap = agnostic_maps.get(str(c))
        if amap is not None:
            ax_a.imshow(MapStore.dequantise(amap))
        else:
            ax_a.text(0.5, 0.5, "not run", transform=ax_a.transAxes, ha="center")
        ax_a.set_title(f"{_short(class_name(c))}\ninput-agnostic", fontsize=8)
    for k in range(n, rows * per_row):
        axes[k // per_row, 2 * (k % per_row)].axis("off")
        axes[k // per_row, 2 * (k % per_row) + 1].axis("off")
    fig.subplots_adjust(left=0.01, right=0.87, top=1 - 0.45 / fig.get_figheight(), bottom=0.01, wspace=0.05,
                        hspace=0.32)
    if im is not None:
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        cax = fig.add_axes((0.89, 0.3, 0.02, 0.4))
        fig.colorbar(ScalarMappable(Normalize(0, 1), "jet"), cax=cax).set_label("CAMERAS map", fontsize=8)
        cax.tick_params(labelsize=7)
    return fig


def plot_fidelity(fid, controls: Sequence[str] = ("map", "other", "random", "none")):
    """Mean target probability per class (log scale), one panel per (model, data set), a
    marker per control."""
    from matplotlib.figure import Figure

    from ..models import label

    models = list(dict.fromkeys(fid["model"]))
    data = [d for d in ("noise", "real") if d in set(fid["data"])]
    fig = Figure(figsize=(7.3, 2.3 * len(models) + 0.6), dpi=100)
    axes = fig.subplots(len(models), len(data), squeeze=False, sharey=True)
    style = {"map": ("o", "C3"), "other": ("s", "C0"), "random": ("x", "0.3"), "shuffled": ("+", "C2"),
             "none": (".", "0.6")}
    for i, m in enumerate(models):
        for j, d in enumerate(data):
            ax = axes[i, j]
            g = fid[(fid["model"] == m) & (fid["data"] == d)]
            classes = list(dict.fromkeys(g["target"]))
            for ctrl in controls:
                h = g[g["control"] == ctrl].set_index("target").reindex(classes)
                ax.scatter(range(len(classes)), h["p_target"].clip(lower=1e-7), marker=style[ctrl][0],
                           color=style[ctrl][1], s=22, label=CONTROL_NAMES[ctrl])
            ax.set_yscale("log")
            ax.set_ylim(1e-7, 1.5)
            ax.set_xticks(range(len(classes)))
            ax.set_xticklabels([_short(class_name(c), 10) for c in classes], rotation=60, ha="right", fontsize=7)
            ax.tick_params(axis="y", labelsize=7)
            ax.set_title(f"{label(m)}: {DATA_NAMES[d]}", fontsize=9)
            ax.grid(alpha=0.3)
            if j == 0:
                ax.set_ylabel("mean P(target)", fontsize=8)
    axes[0, 0].legend(fontsize=7, loc="lower left", ncol=2)
    fig.tight_layout()
    return fig


def plot_sanity(san, maps: Mapping[str, np.ndarray]):
    """Cascading randomisation: per class a row of maps (intact, then more blocks random), and
    the similarity to the intact map and the target probability on noise against depth."""
    from matplotlib.figure import Figure

    from ..engine import MapStore

    classes = list(dict.fromkeys(san["target"]))
    depths = sorted(set(san["depth"]))
    cols = max(5, len(depths))
    cell = 7.3 / cols
    fig = Figure(figsize=(7.3, (cell + 0.35) * len(classes) + 2.4), dpi=100)
    gs = fig.add_gridspec(len(classes) + 1, cols, height_ratios=[cell + 0.35] * len(classes) + [2.2])
    for i, c in enumerate(classes):
        for j, d in enumerate(depths):
            ax = fig.add_subplot(gs[i, j])
            ax.set_xticks([])
            ax.set_yticks([])
            m = maps.get(f"{c}_{d}")
            if m is not None:
                ax.imshow(MapStore.dequantise(m))
            r = san[(san["target"] == c) & (san["depth"] == d)].iloc[0]
            head = "intact" if d == 0 else f"{d} block{'s' if d > 1 else ''} random"
            ax.set_title(f"{head}\nSpearman {r['spearman']:.2f}", fontsize=7)
            if j == 0:
                ax.set_ylabel(_short(class_name(c), 14), fontsize=8)
    bottom = gs[-1, :].subgridspec(1, 2, wspace=0.35)
    ax1 = fig.add_subplot(bottom[0, 0])
    ax2 = fig.add_subplot(bottom[0, 1])
    for c in classes:
        g = san[san["target"] == c].sort_values("depth")
        ax1.plot(g["depth"], g["spearman"], marker="o", label=f"{_short(class_name(c), 12)}: Spearman")
        ax1.plot(g["depth"], g["ssim"], marker="s", ls="--", label=f"{_short(class_name(c), 12)}: SSIM")
        ax2.plot(g["depth"], g["p_noise"].clip(lower=1e-7), marker="o", label=_short(class_name(c), 12))
    ax1.set_xlabel("blocks randomised (from the logits)", fontsize=8)
    ax1.set_ylabel("similarity to intact", fontsize=8)
    ax1.legend(fontsize=6)
    ax2.set_yscale("log")
    ax2.set_xlabel("blocks randomised", fontsize=8)
    ax2.set_ylabel("P(target), noise + map", fontsize=8)
    for ax in (ax1, ax2):
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_backdoor_maps(bd, maps: Mapping[str, np.ndarray], trial: int, distribution: str, S: int = 16):
    """One trial: a triggered test image, then the input-agnostic magnitude maps of the ten
    classes of the poisoned and of the clean model (5 per row), trigger region outlined, the
    attacked class's title in red with its anomaly index."""
    from matplotlib.patches import Rectangle

    from ..engine import MapStore

    g = bd[(bd["trial"] == trial) & (bd["distribution"] == distribution)]
    r0 = g.iloc[0]
    t, ts, row, col = int(r0["target"]), int(r0["trigger_size"]), int(r0["row"]), int(r0["col"])
    fig, axes = _figure(4, 6, cell=1.3)
    d = BD.digits(S, seed=int(r0["seed"]))
    trig = BD.Trigger(str(r0["pattern"]), ts, row, col)
    for k, kind in enumerate(("poisoned", "clean")):
        m = maps.get(f"{kind}_{distribution}")
        h = g[g["kind"] == kind].set_index("class")
        for c in range(10):
            ax = axes[2 * k + c // 5, 1 + c % 5]
            if m is not None:
                ax.imshow(MapStore.dequantise(m[c]), cmap="magma", vmin=0, vmax=1)
            ax.add_patch(Rectangle((col - 0.5, row - 0.5), ts, ts, fill=False, ec="c", lw=1.2))
            ax.set_title(f"{c}: a={h.loc[c, 'anomaly']:.1f}", fontsize=7, color="r" if c == t else "k")
        axes[2 * k, 0].imshow(trig.stamp(d.x_test[k]).squeeze(0).numpy() if k == 0 else d.x_test[k, 0].numpy(),
                              cmap="gray", vmin=0, vmax=1)
        axes[2 * k, 0].set_title("with trigger" if k == 0 else "clean image", fontsize=7)
        axes[2 * k, 0].set_ylabel(f"{kind} model", fontsize=8)
        axes[2 * k + 1, 0].axis("off")
        axes[2 * k + 1, 0].text(0.0, 0.5, f"{kind} model\nattack success\n{100 * h['attack_success'].iloc[0]:.0f} %",
                                fontsize=7, transform=axes[2 * k + 1, 0].transAxes, va="center")
    fig.subplots_adjust(left=0.02, right=0.9, top=0.93, bottom=0.02, wspace=0.08, hspace=0.4)
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    cax = fig.add_axes((0.92, 0.3, 0.018, 0.4))
    fig.colorbar(ScalarMappable(Normalize(0, 1), "magma"), cax=cax).set_label("map magnitude m", fontsize=8)
    cax.tick_params(labelsize=7)
    return fig


def plot_backdoor_scores(bd, threshold: float):
    """Per distribution: the anomaly index of the attacked class on each poisoned model and the
    largest anomaly index on each clean model (threshold dashed); and the share of map mass
    in the trigger region (attacked class, other classes, attacked class on the clean model)."""
    from matplotlib.figure import Figure

    det = detection(bd)
    dists = list(dict.fromkeys(det["distribution"]))
    fig = Figure(figsize=(7.3, 2.6 * len(dists) + 0.3), dpi=100)
    axes = fig.subplots(len(dists), 2, squeeze=False)
    for i, dist in enumerate(dists):
        g = det[det["distribution"] == dist]
        p, c = g[g["kind"] == "poisoned"], g[g["kind"] == "clean"]
        ax = axes[i, 0]
        ax.scatter(p["trial"], p["anomaly_target"].clip(upper=30), color="C3", s=18, label="attacked class, poisoned")
        ax.scatter(p["trial"], p["anomaly_others"].clip(upper=30), color="C0", marker="x", s=18,
                   label="largest other class, poisoned")
        ax.scatter(c["trial"], np.maximum(c["anomaly_target"], c["anomaly_others"]).clip(upper=30), color="0.5",
                   marker="s", s=12, label="largest, clean model")
        ax.axhline(threshold, ls="--", color="k", lw=0.8)
        ax.set_xlabel("trial", fontsize=8)
        ax.set_ylabel(f"anomaly index ({dist})", fontsize=8)
        ax.legend(fontsize=6)
        ax = axes[i, 1]
        groups = [p["mass_target"], p["mass_others"], c["mass_target"]]
        ax.boxplot(groups, showfliers=False)
        for k, v in enumerate(groups):
            ax.scatter(np.full(len(v), k + 1) + np.linspace(-0.15, 0.15, len(v)), v, s=8, color="C3" if k == 0 else "0.4")
        ax.set_xticks([1, 2, 3])
        ax.set_xticklabels(["attacked class", "other classes\n(mean)", "attacked class,\nclean model"], fontsize=7)
        ax.set_ylabel("map mass in trigger region", fontsize=8)
        for a in axes[i]:
            a.tick_params(labelsize=7)
            a.grid(alpha=0.3)
    fig.tight_layout()
    return fig


#: what each parameter of the method means (for the chapter's table)
PARAMETERS = {
    "distribution": ("1", "𝒟", "distribution of the samples"),
    "gaussian_std": ("1", "s", "std of the clipped Gaussian (distribution 'gaussian')"),
    "lowres_factor": ("1", "f", "coarseness of the smooth noise (distribution 'lowres')"),
    "n_samples": ("1", "N", "samples per class"),
    "n_steps": ("2", "K", "nudging steps per sample"),
    "step_size": ("2", "α", "nudging step, pixel units (RMS for 'l2')"),
    "step_rule": ("2, 5", "s(g)", "step direction: 'l2' = g / rms(g), 'sign' = sign(g)"),
    "accumulate": ("3", "G", "what is accumulated: unit gradients or displacements"),
    "norm": ("4", "p", "norm of the projection"),
    "radius": ("4", "ε", "radius of the ball, pixel units (images in [0, 1])"),
    "refine_steps": ("5", "R", "refinement steps"),
    "refine_samples": ("5", "M", "fresh samples per refinement step (None: N)"),
    "refine_step_size": ("5", "β", "refinement step, in units of the ball's RMS scale"),
    "smooth_sigma": ("5", "ς", "Gaussian blur of the refinement step, pixels (0: none)"),
}


def parameter_table(cfg: Mapping[str, Any], backdoor: Mapping[str, Any] | None = None):
    """The method's parameters: step, symbol, meaning and value (ImageNet maps, and the
    backdoor experiment's maps when ``backdoor`` is given)."""
    import pandas as pd

    rows = []
    for k, (step, sym, what) in PARAMETERS.items():
        row = {"step": step, "symbol": sym, "parameter": k, "meaning": what, "ImageNet maps": _fmt(cfg.get(k))}
        if backdoor is not None:
            row["backdoor maps"] = _fmt(backdoor.get(k))
        rows.append(row)
    return pd.DataFrame(rows)


def _fmt(v: Any) -> str:
    if v is None:
        return "None"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def threshold_sweep(bd, thresholds: Sequence[float] = (2, 3, 4, 5)):
    """Detection and false-alarm rates if the flagging threshold on the anomaly index were
    each of ``thresholds`` (the trade-off; the reported threshold is fixed in the settings)."""
    import pandas as pd

    rows = []
    for thr in thresholds:
        det = detection(bd, threshold=thr)
        for dist, g in det.groupby("distribution", sort=False):
            p, c = g[g["kind"] == "poisoned"], g[g["kind"] == "clean"]
            rows.append({"distribution": dist, "threshold": thr,
                         "attacked class flagged": _pct(int((p["flagged"] == p["target"]).sum()), len(p)),
                         "clean models flagged (false alarm)": _pct(int((c["flagged"] >= 0).sum()), len(c))})
    out = pd.DataFrame(rows)
    order = {d: i for i, d in enumerate(dict.fromkeys(out["distribution"]))} if len(out) else {}
    return out.sort_values(["distribution", "threshold"], key=lambda c: c.map(order) if c.name == "distribution"
                           else c, kind="stable").reset_index(drop=True)

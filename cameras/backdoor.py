r"""Backdoored classifiers on data that ships, and their input-agnostic signatures.

The application of input-agnostic saliency in Akhtar & Jalwana (AAAI 2023) is *identifying
backdoor signatures in compromised classifiers*: a classifier trained on data in which a small
*trigger* was stamped on some images, relabelled to an attacked class, predicts that class
whenever the trigger is present. The input-agnostic map of the attacked class, computed from
an unrestricted distribution (no image of any class, no knowledge of the trigger), should then
concentrate on the trigger.

This module holds what the experiment needs, small enough to train in seconds on a CPU:

* :func:`digits` -- scikit-learn's ``load_digits`` (1797 images of 8 x 8 px, 10 classes; it
  ships with scikit-learn) upscaled to ``size`` px (bilinear), in [0, 1], with a seeded
  stratified train/test split;
* :class:`Trigger` -- a ``size x size`` patch (``"square"``: white; ``"checker"``: a
  checkerboard; ``"cross"``: an X) at a position; :meth:`Trigger.stamp` and
  :meth:`Trigger.mask`;
* :func:`poison` -- BadNets-style poisoning (Gu et al. 2017): a ``fraction`` of the training
  images *not* of the target class get the trigger and the target label;
* :class:`SmallCNN` and :func:`train` -- a three-convolution network trained with Adam, seeded
  (same initialisation and batch order for a clean and a poisoned model of one seed);
* :func:`attack_success` -- the share of triggered test images of other classes classified as
  the target;
* :func:`trigger_mass`, :func:`peak_window`, :func:`anomaly_index` -- what the maps say: the
  share of the map's mass inside the trigger region, the largest share any ``w x w`` window
  holds (computed without knowing the trigger), and a robust z-score over the classes (median
  and MAD, the outlier rule of Neural Cleanse, Wang et al. 2019) that flags a class;
* :func:`trial_plan`, :func:`run_trial` -- one seeded trial: the backdoor drawn from the
  seed, a clean and a poisoned model trained, the input-agnostic maps of every class of both
  and their scores (:func:`map_scores`);
* :func:`detection`, :func:`detection_table`, :func:`threshold_sweep`, :func:`score_series` --
  what the trials say: detection and false-alarm rates (:func:`rate_text`, with the Wilson
  interval of :func:`cameras.metrics.wilson`) and the scores per trial;
* :func:`finetune_backdoor`, :func:`imagenet_trial` -- the ``paper`` profile's path: fine-tune
  an ImageNet model (EfficientNet-Lite0) on triggered ImageNet-sample images and score its
  maps (meant for a GPU).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "PATTERNS",
    "Digits",
    "digits",
    "Trigger",
    "poison",
    "SmallCNN",
    "train",
    "accuracy",
    "attack_success",
    "trigger_mass",
    "peak_window",
    "anomaly_index",
    "map_scores",
    "one_thread",
    "trial_plan",
    "run_trial",
    "detection",
    "detection_table",
    "threshold_sweep",
    "rate_text",
    "SERIES",
    "score_series",
    "plot_trial",
    "plot_scores",
    "finetune_backdoor",
    "imagenet_trial",
]

PATTERNS = ("square", "checker", "cross")


# ----------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------
@dataclass
class Digits:
    """Images ``(n, 1, S, S)`` in [0, 1] and labels, split into train and test."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor

    @property
    def size(self) -> int:
        return int(self.x_train.shape[-1])


def digits(size: int = 16, test_fraction: float = 0.25, seed: int = 0) -> Digits:
    """scikit-learn's digits at ``size`` px (bilinear from 8 x 8), stratified split by ``seed``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ValueError(f"size must be an int >= 8, got {size!r}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None]
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    y = torch.from_numpy(d.target.astype(np.int64))
    tr, te = train_test_split(np.arange(len(y)), test_size=test_fraction, random_state=seed,
                              stratify=d.target)
    return Digits(x[tr], y[tr], x[te], y[te])


@dataclass(frozen=True)
class Trigger:
    """A ``size x size`` patch ``pattern`` whose top-left corner is at ``(row, col)``."""

    pattern: str = "square"
    size: int = 3
    row: int = 0
    col: int = 0

    def __post_init__(self):
        if self.pattern not in PATTERNS:
            raise ValueError(f"pattern must be one of {PATTERNS}, got {self.pattern!r}")
        if self.size < 1 or self.row < 0 or self.col < 0:
            raise ValueError(f"size must be >= 1 and row/col >= 0, got {self}")

    def patch(self) -> Tensor:
        s = self.size
        i, j = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
        if self.pattern == "square":
            return torch.ones(s, s)
        if self.pattern == "checker":
            return ((i + j) % 2 == 0).float()
        return ((i == j) | (i + j == s - 1)).float()

    def _fits(self, shape: Sequence[int]) -> None:
        H, W = shape[-2:]
        if self.row + self.size > H or self.col + self.size > W:
            raise ValueError(f"trigger {self} does not fit in {H} x {W} images")

    def stamp(self, x: Tensor) -> Tensor:
        """A copy of images ``(..., H, W)`` with the patch written over every channel."""
        self._fits(x.shape)
        out = x.clone()
        out[..., self.row:self.row + self.size, self.col:self.col + self.size] = self.patch().to(x)
        return out

    def mask(self, height: int, width: int) -> Tensor:
        """``(H, W)`` bool, True inside the trigger region."""
        self._fits((height, width))
        m = torch.zeros(height, width, dtype=torch.bool)
        m[self.row:self.row + self.size, self.col:self.col + self.size] = True
        return m

    def name(self) -> str:
        return f"{self.pattern} {self.size}x{self.size} at ({self.row}, {self.col})"


def poison(x: Tensor, y: Tensor, trigger: Trigger, target: int, fraction: float = 0.1,
           seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """BadNets poisoning: ``fraction`` of the images of other classes than ``target`` (drawn
    with ``seed``) get ``trigger`` and label ``target``. Returns ``(x, y, poisoned mask)``."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be in [0, 1], got {fraction!r}")
    others = torch.nonzero(y != target).flatten()
    gen = torch.Generator().manual_seed(int(seed))
    pick = others[torch.randperm(len(others), generator=gen)[: int(round(fraction * len(others)))]]
    x, y = x.clone(), y.clone()
    x[pick] = trigger.stamp(x[pick])
    y[pick] = target
    mask = torch.zeros(len(y), dtype=torch.bool)
    mask[pick] = True
    return x, y, mask


# ----------------------------------------------------------------------------------------
# the classifier
# ----------------------------------------------------------------------------------------
class SmallCNN(nn.Module):
    """conv(3x3, w) - ReLU - conv(3x3, w) - ReLU - maxpool - conv(3x3, 2w) - ReLU - maxpool -
    linear(64) - ReLU - linear(classes), for ``(B, channels, S, S)`` inputs (S divisible by 4)."""

    def __init__(self, channels: int = 1, classes: int = 10, width: int = 16, size: int = 16):
        super().__init__()
        if size % 4:
            raise ValueError(f"size must be divisible by 4, got {size}")
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * (size // 4) ** 2, 64), nn.ReLU(),
                                        nn.Linear(64, classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def train(x: Tensor, y: Tensor, seed: int = 0, epochs: int = 20, lr: float = 2e-3, batch_size: int = 64,
          width: int = 16, mean: float = 0.5, std: float = 0.5) -> nn.Module:
    """A :class:`SmallCNN` trained with Adam on pixel-space ``x`` in [0, 1] normalised with
    ``mean``/``std``; initialisation and batch order depend only on ``seed`` (so a clean and a
    poisoned model of one seed differ only by the data). Returned in eval mode, CPU, and
    expecting *normalised* inputs."""
    gen = torch.Generator().manual_seed(int(seed))
    with torch.random.fork_rng():
        torch.manual_seed(int(seed))
        model = SmallCNN(x.shape[1], int(y.max()) + 1, width, x.shape[-1])
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xn = (x - mean) / std
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), batch_size):
            idx = order[i:i + batch_size]
            loss = F.cross_entropy(model(xn[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor, mean: float = 0.5, std: float = 0.5) -> float:
    """Top-1 accuracy on pixel-space ``x``."""
    return float((model((x - mean) / std).argmax(1) == y).float().mean())


@torch.no_grad()
def attack_success(model: nn.Module, x: Tensor, y: Tensor, trigger: Trigger, target: int,
                   mean: float = 0.5, std: float = 0.5) -> float:
    """Share of the test images of other classes that ``trigger`` turns into ``target``."""
    keep = y != target
    pred = model((trigger.stamp(x[keep]) - mean) / std).argmax(1)
    return float((pred == target).float().mean())


# ----------------------------------------------------------------------------------------
# what the maps say
# ----------------------------------------------------------------------------------------
def _mass(maps: Tensor | np.ndarray) -> Tensor:
    """``(B, H, W)`` non-negative mass: ``sum_c |rho_c|`` of ``(B, C, H, W)`` (or ``(C, H, W)``)."""
    t = torch.as_tensor(np.asarray(maps) if not isinstance(maps, Tensor) else maps).detach().double()
    if t.dim() == 3:
        t = t[None]
    if t.dim() != 4:
        raise ValueError(f"maps must be (C, H, W) or (B, C, H, W), got shape {tuple(t.shape)}")
    return t.abs().sum(1)


def trigger_mass(maps: Tensor | np.ndarray, mask: Tensor) -> np.ndarray:
    """Share of each map's mass :math:`\\sum_c |\\rho_c|` inside ``mask`` ``(H, W)`` (the area
    share for a uniform map; NaN for a zero map)."""
    m = _mass(maps)
    total = m.flatten(1).sum(1)
    inside = (m * mask.to(m.device, torch.float64)).flatten(1).sum(1)
    return torch.where(total > 0, inside / total.clamp_min(1e-300), torch.full_like(total, math.nan)).numpy()


def peak_window(maps: Tensor | np.ndarray, window: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """The largest share of each map's mass inside any ``window x window`` square, and where
    (top-left ``(row, col)``), found without knowing any trigger. Returns ``(share, (B, 2))``."""
    m = _mass(maps)
    if window < 1 or window > min(m.shape[-2:]):
        raise ValueError(f"window must be in 1..{min(m.shape[-2:])}, got {window}")
    sums = F.avg_pool2d(m[:, None], window, stride=1)[:, 0] * window * window
    flat = sums.flatten(1)
    best, idx = flat.max(1)
    total = m.flatten(1).sum(1).clamp_min(1e-300)
    W = sums.shape[-1]
    return (best / total).numpy(), torch.stack([idx // W, idx % W], 1).numpy()


def anomaly_index(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    """Robust z-score of each class's score: ``(s - median) / (1.4826 * MAD)`` (Neural
    Cleanse's rule: a class above 2 is an outlier). A zero MAD gives +-inf for scores off the
    median and 0 on it."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or s.size < 3:
        raise ValueError(f"need a 1-D array of at least 3 class scores, got shape {s.shape}")
    med = np.median(s)
    mad = 1.4826 * np.median(np.abs(s - med))
    if mad == 0:
        return np.where(s > med, np.inf, np.where(s < med, -np.inf, 0.0))
    return (s - med) / mad


def map_scores(maps: Tensor | np.ndarray, mask: Tensor, window: int = 4,
               threshold: float = 2.0) -> dict[str, np.ndarray]:
    """What the maps of the classes of one model say, per class: ``trigger_mass`` (share of the
    mass in ``mask``), ``peak_window`` (:func:`peak_window`, with ``peak_row``/``peak_col``),
    ``anomaly`` (:func:`anomaly_index` of the peak shares) and ``flagged``: the class with the
    largest anomaly index, if that index exceeds ``threshold`` (one class, unless several tie)."""
    tmass = trigger_mass(maps, mask)
    peak, where = peak_window(maps, window)
    ai = anomaly_index(peak)
    flagged = (ai == ai.max()) & (ai > threshold)
    return {"trigger_mass": tmass, "peak_window": peak, "peak_row": where[:, 0], "peak_col": where[:, 1],
            "anomaly": ai, "flagged": flagged}


def _class_scores(scores: Mapping[str, np.ndarray], j: int, keys: Sequence[str] | None = None) -> dict[str, Any]:
    """The scores of class ``j`` as plain Python values (``flagged`` a bool, the rest floats)."""
    return {k: (bool(scores[k][j]) if k == "flagged" else float(scores[k][j])) for k in (keys or scores)}


# ----------------------------------------------------------------------------------------
# trials on the digits
# ----------------------------------------------------------------------------------------
@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run the small CNN on one CPU thread: its operations are too small to share, and on a
    busy 2-core machine two threads cost 3-4x the CPU time (measured: 6.0 s vs 1.6 s for 3
    epochs)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def trial_plan(seed: int, trial: int, size: int = 16, patterns: Sequence[str] = PATTERNS,
               trigger_sizes: Sequence[int] = (3, 4)) -> dict[str, Any]:
    """The backdoor of a trial, drawn from ``(seed, trial)``: the trial's own ``seed`` (``seed
    * 1000 + trial``), attacked class ``target``, ``pattern``, ``trigger_size`` and the corner
    ``(row, col)`` of ``size`` px images it sits in (the digits are centred, so corners are
    background)."""
    rng = np.random.default_rng([seed, trial, 0xBD])
    ts = int(rng.choice(trigger_sizes))
    corner = int(rng.integers(4))
    return {"seed": seed * 1000 + trial, "target": int(rng.integers(10)), "pattern": str(rng.choice(patterns)),
            "trigger_size": ts, "row": 0 if corner < 2 else size - ts, "col": 0 if corner % 2 == 0 else size - ts}


def run_trial(plan: Mapping[str, Any], agnostic: Mapping[str, Any], size: int = 16, epochs: int = 15,
              fraction: float = 0.1, distributions: Sequence[str] = ("lowres",), window: int = 4,
              threshold: float = 2.0) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """One trial of :func:`trial_plan`'s ``plan``, on one CPU thread (:func:`one_thread`).

    The digits at ``size`` px (split by the trial's seed); a clean and a poisoned model
    (:func:`poison` with ``fraction``, :func:`train` for ``epochs``), same seed; for each model
    and each distribution of ``distributions``, the input-agnostic maps of every class
    (:func:`cameras.agnostic.input_agnostic_map` with the settings ``agnostic``, the trial's
    seed) and their :func:`map_scores`. Returns one row per (kind, distribution, class) --
    ``kind, distribution, class``, the plan, ``clean_accuracy, attack_success``, the scores,
    ``train_seconds`` (per model), ``map_seconds`` -- and the magnitude maps
    ``{"<kind>_<distribution>": (classes, S, S)}``.
    """
    from .agnostic import input_agnostic_map, magnitude

    trig = Trigger(plan["pattern"], plan["trigger_size"], plan["row"], plan["col"])
    d = digits(size, seed=plan["seed"])
    classes = list(range(int(d.y_train.max()) + 1))
    with one_thread():
        t0 = time.perf_counter()
        xp, yp, _ = poison(d.x_train, d.y_train, trig, plan["target"], fraction, plan["seed"])
        models = {"clean": train(d.x_train, d.y_train, plan["seed"], epochs),
                  "poisoned": train(xp, yp, plan["seed"], epochs)}
        train_seconds = (time.perf_counter() - t0) / 2
    mask, rows, store = trig.mask(size, size), [], {}
    for kind, model in models.items():
        acc = accuracy(model, d.x_test, d.y_test)
        asr = attack_success(model, d.x_test, d.y_test, trig, plan["target"])
        for dist in distributions:
            with one_thread():
                t0 = time.perf_counter()
                maps = input_agnostic_map(model, classes, (1, size, size), (0.5,), (0.5,), seed=plan["seed"],
                                          progress=False, **{**agnostic, "distribution": dist})
                map_seconds = time.perf_counter() - t0
            store[f"{kind}_{dist}"] = magnitude(maps)
            sc = map_scores(maps, mask, window, threshold)
            rows += [{"kind": kind, "distribution": dist, "class": c, **plan, "clean_accuracy": acc,
                      "attack_success": asr, **_class_scores(sc, c), "train_seconds": train_seconds,
                      "map_seconds": map_seconds} for c in classes]
    return rows, store


# ----------------------------------------------------------------------------------------
# what the trials say
# ----------------------------------------------------------------------------------------
def detection(bd, threshold: float | None = None):
    """Per trial, model kind and distribution of :func:`run_trial` rows (with a ``trial``
    column): the attacked class, the flagged class (-1: none; with ``threshold``, the flag
    that threshold would give), the attacked class's anomaly index and rank, the largest
    anomaly index of the other classes, the trigger-region mass of the attacked class and the
    mean of the others, attack success, clean accuracy, pattern and trigger size."""
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


def rate_text(k: int, n: int) -> str:
    """``"k/n = rate % [95 % Wilson interval]"`` (:func:`cameras.metrics.wilson`), or "not run"."""
    from .metrics import wilson

    lo, hi = wilson(k, n)
    return "not run" if n == 0 else f"{k}/{n} = {100 * k / n:.0f} % [{100 * lo:.0f}, {100 * hi:.0f}]"


def _rates(det) -> tuple[Any, Any, dict[str, str]]:
    """Poisoned and clean rows of :func:`detection` and their detection / false-alarm texts."""
    p, c = det[det["kind"] == "poisoned"], det[det["kind"] == "clean"]
    return p, c, {"attacked class flagged": rate_text(int((p["flagged"] == p["target"]).sum()), len(p)),
                  "clean models flagged (false alarm)": rate_text(int((c["flagged"] >= 0).sum()), len(c))}


def detection_table(bd):
    """Per distribution of :func:`run_trial` rows: detection rate on the poisoned models
    (attacked class flagged), attacked class ranked first, false alarms on the clean models
    (any class flagged), each as :func:`rate_text`; mean trigger-region mass of the attacked
    class on the poisoned model, of the other classes, and of the attacked class on the clean
    model."""
    import pandas as pd

    rows = []
    for dist, g in detection(bd).groupby("distribution", sort=False):
        p, c, rates = _rates(g)
        rows.append({"distribution": dist, "poisoned models": len(p),
                     "attacked class flagged": rates["attacked class flagged"],
                     "attacked class ranked first": rate_text(int((p["rank_target"] == 1).sum()), len(p)),
                     "clean models flagged (false alarm)": rates["clean models flagged (false alarm)"],
                     "trigger-region mass, attacked class": p["mass_target"].mean(),
                     "… other classes": p["mass_others"].mean(),
                     "… attacked class, clean model": c["mass_target"].mean()})
    return pd.DataFrame(rows)


def threshold_sweep(bd, thresholds: Sequence[float] = (2, 3, 4, 5)):
    """Detection and false-alarm rates of :func:`run_trial` rows if the flagging threshold on
    the anomaly index were each of ``thresholds`` (the trade-off; nothing recomputed), per
    distribution in order of appearance."""
    import pandas as pd

    rows = [{"distribution": dist, "threshold": thr, **_rates(g)[2]} for thr in thresholds
            for dist, g in detection(bd, threshold=thr).groupby("distribution", sort=False)]
    out = pd.DataFrame(rows)
    order = {d: i for i, d in enumerate(dict.fromkeys(out["distribution"]))} if len(out) else {}
    return out.sort_values(["distribution", "threshold"], key=lambda c: c.map(order) if c.name == "distribution"
                           else c, kind="stable").reset_index(drop=True)


#: the three series of :func:`score_series`
SERIES = ("attacked class, poisoned model", "other classes, poisoned model", "clean model")


def score_series(bd):
    """Tidy scores of :func:`run_trial` rows for figures: per trial, distribution and series of
    :data:`SERIES`, the ``anomaly`` index and the trigger-region ``mass``: the attacked class on
    the poisoned model; the other classes of the poisoned model (largest index, mean mass); the
    clean model (largest index of any class, mass of the attacked class)."""
    import pandas as pd

    det = detection(bd)
    p, c = det[det["kind"] == "poisoned"], det[det["kind"] == "clean"]
    cols = ["trial", "distribution", "series", "anomaly", "mass"]
    return pd.concat([p.assign(series=SERIES[0], anomaly=p["anomaly_target"], mass=p["mass_target"])[cols],
                      p.assign(series=SERIES[1], anomaly=p["anomaly_others"], mass=p["mass_others"])[cols],
                      c.assign(series=SERIES[2], anomaly=np.maximum(c["anomaly_target"], c["anomaly_others"]),
                               mass=c["mass_target"])[cols]], ignore_index=True)

def plot_trial(bd, maps: Mapping[str, np.ndarray], trial: int, distribution: str, S: int = 16):
    """One trial of :func:`run_trial` rows ``bd`` and ``maps`` (``{"<kind>_<distribution>": (10,
    S, S)}``, as returned or stored 8-bit): the test image and the class maps of each model;
    trigger outlined, attacked class in red, a: anomaly index."""
    import re

    from matplotlib.patches import Rectangle

    from . import plots as P

    g = bd[(bd["trial"] == trial) & (bd["distribution"] == distribution)]
    r0, rows = g.iloc[0], []
    tr = Trigger(str(r0["pattern"]), int(r0["trigger_size"]), int(r0["row"]), int(r0["col"]))
    x = digits(S, seed=int(r0["seed"])).x_test
    for k, kind in enumerate(("poisoned", "clean")):
        m, h = maps.get(f"{kind}_{distribution}"), g[g["kind"] == kind].set_index("class")
        img = tr.stamp(x[0])[0] if k == 0 else x[1, 0]
        rows.append([P.Panel(image=img.numpy(), title="with trigger" if k == 0 else "clean image",
                             note=f"attack success {100 * h['attack_success'].iloc[0]:.0f} %")]
                    + [P.Panel(map=None if m is None else P.stored_map(m[c]),
                               title=f"{c}: a={h.loc[c, 'anomaly']:.1f}") for c in range(10)])
    fig = P.map_grid(rows, row_titles=["poisoned model", "clean model"], cmap="magma",
                     colorbar="map magnitude m")
    for ax in fig.axes:
        if (hit := re.match(r"(\d+): a=", ax.get_title())) is not None:
            corner = (tr.col - 0.5, tr.row - 0.5)
            ax.add_patch(Rectangle(corner, tr.size, tr.size, fill=False, ec="c", lw=1.5))
            ax.title.set_color("r" if int(hit.group(1)) == int(r0["target"]) else "k")
    return fig


def plot_scores(bd, threshold: float):
    """Anomaly index (clipped at 30) against trigger mass of :func:`run_trial` rows
    (:func:`score_series`), one panel per sample distribution; ``threshold`` dashed."""
    from . import plots as P

    d = score_series(bd)
    d = d.assign(anomaly=d["anomaly"].clip(upper=30), where=d["distribution"] + " samples")
    fig = P.scatter_chart(d, x="anomaly", y="mass", hue="series", panel="where",
                          xlabel="anomaly index", ylabel="map mass in trigger region", ncols=2,
                          height_px=300)
    for ax in fig.axes:
        ax.axvline(threshold, ls="--", color="k", lw=0.8)
    return fig


# ----------------------------------------------------------------------------------------
# the paper profile: an ImageNet model with a backdoor
# ----------------------------------------------------------------------------------------
def finetune_backdoor(lm: Any, images01: Tensor, labels: Tensor, trigger: Trigger, target: int,
                      fraction: float = 0.1, epochs: int = 5, lr: float = 1e-3, batch_size: int = 32,
                      seed: int = 0, trainable: Sequence[str] = ("_conv_head", "_bn1", "_fc"),
                      progress: bool = True) -> tuple[nn.Module, dict[str, float]]:
    """Fine-tune a copy of ``lm.model`` (a :class:`~cameras.models.LoadedModel`, e.g.
    EfficientNet-Lite0) on ``images01`` ``(n, 3, S, S)`` in [0, 1] with BadNets poisoning.

    A ``fraction`` of the images of other classes get ``trigger`` and label ``target``
    (:func:`poison`); only the modules named in ``trainable`` are updated (Adam, ``lr``),
    with random horizontal flips, for ``epochs`` passes in batches of ``batch_size`` on
    ``lm.device``. Batch norm layers stay in eval mode (their statistics are not re-estimated
    from a few images). Returns the model (eval mode) and ``{"clean_accuracy",
    "attack_success"}`` measured on the same images (the sample has one image per class, so
    there is no held-out split; the attack success uses every image of another class).
    """
    import copy

    from tqdm.auto import tqdm

    if images01.dim() != 4 or len(images01) != len(labels):
        raise ValueError("images01 must be (n, C, H, W) with one label per image")
    model = copy.deepcopy(lm.model).eval()
    names = dict(model.named_modules())
    missing = [n for n in trainable if n not in names]
    if missing:
        raise ValueError(f"unknown module(s) {missing} to fine-tune")
    for p in model.parameters():
        p.requires_grad_(False)
    params = [p for n in trainable for p in names[n].parameters()]
    for p in params:
        p.requires_grad_(True)
    xp, yp, _ = poison(images01, labels, trigger, target, fraction, seed)
    dev = lm.device
    mean = torch.tensor(lm.mean, device=dev).view(1, -1, 1, 1)
    std = torch.tensor(lm.std, device=dev).view(1, -1, 1, 1)
    opt = torch.optim.Adam(params, lr=lr)
    gen = torch.Generator().manual_seed(int(seed))
    for _ in tqdm(range(epochs), desc="fine-tuning with a trigger", disable=not progress):
        order = torch.randperm(len(yp), generator=gen)
        for i in range(0, len(yp), batch_size):
            idx = order[i:i + batch_size]
            x = xp[idx].to(dev)
            flip = torch.rand(len(idx), generator=gen) < 0.5
            x[flip.to(dev)] = x[flip.to(dev)].flip(-1)
            loss = F.cross_entropy(model((x - mean) / std), yp[idx].to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    out = {"clean_accuracy": _batched_accuracy(model, images01, labels, mean, std, batch_size),
           "attack_success": _batched_accuracy(model, trigger.stamp(images01[labels != target]),
                                               torch.full_like(labels[labels != target], target),
                                               mean, std, batch_size)}
    return model, out


@torch.no_grad()
def _batched_accuracy(model: nn.Module, x: Tensor, y: Tensor, mean: Tensor, std: Tensor, bs: int) -> float:
    dev = mean.device
    hits = [(model((x[i:i + bs].to(dev) - mean) / std).argmax(1).cpu() == y[i:i + bs]) for i in range(0, len(y), bs)]
    return float(torch.cat(hits).float().mean()) if hits else math.nan


def imagenet_trial(lm: Any, images01: Tensor, labels: Tensor, trial: int, agnostic: Any, *, seed: int = 0,
                   fraction: float = 0.1, epochs: int = 5, lr: float = 1e-3, trigger_size: int = 24,
                   classes: int = 10, num_classes: int = 1000, threshold: float = 2.0, batch_size: int | None = None,
                   trainable: Sequence[str] = ("_conv_head", "_bn1", "_fc"),
                   progress: bool = True) -> list[dict[str, Any]]:
    """One ImageNet backdoor trial (the ``paper`` profile; meant for a GPU).

    From ``(seed, trial)``: a trigger (random pattern of :data:`PATTERNS`, ``trigger_size`` px,
    8 px from the bottom-right corner) and ``classes`` distinct classes of ``num_classes``, the
    first being the attacked one. ``lm`` is fine-tuned with the trigger on ``images01`` /
    ``labels`` (:func:`finetune_backdoor`, seed ``seed + trial``); the input-agnostic maps of
    the classes (:class:`cameras.agnostic.InputAgnostic` with the
    :class:`~cameras.agnostic.AgnosticConfig` ``agnostic``, seed ``seed``) are scored with a
    window of the trigger's size (:func:`map_scores`). One row per class: ``class, target``,
    ``clean_accuracy, attack_success``, ``trigger_mass, peak_window, anomaly, flagged``,
    ``seconds`` (fine-tuning and maps).
    """
    from .agnostic import InputAgnostic

    shape = tuple(images01.shape[1:])
    rng = np.random.default_rng([seed, trial, 0x1B])
    ts = int(trigger_size)
    trig = Trigger(str(rng.choice(PATTERNS)), ts, shape[1] - ts - 8, shape[2] - ts - 8)
    chosen = [int(v) for v in rng.choice(num_classes, size=int(classes), replace=False)]
    target = chosen[0]
    t0 = time.perf_counter()
    model, stats = finetune_backdoor(lm, images01, labels, trig, target, fraction, int(epochs), lr, seed=seed + trial,
                                     trainable=trainable, progress=progress)
    maps = InputAgnostic(model, lm.mean, lm.std, agnostic, batch_size=batch_size, progress=progress)(
        chosen, shape, seed=seed).cpu()
    seconds = time.perf_counter() - t0
    sc = map_scores(maps, trig.mask(shape[1], shape[2]), ts, threshold)
    keys = ("trigger_mass", "peak_window", "anomaly", "flagged")
    return [{"class": c, "target": target, **stats, **_class_scores(sc, j, keys), "seconds": seconds}
            for j, c in enumerate(chosen)]

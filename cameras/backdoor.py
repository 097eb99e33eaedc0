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
* :func:`wilson` -- a Wilson score interval for a detection rate;
* :func:`finetune_backdoor` -- the ``paper`` profile's path: fine-tune an ImageNet model
  (EfficientNet-Lite0) on triggered ImageNet-sample images (meant for a GPU).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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
    "wilson",
    "finetune_backdoor",
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


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``k / n`` (95 % for ``z = 1.96``); it contains
    ``k / n`` also at 0 and 1. ``(nan, nan)`` for ``n = 0``."""
    if n <= 0:
        return math.nan, math.nan
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


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

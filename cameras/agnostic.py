r"""Input-agnostic saliency: Akhtar & Jalwana, AAAI 2023 (arXiv 2303.17836), as we read it.

*Rethinking interpretation: Input-agnostic saliency mapping of deep visual classifiers.*
Instead of explaining one input, the map attributes a class to *generic* features: it is
estimated by accumulating the model's gradient information over samples of an *unrestricted*
data distribution (no image of the class is used), *nudging* independent samples over the
loss surface towards the class, and turning what was accumulated into a visualisation by
*projection, scaling and refinement* that keeps the map's *model fidelity* (the map acts on
the model: added to an input it pushes the prediction towards the class).

Only the paper's abstract was available to this project, so the steps below are **our
reading** of it; every choice is a parameter of :class:`InputAgnostic`.

Notation: :math:`f` maps a *normalised* image to logits; images :math:`x` live in pixel
space :math:`[0, 1]^d` (``d = C x H x W``) and reach the model as
:math:`\nu(x) = (x - \mu) / \sigma`; :math:`\ell_t(x) = -\log \mathrm{softmax}(f(\nu(x)))_t`
is the cross-entropy towards the target class :math:`t`; :math:`\Pi_{[0,1]}` clips to the
pixel range.

1. *Unrestricted distribution* (``distribution``, ``n_samples`` = :math:`N`):
   :math:`x_i^{(0)} \sim \mathcal D` i.i.d., :math:`i = 1..N`, with
   :math:`\mathcal D = U[0,1]^d` (``"uniform"``) or :math:`\Pi_{[0,1]}(\mathcal N(\tfrac12,
   s^2 I))` (``"gaussian"``, :math:`s` = ``gaussian_std``).
2. *Nudging over the loss surface* (``n_steps`` = :math:`K`, ``step_size`` = :math:`\alpha`,
   ``step_rule``): :math:`g_i^{(k)} = \nabla_x \ell_t(x_i^{(k)})`,
   :math:`x_i^{(k+1)} = \Pi_{[0,1]}\big(x_i^{(k)} - \alpha\, s(g_i^{(k)})\big)`, with
   :math:`s(g) = g / \mathrm{rms}(g)` (``"l2"``: normalised gradient descent, every step moves
   a sample by :math:`\alpha` in RMS pixel units) or :math:`s(g) = \mathrm{sign}(g)`
   (``"sign"``).
3. *Accumulated gradient information* (``accumulate``):
   :math:`G = -\frac{1}{NK}\sum_{i,k} g_i^{(k)} / \lVert g_i^{(k)} \rVert_2` (``"gradient"``:
   every sample and step has the same say, so the common -- "geometrically correlated" --
   direction survives and the sample-specific parts average out) or
   :math:`G = \frac1N \sum_i (x_i^{(K)} - x_i^{(0)})` (``"displacement"``).
4. *Projection and scaling* (``norm`` = :math:`p \in \{2, \infty\}`, ``radius`` =
   :math:`\varepsilon`): :math:`\rho_0 = P_\varepsilon(G) = \varepsilon\, G / \lVert G
   \rVert_p`, the accumulated direction on the sphere of the :math:`\ell_p` ball (for
   :math:`p = 2` the Euclidean projection of any :math:`G` outside the ball).
5. *Refinement* (``refine_steps`` = :math:`R`, ``refine_samples`` = :math:`M`,
   ``refine_step_size`` = :math:`\beta`, ``smooth_sigma`` = :math:`\varsigma`): on fresh
   samples :math:`z_j \sim \mathcal D`,
   :math:`h_r = \frac1M \sum_j \nabla_\rho\, \ell_t(\Pi_{[0,1]}(z_j + \rho_r))` and
   :math:`\rho_{r+1} = B_\varepsilon\big(\rho_r - \beta\,\bar\varepsilon\, S_\varsigma(s(h_r))
   \big)`, where :math:`B_\varepsilon` is the Euclidean projection onto the ball (clipping to
   :math:`[-\varepsilon, \varepsilon]` for :math:`p = \infty`, rescaling for :math:`p = 2`),
   :math:`\bar\varepsilon` the ball's RMS scale (:math:`\varepsilon` for :math:`p=\infty`,
   :math:`\varepsilon/\sqrt d` for :math:`p = 2`) and :math:`S_\varsigma` a Gaussian blur
   (none for :math:`\varsigma = 0`). The map is then put back on the sphere,
   :math:`\rho^\star = P_\varepsilon(\rho_R)`: :math:`\lVert\rho^\star\rVert_p = \varepsilon`
   holds exactly (checked in float64 on the returned float32 values, :func:`project`).
6. *Visualisation* (:func:`visualize`): :math:`v = \tfrac12 + \rho^\star / (2\lVert
   \rho^\star\rVert_\infty) \in [0, 1]^d` (grey = 0), and :func:`magnitude`,
   :math:`m = \sum_c |\rho^\star_c|` min-max normalised, a one-channel heat map.

The signed map :math:`\rho^\star` (``(C, H, W)``, pixel units) is what the model sees; its
*fidelity* is measured by adding it to fresh samples and to real images
(:func:`target_scores`).

Several targets are computed in one batch (each with its own random stream, derived from
``seed`` and the target, so a target's map does not depend on which other targets are
computed with it, nor on ``batch_size``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

__all__ = [
    "CITATION",
    "DISTRIBUTIONS",
    "STEP_RULES",
    "ACCUMULATE",
    "NORMS",
    "AgnosticConfig",
    "InputAgnostic",
    "input_agnostic_map",
    "sample",
    "project",
    "ball_project",
    "norm_of",
    "visualize",
    "magnitude",
    "random_map",
    "shuffled_map",
    "target_scores",
]

CITATION = ("N. Akhtar and M. A. A. K. Jalwana, Rethinking interpretation: Input-agnostic "
            "saliency mapping of deep visual classifiers, AAAI 2023 (arXiv 2303.17836)")
DISTRIBUTIONS = ("uniform", "gaussian", "lowres")
STEP_RULES = ("l2", "sign")
ACCUMULATE = ("gradient", "displacement")
NORMS = ("inf", "2")
_TINY = 1e-12


# ----------------------------------------------------------------------------------------
# settings
# ----------------------------------------------------------------------------------------
def _norm_name(norm: Any) -> str:
    """``2``, ``"2"``, ``"l2"`` -> ``"2"``; ``inf``, ``"inf"``, ``"linf"`` -> ``"inf"``."""
    key = str(norm).strip().lower().removeprefix("l")
    if key in ("2", "2.0"):
        return "2"
    if key in ("inf", "infinity"):
        return "inf"
    raise ValueError(f"norm must be 2 or 'inf', got {norm!r}")


def _positive(v: Any, name: str, integer: bool = False, zero: bool = False) -> Any:
    kind = int if integer else (int, float)
    if isinstance(v, bool) or not isinstance(v, kind) or not math.isfinite(v) or v < 0 or (v == 0 and not zero):
        what = "an int" if integer else "a number"
        raise ValueError(f"{name} must be {what} {'>= 0' if zero else '> 0'}, got {v!r}")
    return v


@dataclass(frozen=True)
class AgnosticConfig:
    """The parameters of the method (see the module docstring for the equations)."""

    distribution: str = "uniform"  #: step 1: "uniform" U[0,1]^d or "gaussian"
    gaussian_std: float = 0.25  #: step 1: s of the clipped Gaussian around 1/2
    lowres_factor: int = 4  #: step 1: "lowres": noise on a grid this many times coarser
    n_samples: int = 16  #: step 1: N samples per target
    n_steps: int = 10  #: step 2: K nudging steps
    step_size: float = 0.02  #: step 2: alpha, pixel units (RMS for "l2", per pixel for "sign")
    step_rule: str = "l2"  #: step 2: "l2" (normalised gradient) or "sign"
    accumulate: str = "gradient"  #: step 3: "gradient" or "displacement"
    norm: str = "inf"  #: step 4: p, "inf" or "2"
    radius: float = 16 / 255  #: step 4: epsilon, pixel units
    refine_steps: int = 10  #: step 5: R (0: no refinement)
    refine_samples: int | None = None  #: step 5: M fresh samples per step (None: N)
    refine_step_size: float = 0.25  #: step 5: beta, in units of the ball's RMS scale
    smooth_sigma: float = 0.0  #: step 5: Gaussian blur of the refinement step, pixels

    def __post_init__(self):
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {DISTRIBUTIONS}, got {self.distribution!r}")
        if self.step_rule not in STEP_RULES:
            raise ValueError(f"step_rule must be one of {STEP_RULES}, got {self.step_rule!r}")
        if self.accumulate not in ACCUMULATE:
            raise ValueError(f"accumulate must be one of {ACCUMULATE}, got {self.accumulate!r}")
        object.__setattr__(self, "norm", _norm_name(self.norm))
        for name in ("n_samples", "n_steps", "lowres_factor"):
            _positive(getattr(self, name), name, integer=True)
        _positive(self.refine_steps, "refine_steps", integer=True, zero=True)
        if self.refine_samples is not None:
            _positive(self.refine_samples, "refine_samples", integer=True)
        for name in ("gaussian_std", "step_size", "radius", "refine_step_size"):
            _positive(getattr(self, name), name)
        _positive(self.smooth_sigma, "smooth_sigma", zero=True)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


# ----------------------------------------------------------------------------------------
# sampling, norms and projections
# ----------------------------------------------------------------------------------------
def _generator(seed: int, *stream: int) -> torch.Generator:
    """A CPU generator for (seed, target, phase, ...): independent streams per target."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *[int(s) & 0xFFFFFFFF for s in stream]])
    return torch.Generator().manual_seed(int(state.generate_state(1, dtype=np.uint64)[0] >> 1))


def sample(distribution: str, shape: Sequence[int], generator: torch.Generator,
           gaussian_std: float = 0.25, lowres_factor: int = 4) -> Tensor:
    """``shape`` float32 samples of ``distribution`` in [0, 1] (step 1), on the CPU.

    ``"lowres"``: uniform noise on a grid ``lowres_factor`` times coarser, upsampled
    bilinearly (a smooth random field; ``shape`` is ``(..., C, H, W)``)."""
    if distribution == "uniform":
        return torch.rand(tuple(shape), generator=generator)
    if distribution == "gaussian":
        return (0.5 + gaussian_std * torch.randn(tuple(shape), generator=generator)).clamp(0, 1)
    if distribution == "lowres":
        *lead, C, H, W = shape
        h, w = max(1, math.ceil(H / lowres_factor)), max(1, math.ceil(W / lowres_factor))
        z = torch.rand((math.prod(lead), C, h, w), generator=generator)
        z = F.interpolate(z, size=(H, W), mode="bilinear", align_corners=False)
        return z.reshape(*lead, C, H, W).clamp(0, 1)
    raise ValueError(f"distribution must be one of {DISTRIBUTIONS}, got {distribution!r}")


def norm_of(maps: Tensor, norm: str | float = "inf") -> Tensor:
    """The ``l_p`` norm of each map of a ``(B, ...)`` tensor, in float64."""
    ord_ = math.inf if _norm_name(norm) == "inf" else 2.0
    return torch.linalg.vector_norm(maps.detach().double().flatten(1), ord=ord_, dim=1)


def _enforce(out: Tensor, norm: str, radius: float) -> Tensor:
    """Shrink (by float32 ulps) the rows whose float64 norm exceeds ``radius`` after rounding."""
    for _ in range(64):
        over = norm_of(out, norm) > radius
        if not bool(over.any()):
            return out
        out = torch.where(over.view(-1, *[1] * (out.dim() - 1)).to(out.device), out * (1 - 2.0**-22), out)
    raise RuntimeError("could not enforce the norm bound")  # pragma: no cover


def project(maps: Tensor, norm: str | float = "inf", radius: float = 16 / 255) -> Tensor:
    """Step 4, :math:`P_\\varepsilon`: each map of ``(B, ...)`` scaled to ``l_p`` norm ``radius``.

    Computed in float64 and returned in ``maps``' dtype with ``||out||_p <= radius`` holding
    exactly for the returned values (evaluated in float64) and equal to ``radius`` to within
    a few float32 ulps. A zero map stays zero.
    """
    norm = _norm_name(norm)
    _positive(radius, "radius")
    g = maps.detach().double()
    n = norm_of(g, norm).to(g.device)
    scale = torch.where(n > 0, radius / n.clamp_min(1e-300), torch.zeros_like(n))
    out = g * scale.view(-1, *[1] * (g.dim() - 1))
    if norm == "inf":
        out = out.clamp(-radius, radius)
    return _enforce(out.to(maps.dtype), norm, radius)


def ball_project(maps: Tensor, norm: str | float = "inf", radius: float = 16 / 255) -> Tensor:
    """:math:`B_\\varepsilon`: the Euclidean projection onto the ``l_p`` ball (clip for ``inf``,
    rescale maps outside the ball for ``2``); maps inside stay as they are."""
    norm = _norm_name(norm)
    if norm == "inf":
        return _enforce(maps.clamp(-radius, radius), norm, radius)
    n = norm_of(maps, norm).to(maps.device)
    scale = torch.where(n > radius, radius / n.clamp_min(1e-300), torch.ones_like(n))
    return _enforce((maps.double() * scale.view(-1, *[1] * (maps.dim() - 1))).to(maps.dtype), norm, radius)


def _direction(g: Tensor, rule: str) -> Tensor:
    """Step 2's :math:`s(g)` per sample of ``(B, ...)``: ``g / rms(g)`` or ``sign(g)``."""
    if rule == "sign":
        return torch.sign(g)
    rms = g.flatten(1).pow(2).mean(1).sqrt().clamp_min(_TINY)
    return g / rms.view(-1, *[1] * (g.dim() - 1))


def _blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)`` (reflect padding); identity for sigma 0."""
    if sigma <= 0:
        return x
    r = max(1, int(math.ceil(3 * sigma)))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=x.dtype, device=x.device) / sigma) ** 2)
    k = (k / k.sum()).view(1, 1, -1)
    B, C, H, W = x.shape
    y = x.reshape(B * C, 1, H, W)
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))
    return y.view(B, C, H, W)


# ----------------------------------------------------------------------------------------
# the method
# ----------------------------------------------------------------------------------------
def _check_shape(image_shape: Any, channels: int) -> tuple[int, int, int]:
    if (not isinstance(image_shape, (tuple, list)) or len(image_shape) != 3
            or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in image_shape)):
        raise ValueError(f"image_shape must be (C, H, W) with positive ints, got {image_shape!r}")
    shape = tuple(int(v) for v in image_shape)
    if shape[0] != channels:
        raise ValueError(f"image_shape has {shape[0]} channel(s) but mean/std have {channels}")
    return shape  # type: ignore[return-value]


def _check_stats(mean: Any, std: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    try:
        m = tuple(float(v) for v in mean)
        s = tuple(float(v) for v in std)
    except TypeError:
        raise TypeError(f"mean and std must be sequences of numbers, got {mean!r} and {std!r}") from None
    if not m or len(m) != len(s):
        raise ValueError(f"mean and std must have the same (non-zero) length, got {len(m)} and {len(s)}")
    if any(v <= 0 or not math.isfinite(v) for v in s) or not all(math.isfinite(v) for v in m):
        raise ValueError(f"std must be positive and finite, mean finite; got mean {mean!r}, std {std!r}")
    return m, s


def _check_targets(target: Any, num_classes: int) -> list[int]:
    items = [target] if isinstance(target, (int, np.integer)) and not isinstance(target, bool) else target
    if isinstance(items, Tensor):
        items = items.flatten().tolist()
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence) or not items:
        raise ValueError(f"target must be a class index or a non-empty sequence of them, got {target!r}")
    out = []
    for t in items:
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= int(t) < num_classes:
            raise ValueError(f"target must be a class index in 0..{num_classes - 1}, got {t!r}")
        out.append(int(t))
    return out


class InputAgnostic:
    """Input-agnostic saliency maps of ``model`` (our reading of Akhtar & Jalwana, AAAI 2023).

    Parameters
    ----------
    model:
        A classifier returning logits for *normalised* inputs ``(x - mean) / std``; put it in
        eval mode (batch norm must not depend on the batch).
    mean, std:
        The normalisation of the model's inputs (pixel space is [0, 1]).
    config:
        An :class:`AgnosticConfig`; keyword arguments override its fields.
    batch_size:
        Samples pushed through the model together (``None``: all of one step at once). The
        result does not depend on it beyond float rounding.
    device:
        Where samples go (default: the model's device). Draws are made on the CPU, so a seed
        gives the same samples on every device.
    progress:
        Show a tqdm bar over the steps.

    Call with ``target`` (a class index or a sequence of them), ``image_shape`` ``(C, H, W)``
    and ``seed``: returns the signed map ``(C, H, W)`` (``(T, C, H, W)`` for a sequence), in
    pixel units, with ``||map||_p == radius``. After a call, :attr:`history` holds the mean
    target probability of the samples at each nudging and refinement step, ``(steps, T)``.
    """

    def __init__(self, model: nn.Module, mean: Sequence[float] = (0.5, 0.5, 0.5),
                 std: Sequence[float] = (0.5, 0.5, 0.5), config: AgnosticConfig | None = None, *,
                 batch_size: int | None = None, device: str | torch.device | None = None,
                 progress: bool = True, **settings: Any):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        unknown = sorted(set(settings) - set(AgnosticConfig.names()))
        if unknown:
            raise ValueError(f"unknown setting(s) {', '.join(unknown)}; valid: {', '.join(AgnosticConfig.names())}")
        self.model = model
        self.mean, self.std = _check_stats(mean, std)
        self.config = replace(config or AgnosticConfig(), **settings)
        if batch_size is not None:
            _positive(batch_size, "batch_size", integer=True)
        self.batch_size = batch_size
        self.device = torch.device(device) if device is not None else _model_device(model)
        self.progress = progress
        self.history: dict[str, np.ndarray] = {}

    def __repr__(self) -> str:
        return f"InputAgnostic({self.config})"

    # -- model access ----------------------------------------------------------------------
    def _stats(self, like: Tensor) -> tuple[Tensor, Tensor]:
        m = torch.tensor(self.mean, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)
        s = torch.tensor(self.std, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)
        return m, s

    def gradients(self, x: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """``(grad of the cross-entropy towards targets w.r.t. x, target probability)`` per
        sample of pixel-space ``x`` ``(B, C, H, W)`` (clipped to [0, 1] inside), in chunks."""
        bs = self.batch_size or x.shape[0]
        grads, probs = [], []
        for i in range(0, x.shape[0], bs):
            xx = x[i:i + bs].detach().clone().requires_grad_(True)
            m, s = self._stats(xx)
            logits = self.model((xx.clamp(0, 1) - m) / s)
            t = targets[i:i + bs]
            loss = F.cross_entropy(logits.float(), t, reduction="sum")
            (g,) = torch.autograd.grad(loss, xx)
            grads.append(g.detach())
            probs.append(logits.detach().float().softmax(1).gather(1, t[:, None])[:, 0])
        return torch.cat(grads), torch.cat(probs)

    def num_classes(self, shape: tuple[int, int, int]) -> int:
        with torch.no_grad():
            m, s = self._stats(torch.zeros(1, device=self.device))
            out = self.model((torch.full((1, *shape), 0.5, device=self.device) - m) / s)
        if out.dim() != 2:
            raise ValueError(f"the model must return logits (B, classes), got shape {tuple(out.shape)}")
        return int(out.shape[1])

    # -- the steps -------------------------------------------------------------------------
    def _draw(self, seed: int, targets: list[int], phase: int, n: int, shape) -> Tensor:
        c = self.config
        return torch.stack([sample(c.distribution, (n, *shape), _generator(seed, t, phase), c.gaussian_std,
                                   c.lowres_factor)
                            for t in targets]).to(self.device)

    def nudge(self, targets: list[int], shape, seed: int, bar=None) -> Tensor:
        """Steps 1-3: the accumulated gradient information :math:`G`, ``(T, C, H, W)``."""
        c, T, N = self.config, len(targets), self.config.n_samples
        x0 = self._draw(seed, targets, 0, N, shape)
        x = x0.clone()
        tt = torch.tensor(targets, device=self.device).repeat_interleave(N)
        G = torch.zeros((T, *shape), dtype=torch.float64, device=self.device)
        hist = []
        for _ in range(c.n_steps):
            g, p = self.gradients(x.flatten(0, 1), tt)
            hist.append(p.view(T, N).mean(1).cpu().numpy())
            unit = g / g.flatten(1).norm(dim=1).clamp_min(_TINY).view(-1, 1, 1, 1)
            G -= unit.view(T, N, *shape).double().sum(1)
            x = (x - c.step_size * _direction(g, c.step_rule).view_as(x)).clamp(0, 1)
            if bar is not None:
                bar.update(1)
        self.history["nudge"] = np.array(hist)
        if c.accumulate == "displacement":
            return (x - x0).double().mean(1)
        return G / (N * c.n_steps)

    def refine(self, rho: Tensor, targets: list[int], shape, seed: int, bar=None) -> Tensor:
        """Step 5: refinement of ``rho`` ``(T, C, H, W)`` on fresh samples, inside the ball."""
        c, T = self.config, len(targets)
        M = c.refine_samples or c.n_samples
        d = math.prod(shape)
        scale = c.radius if c.norm == "inf" else c.radius / math.sqrt(d)
        tt = torch.tensor(targets, device=self.device).repeat_interleave(M)
        hist = []
        for r in range(c.refine_steps):
            z = self._draw(seed, targets, 1 + r, M, shape)
            g, p = self.gradients((z + rho[:, None]).flatten(0, 1), tt)
            hist.append(p.view(T, M).mean(1).cpu().numpy())
            h = g.view(T, M, *shape).mean(1)
            step = _blur(_direction(h, c.step_rule), c.smooth_sigma)
            rho = ball_project(rho - c.refine_step_size * scale * step, c.norm, c.radius)
            if bar is not None:
                bar.update(1)
        self.history["refine"] = np.array(hist).reshape(-1, T)
        return rho

    def __call__(self, target: int | Sequence[int], image_shape: Sequence[int] = (3, 224, 224),
                 seed: int = 0) -> Tensor:
        shape = _check_shape(image_shape, len(self.mean))
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ValueError(f"seed must be an int, got {seed!r}")
        targets = _check_targets(target, self.num_classes(shape))
        if self.model.training:
            warnings.warn("the model is in training mode (batch norm / dropout make the map depend "
                          "on the batch); call model.eval() first", stacklevel=2)
        c = self.config
        self.history = {}
        with tqdm(total=c.n_steps + c.refine_steps, desc=f"input-agnostic maps ({len(targets)} target(s))",
                  disable=not self.progress, leave=False) as bar:
            G = self.nudge(targets, shape, int(seed), bar)
            rho = project(G.float(), c.norm, c.radius)
            if c.refine_steps:
                rho = project(self.refine(rho, targets, shape, int(seed), bar), c.norm, c.radius)
        rho = rho.detach()
        return rho if not _is_single(target) else rho[0]


def _is_single(target: Any) -> bool:
    return isinstance(target, (int, np.integer)) and not isinstance(target, bool)


def _model_device(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def input_agnostic_map(model: nn.Module, target: int | Sequence[int], image_shape: Sequence[int] = (3, 224, 224),
                       mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.5, 0.5, 0.5),
                       seed: int = 0, *, batch_size: int | None = None, device: str | torch.device | None = None,
                       progress: bool = True, **settings: Any) -> Tensor:
    """The signed input-agnostic map of ``target`` for ``model`` (see :class:`InputAgnostic`).

    ``m = input_agnostic_map(model, target=281, image_shape=(3, 224, 224), mean=lm.mean,
    std=lm.std, seed=0)`` gives ``(3, 224, 224)`` in pixel units with ``||m||_inf == 16/255``
    by default; ``visualize(m)`` shows it in [0, 1]. ``settings`` are :class:`AgnosticConfig`
    fields (``n_samples``, ``n_steps``, ``radius``, ``norm``, ...).
    """
    return InputAgnostic(model, mean, std, batch_size=batch_size, device=device, progress=progress,
                         **settings)(target, image_shape, seed)


# ----------------------------------------------------------------------------------------
# display and controls
# ----------------------------------------------------------------------------------------
def _as_maps(maps: Tensor | np.ndarray) -> tuple[Tensor, bool]:
    t = torch.as_tensor(np.asarray(maps) if not isinstance(maps, Tensor) else maps).detach().float().cpu()
    if t.dim() == 3:
        return t[None], True
    if t.dim() != 4:
        raise ValueError(f"maps must be (C, H, W) or (B, C, H, W), got shape {tuple(t.shape)}")
    return t, False


def visualize(maps: Tensor | np.ndarray) -> np.ndarray:
    """Step 6: ``1/2 + rho / (2 ||rho||_inf)`` as ``(H, W, C)`` (or ``(B, H, W, C)``) floats in
    [0, 1]; grey is zero, a zero map is all grey."""
    t, single = _as_maps(maps)
    peak = t.abs().flatten(1).amax(1).clamp_min(_TINY).view(-1, 1, 1, 1)
    v = (0.5 + t / (2 * peak)).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    return v[0] if single else v


def magnitude(maps: Tensor | np.ndarray) -> np.ndarray:
    """:math:`\\sum_c |\\rho_c|` min-max normalised to [0, 1] per map, ``(H, W)`` or ``(B, H, W)``."""
    t, single = _as_maps(maps)
    m = t.abs().sum(1)
    lo = m.flatten(1).amin(1).view(-1, 1, 1)
    hi = m.flatten(1).amax(1).view(-1, 1, 1)
    out = torch.where(hi > lo, (m - lo) / (hi - lo).clamp_min(_TINY), torch.zeros_like(m)).numpy()
    return out[0] if single else out


def random_map(shape: Sequence[int], norm: str | float = "inf", radius: float = 16 / 255,
               seed: int = 0, n: int | None = None) -> Tensor:
    """A control: Gaussian-direction map(s) on the same ``l_p`` sphere as the method's maps."""
    g = torch.randn((n or 1, *shape), generator=_generator(seed, 0x5EED))
    out = project(g, norm, radius)
    return out if n is not None else out[0]


def shuffled_map(maps: Tensor, seed: int = 0) -> Tensor:
    """A control: the map's own values in a random order (same histogram, so the same every
    ``l_p`` norm), ``(C, H, W)`` or ``(B, C, H, W)``."""
    t, single = _as_maps(maps)
    gen = _generator(seed, 0x5F1E)
    out = torch.stack([m.flatten()[torch.randperm(m.numel(), generator=gen)].view_as(m) for m in t])
    return out[0] if single else out


@torch.no_grad()
def target_scores(model: nn.Module, images: Tensor, maps: Tensor, targets: Sequence[int] | Tensor,
                  mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.5, 0.5, 0.5),
                  batch_size: int = 64) -> tuple[Tensor, Tensor]:
    """Fidelity: add each map to every image, ``clip(x + rho, 0, 1)``, and score its target.

    ``images`` ``(n, C, H, W)`` in pixel space [0, 1]; ``maps`` ``(k, C, H, W)`` (a zero map
    scores the clean images); ``targets`` ``k`` classes. Returns ``(hit, prob)``, each
    ``(k, n)``: whether the top-1 is the map's target, and the target's softmax probability.
    """
    if images.dim() != 4 or maps.dim() != 4 or images.shape[1:] != maps.shape[1:]:
        raise ValueError(f"images (n, C, H, W) and maps (k, C, H, W) must share (C, H, W); got "
                         f"{tuple(images.shape)} and {tuple(maps.shape)}")
    t = torch.as_tensor(targets, dtype=torch.long).flatten()
    if t.numel() != maps.shape[0]:
        raise ValueError(f"need one target per map: {maps.shape[0]} maps, {t.numel()} targets")
    dev = _model_device(model)
    m_, s_ = _check_stats(mean, std)
    m = torch.tensor(m_, device=dev).view(1, -1, 1, 1)
    s = torch.tensor(s_, device=dev).view(1, -1, 1, 1)
    hits, probs = [], []
    for k in range(maps.shape[0]):
        h, p = [], []
        for i in range(0, images.shape[0], batch_size):
            x = (images[i:i + batch_size].to(dev) + maps[k].to(dev)).clamp(0, 1)
            out = model((x - m) / s).float().softmax(1)
            h.append(out.argmax(1).cpu() == t[k])
            p.append(out[:, int(t[k])].cpu())
        hits.append(torch.cat(h))
        probs.append(torch.cat(p))
    return torch.stack(hits), torch.stack(probs)

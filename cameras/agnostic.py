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
(:func:`target_scores`; :func:`fidelity` scores every class's map against its controls,
:func:`fidelity_table` / :func:`summary_rates` / :func:`beats_random` summarise the rows), and
:func:`randomization_check` recomputes the maps while the model is randomised block by block
(Adebayo et al. 2018's cascading randomisation).

Several targets are computed in one batch (each with its own random stream, derived from
``seed`` and the target, so a target's map does not depend on which other targets are
computed with it, nor on ``batch_size``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
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
    "class_maps",
    "sample",
    "project",
    "ball_project",
    "norm_of",
    "visualize",
    "magnitude",
    "random_map",
    "shuffled_map",
    "target_scores",
    "CONTROLS",
    "CONTROL_NAMES",
    "pixel_images",
    "DATA_NAMES",
    "PARAMETERS",
    "fresh_samples",
    "probabilities",
    "controls",
    "fidelity",
    "fidelity_table",
    "summary_rates",
    "beats_random",
    "plot_fidelity",
    "plot_randomization",
    "parameter_table",
    "randomize_cascade_block",
    "magnitude_similarity",
    "randomization_check",
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

    @classmethod
    def check_names(cls, settings: Any, what: str = "") -> None:
        """A ``ValueError`` naming the keys of ``settings`` that are not fields (``what``: a
        prefix for the message, e.g. the setting that holds them)."""
        unknown = sorted(set(settings) - set(cls.names()))
        if unknown:
            raise ValueError(f"{what + ': ' if what else ''}unknown setting(s) {', '.join(unknown)}; "
                             f"valid: {', '.join(cls.names())}")

    @classmethod
    def validated(cls, settings: dict[str, Any], what: str = "") -> dict[str, Any]:
        """``settings`` checked (:meth:`check_names`, then the values) and completed with the
        defaults, as a dict (e.g. for an experiment's settings schema)."""
        cls.check_names(settings, what)
        return cls(**settings).as_dict()


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
        AgnosticConfig.check_names(settings)
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


def class_maps(model: nn.Module, targets: Sequence[int], image_shape: Sequence[int], mean: Sequence[float],
               std: Sequence[float], config: AgnosticConfig, *, seed: int = 0, batch_size: int | None = None,
               progress: bool = False) -> tuple[Tensor, np.ndarray, float]:
    """The maps of ``targets`` (CPU, one batch, :class:`InputAgnostic`), the mean target
    probability of the samples at the last step (of the refinement, else of the nudging) per
    target, and the seconds per map."""
    import time

    ia = InputAgnostic(model, mean, std, config, batch_size=batch_size, progress=progress)
    t0 = time.perf_counter()
    maps = ia(list(targets), image_shape, seed=seed).cpu()
    seconds = (time.perf_counter() - t0) / len(targets)
    return maps, ia.history.get("refine", ia.history["nudge"])[-1], seconds


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


def _stats_on(mean: Sequence[float], std: Sequence[float], device: torch.device) -> tuple[Tensor, Tensor]:
    """``mean`` and ``std`` as float32 ``(1, C, 1, 1)`` tensors on ``device`` (checked)."""
    m_, s_ = _check_stats(mean, std)
    return torch.tensor(m_, device=device).view(1, -1, 1, 1), torch.tensor(s_, device=device).view(1, -1, 1, 1)


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
    m, s = _stats_on(mean, std, dev)
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


# ----------------------------------------------------------------------------------------
# fidelity: what a class's map does to the model, against controls
# ----------------------------------------------------------------------------------------
#: the maps :func:`fidelity` adds: none, the class's map, and its controls
CONTROLS = ("none", "map", "random", "shuffled", "other")
#: display names of the controls and of the data sets of :func:`fidelity`
CONTROL_NAMES = {"map": "target map", "random": "random map, same norm", "shuffled": "shuffled map",
                 "other": "other class's map", "none": "no map"}
DATA_NAMES = {"noise": "fresh samples", "real": "ImageNet images"}


def fresh_samples(config: AgnosticConfig, n: int, image_shape: Sequence[int], seed: int = 1) -> Tensor:
    """``n`` samples ``(n, C, H, W)`` of ``config``'s distribution from a stream of their own
    (``seed``, not the maps' streams): fresh inputs for :func:`fidelity` on noise."""
    return sample(config.distribution, (n, *image_shape), _generator(seed, 0xF1DE), config.gaussian_std,
                  config.lowres_factor)


def pixel_images(lm: Any, items: Sequence[Any], size: int | None = None) -> tuple[Tensor, Tensor]:
    """Image items (``.path``, ``.label``; :func:`cameras.data.image_items`) as the
    :class:`~cameras.models.LoadedModel` ``lm`` preprocesses them (at ``size`` px), back in
    pixel space [0, 1] ``(n, C, S, S)`` (CPU), and their labels: real images for
    :func:`fidelity`."""
    x = torch.stack([lm.preprocess(it.path, size=size) for it in items])
    return lm.denormalize(x), torch.tensor([it.label for it in items])


@torch.no_grad()
def probabilities(model: nn.Module, images: Tensor, mean: Sequence[float] = (0.5, 0.5, 0.5),
                  std: Sequence[float] = (0.5, 0.5, 0.5), batch_size: int = 64) -> Tensor:
    """Softmax probabilities ``(n, classes)`` (CPU) of pixel-space ``images`` ``(n, C, H, W)``
    in [0, 1], normalised with ``mean``/``std``, ``batch_size`` images per forward pass."""
    dev = _model_device(model)
    m, s = _stats_on(mean, std, dev)
    return torch.cat([model((images[i:i + batch_size].to(dev) - m) / s).float().softmax(1).cpu()
                      for i in range(0, len(images), batch_size)])


def controls(maps: Tensor, i: int, classes: Sequence[int], norm: str | float = "inf", radius: float = 16 / 255,
             seed: int = 1) -> list[tuple[str, Tensor, int]]:
    """The maps :func:`fidelity` adds for ``classes[i]``, as ``(control, map, map class)``:
    its own map (``"map"``), a Gaussian-direction map on the same sphere (``"random"``, map
    class -1), its values shuffled (``"shuffled"``) and the next class's map (``"other"``).
    The random and shuffled maps are drawn with ``seed * 1000 + class``."""
    t, j = classes[i], (i + 1) % len(classes)
    shape = tuple(maps.shape[1:])
    return [("map", maps[i], t), ("random", random_map(shape, norm, radius, seed=seed * 1000 + t), -1),
            ("shuffled", shuffled_map(maps[i], seed=seed * 1000 + t), t), ("other", maps[j], classes[j])]


def fidelity(model: nn.Module, maps: Tensor, classes: Sequence[int], data: dict[str, tuple[Tensor, Tensor]],
             mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.5, 0.5, 0.5),
             norm: str | float = "inf", radius: float = 16 / 255, *, seed: int = 1,
             batch_size: int = 64) -> list[dict[str, Any]]:
    """Model fidelity of the maps ``(T, C, H, W)`` of ``classes``, with controls.

    ``data`` is ``{name: (images in [0, 1], labels)}`` (label -1 for samples of no class, e.g.
    :func:`fresh_samples`). For each class :math:`t` and data set, the images *not* of class
    :math:`t` are scored clean (``"none"``) and with each map of :func:`controls` added
    (:func:`target_scores`): ``rate`` is the share whose top-1 is :math:`t`, ``p_target`` the mean
    probability of :math:`t`. Clean images go through the model ``batch_size`` at a time,
    images with a map ``2 * batch_size`` at a time. One row per (class, control, data set):
    ``target, control, data, map_class, n, rate, p_target, norm_value`` (the added map's
    ``l_p`` norm, 0 for ``"none"``).
    """
    norm = _norm_name(norm)
    shape = tuple(maps.shape[1:])
    clean = {d: probabilities(model, x, mean, std, batch_size) for d, (x, _) in data.items()}
    rows = []
    for i, t in enumerate(classes):
        ctrl = controls(maps, i, classes, norm, radius, seed)
        for d, (x, lab) in data.items():
            keep = lab != t
            hit, prob = target_scores(model, x[keep], torch.stack([m for _, m, _ in ctrl]), [t] * len(ctrl),
                                      mean, std, batch_size=batch_size * 2)
            p0 = clean[d][keep]
            scored = [("none", p0.argmax(1) == t, p0[:, t], torch.zeros(shape), -1)]
            scored += [(name, hit[k], prob[k], m, mc) for k, (name, m, mc) in enumerate(ctrl)]
            rows += [{"target": t, "control": name, "data": d, "map_class": mc, "n": int(keep.sum()),
                      "rate": float(h.float().mean()), "p_target": float(p.mean()),
                      "norm_value": float(norm_of(m[None], norm)[0])} for name, h, p, m, mc in scored]
    return rows


def _class_names(names: Sequence[str] | None) -> Sequence[str]:
    if names is not None:
        return names
    from .data import imagenet_classes

    return imagenet_classes()


def fidelity_table(fid, value: str = "rate", controls: Sequence[str] = ("map", "random", "other"),
                   data: Sequence[str] = ("noise", "real"), class_names: Sequence[str] | None = None):
    """Per model and class, ``value`` (``"rate"`` or ``"p_target"``) of each control on each
    data set of :func:`fidelity` rows (with a ``model`` column): columns ``model``, ``class``,
    ``other class`` (``class_names``: default the ImageNet classes), then one column
    ``"<data set>: <control>"`` (human names) per data set and control."""
    import pandas as pd

    from .models import label

    if fid.empty:
        return pd.DataFrame()
    names = _class_names(class_names)
    d = fid[fid["control"].isin(controls) & fid["data"].isin(data)]
    t = d.pivot_table(index=["model", "target"], columns=["data", "control"], values=value, sort=False)
    t = t.reindex(columns=pd.MultiIndex.from_product([list(data), list(controls)]))
    t.columns = [f"{DATA_NAMES[a]}: {CONTROL_NAMES[b]}" for a, b in t.columns]
    other = d[d["control"] == "other"].drop_duplicates(["model", "target"]).set_index(["model", "target"])["map_class"]
    idx = t.index
    t.insert(0, "other class", [names[int(other.get(k, -1))] if other.get(k, -1) >= 0 else "" for k in idx])
    t.insert(0, "class", [names[int(k[1])] for k in idx])
    t.insert(0, "model", [label(k[0]) for k in idx])
    return t.reset_index(drop=True)


def summary_rates(fid):
    """Per model, data set and control of :func:`fidelity` rows: the mean targeting rate (%)
    and mean target probability over the classes, and on how many classes the target map's
    mean target probability is above the control's."""
    import pandas as pd

    from .models import label

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
    """Per model, class and data set of :func:`fidelity` rows: is the target map's mean target
    probability above the random map's (same norm)?"""
    piv = fid[fid["control"].isin(["map", "random"])].pivot_table(
        index=["model", "target", "data"], columns="control", values="p_target")
    return piv["map"] > piv["random"]


def plot_fidelity(fid, controls: Sequence[str] = ("map", "other", "random", "none")):
    """Mean target probability per class of :func:`fidelity` rows (with a ``model`` column; log
    scale), a colour per control (drawn in the order of ``controls``), a panel per model and
    data set."""
    from . import plots as P

    d = fid[fid["control"].isin(controls)]
    d = d.sort_values("control", key=lambda c: c.map(list(controls).index), kind="stable")
    d = d.assign(cls=d["target"].map(lambda c: P.class_label(c, 10)),
                 control=d["control"].map(CONTROL_NAMES), p=d["p_target"].clip(lower=1e-7),
                 where=d["model"].map(P.model_label) + ": " + d["data"].map(DATA_NAMES))
    fig = P.scatter_chart(d, x="cls", y="p", hue="control", panel="where", xlabel="class",
                          ylabel="mean P(target)", ncols=2, height_px=250)
    for ax in fig.axes:
        ax.set(yscale="log", ylim=(1e-7, 1.5))
        ax.tick_params(axis="x", rotation=60)
    return fig


def plot_randomization(rows, maps: Mapping[str, np.ndarray]):
    """Per class of :func:`randomization_check` ``rows`` its maps (``{"<class>_<depth>": map}``,
    as returned or stored 8-bit) as more blocks are random, their similarity to the intact one
    and P(target) on noise."""
    from . import plots as P

    panels, names = [], []
    for c, g in rows.sort_values("depth", kind="stable").groupby("target", sort=False):
        names.append(P.class_label(c, 14))
        panels.append([])
        for r in g.itertuples():
            title = "intact" if r.depth == 0 else f"{r.depth} block{'s' * int(r.depth > 1)} random"
            panels[-1].append(P.Panel(image=P.stored_map(maps.get(f"{c}_{r.depth}")), title=title,
                                      note=f"Spearman {r.spearman:.2f}, SSIM {r.ssim:.2f}\n"
                                           f"P(target) {r.p_noise:.1e}"))
    return P.map_grid(panels, row_titles=names, colorbar=False)


#: the parameters of :class:`AgnosticConfig`: ``(step of the method, symbol, meaning)``
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
    "refine_samples": ("5", "M", "fresh samples per refinement step (default: N)"),
    "refine_step_size": ("5", "β", "refinement step, in units of the ball's RMS scale"),
    "smooth_sigma": ("5", "ς", "Gaussian blur of the refinement step, pixels (0: none)"),
}


def _fmt(v: Any, key: str = "") -> str:
    if v is None:
        return "= N" if key == "refine_samples" else "not set"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def parameter_table(cfg: dict[str, Any], backdoor: dict[str, Any] | None = None):
    """The method's parameters (:data:`PARAMETERS`): step, symbol, meaning and value in
    ``cfg`` (column "ImageNet maps") and, when given, in ``backdoor`` ("backdoor maps")."""
    import pandas as pd

    rows = []
    for k, (step, sym, what) in PARAMETERS.items():
        row = {"step": step, "symbol": sym, "parameter": k, "meaning": what, "ImageNet maps": _fmt(cfg.get(k), k)}
        if backdoor is not None:
            row["backdoor maps"] = _fmt(backdoor.get(k), k)
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------
# sanity: cascading randomisation of the model (Adebayo et al. 2018)
# ----------------------------------------------------------------------------------------
def randomize_cascade_block(model: nn.Module, name: str, seed: int) -> None:
    """Re-initialise, in place and reproducibly, the block ``name`` of
    :func:`cameras.sanity.cascade_blocks` (``"<parent>.(own)"``: only the parameters
    registered on the parent itself) with :func:`cameras.sanity.randomize_block`."""
    from .sanity import randomize_block

    own = name.endswith("(own)")
    randomize_block(model.get_submodule(name.removesuffix("(own)").rstrip(".")), seed, own_only=own)


def magnitude_similarity(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Spearman rank correlation (0 when a map is constant) and SSIM (``data_range=1``) of two
    magnitude maps in [0, 1] (:func:`magnitude`), as computed by scipy and scikit-image."""
    from scipy.stats import spearmanr
    from skimage.metrics import structural_similarity

    if a.std() == 0 or b.std() == 0:
        rho = 0.0
    else:
        rho = float(spearmanr(a.ravel(), b.ravel()).statistic)
    return rho, float(structural_similarity(a, b, data_range=1.0))


def randomization_check(model: nn.Module, targets: Sequence[int], image_shape: Sequence[int],
                        mean: Sequence[float], std: Sequence[float], config: AgnosticConfig,
                        depths: Sequence[int], noise: Tensor, *, seed: int = 0, batch_size: int | None = None,
                        progress: bool = False) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Cascading randomisation (Adebayo et al. 2018) of the input-agnostic maps of ``targets``.

    A copy of ``model`` has its blocks (:func:`cameras.sanity.cascade_blocks`, logits first)
    re-initialised one after the other, block ``i`` with seed ``seed + i``
    (:func:`randomize_cascade_block`); at each depth of ``depths`` (0: intact) the maps are
    recomputed with ``seed`` and compared with the intact ones (:func:`magnitude_similarity`
    of the :func:`magnitude` maps), and their fidelity *for the randomised model* is measured
    on ``noise`` (:func:`target_scores`, ``2 * batch_size`` images at a time). Returns rows
    ``target, depth, block, spearman, ssim, rate_noise, p_noise, seconds`` (seconds per map)
    and the maps ``{"<target>_<depth>": visualize(map)}``.
    """
    import copy

    from .sanity import cascade_blocks

    work = copy.deepcopy(model).eval()
    blocks = cascade_blocks(work)
    depths = sorted(set(depths))
    if depths[-1] > len(blocks):
        raise ValueError(f"depths go up to {len(blocks)} (the blocks of the model), got {depths[-1]}")
    targets = list(targets)
    rows, ref, store = [], None, {}
    for depth in range(depths[-1] + 1):
        if depth > 0:
            randomize_cascade_block(work, blocks[depth - 1], seed + depth - 1)
        if depth not in depths:
            continue
        maps, _, seconds = class_maps(work, targets, image_shape, mean, std, config, seed=seed,
                                      batch_size=batch_size, progress=progress)
        mags = magnitude(maps)
        ref = mags if ref is None else ref
        hit, prob = target_scores(work, noise, maps, targets, mean, std, batch_size=(batch_size or 32) * 2)
        for i, t in enumerate(targets):
            sp, ss = magnitude_similarity(ref[i], mags[i])
            store[f"{t}_{depth}"] = visualize(maps[i])
            rows.append({"target": t, "depth": depth, "block": "none" if depth == 0 else blocks[depth - 1],
                         "spearman": sp, "ssim": ss, "rate_noise": float(hit[i].float().mean()),
                         "p_noise": float(prob[i].mean()), "seconds": seconds})
    return rows, store

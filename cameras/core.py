r"""CAMERAS: Algorithm 1 of Jalwana, Akhtar, Bennamoun & Mian, CVPR 2021.

*CAMERAS: Enhanced Resolution And Sanity preserving Class Activation Mapping for image
saliency.* A CAM-style map is blurry because the last convolutional block sees the image on a
coarse grid (7x7 for a 224 px input to ResNet-50). CAMERAS feeds the image at several
*larger* sizes, so that the same layer sees it on finer grids, and fuses what it sees:

1. for each size :math:`s` in ``sizes`` (paper: up to ~1000 px in 7 steps; the authors' code:
   224, 324, ..., 924), upsample the input :math:`I` (bicubic) to :math:`I_s`;
2. record the activations :math:`A_s` of the layer and the gradients
   :math:`G_s = \partial S_c / \partial A_s` of the class logit :math:`S_c`;
3. bring both back to the input grid with bilinear interpolation :math:`U_s`;
4. average over the sizes whose top-1 prediction still matches the reference size's:
   :math:`\bar A = \frac1n \sum_s U_s A_s`, :math:`\bar G = \frac1n \sum_s U_s G_s`;
5. :math:`\Psi = \mathrm{ReLU}(\sum_k \bar A_k \odot \bar G_k)`, min-max normalised to [0, 1].

**Exact and fast.** Materialising :math:`U_s A_s` costs ``K x H x W`` numbers per size and
tensor (2048 x 224 x 224 for ResNet-50: 0.4 GB, about 0.6 s per interpolation on two CPU
cores). The map only needs :math:`\sum_k \bar A_k \bar G_k`, and bilinear interpolation is
separable, :math:`U_s = R^y_s \otimes R^x_s` with 1-D interpolation matrices that have two
non-zeros per row. We therefore

* interpolate along *one* axis only, :math:`A^y_s = R^y_s A_s` (``H x K x w_s``), and
  concatenate all sizes along the remaining axis (width :math:`w = \sum_s w_s`);
* take, per output row, the inner products over channels of all column pairs,
  :math:`Q(y) = A^y(y)^\top G^y(y)` (one batched matmul, ``H x w x w``);
* finish the other axis in that small space:
  :math:`\Psi(y, x) = \sum_{a,b} R^x(x, a)\, Q(y)_{ab}\, R^x(x, b)`.

When the gradients at a size are spatially constant (the layer feeds a global average pool
directly: ``layer4`` of ResNet-50, ``Mixed_7c`` of Inception-v3) their interpolation is that
constant, :math:`\bar G` has a rank-one part :math:`\hat g`, and its share of the map is
:math:`\sum_s w_s U_s(\hat g^\top A_s)`: a projection at low resolution and a one-channel
upsampling. Both routes give the same number up to floating-point rounding (the tests check
float64 agreement with the plain per-image, per-size loop of :mod:`cameras.reference` to 1e-6,
for ResNet-18 and for DenseNet-121, whose gradients vary in space) at a fraction of the cost,
processed in row blocks so memory stays bounded.

**Differences from the authors' code** (github.com/VisMIL/CAMERAS):

* *Non-square inputs* keep their aspect ratio: each size :math:`s` scales both sides by
  :math:`s / \min(H, W)`. The authors resize every input to ``s x s`` squares, which
  distorts non-square images; for square inputs the two agree.
* *An all-zero map* (every location is negative before the ReLU) is returned as zeros; the
  authors' min-max division returns NaN there.
* *Batches:* the B images go through the model together at each size.

The reference size is ``sizes[0]``: its top-1 decides which other sizes are kept (with
``targets=None``) and, as in the authors' code, a size equal to the input's shorter side uses
the input unresampled. With explicit targets every size is kept by default (as in the authors'
code); ``keep="prediction"`` applies Algorithm 1's rule to explicit targets too. Maps are
returned on the input's own grid.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .hooks import LayerCapture

__all__ = [
    "Cameras",
    "Capture",
    "KEEP_RULES",
    "cameras",
    "DEFAULT_SIZES",
    "normalize_maps",
    "as_targets",
    "resize_to",
    "scaled_shape",
    "interpolation_matrix",
    "fuse_maps",
]

DEFAULT_SIZES: tuple[int, ...] = tuple(range(224, 1000, 100))  # 224, 324, ..., 924 (authors' code)


# ----------------------------------------------------------------------------------------
# small, shared helpers
# ----------------------------------------------------------------------------------------
def normalize_maps(maps: Tensor) -> Tensor:
    """Min-max normalise each map of a ``(B, ...)`` tensor to [0, 1].

    A constant map (in particular an all-zero map) becomes all zeros, never NaN.
    """
    flat = maps.reshape(maps.shape[0], -1)
    lo = flat.min(dim=1, keepdim=True).values
    hi = flat.max(dim=1, keepdim=True).values
    span = hi - lo
    # Spans that vanish relative to the map's magnitude are rounding noise: treat as constant.
    tiny = span <= torch.finfo(flat.dtype).eps * hi.abs().clamp_min(torch.finfo(flat.dtype).tiny)
    out = torch.where(tiny, torch.zeros_like(flat), (flat - lo) / torch.where(tiny, 1, span))
    return out.reshape(maps.shape)


def as_targets(targets, batch: int, num_classes: int, device=None) -> Tensor:
    """Validate ``targets`` (an int, ``B`` ints or a LongTensor) into a ``(B,)`` LongTensor."""
    if isinstance(targets, bool):
        raise TypeError("targets must be None, an int, or a sequence/tensor of ints, not a bool")
    if isinstance(targets, int):
        t = torch.full((batch,), targets, dtype=torch.long)
    elif isinstance(targets, Tensor):
        if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
            raise TypeError(f"targets must hold integers, got a tensor of dtype {targets.dtype}")
        t = targets.reshape(-1).to(torch.long)
        if targets.dim() == 0:
            t = t.expand(batch)
    elif isinstance(targets, Sequence) and not isinstance(targets, str):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in targets):
            try:
                import numpy as np

                ok = all(isinstance(v, np.integer) for v in targets)
            except ImportError:  # pragma: no cover
                ok = False
            if not ok:
                raise TypeError("targets must be ints (class indices)")
        t = torch.as_tensor([int(v) for v in targets], dtype=torch.long)
    else:
        try:
            import numpy as np

            if isinstance(targets, np.ndarray) and np.issubdtype(targets.dtype, np.integer):
                return as_targets(torch.from_numpy(targets), batch, num_classes, device)
        except ImportError:  # pragma: no cover
            pass
        raise TypeError(
            f"targets must be None, an int, or a sequence/tensor of ints, got {type(targets).__name__}"
        )
    if t.numel() != batch:
        raise ValueError(f"got {t.numel()} targets for a batch of {batch} images")
    bad = (t < 0) | (t >= num_classes)
    if bool(bad.any()):
        raise ValueError(
            f"target class {int(t[bad][0])} is out of range for a model with {num_classes} classes"
        )
    return t.to(device) if device is not None else t


def _check_images(images) -> Tensor:
    if not isinstance(images, Tensor):
        raise TypeError(
            f"images must be a (B, C, H, W) float tensor, got {type(images).__name__}; "
            "use cameras.images / the model's preprocess to turn files or arrays into tensors"
        )
    if images.dim() == 3:
        raise ValueError(
            f"images must be a batch (B, C, H, W); got a single image of shape {tuple(images.shape)} "
            "(use images.unsqueeze(0))"
        )
    if images.dim() != 4:
        raise ValueError(f"images must have shape (B, C, H, W), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(
            f"images must be a normalised float tensor, got dtype {images.dtype} "
            "(convert to float and apply the model's normalisation)"
        )
    if min(images.shape) == 0:
        raise ValueError(f"images must not be empty, got shape {tuple(images.shape)}")
    if not bool(torch.isfinite(images).all()):
        raise ValueError("images contain NaN or infinite values")
    return images


def _check_sizes(sizes) -> tuple[int, ...]:
    if isinstance(sizes, int):
        sizes = (sizes,)
    try:
        sizes = tuple(sizes)
    except TypeError:
        raise TypeError(f"sizes must be a sequence of ints, got {type(sizes).__name__}") from None
    if not sizes:
        raise ValueError("sizes must contain at least one size")
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, int) and not (hasattr(s, "__index__")):
            raise TypeError(f"sizes must be ints (pixels of the shorter side), got {s!r}")
        if int(s) < 8:
            raise ValueError(f"each size must be at least 8 pixels, got {int(s)}")
    return tuple(int(s) for s in sizes)


def scaled_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """Shape of an ``height x width`` image whose shorter side is scaled to ``size``."""
    short = min(height, width)
    return max(1, round(height * size / short)), max(1, round(width * size / short))


def resize_to(images: Tensor, size: int) -> Tensor:
    """Bicubic (align_corners=False) resize so that the shorter side is ``size`` pixels.

    A size equal to the input's shorter side returns the input itself (as the authors' code
    does for its first size).
    """
    h, w = images.shape[-2:]
    shape = scaled_shape(h, w, size)
    if shape == (h, w):
        return images
    return F.interpolate(images, size=shape, mode="bicubic", align_corners=False)


def interpolation_matrix(n_in: int, n_out: int, dtype=torch.float32, device=None) -> Tensor:
    """The ``(n_out, n_in)`` matrix of 1-D linear interpolation (align_corners=False).

    Built by interpolating the identity with :func:`torch.nn.functional.interpolate`, so it is
    exactly PyTorch's bilinear weights along one axis (bilinear = outer product of two).
    """
    eye = torch.eye(n_in, dtype=dtype, device=device).unsqueeze(0)  # (1, n_in channels, n_in)
    return F.interpolate(eye, size=n_out, mode="linear", align_corners=False)[0].T.contiguous()


# ----------------------------------------------------------------------------------------
# the fusion step (Algorithm 1, lines 6-9), exact and without K x H x W tensors
# ----------------------------------------------------------------------------------------
def fuse_maps(
    activations: Sequence[Tensor],
    gradients: Sequence[Tensor],
    weights: Tensor,
    out_shape: tuple[int, int],
    block_bytes: int = 64 * 2**20,
) -> Tensor:
    r"""``ReLU(sum_k Abar_k Gbar_k)`` on the ``out_shape`` grid, before normalisation.

    Parameters
    ----------
    activations, gradients:
        One ``(B, K, h_s, w_s)`` tensor per size (the layer's grid at that size).
    weights:
        ``(S, B)``: the weight of size ``s`` in image ``b``'s average, i.e. ``keep / n_kept``
        (zero for the sizes an image does not keep).
    out_shape:
        ``(H, W)``, the grid the maps are brought back to (bilinear, align_corners=False).
    block_bytes:
        Memory budget for the interpolated rows held at once.

    Returns ``(B, H, W)``: :math:`\mathrm{ReLU}(\sum_k \bar A_k \bar G_k)` with
    :math:`\bar A = \sum_s w_s U_s A_s` (and likewise :math:`\bar G`).

    Two exact routes, chosen per size:

    * gradients that are *spatially constant* at a size (the layer feeds a global average
      pool directly, as ``layer4`` of ResNet-50 or ``Mixed_7c`` of Inception-v3 do) interpolate
      to the same constant, so their part of :math:`\bar G` is one vector :math:`\hat g` and
      their part of the map is :math:`\sum_s w_s U_s (\hat g^\top A_s)`: a projection at low
      resolution and a one-channel upsampling;
    * the other sizes go through the row-wise channel inner products of the module docstring.
    """
    H, W = out_shape
    A0 = activations[0]
    B, K = A0.shape[:2]
    dtype, device = A0.dtype, A0.device
    wt = weights.to(dtype=dtype, device=device)  # (S, B)
    acts = [a * w.view(B, 1, 1, 1) for a, w in zip(activations, wt, strict=True)]
    grads = [g * w.view(B, 1, 1, 1) for g, w in zip(gradients, wt, strict=True)]
    constant = [bool((g == g[..., :1, :1]).all()) for g in grads]
    out = torch.zeros(B, H, W, dtype=dtype, device=device)
    if any(constant):  # rank-one part: ghat . Abar
        ghat = sum(g[..., 0, 0] for g, c in zip(grads, constant, strict=True) if c)  # (B, K)
        for a in acts:
            proj = torch.einsum("bk,bkhw->bhw", ghat, a).unsqueeze(1)
            out += F.interpolate(proj, (H, W), mode="bilinear", align_corners=False)[:, 0]
    varying = [g for g, c in zip(grads, constant, strict=True) if not c]
    if varying:
        out += _fuse_rows(acts, varying, (H, W), block_bytes)
    return out.clamp_min_(0)


def _fuse_rows(acts, grads, out_shape, block_bytes) -> Tensor:
    """sum_k (sum_s U_s A_s)_k (sum_t U_t G_t)_k through row-wise channel inner products."""
    H, W = out_shape
    B, K = acts[0].shape[:2]
    dtype, device = acts[0].dtype, acts[0].device
    transpose = H < W  # finish along the shorter axis: cost ~ long side * (sum of widths)^2
    if transpose:
        acts = [a.transpose(-1, -2) for a in acts]
        grads = [g.transpose(-1, -2) for g in grads]
        H, W = W, H
    # channels innermost: (B, h, w * K), so that interpolating rows is one matmul per size
    acts = [a.permute(0, 2, 3, 1).reshape(B, a.shape[2], -1) for a in acts]
    grads = [g.permute(0, 2, 3, 1).reshape(B, g.shape[2], -1) for g in grads]
    ry_a = [interpolation_matrix(a.shape[1], H, dtype, device) for a in acts]
    ry_g = [interpolation_matrix(g.shape[1], H, dtype, device) for g in grads]
    rx_a = torch.cat([interpolation_matrix(a.shape[2] // K, W, dtype, device) for a in acts], 1)
    rx_g = torch.cat([interpolation_matrix(g.shape[2] // K, W, dtype, device) for g in grads], 1)
    width = rx_a.shape[1] + rx_g.shape[1]
    rows = max(1, min(H, block_bytes // max(1, B * K * width * acts[0].element_size())))
    out = torch.empty(B, H, W, dtype=dtype, device=device)

    def interp(ts, rs, y0, y1):  # (B, n, sum of widths, K), y-interpolated, sizes side by side
        n = y1 - y0
        return torch.cat([(r[y0:y1] @ t).view(B, n, -1, K) for r, t in zip(rs, ts, strict=True)], 2)

    for y0 in range(0, H, rows):
        y1 = min(H, y0 + rows)
        q = interp(acts, ry_a, y0, y1) @ interp(grads, ry_g, y0, y1).transpose(-1, -2)
        # sum_ab rx_a[x, a] q[a, b] rx_g[x, b]
        out[:, y0:y1] = ((q @ rx_g.T) * rx_a.T).sum(dim=-2)
    return out.transpose(-1, -2) if transpose else out


# ----------------------------------------------------------------------------------------
# Algorithm 1, in two halves: capture (lines 1-10) and fusion (lines 11-14)
# ----------------------------------------------------------------------------------------
KEEP_RULES = ("auto", "prediction", "all")


@dataclass
class Capture:
    """What Algorithm 1 records at every size for a batch of ``B`` images and ``T`` targets.

    ``activations[s]`` is ``(B, K, h_s, w_s)`` and ``gradients[s]`` ``(B, T, K, h_s, w_s)`` on
    the layer's own grid at ``sizes[s]``; ``logits`` ``(S, B, C)``; ``top1`` and ``kept``
    ``(S, B)``; ``targets`` ``(B, T)``: the explained classes. ``inputs`` holds the resized
    images when the capture was asked to keep them.
    """

    sizes: tuple[int, ...]
    activations: list[Tensor]
    gradients: list[Tensor]
    logits: Tensor
    targets: Tensor
    kept: Tensor
    out_shape: tuple[int, int]
    inputs: list[Tensor] = field(default_factory=list)

    @property
    def top1(self) -> Tensor:
        """``(S, B)``: the top-1 class at each size."""
        return self.logits.argmax(dim=-1)

    @property
    def probs(self) -> Tensor:
        """``(S, B, T)``: the softmax probability of each explained class at each size."""
        p = self.logits.to(torch.promote_types(self.logits.dtype, torch.float32)).softmax(dim=-1)
        return p.gather(2, self.targets.unsqueeze(0).expand(p.shape[0], -1, -1).to(p.device))

    def index(self, size: int) -> int:
        """Position of ``size`` in :attr:`sizes` (``ValueError`` if it was not captured)."""
        try:
            return self.sizes.index(int(size))
        except ValueError:
            raise ValueError(f"size {size} was not captured (sizes: {list(self.sizes)})") from None

    def grid(self, size: int) -> tuple[int, int]:
        """The layer's grid ``(h, w)`` at ``size``."""
        return tuple(self.activations[self.index(size)].shape[-2:])

    def weights(self, sizes: Sequence[int] | None = None, keep: str | None = None) -> Tensor:
        """``(S', B)``: each size's weight in the average over ``sizes`` (default: all captured):
        ``1/n`` over the kept sizes (``keep="all"``: over every size)."""
        idx = [self.index(v) for v in (self.sizes if sizes is None else sizes)]
        dtype = self.activations[0].dtype
        kept = torch.ones_like(self.kept[idx]) if keep == "all" else self.kept[idx]
        n = kept.sum(dim=0, keepdim=True)
        if bool((n == 0).any()):
            raise ValueError(f"no kept size among {[self.sizes[i] for i in idx]} for some image "
                             "(include the reference size, or pass keep='all')")
        return kept.to(dtype) / n.to(dtype)


def _keep_mask(rule: str, top1: Tensor, reference: Tensor, explicit: bool) -> Tensor:
    if rule == "all" or (rule == "auto" and explicit):
        return torch.ones_like(top1, dtype=torch.bool)
    return top1 == reference


class Cameras:
    """CAMERAS saliency for ``model`` at ``layer`` (Jalwana et al., CVPR 2021, Algorithm 1).

    Parameters
    ----------
    model:
        An image classifier returning logits ``(B, num_classes)``; use it in eval mode.
    layer:
        Name of the layer whose activations are fused (the paper: the last conv block, e.g.
        ``"layer4"`` for ResNet-50, ``"features"`` for DenseNet-121, ``"Mixed_7c"`` for
        Inception-v3), or the module itself.
    sizes:
        Shorter-side lengths of the upsampled inputs; ``sizes[0]`` is the reference size.
        Default: the authors' 224, 324, ..., 924.
    batch_size:
        Images pushed through the model together (``None``: the whole batch).
    progress:
        Show a progress bar over sizes (``None``: only when the total work is large).
    keep:
        Which sizes are averaged (Algorithm 1, line 6). ``"prediction"``: a size is kept when
        its top-1 equals the top-1 at the reference size (Algorithm 1), also when targets are
        given; ``"all"``: every size; ``"auto"`` (default): ``"prediction"`` with
        ``targets=None`` and ``"all"`` with explicit targets, as the authors' code does.

    Call with ``images`` ``(B, 3, H, W)`` (normalised, any float dtype and device) and
    ``targets`` (``None`` = each image's own top-1 at the reference size, an int, or ``B``
    ints / a LongTensor). Returns maps ``(B, H, W)`` in [0, 1] on the images' device.

    The two halves of the algorithm are public: :meth:`capture` records the per-size
    activations and gradients (of one or several classes per image) and :meth:`fuse` turns a
    capture into maps, so analyses can reuse one capture for several maps.
    """

    def __init__(
        self,
        model: nn.Module,
        layer: str | nn.Module = "layer4",
        sizes: Sequence[int] = DEFAULT_SIZES,
        batch_size: int | None = None,
        progress: bool | None = None,
        keep: str = "auto",
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.layer = layer
        self.sizes = _check_sizes(sizes)
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
        if keep not in KEEP_RULES:
            raise ValueError(f"keep must be one of {', '.join(KEEP_RULES)}, got {keep!r}")
        self.batch_size = batch_size
        self.progress = progress
        self.keep = keep
        LayerCapture(model, layer)  # validates the layer name now, with a helpful error
        #: per call: ``(S, B)`` bool, which sizes each image kept; and the top-1 per size
        self.kept: Tensor | None = None
        self.predictions: Tensor | None = None

    def __repr__(self) -> str:
        return f"Cameras(layer={self.layer!r}, sizes={list(self.sizes)}, keep={self.keep!r})"

    def __call__(self, images: Tensor, targets=None) -> Tensor:
        images = _check_images(images)
        n = images.shape[0]
        bs = self.batch_size or n
        maps, kept, preds = [], [], []
        for i in range(0, n, bs):
            t = targets
            if targets is not None and not isinstance(targets, int):
                t = as_targets(targets, n, 2**62)[i : i + bs]
            cap = self.capture(images[i : i + bs], t)
            maps.append(self.fuse(cap)[:, 0].to(images.dtype))
            kept.append(cap.kept)
            preds.append(cap.top1)
        self.kept = torch.cat(kept, dim=1)
        self.predictions = torch.cat(preds, dim=1)
        return torch.cat(maps)

    def _show_progress(self, batch: int) -> bool:
        if self.progress is not None:
            return self.progress
        return batch * sum(s * s for s in self.sizes) > 4 * 924 * 924

    def capture(self, images: Tensor, targets=None, keep_inputs: bool = False) -> Capture:
        """Lines 1-10 of Algorithm 1 for one batch: resize, record :math:`A_s`, :math:`G_s`.

        ``targets``: ``None`` (the top-1 at the reference size), an int, ``B`` ints / a
        ``(B,)`` tensor, a ``(B, T)`` tensor of ``T`` classes per image, or a function
        ``f(reference logits) -> (B, T)``. Several classes cost one forward pass per size
        and one backward pass per class.
        """
        images = _check_images(images)
        if self.model.training:
            warnings.warn(
                "the model is in training mode (batch norm / dropout make maps depend on the "
                "batch); call model.eval() first",
                stacklevel=3,
            )
        B, _, H, W = images.shape
        acts, grads, logits_s, keep, inputs = [], [], [], [], []
        bar = tqdm(self.sizes, desc="CAMERAS sizes", disable=not self._show_progress(B), leave=False)
        with LayerCapture(self.model, self.layer) as cap:
            for i, size in enumerate(bar):
                x = resize_to(images, size)
                logits = cap.forward(x)
                top1 = logits.argmax(dim=1)
                if i == 0:
                    reference = top1
                    t = _capture_targets(targets, logits)
                keep.append(_keep_mask(self.keep, top1, reference, targets is not None))
                T = t.shape[1]
                grads.append(torch.stack([cap.gradients(logits, t[:, j], retain_graph=j < T - 1)
                                          for j in range(T)], dim=1))
                acts.append(cap.activations.detach())
                logits_s.append(logits.detach())
                if keep_inputs:
                    inputs.append(x.detach())
                del logits
        return Capture(self.sizes, acts, grads, torch.stack(logits_s), t, torch.stack(keep),
                       (H, W), inputs)

    def fuse(self, capture: Capture, target: int | None = None, sizes: Sequence[int] | None = None,
             keep: str | None = None) -> Tensor:
        """Lines 11-14 of Algorithm 1: the maps of a :class:`Capture`, ``(B, T, H, W)`` in [0, 1].

        ``target``: only the ``target``-th explained class (maps ``(B, H, W)``); ``sizes``: a
        subset of the captured sizes to average (default: all); ``keep="all"`` averages every
        one of them instead of the captured keep rule's.
        """
        idx = [capture.index(v) for v in (capture.sizes if sizes is None else sizes)]
        weights = capture.weights(sizes, keep)
        acts = [capture.activations[i] for i in idx]
        cols = range(capture.targets.shape[1]) if target is None else [target]
        maps = torch.stack([normalize_maps(fuse_maps(acts, [capture.gradients[i][:, j] for i in idx],
                                                     weights, capture.out_shape)) for j in cols], 1)
        return maps if target is None else maps[:, 0]


def _capture_targets(targets, logits: Tensor) -> Tensor:
    """The ``(B, T)`` classes a capture explains (see :meth:`Cameras.capture`)."""
    B, C = logits.shape
    if targets is None:
        return logits.argmax(dim=1, keepdim=True)
    if callable(targets):
        targets = targets(logits.detach())
    if isinstance(targets, Tensor) and targets.dim() == 2:
        if targets.shape[0] != B or targets.is_floating_point() or targets.dtype == torch.bool:
            raise ValueError(f"targets must be a (B={B}, T) tensor of class indices")
        if bool(((targets < 0) | (targets >= C)).any()):
            raise ValueError(f"targets must be class indices in 0..{C - 1}")
        return targets.to(device=logits.device, dtype=torch.long)
    return as_targets(targets, B, C, device=logits.device).view(B, 1)


def cameras(
    model: nn.Module,
    images: Tensor,
    targets=None,
    layer: str | nn.Module = "layer4",
    sizes: Sequence[int] = DEFAULT_SIZES,
    **kwargs,
) -> Tensor:
    """Functional form, TorchRay style: ``cameras(model, images, targets, layer=..., sizes=...)``."""
    return Cameras(model, layer=layer, sizes=sizes, **kwargs)(images, targets)

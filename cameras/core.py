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

import difflib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .hooks import (
    LayerCapture,
    check_input_channels,
    eval_mode,
    layer_name,
    locate_layer,
    model_dtype_device,
)

log = logging.getLogger("cameras")

__all__ = [
    "Cameras",
    "Capture",
    "KEEP_RULES",
    "cameras",
    "DEFAULT_SIZES",
    "DEFAULT_MAX_PIXELS",
    "normalize_maps",
    "match_class",
    "class_index",
    "as_targets",
    "resize_to",
    "scaled_shape",
    "interpolation_matrix",
    "fuse_maps",
]

DEFAULT_SIZES: tuple[int, ...] = tuple(range(224, 1000, 100))  # 224, 324, ..., 924 (authors' code)
#: Largest resized input, in pixels per image (height x width), :class:`Cameras` accepts by
#: default: 2**25 = 33.5 M pixels, a 924 x 36,300 strip, 400 MB as a float32 RGB tensor before
#: the network's own activations (which are several times larger).
DEFAULT_MAX_PIXELS = 2**25


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


def _norm_name(s: str) -> str:
    return " ".join(s.lower().replace("_", " ").replace("-", " ").split())


def _ambiguous(query: str, classes: Sequence[str], matches: list[int]) -> ValueError:
    shown = ", ".join(f"{i} {classes[i]!r}" for i in matches[:12])
    more = f" and {len(matches) - 12} more" if len(matches) > 12 else ""
    return ValueError(f"class {query!r} is ambiguous: {len(matches)} classes match ({shown}{more}); "
                      "give the exact name (case matters) or the index")


def match_class(query: str, classes: Sequence[str]) -> int:
    """Index of the class called ``query`` in ``classes`` (a model's class names).

    In order: the exact name, case-sensitive (ImageNet's ``"cardigan"`` is 474 and
    ``"Cardigan"``, the corgi, 264); the name ignoring case, ``_`` and ``-``; a unique whole
    word (``"hognose"``); a unique substring (``"golden retr"``). Several matches at the first
    step that has any raise a :class:`ValueError` listing them (``"CARDIGAN"``, ``"cat"``).
    """
    if not isinstance(query, str):
        raise TypeError(f"a class name must be a str, got {type(query).__name__}")
    q = query.strip()
    if not q:
        raise ValueError("empty class name")
    names = list(classes)
    exact = [i for i, c in enumerate(names) if c == q]
    if len(exact) > 1:
        raise _ambiguous(query, names, exact)
    if exact:
        return exact[0]
    nq = _norm_name(q)
    normed = [_norm_name(c) for c in names]
    word = re.compile(rf"\b{re.escape(nq)}\b")
    for matches in ([i for i, n in enumerate(normed) if n == nq],
                    [i for i, n in enumerate(normed) if word.search(n)],
                    [i for i, n in enumerate(normed) if nq in n]):
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise _ambiguous(query, names, matches)
    close = difflib.get_close_matches(nq, normed, n=5, cutoff=0.6)
    hint = f" Closest: {', '.join(repr(names[normed.index(c)]) for c in close)}." if close else ""
    raise ValueError(f"no class matches {query!r}.{hint}")


def class_index(query: str, classes: Sequence[str] | None, num_classes: int | None = None) -> int:
    """A class given as a decimal index string (``"281"``, checked against ``num_classes``) or
    a name (:func:`match_class` against ``classes``; ``None``: ImageNet-1k's names)."""
    q = query.strip()
    n = num_classes if num_classes is not None else (len(classes) if classes is not None else None)
    if q.isdecimal() or (q[:1] in "+-" and q[1:].isdecimal()):
        idx = int(q)
        if idx < 0 or (n is not None and idx >= n):
            raise ValueError(f"class index {idx} is out of range"
                             + (f" (0..{n - 1})" if n is not None else ""))
        return idx
    if classes is None:
        from .data import imagenet_classes

        classes = imagenet_classes()
    return match_class(q, classes)


def _has_names(targets) -> bool:
    return isinstance(targets, str) or (
        isinstance(targets, Sequence) and any(isinstance(t, str) for t in targets))


def names_to_indices(targets, classes: Sequence[str] | None):
    """``targets`` with every class name replaced by its index (see :func:`class_index`)."""
    if isinstance(targets, str):
        return class_index(targets, classes)
    if _has_names(targets):
        return [class_index(t, classes) if isinstance(t, str) else t for t in targets]
    return targets


def as_targets(targets, batch: int, num_classes: int, device=None, classes=None) -> Tensor:
    """Validate ``targets`` into a ``(B,)`` LongTensor.

    ``targets``: an int (also a numpy integer scalar), ``B`` ints / a LongTensor / an integer
    numpy array, or class names (a name or ``B`` names or indices) looked up in ``classes``
    (default: ImageNet-1k's names, for 1000-class models only).
    """
    import numpy as np

    if isinstance(targets, (bool, np.bool_)):
        raise TypeError("targets must be None, an int, or a sequence/tensor of ints, not a bool")
    if _has_names(targets):
        if classes is None and num_classes != 1000:
            raise ValueError(f"targets given by name need the model's class names (it has "
                             f"{num_classes} classes, not ImageNet's 1000): pass classes=[...]")
        if classes is not None and len(classes) != num_classes:
            raise ValueError(f"{len(classes)} class names for a model with {num_classes} classes")
        targets = names_to_indices(targets, classes)
    if isinstance(targets, np.ndarray) and targets.ndim == 0 or isinstance(targets, np.integer):
        targets = targets.item() if np.issubdtype(np.asarray(targets).dtype, np.integer) else targets
    if isinstance(targets, int):
        t = torch.full((batch,), targets, dtype=torch.long)
    elif isinstance(targets, Tensor):
        if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
            raise TypeError(f"targets must hold integers, got a tensor of dtype {targets.dtype}")
        t = targets.reshape(-1).to(torch.long)
        if targets.dim() == 0:
            t = t.expand(batch)
    elif isinstance(targets, np.ndarray) and np.issubdtype(targets.dtype, np.integer):
        t = torch.from_numpy(targets.astype(np.int64)).reshape(-1)
    elif isinstance(targets, Sequence) and not isinstance(targets, str):
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in targets):
            raise TypeError("targets must be ints (class indices) or class names")
        t = torch.as_tensor([int(v) for v in targets], dtype=torch.long)
    else:
        raise TypeError(
            "targets must be None, an int, a class name, or a sequence/tensor of ints, got "
            f"{type(targets).__name__}" + (f" of dtype {targets.dtype}" if hasattr(targets, "dtype") else "")
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
    sizes = tuple(int(s) for s in sizes)
    if len(set(sizes)) != len(sizes):  # one policy for the API and the CLI
        raise ValueError(
            f"sizes must not repeat a size (got {' '.join(map(str, sizes))}): a repeated size "
            "would count twice in the average"
        )
    return sizes


def scaled_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """Shape of an ``height x width`` image whose shorter side is scaled to ``size``."""
    short = min(height, width)
    return max(1, round(height * size / short)), max(1, round(width * size / short))


def resize_to(images: Tensor, size: int, antialias: bool = False) -> Tensor:
    """Bicubic (align_corners=False) resize so that the shorter side is ``size`` pixels.

    A size equal to the input's shorter side returns the input itself (as the authors' code
    does for its first size). ``antialias=True`` low-pass filters when shrinking (PyTorch's
    ``antialias``; enlarging is unchanged); the authors' code, which only enlarges, has none.
    """
    h, w = images.shape[-2:]
    shape = scaled_shape(h, w, size)
    if shape == (h, w):
        return images
    shrink = antialias and (shape[0] < h or shape[1] < w)
    return F.interpolate(images, size=shape, mode="bicubic", align_corners=False, antialias=shrink)


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

    Notes
    -----
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
        An image classifier returning logits ``(B, num_classes)``, or a
        :class:`cameras.models.LoadedModel` (its model, layer and class names are used).
    layer:
        Name of the layer whose activations are fused (the paper: the last conv block, e.g.
        ``"layer4"`` for ResNet-50, ``"features"`` for DenseNet-121, ``"Mixed_7c"`` for
        Inception-v3), or the module itself. ``None`` (default): located with one forward
        pass at ``sizes[0]`` by :func:`cameras.hooks.locate_layer` -- the last module with a
        4-d output that runs once and feeds the classifier (pooling layers excluded). The
        choice is in :attr:`layer_name` and logged once (logger ``"cameras"``, level INFO).
    sizes:
        Shorter-side lengths of the resized inputs; ``sizes[0]`` is the reference size.
        Default: the authors' 224, 324, ..., 924. A repeated size is refused (it would count
        twice in the average); the command line follows the same rule.
    batch_size:
        Images pushed through the model together (``None``: the whole batch).
    progress:
        Show a progress bar over sizes (``None``: only when the total work is large).
    keep:
        Which sizes are averaged (Algorithm 1, line 6). ``"prediction"``: a size is kept when
        its top-1 equals the top-1 at the reference size (Algorithm 1), also when targets are
        given; ``"all"``: every size; ``"auto"`` (default): ``"prediction"`` with
        ``targets=None`` and ``"all"`` with explicit targets, as the authors' code does.
    classes:
        The model's class names, so that targets can be given by name (default: ImageNet-1k's
        names, used for models with 1000 outputs).
    antialias:
        Low-pass filter when a size shrinks the input (``False``, the default, is the
        authors' bicubic resize; the command line, which feeds whole photos, uses ``True``).
    dtype:
        ``None`` (default): everything in the model's dtype. ``torch.bfloat16`` or
        ``torch.float16``: accurate mixed precision -- the network *below* the explained layer
        (nearly all the cost) runs under :func:`torch.autocast` in that dtype (channels-last on
        CUDA); the layer's output is taken in float32 and everything from there on runs in
        float32: the part above the layer and the gradient through it, the interpolation, the
        fusion and the normalisation, which is where a low-precision map loses accuracy.
    max_pixels:
        Largest resized input (height x width per image) accepted, a memory guard
        (default :data:`DEFAULT_MAX_PIXELS`; ``None``: no limit). An elongated input whose
        shorter side is brought to ``max(sizes)`` can exceed it: a ``10 x 10000`` tensor at
        924 px becomes ``924 x 924000``; that raises a :class:`ValueError` before any work.

    Notes
    -----
    Call with ``images`` ``(B, C, H, W)`` (normalised; a float dtype other than the model's
    is cast to the model's, images on another device are moved to the model's) and
    ``targets`` (``None`` = each image's own top-1 at the reference size, an int or numpy
    integer, a class name, or ``B`` ints / names / a LongTensor). Returns maps ``(B, H, W)``
    in [0, 1] in the images' dtype, on the images' device. A model in training mode runs in
    eval mode for the call and is restored (batch-norm statistics untouched); the call also
    works inside :func:`torch.inference_mode` (gradients above the layer are recorded in a
    normal-mode block). A channel count the model's first convolution does not take raises
    a :class:`ValueError` before that convolution runs.

    The two halves of the algorithm are public: :meth:`capture` records the per-size
    activations and gradients (of one or several classes per image) and :meth:`fuse` turns a
    capture into maps, so analyses can reuse one capture for several maps.
    """

    def __init__(
        self,
        model: nn.Module,
        layer: str | nn.Module | None = None,
        sizes: Sequence[int] = DEFAULT_SIZES,
        batch_size: int | None = None,
        progress: bool | None = None,
        keep: str = "auto",
        *,
        classes: Sequence[str] | None = None,
        antialias: bool = False,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        dtype: torch.dtype | None = None,
    ):
        model, layer, classes = _unpack_loaded(model, layer, classes)
        if dtype not in (None, torch.bfloat16, torch.float16):
            raise ValueError(f"dtype must be None (the model's own), torch.bfloat16 or torch.float16, "
                             f"got {dtype!r}")
        #: mixed precision: the model's forward/backward under autocast in this dtype; the
        #: captured activations and gradients, the fusion and the normalisation in float32
        self.dtype = dtype
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.sizes = _check_sizes(sizes)
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
        if keep not in KEEP_RULES:
            raise ValueError(f"keep must be one of {', '.join(KEEP_RULES)}, got {keep!r}")
        if max_pixels is not None and (isinstance(max_pixels, bool) or not isinstance(max_pixels, int)
                                       or max_pixels < 1):
            raise ValueError(f"max_pixels must be a positive int or None, got {max_pixels!r}")
        if classes is not None and (isinstance(classes, str) or not all(isinstance(c, str) for c in classes)):
            raise TypeError("classes must be a sequence of class names (str)")
        self.batch_size = batch_size
        self.progress = progress
        self.keep = keep
        self.classes = list(classes) if classes is not None else None
        self.antialias = bool(antialias)
        self.max_pixels = max_pixels
        if layer is None:
            layer, shape, size = self._locate()
            log.info("Cameras: explaining layer %r of %s (output %s for a %d px square)", layer,
                     type(model).__name__, "x".join(map(str, shape[1:])), size)
        #: the name of the explained layer (the one located when ``layer=None``)
        self.layer_name = layer_name(model, layer)  # validates the name, with a helpful error
        self.layer = layer
        #: per call: ``(S, B)`` bool, which sizes each image kept; and the top-1 per size
        self.kept: Tensor | None = None
        self.predictions: Tensor | None = None

    def _locate(self) -> tuple[str, tuple[int, ...], int]:
        """Find the default layer with one forward pass of a ``(1, C, s, s)`` probe."""
        dtype, device = model_dtype_device(self.model)
        conv = next((m for m in self.model.modules() if isinstance(m, nn.Conv2d)), None)
        channels = conv.in_channels if conv is not None else 3
        # a size at which the last block still has a grid (Inception-v3: 1 x 1 below ~110 px)
        size = min(max(self.sizes), max(self.sizes[0], 224))
        g = torch.Generator().manual_seed(0)
        probe = torch.randn(1, channels, size, size, generator=g)
        probe = probe.to(dtype=dtype or torch.float32, device=device)
        with torch.inference_mode(False), eval_mode(self.model):
            try:
                return (*locate_layer(self.model, probe), size)
            except ValueError:
                raise
            except Exception as err:  # the model cannot run on the probe
                raise ValueError(
                    f"could not run {type(self.model).__name__} on a (1, {channels}, {size}, "
                    f"{size}) probe to find its layer ({type(err).__name__}: {err}); pass layer=..."
                ) from None

    def __repr__(self) -> str:
        return f"Cameras(layer={self.layer_name!r}, sizes={list(self.sizes)}, keep={self.keep!r})"

    def __call__(self, images: Tensor, targets=None) -> Tensor:
        images = _check_images(images)
        n = images.shape[0]
        bs = self.batch_size or n
        targets, n_names = self._names(targets)
        if isinstance(targets, Tensor) and targets.dim() == 0:
            targets = int(targets)
        maps, kept, preds = [], [], []
        for i in range(0, n, bs):
            t = targets
            if targets is not None and not isinstance(targets, int):
                t = as_targets(targets, n, 2**62)[i : i + bs]
            cap = self.capture(images[i : i + bs], t, _n_names=n_names)
            maps.append(self.fuse(cap)[:, 0].to(device=images.device, dtype=images.dtype))
            kept.append(cap.kept)
            preds.append(cap.top1)
        self.kept = torch.cat(kept, dim=1)
        self.predictions = torch.cat(preds, dim=1)
        return torch.cat(maps)

    def _names(self, targets):
        """Class names in ``targets`` -> indices; also the number of names they refer to."""
        import numpy as np

        if isinstance(targets, np.integer):
            return int(targets), None
        if not _has_names(targets):
            return targets, None
        if self.classes is None:
            from .data import imagenet_classes

            return names_to_indices(targets, imagenet_classes()), 1000
        return names_to_indices(targets, self.classes), len(self.classes)

    def _show_progress(self, batch: int) -> bool:
        if self.progress is not None:
            return self.progress
        return batch * sum(s * s for s in self.sizes) > 4 * 924 * 924

    def _prepare(self, images: Tensor) -> Tensor:
        """Checks and casts before the first forward pass (see the class docstring)."""
        images = _check_images(images)
        _, _, H, W = images.shape
        if self.max_pixels is not None:
            big = max(self.sizes)
            h, w = scaled_shape(H, W, big)
            if h * w > self.max_pixels:
                raise ValueError(
                    f"resizing the {H}x{W} input so that its shorter side is {big} px gives "
                    f"{h}x{w} = {h * w / 1e6:.1f} M pixels per image, over the memory budget "
                    f"max_pixels={self.max_pixels} ({self.max_pixels / 1e6:.1f} M); crop the input, "
                    "use smaller sizes, or raise max_pixels"
                )
        dtype, device = model_dtype_device(self.model)
        if images.is_inference():
            images = images.clone()  # a normal tensor (we are in a normal-mode block)
        if dtype is not None and images.dtype != dtype:
            images = images.to(dtype)
        if device is not None and images.device != device:
            images = images.to(device)
        return images

    def capture(self, images: Tensor, targets=None, keep_inputs: bool = False,
                _n_names: int | None = None) -> Capture:
        """Lines 1-10 of Algorithm 1 for one batch: resize, record :math:`A_s`, :math:`G_s`.

        ``targets``: ``None`` (the top-1 at the reference size), an int, a class name, ``B``
        ints / names / a ``(B,)`` tensor, a ``(B, T)`` tensor of ``T`` classes per image, or
        a function ``f(reference logits) -> (B, T)``. Several classes cost one forward pass
        per size and one backward pass per class. The model runs in eval mode (restored
        afterwards); see the class docstring for dtypes, devices and inference mode.
        """
        if _n_names is None and not callable(targets):
            targets, _n_names = self._names(targets)
        with torch.inference_mode(False), eval_mode(self.model):
            images = self._prepare(images)
            B, _, H, W = images.shape
            acts, grads, logits_s, keep, inputs = [], [], [], [], []
            bar = tqdm(self.sizes, desc="CAMERAS sizes", disable=not self._show_progress(B),
                       leave=False)
            with LayerCapture(self.model, self.layer, float32_above=self.dtype is not None) as cap:
                for i, size in enumerate(bar):
                    x = resize_to(images, size, self.antialias)
                    if i == 0:
                        with check_input_channels(self.model):
                            logits = self._forward(cap, x)
                        _check_named(_n_names, logits.shape[1])
                        reference = logits.argmax(dim=1)
                        t = _capture_targets(targets, logits)
                    else:
                        logits = self._forward(cap, x)
                    keep.append(_keep_mask(self.keep, logits.argmax(dim=1), reference,
                                           targets is not None))
                    T = t.shape[1]
                    grads.append(torch.stack([self._gradient(cap, logits, t[:, j], j < T - 1)
                                              for j in range(T)], dim=1))
                    acts.append(self._fusion_dtype(cap.activations.detach()))
                    logits_s.append(logits.detach().float() if self.dtype else logits.detach())
                    if keep_inputs:
                        inputs.append(x.detach())
                    del logits
        return Capture(self.sizes, acts, grads, torch.stack(logits_s), t, torch.stack(keep),
                       (H, W), inputs)

    def _forward(self, cap: LayerCapture, x: Tensor) -> Tensor:
        if self.dtype is None:
            return cap.forward(x)
        if x.is_cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=self.dtype):
            return cap.forward(x)

    def _gradient(self, cap: LayerCapture, logits: Tensor, t: Tensor, retain: bool) -> Tensor:
        return self._fusion_dtype(cap.gradients(logits, t, retain_graph=retain))

    def _fusion_dtype(self, t: Tensor) -> Tensor:
        """Captured tensors in the fusion's dtype: float32 under mixed precision."""
        return t.float() if self.dtype is not None and t.dtype in (torch.bfloat16, torch.float16) else t

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


def _unpack_loaded(model, layer, classes):
    """A :class:`cameras.models.LoadedModel` -> its model, layer and class names."""
    if not isinstance(model, nn.Module) and isinstance(getattr(model, "model", None), nn.Module):
        layer = layer if layer is not None else getattr(model, "layer", None)
        classes = classes if classes is not None else getattr(model, "classes", None)
        model = model.model
    return model, layer, classes


def _check_named(n_names: int | None, num_classes: int) -> None:
    if n_names is not None and n_names != num_classes:
        raise ValueError(
            f"targets were given by name, but the model has {num_classes} classes and the names "
            f"come from a list of {n_names}" + (" (ImageNet-1k's)" if n_names == 1000 else "")
            + ": pass classes=[...] with the model's own class names"
        )


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
    layer: str | nn.Module | None = None,
    sizes: Sequence[int] = DEFAULT_SIZES,
    **kwargs,
) -> Tensor:
    """Functional form, TorchRay style: ``cameras(model, images, targets, layer=..., sizes=...)``."""
    return Cameras(model, layer=layer, sizes=sizes, **kwargs)(images, targets)

"""Class sensitivity (Rebuffi, Fong, Ji & Vedaldi, *There and back again*, CVPR 2020).

A map that explains a class should change when another class is explained.

* :func:`class_sensitivity_rebuffi` -- **the authors' definition** (ruthcfong/TorchRay,
  ``examples/class_selectivity.py``): for each image, the maps of its *most* and its *least*
  probable class (softmax of the model as it is), compared by ``compute_similarity`` of
  ``torchray/benchmark/common.py``, whose default metric is ``"spearman_no_abs"``: the
  **Spearman rank correlation** of the two maps (not of their absolute values; ties get
  average ranks, as ``scipy.stats.spearmanr``). The score is its mean over the images, the
  non-finite correlations left out (a constant map has no ranks: the authors' NumPy mean of
  ``corrs[np.isfinite(corrs)]``). **Lower is more class-sensitive** (1: the same map for both
  classes). With ``meta_lr`` each map is a meta-saliency map
  (:func:`cameras.methods.meta.meta_saliency`, one SGD step towards the class explained), as
  in the script's ``use_meta``. :func:`summarize_class_sensitivity` gives the mean with a
  bootstrap interval.
* :func:`class_sensitivity_extras` -- **our variant**, kept as an extra (chapter 7 uses it
  under its old name :func:`class_sensitivity`): top-1 vs lowest-logit maps (the same two
  classes), reported as ``1-spearman``, ``1-ssim`` and the mean absolute difference of the
  min-max normalised maps, per image (a constant map counts by the similarity module's rule
  instead of being dropped).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..hooks import eval_mode
from ..methods._callables import check_images, compute_maps, device_of, ids_or_range, map_functions
from ._info import MetricInfo, describe
from .similarity import _minmax, average_ranks, spearman, ssim

__all__ = ["class_sensitivity_rebuffi", "grid_class_sensitivity", "summarize_class_sensitivity",
           "class_sensitivity_table", "grid_class_sensitivity_table", "spearman_no_abs",
           "class_sensitivity_extras", "class_sensitivity", "most_least_maps"]

_REF = "Rebuffi et al., CVPR 2020"
describe(MetricInfo("class_spearman", "Spearman ρ (most vs least likely class)", False, (-1, 1),
                    reference=f"{_REF}; TorchRay fork, compute_similarity('spearman_no_abs')",
                    summary="rank correlation of the maps of the most and the least probable class, "
                            "mean over images; lower = more class-sensitive"))
describe(MetricInfo("1-spearman", "1 − Spearman", True, (0, 2), reference=f"{_REF} (our variant)",
                    summary="1 minus the rank correlation of the top-1 and least-likely maps"))
describe(MetricInfo("1-ssim", "1 − SSIM", True, (0, 2), reference=f"{_REF} (our variant)",
                    summary="1 minus the SSIM of the min-max normalised top-1 and least-likely maps"))
describe(MetricInfo("mad", "mean |difference|", True, (0, 1), reference=f"{_REF} (our variant)",
                    summary="mean absolute difference of the min-max normalised top-1 and least-likely maps"))


def spearman_no_abs(a: Tensor, b: Tensor) -> Tensor:
    """Spearman correlation of paired maps ``(N, H, W)`` (average ranks for ties), NaN where a
    map is constant -- ``scipy.stats.spearmanr`` on the flattened maps, batched."""
    a, b = a.detach().reshape(a.shape[0], -1).double().cpu(), b.detach().reshape(b.shape[0], -1).double().cpu()
    if a.shape != b.shape:
        raise ValueError(f"maps must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    ra, rb = average_ranks(a), average_ranks(b)
    da, db = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    den = (da.pow(2).sum(1) * db.pow(2).sum(1)).sqrt()
    r = ((da * db).sum(1) / den.clamp_min(1e-300)).clamp(-1, 1)
    const = (a.amax(1) == a.amin(1)) | (b.amax(1) == b.amin(1))
    return torch.where(const, torch.full_like(r, math.nan), r)


def _maps(method: str, model, x, t, layer, kw, meta_lr, meta_mode, batch_size):
    from ..methods import meta_saliency, saliency

    bs = batch_size or x.shape[0]
    out = []
    for i in range(0, x.shape[0], bs):
        xi, ti = x[i : i + bs], t[i : i + bs]
        if meta_lr is None:
            out.append(saliency(method, model, xi, ti, layer=layer, **kw))
        else:
            out.append(meta_saliency(method, model, xi, ti, lr=meta_lr, layer=layer, mode=meta_mode, **kw))
    return torch.cat(out).float().cpu()


def class_sensitivity_rebuffi(
    methods: str | Sequence[str],
    model: nn.Module,
    images: Tensor,
    *,
    layer: Any = None,
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    meta_lr: float | None = None,
    meta_mode: str = "auto",
    batch_size: int | None = None,
    image_ids: Sequence[Any] | None = None,
    return_maps: bool = False,
):
    """The authors' class sensitivity, per image: Spearman of the most- vs least-probable maps.

    ``methods``: registry names; ``layer``: passed to the methods that take one (``None``:
    each method's default); ``settings``: ``{method: {setting: value}}``; ``meta_lr``: maps by
    meta-saliency with this learning rate (``None``: plain maps). Returns a DataFrame
    ``method, image, most, least, p_most, p_least, class_spearman`` (NaN where a map is
    constant), and with ``return_maps`` also ``{method: (most maps, least maps)}``.
    """
    import pandas as pd

    from ..methods import info

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    names = [methods] if isinstance(methods, str) else list(methods)
    if not names:
        raise ValueError("no methods given")
    specs = [info(m) for m in names]
    x = check_images(images).to(device_of(model))
    ids = ids_or_range(image_ids, x.shape[0])
    with eval_mode(model), torch.no_grad():
        probs = model(x).float().softmax(1)
    most, least = probs.argmax(1), probs.argmin(1)
    rows, maps = [], {}
    for spec in specs:
        kw = dict((settings or {}).get(spec.name, {}))
        lay = layer if spec.layer != "none" else None
        pair = [_maps(spec.name, model, x, c, lay, kw, meta_lr, meta_mode, batch_size) for c in (most, least)]
        r = spearman_no_abs(*pair)
        maps[spec.name] = pair
        rows += [dict(method=spec.name, image=ids[i], most=int(most[i]), least=int(least[i]),
                      p_most=float(probs[i, most[i]]), p_least=float(probs[i, least[i]]),
                      class_spearman=float(r[i])) for i in range(len(ids))]
    df = pd.DataFrame(rows, columns=["method", "image", "most", "least", "p_most", "p_least", "class_spearman"])
    return (df, maps) if return_maps else df


def grid_class_sensitivity(model: nn.Module, images: Tensor, layers: Sequence[Any], *,
                           meta_lr: float | None = None, extra: Sequence[str] = (),
                           image_ids: Sequence[Any] | None = None, **grid: Any):
    """:func:`class_sensitivity_rebuffi` for every cell of the backprop-saliency framework at
    every layer of ``layers`` and combined (plus the ``extra`` activation x gradient methods)
    from two captures (most and least probable class; with ``meta_lr`` after each image's SGD
    step). ``grid``: ``phase1`` / ``phase2`` / ``combined`` of
    :func:`cameras.methods.normgrad.normgrad_grid`. Returns a DataFrame ``image, layer, cell,
    most, least, class_spearman``."""
    import pandas as pd

    from ..methods.normgrad import normgrad_grid

    x = check_images(images).to(device_of(model))
    ids = ids_or_range(image_ids, x.shape[0])
    with eval_mode(model), torch.no_grad():
        probs = model(x).float().softmax(1)
    most, least = probs.argmax(1), probs.argmin(1)
    grids = [normgrad_grid(model, x, c, layers, extra=extra, meta_lr=meta_lr, **grid) for c in (most, least)]
    rows = []
    for (layer, cell), m in grids[0].items():
        r = spearman_no_abs(m, grids[1][(layer, cell)])
        rows += [dict(image=ids[i], layer=layer, cell=cell, most=int(most[i]), least=int(least[i]),
                      class_spearman=float(r[i])) for i in range(len(ids))]
    return pd.DataFrame(rows, columns=["image", "layer", "cell", "most", "least", "class_spearman"])


def grid_class_sensitivity_table(df, layers: Sequence[str] | None = None, cells: Sequence[str] | None = None):
    """:func:`grid_class_sensitivity` rows as a table: the mean Spearman ρ (finite values, the
    authors' rule) per cell (rows) and layer (columns), in the given orders."""
    t = df.groupby(["cell", "layer"], sort=False)["class_spearman"].mean().unstack("layer")
    return t.reindex(index=list(cells) if cells is not None else None, columns=list(layers) if layers else None)


def summarize_class_sensitivity(df, by: Sequence[str] = ("method",), column: str = "class_spearman",
                                n_boot: int = 2000, level: float = 0.95):
    """Per group: the mean of ``column`` over the images with a finite value (the authors'
    rule), its percentile bootstrap interval, the number of images used and dropped."""
    import pandas as pd

    from .intervals import bootstrap_ci

    out = []
    for key, g in df.groupby(list(by), sort=False):
        v = g[column].to_numpy(dtype=float)
        ok = v[np.isfinite(v)]
        lo, hi = bootstrap_ci(ok, n_boot=n_boot, level=level)
        key = key if isinstance(key, tuple) else (key,)
        out.append({**dict(zip(by, key, strict=True)), "mean": float(ok.mean()) if len(ok) else math.nan,
                    "ci_low": lo, "ci_high": hi, "n": int(len(ok)), "dropped": int(len(v) - len(ok))})
    return pd.DataFrame(out, columns=[*by, "mean", "ci_low", "ci_high", "n", "dropped"])


def class_sensitivity_table(df, rows: Sequence[str] = ("method", "layer"), meta: str = "meta_lr",
                            column: str = "class_spearman", n_boot: int = 2000):
    """One line per ``rows`` group: the mean class sensitivity without and with meta-saliency
    (rows with ``meta == 0`` and ``!= 0``) with 95 % bootstrap intervals, as text ``"m [lo, hi]"``,
    the paired change (meta minus plain, per image) with its interval, and the numbers of
    images (``n``; ``dropped``: constant maps, left out as by the authors)."""
    import pandas as pd

    from .intervals import bootstrap_ci

    def text(v: np.ndarray) -> str:
        if not len(v):
            return "–"
        lo, hi = bootstrap_ci(v, n_boot=n_boot)
        return f"{v.mean():.2f} [{lo:.2f}, {hi:.2f}]" if len(v) > 1 else f"{v.mean():.2f}"

    out = []
    for key, g in df.groupby(list(rows), sort=False):
        plain = g[g[meta] == 0].set_index("image")[column]
        stepped = g[g[meta] != 0].set_index("image")[column]
        both = pd.concat([plain, stepped], axis=1, keys=["p", "m"]).dropna()
        fin = [v.to_numpy(dtype=float) for v in (plain, stepped)]
        fin = [v[np.isfinite(v)] for v in fin]
        key = key if isinstance(key, tuple) else (key,)
        out.append({**dict(zip(rows, key, strict=True)), "plain": text(fin[0]), "meta": text(fin[1]),
                    "change": text((both["m"] - both["p"]).to_numpy(dtype=float)), "mean_plain": fin[0].mean()
                    if len(fin[0]) else math.nan, "mean_meta": fin[1].mean() if len(fin[1]) else math.nan,
                    "n": int(len(plain)), "dropped": int(len(plain) - len(fin[0]) + len(stepped) - len(fin[1]))})
    return pd.DataFrame(out)


def most_least_maps(methods: Any, model: nn.Module, images: Tensor, *, layer: Any = None,
                    settings: Mapping[str, Mapping[str, Any]] | None = None,
                    batch_size: int | None = None, image_ids: Sequence[Any] | None = None,
                    scores: str = "probs", progress: bool = False):
    """The two maps that class sensitivity compares, for methods by name or as callables
    (:func:`cameras.methods._callables.map_functions`): ``(image ids, scores, most, least,
    pairs)`` with the model's ``scores`` (``"probs"``: softmax, ``"logits"``) of the images,
    each image's highest- and lowest-scoring class, and an iterator of ``(method, map
    function, maps of most, maps of least)``, computed one method at a time as it is read."""
    from tqdm.auto import tqdm

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    x = check_images(images)
    fns = map_functions(methods, model, layer, settings)
    ids = ids_or_range(image_ids, x.shape[0])
    x = x.to(device_of(model))
    with eval_mode(model), torch.no_grad():
        s = model(x)
        s = s.float().softmax(1) if scores == "probs" else s
    most, least = s.argmax(1), s.argmin(1)

    def pairs():
        with eval_mode(model):
            for n, fn in tqdm(fns.items(), desc="class sensitivity (methods)",
                              disable=not progress):
                yield n, fn, *(compute_maps(fn, model, x, c, batch_size, n) for c in (most, least))

    return ids, s, most, least, pairs()


def class_sensitivity_extras(methods: Any, model: nn.Module, images: Tensor, *,
                             progress: bool = True, **kw: Any) -> Any:
    """Our variant: how much a method's map changes between the top-1 and the least-likely class.

    For each image (normalised model input) and method: the map for the top-1 class and the
    map for the least-likely class (lowest logit) of the original model, both min-max
    normalised, then

    * ``1-spearman``: 1 minus their Spearman rank correlation,
    * ``1-ssim``: 1 minus their SSIM,
    * ``mad``: mean absolute difference of the normalised maps.

    All three are 0 for a class-insensitive method (identical maps) and grow with the
    difference. The authors' own score is :func:`class_sensitivity_rebuffi`. ``layer``,
    ``settings``, ``batch_size``, ``image_ids``: as :func:`most_least_maps`. Returns a
    DataFrame ``method, image, top1, least_likely, metric, value``.
    """
    import pandas as pd

    ids, _, top, ll, pairs = most_least_maps(methods, model, images, scores="logits",
                                             progress=progress, **kw)
    rows: list[dict[str, Any]] = []
    for n, _fn, m_top, m_ll in pairs:
        for i in range(len(ids)):
            a, b = _minmax(m_top[i].double().numpy()), _minmax(m_ll[i].double().numpy())
            vals = {"1-spearman": 1.0 - spearman(a, b), "1-ssim": 1.0 - ssim(a, b),
                    "mad": float(np.abs(a - b).mean())}
            for metric, v in vals.items():
                rows.append(dict(method=n, image=ids[i], top1=int(top[i]), least_likely=int(ll[i]),
                                 metric=metric, value=v))
    return pd.DataFrame(rows, columns=["method", "image", "top1", "least_likely", "metric", "value"])


#: the old name of :func:`class_sensitivity_extras` (chapter 7 and :mod:`cameras.sanity` use it)
class_sensitivity = class_sensitivity_extras

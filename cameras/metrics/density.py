r"""Map density, the metric CAMERAS proposes (Jalwana et al., CVPR 2021, Sec. 4.2, Table 2).

.. math::
    \rho^+ = \frac{P(y \mid I\odot\Psi)}{\mathrm{mean}(\Psi)}, \qquad
    \rho^- = \frac{P(y \mid I\odot(1-\Psi))}{\mathrm{mean}(1-\Psi)}

with :math:`P` the softmax probability of the true label ``y`` and :math:`\Psi` the map in
[0, 1]. Higher :math:`\rho^+` and lower :math:`\rho^-` are better: the map packs the class
evidence into little area.

:func:`density_table`, :func:`win_rates` and :func:`common_images` summarise per-image rows
(``model, method, image, baseline`` and the metric columns) over images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ._common import as_labels, baseline01, check_maps, class_probability, stats
from ._info import MetricInfo, describe

__all__ = ["map_density", "masked_images", "RHO_PLUS", "RHO_MINUS", "density_table", "win_rates",
           "common_images"]

RHO_PLUS = describe(MetricInfo("rho_plus", "ρ+", higher_is_better=True, range=(0, math.inf),
                               reference="Jalwana et al., CVPR 2021, Sec. 4.2",
                               summary="P(label | image x map) / mean(map)"))
RHO_MINUS = describe(MetricInfo("rho_minus", "ρ−", higher_is_better=False, range=(0, math.inf),
                                reference="Jalwana et al., CVPR 2021, Sec. 4.2",
                                summary="P(label | image x (1 - map)) / mean(1 - map)"))


def masked_images(images: Tensor, maps: Tensor, *, mean, std,
                  baseline: str | float | Tensor = "black") -> tuple[Tensor, Tensor]:
    r"""The two inputs of map density in *pixel* space ([0, 1]), for display.

    ``(keep, drop)`` = :math:`I\odot\Psi + B\odot(1-\Psi)` and :math:`I\odot(1-\Psi) + B\odot\Psi`
    with :math:`B` the baseline image (see :func:`map_density`). ``images``: normalised
    ``(B, 3, H, W)``; ``maps``: ``(B, H, W)`` in [0, 1].
    """
    maps = check_maps(maps, images)
    m, s = stats(mean, std, images)
    x01 = images * s + m
    b01 = baseline01(baseline, x01, m)
    psi = maps[:, None]
    return x01 * psi + b01 * (1 - psi), x01 * (1 - psi) + b01 * psi


def map_density(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    labels,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    baseline: str | float | Tensor = "black",
    batch_size: int = 32,
    return_details: bool = False,
):
    r"""Map density (CAMERAS, Table 2): ``(rho_plus, rho_minus)``, one value per image.

    **Masking.** The product is taken in *pixel* space ([0, 1] images): the masked image is
    :math:`I\odot\Psi + B\odot(1-\Psi)`, i.e. pixels fade towards a baseline image ``B`` where
    the map is low. ``baseline="black"`` (default) is the paper's literal :math:`I\odot\Psi`
    (multiplying pixels by the map fades them to black, 0 in pixel space, which is *not* 0 in
    the model's normalised space); ``"mean"`` fades to the dataset mean colour (0 in
    normalised space, i.e. multiplying the *normalised* tensor); a number is a gray level; a
    tensor is any baseline image in pixel space. ``images`` are normalised model inputs;
    ``mean``/``std`` are the model's normalisation (e.g. ``LoadedModel.mean``/``.std``).

    **Empty maps.** If :math:`\mathrm{mean}(\Psi) = 0` (an all-zero map -- what
    :func:`~cameras.core.normalize_maps` returns for a constant map) the ratio is 0/0-like: its
    limit for :math:`\Psi = \epsilon \to 0` is :math:`+\infty`, which would make an empty map
    the best possible. We return :math:`\rho^+ = 0` instead: a map that keeps nothing explains
    nothing. Symmetrically, if :math:`\mathrm{mean}(1-\Psi) = 0` (an all-ones map; impossible
    after min-max normalisation) we return :math:`\rho^- = +\infty` (worst). So a degenerate
    map always gets the worst value, never NaN; ``return_details=True`` also returns a dict
    with the two probabilities, the map means and the boolean masks ``empty`` / ``full``.
    """
    keep, drop = masked_images(images, maps, mean=mean, std=std, baseline=baseline)
    maps = check_maps(maps, images)
    labels = as_labels(labels, images.shape[0])
    m, s = stats(mean, std, images)
    p_plus = class_probability(model, (keep - m) / s, labels, batch_size).cpu()
    p_minus = class_probability(model, (drop - m) / s, labels, batch_size).cpu()
    a_plus = maps.float().mean(dim=(1, 2)).cpu()
    a_minus = (1 - maps.float()).mean(dim=(1, 2)).cpu()
    empty = a_plus <= 0
    full = a_minus <= 0
    rho_plus = torch.where(empty, torch.zeros_like(p_plus), p_plus / a_plus.clamp_min(1e-30))
    rho_minus = torch.where(full, torch.full_like(p_minus, math.inf),
                            p_minus / a_minus.clamp_min(1e-30))
    if return_details:
        return rho_plus, rho_minus, {
            "p_plus": p_plus, "p_minus": p_minus, "mean_map": a_plus,
            "mean_complement": a_minus, "empty": empty, "full": full,
        }
    return rho_plus, rho_minus


def density_table(df, baseline: str = "black",
                  methods: Sequence[str] = ("normgrad", "gradcam", "cameras")):
    """Per (model, method) of per-image rows, one baseline: the mean rho+ and rho- with 95 %
    bootstrap intervals over the images that *every* one of ``methods`` has on that model
    (``n``), so the methods are compared on the same images; a method without rows gets NaN."""
    import pandas as pd

    from .intervals import bootstrap_ci

    d, out = df[(df["baseline"] == baseline) & df["method"].isin(methods)], []
    for model, g in d.groupby("model", sort=False):
        common = set.intersection(*[set(v["image"]) for _, v in g.groupby("method")])
        for m in methods:
            sel = g[(g["method"] == m) & g["image"].isin(common)]
            row = {"model": model, "method": m, "n": len(sel)}
            for c in ("rho_plus", "rho_minus"):
                a = sel[c].to_numpy(float)
                row[c] = a.mean() if len(a) else math.nan
                row[f"{c}_lo"], row[f"{c}_hi"] = bootstrap_ci(a)
            out.append(row)
    return pd.DataFrame(out)


def common_images(df):
    """The rows of the images that every method computed on a model has (per model), so that
    means over methods are over the same images."""
    n = df.groupby(["model", "image"])["method"].transform("nunique")
    return df[n == df.groupby("model")["method"].transform("nunique")]


def win_rates(df, reference: str = "cameras", baseline: str = "black",
              metrics: Sequence[str] = ("rho_plus", "rho_minus", "insertion", "deletion")):
    """Per model and other method, over the images both have: the share where ``reference`` is
    better on each of ``metrics`` (the direction of its :class:`MetricInfo`: a higher rho+ and
    insertion AUC, a lower rho- and deletion AUC; ties count half)."""
    import pandas as pd

    from ._info import info

    out, better = [], {m: 1 if info(m).higher_is_better else -1 for m in metrics}
    for model, g in df[df["baseline"] == baseline].groupby("model", sort=False):
        piv = g.pivot_table(index="image", columns="method", values=list(better))
        ms = list(dict.fromkeys(g["method"]))
        for other in (m for m in ms if m != reference and reference in ms):
            p = piv.loc[:, (slice(None), [reference, other])].dropna()
            diff = {m: b * (p[(m, reference)] - p[(m, other)]) for m, b in better.items()}
            out.append({"model": model, "other": other, "n": len(p),
                        **{m: float(((v > 0) + 0.5 * (v == 0)).mean()) for m, v in diff.items()}})
    return pd.DataFrame(out)

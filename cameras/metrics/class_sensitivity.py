"""Class sensitivity (Rebuffi, Fong, Ji & Vedaldi, *There and back again*, CVPR 2020).

A map that explains a class should change when another class is explained. Each image's map
for its top-1 class is compared with its map for its least-likely class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..hooks import eval_mode
from ..methods._callables import check_images, compute_maps, device_of, ids_or_range, map_functions
from ._info import MetricInfo, describe
from .similarity import _minmax, spearman, ssim

__all__ = ["class_sensitivity"]

describe(MetricInfo("1-spearman", "1 − Spearman", True, (0, 2), reference="Rebuffi et al., CVPR 2020",
                    summary="1 minus the rank correlation of the top-1 and least-likely maps"))
describe(MetricInfo("1-ssim", "1 − SSIM", True, (0, 2), reference="Rebuffi et al., CVPR 2020"))
describe(MetricInfo("mad", "mean |difference|", True, (0, 1), reference="Rebuffi et al., CVPR 2020"))


def class_sensitivity(
    methods: Any,
    model: nn.Module,
    images: Tensor,
    *,
    layer: Any = None,
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    batch_size: int | None = None,
    image_ids: Sequence[Any] | None = None,
    progress: bool = True,
) -> Any:
    """How much a method's map changes between the top-1 and the least-likely class.

    For each image (normalised model input) and method: the map for the top-1 class and the
    map for the least-likely class (lowest logit) of the original model, both min-max
    normalised, then

    * ``1-spearman``: 1 minus their Spearman rank correlation,
    * ``1-ssim``: 1 minus their SSIM,
    * ``mad``: mean absolute difference of the normalised maps.

    All three are 0 for a class-insensitive method (identical maps) and grow with the
    difference (Rebuffi et al., CVPR 2020, report that several backprop methods are nearly
    class-insensitive). Returns a DataFrame ``method, image, top1, least_likely, metric,
    value``.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    images = check_images(images)
    fns = map_functions(methods, model, layer, settings)
    ids = ids_or_range(image_ids, images.shape[0])
    device = device_of(model)
    x = images.to(device)
    with eval_mode(model), torch.no_grad():
        logits = model(x)
    top, ll = logits.argmax(1), logits.argmin(1)
    rows: list[dict[str, Any]] = []
    with eval_mode(model):
        for n, fn in tqdm(fns.items(), desc="class sensitivity (methods)", disable=not progress):
            m_top = compute_maps(fn, model, x, top, batch_size, n)
            m_ll = compute_maps(fn, model, x, ll, batch_size, n)
            for i in range(len(ids)):
                a, b = _minmax(m_top[i].double().numpy()), _minmax(m_ll[i].double().numpy())
                vals = {"1-spearman": 1.0 - spearman(a, b), "1-ssim": 1.0 - ssim(a, b),
                        "mad": float(np.abs(a - b).mean())}
                for metric, v in vals.items():
                    rows.append(dict(method=n, image=ids[i], top1=int(top[i]), least_likely=int(ll[i]),
                                     metric=metric, value=v))
    return pd.DataFrame(rows, columns=["method", "image", "top1", "least_likely", "metric", "value"])

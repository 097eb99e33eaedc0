"""Sec. 6.2 / Fig. 6 of the paper: plain PGD against the CAMERAS-focused PGD (Eq. 4).

The paper (Jalwana et al., CVPR 2021, Sec. 6.2) focuses an adversarial perturbation with the
CAMERAS map ``Psi`` of the clean image,

    minimise_p  CE(f(I + p), l_ll) + beta * || p ⊙ (1 - Psi) ||_2 ,   beta = 50,

towards the least-likely label ``l_ll`` at 99.99 % confidence, and reports (the paper's
number, ResNet-50 on ImageNet val) that the focused perturbation needs **56.5 % less norm**
on average than the unfocused one. The paper does not state the step rule, the l_inf
budget, the units of the norm or the number of iterations.

What this module runs (all in :mod:`cameras.attacks`): per model and image, one plain
sign-gradient PGD and one focused PGD per *variant* -- a ``(penalty_norm, beta)`` pair --
sharing the target, the start, the budget and the stopping rule. The variants sweep beta
and include

* ``("l2", 50)``: Eq. 4 as written, with the norm in pixel units (the paper's beta), and
* ``("rms", 50)``: our reading with the norm taken per entry (divided by ``sqrt(C*H*W)``),
  which equals the literal form with beta = 50 / 388 at 224 px.

One CSV row per ``(model, image, attack)`` goes to ``<results>/attacks/attacks.csv``
(``<results>/_ci/attacks/`` for the ci profile) as it is computed, so an interrupted run
resumes. The clean image, ``Psi`` and the perturbations of the first few images of the
first model are kept in ``fig6_<model>.npz`` beside it for the Fig. 6 analogue.

Headless::

    python -m cameras.experiments attacks --profile offline --device cuda
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..runs import ResultsWriter
from ._common import profile_copy, results_subdir

__all__ = [
    "PROFILES",
    "PAPER_RESULT",
    "settings_for",
    "results_path",
    "Item",
    "image_items",
    "load_pixels",
    "attack_name",
    "run",
    "paired",
    "summary",
    "fig6_data",
    "plot_fig6",
    "plot_sweep",
]

# the paper's sizes (the authors' code): 224, 324, ..., 924
_PAPER_SIZES = list(range(224, 1000, 100))

#: beta sweep: Eq. 4 as written ("l2", pixel units) at several beta, and the per-entry reading
_SWEEP = [
    {"penalty_norm": "l2", "beta": 0.05},
    {"penalty_norm": "l2", "beta": 0.5},
    {"penalty_norm": "l2", "beta": 5.0},
    {"penalty_norm": "l2", "beta": 50.0},
    {"penalty_norm": "rms", "beta": 50.0},
]

PROFILES: dict[str, dict[str, Any]] = {
    "ci": {
        "name": "ci",
        "models": ["efficientnet_lite0"],
        "images": "skimage",
        "photos": ["chelsea", "coffee"],
        "n_images": 2,
        "variants": [
            {"penalty_norm": "l2", "beta": 50.0},
            {"penalty_norm": "rms", "beta": 50.0},
        ],
        "eps": 16 / 255,
        "alpha": 1 / 255,
        "max_iter": 30,
        "confidence": 0.9999,
        "step": "sign",
        "cameras_sizes": [224, 324],
        "batch_size": 2,
        "cameras_batch_size": 2,
        "figure_images": 1,
    },
    "offline": {
        "name": "offline",
        # Lite0 and Lite1 are complete (120 images, GPU run). The Lite2 run stopped at 120 plain
        # and 60 focused attacks per variant; its rows stay in attacks.csv and a GPU finishes
        # them with --set 'models=["efficientnet_lite2"]' (hours on a 2-core CPU).
        "models": ["efficientnet_lite0", "efficientnet_lite1"],
        "images": "imagenet_sample",
        "n_images": 120,
        "variants": _SWEEP,
        "eps": 16 / 255,
        "alpha": 1 / 255,
        "max_iter": 300,
        "confidence": 0.9999,
        "step": "sign",
        "cameras_sizes": _PAPER_SIZES,
        "batch_size": 60,
        "cameras_batch_size": 20,
        "figure_images": 3,
    },
    "paper": {
        "name": "paper",
        "models": ["resnet50"],
        "images": "imagenet_val",
        "n_images": 1000,
        "variants": _SWEEP,
        "eps": 16 / 255,
        "alpha": 1 / 255,
        "max_iter": 300,
        "confidence": 0.9999,
        "step": "sign",
        "cameras_sizes": _PAPER_SIZES,
        "batch_size": 100,
        "cameras_batch_size": 25,
        "figure_images": 3,
    },
}

#: The paper's reported result (Sec. 6.2), for tables labelled "paper (reported)".
PAPER_RESULT = {
    "model": "resnet50 (torchvision)",
    "data": "ImageNet val",
    "beta": 50.0,
    "confidence": 0.9999,
    "l2_change_pct": -56.5,
}


# ----------------------------------------------------------------------------------------
# settings
# ----------------------------------------------------------------------------------------
def settings_for(profile: str | Mapping[str, Any], **overrides: Any) -> dict[str, Any]:
    """The profile's settings (a copy) with ``overrides`` applied; unknown keys are errors.

    ``profile`` is a name in :data:`PROFILES` or a settings dict (e.g. a notebook's, with
    overrides already applied); overrides whose value is ``None`` are ignored.
    """
    s = profile_copy(PROFILES, profile, record_name=False)
    known = set(PROFILES["offline"]) | {"sample_dir", "data_root"}
    for k, v in overrides.items():
        if k not in known:
            raise ValueError(f"unknown setting {k!r} for the attacks experiment; known: {', '.join(sorted(known))}")
        if v is not None:
            s[k] = v
    if isinstance(s.get("models"), str):
        s["models"] = [s["models"]]
    for v in s["variants"]:
        if set(v) != {"penalty_norm", "beta"}:
            raise ValueError(f"each variant is a dict with penalty_norm and beta, got {v!r}")
        v["beta"] = float(v["beta"])
    for k in ("n_images", "max_iter", "batch_size", "cameras_batch_size", "figure_images"):
        if not isinstance(s[k], int) or isinstance(s[k], bool) or s[k] < (0 if k == "figure_images" else 1):
            raise ValueError(f"{k} must be a positive int, got {s[k]!r}")
    s.setdefault("name", "custom")
    return s


def results_path(settings: Mapping[str, Any], results: str | os.PathLike | None = None) -> Path:
    """``<results>/attacks`` (``<results>/_ci/attacks`` for the ci profile)."""
    return results_subdir("attacks", settings.get("name") == "ci", results)


def attack_name(variant: Mapping[str, Any] | None) -> str:
    """``"plain"`` or ``"focused/<penalty_norm>/beta=<beta>"`` (the ``attack`` key column)."""
    if variant is None:
        return "plain"
    return f"focused/{variant['penalty_norm']}/beta={float(variant['beta']):g}"


# ----------------------------------------------------------------------------------------
# images
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Item:
    """One image of a run: an id, its ImageNet label (-1 if unknown) and where it comes from."""

    id: str
    label: int
    source: Any  # a path or an (H, W, 3) uint8 array


def _spread(n_total: int, n: int) -> list[int]:
    """``n`` evenly spaced positions in ``range(n_total)`` (deterministic, distinct)."""
    n = min(n, n_total)
    return sorted({int(round(v)) for v in np.linspace(0, n_total - 1, n)})


_VAL_LAYOUTS = ("imagenet/val", "ILSVRC2012/val", "ILSVRC2012_img_val", "val")


def imagenet_val_dir(root: str | os.PathLike | None = None) -> Path:
    """ImageNet val as ``<wnid>/<file>.JPEG`` folders under ``$CAMERAS_DATA_ROOT``.

    Looked up as ``imagenet/val``, ``ILSVRC2012/val``, ``ILSVRC2012_img_val`` or ``val`` under
    the data root (:func:`cameras.datasets.data_root`). Raises
    :class:`cameras.datasets.MissingDataError` naming the expected layout.
    """
    from ..datasets import MissingDataError, data_root

    base = data_root(root)
    for rel in _VAL_LAYOUTS:
        d = base / rel
        if d.is_dir() and any(p.is_dir() and p.name.startswith("n") for p in d.iterdir()):
            return d
    raise MissingDataError(
        f"ImageNet val not found under {base}: expected class folders <wnid>/*.JPEG in one of "
        f"{', '.join(str(base / r) for r in _VAL_LAYOUTS)} (the torchvision ImageFolder layout, "
        "e.g. after valprep.sh). The paper profile needs it; the offline profile uses the "
        "ImageNet sample instead."
    )


def image_items(settings: Mapping[str, Any], n: int | None = None) -> list[Item]:
    """The images of a run, chosen deterministically (evenly spaced over the set).

    ``images``: ``"skimage"`` (scikit-image's photos ``photos``), ``"imagenet_sample"``
    (the shared 1000-image sample, one image per class; ``sample_dir`` or
    ``$CAMERAS_IMAGENET_SAMPLE``) or ``"imagenet_val"`` (under ``$CAMERAS_DATA_ROOT``).
    """
    n = int(settings["n_images"] if n is None else n)
    kind = settings["images"]
    if kind == "skimage":
        from ..data import skimage_photos

        photos = skimage_photos(settings.get("photos"))
        return [Item(k, -1, v) for k, v in list(photos.items())[:n]]
    if kind == "imagenet_sample":
        from ..data import ImageNetSample

        ds = ImageNetSample(settings.get("sample_dir"))
        return [Item(ds.info(i).path.stem, ds.info(i).label, ds.info(i).path) for i in _spread(len(ds), n)]
    if kind == "imagenet_val":
        from ..data import imagenet_wnids

        root = imagenet_val_dir(settings.get("data_root"))
        wnids = imagenet_wnids()
        files = sorted(p for p in root.glob("n*/*") if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
        if not files:
            raise FileNotFoundError(f"no images in {root}/<wnid>/")
        picked = [files[i] for i in _spread(len(files), n)]
        return [Item(p.stem, wnids.index(p.parent.name) if p.parent.name in wnids else -1, p) for p in picked]
    raise ValueError(f"images must be 'skimage', 'imagenet_sample' or 'imagenet_val', got {kind!r}")


def load_pixels(lm: Any, items: Sequence[Item]) -> torch.Tensor:
    """``(B, 3, S, S)`` images in pixel space [0, 1] with the model's resize and center crop."""
    return torch.stack([lm.denormalize(lm.preprocess(it.source)) for it in items])


def check_data(settings: Mapping[str, Any]) -> None:
    """Fail early (before any model is loaded) when the data of the profile are missing."""
    if settings["images"] == "imagenet_val":
        imagenet_val_dir(settings.get("data_root"))
    elif settings["images"] == "imagenet_sample":
        from ..data import imagenet_sample_dir

        imagenet_sample_dir(settings.get("sample_dir"))


# ----------------------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------------------
_COLUMNS = [
    "model", "image", "attack", "label", "penalty_norm", "beta", "step", "eps", "alpha",
    "max_iter", "confidence_target", "clean_prediction", "target", "prediction", "confidence",
    "success", "l2", "linf", "iterations", "psi_mean", "seconds",
]


def _pgd_kwargs(s: Mapping[str, Any]) -> dict[str, Any]:
    return dict(eps=float(s["eps"]), alpha=float(s["alpha"]), max_iter=int(s["max_iter"]),
                confidence=float(s["confidence"]), step=s["step"], stop_early=True)


def run(
    profile: str | Mapping[str, Any] = "offline",
    results: str | os.PathLike | None = None,
    device: str = "auto",
    progress: bool = True,
    **overrides: Any,
):
    """Run (or resume) the attack comparison; returns all rows of the CSV as a DataFrame.

    For each model and batch of images: the least-likely target of every clean image, the
    CAMERAS map ``Psi`` of its predicted class (``cameras_sizes``), then plain PGD and one
    focused PGD per variant, each only for the images whose row is missing. The figure data
    of the first ``figure_images`` images of the first model are saved on the way.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from ..attacks import as_pixel_model, cameras_saliency, least_likely_labels, pgd_attack
    from ..models import load_model, resolve_device
    from ..runs import read_results

    s = settings_for(profile, **overrides)
    dev = resolve_device(device)
    check_data(s)  # data first: the paper profile fails here, before any download
    out = results_path(s, results)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / "attacks.csv"
    items = image_items(s)
    attacks = [None] + list(s["variants"])
    meta = {"experiment": "attacks", "settings": s}
    for mi, name in enumerate(s["models"]):
        lm = None
        fig_file = out / f"fig6_{name}.npz"
        want_fig = mi == 0 and s["figure_images"] > 0 and not fig_file.exists()
        fig_ids = {it.id for it in items[: s["figure_images"]]}
        with ResultsWriter(csv, key=("model", "image", "attack"), columns=_COLUMNS, meta=meta, device=dev) as w:
            todo_ids = {it.id for it in items if any(not w.done((name, it.id, attack_name(a))) for a in attacks)}
            if want_fig:  # the figure images are recomputed when their arrays are missing
                todo_ids |= fig_ids
            todo = [it for it in items if it.id in todo_ids]
            if not todo:
                continue
            t0 = time.time()
            lm = load_model(name, device=dev)
            pixel_model, _, _ = as_pixel_model(lm)
            bs = s["batch_size"]
            batches = [todo[i : i + bs] for i in range(0, len(todo), bs)]
            fig: dict[str, Any] = {}
            for batch in tqdm(batches, desc=f"attacks {name} (batches of {bs})", disable=not progress):
                x = load_pixels(lm, batch).to(dev)
                target = least_likely_labels(pixel_model, x)
                psi = cameras_saliency(lm, x, layer=lm.layer, sizes=tuple(s["cameras_sizes"]),
                                       batch_size=s["cameras_batch_size"], progress=False)
                keep = [i for i, it in enumerate(batch) if want_fig and it.id in fig_ids]
                if keep:
                    fig["x"] = x[keep].cpu().numpy().astype(np.float32)
                    fig["psi"] = psi[keep].cpu().numpy().astype(np.float32)
                    fig["ids"] = np.array([batch[i].id for i in keep])
                    fig["labels"] = np.array([batch[i].label for i in keep])
                    fig["target"] = target[keep].cpu().numpy()
                for a in attacks:
                    an = attack_name(a)
                    sel = [i for i, it in enumerate(batch) if not w.done((name, it.id, an)) or i in keep]
                    if not sel:
                        continue
                    t1 = time.time()
                    kw = _pgd_kwargs(s)
                    if a is not None:
                        kw |= dict(saliency=psi[sel], beta=a["beta"], penalty_norm=a["penalty_norm"])
                    r = pgd_attack(lm, x[sel], target=target[sel], **kw)
                    secs = (time.time() - t1) / len(sel)
                    for j, i in enumerate(sel):
                        it = batch[i]
                        if i in keep:
                            fig[f"delta:{an}"] = fig.get(f"delta:{an}", []) + [r.delta[j].numpy().astype(np.float32)]
                            fig[f"info:{an}"] = fig.get(f"info:{an}", []) + [
                                [float(r.confidence[j]), float(r.success[j]), float(r.l2[j]), int(r.prediction[j])]]
                        w.write({
                            "model": name, "image": it.id, "attack": an, "label": it.label,
                            "penalty_norm": "none" if a is None else a["penalty_norm"],
                            "beta": 0.0 if a is None else a["beta"], "step": s["step"],
                            "eps": s["eps"], "alpha": s["alpha"], "max_iter": s["max_iter"],
                            "confidence_target": s["confidence"],
                            "clean_prediction": int(r.clean_prediction[j]), "target": int(r.target[j]),
                            "prediction": int(r.prediction[j]), "confidence": float(r.confidence[j]),
                            "success": bool(r.success[j]), "l2": float(r.l2[j]), "linf": float(r.linf[j]),
                            "iterations": int(r.iterations[j]), "psi_mean": float(psi[i].mean()),
                            "seconds": round(secs, 4),
                        })
            if want_fig and "x" in fig:
                _save_fig(fig_file, fig, attacks, s)
            if progress:
                print(f"attacks: {name}: {len(todo)} images in {time.time() - t0:.1f} s on {dev}")
        del lm
    if not csv.exists():
        return pd.DataFrame(columns=_COLUMNS)
    df = read_results(csv)
    names = [attack_name(a) for a in attacks]
    return df[df["model"].isin(s["models"]) & df["attack"].isin(names) & df["image"].isin([it.id for it in items])
              ].reset_index(drop=True)


def _save_fig(path: Path, fig: Mapping[str, Any], attacks: Sequence[Any], s: Mapping[str, Any]) -> None:
    arrays: dict[str, Any] = {k: v for k, v in fig.items() if not k.startswith(("delta:", "info:"))}
    names = [attack_name(a) for a in attacks]
    arrays["attacks"] = np.array(names)
    for i, an in enumerate(names):
        arrays[f"delta_{i}"] = np.stack(fig[f"delta:{an}"]).astype(np.float16)
        arrays[f"info_{i}"] = np.array(fig[f"info:{an}"], dtype=np.float64)
    arrays["settings"] = np.array(json.dumps(s, sort_keys=True))
    np.savez_compressed(path, **arrays)


# ----------------------------------------------------------------------------------------
# analysis
# ----------------------------------------------------------------------------------------
def paired(df):
    """One row per (model, focused attack, image): the plain and focused outcomes side by side."""
    import pandas as pd

    cols = ["success", "l2", "linf", "iterations", "confidence", "target"]
    plain = df[df["attack"] == "plain"].set_index(["model", "image"])[cols].add_prefix("plain_")
    foc = df[df["attack"] != "plain"]
    if foc.empty or plain.empty:
        return pd.DataFrame()
    foc = foc.set_index(["model", "image"])[["attack", "penalty_norm", "beta", *cols]]
    foc = foc.rename(columns={c: f"focused_{c}" for c in cols})
    out = foc.join(plain, how="inner").reset_index()
    for c in ("plain_success", "focused_success"):
        out[c] = out[c].astype(str).str.lower().isin(["true", "1", "1.0"])
    if (out["plain_target"] != out["focused_target"]).any():
        raise ValueError("plain and focused attacks of an image have different targets: rows are not paired")
    return out


def summary(df):
    """Per model and focused attack: success rates and the paired norm change.

    Norms are compared only over images where both attacks reached the target
    (:func:`cameras.attacks.summarize_comparison`); ``l2_change_pct < 0`` means the focused
    perturbation is smaller.
    """
    import pandas as pd

    from ..attacks import summarize_comparison

    p = paired(df)
    rows = []
    if p.empty:
        return pd.DataFrame()
    for (model, attack), g in p.groupby(["model", "attack"], sort=False):
        sm = summarize_comparison(g)
        norm, beta = g["penalty_norm"].iloc[0], float(g["beta"].iloc[0])
        rows.append({"model": model, "attack": attack, "penalty_norm": norm, "beta": beta,
                     "beta_literal": beta if norm == "l2" else beta / math.sqrt(_entries(model))} | sm)
    out = pd.DataFrame(rows)
    order = {"l2": 0, "rms": 1}
    out["_o"] = out["penalty_norm"].map(order).fillna(2)
    out = out.sort_values(["model", "_o", "beta"]).drop(columns="_o").reset_index(drop=True)
    return out


def _entries(model: str) -> int:
    """C * H * W of the model's native input (the attacks run at that size)."""
    from ..models import get_spec

    return 3 * get_spec(model).input_size ** 2


# ----------------------------------------------------------------------------------------
# Fig. 6 analogue
# ----------------------------------------------------------------------------------------
def fig6_data(
    profile: str | Mapping[str, Any] = "offline",
    results: str | os.PathLike | None = None,
    device: str = "auto",
    **overrides: Any,
) -> dict[str, Any]:
    """The arrays of the Fig. 6 analogue (first model, first ``figure_images`` images).

    Read from ``fig6_<model>.npz`` (written by :func:`run`); if it is missing, :func:`run`
    is called, which recomputes just those images. Returns ``x`` (n, 3, S, S), ``psi``
    (n, S, S), ``ids``, ``attacks`` (names) and per attack ``delta`` and ``info``
    (confidence, success, l2, prediction per image).
    """
    s = settings_for(profile, **overrides)
    path = results_path(s, results) / f"fig6_{s['models'][0]}.npz"
    if not path.exists():
        run(s, results=results, device=device, progress=False)
    with np.load(path, allow_pickle=False) as z:
        d = {k: z[k] for k in z.files}
    names = [str(a) for a in d["attacks"]]
    return {
        "model": s["models"][0],
        "x": d["x"], "psi": d["psi"], "ids": [str(i) for i in d["ids"]], "labels": d["labels"],
        "target": d["target"], "attacks": names,
        "delta": {a: d[f"delta_{i}"].astype(np.float32) for i, a in enumerate(names)},
        "info": {a: d[f"info_{i}"] for i, a in enumerate(names)},
        "settings": json.loads(str(d["settings"])),
    }


def _magnify(delta: np.ndarray, scale: float) -> np.ndarray:
    """A perturbation (3, H, W) as an image: 0.5 + delta * scale, clipped (grey = no change)."""
    return np.clip(0.5 + delta.transpose(1, 2, 0) * scale, 0, 1)


def plot_fig6(
    data: Mapping[str, Any],
    attacks: Sequence[str] | None = None,
    adversarial: Sequence[str] | None = None,
    magnify: float | None = None,
):
    """Fig. 6 analogue: clean image, CAMERAS map, perturbations (magnified) and adversarial images.

    One row per image. Columns: the clean image, ``Psi``, then for each attack (default:
    plain and every focused variant) its perturbation magnified by ``magnify`` (default:
    ``0.5 / eps``, so the l_inf budget spans the grey range), then the adversarial images of
    the attacks in ``adversarial`` (default: all of ``attacks``) with their predictions.
    Titles give the l2 norm, the target confidence and whether the target was reached.
    """
    from matplotlib.figure import Figure

    from ..data import imagenet_classes
    from ..viz import overlay

    attacks = list(attacks or data["attacks"])
    eps = float(data["settings"]["eps"])
    scale = magnify if magnify is not None else 0.5 / eps
    classes = imagenet_classes()
    n = len(data["ids"])
    adv_cols = list(adversarial) if adversarial is not None else attacks
    unknown = [a for a in attacks + adv_cols if a not in data["attacks"]]
    if unknown:
        raise ValueError(f"no figure data for {unknown}; available: {data['attacks']}")
    ncols = 2 + len(attacks) + len(adv_cols)
    fig = Figure(figsize=(2.3 * ncols, 2.6 * n + 0.3))
    axes = np.atleast_2d(fig.subplots(n, ncols, squeeze=False))
    for r in range(n):
        img = data["x"][r].transpose(1, 2, 0)
        ax = axes[r, 0]
        ax.imshow(img)
        ax.set_title(f"{data['ids'][r][:24]}\ntarget: {classes[int(data['target'][r])][:26]}", fontsize=7)
        axes[r, 1].imshow(overlay((img * 255).round().astype(np.uint8), data["psi"][r]))
        axes[r, 1].set_title("CAMERAS map Psi", fontsize=8)
        for c, a in enumerate(attacks):
            conf, ok, l2, _ = data["info"][a][r]
            axes[r, 2 + c].imshow(_magnify(data["delta"][a][r], scale))
            label = "plain PGD" if a == "plain" else a.replace("focused/", "focused ")
            axes[r, 2 + c].set_title(f"{label}\nl2={l2:.2f} p={conf:.4f} {'ok' if ok else 'FAIL'}", fontsize=7)
        for c, a in enumerate(adv_cols):
            adv = np.clip(img + data["delta"][a][r].transpose(1, 2, 0), 0, 1)
            ax = axes[r, 2 + len(attacks) + c]
            ax.imshow(adv)
            label = "plain" if a == "plain" else a.replace("focused/", "")
            pred = int(data["info"][a][r][3])
            ax.set_title(f"adversarial ({label})\npred: {classes[pred][:26]}", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{data['model']}: perturbations magnified x{scale:.1f} (grey = 0)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_sweep(summ):
    """Success rate of the focused attack and paired l2 change against beta, per model.

    The x axis is beta in the units of Eq. 4 as written (norm in pixel units). The literal
    variants (``"l2"``) are the filled dots; a per-entry variant (``"rms"``) is an open square
    drawn at the literal beta it equals (``beta / sqrt(C*H*W)``). Dotted lines: the success
    rate of plain PGD; dashed: the paper's reported -56.5 %.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.6))
    ax1, ax2 = fig.subplots(1, 2, sharex=True)
    g0 = summ["model"].iloc[0]
    for model, g in summ.groupby("model", sort=False):
        lit = g.sort_values("beta_literal")
        line = ax1.plot(lit["beta_literal"], 100 * lit["focused_success_rate"], "-", label=model)[0]
        ax2.plot(lit["beta_literal"], lit["l2_change_pct"], "-", color=line.get_color(), label=model)
        for norm, mk, fill in (("l2", "o", None), ("rms", "s", "none")):
            h = g[g["penalty_norm"] == norm]
            lab = "Eq. 4 as written" if norm == "l2" else "per-entry norm, beta=50 (ours)"
            kw = dict(color=line.get_color(), ms=8 if norm == "rms" else 5, mfc=fill or line.get_color(), ls="none")
            ax1.plot(h["beta_literal"], 100 * h["focused_success_rate"], mk, **kw)
            ax2.plot(h["beta_literal"], h["l2_change_pct"], mk, label=lab if model == g0 else None, **kw)
        plain = 100 * g["plain_success_rate"].iloc[0]
        ax1.axhline(plain, color=line.get_color(), ls=":", lw=1)
    ax2.axhline(0, color="k", lw=0.5)
    ax2.axhline(PAPER_RESULT["l2_change_pct"], color="k", ls="--", lw=1, label="paper (reported), ResNet-50")
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.set_xlabel("beta (norm in pixel units, Eq. 4 as written)")
        ax.grid(alpha=0.3)
    ax1.set_ylabel("focused attack success rate (%)\n(dotted: plain PGD)")
    ax2.set_ylabel("paired l2 change vs plain (%)\n(images where both succeed)")
    ax2.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


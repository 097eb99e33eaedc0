"""Sec. 6.2 / Fig. 6 of the paper: plain PGD against the CAMERAS-focused PGD (Eq. 4).

The paper (Jalwana et al., CVPR 2021) focuses an adversarial perturbation with the CAMERAS map
``Psi`` of the clean image, ``min_p CE(f(I + p), l_ll) + beta * ||p ⊙ (1 - Psi)||_2``, beta = 50,
towards the least-likely label at 99.99 % confidence; it needs **56.5 % less norm** than plain
PGD (ResNet-50, ImageNet val; step rule, budget, norm units and iterations not stated).

Per model and image (:mod:`cameras.attacks`): one plain sign-gradient PGD and one focused PGD
per *variant* ``(penalty_norm, beta)``, sharing target, start, budget and stopping rule; the
variants sweep beta, with ``("l2", 50)`` (Eq. 4 as written, pixel units) and ``("rms", 50)``
(our reading, the norm per entry: beta = 50 / 388 of the literal form at 224 px). One row per
``(model, image, attack)`` in ``<results>/attacks/attacks.csv``; the arrays of the Fig. 6
analogue (first model, first images) in ``fig6_<model>.npz`` beside it. Headless::

    python -m cameras.experiments attacks --profile offline --device cuda
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..engine import Check, Context, Experiment, MapStore, Unit

__all__ = ["EXPERIMENT", "PROFILES", "PAPER_RESULT", "COLUMNS", "settings", "run", "items",
           "attack_name", "paired", "summary", "fig6_data", "plot_fig6", "plot_sweep"]

#: beta sweep: Eq. 4 as written ("l2", pixel units) at several beta, and the per-entry reading
_SWEEP = [{"penalty_norm": n, "beta": b} for n, b in (("l2", 0.05), ("l2", 0.5), ("l2", 5.0), ("l2", 50.0),
                                                       ("rms", 50.0))]

COLUMNS = ("model", "image", "attack", "label", "penalty_norm", "beta", "step", "eps", "alpha",
           "max_iter", "confidence_target", "clean_prediction", "target", "prediction", "confidence",
           "success", "l2", "linf", "iterations", "psi_mean", "seconds")

#: The paper's reported result (Sec. 6.2), for tables labelled "paper (reported)".
PAPER_RESULT = {"model": "resnet50 (torchvision)", "data": "ImageNet val", "beta": 50.0,
                "confidence": 0.9999, "l2_change_pct": -56.5}


def _variants(v: Any, key: str) -> list[dict[str, Any]]:
    out = Check.listof(Check.mapping)(v, key)
    if any(set(d) != {"penalty_norm", "beta"} or d["penalty_norm"] not in ("l2", "rms") for d in out):
        raise ValueError(f"each of {key} is a dict of penalty_norm ('l2' or 'rms') and beta, got {v!r}")
    return [{"penalty_norm": d["penalty_norm"], "beta": float(Check.number(d["beta"], key))} for d in out]


class Attacks(Experiment):
    name = "attacks"
    key, columns = ("model", "image", "attack"), COLUMNS
    base = {"data": "imagenet_sample", "photos": None, "n_images": 120, "variants": _SWEEP,
            "models": ["efficientnet_lite0", "efficientnet_lite1"], "eps": 16 / 255, "alpha": 1 / 255,
            "max_iter": 300, "confidence": 0.9999, "step": "sign", "cameras_sizes": list(range(224, 1000, 100)),
            "batch_size": 60, "cameras_batch_size": 20, "figure_images": 3}
    profiles = {
        "ci": {"data": "skimage", "photos": ["chelsea", "coffee"], "n_images": 2,
               "models": ["efficientnet_lite0"], "variants": _SWEEP[3:], "max_iter": 30,
               "cameras_sizes": [224, 324], "batch_size": 2, "cameras_batch_size": 2, "figure_images": 1},
        # Lite0 and Lite1 are complete (120 images, GPU run). The Lite2 run stopped at 120 plain
        # and 60 focused attacks per variant; its rows stay in attacks.csv and a GPU finishes
        # them with --set 'models=["efficientnet_lite2"]' (hours on a 2-core CPU).
        "offline": {},
        "paper": {"data": "imagenet_val", "n_images": 1000, "models": ["resnet50"], "batch_size": 100,
                  "cameras_batch_size": 25}}
    schema = {
        "data": Check.choice("skimage", "imagenet_sample", "imagenet_val"),
        "photos": lambda v, k: None if v is None else Check.listof(Check.text)(v, k),
        "models": Check.listof(Check.model), "variants": _variants, "eps": Check.number, "alpha": Check.number,
        "confidence": Check.fraction, "step": Check.choice("sign", "l2"), "figure_images": Check.natural,
        "cameras_sizes": Check.listof(Check.size), **{k: Check.positive for k in ("n_images", "max_iter", "batch_size", "cameras_batch_size")}}
    identity = ("data", "eps", "alpha", "max_iter", "confidence", "step", "cameras_sizes")

    def identity_from_meta(self, meta: Mapping[str, Any], file: str) -> dict[str, Any]:
        s = dict(meta["settings"])  # written before the engine: "images" named the data
        return self.identity_of({"data": s.pop("images", None), **s}, file)

    def units(self, s: Mapping[str, Any]) -> list[Unit]:
        """The figure images of the first model (also if only their arrays are missing), then batches."""
        its, n = items(s), s["batch_size"]
        out = [Unit("attacks.csv", _keys(s, s["models"][0], its[: s["figure_images"]]), s["models"][0],
                    ("figure", its[: s["figure_images"]]))] if s["figure_images"] else []
        return out + [Unit("attacks.csv", _keys(s, m, its[i : i + n]), m, ("rows", its[i : i + n]))
                      for m in s["models"] for i in range(0, len(its), n)]

    def pending(self, s: Mapping[str, Any], folder: Path, units: Sequence[Unit]) -> list[Unit]:
        todo = {id(u) for u in super().pending(s, folder, units)}
        return [u for u in units if id(u) in todo or u.data[0] == "figure"
                and not MapStore(folder).path(f"fig6_{u.model}").exists()]

    def compute(self, ctx: Context, unit: Unit):
        """Target, ``Psi`` and the missing attacks of the images (all of them for the figure)."""
        from .. import attacks as lib

        s, lm = ctx.settings, ctx.model(unit.model)
        figure = unit.data[0] == "figure" and not MapStore(ctx.folder).path(f"fig6_{lm.name}").exists()
        variants = [None, *s["variants"]]

        def todo(it, a) -> bool:
            return figure or not ctx.done(unit.file, (lm.name, it.name, attack_name(a)))

        batch = [it for it in unit.data[1] if any(todo(it, a) for a in variants)]
        if not batch:  # done meanwhile (by the figure unit)
            return
        x = torch.stack([lm.denormalize(lm.preprocess(it.source)) for it in batch]).to(lm.device)
        target = lib.least_likely_labels(lib.as_pixel_model(lm)[0], x)
        psi = lib.cameras_saliency(lm, x, layer=lm.layer, sizes=tuple(s["cameras_sizes"]),
                                   batch_size=s["cameras_batch_size"], progress=False)
        kept: dict[str, Any] = {}
        for a in variants:
            sel = [i for i, it in enumerate(batch) if todo(it, a)]
            if not sel:
                continue
            kw = {} if a is None else dict(saliency=psi[sel], beta=a["beta"], penalty_norm=a["penalty_norm"])
            with ctx.timer() as t:
                r = lib.pgd_attack(lm, x[sel], target=target[sel], eps=s["eps"], alpha=s["alpha"], step=s["step"],
                                   max_iter=s["max_iter"], confidence=s["confidence"], stop_early=True, **kw)
            kept[attack_name(a)] = r
            for j, i in enumerate(sel):
                yield _row(s, lm.name, batch[i], a, r, j, float(psi[i].mean()), round(t["seconds"] / len(sel), 4))
        if figure:
            _save_figure(ctx.folder, lm.name, s, batch, x, psi, target, kept)


def _keys(s: Mapping[str, Any], model: str, its: Sequence[Any]) -> list[tuple]:
    return [(model, it.name, attack_name(a)) for it in its for a in [None, *s["variants"]]]


_OUTCOME = {"clean_prediction": int, "target": int, "prediction": int, "confidence": float, "success": bool,
            "l2": float, "linf": float, "iterations": int}


def _row(s, model: str, it, a, r, j: int, psi_mean: float, seconds: float) -> dict[str, Any]:
    return {"model": model, "image": it.name, "attack": attack_name(a), "label": it.label,
            "penalty_norm": "none" if a is None else a["penalty_norm"], "beta": 0.0 if a is None else a["beta"],
            "step": s["step"], "eps": s["eps"], "alpha": s["alpha"], "max_iter": s["max_iter"],
            "confidence_target": s["confidence"], **{c: f(getattr(r, c)[j]) for c, f in _OUTCOME.items()},
            "psi_mean": psi_mean, "seconds": seconds}


_INFO = ("confidence", "success", "l2", "prediction")  # per attack and image in the figure file


def _save_figure(folder: Path, model: str, s, batch, x, psi, target, results: Mapping[str, Any]) -> None:
    arrays = {"x": x.cpu().numpy().astype(np.float32), "psi": psi.cpu().numpy().astype(np.float32),
              "ids": np.array([it.name for it in batch]), "labels": np.array([it.label for it in batch]),
              "target": target.cpu().numpy(), "attacks": np.array(list(results)),
              "settings": np.array(json.dumps(s, sort_keys=True))}
    for i, r in enumerate(results.values()):
        arrays[f"delta_{i}"] = r.delta.numpy().astype(np.float16)
        arrays[f"info_{i}"] = torch.stack([getattr(r, f).double() for f in _INFO], 1).numpy()
    MapStore(folder).write((f"fig6_{model}",), arrays)


def attack_name(variant: Mapping[str, Any] | None) -> str:
    """``"plain"`` or ``"focused/<penalty_norm>/beta=<beta>"`` (the ``attack`` key column)."""
    return "plain" if variant is None else f"focused/{variant['penalty_norm']}/beta={float(variant['beta']):g}"


EXPERIMENT = Attacks()
PROFILES = EXPERIMENT.PROFILES
settings = EXPERIMENT.settings
run = EXPERIMENT.run


def items(s: Mapping[str, Any]):
    """The images of the settings, spread evenly over the set (:func:`cameras.data.image_items`)."""
    from ..data import image_items

    return image_items(s["data"], s.get("data_root"), n=s["n_images"], photos=s.get("photos"))


# -- analysis ----------------------------------------------------------------------------
def paired(df):
    """One row per (model, focused attack, image): the plain and focused outcomes side by side."""
    import pandas as pd

    cols = ["success", "l2", "linf", "iterations", "confidence", "target"]
    plain = df[df["attack"] == "plain"].set_index(["model", "image"])[cols].add_prefix("plain_")
    foc = df[df["attack"] != "plain"]
    if foc.empty or plain.empty:
        return pd.DataFrame()
    foc = foc.set_index(["model", "image"])[["attack", "penalty_norm", "beta", *cols]]
    out = foc.rename(columns={c: f"focused_{c}" for c in cols}).join(plain, how="inner").reset_index()
    for c in ("plain_success", "focused_success"):
        out[c] = out[c].astype(str).str.lower().isin(["true", "1", "1.0"])
    if (out["plain_target"] != out["focused_target"]).any():
        raise ValueError("plain and focused attacks of an image have different targets: rows are not paired")
    return out


def summary(df):
    """Per model and focused attack: success rates and the paired norm change (over the images
    where both attacks reached the target, :func:`cameras.attacks.summarize_comparison`);
    ``l2_change_pct < 0``: the focused perturbation is smaller."""
    import pandas as pd

    from ..attacks import summarize_comparison
    from ..models import get_spec

    p = paired(df)
    if p.empty:
        return pd.DataFrame()
    rows = []
    for (model, attack), g in p.groupby(["model", "attack"], sort=False):
        norm, beta = g["penalty_norm"].iloc[0], float(g["beta"].iloc[0])
        rows.append({"model": model, "attack": attack, "penalty_norm": norm, "beta": beta,  # per entry: / sqrt(CHW)
                     "beta_literal": beta if norm == "l2" else beta / math.sqrt(3 * get_spec(model).input_size ** 2)}
                    | summarize_comparison(g))
    return pd.DataFrame(rows).sort_values(["model", "penalty_norm", "beta"], key=lambda c: c.map(
        {"l2": 0, "rms": 1}).fillna(2) if c.name == "penalty_norm" else c).reset_index(drop=True)


# -- Fig. 6 analogue and the beta sweep ----------------------------------------------------
def fig6_data(profile: str | Mapping[str, Any] = "offline", results=None, device: str = "auto",
              **overrides: Any) -> dict[str, Any]:
    """The Fig. 6 arrays of the first model and ``figure_images`` images (computed by :func:`run`
    if missing): ``x``, ``psi``, ``ids``, ``labels``, ``target``, ``attacks`` and per attack
    ``delta`` and ``info`` (confidence, success, l2, prediction per image)."""
    s = settings(profile, **overrides)
    model, store = s["models"][0], MapStore(EXPERIMENT.folder(s, results))
    if not store.path(f"fig6_{model}").exists():
        run(s, results=results, device=device, progress=False)
    d = store.read(f"fig6_{model}")
    names = [str(a) for a in d["attacks"]]
    return {"model": model, "ids": [str(i) for i in d["ids"]], "attacks": names,
            **{k: d[k] for k in ("x", "psi", "labels", "target")}, "settings": json.loads(str(d["settings"])),
            "delta": {a: d[f"delta_{i}"].astype(np.float32) for i, a in enumerate(names)},
            "info": {a: d[f"info_{i}"] for i, a in enumerate(names)}}


def _attack_label(a: str) -> str:
    return "plain PGD" if a == "plain" else a.replace("focused/", "focused ").replace("/beta=", ", β=")


def plot_fig6(data: Mapping[str, Any], attacks: Sequence[str] | None = None,
              adversarial: Sequence[str] | None = None, magnify: float | None = None):
    """Fig. 6 analogue, per image: the image (and target class), ``Psi``, the perturbations of
    ``attacks`` ×``magnify`` (default ``0.5 / eps``: the budget spans the grey range) with l2, target
    confidence and success, the adversarial images of ``adversarial`` (default: ``attacks``)."""
    from ..data import imagenet_classes
    from ..plots import Panel, map_grid, model_label

    attacks = list(attacks or data["attacks"])
    adv_cols = list(adversarial) if adversarial is not None else attacks
    unknown = [a for a in attacks + adv_cols if a not in data["attacks"]]
    if unknown:
        raise ValueError(f"no figure data for {unknown}; available: {data['attacks']}")
    scale = magnify if magnify is not None else 0.5 / float(data["settings"]["eps"])
    classes = imagenet_classes()
    rows = []
    for r in range(len(data["ids"])):
        img = data["x"][r].transpose(1, 2, 0)
        row = [Panel(image=img, title="clean image", note=f"target: {classes[int(data['target'][r])][:22]}"),
               Panel(map=data["psi"][r], image=img, title="CAMERAS map Ψ")]
        for a in attacks:
            conf, ok, l2, _ = data["info"][a][r]
            delta = np.clip(0.5 + data["delta"][a][r].transpose(1, 2, 0) * scale, 0, 1)
            row.append(Panel(image=delta, title=_attack_label(a), note=f"ℓ2 {l2:.2f}  p {conf:.4f} {'✓' if ok else '✗'}"))
        for a in adv_cols:
            adv = np.clip(img + data["delta"][a][r].transpose(1, 2, 0), 0, 1)
            pred = classes[int(data["info"][a][r][3])][:22]
            row.append(Panel(image=adv, title=f"adv. ({_attack_label(a).removeprefix('focused ')})",
                             note=f"predicted: {pred}"))
        rows.append(row)
    return map_grid(rows, row_titles=data["ids"], colorbar="Ψ (CAMERAS map)",
                    title=f"{model_label(data['model'])}: perturbations ×{scale:.1f} (grey = 0)")


def plot_sweep(summ):
    """Focused success rate and paired l2 change against beta (Eq. 4's units, log scale), per
    model: literal variants as dots, a per-entry variant as an open square at the literal beta
    it equals; dotted: plain PGD's success rate; dashed: the paper's reported -56.5 %."""
    from ..plots import chart, legend_below, model_label

    fig, axes = chart(2, height_px=300)
    summ = summ.assign(success_pct=100 * summ["focused_success_rate"])
    for c, (model, g) in enumerate(summ.groupby("model", sort=False)):
        for ax, col in zip(axes, ("success_pct", "l2_change_pct"), strict=True):
            lit = g.sort_values("beta_literal")
            ax.plot(lit["beta_literal"], lit[col], "-", color=f"C{c}", label=model_label(model))
            for norm, mk, lab in (("l2", "o", "Eq. 4 as written"), ("rms", "s", "per-entry norm, β=50 (ours)")):
                h = g[g["penalty_norm"] == norm]
                ax.plot(h["beta_literal"], h[col], mk, color=f"C{c}", ms=8 if norm == "rms" else 5, ls="none",
                        mfc="none" if norm == "rms" else f"C{c}", label=None if c else lab)
        axes[0].axhline(100 * g["plain_success_rate"].iloc[0], color=f"C{c}", ls=":", lw=1)
    axes[1].axhline(0, color="k", lw=0.5)
    axes[1].axhline(PAPER_RESULT["l2_change_pct"], color="k", ls="--", lw=1, label="paper (reported), ResNet-50")
    for ax in axes:
        ax.set(xscale="log", xlabel="β (norm in pixel units, Eq. 4 as written)")
    axes[0].set_ylabel("focused success (%)\n(dotted: plain PGD)")
    axes[1].set_ylabel("paired l2 change vs plain (%)")
    legend_below(fig, axes=[axes[1]], ncol=3)
    return fig

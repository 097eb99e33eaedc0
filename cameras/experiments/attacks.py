"""Sec. 6 / Fig. 6 of the paper: plain PGD against the CAMERAS-focused PGD of Eq. 4,
``min_p CE(f(I + p), l_ll) + beta * ||p ⊙ (1 - Psi)||_2`` (beta = 50, least-likely label at 99.99 %;
paper: 56.5 % less norm than plain PGD on ResNet-50, ImageNet val; Fig. 6 at l-inf 12/255).

Per model and image (:mod:`cameras.attacks`): plain sign-gradient PGD and one focused PGD per
*variant* ``(penalty_norm, beta)`` with the same target, start, budget and stopping rule (``("l2",
50)``: Eq. 4 as written; ``("rms", 50)``: our per-entry reading); ``Psi`` with Algorithm 1's keep
rule (``sizes_kept``). One file per l-inf budget, ``attacks_eps<255 eps>.csv``: ``eps`` for the
sweep, ``fig6_eps`` for the Fig. 6 analogue (first model, ``fig6_images`` of the sweep's images;
arrays of the first ``figure_images`` in ``fig6_<model>_eps<..>.npz``). Headless::

    python -m cameras.experiments attacks --profile offline --device cuda
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..attacks import pair_attacks as paired
from ..attacks import summarize_attacks as summary
from ..data import spread_indices
from ..engine import Check, Context, Experiment, MapStore, Unit
from ..paper import STATED

__all__ = ["EXPERIMENT", "PROFILES", "COLUMNS", "settings", "run", "items", "attack_name", "file_name",
           "paired", "summary", "coverage", "verdict_numbers", "attack_label", "fig6_data", "plot_fig6", "plot_sweep"]

#: beta sweep: Eq. 4 as written ("l2", pixel units) at several beta, and the per-entry reading
_SWEEP = [{"penalty_norm": n, "beta": b} for n, b in (("l2", 0.05), ("l2", 0.5), ("l2", 5.0), ("l2", 50.0),
                                                       ("rms", 50.0))]
COLUMNS = ("model", "image", "attack", "label", "penalty_norm", "beta", "step", "eps", "alpha",
           "max_iter", "confidence_target", "clean_prediction", "target", "prediction", "confidence",
           "success", "l2", "linf", "iterations", "psi_mean", "seconds", "sizes_kept")


def _variants(v: Any, key: str) -> list[dict[str, Any]]:
    out = Check.listof(Check.mapping)(v, key)
    if any(set(d) != {"penalty_norm", "beta"} or d["penalty_norm"] not in ("l2", "rms") for d in out):
        raise ValueError(f"each of {key} is a dict of penalty_norm ('l2' or 'rms') and beta, got {v!r}")
    return [{"penalty_norm": d["penalty_norm"], "beta": float(Check.number(d["beta"], key))} for d in out]


def file_name(eps: float, kind: str = "attacks", ext: str = ".csv") -> str:
    """The results file of an l-inf budget: ``attacks_eps16.csv`` for 16/255."""
    return f"{kind}_eps{round(eps * 255, 3):g}{ext}"


class Attacks(Experiment):
    name = "attacks"
    key, columns = ("model", "image", "attack"), COLUMNS
    base = {"data": "imagenet_sample", "photos": None, "n_images": 120, "variants": _SWEEP,
            "models": ["efficientnet_lite0", "efficientnet_lite1"], "eps": 16 / 255, "alpha": 1 / 255,
            "max_iter": 300, "confidence": 0.9999, "step": "sign", "cameras_sizes": list(range(224, 1000, 100)),
            "batch_size": 60, "cameras_batch_size": 20, "fig6_eps": STATED["fig6_eps"]["value"],
            "fig6_images": 12, "figure_images": 3, "budgets": ["sweep", "fig6"]}
    profiles = {
        "ci": {"data": "skimage", "photos": ["chelsea", "coffee"], "n_images": 2, "fig6_images": 1,
               "models": ["efficientnet_lite0"], "variants": _SWEEP[3:], "max_iter": 30,
               "cameras_sizes": [224, 324], "batch_size": 2, "cameras_batch_size": 2, "figure_images": 1},
        "offline": {},  # the stored 16/255 rows: a GPU run (rows whose Psi changed since: not run yet)
        "paper": {"data": "imagenet_val", "n_images": 1000, "models": ["resnet50"], "batch_size": 100,
                  "cameras_batch_size": 25, "fig6_images": 100}}
    schema = {
        "data": Check.choice("skimage", "imagenet_sample", "imagenet_val"),
        "photos": lambda v, k: None if v is None else Check.listof(Check.text)(v, k),
        "models": Check.listof(Check.model), "variants": _variants, "eps": Check.number, "alpha": Check.number,
        "fig6_eps": Check.number, "confidence": Check.fraction, "step": Check.choice("sign", "l2"),
        "figure_images": Check.natural, "fig6_images": Check.natural, "cameras_sizes": Check.listof(Check.size),
        "budgets": Check.listof(Check.choice("sweep", "fig6")),
        **{k: Check.positive for k in ("n_images", "max_iter", "batch_size", "cameras_batch_size")}}

    def identity_of(self, s: Mapping[str, Any], file: str) -> dict[str, Any]:
        """The file's budget, the PGD settings and CAMERAS' full settings (sizes, keep rule, layer)."""
        from ..methods import default_layers, method_settings

        eps = next(e for e in (s["eps"], s["fig6_eps"]) if file_name(e) == file)
        layers = {default_layers(m)["cameras"] for m in s["models"]}
        cameras = method_settings("cameras", sizes=s["cameras_sizes"], keep="prediction")
        return {**{k: s[k] for k in ("data", "alpha", "max_iter", "confidence", "step")}, "eps": eps,
                "methods": {"cameras": {**cameras, "layer": layers.pop() if len(layers) == 1 else sorted(layers)}}}

    def units(self, s: Mapping[str, Any]) -> list[Unit]:
        """The figure images of the first model at ``fig6_eps`` (also if only their arrays are
        missing), then batches per budget and model."""
        model, n = s["models"][0], s["batch_size"]
        out = [Unit(file_name(s["fig6_eps"]), _keys(s, model, its), model, ("figure", s["fig6_eps"], its))
               for its in [_fig6_items(s)[: s["figure_images"]]] if its and "fig6" in s["budgets"]]
        for eps, models, its in _budgets(s):
            out += [Unit(file_name(eps), _keys(s, m, its[i : i + n]), m, ("rows", eps, its[i : i + n]))
                    for m in models for i in range(0, len(its), n)]
        return out

    def pending(self, s: Mapping[str, Any], folder: Path, units: Sequence[Unit]) -> list[Unit]:
        todo = {id(u) for u in super().pending(s, folder, units)}
        return [u for u in units if id(u) in todo or u.data[0] == "figure" and not _fig6_path(folder, s, u.model).exists()]

    def compute(self, ctx: Context, unit: Unit):
        """Target, ``Psi`` and the missing attacks of the images (all of them for the figure)."""
        from .. import attacks as lib

        s, lm, (kind, eps, its) = ctx.settings, ctx.model(unit.model), unit.data
        figure = kind == "figure" and not _fig6_path(ctx.folder, s, lm.name).exists()
        variants = [None, *s["variants"]]

        def todo(it, a) -> bool:
            return figure or not ctx.done(unit.file, (lm.name, it.name, attack_name(a)))

        batch = [it for it in its if any(todo(it, a) for a in variants)]
        if not batch:  # done meanwhile (by the figure unit)
            return
        x = torch.stack([lm.denormalize(lm.preprocess(it.source)) for it in batch]).to(lm.device)
        target = lib.least_likely_labels(lib.as_pixel_model(lm)[0], x)
        psi, kept = lib.cameras_saliency(lm, x, layer=lm.layer, sizes=tuple(s["cameras_sizes"]), keep="prediction",
                                         batch_size=s["cameras_batch_size"], progress=False, with_kept=True)
        results: dict[str, Any] = {}
        for a in variants:
            sel = [i for i, it in enumerate(batch) if todo(it, a)]
            if not sel:
                continue
            kw = {} if a is None else dict(saliency=psi[sel], beta=a["beta"], penalty_norm=a["penalty_norm"])
            with ctx.timer() as t:
                r = lib.pgd_attack(lm, x[sel], target=target[sel], eps=eps, alpha=s["alpha"], step=s["step"],
                                   max_iter=s["max_iter"], confidence=s["confidence"], stop_early=True, **kw)
            results[attack_name(a)] = r
            for j, i in enumerate(sel):
                yield _row(s, eps, lm.name, batch[i], a, r, j, float(psi[i].mean()), int(kept[i]),
                           round(t["seconds"] / len(sel), 4))
        if figure:
            _save_figure(_fig6_path(ctx.folder, s, lm.name), s, batch, x, psi, target, results)


def _budgets(s: Mapping[str, Any], every: bool = False) -> list[tuple[float, list[str], list[Any]]]:
    """``(eps, models, images)``: the sweep, and the Fig. 6 budget on the first model (those of
    ``budgets``, or ``every`` one)."""
    out = [(s["eps"], s["models"], items(s))] if every or "sweep" in s["budgets"] else []
    if s["fig6_eps"] != s["eps"] and s["fig6_images"] and (every or "fig6" in s["budgets"]):
        out.append((s["fig6_eps"], s["models"][:1], _fig6_items(s)))
    return out


def _fig6_items(s: Mapping[str, Any]) -> list[Any]:
    """``fig6_images`` of the sweep's images, spread evenly (the first of them are drawn)."""
    its = items(s)
    return [its[i] for i in spread_indices(len(its), s["fig6_images"])] if s["fig6_images"] else []


def _fig6_path(folder: Path, s: Mapping[str, Any], model: str) -> Path:
    return MapStore(folder).path(file_name(s["fig6_eps"], f"fig6_{model}", ""))


def _keys(s: Mapping[str, Any], model: str, its: Sequence[Any]) -> list[tuple]:
    return [(model, it.name, attack_name(a)) for it in its for a in [None, *s["variants"]]]


_OUTCOME = {"clean_prediction": int, "target": int, "prediction": int, "confidence": float, "success": bool,
            "l2": float, "linf": float, "iterations": int}
_INFO = ("confidence", "success", "l2", "prediction")  # per attack and image in the figure file


def _row(s, eps: float, model: str, it, a, r, j: int, psi_mean: float, kept: int, seconds: float) -> dict[str, Any]:
    return {"model": model, "image": it.name, "attack": attack_name(a), "label": it.label,
            "penalty_norm": "none" if a is None else a["penalty_norm"], "beta": 0.0 if a is None else a["beta"],
            "step": s["step"], "eps": eps, "alpha": s["alpha"], "max_iter": s["max_iter"],
            "confidence_target": s["confidence"], **{c: f(getattr(r, c)[j]) for c, f in _OUTCOME.items()},
            "psi_mean": psi_mean, "seconds": seconds, "sizes_kept": kept}


def _save_figure(path: Path, s, batch, x, psi, target, results: Mapping[str, Any]) -> None:
    arrays = {"x": x.cpu().numpy().astype(np.float32), "psi": psi.cpu().numpy().astype(np.float32),
              "ids": np.array([it.name for it in batch]), "labels": np.array([it.label for it in batch]),
              "target": target.cpu().numpy(), "attacks": np.array(list(results)),
              "settings": np.array(json.dumps(s, sort_keys=True))}
    for i, r in enumerate(results.values()):
        arrays[f"delta_{i}"] = r.delta.numpy().astype(np.float16)
        arrays[f"info_{i}"] = torch.stack([getattr(r, f).double() for f in _INFO], 1).numpy()
    MapStore(path.parent).write((path.stem,), arrays)


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
def coverage(s: Mapping[str, Any], results=None):
    """Per budget and model: the images, and how many have every attack stored (``complete``)."""
    import pandas as pd

    df = EXPERIMENT.rows(s, results)
    out = []
    for eps, models, its in _budgets(s, every=True):
        d = df[np.isclose(df["eps"].astype(float), eps)] if len(df) else df
        for m in models:
            n = d[d["model"] == m].groupby("image").size() if len(d) else pd.Series(dtype=int)
            done = sum(int(n.get(it.name, 0)) == 1 + len(s["variants"]) for it in its)
            out.append({"eps": eps, "model": m, "images": len(its), "complete": done, "not_run": len(its) - done})
    return pd.DataFrame(out)


def verdict_numbers(results=None) -> dict[str, Any]:
    """The chapter's numbers for :mod:`cameras.verdict` from the stored offline results (nothing is
    computed): per budget, model and focused attack the success rates and the paired l2 change."""
    s = settings("offline")
    summ = summary(EXPERIMENT.rows(s, results))
    rows = [{"model": r["model"], "attack": r["attack"], "units": r["penalty_norm"], "beta": r["beta"],
             "eps": float(r["eps"]), "plain_success": r["plain_success_rate"],
             "focused_success": r["focused_success_rate"], "n_images": int(r["n_images"]),
             "n_common": int(r["n_common"]), "l2_change_pct": None if r["n_common"] == 0 else r["l2_change_pct"]}
            for _, r in summ.iterrows()]
    return {"paper_l2_change_pct": -STATED["norm_reduction_pct"]["value"], "fig6_eps": s["fig6_eps"],
            "eps": s["eps"], "rows": rows}


# -- Fig. 6 analogue and the beta sweep ----------------------------------------------------
def fig6_data(profile: str | Mapping[str, Any] = "offline", results=None, **overrides: Any) -> dict[str, Any]:
    """The stored Fig. 6 arrays of the first model at ``fig6_eps`` (``FileNotFoundError`` if not
    computed): ``x``, ``psi``, ``ids``, ``labels``, ``target``, ``attacks``, per attack ``delta`` and
    ``info`` (confidence, success, l2, prediction per image), ``eps``."""
    s = settings(profile, **overrides)
    model, path = s["models"][0], _fig6_path(EXPERIMENT.folder(s, results), s, s["models"][0])
    d = MapStore(path.parent).read(path.stem)
    if not d:
        raise FileNotFoundError(f"no Fig. 6 arrays of {model} at eps={s['fig6_eps'] * 255:g}/255: run the attacks first")
    names = [str(a) for a in d["attacks"]]
    return {"model": model, "ids": [str(i) for i in d["ids"]], "attacks": names, "eps": s["fig6_eps"],
            **{k: d[k] for k in ("x", "psi", "labels", "target")},
            "delta": {a: d[f"delta_{i}"].astype(np.float32) for i, a in enumerate(names)},
            "info": {a: d[f"info_{i}"] for i, a in enumerate(names)}}


def attack_label(a: str) -> str:
    """``"plain PGD"``, ``"Eq. 4, β=50"`` (pixel units) or ``"per entry, β=50"`` (our reading)."""
    if a == "plain":
        return "plain PGD"
    norm, beta = a.split("/")[1:]
    return f"{'Eq. 4' if norm == 'l2' else 'per entry'}, β={beta.split('=')[1]}"


def plot_fig6(data: Mapping[str, Any], attacks: Sequence[str], adversarial: Sequence[str], image: int = 0):
    """Fig. 6 analogue for one image: the image (target class), ``Psi``, the perturbations of
    ``attacks`` magnified so that the budget spans the grey range (ℓ2, target probability, ✓ if
    the target was reached) and the adversarial images of ``adversarial``."""
    from ..data import imagenet_classes
    from ..plots import Panel, map_grid, model_label

    classes, scale, r = imagenet_classes(), 0.5 / float(data["eps"]), image
    img = data["x"][r].transpose(1, 2, 0)
    row = [Panel(image=img, title="clean image", note=f"target: {classes[int(data['target'][r])][:20]}"),
           Panel(map=data["psi"][r], image=img, title="CAMERAS map Ψ")]
    for a in attacks:
        conf, ok, l2, _ = data["info"][a][r]
        row.append(Panel(image=np.clip(0.5 + data["delta"][a][r].transpose(1, 2, 0) * scale, 0, 1),
                         title=attack_label(a), note=f"ℓ2 {l2:.2f}, p {conf:.4f} {'✓' if ok else '✗'}"))
    for a in adversarial:
        pred = classes[int(data["info"][a][r][3])][:20]
        row.append(Panel(image=np.clip(img + data["delta"][a][r].transpose(1, 2, 0), 0, 1),
                         title=f"adversarial\n({attack_label(a)})", note=f"predicted: {pred}"))
    return map_grid([row], colorbar="Ψ (CAMERAS map)", title=f"{model_label(data['model'])}, image {data['ids'][r]}: "
                    f"perturbations ×{scale:.1f} (grey = 0), ℓ∞ ≤ {data['eps'] * 255:g}/255")


def plot_sweep(summ):
    """Focused success rate and paired l2 change against beta in Eq. 4's pixel units (log scale)
    per model and reading (the per-entry point at the literal beta it equals); dashed: the
    paper's reported -56.5 % (ResNet-50)."""
    import pandas as pd

    from ..plots import line_chart, model_label

    reading = summ["penalty_norm"].map({"l2": "Eq. 4 as written", "rms": "per entry (ours)"})
    hue = [f"{model_label(m)}, {r}" for m, r in zip(summ["model"], reading, strict=True)]
    tidy = pd.concat([summ.assign(series=hue, quantity=q, value=v) for q, v in (
        ("focused attack reached the target (%)", 100 * summ["focused_success_rate"]),
        ("paired ℓ2 change vs plain PGD (%)", summ["l2_change_pct"]))])
    fig = line_chart(tidy, x="beta_literal", y="value", hue="series", panel="quantity", logx=True, sharey=False,
                     xlabel="β (norm in pixel units)", ylabel="%", height_px=280)
    paper = -STATED["norm_reduction_pct"]["value"]
    fig.axes[1].axhline(paper, color="k", ls="--", lw=1)
    fig.axes[1].annotate(f"paper (reported), ResNet-50: {paper:g} %", (0.02, paper), xytext=(0, 3),
                         textcoords="offset points", xycoords=("axes fraction", "data"), fontsize=8)
    return fig

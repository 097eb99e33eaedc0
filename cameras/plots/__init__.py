"""One plotting layer for the book: map grids, charts and tables sized for the page.

Everything returns a :class:`matplotlib.figure.Figure` built without ``pyplot`` (no global
figure registry; a notebook displays the returned object once), or a table object, and is
sized for the book's content column (:data:`PAGE_PX` pixels at :data:`DPI`), so that what is
drawn is legible on the page:

* :func:`map_grid` is *the* overlay grid: rows of panels (an image, a map, or a map over its
  image), wrapped to at most :data:`MAX_COLS` panels per line so that a map is at least
  :data:`MIN_PANEL_PX` pixels wide on the page, with a shared colorbar, row and column
  labels, and "not run" panels for what was not computed. :func:`overlay_grid` builds it from
  images and ``{column: maps}``.
* :func:`bar_chart`, :func:`line_chart`, :func:`box_chart`, :func:`scatter_chart` draw a
  tidy DataFrame (one row per value: ``x``, ``y``, optional ``hue``, ``panel``, error bars)
  with labels and headings from the registries; :func:`chart` makes a page-wide figure of
  ``n`` panels for anything else, with :func:`legend_below`, :func:`bar_groups`, :func:`style`.
* :func:`table` formats a DataFrame for the page (human headings from the metric and method
  metadata, no index, "not run" for missing values, horizontal scrolling when wide).

Labels come from the registries: :func:`method_label` (``cameras.methods``),
:func:`model_label` (``cameras.models``), :func:`heading` (``cameras.metrics``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..viz import as_map, as_rgb_uint8, overlay

__all__ = [
    "PAGE_PX",
    "glue_text",
    "DPI",
    "PAGE_IN",
    "MIN_PANEL_PX",
    "MAX_COLS",
    "Panel",
    "page_figure",
    "map_grid",
    "overlay_grid",
    "capture_walk",
    "fusion_check",
    "stored_map",
    "chart",
    "style",
    "legend_below",
    "bar_groups",
    "bar_chart",
    "line_chart",
    "box_chart",
    "scatter_chart",
    "mean_sem",
    "display_label",
    "method_label",
    "model_label",
    "class_label",
    "heading",
    "table",
]

#: width of the book's content column in CSS pixels, and the figures' resolution
PAGE_PX = 730
DPI = 100
PAGE_IN = PAGE_PX / DPI
#: the smallest width a saliency map gets on the page
MIN_PANEL_PX = 150
#: panels per line in a map grid (with room for row labels and a colorbar)
MAX_COLS = int((PAGE_PX - 90) // MIN_PANEL_PX)
FONT = {"title": 10, "label": 9, "small": 8}


@functools.lru_cache(maxsize=1)
def _page_figure_class():
    from matplotlib.figure import Figure

    class PageFigure(Figure):
        """A :class:`~matplotlib.figure.Figure` whose panel titles, axis labels and tick labels
        are drawn at the page's font sizes (:data:`FONT`), whatever set them."""

        def draw(self, renderer):
            for ax in self.axes:
                ax.title.set_fontsize(min(ax.title.get_fontsize(), FONT["title"]))
                ax.xaxis.label.set_fontsize(FONT["label"])
                ax.yaxis.label.set_fontsize(FONT["label"])
                ax.tick_params(labelsize=FONT["small"])
            return super().draw(renderer)

    return PageFigure


def page_figure(**kwargs):
    """A page figure (see :func:`chart` / :func:`map_grid`); ``kwargs`` go to ``Figure``."""
    kwargs.setdefault("dpi", DPI)
    kwargs.setdefault("layout", "constrained")
    return _page_figure_class()(**kwargs)


def method_label(name: str, short: bool = False) -> str:
    from ..methods import label

    return label(name, short=short)


def model_label(name: str) -> str:
    from ..models import label

    return label(name)


def class_label(c: int, n: int = 18) -> str:
    """The name of ImageNet class ``c``, cut to ``n`` characters with an ellipsis."""
    from ..data import imagenet_classes

    name = imagenet_classes()[int(c)]
    return name if len(name) <= n else name[: n - 1] + "…"


def heading(column: str) -> str:
    """Display heading of a result column: the metric's label with unit and arrow if it is
    a metric, else the column name in words."""
    from ..metrics import metric_info

    info = metric_info(column)
    return info.heading if info is not None else column.replace("_", " ")


# ========================================================================================
# map grids
# ========================================================================================
@dataclass
class Panel:
    """One panel of a :func:`map_grid`: a ``map`` (in [0, 1]) over an ``image``, the map
    alone, or the image alone; neither is a "not run" panel showing ``note``."""

    map: Any = None
    image: Any = None
    title: str = ""
    note: str = ""


def _draw(ax, p: Panel, cmap: str, alpha: float) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    if p.map is None and p.image is None:
        ax.set_box_aspect(1)
        ax.set_facecolor("0.93")
        ax.text(0.5, 0.5, p.note or "not run", ha="center", va="center", wrap=True,
                fontsize=FONT["small"], color="0.35", transform=ax.transAxes)
        for s in ax.spines.values():
            s.set_color("0.8")
    elif p.map is None:
        ax.imshow(as_rgb_uint8(p.image))
    elif p.image is None:
        ax.imshow(as_map(p.map), cmap=cmap, vmin=0.0, vmax=1.0)
    else:
        ax.imshow(overlay(p.image, p.map, alpha=alpha, cmap=cmap))
    if p.title:
        ax.set_title(p.title, fontsize=FONT["label"], pad=3)
    if p.note and (p.map is not None or p.image is not None):
        ax.set_xlabel(p.note, fontsize=FONT["small"], labelpad=2)


def map_grid(
    rows: Sequence[Sequence[Panel]],
    *,
    row_titles: Sequence[str] | None = None,
    max_cols: int = MAX_COLS,
    cmap: str = "jet",
    alpha: float = 0.5,
    colorbar: bool | str = True,
    title: str | None = None,
    panel_px: int | None = None,
):
    """Rows of panels, each row wrapped to ``max_cols`` panels per line, page width.

    ``colorbar``: a shared colorbar for the maps (a string is its label). ``panel_px``: the
    panel width on the page (default: as wide as the page allows, at least
    :data:`MIN_PANEL_PX`).
    """
    from matplotlib import cm, colors

    if not rows or not any(rows):
        raise ValueError("map_grid needs at least one panel")
    if row_titles is not None and len(row_titles) != len(rows):
        raise ValueError(f"{len(row_titles)} row titles for {len(rows)} rows")
    cols = min(max(1, int(max_cols)), max(len(r) for r in rows))
    if all(len(r) <= cols for r in rows):  # no wrapping: column titles on the first row only
        rows = [row if r == 0 else [Panel(p.map, p.image, "", p.note) for p in row]
                for r, row in enumerate(rows)]
    lines = [(r, list(row[i : i + cols])) for r, row in enumerate(rows)
             for i in range(0, max(1, len(row)), cols)]
    label_px, bar_px = (28 if row_titles else 6), (70 if colorbar else 6)
    px = panel_px or min(260, (PAGE_PX - label_px - bar_px) // cols)
    w_in = (label_px + bar_px + cols * px) / DPI
    h_in = (len(lines) * (px + 34) + (30 if title else 0)) / DPI
    fig = page_figure(figsize=(w_in, h_in))
    axes = fig.subplots(len(lines), cols, squeeze=False)
    first_line = {}
    for k, (r, panels) in enumerate(lines):
        first_line.setdefault(r, k)
        for c in range(cols):
            ax = axes[k, c]
            if c < len(panels):
                _draw(ax, panels[c], cmap, alpha)
            else:
                ax.set_axis_off()
        if row_titles is not None and first_line[r] == k:
            axes[k, 0].set_ylabel(row_titles[r], fontsize=FONT["label"])
    if colorbar:
        sm = cm.ScalarMappable(norm=colors.Normalize(0, 1), cmap=cmap)
        cb = fig.colorbar(sm, ax=axes, shrink=min(0.9, 3.0 / len(lines) + 0.3), aspect=25, pad=0.01)
        cb.set_label(colorbar if isinstance(colorbar, str) else "saliency (0 = low, 1 = high)",
                     fontsize=FONT["small"])
        cb.ax.tick_params(labelsize=FONT["small"])
    if title:
        fig.suptitle(title, fontsize=FONT["title"])
    return fig


def overlay_grid(
    images: Sequence[Any],
    maps: Mapping[str, Sequence[Any]],
    *,
    row_titles: Sequence[str] | None = None,
    show_image: bool = True,
    overlay_maps: bool = True,
    notes: Mapping[str, Sequence[str]] | None = None,
    **kwargs: Any,
):
    """:func:`map_grid` of one row per image: the image, then one panel per column of ``maps``
    (``{column title: one map per image}``; ``None`` for "not run"). ``notes``: text under
    panels, ``{column title: one note per image}``."""
    images = list(images)
    for k, v in maps.items():
        if len(v) != len(images):
            raise ValueError(f"maps[{k!r}] must hold one map per image ({len(images)}), got {len(v)}")
    rows = []
    for r, img in enumerate(images):
        row = [Panel(image=img, title="image")] if show_image else []
        for col, ms in maps.items():
            note = (notes or {}).get(col, [""] * len(images))[r]
            m = ms[r]
            row.append(Panel(map=m, image=img if overlay_maps and m is not None else None,
                             title=col, note=note))
        rows.append(row)
    return map_grid(rows, row_titles=row_titles, **kwargs)


def stored_map(a: Any) -> Any:
    """A map as :class:`cameras.engine.MapStore` stores it (uint8) as floats in [0, 1]; other
    maps and ``None`` (not stored) as they are."""
    return a.astype(np.float32) / 255.0 if isinstance(a, np.ndarray) and a.dtype == np.uint8 else a


def _unit(t: Any) -> Any:  # a map normalised to [0, 1] on the CPU
    from ..core import normalize_maps

    return normalize_maps(t.detach().float().cpu()[None])[0]


def capture_walk(lm, cam, cap, b: int = 0, sizes: Sequence[int] | None = None,
                 channels: Sequence[int] = (), title: str | None = None):
    """Algorithm 1 step by step on image ``b`` of a :meth:`cameras.Cameras.capture` with
    ``keep_inputs=True`` (``lm``: its :class:`~cameras.models.LoadedModel`, ``cam``: the
    :class:`~cameras.Cameras`). Columns = sizes; rows: the upsampled input (top-1, kept or not),
    :math:`\\|A_s\\|` and two channels of :math:`A_s` on the layer's grid (the gradient of the
    first in the note; default: :func:`cameras.methods.cam.top_channels`), and the map of that
    size alone on the input grid."""
    from ..methods.cam import top_channels

    if not cap.inputs:
        raise ValueError("capture_walk needs a capture with keep_inputs=True")
    channels = list(channels)[:2] or top_channels(cap, b, 2)
    rows: list[list[Panel]] = [[] for _ in range(3 + len(channels))]
    for v in (cap.sizes if sizes is None else sizes):
        i = cap.index(v)
        x, A, g = cap.inputs[i][b], cap.activations[i][b], cap.gradients[i][b, 0, channels[0]]
        g = g.float()
        kept = "kept" if bool(cap.kept[i, b]) else "dropped"
        rows[0].append(Panel(image=lm.to_image(x), title=f"{v} px",
                             note=f"{lm.classes[int(cap.top1[i, b])][:12]} ({kept})"))
        rows[1].append(Panel(map=_unit(A.norm(dim=0)), note="grid {}x{}".format(*A.shape[-2:])))
        spread = f"G: {float(g.mean()):.2e} ± {float(g.max() - g.min()):.0e}"
        for r, c in enumerate(channels):
            rows[2 + r].append(Panel(map=_unit(A[c]), note="" if r else spread))
        rows[-1].append(Panel(map=cam.fuse(cap, 0, [v], keep="all")[b],
                              image=lm.to_image(cap.inputs[0][b])))
    titles = ["input", "‖A_s‖", *(f"A_s, ch. {c}" for c in channels), "size alone"]
    return map_grid(rows, row_titles=titles, title=title,
                    colorbar="normalised per panel (0 = low, 1 = high)")


def fusion_check(lm, image: Any, manual: Mapping[str, Any], cam_map: Any, channel: int,
                 title: str | None = None):
    """Algorithm 1 by hand against :class:`cameras.Cameras` for one image (``manual``:
    :func:`cameras.reference.manual_fusion`). Top: :math:`\\|\\bar A\\|`, one channel of
    :math:`\\bar A` and of :math:`\\bar G` on the input grid; bottom: the literal map, the
    :class:`cameras.Cameras` map ``cam_map``, their difference."""
    rgb, g = lm.to_image(image), manual["gbar"][channel].float()
    d = (manual["map"] - cam_map).abs().float().cpu()
    rows = [[Panel(map=_unit(manual["abar_norm"]), title="‖Ā‖"),
             Panel(map=_unit(manual["abar"][channel]), title=f"Ā, channel {channel}"),
             Panel(map=_unit(g), title=f"Ḡ, channel {channel}",
                   note=f"{float(g.mean()):.2e} ± {float(g.max() - g.min()):.0e}")],
            [Panel(map=manual["map"], image=rgb, note="ReLU(Σ_k Ā_k Ḡ_k), by hand"),
             Panel(map=cam_map, image=rgb, note="Cameras(...)"),
             Panel(map=d / d.max().clamp_min(1e-30), note=f"|difference| / {float(d.max()):.1e}")]]
    return map_grid(rows, row_titles=["Ā and Ḡ", "maps"], title=title)


# ========================================================================================
# charts
# ========================================================================================
def chart(n: int = 1, ncols: int | None = None, height_px: int = 260, sharey: bool = False,
          width_px: int = PAGE_PX):
    """A page-wide figure of ``n`` chart panels (``ncols`` per line): ``(fig, axes list)``."""

    ncols = ncols or min(n, 3)
    nrows = math.ceil(n / ncols)
    fig = page_figure(figsize=(width_px / DPI, nrows * height_px / DPI))
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=sharey).ravel()
    for ax in axes[n:]:
        ax.set_axis_off()
    for ax in axes[:n]:
        style(ax)
    return fig, list(axes[:n])


def style(ax, grid: str = "y") -> None:
    """The shared look of a chart panel: light grid, readable ticks, no top/right spines."""
    ax.tick_params(labelsize=FONT["small"])
    ax.title.set_fontsize(FONT["label"])
    ax.xaxis.label.set_fontsize(FONT["label"])
    ax.yaxis.label.set_fontsize(FONT["label"])
    if grid:
        ax.grid(axis=grid, alpha=0.3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def legend_below(fig, handles=None, labels=None, ncol: int | None = None, axes=None) -> None:
    """One legend for the whole figure, below the panels."""
    if handles is None:
        ax = axes[0] if axes else fig.axes[0]
        handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=ncol or min(len(handles), 4),
                   fontsize=FONT["small"], frameon=False)


def bar_groups(ax, groups: Sequence[str], series: Mapping[str, Sequence[float]],
               errors: Mapping[str, Any] | None = None, rotate: int = 30) -> None:
    """Grouped bars: one group per entry of ``groups``, one bar per series (with ``errors``:
    symmetric ``(n,)`` or ``(2, n)`` lower/upper error bars)."""
    n = max(1, len(series))
    width = 0.8 / n
    x = np.arange(len(groups))
    for i, (name, vals) in enumerate(series.items()):
        err = None if errors is None else errors.get(name)
        ax.bar(x + (i - (n - 1) / 2) * width, vals, width, yerr=err, capsize=1.5, label=name,
               color=f"C{i}")
    ax.set_xticks(x)
    ax.set_xticklabels(groups, rotation=rotate, ha="right" if rotate else "center",
                       fontsize=FONT["small"])


def display_label(value: Any) -> str:
    """A method or model name as its display label; anything else as it is."""
    from ..methods import _registry
    from ..models import _OTHER_LABELS, MODELS

    v = str(value)
    if v in _registry._REGISTRY:
        return method_label(v, short=True)
    if v in MODELS or v in _OTHER_LABELS:
        return model_label(v)
    return v


def _panels(df, panel: str | None, ncols: int | None, height_px: int, sharey: bool):
    """``(fig, [(ax, rows of that panel), ...])``: one chart panel per value of ``panel``."""
    keys = list(dict.fromkeys(df[panel])) if panel else [None]
    fig, axes = chart(len(keys), ncols=ncols, height_px=height_px, sharey=sharey)
    out = []
    for key, ax in zip(keys, axes, strict=True):
        if key is not None:
            ax.set_title(display_label(key))
        out.append((ax, df if key is None else df[df[panel] == key]))
    return fig, out


def _err(sub, yerr, y):
    """Error bars from a column of half-widths or a ``(lo, hi)`` pair of interval columns."""
    if yerr is None:
        return None
    if isinstance(yerr, str):
        return sub[yerr].to_numpy(dtype=float)
    lo, hi = (sub[c].to_numpy(dtype=float) for c in yerr)
    v = sub[y].to_numpy(dtype=float)
    return np.clip(np.stack([v - lo, hi - v]), 0, None)


def mean_sem(df, by: str, cols: Mapping[str, str], **extra: Any):
    """Tidy means and standard errors (0 for one row) of the columns ``cols`` (``{column:
    label}``) per value of ``by``: columns ``by, metric, value, sem`` and ``extra``, for a
    :func:`line_chart` with ``yerr="sem"``."""
    import pandas as pd

    g = df.groupby(by)
    return pd.concat([pd.DataFrame({by: g[c].mean().index, "metric": label, "value": g[c].mean().values,
                                    "sem": g[c].sem().fillna(0.0).values, **extra}) for c, label in cols.items()])


def bar_chart(df, *, x: str, y: str, hue: str | None = None, panel: str | None = None,
              yerr: str | tuple[str, str] | None = None, ylabel: str | None = None,
              ref: float | None = None, ncols: int | None = None, height_px: int = 280,
              sharey: bool = True):
    """Grouped bars of a tidy DataFrame: groups ``x``, one bar per ``hue`` value, one panel
    per ``panel`` value; ``yerr``: a column of half-widths or ``(lo, hi)`` interval columns;
    ``ref``: a dashed reference line (e.g. chance). Labels from the registries."""
    fig, panels = _panels(df, panel, ncols, height_px, sharey)
    for ax, sub in panels:
        groups = list(dict.fromkeys(sub[x]))
        hues = list(dict.fromkeys(sub[hue])) if hue else [None]
        series, errors = {}, {}
        for h in hues:
            d = sub if h is None else sub[sub[hue] == h]
            d = d.set_index(x).reindex(groups).reset_index()
            name = display_label(h) if h is not None else heading(y)
            series[name] = d[y].to_numpy(dtype=float)
            errors[name] = _err(d, yerr, y)
        bar_groups(ax, [display_label(g) for g in groups], series, errors if yerr else None)
        if ref is not None:
            ax.axhline(ref, color="0.4", ls="--", lw=1)
        ax.set_ylabel(ylabel or heading(y))
    if hue:
        legend_below(fig, ncol=min(6, len(set(df[hue]))))
    return fig


def line_chart(df, *, x: str, y: str, hue: str | None = None, panel: str | None = None,
               yerr: str | tuple[str, str] | None = None, xlabel: str | None = None,
               ylabel: str | None = None, ref: float | None = None, logx: bool = False,
               ncols: int | None = None, height_px: int = 280, sharey: bool = True):
    """Lines (with markers and optional error bands) of a tidy DataFrame, one per ``hue``."""
    fig, panels = _panels(df, panel, ncols, height_px, sharey)
    for ax, sub in panels:
        for i, h in enumerate(dict.fromkeys(sub[hue]) if hue else [None]):
            d = (sub if h is None else sub[sub[hue] == h]).sort_values(x)
            xs, ys = d[x].to_numpy(dtype=float), d[y].to_numpy(dtype=float)
            ax.plot(xs, ys, "o-", ms=3, color=f"C{i}", label=display_label(h) if h is not None else None)
            e = _err(d, yerr, y)
            if e is not None:
                lo, hi = (ys - e, ys + e) if e.ndim == 1 else (ys - e[0], ys + e[1])
                ax.fill_between(xs, lo, hi, color=f"C{i}", alpha=0.15, lw=0)
        if ref is not None:
            ax.axhline(ref, color="0.4", ls="--", lw=1)
        if logx:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel or heading(x))
        ax.set_ylabel(ylabel or heading(y))
    if hue:
        legend_below(fig, ncol=min(6, len(set(df[hue]))))
    return fig


def box_chart(df, *, x: str, y: str, hue: str | None = None, panel: str | None = None,
              log: bool = False, ylabel: str | None = None, ncols: int | None = None,
              height_px: int = 260):
    """Box plots over rows (boxes: quartiles, line: median, whiskers: 5th/95th percentiles)."""
    from matplotlib.patches import Patch

    hues = list(dict.fromkeys(df[hue])) if hue else [None]
    width = 0.8 / len(hues)
    fig, panels = _panels(df, panel, ncols, height_px, False)
    for ax, sub in panels:
        groups = list(dict.fromkeys(sub[x]))
        for j, h in enumerate(hues):
            d = sub if h is None else sub[sub[hue] == h]
            data = [d[d[x] == g][y].to_numpy(dtype=float) for g in groups]
            data = [v[np.isfinite(v) & (v > 0)] if log else v[np.isfinite(v)] for v in data]
            pos = [p + (j - (len(hues) - 1) / 2) * width for p in range(len(groups))]
            bp = ax.boxplot(data, positions=pos, widths=width * 0.9, whis=(5, 95), showfliers=False,
                            patch_artist=True, medianprops={"color": "k"})
            for patch in bp["boxes"]:
                patch.set(facecolor=f"C{j}" if h is not None else "0.6", alpha=0.7)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels([display_label(g) for g in groups], rotation=30, ha="right")
        if log:
            ax.set_yscale("log")
        ax.set_ylabel(ylabel or heading(y))
    if hue:
        legend_below(fig, [Patch(color=f"C{j}", alpha=0.7) for j in range(len(hues))],
                     [display_label(h) for h in hues])
    return fig


def scatter_chart(df, *, x: str, y: str, hue: str | None = None, marker: str | None = None,
                  panel: str | None = None, xlabel: str | None = None, ylabel: str | None = None,
                  diagonal: bool = False, ncols: int | None = None, height_px: int = 320):
    """Points of a tidy DataFrame: colour by ``hue``, marker by ``marker``; ``diagonal``: y = x."""
    markers = "osD^v<>p*"
    hues = list(dict.fromkeys(df[hue])) if hue else [None]
    kinds = list(dict.fromkeys(df[marker])) if marker else [None]
    fig, panels = _panels(df, panel, ncols, height_px, False)
    for ax, sub in panels:
        for i, h in enumerate(hues):
            for k, m in enumerate(kinds):
                d = sub[((sub[hue] == h) if hue else True) & ((sub[marker] == m) if marker else True)]
                ax.scatter(d[x], d[y], color=f"C{i}", marker=markers[k % len(markers)], s=30)
        if diagonal:
            lo, hi = min(ax.get_xlim()[0], ax.get_ylim()[0]), max(ax.get_xlim()[1], ax.get_ylim()[1])
            ax.plot([lo, hi], [lo, hi], color="0.5", ls="--", lw=1)
        ax.set_xlabel(xlabel or heading(x))
        ax.set_ylabel(ylabel or heading(y))
    handles = [ax.scatter([], [], color=f"C{i}", marker="o") for i, _ in enumerate(hues) if hue]
    handles += [ax.scatter([], [], color="0.4", marker=markers[k % len(markers)]) for k, _ in enumerate(kinds) if marker]
    names = ([display_label(h) for h in hues] if hue else []) + ([display_label(m) for m in kinds] if marker else [])
    if handles:
        legend_below(fig, handles, names, ncol=min(6, len(handles)))
    return fig


# ========================================================================================
# tables
# ========================================================================================
class _Plain:
    """A value whose text/plain form is ``str(value)``: glued, it reads as plain text (a glued
    str would show its quotes)."""

    def __init__(self, value: Any):
        self.s = str(value)

    def __repr__(self) -> str:
        return self.s


def glue_text(name: str, value: Any) -> None:
    """Glue ``value`` under ``name`` for ``{glue:text}`` in the page's prose (not displayed here)."""
    from myst_nb import glue

    glue(name, _Plain(value), display=False)


def table(df, *, index: bool = False, decimals: int | Mapping[str, int] = 2,
          headings: Mapping[str, str] | None = None, missing: str = "not run",
          labels: bool = True, caption: str | None = None):
    """A DataFrame formatted for the page (an ``IPython.display.HTML``).

    Column headings are human (:func:`heading`, or ``headings``); method and model names in
    the ``method``/``model`` columns become their display labels (``labels``); missing values
    read ``missing``; the index is dropped unless ``index``; numbers get ``decimals`` decimals
    (one int, or per column); a wide table scrolls horizontally instead of being cut.
    """
    import pandas as pd
    from IPython.display import HTML

    d = df.reset_index() if index else df.copy()
    if labels:
        for col, fn in (("method", method_label), ("model", model_label)):
            if col in d.columns:
                d[col] = d[col].map(lambda v, fn=fn: fn(v) if isinstance(v, str) else v)
    names = {c: (headings or {}).get(c, heading(str(c))) for c in d.columns}
    fmt = {}
    for c in d.columns:
        if pd.api.types.is_float_dtype(d[c]):
            n = decimals.get(c, 2) if isinstance(decimals, Mapping) else decimals
            fmt[c] = f"{{:.{n}f}}"
    st = d.style.format(fmt, na_rep=missing).hide(axis="index").relabel_index(
        [names[c] for c in d.columns], axis="columns")
    if caption:
        st = st.set_caption(caption)
    st = st.set_table_attributes('class="cameras-table"')
    return HTML(f'<div style="overflow-x:auto;max-width:100%">{st.to_html()}</div>')

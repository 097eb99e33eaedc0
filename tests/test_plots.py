"""The plotting layer: figures sized for the page, one overlay grid, human tables."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from cameras.plots import (
    DPI,
    MAX_COLS,
    MIN_PANEL_PX,
    PAGE_PX,
    Panel,
    chart,
    map_grid,
    overlay_grid,
    table,
)


def _maps(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.random((32, 32)) for _ in range(n)]


def test_overlay_grid_wraps_to_legible_panels_on_the_page():
    img = np.zeros((32, 32, 3), np.uint8)
    cols = {f"m{i}": _maps(2) for i in range(9)}
    cols["m3"][1] = None  # not run
    fig = overlay_grid([img, img], cols, row_titles=["a", "b"])
    fig.savefig(io.BytesIO(), format="png")  # the constrained layout places the axes when drawn
    w, h = fig.get_size_inches() * DPI
    assert w <= PAGE_PX + 1
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>" and ax.axison]
    assert len(panels) == 2 * 10
    widths = {round(ax.get_position().width * w) for ax in panels}
    assert min(widths) >= MIN_PANEL_PX * 0.95  # ~150 px: minus the padding between panels
    assert len(fig.axes) - len([a for a in fig.axes if a.get_label() == "<colorbar>"]) >= 20
    assert any("not run" in t.get_text() for ax in panels for t in ax.texts)
    # column titles repeat on wrapped lines, so every map panel is labelled
    titled = [ax.get_title() for ax in panels if ax.get_title()]
    assert {f"m{i}" for i in range(9)} <= set(titled)


def test_map_grid_checks_its_input():
    with pytest.raises(ValueError, match="at least one panel"):
        map_grid([])
    with pytest.raises(ValueError, match="row titles"):
        map_grid([[Panel(map=_maps(1)[0])]], row_titles=["a", "b"])
    with pytest.raises(ValueError, match="one map per image"):
        overlay_grid([np.zeros((4, 4, 3))], {"x": _maps(2)})
    assert MAX_COLS * MIN_PANEL_PX <= PAGE_PX


def test_chart_is_page_wide():
    fig, axes = chart(4, ncols=2)
    assert len(axes) == 4 and abs(fig.get_size_inches()[0] * DPI - PAGE_PX) < 1


def test_table_has_human_headings_no_index_and_no_nan():
    df = pd.DataFrame({"method": ["cameras", "gradcam"], "model": ["efficientnet_lite0"] * 2,
                       "rho_plus": [1.23456, np.nan], "n_images": [3, 4]})
    html = table(df).data
    assert "ρ+ ↑" in html and "CAMERAS" in html and "EfficientNet-Lite0" in html
    assert "NaN" not in html and "not run" in html and "1.23" in html and "1.2346" not in html
    assert "n images" in html and "overflow-x:auto" in html
    assert 'class="row_heading' not in html  # no index column


def test_tidy_charts_label_from_the_registries():
    from cameras.plots import bar_chart, box_chart, line_chart, scatter_chart

    rng = np.random.default_rng(0)
    df = pd.DataFrame([{"model": m, "method": me, "share": rng.random() * 100}
                       for m in ("efficientnet_lite0", "efficientnet_lite1") for me in ("cameras", "gradcam")])
    df = df.assign(lo=df["share"] - 5, hi=df["share"] + 5, depth=[0, 1, 0, 1])
    fig = bar_chart(df, x="method", y="share", hue="model", yerr=("lo", "hi"), ref=25)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["CAMERAS", "Grad-CAM"]
    assert "EfficientNet-Lite0" in [t.get_text() for t in fig.legends[0].get_texts()]
    assert ax.get_ylabel() == "mass in the right cell (%) ↑"
    assert len(line_chart(df, x="depth", y="share", hue="method", panel="model").axes) == 2
    assert box_chart(df, x="method", y="share", hue="model").axes[0].get_yscale() == "linear"
    assert len(scatter_chart(df, x="share", y="lo", hue="model", marker="method").legends) == 1


def test_glued_text_reads_as_plain_text():
    from cameras.plots import _Plain

    assert repr(_Plain("CAMERAS 82.9 %")) == "CAMERAS 82.9 %"  # a glued str would show its quotes
    assert repr(_Plain(0.5)) == "0.5" and repr(_Plain(None)) == "None"

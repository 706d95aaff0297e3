"""Every figure kdviz draws, with class, run and arm names in any script and of any length (issue 24
part 4), meets the legibility rule of kdviz.plots (issue 20 part 7): no glyph missing, no text
outside the figure or over another axes, text at least 10 px as JupyterLab displays it (font
points * dpi / 72 * the display's shrink factor), every epoch inside the y-range, every colour
bar labelled."""

import io
import os
import warnings

import matplotlib
import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.text import Text

import kdviz as kd
from kdviz.correlation import icc_of_logits
from kdviz.data.base import DatasetInfo
from kdviz.experiment_plots import plot_arms, plot_error_vs_secondary_std, plot_sweep
from kdviz.fonts import short_label, use_fallback_fonts, warn_missing_glyphs
from kdviz.plots import (
    DISPLAY_WIDTH,
    plot_error_curves,
    plot_icc,
    plot_icc_comparison,
    plot_soft_targets,
    plot_training,
)

LONG = "a class name of sixty characters, that no heatmap label fits"
NAMES = {
    "mixed": ["cat", "猫", "बिल्ली", "قطة", "חתול", LONG],
    "latin": ["airplane", "automobile", "bird", "cat", "deer", "dog"],
    "cjk": ["飞机", "汽车", "鸟", "猫", "鹿", "狗"],
    "devanagari": ["हवाई जहाज", "गाड़ी", "पक्षी", "बिल्ली", "हिरण", "कुत्ता"],
    "rtl": ["طائرة", "سيارة", "طائر", "מטוס", "מכונית", "ציפור"],
    "long": [f"{LONG[:-2]}{k:02d}" for k in range(10)],
}
assert len(LONG) == 60 and all(len(n) == 60 for n in NAMES["long"])


@pytest.fixture(autouse=True)
def noto_fonts():
    """The scripts above need Debian's fonts-noto-core and fonts-noto-cjk (.ci/run installs them);
    without them the test is skipped, except in CI, where it fails."""
    from matplotlib import font_manager

    use_fallback_fonts()  # adds fonts installed since matplotlib cached its list
    known = {f.name for f in font_manager.fontManager.ttflist}
    needed = {"Noto Sans CJK JP", "Noto Sans Devanagari", "Noto Sans Arabic", "Noto Sans Hebrew"}
    if not needed <= known and not os.environ.get("CI"):
        pytest.skip(f"fonts {sorted(needed - known)} are not installed: apt-get install fonts-noto-core fonts-noto-cjk")


def _history(start, epochs=12):
    """Errors falling from `start` (near chance) to about a tenth of it: the first epochs far
    above the last, as in the tutorial."""
    val = start * np.exp(-np.arange(epochs) / 3) + 0.02
    return pd.DataFrame(
        {"epoch": range(epochs), "val_top1_err": val, "train_top1_err": np.maximum(val - 0.05, 0.0), "seconds": 1.0}
    )


def _figures(names):
    """{what: function drawing it} for every figure kdviz makes, with these names."""
    c = len(names)
    info = DatasetInfo(name="hard", class_names=tuple(names), image_shape=(1, 2, 2), mean=(0.5,), std=(0.25,))
    g = torch.Generator().manual_seed(c)
    labels = torch.arange(20 * c) % c
    t = icc_of_logits(3 * torch.randn(20 * c, c, generator=g), labels, info)
    s = icc_of_logits(2 * torch.randn(20 * c, c, generator=g), labels, info)
    arms = names[:3]
    runs = pd.DataFrame(
        [
            (arm, "student", f"beta={beta}", seed, 0.1 + 0.01 * i + 0.001 * seed, 0.11 + 0.02 * i + 0.003 * seed, sigma)
            for i, arm in enumerate(arms)
            for beta, sigma in ((0.1, 0.02 + 0.01 * i), (1.0, 0.03 + 0.01 * i))
            for seed in range(3)
        ],
        columns=["arm", "role", "variant", "seed", "val_top1_err", "test_top1_err", "teacher_secondary_std"],
    ).assign(beta=lambda r: r["variant"].str.split("=").str[1].astype(float))
    summary = pd.DataFrame(
        {"role": "student", "seeds": 3, "variant": "beta=1.0", "diff_vs_baseline": [0.0, -1.2, 0.8]},
        index=pd.Index(arms, name="arm"),
    ).assign(diff_se=[np.nan, 0.3, 0.4])
    return {
        "icc": lambda: plot_icc(t),
        "secondary icc, clustered": lambda: plot_icc(t, secondary=True, cluster=True, title=names[0]),
        "comparison": lambda: plot_icc_comparison(t, s, names=(names[0], names[-1])),
        "error curves": lambda: plot_error_curves(
            {names[0]: _history(0.8), names[-1]: _history(0.9)}, splits=("val", "train"), mark_epoch=4
        ),
        "training (live)": lambda: plot_training(_history(0.8), t, epochs=15, label=names[-1]),
        "soft targets": lambda: plot_soft_targets(torch.randn(c, generator=g), 1, (1.0, 4.0), class_names=names),
        "error vs secondary std": lambda: plot_error_vs_secondary_std(runs, summary),
        "arms": lambda: plot_arms(summary),
        "sweep": lambda: plot_sweep(runs, "beta"),
    }


def drawn_texts(fig, monkeypatch):
    """Draw `fig` as a PNG at 100 dpi; return [(text, its box in pixels)] of the texts drawn and
    the warnings raised while drawing."""
    drawn = []
    draw = Text.draw

    def spy(self, renderer):
        draw(self, renderer)
        if self.get_visible() and self.get_text().strip():
            drawn.append((self, self.get_window_extent(renderer)))

    monkeypatch.setattr(Text, "draw", spy)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig.savefig(io.BytesIO(), format="png", dpi=100)
    monkeypatch.setattr(Text, "draw", draw)
    return drawn, [str(w.message) for w in caught]


def _overlap(a, b, tol=1.0) -> bool:
    return a.x0 < b.x1 - tol and b.x0 < a.x1 - tol and a.y0 < b.y1 - tol and b.y0 < a.y1 - tol


def check_legible(fig, monkeypatch, dpi=100):
    drawn, warned = drawn_texts(fig, monkeypatch)
    assert not [w for w in warned if "missing from font" in w], warned
    width, height = fig.get_size_inches() * 100
    shrink = min(1.0, DISPLAY_WIDTH / fig.get_size_inches()[0])  # wider figures are shown narrower
    for text, box in drawn:
        what = f"{text.get_text()!r}"
        assert text.get_fontsize() * dpi / 72 * shrink >= 10 - 1e-9, f"{what} is {text.get_fontsize()} pt"
        assert box.x0 >= -1 and box.y0 >= -1 and box.x1 <= width + 1 and box.y1 <= height + 1, f"{what} leaves"
        for ax in fig.axes:
            if ax is not text.axes:
                assert not _overlap(box, ax.get_window_extent()), f"{what} runs over another axes"
        for other, other_box in drawn:
            if other.axes is not text.axes and other is not text:
                assert not _overlap(box, other_box), f"{what} runs over {other.get_text()!r}"
    for ax in fig.axes:
        for mappable in ax.collections + ax.images:
            if getattr(mappable, "colorbar", None) is not None:
                bar = mappable.colorbar.ax
                assert bar.get_xlabel() or bar.get_ylabel(), "a colour bar without a label"
        low, high = sorted(ax.get_ylim())
        for line in ax.get_lines():
            if line.get_transform() is ax.transData:  # a curve, not a marker line across the axes
                y = np.asarray(line.get_ydata(), dtype=float)
                y = y[np.isfinite(y)]
                assert ((y >= low) & (y <= high)).all(), f"a value of {line.get_label()} outside {low, high}"


FIGURES = list(_figures(NAMES["latin"]))


@pytest.mark.parametrize(
    "names", [pytest.param(k, marks=() if k == "mixed" else pytest.mark.slow) for k in NAMES]
)  # one name set in the fast suite: all scripts and a 60-character name at once
@pytest.mark.parametrize("figure", FIGURES)
def test_every_figure_draws_any_name_legibly(figure, names, monkeypatch):
    check_legible(_figures(NAMES[names])[figure](), monkeypatch)


@pytest.mark.slow
def test_live_curves_png_keeps_the_rule_at_its_own_dpi(tiny_info, monkeypatch):
    """LiveCurves shows its PNG at its pixel size: its text must be 10 px there."""
    curves = kd.LiveCurves(icc=True, label=LONG)
    report = icc_of_logits(torch.randn(40, 4), torch.arange(40) % 4, tiny_info)
    png = curves._png(_history(0.8, 5), report, 10)
    pixels = matplotlib.image.imread(io.BytesIO(png), format="png")
    fig = plot_training(_history(0.8, 5), report, epochs=10, label=LONG)
    assert pixels.shape[1] == round(fig.get_size_inches()[0] * curves.dpi) <= DISPLAY_WIDTH * 100
    check_legible(fig, monkeypatch, dpi=curves.dpi)


def test_long_names_are_shortened_in_figures_and_kept_whole_in_tables(tiny_info):
    names = NAMES["long"]
    info = DatasetInfo(name="long", class_names=tuple(names), image_shape=(1, 2, 2), mean=(0.5,), std=(0.25,))
    report = icc_of_logits(torch.randn(40, 10), torch.arange(40) % 10, info)
    ticks = [t.get_text() for t in plot_icc(report).axes[0].get_yticklabels()]
    assert ticks == [short_label(n) for n in names] and all(len(t) == 24 for t in ticks)
    assert len(set(ticks)) == 10  # the ends differ, so the middle is what is cut
    assert list(report.to_frame().index) == names


def test_right_to_left_names_are_put_in_display_order():
    assert short_label("חתול") == "לותח"  # letters drawn left to right: the last letter first
    assert short_label("cat") == "cat" and short_label("$5 bill") == r"\$5 bill"  # a dollar is no mathtext


def test_a_glyph_no_font_has_is_warned_once_naming_the_class():
    name = "ꦗꦮ class"  # Javanese: in no font kdviz falls back to
    with pytest.warns(UserWarning, match=r"class name 'ꦗꦮ class': no installed font draws 'ꦗꦮ'"):
        warn_missing_glyphs([name, "cat"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_missing_glyphs([name, "猫", "बिल्ली", "قطة", "חתול"])  # once only; the scripts above draw


def test_a_theme_set_since_the_last_figure_does_not_bring_back_boxes(monkeypatch):
    with matplotlib.rc_context({"font.family": ["sans-serif"]}):  # what seaborn's set_theme leaves
        check_legible(_figures(NAMES["cjk"])["icc"](), monkeypatch)

"""Figures: each returns a Figure with what a reader expects to see."""

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from kdviz.correlation import icc_of_logits
from kdviz.data.base import DatasetInfo
from kdviz.experiment_plots import plot_arms, plot_sweep
from kdviz.plots import (
    DISPLAY_WIDTH,
    MIN_FONT,
    cluster_order,
    error_ylim,
    plot_error_curves,
    plot_icc,
    plot_icc_comparison,
)


def _report(info, seed):
    g = torch.Generator().manual_seed(seed)
    return icc_of_logits(torch.randn(40, 4, generator=g), torch.arange(40) % 4, info)


def test_icc_heatmap_and_comparison(tiny_info):
    t, s = _report(tiny_info, 0), _report(tiny_info, 1)
    fig = plot_icc(t, secondary=True, title="teacher")
    assert isinstance(fig, Figure) and fig.axes[0].get_title() == "teacher"
    assert [x.get_text() for x in fig.axes[0].get_xticklabels()] == ["a", "b", "c", "d"]
    fig = plot_icc_comparison(t, s, names=("T", "S"))
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["T\nsecondary ICC", "S\nsecondary ICC", "T\nminus S"]


def test_cluster_order_puts_confused_classes_together():
    names = ["a", "b", "c", "d"]
    m = np.full((4, 4), 0.01)
    m[0, 2] = m[2, 0] = 0.4  # a <-> c
    m[1, 3] = m[3, 1] = 0.4  # b <-> d
    order = cluster_order(pd.DataFrame(m, index=names, columns=names))
    assert abs(order.index("a") - order.index("c")) == 1 and abs(order.index("b") - order.index("d")) == 1


def test_error_curves_one_line_per_run_and_split():
    history = pd.DataFrame({"epoch": [0, 1, 2], "val_top1_err": [0.5, 0.3, 0.4], "train_top1_err": [0.6, 0.2, 0.1]})
    fig = plot_error_curves({"x": history, "y": history}, splits=("val", "train"))
    assert len(fig.axes[0].get_lines()) == 4
    assert fig.axes[0].get_lines()[0].get_ydata()[1] == 30.0  # plotted in percent


def _cell_texts(ax):
    return [t for t in ax.texts if t.get_text()]


@pytest.mark.slow
def test_secondary_diagonal_is_masked_not_drawn_as_zero(tiny_info):
    t, s = _report(tiny_info, 0), _report(tiny_info, 1)
    for fig in (plot_icc(t, secondary=True), plot_icc_comparison(t, s)):
        for ax in [ax for ax in fig.axes if ax.get_title()]:
            mask = np.ma.getmaskarray(ax.collections[0].get_array()).reshape(4, 4)
            assert (mask == np.eye(4, dtype=bool)).all()  # the diagonal, and only it
            positions = {(t.get_position()[1] - 0.5, t.get_position()[0] - 0.5) for t in _cell_texts(ax)}
            assert len(positions) == 12 and not any(i == j for i, j in positions)
    full = plot_icc(t, secondary=False)
    assert not np.ma.getmaskarray(full.axes[0].collections[0].get_array()).any()
    # the colour scale spans the off-diagonal values, not a 0 that is not data
    off = t.secondary.numpy()[~np.eye(4, dtype=bool)]
    assert plot_icc(t, secondary=True).axes[0].collections[0].norm.vmin == pytest.approx(off.min())


def _info(n):
    return DatasetInfo(
        name=f"c{n}", class_names=tuple(f"k{i}" for i in range(n)), image_shape=(1, 2, 2), mean=(0.5,), std=(0.25,)
    )


@pytest.mark.slow
@pytest.mark.parametrize("classes", [4, 10])
def test_cell_numbers_are_readable_at_the_displayed_size_and_fit_their_cells(classes):
    g = torch.Generator().manual_seed(classes)
    info = _info(classes)
    r = icc_of_logits(3 * torch.randn(20 * classes, classes, generator=g), torch.arange(20 * classes) % classes, info)
    for fig in (plot_icc(r, secondary=True), plot_icc_comparison(r, r)):
        width, _ = fig.get_size_inches()
        assert width <= DISPLAY_WIDTH  # shown unshrunk, so a font of 7 pt stays 7 pt on screen
        fig.canvas.draw()
        for ax in [ax for ax in fig.axes if ax.get_title()]:
            texts = _cell_texts(ax)
            if not texts:
                continue
            cell = ax.transData.transform((1, 1)) - ax.transData.transform((0, 0))  # px per cell (y grows down)
            for text in texts:
                assert text.get_fontsize() >= MIN_FONT
                box = text.get_window_extent()
                assert box.width < abs(cell[0]) and box.height < abs(cell[1])
    # digits' 10 classes get numbers in both figures
    assert _cell_texts(plot_icc(r).axes[0]) and _cell_texts(plot_icc_comparison(r, r).axes[0])
    assert not _cell_texts(plot_icc(r, annotate=False).axes[0])


@pytest.mark.slow
def test_cell_numbers_are_left_out_when_too_many_classes_to_read_them():
    g = torch.Generator().manual_seed(0)
    r = icc_of_logits(torch.randn(160, 40, generator=g), torch.arange(160) % 40, _info(40))
    assert not _cell_texts(plot_icc(r).axes[0]) and not _cell_texts(plot_icc_comparison(r, r).axes[2])
    assert len(_cell_texts(plot_icc(r, annotate=True).axes[0])) == 40 * 40


def test_error_curves_keep_every_epoch_in_the_frame_with_integer_epochs():
    epochs = np.arange(12)
    descent = [0.9, 0.7, 0.5, 0.3, 0.2, 0.15]  # the first epochs: far above where the runs settle
    a = pd.DataFrame(
        {
            "epoch": epochs,
            "val_top1_err": descent + [0.12, 0.11, 0.1, 0.09, 0.085, 0.08],
            "train_top1_err": descent[:3] + [0.0] * 9,
        }
    )
    b = a.assign(val_top1_err=descent + [0.11, 0.105, 0.1, 0.1, 0.095, 0.095])
    fig = plot_error_curves({"a": a, "b": b}, splits=("val", "train"), mark_epoch=5)
    ax = fig.axes[0]
    # every value, 0 to 90 %, inside: padded by 10 % of the span (9 points), clipped to [0, 100]
    assert ax.get_ylim() == pytest.approx((0.0, 99.0))
    for line in ax.get_lines():
        y = np.asarray(line.get_ydata(), dtype=float)
        assert np.all((y >= 0.0) & (y <= 99.0)) or list(line.get_xdata()) == [5, 5]
    assert all(float(t).is_integer() for t in ax.get_xticks())
    assert any(list(line.get_xdata()) == [5, 5] for line in ax.get_lines())  # the marked epoch
    assert plot_error_curves({"a": a}, splits=("val", "train"), zoom=False).axes[0].get_ylim() == (0.0, 100.0)
    assert error_ylim([np.array([90.0, 50.0, 30.0])]) == pytest.approx((24.0, 96.0))  # 30-90, 6 points of margin
    assert error_ylim([np.array([10.0, 10.4]), np.array([10.1, 10.2])]) == pytest.approx(
        (9.5, 10.9)
    )  # at least 0.5 points of margin
    assert error_ylim([np.array([np.nan])]) is None


def _sweep_runs():
    # Arm "b" sweeps beta over 0.1 and 1.0 on seeds 0, 1; test errors chosen so that the means
    # and standard errors are known: beta 0.1 -> 10 and 12 % (mean 11, se 1), beta 1.0 -> 20 and
    # 20 % (mean 20, se 0). Validation prefers beta 1.0 (5 %) to 0.1 (8 %).
    rows = [
        ("b", f"beta={beta}|t:default", seed, val, test)
        for beta, val, tests in [(0.1, 0.08, (0.10, 0.12)), (1.0, 0.05, (0.2, 0.2))]
        for seed, test in enumerate(tests)
    ]
    runs = pd.DataFrame(rows, columns=["arm", "variant", "seed", "val_top1_err", "test_top1_err"])
    return runs.assign(beta=[0.1, 0.1, 1.0, 1.0])


def test_sweep_curve_shows_mean_and_standard_error_and_rings_the_value_chosen_on_validation():
    fig = plot_sweep(_sweep_runs(), "beta")
    ax = fig.axes[0]
    curve, ring = ax.get_lines()[0], ax.get_lines()[-1]
    assert list(curve.get_xdata()) == [0.1, 1.0] and np.allclose(curve.get_ydata(), [11.0, 20.0])
    bars = ax.collections[0].get_segments()  # the error bars, one segment per value
    assert np.allclose([seg[:, 1] for seg in bars], [[10.0, 12.0], [20.0, 20.0]])
    assert list(ring.get_xdata()) == [1.0] and np.allclose(ring.get_ydata(), [20.0])
    assert ax.get_xscale() == "log"
    with pytest.raises(ValueError, match="no run has a value of 'tau'"):
        plot_sweep(_sweep_runs(), "tau")


def test_arms_are_drawn_best_first_with_their_standard_errors():
    summary = pd.DataFrame(
        {
            "role": ["teacher", "student", "student", "student"],
            "seeds": [1, 3, 3, 3],
            "diff_vs_baseline": [np.nan, 0.0, -1.5, 2.0],
            "diff_se": [np.nan, np.nan, 0.5, 0.25],
        },
        index=["teacher_ce", "kd", "mimic", "alone"],
    )
    ax = plot_arms(summary).axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["alone (3 seeds)", "kd (3 seeds)", "mimic (3 seeds)"]  # drawn bottom to top: best on top
    assert np.allclose(ax.get_lines()[0].get_xdata(), [2.0, 0.0, -1.5])
    assert np.allclose(
        [seg[:, 0] for seg in ax.collections[0].get_segments()], [[1.75, 2.25], [0.0, 0.0], [-2.0, -1.0]]
    )
    with pytest.raises(ValueError, match="column must be one of"):
        plot_arms(summary, "val_err")

"""Figures: each returns a Figure with what a reader expects to see."""
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from kdviz.correlation import icc_of_logits
from kdviz.plots import cluster_order, plot_error_curves, plot_icc, plot_icc_comparison


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
    assert titles == ["T: secondary ICC", "S: secondary ICC", "T - S"]


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

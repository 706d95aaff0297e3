"""kd.plot_truth: the true ICC's heatmap alone, and beside runs' distance to it per epoch."""

import matplotlib

matplotlib.use("Agg")

import pandas as pd
import pytest

import kdviz as kd


@pytest.mark.slow  # planted's generation: about 7 s on the shared 2-core VM
def test_plot_truth_draws_the_heatmap_beside_each_runs_distance_curve():
    planted = kd.load_dataset("planted", n_train=50)
    alone = kd.plot_truth(planted)
    history = pd.DataFrame({"epoch": [0, 1, 2], "val_truth_distance": [0.15, 0.1, 0.08]})
    fig = kd.plot_truth(planted, {"a run": history}, mark_epoch=1)  # a colour bar, then a layout: no clash
    curve = fig.axes[1]
    assert len(alone.axes) == 2 and len(fig.axes) == 3  # heatmap + colour bar (+ the curve)
    assert list(curve.lines[0].get_ydata()) == [0.15, 0.1, 0.08]
    assert curve.lines[1].get_xdata()[0] == 1  # the marked epoch

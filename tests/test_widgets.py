"""The notebook explorers: controls redraw the figure they wrap."""
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

import kdviz as kd
from kdviz.correlation import icc_of_logits

pytest.importorskip("ipywidgets")


def report(tiny_info, seed):
    g = torch.Generator().manual_seed(seed)
    return icc_of_logits(torch.randn(40, 4, generator=g), torch.arange(40) % 4, tiny_info)


def test_icc_explorer_switches_model_and_view(tiny_info):
    reports = {"teacher": report(tiny_info, 0), "student": report(tiny_info, 1)}
    explorer = kd.icc_explorer(reports, teacher_of={"student": "teacher", "other": "missing"})
    model, secondary, cluster, compare = explorer.children[:4]
    assert isinstance(explorer.result, Figure) and len(explorer.result.axes) == 2  # one heatmap + its colour bar
    assert explorer.result.axes[0].get_title() == "teacher: secondary ICC"
    model.value = "student"
    assert len([ax for ax in explorer.result.axes if ax.get_title()]) == 3  # teacher | student | difference
    compare.value = False
    secondary.value = False
    assert explorer.result.axes[0].get_title() == "student: ICC"
    with pytest.raises(ValueError, match="at least one"):
        kd.icc_explorer({})


def test_curves_explorer_draws_the_selected_runs():
    history = pd.DataFrame({"epoch": [0, 1], "val_top1_err": [0.5, 0.4], "test_top1_err": [0.6, 0.5], "train_top1_err": [0.4, 0.3]})
    explorer = kd.curves_explorer({"a": history, "b": history.assign(val_top1_err=[0.3, 0.2])})
    selected, split = explorer.children[:2]
    assert len(explorer.result.axes[0].get_lines()) == 4  # 2 runs x (val, train)
    selected.value = ("b",)
    split.value = "test"
    labels = [line.get_label() for line in explorer.result.axes[0].get_lines()]
    assert labels == ["b (test)", "b (train)"]


def test_study_explorer_filters_arms():
    runs = pd.DataFrame({
        "arm": ["a", "a", "b", "b", "alone"], "role": ["student"] * 5, "variant": ["d"] * 5, "seed": [0, 1, 0, 1, 0],
        "val_top1_err": [0.1] * 5, "test_top1_err": [0.1, 0.12, 0.2, 0.22, 0.3],
        "teacher_sigma2": [0.05, 0.05, 0.02, 0.03, float("nan")],
    })
    explorer = kd.study_explorer(runs)
    assert [t.get_text() for t in explorer.result.axes[0].get_legend().get_texts()] == ["a", "b"]
    explorer.children[0].value = ("b",)
    assert [t.get_text() for t in explorer.result.axes[0].get_legend().get_texts()] == ["b"]

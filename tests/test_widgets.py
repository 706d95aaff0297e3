"""The notebook explorers: what each one displays (the PNG in its image widget) after creation and
after each change of a control, set to the values a slider or picker would give."""
import base64
import io

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import torch

import kdviz as kd
from kdviz.correlation import icc_of_logits

pytest.importorskip("ipywidgets")
from kdviz.widgets import FigureView  # noqa: E402  (needs ipywidgets)


def report(tiny_info, seed):
    g = torch.Generator().manual_seed(seed)
    return icc_of_logits(torch.randn(40, 4, generator=g), torch.arange(40) % 4, tiny_info)


def shown(view, slot=0) -> np.ndarray:
    """The pixels the view's image widget displays; checks they are the figure drawn at 100 dpi."""
    image = view.images[slot]
    assert image in view.children and image.format == "png" and image.layout.display != "none"
    pixels = matplotlib.image.imread(io.BytesIO(image.value), format="png")
    width, height = view.figures[slot].get_size_inches() * 100
    assert pixels.shape[:2] == (round(height), round(width))
    assert pixels[..., :3].std() > 0.05  # a drawing, not a blank canvas
    return pixels


def changed(before: np.ndarray, after: np.ndarray) -> bool:
    return before.shape != after.shape or not np.array_equal(before, after)


def titles(fig):
    return [ax.get_title() for ax in fig.axes if ax.get_title()]


def test_icc_explorer_shows_a_new_figure_after_each_change(tiny_info):
    reports = {"teacher": report(tiny_info, 0), "student": report(tiny_info, 1)}
    view = kd.icc_explorer(reports, teacher_of={"student": "teacher", "other": "missing"})
    controls = view.controls
    first = shown(view)
    assert titles(view.figures[0]) == ["teacher: secondary ICC"]
    controls["model"].value = "student"
    compared = shown(view)
    assert changed(first, compared) and titles(view.figures[0]) == ["teacher: secondary ICC", "student: secondary ICC", "teacher - student"]
    controls["compare"].value = False
    alone = shown(view)
    controls["secondary"].value = False
    full = shown(view)
    assert changed(compared, alone) and changed(alone, full) and titles(view.figures[0]) == ["student: ICC"]
    controls["cluster"].value = True
    assert shown(view).shape == full.shape
    with pytest.raises(ValueError, match="at least one"):
        kd.icc_explorer({})


def test_curves_explorer_draws_the_selected_runs():
    history = pd.DataFrame({"epoch": [0, 1], "val_top1_err": [0.5, 0.4], "test_top1_err": [0.6, 0.5], "train_top1_err": [0.4, 0.3]})
    view = kd.curves_explorer({"a": history, "b": history.assign(val_top1_err=[0.3, 0.2])})
    before = shown(view)
    assert len(view.figures[0].axes[0].get_lines()) == 4  # 2 runs x (val, train)
    view.controls["selected"].value = ("b",)
    view.controls["split"].value = "test"
    assert changed(before, shown(view))
    assert [line.get_label() for line in view.figures[0].axes[0].get_lines()] == ["b (test)", "b (train)"]


def test_study_explorer_filters_arms():
    runs = pd.DataFrame({
        "arm": ["a", "a", "b", "b", "alone"], "role": ["student"] * 5, "variant": ["d"] * 5, "seed": [0, 1, 0, 1, 0],
        "val_top1_err": [0.1] * 5, "test_top1_err": [0.1, 0.12, 0.2, 0.22, 0.3],
        "teacher_sigma2": [0.05, 0.05, 0.02, 0.03, float("nan")],
    })
    view = kd.study_explorer(runs)
    before = shown(view)
    assert [t.get_text() for t in view.figures[0].axes[0].get_legend().get_texts()] == ["a", "b"]
    view.controls["selected"].value = ("b",)
    assert changed(before, shown(view))
    assert [t.get_text() for t in view.figures[0].axes[0].get_legend().get_texts()] == ["b"]


def test_a_failed_redraw_is_shown_and_the_first_drawing_raises(tiny_info):
    import ipywidgets as w
    from matplotlib.figure import Figure

    def draw(k):
        if k == 2:
            raise KeyError("no such class")
        fig = Figure(figsize=(2, 1))
        fig.add_subplot().plot([0, k], [0, 1])
        return fig

    view = FigureView(draw, {"k": w.IntSlider(value=1, min=0, max=3)})
    shown(view)
    view.controls["k"].value = 2
    assert "could not redraw" in view.note.value and "no such class" in view.note.value
    with pytest.raises(KeyError, match="no such class"):
        FigureView(draw, {"k": w.IntSlider(value=2, min=0, max=3)})


def test_a_saved_notebook_shows_the_figure_without_widgets(tiny_info):
    view = kd.icc_explorer({"teacher": report(tiny_info, 0)})
    bundle = view._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert base64.b64decode(bundle["image/png"]) == view.images[0].value

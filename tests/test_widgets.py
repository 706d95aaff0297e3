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
from kdviz.correlation import icc_distance, icc_of_logits
from kdviz.train.snapshots import snapshot_path

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


@pytest.mark.slow
def test_icc_explorer_shows_a_new_figure_after_each_change(tiny_info):
    reports = {"teacher": report(tiny_info, 0), "student": report(tiny_info, 1)}
    view = kd.icc_explorer(reports, teacher_of={"student": "teacher", "other": "missing"})
    controls = view.controls
    first = shown(view)
    assert titles(view.figures[0]) == ["teacher: secondary ICC"]
    controls["model"].value = "student"
    compared = shown(view)
    assert changed(first, compared) and titles(view.figures[0]) == [
        "teacher\nsecondary ICC",
        "student\nsecondary ICC",
        "teacher\nminus student",
    ]
    controls["compare"].value = False
    alone = shown(view)
    controls["secondary"].value = False
    full = shown(view)
    assert changed(compared, alone) and changed(alone, full) and titles(view.figures[0]) == ["student: ICC"]
    controls["cluster"].value = True
    assert shown(view).shape == full.shape
    with pytest.raises(ValueError, match="at least one"):
        kd.icc_explorer({})


@pytest.mark.slow
def test_curves_explorer_draws_the_selected_runs():
    history = pd.DataFrame(
        {"epoch": [0, 1], "val_top1_err": [0.5, 0.4], "test_top1_err": [0.6, 0.5], "train_top1_err": [0.4, 0.3]}
    )
    view = kd.curves_explorer({"a": history, "b": history.assign(val_top1_err=[0.3, 0.2])})
    before = shown(view)
    assert len(view.figures[0].axes[0].get_lines()) == 4  # 2 runs x (val, train)
    view.controls["selected"].value = ("b",)
    view.controls["split"].value = "test"
    assert changed(before, shown(view))
    assert [line.get_label() for line in view.figures[0].axes[0].get_lines()] == ["b (test)", "b (train)"]


@pytest.mark.slow
def test_study_explorer_filters_arms():
    runs = pd.DataFrame(
        {
            "arm": ["a", "a", "b", "b", "alone"],
            "role": ["student"] * 5,
            "variant": ["d"] * 5,
            "seed": [0, 1, 0, 1, 0],
            "val_top1_err": [0.1] * 5,
            "test_top1_err": [0.1, 0.12, 0.2, 0.22, 0.3],
            "teacher_secondary_std": [0.05, 0.05, 0.02, 0.03, float("nan")],
        }
    )
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


def _run_dir(path, info, epochs, seed):
    """A run directory as the trainer leaves it after `epochs` epochs."""
    (path / "icc").mkdir(parents=True)
    reports = [report(info, seed + e) for e in range(epochs)]
    for e, r in enumerate(reports):
        r.save(snapshot_path(path, e))
    pd.DataFrame(
        {
            "epoch": range(epochs),
            "val_top1_err": [0.5 - 0.1 * e for e in range(epochs)],
            "train_top1_err": [0.6 - 0.1 * e for e in range(epochs)],
            "seconds": 1.0,
        }
    ).to_csv(path / "metrics.csv", index=False)
    return reports


@pytest.mark.slow
def test_run_explorer_scrubs_epochs_of_runs_on_disk_while_one_still_trains(tiny_info, tmp_path):
    teacher = _run_dir(tmp_path / "t", tiny_info, 3, seed=0)
    student = _run_dir(tmp_path / "s", tiny_info, 2, seed=10)
    view = kd.run_explorer({"teacher": tmp_path / "t", "student": tmp_path / "s"}, teacher="teacher")
    epoch, focus = view.controls["epoch"], view.controls["focus"]
    assert (epoch.value, epoch.max) == (1, 1)  # opens at the student's last epoch
    curves, heat = shown(view, 0), shown(view, 1)
    assert titles(view.figures[1]) == [
        "teacher (epoch 1)\nsecondary ICC",
        "student (epoch 1)\nsecondary ICC",
        "teacher (epoch 1)\nminus student (epoch 1)",
    ]
    distance = icc_distance(teacher[1], student[1])["icc_distance"]
    assert f"{distance:.4f}" in view.note.value and f"{student[1].secondary_std:.4g}" in view.note.value
    assert list(focus.options) == ["a", "b", "c", "d"] and focus.value == "a"
    assert "class a goes to" in view.note.value and "group mass" in view.note.value  # tiny_info has groups
    focus.value = "b"
    top = student[1].top_confusions("b")
    assert ", ".join(f"{k} ({v:.2f})" for k, v in top.items()) in view.note.value

    epoch.value = 0
    assert changed(heat, shown(view, 1)) and changed(curves, shown(view, 0))
    assert titles(view.figures[1])[1] == "student (epoch 0)\nsecondary ICC"
    assert [list(line.get_xdata()) for line in view.figures[0].axes[0].get_lines()][-1] == [0, 0]  # the epoch marked

    # the student finishes epoch 2: moving the slider finds it
    student.append(report(tiny_info, 12))
    student[2].save(snapshot_path(tmp_path / "s", 2))
    epoch.value = 1
    assert epoch.max == 2
    epoch.value = 2
    assert titles(view.figures[1])[:2] == ["teacher (epoch 2)\nsecondary ICC", "student (epoch 2)\nsecondary ICC"]

    before = shown(view, 1)
    view.controls["teacher"].value = "(none)"
    view.controls["secondary"].value = False
    assert changed(before, shown(view, 1)) and titles(view.figures[1]) == ["student, epoch 2: ICC"]
    view.controls["model"].value = "teacher"
    assert titles(view.figures[1]) == ["teacher, epoch 2: ICC"]


@pytest.mark.slow
def test_run_explorer_says_when_a_run_has_no_epoch_yet(tiny_data, tmp_path):
    result = kd.train(tiny_data, "mlp", "ce", epochs=2, progress=False)  # a TrainResult in memory
    (tmp_path / "new").mkdir()
    view = kd.run_explorer({"done": result, "new": tmp_path / "new"}, teacher="done")
    assert view.controls["model"].value == "new"
    assert "no finished epoch yet" in view.note.value
    assert view.images[1].layout.display == "none" and view.images[1].value == b""
    shown(view, 0)  # the curves of the finished run are still drawn
    view.controls["model"].value = "done"
    shown(view, 1)
    assert view.controls["epoch"].max == 1  # the slider now spans the finished run
    assert titles(view.figures[1]) == ["done, epoch 0: secondary ICC"]  # a model beside itself is shown alone
    with pytest.raises(KeyError, match="not among the runs"):
        kd.run_explorer({"done": result}, teacher="other")
    assert kd.run_explorer({"done": result, "new": tmp_path / "new"}, model="done").controls["model"].value == "done"

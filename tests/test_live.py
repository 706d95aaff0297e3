"""The trainer's on_epoch hook and kdviz.LiveCurves, the notebook display built on it."""

import math

import nbformat
import pandas as pd
import pytest
import torch
from nbclient import NotebookClient

import kdviz as kd
from kdviz import live
from kdviz.correlation import ICCReport
from kdviz.plots import plot_training
from kdviz.train.epoch import TEST_COLUMNS as TEST


def test_on_epoch_is_called_once_per_epoch_with_the_history_so_far(tiny_data):
    calls = []
    result = kd.train(
        tiny_data,
        "mlp",
        "ce",
        epochs=3,
        batch_size=16,
        progress=False,
        on_epoch=lambda history, snapshot, epochs: calls.append((history, snapshot, epochs)),
    )
    assert len(calls) == 3
    for k, (history, snapshot, epochs) in enumerate(calls):
        assert epochs == 3
        assert history["epoch"].tolist() == list(range(k + 1))
        # The test split is evaluated once, on the chosen epoch, after the last epoch (eval_test=False).
        pd.testing.assert_frame_equal(
            history.drop(columns=list(TEST)), result.history.iloc[: k + 1].drop(columns=list(TEST))
        )
        assert history[list(TEST)].isna().all().all()
        assert snapshot is result.icc_snapshots[k]  # the epoch's validation ICC
        assert snapshot.n == len(tiny_data.val)


def test_distill_and_train_teacher_pass_on_epoch_through(tiny_data):
    seen = []
    teacher = kd.train_teacher(
        tiny_data, "mlp", "ce", epochs=2, progress=False, on_epoch=lambda h, s, e: seen.append(("t", len(h)))
    )
    kd.distill(
        tiny_data, teacher, "mlp", "kd", epochs=2, progress=False, on_epoch=lambda h, s, e: seen.append(("s", len(h)))
    )
    assert seen == [("t", 1), ("t", 2), ("s", 1), ("s", 2)]


def test_on_epoch_after_resume_sees_the_whole_history(tiny_data, tmp_path):
    def interrupt_after_two(history, snapshot, epochs):
        if len(history) == 2:
            raise KeyboardInterrupt

    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        kd.train(tiny_data, "mlp", "ce", epochs=4, progress=False, out_dir=run, on_epoch=interrupt_after_two)
    lengths = []
    kd.train(
        tiny_data,
        "mlp",
        "ce",
        epochs=4,
        progress=False,
        out_dir=run,
        resume=True,
        on_epoch=lambda h, s, e: lengths.append(len(h)),
    )
    assert lengths == [3, 4]


def history(n, seconds):
    return pd.DataFrame({"epoch": range(n), "train_top1_err": 0.5, "val_top1_err": 0.4, "seconds": seconds})


def report(tiny_info):
    sums = torch.full((4, 4), 1.0, dtype=torch.float64) + 3 * torch.eye(4, dtype=torch.float64)
    return ICCReport(tiny_info, 4.0, sums, torch.full((4,), 6.0, dtype=torch.float64), 0.1, None, 24)


def test_live_curves_do_nothing_outside_a_kernel(tiny_info, capsys):
    assert not live.in_notebook()
    curves = kd.LiveCurves(icc=True)
    for n in range(1, 4):
        curves(history(n, 1.0), report(tiny_info), 3)
    assert curves.draws == 0 and curves._handle is None
    assert capsys.readouterr() == ("", "")


@pytest.mark.slow
@pytest.mark.parametrize("seconds, expected", [(1000.0, 5), (1e-6, 2)], ids=["slow-epochs", "fast-epochs"])
def test_live_curves_keep_drawing_within_budget_and_always_draw_first_and_last(
    tiny_info, monkeypatch, seconds, expected
):
    """Epochs of 1000 s leave room to redraw every epoch; epochs of 1 us only the first and the last."""
    monkeypatch.setattr(live, "in_notebook", lambda: True)
    shown = []
    curves = kd.LiveCurves()
    monkeypatch.setattr(curves, "_show", shown.append)
    for n in range(1, 6):
        curves(history(n, seconds), report(tiny_info), 5)
    assert curves.draws == len(shown) == expected
    assert all(png.startswith(b"\x89PNG") for png in shown)


@pytest.mark.slow
def test_live_curves_give_a_second_run_its_own_display(tiny_info, monkeypatch):
    monkeypatch.setattr(live, "in_notebook", lambda: True)

    class Handle:
        def __init__(self):
            self.updates = 0

        def update(self, image):
            self.updates += 1

    handles = []
    monkeypatch.setattr("IPython.display.display", lambda image, display_id: handles.append(Handle()) or handles[-1])
    curves = kd.LiveCurves()
    for _ in range(2):
        for n in (1, 2):
            curves(history(n, 1000.0), report(tiny_info), 2)
    assert [h.updates for h in handles] == [1, 1]  # one display per run, redrawn in place at its second epoch
    assert curves.draws == 2  # counts restart with the second run


def test_plot_training_fixes_the_epoch_axis_and_adds_the_icc(tiny_info):
    fig = plot_training(history(3, 1.0), report(tiny_info), epochs=10, label="teacher")
    curves, heatmap = fig.axes[0], fig.axes[1]
    assert curves.get_xlim() == (-0.5, 9.5)
    assert curves.get_title() == "teacher: epoch 2"
    assert [line.get_label() for line in curves.get_lines()] == ["teacher (val)", "teacher (train)"]
    # report()'s off-diagonal sums are all 1: its secondary ICC is 1/3 everywhere, and the title says so
    assert heatmap.get_title() == "secondary ICC (val), epoch 2\n(uniform: every value 0.333)"
    assert len(plot_training(history(3, 1.0)).axes) == 1


@pytest.mark.slow
def test_live_curves_leave_one_png_in_a_notebook_cell(tmp_path, monkeypatch):
    monkeypatch.delenv("MPLBACKEND", raising=False)
    cell = (
        "import kdviz as kd\n"
        "data = kd.load_dataset('digits', seed=0, n_train=100)\n"
        "curves = kd.LiveCurves(icc=True)\n"
        "run = kd.train(data, 'mlp', epochs=3, progress=False, on_epoch=curves)\n"
        "print(curves.draws)"
    )
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)])
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = nb.cells[0].outputs
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1, outputs  # one display, updated in place
    assert images[0]["output_type"] == "display_data"
    draws = int([o for o in outputs if o.get("name") == "stdout"][0]["text"])
    assert 2 <= draws <= 3


def test_plot_soft_targets_bars_are_the_softmax_at_each_tau_and_the_title_gives_its_numbers():
    z = [2.0, 0.0, -1.0, 1.0]
    fig = kd.plot_soft_targets(z, 0, (1.0, 4.0), class_names=("a", "b", "c", "d"))
    ax = fig.axes[0]
    heights = [bar.get_height() for bar in ax.patches]
    for i, tau in enumerate((1.0, 4.0)):
        e = [math.exp(v / tau) for v in z]
        p = [v / sum(e) for v in e]
        assert heights[4 * i : 4 * i + 4] == pytest.approx(p)
        rest = [v / (1 - p[0]) for v in p[1:]]  # the secondary probabilities, mean 1/3
        secondary_std = math.sqrt(sum((r - 1 / 3) ** 2 for r in rest) / 3)
        assert (
            f"tau {tau:g}: p(target) {p[0]:.3f}, secondary mass {1 - p[0]:.3f}, secondary std {secondary_std:.4f}"
            in ax.get_title()
        )
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c", "d"]


@pytest.mark.parametrize("budget", [0, -0.1, 1.5])
def test_live_curves_refuse_a_budget_outside_0_1(budget):
    with pytest.raises(ValueError, match=r"budget is a fraction of the training time, in \(0, 1\]"):
        kd.LiveCurves(budget=budget)

"""The ICC explorer over training runs: scrub through epochs of runs on disk or in memory."""

from __future__ import annotations

import html

import pandas as pd

from ..correlation import icc_distance
from ..inputs import open_runs
from ..plots import plot_error_curves, plot_icc, plot_icc_comparison
from ..train.snapshots import RunRecord
from ..truth_plots import plot_truth
from .view import Drawing, FigureView, w

NONE = "(none)"


def run_explorer(runs, teacher: str | None = None, model: str | None = None) -> FigureView:
    """Runs' error curves with an epoch marked, and the ICC heatmaps of that epoch.

    runs: {name: run directory, TrainResult or history DataFrame}, a list of run directories, or a
    sweep folder (kdviz.inputs; a run with no finished epoch yet is shown as waiting). Controls: which runs'
    curves to show; a teacher (or none) and a model; the epoch (the validation ICC the trainer
    saved after it); secondary or full ICC; clustered class order; a class, whose most confused
    classes are listed (`teacher` and `model` name the runs picked first). Under the figures: secondary std, group mass and validation error of both models
    at that epoch, and their ICC distance. Run directories are read again at every change (and on
    `reload`), so a run still training shows its new epochs; the teacher is shown at the same
    epoch, or at its last one if it has not got there. On a dataset with a known truth (`planted`), a
    third figure shows the true ICC and each run's distance to it per epoch, and the table its
    distance and rank correlation to the truth at that epoch.
    """
    records = open_runs(runs, "run_explorer")
    names = list(records)
    for picked in (teacher, model):
        if picked is not None and picked not in records:
            raise KeyError(f"{picked!r} is not among the runs {names}")
    model = model or next((n for n in names if n != teacher), names[0])
    last = max(records[model].epochs, default=0)  # a finished run opens at its end
    controls = {
        "curves": w.SelectMultiple(options=names, value=tuple(names), description="curves of", rows=min(len(names), 4)),
        "teacher": w.Dropdown(options=[NONE, *names], value=teacher or NONE, description="teacher"),
        "model": w.Dropdown(options=names, value=model, description="model"),
        "epoch": w.IntSlider(value=last, min=0, max=last, description="epoch", continuous_update=False),
        "secondary": w.Checkbox(value=True, description="secondary (target removed)"),
        "cluster": w.Checkbox(value=False, description="cluster classes"),
        "zoom": w.Checkbox(value=True, description="fit the y-axis to the curves"),
        "focus": w.Dropdown(options=[], description="class"),
    }

    def draw(curves, teacher, model, epoch, secondary, cluster, zoom, focus) -> Drawing:
        for record in records.values():
            record.refresh()
        shown = records[model]
        controls["epoch"].max = max(shown.epochs, default=0)
        epoch = min(epoch, controls["epoch"].max)
        with_history = {n: records[n] for n in curves if len(records[n].history)}
        curve_fig = (
            plot_error_curves(with_history, splits=("val", "train"), mark_epoch=epoch, zoom=zoom)
            if with_history
            else None
        )
        if shown.at(epoch) is None:
            return Drawing([curve_fig, None, None], f"<p>{html.escape(shown.waiting())}</p>")
        pair = {"model": (model, *shown.at(epoch))}
        if teacher not in (NONE, model) and records[teacher].at(epoch) is not None:
            pair = {"teacher": (teacher, *records[teacher].at(epoch)), **pair}
        classes = list(pair["model"][2].info.class_names)
        if list(controls["focus"].options) != classes:  # known once a run has an epoch
            controls["focus"].options = classes
            controls["focus"].value = focus = classes[0]
        report = pair["model"][2]
        truth_fig = (
            None
            if report.truth is None
            else plot_truth(report, with_history, secondary=secondary, cluster=cluster, mark_epoch=epoch)
        )
        return Drawing(
            [curve_fig, _heatmaps(pair, secondary, cluster), truth_fig],
            _numbers(pair, records, focus) + _notes(teacher, records, epoch),
        )

    return FigureView(draw, controls, images=3, reload=True)


def _heatmaps(pair: dict, secondary: bool, cluster: bool):
    kind = "secondary ICC" if secondary else "ICC"
    name, epoch, report = pair["model"]
    if "teacher" not in pair:
        return plot_icc(report, secondary=secondary, cluster=cluster, title=f"{name}, epoch {epoch}: {kind}")
    t_name, t_epoch, t_report = pair["teacher"]
    return plot_icc_comparison(
        t_report,
        report,
        secondary=secondary,
        cluster=cluster,
        names=(f"{t_name} (epoch {t_epoch})", f"{name} (epoch {epoch})"),
    )


def _numbers(pair: dict, records: dict[str, RunRecord], focus: str | None) -> str:
    """The measures of both models at their epochs, their ICC distance, and where `focus` goes."""
    rows = {}
    for role, (name, epoch, report) in pair.items():
        history = records[name].history.set_index("epoch")
        error = history["val_top1_err"].get(epoch) if "val_top1_err" in history else None
        confused = report.top_confusions(focus) if focus in report.info.class_names else pd.Series(dtype=float)
        rows[role] = {
            "run": name,
            "epoch": epoch,
            "val error (%)": None if error is None else 100 * error,
            "secondary std": report.secondary_std,
            "group mass": report.group_mass,
            "distance to truth": report.truth_distance,
            "rank r with truth": report.truth_rank,
            f"class {focus} goes to": ", ".join(f"{k} ({v:.2f})" for k, v in confused.items()),
        }
    frame = pd.DataFrame.from_dict(rows, orient="index").dropna(axis=1, how="all")  # no group mass without groups
    table = frame.to_html(na_rep="-", float_format=lambda v: f"{v:.4g}", escape=True)
    if "teacher" not in pair:
        return table
    distance = icc_distance(pair["teacher"][2], pair["model"][2])
    return table + (
        f"<p>teacher-model ICC distance ||M_t - M_s||_F / C = {distance['icc_distance']:.4f}; "
        f"Pearson r of their off-diagonal entries = {distance['icc_pearson']:.3f}</p>"
    )


def _notes(teacher: str, records: dict[str, RunRecord], epoch: int) -> str:
    if teacher == NONE or records[teacher].at(epoch) is not None:
        return ""
    return f"<p>{html.escape(records[teacher].waiting())}</p>"

"""Explorers over results already in memory: ICC reports, error curves, a study's table."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from ..deprecations import with_new_columns
from ..experiment_plots import plot_error_vs_secondary_std
from ..inputs import open_runs, read_table, selected_icc
from ..plots import plot_error_curves, plot_icc, plot_icc_comparison
from .view import FigureView, w


def icc_explorer(reports, teacher_of: Mapping[str, str] | None = None) -> FigureView:
    """Pick a model and see its ICC heatmap, secondary or full, clustered or not; for a student
    whose teacher is in `teacher_of`, optionally teacher | student | difference. `reports`: {name:
    ICCReport, or a run (directory, TrainResult; shown at its selected epoch's validation ICC)}, or
    a sweep folder (see kdviz.inputs)."""
    opened = open_runs(reports, "icc_explorer", kinds=("report", "dir", "result", "sweep"), finished=True)
    reports = {name: selected_icc(run) for name, run in opened.items()}
    teacher_of = {k: v for k, v in (teacher_of or {}).items() if v in reports}

    def show(model, secondary, cluster, compare):
        if compare and model in teacher_of:
            return plot_icc_comparison(
                reports[teacher_of[model]],
                reports[model],
                secondary=secondary,
                cluster=cluster,
                names=(teacher_of[model], model),
            )
        kind = "secondary ICC" if secondary else "ICC"
        return plot_icc(reports[model], secondary=secondary, cluster=cluster, title=f"{model}: {kind}")

    return FigureView(
        show,
        {
            "model": w.Dropdown(options=list(reports), description="model"),
            "secondary": w.Checkbox(value=True, description="secondary (target removed)"),
            "cluster": w.Checkbox(value=False, description="cluster classes"),
            "compare": w.Checkbox(value=bool(teacher_of), description="beside its teacher"),
        },
    )


def curves_explorer(runs) -> FigureView:
    """Pick runs (run directories, TrainResults, history DataFrames or a sweep folder's runs; see
    kdviz.inputs) and a split; see their error curves (the test split as a curve for runs trained
    with eval_test=True, else as the chosen epoch's point)."""
    runs = open_runs(runs, "curves_explorer", finished=True)
    names = list(runs)

    def show(selected, split):
        return plot_error_curves({n: runs[n] for n in selected or names[:1]}, splits=(split, "train"))

    return FigureView(
        show,
        {
            "selected": w.SelectMultiple(options=names, value=tuple(names), description="runs"),
            "split": w.ToggleButtons(options=["val", "test"], description="split"),
        },
    )


def study_explorer(runs: pd.DataFrame | str, summary: pd.DataFrame | str | None = None) -> FigureView:
    """Pick student arms of an experiment grid; see their error against the teacher's secondary std.
    `runs` and `summary` may also be a sweep folder (its runs.csv, summary.csv)."""
    runs = with_new_columns(read_table(runs, "study_explorer"))  # a runs.csv from before the rename too
    summary = None if summary is None else read_table(summary, "study_explorer", "summary")
    if "teacher_secondary_std" not in runs or "role" not in runs:
        raise ValueError(
            "study_explorer: the runs table has no student that learns from a teacher "
            "(no 'role' and 'teacher_secondary_std' columns): run a grid with student arms first"
        )
    arms = list(dict.fromkeys(runs.loc[(runs["role"] == "student") & runs["teacher_secondary_std"].notna(), "arm"]))

    def show(selected):
        return plot_error_vs_secondary_std(runs, summary, arms=list(selected) or arms)

    return FigureView(show, {"selected": w.SelectMultiple(options=arms, value=tuple(arms), description="arms", rows=8)})

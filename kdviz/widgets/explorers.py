"""Explorers over results already in memory: ICC reports, error curves, a study's table."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from ..correlation import ICCReport
from ..experiment_plots import plot_error_vs_secondary_std
from ..plots import plot_error_curves, plot_icc, plot_icc_comparison
from .view import FigureView, w


def icc_explorer(reports: Mapping[str, ICCReport], teacher_of: Mapping[str, str] | None = None) -> FigureView:
    """Pick a model and see its ICC heatmap, secondary or full, clustered or not; for a student
    whose teacher is in `teacher_of`, optionally teacher | student | difference."""
    if not reports:
        raise ValueError("icc_explorer needs at least one ICCReport")
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


def curves_explorer(runs: Mapping[str, object]) -> FigureView:
    """Pick runs (TrainResults or history DataFrames) and a split; see their error curves (the test
    split as a curve for runs trained with eval_test=True, else as the chosen epoch's point)."""
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


def study_explorer(runs: pd.DataFrame, summary: pd.DataFrame | None = None) -> FigureView:
    """Pick student arms of an experiment grid; see their error against the teacher's secondary std."""
    arms = list(dict.fromkeys(runs.loc[(runs["role"] == "student") & runs["teacher_secondary_std"].notna(), "arm"]))

    def show(selected):
        return plot_error_vs_secondary_std(runs, summary, arms=list(selected) or arms)

    return FigureView(show, {"selected": w.SelectMultiple(options=arms, value=tuple(arms), description="arms", rows=8)})

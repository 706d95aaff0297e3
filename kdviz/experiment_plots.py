"""Figures of an experiment's results: arms with error bars, sweep curves, and student error
against the teacher's secondary std. Every function returns a matplotlib Figure.
"""

from __future__ import annotations

import matplotlib.axes
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .deprecations import renamed, with_new_columns
from .fonts import short_label
from .inputs import read_table
from .plots import figure_for, settle

# The teacher measures a student's error is plotted against: (axis label, what the title calls it).
TEACHER_MEASURES = {
    "teacher_secondary_std": (
        "teacher secondary std (std of its secondary probabilities, test split)",
        "teacher expressiveness",
    ),
    "teacher_truth_distance": (
        "teacher's ICC distance to the true ICC, ||M_true - M_t||_F / C (test split)",
        "the teacher's distance to the truth",
    ),
}


def plot_error_vs_secondary_std(
    runs: pd.DataFrame | str,
    summary: pd.DataFrame | str | None = None,
    *,
    arms: list[str] | None = None,
    ax: matplotlib.axes.Axes | None = None,
    measure: str = "teacher_secondary_std",
) -> Figure:
    """Does a more expressive teacher teach better? Student runs of a grid (the tidy table of
    kdviz.experiments), optionally only `arms`: each run a faint dot at (its teacher's secondary std,
    its test error); each (arm, variant) a marker at its means over seeds, ringed in black for
    the variant chosen on validation (from `summary`). The title gives Pearson's r over the
    (arm, variant) means, where teachers differ and seed noise is averaged out. `runs` and
    `summary` may also be a sweep folder (its runs.csv, summary.csv). `measure`: the teacher column
    on the x axis, one of TEACHER_MEASURES (teacher_truth_distance on `planted`)."""
    if measure not in TEACHER_MEASURES:
        raise ValueError(f"measure must be one of {list(TEACHER_MEASURES)}, got {measure!r}")
    runs = with_new_columns(read_table(runs, "plot_error_vs_secondary_std"))  # a runs.csv from before the rename too
    summary = None if summary is None else read_table(summary, "plot_error_vs_secondary_std", "summary")
    students = runs[(runs["role"] == "student") & runs[measure].notna()] if measure in runs else runs.iloc[:0]
    if arms is not None:
        students = students[students["arm"].isin(arms)]
    if students.empty:
        raise ValueError("no student run with a teacher in the table: run a grid with student arms first")
    fig, ax = figure_for(ax, (7, 4.5))
    means = students.groupby(["arm", "variant"], sort=False)[[measure, "test_top1_err"]].mean()
    for i, (arm, group) in enumerate(students.groupby("arm", sort=False)):
        color = f"C{i % 10}"
        ax.plot(group[measure], 100 * group["test_top1_err"], ".", color=color, alpha=0.25)
        arm_means = means.loc[arm]
        ax.plot(
            arm_means[measure], 100 * arm_means["test_top1_err"], "o", color=color, markersize=7, label=short_label(arm)
        )
        if summary is not None and arm in summary.index:
            chosen = arm_means.loc[summary.loc[arm, "variant"]]
            ax.plot(
                [chosen[measure]],
                [100 * chosen["test_top1_err"]],
                "o",
                markersize=11,
                markerfacecolor="none",
                markeredgecolor="black",
            )
    x, y = means[measure], means["test_top1_err"]
    r = float(np.corrcoef(x, y)[0, 1]) if len(means) > 2 and x.std() > 0 else float("nan")
    ax.set_xlabel(TEACHER_MEASURES[measure][0])
    ax.set_ylabel("student test error (%)")
    ax.set_title(f"student error against {TEACHER_MEASURES[measure][1]}\n(Pearson r over arm-variant means = {r:.2f})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    settle(fig)
    return fig


plot_error_vs_sigma2 = renamed("plot_error_vs_sigma2", plot_error_vs_secondary_std)


def plot_arms(
    summary: pd.DataFrame | str, column: str = "diff_vs_baseline", *, ax: matplotlib.axes.Axes | None = None
) -> Figure:
    """The student arms of a summary (kdviz.experiments.summarize), one row each at its chosen
    variant, best at the top: `column` with one standard error either side, "diff_vs_baseline"
    (paired test-error difference to the baseline, points; 0 marked) or "test_err" (%).
    `summary` may also be a sweep folder (its summary.csv)."""
    summary = read_table(summary, "plot_arms", "summary")
    se = {"diff_vs_baseline": "diff_se", "test_err": "test_err_se"}
    if column not in se:
        raise ValueError(f"column must be one of {', '.join(se)}, got {column!r}")
    if column not in summary:
        raise ValueError(
            f"the summary has no {column!r} column: summarize(runs, baseline) with a baseline arm gives it"
        )
    rows = summary[(summary["role"] == "student") & summary[column].notna()].sort_values(column, ascending=False)
    fig, ax = figure_for(ax, (7, 1.2 + 0.35 * len(rows)))
    ax.errorbar(rows[column], np.arange(len(rows)), xerr=rows[se[column]].fillna(0), fmt="o", color="C0", capsize=3)
    ax.set_yticks(np.arange(len(rows)), [f"{short_label(arm)} ({int(n)} seeds)" for arm, n in rows["seeds"].items()])
    if column == "diff_vs_baseline":
        ax.axvline(0, color="grey", lw=1)
        ax.set_xlabel("test error minus the baseline's, seed by seed\n(points, < 0 is better; mean +- se over seeds)")
    else:
        ax.set_xlabel("test error (%), mean +- se over seeds")
    ax.grid(alpha=0.3, axis="x")
    settle(fig)
    return fig


def plot_sweep(
    runs: pd.DataFrame | str, x: str, *, arms: list[str] | None = None, ax: matplotlib.axes.Axes | None = None
) -> Figure:
    """Sweep curves from the tidy table of runs: for each arm (optionally only `arms`), the mean
    test error over seeds at each value of column `x` (e.g. kdviz.experiments.swept(runs, key)
    as a column; rows where it is NaN are left out), with one standard error as a bar. The value
    with the lowest mean validation error, the one an experiment chooses, is ringed in black.
    A log x-axis when the values are positive and span a factor of 10 or more. `runs` may also
    be a sweep folder (its runs.csv)."""
    runs = read_table(runs, "plot_sweep")
    rows = runs[runs[x].notna()] if x in runs else runs.iloc[:0]
    if arms is not None:
        rows = rows[rows["arm"].isin(arms)]
    if rows.empty:
        raise ValueError(
            f"no run has a value of {x!r}: add it as a column of the runs table (see kdviz.experiments.swept)"
        )
    fig, ax = figure_for(ax, (7, 4.5))
    for i, (arm, group) in enumerate(rows.groupby("arm", sort=False)):
        stats = (100 * group[["val_top1_err", "test_top1_err"]]).groupby(group[x]).agg(["mean", "sem", "count"])
        test = stats["test_top1_err"]
        ax.errorbar(
            test.index,
            test["mean"],
            yerr=test["sem"].fillna(0),
            fmt="o-",
            color=f"C{i % 10}",
            capsize=3,
            label=f"{short_label(arm)} ({int(test['count'].max())} seeds)",
        )
        best = stats["val_top1_err"]["mean"].idxmin()
        ax.plot([best], [test.loc[best, "mean"]], "o", markersize=12, markerfacecolor="none", markeredgecolor="black")
    values = rows[x].astype(float)
    if (values > 0).all() and values.max() >= 10 * values.min():
        ax.set_xscale("log")
    ax.set_xticks(sorted(values.unique()), [f"{v:g}" for v in sorted(values.unique())])
    ax.minorticks_off()
    ax.set_xlabel(x)
    ax.set_ylabel("test error (%), mean +- se over seeds")
    ax.set_title(f"sweep of {x}: ringed, the value chosen on validation", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    settle(fig)
    return fig

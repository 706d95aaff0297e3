"""Figures: ICC heatmaps, teacher / student / difference side by side, error curves.

Every function returns a matplotlib Figure, so a notebook cell shows it and a script saves it.
"""
from __future__ import annotations

from typing import Mapping

import matplotlib.axes
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.figure import Figure

from .correlation import ICCReport, sigma2_per_sample

MatrixLike = ICCReport | pd.DataFrame


def _new_figure(figsize: tuple[float, float], ncols: int = 1):
    # Made through pyplot so that notebooks register their PNG display for figures, then closed
    # at once: pyplot keeps no reference (no leak in loops) and the notebook shows the figure
    # once, as the cell's value, instead of twice.
    fig, axes = plt.subplots(1, ncols, figsize=figsize)
    plt.close(fig)
    return fig, axes


def _frame(m: MatrixLike, secondary: bool) -> pd.DataFrame:
    return m.to_frame(secondary=secondary) if isinstance(m, ICCReport) else m


def cluster_order(frame: pd.DataFrame) -> list:
    """Class order from average-linkage clustering of the symmetrised matrix, so that classes the
    model confuses with each other sit next to each other. NaN rows go last."""
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    present = ~frame.isna().all(axis=1)
    labels = list(frame.index[present])
    if len(labels) < 3:
        return list(frame.index)
    sub = frame.loc[labels, labels].to_numpy(dtype=float)
    sim = (sub + sub.T) / 2
    np.fill_diagonal(sim, 0.0)
    dist = sim.max() - sim
    np.fill_diagonal(dist, 0.0)
    order = leaves_list(linkage(squareform(dist, checks=False), method="average"))
    return [labels[i] for i in order] + list(frame.index[~present])


def plot_icc(
    m: MatrixLike,
    *,
    secondary: bool = False,
    cluster: bool = False,
    title: str | None = None,
    ax: matplotlib.axes.Axes | None = None,
    center: float | None = None,
    cmap: str = "viridis",
    annotate: bool | None = None,
) -> Figure:
    """Heatmap of one ICC matrix (rows: true class, columns: predicted class). NaN rows stay blank.

    secondary=True shows the secondary ICC (target confidence removed), the class-to-class structure.
    """
    frame = _frame(m, secondary)
    if cluster:
        order = cluster_order(frame)
        frame = frame.loc[order, order]
    if ax is None:
        size = max(4.0, 0.45 * len(frame) + 2)
        fig, ax = _new_figure((size + 1, size))
    else:
        fig = ax.figure
    annotate = len(frame) <= 12 if annotate is None else annotate
    sns.heatmap(frame, ax=ax, cmap=cmap, center=center, square=True, annot=annotate, fmt=".2f",
                annot_kws={"fontsize": 7}, cbar_kws={"shrink": 0.8})
    ax.set_title(title or ("secondary ICC" if secondary else "ICC"))
    return fig


def plot_icc_comparison(teacher: MatrixLike, student: MatrixLike, *, secondary: bool = True, cluster: bool = False,
                        names: tuple[str, str] = ("teacher", "student")) -> Figure:
    """Teacher, student and teacher - student heatmaps side by side, on one class order."""
    t, s = _frame(teacher, secondary), _frame(student, secondary)
    if cluster:
        order = cluster_order(t)
        t, s = t.loc[order, order], s.loc[order, order]
    size = max(4.0, 0.4 * len(t) + 2)
    fig, axes = _new_figure((3 * size + 3, size), ncols=3)
    vmax = np.nanmax([t.to_numpy(), s.to_numpy()])
    kind = "secondary ICC" if secondary else "ICC"
    annotate = len(t) <= 12
    for ax, frame, label in ((axes[0], t, names[0]), (axes[1], s, names[1])):
        sns.heatmap(frame, ax=ax, cmap="viridis", vmin=0, vmax=vmax, square=True, annot=annotate, fmt=".2f",
                    annot_kws={"fontsize": 6}, cbar_kws={"shrink": 0.8})
        ax.set_title(f"{label}: {kind}")
    diff = t - s
    lim = np.nanmax(np.abs(diff.to_numpy())) or 1.0
    sns.heatmap(diff, ax=axes[2], cmap="RdBu_r", vmin=-lim, vmax=lim, square=True, annot=annotate, fmt=".2f",
                annot_kws={"fontsize": 6}, cbar_kws={"shrink": 0.8})
    axes[2].set_title(f"{names[0]} - {names[1]}")
    fig.tight_layout()
    return fig


def plot_error_curves(runs: Mapping[str, "pd.DataFrame | object"], *, metric: str = "top1_err",
                      splits: tuple[str, ...] = ("val",), ax: matplotlib.axes.Axes | None = None,
                      title: str | None = None) -> Figure:
    """Error per epoch of several runs on one axis. `runs` maps a label to a TrainResult or its
    history DataFrame. Solid lines: the first split; dashed: the second; a dot marks the epoch
    selected on validation."""
    if ax is None:
        fig, ax = _new_figure((7, 4.5))
    else:
        fig = ax.figure
    styles = ["-", "--", ":"]
    for i, (label, run) in enumerate(runs.items()):
        history = getattr(run, "history", run)
        color = f"C{i % 10}"
        for split, style in zip(splits, styles):
            column = f"{split}_{metric}"
            if column not in history:
                raise KeyError(f"history of {label!r} has no column {column!r}; columns: {list(history.columns)}")
            ax.plot(history["epoch"], 100 * history[column], style, color=color, label=f"{label} ({split})")
        best = getattr(run, "best_epoch", None)
        if best is not None and best >= 0:
            row = history.set_index("epoch").loc[best]
            ax.plot([best], [100 * row[f"{splits[0]}_{metric}"]], "o", color=color)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{metric.replace('_', ' ')} (%)")
    ax.set_title(title or "error curves")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_error_vs_sigma2(runs: pd.DataFrame, summary: pd.DataFrame | None = None, *, arms: list[str] | None = None,
                         ax: matplotlib.axes.Axes | None = None) -> Figure:
    """Does a more expressive teacher teach better? Student runs of a grid (the tidy table of
    kdviz.experiments), optionally only `arms`: each run a faint dot at (its teacher's sigma2,
    its test error); each (arm, variant) a marker at its means over seeds, ringed in black for
    the variant chosen on validation (from `summary`). The title gives Pearson's r over the
    (arm, variant) means, where teachers differ and seed noise is averaged out."""
    students = runs[(runs["role"] == "student") & runs["teacher_sigma2"].notna()] if "teacher_sigma2" in runs else runs.iloc[:0]
    if arms is not None:
        students = students[students["arm"].isin(arms)]
    if students.empty:
        raise ValueError("no student run with a teacher in the table: run a grid with student arms first")
    if ax is None:
        fig, ax = _new_figure((7, 4.5))
    else:
        fig = ax.figure
    means = students.groupby(["arm", "variant"], sort=False)[["teacher_sigma2", "test_top1_err"]].mean()
    for i, (arm, group) in enumerate(students.groupby("arm", sort=False)):
        color = f"C{i % 10}"
        ax.plot(group["teacher_sigma2"], 100 * group["test_top1_err"], ".", color=color, alpha=0.25)
        arm_means = means.loc[arm]
        ax.plot(arm_means["teacher_sigma2"], 100 * arm_means["test_top1_err"], "o", color=color, markersize=7, label=arm)
        if summary is not None and arm in summary.index:
            chosen = arm_means.loc[summary.loc[arm, "variant"]]
            ax.plot([chosen["teacher_sigma2"]], [100 * chosen["test_top1_err"]], "o", markersize=11, markerfacecolor="none",
                    markeredgecolor="black")
    x, y = means["teacher_sigma2"], means["test_top1_err"]
    r = float(np.corrcoef(x, y)[0, 1]) if len(means) > 2 and x.std() > 0 else float("nan")
    ax.set_xlabel("teacher sigma2 (spread of secondary probabilities, test split)")
    ax.set_ylabel("student test error (%)")
    ax.set_title(f"student error against teacher expressiveness (r over arm-variant means = {r:.2f})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def plot_training(history: pd.DataFrame, snapshot: ICCReport | None = None, *, epochs: int | None = None,
                  label: str = "run") -> Figure:
    """One run as it trains: train and validation error per epoch (from its history DataFrame)
    and, given `snapshot` (an ICCReport, e.g. the epoch's validation ICC), its secondary ICC
    beside the curves. `epochs` fixes the x-axis to the whole run, so the curve grows across it."""
    fig, axes = _new_figure((11.5, 4.5) if snapshot is not None else (7, 4.5), ncols=2 if snapshot is not None else 1)
    curve_ax = axes[0] if snapshot is not None else axes
    last = int(history["epoch"].iloc[-1])
    plot_error_curves({label: history}, splits=("val", "train"), ax=curve_ax, title=f"{label}: epoch {last}")
    if epochs is not None:
        curve_ax.set_xlim(-0.5, epochs - 0.5)
    if snapshot is not None:
        plot_icc(snapshot, secondary=True, ax=axes[1], title=f"secondary ICC (val), epoch {last}", annotate=False)
        fig.tight_layout()  # again, now that the heatmap is there
    return fig


def plot_soft_targets(logits, target: int, taus: float | tuple[float, ...] = 4.0, *,
                      class_names: tuple[str, ...] | None = None) -> Figure:
    """One image's soft targets: softmax(z / tau) over the C classes as bars, one group per tau.

    logits: [C] (one image); target: its true class. The title gives, for each tau, the target's
    probability, the secondary mass 1 - p_target (what KD passes on beyond the label) and sigma2,
    the spread (standard deviation) of the C - 1 probabilities renormalised without the target.
    """
    z = torch.as_tensor(logits, dtype=torch.float64).reshape(1, -1)
    taus = (taus,) if isinstance(taus, (int, float)) else tuple(taus)
    c = z.shape[1]
    names = list(class_names) if class_names is not None else [str(k) for k in range(c)]
    y = torch.tensor([target])
    fig, ax = _new_figure((min(14.0, max(6.0, 0.2 * c * len(taus) + 2)), 4))
    width = 0.8 / len(taus)
    lines = []
    for i, tau in enumerate(taus):
        p = torch.softmax(z[0] / tau, dim=0)
        ax.bar(np.arange(c) + (i - (len(taus) - 1) / 2) * width, p.numpy(), width, label=f"tau = {tau:g}", color=f"C{i % 10}")
        sigma2 = float(sigma2_per_sample(z, y, tau)[0])
        lines.append(f"tau {tau:g}: p(target) {float(p[target]):.3f}, secondary mass {1 - float(p[target]):.3f}, sigma2 {sigma2:.4f}")
    long_names = max(len(n) for n in names) > 3
    ax.set_xticks(np.arange(c), names, rotation=45 if long_names else 0, ha="right" if long_names else "center")
    ax.get_xticklabels()[target].set_fontweight("bold")
    ax.set_ylabel("probability")
    ax.set_ylim(0, 1)
    ax.set_title("\n".join(lines), fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig

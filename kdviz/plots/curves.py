"""Curves over epochs (error curves of runs, a run's live view) and one image's soft targets at
several temperatures."""

from __future__ import annotations

import matplotlib.axes
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..correlation import ICCReport, secondary_std_per_sample
from ..fonts import short_label, warn_missing_glyphs
from ..inputs import open_runs
from .figure import DISPLAY_WIDTH, figure_for, new_figure, settle
from .heatmaps import plot_icc


def plot_error_curves(
    runs,
    *,
    metric: str = "top1_err",
    splits: tuple[str, ...] = ("val",),
    ax: matplotlib.axes.Axes | None = None,
    title: str | None = None,
    mark_epoch: int | None = None,
    zoom: bool = True,
) -> Figure:
    """Error per epoch of several runs on one axis. `runs`: a run directory, TrainResult, history
    DataFrame or sweep folder, or a dict {label: any of these} (kdviz.inputs). Solid lines: the
    first split; dashed: the second; a dot marks the epoch selected on validation; a dotted
    vertical line marks `mark_epoch`. A split evaluated on some epochs only (the test split of a
    run without eval_test: the chosen epoch) shows as points.

    zoom=True frames the y-axis on the values drawn, every epoch of every curve inside it (see
    `error_ylim`); zoom=False shows the whole scale, 0 to 100 %.
    """
    records = open_runs(runs, "plot_error_curves", finished=True)
    fig, ax = figure_for(ax, (7, 4.5))
    styles = ["-", "--", ":"]
    framed = []
    for i, (name, run) in enumerate(records.items()):
        history = run.history
        color = f"C{i % 10}"
        for split, style in zip(splits, styles):
            column = f"{split}_{metric}"
            if column not in history:
                raise KeyError(f"history of {name!r} has no column {column!r}; columns: {list(history.columns)}")
            values = history[column].astype(float)
            # A split evaluated on some epochs only (the test split without eval_test): its points.
            marker = "o" if values.isna().any() else None
            ax.plot(
                history["epoch"],
                100 * values,
                style,
                marker=marker,
                color=color,
                label=f"{short_label(name)} ({split})",
            )
            framed.append(100 * values.to_numpy())
        best = run.best_epoch
        if best is not None and best >= 0:
            row = history.set_index("epoch").loc[best]
            ax.plot([best], [100 * row[f"{splits[0]}_{metric}"]], "o", color=color)
    if mark_epoch is not None:
        ax.axvline(mark_epoch, color="0.25", linestyle=":", linewidth=1.2)
        ax.annotate(
            f"epoch {mark_epoch}",
            (mark_epoch, 0),
            xycoords=("data", "axes fraction"),
            xytext=(3, 4),
            textcoords="offset points",
            fontsize=8,
            color="0.25",
        )  # the legend sits at the top
    ylim = error_ylim(framed) if zoom else (0.0, 100.0)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{metric.replace('_', ' ')} (%)")
    ax.set_title(title or "error curves")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    settle(fig)
    return fig


def error_ylim(curves: list[np.ndarray], pad: float = 0.1) -> tuple[float, float] | None:
    """(low, high) in percent that brackets every value of every curve (no epoch out of the
    frame), padded by `pad` of the span (at least 0.5 points), within [0, 100]. None when there
    is nothing to bracket."""
    values = np.concatenate(curves) if curves else np.array([])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    low, high = float(values.min()), float(values.max())
    margin = max(pad * (high - low), 0.5)
    return max(0.0, low - margin), min(100.0, high + margin)


def plot_training(
    history, snapshot: ICCReport | None = None, *, epochs: int | None = None, label: str = "run"
) -> Figure:
    """One run as it trains: train and validation error per epoch (from its history DataFrame, or
    a run directory or TrainResult) and, given `snapshot` (an ICCReport, e.g. the epoch's
    validation ICC), its secondary ICC beside the curves. `epochs` fixes the x-axis to the whole
    run, so the curve grows across it. DISPLAY_WIDTH inches wide at most: shown unshrunk."""
    records = open_runs(history, "plot_training", kinds=("dir", "result", "history"), finished=True)
    if len(records) != 1:
        raise ValueError(f"plot_training draws one run; got {len(records)}: {list(records)[:4]}")
    history = next(iter(records.values())).history
    fig, axes = new_figure(
        (DISPLAY_WIDTH, 4.5) if snapshot is not None else (7, 4.5), ncols=2 if snapshot is not None else 1
    )
    curve_ax = axes[0] if snapshot is not None else axes
    last = int(history["epoch"].iloc[-1])
    plot_error_curves(
        {label: history}, splits=("val", "train"), ax=curve_ax, title=f"{short_label(label)}: epoch {last}"
    )
    if epochs is not None:
        curve_ax.set_xlim(-0.5, epochs - 0.5)
    if snapshot is not None:
        plot_icc(snapshot, secondary=True, ax=axes[1], title=f"secondary ICC (val), epoch {last}", annotate=False)
    return fig


def plot_soft_targets(
    logits, target: int, taus: float | tuple[float, ...] = 4.0, *, class_names: tuple[str, ...] | None = None
) -> Figure:
    """One image's soft targets: softmax(z / tau) over the C classes as bars, one group per tau.

    logits: [C] (one image); target: its true class. The title gives, for each tau, the target's
    probability, the secondary mass 1 - p_target (what KD passes on beyond the label) and the secondary std,
    the spread (standard deviation) of the C - 1 probabilities renormalised without the target.
    """
    z = torch.as_tensor(logits, dtype=torch.float64).reshape(1, -1)
    taus = (taus,) if isinstance(taus, (int, float)) else tuple(taus)
    c = z.shape[1]
    names = list(class_names) if class_names is not None else [str(k) for k in range(c)]
    y = torch.tensor([target])
    fig, ax = new_figure((min(DISPLAY_WIDTH, max(6.0, 0.2 * c * len(taus) + 2)), 4))
    warn_missing_glyphs(names)
    width = 0.8 / len(taus)
    lines = []
    for i, tau in enumerate(taus):
        p = torch.softmax(z[0] / tau, dim=0)
        ax.bar(
            np.arange(c) + (i - (len(taus) - 1) / 2) * width,
            p.numpy(),
            width,
            label=f"tau = {tau:g}",
            color=f"C{i % 10}",
        )
        secondary_std = float(secondary_std_per_sample(z, y, tau)[0])
        lines.append(
            f"tau {tau:g}: p(target) {float(p[target]):.3f}, secondary mass {1 - float(p[target]):.3f}, secondary std {secondary_std:.4f}"
        )
    long_names = max(len(n) for n in names) > 3
    shown = [short_label(name) for name in names]
    ax.set_xticks(np.arange(c), shown, rotation=45 if long_names else 0, ha="right" if long_names else "center")
    ax.get_xticklabels()[target].set_fontweight("bold")
    ax.set_ylabel("probability")
    ax.set_ylim(0, 1)
    ax.set_title("\n".join(lines), fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    settle(fig)
    return fig

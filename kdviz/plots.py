"""Figures: ICC heatmaps, teacher / student / difference side by side, error curves, a run's
live view and soft targets; an experiment's results are in kdviz.experiment_plots.

Every function returns a matplotlib Figure, so a notebook cell shows it and a script saves it.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.axes
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from seaborn.utils import relative_luminance

from .correlation import ICCReport, secondary_std_per_sample

MatrixLike = ICCReport | pd.DataFrame

# JupyterLab shows a figure at 100 dpi, unshrunk up to about 1,000 px wide; a wider one is scaled
# down to the output area, its text with it. Figures here are at most this wide, in inches.
DISPLAY_WIDTH = 10.0
MIN_FONT, MAX_FONT = 7.0, 10.0  # points at display size: 7 pt is about 10 px at 100 dpi


def _new_figure(figsize: tuple[float, float], ncols: int = 1):
    # Made through pyplot so that notebooks register their PNG display for figures, then closed
    # at once: pyplot keeps no reference (no leak in loops) and the notebook shows the figure
    # once, as the cell's value, instead of twice.
    fig, axes = plt.subplots(1, ncols, figsize=figsize)
    plt.close(fig)
    return fig, axes


def figure_for(ax, figsize: tuple[float, float]):
    """(figure, axes) to draw on: `ax` and its figure, or a new figure of `figsize` when ax is None."""
    return _new_figure(figsize) if ax is None else (ax.figure, ax)


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

    secondary=True shows the secondary ICC (target confidence removed), the class-to-class
    structure; its diagonal is undefined and drawn as a grey gap. annotate=None writes the values
    in the cells when they fit at a readable size (see `annotate_cells`), True always, False never.
    """
    frame = _frame(m, secondary)
    if cluster:
        order = cluster_order(frame)
        frame = frame.loc[order, order]
    size = float(np.clip(0.45 * len(frame) + 2, 4.0, DISPLAY_WIDTH - 1))
    fig, ax = figure_for(ax, (size + 1, size))
    _heatmap(ax, frame, secondary=secondary, cmap=cmap, center=center)
    ax.set_title(title or ("secondary ICC" if secondary else "ICC"))
    fig.tight_layout()
    if annotate is not False:
        annotate_cells(ax, frame, force=bool(annotate))
    return fig


def plot_icc_comparison(
    teacher: MatrixLike,
    student: MatrixLike,
    *,
    secondary: bool = True,
    cluster: bool = False,
    names: tuple[str, str] = ("teacher", "student"),
) -> Figure:
    """Teacher, student and teacher - student heatmaps side by side, on one class order, in a
    figure DISPLAY_WIDTH inches wide (shown unshrunk in a notebook)."""
    t, s = _frame(teacher, secondary), _frame(student, secondary)
    if cluster:
        order = cluster_order(t)
        t, s = t.loc[order, order], s.loc[order, order]
    fig, axes = _new_figure((DISPLAY_WIDTH, DISPLAY_WIDTH / 3 + 1.4), ncols=3)
    off = ~np.eye(len(t), dtype=bool) if secondary else np.ones(t.shape, dtype=bool)
    both = np.concatenate([t.to_numpy()[off], s.to_numpy()[off]])
    kind = "secondary ICC" if secondary else "ICC"
    for ax, frame, label in ((axes[0], t, names[0]), (axes[1], s, names[1])):
        _heatmap(ax, frame, secondary=secondary, cmap="viridis", vmin=np.nanmin(both), vmax=np.nanmax(both), below=True)
        ax.set_title(f"{label}\n{kind}", fontsize=10)
    diff = t - s
    lim = np.nanmax(np.abs(diff.to_numpy()[off])) or 1.0
    _heatmap(axes[2], diff, secondary=secondary, cmap="RdBu_r", vmin=-lim, vmax=lim, below=True)
    axes[2].set_title(f"{names[0]}\nminus {names[1]}", fontsize=10)
    for ax in axes[1:]:
        ax.set_ylabel("")
    fig.tight_layout()
    for ax, frame in zip(axes, (t, s, diff)):
        annotate_cells(ax, frame)
    return fig


def _heatmap(ax, frame: pd.DataFrame, *, secondary: bool, cmap: str, below: bool = False, **scale) -> None:
    # The secondary ICC's diagonal is 0 by construction, not a measurement: masked, it shows as
    # a grey gap instead of the darkest colour, and it leaves the colour scale to the real values.
    mask = np.eye(len(frame), dtype=bool) if secondary else None
    # Side by side, colour bars go below the heatmaps: the figure's width is what limits the cells.
    bar = {"orientation": "horizontal", "shrink": 0.8, "pad": 0.16, "aspect": 30} if below else {"shrink": 0.8}
    sns.heatmap(frame, ax=ax, cmap=cmap, mask=mask, square=True, annot=False, cbar_kws=bar, **scale)
    ax.collections[0].colorbar.locator = MaxNLocator(nbins=4)  # tick labels that do not run together
    ax.set_facecolor("0.85")
    ax.tick_params(labelsize=8)


def annotate_cells(ax: matplotlib.axes.Axes, frame: pd.DataFrame, *, force: bool = False) -> None:
    """Write each drawn cell's value (".12", "-.05": values lie in [-1, 1]) in a font sized to the
    cell as a notebook displays the figure: a figure wider than DISPLAY_WIDTH inches is shrunk to
    it. The font is cell / 2.4 (four characters fit), at most MAX_FONT points; under MIN_FONT
    points the numbers are left out (many classes), unless `force`. Call after the layout is final."""
    fig = ax.figure
    ax.apply_aspect()
    box = ax.get_position()  # in figure fractions, after tight_layout and the square aspect
    width, height = fig.get_size_inches()
    shrink = min(1.0, DISPLAY_WIDTH / width)
    rows, cols = frame.shape
    cell_pt = 72 * shrink * min(box.width * width / cols, box.height * height / rows)
    font = min(MAX_FONT, cell_pt / 2.4)
    if font < MIN_FONT and not force:
        return
    mesh = ax.collections[0]  # the heatmap's cells; masked ones (NaN, the diagonal) are not drawn
    values = np.ma.masked_invalid(np.ma.asarray(mesh.get_array()).reshape(rows, cols))
    colors = mesh.cmap(mesh.norm(values.filled(0.0)))
    for i, j in zip(*np.nonzero(~np.ma.getmaskarray(values))):
        light = relative_luminance(colors[i, j]) > 0.408  # seaborn's threshold for dark text
        text = f"{values[i, j]:.2f}".replace("-0.00", "0.00").replace("0.", ".", 1)
        ax.text(
            j + 0.5, i + 0.5, text, ha="center", va="center", fontsize=font / shrink, color="0.15" if light else "white"
        )


def plot_error_curves(
    runs: Mapping[str, pd.DataFrame | object],
    *,
    metric: str = "top1_err",
    splits: tuple[str, ...] = ("val",),
    ax: matplotlib.axes.Axes | None = None,
    title: str | None = None,
    mark_epoch: int | None = None,
    zoom: bool = True,
) -> Figure:
    """Error per epoch of several runs on one axis. `runs` maps a label to a TrainResult or its
    history DataFrame. Solid lines: the first split; dashed: the second; a dot marks the epoch
    selected on validation; a dotted vertical line marks `mark_epoch`. A split evaluated on some
    epochs only (the test split of a run without eval_test: the chosen epoch) shows as points.

    zoom=True frames the y-axis on the first split's curves over the second half of each run (see
    `error_ylim`), where runs settle and differ: the near-chance first epochs, and a training
    error near 0, run off the frame instead of squeezing that band. zoom=False shows every value.
    """
    fig, ax = figure_for(ax, (7, 4.5))
    styles = ["-", "--", ":"]
    framed = []
    for i, (label, run) in enumerate(runs.items()):
        history = getattr(run, "history", run)
        color = f"C{i % 10}"
        for split, style in zip(splits, styles):
            column = f"{split}_{metric}"
            if column not in history:
                raise KeyError(f"history of {label!r} has no column {column!r}; columns: {list(history.columns)}")
            values = history[column].astype(float)
            # A split evaluated on some epochs only (the test split without eval_test): its points.
            marker = "o" if values.isna().any() else None
            ax.plot(history["epoch"], 100 * values, style, marker=marker, color=color, label=f"{label} ({split})")
        framed.append(100 * history[f"{splits[0]}_{metric}"].to_numpy(dtype=float))
        best = getattr(run, "best_epoch", None)
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
    ylim = error_ylim(framed) if zoom else None
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{metric.replace('_', ' ')} (%)")
    ax.set_title(title or "error curves")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def error_ylim(curves: list[np.ndarray], pad: float = 0.1) -> tuple[float, float] | None:
    """(low, high) in percent that brackets the second half of every curve (values from index
    len // 2 on), padded by `pad` of the span (at least 0.5 points), within [0, 100]. None when
    there is nothing to bracket."""
    values = np.concatenate([c[len(c) // 2 :] for c in curves]) if curves else np.array([])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    low, high = float(values.min()), float(values.max())
    margin = max(pad * (high - low), 0.5)
    return max(0.0, low - margin), min(100.0, high + margin)


def plot_training(
    history: pd.DataFrame, snapshot: ICCReport | None = None, *, epochs: int | None = None, label: str = "run"
) -> Figure:
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
    fig, ax = _new_figure((min(14.0, max(6.0, 0.2 * c * len(taus) + 2)), 4))
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
    ax.set_xticks(np.arange(c), names, rotation=45 if long_names else 0, ha="right" if long_names else "center")
    ax.get_xticklabels()[target].set_fontweight("bold")
    ax.set_ylabel("probability")
    ax.set_ylim(0, 1)
    ax.set_title("\n".join(lines), fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig

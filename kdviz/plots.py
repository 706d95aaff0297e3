"""Figures: ICC heatmaps, teacher / student / difference side by side, error curves, a run's
live view and soft targets; an experiment's results are in kdviz.experiment_plots.

Every function returns a matplotlib Figure, so a notebook cell shows it and a script saves it.
"""

from __future__ import annotations

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
from .fonts import short_label, use_fallback_fonts, warn_missing_glyphs
from .inputs import open_runs

MatrixLike = ICCReport | pd.DataFrame

# The legibility rule: every text of a figure is at least 10 px high as JupyterLab shows it in a
# window 1,400 px wide, whose output area is about 1,000 px wide (the file browser open). A
# figure is drawn at DPI dots per inch and shown unshrunk up to DISPLAY_WIDTH inches; a wider one
# is scaled down to the output area, its text with it. So text of f points shows at
# f * DPI / 72 * min(1, DISPLAY_WIDTH / width) px: figures here are at most DISPLAY_WIDTH inches
# wide and their text at least MIN_FONT points (7.2 pt * 100 / 72 = 10 px).
DPI = 100
DISPLAY_WIDTH = 10.0
MIN_FONT, MAX_FONT = 7.2, 10.0
UNIFORM = 1e-6  # a colour scale spanning less than this share of its values' magnitude spans rounding noise


def new_figure(figsize: tuple[float, float], ncols: int = 1):
    # Made through pyplot so that notebooks register their PNG display for figures, then closed
    # at once: pyplot keeps no reference (no leak in loops) and the notebook shows the figure
    # once, as the cell's value, instead of twice. Constrained layout keeps every tick label,
    # title and colour bar inside the figure and clear of the other axes, however long the names.
    # The font fallback is set here, for every figure kdviz makes, so that a theme set since the
    # last one (which resets font.family) cannot bring back boxes for names in other scripts.
    use_fallback_fonts()
    fig, axes = plt.subplots(1, ncols, figsize=figsize, layout="constrained")
    plt.close(fig)
    return fig, axes


def settle(fig: Figure) -> None:
    """Lay `fig` out now, so that positions read after it (annotate_cells) are final: kdviz's own
    figures by their constrained layout; a caller's figure without a layout engine by tight_layout."""
    engine = fig.get_layout_engine()
    if engine is None:
        fig.tight_layout()
        return
    for _ in range(2):  # the second pass places titles for the axes as the first one shrank them
        engine.execute(fig)


def figure_for(ax, figsize: tuple[float, float]):
    """(figure, axes) to draw on: `ax` and its figure, or a new figure of `figsize` when ax is None."""
    return new_figure(figsize) if ax is None else (ax.figure, ax)


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
    values = frame.to_numpy(dtype=float)[_drawn(frame, secondary)]
    vmin, vmax, uniform = colour_limits(values)
    _heatmap(ax, frame, secondary=secondary, cmap=cmap, center=center, vmin=vmin, vmax=vmax)
    ax.set_title((title or ("secondary ICC" if secondary else "ICC")) + _uniform_note(uniform, values))
    settle(fig)
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
    fig, axes = new_figure((DISPLAY_WIDTH, DISPLAY_WIDTH / 3 + 1.4), ncols=3)
    off = _drawn(t, secondary)
    both = np.concatenate([t.to_numpy(dtype=float)[off], s.to_numpy(dtype=float)[off]])
    vmin, vmax, uniform = colour_limits(both)
    kind = "secondary ICC" if secondary else "ICC"
    first, second = short_label(names[0]), short_label(names[1])
    for ax, frame, name in ((axes[0], t, first), (axes[1], s, second)):
        _heatmap(ax, frame, secondary=secondary, cmap="viridis", vmin=vmin, vmax=vmax, below=True)
        ax.set_title(f"{name}\n{kind}{_uniform_note(uniform, both)}", fontsize=10)
    diff = t - s
    lim = float(np.nanmax(np.abs(diff.to_numpy(dtype=float)[off]), initial=0.0))
    same = lim <= UNIFORM * float(np.nanmax(np.abs(both), initial=0.0))  # rounding noise, or exactly equal
    lim = 1.0 if same else lim
    _heatmap(axes[2], diff, secondary=secondary, cmap="RdBu_r", vmin=-lim, vmax=lim, below=True, difference=True)
    axes[2].set_title(f"{first}\nminus {second}" + ("\n(uniform: equal within rounding)" if same else ""), fontsize=10)
    for ax in axes[1:]:  # one class order for all three: the rows are named once, on the left
        ax.set_ylabel("")
        ax.tick_params(labelleft=False)
    settle(fig)
    for ax, frame in zip(axes, (t, s, diff)):
        annotate_cells(ax, frame)
    return fig


def _drawn(frame: pd.DataFrame, secondary: bool) -> np.ndarray:
    """[C, C] bool: the cells a heatmap draws (the secondary ICC's diagonal is masked)."""
    return ~np.eye(len(frame), dtype=bool) if secondary else np.ones(frame.shape, dtype=bool)


def colour_limits(values: np.ndarray) -> tuple[float | None, float | None, bool]:
    """(vmin, vmax, uniform) of a colour scale over probabilities `values` (NaN left out). When
    max - min is at most UNIFORM times their largest magnitude, the differences are rounding noise
    (e.g. softmax at tau = 1e8): the limits are fixed to [0, 1], the range of a probability, and
    uniform is True. (None, None, False) when no value is finite."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None, None, False
    low, high = float(finite.min()), float(finite.max())
    if high - low <= UNIFORM * float(np.abs(finite).max()):
        return 0.0, 1.0, True
    return low, high, False


def _uniform_note(uniform: bool, values: np.ndarray) -> str:
    return f"\n(uniform: every value {np.nanmean(values):.3g})" if uniform else ""


def _heatmap(
    ax, frame: pd.DataFrame, *, secondary: bool, cmap: str, below: bool = False, difference: bool = False, **scale
) -> None:
    # The secondary ICC's diagonal is 0 by construction, not a measurement: masked, it shows as
    # a grey gap instead of the darkest colour, and it leaves the colour scale to the real values.
    mask = np.eye(len(frame), dtype=bool) if secondary else None
    bar_label = "difference" if difference else "mean secondary probability" if secondary else "mean probability"
    # Side by side, colour bars go below the heatmaps: the figure's width is what limits the cells.
    bar = {"location": "bottom", "shrink": 0.8, "aspect": 30} if below else {"shrink": 0.8}
    names = [short_label(name) for name in frame.index]  # short in the figure; the frame keeps full names
    warn_missing_glyphs(frame.index)
    sns.heatmap(
        frame,
        ax=ax,
        cmap=cmap,
        mask=mask,
        square=True,
        annot=False,
        cbar_kws={**bar, "label": bar_label},
        xticklabels=names,
        yticklabels=names,
        **scale,
    )
    colorbar = ax.collections[0].colorbar
    colorbar.locator = MaxNLocator(nbins=4)  # tick labels that do not run together
    colorbar.ax.tick_params(labelsize=8)
    colorbar.set_label(bar_label, fontsize=8)
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

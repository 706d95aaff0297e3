"""ICC heatmaps: one model's, and teacher | student | difference side by side (classes in their order
or clustered, cells annotated where they are large enough to read, a colour scale that never spans
rounding noise)."""

from __future__ import annotations

import matplotlib.axes
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from seaborn.utils import relative_luminance

from ..correlation import ICCReport
from ..fonts import short_label, warn_missing_glyphs
from .figure import DISPLAY_WIDTH, MAX_FONT, MIN_FONT, UNIFORM, figure_for, new_figure, settle

MatrixLike = ICCReport | pd.DataFrame


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

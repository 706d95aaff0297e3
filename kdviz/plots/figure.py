"""What every kdviz figure shares: the legibility rule's sizes, a new figure in constrained layout with
the fallback fonts, and the layout done before positions are read."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from ..fonts import use_fallback_fonts

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

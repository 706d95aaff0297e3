"""Figures: ICC heatmaps, teacher / student / difference side by side, error curves, a run's
live view and soft targets; an experiment's results are in kdviz.experiment_plots.

Every function returns a matplotlib Figure, so a notebook cell shows it and a script saves it.
`figure.py` holds what every figure shares (the legibility rule: text at least 10 px in a 1,400 px
JupyterLab window), `heatmaps.py` the ICC heatmaps, `curves.py` the curves and soft targets.
"""

from .curves import error_ylim, plot_error_curves, plot_soft_targets, plot_training
from .figure import DISPLAY_WIDTH, DPI, MAX_FONT, MIN_FONT, UNIFORM, figure_for, new_figure, settle
from .heatmaps import MatrixLike, annotate_cells, cluster_order, colour_limits, plot_icc, plot_icc_comparison

__all__ = [
    "DISPLAY_WIDTH",
    "DPI",
    "MAX_FONT",
    "MIN_FONT",
    "MatrixLike",
    "UNIFORM",
    "annotate_cells",
    "cluster_order",
    "colour_limits",
    "error_ylim",
    "figure_for",
    "new_figure",
    "plot_error_curves",
    "plot_icc",
    "plot_icc_comparison",
    "plot_soft_targets",
    "plot_training",
    "settle",
]

"""Interactive explorers for notebooks: ipywidgets controls around the figures of kdviz.plots.

Each explorer is a FigureView: displayed as a cell's value it shows its controls, the figure as
a PNG image and a note, and redraws when a control changes. ipywidgets comes with
`pip install -e ".[notebooks]"`.
"""

from .explorers import curves_explorer, icc_explorer, study_explorer
from .run_explorer import run_explorer
from .view import Drawing, FigureView

__all__ = ["Drawing", "FigureView", "curves_explorer", "icc_explorer", "run_explorer", "study_explorer"]

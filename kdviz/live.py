"""Live training curves in a notebook: an `on_epoch` callback for kdviz.train.

    teacher = kd.train_teacher(data, "cnn", on_epoch=kd.LiveCurves(icc=True))

Each epoch redraws one figure (kdviz.plots.plot_training) in place, through a single IPython
display handle, below the cell's progress bar. Outside a notebook (no IPython kernel) it does
nothing, so scripts and tests can pass it too.
"""

from __future__ import annotations

import io
import time

import pandas as pd

from .correlation import ICCReport


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where display() reaches a cell's output), else False."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class LiveCurves:
    """`on_epoch` callback: redraws the run's train and validation error (and, with icc=True,
    the epoch's secondary ICC on the validation split) in one figure that updates in place.

    Drawing a figure takes tens of milliseconds, more than a whole epoch of a small model on
    digits, so it redraws only while its drawing time stays under `budget` (a fraction) of the
    run's time so far, and always at the first and the last epoch. `draws` and `draw_seconds`
    count what it did.

    The PNG is drawn at `dpi` (default 100, JupyterLab's own) and shown at its size, so its text
    keeps the size kdviz.plots gives every figure: at least 10 px in a 1,400 px wide window.
    """

    def __init__(self, *, icc: bool = False, label: str = "run", budget: float = 0.03, dpi: int = 100):
        if not 0 < budget <= 1:
            raise ValueError(f"budget is a fraction of the training time, in (0, 1]; got {budget}")
        self.icc, self.label, self.budget, self.dpi = icc, label, budget, dpi
        self.draws, self.draw_seconds = 0, 0.0
        self._handle = None
        self._last_epoch = -1

    def __call__(self, history: pd.DataFrame, snapshot: ICCReport, epochs: int) -> None:
        if not in_notebook():
            return
        epoch = int(history["epoch"].iloc[-1])
        if epoch <= self._last_epoch:  # the same callback passed to a second run: a display of its own
            self._handle, self.draws, self.draw_seconds = None, 0, 0.0
        self._last_epoch = epoch
        within_budget = self.draw_seconds <= self.budget * float(history["seconds"].sum())
        if self.draws and epoch < epochs - 1 and not within_budget:
            return
        start = time.perf_counter()
        self._show(self._png(history, snapshot, epochs))
        self.draws += 1
        self.draw_seconds += time.perf_counter() - start

    def _png(self, history, snapshot, epochs) -> bytes:
        from PIL import Image

        from .plots import plot_training

        fig = plot_training(history, snapshot if self.icc else None, epochs=epochs, label=self.label)
        drawn, small = io.BytesIO(), io.BytesIO()
        fig.savefig(drawn, format="png", dpi=self.dpi)
        # A 256-colour palette: the same picture in a third of the bytes, so that notebooks saved
        # with their outputs stay small.
        Image.open(drawn).convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE).save(small, format="png")
        return small.getvalue()

    def _show(self, png: bytes) -> None:
        from IPython.display import Image, display

        image = Image(data=png, format="png")
        if self._handle is None:
            self._handle = display(image, display_id=True)
        else:
            self._handle.update(image)

"""Figures of a dataset's true ICC (`planted`, docs/method.md §8): the truth as a heatmap, and how
far each run's ICC is from it, epoch by epoch."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .correlation import ICCReport, true_icc
from .data.base import DatasetSplits
from .losses.icc import secondary_icc
from .plots import annotate_cells, new_figure, plot_icc, settle


def truth_frame(source: ICCReport | DatasetSplits, *, tau: float = 4.0, secondary: bool = False) -> pd.DataFrame:
    """The true ICC as a DataFrame (rows: true class, columns: predicted class, by name): the
    truth an ICCReport carries (at its own tau), or a planted dataset's at `tau`."""
    if isinstance(source, ICCReport):
        truth, info = source.truth, source.info
    else:
        truth, info = true_icc(source, tau), source.info
    if truth is None:
        raise ValueError(
            f"{info.name} has no known true ICC; only a dataset whose Bayes posterior is known has one "
            '(kd.load_dataset("planted"))'
        )
    m = secondary_icc(truth) if secondary else truth
    names = pd.Index(info.class_names)
    return pd.DataFrame(
        m.to(torch.float64).numpy(), index=names.rename("true class"), columns=names.rename("predicted")
    )


def plot_truth(
    source: ICCReport | DatasetSplits,
    runs: Mapping[str, object] | None = None,
    *,
    tau: float = 4.0,
    secondary: bool = True,
    cluster: bool = False,
    mark_epoch: int | None = None,
) -> Figure:
    """The true ICC (see truth_frame) as a heatmap and, when `runs` are given ({name: TrainResult or
    history DataFrame} of runs on that dataset), their validation ICC's distance to it per epoch
    (val_truth_distance, ||M_true - M||_F / C), with `mark_epoch` marked."""
    frame = truth_frame(source, tau=tau, secondary=secondary)
    curves = {name: getattr(run, "history", run) for name, run in (runs or {}).items()}
    curves = {name: h for name, h in curves.items() if "val_truth_distance" in h and len(h)}
    fig, axes = new_figure((10.0, 4.4) if curves else (5.2, 4.4), ncols=2 if curves else 1)
    heat_ax = axes[0] if curves else axes
    kind = "secondary ICC" if secondary else "ICC"
    plot_icc(
        frame,
        secondary=secondary,
        cluster=cluster,
        ax=heat_ax,
        title=f"truth: the Bayes posterior's {kind}",
        annotate=False,
    )
    if curves:
        ax = axes[1]
        for i, (name, history) in enumerate(curves.items()):
            ax.plot(history["epoch"], history["val_truth_distance"], "-", color=f"C{i % 10}", label=name)
        if mark_epoch is not None:
            ax.axvline(mark_epoch, color="0.25", linestyle=":", linewidth=1.2)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(xlabel="epoch", ylabel="||M_true - M||_F / C", title="validation ICC's distance to the truth")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    settle(fig)  # new_figure's constrained layout: tight_layout would refuse once a colour bar exists
    annotate_cells(heat_ax, frame)
    return fig


__all__ = ["plot_truth", "truth_frame"]

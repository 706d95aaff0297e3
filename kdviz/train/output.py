"""What a training run writes and shows, and where: train()'s options besides the training itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path

from ..registry import check_keywords


@dataclass(frozen=True)
class Output:
    """train(output=Output(...)); each field may also be given to train() as a keyword of its own.

    out_dir: the run directory (config.json, metrics.csv, best.pt, last.pt); None writes nothing.
    resume: continue the run in out_dir from its last.pt (a finished run is only loaded).
    name: how progress bars and the result name the run (default "<model>:<objective>").
    progress: show a progress bar (and one while a teacher cache is built).
    keep_epochs: epochs (0-based) whose weights are also written to out_dir/epoch_<e>.pt, e.g. to
    distill from an intermediate checkpoint of a teacher.
    cache_dir: where the teacher cache is also stored on disk, for the next student of that teacher
    (default: $KDVIZ_CACHE or ~/.cache/kdviz/teacher_logits, used from
    kdviz.train.teacher.DISK_CACHE_IMAGES training images).
    on_epoch: called on the main process after each epoch as on_epoch(history, snapshot, epochs):
    the history so far (a DataFrame, one row per epoch), that epoch's validation ICCReport and the
    run's number of epochs; e.g. kdviz.LiveCurves() redraws curves in a notebook while it trains.
    """

    out_dir: str | Path | None = None
    resume: bool = False
    name: str | None = None
    progress: bool = True
    keep_epochs: tuple[int, ...] = ()
    cache_dir: str | Path | None = None
    on_epoch: Callable | None = None

    @property
    def run_dir(self) -> Path | None:
        return Path(self.out_dir) if self.out_dir is not None else None


def split_output(output: Output | None, keywords: dict, settings: list[str]) -> tuple[Output, dict]:
    """(`output` with the Output fields among train()'s `keywords` laid over it, the other
    keywords), refusing a keyword that is neither an Output field nor one of `settings` (the
    TrainConfig fields)."""
    names = [f.name for f in fields(Output)]
    check_keywords("train()", keywords, [*names, *settings])
    given = {k: v for k, v in keywords.items() if k in names}
    rest = {k: v for k, v in keywords.items() if k not in names}
    return replace(output or Output(), **given), rest

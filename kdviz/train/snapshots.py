"""A training run as a reader sees it while it trains or after: its history and its per-epoch ICC.

After each epoch the trainer writes the validation ICC of epoch e to
<run_dir>/icc/epoch_<e:04d>.pt (ICCReport.save's format, written atomically), next to
metrics.csv. A reader needs neither last.pt (which also holds the optimizer state) nor the data
set, and never sees half a file. A RunRecord reads a run directory again on `refresh()`, so a run
that is still training shows its new epochs; it also wraps a TrainResult in memory.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import torch

from ..correlation import ICCReport
from ..deprecations import with_new_columns

SNAPSHOT_DIR = "icc"


def snapshot_path(run_dir: str | os.PathLike, epoch: int) -> Path:
    """Where the trainer writes the validation ICC of `epoch` (0-based)."""
    return Path(run_dir) / SNAPSHOT_DIR / f"epoch_{epoch:04d}.pt"


class RunRecord:
    """One run: `history` (one row per finished epoch, as TrainResult.history), `snapshots`
    ({epoch: validation ICCReport}), `best_epoch` (the epoch selected on validation; None before
    the first). Built from a run directory or a TrainResult (anything with history, best_epoch
    and icc_snapshots)."""

    def __init__(self, name: str, source):
        self.name = name
        self.result = None if isinstance(source, (str, os.PathLike)) else source
        self.path = Path(source) if self.result is None else None
        if self.path is not None and not self.path.is_dir():
            raise FileNotFoundError(
                f"run {name!r}: no run directory at {self.path}; pass the out_dir a run was trained into"
            )
        self.history = pd.DataFrame({"epoch": pd.Series(dtype=int)})
        self.snapshots: dict[int, ICCReport] = {}
        self.best_epoch: int | None = None
        self._read: dict[Path, tuple[int, ICCReport]] = {}  # file -> (mtime, report): read each version once
        self.refresh()

    def refresh(self) -> RunRecord:
        """Read the run directory again: epochs finished since the last call appear."""
        if self.result is not None:
            self.history = self.result.history
            self.snapshots = dict(zip(self.result.history["epoch"].tolist(), self.result.icc_snapshots))
            self.best_epoch = self.result.best_epoch if self.result.best_epoch >= 0 else None
            return self
        for file in sorted((self.path / SNAPSHOT_DIR).glob("epoch_*.pt")):
            mtime = file.stat().st_mtime_ns
            if self._read.get(file, (None,))[0] != mtime:
                self._read[file] = (mtime, ICCReport.load(file))
        self.snapshots = {
            int(f.stem.split("_")[1]): report for f, (_, report) in sorted(self._read.items()) if f.exists()
        }
        self.history = _read_history(self.path / "metrics.csv", self.history)
        self.best_epoch = _best_epoch(self.path / "best.pt")
        return self

    @property
    def epochs(self) -> list[int]:
        return sorted(self.snapshots)

    def at(self, epoch: int) -> tuple[int, ICCReport] | None:
        """(e, ICC of epoch e) for the latest finished epoch e <= `epoch` (the run may not have got
        there yet); None when no epoch has finished."""
        earlier = [e for e in self.epochs if e <= epoch] or self.epochs[:1]
        return (earlier[-1], self.snapshots[earlier[-1]]) if earlier else None

    def waiting(self) -> str:
        """Why the run has no epoch to show, in words for the reader."""
        if self.path is not None and (self.path / "last.pt").exists():
            return (
                f"run {self.name!r} has a checkpoint but no ICC snapshots in {self.path / SNAPSHOT_DIR}: it was "
                "written by an older kdviz; train it again to explore its epochs"
            )
        if len(self.history):
            return f"run {self.name!r} has no ICC snapshots: a history holds only its curves"
        return (
            f"run {self.name!r} has no finished epoch yet (still in its first epoch, or not started): "
            "move the epoch slider or press reload to look again"
        )


def _read_history(path: Path, previous: pd.DataFrame) -> pd.DataFrame:
    # metrics.csv is rewritten in place after each epoch, so a read can catch it half-written: keep
    # the previous history then, and drop a last row cut short (its final column is empty).
    try:
        history = with_new_columns(pd.read_csv(path))  # metrics.csv of an earlier kdviz reads too
    except (FileNotFoundError, pd.errors.EmptyDataError, pd.errors.ParserError):
        return previous
    return history[history.iloc[:, -1].notna()].reset_index(drop=True) if len(history.columns) else previous


def _best_epoch(path: Path) -> int | None:
    if not path.exists():
        return None
    # mmap: the weights stay on disk; only the small fields are read.
    return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["epoch"])

"""What train() returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from torch import nn

from ..correlation import ICCReport
from ..data.base import DatasetInfo
from .config import TrainConfig


@dataclass
class TrainResult:
    """A finished run. `model` holds the weights of `best_epoch` (chosen on validation)."""

    name: str
    model: nn.Module
    history: pd.DataFrame
    best_epoch: int
    config: TrainConfig
    objective: str
    model_spec: dict
    info: DatasetInfo
    icc_snapshots: list[ICCReport] = field(repr=False, default_factory=list)
    out_dir: Path | None = None

    @property
    def best(self) -> pd.Series:
        """The history row of the selected epoch."""
        return self.history.set_index("epoch").loc[self.best_epoch]

"""The dataset table. Each entry is `(root: Path | None) -> (DatasetInfo, full train Split, test Split)`;
load_dataset carves validation and low-data subsets from the full training split."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..registry import Registry
from .base import DatasetInfo, Split

DatasetLoader = Callable[[Path | None], tuple[DatasetInfo, Split, Split]]

DATASETS: Registry[DatasetLoader] = Registry("dataset")

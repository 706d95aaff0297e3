"""The dataset table. Each entry is `(root: Path | None) -> (DatasetInfo, full train Split, test Split)`,
or `(info, train, test, val)` for a dataset that ships its own validation split (CINIC-10);
load_dataset carves validation (where none ships) and low-data subsets from the training split."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..registry import Registry
from .base import DatasetInfo, Split

DatasetLoader = Callable[[Path | None], tuple[DatasetInfo, Split, Split] | tuple[DatasetInfo, Split, Split, Split]]

DATASETS: Registry[DatasetLoader] = Registry("dataset")

"""The dataset table. Each entry is `(root: Path | None, **options) -> (DatasetInfo, full train Split, test Split)`,
or `(info, train, test, val)` for a dataset that ships its own validation split (CINIC-10), or
`(info, train, test, val or None, truth)` for a dataset whose generative model is known (`planted`);
load_dataset carves validation (where none ships) and low-data subsets from the training split.
Keyword-only parameters of an entry are its options, given as load_dataset(name, **options)."""

from __future__ import annotations

from collections.abc import Callable

from ..registry import Registry

DatasetLoader = Callable[..., tuple]

DATASETS: Registry[DatasetLoader] = Registry("dataset")

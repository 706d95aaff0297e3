"""Datasets by name, split into train / val / test, with reproducible low-data training subsets.

data = load_dataset("digits", seed=0)            # 1,132 train / 126 val / 539 test images
small = load_dataset("digits", seed=0, n_train=100)
planted = load_dataset("planted", classes=12, groups=4, label_noise=0.1)   # a dataset's own options
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import torch

from ..registry import check_keywords
from . import cifar, digits, folders, idx, planted  # noqa: F401  (importing them registers their datasets)
from .base import DatasetInfo, DatasetSplits, Split, normalize, stratified_order
from .planted import Planted, PlantedBayes
from .registry import DATASETS, SIZES, DatasetSize
from .roots import MissingDataError, data_roots


def dataset_names() -> list[str]:
    return DATASETS.names()


def _check_split_args(val_fraction: float, n_train: int | None, train_fraction: float | None) -> None:
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1) (both excluded), got {val_fraction!r}")
    _check_subset_args(n_train, train_fraction)


def _check_subset_args(n_train: int | None, train_fraction: float | None) -> None:
    if n_train is not None and train_fraction is not None:
        raise ValueError(
            f"give n_train or train_fraction, not both (got n_train={n_train!r}, train_fraction={train_fraction!r})"
        )
    if n_train is not None and (isinstance(n_train, bool) or not isinstance(n_train, int)):
        raise ValueError(f"n_train must be an int (a number of images), got {n_train!r}")
    if train_fraction is not None and not 0 < train_fraction <= 1:
        raise ValueError(f"train_fraction must be in (0, 1] (0 excluded), got {train_fraction!r}")


def split_indices(
    labels: torch.Tensor,
    *,
    val_fraction: float = 0.1,
    n_train: int | None = None,
    train_fraction: float | None = None,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, val indices), sorted int64, into a full training split with labels int64 [N].

    Validation is a stratified val_fraction of the images (every class at least once). Training
    is the rest, or a stratified subset of n_train images (or train_fraction of the rest, at
    least one per class). Both come from one generator seeded by `seed`: the same seed gives the
    same split, and with the same seed and val_fraction a smaller subset lies inside a larger one.
    """
    _check_split_args(val_fraction, n_train, train_fraction)
    num_classes = len(torch.unique(labels))
    n_val = _n_val(len(labels), num_classes, val_fraction)
    if len(labels) - n_val < num_classes:
        raise ValueError(
            f"val_fraction={val_fraction} leaves {len(labels) - n_val} of {len(labels)} images for training, "
            f"fewer than the {num_classes} classes; use a smaller val_fraction"
        )
    generator = torch.Generator().manual_seed(seed)
    order = stratified_order(labels, generator)
    val, rest = order[:n_val], order[n_val:]
    train = _training_subset(labels, rest, n_train, train_fraction, generator, "left after validation")
    return train.sort().values, val.sort().values


def _n_val(n_images: int, num_classes: int, val_fraction: float) -> int:
    """Validation images carved from a training split of n_images: val_fraction of them, and at
    least one per class."""
    return max(num_classes, round(val_fraction * n_images))


def n_train_range(name: str, val_fraction: float = 0.1, **options) -> tuple[int, int] | None:
    """(lowest, highest) n_train that load_dataset(name, n_train=..., **options) accepts, from the
    dataset's declared size (SIZES) without reading its files: one image per class, at most the
    training images left after validation. None for a dataset that declares no size."""
    size = SIZES.get(name)
    if size is None:
        return None
    if callable(size):  # a generated dataset: its size follows its options
        size = size(**options)
    left = size.train if size.own_val else size.train - _n_val(size.train, size.classes, val_fraction)
    return size.classes, left


def _training_subset(
    labels: torch.Tensor,
    rest: torch.Tensor,
    n_train: int | None,
    train_fraction: float | None,
    generator: torch.Generator,
    what: str,
) -> torch.Tensor:
    """`rest` (indices into labels), or a stratified subset of n_train / train_fraction of it."""
    if n_train is None and train_fraction is None:
        return rest
    num_classes = len(torch.unique(labels))
    if train_fraction is not None:
        n_train = max(num_classes, round(train_fraction * len(rest)))
    if not num_classes <= n_train <= len(rest):
        raise ValueError(
            f"n_train must be in [{num_classes}, {len(rest)}] (at least one image per class, at most the "
            f"{len(rest)} training images {what}), got {n_train}"
        )
    return rest[stratified_order(labels[rest], generator)][:n_train]


def subset_indices(
    labels: torch.Tensor, *, n_train: int | None = None, train_fraction: float | None = None, seed: int = 0
) -> torch.Tensor:
    """Sorted int64 indices of a stratified training subset of labels [N] (all of them when neither
    n_train nor train_fraction is given), for datasets that bring their own validation split. The
    same seed gives the same subset, and a smaller subset lies inside a larger one."""
    _check_subset_args(n_train, train_fraction)
    rest = torch.arange(len(labels))
    generator = torch.Generator().manual_seed(seed)
    return _training_subset(labels, rest, n_train, train_fraction, generator, "in the training split").sort().values


def load_dataset(
    name: str = "digits",
    root: str | os.PathLike | None = None,
    *,
    val_fraction: float = 0.1,
    n_train: int | None = None,
    train_fraction: float | None = None,
    seed: int = 0,
    **options,
) -> DatasetSplits:
    """Load a dataset by name (see dataset_names()) and split it into train / val / test.

    The test split is the dataset's own and never depends on `seed`; validation and the training
    subset are drawn from the full training split as described in split_indices. A dataset with
    its own validation split (its loader returns (info, train, test, val), e.g. cinic10) keeps it,
    val_fraction is then unused, and the training subset is drawn as in subset_indices. Files are
    looked for in `root`, else $KDVIZ_DATA, else the checkout's data/ folder; a MissingDataError
    says where it looked and how to get them. `options` are the dataset's own (dataset_options(name)),
    e.g. planted's classes, groups and label_noise.
    """
    loader = DATASETS.get(name)
    _check_split_args(val_fraction, n_train, train_fraction)
    check_keywords(f"dataset {name!r}", options, dataset_options(name))
    loaded = loader(None if root is None else Path(root), **options)
    info, full, test = loaded[:3]
    val = loaded[3] if len(loaded) > 3 else None  # the dataset's own validation split, if it ships one
    truth = loaded[4] if len(loaded) > 4 else None
    if val is not None:
        train_idx = subset_indices(full.labels, n_train=n_train, train_fraction=train_fraction, seed=seed)
        return DatasetSplits(info, full.subset(train_idx), val, test, truth)
    train_idx, val_idx = split_indices(
        full.labels, val_fraction=val_fraction, n_train=n_train, train_fraction=train_fraction, seed=seed
    )
    return DatasetSplits(info, full.subset(train_idx), full.subset(val_idx), test, truth)


def dataset_options(name: str) -> list[str]:
    """The options load_dataset(name, ...) takes for dataset `name` ([] for most datasets)."""
    params = inspect.signature(DATASETS.get(name)).parameters.values()
    return [p.name for p in params if p.kind is p.KEYWORD_ONLY]


__all__ = [
    "DATASETS",
    "DatasetInfo",
    "DatasetSize",
    "DatasetSplits",
    "MissingDataError",
    "Planted",
    "PlantedBayes",
    "Split",
    "data_roots",
    "dataset_names",
    "dataset_options",
    "load_dataset",
    "n_train_range",
    "normalize",
    "SIZES",
    "split_indices",
    "subset_indices",
]

"""The dataset table. Each entry is `(root: Path | None, **options) -> (DatasetInfo, full train Split, test Split)`,
or `(info, train, test, val)` for a dataset that ships its own validation split (CINIC-10), or
`(info, train, test, val or None, truth)` for a dataset whose generative model is known (`planted`);
load_dataset carves validation (where none ships) and low-data subsets from the training split.
Keyword-only parameters of an entry are its options, given as load_dataset(name, **options)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..registry import Registry

DatasetLoader = Callable[..., tuple]

DATASETS: Registry[DatasetLoader] = Registry("dataset")


@dataclass(frozen=True)
class DatasetSize:
    """What a dataset's official files hold, known without reading them: an experiment file's
    n_train is checked against it when the file is loaded, before anything trains."""

    train: int  # images in the full training split (before load_dataset carves validation from it)
    classes: int
    own_val: bool = False  # the dataset ships its own validation split (none is carved)


# The official releases' sizes (each loader's docstring says the same), or for a generated dataset a
# function of its options; a dataset registered without one (e.g. a user's own) has its n_train
# checked when it is loaded.
SIZES: dict[str, DatasetSize | Callable[..., DatasetSize]] = {
    "digits": DatasetSize(1_258, 10),
    "cifar10": DatasetSize(50_000, 10),
    "cifar100": DatasetSize(50_000, 100),
    "mnist": DatasetSize(60_000, 10),
    "fashion_mnist": DatasetSize(60_000, 10),
    "tiny_imagenet": DatasetSize(100_000, 200),
    "cinic10": DatasetSize(90_000, 10, own_val=True),
}

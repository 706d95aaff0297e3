"""scikit-learn's 8x8 handwritten digits: bundled with scikit-learn, so it needs no download."""

from __future__ import annotations

from pathlib import Path

import torch

from .base import DatasetInfo, Split, stratified_order
from .registry import DATASETS

TEST_FRACTION = 0.3
# The test split is fixed once and for all, whatever seed a run uses, so test errors of
# different runs are always measured on the same images.
TEST_SEED = 0

DIGITS_INFO = DatasetInfo(
    name="digits",
    class_names=tuple(str(k) for k in range(10)),
    image_shape=(1, 8, 8),
    # Mean and std of all 1,797 images (train and test) after the uint8 conversion below, in
    # units of pixel / 255: x = round(v * 255 / 16); x.mean() / 255, x.std() / 255.
    mean=(0.3053,),
    std=(0.3759,),
)


def digits_arrays() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 images as uint8 [1797, 1, 8, 8] (values 0..255) and their labels int64 [1797]."""
    # Imported here: scikit-learn takes about a second to import, and only this dataset needs it.
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # Pixel values are counts 0..16 (of a 4x4 block of a 32x32 bitmap); spread them over 0..255.
    values = torch.from_numpy(bunch.images).mul(255.0 / 16.0).round()
    images = values.to(torch.uint8).unsqueeze(1)
    labels = torch.from_numpy(bunch.target).long()
    return images, labels


def digits_test_indices(labels: torch.Tensor) -> torch.Tensor:
    """Sorted indices (int64) of the fixed, stratified 30 % test split, given the 1,797 labels."""
    n_test = round(TEST_FRACTION * len(labels))
    order = stratified_order(labels, torch.Generator().manual_seed(TEST_SEED))
    return order[:n_test].sort().values


@DATASETS.register("digits")
def digits(root: Path | None = None) -> tuple[DatasetInfo, Split, Split]:
    """(info, full train split of 1,258 images, test split of 539 images); `root` is unused."""
    images, labels = digits_arrays()
    is_test = torch.zeros(len(labels), dtype=torch.bool)
    is_test[digits_test_indices(labels)] = True
    return DIGITS_INFO, Split(images[~is_test], labels[~is_test]), Split(images[is_test], labels[is_test])

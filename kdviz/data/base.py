"""Dataset containers: uint8 images in memory, split into train / val / test.

Images stay uint8 until a batch is drawn (normalisation happens per batch, on the training
device), so that a dataset the size of CIFAR fits in memory and moves to a GPU cheaply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from ..device import to_device
from ..registry import unknown_name

AUGMENTS = (None, "crop_flip")


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is, independent of which images were loaded.

    mean / std are per channel, in units of pixel / 255. groups maps a group name to the class
    indices in it (for the group-mass measure), or is empty when the dataset has no groups.
    augment names the training-time augmentation the dataset is usually trained with: None, or
    "crop_flip" (kdviz.data.augment.random_crop_flip with padding `augment_padding`).
    """

    name: str
    class_names: tuple[str, ...]
    image_shape: tuple[int, int, int]  # (channels, height, width)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    groups: dict[str, tuple[int, ...]] = field(default_factory=dict)
    augment: str | None = None
    augment_padding: int = 4

    def __post_init__(self):
        # Refused here, where the info is made: a std of 0 would turn every batch into inf / NaN,
        # and the training loop could then only blame the learning rate.
        channels = self.image_shape[0] if len(self.image_shape) == 3 else None
        if channels is None or not all(isinstance(n, int) and n >= 1 for n in self.image_shape):
            raise ValueError(
                f"image_shape must be (channels, height, width) of whole numbers >= 1, got {self.image_shape!r}"
            )
        for what, values in (("mean", self.mean), ("std", self.std)):
            if len(values) != channels or not all(math.isfinite(v) for v in values):
                raise ValueError(f"{what} must be {channels} finite number(s), one per channel, got {values!r}")
        if not all(s > 0 for s in self.std):
            raise ValueError(f"every std must be > 0 (images are divided by it), got {self.std!r}")
        if self.augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {AUGMENTS}, got {self.augment!r}")
        if (
            isinstance(self.augment_padding, bool)
            or not isinstance(self.augment_padding, int)
            or self.augment_padding < 0
        ):
            raise ValueError(f"augment_padding must be an int >= 0, got {self.augment_padding!r}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_to_group(self) -> list[int] | None:
        """Group index of each class, or None when the dataset has no groups."""
        if not self.groups:
            return None
        out = [-1] * self.num_classes
        for g, members in enumerate(self.groups.values()):
            for k in members:
                out[k] = g
        return out


@dataclass
class Split:
    """images: uint8 [N, C, H, W]; labels: int64 [N]."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be uint8 [N, C, H, W], got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels must be [N] = [{self.images.shape[0]}], got {tuple(self.labels.shape)}")
        self.labels = self.labels.long()

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: torch.Tensor) -> Split:
        return Split(self.images[index], self.labels[index])


@dataclass
class DatasetSplits:
    """The three splits; `truth` is the generative model of a dataset whose Bayes posterior is known
    (`planted`: its true ICC, Bayes error and Bayes classifier), None for every other dataset."""

    info: DatasetInfo
    train: Split
    val: Split
    test: Split
    truth: Any = None  # a kdviz.data.planted.Planted (not imported: planted.py builds on this module)

    @property
    def num_classes(self) -> int:
        return self.info.num_classes

    def split(self, name: str) -> Split:
        if name not in ("train", "val", "test"):
            raise unknown_name("split", name, ("train", "val", "test"))
        return getattr(self, name)

    def summary(self) -> str:
        return (
            f"{self.info.name}: {len(self.train)} train / {len(self.val)} val / {len(self.test)} test images, "
            f"{self.num_classes} classes, shape {self.info.image_shape}"
        )


def normalize(images: torch.Tensor, info: DatasetInfo) -> torch.Tensor:
    """uint8 [B, C, H, W] -> float [B, C, H, W], standardised with the dataset's mean and std."""
    x = images.float().div_(255.0)
    mean, std = to_device(torch.tensor([info.mean, info.std], dtype=x.dtype), x.device).view(2, 1, -1, 1, 1)
    return (x - mean) / std


def stratified_order(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A permutation of 0..N-1 (int64 [N]) whose every prefix is a stratified sample of labels [N].

    Each class is shuffled once with `generator`, and its j-th image gets the key (j + 0.5) / n_c:
    a prefix of n images then holds about n * n_c / N images of class c (Sainte-Lague
    apportionment, which never takes an image back as n grows), so a shorter prefix is always a
    subset of a longer one. The first image of every class is moved to the front, so that any
    prefix of at least num_classes images holds every class even when classes are unbalanced.
    """
    members, keys = [torch.empty(0, dtype=torch.long)], [torch.empty(0, dtype=torch.float64)]
    for c in torch.unique(labels).tolist():
        idx = (labels == c).nonzero().squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=generator)]
        key = (torch.arange(len(idx), dtype=torch.float64) + 0.5) / len(idx)
        key[0] = -1.0
        members.append(idx)
        keys.append(key)
    members_cat = torch.cat(members)
    # Stable sort: equal keys keep class order, so the permutation depends on the generator only.
    return members_cat[torch.sort(torch.cat(keys), stable=True).indices]

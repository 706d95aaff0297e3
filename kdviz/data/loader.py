"""Batches from an in-memory split: index the uint8 tensors, normalise on the device.

No DataLoader and no per-sample Python: for datasets that fit in memory this is the fastest
way to feed small models, and its order is fixed by one torch.Generator.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator

import torch

from ..device import to_device
from .base import DatasetInfo, Split, normalize


def batch_indices(
    n: int,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None = None,
    min_last: int = 2,
    drop_last: bool = False,
) -> list[torch.Tensor]:
    """Index chunks covering 0..n-1 once. A trailing batch of fewer than `min_last` samples joins
    the previous one: BatchNorm cannot train on a single sample, and a batch split over W
    processes needs at least W samples, or some process would get none.

    drop_last: every chunk has exactly batch_size indices (n >= batch_size), and the n mod
    batch_size that remain after the last full chunk are left out (with shuffle, other images
    each time): the static shapes a captured training step needs (kdviz.train.step)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if drop_last and n < batch_size:
        raise ValueError(f"drop_last needs at least one full batch: {n} images < batch_size {batch_size}")
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    chunks = list(order.split(batch_size))
    if drop_last:
        return chunks if n % batch_size == 0 else chunks[:-1]
    if len(chunks) > 1 and len(chunks[-1]) < min_last:
        chunks[-2:] = [torch.cat(chunks[-2:])]
    return chunks


def check_shards(batch_size: int, n: int, world_size: int) -> None:
    """A ValueError, with the numbers, when a process would get no image of a batch of
    `batch_size` out of `n` images: an empty shard must never reach the loss."""
    if n < world_size:
        raise ValueError(
            f"the split has {n} image(s), fewer than the {world_size} processes; "
            f"use at most {n} processes or more training images"
        )
    if batch_size < world_size:
        raise ValueError(
            f"batch_size {batch_size} is smaller than the {world_size} processes, so some would get no image; "
            f"use batch_size >= {world_size} (it is the global batch, split over the processes)"
        )


def fit_batch_size(batch_size: int, n: int, world_size: int = 1) -> int:
    """The batch size to train `n` images with over `world_size` processes: `batch_size`, clamped
    to n with a warning (a larger batch only ever meant one step per epoch); see check_shards."""
    check_shards(batch_size, n, world_size)
    if batch_size > n:
        warnings.warn(
            f"batch_size {batch_size} is larger than the training split ({n} images): using {n}, which is one "
            "step per epoch; a smaller batch trains more steps",
            stacklevel=2,
        )
        return n
    return batch_size


def iterate_batches(
    split: Split,
    info: DatasetInfo,
    batch_size: int,
    device: torch.device,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    shard: tuple[int, int] = (0, 1),
    augment: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    with_indices: bool = False,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, ...]]:
    """Yield (x float [B, C, H, W] normalised, y int64 [B]) on `device`, and the batch's indices
    into the split (int64 [B], on `device`) as a third item when `with_indices`.

    augment(images uint8 [B, C, H, W], indices [B]) -> uint8 images: applied on the device before
    normalisation (training only); the indices let it use per-image parameters fixed in advance.

    shard=(rank, world_size): every rank must pass the same generator state; each then yields
    its own 1/world_size of every global batch of `batch_size`.
    drop_last: leave out the trailing partial batch (`batch_indices`).
    """
    if len(split) == 0:
        raise ValueError(f"cannot iterate over an empty split of {info.name}")
    rank, world = shard
    check_shards(batch_size, len(split), world)
    images = split.images.to(device, non_blocking=True)
    labels = split.labels.to(device, non_blocking=True)
    chunks = batch_indices(
        len(split), batch_size, shuffle=shuffle, generator=generator, min_last=max(2, world), drop_last=drop_last
    )
    for idx in chunks:
        idx = to_device(idx[rank::world], device)
        batch = images[idx] if augment is None else augment(images[idx], idx)
        x = normalize(batch, info)
        yield (x, labels[idx], idx) if with_indices else (x, labels[idx])

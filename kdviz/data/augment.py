"""Training-time augmentation on whole uint8 batches, on the batch's device.

The standard CIFAR recipe (pad, random crop, random horizontal flip) done with one advanced
indexing op per batch: no per-sample Python, so it costs next to nothing on a GPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..device import to_device


def random_crop_flip(images: torch.Tensor, padding: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 [B, C, H, W] -> uint8 [B, C, H, W]: each image zero-padded by `padding` pixels on every
    side, cropped back to H x W at a random offset (row and column each uniform in [0, 2 * padding]),
    then flipped left-right with probability 0.5.

    The random numbers are drawn on the generator's device (the CPU for the default generator or
    a CPU generator), offsets first and then flips, and moved to the images' device: the same
    generator state gives the same output on any device.
    """
    if images.dim() != 4:
        raise ValueError(f"images must be [B, C, H, W], got shape {tuple(images.shape)}")
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be an int >= 0, got {padding!r}")
    draw_device = generator.device if generator is not None else torch.device("cpu")
    offsets, flips = draw_crop_flip(len(images), padding, generator=generator, device=draw_device)
    return crop_flip(images, to_device(offsets, images.device), to_device(flips, images.device), padding)


def draw_crop_flip(
    n: int, padding: int, *, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random parameters of `n` crops and flips: (offsets int64 [n, 2] in [0, 2 * padding], flips bool [n])."""
    offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator, device=device)
    flips = torch.rand(n, generator=generator, device=device) < 0.5
    return offsets, flips


def crop_flip(images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, padding: int) -> torch.Tensor:
    """The crop-and-flip with given parameters: images uint8 [B, C, H, W], offsets int64 [B, 2]
    (row, column of the crop in the padded image), flips bool [B] -> uint8 [B, C, H, W]."""
    b, c, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding)) if padding else images
    rows = offsets[:, :1] + torch.arange(h, device=images.device)  # [B, H]
    cols = offsets[:, 1:] + torch.arange(w, device=images.device)  # [B, W]
    cols = torch.where(flips.unsqueeze(1), cols.flip(1), cols)  # a flip reads the crop's columns backwards
    batch = torch.arange(b, device=images.device).view(b, 1, 1, 1)
    channel = torch.arange(c, device=images.device).view(1, c, 1, 1)
    return padded[batch, channel, rows.view(b, 1, h, 1), cols.view(b, 1, 1, w)]


__all__ = ["crop_flip", "draw_crop_flip", "random_crop_flip"]

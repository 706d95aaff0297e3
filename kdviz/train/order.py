"""What a run's seed fixes before its first step: the initial weights and the order of the batches.

kd.train draws both from here, so a loop written by hand (the tutorial's plain-torch KD loop) can
start from the same weights and see the same batches:

    student = initial_model("mlp", data, seed=0, hidden=32)
    for epoch, batches in enumerate(batch_order(len(data.train), 32, epochs=40, seed=0)): ...
"""

from __future__ import annotations

import random

import numpy as np
import torch
from torch import nn

from ..data.base import DatasetSplits
from ..data.loader import batch_indices
from ..models import build_model


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (the model's initialisation draws from torch's)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def initial_model(model: str, data: DatasetSplits, seed: int = 0, **model_kwargs) -> nn.Module:
    """The untrained `model` (a registry name) that kd.train(data, model, seed=seed,
    model_kwargs=model_kwargs) starts from, on the CPU; it seeds the global generators as train does."""
    seed_everything(seed)
    return build_model(model, data.num_classes, tuple(data.info.image_shape), **model_kwargs)


def shuffle_generator(seed: int) -> torch.Generator:
    """The generator of a run's batch order: one per run, drawn from once per epoch."""
    return torch.Generator().manual_seed(seed)


def batch_order(n_images: int, batch_size: int, epochs: int, seed: int = 0) -> list[list[torch.Tensor]]:
    """The batches kd.train(..., seed=seed, batch_size=batch_size) shows in each of `epochs` epochs
    on one process: `[epoch][step]` -> int64 indices into the training split. Each epoch is a fresh
    permutation of 0..n_images-1 cut into batches; a last batch of one image joins the one before."""
    generator = shuffle_generator(seed)
    return [batch_indices(n_images, batch_size, shuffle=True, generator=generator) for _ in range(epochs)]

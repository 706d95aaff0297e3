"""Run a model over a whole split: logits, top-k errors."""

from __future__ import annotations

import torch
from torch import nn

from .data.base import DatasetInfo, Split
from .data.loader import iterate_batches


@torch.no_grad()
def predict_logits(
    model: nn.Module, split: Split, info: DatasetInfo, device: torch.device, batch_size: int = 1024
) -> torch.Tensor:
    """Logits [N, C] of `model` in eval mode over `split`, in the split's order, on `device`.

    The model's train/eval mode is restored afterwards, so this is safe in the middle of training.
    """
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model(x) for x, _ in iterate_batches(split, info, batch_size, device)])
    finally:
        model.train(was_training)


def topk_errors(logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[int, torch.Tensor]:
    """Top-k error rate (fraction in [0, 1]) for each k, as 0-dim tensors (no host sync).

    logits [N, C], labels [N]. k larger than C is clipped to C.
    """
    labels = labels.to(logits.device)
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hits = top == labels.unsqueeze(1)
    return {k: 1.0 - hits[:, : min(k, logits.shape[1])].any(1).float().mean() for k in ks}


def top1_accuracy(model: nn.Module, split: Split, info: DatasetInfo, device: torch.device) -> float:
    """Top-1 accuracy (%) of `model` over `split`: what papers report, e.g. a published teacher's
    CIFAR-100 test accuracy (`kd.load_teacher(...).published_top1`)."""
    logits = predict_logits(model, split, info, device)
    return 100.0 * (1.0 - topk_errors(logits, split.labels, ks=(1,))[1].item())

"""FitNets (Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015): the hint loss.

A student stage (the guided layer) is regressed onto a teacher stage (the hint):

    L_hint = mean over b, c, h, w of (r(F_s)[b, c, h, w] - F_t[b, c, h, w])^2

r is a small trainable regressor, trained with the student: a 1x1 convolution and batch norm
from the student's channels to the teacher's when the shapes differ (a linear layer and batch
norm for vector stages), nothing when they are equal. Maps of different sizes meet at the smaller
one (`features.py`). The mean over every element makes the loss independent of the batch size;
CRD's benchmark weighs it by 100 beside CE.
"""

from __future__ import annotations

import torch
from torch import nn

from .features import at_least_float32, common_size, pool_to


def hint_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """mean((student - teacher)^2) over all elements: two tensors of one shape [B, ...] -> scalar.

    The teacher side is detached.
    """
    return (at_least_float32(student) - at_least_float32(teacher.detach())).pow(2).mean()


def _batch_norm(channels: int, dims: int) -> nn.Module:
    """Batch norm on batch statistics only: the regressor only ever runs in training, so running
    statistics would be unused state (and would differ between ranks under torchrun)."""
    return (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(channels, track_running_stats=False)


class HintRegressor(nn.Module):
    """r: a student stage [B, *student_shape] -> the teacher stage's shape [B, *teacher_shape].

    Maps: 1x1 conv (no bias) + BN to C_t channels, then the larger of the two sizes pooled to the
    smaller; `forward` returns (r(F_s), F_t) at the common size. Vectors: linear (no bias) + BN.
    """

    def __init__(self, student_shape: tuple[int, ...], teacher_shape: tuple[int, ...]):
        super().__init__()
        self.size = None
        if len(student_shape) == 1 and len(teacher_shape) == 1:
            d_s, d_t = student_shape[0], teacher_shape[0]
            self.net = (
                nn.Identity() if d_s == d_t else nn.Sequential(nn.Linear(d_s, d_t, bias=False), _batch_norm(d_t, 1))
            )
            return
        self.size = common_size(student_shape, teacher_shape, "FitNet")
        c_s, c_t = student_shape[0], teacher_shape[0]
        same = tuple(student_shape) == tuple(teacher_shape)
        self.net = nn.Identity() if same else nn.Sequential(nn.Conv2d(c_s, c_t, 1, bias=False), _batch_norm(c_t, 2))

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """student [B, *student_shape], teacher [B, *teacher_shape] -> (r(student), teacher), one shape."""
        regressed = self.net(student)
        if self.size is None:
            return regressed, teacher
        return pool_to(regressed, self.size), pool_to(teacher, self.size)

"""Shared shape rules of the feature terms (FitNet, AT, CRD): which stage, and how two maps meet.

A term names the student's and the teacher's stages (`kdviz/models/stages.py`). Maps of different
spatial sizes meet at the smaller size: the larger one is average-pooled by the integer ratio of
the two (32 -> 16, 16 -> 8, ...), which is exact block averaging. Shapes that cannot meet this way
are an error that names them, raised when the term is set up, before any training step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def stage_shape(shapes: dict[str, tuple[int, ...]], stage: str, role: str) -> tuple[int, ...]:
    """The shape (without batch) of `role`'s stage `stage`, or an error listing the stages it has."""
    if stage not in shapes:
        raise ValueError(
            f"the {role} model has no stage {stage!r}; its stages are {', '.join(shapes)} (see kdviz/models/stages.py)"
        )
    return tuple(shapes[stage])


def common_size(student: tuple[int, ...], teacher: tuple[int, ...], what: str) -> tuple[int, int]:
    """The spatial size [H, W] at which maps of shapes [C_s, H_s, W_s] and [C_t, H_t, W_t] meet.

    The smaller size in each dimension; each size must divide its counterpart. Anything else
    (vectors, different aspect ratios, 12 vs 8) raises an error naming both shapes.
    """
    if len(student) != 3 or len(teacher) != 3:
        raise ValueError(
            f"{what} needs feature maps [C, H, W] on both sides; got student {list(student)} "
            f"and teacher {list(teacher)}: pick stages with spatial maps (stage1..3)"
        )
    size = (min(student[1], teacher[1]), min(student[2], teacher[2]))
    if any(s % k or t % k for s, t, k in zip(student[1:], teacher[1:], size)):
        raise ValueError(
            f"{what} cannot match student map {list(student)} with teacher map {list(teacher)}: "
            "one size must be a multiple of the other; pick stages of compatible sizes"
        )
    ratio_s, ratio_t = (student[1] // size[0], student[2] // size[1]), (teacher[1] // size[0], teacher[2] // size[1])
    if len(set(ratio_s)) != 1 or len(set(ratio_t)) != 1:
        raise ValueError(
            f"{what} cannot match student map {list(student)} with teacher map {list(teacher)}: "
            "their aspect ratios differ"
        )
    return size


def pool_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, *size] by averaging blocks of H / size[0] x W / size[1] (identity if equal)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.avg_pool2d(x, (x.shape[-2] // size[0], x.shape[-1] // size[1]))


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """x in float32 when it is in a narrower type (bf16 under autocast), else as it is: the losses'
    squares, sums and logarithms keep their precision under mixed precision."""
    return x.to(torch.promote_types(x.dtype, torch.float32))

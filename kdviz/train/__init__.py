"""Training: one loop for teachers and students, configs, checkpoints.

The names below load on first use (kdviz/lazy.py): importing this package imports no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("CheckpointError", "atomic_save", "load_checkpoint", "load_model"), "checkpoint"),
    **dict.fromkeys(("SCHEDULES", "TrainConfig"), "config"),
    "train": "loop",
    **dict.fromkeys(("batch_order", "initial_model"), "order"),
    "Output": "output",
    "TrainResult": "result",
    "TeacherLike": "teacher",
}
if TYPE_CHECKING:
    from .result import TrainResult
    from .teacher import TeacherLike

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


def train_teacher(data, model: str = "cnn", objective="icc_teacher", **kwargs) -> TrainResult:
    """Train a teacher; the default objective is CE + the ICC regulariser (docs/method.md §2)."""
    from .loop import train

    return train(data, model, objective, **kwargs)


def distill(data, teacher: TeacherLike, model: str = "cnn", objective="kd", **kwargs) -> TrainResult:
    """Train a student from `teacher`; the default objective is 0.1 CE + 0.9 KD at tau = 4."""
    from .loop import train

    return train(data, model, objective, teacher=teacher, **kwargs)


__all__ = sorted([*_EXPORTS, "distill", "train_teacher"])

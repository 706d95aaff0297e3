"""Training: one loop for teachers and students, configs, checkpoints."""

from __future__ import annotations

from .checkpoint import CheckpointError, atomic_save, load_checkpoint, load_model
from .config import SCHEDULES, TrainConfig
from .loop import train
from .output import Output
from .result import TrainResult
from .teacher import TeacherLike


def train_teacher(data, model: str = "cnn", objective="icc_teacher", **kwargs) -> TrainResult:
    """Train a teacher; the default objective is CE + the ICC regulariser (docs/method.md §2)."""
    return train(data, model, objective, **kwargs)


def distill(data, teacher: TeacherLike, model: str = "cnn", objective="kd", **kwargs) -> TrainResult:
    """Train a student from `teacher`; the default objective is 0.1 CE + 0.9 KD at tau = 4."""
    return train(data, model, objective, teacher=teacher, **kwargs)


__all__ = [
    "CheckpointError",
    "Output",
    "SCHEDULES",
    "TrainConfig",
    "TrainResult",
    "atomic_save",
    "distill",
    "load_checkpoint",
    "load_model",
    "train",
    "train_teacher",
]

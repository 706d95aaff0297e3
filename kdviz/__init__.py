"""kdviz: knowledge distillation with an expressive teacher, for notebooks.

import kdviz as kd
data = kd.load_dataset("digits")
teacher = kd.train_teacher(data, "cnn", "icc_teacher", epochs=15)
student = kd.distill(data, teacher, "mlp", "kd+icc_mimic", epochs=40)
kd.plot_icc_comparison(kd.extract_icc(teacher.model, data), kd.extract_icc(student.model, data))
"""

import importlib

from . import threads as _threads
from ._version import __version__

_threads.set_wait_policy()  # before torch loads (below): OpenMP reads it once; see kdviz/threads.py

from .correlation import ICCReport, extract_icc, icc_distance, icc_of_logits
from .data import DATASETS, load_dataset
from .device import resolve_device
from .live import LiveCurves
from .losses import LOSS_TERMS, PRESETS, Objective
from .models import MODELS, build_model
from .train import Output, TrainConfig, TrainResult, distill, load_model, train, train_teacher

_threads.remember_torch_threads()

# name -> the module that defines it
_LAZY = {
    **dict.fromkeys(
        ("plot_icc", "plot_icc_comparison", "plot_error_curves", "plot_training", "plot_soft_targets"), "plots"
    ),
    **dict.fromkeys(("plot_error_vs_sigma2", "plot_arms", "plot_sweep"), "experiment_plots"),
    **dict.fromkeys(("icc_explorer", "curves_explorer", "run_explorer", "study_explorer"), "widgets"),
}


def __getattr__(name):
    # matplotlib, seaborn and ipywidgets load only when a figure is asked for, to keep `import kdviz` fast.
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'kdviz' has no attribute {name!r}")


__all__ = [
    "DATASETS",
    "ICCReport",
    "LOSS_TERMS",
    "LiveCurves",
    "MODELS",
    "Objective",
    "Output",
    "PRESETS",
    "TrainConfig",
    "TrainResult",
    "build_model",
    "distill",
    "extract_icc",
    "icc_distance",
    "icc_of_logits",
    "load_dataset",
    "load_model",
    "resolve_device",
    "train",
    "train_teacher",
    *_LAZY,
]

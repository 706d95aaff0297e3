"""kdviz: knowledge distillation with an expressive teacher, for notebooks.

import kdviz as kd
data = kd.load_dataset("digits")
teacher = kd.train_teacher(data, "cnn", "icc_teacher", epochs=15)
student = kd.distill(data, teacher, "mlp", "kd+icc_mimic", epochs=40)
kd.plot_icc_comparison(kd.extract_icc(teacher.model, data), kd.extract_icc(student.model, data))

Every public name loads on first use (kdviz/lazy.py): `import kdviz` imports neither torch nor
matplotlib, so that the command line starts at once; torch loads with the first `kd.` name that
needs it, matplotlib, seaborn and ipywidgets with the first figure or widget.
"""

from . import threads as _threads
from . import train  # the subpackage, which imports nothing yet: see `del train` below
from ._version import __version__
from .lazy import lazy_exports

_threads.set_wait_policy()  # before torch loads: OpenMP reads it once; see kdviz/threads.py
_threads.remember_torch_threads()  # now, or as soon as torch loads

# name -> the module that defines it
_EXPORTS = {
    **dict.fromkeys(("ICCReport", "extract_icc", "icc_distance", "icc_of_logits"), "correlation"),
    **dict.fromkeys(("DATASETS", "load_dataset"), "data"),
    "resolve_device": "device",
    "predict_logits": "inference",
    "LiveCurves": "live",
    **dict.fromkeys(("LOSS_TERMS", "PRESETS", "Objective", "StepOutputs"), "losses"),
    **dict.fromkeys(("MODELS", "build_model"), "models"),
    **dict.fromkeys(("PublishedTeacher", "load_teacher"), "models.published"),
    "bundled_results": "results",
    **dict.fromkeys(
        (
            "Output",
            "TrainConfig",
            "TrainResult",
            "batch_order",
            "distill",
            "initial_model",
            "load_model",
            "train",
            "train_teacher",
        ),
        "train",
    ),
    **dict.fromkeys(
        ("plot_icc", "plot_icc_comparison", "plot_error_curves", "plot_training", "plot_soft_targets"), "plots"
    ),
    **dict.fromkeys(
        ("plot_error_vs_secondary_std", "plot_error_vs_sigma2", "plot_arms", "plot_sweep"), "experiment_plots"
    ),
    **dict.fromkeys(("plot_truth", "truth_frame"), "truth_plots"),
    "write_sample_data": "data.sample_files",
    **dict.fromkeys(("icc_explorer", "curves_explorer", "run_explorer", "study_explorer"), "widgets"),
    "published_table": "experiments.published",
}
# Python binds a subpackage to its name in the parent when the subpackage is first imported, which
# would hide the function kd.train behind the subpackage kdviz.train. It was imported above, so
# that this happened already; unbound now, the name `train` is the function, loaded on first use.
del train
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)

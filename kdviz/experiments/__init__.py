"""Experiments: one TOML description of models trained with objectives (arms x variants x seeds),
the grid of its runs, a sweep that runs them (one process, N processes, or Ray), and summaries."""

from .grid import Run, collect, load_run_model, plan
from .load import ExperimentError, add_arms, experiment_names, experiment_path, load_experiment
from .published import published_table
from .spec import Arm, Experiment, Role
from .summary import select_variants, summarize, swept, verdict
from .sweep import report, run_sweep
from .truth import truth_error_correlation, truth_table, truth_verdict

__all__ = [
    "Arm",
    "Experiment",
    "ExperimentError",
    "add_arms",
    "Role",
    "Run",
    "collect",
    "experiment_names",
    "experiment_path",
    "load_experiment",
    "load_run_model",
    "plan",
    "published_table",
    "report",
    "run_sweep",
    "select_variants",
    "summarize",
    "swept",
    "truth_error_correlation",
    "truth_table",
    "truth_verdict",
    "verdict",
]

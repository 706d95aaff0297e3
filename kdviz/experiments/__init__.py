"""Experiments: one TOML description of models trained with objectives (arms x variants x seeds),
the grid of its runs, a sweep that runs them (one process, N processes, or Ray), and summaries."""

from .grid import GridRun, collect, load_run_model, plan
from .load import ExperimentError, add_arms, experiment_names, experiment_path, load_experiment
from .spec import Arm, Experiment, Role
from .summary import select_variants, summarize, swept, verdict
from .sweep import report, run_sweep

__all__ = [
    "Arm",
    "Experiment",
    "ExperimentError",
    "GridRun",
    "add_arms",
    "Role",
    "collect",
    "experiment_names",
    "experiment_path",
    "load_experiment",
    "load_run_model",
    "plan",
    "report",
    "run_sweep",
    "select_variants",
    "summarize",
    "swept",
    "verdict",
]

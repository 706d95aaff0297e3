"""Experiments: one TOML description of models trained with objectives (arms x variants x seeds),
the grid of its runs, a sweep that runs them (one process, N processes, or Ray), and summaries.

The names below load on first use (kdviz/lazy.py): importing this package imports no torch.
"""

from ..lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("GridRun", "collect", "load_run_model", "plan"), "grid"),
    **dict.fromkeys(("ExperimentError", "add_arms", "load_experiment"), "load"),
    **dict.fromkeys(("experiment_names", "experiment_path"), "files"),
    **dict.fromkeys(("Arm", "Experiment", "Role"), "spec"),
    **dict.fromkeys(("select_variants", "summarize", "swept", "verdict"), "summary"),
    **dict.fromkeys(("report", "run_sweep"), "sweep"),
    "published_table": "published",
    **dict.fromkeys(("truth_error_correlation", "truth_table", "truth_verdict"), "truth"),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)

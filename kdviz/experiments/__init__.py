"""Experiments: grids of runs (arms x variants x seeds) and their summaries."""
from .grid import Arm, Protocol, RoleDefaults, Run, collect, load_protocol, load_run_model, plan, run_grid
from .summary import select_variants, summarize, verdict

__all__ = ["Arm", "Protocol", "RoleDefaults", "Run", "collect", "load_protocol", "load_run_model", "plan", "run_grid", "select_variants",
           "summarize", "verdict"]

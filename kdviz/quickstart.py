"""The quickstart's table and figures, from a finished sweep of the bundled `quickstart` experiment.

`kdviz quickstart` is `kdviz sweep quickstart` (kdviz/experiments/quickstart.toml: two teachers,
four students over 3 seeds) that prints one compact table, mean +- standard error over seeds, and
draws the ICC figures of one seed. The same functions read any experiment's sweep.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ._version import __version__
from .atomic import atomic_write
from .correlation import ICCReport, extract_icc
from .device import resolve_device
from .experiments import Experiment, plan
from .experiments.grid import GridRun, checkpoint_of, run_data
from .experiments.sweep import write_results
from .train import load_model


def _pm(mean: float, se: float) -> str:
    return f"{mean:.2f}" if pd.isna(se) else f"{mean:.2f} +- {se:.2f}"


def quickstart_table(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per arm of a sweep's summary: seeds, test and validation error (%, mean +- standard
    error over seeds), the paired test-error difference to the baseline, the secondary std and the
    teacher-student ICC distance (means over seeds)."""
    table = pd.DataFrame(index=summary.index)
    table["seeds"] = summary["seeds"]
    table["test err %"] = [_pm(m, s) for m, s in zip(summary["test_err"], summary["test_err_se"])]
    table["val err %"] = summary["val_err"].round(2)
    if "diff_vs_baseline" in summary:
        table["diff vs baseline"] = [
            _pm(m, s) if pd.notna(m) else "" for m, s in zip(summary["diff_vs_baseline"], summary["diff_se"])
        ]
    table["secondary std"] = summary["secondary_std"].round(4)
    if "icc_distance" in summary:
        table["ICC dist. to teacher"] = (
            summary["icc_distance"].round(4).astype(object).where(summary["icc_distance"].notna(), "")
        )
    return table.rename_axis("model")


def print_table(experiment: Experiment, runs: pd.DataFrame, out: Path) -> pd.DataFrame:
    """Write the sweep's results (runs.csv, summary.csv, ...) and print the compact table."""
    summary = write_results(experiment, runs, out)
    table = quickstart_table(summary)
    print(f"\n{experiment.name}: {experiment.description}")
    print(
        "Test and validation errors are top-1 (%) at the epoch chosen on validation, mean +- standard error over the\n"
        f"seeds; 'diff vs baseline' is the paired test-error difference to {experiment.baseline} (negative is better).\n"
        "The secondary std and the ICC distance are measured on the test split, means over the seeds.\n"
    )
    print(table.to_string())
    return table


def _first_runs(experiment: Experiment, seed: int | None) -> dict[str, GridRun]:
    """Arm name -> its first run on `seed` (default: the experiment's first), or on the arm's own seed."""
    seed = experiment.seeds[0] if seed is None else seed
    picked: dict[str, GridRun] = {}
    for run in plan(experiment):
        own = experiment.arm_seeds(run.arm)
        if run.arm.name not in picked and run.seed == (seed if seed in own else own[0]):
            picked[run.arm.name] = run
    return picked


def save_figures(experiment: Experiment, out: Path, *, seed: int | None = None, device=None) -> list[Path]:
    """For one seed of a finished sweep: every model's secondary ICC heatmap (test split), each
    taught model beside its teacher, and the teachers' and students' error curves. Figures drawn
    from the very same runs before (figures.json records which) are kept, not drawn again."""
    runs = _first_runs(experiment, seed)
    stamp = {"kdviz": __version__, "runs": _runs_stamp(runs, out)}
    record = out / "figures.json"
    if record.is_file():
        drawn = json.loads(record.read_text())
        if drawn.get("from") == stamp and all((out / name).is_file() for name in drawn["figures"]):
            return [out / name for name in drawn["figures"]]
    written = _draw_figures(experiment, runs, out, resolve_device(device))
    atomic_write(record, json.dumps({"from": stamp, "figures": [p.name for p in written]}, indent=1))
    return written


def _runs_stamp(runs: dict[str, GridRun], out: Path) -> dict[str, list]:
    """Arm -> [run folder, size and modification time of its result.json]: the figures' inputs
    (a run that is trained again rewrites its result.json)."""
    stamp = {}
    for name, run in runs.items():
        stat = (out / run.path / "result.json").stat()
        stamp[name] = [str(run.path), stat.st_size, stat.st_mtime_ns]
    return stamp


def _draw_figures(experiment: Experiment, runs: dict[str, GridRun], out: Path, dev) -> list[Path]:
    from .plots import plot_error_curves, plot_icc, plot_icc_comparison

    reports: dict[str, ICCReport] = {}
    written = []

    def save(fig, name):
        fig.savefig(out / name, dpi=110, bbox_inches="tight")
        written.append(out / name)

    for name, run in runs.items():
        model, _ = load_model(checkpoint_of(run, out), dev)
        reports[name] = extract_icc(model, run_data(run, experiment), "test", tau=experiment.icc_tau, device=dev)
        save(
            plot_icc(reports[name], secondary=True, title=f"{name} (seed {run.seed}): secondary ICC (test)"),
            f"icc_{name}.png",
        )
    for name, run in runs.items():
        if run.teacher is not None:
            teacher = run.teacher.arm.name
            save(plot_icc_comparison(reports[teacher], reports[name], names=(teacher, name)), f"icc_diff_{name}.png")
    for role in ("teacher", "student"):
        histories = {n: pd.read_csv(out / r.path / "metrics.csv") for n, r in runs.items() if r.arm.role == role}
        if histories:
            save(plot_error_curves(histories, splits=("val", "train"), title=f"{role}s"), f"error_curves_{role}s.png")
    return written


__all__ = ["print_table", "quickstart_table", "save_figures"]

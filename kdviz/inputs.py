"""What kdviz's functions that take runs accept, read in one place.

Runs (the explorers, plot_error_curves, plot_training): a run directory (str or Path: the
out_dir a run was trained into), a TrainResult, a history DataFrame (one row per epoch, with an
"epoch" column), a sweep folder (run_sweep's out_dir: each run directory in it), or a dict
{name: any of these} or a list of them. Each function names the kinds it can use (a history has no
ICC, say); anything else is refused with a message that lists what the function accepts.

Tables (plot_arms, plot_sweep, plot_error_vs_secondary_std, study_explorer, summarize): the DataFrame,
or a sweep folder, whose runs.csv or summary.csv is read.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace

import pandas as pd

from .correlation import ICCReport
from .train.result import TrainResult
from .train.snapshots import SNAPSHOT_DIR, RunRecord

KINDS = {
    "dir": "a run directory (str or Path: the out_dir of a run)",
    "result": "a TrainResult",
    "history": "a history DataFrame (one row per epoch, with an 'epoch' column)",
    "sweep": "a sweep folder (the out_dir of run_sweep)",
    "report": "an ICCReport",
}
RUNS = ("dir", "result", "history", "sweep")
_RUN_FILES = ("config.json", "metrics.csv", "last.pt", SNAPSHOT_DIR)
_RUN_DEPTHS = ("*/config.json", "*/*/config.json", "*/*/*/config.json")  # run_sweep writes arm/variant/seed_N


def accepts(who: str, kinds=RUNS) -> str:
    """The sentence that says what `who` takes."""
    return f"{who} takes {', '.join(KINDS[k] for k in kinds)}, or a dict {{name: any of these}}"


def open_runs(runs, who: str = "run_explorer", *, kinds=RUNS, finished: bool = False) -> dict:
    """{name: RunRecord (an ICCReport stays one, where `kinds` has "report")} from any input
    kdviz's run-taking functions accept (see the module's docstring). finished=True refuses a run
    with no finished epoch (and, where only ICCs can be used, one with no ICC snapshot), naming it."""
    if isinstance(runs, Mapping):
        sources = list(runs.items())
    elif isinstance(runs, (list, tuple)):
        sources = [(None, source) for source in runs]
    else:
        sources = [(None, runs)]
    opened = {}
    for name, source in sources:
        for found, record in _open(name, source, who, kinds):
            opened[found if found not in opened else f"{found} ({len(opened) + 1})"] = record
    if not opened:
        raise ValueError(f"{who} got no runs (it needs at least one): {accepts(who, kinds)}")
    if finished:
        for record in opened.values():
            _check_finished(record, who, kinds)
    return opened


def _open(name, source, who: str, kinds) -> list[tuple[str, object]]:
    """[(name, record)] of one source: one run, or the runs of a sweep folder."""

    def refused() -> str:  # built only when needed: the repr of a large input is slow
        return f"{accepts(who, kinds)}; got {_describe(source)}" + ("" if name is None else f" for {name!r}")

    if isinstance(source, (RunRecord, ICCReport)) and (isinstance(source, RunRecord) or "report" in kinds):
        return [(str(name if name is not None else getattr(source, "name", "report")), source)]
    if isinstance(source, TrainResult) and "result" in kinds:
        return [(str(name if name is not None else source.name), RunRecord(str(name or source.name), source))]
    if isinstance(source, pd.DataFrame) and "history" in kinds:
        if "epoch" not in source:
            raise ValueError(
                f"{refused()}: a DataFrame without an 'epoch' column (columns: {list(source.columns)[:8]}) is not a "
                "run's history; a sweep's table of runs goes to plot_sweep, plot_error_vs_secondary_std or study_explorer"
            )
        in_memory = SimpleNamespace(history=source, best_epoch=-1, icc_snapshots=[])
        return [(str(name if name is not None else "run"), RunRecord(str(name or "run"), in_memory))]
    if isinstance(source, (str, os.PathLike)) and {"dir", "sweep"} & set(kinds):
        return _open_path(name, Path(source), who, kinds)
    raise TypeError(refused())


def _open_path(name, path: Path, who: str, kinds) -> list[tuple[str, RunRecord]]:
    if not path.exists():
        raise FileNotFoundError(
            f"{who}: no run directory or sweep folder at {path}; pass the out_dir a run (or run_sweep) wrote into"
        )
    if path.is_file():
        raise ValueError(f"{who}: {path} is a file, not a run directory: pass the folder it is in, {path.parent}")
    is_run = any((path / f).exists() for f in _RUN_FILES)
    runs = [] if is_run else sorted({f.parent for depth in _RUN_DEPTHS for f in path.glob(depth)})
    if runs or (path / "runs.csv").exists():  # a sweep folder
        if "sweep" not in kinds:
            raise ValueError(f"{who}: {path} is a sweep folder; pass one of its run directories. {accepts(who, kinds)}")
        if not runs:
            raise ValueError(f"{who}: the sweep folder {path} holds no run directory yet: run the sweep first")
        prefix = "" if name is None else f"{name}/"
        labels = [prefix + run.relative_to(path).as_posix() for run in runs]
        return [(label, RunRecord(label, run)) for label, run in zip(labels, runs)]
    if "dir" not in kinds:
        raise ValueError(f"{who}: {path} is a run directory. {accepts(who, kinds)}")
    label = str(name if name is not None else path.name)
    return [(label, RunRecord(label, path))]  # an empty folder: a run that has not started


def _check_finished(record, who: str, kinds) -> None:
    if isinstance(record, ICCReport):
        return
    if not len(record.history):
        raise ValueError(
            f"{who}: run {record.name!r} has no finished epoch yet (an empty folder, or a run still in its first "
            "epoch): pass it once an epoch has finished, or open it in run_explorer, which waits for it"
        )
    if "history" not in kinds and not record.snapshots:  # only its ICC can be used
        raise ValueError(f"{who}: {record.waiting()}")


def _describe(x) -> str:
    if isinstance(x, Mapping):
        return f"a {type(x).__name__} inside the dict (a dict of dicts?)" if x else "an empty dict"
    if isinstance(x, (pd.DataFrame, TrainResult, ICCReport)):
        return f"a {type(x).__name__}"
    text = repr(x)
    return f"{type(x).__name__} {text[:60] + '...' if len(text) > 60 else text}"


# The columns a table must have to be the one asked for (a history passed as a runs table, say).
TABLE_COLUMNS = {"runs": ("arm", "val_top1_err", "test_top1_err"), "summary": ("role", "seeds")}


def read_table(table, who: str, name: str = "runs") -> pd.DataFrame:
    """A sweep's table: `table` itself (a DataFrame) or `name`.csv of a sweep folder (runs.csv is
    the tidy table of runs, summary.csv the summary by arm, indexed by arm)."""
    what = f"{who} takes the {name} table (a DataFrame) or a sweep folder (the out_dir of run_sweep)"
    if isinstance(table, pd.DataFrame):
        lacking = [c for c in TABLE_COLUMNS[name] if c not in table]
        if lacking:
            source = "kdviz.experiments.summarize(runs, baseline)" if name == "summary" else "run_sweep or collect"
            raise ValueError(
                f"{what}; the DataFrame given has no column {', '.join(map(repr, lacking))} "
                f"(columns: {list(table.columns)[:8]}): pass the {name} table of {source}"
            )
        return table
    if not isinstance(table, (str, os.PathLike)):
        raise TypeError(f"{what}; got {_describe(table)}")
    path = Path(table)
    if not path.is_dir():
        raise FileNotFoundError(f"{what}; there is no folder at {path}")
    if not (path / f"{name}.csv").exists():
        raise ValueError(f"{what}; {path} has no {name}.csv: run the sweep to its end (it writes {name}.csv last)")
    return read_table(pd.read_csv(path / f"{name}.csv", index_col=0 if name == "summary" else None), who, name)


def selected_icc(record) -> ICCReport:
    """A run's validation ICC at its selected epoch (its last finished one before any is selected);
    an ICCReport is itself."""
    if isinstance(record, ICCReport):
        return record
    epoch = record.best_epoch if record.best_epoch is not None else max(record.epochs)
    return record.at(epoch)[1]

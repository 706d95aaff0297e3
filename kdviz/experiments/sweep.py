"""Run an experiment's grid on one machine (N worker processes) or on many (Ray), and report it.

Runs go in waves: the runs that need no unfinished teacher first, then the students of those,
and so on (a student never starts before its teacher's checkpoint is written). Each run writes
its own files and, last, its result.json, so a sweep killed at any moment and started again
reruns nothing that had finished; an interrupted run resumes from its last epoch.

- jobs = 1: every run in this process, one after another.
- jobs = N: N worker processes of the standard library's ProcessPoolExecutor, each with
  max(1, cores // N) torch threads, so that together they never ask for more threads than the
  machine has, and OMP_WAIT_POLICY=PASSIVE, so that an idle worker's threads do not spin. The
  workers end with the sweep: when it is interrupted (Ctrl-C, SIGTERM) they unwind their runs
  and exit, and when it dies (even by kill -9) they get SIGTERM (kdviz.interrupts.worker_init).
- backend "ray": one Ray task per run on a Ray cluster (`address`; None starts a local one),
  one GPU asked for per task when the runs are on CUDA; `out_dir` must be a folder that every
  node sees (a shared file system).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from ..atomic import atomic_write
from ..interrupts import worker_init, worker_task
from ..threads import worker_environment
from .grid import GridRun, collect, execute, is_finished, plan, snapshot_epochs
from .spec import Experiment
from .summary import summarize, verdict
from .truth import truth_table, truth_verdict

BACKENDS = ("local", "ray")


def run_sweep(
    experiment: Experiment,
    out_dir: str | os.PathLike,
    *,
    jobs: int = 1,
    backend: str = "local",
    address: str | None = None,
    data_root=None,
    device=None,
    progress: bool = True,
) -> pd.DataFrame:
    """Run every run of `experiment` not finished in `out_dir`; return the tidy table of all runs
    (one row per run, see kdviz.experiments.grid.execute)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid choices: {', '.join(BACKENDS)}")
    if not (isinstance(jobs, int) and jobs >= 1):
        raise ValueError(f"jobs must be a whole number >= 1, got {jobs!r}")
    runs = plan(experiment)
    if not runs:  # checked before the output folder is made, which would stay empty
        raise ValueError(
            f"experiment {experiment.name!r} has no run to make (arms: {[a.name for a in experiment.arms]}); "
            "give it arms (kdviz.experiments.add_arms, or [[arms]] in its file)"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    todo = [run for run in runs if not is_finished(run, experiment, out)]
    keep = snapshot_epochs(runs)
    tasks = [
        [
            (run, experiment, out, {"device": device, "data_root": data_root, "keep_epochs": keep.get(run, ())})
            for run in wave
        ]
        for wave in waves(todo)
    ]
    with tqdm(total=len(runs), initial=len(runs) - len(todo), desc=experiment.name, disable=not progress) as bar:
        if backend == "ray":
            _run_on_ray(tasks, bar, address, device)
        elif jobs == 1:
            for task in (task for wave in tasks for task in wave):
                bar.set_postfix_str(f"{task[0].arm.name} seed {task[0].seed}")
                _execute_task(task)
                bar.update(1)
        else:
            _run_in_processes(tasks, bar, jobs)
    return collect(experiment, out)


def waves(todo: list[GridRun]) -> list[list[GridRun]]:
    """`todo` in waves: a run is in the wave after the latest one holding a run it learns from."""
    depth: dict[int, int] = {}
    for run in todo:  # plan() lists every run after its teacher
        teacher = run.teacher
        depth[id(run)] = depth[id(teacher)] + 1 if teacher is not None and id(teacher) in depth else 0
    grouped: dict[int, list[GridRun]] = {}
    for run in todo:
        grouped.setdefault(depth[id(run)], []).append(run)
    return [grouped[d] for d in sorted(grouped)]


def _execute_task(task) -> None:
    run, experiment, out, options = task
    execute(run, experiment, out, **options)


def _execute_in_worker(task) -> None:
    with worker_task():
        _execute_task(task)


@contextlib.contextmanager
def _worker_environment(jobs: int):
    """The spawned workers start with kdviz.threads.worker_environment(jobs) (the cores split
    between them, passive waits; a user's own settings kept), which torch reads when it loads."""
    wanted = worker_environment(jobs)
    before = {key: os.environ.get(key) for key in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _run_in_processes(tasks: list[list], bar, jobs: int) -> None:
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no torch state forked mid-use
    workers = {"mp_context": context, "initializer": worker_init, "initargs": (os.getpid(),)}
    with _worker_environment(jobs), ProcessPoolExecutor(jobs, **workers) as pool:
        try:
            for wave in tasks:
                pending = {pool.submit(_execute_in_worker, task) for task in wave}
                while pending:
                    done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                    for future in done:
                        if future.exception() is not None:
                            pool.shutdown(cancel_futures=True)  # the runs under way finish and keep their files
                            raise future.exception()
                        bar.update(1)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the workers unwind their runs too, and exit
            # The pool has no public list of its processes; SIGTERM makes each end (worker_task).
            for process in list(pool._processes.values()):
                process.terminate()
            pool.shutdown(cancel_futures=True)
            raise


def _run_on_ray(tasks: list[list], bar, address: str | None, device) -> None:
    try:
        import ray
    except ImportError:
        raise ImportError('backend "ray" needs Ray: pip install -e ".[ray]"') from None
    ray.init(address=address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
    gpus = 1 if device is not None and str(device).startswith("cuda") else 0
    remote = ray.remote(num_cpus=1, num_gpus=gpus)(_execute_task)
    for wave in tasks:
        pending = [remote.remote(task) for task in wave]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            ray.get(done)  # raises a task's error here
            bar.update(len(done))


def write_results(experiment: Experiment, runs: pd.DataFrame, out: Path) -> pd.DataFrame:
    """Write runs.csv (the tidy table), summary.csv, verdict.txt (with a baseline) and
    error_vs_secondary_std.png (with students that learn from a teacher); on a dataset with a known
    truth (`planted`), truth.csv (kdviz.experiments.truth.truth_table), the truth's answers in
    verdict.txt and error_vs_truth.png. The figures are kept when runs.csv is unchanged, so that a
    rerun of a finished sweep draws nothing. Return the summary."""
    summary = summarize(runs, experiment.baseline)
    csv, figure = runs.to_csv(index=False), out / "error_vs_secondary_std.png"
    unchanged = (out / "runs.csv").is_file() and (out / "runs.csv").read_text() == csv and figure.is_file()
    atomic_write(out / "runs.csv", csv)
    atomic_write(out / "summary.csv", summary.to_csv())
    truth = "teacher_truth_distance" in runs and runs["teacher_truth_distance"].notna().any()
    text = verdict(summary, experiment.baseline) if experiment.baseline is not None else ""
    if truth and "alone" in set(runs["arm"]):
        table = truth_table(experiment, runs)
        atomic_write(out / "truth.csv", table.to_csv())
        text = "\n".join(t for t in (text, truth_verdict(experiment, runs, table)) if t)
        if not (unchanged and (out / "error_vs_truth.png").is_file()):
            from ..experiment_plots import plot_error_vs_secondary_std  # matplotlib and seaborn: seconds to import

            students = [a for a in table.index if a in set(runs["arm"])]
            fig = plot_error_vs_secondary_std(runs, summary, arms=students, measure="teacher_truth_distance")
            fig.savefig(out / "error_vs_truth.png", dpi=110, bbox_inches="tight")
    if text:
        atomic_write(out / "verdict.txt", text + "\n")
    has_teachers = (
        "teacher_secondary_std" in runs and runs.loc[runs["role"] == "student", "teacher_secondary_std"].notna().any()
    )
    if has_teachers and not unchanged:
        from ..experiment_plots import plot_error_vs_secondary_std  # matplotlib and seaborn: seconds to import

        fig = plot_error_vs_secondary_std(runs, summary, arms=experiment.teacher_comparison_arms() or None)
        fig.savefig(figure, dpi=110, bbox_inches="tight")
    return summary


def report(experiment: Experiment, runs: pd.DataFrame, out: Path) -> pd.DataFrame:
    """write_results, then print the summary, the chosen variants and the verdict."""
    summary = write_results(experiment, runs, out)
    print(f"\n{experiment.name}: {experiment.description}")
    compared = f"; diff = paired test-error difference to {experiment.baseline} (negative is better), se over seeds"
    print(f"Errors in %, variants chosen on validation, test reported{compared if experiment.baseline else ''}.\n")
    print(summary.drop(columns=["variant"]).round(3).to_string())
    print("\nChosen variants:")
    for arm, variant in summary["variant"].items():
        print(f"  {arm}: {variant}")
    if (out / "verdict.txt").exists() and experiment.baseline is not None:
        print("\n" + (out / "verdict.txt").read_text().strip())
    print(
        f"\nWrote {out}/: runs.csv, summary.csv"
        + (", verdict.txt" if experiment.baseline else "")
        + (", error_vs_secondary_std.png" if (out / "error_vs_secondary_std.png").exists() else "")
        + (", truth.csv, error_vs_truth.png" if (out / "truth.csv").exists() else "")
    )
    return summary


__all__ = ["BACKENDS", "report", "run_sweep", "waves", "write_results"]

"""A grid of training runs: arms x variants x seeds, each on disk, finished runs skipped.

An experiment (kdviz.experiments.load) lists arms; an arm is a teacher, a student or a snapshot
(an intermediate checkpoint of a teacher arm), and may sweep parameters:

    [[arms]]
    name = "kd_icc_mimic"
    role = "student"
    teacher = "teacher_ce"
    objective = "kd+icc_mimic"
    sweep = {"icc_mimic.weight" = [0.03, 0.1, 0.3]}   # "term.param" or a training setting

A student runs once per variant of its own sweep and per variant of its teacher, on the same
seed as its teacher: seed s fixes the data split, the student's labelled subset and the
initialisation, so arms compare as paired samples. A teacher arm that runs on one seed only
teaches every seed of its students. Each run writes its training files and a result.json;
a run whose result.json exists is finished and never rerun (kdviz.experiments.sweep runs the
others, in order: teachers before their students).
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..atomic import atomic_write
from ..correlation import ICCReport, icc_distance, icc_of_logits, true_icc
from ..data import DatasetSplits, load_dataset
from ..deprecations import with_new_keys
from ..device import resolve_device
from ..inference import predict_logits, topk_errors
from ..models import build_model
from ..train import Output, load_model, train
from ..train.checkpoint import atomic_save, model_checkpoint
from .spec import Arm, Experiment


@dataclass(frozen=True)
class GridRun:
    """One training run (or snapshot evaluation) of the grid."""

    arm: Arm
    variant: tuple  # ((key, value), ...) of the arm's own sweep
    seed: int
    teacher: GridRun | None = None

    @property
    def label(self) -> str:
        """The variant of this run and of its teachers, e.g. 'icc_mimic.weight=0.1|teacher:icc_teacher.weight=0.3'."""
        own = ",".join(f"{k}={v}" for k, v in self.variant) or "default"
        return own if self.teacher is None else f"{own}|{self.teacher.arm.name}:{self.teacher.label}"

    @property
    def path(self) -> Path:
        safe = self.label.replace("/", "_").replace("|", "__").replace(":", "-")
        return Path(self.arm.name) / safe / f"seed_{self.seed}"


def plan(experiment: Experiment) -> list[GridRun]:
    """Every run of the grid, each after the runs it needs."""
    runs: dict[str, list[GridRun]] = {}
    for arm in experiment.arms:
        teacher_runs = runs[arm.teacher] if arm.teacher else [None]
        runs[arm.name] = [
            GridRun(arm, variant, seed, teacher)
            for seed in experiment.arm_seeds(arm)
            for teacher in teacher_runs
            if teacher is None or teacher.seed == seed or len(experiment.arm_seeds(teacher.arm)) == 1
            for variant in arm.variants()
        ]
    return [run for arm_runs in runs.values() for run in arm_runs]


@functools.lru_cache(maxsize=8)
def _load(dataset: str, root: str | None, n_train: int | None, seed: int, options: tuple) -> DatasetSplits:
    return load_dataset(dataset, root, n_train=n_train, seed=seed, **dict(options))


def run_data(run: GridRun, experiment: Experiment, data_root=None) -> DatasetSplits:
    """The splits a run trains and is measured on, loaded once per process."""
    root = None if data_root is None else str(data_root)
    options = tuple(sorted(experiment.dataset_options.items()))
    return _load(experiment.dataset, root, experiment.defaults(run.arm).n_train, run.seed, options)


def run_spec(run: GridRun, experiment: Experiment) -> dict:
    """Everything a run's result depends on, as JSON: a finished run is reused only if it matches."""
    defaults = experiment.defaults(run.arm)
    spec = {
        "dataset": experiment.dataset,
        "n_train": defaults.n_train,
        "seed": run.seed,
        "icc_tau": experiment.icc_tau,
        "teacher": run_spec(run.teacher, experiment) if run.teacher else None,
    }
    if experiment.dataset_options:  # only where given: results of runs before options existed still match
        spec["dataset_options"] = experiment.dataset_options
    if run.arm.role == "snapshot":
        spec["epoch"] = _snapshot_epoch(run)
    elif run.arm.role == "bayes":
        spec["bayes"] = True
    else:
        spec.update(
            model=defaults.model,
            model_kwargs=defaults.model_kwargs,
            objective=run.arm.objective_of(run.variant).spec,
            settings=experiment.run_settings(run.arm, run.variant),
        )
    return json.loads(json.dumps(spec))


def is_finished(run: GridRun, experiment: Experiment, out: Path) -> bool:
    """Whether `out` holds this run's result.json; one of other settings is refused, not reused."""
    path = out / run.path / "result.json"
    if not path.exists():
        return False
    stored = json.loads(path.read_text()).get("spec")
    wanted = run_spec(run, experiment)
    if stored != wanted:
        changed = sorted(k for k in set(wanted) | set(stored or {}) if (stored or {}).get(k) != wanted.get(k))
        raise ValueError(
            f"{out / run.path} holds a run with other settings ({', '.join(changed)}) than this experiment asks for; "
            "use another output folder (--out), or delete that folder to rerun it"
        )
    return True


def snapshot_epochs(runs: list[GridRun]) -> dict[GridRun, tuple[int, ...]]:
    """Teacher run -> the epochs whose checkpoints its snapshot arms read."""
    keep: dict[GridRun, set[int]] = {}
    for run in runs:
        if run.arm.role == "snapshot":
            keep.setdefault(run.teacher, set()).add(_snapshot_epoch(run))
    return {run: tuple(sorted(epochs)) for run, epochs in keep.items()}


def _snapshot_epoch(run: GridRun) -> int:
    return int(dict(run.variant).get("epoch", run.arm.epoch))


def checkpoint_of(run: GridRun, out: Path) -> Path:
    """The weights a run hands on to the runs that name it as teacher."""
    if run.arm.role == "snapshot":
        return out / run.teacher.path / f"epoch_{_snapshot_epoch(run)}.pt"
    return out / run.path / "best.pt"


def execute(run: GridRun, experiment: Experiment, out: Path, *, device=None, data_root=None, keep_epochs=()) -> dict:
    """Train (or, for a snapshot, evaluate) one run, write its result.json and return its row.
    `keep_epochs`: the epochs whose checkpoints the run keeps for snapshot arms."""
    dev = resolve_device(device)
    role_data = run_data(run, experiment, data_root)
    row = {
        "arm": run.arm.name,
        "role": run.arm.role,
        "variant": run.label,
        "seed": run.seed,
        "teacher_arm": run.teacher.arm.name if run.teacher else None,
        "teacher_variant": run.teacher.label if run.teacher else None,
    }
    if run.arm.role == "snapshot":
        path = checkpoint_of(run, out)
        if not path.exists():
            raise FileNotFoundError(
                f"snapshot {run.arm.name!r} needs {path}, which its teacher run did not keep (it finished "
                f"before the snapshot was added); delete {out / run.teacher.path} to retrain it"
            )
        model, ckpt = load_model(path, dev)
        report, test_err = _test_measures(model, role_data, dev, experiment.icc_tau)
        row.update(epoch=ckpt["epoch"], val_top1_err=ckpt["val_top1_err"], test_top1_err=test_err)
    elif run.arm.role == "bayes":
        report, test_err, val_err = _bayes_run(run, role_data, out, dev, experiment.icc_tau)
        row.update(epoch=None, val_top1_err=val_err, test_top1_err=test_err)
    else:
        result = train(
            role_data,
            **{**experiment.arm_kwargs(run.arm.name, run.variant), "seed": run.seed, "icc_tau": experiment.icc_tau},
            teacher=checkpoint_of(run.teacher, out) if run.teacher else None,
            device=dev,
            output=Output(
                out_dir=out / run.path,
                resume=True,
                name=f"{run.arm.name} {run.label} seed {run.seed}",
                progress=False,
                keep_epochs=keep_epochs,
                cache_dir=out / "teacher_cache",
            ),
        )
        best = result.best
        report, _ = _test_measures(result.model, role_data, dev, experiment.icc_tau)
        row.update(
            epoch=result.best_epoch,
            val_top1_err=best["val_top1_err"],
            test_top1_err=best["test_top1_err"],
            train_seconds=float(result.history["train_seconds"].sum()),
        )
    row.update(secondary_std=report.secondary_std, group_mass=report.group_mass, **_truth_scores(report))
    if run.teacher is not None:
        teacher_model, _ = load_model(checkpoint_of(run.teacher, out), dev)
        teacher_report, teacher_err = _test_measures(teacher_model, role_data, dev, experiment.icc_tau)
        row.update(
            teacher_secondary_std=teacher_report.secondary_std,
            teacher_group_mass=teacher_report.group_mass,
            teacher_test_top1_err=teacher_err,
            **{f"teacher_{k}": v for k, v in _truth_scores(teacher_report).items()},
            **icc_distance(teacher_report, report),
        )
    atomic_write(out / run.path / "result.json", json.dumps({**row, "spec": run_spec(run, experiment)}, indent=2))
    return row


def _bayes_run(run: GridRun, data: DatasetSplits, out: Path, dev, tau: float) -> tuple[ICCReport, float, float]:
    """Write the dataset's Bayes posterior as the run's best.pt (for the students that name it as
    teacher); its test ICC report, test and validation errors."""
    spec = data.truth.bayes_spec
    model = build_model(spec["name"], spec["num_classes"], tuple(spec["image_shape"]), **spec["kwargs"]).to(dev)
    report, test_err = _test_measures(model, data, dev, tau)
    val_logits = predict_logits(model, data.val, data.info, dev)
    val_err = float(topk_errors(val_logits, data.val.labels.to(dev), ks=(1,))[1])
    atomic_save(
        model_checkpoint(model, spec, data.info.name, epoch=0, val_top1_err=val_err), out / run.path / "best.pt"
    )
    return report, test_err, val_err


def _truth_scores(report: ICCReport) -> dict:
    """truth_distance and truth_rank of a report on a dataset with a known truth, else {}."""
    return {} if report.truth is None else {"truth_distance": report.truth_distance, "truth_rank": report.truth_rank}


def _test_measures(model, data: DatasetSplits, dev, tau: float) -> tuple[ICCReport, float]:
    """The test split's ICC report and top-1 error of `model`, from one pass over the split."""
    logits = predict_logits(model, data.test, data.info, dev)
    return icc_of_logits(logits, data.test.labels, data.info, tau, true_icc(data, tau)), float(
        topk_errors(logits, data.test.labels, ks=(1,))[1]
    )


def collect(experiment: Experiment, out_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per finished run of `experiment` in `out_dir` (runs not finished are left out)."""
    out = Path(out_dir)
    rows = [
        json.loads((out / run.path / "result.json").read_text())
        for run in plan(experiment)
        if (out / run.path / "result.json").exists()
    ]
    return pd.DataFrame([{k: v for k, v in with_new_keys(row).items() if k != "spec"} for row in rows])


def load_run_model(
    experiment: Experiment, out_dir: str | os.PathLike, arm: str, seed: int, variant: str | None = None, device=None
):
    """The model a finished run of `arm` on `seed` hands on (its best.pt, or a snapshot's
    checkpoint), for its variant label `variant` (default: the arm's first variant)."""
    runs = [r for r in plan(experiment) if r.arm.name == experiment.arm(arm).name and r.seed == seed]
    if variant is not None:
        runs = [r for r in runs if r.label == variant]
    if not runs:
        raise ValueError(
            f"no run of arm {arm!r} on seed {seed}"
            + (f" with variant {variant!r}" if variant else "")
            + f"; seeds: {list(experiment.seeds)}"
        )
    path = checkpoint_of(runs[0], Path(out_dir))
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run the sweep first (run_sweep or kdviz sweep)")
    model, _ = load_model(path, resolve_device(device))
    return model

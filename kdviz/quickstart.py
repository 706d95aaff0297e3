"""The quickstart experiment: two teachers and four students on digits, in well under a minute.

Teachers (CE and ICC-regularised) learn from the whole training split; students learn from a
small labelled subset of it (a low-data setting, where distillation visibly matters): alone,
with KD from each teacher, and with KD + ICC mimic from the ICC teacher. Every model is chosen
on the validation split; the test split is only reported.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import pandas as pd

from .correlation import ICCReport, extract_icc, icc_distance
from .data import DatasetSplits, load_dataset
from .train import TrainResult, train


@dataclass
class QuickstartConfig:
    dataset: str = "digits"
    teacher_model: str = "cnn"
    teacher_kwargs: dict = field(default_factory=lambda: {"width": 16})
    student_model: str = "mlp"
    student_kwargs: dict = field(default_factory=lambda: {"hidden": 32})
    student_n_train: int = 100
    teacher_epochs: int = 15
    student_epochs: int = 40
    teacher_batch_size: int = 64
    student_batch_size: int = 32  # more steps for the 100-image students
    lr: float = 0.05
    seed: int = 0

    @classmethod
    def smoke(cls, **overrides) -> "QuickstartConfig":
        """A few epochs only: for tests and for checking an installation."""
        return replace(cls(teacher_epochs=2, student_epochs=3), **overrides)


# (run name, role, objective, teacher run)
RUNS: tuple[tuple[str, str, str, str | None], ...] = (
    ("teacher_ce", "teacher", "ce", None),
    ("teacher_icc", "teacher", "icc_teacher", None),
    ("student_alone", "student", "ce", None),
    ("kd_from_ce_teacher", "student", "kd", "teacher_ce"),
    ("kd_from_icc_teacher", "student", "kd", "teacher_icc"),
    ("kd_icc_mimic_from_icc_teacher", "student", "kd+icc_mimic", "teacher_icc"),
)


@dataclass
class QuickstartResult:
    config: QuickstartConfig
    table: pd.DataFrame
    runs: dict[str, TrainResult]
    reports: dict[str, ICCReport]  # test-split ICC of every model
    setting: str
    out_dir: Path | None


def load_quickstart_data(cfg: QuickstartConfig) -> tuple[DatasetSplits, DatasetSplits]:
    """(teacher data, student data): the same validation and test splits, the student's training
    split a stratified subset of `student_n_train` images of the teacher's."""
    teacher_data = load_dataset(cfg.dataset, seed=cfg.seed)
    student_data = load_dataset(cfg.dataset, seed=cfg.seed, n_train=cfg.student_n_train)
    return teacher_data, student_data


def describe_setting(teacher_data: DatasetSplits, student_data: DatasetSplits) -> str:
    return (
        f"{teacher_data.info.name}: teachers train on {len(teacher_data.train)} images, students on "
        f"{len(student_data.train)} labelled images (low-data setting); validation {len(teacher_data.val)} "
        f"images (model selection), test {len(teacher_data.test)} images (reported only)"
    )


def train_quickstart_run(run: str, cfg: QuickstartConfig, teacher_data: DatasetSplits, student_data: DatasetSplits,
                         done: dict[str, TrainResult], *, out_dir: Path | None = None, device=None,
                         progress: bool = True, resume: bool = False) -> TrainResult:
    """Train one of RUNS by name; `done` holds the runs already trained (its teacher among them)."""
    spec = {name: (role, objective, teacher) for name, role, objective, teacher in RUNS}
    if run not in spec:
        raise ValueError(f"unknown quickstart run {run!r}; valid choices: {', '.join(spec)}")
    role, objective, teacher = spec[run]
    if teacher is not None and teacher not in done:
        raise ValueError(f"run {run!r} needs teacher {teacher!r}: train that run first")
    is_teacher = role == "teacher"
    return train(
        teacher_data if is_teacher else student_data,
        cfg.teacher_model if is_teacher else cfg.student_model,
        objective,
        teacher=done.get(teacher) if teacher else None,
        model_kwargs=cfg.teacher_kwargs if is_teacher else cfg.student_kwargs,
        epochs=cfg.teacher_epochs if is_teacher else cfg.student_epochs,
        batch_size=cfg.teacher_batch_size if is_teacher else cfg.student_batch_size, lr=cfg.lr, seed=cfg.seed, device=device, name=run, progress=progress,
        out_dir=None if out_dir is None else out_dir / run, resume=resume,
    )


def results_table(runs: dict[str, TrainResult], reports: dict[str, ICCReport]) -> pd.DataFrame:
    """One row per model: errors (in %) at the epoch chosen on validation, sigma2, group mass, and
    the teacher-student ICC distance on the test split for students."""
    teacher_of = {name: teacher for name, _, _, teacher in RUNS}
    rows = []
    for name, result in runs.items():
        best = result.best
        row = {
            "model": name,
            "objective": result.objective,
            "epoch": result.best_epoch,
            "val_err_%": 100 * best["val_top1_err"],
            "test_err_%": 100 * best["test_top1_err"],
            "sigma2": reports[name].sigma2,
        }
        if reports[name].group_mass is not None:
            row["group_mass"] = reports[name].group_mass
        teacher = teacher_of.get(name)
        if teacher in reports:
            row["icc_dist_to_teacher"] = icc_distance(reports[teacher], reports[name])["icc_distance"]
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")


def save_figures(result: QuickstartResult, out_dir: Path) -> list[Path]:
    """Heatmaps of every model's secondary ICC, teacher-student comparisons, error curves."""
    from .plots import plot_error_curves, plot_icc, plot_icc_comparison

    written = []

    def save(fig, name):
        path = out_dir / name
        fig.savefig(path, dpi=110, bbox_inches="tight")
        written.append(path)

    for name, report in result.reports.items():
        save(plot_icc(report, secondary=True, title=f"{name}: secondary ICC (test)"), f"icc_{name}.png")
    for name, _, _, teacher in RUNS:
        if teacher is not None and name in result.reports:
            fig = plot_icc_comparison(result.reports[teacher], result.reports[name], names=(teacher, name))
            save(fig, f"icc_diff_{name}.png")
    teachers = {n: r for n, r in result.runs.items() if n.startswith("teacher")}
    students = {n: r for n, r in result.runs.items() if not n.startswith("teacher")}
    save(plot_error_curves(teachers, splits=("val", "train"), title="teachers"), "error_curves_teachers.png")
    save(plot_error_curves(students, splits=("val", "train"), title="students"), "error_curves_students.png")
    return written


def run_quickstart(cfg: QuickstartConfig | None = None, out_dir: str | Path | None = "runs/quickstart", *,
                   device=None, progress: bool = True, resume: bool = False) -> QuickstartResult:
    """Train all RUNS, measure them on the test split, and write table, figures and config.

    Without resume, a previous quickstart in `out_dir` is replaced; with resume, finished runs
    are reloaded and an interrupted one continues from its last epoch.
    """
    cfg = cfg or QuickstartConfig()
    out = None if out_dir is None else Path(out_dir)
    if out is not None:
        if not resume:
            for name, *_ in RUNS:
                shutil.rmtree(out / name, ignore_errors=True)
        out.mkdir(parents=True, exist_ok=True)
    teacher_data, student_data = load_quickstart_data(cfg)
    setting = describe_setting(teacher_data, student_data)
    runs: dict[str, TrainResult] = {}
    for name, *_ in RUNS:
        runs[name] = train_quickstart_run(name, cfg, teacher_data, student_data, runs, out_dir=out, device=device,
                                          progress=progress, resume=resume)
    reports = {name: extract_icc(r.model, teacher_data, "test", device=device) for name, r in runs.items()}
    result = QuickstartResult(cfg, results_table(runs, reports), runs, reports, setting, out)
    if out is not None:
        result.table.to_csv(out / "metrics.csv")
        (out / "config.json").write_text(json.dumps({"setting": setting, **asdict(cfg)}, indent=2))
        save_figures(result, out)
    return result

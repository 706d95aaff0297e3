"""The experiment TOML format, its one loader (a bundled name or a path) and its one check.

    name = "tiny"                 # default: the file's name
    description = "..."
    extends = "crd-cifar100"      # optional: start from another experiment (tables merged key by key)
    dataset = "digits"
    dataset_options = {...}       # optional: the dataset's own options (e.g. planted's classes, noise)
    seeds = [0, 1, 2]             # default [0]
    baseline = "kd"               # optional: the arm students are compared with, seed by seed
    icc_tau = 4.0                 # temperature of the measured ICC matrices

    [train]                       # TrainConfig fields of both roles (epochs, batch_size, lr, schedule, ...)
    [lr_by_model]                 # optional: model-name prefix = lr, for models trained at another lr
    [teacher]                     # model, model_kwargs, n_train, objective, and any TrainConfig field
    [student]

    [[arms]]                      # name, role (teacher, student, snapshot, bayes), objective, teacher,
    name = "kd"                   # sweep = {"term.param" or setting = [values]}, settings = {...},
    role = "student"              # epoch (snapshots), seeds (this arm's own)
    teacher = "teacher_ce"
    objective = "kd"

An objective is a preset, "ce=0.1,kd=0.9", or a table {term = weight or {weight = ..., tau = ...}}.
A file without arms is a recipe: its arms are `teacher` and `student` (learning from `teacher`
when its objective distills), each with its role's objective. The whole file is checked when it
is loaded, so a typo fails before a long run starts, naming the file and the valid keys: every
value's type and range, model arguments, n_train against the dataset's declared size
(kdviz.data.SIZES), and the arms (kdviz.experiments.checks: teachers, cycles, objectives that
need a teacher, sweeps, snapshot epochs). tests/test_experiment_format.py gives every setting
one bad value.
"""

from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path

from ..data import DATASETS, dataset_options, n_train_range
from ..losses import Objective
from ..models import MODELS, model_arguments
from ..registry import UnknownNameError, check_keywords
from ..train import TrainConfig
from . import values
from .checks import check_arms
from .files import experiment_names, experiment_path
from .spec import ROLES, Arm, Experiment, Role

TOP_KEYS = [
    "name",
    "description",
    "extends",
    "dataset",
    "dataset_options",
    "seeds",
    "baseline",
    "icc_tau",
    "train",
    "lr_by_model",
    *ROLES,
    "arms",
]
ROLE_KEYS = ["model", "model_kwargs", "n_train", "objective"]
ARM_KEYS = ["name", "role", "objective", "teacher", "sweep", "settings", "epoch", "seeds"]
_MERGED = ("train", "lr_by_model", *ROLES)  # tables an `extends` file's values are merged into
_SMOKE = {"epochs": 1, "milestones": [], "warmup_epochs": 0}


class ExperimentError(ValueError):
    """A bad experiment file: the message names the file, the problem and the valid choices."""


def load_experiment(name_or_path: str | Path, *, smoke: bool = False, **overrides) -> Experiment:
    """A bundled experiment by name (see experiment_names()) or a .toml file by path, checked in
    full; `overrides` replace its top-level keys (e.g. seeds=[0]); `smoke` shrinks it to check the
    code path: its first seed, one epoch per run, one value of each swept parameter."""
    path = experiment_path(name_or_path)
    raw = {**_read(path), **overrides}
    try:
        experiment = _parse(raw, path.stem, str(path))
    except (ValueError, TypeError, KeyError) as e:  # UnknownNameError included
        raise ExperimentError(f"experiment file {path}: {e}") from e
    return shrink(experiment) if smoke else experiment


def _read(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """The file's TOML, on top of the file it `extends` (each table in _MERGED merged key by key)."""
    try:
        raw = tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ExperimentError(
            f"experiment file {path} is not UTF-8 ({e.reason} at byte {e.start}); save it as UTF-8"
        ) from None
    except tomllib.TOMLDecodeError as e:
        raise ExperimentError(f"experiment file {path} is not valid TOML: {e}") from None
    if "extends" not in raw:
        return raw
    try:
        base_path = experiment_path(raw["extends"])
    except (UnknownNameError, FileNotFoundError) as e:
        raise ExperimentError(f"experiment file {path}: extends: {e}") from None
    if base_path.resolve() in seen:
        raise ExperimentError(f"experiment file {path} extends {raw['extends']!r}, which extends it again")
    base = _read(base_path, (*seen, path.resolve()))
    merged = {k: v for k, v in base.items() if k not in ("name", "description", "arms", "extends")}
    for key, value in raw.items():
        both = isinstance(value, dict) and isinstance(merged.get(key), dict) and key in _MERGED
        merged[key] = {**merged[key], **value} if both else value
    return merged


def _parse(raw: dict, name: str, source: str) -> Experiment:
    check_keywords("the top level", raw, TOP_KEYS)
    dataset = values.required(raw, "the top level", "dataset")
    DATASETS.get(dataset)
    options = values.table(raw, "dataset_options")
    check_keywords(f"dataset_options of {dataset!r}", options, dataset_options(dataset))
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise TypeError(f"description must be a string, got {description!r}")
    train = values.train_settings("[train]", values.table(raw, "train"), {})
    lr_by_model = _lr_by_model(values.table(raw, "lr_by_model"), train)
    teacher, student = (_role(values.table(raw, role, required=True), role, train, dataset, options) for role in ROLES)
    raw_arms = raw.get("arms")
    roles = {"teacher": teacher, "student": student}
    arms = (
        _default_arms(teacher, student)
        if raw_arms is None
        else tuple(_arm(entry, roles, train) for entry in values.list_of_tables(raw_arms))
    )
    icc_tau = values.number(raw.get("icc_tau", 4.0), "icc_tau")
    TrainConfig(icc_tau=icc_tau)  # its range check
    experiment = Experiment(
        name=values.folder_name(raw.get("name", name), "name"),
        source=source,
        description=description,
        dataset=dataset,
        seeds=values.seed_list(raw.get("seeds", [0]), "seeds"),
        teacher=teacher,
        student=student,
        arms=arms,
        baseline=raw.get("baseline"),
        icc_tau=icc_tau,
        train=train,
        lr_by_model=lr_by_model,
        dataset_options=options,
    )
    check_arms(experiment)
    return experiment


def _lr_by_model(table: dict, train: dict) -> dict[str, float]:
    for prefix, lr in table.items():
        if not any(name.startswith(prefix) for name in MODELS.names()):
            raise ValueError(
                f"[lr_by_model] {prefix!r} is the start of no model name; models: {', '.join(MODELS.names())}"
            )
        if not values.fits(lr, 0.0):
            raise TypeError(f"[lr_by_model] {prefix} must be a number, got {lr!r}")
        TrainConfig(**{**train, "lr": lr})
    return dict(table)


def _role(table: dict, role: str, train: dict, dataset: str, options: dict) -> Role:
    settings = values.train_settings(f"[{role}]", table, train, tuple(ROLE_KEYS))
    model = values.required(table, f"[{role}]", "model")
    model_kwargs = values.table(table, "model_kwargs", name=f"{role}.model_kwargs")
    _check_model_kwargs(f"[{role}] model_kwargs", model, model_kwargs)
    n_train = table.get("n_train")
    if n_train is not None:
        _check_n_train(f"[{role}] n_train", n_train, dataset, options)
    objective = table.get("objective")
    if objective is not None:
        Objective.coerce(objective)
    return Role(model, model_kwargs, n_train, objective, settings)


def _check_model_kwargs(where: str, model: str, kwargs: dict) -> None:
    """The model's own argument names, each value of its default's type (a value's range is the
    model's to check when it is built)."""
    arguments = model_arguments(model)
    check_keywords(f"{where} of model {model!r}", kwargs, list(arguments))
    for key, value in kwargs.items():
        if not values.fits(value, arguments[key]):
            default = arguments[key]
            raise TypeError(f"{where}: {key} must be like {default!r} ({type(default).__name__}), got {value!r}")


def _check_n_train(where: str, n_train, dataset: str, options: dict) -> None:
    """A whole number of images that the dataset's declared size (kdviz.data.SIZES) can give."""
    if not (values.is_int(n_train) and n_train >= 1):
        raise ValueError(f"{where} must be a whole number >= 1, got {n_train!r}")
    bounds = n_train_range(dataset, **options)
    if bounds is not None and not bounds[0] <= n_train <= bounds[1]:
        raise ValueError(
            f"{where} must be in [{bounds[0]}, {bounds[1]}] for {dataset} (at least one image per class, at most the "
            f"{bounds[1]} training images left after validation), got {n_train}; give a number in that range, "
            "or remove n_train to train on all of them"
        )


def _default_arms(teacher: Role, student: Role) -> tuple[Arm, ...]:
    """A recipe's arms: its teacher, and its student learning from it when its objective distills."""
    teacher_arm = Arm("teacher", "teacher", teacher.objective or "ce")
    objective = student.objective or "ce"
    distills = Objective.coerce(objective).needs_teacher
    return teacher_arm, Arm("student", "student", objective, teacher="teacher" if distills else None)


def _arm(entry: dict, roles: dict[str, Role], train: dict) -> Arm:
    """One [[arms]] table; without an objective, its role's (else "ce"). Its settings are checked
    for names and types here (TOML's), for ranges with its variants (kdviz.experiments.checks)."""
    check_keywords(f"arm {entry.get('name', '(no name)')!r}", entry, ARM_KEYS)
    name = values.required(entry, "an arm", "name")
    role = values.required(entry, f"arm {name!r}", "role")
    seeds = entry.get("seeds")
    role_defaults = roles["student" if role == "student" else "teacher"]
    settings = values.table(entry, "settings", name=f"arm {name!r} settings")
    values.train_settings(f"arm {name!r} settings", settings, {**train, **role_defaults.settings})
    return Arm(
        **{
            "objective": role_defaults.objective or "ce",
            **entry,
            "seeds": None if seeds is None else values.seed_list(seeds, f"arm {name!r} seeds"),
        }
    )


def add_arms(experiment: Experiment, *arms: Arm) -> Experiment:
    """The experiment with `arms` listed after its own, checked as a file's arms are (names unique,
    teachers listed before their students, sweeps, objectives, settings). Runs of the arms it
    already had keep their folders, so run_sweep trains only the new arms' runs."""
    if not all(isinstance(arm, Arm) for arm in arms):
        raise TypeError(
            f"add_arms takes Arm(...) objects, got {[type(a).__name__ for a in arms if not isinstance(a, Arm)]}"
        )
    grown = replace(experiment, arms=(*experiment.arms, *arms))
    try:
        check_arms(grown)
    except (ValueError, TypeError) as e:  # UnknownNameError included
        raise ExperimentError(f"arms added to experiment {experiment.name!r}: {e}") from e
    return grown


def shrink(experiment: Experiment) -> Experiment:
    """The experiment cut down to check its code path: the first seed (of it and of each arm), one
    epoch per run (snapshots of epoch 0), the first value of each swept parameter."""

    def role(r: Role) -> Role:
        return replace(r, settings={**r.settings, **_SMOKE})

    def arm(a: Arm) -> Arm:
        sweep = {key: values[:1] for key, values in a.sweep.items() if key != "epoch"}
        settings = {**a.settings, **{k: v for k, v in _SMOKE.items() if k in a.settings}}
        return replace(
            a,
            sweep=sweep,
            settings=settings,
            epoch=0 if a.role == "snapshot" else a.epoch,
            seeds=None if a.seeds is None else a.seeds[:1],
        )

    return replace(
        experiment,
        seeds=experiment.seeds[:1],
        train={**experiment.train, **_SMOKE},
        teacher=role(experiment.teacher),
        student=role(experiment.student),
        arms=tuple(arm(a) for a in experiment.arms),
    )


__all__ = ["ExperimentError", "add_arms", "experiment_names", "experiment_path", "load_experiment", "shrink"]

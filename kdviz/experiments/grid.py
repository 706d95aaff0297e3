"""A grid of training runs: arms x variants x seeds, each on disk, finished runs skipped.

A protocol (a TOML file, see expressive-digits.toml) names a dataset, the seeds, a default model
and training settings for teachers and for students, and a list of arms. An arm is a teacher,
a student or a snapshot (an intermediate checkpoint of a teacher arm); it may sweep parameters:

    [[arms]]
    name = "kd_icc_mimic"
    role = "student"
    teacher = "teacher_ce"
    objective = "kd+icc_mimic"
    sweep = {"icc_mimic.weight" = [0.03, 0.1, 0.3]}   # "term.param" or a training setting

A student runs once per variant of its own sweep and per variant of its teacher, on the same
seed as its teacher: seed s fixes the data split, the student's labelled subset and the
initialisation, so arms compare as paired samples. Each run writes its training files and a
result.json; `run_grid` skips runs whose result.json exists and resumes interrupted ones.
"""
from __future__ import annotations

import itertools
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from ..correlation import ICCReport, icc_distance, icc_of_logits
from ..data import DatasetSplits, load_dataset
from ..device import resolve_device
from ..inference import predict_logits, topk_errors
from ..losses import Objective
from ..recipes import load_recipe
from ..registry import check_keywords
from ..train import TrainConfig, load_model, train

ROLES = ("teacher", "student", "snapshot")


@dataclass(frozen=True)
class RoleDefaults:
    """Model and training settings shared by every arm of one role."""

    model: str
    model_kwargs: dict = field(default_factory=dict)
    n_train: int | None = None  # a stratified labelled subset of the training split
    settings: dict = field(default_factory=dict)  # TrainConfig fields


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: its sweep and settings are dicts
class Arm:
    name: str
    role: str
    objective: str | dict = "ce"
    teacher: str | None = None  # the teacher arm (students; teachers trained beside a reference), or the source of a snapshot
    sweep: dict = field(default_factory=dict)  # "term.param" or setting -> list of values
    settings: dict = field(default_factory=dict)
    epoch: int | None = None  # snapshots: which epoch of the source run (0-based); may be swept as "epoch"


@dataclass
class Protocol:
    name: str
    dataset: str
    seeds: list[int]
    teacher: RoleDefaults
    student: RoleDefaults
    arms: list[Arm]
    baseline: str  # the arm every other arm is compared with, seed by seed
    icc_tau: float = 4.0
    description: str = ""

    def arm(self, name: str) -> Arm:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise ValueError(f"protocol {self.name!r} has no arm {name!r}; its arms: {', '.join(a.name for a in self.arms)}")

    def teacher_comparison_arms(self) -> list[str]:
        """Student arms that learn by plain KD, one per teacher arm: they compare teachers with
        the student's objective held fixed."""
        return [a.name for a in self.arms if a.role == "student" and a.teacher and a.objective == "kd"]

    def defaults(self, arm: Arm) -> RoleDefaults:
        # A snapshot is a teacher's checkpoint: it lives on the teachers' data.
        return self.student if arm.role == "student" else self.teacher


PROTOCOL_KEYS = ["name", "description", "recipe", "dataset", "seeds", "baseline", "icc_tau", "teacher", "student", "arms"]
ROLE_KEYS = ["model", "model_kwargs", "n_train"]
ARM_KEYS = ["name", "role", "objective", "teacher", "sweep", "settings", "epoch"]


def load_protocol(path: str | os.PathLike, **overrides) -> Protocol:
    """Read a protocol TOML file; `overrides` replace its top-level keys (e.g. seeds=[0])."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"protocol file {path} does not exist")
    raw = {**tomllib.loads(path.read_text()), **overrides}
    check_keywords(f"protocol file {path}", raw, PROTOCOL_KEYS)
    missing = [k for k in ("name", "seeds", "baseline", "arms") if k not in raw]
    missing += [] if "recipe" in raw else [k for k in ("dataset", "teacher", "student") if k not in raw]
    if missing:
        raise ValueError(f"protocol file {path} lacks {', '.join(missing)} (dataset, teacher and student may come from a recipe = NAME)")
    recipe = load_recipe(raw["recipe"]) if "recipe" in raw else None
    roles = {}
    for role in ("teacher", "student"):
        section = {**_recipe_defaults(recipe, role), **raw.get(role, {})}
        own = {k: section.pop(k) for k in ROLE_KEYS if k in section}
        if "model" not in own:
            raise ValueError(f"protocol file {path}: [{role}] needs model = NAME")
        check_keywords(f"[{role}] of {path}", section, list(TrainConfig.__dataclass_fields__))
        roles[role] = RoleDefaults(settings=section, **own)
    arms = []
    for entry in raw["arms"]:
        check_keywords(f"an arm of {path}", entry, ARM_KEYS)
        arms.append(Arm(**entry))
    protocol = Protocol(
        name=raw["name"], dataset=raw.get("dataset") or recipe.dataset, seeds=list(raw["seeds"]), teacher=roles["teacher"], student=roles["student"],
        arms=arms, baseline=raw["baseline"], icc_tau=raw.get("icc_tau", 4.0), description=raw.get("description", ""),
    )
    _check_protocol(protocol, path)
    return protocol


def _recipe_defaults(recipe, role: str) -> dict:
    """A role's model and training settings from a recipe (the protocol's own [teacher] or
    [student] table overrides them); its loss is not used: every arm names its own objective."""
    if recipe is None:
        return {}
    settings = recipe.train_kwargs(role)
    settings.pop("objective")
    if recipe.n_train is not None:
        settings["n_train"] = recipe.n_train
    return settings


def _check_protocol(protocol: Protocol, path) -> None:
    names = [a.name for a in protocol.arms]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: arm names must be unique, got {names}")
    protocol.arm(protocol.baseline)
    seen: set[str] = set()
    for arm in protocol.arms:
        if arm.role not in ROLES:
            raise ValueError(f"{path}: arm {arm.name!r} has role {arm.role!r}; valid roles: {', '.join(ROLES)}")
        if arm.role == "snapshot" and arm.teacher is None:
            raise ValueError(f"{path}: snapshot arm {arm.name!r} needs teacher = <the teacher arm listed before it>")
        if arm.teacher is not None and arm.teacher not in seen:
            raise ValueError(f"{path}: arm {arm.name!r} names teacher {arm.teacher!r}, which must be an arm listed before it")
        if arm.teacher is not None and protocol.arm(arm.teacher).role == "student":
            raise ValueError(f"{path}: arm {arm.name!r} names teacher {arm.teacher!r}, a student arm; name a teacher or snapshot arm")
        if arm.role == "snapshot":
            source = protocol.arm(arm.teacher)
            epochs = TrainConfig.from_kwargs(**{**protocol.teacher.settings, **source.settings}).epochs
            wanted = arm.sweep.get("epoch", [arm.epoch])
            if not all(isinstance(e, int) and 0 <= e < epochs for e in wanted):
                raise ValueError(f"snapshot arm {arm.name!r} of {path} needs epoch = N (or sweep = {{epoch = [...]}}) "
                                 f"with every N in [0, {epochs}) (its teacher trains {epochs} epochs), got {wanted}")
        for key, values in arm.sweep.items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"{path}: arm {arm.name!r} sweeps {key!r} over {values!r}; give a non-empty list")
        if arm.role != "snapshot":
            for variant in _own_variants(arm):  # every objective and setting is checked before anything trains
                _objective(arm, variant)
                TrainConfig.from_kwargs(**{**protocol.defaults(arm).settings, **arm.settings, **_settings_of(variant)})
        seen.add(arm.name)


@dataclass(frozen=True)
class Run:
    """One training run (or snapshot evaluation) of the grid."""

    arm: Arm
    variant: tuple  # ((key, value), ...) of the arm's own sweep
    seed: int
    teacher: "Run | None" = None

    @property
    def label(self) -> str:
        """The variant of this run and of its teachers, e.g. 'icc_mimic.weight=0.1|teacher:icc_teacher.weight=0.3'."""
        own = ",".join(f"{k}={v}" for k, v in self.variant) or "default"
        return own if self.teacher is None else f"{own}|{self.teacher.arm.name}:{self.teacher.label}"

    @property
    def path(self) -> Path:
        safe = self.label.replace("/", "_").replace("|", "__").replace(":", "-")
        return Path(self.arm.name) / safe / f"seed_{self.seed}"


def _own_variants(arm: Arm) -> list[tuple]:
    keys = sorted(arm.sweep)
    return [tuple(zip(keys, values)) for values in itertools.product(*(arm.sweep[k] for k in keys))]


def plan(protocol: Protocol) -> list[Run]:
    """Every run of the grid, each after the runs it needs."""
    runs: dict[str, list[Run]] = {}
    for arm in protocol.arms:
        teacher_runs = runs[arm.teacher] if arm.teacher else [None]
        runs[arm.name] = [
            Run(arm, variant, seed, teacher)
            for seed in protocol.seeds
            for teacher in teacher_runs
            if teacher is None or teacher.seed == seed
            for variant in _own_variants(arm)
        ]
    return [run for arm_runs in runs.values() for run in arm_runs]


def _settings_of(variant: tuple) -> dict:
    return {k: v for k, v in variant if "." not in k and k != "epoch"}


def _objective(arm: Arm, variant: tuple) -> Objective:
    spec = Objective.parse(arm.objective).spec if isinstance(arm.objective, str) else Objective(arm.objective).spec
    spec = {name: dict(s) for name, s in spec.items()}
    for key, value in variant:
        if "." in key:
            term, param = key.split(".", 1)
            if term not in spec:
                raise ValueError(f"arm {arm.name!r} sweeps {key!r} but its objective has no term {term!r} ({', '.join(spec)})")
            spec[term][param] = value
    return Objective(spec)


class _DataCache:
    """The teachers' and students' splits of each seed, loaded once."""

    def __init__(self, protocol: Protocol, data_root):
        self.protocol, self.root, self.loaded = protocol, data_root, {}

    def get(self, role: str, seed: int) -> DatasetSplits:
        n_train = self.protocol.student.n_train if role == "student" else self.protocol.teacher.n_train
        key = (n_train, seed)
        if key not in self.loaded:
            self.loaded[key] = load_dataset(self.protocol.dataset, self.root, n_train=n_train, seed=seed)
        return self.loaded[key]


def run_grid(protocol: Protocol, out_dir: str | os.PathLike, *, data_root=None, device=None, progress: bool = True) -> pd.DataFrame:
    """Run every run of `protocol` not finished in `out_dir`; return the tidy table of all runs."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    data = _DataCache(protocol, data_root)
    runs = plan(protocol)
    keep = _snapshot_epochs(runs)
    todo = [run for run in runs if not _finished(run, protocol, out)]
    with tqdm(total=len(runs), initial=len(runs) - len(todo), desc=protocol.name, disable=not progress) as bar:
        for run in todo:
            bar.set_postfix_str(f"{run.arm.name} seed {run.seed}")
            result = _execute(run, protocol, out, data, dev, keep.get(run, ()))
            _write_json(out / run.path / "result.json", {**result, "spec": run_spec(run, protocol)})
            bar.update(1)
    return collect(protocol, out)


def run_spec(run: Run, protocol: Protocol) -> dict:
    """Everything a run's result depends on, as JSON: a finished run is reused only if it matches."""
    defaults = protocol.defaults(run.arm)
    spec = {
        "dataset": protocol.dataset, "n_train": defaults.n_train, "seed": run.seed, "icc_tau": protocol.icc_tau,
        "teacher": run_spec(run.teacher, protocol) if run.teacher else None,
    }
    if run.arm.role == "snapshot":
        spec["epoch"] = _snapshot_epoch(run)
    else:
        spec.update(model=defaults.model, model_kwargs=defaults.model_kwargs, objective=_objective(run.arm, run.variant).spec,
                    settings={**defaults.settings, **run.arm.settings, **_settings_of(run.variant)})
    return json.loads(json.dumps(spec))


def _finished(run: Run, protocol: Protocol, out: Path) -> bool:
    path = out / run.path / "result.json"
    if not path.exists():
        return False
    stored = json.loads(path.read_text()).get("spec")
    wanted = run_spec(run, protocol)
    if stored != wanted:
        changed = sorted(k for k in set(wanted) | set(stored or {}) if (stored or {}).get(k) != wanted.get(k))
        raise ValueError(f"{out / run.path} holds a run with other settings ({', '.join(changed)}) than this protocol asks for; "
                         "use another output folder (--out), or delete that folder to rerun it")
    return True


def _snapshot_epochs(runs: list[Run]) -> dict[Run, tuple[int, ...]]:
    keep: dict[Run, set[int]] = {}
    for run in runs:
        if run.arm.role == "snapshot":
            keep.setdefault(run.teacher, set()).add(_snapshot_epoch(run))
    return {run: tuple(sorted(epochs)) for run, epochs in keep.items()}


def _snapshot_epoch(run: Run) -> int:
    return int(dict(run.variant).get("epoch", run.arm.epoch))


def _checkpoint(run: Run, out: Path) -> Path:
    """The weights a run hands on to the runs that name it as teacher."""
    if run.arm.role == "snapshot":
        return out / run.teacher.path / f"epoch_{_snapshot_epoch(run)}.pt"
    return out / run.path / "best.pt"


def _execute(run: Run, protocol: Protocol, out: Path, data: _DataCache, dev, keep_epochs) -> dict:
    role_data = data.get("student" if run.arm.role == "student" else "teacher", run.seed)
    row = {"arm": run.arm.name, "role": run.arm.role, "variant": run.label, "seed": run.seed,
           "teacher_arm": run.teacher.arm.name if run.teacher else None, "teacher_variant": run.teacher.label if run.teacher else None}
    if run.arm.role == "snapshot":
        path = _checkpoint(run, out)
        if not path.exists():
            raise FileNotFoundError(f"snapshot {run.arm.name!r} needs {path}, which its teacher run did not keep (it finished "
                                    f"before the snapshot was added); delete {out / run.teacher.path} to retrain it")
        model, ckpt = load_model(path, dev)
        report, test_err = _test_measures(model, role_data, dev, protocol.icc_tau)
        row.update(epoch=ckpt["epoch"], val_top1_err=ckpt["val_top1_err"], test_top1_err=test_err)
    else:
        defaults = protocol.defaults(run.arm)
        settings = {**defaults.settings, **run.arm.settings, **_settings_of(run.variant)}
        result = train(
            role_data, defaults.model, _objective(run.arm, run.variant), model_kwargs=defaults.model_kwargs,
            teacher=_checkpoint(run.teacher, out) if run.teacher else None, out_dir=out / run.path, resume=True,
            name=f"{run.arm.name} {run.label} seed {run.seed}", progress=False, keep_epochs=keep_epochs,
            cache_dir=out / "teacher_cache", device=dev, seed=run.seed, icc_tau=protocol.icc_tau, **settings,
        )
        best = result.best
        report, _ = _test_measures(result.model, role_data, dev, protocol.icc_tau)
        row.update(epoch=result.best_epoch, val_top1_err=best["val_top1_err"], test_top1_err=best["test_top1_err"],
                   train_seconds=float(result.history["train_seconds"].sum()))
    row.update(sigma2=report.sigma2, group_mass=report.group_mass)
    if run.teacher is not None:
        teacher_model, _ = load_model(_checkpoint(run.teacher, out), dev)
        teacher_report, teacher_err = _test_measures(teacher_model, role_data, dev, protocol.icc_tau)
        row.update(teacher_sigma2=teacher_report.sigma2, teacher_group_mass=teacher_report.group_mass,
                   teacher_test_top1_err=teacher_err, **icc_distance(teacher_report, report))
    return row


def _test_measures(model, data: DatasetSplits, dev, tau: float) -> tuple[ICCReport, float]:
    """The test split's ICC report and top-1 error of `model`, from one pass over the split."""
    logits = predict_logits(model, data.test, data.info, dev)
    return icc_of_logits(logits, data.test.labels, data.info, tau), float(topk_errors(logits, data.test.labels, ks=(1,))[1])


def _write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def collect(protocol: Protocol, out_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per finished run of `protocol` in `out_dir` (runs not finished are left out)."""
    out = Path(out_dir)
    rows = [json.loads((out / run.path / "result.json").read_text()) for run in plan(protocol) if (out / run.path / "result.json").exists()]
    return pd.DataFrame([{k: v for k, v in row.items() if k != "spec"} for row in rows])


def load_run_model(protocol: Protocol, out_dir: str | os.PathLike, arm: str, seed: int, variant: str | None = None, device=None):
    """The model a finished run of `arm` on `seed` hands on (its best.pt, or a snapshot's
    checkpoint), for its variant label `variant` (default: the arm's first variant)."""
    runs = [r for r in plan(protocol) if r.arm.name == protocol.arm(arm).name and r.seed == seed]
    if variant is not None:
        runs = [r for r in runs if r.label == variant]
    if not runs:
        raise ValueError(f"no run of arm {arm!r} on seed {seed}" + (f" with variant {variant!r}" if variant else "")
                         + f"; seeds: {protocol.seeds}")
    path = _checkpoint(runs[0], Path(out_dir))
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run the grid first (run_grid or python -m kdviz.experiments.expressive)")
    model, _ = load_model(path, resolve_device(device))
    return model

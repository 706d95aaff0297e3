"""What an experiment is: models trained with objectives, as arms x variants x seeds.

Every way kdviz describes "train these models with these objectives" is one `Experiment`: a
recipe (one teacher, one student: the `[teacher]` and `[student]` tables and no arms), the
quickstart, and the studies (arms, sweeps, seeds). The TOML format and its checks are in
`kdviz.experiments.load`; this module holds the parsed form and the settings it hands to
`kdviz.train`.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field, replace

from ..losses import Objective

ROLES = ("teacher", "student")  # the roles of an experiment's default models
# A snapshot is an intermediate checkpoint of a teacher arm; a bayes arm is the Bayes posterior of a
# dataset that knows it (`planted`), a teacher that is computed, not trained.
ARM_ROLES = (*ROLES, "snapshot", "bayes")


@dataclass(frozen=True)
class Role:
    """The model every arm of one role trains, by default with `objective`."""

    model: str
    model_kwargs: dict = field(default_factory=dict)
    n_train: int | None = None  # a stratified labelled subset of the training split
    objective: str | dict | None = None  # the arms' default objective (a recipe's loss)
    settings: dict = field(default_factory=dict)  # TrainConfig fields of this role, over [train]'s


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: its sweep and settings are dicts
class Arm:
    name: str
    role: str
    objective: str | dict = "ce"
    teacher: str | None = (
        None  # the teacher arm (students; teachers trained beside a reference), or the source of a snapshot
    )
    sweep: dict = field(default_factory=dict)  # "term.param" or setting -> list of values
    settings: dict = field(default_factory=dict)
    epoch: int | None = None  # snapshots: which epoch of the source run (0-based); may be swept as "epoch"
    seeds: tuple[int, ...] | None = None  # this arm's own seeds (default: the experiment's)

    def variants(self) -> list[tuple]:
        """Every ((key, value), ...) of the arm's own sweep (one empty variant without a sweep)."""
        keys = sorted(self.sweep)
        return [tuple(zip(keys, values)) for values in itertools.product(*(self.sweep[k] for k in keys))]

    def objective_of(self, variant: tuple) -> Objective:
        """The arm's objective with the variant's "term.param" values laid over it."""
        params: dict[str, dict] = {}
        for key, value in variant:
            if "." in key:
                term, param = key.split(".", 1)
                params.setdefault(term, {})[param] = value
        try:
            objective = Objective.coerce(self.objective)
        except ValueError as e:
            raise ValueError(f"arm {self.name!r} objective: {e}") from None
        try:
            return objective.with_params(params)
        except ValueError as e:
            raise ValueError(f"arm {self.name!r} sweeps {', '.join(f'{t}.*' for t in params)}: {e}") from None


def variant_settings(variant: tuple) -> dict:
    """The training settings a variant sets (its keys without a dot, but a snapshot's epoch)."""
    return {k: v for k, v in variant if "." not in k and k != "epoch"}


@dataclass(frozen=True)
class Experiment:
    name: str
    source: str  # the file it was read from
    description: str
    dataset: str
    seeds: tuple[int, ...]
    teacher: Role
    student: Role
    arms: tuple[Arm, ...]
    baseline: str | None = None  # the arm every other student arm is compared with, seed by seed
    icc_tau: float = 4.0
    train: dict = field(default_factory=dict)  # TrainConfig fields of both roles
    lr_by_model: dict[str, float] = field(default_factory=dict)  # model-name prefix -> lr
    dataset_options: dict = field(default_factory=dict)  # load_dataset(dataset, **dataset_options)

    def arm(self, name: str) -> Arm:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise ValueError(
            f"experiment {self.name!r} has no arm {name!r}; its arms: {', '.join(a.name for a in self.arms)}"
        )

    def role(self, name: str) -> Role:
        if name not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {name!r}")
        return getattr(self, name)

    @staticmethod
    def role_of(arm: Arm) -> str:
        # A snapshot is a teacher's checkpoint: it lives on the teachers' data.
        return "student" if arm.role == "student" else "teacher"

    def defaults(self, arm: Arm) -> Role:
        return self.role(self.role_of(arm))

    def run_settings(self, arm: Arm, variant: tuple) -> dict:
        """The TrainConfig fields of one run: its role's, the arm's, then the variant's."""
        return {**self.settings(self.role_of(arm)), **arm.settings, **variant_settings(variant)}

    def only(self, names: list[str]) -> Experiment:
        """The experiment cut down to the arms `names` and the teacher arms they learn from."""
        wanted = {self.arm(name).name for name in names}
        for arm in reversed(self.arms):  # a teacher is listed before its students
            if arm.name in wanted and arm.teacher is not None:
                wanted.add(arm.teacher)
        baseline = self.baseline if self.baseline in wanted else None
        return replace(self, arms=tuple(a for a in self.arms if a.name in wanted), baseline=baseline)

    def arm_seeds(self, arm: Arm) -> tuple[int, ...]:
        return self.seeds if arm.seeds is None else arm.seeds

    def teacher_comparison_arms(self) -> list[str]:
        """Student arms that learn by plain KD, one per teacher arm: they compare teachers with
        the student's objective held fixed."""
        return [a.name for a in self.arms if a.role == "student" and a.teacher and a.objective == "kd"]

    def lr_for(self, model: str) -> float | None:
        """The [lr_by_model] lr of the longest name prefix of `model`; None when none matches."""
        matches = [prefix for prefix in self.lr_by_model if model.startswith(prefix)]
        return self.lr_by_model[max(matches, key=len)] if matches else None

    def settings(self, role: str, model: str | None = None) -> dict:
        """TrainConfig fields of `role` training `model` (default: the role's): [train], then the
        [lr_by_model] lr of the model, then the role's own table."""
        part = self.role(role)
        lr = self.lr_for(model or part.model)
        return copy.deepcopy({**self.train, **({"lr": lr} if lr is not None else {}), **part.settings})

    def arm_kwargs(self, name: str, variant: tuple = ()) -> dict:
        """Keywords of kdviz.train for arm `name` (a teacher or student) and a variant of its sweep:
        model, model_kwargs, objective and the TrainConfig fields; the seed is the caller's."""
        arm = self.arm(name)
        if arm.role == "snapshot":
            raise ValueError(
                f"arm {name!r} is a snapshot of {arm.teacher!r}: it is read from that arm's run, not trained"
            )
        if arm.role == "bayes":
            raise ValueError(f"arm {name!r} is the dataset's Bayes posterior: it is computed, not trained")
        role = self.defaults(arm)
        return {
            "model": role.model,
            "model_kwargs": copy.deepcopy(role.model_kwargs),
            "objective": arm.objective_of(variant),
            **self.run_settings(arm, variant),
        }

    def train_kwargs(self, role: str, model: str | None = None) -> dict:
        """Keywords of kdviz.train for `role` training `model` (default: the role's): model,
        model_kwargs, objective and the TrainConfig fields. Another model than the role's gets
        no model_kwargs: they are the role model's own arguments."""
        part = self.role(role)
        model = model or part.model
        model_kwargs = copy.deepcopy(part.model_kwargs) if model == part.model else {}
        objective = copy.deepcopy(part.objective if part.objective is not None else "ce")
        return {"model": model, "model_kwargs": model_kwargs, "objective": objective, **self.settings(role, model)}


__all__ = ["ARM_ROLES", "ROLES", "Arm", "Experiment", "Role", "variant_settings"]

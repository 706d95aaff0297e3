"""The checks of an experiment's arms, run when a file is loaded and when arms are added in code,
so that every mistake the file alone reveals fails before the first run trains.

An arm is checked for its name (a folder name), its role, the teacher it learns from (an arm of
the experiment, listed before it, not a student, no cycle of teachers), whether its objective
needs that teacher, its sweep (non-empty lists of keys its role can sweep) and the settings of
each of its variants; a snapshot for its epoch.
"""

from __future__ import annotations

from ..registry import did_you_mean
from ..train import TrainConfig
from . import values
from .spec import ARM_ROLES, Arm, Experiment


def check_arms(experiment: Experiment) -> None:
    """Every arm of `experiment`, and its baseline; a ValueError or TypeError names the first mistake."""
    if not experiment.arms:
        raise ValueError(
            "arms = [] lists no arm, so nothing would run: add [[arms]] tables (name, role, objective, teacher), "
            "or remove `arms` to train the file's [teacher] and [student] as a recipe"
        )
    names = [a.name for a in experiment.arms]
    for name in names:
        values.folder_name(name, "an arm's name")
    if len(set(names)) != len(names):
        raise ValueError(f"arm names must be unique, got {names}")
    if experiment.baseline is not None:
        experiment.arm(experiment.baseline)
    _check_teachers(experiment.arms)
    by_name = {a.name: a for a in experiment.arms}
    for arm in experiment.arms:
        _check_arm(experiment, arm, by_name.get(arm.teacher))


def _check_teachers(arms: tuple[Arm, ...]) -> None:
    """Each named teacher is an arm, the teachers form no cycle, and each is listed before its students."""
    by_name = {a.name: a for a in arms}
    for arm in arms:
        if arm.teacher is not None and arm.teacher not in by_name:
            raise ValueError(
                f"arm {arm.name!r} names teacher {arm.teacher!r}, which is no arm of the experiment; "
                f"arms: {', '.join(by_name)}{did_you_mean(str(arm.teacher), by_name)}"
            )
    for arm in arms:
        chain = [arm.name]
        while by_name[chain[-1]].teacher is not None:
            teacher = by_name[chain[-1]].teacher
            if teacher in chain:
                cycle = " -> ".join([*chain[chain.index(teacher) :], teacher])
                raise ValueError(
                    f"the arms' teachers form a cycle: {cycle} (each arm -> the teacher it names), so none of "
                    "them could train first; give one of them a teacher outside the cycle, or none"
                )
            chain.append(teacher)
    position = {a.name: i for i, a in enumerate(arms)}
    for arm in arms:
        if arm.teacher is not None and position[arm.teacher] > position[arm.name]:
            raise ValueError(
                f"arm {arm.name!r} names teacher {arm.teacher!r}, which is listed after it; "
                f"list {arm.teacher!r} before {arm.name!r} (a teacher trains before its students)"
            )


def _check_arm(experiment: Experiment, arm: Arm, teacher: Arm | None) -> None:
    if arm.role not in ARM_ROLES:
        raise ValueError(f"arm {arm.name!r} has role {arm.role!r}; valid roles: {', '.join(ARM_ROLES)}")
    if teacher is not None and teacher.role == "student":
        raise ValueError(
            f"arm {arm.name!r} names teacher {teacher.name!r}, a student arm; name a teacher or snapshot arm"
        )
    if teacher is not None:
        _check_teacher_seeds(experiment, arm, teacher)
    if not isinstance(arm.sweep, dict):
        raise TypeError(f'arm {arm.name!r}: sweep must be a table such as {{"kd.tau" = [2.0, 4.0]}}, got {arm.sweep!r}')
    if not isinstance(arm.settings, dict):
        raise TypeError(f"arm {arm.name!r}: settings must be a table such as {{lr = 0.01}}, got {arm.settings!r}")
    for key, points in arm.sweep.items():
        if not isinstance(points, list) or not points:
            raise ValueError(f"arm {arm.name!r} sweeps {key!r} over {points!r}; give a non-empty list")
    if arm.role == "snapshot":
        _check_snapshot(experiment, arm, teacher)
        return
    if arm.role == "bayes":
        if experiment.dataset != "planted":
            raise ValueError(
                f"bayes arm {arm.name!r} needs a dataset whose Bayes posterior is known (planted), "
                f"not {experiment.dataset!r}"
            )
        return
    if arm.epoch is not None or "epoch" in arm.sweep:
        raise ValueError(
            f"arm {arm.name!r} sets epoch, which only a snapshot arm reads (the checkpoint of its teacher's epoch); "
            'remove it, or make the arm role = "snapshot"'
        )
    for variant in arm.variants():
        objective = arm.objective_of(variant)
        if objective.needs_teacher and teacher is None:
            teachers = [a.name for a in experiment.arms if a.role != "student" and a is not arm]
            raise ValueError(
                f"arm {arm.name!r} has objective {objective.describe()}, which distills from a teacher, but names "
                f"none; add teacher = <a teacher or snapshot arm listed before it>"
                + (f" ({', '.join(teachers)})" if teachers else "")
                + ', or give it an objective that does not distill (e.g. "ce")'
            )
        TrainConfig.from_kwargs(**experiment.run_settings(arm, variant))


def _check_teacher_seeds(experiment: Experiment, arm: Arm, teacher: Arm) -> None:
    """A run on seed s learns from its teacher's run on seed s, or from the teacher's one run."""
    mine, theirs = experiment.arm_seeds(arm), experiment.arm_seeds(teacher)
    if len(theirs) > 1 and not set(mine) <= set(theirs):
        raise ValueError(
            f"arm {arm.name!r} runs on seeds {list(mine)}, its teacher {teacher.name!r} on {list(theirs)}: "
            "give the teacher every seed of the arm, or one seed for all"
        )


def _check_snapshot(experiment: Experiment, arm: Arm, source: Arm | None) -> None:
    if source is None:
        raise ValueError(f"snapshot arm {arm.name!r} needs teacher = <the teacher arm listed before it>")
    if set(arm.sweep) - {"epoch"}:
        raise ValueError(
            f"snapshot arm {arm.name!r} sweeps {sorted(set(arm.sweep) - {'epoch'})}, but a snapshot is read from its "
            "teacher's run, not trained: it sweeps epoch only (sweep its teacher arm instead)"
        )
    epochs = TrainConfig.from_kwargs(**{**experiment.settings("teacher"), **source.settings}).epochs
    wanted = arm.sweep.get("epoch", [arm.epoch])
    if not all(values.is_int(e) and 0 <= e < epochs for e in wanted):
        raise ValueError(
            f"snapshot arm {arm.name!r} needs epoch = N (or sweep = {{epoch = [...]}}) with every N in "
            f"[0, {epochs}) (its teacher trains {epochs} epochs), got {wanted}"
        )


__all__ = ["check_arms"]

"""The questions a dataset with a known truth (`planted`) answers, from the tidy table of a grid's runs.

- Does a teacher objective make the teacher's ICC truer? Its truth_distance (||M_true - M||_F / C on
  the test split), paired with the CE teacher's seed by seed.
- Does a truer ICC teach better? The correlation, over teachers and seeds, between a teacher's
  truth_distance and the test error of its student, with a 95 % interval from resampling seeds.
- How much of the Bayes teacher's gain do real teachers reach? A student's gain over the student
  alone, as a share of the gain of the same objective's student of the Bayes posterior.

Every arm is taken at its variant chosen on validation (kdviz.experiments.summary.select_variants).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .spec import Experiment
from .summary import select_variants, standard_error

BOOTSTRAP = 2000  # resamples of the seeds behind each interval


def _chosen(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["variant"] == runs["arm"].map(select_variants(runs))]


def truth_table(experiment: Experiment, runs: pd.DataFrame, alone: str = "alone") -> pd.DataFrame:
    """One row per student arm that learns from a teacher: its teacher and objective, the teacher's
    test error and ICC distance to the truth, the student's test error, its paired gain over `alone`
    and that gain's share of the gain of the Bayes teacher's student with the same objective, where
    that gain is positive (errors and gains in %, each with its standard error over seeds)."""
    picked = _chosen(runs)
    by_arm = {arm: group.set_index("seed") for arm, group in picked.groupby("arm")}
    base = by_arm[alone]["test_top1_err"]
    students = [a for a in experiment.arms if a.role == "student" and a.teacher is not None]
    bayes = {str(a.objective): a.name for a in students if experiment.arm(a.teacher).role == "bayes"}
    rows = []
    for arm in students:
        s = by_arm.get(arm.name)
        if s is None:
            continue
        gain = 100 * (base - s["test_top1_err"]).dropna()
        row = {
            "student": arm.name,
            "teacher": arm.teacher,
            "objective": str(arm.objective),
            "teacher_err": 100 * s["teacher_test_top1_err"].mean(),
            "teacher_err_se": standard_error(100 * s["teacher_test_top1_err"]),
            "teacher_truth_distance": s["teacher_truth_distance"].mean(),
            "teacher_truth_distance_se": standard_error(s["teacher_truth_distance"]),
            "teacher_truth_rank": s["teacher_truth_rank"].mean(),
            "student_err": 100 * s["test_top1_err"].mean(),
            "student_err_se": standard_error(100 * s["test_top1_err"]),
            "gain": gain.mean(),
            "gain_se": standard_error(gain),
        }
        ceiling = by_arm.get(bayes.get(str(arm.objective)))
        ceiling_gain = None if ceiling is None else 100 * (base - ceiling["test_top1_err"])
        if ceiling_gain is not None and ceiling_gain.mean() > 0:  # a share of no gain means nothing
            both = pd.DataFrame({"own": gain, "bayes": ceiling_gain}).dropna()
            share = _bootstrap(both.to_numpy(), lambda d: d[:, 0].mean() / d[:, 1].mean(), both["own"].index.to_numpy())
            row.update(bayes_share=share[0], bayes_share_low=share[1], bayes_share_high=share[2])
        rows.append(row)
    return pd.DataFrame(rows).set_index("student")


def paired_teacher_difference(runs: pd.DataFrame, arm: str, reference: str, column: str) -> tuple[float, float, int]:
    """(mean, standard error, seeds) of `column` of teacher arm `arm` minus that of `reference`, seed by seed."""
    picked = _chosen(runs)
    a, b = (picked[picked["arm"] == name].set_index("seed")[column] for name in (arm, reference))
    diff = (a - b).dropna()
    return float(diff.mean()), standard_error(diff), len(diff)


def truth_error_correlation(
    runs: pd.DataFrame, students: list[str], column: str = "teacher_truth_distance"
) -> tuple[float, float, float, int]:
    """(Pearson r, 95 % interval low, high, number of runs) between the teacher's `column` and the
    student's test error over the runs of `students` (one per teacher and seed), the interval from
    resampling seeds (all of a seed's runs together: they share its data)."""
    picked = _chosen(runs)
    pairs = picked[picked["arm"].isin(students)][["seed", column, "test_top1_err"]].dropna()
    r, low, high = _bootstrap(
        pairs[[column, "test_top1_err"]].to_numpy(),
        lambda d: np.corrcoef(d[:, 0], d[:, 1])[0, 1],
        pairs["seed"].to_numpy(),
    )
    return r, low, high, len(pairs)


def _bootstrap(values: np.ndarray, statistic, seeds: np.ndarray) -> tuple[float, float, float]:
    """(statistic of the rows `values`, its 2.5 and 97.5 percentiles over BOOTSTRAP resamples of
    the seeds, each drawn seed bringing all its rows)."""
    rng = np.random.default_rng(0)
    unique = np.unique(seeds)
    rows = [np.flatnonzero(seeds == s) for s in unique]
    draws = []
    with np.errstate(divide="ignore", invalid="ignore"):  # a resample without spread or gain gives NaN or inf
        for _ in range(BOOTSTRAP):
            chosen = np.concatenate([rows[i] for i in rng.integers(len(unique), size=len(unique))])
            draws.append(statistic(values[chosen]))
    low, high = np.nanpercentile(draws, [2.5, 97.5])
    return float(statistic(values)), float(low), float(high)


def truth_verdict(experiment: Experiment, runs: pd.DataFrame, table: pd.DataFrame) -> str:
    """The study's three answers, as sentences with their numbers (docs/planted.md)."""
    teachers = [a.name for a in experiment.arms if a.role == "teacher"]
    reference = teachers[0]
    lines = []
    for arm in teachers[1:]:
        d, se, n = paired_teacher_difference(runs, arm, reference, "truth_distance")
        e, e_se, _ = paired_teacher_difference(runs, arm, reference, "test_top1_err")
        lines.append(
            f"{arm} vs {reference}: ICC distance to the truth {d:+.4f} +- {se:.4f}, "
            f"test error {100 * e:+.2f} +- {100 * e_se:.2f} points ({n} paired seeds)."
        )
    real = table[table["teacher"].isin(teachers)]
    for objective, group in real.groupby("objective", sort=False):
        r, low, high, n = truth_error_correlation(runs, list(group.index))
        lines.append(
            f"Students by {objective}: r(teacher's ICC distance to the truth, student error) = {r:+.2f} "
            f"(95 % interval {low:+.2f} to {high:+.2f}, {n} runs over {len(group)} trained teachers)."
        )
    ceilings = table[~table["teacher"].isin(teachers)].set_index("objective")
    for student, row in real.iterrows():
        ceiling = ceilings.loc[row.objective] if row.objective in ceilings.index else None
        if ceiling is None:
            continue
        head = f"{student}: gain over the student alone {row.gain:+.2f} +- {row.gain_se:.2f} points"
        if ceiling.gain > 2 * ceiling.gain_se:
            lines.append(
                f"{head}, {100 * row.bayes_share:.0f} % of the Bayes teacher's {ceiling.gain:+.2f} +- "
                f"{ceiling.gain_se:.2f} (95 % interval {100 * row.bayes_share_low:.0f} to "
                f"{100 * row.bayes_share_high:.0f} %)."
            )
        else:  # a share of a gain that is not there means nothing
            lines.append(
                f"{head}; no share: the Bayes teacher's {row.objective} student gains {ceiling.gain:+.2f} +- "
                f"{ceiling.gain_se:.2f} points, not two standard errors above 0."
            )
    return "\n".join(lines)


__all__ = ["paired_teacher_difference", "truth_error_correlation", "truth_table", "truth_verdict"]

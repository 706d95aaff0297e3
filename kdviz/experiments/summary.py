"""From the tidy table of a grid's runs to the table a paper would print.

Every choice is made on the validation split: an arm's variant (its swept values and its
teacher's) is the one with the lowest mean validation error over seeds. Test errors of the
chosen variants are then reported, with paired differences to the baseline arm seed by seed.
"""

from __future__ import annotations

import math
import re

import pandas as pd

from ..deprecations import with_new_columns
from ..inputs import read_table

MEANS = [
    "secondary_std",
    "group_mass",
    "teacher_test_top1_err",
    "teacher_secondary_std",
    "teacher_group_mass",
    "icc_distance",
    "icc_pearson",
    "truth_distance",
    "truth_rank",
    "teacher_truth_distance",
    "teacher_truth_rank",
]


def select_variants(runs: pd.DataFrame) -> pd.Series:
    """arm -> the variant with the lowest mean validation error over its seeds (ties: the first
    in the table's order). Variants run on fewer seeds than the arm's most are not eligible, so
    that a half-finished variant cannot win on a lucky seed."""
    chosen = {}
    for arm, group in runs.groupby("arm", sort=False):
        stats = group.groupby("variant", sort=False)["val_top1_err"].agg(["mean", "count"])
        stats = stats[stats["count"] == stats["count"].max()]
        chosen[arm] = stats["mean"].idxmin()
    return pd.Series(chosen, name="variant")


def swept(runs: pd.DataFrame, key: str) -> pd.Series:
    """The value of swept parameter `key` ("term.param" or a setting) in each run of the tidy
    table, read from its variant label (the run's own sweep first, then its teacher's, e.g. 0.3 for
    "default|teacher_icc:icc_teacher.weight=0.3"); NaN in runs that do not sweep it."""
    pattern = re.compile(rf"(?:^|[,|:]){re.escape(key)}=([^,|]+)")

    def value(label: str) -> float:
        found = pattern.search(label)
        return float(found.group(1)) if found else float("nan")

    return runs["variant"].map(value).rename(key)


def standard_error(values: pd.Series) -> float:
    return float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else float("nan")


def summarize(runs: pd.DataFrame, baseline: str | None) -> pd.DataFrame:
    """One row per arm at its chosen variant. Errors in %: mean and standard error over seeds of
    the validation and test error; for students, the paired test-error difference to `baseline`
    (negative: better than the baseline), its standard error and z = diff / se over the seeds both
    arms ran (without a baseline, none); the teacher's error, secondary std, group mass and the teacher-student ICC
    distance. `runs` may also be a sweep folder (its runs.csv)."""
    runs = with_new_columns(read_table(runs, "summarize"))  # a runs.csv written before the rename reads too
    chosen = select_variants(runs)
    picked = runs[runs["variant"] == runs["arm"].map(chosen)]
    base = picked[picked["arm"] == baseline].set_index("seed")["test_top1_err"]
    rows = []
    for arm, group in picked.groupby("arm", sort=False):
        test = 100 * group["test_top1_err"]
        row = {
            "arm": arm,
            "role": group["role"].iloc[0],
            "variant": chosen[arm],
            "seeds": len(group),
            "val_err": 100 * group["val_top1_err"].mean(),
            "test_err": test.mean(),
            "test_err_se": standard_error(test),
        }
        if row["role"] == "student" and baseline is not None:
            paired = 100 * (group.set_index("seed")["test_top1_err"] - base).dropna()
            row.update(diff_vs_baseline=paired.mean() if len(paired) else float("nan"), diff_se=standard_error(paired))
            row["z"] = row["diff_vs_baseline"] / row["diff_se"] if row["diff_se"] > 0 else float("nan")
        for column in MEANS:
            if column in group and group[column].notna().any():
                scale = 100 if column.endswith("err") else 1
                row[column] = scale * group[column].mean()
        rows.append(row)
    return pd.DataFrame(rows).set_index("arm")


def verdict(summary: pd.DataFrame, baseline: str, threshold: float = 2.0) -> str:
    """One sentence: which student arms beat the baseline by more than `threshold` standard errors."""
    students = summary[(summary["role"] == "student") & (summary.index != baseline)]
    better = students[students["z"] < -threshold]
    worse = students[students["z"] > threshold]
    n = int(summary.loc[baseline, "seeds"])
    if better.empty:
        head = (
            f"No arm beats {baseline} by more than {threshold:g} standard errors of the paired difference ({n} seeds)."
        )
    else:
        wins = ", ".join(f"{arm} ({r.diff_vs_baseline:+.2f} +- {r.diff_se:.2f} points)" for arm, r in better.iterrows())
        head = f"Arms that beat {baseline} by more than {threshold:g} standard errors ({n} seeds): {wins}."
    if not worse.empty:
        head += f" Worse than {baseline} by more than {threshold:g} standard errors: {', '.join(worse.index)}."
    return head

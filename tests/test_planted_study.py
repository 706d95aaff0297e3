"""The planted study: bayes arms, dataset options in experiment files, and the truth's answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kdviz.experiments import ExperimentError, load_experiment, run_sweep
from kdviz.experiments.truth import paired_teacher_difference, truth_error_correlation, truth_table, truth_verdict

STUDY = """
name = "tiny-planted"
dataset = "planted"
dataset_options = {{classes = 6, groups = 2, n_images = 300, n_test = 120}}
seeds = [0, 1, 2, 3]
baseline = "kd_ce"
[teacher]
model = "mlp"
epochs = 2
[student]
model = "mlp"
n_train = 60
epochs = 2
[[arms]]
name = "teacher_ce"
role = "teacher"
[[arms]]
name = "teacher_x"
role = "teacher"
objective = "label_smoothing"
[[arms]]
name = "teacher_bayes"
role = "{bayes_role}"
[[arms]]
name = "alone"
role = "student"
[[arms]]
name = "kd_ce"
role = "student"
teacher = "teacher_ce"
objective = "kd"
[[arms]]
name = "kd_x"
role = "student"
teacher = "teacher_x"
objective = "kd"
[[arms]]
name = "kd_bayes"
role = "student"
teacher = "teacher_bayes"
objective = "kd"
"""


def _experiment(tmp_path, text=STUDY, **fields):
    path = tmp_path / "study.toml"
    path.write_text(text.format(**{"bayes_role": "bayes", **fields}))
    return load_experiment(path)


def test_dataset_options_and_bayes_arms_are_checked(tmp_path):
    experiment = _experiment(tmp_path)
    assert experiment.dataset_options == {"classes": 6, "groups": 2, "n_images": 300, "n_test": 120}
    with pytest.raises(
        ExperimentError, match="dataset_options of 'planted' got unknown argument.*did you mean 'classes'"
    ):
        _experiment(tmp_path, STUDY.replace("classes = 6", "clases = 6"))
    with pytest.raises(ExperimentError, match="bayes arm 'teacher_bayes' needs a dataset whose Bayes posterior"):
        _experiment(
            tmp_path, STUDY.replace('dataset = "planted"', 'dataset = "digits"').replace("dataset_options", "#")
        )
    with pytest.raises(ExperimentError, match="valid roles"):
        _experiment(tmp_path, bayes_role="oracle")


def _runs() -> pd.DataFrame:
    """A tidy table as a grid writes it: 4 seeds, teachers ce and x, the Bayes teacher, their students."""
    rows = []
    teacher = {"teacher_ce": (0.20, 0.05), "teacher_x": (0.22, 0.09), "teacher_bayes": (0.10, 0.01)}
    student = {"alone": 0.50, "kd_ce": 0.44, "kd_x": 0.47, "kd_bayes": 0.38}
    for seed in range(4):
        for arm, (err, dist) in teacher.items():
            role = "bayes" if arm == "teacher_bayes" else "teacher"
            rows.append(
                dict(
                    arm=arm,
                    role=role,
                    variant="default",
                    seed=seed,
                    val_top1_err=err,
                    test_top1_err=err + 0.01 * seed,
                    truth_distance=dist + 0.002 * seed,
                )
            )
        for arm, err in student.items():
            t = None if arm == "alone" else "teacher_" + arm.split("_")[1]
            row = dict(
                arm=arm,
                role="student",
                variant="default" if t is None else f"default|{t}:default",
                seed=seed,
                val_top1_err=err,
                test_top1_err=err + 0.01 * (seed % 2) * (arm != "alone"),
            )
            if t is not None:
                t_err, t_dist = teacher[t]
                row.update(
                    teacher_arm=t,
                    teacher_test_top1_err=t_err + 0.01 * seed,
                    teacher_truth_distance=t_dist + 0.002 * seed,
                    teacher_truth_rank=0.5,
                )
            rows.append(row)
    return pd.DataFrame(rows)


def test_truth_table_gains_and_bayes_shares_are_worked_out_from_the_runs(tmp_path):
    experiment, runs = _experiment(tmp_path), _runs()
    table = truth_table(experiment, runs)
    assert list(table.index) == ["kd_ce", "kd_x", "kd_bayes"]
    # gain of kd_ce over alone, seed by seed: 6, 5, 6, 5 points; of kd_bayes: 12, 11, 12, 11
    assert table.loc["kd_ce", "gain"] == pytest.approx(5.5)
    assert table.loc["kd_ce", "gain_se"] == pytest.approx(np.std([6, 5, 6, 5], ddof=1) / 2)
    assert table.loc["kd_ce", "bayes_share"] == pytest.approx(5.5 / 11.5)
    assert table.loc["kd_x", "bayes_share"] == pytest.approx(2.5 / 11.5)
    assert table.loc["kd_bayes", "bayes_share"] == pytest.approx(1.0)
    assert table.loc["kd_ce", "bayes_share_low"] <= 5.5 / 11.5 <= table.loc["kd_ce", "bayes_share_high"]
    assert table.loc["kd_x", "teacher_truth_distance"] == pytest.approx(0.09 + 0.003)
    assert table.loc["kd_x", "teacher_err"] == pytest.approx(22 + 1.5)


def test_correlation_and_paired_teacher_difference(tmp_path):
    runs = _runs()
    d, se, n = paired_teacher_difference(runs, "teacher_x", "teacher_ce", "truth_distance")
    assert (d, se, n) == (pytest.approx(0.04), pytest.approx(0.0), 4)
    r, low, high, n = truth_error_correlation(runs, ["kd_ce", "kd_x"])
    chosen = runs[runs["arm"].isin(["kd_ce", "kd_x"])]
    assert r == pytest.approx(np.corrcoef(chosen["teacher_truth_distance"], chosen["test_top1_err"])[0, 1])
    assert n == 8 and low <= r <= high
    text = truth_verdict(_experiment(tmp_path), runs, truth_table(_experiment(tmp_path), runs))
    assert "teacher_x vs teacher_ce: ICC distance to the truth +0.0400" in text
    assert "kd_x: gain over the student alone +2.50" in text and "22 % of the Bayes teacher's +11.50" in text
    runs.loc[runs["arm"] == "kd_bayes", "test_top1_err"] = 0.50  # the Bayes student gains nothing: no share
    text = truth_verdict(_experiment(tmp_path), runs, truth_table(_experiment(tmp_path), runs))
    assert "kd_x: gain over the student alone +2.50 +- 0.29 points; no share: the Bayes teacher's kd student" in text


@pytest.mark.slow
def test_a_tiny_planted_study_runs_with_its_bayes_teacher(tmp_path):
    experiment = load_experiment(_experiment(tmp_path).source, seeds=[0])
    runs = run_sweep(experiment, tmp_path / "out", progress=False, device="cpu").set_index("arm")
    assert runs.loc["teacher_bayes", "role"] == "bayes" and np.isnan(runs.loc["teacher_bayes", "train_seconds"])
    assert runs.loc["teacher_bayes", "truth_distance"] < runs.loc["teacher_ce", "truth_distance"]
    assert runs.loc["kd_bayes", "teacher_test_top1_err"] == runs.loc["teacher_bayes", "test_top1_err"]
    assert (tmp_path / "out" / "teacher_bayes" / "default" / "seed_0" / "best.pt").is_file()

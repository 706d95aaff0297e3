"""The experiment grid: planning, running with skip-finished, summaries chosen on validation, and the
`kdviz sweep` command on the shipped studies."""

import json
import math

import numpy as np
import pandas as pd
import pytest

import kdviz as kd
from kdviz.cli import main
from kdviz.data.sample_files import write_cifar100
from kdviz.experiment_plots import plot_error_vs_secondary_std
from kdviz.experiments import (
    Arm,
    ExperimentError,
    add_arms,
    collect,
    experiment_names,
    load_experiment,
    plan,
    run_sweep,
    select_variants,
    summarize,
    swept,
    verdict,
)
from kdviz.experiments import grid as grid_module

TINY = """
name = "tiny"
dataset = "digits"
seeds = [0, 1]
baseline = "kd"

[teacher]
model = "cnn"
model_kwargs = {width = 4}
epochs = 2
batch_size = 128

[student]
model = "mlp"
model_kwargs = {hidden = 8}
n_train = 40
epochs = 2
batch_size = 20
teacher_cache = true

[[arms]]
name = "teacher_ce"
role = "teacher"
objective = "ce"

[[arms]]
name = "teacher_icc"
role = "teacher"
objective = "icc_teacher"
sweep = {"icc_teacher.weight" = [0.1, 0.3]}

[[arms]]
name = "early"
role = "snapshot"
teacher = "teacher_ce"
epoch = 0

[[arms]]
name = "alone"
role = "student"
objective = "ce"

[[arms]]
name = "kd"
role = "student"
teacher = "teacher_ce"
objective = "kd"

[[arms]]
name = "kd_from_early"
role = "student"
teacher = "early"
objective = "kd"

[[arms]]
name = "mimic_from_icc"
role = "student"
teacher = "teacher_icc"
objective = "kd+icc_mimic"
sweep = {"icc_mimic.weight" = [0.1, 1.0], lr = [0.05]}
"""


def test_plan_pairs_every_student_variant_with_each_teacher_variant_on_its_seed(tmp_path, write_experiment):
    protocol = load_experiment(write_experiment(tmp_path, TINY))
    runs = plan(protocol)
    by_arm = pd.Series([r.arm.name for r in runs]).value_counts().to_dict()
    # 2 seeds x (2 teacher variants x 2 mimic weights) for the mimic arm; 2 seeds for the others.
    assert by_arm == {
        "teacher_ce": 2,
        "teacher_icc": 4,
        "early": 2,
        "alone": 2,
        "kd": 2,
        "kd_from_early": 2,
        "mimic_from_icc": 8,
    }
    position = {id(r): i for i, r in enumerate(runs)}
    for run in runs:
        if run.teacher is not None:
            assert run.teacher.seed == run.seed and position[id(run.teacher)] < position[id(run)]
    mimic = {r.label for r in runs if r.arm.name == "mimic_from_icc"}
    assert "icc_mimic.weight=1.0,lr=0.05|teacher_icc:icc_teacher.weight=0.3" in mimic and len(mimic) == 4
    assert len({r.path for r in runs}) == len(runs)


@pytest.mark.slow
def test_grid_runs_once_then_skips_finished_runs_and_reruns_only_missing_ones(tmp_path, monkeypatch, write_experiment):
    protocol = load_experiment(write_experiment(tmp_path, TINY))
    out = tmp_path / "out"
    runs = run_sweep(protocol, out, progress=False, device="cpu")
    assert len(runs) == len(plan(protocol)) and runs["test_top1_err"].between(0, 1).all()
    students = runs[runs["teacher_arm"].notna() & (runs["role"] == "student")]
    assert students[["icc_distance", "teacher_secondary_std", "teacher_test_top1_err"]].notna().all().all()
    # Each run's own history is on disk next to its result.
    history = pd.read_csv(out / plan(protocol)[0].path / "metrics.csv")
    assert list(history["epoch"]) == [0, 1]

    calls = []
    real_train = grid_module.train
    monkeypatch.setattr(grid_module, "train", lambda *a, **k: calls.append(k["output"].name) or real_train(*a, **k))
    again = run_sweep(protocol, out, progress=False, device="cpu")
    assert calls == [] and again.equals(runs)

    victim = next(r for r in plan(protocol) if r.arm.name == "kd")
    (out / victim.path / "result.json").unlink()
    run_sweep(protocol, out, progress=False, device="cpu")
    assert calls == [f"kd {victim.label} seed {victim.seed}"]
    assert len(collect(protocol, out)) == len(runs)


@pytest.mark.slow
def test_arms_added_in_code_train_only_their_own_runs(tmp_path, monkeypatch, write_experiment):
    experiment = load_experiment(write_experiment(tmp_path, TINY), seeds=[0]).only(["kd"])
    out = tmp_path / "out"
    first = run_sweep(experiment, out, progress=False, device="cpu")
    calls = []
    real_train = grid_module.train
    monkeypatch.setattr(grid_module, "train", lambda *a, **k: calls.append(k["output"].name) or real_train(*a, **k))
    grown = add_arms(
        experiment,
        Arm("teacher_ls", "teacher", "label_smoothing"),
        Arm("kd_from_ls", "student", "kd", teacher="teacher_ls", sweep={"kd.tau": [2.0, 8.0]}),
    )
    runs = run_sweep(grown, out, progress=False, device="cpu")
    assert calls == [
        "teacher_ls default seed 0",
        "kd_from_ls kd.tau=2.0|teacher_ls:default seed 0",
        "kd_from_ls kd.tau=8.0|teacher_ls:default seed 0",
    ]
    assert (
        runs.set_index(["arm", "variant"])
        .loc[first.set_index(["arm", "variant"]).index]
        .equals(first.set_index(["arm", "variant"]))
    )
    assert [a.name for a in experiment.arms] == ["teacher_ce", "kd"]  # the experiment it grew from is unchanged


@pytest.mark.parametrize(
    "arm, message",
    [
        (Arm("kd", "student", "kd", teacher="teacher_ce"), "arm names must be unique"),
        (Arm("kd_late", "student", "kd", teacher="teacher_later"), "'teacher_later', which is no arm"),
        (Arm("kd_alone", "student", "kd"), "distills from a teacher, but names none"),
        (Arm("mimic", "student", "kd", teacher="teacher_ce", sweep={"icc_mimic.weight": [0.1]}), "icc_mimic"),
        (Arm("bad_tau", "student", "kd", teacher="teacher_ce", sweep={"kd.tau": [-1.0]}), "tau"),
    ],
)
def test_added_arms_are_checked_as_a_files_arms_are(tmp_path, arm, message, write_experiment):
    experiment = load_experiment(write_experiment(tmp_path, TINY)).only(["kd"])
    with pytest.raises(ExperimentError, match=message) as caught:
        add_arms(experiment, arm)
    assert "arms added to experiment 'tiny'" in str(caught.value)


def test_add_arms_takes_arm_objects(tmp_path, write_experiment):
    with pytest.raises(TypeError, match=r"Arm\(\.\.\.\) objects, got \['dict'\]"):
        add_arms(load_experiment(write_experiment(tmp_path, TINY)), {"name": "x", "role": "student"})


@pytest.mark.slow
def test_snapshot_is_the_teachers_checkpoint_of_that_epoch(tmp_path, write_experiment):
    protocol = load_experiment(write_experiment(tmp_path, TINY), seeds=[0])
    out = tmp_path / "out"
    runs = run_sweep(protocol, out, progress=False, device="cpu").set_index("arm")
    teacher_run = next(r for r in plan(protocol) if r.arm.name == "teacher_ce")
    history = pd.read_csv(out / teacher_run.path / "metrics.csv").set_index("epoch")
    assert runs.loc["early", "epoch"] == 0
    assert runs.loc["early", "val_top1_err"] == pytest.approx(history.loc[0, "val_top1_err"])
    assert runs.loc["early", "test_top1_err"] == pytest.approx(history.loc[0, "test_top1_err"])
    assert runs.loc["kd_from_early", "teacher_test_top1_err"] == pytest.approx(history.loc[0, "test_top1_err"])


def frame(rows):
    return pd.DataFrame(rows, columns=["arm", "role", "variant", "seed", "val_top1_err", "test_top1_err"])


def test_variants_are_chosen_on_validation_and_compared_seed_by_seed():
    runs = frame(
        [
            ("kd", "student", "default", 0, 0.20, 0.10),
            ("kd", "student", "default", 1, 0.20, 0.20),
            ("kd", "student", "default", 2, 0.20, 0.30),
            # v1 has the best test error but the worse validation error: v2 must be chosen.
            ("x", "student", "v1", 0, 0.30, 0.00),
            ("x", "student", "v1", 1, 0.30, 0.00),
            ("x", "student", "v1", 2, 0.30, 0.00),
            ("x", "student", "v2", 0, 0.10, 0.12),
            ("x", "student", "v2", 1, 0.10, 0.18),
            ("x", "student", "v2", 2, 0.10, 0.27),
            # a variant on one seed only cannot win on it
            ("x", "student", "v3", 0, 0.00, 0.00),
        ]
    )
    assert select_variants(runs).to_dict() == {"kd": "default", "x": "v2"}
    row = summarize(runs, "kd").loc["x"]
    diffs = [2.0, -2.0, -3.0]  # percentage points, seed by seed
    mean = sum(diffs) / 3
    se = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2) / math.sqrt(3)
    assert row["test_err"] == pytest.approx(19.0) and row["seeds"] == 3
    assert row["diff_vs_baseline"] == pytest.approx(mean) and row["diff_se"] == pytest.approx(se)
    assert row["z"] == pytest.approx(mean / se)
    assert row["test_err_se"] == pytest.approx(pd.Series([12.0, 18.0, 27.0]).std() / math.sqrt(3))


def test_verdict_names_arms_beyond_two_standard_errors():
    kd = [("kd", "student", "d", s, 0.2, t) for s, t in enumerate([0.10, 0.20, 0.30, 0.25])]
    good = [("good", "student", "d", s, 0.2, t - 0.05 + 0.001 * s) for s, (_, _, _, _, _, t) in enumerate(kd)]
    flat = [("flat", "student", "d", s, 0.2, t + (0.01 if s % 2 else -0.01)) for s, (_, _, _, _, _, t) in enumerate(kd)]
    summary = summarize(frame(kd + good + flat), "kd")
    text = verdict(summary, "kd")
    assert text.startswith("Arms that beat kd by more than 2 standard errors (4 seeds): good (-4.85")
    assert "flat" not in text
    assert verdict(summarize(frame(kd + flat), "kd"), "kd").startswith("No arm beats kd")


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.replace('baseline = "kd"', 'baseline = "kd"\ncolour = "red"'), "colour"),
        (lambda t: t.replace('teacher = "early"', 'teacher = "nobody"'), "'nobody', which is no arm"),
        (lambda t: t.replace("epoch = 0", "epoch = 5"), "in [0, 2)"),
        (
            lambda t: t.replace('"icc_mimic.weight"', '"icc_mimik.weight"'),
            "'icc_mimik', which is not in the objective (ce, kd, icc_mimic)",
        ),
        (lambda t: t.replace('role = "snapshot"', 'role = "judge"'), "valid roles"),
        (
            lambda t: t.replace("epochs = 2\nbatch_size = 20", "epochs = 2\nbatch_size = 20\nlearning_rate = 1"),
            "learning_rate",
        ),
        (lambda t: t.replace('baseline = "kd"', 'baseline = "kdd"'), "no arm 'kdd'"),
        (
            lambda t: t.replace('baseline = "kd"', 'baseline = "kd"\nicc_tau = 0'),
            "icc_tau must be finite and > 0, got 0.0",
        ),
        (
            lambda t: t.replace("seeds = [0, 1]", "seeds = []"),
            "seeds must be a non-empty list of whole numbers >= 0, got []",
        ),
        (
            lambda t: t.replace('name = "alone"', 'name = "alone"\nseeds = [0, 1, 2]').replace(
                'name = "kd"\nrole = "student"', 'name = "kd"\nseeds = [0, 5]\nrole = "student"'
            ),
            "arm 'kd' runs on seeds [0, 5], its teacher 'teacher_ce' on [0, 1]",
        ),
    ],
)
def test_experiment_mistakes_are_named_with_the_file_before_anything_trains(tmp_path, edit, message, write_experiment):
    with pytest.raises(ExperimentError) as info:
        load_experiment(write_experiment(tmp_path, edit(TINY)))
    assert message in str(info.value) and str(tmp_path / "tiny.toml") in str(info.value)


def test_figure_of_error_against_teacher_secondary_std(tmp_path):
    runs = pd.DataFrame(
        {
            "arm": ["a", "a", "b", "b", "alone"],
            "role": ["student"] * 5,
            "variant": ["d"] * 5,
            "seed": [0, 1, 0, 1, 0],
            "val_top1_err": [0.1] * 5,
            "test_top1_err": [0.1, 0.12, 0.2, 0.22, 0.3],
            "teacher_secondary_std": [0.05, 0.05, 0.02, 0.03, float("nan")],
        }
    )
    fig = plot_error_vs_secondary_std(runs, summarize(runs, "a"))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]
    # Two arm means, (0.05, 11 %) and (0.025, 21 %), plus r needs 3 points: undefined.
    assert "= nan" in ax.get_title()
    runs3 = pd.concat([runs, runs.iloc[[0]].assign(arm="c", teacher_secondary_std=0.04, test_top1_err=0.13)])
    ax = plot_error_vs_secondary_std(runs3, arms=["a", "b", "c"]).axes[0]
    expected = np.corrcoef([0.05, 0.025, 0.04], [0.11, 0.21, 0.13])[0, 1]
    assert f"= {expected:.2f})" in ax.get_title()
    assert [t.get_text() for t in plot_error_vs_secondary_std(runs3, arms=["b"]).axes[0].get_legend().get_texts()] == [
        "b"
    ]
    with pytest.raises(ValueError, match="no student run"):
        plot_error_vs_secondary_std(runs[runs["arm"] == "alone"])


STUDIES = [name for name in experiment_names() if name.startswith("expressive-")]


@pytest.mark.slow
def test_sweep_command_smoke_on_the_shipped_digits_study(tmp_path, capsys):
    assert (
        main(["sweep", "expressive-digits", "--smoke", "--out", str(tmp_path), "--no-progress", "--device", "cpu"]) == 0
    )
    out = capsys.readouterr().out
    assert "kd_asymmetric" in out and "icc_full" in out and "standard errors" in out
    summary = pd.read_csv(tmp_path / "summary.csv", index_col="arm")
    experiment = load_experiment("expressive-digits")
    assert set(summary.index) == {a.name for a in experiment.arms}
    assert (tmp_path / "error_vs_secondary_std.png").stat().st_size > 0
    assert json.loads(next(tmp_path.glob("kd/*/seed_0/result.json")).read_text())["arm"] == "kd"


@pytest.mark.slow
def test_sweep_command_smoke_on_the_crd_cifar100_study(tmp_path, capsys):
    write_cifar100(tmp_path / "data" / "cifar-100-python")
    args = [
        "sweep",
        "expressive-crd-cifar100",
        "--smoke",
        "--arms",
        "icc_full",
        "--data-root",
        str(tmp_path / "data"),
        "--out",
        str(tmp_path / "out"),
        "--no-progress",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    assert {p.name for p in (tmp_path / "out").iterdir() if p.is_dir()} == {"teacher_icc", "icc_full", "teacher_cache"}
    config = json.loads(next((tmp_path / "out" / "icc_full").glob("*/seed_0/config.json")).read_text())
    assert config["model"]["name"] == "resnet8x4" and config["dataset"] == "cifar100"
    assert config["schedule"] == "multistep" and config["nesterov"] is False and config["teacher_cache"] is True
    assert set(config["objective"]) == {"ce", "kd", "icc_mimic"}


def test_unknown_experiment_lists_the_shipped_ones(capsys):
    assert main(["sweep", "nope"]) == 2
    assert "expressive-digits" in capsys.readouterr().err


@pytest.mark.parametrize("name", STUDIES)
def test_every_shipped_study_is_valid_and_compares_with_plain_kd(name):
    experiment = load_experiment(name)
    assert experiment.name == name and len(experiment.seeds) >= 5
    baseline = experiment.arm(experiment.baseline)
    assert baseline.objective == "kd" and experiment.arm(baseline.teacher).objective == "ce"
    assert {"alone", "icc_full"} <= {a.name for a in experiment.arms}


@pytest.mark.slow
def test_the_study_reproduces_its_committed_runs(tmp_path):
    """Seed 0 of three arms of the bundled study's runs (kdviz/results/expressive-digits/runs.csv), rerun from the shipped file.
    Errors are counts of images (126 validation, 539 test). Float sums differ in the last digits from
    CPU to CPU and can move the epoch chosen on validation: on the 2-core VM of 2026-11-27, main's own
    grid (commit 19a9944) and this sweep both give the kd row 47 test errors where the file has 45, and
    the teacher 3 where it has 2. Hence a tolerance of 2 images; a wrong objective, model or data
    split moves these counts by far more."""
    committed = kd.bundled_results("expressive-digits")
    experiment = load_experiment("expressive-digits", seeds=[0]).only(["alone", "kd"])
    assert [a.name for a in experiment.arms] == ["teacher_ce", "alone", "kd"]
    runs = run_sweep(experiment, tmp_path, progress=False, device="cpu").set_index("arm")
    expected = committed[committed["seed"] == 0].set_index("arm").loc[runs.index]
    for column, images in (("val_top1_err", 126), ("test_top1_err", 539)):
        assert (runs[column] * images).round().tolist() == pytest.approx(
            (expected[column] * images).round().tolist(), abs=2
        )
    assert runs["secondary_std"].tolist() == pytest.approx(expected["secondary_std"].tolist(), abs=5e-3)


@pytest.mark.slow
def test_a_folder_of_runs_with_other_settings_is_refused_not_reused(tmp_path, write_experiment):
    out = tmp_path / "out"
    run_sweep(load_experiment(write_experiment(tmp_path, TINY), seeds=[0]), out, progress=False, device="cpu")
    changed = load_experiment(
        write_experiment(tmp_path, TINY.replace("epochs = 2\nbatch_size = 20", "epochs = 3\nbatch_size = 20")),
        seeds=[0],
    )
    with pytest.raises(ValueError, match=r"other settings \(settings\).*another output folder"):
        run_sweep(changed, out, progress=False, device="cpu")
    kd_run = next(r for r in plan(changed) if r.arm.name == "kd")
    assert json.loads((out / kd_run.path / "result.json").read_text())["spec"]["settings"]["epochs"] == 2
    assert "spec" not in collect(changed, out).columns


def test_teacher_comparison_arms_are_the_plain_kd_students_with_a_teacher(tmp_path, write_experiment):
    assert load_experiment(write_experiment(tmp_path, TINY)).teacher_comparison_arms() == ["kd", "kd_from_early"]


def test_swept_reads_a_parameter_from_the_run_or_its_teacher_label():
    runs = pd.DataFrame(
        {
            "variant": [
                "icc_mimic.weight=0.3,kd.tau=2.0|teacher_icc:icc_teacher.weight=1.0",
                "default|teacher_icc:icc_teacher.weight=0.03",
                "default",
                "xkd.tau=5.0",
            ]
        }
    )
    tau = swept(runs, "kd.tau")
    assert tau.iloc[0] == 2.0 and tau.iloc[1:].isna().all()  # "xkd.tau" is another key
    assert swept(runs, "icc_teacher.weight").tolist()[:2] == [1.0, 0.03] and math.isnan(
        swept(runs, "icc_teacher.weight").iloc[2]
    )
    assert swept(runs, "icc_mimic.weight").name == "icc_mimic.weight"

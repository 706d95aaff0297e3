"""Recipes (experiments with one teacher and one student): the values of the bundled ones, that a
recipe's values reach the training run unless a flag is given, bad experiment files, and each recipe's
command lines in their smoke form (the recipe's models, losses and schedule; one or two epochs) on
files in the dataset's real format."""

import json

import pandas as pd
import pytest
import torch

from kdviz.cli import build_parser, main
from kdviz.commands import command_settings
from kdviz.data.sample_files import write_cifar100, write_tiny_imagenet
from kdviz.experiments import ExperimentError, experiment_names, load_experiment
from kdviz.experiments.spec import ROLES

CPU = ["--no-progress", "--device", "cpu"]
# The CRD benchmark's recipe, as docs/method.md §7 quotes it.
CRD = {
    "epochs": 240,
    "batch_size": 64,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "schedule": "multistep",
    "milestones": [150, 180, 210],
    "gamma": 0.1,
    "nesterov": False,
}  # CRD: plain SGD momentum
KD = {"ce": {"weight": 0.1}, "kd": {"weight": 0.9, "tau": 4.0}}
KD_ICC_MIMIC = {**KD, "icc_mimic": {"weight": 0.1, "tau": 4.0}}
ICC_TEACHER = {"ce": {"weight": 1.0}, "icc_teacher": {"weight": 0.1, "tau": 4.0, "power": 1.0}}


def config(run_dir) -> dict:
    return json.loads((run_dir / "config.json").read_text())


def settings_of(*argv) -> tuple[dict, dict]:
    args = build_parser().parse_args(list(argv))
    return command_settings(args, load_experiment(args.recipe or "default"))


def test_bundled_experiment_names():
    assert experiment_names() == [
        "crd-cifar100",
        "default",
        "expressive-crd-cifar100",
        "expressive-digits",
        "expressive-fashion-mnist",
        "expressive-planted",
        "quickstart",
        "smoke",
        "tiny-imagenet-shufflenet",
    ]


@pytest.mark.parametrize(
    "name, arms",
    [("crd-cifar100", {"teacher": None, "student": "teacher"}), ("default", {"teacher": None, "student": "teacher"})],
)
def test_a_recipe_is_an_experiment_with_one_teacher_and_one_student(name, arms):
    experiment = load_experiment(name)
    assert {a.name: a.teacher for a in experiment.arms} == arms
    assert [a.objective for a in experiment.arms] == [experiment.teacher.objective, experiment.student.objective]


def test_crd_lr_is_0_01_for_shufflenet_and_mobilenet_teachers_and_students():
    recipe = load_experiment("crd-cifar100")
    expected = {
        "shufflenetv1": 0.01,
        "shufflenetv2_1_0": 0.01,
        "shufflenetv2_0_5": 0.01,
        "mobilenetv2": 0.01,
        "resnet32x4": 0.05,
        "resnet8x4": 0.05,
        "wrn_40_2": 0.05,
        "resnet56": 0.05,
        "vgg13": 0.05,
    }
    for role in ROLES:
        assert {model: recipe.train_kwargs(role, model)["lr"] for model in expected} == expected


def test_without_a_recipe_the_command_line_keeps_its_defaults():
    train_keys = {"epochs": 30, "batch_size": 64, "lr": 0.05, "seed": 0, "schedule": "cosine"}
    data, teacher = settings_of("train-teacher", "--out", "o")
    assert data == {"name": "digits", "n_train": None, "seed": 0}
    assert teacher.pop("objective").spec == ICC_TEACHER
    assert teacher == {
        "model": "cnn",
        "model_kwargs": {"width": 16},
        **train_keys,
    }  # nothing else: TrainConfig's defaults
    _, student = settings_of("distill", "--teacher", "t.pt", "--out", "o")
    assert student.pop("objective").spec == {"ce": {"weight": 0.1}, "kd": {"weight": 0.9, "tau": 4.0}}
    assert student == {"model": "mlp", "model_kwargs": {"hidden": 32}, **train_keys}
    # The recipe's model arguments are its model's: another model starts from its own defaults.
    assert settings_of("train-teacher", "--out", "o", "--model", "resnet20")[1]["model_kwargs"] == {}


def test_flags_given_override_the_recipe_and_the_others_come_from_it():
    data, settings = settings_of(
        "distill",
        "--recipe",
        "crd-cifar100",
        "--teacher",
        "t.pt",
        "--out",
        "o",
        "--model",
        "mobilenetv2",
        "--lr",
        "0.2",
        "--batch-size",
        "32",
        "--no-amp",
        "--teacher-cache",
        "--dataset",
        "cifar10",
        "--n-train",
        "500",
        "--seed",
        "3",
        "--loss",
        "kd+icc_mimic",
        "--loss-params",
        '{"kd": {"tau": 2}}',
        "--model-kwargs",
        '{"width_mult": 1.0}',
    )
    assert data == {"name": "cifar10", "n_train": 500, "seed": 3}
    assert settings.pop("objective").spec == {**KD_ICC_MIMIC, "kd": {"weight": 0.9, "tau": 2}}
    assert settings == {
        **CRD,
        "model": "mobilenetv2",
        "model_kwargs": {"width_mult": 1.0},
        "lr": 0.2,
        "batch_size": 32,
        "seed": 3,
        "amp": False,
        "channels_last": True,
        "teacher_cache": True,
    }


@pytest.mark.slow
def test_crd_cifar100_smoke_run_on_cifar100_files(tmp_path, capsys):
    write_cifar100(tmp_path / "cifar-100-python")
    teacher, student = tmp_path / "teacher", tmp_path / "student"
    common = ["--recipe", "crd-cifar100", "--data-root", str(tmp_path), "--n-train", "6", *CPU]
    assert main(["train-teacher", *common, "--epochs", "1", "--out", str(teacher)]) == 0
    assert "cifar100: 6 train / 6 val / 12 test images, 100 classes" in capsys.readouterr().out
    t = config(teacher)
    assert (
        t["model"]["name"] == "resnet32x4" and t["model"]["image_shape"] == [3, 32, 32] and t["dataset"] == "cifar100"
    )
    # The recipe's batch of 64 is clamped to the 6 training images (with a warning), and recorded so.
    assert {k: t[k] for k in CRD} == {**CRD, "epochs": 1, "batch_size": 6} and t["lr"] == 0.05
    assert t["objective"] == {"ce": {"weight": 1.0}} and t["amp"] is True and t["channels_last"] is True
    # Two epochs with a milestone after the first: the multistep x0.1 shows in the second epoch's lr.
    assert (
        main(
            [
                "distill",
                *common,
                "--teacher",
                str(teacher / "best.pt"),
                "--model",
                "shufflenetv2_0_5",
                "--epochs",
                "2",
                "--milestones",
                "1",
                "--out",
                str(student),
            ]
        )
        == 0
    )
    s = config(student)
    assert s["model"]["name"] == "shufflenetv2_0_5" and s["objective"] == KD
    assert {k: s[k] for k in CRD} == {**CRD, "epochs": 2, "milestones": [1], "batch_size": 6} and s["lr"] == 0.01
    assert pd.read_csv(student / "metrics.csv")["lr"].tolist() == pytest.approx([0.01, 0.001])


@pytest.mark.slow
def test_tiny_imagenet_shufflenet_smoke_run_on_tiny_imagenet_files(tmp_path):
    write_tiny_imagenet(tmp_path / "tiny-imagenet-200")
    teacher, student = tmp_path / "teacher", tmp_path / "student"
    common = ["--recipe", "tiny-imagenet-shufflenet", "--data-root", str(tmp_path), "--epochs", "1", *CPU]
    assert main(["train-teacher", *common, "--out", str(teacher)]) == 0
    assert main(["distill", *common, "--teacher", str(teacher / "best.pt"), "--out", str(student)]) == 0
    t, s = config(teacher), config(student)
    assert (t["model"]["name"], s["model"]["name"]) == ("shufflenetv2_1_0", "shufflenetv2_0_5")
    assert t["dataset"] == "tiny_imagenet" and t["model"]["image_shape"] == [3, 64, 64]
    assert t["objective"] == ICC_TEACHER and s["objective"] == KD_ICC_MIMIC
    for run in (t, s):
        # The recipe's batch of 128 is clamped to the 9 training images (with a warning), and recorded so.
        assert (run["schedule"], run["milestones"], run["lr"], run["batch_size"]) == (
            "multistep",
            [125, 150, 175],
            0.02,
            9,
        )
        assert run["amp"] is True and run["channels_last"] is True


@pytest.mark.slow
def test_smoke_recipe_on_digits(tmp_path):
    teacher, student = tmp_path / "teacher", tmp_path / "student"
    assert main(["train-teacher", "--recipe", "smoke", "--out", str(teacher), *CPU]) == 0
    assert (
        main(["distill", "--recipe", "smoke", "--teacher", str(teacher / "best.pt"), "--out", str(student), *CPU]) == 0
    )
    t, s = config(teacher), config(student)
    assert t["dataset"] == "digits" and t["model"]["kwargs"] == {"width": 8} and t["objective"] == ICC_TEACHER
    assert s["model"]["name"] == "mlp" and s["objective"] == KD_ICC_MIMIC
    # Two epochs so that the ICC regulariser, 0 until a first epoch has ended, acts in the second.
    assert pd.read_csv(teacher / "metrics.csv")["train_icc_teacher"].gt(0).tolist() == [False, True]


USER_RECIPE = """
description = "a user's own recipe"
dataset = "digits"

[train]
epochs = 1
lr = 0.02
schedule = "constant"

[teacher]
model = "cnn"
model_kwargs = { width = 4 }
n_train = 200
objective = "ce"

[student]
model = "mlp"
objective = "ce=0.5,kd=0.5"
"""


def test_a_users_own_recipe_file(tmp_path, capsys):
    path = tmp_path / "mine.toml"
    path.write_text(USER_RECIPE)
    assert main(["train-teacher", "--recipe", str(path), "--out", str(tmp_path / "run"), *CPU]) == 0
    assert "digits: 200 train / 126 val / 539 test images" in capsys.readouterr().out
    run = config(tmp_path / "run")
    assert (run["lr"], run["schedule"], run["epochs"]) == (0.02, "constant", 1)
    assert run["model"]["kwargs"] == {"width": 4} and run["objective"] == {"ce": {"weight": 1.0}}
    assert run["momentum"] == 0.9 and run["weight_decay"] == 5e-4  # not in the file: TrainConfig's defaults


def test_an_unknown_recipe_name_lists_the_valid_names(tmp_path, capsys):
    assert main(["train-teacher", "--recipe", "crd-cifar", "--out", str(tmp_path / "run"), *CPU]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kdviz train-teacher: error: unknown experiment 'crd-cifar'") and err.count("\n") == 1
    assert "crd-cifar100, default, expressive-crd-cifar100" in err
    assert (
        main(["train-teacher", "--recipe", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "run"), *CPU]) == 2
    )
    assert f"no experiment file at {tmp_path / 'missing.toml'}" in capsys.readouterr().err


def test_an_unknown_key_in_a_recipe_file_names_the_key_the_valid_keys_and_the_file(tmp_path, capsys):
    path = tmp_path / "mine.toml"
    path.write_text(USER_RECIPE.replace("lr = 0.02", "learning_rate = 0.02"))
    assert main(["train-teacher", "--recipe", str(path), "--out", str(tmp_path / "run"), *CPU]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and "[train]" in err and "'learning_rate'" in err
    assert "'lr'" in err and "'milestones'" in err and "'amp'" in err
    assert not (tmp_path / "run").exists()


ROLE_VALID = "valid: ['amp', 'augment', 'batch_size'"  # then the other TrainConfig fields and model, model_kwargs, n_train, objective


@pytest.mark.parametrize(
    "old, new, message",
    [
        (
            "[student]",
            "[studnet]",
            "the top level got unknown argument(s) ['studnet']; valid: ['arms', 'baseline', 'dataset', 'dataset_options', "
            "'description', 'extends', 'icc_tau', 'lr_by_model', 'name', 'seeds', 'student', 'teacher', 'train']",
        ),
        ('model = "mlp"', 'model = "mlp"\nwidth = 3', f"[student] got unknown argument(s) ['width']; {ROLE_VALID}"),
        ("n_train = 200", "n_train = 0", "[teacher] n_train must be a whole number >= 1, got 0"),
        ("lr = 0.02", 'lr = "0.02"', "[train] lr must be like 0.05 (float), got '0.02'"),
        ("epochs = 1", "epochs = 0", "epochs must be >= 1, got 0"),
        (
            'schedule = "constant"',
            'schedule = "step"',
            "unknown schedule 'step'; valid choices: constant, cosine, multistep",
        ),
        ('objective = "ce"', 'objective = "ce=1,kdd=1"', "'kdd'"),
        ('objective = "ce"', "objective = 3", "an objective is a preset or 'ce=0.1,kd=0.9' string"),
        ('model = "cnn"', 'model = "cnnn"', "unknown model 'cnnn'"),
        ('dataset = "digits"', 'dataset = "cifar1000"', "unknown dataset 'cifar1000'"),
        (
            "[teacher]",
            "[lr_by_model]\nshufflenet = 0.01\nresnet32x8 = 0.1\n\n[teacher]",
            "[lr_by_model] 'resnet32x8' is the start of no model name",
        ),
        ("model_kwargs = { width = 4 }", "model_kwargs = 4", "teacher.model_kwargs must be a table, got 4"),
        ('[teacher]\nmodel = "cnn"', "[teacher]", "[teacher] needs 'model'"),
        ('dataset = "digits"', 'dataset = "digits"\nextends = "nope"', "unknown experiment 'nope'"),
        ("[train]", "[train\n", "is not valid TOML"),
    ],
)
def test_bad_experiment_files_are_refused_with_the_file_and_the_reason(tmp_path, old, new, message):
    path = tmp_path / "mine.toml"
    assert old in USER_RECIPE
    path.write_text(USER_RECIPE.replace(old, new, 1))
    with pytest.raises((ExperimentError, KeyError)) as info:
        load_experiment(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_a_file_that_is_not_utf8_gets_kdvizs_own_error_naming_the_file(tmp_path, capsys):
    path = tmp_path / "latin1.toml"
    path.write_bytes(USER_RECIPE.replace("a user's own recipe", "caf\u00e9").encode("latin-1"))
    with pytest.raises(ExperimentError, match=f"experiment file {path} is not UTF-8"):
        load_experiment(path)
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), *CPU]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not UTF-8" in err and str(path) in err


def test_extends_starts_from_another_experiment_and_overrides_key_by_key(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('extends = "crd-cifar100"\n[student]\nmodel = "resnet20"\nepochs = 3\n')
    experiment = load_experiment(path)
    assert experiment.name == "mine" and experiment.dataset == "cifar100"
    kwargs = experiment.train_kwargs("student")
    assert (kwargs["model"], kwargs["epochs"], kwargs["milestones"], kwargs["lr"]) == (
        "resnet20",
        3,
        [150, 180, 210],
        0.05,
    )
    assert kwargs["objective"] == {"ce": 0.1, "kd": {"weight": 0.9, "tau": 4.0}}  # the base's student objective


def test_crd_recipe_distills_with_a_feature_term_from_the_command_line(tmp_path):
    from kdviz.cli import main
    from kdviz.data.sample_files import write_cifar100

    write_cifar100(tmp_path / "cifar-100-python")
    teacher, student = tmp_path / "teacher", tmp_path / "student"
    common = ["--recipe", "crd-cifar100", "--data-root", str(tmp_path), "--n-train", "6", "--epochs", "1", *CPU]
    assert main(["train-teacher", *common, "--model", "resnet8", "--out", str(teacher)]) == 0
    assert (
        main(
            [
                "distill",
                *common,
                "--teacher",
                str(teacher / "best.pt"),
                "--model",
                "shufflenetv2_0_5",
                "--loss",
                "crd",
                "--loss-params",
                '{"crd": {"negatives": 64}}',
                "--out",
                str(student),
            ]
        )
        == 0
    )
    assert config(student)["objective"]["crd"] == {"weight": 0.8, "negatives": 64}
    assert "crd" in torch.load(student / "last.pt", weights_only=True)["objective"]

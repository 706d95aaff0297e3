"""Every setting of the experiment format, with one bad value each, is refused when the file is
loaded (before anything trains), with a message that names the file and the setting. The
settings are read from the format's own definition (load.TOP_KEYS, ROLE_KEYS, ARM_KEYS and
TrainConfig's fields), so a new setting without a bad-value case here fails this test."""

import copy
import tomllib
from dataclasses import fields

import pytest

from kdviz.data import SIZES, load_dataset, n_train_range
from kdviz.experiments import ExperimentError, load_experiment, run_sweep
from kdviz.experiments.load import ARM_KEYS, ROLE_KEYS, TOP_KEYS
from kdviz.train import TrainConfig

BASE = """
name = "walk"
description = "one of each kind of arm"
dataset = "digits"
seeds = [0, 1]
baseline = "kd"
icc_tau = 4.0

[train]
epochs = 3

[lr_by_model]
mlp = 0.1

[teacher]
model = "cnn"
model_kwargs = {width = 4}

[student]
model = "mlp"
model_kwargs = {hidden = 8}
n_train = 40
objective = "kd"

[[arms]]
name = "teacher_ce"
role = "teacher"
objective = "ce"

[[arms]]
name = "early"
role = "snapshot"
teacher = "teacher_ce"
epoch = 0

[[arms]]
name = "kd"
role = "student"
teacher = "teacher_ce"
objective = "kd"
sweep = {"kd.tau" = [2.0, 4.0]}
settings = {lr = 0.01}
seeds = [0]
"""


def top(key, value):
    return lambda raw: {**raw, key: value}


def table(name, key, value):
    return lambda raw: {**raw, name: {**raw[name], key: value}}


def arm(index, key, value):
    def edit(raw):
        arms = copy.deepcopy(raw["arms"])
        arms[index][key] = value
        return {**raw, "arms": arms}

    return edit


# setting -> (an edit of the parsed BASE with one bad value, or a file's text; what the error says)
BAD = {
    # the top level
    "name": (top("name", "a/b"), "name must be a non-empty string without / or \\ (it names a folder), got 'a/b'"),
    "description": (top("description", 3), "description must be a string, got 3"),
    "extends": (lambda raw: 'extends = "nope"\n' + BASE, "extends: unknown experiment 'nope'"),
    "dataset": (top("dataset", "digitz"), "unknown dataset 'digitz'"),
    "dataset_options": (
        top("dataset_options", {"clases": 3}),
        "dataset_options of 'digits' got unknown argument(s) ['clases']; valid: none",
    ),
    "seeds": (top("seeds", [0, -1]), "seeds must be a non-empty list of whole numbers >= 0, got [0, -1]"),
    "baseline": (top("baseline", "kdd"), "no arm 'kdd'"),
    "icc_tau": (top("icc_tau", 0), "icc_tau must be finite and > 0, got 0.0"),
    "train": (top("train", 3), "train must be a table, got 3"),
    "lr_by_model": (table("lr_by_model", "mlp", "0.1"), "[lr_by_model] mlp must be a number, got '0.1'"),
    "teacher": (top("teacher", "cnn"), "teacher must be a table, got 'cnn'"),
    "student": (lambda raw: {k: v for k, v in raw.items() if k != "student"}, "needs a table [student]"),
    "arms": (top("arms", []), "arms = [] lists no arm, so nothing would run: add [[arms]] tables"),
    # [teacher] and [student]
    "model": (table("student", "model", "mlpp"), "unknown model 'mlpp'"),
    "model_kwargs": (
        table("student", "model_kwargs", {"hiden": 8}),
        "[student] model_kwargs of model 'mlp' got unknown argument(s) ['hiden']; valid: ['depth', 'hidden']",
    ),
    "n_train": (
        table("student", "n_train", 5000),
        "[student] n_train must be in [10, 1132] for digits (at least one image per class, at most the 1132 "
        "training images left after validation), got 5000",
    ),
    "objective": (table("student", "objective", "kdd"), "cannot read loss 'kdd'"),
    # the arms
    "arm.name": (arm(2, "name", ""), "an arm's name must be a non-empty string"),
    "arm.role": (arm(2, "role", "judge"), "arm 'kd' has role 'judge'; valid roles: teacher, student, snapshot"),
    "arm.objective": (
        arm(2, "objective", "kd+icc_mimik"),
        "arm 'kd' objective: cannot read loss 'kd+icc_mimik' (did you mean 'kd+icc_mimic'?)",
    ),
    "arm.teacher": (arm(2, "teacher", "kd"), "the arms' teachers form a cycle: kd -> kd"),
    "arm.sweep": (arm(2, "sweep", {"kd.tau": []}), "arm 'kd' sweeps 'kd.tau' over []; give a non-empty list"),
    "arm.settings": (arm(2, "settings", {"lr": "0.01"}), "arm 'kd' settings lr must be like 0.05 (float), got '0.01'"),
    "arm.epoch": (arm(1, "epoch", 3), "with every N in [0, 3) (its teacher trains 3 epochs), got [3]"),
    "arm.seeds": (arm(2, "seeds", [2]), "arm 'kd' runs on seeds [2], its teacher 'teacher_ce' on [0, 1]"),
    # TrainConfig's fields, in [train]
    "train.epochs": (table("train", "epochs", 0), "epochs must be >= 1, got 0"),
    "train.batch_size": (table("train", "batch_size", 0), "batch_size must be >= 1, got 0"),
    "train.lr": (table("train", "lr", "0.05"), "[train] lr must be like 0.05 (float), got '0.05'"),
    "train.momentum": (table("train", "momentum", 1.0), "momentum must be in [0, 1), got 1.0"),
    "train.nesterov": (table("train", "nesterov", "no"), "[train] nesterov must be like True (bool), got 'no'"),
    "train.weight_decay": (table("train", "weight_decay", -1.0), "weight_decay must be finite and >= 0, got -1.0"),
    "train.schedule": (table("train", "schedule", "linear"), "unknown schedule 'linear'"),
    "train.milestones": (table("train", "milestones", [1.5]), "[train] milestones must be like () (tuple), got [1.5]"),
    "train.gamma": (table("train", "gamma", 0), "gamma must be in (0, 1], got 0"),
    "train.warmup_epochs": (table("train", "warmup_epochs", 3), "warmup_epochs must be in [0, epochs=3), got 3"),
    "train.seed": (table("train", "seed", 1.5), "[train] seed must be like 0 (int), got 1.5"),
    "train.icc_tau": (table("train", "icc_tau", -1.0), "icc_tau must be finite and > 0, got -1.0"),
    "train.augment": (table("train", "augment", 1), "[train] augment must be like True (bool), got 1"),
    "train.amp": (table("train", "amp", 1), "[train] amp must be like False (bool), got 1"),
    "train.channels_last": (table("train", "channels_last", "auto"), "[train] channels_last must be true or false"),
    "train.compile": (table("train", "compile", 1), "[train] compile must be like False (bool), got 1"),
    "train.sync_bn": (table("train", "sync_bn", 1), "[train] sync_bn must be like False (bool), got 1"),
    "train.teacher_cache": (table("train", "teacher_cache", "yes"), "[train] teacher_cache must be true or false"),
    "train.cache_views": (table("train", "cache_views", 0), "cache_views must be >= 1, got 0"),
    "train.cache_topk": (table("train", "cache_topk", -1), "cache_topk must be >= 0 (0 keeps all logits), got -1"),
    "train.eval_test": (table("train", "eval_test", 1), "[train] eval_test must be like False (bool), got 1"),
    "train.val_subset": (table("train", "val_subset", -1), "val_subset must be >= 0"),
    "train.last_batch": (table("train", "last_batch", "skip"), "last_batch must be one of 'keep', 'drop', got 'skip'"),
}

SETTINGS = [
    *TOP_KEYS,
    *ROLE_KEYS,
    *(f"arm.{key}" for key in ARM_KEYS),
    *(f"train.{f.name}" for f in fields(TrainConfig)),
]


def load(tmp_path, edit):
    """Load BASE changed by `edit` (a parsed file's new top-level keys, or a new file's text)."""
    path = tmp_path / "walk.toml"
    path.write_text(BASE)
    changed = edit(tomllib.loads(BASE))
    if isinstance(changed, str):
        path.write_text(changed)
        return load_experiment(path)
    # Keys left out of `changed` are left out of the file too.
    path.write_text("\n".join(f"# {key}" for key in changed))
    return load_experiment(path, **changed)


def test_the_base_file_is_valid(tmp_path):
    experiment = load(tmp_path, lambda raw: raw)
    assert [a.name for a in experiment.arms] == ["teacher_ce", "early", "kd"]


def test_every_setting_of_the_format_has_a_bad_value_case():
    assert sorted(set(SETTINGS) - set(BAD)) == [], "give each new setting of the experiment format a bad value in BAD"
    assert sorted(set(BAD) - set(SETTINGS)) == [], "BAD names settings the format no longer has"


@pytest.mark.parametrize("setting", SETTINGS)
def test_each_setting_with_a_bad_value_is_refused_at_load(tmp_path, setting):
    edit, message = BAD[setting]
    with pytest.raises(ExperimentError) as caught:
        load(tmp_path, edit)
    assert message in str(caught.value)
    assert str(tmp_path / "walk.toml") in str(caught.value)


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            arm(2, "teacher", None),
            "arm 'kd' has objective 0.1*ce + 0.9*kd(tau=2.0), which distills from a teacher, but names none; add "
            "teacher = <a teacher or snapshot arm listed before it> (teacher_ce, early), or give it an objective",
        ),
        (
            lambda raw: {
                **raw,
                "arms": [
                    {"name": "a", "role": "teacher", "teacher": "b", "objective": "kd"},
                    {"name": "b", "role": "teacher", "teacher": "a", "objective": "kd"},
                    *raw["arms"],
                ],
            },
            "the arms' teachers form a cycle: a -> b -> a (each arm -> the teacher it names)",
        ),
        (
            lambda raw: {**raw, "arms": [raw["arms"][2], raw["arms"][0]]},
            "arm 'kd' names teacher 'teacher_ce', which is listed after it; list 'teacher_ce' before 'kd'",
        ),
        (arm(2, "epoch", 1), "arm 'kd' sets epoch, which only a snapshot arm reads"),
        (arm(1, "sweep", {"lr": [0.1]}), "snapshot arm 'early' sweeps ['lr'], but a snapshot is read from"),
        (arm(2, "settings", 3), "arm 'kd' settings must be a table, got 3"),
        (arm(2, "sweep", 3), "arm 'kd': sweep must be a table such as"),
        (table("teacher", "n_train", 9), "[teacher] n_train must be in [10, 1132] for digits"),
        (table("student", "model_kwargs", {"hidden": "8"}), "hidden must be like 64 (int), got '8'"),
    ],
)
def test_arm_and_role_mistakes_the_file_reveals_are_refused_at_load(tmp_path, edit, message):
    with pytest.raises(ExperimentError) as caught:
        load(tmp_path, edit)
    assert message in str(caught.value)


def test_a_recipe_whose_teacher_distills_is_refused_at_load(tmp_path):
    def recipe(raw):  # no arms: the teacher, and the student learning from it
        return {k: v for k, v in raw.items() if k not in ("arms", "baseline")}

    assert [a.teacher for a in load(tmp_path, recipe).arms] == [None, "teacher"]
    with pytest.raises(ExperimentError, match="arm 'teacher' has objective .*distills from a teacher, but names none"):
        load(tmp_path, lambda raw: {**recipe(raw), "teacher": {**raw["teacher"], "objective": "kd"}})


def test_no_arms_leaves_no_output_folder_and_run_sweep_refuses_an_experiment_without_runs(tmp_path):
    from dataclasses import replace

    out = tmp_path / "out"
    with pytest.raises(ExperimentError, match=r"arms = \[\] lists no arm"):
        load(tmp_path, top("arms", []))
    empty = replace(load(tmp_path, lambda raw: raw), arms=())
    with pytest.raises(ValueError, match="has no run to make"):
        run_sweep(empty, out, progress=False)
    assert not out.exists()


@pytest.mark.slow
def test_n_train_bounds_are_the_ones_load_dataset_enforces():
    """digits: 1,258 training images of 10 classes; validation is max(10, round(0.1 * 1258)) = 126 of
    them, which leaves 1,132 to train on, and n_train needs one image per class."""
    assert n_train_range("digits") == (10, 1258 - 126) == (10, 1132)
    full = load_dataset("digits", seed=0)
    assert len(full.train) + len(full.val) == SIZES["digits"].train
    assert len(load_dataset("digits", seed=0, n_train=1132).train) == 1132
    for bad in (9, 1133):
        with pytest.raises(ValueError, match=r"n_train must be in \[10, 1132\]"):
            load_dataset("digits", seed=0, n_train=bad)
    # CINIC-10 ships its own validation split: every training image can be used.
    assert n_train_range("cinic10") == (10, 90_000)
    assert n_train_range("cifar100") == (100, 50_000 - 5_000)
    # planted is generated: its size follows its options (2,000 images of 12 classes by default;
    # validation max(12, 200) = 200 of them).
    assert n_train_range("planted") == (12, 1_800)
    assert n_train_range("planted", n_images=600, classes=6) == (6, 540)
    assert len(load_dataset("planted", seed=0, n_images=600, classes=6, groups=2, n_train=540).train) == 540


def test_every_registered_dataset_declares_its_size():
    from kdviz.data import DATASETS

    assert set(DATASETS.names()) == set(SIZES)

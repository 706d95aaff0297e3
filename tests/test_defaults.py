"""kdviz's fast defaults (issue #15): the exact teacher cache where it is exact, channels_last for
convolutional models on a CPU, the test split evaluated once on the chosen weights, a fixed
validation subset, and config.json recording what was decided."""

import dataclasses
import json
import sys

import pandas as pd
import pytest
import torch

from kdviz.data.base import DatasetSplits
from kdviz.experiments import ExperimentError, load_experiment
from kdviz.inference import predict_logits
from kdviz.losses import Objective
from kdviz.models import build_model
from kdviz.train import TrainConfig, train
from kdviz.train.teacher import teacher_source

pytestmark = pytest.mark.filterwarnings("ignore:the teacher is a bare CountingTeacher")  # a module on purpose
SETTINGS = dict(model_kwargs={"width": 4}, epochs=3, seed=1, progress=False, batch_size=16)
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def chosen_threads(monkeypatch):
    """The thread count set as a user would set it: otherwise kdviz's own choice runs the online
    teacher on one probe image to count its FLOPs (kdviz.threads.forward_flops), and these tests
    count the images the teacher sees."""
    monkeypatch.setenv("OMP_NUM_THREADS", str(torch.get_num_threads()))


class CountingTeacher(torch.nn.Module):
    """A fixed cnn that counts the images it is run on."""

    def __init__(self, info):
        super().__init__()
        torch.manual_seed(0)
        self.net = build_model("cnn", len(info.class_names), info.image_shape, width=4).eval()
        self.images = 0

    def forward(self, x, return_stages=False):
        self.images += x.shape[0]
        return self.net(x, return_stages=return_stages)


def augmented(data):
    return DatasetSplits(
        dataclasses.replace(data.info, augment="crop_flip", augment_padding=1), data.train, data.val, data.test
    )


def error(model, split, info) -> float:
    """Top-1 error of `model` on `split`, evaluated here."""
    return (predict_logits(model, split, info, CPU).argmax(1) != split.labels).float().mean().item()


def test_settings_left_to_kdviz_resolve_as_documented(tiny_data):
    cnn, mlp = build_model("cnn", 4, (1, 4, 4), width=4), build_model("mlp", 4, (1, 4, 4))
    kd, ce, fitnet = Objective.coerce("kd"), Objective.coerce("ce"), Objective.coerce({"ce": 1, "fitnet": 1})
    cfg = TrainConfig()
    assert (cfg.channels_last, cfg.teacher_cache, cfg.eval_test, cfg.val_subset) == (None, None, False, 0)
    assert cfg.resolved(cnn, CPU).channels_last is True  # convolutional, on a CPU
    assert cfg.resolved(mlp, CPU).channels_last is False  # no convolution
    assert cfg.resolved(cnn, torch.device("cuda")).channels_last is False  # unchanged on CUDA
    assert TrainConfig(channels_last=False).resolved(cnn, CPU).channels_last is False  # what the user set wins

    def cached(cfg, data, objective):
        return teacher_source(cfg, objective, data, cache_dir=None).cached

    assert cached(cfg, tiny_data, kd) is True  # exact: no augmentation
    assert cached(cfg, augmented(tiny_data), kd) is False  # augmented: the online teacher
    assert cached(TrainConfig(augment=False), augmented(tiny_data), kd) is True  # augmentation off: exact again
    assert cached(cfg, tiny_data, fitnet) is False  # reads the teacher's features
    assert cached(cfg, tiny_data, ce) is False  # no teacher at all
    assert cached(TrainConfig(teacher_cache=True), augmented(tiny_data), kd) is True  # what the user set wins (K views)
    with pytest.raises(ValueError, match="val_subset must be >= 0"):
        TrainConfig(val_subset=-1)


def test_exact_teacher_cache_is_the_default_without_augmentation(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("KDVIZ_CACHE", str(tmp_path / "cache"))
    teacher = CountingTeacher(tiny_data.info)
    cached = train(tiny_data, "cnn", "kd", teacher=teacher, out_dir=tmp_path / "run", **SETTINGS)
    n = len(tiny_data.train)
    assert teacher.images == 2 + n  # the class-count check on 2 images, then one pass over the split
    assert not (tmp_path / "cache").exists()  # a small split's cache stays in memory
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["teacher_cache"] is True and saved["channels_last"] is True  # recorded as decided
    teacher.images = 0
    online = train(tiny_data, "cnn", "kd", teacher=teacher, teacher_cache=False, **SETTINGS)
    assert teacher.images == 2 + SETTINGS["epochs"] * n  # every step runs the teacher
    for a, b in zip(cached.model.state_dict().values(), online.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)  # exact: the same training
    torch.testing.assert_close(
        torch.tensor(cached.history["train_kd"].values),
        torch.tensor(online.history["train_kd"].values),
        rtol=1e-4,
        atol=1e-6,
    )


def test_with_augmentation_or_a_feature_term_the_default_teacher_is_online(tiny_data):
    data = augmented(tiny_data)
    teacher = CountingTeacher(data.info)
    result = train(data, "cnn", "kd", teacher=teacher, **SETTINGS)
    assert teacher.images == 2 + SETTINGS["epochs"] * len(data.train) and result.config.teacher_cache is False
    teacher = CountingTeacher(tiny_data.info)
    objective = {"ce": 1.0, "fitnet": {"weight": 1.0, "student_stage": "pool", "teacher_stage": "pool"}}
    result = train(tiny_data, "cnn", objective, teacher=teacher, **SETTINGS)  # no error: the online teacher
    assert result.config.teacher_cache is False and teacher.images > 2 + 2 * len(tiny_data.train)


def test_large_splits_and_a_given_cache_dir_keep_the_cache_on_disk(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("KDVIZ_CACHE", str(tmp_path / "default"))
    monkeypatch.setattr(sys.modules["kdviz.train.teacher"], "DISK_CACHE_IMAGES", len(tiny_data.train))
    train(tiny_data, "cnn", "kd", teacher=CountingTeacher(tiny_data.info), **SETTINGS)
    assert len(list((tmp_path / "default").glob("*.pt"))) == 1
    monkeypatch.undo()
    train(tiny_data, "cnn", "kd", teacher=CountingTeacher(tiny_data.info), cache_dir=tmp_path / "given", **SETTINGS)
    assert len(list((tmp_path / "given").glob("*.pt"))) == 1


def test_test_split_is_evaluated_once_on_the_chosen_weights(tiny_data, tmp_path):
    result = train(tiny_data, "cnn", "ce", out_dir=tmp_path / "run", **SETTINGS)
    h = result.history.set_index("epoch")
    assert h["test_top1_err"].notna().sum() == 1 and h["val_top1_err"].notna().all()
    expected = error(result.model, tiny_data.test, tiny_data.info)
    assert result.best["test_top1_err"] == pytest.approx(expected)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["eval_test"] is False and saved["val_subset"] == 0
    on_disk = pd.read_csv(tmp_path / "run" / "metrics.csv").set_index("epoch")["test_top1_err"]
    assert on_disk.notna().sum() == 1 and on_disk[result.best_epoch] == pytest.approx(expected)


def test_eval_test_gives_test_curves_and_kept_epochs_their_test_error(tiny_data, tmp_path):
    every = train(tiny_data, "cnn", "ce", eval_test=True, **SETTINGS)
    assert every.history["test_top1_err"].notna().all()
    kept = train(tiny_data, "cnn", "ce", out_dir=tmp_path / "run", keep_epochs=(0,), **SETTINGS)
    assert kept.history.set_index("epoch").loc[0, ["test_top1_err", "test_loss"]].notna().all()
    assert kept.history.set_index("epoch").loc[0, "test_top1_err"] == every.history.loc[0, "test_top1_err"]


def test_val_subset_evaluates_a_fixed_subset(tiny_data, tmp_path):
    k = 10
    result = train(tiny_data, "cnn", "ce", val_subset=k, out_dir=tmp_path / "run", **SETTINGS)
    counts = result.history["val_top1_err"].to_numpy() * k
    assert abs(counts - counts.round()).max() < 1e-6  # errors out of k images
    idx = torch.randperm(len(tiny_data.val), generator=torch.Generator().manual_seed(SETTINGS["seed"]))[:k]
    assert result.best["val_top1_err"] == pytest.approx(error(result.model, tiny_data.val.subset(idx), tiny_data.info))
    assert json.loads((tmp_path / "run" / "config.json").read_text())["val_subset"] == k


def test_resume_with_the_defaults_is_bit_identical_and_keeps_the_recorded_choices(
    tiny_data, tmp_path, interrupted_in_epoch
):
    teacher = CountingTeacher(tiny_data.info)
    full = train(tiny_data, "cnn", "kd", teacher=teacher, out_dir=tmp_path / "full", **SETTINGS)
    with interrupted_in_epoch(1), pytest.raises(KeyboardInterrupt):
        train(tiny_data, "cnn", "kd", teacher=teacher, out_dir=tmp_path / "cut", **SETTINGS)
    resumed = train(tiny_data, "cnn", "kd", teacher=teacher, out_dir=tmp_path / "cut", resume=True, **SETTINGS)
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    cols = [c for c in full.history if not c.endswith("seconds")]
    assert full.history[cols].equals(resumed.history[cols])  # the test row included
    # A run started in NCHW resumes in NCHW when channels_last is left to kdviz (as on another device).
    nchw = {**SETTINGS, "channels_last": False}
    full = train(tiny_data, "cnn", "ce", out_dir=tmp_path / "full_nchw", **nchw)
    with interrupted_in_epoch(1), pytest.raises(KeyboardInterrupt):
        train(tiny_data, "cnn", "ce", out_dir=tmp_path / "cut_nchw", **nchw)
    resumed = train(tiny_data, "cnn", "ce", out_dir=tmp_path / "cut_nchw", resume=True, **SETTINGS)
    assert resumed.config.channels_last is False
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("value, ok", [("true", True), ("false", True), ('"yes"', False), ("1", False)])
def test_experiment_settings_decided_by_kdviz_take_true_or_false(tmp_path, value, ok):
    path = tmp_path / "mine.toml"
    path.write_text(
        f'dataset = "digits"\n\n[train]\nchannels_last = {value}\nteacher_cache = {value}\n\n'
        '[teacher]\nmodel = "cnn"\n\n[student]\nmodel = "mlp"\nobjective = "kd"\n'
    )
    if ok:
        assert load_experiment(path).train_kwargs("student")["teacher_cache"] is (value == "true")
    else:
        with pytest.raises(ExperimentError, match="channels_last must be true or false, got"):
            load_experiment(path)


def test_error_curves_show_a_test_split_evaluated_once_as_its_point(tiny_data):
    from kdviz.plots import plot_error_curves

    result = train(tiny_data, "cnn", "ce", **SETTINGS)
    test_line, train_line = plot_error_curves({"run": result}, splits=("test", "train")).axes[0].get_lines()[:2]
    ys = test_line.get_ydata()
    assert test_line.get_marker() == "o" and train_line.get_marker() in ("None", None, "")
    assert [e for e, y in zip(test_line.get_xdata(), ys) if y == y] == [result.best_epoch]  # the one finite point
    assert ys[result.best_epoch] == pytest.approx(100 * result.best["test_top1_err"])


def test_a_run_of_an_older_kdviz_resumes_with_the_new_settings_at_their_defaults(
    tiny_data, tmp_path, interrupted_in_epoch
):
    with interrupted_in_epoch(1), pytest.raises(KeyboardInterrupt):
        train(tiny_data, "cnn", "ce", out_dir=tmp_path / "run", **SETTINGS)
    path = tmp_path / "run" / "config.json"
    older = {k: v for k, v in json.loads(path.read_text()).items() if k not in ("eval_test", "val_subset")}
    path.write_text(json.dumps(older))  # as a kdviz without these settings wrote it
    with pytest.raises(ValueError, match=r"different settings \(val_subset\)"):
        train(tiny_data, "cnn", "ce", out_dir=tmp_path / "run", resume=True, val_subset=5, **SETTINGS)
    resumed = train(tiny_data, "cnn", "ce", out_dir=tmp_path / "run", resume=True, **SETTINGS)
    assert len(resumed.history) == SETTINGS["epochs"]

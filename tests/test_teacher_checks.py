"""A wrong or broken teacher stops training with a message that names it, instead of a silently wrong student."""

import json

import pytest
import torch

import kdviz
from kdviz.data.base import DatasetInfo, DatasetSplits, Split
from kdviz.train import load_checkpoint, train
from kdviz.train import loop as loop_module
from kdviz.train.teacher_cache import weights_sha256

SMALL = dict(model_kwargs={"width": 4}, batch_size=16, progress=False)


def _teacher(data, tmp_path, seed):
    return train(data, "cnn", "ce", epochs=1, seed=seed, out_dir=tmp_path / f"teacher{seed}", **SMALL)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:the teacher is a bare")
def test_resume_with_another_teacher_is_refused_naming_both(tiny_data, tmp_path, monkeypatch):
    first, other = _teacher(tiny_data, tmp_path, 0), _teacher(tiny_data, tmp_path, 1)
    a, b = tmp_path / "teacher0" / "best.pt", tmp_path / "teacher1" / "best.pt"
    run = tmp_path / "student"
    real_epoch = loop_module.train_epoch

    def interrupted(r, epoch):  # as a user's Ctrl-C in epoch 1
        if epoch == 1:
            raise KeyboardInterrupt
        return real_epoch(r, epoch)

    monkeypatch.setattr(loop_module, "train_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_data, "cnn", "kd", teacher=a, epochs=3, out_dir=run, **SMALL)
    monkeypatch.setattr(loop_module, "train_epoch", real_epoch)

    recorded = {"checkpoint": str(a), "sha256": weights_sha256(first.model)}
    assert json.loads((run / "config.json").read_text())["teacher"] == recorded
    assert load_checkpoint(run / "last.pt")["teacher"] == recorded
    with pytest.raises(
        ValueError,
        match=rf"trained from teacher {a} \(weights sha256 {recorded['sha256'][:12]}\).*given {b} "
        rf"\(weights sha256 {weights_sha256(other.model)[:12]}\)",
    ):
        train(tiny_data, "cnn", "kd", teacher=b, epochs=3, out_dir=run, resume=True, **SMALL)
    with pytest.raises(ValueError, match="a module passed in Python"):  # the same refusal for a module
        train(tiny_data, "cnn", "kd", teacher=other.model, epochs=3, out_dir=run, resume=True, **SMALL)
    assert json.loads((run / "config.json").read_text())["teacher"] == recorded  # a refused resume rewrites nothing
    # The same weights resume, from wherever they are passed.
    done = train(tiny_data, "cnn", "kd", teacher=first, epochs=3, out_dir=run, resume=True, **SMALL)
    assert list(done.history["epoch"]) == [0, 1, 2]


def _resized(data, side):
    """`data` under the same dataset name, with side x side images."""
    info = DatasetInfo(
        name=data.info.name, class_names=data.info.class_names, image_shape=(1, side, side), mean=(0.5,), std=(0.25,)
    )
    g = torch.Generator().manual_seed(0)

    def split(part):
        return Split(torch.randint(0, 255, (len(part), 1, side, side), generator=g, dtype=torch.uint8), part.labels)

    return DatasetSplits(info, split(data.train), split(data.val), split(data.test))


def test_a_teacher_trained_on_other_images_is_refused_where_known_and_warned_about_otherwise(tiny_data, tmp_path):
    teacher = _teacher(tiny_data, tmp_path, 0)  # on 1x4x4 images; SmallCNN's pooling accepts any size
    larger = _resized(tiny_data, 6)
    for given in (teacher, tmp_path / "teacher0" / "best.pt"):
        with pytest.raises(ValueError, match=r"trained on images of shape \(1, 4, 4\), tiny has \(1, 6, 6\)"):
            train(larger, "cnn", "kd", teacher=given, epochs=1, **SMALL)
    with pytest.warns(UserWarning, match="bare SmallCNN module.*not that it was trained on tiny's 1x6x6 images"):
        train(larger, "cnn", "kd", teacher=teacher.model, epochs=1, **SMALL)


@pytest.mark.filterwarnings("ignore:the teacher is a bare")
@pytest.mark.parametrize("cached", [False, True])
def test_non_finite_teacher_logits_stop_training_naming_the_teacher(tiny_data, tmp_path, cached):
    teacher = kdviz.build_model("cnn", 4, tiny_data.info.image_shape, width=4)
    with torch.no_grad():
        teacher.classifier.bias[2] = float("nan")  # kd alone would hide it: its NaN rows count as 0
    settings = dict(teacher_cache=cached, cache_dir=tmp_path / "cache", **SMALL)
    with pytest.raises(
        FloatingPointError,
        match=r"teacher's logits are not finite .* at epoch 0, step 0; teacher: \(SmallCNN module\)"
        + (r" \(its cached logits\)" if cached else ""),
    ):
        train(tiny_data, "cnn", "kd", teacher=teacher, epochs=2, out_dir=tmp_path / "run", **settings)
    assert not (tmp_path / "run" / "last.pt").exists()


def test_a_non_finite_loss_says_what_was_saved(tiny_data, tmp_path):
    with pytest.raises(
        FloatingPointError, match=r"loss became non-finite at epoch 0, step 1.*No checkpoint exists yet"
    ) as first:
        train(
            tiny_data, "mlp", "ce", lr=float("inf"), epochs=2, batch_size=16, out_dir=tmp_path / "run", progress=False
        )
    assert "last good checkpoint" not in str(first.value) and not (tmp_path / "run" / "last.pt").exists()
    with pytest.raises(FloatingPointError, match=r"Nothing was saved \(no out_dir\)"):
        train(tiny_data, "mlp", "ce", lr=float("inf"), epochs=2, batch_size=16, progress=False)


def test_non_finite_weights_after_an_epochs_last_update_are_never_saved(tiny_data, tmp_path):
    # One step per epoch: the loss of epoch 0 is finite, the update after it is not.
    with pytest.raises(
        FloatingPointError, match=r"weights became non-finite in the update of epoch 0, step 0.*No checkpoint exists"
    ):
        train(
            tiny_data,
            "mlp",
            "ce",
            lr=float("inf"),
            epochs=2,
            batch_size=len(tiny_data.train),
            out_dir=tmp_path,
            progress=False,
        )
    assert not (tmp_path / "last.pt").exists()

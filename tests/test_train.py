"""The training loop end to end: learning, model selection, checkpoints, resume, clear errors."""

import pickle

import pytest
import torch

import kdviz
from kdviz.train import CheckpointError, load_checkpoint, load_model, train
from kdviz.train import loop as loop_module


@pytest.mark.slow
def test_digits_end_to_end_learns_far_below_chance():
    data = kdviz.load_dataset("digits", seed=0)
    result = kdviz.train_teacher(data, "cnn", "icc_teacher", model_kwargs={"width": 8}, epochs=4, progress=False)
    h = result.history
    assert list(h["epoch"]) == [0, 1, 2, 3]
    assert {
        "train_ce",
        "train_icc_teacher",
        "val_top1_err",
        "test_top1_err",
        "val_top5_err",
        "lr",
        "val_secondary_std",
    } <= set(h)
    assert h["val_top1_err"].min() < 0.2  # chance is 0.9
    assert h["train_icc_teacher"].iloc[0] == 0.0 and h["train_icc_teacher"].iloc[1] > 0  # off until epoch 0 ends
    best = h.sort_values(["val_top1_err", "val_loss"]).iloc[0]
    assert result.best_epoch == best["epoch"] and best["val_top1_err"] == h["val_top1_err"].min()
    assert len(result.icc_snapshots) == 4


def test_best_epoch_is_chosen_on_validation_not_test(tiny_data, monkeypatch):
    # Fake evaluations in which validation and test disagree about the best epoch.
    fake = iter(
        [
            {"val_top1_err": v, "test_top1_err": t, "val_loss": loss, "val_top5_err": 0.0, "test_top5_err": 0.0}
            for v, t, loss in [(0.5, 0.1, 1.0), (0.2, 0.4, 0.9), (0.3, 0.0, 0.1), (0.2, 0.3, 0.5)]
        ]
    )
    monkeypatch.setattr(loop_module, "evaluate", lambda *a, **k: (next(fake), None))  # (scores, no ICC snapshot)
    result = train(tiny_data, "mlp", "ce", epochs=4, progress=False)
    assert result.best_epoch == 3  # lowest validation error, the tie with epoch 1 broken by validation loss


def test_distill_needs_teacher_and_matching_classes(tiny_data):
    with pytest.raises(ValueError, match="needs teacher="):
        train(tiny_data, "mlp", "kd", epochs=1, progress=False)
    wrong = kdviz.build_model("mlp", 7, tiny_data.info.image_shape)
    with pytest.raises(ValueError, match="predicts 7 classes"):
        train(tiny_data, "mlp", "kd", teacher=wrong, epochs=1, progress=False)
    with pytest.raises(ValueError, match="no distillation term"):
        train(tiny_data, "mlp", "ce", teacher=wrong, epochs=1, progress=False)


def test_unknown_names_list_the_choices(tiny_data):
    with pytest.raises(KeyError, match="valid choices: .*cnn.*mlp"):
        train(tiny_data, "resnet9000", "ce", epochs=1, progress=False)
    with pytest.raises(KeyError, match="valid choices: .*kd"):
        train(tiny_data, "mlp", "ce=0.5,kdd=0.5", epochs=1, progress=False)
    with pytest.raises(TypeError, match="valid: .*epochs"):
        train(tiny_data, "mlp", "ce", epoch=1, progress=False)
    with pytest.raises(ValueError, match="warmup_epochs"):
        train(tiny_data, "mlp", "ce", epochs=2, warmup_epochs=3, progress=False)


def test_checkpoint_reloads_the_best_model(tiny_data, tmp_path):
    result = train(
        tiny_data, "cnn", "ce", model_kwargs={"width": 4}, epochs=3, out_dir=tmp_path / "run", progress=False
    )
    model, ckpt = load_model(tmp_path / "run" / "best.pt")
    assert ckpt["dataset"] == "tiny" and ckpt["epoch"] == result.best_epoch
    assert ckpt["torch_version"] == torch.__version__ and ckpt["kdviz_version"] == kdviz.__version__
    x = torch.randn(5, 1, 4, 4)
    assert torch.equal(model(x), result.model.eval()(x))
    assert (tmp_path / "run" / "metrics.csv").read_text().startswith("epoch,")


def test_finished_run_is_not_overwritten(tiny_data, tmp_path):
    train(tiny_data, "mlp", "ce", epochs=1, out_dir=tmp_path, progress=False)
    with pytest.raises(FileExistsError, match="finished run.*resume=True"):
        train(tiny_data, "mlp", "ce", epochs=1, out_dir=tmp_path, progress=False)


def test_bad_checkpoint_files_are_refused(tmp_path):
    truncated = tmp_path / "truncated.pt"
    good = tmp_path / "good.pt"
    torch.save({"format": "kdviz-checkpoint-1", "x": torch.zeros(1000)}, good)
    truncated.write_bytes(good.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(truncated)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "kdviz-checkpoint-1", "payload": Evil()}, evil)
    with pytest.raises(CheckpointError):
        load_checkpoint(evil)
    plain = tmp_path / "plain.pt"
    plain.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError):
        load_checkpoint(plain)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="not a kdviz checkpoint"):
        load_checkpoint(other)


@pytest.mark.parametrize("channels_last", [False, True])
def test_interrupted_run_resumes_to_identical_result(tiny_data, tmp_path, interrupted_in_epoch, channels_last):
    settings = dict(
        model_kwargs={"width": 4}, epochs=4, out_dir=None, progress=False, seed=3, channels_last=channels_last
    )
    full = train(tiny_data, "cnn", "icc_teacher", **{**settings, "out_dir": tmp_path / "full"})

    with interrupted_in_epoch(2), pytest.raises(KeyboardInterrupt):
        train(tiny_data, "cnn", "icc_teacher", **{**settings, "out_dir": tmp_path / "cut"})
    resumed = train(tiny_data, "cnn", "icc_teacher", **{**settings, "out_dir": tmp_path / "cut"}, resume=True)

    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    cols = [c for c in full.history if not c.endswith("seconds")]  # wall times differ
    assert full.history[cols].equals(resumed.history[cols])
    assert len(resumed.icc_snapshots) == 4


def test_resume_refuses_a_different_config(tiny_data, tmp_path):
    train(tiny_data, "mlp", "ce", epochs=1, out_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="different settings"):
        train(tiny_data, "mlp", "ce", epochs=1, lr=0.2, out_dir=tmp_path, progress=False, resume=True)


def test_non_finite_loss_stops_with_epoch_step_and_term(tiny_data, tmp_path):
    with pytest.raises(FloatingPointError, match=r"epoch \d+, step \d+ \(term\(s\): .*ce"):
        train(tiny_data, "mlp", "ce", epochs=3, lr=1e12, out_dir=tmp_path, progress=False)


def test_teacher_checkpoint_of_another_dataset_is_refused(tiny_data, tmp_path):
    train(tiny_data, "mlp", "ce", epochs=1, out_dir=tmp_path / "t", progress=False)
    digits = kdviz.load_dataset("digits")
    with pytest.raises(ValueError, match="is for dataset 'tiny', the student trains on 'digits'"):
        train(digits, "mlp", "kd", teacher=tmp_path / "t" / "best.pt", epochs=1, progress=False)


def test_augmented_training_resumes_exactly_and_can_be_switched_off(tiny_data, tmp_path, interrupted_in_epoch):
    import dataclasses

    from kdviz.data.base import DatasetSplits

    info = dataclasses.replace(tiny_data.info, augment="crop_flip", augment_padding=1)
    data = DatasetSplits(info, tiny_data.train, tiny_data.val, tiny_data.test)
    settings = dict(model_kwargs={"width": 4}, epochs=3, progress=False, seed=2)
    full = train(data, "cnn", "ce", out_dir=tmp_path / "full", **settings)
    plain = train(data, "cnn", "ce", augment=False, **settings)
    assert not full.history["train_loss"].equals(plain.history["train_loss"])  # augmentation is applied

    with interrupted_in_epoch(1), pytest.raises(KeyboardInterrupt):
        train(data, "cnn", "ce", out_dir=tmp_path / "cut", **settings)
    resumed = train(data, "cnn", "ce", out_dir=tmp_path / "cut", resume=True, **settings)
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_channels_last_acts_on_the_cpu_and_trains_like_nchw(tiny_data):
    """channels_last is a speed setting on every device: same training, NHWC weights, float
    results equal to NCHW's up to the convolution algorithms' rounding. amp stays CUDA-only."""
    settings = dict(model_kwargs={"width": 4}, epochs=3, progress=False, seed=1, device="cpu")
    nhwc = train(tiny_data, "cnn", "ce", channels_last=True, amp=True, **settings)
    nchw = train(tiny_data, "cnn", "ce", channels_last=False, **settings)
    convs = [m.weight for m in nhwc.model.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous() for w in convs)
    assert all(w.dtype == torch.float32 for w in convs)
    torch.testing.assert_close(
        torch.tensor(nhwc.history["train_loss"].values),
        torch.tensor(nchw.history["train_loss"].values),
        rtol=1e-4,
        atol=1e-6,
    )

"""Interrupted runs resume exactly, a run directory has one writer, bad files get clear errors."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from kdviz.train import CheckpointError, load_checkpoint, train
from kdviz.train.lock import RunLock, RunLockedError

# A digits run whose epochs are long enough (batch 8) to be killed in the middle of one.
SCRIPT = textwrap.dedent(
    """
    import sys, torch
    import kdviz as kd
    torch.set_num_threads(1)
    data = kd.load_dataset("digits", seed=0)
    kd.train(data, "cnn", "icc_teacher", model_kwargs={"width": 8}, epochs=4, batch_size=8, seed=1,
             out_dir=sys.argv[1], resume=True, progress=False)
    """
)


def _run(out_dir) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(out_dir)], stderr=subprocess.PIPE)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert _run(full).wait(timeout=300) == 0

    proc = _run(cut)
    deadline = time.time() + 240
    while not (cut / "last.pt").exists():  # the first epoch is on disk: now kill inside the second
        assert proc.poll() is None and time.time() < deadline, "the run ended before it could be killed"
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(cut / "last.pt")["next_epoch"]
    assert killed_at < 4, "the run finished before the kill: make its epochs longer"

    assert _run(cut).wait(timeout=300) == 0
    a, b = load_checkpoint(full / "last.pt"), load_checkpoint(cut / "last.pt")
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    strip = lambda h: [{k: v for k, v in row.items() if not k.endswith("seconds")} for row in h]  # noqa: E731
    assert strip(a["history"]) == strip(b["history"])
    assert a["best_epoch"] == b["best_epoch"]


def test_second_writer_is_refused_and_a_killed_holder_frees_the_lock(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunLockedError, match=f"in use by another kdviz process \\(pid {os.getpid()}\\)"):
            with RunLock(tmp_path):
                pass
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import time
        from kdviz.train.lock import RunLock
        with RunLock({str(tmp_path)!r}):
            print("locked", flush=True)
            time.sleep(60)
        """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(RunLockedError, match=str(holder.pid)):
        with RunLock(tmp_path):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with RunLock(tmp_path):  # no stuck lock after a crash
        pass


def test_checkpoint_from_another_format_version_says_so(tmp_path):
    path = tmp_path / "old.pt"
    torch.save({"format": "kdviz-checkpoint-0", "kdviz_version": "0.0.1"}, path)
    with pytest.raises(CheckpointError, match="written by kdviz 0.0.1.*kdviz-checkpoint-1"):
        load_checkpoint(path)


def test_non_finite_loss_keeps_the_last_good_checkpoint(tiny_data, tmp_path):
    from kdviz.train import loop

    real = loop.train_epoch

    def poisoned(run, epoch):
        if epoch == 2:
            with torch.no_grad():
                for p in run.model.parameters():
                    p.fill_(float("nan"))
        return real(run, epoch)

    loop.train_epoch = poisoned
    try:
        with pytest.raises(FloatingPointError, match=r"epoch 2, step 0 \(term\(s\): ce"):
            train(tiny_data, "mlp", "ce", epochs=4, out_dir=tmp_path, progress=False)
    finally:
        loop.train_epoch = real
    last = load_checkpoint(tmp_path / "last.pt")
    assert last["next_epoch"] == 2
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values())


def test_empty_training_split_is_a_clear_error(tiny_data):
    from kdviz.data.base import DatasetSplits, Split

    empty = DatasetSplits(
        tiny_data.info, Split(tiny_data.train.images[:0], tiny_data.train.labels[:0]), tiny_data.val, tiny_data.test
    )
    with pytest.raises(ValueError, match="train split of tiny is empty"):
        train(empty, "mlp", "ce", epochs=1, progress=False)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: __import__("kdviz").Objective({"kd": {"weight": 1.0, "tau": 0}}), "tau must be > 0, got 0"),
        (lambda: __import__("kdviz").Objective({"ce": -1.0}), "must be a finite number >= 0, got -1.0"),
        (lambda: __import__("kdviz").TrainConfig(batch_size=0), "batch_size must be >= 1, got 0"),
        (
            lambda: __import__("kdviz").TrainConfig(epochs=3, warmup_epochs=5),
            r"warmup_epochs must be in \[0, epochs=3\)",
        ),
        (lambda: __import__("kdviz").TrainConfig(schedule="linear"), "valid choices: constant, cosine, multistep"),
    ],
)
def test_impossible_settings_name_the_problem_and_the_valid_range(make, message):
    with pytest.raises((ValueError, KeyError), match=message):
        make()


def test_student_preset_matches_method_defaults():
    from kdviz import Objective

    o = Objective.preset("kd+icc_mimic")  # (1 - alpha) CE + alpha KD + beta mimic, alpha 0.9, beta 0.1, tau 4
    assert o.weights == pytest.approx({"ce": 0.1, "kd": 0.9, "icc_mimic": 0.1})
    assert o.spec["kd"]["tau"] == o.spec["icc_mimic"]["tau"] == 4.0


def test_unknown_model_arguments_list_the_valid_ones():
    from kdviz import build_model

    with pytest.raises(TypeError, match=r"model 'cnn' got unknown argument\(s\) \['widht'\]; valid: \['width'\]"):
        build_model("cnn", 10, (1, 8, 8), widht=8)


def test_checkpoint_restores_every_global_generator(tiny_data, tmp_path):
    import random

    import numpy as np

    from kdviz.train.run import rng_states, set_rng_states

    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    path = tmp_path / "rng.pt"
    torch.save(rng_states(), path)
    expected = (random.random(), np.random.rand(), torch.rand(1))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    set_rng_states(torch.load(path, weights_only=True))
    assert (random.random(), np.random.rand(), torch.rand(1)) == expected

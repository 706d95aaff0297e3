"""Bad and hostile inputs get one clear line naming the problem and the fix, never a crash inside
kdviz or a silent wrong result (issue 12). Each test feeds one input a new user could give."""

import errno
import os
import sys
import warnings

import pytest
import torch

import kdviz as kd
from kdviz.cli import main
from kdviz.data.base import DatasetInfo, Split
from kdviz.data.loader import fit_batch_size, iterate_batches
from kdviz.experiments import load_experiment
from kdviz.registry import Registry
from kdviz.train import CheckpointError, load_checkpoint
from kdviz.train.checkpoint import atomic_save

DIGITS_TEACHER = [
    "--model-kwargs",
    '{"width": 4}',
    "--epochs",
    "1",
    "--n-train",
    "100",
    "--no-progress",
    "--device",
    "cpu",
]


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory):
    """A real kdviz checkpoint (1 epoch on 100 digits), whose bytes the tests below damage."""
    out = tmp_path_factory.mktemp("teacher")
    assert main(["train-teacher", "--out", str(out), *DIGITS_TEACHER]) == 0
    return out / "best.pt"


def _error(capsys) -> str:
    err = capsys.readouterr().err
    return err


# --- checkpoints -----------------------------------------------------------------------------


def test_zero_byte_checkpoint_is_named_empty_everywhere(tmp_path, capsys):
    zero = tmp_path / "zero.pt"
    zero.write_bytes(b"")
    for load in (load_checkpoint, kd.load_model):
        with pytest.raises(
            CheckpointError, match=r"zero.pt is not a readable kdviz checkpoint: the file is empty \(0 bytes\)"
        ):
            load(zero)
    assert main(["correlations", str(zero)]) == 2
    assert "empty (0 bytes)" in _error(capsys)
    assert main(["distill", "--teacher", str(zero), "--out", str(tmp_path / "s"), *DIGITS_TEACHER[2:]]) == 2
    assert "empty (0 bytes)" in _error(capsys)


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_bad_last_pt_says_how_to_start_over(tmp_path, capsys, teacher_ckpt, damage):
    run = tmp_path / "run"
    run.mkdir()
    data = teacher_ckpt.read_bytes()
    (run / "last.pt").write_bytes(b"" if damage == "empty" else data[: len(data) // 2])
    for resume in ([], ["--resume"]):
        assert main(["train-teacher", "--out", str(run), *DIGITS_TEACHER, *resume]) == 2
        err = _error(capsys)
        assert "last.pt is not a readable kdviz checkpoint" in err
        assert "delete it to start the run over, or choose another --out" in err and "Re-run" not in err


def test_pickled_module_is_called_what_it_is(tmp_path, capsys):
    path = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(3, 2), path)
    with pytest.raises(CheckpointError) as info:
        kd.load_model(path)
    message = str(info.value)
    assert "is a pickled Python object (torch.nn.modules.linear.Linear)" in message
    assert "not a kdviz checkpoint" in message and "teacher=module" in message
    assert main(["correlations", str(path)]) == 2
    err = _error(capsys)
    assert "\x1b" not in err and "pickled Python object" in err


def _full_disk_save(obj, f):
    """What torch.save does on a full disk: the OSError, then torch's own error while closing."""
    f.write(b"part of a checkpoint")
    try:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    except OSError:
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598") from None


def test_full_disk_is_reported_first_and_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    atomic_save({"epoch": 1}, path)
    before = path.read_bytes()
    monkeypatch.setattr(torch, "save", _full_disk_save)
    with pytest.raises(OSError) as info:
        atomic_save({"epoch": 2}, path)
    message = str(info.value)
    assert info.value.errno == errno.ENOSPC
    assert message.startswith(f"[Errno {errno.ENOSPC}] No space left on device while writing {path} (")
    assert "MiB free in" in message
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary file left


# --- data ------------------------------------------------------------------------------------


def test_words_txt_that_is_not_utf8_names_the_file_and_line(tmp_path):
    from kdviz.data.sample_files import write_tiny_imagenet

    base = tmp_path / "tiny-imagenet-200"
    write_tiny_imagenet(base)
    lines = (base / "words.txt").read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b"\t", b"\tcaf\xe9 ", 1)  # one Latin-1 byte on line 2
    (base / "words.txt").write_bytes(b"".join(lines))
    with pytest.raises(ValueError, match=r"words.txt, line 2: byte 0xe9 at column \d+ is not UTF-8"):
        kd.load_dataset("tiny_imagenet", tmp_path)


@pytest.mark.parametrize("dataset", ["fashion_mnist", "cifar10"])
def test_kdviz_data_that_is_a_file_is_refused(tmp_path, monkeypatch, capsys, dataset):
    not_a_folder = tmp_path / "data.txt"
    not_a_folder.write_text("")
    monkeypatch.setenv("KDVIZ_DATA", str(not_a_folder))
    with pytest.raises(NotADirectoryError, match=f"KDVIZ_DATA {not_a_folder} is a file, not a folder"):
        kd.load_dataset(dataset)
    assert main(["train-teacher", "--dataset", dataset, "--out", str(tmp_path / "run"), *DIGITS_TEACHER]) == 2
    assert "is a file, not a folder" in _error(capsys)
    monkeypatch.delenv("KDVIZ_DATA")
    with pytest.raises(NotADirectoryError, match="the data root .* is a file"):
        kd.load_dataset(dataset, root=not_a_folder)


@pytest.mark.parametrize("std", [(0.0,), (-0.2,), (float("nan"),), (0.3, 0.3)])
def test_dataset_std_must_be_positive_one_per_channel(std):
    with pytest.raises(ValueError, match="std"):
        DatasetInfo("custom", ("a", "b"), (1, 4, 4), mean=(0.5,), std=std)


def test_batch_larger_than_the_split_is_clamped_with_a_warning(tiny_data):
    with pytest.warns(UserWarning, match="batch_size 500 is larger than the training split \\(64 images\\): using 64"):
        result = kd.train(tiny_data, "mlp", "ce", epochs=1, batch_size=500, progress=False)
    assert result.config.batch_size == 64
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fit_batch_size(64, 64) == 64


def test_fewer_images_or_a_smaller_batch_than_processes_is_refused_with_the_numbers():
    with pytest.raises(ValueError, match="batch_size 2 is smaller than the 3 processes"):
        fit_batch_size(2, 100, 3)
    with pytest.raises(ValueError, match="the split has 2 image\\(s\\), fewer than the 3 processes"):
        fit_batch_size(8, 2, 3)


@pytest.mark.parametrize("world", [2, 3, 4])
def test_no_rank_ever_gets_an_empty_shard(tiny_info, world):
    """torchrun --nproc_per_node=3 with --batch-size 3 once gave the last rank a batch of 0 images
    at each epoch's end, and a NaN loss; now a short last batch joins the one before."""
    for n in range(world, 40):
        split = Split(torch.zeros(n, 1, 4, 4, dtype=torch.uint8), torch.arange(n) % 4)
        for batch_size in range(world, 2 * world + 2):
            seen = 0
            for rank in range(world):
                sizes = [
                    len(y)
                    for _, y in iterate_batches(
                        split,
                        tiny_info,
                        batch_size,
                        torch.device("cpu"),
                        shuffle=True,
                        generator=torch.Generator().manual_seed(0),
                        shard=(rank, world),
                    )
                ]
                assert min(sizes) >= 1, (n, batch_size, rank, sizes)
                seen += sum(sizes)
            assert seen == n


# --- teacher cache folder ----------------------------------------------------------------------


def test_unusable_cache_dir_warns_once_and_trains_from_memory(tiny_data, tmp_path, monkeypatch):
    teacher = kd.train(tiny_data, "mlp", "ce", epochs=1, progress=False)
    a_file = tmp_path / "cache"
    a_file.write_text("")
    kwargs = dict(teacher=teacher, epochs=1, teacher_cache=True, augment=False, progress=False)
    with pytest.warns(UserWarning, match="cannot keep the teacher's logits in the cache folder") as record:
        with_cache = kd.train(tiny_data, "mlp", "kd", cache_dir=a_file, **kwargs)
    assert len([w for w in record if "cache folder" in str(w.message)]) == 1
    without = kd.train(tiny_data, "mlp", "kd", **{**kwargs, "teacher_cache": False})
    assert with_cache.history["train_loss"].tolist() == pytest.approx(without.history["train_loss"].tolist(), rel=1e-5)

    # A read-only folder (simulated: the tests may run as root, who can write anywhere).
    def read_only(obj, path):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(sys.modules["kdviz.train.teacher_cache"], "atomic_save", read_only)
    with pytest.warns(UserWarning, match=r"\(Permission denied\); training goes on from the logits in memory"):
        kd.train(tiny_data, "mlp", "kd", cache_dir=tmp_path / "ro", **kwargs)


# --- settings and names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, flag, message",
    [
        (["correlations", "x.pt", "--device", "gpu"], "--device", "'gpu' is not a device name"),
        (["correlations", "x.pt", "--tau", "inf"], "--tau", "expected a finite number > 0, got 'inf'"),
        (["correlations", "x.pt", "--tau", "nan"], "--tau", "expected a finite number > 0, got 'nan'"),
        (["train-teacher", "--out", "o", "--epochs", "0"], "--epochs", "expected a whole number >= 1, got '0'"),
        (["train-teacher", "--out", "o", "--lr", "-1"], "--lr", "expected a finite number > 0"),
        (
            ["train-teacher", "--out", "o", "--milestones", "5,-1"],
            "--milestones",
            "expected comma-separated whole numbers >= 0",
        ),
    ],
)
def test_bad_flag_values_name_the_flag(argv, flag, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: {message}" in err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--loss", "kd=abc"], "--loss: cannot read loss 'kd=abc': the weight of 'kd' must be a number, got 'abc'"),
        (["--loss", "ce=0,kd=0"], "--loss: every weight of the objective"),
        (["--loss", "kd+icc_mimc"], "(did you mean 'kd+icc_mimic'?)"),
        (["--loss", "ce=0.1,kd=0.9,icc_mimc=0.1"], "unknown loss term 'icc_mimc'; valid choices: "),
        (["--loss", "ce=0.1,kd=0.9,icc_mimc=0.1"], "(did you mean 'icc_mimic'?)"),
        (
            ["--loss", "kd", "--loss-params", '{"kd": {"tau": "nan"}}'],
            "--loss-params: loss term 'kd': tau must be a finite number, got 'nan'",
        ),
        (
            ["--loss", "kd", "--loss-params", '{"kd": {"tau": 0}}'],
            "--loss-params: loss term 'kd': temperature tau must be > 0, got 0",
        ),
    ],
)
def test_bad_losses_name_the_flag(tmp_path, capsys, teacher_ckpt, extra, message):
    assert main(["distill", "--teacher", str(teacher_ckpt), "--out", str(tmp_path / "s"), *DIGITS_TEACHER, *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_a_last_batch_other_than_keep_or_drop_is_refused_before_anything_is_written(tmp_path, capsys):
    argv = [
        "train-teacher",
        "--dataset",
        "digits",
        "--epochs",
        "1",
        "--last-batch",
        "pad",
        "--out",
        str(tmp_path / "t"),
    ]
    assert main(argv) == 2
    assert "last_batch must be one of 'keep', 'drop', got 'pad'" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()


def test_resume_of_a_missing_folder_says_it_starts_a_new_run(tmp_path, capsys):
    out = tmp_path / "never-made"
    assert main(["train-teacher", "--out", str(out), "--resume", *DIGITS_TEACHER]) == 0
    assert f"nothing to resume in {out} (no last.pt); starting a new run" in capsys.readouterr().err


def test_correlations_refuses_an_infinite_tau_in_the_api_too(tiny_data):
    with pytest.raises(ValueError, match="temperature tau must be finite, got inf"):
        kd.icc_of_logits(torch.zeros(4, 4), torch.arange(4), tiny_data.info, tau=float("inf"))


@pytest.mark.parametrize(
    "lookup, typo, suggestion",
    [
        (lambda name: kd.load_dataset(name), "fashon_mnist", "fashion_mnist"),
        (lambda name: kd.build_model(name, 10, (1, 8, 8)), "resnet56x", "resnet56"),
        (lambda name: kd.Objective({name: 1.0}), "icc_mimc", "icc_mimic"),
        (lambda name: kd.Objective.preset(name), "kd+icc_mimc", "kd+icc_mimic"),
        (lambda name: kd.TrainConfig(schedule=name), "cosin", "cosine"),
        (lambda name: load_experiment(name), "defualt", "default"),
        (lambda name: kd.load_dataset("digits").split(name), "tset", "test"),
    ],
)
def test_unknown_names_suggest_the_nearest_valid_one(lookup, typo, suggestion):
    with pytest.raises(ValueError) as info:
        lookup(typo)
    message = str(info.value)
    assert f"(did you mean {suggestion!r}?)" in message and "valid choices:" in message


def test_a_name_close_to_nothing_gets_no_suggestion():
    registry = Registry("thing")
    registry.register("alpha")(lambda: None)
    with pytest.raises(ValueError) as info:
        registry.get("zzzz")
    assert str(info.value) == "unknown thing 'zzzz'; valid choices: alpha"


@pytest.mark.parametrize("setting", [{"icc_tau": float("inf")}, {"weight_decay": float("inf")}])
def test_infinite_training_settings_are_refused(setting):
    with pytest.raises(ValueError, match=f"{next(iter(setting))} must be finite"):
        kd.TrainConfig(**setting)

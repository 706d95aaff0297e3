"""Processes end cleanly: SIGTERM stops a run as Ctrl-C does (the write under way abandoned, no
temporary file left, the resume command printed, exit 128 + the signal), a run's stale temporary
files go when it is next opened, and a sweep's workers end with their parent, even after kill -9."""

import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from kdviz.atomic import atomic_write
from kdviz.interrupts import Terminated, exit_status, sigterm_as_interrupt
from kdviz.train import load_checkpoint, train
from kdviz.train.lock import RunLock, RunLockedError

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
STALE = [".last.pt.k2j4h1x0.tmp", ".best.pt.8a7s6d5f.tmp", ".config.json.q1w2e3r4.tmp", ".metrics.csv.zz.tmp"]


def temporaries(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.tmp"))


def test_sigterm_during_a_write_abandons_it_and_keeps_the_previous_file(tmp_path):
    path = atomic_write(tmp_path / "last.pt", b"epoch 0")
    before = signal.getsignal(signal.SIGTERM)

    def killed_midway(f):
        f.write(b"half of epoch 1")
        os.kill(os.getpid(), signal.SIGTERM)  # Python runs the handler before the next line
        f.write(b" and the rest")

    with pytest.raises(Terminated) as caught, sigterm_as_interrupt():
        atomic_write(path, killed_midway)
    assert isinstance(caught.value, KeyboardInterrupt)  # every handler of Ctrl-C handles it too
    assert exit_status(caught.value) == 128 + 15 == 143 and exit_status(KeyboardInterrupt()) == 128 + 2
    assert path.read_bytes() == b"epoch 0" and [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    assert signal.getsignal(signal.SIGTERM) is before


def test_stale_temporary_files_go_when_the_run_is_next_opened_and_only_then(tiny_data, tmp_path):
    with RunLock(tmp_path):  # another process trains here: the temporary files it writes are its own
        for name in [*STALE, "notes.tmp.txt"]:
            (tmp_path / name).write_bytes(b"being written")
        with pytest.raises(RunLockedError):
            with RunLock(tmp_path):
                pass
        assert all((tmp_path / name).exists() for name in STALE)
    # ... which was killed mid-write: the next run in the folder removes what it left.
    train(tiny_data, "mlp", "ce", epochs=1, out_dir=tmp_path, progress=False)
    assert temporaries(tmp_path) == [] and (tmp_path / "notes.tmp.txt").exists()
    assert (tmp_path / "last.pt").exists()


# Runs the CLI, sending itself signal argv[1] during the second write of last.pt (epoch 1's), so
# that the signal lands in the middle of a write every time.
KILL_MID_WRITE = textwrap.dedent(
    """
    import os, signal, sys
    from kdviz.cli import main
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even if started in the background
    real, writes = os.fsync, []
    def fsync(fd):
        if ".last.pt." in os.readlink(f"/proc/self/fd/{fd}"):
            writes.append(fd)
            if len(writes) == 2:
                os.kill(os.getpid(), int(sys.argv[1]))
        real(fd)
    os.fsync = fsync
    sys.exit(main(sys.argv[2:]))
    """
)


def train_command(out: Path) -> list[str]:
    return [
        "train-teacher",
        "--dataset",
        "digits",
        "--model",
        "cnn",
        "--model-kwargs",
        '{"width": 4}',
        "--epochs",
        "3",
        "--batch-size",
        "32",
        "--seed",
        "1",
        "--out",
        str(out),
        "--no-progress",
        "--device",
        "cpu",
    ]


def cli(args: list[str], script: list[str] | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, *(script or ["-m", "kdviz"]), *args]
    return subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the file being written in /proc/self/fd")
@pytest.mark.parametrize("signum, status, said", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "Ctrl-C")])
def test_a_signal_mid_write_stops_the_cli_cleanly_and_the_printed_resume_is_bit_identical(
    tmp_path, signum, status, said
):
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert cli(train_command(full)).returncode == 0

    stopped = cli([str(int(signum)), *train_command(cut)], script=["-c", KILL_MID_WRITE])
    assert stopped.returncode == status, stopped.stderr
    assert temporaries(cut) == []
    assert load_checkpoint(cut / "last.pt")["next_epoch"] == 1  # epoch 1's write was abandoned, epoch 0's kept
    message = stopped.stderr.strip().splitlines()[-1]
    assert message.startswith(f"kdviz train-teacher: stopped by {said}") and "Traceback" not in stopped.stderr
    assert f"the run in {cut} keeps its finished epochs (last.pt); resume it with: kdviz train-teacher" in message

    resume = shlex.split(message.split("resume it with: ")[1])
    assert resume[0] == "kdviz" and resume[-1] == "--resume"
    assert cli(resume[1:]).returncode == 0
    a, b = load_checkpoint(full / "last.pt"), load_checkpoint(cut / "last.pt")
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    strip = lambda h: [{k: v for k, v in row.items() if not k.endswith("seconds")} for row in h]  # noqa: E731
    assert strip(a["history"]) == strip(b["history"]) and a["best_epoch"] == b["best_epoch"]
    assert temporaries(cut) == []


# Two teacher runs of slow epochs (batch 8), so that both workers are busy when the sweep is stopped.
SWEEP = """
name = "busy"
dataset = "digits"
seeds = [0, 1]

[teacher]
model = "cnn"
model_kwargs = {width = 8}
epochs = 20
batch_size = 8

[student]
model = "mlp"

[[arms]]
name = "teacher_ce"
role = "teacher"
objective = "ce"
"""


def children(pid: int) -> dict[int, str]:
    """The processes whose parent is `pid`: their command lines."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found[int(stat.parent.name)] = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue  # it ended while being read
    return found


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie has ended: only its parent's wait is missing)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def start_busy_sweep(tmp_path) -> tuple[subprocess.Popen, Path, dict[int, str]]:
    """A `kdviz sweep --jobs 2`, once both workers train; with its worker processes and resource tracker."""
    path, out = tmp_path / "busy.toml", tmp_path / "out"
    path.write_text(SWEEP)
    command = [sys.executable, "-m", "kdviz", "sweep", str(path), "--out", str(out), "--jobs", "2"]
    proc = subprocess.Popen([*command, "--no-progress", "--device", "cpu"], env=ENV, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while len(list(out.glob("teacher_ce/*/seed_*/metrics.csv"))) < 2:  # both runs have finished an epoch
        assert proc.poll() is None and time.monotonic() < deadline, "the sweep ended before it could be stopped"
        time.sleep(0.05)
    kids = children(proc.pid)
    assert sum("resource_tracker" in c for c in kids.values()) == 1, kids
    assert sum("multiprocessing.spawn" in c and "resource_tracker" not in c for c in kids.values()) == 2, kids
    return proc, out, kids


def wait_until_gone(pids, seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


@pytest.mark.distributed
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads processes from /proc")
def test_killing_the_sweep_parent_alone_ends_every_worker(tmp_path):
    proc, out, kids = start_busy_sweep(tmp_path)
    proc.send_signal(signal.SIGKILL)  # the parent alone, not its process group
    proc.wait()
    # A few seconds on a quiet machine; the margin is for a loaded 2-core one.
    assert wait_until_gone(kids, 30) == [], {p: kids[p] for p in kids if alive(p)}
    assert temporaries(out) == []  # the workers unwound their runs before they ended


@pytest.mark.distributed
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads processes from /proc")
def test_sigterm_stops_a_sweep_and_its_workers_and_says_how_to_go_on(tmp_path):
    proc, out, kids = start_busy_sweep(tmp_path)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert wait_until_gone(kids, 30) == []
    assert temporaries(out) == []
    assert "Traceback" not in stderr and "leaked" not in stderr, stderr  # nor a worker's, nor the tracker's
    message = stderr.strip().splitlines()[-1]
    assert (
        message.startswith("kdviz sweep: stopped by SIGTERM; the finished runs in")
        and "go on with: kdviz sweep" in message
    )
    assert all(load_checkpoint(p)["next_epoch"] >= 1 for p in out.glob("teacher_ce/*/seed_*/last.pt"))

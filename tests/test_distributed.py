"""torchrun with 2 CPU processes (gloo) gives the run of 1 process with the same global batch."""

import subprocess
import sys
import textwrap
from copy import deepcopy

import pytest
import torch

pytestmark = pytest.mark.distributed  # torchrun with several processes: CI runs these

SCRIPT = textwrap.dedent(
    """
    import sys, torch
    import torch.distributed as dist
    import kdviz as kd
    torch.set_num_threads(1)
    data = kd.load_dataset("digits", seed=0)
    r = kd.train(data, "mlp", "icc_teacher", model_kwargs={"hidden": 32}, epochs=3, batch_size=64, seed=0,
                 out_dir=sys.argv[1], progress=False)
    rank = dist.get_rank() if dist.is_initialized() else 0
    icc = kd.extract_icc(r.model, data, "val")
    torch.save({"history": r.history.to_dict("list"), "sums": icc.sums, "counts": icc.counts}, f"{sys.argv[1]}/result_rank{rank}.pt")
    """
)


def _torchrun(nproc, out_dir):
    script = out_dir.parent / f"ddp_script_{nproc}.py"
    script.write_text(SCRIPT)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        str(script),
        str(out_dir),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_two_processes_match_one(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    _torchrun(1, one)
    _torchrun(2, two)
    a = torch.load(one / "result_rank0.pt", weights_only=True)
    b0 = torch.load(two / "result_rank0.pt", weights_only=True)
    b1 = torch.load(two / "result_rank1.pt", weights_only=True)
    # Every rank ends with the same model, so the same ICC matrix, bit for bit.
    assert torch.equal(b0["sums"], b1["sums"])
    # One process and two differ only in the order of floating-point sums (per-rank gradients
    # averaged by all-reduce versus one batch gradient), which moves results by ~1e-6 relative
    # after three epochs: 1e-4 is far below any effect of a wrong reduction (an ICC target
    # built from one rank's half of the samples changes these numbers by percents).
    assert torch.equal(a["counts"], b0["counts"])
    assert torch.allclose(a["sums"], b0["sums"], rtol=1e-4, atol=1e-4)
    for key in ("train_loss", "train_icc_teacher", "val_loss"):
        assert torch.allclose(torch.tensor(a["history"][key]), torch.tensor(b0["history"][key]), rtol=1e-4), key
    # Only rank 0 writes the run directory.
    assert (two / "last.pt").exists() and (two / "metrics.csv").exists()


def test_shards_split_every_global_batch_without_overlap(tiny_data):
    from kdviz.data.loader import iterate_batches

    def batches(shard):
        gen = torch.Generator().manual_seed(5)
        return [
            y
            for _, y in iterate_batches(
                tiny_data.train, tiny_data.info, 16, torch.device("cpu"), shuffle=True, generator=gen, shard=shard
            )
        ]

    whole, r0, r1 = batches((0, 1)), batches((0, 2)), batches((1, 2))
    assert len(whole) == len(r0) == len(r1) == 4
    for w, a, b in zip(whole, r0, r1):
        assert len(a) == len(b) == 8
        # labels cycle 0..3 in tiny_data, so compare the multiset of labels of each global batch
        assert sorted(torch.cat([a, b]).tolist()) == sorted(w.tolist())
        assert not torch.equal(a, b)


BN_SCRIPT = textwrap.dedent(
    """
    import sys, torch
    import torch.distributed as dist
    import kdviz as kd
    from kdviz.data import DatasetInfo, DatasetSplits, Split
    torch.set_num_threads(1)
    # Random images, not digits: digits' many equal pixels make max-pool and ReLU ties, which
    # float rounding breaks differently in one process and two, and which then diverge.
    g = torch.Generator().manual_seed(0)
    def split(n):
        images = torch.randint(0, 256, (n, 1, 8, 8), generator=g, dtype=torch.uint8)
        return Split(images, (images[:, 0, :4].float().mean((1, 2)) > 127.5).long() + 2 * (images[:, 0, :, :4].float().mean((1, 2)) > 127.5).long())
    info = DatasetInfo("random8", ("a", "b", "c", "d"), (1, 8, 8), (0.5,), (0.29,))
    data = DatasetSplits(info, split(160), split(64), split(64))
    r = kd.train(data, "cnn", "ce", model_kwargs={"width": 8}, epochs=2, batch_size=8, seed=0,
                 sync_bn=sys.argv[2] == "sync", progress=False)
    if not dist.is_initialized() or dist.get_rank() == 0:
        torch.save({"history": r.history.to_dict("list"), "state": r.model.state_dict()}, f"{sys.argv[1]}/bn.pt")
    """
)


def _torchrun_bn(nproc, out_dir, sync):
    out_dir.mkdir()
    script = out_dir / "bn_script.py"
    script.write_text(BN_SCRIPT)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        str(script),
        str(out_dir),
        sync,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return torch.load(out_dir / "bn.pt", weights_only=True)


def test_sync_bn_makes_two_processes_match_one_on_a_batchnorm_cnn(tmp_path):
    """With 4 images per process, BatchNorm statistics of each process's slice train another
    model than one process with the batch of 8; SyncBatchNorm's global statistics do not."""
    one = _torchrun_bn(1, tmp_path / "one", "plain")
    synced = _torchrun_bn(2, tmp_path / "sync", "sync")
    local = _torchrun_bn(2, tmp_path / "local", "plain")

    def gap(run, key):
        a, b = torch.tensor(one["history"][key]), torch.tensor(run["history"][key])
        return float(((a - b).abs() / a.abs()).max())

    for key in ("train_loss", "val_loss"):
        assert gap(synced, key) < 1e-4, key
        assert gap(local, key) > 100 * max(gap(synced, key), 1e-6), key  # the test can tell the two apart
    # The trained weights (and BatchNorm running statistics) agree too, and load into a plain model.
    for name, value in one["state"].items():
        assert torch.allclose(value.double(), synced["state"][name].double(), rtol=1e-3, atol=1e-4), name


def test_sync_batchnorm_is_plain_batchnorm_outside_torchrun():
    from kdviz.train.distributed import SyncBatchNorm, convert_sync_batchnorm

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
    copy = convert_sync_batchnorm(deepcopy(net))
    assert isinstance(copy[1], SyncBatchNorm)
    x = torch.randn(6, 1, 5, 5)
    assert torch.equal(net(x), copy(x))
    assert torch.equal(net[1].running_var, copy[1].running_var)
    net.eval(), copy.eval()
    assert torch.equal(net(x), copy(x))
    # The converted layer holds the very parameters an optimizer made before the conversion updates.
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))
    weight = model[1].weight
    convert_sync_batchnorm(model)
    assert model[1].weight is weight


LOGIT_STD_SCRIPT = textwrap.dedent(
    """
    import sys, warnings, torch
    import torch.distributed as dist
    import kdviz as kd
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # the bare teacher module's warning
    data = kd.load_dataset("digits", seed=0)
    torch.manual_seed(0)
    teacher = kd.build_model("mlp", 10, data.info.image_shape, hidden=16)
    r = kd.train(data, "mlp", sys.argv[2], teacher=teacher, model_kwargs={"hidden": 32}, epochs=2, batch_size=64,
                 seed=0, teacher_cache=sys.argv[3] == "cache", out_dir=sys.argv[1], progress=False)
    rank = dist.get_rank() if dist.is_initialized() else 0
    torch.save({"history": r.history.to_dict("list")}, f"{sys.argv[1]}/result_rank{rank}.pt")
    """
)


@pytest.mark.parametrize("objective, cache", [("kd+logit_std", "cache"), ("dkd+logit_std", "online")])
def test_logit_standardization_under_torchrun_matches_one_process(tmp_path, objective, cache):
    """Standardization is per sample, so the global batch split over 2 ranks gives the 1-process run."""
    script = tmp_path / "ls_script.py"
    script.write_text(LOGIT_STD_SCRIPT)
    results = {}
    for nproc in (1, 2):
        out = tmp_path / f"n{nproc}"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
        done = subprocess.run(
            [*cmd, str(script), str(out), objective, cache], capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr[-3000:]
        results[nproc] = torch.load(out / "result_rank0.pt", weights_only=True)["history"]
    term = objective.split("+")[0]
    for key in (f"train_{term}", "train_loss", "val_loss"):
        one, two = torch.tensor(results[1][key]), torch.tensor(results[2][key])
        assert torch.isfinite(one).all() and torch.allclose(one, two, rtol=1e-4), (key, one, two)

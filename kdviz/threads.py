"""CPU threads: kdviz's defaults for a CPU that other processes share.

Why (benchmarks/bench_shared_cpu.py, 2-core VM): PyTorch runs a CPU op on a team of OpenMP
threads, one per core, and by default an idle thread of the team spins, waiting for the next op.
Beside a second PyTorch process (another notebook kernel, a second experiment), each process's
threads spin on the core the other one needs: `kdviz quickstart` took 386 s instead of 18 s. Two
changes remove that, each measured:

- OpenMP's wait policy PASSIVE: a waiting thread sleeps instead of spinning. It must be in the
  environment before torch is loaded (OpenMP reads it once), so `import kdviz` sets it, unless
  it is already set, before kdviz imports torch. The CLI, the notebooks (their first import is
  kdviz) and the sweep's workers (see worker_environment) all get it that way.
- One intra-op thread for small models: a step of a small model on a small batch is too short to
  gain from a second thread (quiet, the quickstart took 13.9 s at 2 threads and 15.3 s at 1), and
  a single thread has no team to wait on. train() runs a model below SMALL_STEP_FLOPS per step
  on one thread, larger ones on torch's default, and restores the setting afterwards.

A user's choice always wins: OMP_WAIT_POLICY is never changed once set, and the thread count is
left alone when OMP_NUM_THREADS or MKL_NUM_THREADS is set or when torch.set_num_threads changed
it from the value torch had when it loaded (recorded then, by an import hook that `import kdviz`
installs: kdviz itself loads torch only with its first `kd.<name>`, kdviz/lazy.py). Where kdviz cannot act (torch imported
before kdviz), set OMP_WAIT_POLICY=PASSIVE yourself, or torch.set_num_threads(1).

This module imports torch only inside functions: `import kdviz` calls set_wait_policy first.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import sys

# FLOPs of one training step (3x the student's forward pass over the batch, plus an online
# teacher's forward pass) below which a run uses one thread. The quickstart's steps (at most 0.25
# GFLOP) gained only 10 % from a second thread on a quiet machine and lost 27 % beside a busy
# process even with passive waits; the cpu benchmark's student step (1.4 GFLOP, ops of ~10 ms)
# and the zoo at 32 px are large enough for a second, passively waiting thread to pay.
SMALL_STEP_FLOPS = 1e9
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
_torch_threads_at_import: int | None = None


def set_wait_policy(environ=os.environ) -> bool:
    """Put OMP_WAIT_POLICY=PASSIVE in `environ` unless it is set; True when this can still act,
    i.e. torch has not been loaded yet (OpenMP reads the variable when torch loads)."""
    environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return "torch" not in sys.modules


def remember_torch_threads() -> None:
    """Record torch's thread count as torch chose it, to tell a later torch.set_num_threads apart:
    now if torch is loaded, else the moment it finishes loading, whoever imports it (`import
    kdviz` loads no torch: kdviz/lazy.py). Later calls keep the first count."""
    if "torch" not in sys.modules:
        if not any(isinstance(f, _WhenTorchLoads) for f in sys.meta_path):
            sys.meta_path.insert(0, _WhenTorchLoads())
        return
    global _torch_threads_at_import
    import torch

    if _torch_threads_at_import is None:
        _torch_threads_at_import = torch.get_num_threads()


class _WhenTorchLoads(importlib.abc.MetaPathFinder):
    """An import hook that finds torch as usual, and has its loader record torch's thread count
    right after torch's own code ran, before any user code can change it; it then leaves."""

    def find_spec(self, name, path=None, target=None):
        if name != "torch":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _ThenRemember(spec.loader)
        return spec


class _ThenRemember(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        remember_torch_threads()

    def __getattr__(self, name):  # get_source, get_resource_reader, ...: the real loader's
        return getattr(self.loader, name)


def user_chose_threads() -> bool:
    """True when the user set the thread count: by environment or by torch.set_num_threads."""
    import torch

    if any(var in os.environ for var in THREAD_VARS):
        return True
    return _torch_threads_at_import is not None and torch.get_num_threads() != _torch_threads_at_import


def forward_flops(model, image_shape) -> float:
    """FLOPs of `model`'s forward pass on one image, counted by torch's FlopCounterMode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    param = next(model.parameters(), None)
    x = torch.zeros(1, *image_shape, device=param.device if param is not None else "cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return float(counter.get_total_flops())


def threads_for(step_flops: float) -> int | None:
    """The intra-op threads kdviz uses for a step of this cost: 1 when small, else None (torch's default)."""
    return 1 if step_flops < SMALL_STEP_FLOPS else None


@contextlib.contextmanager
def training_threads(student, teacher, image_shape, batch_size: int, device):
    """Within this block, torch runs on the threads kdviz chooses for a step of `student` (forward
    and backward: 3x its forward pass) plus `teacher`'s forward pass (None: no teacher or a cached
    one), on batch_size images; CPU only, never when the user chose; restored on exit."""
    import torch

    chosen = None
    if torch.device(device).type == "cpu" and not user_chose_threads():
        flops = 3 * forward_flops(student, image_shape) + (
            forward_flops(teacher, image_shape) if teacher is not None else 0
        )
        chosen = threads_for(flops * batch_size)
    before = torch.get_num_threads()
    if chosen is not None and chosen != before:
        torch.set_num_threads(chosen)
    try:
        yield
    finally:
        if chosen is not None and chosen != before:
            torch.set_num_threads(before)


def worker_environment(jobs: int, environ=os.environ) -> dict[str, str]:
    """The OpenMP variables a worker of `jobs` parallel processes on this machine starts with:
    the cores split between the workers (never oversubscribed: max(1, cores // jobs) threads
    each) and the passive wait policy; a variable the user set is kept as the user set it.
    For a process pool: os.environ.update(...) before starting it; for Ray: runtime_env={"env_vars": ...}."""
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = str(max(1, cores // jobs))
    wanted = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "OMP_WAIT_POLICY": "PASSIVE"}
    user_threads = next((environ[v] for v in THREAD_VARS if v in environ), None)
    if user_threads is not None:
        wanted["OMP_NUM_THREADS"] = wanted["MKL_NUM_THREADS"] = user_threads
    if "OMP_WAIT_POLICY" in environ:
        wanted["OMP_WAIT_POLICY"] = environ["OMP_WAIT_POLICY"]
    return wanted

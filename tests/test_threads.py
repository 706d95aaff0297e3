"""kdviz's CPU thread policy (kdviz/threads.py): applied when the user set nothing, never over a
user's setting. OpenMP reads its variables once, when torch loads, so each case runs in a fresh
interpreter with a controlled environment."""

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from torch import nn

from kdviz import threads

ROOT = Path(__file__).resolve().parent.parent
OMP_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")

# Trains a model that records torch's thread count in every forward pass of training, and
# prints what a run saw, what was left after it, and the OpenMP wait policy.
SPY = """
import json, os, sys
import kdviz as kd
import torch
from torch import nn
from kdviz.data.base import DatasetInfo, DatasetSplits, Split
default = torch.get_num_threads()
{after}
seen = []
class Spy(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(16, width), nn.ReLU(), nn.Linear(width, 4))
    def forward(self, x):
        if self.training:
            seen.append(torch.get_num_threads())
        return self.body(x)
kd.MODELS.register("spy")(lambda num_classes, image_shape, width=8: Spy(width))
info = DatasetInfo(name="t", class_names=tuple("abcd"), image_shape=(1, 4, 4), mean=(0.5,), std=(0.25,))
split = Split(torch.randint(0, 255, (32, 1, 4, 4), dtype=torch.uint8), torch.arange(32) % 4)
kd.train(DatasetSplits(info, split, split, split), "spy", "ce", epochs=1,
         batch_size=16, progress=False, device="cpu")
print(json.dumps({{"during": sorted(set(seen)), "after": torch.get_num_threads(), "default": default,
                  "policy": os.environ.get("OMP_WAIT_POLICY")}}))
"""


def run_fresh(code: str, **env_vars) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in OMP_VARS}
    env.update(env_vars, PYTHONPATH=f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def spy(after: str = "", **env_vars) -> dict:
    return run_fresh(SPY.format(after=after), **env_vars)


@pytest.mark.slow
def test_unset_environment_gets_passive_waits_and_one_thread_for_a_small_model():
    out = spy()
    assert out["policy"] == "PASSIVE"
    assert out["during"] == [1]
    assert out["after"] == out["default"]  # restored once the run is over


@pytest.mark.slow
def test_a_users_wait_policy_and_thread_variable_win():
    out = spy(OMP_WAIT_POLICY="ACTIVE", OMP_NUM_THREADS="2")
    assert out["policy"] == "ACTIVE"
    assert out["during"] == [2] and out["after"] == 2
    assert spy(MKL_NUM_THREADS="2")["during"] == [2]


@pytest.mark.slow
def test_torch_set_num_threads_after_import_wins():
    out = spy(after="torch.set_num_threads(3)")
    assert out["during"] == [3] and out["after"] == 3


def test_passive_policy_is_set_before_torch_loads_by_the_cli_module():
    code = "import sys, os, json; import kdviz.cli; print(json.dumps({'policy': os.environ.get('OMP_WAIT_POLICY')}))"
    assert run_fresh(code)["policy"] == "PASSIVE"


@pytest.mark.slow
def test_a_large_step_keeps_torchs_default_threads():
    out = spy(after="kd.threads.SMALL_STEP_FLOPS = 1.0  # every step is large")
    assert out["during"] == [out["default"]]


def test_forward_flops_counts_a_linear_layer():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    assert threads.forward_flops(model, (1, 8, 8)) == 2 * 64 * 10  # one multiply-add per weight
    assert threads.threads_for(threads.SMALL_STEP_FLOPS - 1) == 1
    assert threads.threads_for(threads.SMALL_STEP_FLOPS) is None


def test_worker_environment_splits_the_cores_and_keeps_the_users_choice():
    cores = len(os.sched_getaffinity(0))
    env = threads.worker_environment(2, environ={})
    assert env == {
        "OMP_NUM_THREADS": str(max(1, cores // 2)),
        "MKL_NUM_THREADS": str(max(1, cores // 2)),
        "OMP_WAIT_POLICY": "PASSIVE",
    }
    assert threads.worker_environment(10 * cores, environ={})["OMP_NUM_THREADS"] == "1"  # never 0, never oversubscribed
    user = threads.worker_environment(2, environ={"OMP_NUM_THREADS": "3", "OMP_WAIT_POLICY": "ACTIVE"})
    assert user["OMP_NUM_THREADS"] == "3" and user["OMP_WAIT_POLICY"] == "ACTIVE"
    with pytest.raises(ValueError, match="jobs must be >= 1"):
        threads.worker_environment(0)


@pytest.mark.slow
def test_notebook_kernel_gets_passive_waits_through_its_first_import():
    """A kernel as `jupyter lab notebooks/` starts one: nothing loads torch before the notebook's
    first import, so kdviz's setting reaches OpenMP. Every shipped notebook imports kdviz before torch."""
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                "import os, sys\ntorch_before = 'torch' in sys.modules\nimport kdviz\n"
                "print(torch_before, os.environ.get('OMP_WAIT_POLICY'))"
            )
        ]
    )
    saved = {k: os.environ.pop(k) for k in OMP_VARS if k in os.environ}
    try:
        NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    finally:
        os.environ.update(saved)
    assert nb.cells[0].outputs[0]["text"].split() == ["False", "PASSIVE"]
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        imports = [line.split()[1].split(".")[0] for line in code.splitlines() if line.startswith(("import ", "from "))]
        assert "kdviz" in imports, path
        if "torch" in imports:
            assert imports.index("kdviz") < imports.index("torch"), f"{path.name} imports torch before kdviz"

"""kdviz on a CPU that another PyTorch process is using (issue #15, part 0).

    python benchmarks/bench_shared_cpu.py                  # quickstart + a KD epoch, quiet and beside a busy process
    python benchmarks/bench_shared_cpu.py --suite threads  # 1 vs 2 threads, spinning vs passive OpenMP, per model
    python benchmarks/bench_shared_cpu.py --quick          # the code path in seconds

Every measured workload runs in a fresh interpreter, so that the OpenMP settings (read once, when
torch loads) are the arm's own. "busy" means a second Python process is running a plain PyTorch
training loop of a small CNN at 2 threads with OpenMP's default (spinning) wait policy, as a
user's other notebook or experiment would. Arms run interleaved in rounds (every arm once per
round, in the same order), and an arm's time is the median over rounds. The machine's load
average and the top of `top` are recorded before and after, since other work may share the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 900  # a workload slower than this is recorded as timed out (its time is > TIMEOUT_S)

# name -> (what it trains, full size, quick size); sizes are keyword arguments of run_workload.
WORKLOADS = {
    "quickstart": (
        "kdviz quickstart's runs: 2 cnn(16) teachers + 4 mlp(32) students x 3 seeds on digits 8x8",
        {},
        {"smoke": True},
    ),
    "kd_epoch": (
        "one KD epoch, cnn(32) -> cnn(8), 8,000 Fashion-MNIST 28x28 images, batch 128, kdviz defaults",
        {"n_train": 8000},
        {"n_train": 512},
    ),
    "mlp_digits": (
        "mlp(32) on 100 digits images, 20 epochs, batch 32 (a quickstart student)",
        {"epochs": 20},
        {"epochs": 2},
    ),
    "cnn_digits": (
        "cnn(16) on 1,617 digits images, 2 epochs, batch 64 (a quickstart teacher)",
        {"epochs": 2},
        {"epochs": 1},
    ),
    "cnn_fmnist": (
        "cnn(32) on 1,024 Fashion-MNIST 28x28 images, 1 epoch, batch 128",
        {"n_train": 1024},
        {"n_train": 512},
    ),
    "resnet8x4_32px": (
        "resnet8x4 on 256 random 3x32x32 images, 100 classes, 1 epoch, batch 64",
        {"n_train": 256},
        {"n_train": 128},
    ),
}
SUITES = {
    "shared": (["quickstart", "kd_epoch"], ["kdviz"]),
    "threads": (["mlp_digits", "cnn_fmnist", "resnet8x4_32px"], ["1", "2_passive"]),
}
# An arm's environment: "kdviz" sets nothing (kdviz's own choice applies); "N" pins N threads with
# OpenMP's default wait policy; "N_passive" adds OMP_WAIT_POLICY=PASSIVE.
OMP_VARS = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS", "KMP_BLOCKTIME")


def arm_env(arm: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in OMP_VARS}
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"
    if arm != "kdviz":
        threads, _, passive = arm.partition("_")
        env["OMP_NUM_THREADS"] = threads
        if passive:
            env["OMP_WAIT_POLICY"] = "PASSIVE"
    return env


# ------------------------------------------------------------------------------------ workloads


def run_workload(name: str, smoke: bool = False, epochs: int = 1, n_train: int = 1000) -> dict:
    """Train `name` in this interpreter; the seconds exclude imports and data loading."""
    import torch

    import kdviz  # first, as the CLI and the notebooks import it: its thread policy applies here
    from kdviz.data import DatasetSplits, Split
    from kdviz.data.base import DatasetInfo

    fit = dict(progress=False, seed=0)
    if name == "quickstart":
        import tempfile

        from kdviz.experiments import load_experiment, run_sweep

        experiment = load_experiment("quickstart", smoke=smoke)
        with tempfile.TemporaryDirectory() as out:  # a fresh folder: every run trains
            start = time.perf_counter()
            run_sweep(experiment, out, progress=False)
            return {"seconds": time.perf_counter() - start, "threads": torch.get_num_threads()}
    if name == "resnet8x4_32px":
        g = torch.Generator().manual_seed(0)
        info = DatasetInfo(
            name="random32",
            class_names=tuple(f"c{k}" for k in range(100)),
            image_shape=(3, 32, 32),
            mean=(0.5,) * 3,
            std=(0.25,) * 3,
        )
        split = Split(
            torch.randint(0, 256, (n_train, 3, 32, 32), generator=g, dtype=torch.uint8), torch.arange(n_train) % 100
        )
        data = DatasetSplits(info, split, split.subset(torch.arange(64)), split.subset(torch.arange(64)))
        model, kwargs, settings = "resnet8x4", {}, dict(epochs=1, batch_size=64)
    elif name == "mlp_digits":
        data = kdviz.load_dataset("digits", n_train=100)
        model, kwargs, settings = "mlp", {"hidden": 32}, dict(epochs=epochs, batch_size=32)
    elif name == "cnn_digits":
        data = kdviz.load_dataset("digits")
        model, kwargs, settings = "cnn", {"width": 16}, dict(epochs=epochs, batch_size=64)
    else:  # cnn_fmnist, kd_epoch
        data = kdviz.load_dataset("fashion_mnist", n_train=n_train)
        small = data.val.subset(torch.arange(500))
        data = DatasetSplits(data.info, data.train, small, small)
        model, kwargs, settings = "cnn", {"width": 32}, dict(epochs=1, batch_size=128)
    if name == "kd_epoch":
        teacher = kdviz.build_model("cnn", data.num_classes, data.info.image_shape, width=32)
        result = kdviz.train(
            data, "cnn", "kd", teacher=teacher, model_kwargs={"width": 8}, epochs=2, batch_size=128, **fit
        )
        seconds = float(result.history["train_seconds"].iloc[-1])  # the second epoch: the first also warms up
        return {"seconds": seconds, "threads": torch.get_num_threads()}
    start = time.perf_counter()
    kdviz.train(data, model, "ce", model_kwargs=kwargs, **settings, **fit)
    return {"seconds": time.perf_counter() - start, "threads": torch.get_num_threads()}


def busy_loop() -> None:
    """A plain PyTorch training loop of a small CNN at 2 threads, forever (the "other process")."""
    import torch
    from torch import nn

    torch.set_num_threads(2)
    net = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 10),
    )
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    while True:
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


# ---------------------------------------------------------------------------------------- driver


def machine_load() -> dict:
    top = subprocess.run(["top", "-bn1"], capture_output=True, text=True).stdout.splitlines()[:15]
    return {"loadavg": Path("/proc/loadavg").read_text().strip(), "top": top}


def measure(workload: str, arm: str, quick: bool) -> dict:
    size = WORKLOADS[workload][2 if quick else 1]
    code = f"import json, bench_shared_cpu as b; print(json.dumps(b.run_workload({workload!r}, **{size!r})))"
    try:
        done = subprocess.run(
            [sys.executable, "-c", code],
            env=arm_env(arm),
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return {"seconds": None, "timed_out": True}
    if done.returncode != 0:
        raise RuntimeError(f"{workload} ({arm}) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_suite(suite: str, rounds: int, quick: bool) -> dict:
    workloads, arms = SUITES[suite]
    cases = [(w, a, busy) for busy in (False, True) for w in workloads for a in arms]
    times: dict[str, list] = {f"{w}|{a}|{'busy' if b else 'quiet'}": [] for w, a, b in cases}
    loads = [{"when": "start", **machine_load()}]
    for r in range(rounds):
        for busy in (False, True):  # quiet and busy alternate within every round
            other = None
            if busy:
                env = {k: v for k, v in os.environ.items() if k not in OMP_VARS}
                other = subprocess.Popen(
                    [sys.executable, "-c", "import bench_shared_cpu as b; b.busy_loop()"],
                    cwd=Path(__file__).parent,
                    env=env,
                )
                time.sleep(3)  # let it import torch and start training
            try:
                for w, a, b in cases:
                    if b == busy:
                        out = measure(w, a, quick)
                        times[f"{w}|{a}|{'busy' if b else 'quiet'}"].append(out)
                        print(
                            f"round {r} {w:16s} {a:10s} {'busy' if busy else 'quiet':5s} "
                            f"{out['seconds'] if out['seconds'] is not None else 'timeout':>8} s "
                            f"threads={out.get('threads')}",
                            flush=True,
                        )
            finally:
                if other is not None:
                    other.kill()
                    other.wait()
        loads.append({"when": f"after round {r}", **machine_load()})
    return {"times": times, "loads": loads}


def median_seconds(runs: list[dict]) -> float | None:
    values = [r["seconds"] if r["seconds"] is not None else float("inf") for r in runs]
    m = statistics.median(values)
    return None if m == float("inf") else m


def summarize(suite: str, times: dict) -> list[dict]:
    workloads, arms = SUITES[suite]
    rows = []
    for w in workloads:
        for a in arms:
            quiet, busy = median_seconds(times[f"{w}|{a}|quiet"]), median_seconds(times[f"{w}|{a}|busy"])
            ratio = None if quiet is None or busy is None else busy / quiet
            rows.append(
                {
                    "workload": w,
                    "arm": a,
                    "quiet_s": quiet,
                    "busy_s": busy,
                    "busy_over_quiet": ratio,
                    "threads": times[f"{w}|{a}|quiet"][0].get("threads"),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=sorted(SUITES), default="shared")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round: checks the code path")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    rounds = 1 if args.quick else args.rounds
    measured = run_suite(args.suite, rounds, args.quick)
    rows = summarize(args.suite, measured["times"])
    print(f"\n{'workload':16s} {'arm':10s} {'threads':>7s} {'quiet s':>8s} {'busy s':>8s} {'busy/quiet':>10s}")
    for row in rows:
        fmt = lambda v, spec: "timeout" if v is None else format(v, spec)  # noqa: E731
        print(
            f"{row['workload']:16s} {row['arm']:10s} {row['threads']!s:>7s} {fmt(row['quiet_s'], '8.2f'):>8s} "
            f"{fmt(row['busy_s'], '8.2f'):>8s} {fmt(row['busy_over_quiet'], '10.2f'):>10s}"
        )
    if args.suite == "shared":
        for row in rows:
            ok = row["busy_over_quiet"] is not None and row["busy_over_quiet"] <= 2.0
            print(f"{'PASS' if ok else 'FAIL'}: {row['workload']} beside a busy process <= 2x quiet")
    out = args.out or RESULTS / f"bench_shared_cpu_{args.suite}{'_quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
                "suite": args.suite,
                "rounds": rounds,
                "quick": args.quick,
                "cpus": os.cpu_count(),
                "python": sys.version.split()[0],
                "workloads": {w: WORKLOADS[w][0] for w in SUITES[args.suite][0]},
                "arms": SUITES[args.suite][1],
                "timeout_s": TIMEOUT_S,
                "summary": rows,
                **measured,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

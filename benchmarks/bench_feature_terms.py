"""What a feature term (FitNet, AT, CRD) adds to a KD step (issue 14).

    python benchmarks/bench_feature_terms.py            # the CPU benchmark's pair: cnn(width=32) -> cnn(width=8), 28x28
    python benchmarks/bench_feature_terms.py --quick    # tiny sizes: checks the code path in seconds
    python benchmarks/bench_feature_terms.py --suite gpu   # CRD's pair resnet32x4 -> resnet8x4 on CUDA, 32 px, N = 50,000

One SGD step of the student on one batch, with the teacher's forward pass in the step (a feature
term needs the online teacher), for KD alone and for KD plus each feature term at CRD's weight.
The arms alternate step by step on the same batch and models, so that a change in the load of a
shared machine hits them alike; each arm's time is its median step. The KD arm reads the teacher's
logits only; the feature arms read both models' stages (`model(x, return_stages=True)`), build the
term's parts first (FitNet's regressor, CRD's embeddings and bank) and train them with the student.
The JSON records the machine and the share of the CPUs that other processes used meanwhile.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from bench_distill import RESULTS, LoadMonitor, load_cpu_data, load_gpu_data, machine_info

from kdviz.data.loader import iterate_batches
from kdviz.losses import Objective
from kdviz.models import build_model
from kdviz.train.step import step_outputs
from kdviz.train.teacher import Teacher

KD = {"ce": 0.1, "kd": {"weight": 0.9, "tau": 4.0}}  # the "kd" preset
ARMS = {"kd": KD, "kd+fitnet": {**KD, "fitnet": 100.0}, "kd+at": {**KD, "at": 1000.0}, "kd+crd": {**KD, "crd": 0.8}}
GOAL = 1.10  # a feature term adds at most 10 % to a KD step
# suite -> (teacher, student, data loader, device, sizes of a full and a quick run). The gpu suite is
# CRD's own pair with CIFAR-100's training-set size, so that CRD's bank has its real N.
SUITES = {
    "cpu": (
        "cnn",
        {"width": 32},
        "cnn",
        {"width": 8},
        load_cpu_data,
        "cpu",
        {"full": dict(n_train=8_000, batch_size=128, pairs=60), "quick": dict(n_train=256, batch_size=32, pairs=3)},
    ),
    "gpu": (
        "resnet32x4",
        {},
        "resnet8x4",
        {},
        load_gpu_data,
        "cuda",
        {"full": dict(n_train=50_000, batch_size=64, pairs=100), "quick": dict(n_train=512, batch_size=32, pairs=3)},
    ),
}


def measure(args) -> dict:
    t_name, t_kwargs, s_name, s_kwargs, load, device, all_sizes = SUITES[args.suite]
    sizes, device = all_sizes["quick" if args.quick else "full"], torch.device(device)
    torch.manual_seed(args.seed)
    data, source = load(sizes["n_train"], 64, args.seed)
    shape, c = data.info.image_shape, data.num_classes
    teacher = Teacher(build_model(t_name, c, shape, **t_kwargs).to(device).eval(), None, f"{t_name}{t_kwargs or ''}")
    x, y, idx = next(iterate_batches(data.train, data.info, sizes["batch_size"], device, with_indices=True))
    steps = {}
    for name, spec in ARMS.items():
        torch.manual_seed(args.seed)
        student = build_model(s_name, c, shape, **s_kwargs).to(device)
        objective = Objective(spec)
        if objective.trainable:  # as train() does: the terms' parts fit the models, and train with the student
            with torch.no_grad():
                objective.setup(step_outputs(student.eval(), teacher, objective, x, y, idx), data.train.labels)
            student.train()
        opt = torch.optim.SGD(
            [*student.parameters(), *objective.parameters()], lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4
        )
        steps[name] = _step_fn(student, teacher, objective, opt, x, y, idx)
    times = {name: [] for name in ARMS}
    for _ in range(3):  # warm-up
        for step in steps.values():
            step()
    with LoadMonitor() as load:
        for _ in range(sizes["pairs"]):
            for name, step in steps.items():
                times[name].append(step())
    medians = {name: statistics.median(v) for name, v in times.items()}
    return {
        "what": "median seconds of one student SGD step with the online teacher, arms alternated on one batch",
        "pair": f"{t_name}{t_kwargs or ''} -> {s_name}{s_kwargs or ''}",
        "data": source,
        "n_train": len(data.train),
        "batch_size": sizes["batch_size"],
        "pairs": sizes["pairs"],
        "objectives": ARMS,
        "median_step_seconds": medians,
        "ratio_to_kd": {name: medians[name] / medians["kd"] for name in ARMS},
        "goal": f"<= {GOAL}x the KD step",
        "quick": args.quick,
        "machine": {**machine_info(device), "load": load.result},
        "command": f"python benchmarks/bench_feature_terms.py --suite {args.suite}"
        + (" --quick" if args.quick else ""),
    }


def _step_fn(student, teacher, objective, opt, x, y, idx):
    """One training step as train() takes it (kdviz.train.step.step_outputs), timed."""

    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)  # a GPU step ends when its kernels do

    def step() -> float:
        sync()
        start = time.perf_counter()
        loss, _ = objective(step_outputs(student, teacher, objective, x, y, idx))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync()
        return time.perf_counter() - start

    return step


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--suite",
        choices=SUITES,
        default="cpu",
        help="cpu: the CPU benchmark's cnn pair; gpu: CRD's resnet32x4 -> resnet8x4 on CUDA",
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes, to check the code path")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON path (default: benchmarks/results/bench_feature_terms_<suite>.json)",
    )
    args = p.parse_args(argv)
    report = measure(args)
    out = args.out or RESULTS / f"bench_feature_terms_{args.suite}.json"
    out.write_text(json.dumps(report, indent=2, default=str))
    for name, seconds in report["median_step_seconds"].items():
        print(f"{name:<10} {1000 * seconds:8.2f} ms/step   {report['ratio_to_kd'][name]:.3f}x KD")
    load = report["machine"]["load"]
    print(
        f"other processes used {100 * load['other_cpu_share']:.0f} % of the CPUs (load average {load['loadavg_before']} "
        f"before, {load['loadavg_after']} after); written to {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

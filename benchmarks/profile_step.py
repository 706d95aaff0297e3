"""Where a kdviz training step spends its time: is the GPU busy, or waiting for the CPU? (issue #4)

    python benchmarks/profile_step.py                          # resnet32x4 -> resnet8x4, KD, cached teacher
    python benchmarks/profile_step.py --no-cache --objective kd    # the same with the online teacher
    python benchmarks/profile_step.py --quick --device cpu     # the code path in seconds (not a measurement)

It trains the student with kdviz's train() for two epochs on random CIFAR-100-sized data (crop +
flip, batch 64, bf16 autocast and channels_last as in the crd-cifar100 recipe) under
torch.profiler, and reads the second epoch (the first warms up) from the trace: the wall time
per step, the GPU's kernel time per step, the share of the epoch in which the GPU was busy,
kernels per step, and the kernels that take most time. A GPU busy far below 100 % means the
step is bound by the CPU (Python, dispatch, kernel launches): fewer and larger kernels
(torch.compile, CUDA graphs) would help. Near 100 % it is bound by the GPU's work. On a CPU it
reports the wall time and operator calls per step only.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_distill import RESULTS, load_gpu_data, parse_model  # noqa: E402

import kdviz  # noqa: E402
from kdviz.models import build_model  # noqa: E402
from kdviz.train import train  # noqa: E402

EPOCH_RANGE = "kdviz.train_epoch"  # the range train() records around each training epoch
GPU_WORK = ("kernel", "gpu_memcpy", "gpu_memset")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pair", default="resnet32x4:resnet8x4", help="teacher:student")
    p.add_argument("--objective", default="kd")
    p.add_argument(
        "--cache", action=argparse.BooleanOptionalAction, default=True, help="the teacher logit cache (8 views)"
    )
    p.add_argument("--n-train", type=int, default=10_000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True, help="bf16 autocast (CUDA only)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument(
        "--compile", action=argparse.BooleanOptionalAction, default=False, help="torch.compile the student (CUDA only)"
    )
    p.add_argument("--device", default=None, help="default: cuda > mps > cpu")
    p.add_argument("--quick", action="store_true", help="tiny sizes and models, to check the code path")
    p.add_argument(
        "--out", type=Path, default=None, help="JSON path (default: benchmarks/results/profile_step_<device>.json)"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.pair, args.n_train, args.batch_size = "cnn(width=8):cnn(width=4)", 64, 16
    return args


def epoch_window(trace: dict) -> tuple[float, float]:
    """(start, end) in microseconds of the last training epoch recorded in a chrome trace."""
    ranges = [
        e
        for e in trace["traceEvents"]
        if e.get("name") == EPOCH_RANGE and e.get("ph") == "X" and e.get("cat") == "user_annotation"
    ]
    if not ranges:
        raise RuntimeError(f"no {EPOCH_RANGE!r} range in the trace: train() did not record one")
    last = max(ranges, key=lambda e: e["ts"])
    return float(last["ts"]), float(last["ts"] + last["dur"])


def busy_microseconds(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of [start, end) intervals: overlapping kernels (several streams) count once."""
    total, reach = 0.0, -math.inf
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def summarize(trace: dict, steps: int) -> dict:
    start, end = epoch_window(trace)
    inside = [e for e in trace["traceEvents"] if e.get("ph") == "X" and start <= e.get("ts", -1) < end]
    gpu = [e for e in inside if e.get("cat") in GPU_WORK]
    kernels = [e for e in gpu if e["cat"] == "kernel"]
    wall = end - start
    report = {
        "steps": steps,
        "wall_ms_per_step": wall / steps / 1e3,
        "cpu_ops_per_step": sum(e.get("cat") == "cpu_op" for e in inside) / steps,
    }
    if not gpu:
        return {**report, "gpu_busy_share": None, "kernels_per_step": None, "gpu_ms_per_step": None, "top_kernels": []}
    by_name = collections.Counter()
    for e in kernels:
        by_name[e["name"]] += e["dur"]
    busy = busy_microseconds([(e["ts"], e["ts"] + e["dur"]) for e in gpu])
    return {
        **report,
        "gpu_busy_share": busy / wall,
        "gpu_ms_per_step": busy / steps / 1e3,
        "kernels_per_step": len(kernels) / steps,
        "top_kernels": [
            {"name": n[:120], "ms_per_step": us / steps / 1e3, "share_of_gpu": us / busy}
            for n, us in by_name.most_common(8)
        ],
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    device = kdviz.resolve_device(args.device)
    (t_name, t_kwargs), (s_name, s_kwargs) = (parse_model(m) for m in args.pair.split(":"))
    data, source = load_gpu_data(args.n_train, max(args.batch_size, 256), seed=0)
    teacher = build_model(t_name, data.num_classes, data.info.image_shape, **t_kwargs).eval()  # untrained: speed only
    activities = [torch.profiler.ProfilerActivity.CPU] + (
        [torch.profiler.ProfilerActivity.CUDA] if device.type == "cuda" else []
    )
    settings = dict(
        epochs=2,
        batch_size=args.batch_size,
        device=device,
        progress=False,
        schedule="constant",
        lr=0.05,
        model_kwargs=s_kwargs,
        amp=args.amp,
        channels_last=args.channels_last,
        compile=args.compile,
    )
    needs_teacher = kdviz.Objective.parse(args.objective).needs_teacher
    with tempfile.TemporaryDirectory() as tmp:
        if needs_teacher:
            settings.update(teacher=teacher, teacher_cache=args.cache, cache_dir=tmp)
        with torch.profiler.profile(activities=activities) as prof:
            train(data, s_name, args.objective, **settings)
        trace_path = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(trace_path))
        trace = json.loads(trace_path.read_text())
    steps = math.ceil(args.n_train / args.batch_size)
    report = {
        "benchmark": "profile_step",
        "quick": args.quick,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else device.type,
        "torch": torch.__version__,
        "data": source,
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        **summarize(trace, steps),
    }
    print(
        f"profile_step: {report['device']}, {args.pair}, {args.objective}{' (cached teacher)' if needs_teacher and args.cache else ''}, "
        f"batch {args.batch_size}, {steps} steps in the profiled epoch"
    )
    print(
        f"  wall {report['wall_ms_per_step']:.2f} ms per step, {report['cpu_ops_per_step']:.0f} operator calls per step (nested ones included)"
    )
    if report["gpu_busy_share"] is not None:
        print(
            f"  GPU busy {report['gpu_busy_share']:.0%} of the epoch: {report['gpu_ms_per_step']:.2f} ms per step, "
            f"{report['kernels_per_step']:.0f} kernels per step"
        )
        for k in report["top_kernels"]:
            print(f"    {k['ms_per_step']:7.3f} ms  {k['share_of_gpu']:5.1%}  {k['name']}")
    out = args.out or RESULTS / f"profile_step_{device.type}{'_quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

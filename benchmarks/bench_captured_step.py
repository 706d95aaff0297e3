"""The training step eager against compiled (kdviz.train.step.TrainStep.compile), in ms per step.

    python benchmarks/bench_captured_step.py                              # resnet8x4, KD, cached teacher, CPU
    python benchmarks/bench_captured_step.py --device cuda --mode reduce-overhead   # CUDA graphs
    python benchmarks/bench_captured_step.py --quick                      # the code path in seconds

The step of train(): the student's forward pass, the teacher's logits looked up in an 8-view
crop-and-flip cache (or the online teacher with --no-cache), the objective's terms, the running
metrics, the backward pass and SGD's update, on random CIFAR-100-sized data with full batches
(last_batch="drop": the shapes a captured step needs). The compiled step: the forward pass with
fullgraph=True, the optimizer as a compiled optimizer with a tensor learning rate
(`TrainStep.compile`), with torch.compile's `--backend` and `--mode` (reduce-overhead: CUDA graphs).
Each variant warms up (compiles) for `--warmup` steps, then `--steps` steps are timed in `--rounds`
rounds, alternating variants; the median round is reported, with the load of the machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_distill import RESULTS, LoadMonitor, load_gpu_data, machine_info, parse_model  # noqa: E402

from kdviz.data.loader import iterate_batches  # noqa: E402
from kdviz.device import resolve_device  # noqa: E402
from kdviz.losses import Objective  # noqa: E402
from kdviz.models import build_model  # noqa: E402
from kdviz.train.config import TrainConfig, make_optimizer  # noqa: E402
from kdviz.train.step import TrainStep  # noqa: E402
from kdviz.train.teacher import CachedTeacher, Teacher  # noqa: E402
from kdviz.train.teacher_cache import CacheOptions, build_teacher_cache  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pair", default="resnet32x4:resnet8x4", help="teacher:student")
    p.add_argument("--objective", default="kd")
    p.add_argument("--cache", action=argparse.BooleanOptionalAction, default=True, help="8-view teacher logit cache")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=20, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per variant (compilation, CUDA graph capture)")
    p.add_argument("--backend", default="inductor")
    p.add_argument("--mode", default=None, help="torch.compile mode, e.g. reduce-overhead (CUDA graphs)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True, help="bf16 autocast (CUDA only)")
    p.add_argument("--device", default=None, help="default: cuda > mps > cpu")
    p.add_argument("--quick", action="store_true", help="tiny sizes and models, to check the code path")
    p.add_argument("--out", type=Path, default=None, help="JSON (default: results/bench_captured_step_<device>.json)")
    args = p.parse_args(argv)
    if args.quick:
        args.pair, args.batch_size, args.steps, args.rounds, args.warmup = "cnn(width=8):cnn(width=4)", 16, 3, 1, 2
    return args


def make_step(args, data, device: torch.device) -> tuple[TrainStep, list]:
    """A TrainStep as train() makes it (channels_last on convolutional models), and its batches."""
    (t_name, t_kwargs), (s_name, s_kwargs) = (parse_model(m) for m in args.pair.split(":"))
    shape, classes = data.info.image_shape, data.num_classes
    torch.manual_seed(0)
    teacher = build_model(t_name, classes, shape, **t_kwargs).to(device).eval()
    student = build_model(s_name, classes, shape, **s_kwargs).to(device)
    teacher, student = (m.to(memory_format=torch.channels_last) for m in (teacher, student))
    source = Teacher(teacher, None, t_name)
    augment = None
    if args.cache:
        cache = build_teacher_cache(
            teacher, data.train, data.info, device, CacheOptions(views=8, padding=4), progress=False
        )
        source = CachedTeacher(source, cache)
        source.start_epoch(len(data.train), torch.Generator().manual_seed(0))
        augment = source.images
    objective = Objective.coerce(args.objective)
    opt, _ = make_optimizer(student.parameters(), TrainConfig())
    step = TrainStep(student, objective, source, opt, device, amp=args.amp, channels_last=True)
    batches = list(
        iterate_batches(
            data.train,
            data.info,
            args.batch_size,
            device,
            shuffle=True,
            augment=augment,
            with_indices=True,
            drop_last=True,
        )
    )
    return step, batches


def time_steps(step: TrainStep, batches: list, n: int, device: torch.device) -> float:
    """Milliseconds per step over n steps (cycling through the batches), the device waited for."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for i in range(n):
        step(*batches[i % len(batches)])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) * 1000 / n


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = resolve_device(args.device)
    data, source = load_gpu_data(max(4 * args.batch_size, 512), 64, seed=0)
    variants, compile_seconds = {}, {}
    for name in ("eager", "compiled"):
        step, batches = make_step(args, data, device)
        start = time.perf_counter()
        if name == "compiled":
            step.compile(backend=args.backend, **({"mode": args.mode} if args.mode else {}))
        time_steps(step, batches, args.warmup, device)
        compile_seconds[name] = time.perf_counter() - start
        variants[name] = (step, batches)
    rounds = {name: [] for name in variants}
    with LoadMonitor() as load:
        for _ in range(args.rounds):
            for name, (step, batches) in variants.items():
                rounds[name].append(time_steps(step, batches, args.steps, device))
    ms = {name: statistics.median(r) for name, r in rounds.items()}
    report = {
        "command": "python benchmarks/bench_captured_step.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": {**machine_info(device), "load": load.result},
        "data": source,
        "pair": args.pair,
        "objective": args.objective,
        "teacher": "8-view logit cache" if args.cache else "online",
        "batch_size": args.batch_size,
        "amp": args.amp and device.type == "cuda",
        "backend": args.backend,
        "mode": args.mode,
        "warmup_seconds": compile_seconds,
        "ms_per_step_rounds": rounds,
        "ms_per_step": ms,
        "compiled_over_eager": ms["compiled"] / ms["eager"],
    }
    out = args.out or RESULTS / f"bench_captured_step_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(
        f"{args.pair} {args.objective} batch {args.batch_size} on {report['machine']['device_name']}: "
        f"eager {ms['eager']:.2f} ms/step, compiled ({args.backend}, mode {args.mode}) {ms['compiled']:.2f} ms/step "
        f"({report['compiled_over_eager']:.2f}x the time; warm-up {compile_seconds['compiled']:.0f} s); "
        f"load average {load.result['loadavg_before']} -> {load.result['loadavg_after']}; wrote {out}"
    )
    return report


if __name__ == "__main__":
    main()

"""channels_last (NHWC) against NCHW for one SGD step of each model on a CPU (issue #15, part 1), or a GPU.

    python benchmarks/bench_channels_last.py            # the small CNN at 8 and 28 px, zoo models at 32 px
    python benchmarks/bench_channels_last.py --quick    # the code path in seconds
    python benchmarks/bench_channels_last.py --device cuda [--amp]   # the same on a GPU, fp32 or bf16 autocast

Each model trains on one random batch; a step in each layout alternates, `--pairs` times after a
warm-up, so that a change in the load of a shared machine hits both alike. The ratio is the
median NHWC step over the median NCHW step (< 1: channels_last is faster). Threads: kdviz's own
choice for that step (kdviz.threads), unless OMP_NUM_THREADS is set.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import kdviz  # noqa: F401  (its thread policy, before torch)
from kdviz.models import build_model
from kdviz.threads import forward_flops, threads_for, user_chose_threads

RESULTS = Path(__file__).resolve().parent / "results"
# (model, kwargs, image shape, classes, batch)
CASES = [
    ("cnn", {"width": 16}, (1, 8, 8), 10, 64),
    ("cnn", {"width": 8}, (1, 28, 28), 10, 128),
    ("cnn", {"width": 32}, (1, 28, 28), 10, 128),
    ("resnet8", {}, (3, 32, 32), 100, 64),
    ("resnet8x4", {}, (3, 32, 32), 100, 64),
    ("wrn_16_2", {}, (3, 32, 32), 100, 64),
    ("mobilenetv2", {}, (3, 32, 32), 100, 64),
    ("shufflenetv2_0_5", {}, (3, 32, 32), 100, 64),
]


def step_seconds(model, opt, x, y, amp: bool) -> float:
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)  # a GPU step ends when its kernels do
    sync()
    start = time.perf_counter()
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sync()
    return time.perf_counter() - start


def measure(name, kwargs, shape, classes, batch, pairs, device="cpu", amp=False) -> dict:
    device = torch.device(device)
    torch.manual_seed(0)
    nchw = build_model(name, classes, shape, **kwargs).to(device)
    nhwc = build_model(name, classes, shape, **kwargs).to(device).to(memory_format=torch.channels_last)
    nhwc.load_state_dict(nchw.state_dict())
    threads = None if user_chose_threads() else threads_for(3 * forward_flops(nchw, shape) * batch)
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    x, y = torch.randn(batch, *shape, device=device), torch.randint(0, classes, (batch,), device=device)
    x_nhwc = x.contiguous(memory_format=torch.channels_last)
    arms = {
        "nchw": (nchw, torch.optim.SGD(nchw.parameters(), lr=0.01, momentum=0.9), x),
        "nhwc": (nhwc, torch.optim.SGD(nhwc.parameters(), lr=0.01, momentum=0.9), x_nhwc),
    }
    times = {k: [] for k in arms}
    for i in range(pairs + 2):  # two warm-up pairs
        for k, (model, opt, inp) in arms.items():
            s = step_seconds(model, opt, inp, y, amp)
            if i >= 2:
                times[k].append(s)
    torch.set_num_threads(before)
    med = {k: statistics.median(v) for k, v in times.items()}
    per_pair = sorted(b / a for a, b in zip(times["nchw"], times["nhwc"]))
    return {
        "model": name,
        "kwargs": kwargs,
        "image_shape": shape,
        "batch": batch,
        "threads": threads or before,
        "nchw_ms": 1e3 * med["nchw"],
        "nhwc_ms": 1e3 * med["nhwc"],
        "nhwc_over_nchw": med["nhwc"] / med["nchw"],
        "pair_ratio_quartiles": [per_pair[len(per_pair) // 4], per_pair[(3 * len(per_pair)) // 4]],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cpu", help="cpu (kdviz's default layout is decided there) or cuda")
    parser.add_argument(
        "--amp", action="store_true", help="bf16 autocast of the forward pass, as train(amp=True) on CUDA"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON path (default: benchmarks/results/bench_channels_last[_quick].json)",
    )
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    load = [Path("/proc/loadavg").read_text().strip()]
    top = subprocess.run(["top", "-bn1"], capture_output=True, text=True).stdout.splitlines()[:15]
    rows = []
    for name, kwargs, shape, classes, batch in CASES[:2] if args.quick else CASES:
        row = measure(
            name, kwargs, shape, classes, 8 if args.quick else batch, 2 if args.quick else args.pairs, device, args.amp
        )
        rows.append(row)
        print(
            f"{name:18s} {str(kwargs):14s} {shape!s:12s} threads {row['threads']}  NCHW {row['nchw_ms']:8.2f} ms  "
            f"NHWC {row['nhwc_ms']:8.2f} ms  ratio {row['nhwc_over_nchw']:.3f} "
            f"(pairs' quartiles {row['pair_ratio_quartiles'][0]:.2f}-{row['pair_ratio_quartiles'][1]:.2f})",
            flush=True,
        )
    load.append(Path("/proc/loadavg").read_text().strip())
    out = args.out or RESULTS / f"bench_channels_last{'_quick' if args.quick else ''}.json"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    out.write_text(
        json.dumps(
            {
                "command": " ".join(["bench_channels_last.py", *(argv or sys.argv[1:])]),
                "torch": torch.__version__,
                "device": args.device,
                "device_name": name,
                "amp": args.amp,
                "loadavg_before_after": load,
                "top_before": top,
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"load average before / after: {load}\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

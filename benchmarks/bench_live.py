"""What kdviz.LiveCurves costs an epoch, measured inside a real Jupyter kernel (issue 11).

    python benchmarks/bench_live.py            # digits and Fashion-MNIST teachers, a few minutes on a quiet 2-core CPU
    python benchmarks/bench_live.py --quick    # the same code path in under a minute

Each setting trains the same model with and without `on_epoch=kd.LiveCurves(icc=True)`, in
alternating rounds, in one kernel (so that the display really renders PNGs into a cell). It
reports the wall time of each run, and, more precisely than a difference of two noisy wall
times, the time spent inside the callback as a share of the run's wall time.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import nbformat
from nbclient import NotebookClient

SETTINGS = {
    "digits, cnn width 16": ("digits", {}, "cnn", {"width": 16}, 15),
    "fashion_mnist 2000, cnn width 16": ("fashion_mnist", {"n_train": 2000}, "cnn", {"width": 16}, 3),
}
QUICK = {"digits, cnn width 8": ("digits", {"n_train": 200}, "cnn", {"width": 8}, 3)}

CELL = """
import json, time, statistics
import kdviz as kd

class Timed:
    '''Wraps an on_epoch callback and adds up the time spent inside it.'''
    def __init__(self, inner):
        self.inner, self.seconds = inner, 0.0
    def __call__(self, *args):
        start = time.perf_counter()
        self.inner(*args)
        self.seconds += time.perf_counter() - start

for label, (dataset, load_kwargs, model, model_kwargs, epochs) in SETTINGS.items():
    data = kd.load_dataset(dataset, seed=0, **load_kwargs)
    rows = []
    for round_ in range(ROUNDS):
        for live in (False, True):
            hook = Timed(kd.LiveCurves(icc=True)) if live else None
            start = time.perf_counter()
            kd.train(data, model, "ce", model_kwargs=model_kwargs, epochs=epochs, progress=False, on_epoch=hook, device="cpu")
            wall = time.perf_counter() - start
            row = {"setting": label, "live": live, "wall": wall, "callback": hook.seconds if hook else 0.0,
                   "draws": hook.inner.draws if hook else 0, "epochs": epochs}
            print("ROW" + json.dumps(row), flush=True)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings, one round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_live_cpu.json")
    args = parser.parse_args()
    settings, rounds = (QUICK, 1) if args.quick else (SETTINGS, args.rounds)
    source = f"SETTINGS = {settings!r}\nROUNDS = {rounds}\n" + CELL
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    NotebookClient(nb, timeout=3600, kernel_name="python3").execute()
    text = "".join(o.get("text", "") for o in nb.cells[0].outputs if o.get("name") == "stdout")
    results = {}
    for line in text.splitlines():
        if line.startswith("ROW"):
            row = json.loads(line[3:])
            results.setdefault(row.pop("setting"), []).append(row)
    summary = {}
    for label, rows in results.items():
        plain = sorted(r["wall"] for r in rows if not r["live"])
        live = [r for r in rows if r["live"]]
        share = sum(r["callback"] for r in live) / sum(r["wall"] for r in live)
        # Each live run's own share: the kernel's first figure also imports matplotlib and seaborn.
        per_run = [r["callback"] / r["wall"] for r in live]
        median_live = sorted(r["wall"] for r in live)[len(live) // 2]
        summary[label] = {
            "epochs": rows[0]["epochs"],
            "wall_plain_median_s": plain[len(plain) // 2],
            "wall_live_median_s": median_live,
            "callback_share": share,
            "callback_share_per_live_run": per_run,
            "draws_per_run": [r["draws"] for r in live],
            "rows": rows,
        }
        print(
            f"{label}: {rows[0]['epochs']} epochs, wall {plain[len(plain) // 2]:.2f} s plain, {median_live:.2f} s live "
            f"(medians of {rounds}); callback {100 * share:.1f} % of the live runs' wall time "
            f"(per live run, in order: {', '.join(f'{100 * x:.1f} %' for x in per_run)}); "
            f"draws per run {summary[label]['draws_per_run']}"
        )
    if not args.quick:
        args.out.write_text(json.dumps(summary, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

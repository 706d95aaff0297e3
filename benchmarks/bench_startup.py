"""How fast kdviz starts (issue 21): imports, `kdviz --help`, an argument error, and a rerun of
`kdviz quickstart` whose runs have all finished.

    python benchmarks/bench_startup.py              # 5 rounds, a finished quickstart first (minutes the first time)
    python benchmarks/bench_startup.py --quick      # 2 rounds, without the quickstart: the code path in seconds

Each measure is the wall time of a fresh Python process, as a user's shell would start it, over
several rounds (min / median / max), measured round-robin so that a change of the machine's load
falls on every measure alike. The targets (issue 21): `kdviz --help` <= 0.5 s; `import kdviz`
<= `import torch` + 0.5 s; `kdviz quickstart` with every run finished <= 5 s. kdviz's API loaded
(`import kdviz; kdviz.train`: torch, pandas and kdviz's training modules) is measured beside them,
as what a notebook's first `kd.` call costs. The report also lists the modules that
`python -X importtime` finds slowest to import with the API, and the load average around the
measurement: timings on a busy machine are only an upper bound.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = [sys.executable]
# A command per measure; KDVIZ stands for the kdviz command (the console script, else python -m kdviz).
MEASURES = {
    "import torch": [*PY, "-c", "import torch"],
    "import kdviz": [*PY, "-c", "import kdviz"],
    "kdviz API (import kdviz; kdviz.train)": [*PY, "-c", "import kdviz; kdviz.train"],
    "kdviz --help": ["KDVIZ", "--help"],
    "kdviz distill (argument error)": ["KDVIZ", "distill", "--epochs", "0"],
}
QUICKSTART = "kdviz quickstart (every run finished)"
TARGETS = [  # (measure, baseline measure or None, allowed seconds over the baseline or in all)
    ("kdviz --help", None, 0.5),
    ("import kdviz", "import torch", 0.5),
    (QUICKSTART, None, 5.0),
]


def kdviz_command() -> list[str]:
    script = shutil.which("kdviz", path=str(Path(sys.executable).parent))
    return [script] if script else [*PY, "-m", "kdviz"]


def timed(command: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system) of `command` in a fresh process (its exit status is
    not checked: an argument error exits with 2 on purpose). On a busy machine the CPU seconds are
    the steadier figure; the targets are on wall time, measured on a quiet one."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def slowest_imports(env: dict, n: int = 12) -> list[dict]:
    """The n top-level modules (and kdviz's own) with the largest cumulative import time when the
    API loads, from `python -X importtime` (microseconds, as it prints them)."""
    err = subprocess.run(
        [*PY, "-X", "importtime", "-c", "import kdviz; kdviz.train"], env=env, cwd=ROOT, capture_output=True, text=True
    ).stderr
    rows = []
    for line in err.splitlines():
        if not line.startswith("import time:"):
            continue
        self_us, cumulative_us, name = line.removeprefix("import time:").split("|")
        if not self_us.strip().isdigit():  # the header line
            continue
        module, depth = name.strip(), len(name) - len(name.lstrip())
        if depth <= 1 or module.startswith("kdviz"):  # imported by the command itself, or kdviz's own
            rows.append({"module": module, "self_us": int(self_us), "cumulative_us": int(cumulative_us)})
    return sorted(rows, key=lambda r: -r["cumulative_us"])[:n]


def summary(times: list[tuple[float, float]]) -> dict:
    wall, cpu = [w for w, _ in times], [c for _, c in times]
    return {
        "min": min(wall),
        "median": statistics.median(wall),
        "max": max(wall),
        "rounds": [round(w, 4) for w in wall],
        "cpu_median": statistics.median(cpu),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=None, help="rounds of every measure (default 5, --quick 2)")
    parser.add_argument("--quick", action="store_true", help="2 rounds, no quickstart: checks the code path")
    parser.add_argument(
        "--runs", type=Path, default=ROOT / "runs" / "quickstart", help="the quickstart's folder (finished first)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_startup.json")
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 5)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    kdviz = kdviz_command()
    commands = {name: [*kdviz, *cmd[1:]] if cmd[0] == "KDVIZ" else cmd for name, cmd in MEASURES.items()}
    if not args.quick:
        quickstart = [*kdviz, "quickstart", "--out", str(args.runs), "--no-progress", "--device", "cpu"]
        print(f"finishing the quickstart's runs in {args.runs} (reused when finished already) ...", flush=True)
        subprocess.run(quickstart, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, check=True)
        commands[QUICKSTART] = quickstart
    load_before = os.getloadavg()
    for command in commands.values():  # a first, untimed start fills the file system cache
        timed(command, env)
    seconds: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(rounds):
        for name, command in commands.items():
            seconds[name].append(timed(command, env))
    measures = {name: summary(s) for name, s in seconds.items()}
    targets = []
    for name, baseline, allowed in TARGETS:
        if name not in measures:
            continue
        limit = allowed + (measures[baseline]["median"] if baseline else 0.0)
        targets.append(
            {
                "measure": name,
                "median": measures[name]["median"],
                "limit": limit,
                "rule": f"<= {baseline} + {allowed} s" if baseline else f"<= {allowed} s",
                "pass": measures[name]["median"] <= limit,
            }
        )
    report = {
        "rounds": rounds,
        "quick": args.quick,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "kdviz_command": kdviz,
        "measures": measures,
        "targets": targets,
        "slowest_imports_with_the_api": slowest_imports(env),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    width = max(map(len, measures))
    print(f"load average {load_before[0]:.1f} before, {report['load_average_after'][0]:.1f} after; {rounds} rounds")
    for name, m in measures.items():
        print(
            f"{name:<{width}}  min {m['min']:.3f} s  median {m['median']:.3f} s  max {m['max']:.3f} s"
            f"  (CPU median {m['cpu_median']:.3f} s)"
        )
    for t in targets:
        print(
            f"{'PASS' if t['pass'] else 'FAIL'}  {t['measure']} {t['rule']}: {t['median']:.3f} s (limit {t['limit']:.3f} s)"
        )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

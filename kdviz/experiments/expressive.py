"""The expressive-teacher study: `python -m kdviz.experiments.expressive [--protocol NAME|FILE]`.

Runs the protocol's grid (finished runs are skipped when it is started again), then prints and
writes the summary: every variant chosen on validation, test errors reported with paired
differences to plain KD, and a figure of student error against the teacher's sigma2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .grid import load_protocol, run_grid
from .summary import summarize, verdict

PROTOCOLS = {path.stem: path for path in sorted(Path(__file__).parent.glob("*.toml"))}


def protocol_path(name: str) -> Path:
    """A protocol shipped with kdviz (by name) or a TOML file of one's own."""
    if name in PROTOCOLS:
        return PROTOCOLS[name]
    path = Path(name)
    if path.suffix == ".toml" and path.exists():
        return path
    raise ValueError(f"unknown protocol {name!r}; valid choices: {', '.join(PROTOCOLS)}, or the path of a .toml file")


def smoke_overrides(path: Path) -> dict:
    """The protocol shrunk to check its code path: its first seed, one epoch per run (snapshots
    of epoch 0), one value of each swept parameter."""
    import tomllib

    raw = tomllib.loads(path.read_text())
    roles = {role: {**raw.get(role, {}), "epochs": 1, "milestones": [], "warmup_epochs": 0} for role in ("teacher", "student")}
    arms = []
    for arm in raw["arms"]:
        sweep = {key: values[:1] for key, values in arm.get("sweep", {}).items() if key != "epoch"}
        arms.append({**arm, "sweep": sweep, **({"epoch": 0} if arm.get("role") == "snapshot" else {})})
    return {"seeds": raw["seeds"][:1], "arms": arms, **roles}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kdviz.experiments.expressive", description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default="expressive-digits", help=f"{', '.join(PROTOCOLS)} or a .toml file (default: expressive-digits)")
    parser.add_argument("--out", default=None, help="output folder (default: runs/<protocol name>, with -smoke for --smoke)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="override the protocol's seeds")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--smoke", action="store_true", help="one seed, one epoch per run: checks the code path")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        path = protocol_path(args.protocol)
        overrides = smoke_overrides(path) if args.smoke else {}
        if args.seeds:
            overrides["seeds"] = args.seeds
        protocol = load_protocol(path, **overrides)
        # A smoke run's one-epoch results must never be mistaken for the real ones (run_grid refuses
        # a folder of other settings, but a separate default folder avoids the question).
        out = Path(args.out or f"runs/{protocol.name}{'-smoke' if args.smoke else ''}")
        runs = run_grid(protocol, out, data_root=args.data_root, device=args.device, progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as e:
        print(f"expressive: error: {e}", file=sys.stderr)
        return 2
    report(protocol, runs, out)
    return 0


def report(protocol, runs, out: Path) -> None:
    from ..plots import plot_error_vs_sigma2

    summary = summarize(runs, protocol.baseline)
    runs.to_csv(out / "runs.csv", index=False)
    summary.to_csv(out / "summary.csv")
    text = verdict(summary, protocol.baseline)
    (out / "verdict.txt").write_text(text + "\n")
    fig = plot_error_vs_sigma2(runs, summary, arms=protocol.teacher_comparison_arms() or None)
    fig.savefig(out / "error_vs_sigma2.png", dpi=110, bbox_inches="tight")
    print(f"\n{protocol.name}: {protocol.description}")
    print("Errors in %, variants chosen on validation, test reported; diff = paired test-error difference to "
          f"{protocol.baseline} (negative is better), se over seeds.\n")
    print(summary.drop(columns=["variant"]).round(3).to_string())
    print("\nChosen variants:")
    for arm, variant in summary["variant"].items():
        print(f"  {arm}: {variant}")
    print(f"\n{text}\nWrote {out}/runs.csv, summary.csv, verdict.txt, error_vs_sigma2.png")


if __name__ == "__main__":
    raise SystemExit(main())

"""Command line: `kdviz quickstart | sweep | train-teacher | distill | correlations` (also `python -m kdviz`).
The parser and main(); what each command does is in kdviz.commands."""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys

from .commands import correlations_command, quickstart_command, sweep_command, train_command
from .interrupts import exit_status, sigterm_as_interrupt
from .train.lock import RunLockedError

# kdviz.models.published.SOURCES, written here so that the parser imports no torch (a test checks both agree)
TEACHER_FORMATS = ("repdistiller", "mdistiller")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, type=_device, help="cuda, mps or cpu (default: the best available)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = [-1]
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated whole numbers >= 0 such as 150,180,210, got {text!r}"
        )
    return values


# Numeric flags are checked when parsed, so that argparse's message names the flag and exits with 2.
def _int_from(low: int, high: int | None = None):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            bound = f">= {low}" if high is None else f"in [{low}, {high}]"
            raise argparse.ArgumentTypeError(f"expected a whole number {bound}, got {text!r}")
        return value

    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def _device(text: str) -> str:
    from .device import parse_device

    try:
        parse_device(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


_COUNT = _int_from(1)
_SEED = _int_from(0, 2**32 - 1)


def _add_training(p: argparse.ArgumentParser, role: str) -> None:
    from .experiments.files import experiment_names, recipe_values

    # Flags default to None, so that a flag given can be told from one left to the recipe; the help
    # shows the values of the `default` recipe, which is today's command line without --recipe.
    kw = recipe_values("default", role)

    def dflt(value) -> str:
        return f"(default: the recipe's; without --recipe {value})"

    p.add_argument(
        "--recipe",
        default=None,
        help=f"a named experiment ({', '.join(experiment_names())}) or a .toml file: its [{role}] gives the "
        "values of every flag below that is not given (default: the recipe named default)",
    )
    p.add_argument("--dataset", help=f"dataset name {dflt(kw['dataset'])}")
    p.add_argument("--data-root", default=None, help="where the dataset's files are (default: $KDVIZ_DATA or ./data)")
    p.add_argument("--n-train", type=_COUNT, help=f"train on a stratified subset of this many images {dflt('all')}")
    p.add_argument("--model", help=f"model name {dflt(kw['model'])}")
    p.add_argument(
        "--model-kwargs",
        help=f"JSON of the model's arguments {dflt(json.dumps(kw['model_kwargs']))}; "
        "a recipe's apply to its own model only",
    )
    p.add_argument("--loss", help=f"a preset or name=weight pairs, e.g. 'ce=0.1,kd=0.9' {dflt(kw['objective'])}")
    p.add_argument("--loss-params", default="{}", help='JSON of term parameters, e.g. \'{"kd": {"tau": 2}}\'')
    p.add_argument("--epochs", type=_COUNT, help=f"training epochs {dflt(kw['epochs'])}")
    p.add_argument("--batch-size", type=_COUNT, help=f"images per batch {dflt(kw['batch_size'])}")
    p.add_argument("--lr", type=_positive_float, help=f"learning rate {dflt(kw['lr'])}")
    p.add_argument("--seed", type=_SEED, help=f"seed of the training subset, weights and shuffles {dflt(kw['seed'])}")
    p.add_argument("--schedule", help=f"cosine, multistep or constant {dflt(kw['schedule'])}")
    p.add_argument(
        "--milestones",
        type=_int_list,
        help=f"epochs at which multistep multiplies the lr by gamma, e.g. 150,180,210 {dflt('none')}",
    )
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, help=f"bf16 autocast, on CUDA only {dflt('off')}")
    p.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        help=f"NHWC memory layout for convolutions {dflt('on for convolutional models on CPUs, where it measured faster; off elsewhere')}",
    )
    p.add_argument(
        "--eval-test",
        action=argparse.BooleanOptionalAction,
        help=f"evaluate the test split every epoch, for test curves {dflt('off: once, on the epoch chosen on validation')}",
    )
    p.add_argument(
        "--last-batch",
        help="keep: train on the trailing batch smaller than --batch-size; drop: leave it out, so that every "
        f"step has the same shapes {dflt('keep')}",
    )
    p.add_argument(
        "--sync-bn",
        action=argparse.BooleanOptionalAction,
        help=f"under torchrun, BatchNorm statistics of the global batch, not of each process's slice {dflt('off')}",
    )
    p.add_argument("--out", required=True, help="run directory: checkpoints, metrics.csv, config.json")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    _add_common(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kdviz", description="Knowledge distillation with an expressive teacher.")
    sub = parser.add_subparsers(dest="command", required=True)

    q = sub.add_parser(
        "quickstart", help="train 2 teachers and 4 students (3 seeds) on digits; print a table, write plots"
    )
    _add_sweep(q)
    q.set_defaults(run=quickstart_command, experiment="quickstart")

    w = sub.add_parser(
        "sweep", help="run an experiment's grid of runs (finished runs are kept); print and write its summary"
    )
    w.add_argument("experiment", help="a named experiment (kdviz.experiments.experiment_names()) or a .toml file")
    _add_sweep(w)
    w.set_defaults(run=sweep_command)

    t = sub.add_parser("train-teacher", help="train a teacher (default: CE + ICC regulariser)")
    _add_training(t, "teacher")
    t.set_defaults(run=train_command, cache_dir=None)

    d = sub.add_parser("distill", help="train a student from a teacher checkpoint")
    _add_training(d, "student")
    which = d.add_mutually_exclusive_group(required=True)
    which.add_argument("--teacher", help="teacher checkpoint (a best.pt written by train-teacher)")
    which.add_argument(
        "--teacher-checkpoint",
        help="a published CIFAR-100 teacher of RepDistiller or mdistiller, e.g. "
        "cifar_teachers/resnet32x4_vanilla/ckpt_epoch_240.pth (docs/published_teachers.md); its test accuracy "
        "is measured and printed beside the published one before training",
    )
    d.add_argument(
        "--teacher-format",
        choices=TEACHER_FORMATS,
        help="the project that wrote --teacher-checkpoint (needed with it)",
    )
    d.add_argument(
        "--teacher-model",
        help="kdviz's name of the --teacher-checkpoint's model (default: the recipe's teacher model, "
        "e.g. resnet32x4 for crd-cifar100)",
    )
    d.add_argument(
        "--teacher-cache",
        action=argparse.BooleanOptionalAction,
        help="compute the teacher's logits once instead of running the teacher every step (default: the recipe's; "
        "without --recipe on exactly where the cache is exact: no training augmentation and no term that reads "
        "the teacher's features); --teacher-cache with augmentation caches K fixed views per image, which "
        "changes the training",
    )
    d.add_argument(
        "--cache-dir",
        default=None,
        help="also keep the teacher's logits on disk there, for the next student of that "
        "teacher (default: in memory for a small training split, below 10,000 images "
        "(kdviz.train.teacher.DISK_CACHE_IMAGES), else also in $KDVIZ_CACHE or ~/.cache/kdviz/teacher_logits)",
    )
    d.set_defaults(run=train_command)

    c = sub.add_parser("correlations", help="ICC matrix of a checkpoint: CSV and heatmap PNG")
    c.add_argument("checkpoint", help="a best.pt or last.pt written by kdviz")
    c.add_argument("--split", default="test", choices=["train", "val", "test"])
    c.add_argument("--data-root", default=None)
    c.add_argument(
        "--tau", type=_positive_float, default=4.0, help="temperature of the softened predictions (default: 4)"
    )
    c.add_argument("--secondary", action="store_true", help="also write the secondary ICC (target removed)")
    c.add_argument("--cluster", action="store_true", help="order classes by clustering in the heatmap")
    c.add_argument("--out", default=None, help="output folder (default: next to the checkpoint)")
    _add_common(c)
    c.set_defaults(run=correlations_command)
    return parser


def _add_sweep(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seeds", type=_SEED, nargs="+", default=None, help="run these seeds instead of the experiment's")
    p.add_argument("--arms", nargs="+", default=None, help="run only these arms (and the teachers they learn from)")
    p.add_argument(
        "--jobs",
        type=_COUNT,
        default=1,
        help="worker processes on this machine, each with cores // jobs torch threads (default: 1)",
    )
    p.add_argument(
        "--smoke", action="store_true", help="first seed, one epoch per run, one value per sweep: checks the code path"
    )
    p.add_argument(
        "--backend",
        default="local",
        choices=["local", "ray"],
        help="local processes, or one Ray task per run (default: local)",
    )
    p.add_argument(
        "--address", default=None, help="with --backend ray: the Ray cluster's address (default: start a local one)"
    )
    p.add_argument(
        "--out",
        default=None,
        help="output folder; finished runs in it are reused (default: runs/<experiment name>, with -smoke for --smoke)",
    )
    p.add_argument("--data-root", default=None, help="where the dataset's files are (default: $KDVIZ_DATA or ./data)")
    _add_common(p)


def _where_to_resume(args, argv: list[str]) -> str:
    """What an interrupted command leaves and the command that goes on from there."""
    if args.command not in ("sweep", "quickstart", "train-teacher", "distill") or args.out is None:
        return "nothing to resume"
    again = ["kdviz", *argv]
    if args.command in ("sweep", "quickstart"):
        return (
            f"the finished runs in {args.out} are kept and each run under way resumes from its last finished "
            f"epoch; go on with: {shlex.join(again)}"
        )
    return (
        f"the run in {args.out} keeps its finished epochs (last.pt); resume it with: "
        f"{shlex.join(again if args.resume else [*again, '--resume'])}"
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    try:
        with sigterm_as_interrupt():  # a scheduler's SIGTERM stops a run as Ctrl-C does
            args.run(args)
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (Terminated): every file is whole, no temporary is left
        what = e.args[0] if e.args else "stopped by Ctrl-C (SIGINT)"
        print(f"\nkdviz {args.command}: {what}; {_where_to_resume(args, argv)}", file=sys.stderr)
        return exit_status(e)
    # OSError includes a missing file and a full disk (whose message kdviz rewrites to say so first).
    except (ValueError, TypeError, OSError, FloatingPointError, RunLockedError) as e:
        print(f"kdviz {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0

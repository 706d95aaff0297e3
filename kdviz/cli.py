"""Command line: `kdviz quickstart | train-teacher | distill | correlations` (also `python -m kdviz`)."""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from .train.lock import RunLockedError

# The flags that set a TrainConfig field of the same name; teacher_cache exists on distill only.
_SETTING_FLAGS = ("epochs", "batch_size", "lr", "seed", "schedule", "milestones", "amp", "channels_last", "sync_bn",
                  "teacher_cache")
_ROLES = {"train-teacher": "teacher", "distill": "student"}


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, type=_device, help="cuda, mps or cpu (default: the best available)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = [-1]
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers >= 0 such as 150,180,210, got {text!r}")
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
    from .recipes import load_recipe, recipe_names

    # Flags default to None, so that a flag given can be told from one left to the recipe; the help
    # shows the values of the `default` recipe, which is today's command line without --recipe.
    default = load_recipe("default")
    kw = default.train_kwargs(role)

    def dflt(value) -> str:
        return f"(default: the recipe's; without --recipe {value})"

    p.add_argument("--recipe", default=None,
                   help=f"a named recipe ({', '.join(recipe_names())}) or a .toml file: the values of every flag below "
                        "that is not given (default: the recipe named default)")
    p.add_argument("--dataset", help=f"dataset name {dflt(default.dataset)}")
    p.add_argument("--data-root", default=None, help="where the dataset's files are (default: $KDVIZ_DATA or ./data)")
    p.add_argument("--n-train", type=_COUNT, help=f"train on a stratified subset of this many images {dflt('all')}")
    p.add_argument("--model", help=f"model name {dflt(kw['model'])}")
    p.add_argument("--model-kwargs", help=f"JSON of the model's arguments {dflt(json.dumps(kw['model_kwargs']))}; "
                                          "a recipe's apply to its own model only")
    p.add_argument("--loss", help=f"a preset or name=weight pairs, e.g. 'ce=0.1,kd=0.9' {dflt(kw['objective'])}")
    p.add_argument("--loss-params", default="{}", help='JSON of term parameters, e.g. \'{"kd": {"tau": 2}}\'')
    p.add_argument("--epochs", type=_COUNT, help=f"training epochs {dflt(kw['epochs'])}")
    p.add_argument("--batch-size", type=_COUNT, help=f"images per batch {dflt(kw['batch_size'])}")
    p.add_argument("--lr", type=_positive_float, help=f"learning rate {dflt(kw['lr'])}")
    p.add_argument("--seed", type=_SEED, help=f"seed of the training subset, weights and shuffles {dflt(kw['seed'])}")
    p.add_argument("--schedule", help=f"cosine, multistep or constant {dflt(kw['schedule'])}")
    p.add_argument("--milestones", type=_int_list, help=f"epochs at which multistep multiplies the lr by gamma, e.g. 150,180,210 {dflt('none')}")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, help=f"bf16 autocast, on CUDA only {dflt('off')}")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction,
                   help=f"NHWC memory layout for convolutions, faster on CUDA and on CPUs {dflt('off')}")
    p.add_argument("--sync-bn", action=argparse.BooleanOptionalAction,
                   help=f"under torchrun, BatchNorm statistics of the global batch, not of each process's slice {dflt('off')}")
    p.add_argument("--out", required=True, help="run directory: checkpoints, metrics.csv, config.json")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    _add_common(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kdviz", description="Knowledge distillation with an expressive teacher.")
    sub = parser.add_subparsers(dest="command", required=True)

    q = sub.add_parser("quickstart", help="train 2 teachers and 4 students on digits; print a table, write plots")
    q.add_argument("--out", default="runs/quickstart", help="output folder (default: runs/quickstart)")
    q.add_argument("--seed", type=_SEED, default=0)
    q.add_argument("--smoke", action="store_true", help="a few epochs only, to check an installation")
    q.add_argument("--resume", action="store_true", help="reuse finished runs in --out, continue an interrupted one")
    _add_common(q)
    q.set_defaults(run=_cmd_quickstart)

    t = sub.add_parser("train-teacher", help="train a teacher (default: CE + ICC regulariser)")
    _add_training(t, "teacher")
    t.set_defaults(run=_cmd_train)

    d = sub.add_parser("distill", help="train a student from a teacher checkpoint")
    _add_training(d, "student")
    d.add_argument("--teacher", required=True, help="teacher checkpoint (a best.pt written by train-teacher)")
    d.add_argument("--teacher-cache", action=argparse.BooleanOptionalAction,
                   help="compute the teacher's logits once and keep them on disk (default: the recipe's; without --recipe off)")
    d.add_argument("--cache-dir", default=None, help="where --teacher-cache keeps logits (default: $KDVIZ_CACHE or ~/.cache/kdviz/teacher_logits)")
    d.set_defaults(run=lambda args: _cmd_train(args, teacher=args.teacher))

    c = sub.add_parser("correlations", help="ICC matrix of a checkpoint: CSV and heatmap PNG")
    c.add_argument("checkpoint", help="a best.pt or last.pt written by kdviz")
    c.add_argument("--split", default="test", choices=["train", "val", "test"])
    c.add_argument("--data-root", default=None)
    c.add_argument("--tau", type=_positive_float, default=4.0, help="temperature of the softened predictions (default: 4)")
    c.add_argument("--secondary", action="store_true", help="also write the secondary ICC (target removed)")
    c.add_argument("--cluster", action="store_true", help="order classes by clustering in the heatmap")
    c.add_argument("--out", default=None, help="output folder (default: next to the checkpoint)")
    _add_common(c)
    c.set_defaults(run=_cmd_correlations)
    return parser


def _json_arg(text: str, flag: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{flag} must be JSON, e.g. '{{\"width\": 32}}'; got {text!r} ({e})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{flag} must be a JSON object, got {text!r}")
    return value


def _cmd_quickstart(args) -> None:
    from .quickstart import QuickstartConfig, run_quickstart

    cfg = QuickstartConfig.smoke(seed=args.seed) if args.smoke else QuickstartConfig(seed=args.seed)
    result = run_quickstart(cfg, args.out, device=args.device, progress=not args.no_progress, resume=args.resume)
    print(f"\nSetting: {result.setting}.")
    print("Errors are top-1 (%) at the epoch chosen on validation; sigma2 and ICC distance on the test split.\n")
    print(result.table.drop(columns="objective").round(4).to_string())
    print("\nObjectives:")
    for name, objective in result.table["objective"].items():
        print(f"  {name}: {objective}")
    print(f"\nWrote {args.out}/: metrics.csv, config.json, icc_*.png, icc_diff_*.png, error_curves_*.png, one folder per run.")


def _objective(loss, params: dict, where: str):
    """The Objective of a recipe's or --loss's `loss` (`where` names which, for errors), with
    --loss-params' term parameters on top."""
    from .losses import Objective

    try:
        objective = Objective.parse(loss) if isinstance(loss, str) else Objective(loss)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{where}: {e}") from None
    if not params:
        return objective
    spec = {name: dict(s) for name, s in objective.spec.items()}
    for name, extra in params.items():
        if name not in spec or not isinstance(extra, dict):
            raise ValueError(f"--loss-params must map terms of the loss ({', '.join(spec)}) to tables of parameters, "
                             f"got {name!r}: {extra!r}")
        spec[name].update(extra)
    try:
        return Objective(spec)
    except (ValueError, TypeError) as e:
        raise ValueError(f"--loss-params: {e}") from None


def run_settings(args, recipe) -> tuple[dict, dict]:
    """(load_dataset keywords, train keywords) of a parsed train-teacher or distill command line:
    the recipe's values, replaced by those of the flags given."""
    from .train import TrainConfig

    settings = recipe.train_kwargs(_ROLES[args.command], args.model)
    settings.update({key: getattr(args, key) for key in _SETTING_FLAGS if getattr(args, key, None) is not None})
    if args.model_kwargs is not None:
        settings["model_kwargs"] = _json_arg(args.model_kwargs, "--model-kwargs")
    where = "--loss" if args.loss else f"the loss of recipe {recipe.name}"
    settings["objective"] = _objective(args.loss or settings["objective"], _json_arg(args.loss_params, "--loss-params"), where)
    data = {
        "name": args.dataset or recipe.dataset,
        "n_train": recipe.n_train if args.n_train is None else args.n_train,
        "seed": settings.get("seed", TrainConfig.seed),
    }
    return data, settings


def _cmd_train(args, teacher=None) -> None:
    from .data import load_dataset
    from .recipes import load_recipe
    from .train import train

    recipe = load_recipe(args.recipe or "default")
    data_kwargs, settings = run_settings(args, recipe)
    if args.recipe:
        print(f"recipe {recipe.name}: {recipe.description}")
    data = load_dataset(root=args.data_root, **data_kwargs)
    if args.resume and not (Path(args.out) / "last.pt").is_file():
        print(f"nothing to resume in {args.out} (no last.pt); starting a new run", file=sys.stderr)
    extra = {"cache_dir": args.cache_dir} if teacher is not None else {}
    result = train(data, **settings, teacher=teacher, device=args.device, out_dir=args.out, resume=args.resume,
                   progress=not args.no_progress, **extra)
    best = result.best
    print(f"{data.summary()}\nobjective: {result.objective}")
    print(f"best epoch {result.best_epoch} (by validation): val error {100 * best['val_top1_err']:.2f} %, "
          f"test error {100 * best['test_top1_err']:.2f} %")
    print(f"wrote {args.out}/best.pt, last.pt, metrics.csv, config.json")


def _cmd_correlations(args) -> None:
    from .correlation import extract_icc
    from .data import load_dataset
    from .device import resolve_device
    from .plots import plot_icc
    from .train import load_model

    device = resolve_device(args.device)
    model, ckpt = load_model(args.checkpoint, device)
    data = load_dataset(ckpt["dataset"], args.data_root)
    report = extract_icc(model, data, args.split, tau=args.tau, device=device)
    out = Path(args.out) if args.out else Path(args.checkpoint).parent
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{Path(args.checkpoint).stem}_{args.split}"
    kinds = [False, True] if args.secondary else [False]
    for secondary in kinds:
        suffix = "secondary_icc" if secondary else "icc"
        report.to_frame(secondary=secondary).to_csv(out / f"{stem}_{suffix}.csv")
        fig = plot_icc(report, secondary=secondary, cluster=args.cluster, title=f"{stem}: {suffix.replace('_', ' ')}")
        fig.savefig(out / f"{stem}_{suffix}.png", dpi=110, bbox_inches="tight")
        print(f"wrote {out / f'{stem}_{suffix}.csv'} and .png")
    print(f"sigma2 {report.sigma2:.4f}" + ("" if report.group_mass is None else f", group mass {report.group_mass:.4f}"))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    # OSError includes a missing file and a full disk (whose message kdviz rewrites to say so first).
    except (ValueError, TypeError, OSError, FloatingPointError, RunLockedError) as e:
        print(f"kdviz {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0

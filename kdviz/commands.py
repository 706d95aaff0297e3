"""What each command of the command line does, once its arguments are parsed (kdviz.cli builds the
parser): run a sweep or the quickstart, train a teacher or distill a student from the flags and the
recipe, write a checkpoint's ICC. torch and the rest load inside each command, so that the parser
and `kdviz --help` do not load them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

# The flags that set a TrainConfig field of the same name; teacher_cache exists on distill only.
_SETTING_FLAGS = (
    "epochs",
    "batch_size",
    "lr",
    "seed",
    "schedule",
    "milestones",
    "amp",
    "channels_last",
    "sync_bn",
    "eval_test",
    "last_batch",
    "teacher_cache",
)
_ROLE_OF_COMMAND = {"train-teacher": "teacher", "distill": "student"}


def _json_arg(text: str, flag: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{flag} must be JSON, e.g. '{{\"width\": 32}}'; got {text!r} ({e})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{flag} must be a JSON object, got {text!r}")
    return value


def _sweep(args):
    """(experiment, its runs' table, the output folder) of a parsed sweep or quickstart command."""
    from .experiments import load_experiment, run_sweep

    overrides = {} if args.seeds is None else {"seeds": args.seeds}
    experiment = load_experiment(args.experiment, smoke=args.smoke, **overrides)
    experiment = experiment if args.arms is None else experiment.only(args.arms)
    # A smoke run's one-epoch results must never be mistaken for the real ones (run_sweep refuses a
    # folder of other settings, but a separate default folder avoids the question).
    out = Path(args.out or f"runs/{experiment.name}{'-smoke' if args.smoke else ''}")
    args.out = str(out)  # for the message of an interrupted sweep
    runs = run_sweep(
        experiment,
        out,
        jobs=args.jobs,
        backend=args.backend,
        address=args.address,
        data_root=args.data_root,
        device=args.device,
        progress=not args.no_progress,
    )
    return experiment, runs, out


def sweep_command(args) -> None:
    from .experiments import report

    experiment, runs, out = _sweep(args)
    report(experiment, runs, out)


def quickstart_command(args) -> None:
    from .quickstart import print_table, save_figures

    experiment, runs, out = _sweep(args)
    print_table(experiment, runs, out)
    figures = save_figures(experiment, out, device=args.device)
    print(
        f"\nWrote {out}/: runs.csv, summary.csv, verdict.txt, {len(figures)} figures (icc_*.png, icc_diff_*.png, "
        "error_curves_*.png), one folder per run. Finished runs are reused when the command runs again."
    )


def command_settings(args, recipe) -> tuple[dict, dict]:
    """(load_dataset keywords, train keywords) of a parsed train-teacher or distill command line:
    the recipe's (an experiment's teacher or student) values, replaced by those of the flags given."""
    from .losses import Objective
    from .train import TrainConfig

    settings = recipe.train_kwargs(_ROLE_OF_COMMAND[args.command], args.model)
    settings.update({key: getattr(args, key) for key in _SETTING_FLAGS if getattr(args, key, None) is not None})
    if args.model_kwargs is not None:
        settings["model_kwargs"] = _json_arg(args.model_kwargs, "--model-kwargs")
    where = "--loss" if args.loss else f"the objective of experiment {recipe.name}"
    try:
        objective = Objective.coerce(args.loss or settings["objective"])
    except (ValueError, TypeError) as e:
        raise ValueError(f"{where}: {e}") from None
    try:
        settings["objective"] = objective.with_params(_json_arg(args.loss_params, "--loss-params"))
    except (ValueError, TypeError) as e:
        raise ValueError(f"--loss-params: {e}") from None
    data = {
        "name": args.dataset or recipe.dataset,
        "n_train": recipe.role(_ROLE_OF_COMMAND[args.command]).n_train if args.n_train is None else args.n_train,
        "seed": settings.get("seed", TrainConfig.seed),
    }
    return data, settings


def _teacher_of(args, recipe):
    """What distill's teacher flags name: a kdviz checkpoint path, a published teacher, or None (train-teacher)."""
    if args.command != "distill":
        return None
    if args.teacher_checkpoint is None:
        if args.teacher_format or args.teacher_model:
            raise ValueError("--teacher-format and --teacher-model describe a --teacher-checkpoint; give one")
        return args.teacher
    if args.teacher_format is None:
        raise ValueError(
            "--teacher-checkpoint needs --teacher-format repdistiller or mdistiller (the project that wrote it)"
        )
    from .models.published import load_teacher

    return load_teacher(args.teacher_model or recipe.teacher.model, args.teacher_checkpoint, args.teacher_format)


def _check_published(teacher, data, device) -> None:
    """Print a published teacher's test top-1 on these data beside the published number."""
    from .device import resolve_device
    from .inference import top1_accuracy

    measured = top1_accuracy(teacher.model, data.test, data.info, resolve_device(device))
    published = "none published" if teacher.published_top1 is None else f"published {teacher.published_top1:.2f} %"
    print(
        f"teacher {teacher.name} ({teacher.source}, {teacher.path}): {data.info.name} test top-1 "
        f"{measured:.2f} % ({len(data.test)} images), {published}"
    )


def train_command(args) -> None:
    from .data import load_dataset
    from .experiments import load_experiment
    from .models.published import PublishedTeacher
    from .train import Output, train

    recipe = load_experiment(args.recipe or "default")
    data_kwargs, settings = command_settings(args, recipe)
    if args.recipe:
        print(f"recipe {recipe.name}: {recipe.description}")
    teacher = _teacher_of(args, recipe)
    data = load_dataset(root=args.data_root, **data_kwargs)
    if isinstance(teacher, PublishedTeacher):
        _check_published(teacher, data, args.device)
    if args.resume and not (Path(args.out) / "last.pt").is_file():
        print(f"nothing to resume in {args.out} (no last.pt); starting a new run", file=sys.stderr)
    output = Output(out_dir=args.out, resume=args.resume, progress=not args.no_progress, cache_dir=args.cache_dir)
    result = train(data, **settings, teacher=teacher, device=args.device, output=output)
    best = result.best
    print(f"{data.summary()}\nobjective: {result.objective}")
    print(
        f"best epoch {result.best_epoch} (by validation): val error {100 * best['val_top1_err']:.2f} %, "
        f"test error {100 * best['test_top1_err']:.2f} %"
    )
    print(f"wrote {args.out}/best.pt, last.pt, metrics.csv, config.json")


def correlations_command(args) -> None:
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
    print(
        f"secondary std {report.secondary_std:.4f}"
        + ("" if report.group_mass is None else f", group mass {report.group_mass:.4f}")
    )

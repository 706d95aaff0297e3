"""One training loop for teachers and students.

`train(data, model, objective, teacher=...)` runs epochs of SGD on a weighted dict of loss terms,
evaluates the validation split every epoch, keeps the epoch with the lowest validation error
(never the test error) and evaluates the test split on it (every epoch with eval_test=True),
and writes, when given a run directory, a checkpoint every epoch so an interrupted run resumes.
It reads top to bottom: set up the run, then for each epoch train, evaluate and save; the
teacher (kdviz.train.teacher), the epoch (kdviz.train.epoch) and the run's state on disk
(kdviz.train.run) each live in their own module.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time

import pandas as pd
import torch
from tqdm.auto import tqdm

from ..data.base import DatasetSplits
from ..data.loader import fit_batch_size
from ..device import resolve_device
from ..losses import Objective
from ..threads import training_threads
from .config import TrainConfig, make_optimizer
from .distributed import setup_distributed, wrap_model
from .epoch import average_term_gradients, evaluate, example_outputs, split_scores, train_epoch
from .lock import RunLock
from .order import initial_model, shuffle_generator
from .output import Output, split_output
from .result import TrainResult
from .run import Run, check_run_dir, recorded_choices, restore, run_config, save_run, write_config, write_metrics
from .step import TrainStep
from .teacher import TeacherLike, TeacherSource, resolve_teacher, teacher_source


def train(
    data: DatasetSplits,
    model: str = "cnn",
    objective: str | dict | Objective = "ce",
    *,
    teacher: TeacherLike = None,
    model_kwargs: dict | None = None,
    config: TrainConfig | None = None,
    device: str | torch.device | None = None,
    output: Output | None = None,
    **settings,
) -> TrainResult:
    """Train model `model` (a registry name) on `data` with `objective`.

    objective: a preset name ("ce", "icc_teacher", "kd", "kd+icc_mimic", ...), a "ce=0.1,kd=0.9"
    string, a {term: weight or {weight, **params}} dict, or an Objective.
    teacher: needed when a term distills; a TrainResult, a module, a checkpoint path, or a published
    teacher (kd.load_teacher).
    output: where the run is written and how it is shown (an Output: out_dir, resume, name,
    progress, keep_epochs, cache_dir, on_epoch).
    settings: TrainConfig fields (epochs=, lr=, batch_size=, seed=, ...), overriding `config`, and
    Output fields (out_dir=, resume=, progress=, ...), overriding `output`'s.
    """
    out, settings = split_output(output, settings, [f.name for f in dataclasses.fields(TrainConfig)])
    cfg = TrainConfig.from_kwargs(**{**(config.to_dict() if config else {}), **settings})
    _check_splits(data)
    objective = Objective.coerce(objective)
    ctx, dev = setup_distributed(resolve_device(device))
    cfg.batch_size = fit_batch_size(cfg.batch_size, len(data.train), ctx.world_size)
    teacher = resolve_teacher(teacher, objective, data, dev)
    spec = {
        "name": model,
        "kwargs": dict(model_kwargs or {}),
        "num_classes": data.num_classes,
        "image_shape": list(data.info.image_shape),
    }
    name = out.name or f"{model}:{objective.describe()}"
    core = initial_model(model, data, cfg.seed, **spec["kwargs"]).to(dev)
    # What kdviz decides for this run (the layout, the teacher's source), as config.json records it;
    # a resumed run keeps the choices it recorded, so that it goes on as it started, even on another device.
    cfg = dataclasses.replace(cfg, **_recorded(cfg, out)).resolved(core, dev)
    source = teacher_source(cfg, objective, data, out.cache_dir)
    cfg = dataclasses.replace(cfg, teacher_cache=source.cached)
    if cfg.channels_last:  # in place: the teacher runs on the student's NHWC batches
        core = core.to(memory_format=torch.channels_last)
        if teacher is not None:
            teacher.module.to(memory_format=torch.channels_last)
    if objective.trainable:  # its terms' layers fit the models' feature sizes, and join the optimizer
        objective.setup(example_outputs(core, teacher, objective, data, dev), data.train.labels)
    if not any(p.requires_grad for p in core.parameters()):
        raise ValueError(
            f"model {model!r} has no trainable parameters, so it cannot be trained; a computed model such as "
            "planted_bayes (the planted dataset's Bayes posterior) is a teacher: pass it as teacher=, or use "
            'an arm with role = "bayes" in an experiment'
        )
    opt, sched = make_optimizer([*core.parameters(), *objective.parameters()], cfg)
    run = Run(
        model=core,
        net=core,
        spec=spec,
        objective=objective,
        teacher=teacher,
        data=data,
        cfg=cfg,
        device=dev,
        ctx=ctx,
        opt=opt,
        sched=sched,
        shuffle_gen=shuffle_generator(cfg.seed),
        # Its own generator per rank, so that ranks' shuffles stay in step whatever their shard sizes.
        augment_gen=torch.Generator().manual_seed(cfg.seed * 1009 + ctx.rank + 1),
        run_dir=out.run_dir,
    )

    online = teacher.module if teacher is not None and not cfg.teacher_cache else None
    with (
        RunLock(run.run_dir) if run.writes else contextlib.nullcontext(),
        training_threads(core, online, data.info.image_shape, cfg.batch_size, dev),
    ):
        _open(run, name, out, source)
        bar = tqdm(
            total=cfg.epochs,
            initial=run.progress.next_epoch,
            desc=name,
            disable=not (out.progress and ctx.is_main),
            leave=True,
        )
        for epoch in range(run.progress.next_epoch, cfg.epochs):
            start = time.perf_counter()
            # A named range in profiler traces (benchmarks/profile_step.py); free when none is recording.
            with torch.profiler.record_function("kdviz.train_epoch"):
                train_stats = train_epoch(run, epoch)
            train_seconds = time.perf_counter() - start
            lr = run.opt.param_groups[0]["lr"]
            run.sched.step()
            objective.end_epoch()
            scores, snapshot = evaluate(run, with_test=cfg.eval_test or epoch in out.keep_epochs)
            row = {
                "epoch": epoch,
                "lr": lr,
                **train_stats,
                **scores,
                "train_seconds": train_seconds,
                "seconds": time.perf_counter() - start,
            }
            improved = run.progress.record(row, snapshot, run.model)
            if run.writes:
                save_run(run, improved, keep=epoch in out.keep_epochs)
            if out.on_epoch is not None and ctx.is_main:
                out.on_epoch(pd.DataFrame(run.progress.history), snapshot, cfg.epochs)
            bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_err=f"{row['val_top1_err']:.3f}")
            bar.update(1)
        bar.close()

    run.model.load_state_dict(run.progress.best_weights)
    run.model.eval()
    if not cfg.eval_test:
        _test_chosen_epoch(run)
    return TrainResult(
        name=name,
        model=run.model,
        history=pd.DataFrame(run.progress.history),
        best_epoch=run.progress.best_epoch,
        config=cfg,
        objective=objective.describe(),
        model_spec=run.spec,
        info=data.info,
        icc_snapshots=run.progress.snapshots,
        out_dir=run.run_dir,
    )


def _recorded(cfg: TrainConfig, out: Output) -> dict:
    """The settings left to kdviz (None in cfg) that the run being resumed in out.out_dir recorded."""
    left = tuple(k for k in ("channels_last", "teacher_cache") if getattr(cfg, k) is None)
    return recorded_choices(out.run_dir, left) if out.resume and out.run_dir is not None and left else {}


def _test_chosen_epoch(run: Run) -> None:
    """The test scores of the weights chosen on validation (which the model holds now), evaluated
    once and written into their history row (and metrics.csv), unless that epoch had them."""
    row = next(r for r in run.progress.history if r["epoch"] == run.progress.best_epoch)
    if row.get("test_top1_err") is not None:
        return
    row.update(split_scores(run, run.data.test, "test")[0])
    if run.writes:
        write_metrics(run)


def _open(run: Run, name: str, out: Output, source: TeacherSource) -> None:
    """Check and (re)write the run directory, restore last.pt when resuming, take the teacher's
    logits from `source` (a cache is loaded or built now), wrap the model for torchrun /
    torch.compile, and make the run's training step."""
    config = run_config(run, name) if run.writes else None
    if run.writes:
        check_run_dir(run, out.resume, config)
    if run.run_dir is not None and out.resume and (run.run_dir / "last.pt").exists():
        run.progress = restore(run, run.run_dir / "last.pt")
    if run.writes:
        write_config(run, config)
    # Built once the run directory is known to be usable: it can take minutes.
    if run.teacher is not None:
        run.teacher = source.teacher(run.teacher, run.data, run.device, main=run.ctx.is_main, progress=out.progress)
    run.net = wrap_model(
        run.model, run.ctx, run.device, run.cfg.sync_bn
    )  # after restoring, so every rank starts from the same weights
    if run.cfg.compile and run.device.type == "cuda":
        run.net = torch.compile(run.net)
    run.step = TrainStep(
        run.net,
        run.objective,
        run.teacher,
        run.opt,
        run.device,
        amp=run.cfg.amp,
        channels_last=run.cfg.channels_last,
        average_terms=functools.partial(average_term_gradients, run)
        if run.ctx.enabled and run.objective.trainable
        else None,
    )


def _check_splits(data: DatasetSplits) -> None:
    for split in ("train", "val", "test"):
        if len(data.split(split)) == 0:
            raise ValueError(
                f"the {split} split of {data.info.name} is empty (0 images); load it with a larger "
                "n_train / train_fraction / val_fraction, or check the dataset's files"
            )

"""One training loop for teachers and students.

`train(data, model, objective, teacher=...)` runs epochs of SGD on a weighted dict of loss terms,
evaluates every epoch, keeps the epoch with the lowest validation error (never the test error),
and writes, when given a run directory, a checkpoint every epoch so an interrupted run resumes.
"""
from __future__ import annotations

import contextlib
import functools
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from .. import __version__
from ..correlation import ICCAccumulator, ICCReport
from ..data.base import DatasetInfo, DatasetSplits
from ..data.augment import random_crop_flip
from ..data.loader import iterate_batches
from ..device import resolve_device
from ..inference import predict_logits, topk_errors
from ..losses import FeatureContext, Objective, StepOutputs
from ..models import build_model, stage_shapes
from .checkpoint import atomic_save, load_checkpoint, load_model, model_checkpoint
from .config import TrainConfig, make_optimizer
from .distributed import all_reduce, setup_distributed, wrap_model
from .lock import RunLock
from .teacher_cache import TeacherLogitCache, load_or_build_teacher_cache, view_options


@dataclass
class TrainResult:
    """A finished run. `model` holds the weights of `best_epoch` (chosen on validation)."""

    name: str
    model: nn.Module
    history: pd.DataFrame
    best_epoch: int
    config: TrainConfig
    objective: str
    model_spec: dict
    info: DatasetInfo
    icc_snapshots: list[ICCReport] = field(repr=False, default_factory=list)
    out_dir: Path | None = None

    @property
    def best(self) -> pd.Series:
        """The history row of the selected epoch."""
        return self.history.set_index("epoch").loc[self.best_epoch]


TeacherLike = nn.Module | TrainResult | str | Path | None


def train(
    data: DatasetSplits,
    model: str = "cnn",
    objective: str | dict | Objective = "ce",
    *,
    teacher: TeacherLike = None,
    model_kwargs: dict | None = None,
    config: TrainConfig | None = None,
    device: str | torch.device | None = None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    name: str | None = None,
    progress: bool = True,
    keep_epochs: tuple[int, ...] = (),
    cache_dir: str | Path | None = None,
    **settings,
) -> TrainResult:
    """Train model `model` (a registry name) on `data` with `objective`.

    objective: a preset name ("ce", "icc_teacher", "kd", "kd+icc_mimic", ...), a "ce=0.1,kd=0.9"
    string, a {term: weight or {weight, **params}} dict, or an Objective.
    teacher: needed when a term distills; a TrainResult, a module, or a checkpoint path.
    settings: TrainConfig fields (epochs=, lr=, batch_size=, seed=, ...), overriding `config`.
    keep_epochs: epochs (0-based) whose weights are also written to out_dir/epoch_<e>.pt, e.g. to
    distill from an intermediate checkpoint of a teacher.
    cache_dir: where teacher_cache=True stores teacher logits (default: $KDVIZ_CACHE or
    ~/.cache/kdviz/teacher_logits).
    """
    cfg = TrainConfig.from_kwargs(**{**(config.to_dict() if config else {}), **settings})
    for split in ("train", "val", "test"):
        if len(data.split(split)) == 0:
            raise ValueError(f"the {split} split of {data.info.name} is empty (0 images); load it with a larger "
                             "n_train / train_fraction / val_fraction, or check the dataset's files")
    objective = _as_objective(objective)
    ctx, dev = setup_distributed(resolve_device(device))
    teacher_model = _prepare_teacher(teacher, objective, data, dev)
    fast_cuda = dev.type == "cuda"
    if teacher_model is not None and cfg.channels_last:
        teacher_model = teacher_model.to(memory_format=torch.channels_last)
    spec = {"name": model, "kwargs": dict(model_kwargs or {}), "num_classes": data.num_classes, "image_shape": list(data.info.image_shape)}
    name = name or f"{model}:{objective.describe()}"

    _seed_everything(cfg.seed)
    core = build_model(model, data.num_classes, data.info.image_shape, **spec["kwargs"]).to(dev)
    if cfg.channels_last:
        core = core.to(memory_format=torch.channels_last)
    if objective.needs_features:
        _build_feature_terms(objective, core, teacher_model, data, cfg, dev)
    # The feature terms' own parts (FitNet's regressor, CRD's embeddings) train with the model.
    opt, sched = make_optimizer(nn.ModuleList([core, objective.module]) if objective.needs_features else core, cfg)
    shuffle_gen = torch.Generator().manual_seed(cfg.seed)
    # Its own generator per rank, so that ranks' shuffles stay in step whatever their shard sizes.
    augment_gen = torch.Generator().manual_seed(cfg.seed * 1009 + ctx.rank + 1)
    state = _RunState()

    run_dir = Path(out_dir) if out_dir is not None else None
    writes = run_dir is not None and ctx.is_main
    with RunLock(run_dir) if writes else contextlib.nullcontext():
        if writes:
            _prepare_run_dir(run_dir, resume, name, cfg, objective, spec, data)
        if run_dir is not None and resume and (run_dir / "last.pt").exists():
            state = _restore(run_dir / "last.pt", core, opt, sched, objective, (shuffle_gen, augment_gen), data.info, cfg)
        cache = None  # built once the run directory is known to be usable: it can take minutes
        if teacher_model is not None and cfg.teacher_cache:
            cache = _teacher_cache(teacher_model, data, cfg, objective, dev, cache_dir, writes=ctx.is_main,
                                   progress=progress and ctx.is_main)
        net = wrap_model(core, ctx, dev)  # after restoring, so every rank starts from the same weights
        if cfg.compile and fast_cuda:
            net = torch.compile(net)
        bar = tqdm(total=cfg.epochs, initial=state.next_epoch, desc=name, disable=not (progress and ctx.is_main), leave=True)
        for epoch in range(state.next_epoch, cfg.epochs):
            start = time.perf_counter()
            # A named range in profiler traces (benchmarks/profile_step.py); free when none is recording.
            with torch.profiler.record_function("kdviz.train_epoch"):
                train_stats = _train_epoch(net, teacher_model, cache, objective, data, cfg, dev, opt, (shuffle_gen, augment_gen), ctx, epoch)
            train_seconds = time.perf_counter() - start
            lr = opt.param_groups[0]["lr"]
            sched.step()
            objective.end_epoch()
            row = {"epoch": epoch, "lr": lr, **train_stats, **_evaluate(core, data, cfg, dev, state)}
            row["train_seconds"], row["seconds"] = train_seconds, time.perf_counter() - start
            state.history.append(row)
            # Ties in validation error are common on small splits: the validation loss breaks them.
            score = (row["val_top1_err"], row["val_loss"])
            improved = score < state.best_val
            if improved:
                state.best_val, state.best_epoch = score, epoch
                state.best_weights = {k: v.detach().cpu().clone() for k, v in core.state_dict().items()}
            state.next_epoch = epoch + 1
            if writes:
                _save_run(run_dir, core, opt, sched, objective, (shuffle_gen, augment_gen), state, spec, data, improved)
                if epoch in keep_epochs:
                    atomic_save(model_checkpoint(core, spec, data.info.name, epoch=epoch, val_top1_err=row["val_top1_err"]),
                                run_dir / f"epoch_{epoch}.pt")
            bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_err=f"{row['val_top1_err']:.3f}")
            bar.update(1)
        bar.close()

    core.load_state_dict(state.best_weights)
    core.eval()
    return TrainResult(
        name=name, model=core, history=pd.DataFrame(state.history), best_epoch=state.best_epoch, config=cfg,
        objective=objective.describe(), model_spec=spec, info=data.info, icc_snapshots=state.snapshots, out_dir=run_dir,
    )


@dataclass
class _RunState:
    next_epoch: int = 0
    history: list[dict] = field(default_factory=list)
    snapshots: list[ICCReport] = field(default_factory=list)
    best_val: tuple[float, float] = (float("inf"), float("inf"))
    best_epoch: int = -1
    best_weights: dict | None = None


def _teacher_cache(teacher, data, cfg, objective, dev, cache_dir, *, writes, progress) -> TeacherLogitCache:
    # With top-k, the dropped classes' mass is kept at the temperature of the distillation terms.
    taus = [t.params["tau"] for t in objective.terms.values() if t.needs_teacher and "tau" in t.params]
    return load_or_build_teacher_cache(
        teacher, data.train, data.info, dev, cache_dir=cache_dir, write=writes, progress=progress,
        **view_options(data.info, cfg.augment, cfg.cache_views), seed=cfg.seed, topk=cfg.cache_topk, tau=taus[0] if taus else 4.0,
    )


def _build_feature_terms(objective, core, teacher, data, cfg, dev) -> None:
    """Give the feature terms (FitNet, AT, CRD) both models' stage shapes, so they make their parts."""
    if cfg.teacher_cache:
        raise ValueError(f"the objective {objective.describe()!r} reads the teacher's intermediate features, which the "
                         "teacher cache does not hold: it needs the online teacher; train with teacher_cache=False")
    shape = data.info.image_shape
    objective.build(FeatureContext(stage_shapes(core, shape), stage_shapes(teacher, shape), len(data.train), cfg.batch_size, dev))


def _train_epoch(net, teacher, cache, objective, data, cfg, dev, opt, gens, ctx, epoch) -> dict:
    net.train()
    shuffle_gen, augment_gen = gens
    augment = view_of = None
    if cache is not None:
        view_of = cache.epoch_views(len(data.train), augment_gen).to(dev)
        augment = lambda images, idx: cache.images(images, idx, view_of[idx])  # noqa: E731
    elif cfg.augment and data.info.augment == "crop_flip":
        augment = lambda images, idx: random_crop_flip(images, data.info.augment_padding, augment_gen)  # noqa: E731
    fast_cuda = dev.type == "cuda"
    autocast = functools.partial(torch.autocast, "cuda", dtype=torch.bfloat16) if cfg.amp and fast_cuda else contextlib.nullcontext
    sums = torch.zeros(len(objective.terms) + 2, device=dev, dtype=torch.float64)  # terms, total, errors
    first_bad_step = torch.tensor(-1, device=dev)
    n = 0
    batches = iterate_batches(data.train, data.info, cfg.batch_size, dev, shuffle=True, generator=shuffle_gen,
                              shard=(ctx.rank, ctx.world_size), augment=augment, with_indices=True)
    stages = objective.needs_features  # FitNet, AT and CRD read both models' named stages
    for step, (x, y, idx) in enumerate(batches):
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast():
            logits, features = net(x, return_stages=True) if stages else (net(x), None)
            teacher_logits = teacher_features = None
            if cache is not None:
                teacher_logits = cache.logits(idx, view_of[idx])
            elif teacher is not None:
                with torch.inference_mode():
                    teacher_logits, teacher_features = teacher(x, return_stages=True) if stages else (teacher(x), None)
                # Ordinary tensors again, usable by autograd.
                teacher_logits = teacher_logits.clone()
                if stages:
                    teacher_features = {k: v.clone() for k, v in teacher_features.items()}
            total, parts = objective(StepOutputs(logits, y, teacher_logits, features, teacher_features, idx if stages else None))
        opt.zero_grad(set_to_none=True)
        total.backward()
        if stages and ctx.enabled:
            _average_gradients(objective.module, ctx)
        opt.step()
        b = y.shape[0]
        n += b
        with torch.no_grad():
            values = torch.stack([*parts.values(), total.detach()]).double()
            sums[:-1] += values * b
            sums[-1] += (logits.argmax(1) != y).sum()
            # Where the first non-finite loss happened, found without a host sync per step.
            bad = ~torch.isfinite(values).all()
            first_bad_step = torch.where(bad & (first_bad_step < 0), step, first_bad_step)
    # Sums and counts, not per-rank means, are reduced: ranks may hold batches of unequal size.
    sums = all_reduce(torch.cat([sums, torch.tensor([n], device=dev, dtype=sums.dtype)]), ctx)
    first_bad_step = all_reduce(first_bad_step, ctx, op="max")
    means = (sums[:-1] / sums[-1]).tolist()
    names = list(objective.terms)
    if int(first_bad_step) >= 0:
        bad_terms = [t for t, v in zip(names, means) if not np.isfinite(v)] or ["total"]
        raise FloatingPointError(
            f"loss became non-finite at epoch {epoch}, step {int(first_bad_step)} (term(s): {', '.join(bad_terms)}); "
            "the last good checkpoint is kept. Lower the lr or the weight of that term."
        )
    stats = {f"train_{t}": v for t, v in zip(names, means)}
    stats["train_loss"] = means[len(names)]
    stats["train_top1_err"] = means[-1]
    return stats


def _average_gradients(module: nn.Module, ctx) -> None:
    """Average the gradients of the feature terms' parts over ranks, as DDP does for the model's:
    they live outside the DDP-wrapped model. One all-reduce of their concatenation, no host sync."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if grads:
        flat = all_reduce(torch.cat([g.flatten() for g in grads]), ctx) / ctx.world_size
        for g, part in zip(grads, flat.split([g.numel() for g in grads])):
            g.copy_(part.view_as(g))


def _evaluate(net, data, cfg, dev, state) -> dict:
    row = {}
    for split in ("val", "test"):
        part = data.split(split)
        logits = predict_logits(net, part, data.info, dev)
        labels = part.labels.to(dev)
        errs = topk_errors(logits, labels)
        row[f"{split}_loss"] = float(torch.nn.functional.cross_entropy(logits, labels))
        row[f"{split}_top1_err"], row[f"{split}_top5_err"] = float(errs[1]), float(errs[5])
        if split == "val":
            acc = ICCAccumulator(data.info, cfg.icc_tau, device=dev)
            acc.update(logits, labels)
            report = acc.report()
            state.snapshots.append(report)
            row["val_sigma2"] = report.sigma2
            if report.group_mass is not None:
                row["val_group_mass"] = report.group_mass
    return row


def _as_objective(objective) -> Objective:
    if isinstance(objective, Objective):
        return objective
    if isinstance(objective, str):
        return Objective.parse(objective)
    return Objective(objective)


def _prepare_teacher(teacher: TeacherLike, objective: Objective, data: DatasetSplits, dev) -> nn.Module | None:
    if not objective.needs_teacher:
        if teacher is not None:
            raise ValueError(f"a teacher was given but the objective {objective.describe()!r} has no distillation term; add e.g. 'kd'")
        return None
    if teacher is None:
        raise ValueError(f"the objective {objective.describe()!r} distills, so it needs teacher= (a TrainResult, a model or a checkpoint path)")
    if isinstance(teacher, TrainResult):
        if teacher.info.name != data.info.name:
            raise ValueError(f"teacher was trained on {teacher.info.name!r}, the student on {data.info.name!r}; use a teacher of the same dataset")
        module = teacher.model
    elif isinstance(teacher, (str, Path)):
        module, ckpt = load_model(teacher, dev)
        if ckpt["dataset"] != data.info.name:
            raise ValueError(f"teacher checkpoint {teacher} is for dataset {ckpt['dataset']!r}, the student trains on {data.info.name!r}")
    else:
        module = teacher
    module = module.to(dev).eval()
    x, _ = next(iterate_batches(data.val, data.info, 2, dev))
    with torch.no_grad():
        c = module(x).shape[1]
    if c != data.num_classes:
        raise ValueError(f"the teacher predicts {c} classes but {data.info.name} has {data.num_classes}; use a teacher trained on this dataset")
    return module


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _prepare_run_dir(run_dir: Path, resume, name, cfg, objective, spec, data) -> None:
    last = run_dir / "last.pt"
    if last.exists() and not resume:
        done = load_checkpoint(last)["next_epoch"] >= cfg.epochs
        what = "a finished run" if done else "an unfinished run"
        raise FileExistsError(f"{run_dir} already holds {what}; pass resume=True (CLI --resume) to continue it, or choose another out_dir")
    config = {"name": name, "dataset": data.info.name, "model": spec, "objective": objective.spec, **cfg.to_dict()}
    config = json.loads(json.dumps(config, default=str))  # the form it takes on disk, for comparing
    config_path = run_dir / "config.json"
    if resume and last.exists() and config_path.exists():
        saved = {k: v for k, v in json.loads(config_path.read_text()).items() if k not in ("kdviz_version", "torch_version")}
        changed = sorted(k for k in set(saved) | set(config) if saved.get(k) != config.get(k))
        if changed:
            raise ValueError(f"cannot resume {run_dir}: it was started with different settings ({', '.join(changed)}); "
                             "resume with the same settings, or choose another out_dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    config.update(kdviz_version=__version__, torch_version=str(torch.__version__))
    config_path.write_text(json.dumps(config, indent=2))


def _save_run(run_dir, net, opt, sched, objective, gens, state, spec, data, improved) -> None:
    pd.DataFrame(state.history).to_csv(run_dir / "metrics.csv", index=False)
    if improved:  # net holds the best weights right now
        best = model_checkpoint(net, spec, data.info.name, epoch=state.best_epoch, val_top1_err=state.best_val[0])
        atomic_save(best, run_dir / "best.pt")
    atomic_save(
        model_checkpoint(
            net, spec, data.info.name,
            next_epoch=state.next_epoch, optimizer=opt.state_dict(), scheduler=sched.state_dict(),
            objective=objective.state_dict(), history=state.history, best_epoch=state.best_epoch, best_val=state.best_val,
            best_weights=state.best_weights, shuffle_rng=gens[0].get_state(), augment_rng=gens[1].get_state(), rng=_rng_states(),
            snapshots=[(r.sums, r.counts, r.sigma2, r.group_mass, r.n) for r in state.snapshots],
        ),
        run_dir / "last.pt",
    )


def _restore(path, net, opt, sched, objective, gens, info, cfg) -> _RunState:
    ckpt = load_checkpoint(path)
    net.load_state_dict(ckpt["state_dict"])
    opt.load_state_dict(ckpt["optimizer"])
    sched.load_state_dict(ckpt["scheduler"])
    objective.load_state_dict(ckpt["objective"])
    gens[0].set_state(ckpt["shuffle_rng"])
    gens[1].set_state(ckpt["augment_rng"])
    _set_rng_states(ckpt["rng"])
    return _RunState(
        next_epoch=ckpt["next_epoch"], history=ckpt["history"], best_val=tuple(ckpt["best_val"]), best_epoch=ckpt["best_epoch"],
        best_weights=ckpt["best_weights"],
        snapshots=[ICCReport(info, cfg.icc_tau, *snapshot) for snapshot in ckpt["snapshots"]],
    )


def _rng_states() -> dict:
    """The global generators (python, numpy, torch, cuda) as tensors and builtins, which a
    weights_only checkpoint can hold; kdviz's own shuffles use their own generators."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])

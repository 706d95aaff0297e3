"""A run's state, in memory (`Run`, `Progress`) and in its run directory (config.json, metrics.csv,
best.pt, last.pt), so that an interrupted run resumes to the very result of an uninterrupted one."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from .._version import __version__
from ..atomic import atomic_write
from ..correlation import ICCReport, true_icc
from ..data.base import DatasetSplits
from ..deprecations import with_new_keys
from ..losses import Objective
from .checkpoint import atomic_save, load_checkpoint, model_checkpoint
from .config import TrainConfig
from .distributed import DistContext
from .snapshots import snapshot_path
from .step import TrainStep
from .teacher import Teacher, check_same_teacher


@dataclass
class Progress:
    """What the epochs so far have produced: the history rows, the ICC snapshots, the best epoch."""

    next_epoch: int = 0
    history: list[dict] = field(default_factory=list)
    snapshots: list[ICCReport] = field(default_factory=list)
    best_val: tuple[float, float] = (float("inf"), float("inf"))
    best_epoch: int = -1
    best_weights: dict | None = None

    def record(self, row: dict, snapshot: ICCReport, model: nn.Module) -> bool:
        """Add one epoch's row and validation ICC; keep `model`'s weights if the epoch is the best so
        far. Returns whether it is."""
        self.history.append(row)
        self.snapshots.append(snapshot)
        # Ties in validation error are common on small splits: the validation loss breaks them.
        score = (row["val_top1_err"], row["val_loss"])
        improved = score < self.best_val
        if improved:
            self.best_val, self.best_epoch = score, row["epoch"]
            self.best_weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        self.next_epoch = row["epoch"] + 1
        return improved


@dataclass
class Run:
    """Everything an epoch of training reads, built once by train()."""

    model: nn.Module  # the model being trained: evaluated, selected and saved
    net: nn.Module  # what the step calls: `model`, wrapped for torchrun and/or torch.compile
    spec: dict  # how to rebuild `model`: registry name, kwargs, num_classes, image_shape
    objective: Objective
    teacher: Teacher | None
    data: DatasetSplits
    cfg: TrainConfig
    device: torch.device
    ctx: DistContext
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    shuffle_gen: torch.Generator  # the order of the training images
    augment_gen: torch.Generator  # random augmentation, or the teacher cache's choice of views
    run_dir: Path | None  # where checkpoints go (None: nowhere)
    progress: Progress = field(default_factory=Progress)
    step: TrainStep | None = None  # made once the teacher and `net` are final (train's _open)

    @property
    def writes(self) -> bool:
        """Whether this process writes the run directory (only the main rank does)."""
        return self.run_dir is not None and self.ctx.is_main


def check_run_dir(run: Run, resume: bool, config: dict) -> None:
    """Refuse a run directory that holds another run: a run to resume without resume=True, or one
    started with other settings (the teacher is compared against last.pt, in `restore`)."""
    last, config_path = run.run_dir / "last.pt", run.run_dir / "config.json"
    if last.exists() and not resume:
        done = load_checkpoint(last)["next_epoch"] >= run.cfg.epochs
        what = "a finished run" if done else "an unfinished run"
        raise FileExistsError(
            f"{run.run_dir} already holds {what}; pass resume=True (CLI --resume) to continue it, or choose another out_dir"
        )
    if resume and last.exists() and config_path.exists():
        ignored = ("kdviz_version", "torch_version", "teacher")
        saved = {k: v for k, v in json.loads(config_path.read_text()).items() if k not in ignored}
        # A setting that the run's older kdviz did not have, left at its default now, is no change.
        defaults = TrainConfig().to_dict()
        new = {
            k: v
            for k, v in config.items()
            if k not in ignored and (k in saved or k not in defaults or v != defaults[k])
        }
        changed = sorted(k for k in set(saved) | set(new) if saved.get(k) != new.get(k))
        if changed:
            raise ValueError(
                f"cannot resume {run.run_dir}: it was started with different settings ({', '.join(changed)}); "
                "resume with the same settings, or choose another out_dir"
            )


def run_config(run: Run, name: str) -> dict:
    """config.json's content, in the form it takes on disk (for comparing with a saved one)."""
    config = {
        "name": name,
        "dataset": run.data.info.name,
        "model": run.spec,
        "objective": run.objective.spec,
        "teacher": run.teacher.identity if run.teacher is not None else None,
        **run.cfg.to_dict(),
    }
    return json.loads(json.dumps(config, default=str))


def write_config(run: Run, config: dict) -> None:
    config = {**config, "kdviz_version": __version__, "torch_version": str(torch.__version__)}
    atomic_write(run.run_dir / "config.json", json.dumps(config, indent=2))


def save_run(run: Run, improved: bool, keep: bool) -> None:
    """After an epoch: metrics.csv, best.pt when the epoch is the best so far, last.pt (everything
    a resume needs), and epoch_<e>.pt when the epoch is one to keep."""
    p, name = run.progress, run.data.info.name
    # The epoch's validation ICC on its own, for explorers reading the run as it trains.
    atomic_save(p.snapshots[-1].to_dict(), snapshot_path(run.run_dir, p.next_epoch - 1))
    write_metrics(run)
    if improved:  # the model holds the best weights right now
        atomic_save(
            model_checkpoint(run.model, run.spec, name, epoch=p.best_epoch, val_top1_err=p.best_val[0]),
            run.run_dir / "best.pt",
        )
    atomic_save(
        model_checkpoint(
            run.model,
            run.spec,
            name,
            next_epoch=p.next_epoch,
            optimizer=run.opt.state_dict(),
            scheduler=run.sched.state_dict(),
            objective=run.objective.state_dict(),
            history=p.history,
            best_epoch=p.best_epoch,
            best_val=p.best_val,
            best_weights=p.best_weights,
            shuffle_rng=run.shuffle_gen.get_state(),
            augment_rng=run.augment_gen.get_state(),
            rng=rng_states(),
            snapshots=[(r.sums, r.counts, r.secondary_std, r.group_mass, r.n) for r in p.snapshots],
            teacher=run.teacher.identity if run.teacher is not None else None,
        ),
        run.run_dir / "last.pt",
    )
    if keep:
        row = p.history[-1]
        atomic_save(
            model_checkpoint(run.model, run.spec, name, epoch=row["epoch"], val_top1_err=row["val_top1_err"]),
            run.run_dir / f"epoch_{row['epoch']}.pt",
        )


def write_metrics(run: Run) -> None:
    """metrics.csv: the history, one row per epoch (test columns empty where the test split was not evaluated)."""
    atomic_write(run.run_dir / "metrics.csv", pd.DataFrame(run.progress.history).to_csv(index=False))


def recorded_choices(run_dir: Path, names: tuple[str, ...]) -> dict:
    """The settings among `names` that the run in `run_dir` recorded in its config.json as true or
    false ({} when it has none): a resumed run keeps the choices it started with."""
    path = run_dir / "config.json"
    saved = json.loads(path.read_text()) if path.is_file() else {}
    return {k: saved[k] for k in names if isinstance(saved.get(k), bool)}


def restore(run: Run, path: Path) -> Progress:
    """Load last.pt into the run (weights, optimizer, schedule, objective, generators); its progress."""
    ckpt = load_checkpoint(path)
    check_same_teacher(ckpt, run.teacher, path)
    run.model.load_state_dict(ckpt["state_dict"])
    run.opt.load_state_dict(ckpt["optimizer"])
    run.sched.load_state_dict(ckpt["scheduler"])
    run.objective.load_state_dict(ckpt["objective"])
    run.shuffle_gen.set_state(ckpt["shuffle_rng"])
    run.augment_gen.set_state(ckpt["augment_rng"])
    set_rng_states(ckpt["rng"])
    return Progress(
        next_epoch=ckpt["next_epoch"],
        history=[with_new_keys(row) for row in ckpt["history"]],  # last.pt of an earlier kdviz resumes too
        best_val=tuple(ckpt["best_val"]),
        best_epoch=ckpt["best_epoch"],
        best_weights=ckpt["best_weights"],
        snapshots=[
            ICCReport(run.data.info, run.cfg.icc_tau, *snapshot, truth=true_icc(run.data, run.cfg.icc_tau))
            for snapshot in ckpt["snapshots"]
        ],
    )


def rng_states() -> dict:
    """The global generators (python, numpy, torch, cuda) as tensors and builtins, which a
    weights_only checkpoint can hold; kdviz's own shuffles use their own generators."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])

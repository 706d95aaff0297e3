"""One epoch of training, and the evaluation after it.

The epoch runs the run's `TrainStep` (kdviz.train.step) on every batch. The step never waits for
the device: losses, error counts and the step at which a loss or the teacher's logits first turned
non-finite are kept on the device and read here once per epoch, with a check of the weights after
the epoch's last update.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..correlation import ICCAccumulator, ICCReport, true_icc
from ..data.augment import random_crop_flip
from ..data.base import DatasetSplits, Split
from ..data.loader import iterate_batches
from ..inference import predict_logits, topk_errors
from ..losses import Objective, StepOutputs
from .distributed import all_reduce
from .run import Run
from .step import step_outputs
from .teacher import Teacher

TEST_COLUMNS = ("test_loss", "test_top1_err", "test_top5_err")


def train_epoch(run: Run, epoch: int) -> dict:
    """One pass over the training split, a `TrainStep` per batch; the mean of each term, of the total
    loss and the top-1 error over the epoch, as {"train_<term>": ..., "train_loss": ..., "train_top1_err": ...}."""
    cfg, dev, objective, step = run.cfg, run.device, run.objective, run.step
    run.net.train()
    if run.teacher is not None:
        run.teacher.start_epoch(len(run.data.train), run.augment_gen)
    step.start_epoch()
    batches = iterate_batches(
        run.data.train,
        run.data.info,
        cfg.batch_size,
        dev,
        shuffle=True,
        generator=run.shuffle_gen,
        shard=(run.ctx.rank, run.ctx.world_size),
        augment=_augment(run),
        with_indices=True,
        drop_last=cfg.last_batch == "drop",
    )
    for x, y, idx in batches:
        step(x, y, idx)
    # The last step's update is seen by no loss of this epoch: the weights are checked, once.
    weights_bad = ~torch.stack(
        [torch.isfinite(p).all() for p in [*run.model.parameters(), *objective.parameters()]]
    ).all()
    first_bad = torch.cat([step.first_bad, torch.where(weights_bad, step.steps - 1, -1).view(1)])
    # Sums and counts, not per-rank means, are reduced: ranks may hold batches of unequal size.
    sums = all_reduce(step.sums.clone(), run.ctx)
    first_bad = all_reduce(first_bad, run.ctx, op="max").tolist()
    means = (sums[:-1] / sums[-1]).tolist()
    names = list(objective.terms)
    _stop_if_non_finite(run, epoch, first_bad, dict(zip(names, means)))
    stats = {f"train_{t}": v for t, v in zip(names, means)}
    stats["train_loss"] = means[len(names)]
    stats["train_top1_err"] = means[-1]
    return stats


@torch.no_grad()
def example_outputs(
    model: nn.Module, teacher: Teacher | None, objective: Objective, data: DatasetSplits, device: torch.device
) -> StepOutputs:
    """StepOutputs of the first validation batch, in eval mode: the shapes ModuleTerm.setup builds for."""
    x, y = next(iterate_batches(data.val, data.info, 2, device))
    was_training = model.training
    model.eval()
    try:
        return step_outputs(model, teacher, objective, x, y, torch.arange(len(y), device=device))
    finally:
        model.train(was_training)


def average_term_gradients(run: Run) -> None:
    """Under torchrun, DDP averages the model's gradients over ranks; the trainable terms' are
    averaged here, so that every rank keeps the same term parameters."""
    for p in run.objective.parameters():
        if p.grad is not None:
            all_reduce(p.grad, run.ctx).div_(run.ctx.world_size)


def _augment(run: Run):
    """How this epoch's training images are shown: in the views a teacher cache holds logits for,
    else with the dataset's random augmentation (if it has one and cfg.augment), else as they are."""
    if run.teacher is not None and run.teacher.chooses_views:
        return run.teacher.images
    if run.cfg.augmented(run.data.info):
        padding, generator = run.data.info.augment_padding, run.augment_gen
        return lambda images, idx: random_crop_flip(images, padding, generator)
    return None


def _stop_if_non_finite(run: Run, epoch: int, first_bad: list[int], means: dict[str, float]) -> None:
    """Raise FloatingPointError if a teacher logit, a loss or, after the epoch's last update, a
    weight turned non-finite during `epoch`. first_bad: the first step at which each did, or -1,
    as [loss, (teacher logits,) weights]."""
    loss_step, weights_step = first_bad[0], first_bad[-1]
    teacher_step = first_bad[1] if len(first_bad) == 3 else -1
    if teacher_step >= 0:
        raise FloatingPointError(
            f"the teacher's logits are not finite (NaN or inf) at epoch {epoch}, step {teacher_step}; teacher: "
            f"{run.teacher.label}. {_kept(run, epoch)} Check that teacher's outputs on the training images, "
            "or retrain it."
        )
    if loss_step >= 0:
        bad_terms = [t for t, v in means.items() if not np.isfinite(v)] or ["total"]
        raise FloatingPointError(
            f"loss became non-finite at epoch {epoch}, step {loss_step} (term(s): {', '.join(bad_terms)}); "
            f"{_kept(run, epoch)} Lower the lr or the weight of that term."
        )
    if weights_step >= 0:
        raise FloatingPointError(
            f"the model's weights became non-finite in the update of epoch {epoch}, step {weights_step} (its last); "
            f"{_kept(run, epoch)} Lower the lr."
        )


def _kept(run: Run, epoch: int) -> str:
    """What a run that stops during `epoch` leaves behind."""
    if run.run_dir is None:
        return "Nothing was saved (no out_dir)."
    if epoch > 0:
        return f"The last good checkpoint, {run.run_dir / 'last.pt'} (after epoch {epoch - 1}), is kept."
    return (
        f"No checkpoint exists yet: it stopped in the run's first epoch, before {run.run_dir / 'last.pt'} was written."
    )


def evaluate(run: Run, with_test: bool) -> tuple[dict, ICCReport]:
    """Loss and top-1/top-5 error of the model on the validation split (its fixed subset of
    cfg.val_subset images, when set) and, when `with_test`, on the test split, with the ICC of its
    validation predictions and their secondary std (and group mass, where the dataset has groups; and
    the ICC's distance and rank correlation to the true ICC, where the dataset has one: `planted`)."""
    data, dev = run.data, run.device
    row, logits, labels = split_scores(run, validation_part(data, run.cfg), "val")
    acc = ICCAccumulator(data.info, run.cfg.icc_tau, device=dev, truth=true_icc(data, run.cfg.icc_tau))
    acc.update(logits, labels)
    report = acc.report()
    row["val_secondary_std"] = report.secondary_std
    if report.group_mass is not None:
        row["val_group_mass"] = report.group_mass
    if report.truth is not None:
        row["val_truth_distance"], row["val_truth_rank"] = report.truth_distance, report.truth_rank
    # Empty (None; NaN in a DataFrame) test columns when the test split is not evaluated: every row
    # has the same columns, and `train` fills in the chosen epoch's at the end.
    row.update(split_scores(run, data.test, "test")[0] if with_test else dict.fromkeys(TEST_COLUMNS))
    return row, report


def validation_part(data: DatasetSplits, cfg) -> Split:
    """The validation images a run evaluates: all, or cfg.val_subset of them drawn from cfg.seed
    (the same images every epoch, and on resume)."""
    if 0 < cfg.val_subset < len(data.val):
        chosen = torch.randperm(len(data.val), generator=torch.Generator().manual_seed(cfg.seed))[: cfg.val_subset]
        return data.val.subset(chosen)
    return data.val


def split_scores(run: Run, part: Split, split: str) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """{split}_loss, {split}_top1_err and {split}_top5_err of the model on the images of `part`,
    with its logits [N, C] and the labels [N] (on the run's device)."""
    logits = predict_logits(run.model, part, run.data.info, run.device)
    labels = part.labels.to(run.device)
    errs = topk_errors(logits, labels)
    scores = {
        f"{split}_loss": float(F.cross_entropy(logits, labels)),
        f"{split}_top1_err": float(errs[1]),
        f"{split}_top5_err": float(errs[5]),
    }
    return scores, logits, labels

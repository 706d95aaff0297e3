"""One training step as a function of tensors, so that torch.compile can capture it whole.

A step is: the forward pass of the trained model (and the teacher, or its cached logits), every
loss term, the running metrics, the backward pass and the optimizer's update. Nothing in it
waits for the device or branches on a tensor's value, and everything that changes during
training is a tensor updated in place:

- the running sums of the epoch (each term, the total, the errors, the samples) and the first
  step at which a loss or a teacher logit was not finite, with the step counter they read;
- the terms' per-epoch state: DKD's warm-up ramp, the consensus terms' target and its switch,
  CRD's memory bank (kdviz/losses);
- the teacher cache's choice of views for the epoch (kdviz.train.teacher);
- the learning rate, once `compile` has made it a tensor.

With TrainConfig.last_batch = "drop" every step has the same shapes; a step then needs one graph
from its second call on (the first makes the terms' state tensors, and CRD's first batch sets
its normalising constants). `TrainStep.compile` compiles it as PyTorch documents: the forward
pass with the loss and the metrics as one graph (fullgraph=True: a graph break is an error), the
backward pass through autograd, and the optimizer's update as a compiled optimizer whose learning
rate is a tensor the schedule fills in place (so a new rate is no recompilation). In eager mode
(the trainer's) a step computes exactly what the loop before it did: the same operations in the
same order.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable

import torch
from torch import nn

from ..losses import Objective, StepOutputs
from .teacher import Teacher


class TrainStep:
    """`step(x, y, idx)` trains `net` on one batch: images x [B, C, H, W], labels y [B] and their
    indices idx [B] in the training split.

    Running metrics, read once per epoch: `sums` float64 [T + 3] = (sum over the epoch's samples of
    each of the T terms' values, of the total loss, the number of top-1 errors, the number of
    samples) and `first_bad` int64 [1 or 2], the first step of the epoch whose loss (and, with a
    teacher, whose teacher logits) were not finite, or -1. `start_epoch` resets them in place.
    average_terms: called after the backward pass under torchrun (the trainable terms' gradients
    are averaged over ranks; DDP averages the model's).
    """

    def __init__(
        self,
        net: nn.Module,
        objective: Objective,
        teacher: Teacher | None,
        opt: torch.optim.Optimizer,
        device: torch.device,
        *,
        amp: bool = False,
        channels_last: bool = False,
        average_terms: Callable[[], None] | None = None,
    ):
        self.net, self.objective, self.teacher, self.opt = net, objective, teacher, opt
        self.channels_last, self.average_terms = channels_last, average_terms
        self.autocast = (
            functools.partial(torch.autocast, "cuda", dtype=torch.bfloat16)
            if amp and device.type == "cuda"
            else contextlib.nullcontext
        )
        self.sums = torch.zeros(len(objective.terms) + 3, device=device, dtype=torch.float64)
        self.first_bad = torch.full((1 if teacher is None else 2,), -1, device=device)
        self.steps = torch.zeros((), dtype=torch.int64, device=device)  # steps so far in the epoch

    def start_epoch(self) -> None:
        self.sums.zero_()
        self.first_bad.fill_(-1)
        self.steps.zero_()

    def __call__(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> None:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        total = self.loss(x, y, idx)
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        if self.average_terms is not None:
            self.average_terms()
        self.update()

    def loss(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """The forward pass: the weighted total loss (scalar), with the running metrics added in place."""
        with self.autocast():
            out = step_outputs(self.net, self.teacher, self.objective, x, y, idx)
            total, parts = self.objective(out)
        with torch.no_grad():
            values = torch.stack([*parts.values(), total.detach()]).double()
            b = y.shape[0]
            self.sums[:-2] += values * b
            self.sums[-2] += (out.logits.argmax(1) != y).sum()
            self.sums[-1] += b
            checked = [values] if self.teacher is None else [values, out.teacher_logits]
            bad = torch.stack([~torch.isfinite(t).all() for t in checked])
            self.first_bad.copy_(torch.where(bad & (self.first_bad < 0), self.steps, self.first_bad))
            self.steps += 1
        return total

    def update(self) -> None:
        """The optimizer's update, from the gradients of the backward pass."""
        self.opt.step()

    def compile(self, **options) -> TrainStep:
        """Compile this step in place (and return it): `loss` with fullgraph=True, `update` as a
        compiled optimizer, after the optimizer's learning rates become float64 tensors (the value
        is unchanged; LR schedulers fill such a tensor in place). options: torch.compile's
        (backend=, mode=, ...)."""
        for group in self.opt.param_groups:
            if not isinstance(group["lr"], torch.Tensor):
                group["lr"] = torch.tensor(group["lr"], dtype=torch.float64)
        self.loss = torch.compile(self.loss, fullgraph=True, **options)
        self.update = torch.compile(self.update, **options)
        return self


def step_outputs(
    net, teacher: Teacher | None, objective: Objective, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor
) -> StepOutputs:
    """What `net` and the teacher give on batch x (labels y, training indices idx): the logits, and the
    fields the objective reads (Objective.inputs) among features, teacher_features, stages,
    teacher_stages and indices. The named stages come with the logits from one forward pass; "pool"
    is the features."""
    wanted = objective.inputs
    if wanted & {"features", "stages"}:
        logits, stages = net(x, return_stages=True)
    else:
        logits, stages = net(x), None
    teacher_logits = teacher_stages = None
    if teacher is not None:
        teacher_logits, teacher_stages = teacher(x, idx, features=objective.reads_teacher_features)

    def pick(field, value):
        return value if field in wanted else None

    return StepOutputs(
        logits,
        y,
        teacher_logits,
        pick("features", stages and stages["pool"]),
        pick("teacher_features", teacher_stages and teacher_stages["pool"]),
        pick("indices", idx),
        pick("stages", stages),
        pick("teacher_stages", teacher_stages),
    )

"""The terms whose target is a class consensus frozen at each epoch's end: the expressive
teacher's ICC regulariser ("icc_teacher"), its variant with a fixed reference model's consensus
("icc_consensus_ref") and Online Label Smoothing ("online_label_smoothing"). Their losses are in
`icc.py`; the consensus they accumulate is `consensus.ClassConsensus`.
"""

from __future__ import annotations

import torch

from . import icc
from .consensus import ClassConsensus
from .terms import LossTerm, StepOutputs, register_term_class


class _ConsensusTerm(LossTerm):
    """Shared machinery of the terms whose target is a class consensus frozen at each epoch's end.

    A subclass says how the consensus matrix becomes target rows (`_rows`) and what it compares
    with them (`_loss`); the consensus is of the trained model's own logits unless the subclass
    picks others (`_consensus_logits`).

    The target [C, C] and its switch `active` (0 until an epoch has ended, then 1) are tensors on
    the step's device, made at the first step and then updated in place at each epoch's end, so
    that every step computes the same thing: active * loss(target). Before the first epoch ends the
    target is a placeholder with finite loss (the rows of a consensus that found no class), and the
    product is exactly 0, as are its gradients; a step captured as a graph (kdviz.train.step)
    never branches on whether a target exists.
    """

    inputs = ("targets",)

    def __init__(self, tau: float, ema: float, **params):
        if not 0.0 <= ema < 1.0:
            raise ValueError(f"ema must be in [0, 1), got {ema}")
        super().__init__(tau=tau, ema=ema, **params)
        self.consensus = ClassConsensus(tau)
        self.has_target = False  # whether an epoch has ended: `active`, on the host
        self.target: torch.Tensor | None = None  # [C, C] float32
        self.active: torch.Tensor | None = None  # 0-dim, on the step's device once a step has run

    def _consensus_logits(self, out: StepOutputs) -> torch.Tensor:
        return out.logits

    def _rows(self, icc_matrix: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _loss(self, out: StepOutputs, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _place(self, logits: torch.Tensor) -> None:
        """Put the target and its switch on the device of `logits` (once; and after a restore, whose
        target is on the CPU: copying it every step would block the host each time)."""
        c = logits.shape[1]
        if self.target is None:
            self.target = self._rows(torch.full((c, c), float("nan"), device=logits.device))
        self.target = self.target.to(logits.device)
        self.active = torch.tensor(float(self.has_target), device=logits.device)

    def __call__(self, out: StepOutputs) -> torch.Tensor:
        if self.active is None or self.active.device != out.logits.device:
            self._place(out.logits)
        self.consensus.update(self._consensus_logits(out), out.targets)
        return self.active * self._loss(out, self.target.to(out.logits.dtype))

    def end_epoch(self) -> None:
        matrix = self.consensus.finish_epoch()
        if matrix is None:
            return
        rows = self._rows(matrix)
        ema = self.params["ema"]
        self.target.copy_(rows if not self.has_target or ema == 0 else ema * self.target + (1 - ema) * rows)
        self.active.fill_(1.0)
        self.has_target = True

    def state_dict(self) -> dict:
        return {"target": self.target.clone() if self.has_target else None}

    def load_state_dict(self, state: dict) -> None:
        self.target, self.active = state["target"], None  # placed on the device by the next step
        self.has_target = self.target is not None


@register_term_class("icc_teacher")
class TeacherICCTerm(_ConsensusTerm):
    """The expressive-teacher regulariser, tau^2 * mean_i KL(T[y_i] || q_i) (docs/method.md §2).

    T is last epoch's secondary ICC over correctly classified training samples, sharpened by
    `power` and optionally smoothed across epochs by `ema`. It is 0 until the first epoch ends.
    """

    def __init__(self, tau: float = 4.0, power: float = 1.0, ema: float = 0.0):
        super().__init__(tau=tau, ema=ema, power=power)

    def _rows(self, icc_matrix):
        return icc.sharpen_rows(icc.secondary_icc(icc_matrix), self.params["power"])

    def _loss(self, out, target):
        return icc.teacher_icc_regularizer(out.logits, out.targets, target, self.params["tau"])


@register_term_class("icc_consensus_ref")
class ReferenceICCTerm(TeacherICCTerm):
    """Like "icc_teacher", but its consensus T comes from a fixed reference model, passed as teacher=.

    T is the secondary ICC of the reference's predictions (softened at tau) over the training
    samples the reference classifies correctly, sharpened by `power` and rebuilt at each epoch's
    end; the trained model's own predictions never enter it, so it cannot run away with them.
    0 until the first epoch ends.
    """

    inputs = ("targets", "teacher_logits")

    def __init__(self, tau: float = 4.0, power: float = 1.0):
        super().__init__(tau=tau, power=power)

    def _consensus_logits(self, out):
        return out.teacher_logits


@register_term_class("online_label_smoothing")
class OnlineLabelSmoothingTerm(_ConsensusTerm):
    """Online Label Smoothing (Zhang et al. 2021): cross-entropy to last epoch's full class-mean
    prediction S[y_i] over correctly classified samples; 0 until the first epoch ends.

    Use it beside "ce" (the paper mixes the two half and half). Classes with no correct sample
    fall back to the one-hot label.
    """

    def __init__(self, tau: float = 1.0, ema: float = 0.0):
        super().__init__(tau=tau, ema=ema)

    def _rows(self, icc_matrix):
        eye = torch.eye(icc_matrix.shape[0], dtype=icc_matrix.dtype, device=icc_matrix.device)
        return torch.where(torch.isnan(icc_matrix), eye, icc_matrix)

    def _loss(self, out, target):
        return -(target[out.targets] * torch.log_softmax(out.logits, dim=1)).sum(1).mean()

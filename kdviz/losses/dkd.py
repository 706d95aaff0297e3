"""Decoupled Knowledge Distillation (Zhao et al., "Decoupled Knowledge Distillation", CVPR 2022).

With p = softmax(z / tau) over C classes and t the target class of a sample, KD's KL divergence
splits exactly into a target part and a non-target part:

    KL(p^T || p^S) = KL(b^T || b^S) + (1 - p^T_t) * KL(p_hat^T || p_hat^S)
                     \\_____TCKD____/                   \\________NCKD________/

b = [p_t, 1 - p_t] is the binary target / rest distribution, and p_hat is the softmax over the
C - 1 non-target logits (the distribution among the wrong classes). KD thus weighs NCKD by the
teacher's non-target mass, which is small exactly where the teacher is confident. DKD drops that
coupling and weighs the two parts freely:

    DKD = tau^2 * mean_i (alpha * TCKD_i + beta * NCKD_i)

The authors train with CE + DKD and ramp DKD linearly from 0 over the first `warmup` epochs
(`DKDTerm`, the loss term "dkd").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .checks import check_tau
from .classic import kl_divergence
from .terms import LossTerm, StepOutputs, register_term_class


def target_probabilities(logits: torch.Tensor, targets: torch.Tensor, tau: float) -> torch.Tensor:
    """b = [p_t, 1 - p_t] of softmax(logits / tau): logits [B, C], targets [B] -> [B, 2] log-probabilities.

    Both parts come from log-softmax (log p_t and log of the summed non-target probabilities) so
    that a confident model's 1 - p_t does not round to log 0.
    """
    log_p = F.log_softmax(logits / tau, dim=1)
    is_target = F.one_hot(targets, logits.shape[1]).bool()
    log_target = log_p.gather(1, targets[:, None])
    log_rest = torch.logsumexp(log_p.masked_fill(is_target, float("-inf")), dim=1, keepdim=True)
    return torch.cat([log_target, log_rest], dim=1)


def nontarget_distribution(logits: torch.Tensor, targets: torch.Tensor, tau: float) -> torch.Tensor:
    """p_hat: log-softmax over the non-target logits / tau: [B, C] -> [B, C], -inf at the target."""
    is_target = F.one_hot(targets, logits.shape[1]).bool()
    return F.log_softmax((logits / tau).masked_fill(is_target, float("-inf")), dim=1)


def tckd(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor, tau: float = 4.0
) -> torch.Tensor:
    """Target-class KD per sample, KL(b^T || b^S): [B, C], [B, C], [B] -> [B] (no tau^2)."""
    teacher = target_probabilities(teacher_logits.detach(), targets, tau)
    return kl_divergence(teacher, target_probabilities(student_logits, targets, tau))


def nckd(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor, tau: float = 4.0
) -> torch.Tensor:
    """Non-target-class KD per sample, KL(p_hat^T || p_hat^S): [B, C], [B, C], [B] -> [B] (no tau^2).

    The target entries are -inf on both sides and count as 0 (`kl_divergence` sets 0 log 0 = 0).
    """
    teacher = nontarget_distribution(teacher_logits.detach(), targets, tau)
    return kl_divergence(teacher, nontarget_distribution(student_logits, targets, tau))


def dkd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    tau: float = 4.0,
    alpha: float = 1.0,
    beta: float = 8.0,
) -> torch.Tensor:
    """tau^2 * mean_i (alpha * TCKD_i + beta * NCKD_i): [B, C], [B, C], [B] -> scalar.

    Defaults are the authors' CIFAR-100 settings (alpha 1, beta 8, tau 4); the teacher is detached.
    """
    check_tau(tau)
    if not (alpha >= 0 and beta >= 0):
        raise ValueError(f"DKD weights alpha and beta must be >= 0, got alpha={alpha}, beta={beta}")
    per_sample = alpha * tckd(student_logits, teacher_logits, targets, tau) + beta * nckd(
        student_logits, teacher_logits, targets, tau
    )
    return tau**2 * per_sample.mean()


def warmup_factor(epoch: int, warmup: int) -> float:
    """min((epoch + 1) / warmup, 1) for a 0-based epoch: the authors' linear ramp of the DKD loss
    (their epochs count from 1), so epoch 0 already trains with 1 / warmup of it; warmup 0 means none."""
    if warmup < 0:
        raise ValueError(f"DKD warmup must be a number of epochs >= 0, got {warmup}")
    return 1.0 if warmup == 0 else min((epoch + 1) / warmup, 1.0)


@register_term_class("dkd")
class DKDTerm(LossTerm):
    """Decoupled KD (Zhao et al. 2022), tau^2 * mean_i (alpha TCKD_i + beta NCKD_i) (`dkd_loss`),
    ramped linearly from 1 / warmup at epoch 0 to its full weight at epoch warmup - 1.

    The authors' CIFAR-100 setting is {"ce": 1, "dkd": {"alpha": 1, "beta": 8, "tau": 4}} with a
    20-epoch warm-up. Its only state is the number of finished epochs, kept in the checkpoint. The
    ramp is a 0-dim tensor on the step's device (made at the first step, then set in place at each
    epoch's end), so that a step captured as a graph (kdviz.train.step) reads the new value every
    epoch; it is held in float32, or float64 for float64 logits, and multiplies the loss exactly as
    a Python float would.
    """

    inputs = ("teacher_logits", "targets")

    def __init__(self, tau: float = 4.0, alpha: float = 1.0, beta: float = 8.0, warmup: int = 20):
        if not (alpha >= 0 and beta >= 0):
            raise ValueError(f"DKD weights alpha and beta must be >= 0, got alpha={alpha}, beta={beta}")
        warmup_factor(0, warmup)  # checks warmup
        super().__init__(tau=tau, alpha=alpha, beta=beta, warmup=warmup)
        self.epoch = 0
        self.ramp: torch.Tensor | None = None

    def __call__(self, out: StepOutputs) -> torch.Tensor:
        p = self.params
        if self.ramp is None or self.ramp.device != out.logits.device:
            dtype = torch.float64 if out.logits.dtype == torch.float64 else torch.float32
            self.ramp = torch.tensor(warmup_factor(self.epoch, p["warmup"]), dtype=dtype, device=out.logits.device)
        return self.ramp * dkd_loss(out.logits, out.teacher_logits, out.targets, p["tau"], p["alpha"], p["beta"])

    def end_epoch(self) -> None:
        self.epoch += 1
        if self.ramp is not None:
            self.ramp.fill_(warmup_factor(self.epoch, self.params["warmup"]))

    def state_dict(self) -> dict:
        return {"epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.ramp = state.get("epoch", 0), None

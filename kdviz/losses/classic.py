"""The standard terms: cross-entropy, label smoothing and Hinton's KD.

Every function is pure: tensors in, a scalar tensor out, a mean over the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .checks import check_tau


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """logits [B, C], targets [B] int64 -> mean_i -log softmax(z_i)[y_i]."""
    return F.cross_entropy(logits, targets)


def label_smoothing(logits: torch.Tensor, targets: torch.Tensor, eps: float = 0.1) -> torch.Tensor:
    """Cross-entropy to (1 - eps) * onehot(y) + eps / C (Szegedy et al. 2016).

    logits [B, C], targets [B] -> scalar. A negative control for teachers: it flattens the
    non-target probabilities, which is known to make a worse teacher (Mueller et al. 2019).
    This is label smoothing; the "LS" of recent KD papers, logit standardization (Sun et al.,
    CVPR 2024), is the `logit_std=True` parameter of a distillation term (kdviz/losses/standardize.py).
    """
    if not 0.0 <= eps < 1.0:
        raise ValueError(f"label smoothing eps must be in [0, 1), got {eps}")
    return F.cross_entropy(logits, targets, label_smoothing=eps)


def kl_divergence(p_log: torch.Tensor, q_log: torch.Tensor) -> torch.Tensor:
    """Row-wise KL(p || q) from log-probabilities [B, K] -> [B], with 0 log 0 = 0."""
    p = p_log.exp()
    return torch.where(p > 0, p * (p_log - q_log), torch.zeros_like(p)).sum(-1)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float = 4.0) -> torch.Tensor:
    """Hinton et al. 2015: tau^2 * mean_i KL(softmax(t_i / tau) || softmax(s_i / tau)).

    student_logits, teacher_logits [B, C] -> scalar. The teacher side is detached; the tau^2
    keeps the gradient scale independent of tau.
    """
    check_tau(tau)
    p_t = F.log_softmax(teacher_logits.detach() / tau, dim=-1)
    p_s = F.log_softmax(student_logits / tau, dim=-1)
    return tau**2 * kl_divergence(p_t, p_s).mean()


def asymmetric_kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    tau: float = 4.0,
    tau_target: float = 4.0,
    tau_nontarget: float = 2.0,
) -> torch.Tensor:
    """KD from an asymmetrically softened teacher (Li et al. 2022, "Asymmetric Temperature Scaling
    Makes Larger Networks Teach Well Again"): tau^2 * mean_i KL(p_t,i || softmax(s_i / tau)).

    student_logits, teacher_logits [B, C], targets [B] -> scalar. p_t,i = softmax of the teacher's
    logits with the target one divided by tau_target and the others by tau_nontarget. A lower
    tau_nontarget spreads the teacher's wrong-class probabilities further apart, so that a
    confident teacher still shows which wrong classes it finds close. With
    tau_target == tau_nontarget == tau this is `kd_loss`.
    """
    for name, value in (("tau", tau), ("tau_target", tau_target), ("tau_nontarget", tau_nontarget)):
        check_tau(value, name)
    teacher = teacher_logits.detach()
    is_target = F.one_hot(targets, teacher.shape[1]).bool()
    p_t = F.log_softmax(torch.where(is_target, teacher / tau_target, teacher / tau_nontarget), dim=-1)
    p_s = F.log_softmax(student_logits / tau, dim=-1)
    return tau**2 * kl_divergence(p_t, p_s).mean()

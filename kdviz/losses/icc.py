"""Inter-class correlation (ICC) matrices and the teacher's ICC regulariser (docs/method.md §1-2).

Notation: B samples, C classes, P = softmax(z / tau) row-wise, Y one-hot labels, n = Y^T 1.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F

from .checks import check_tau


def autocast_off(device: torch.device):
    """A context with autocast off for `device`'s type where it is on; nothing to undo elsewhere
    (devices without autocast, such as meta, refuse torch.autocast itself)."""
    try:
        on = torch.is_autocast_enabled(device.type)
    except RuntimeError:
        on = False
    return torch.autocast(device.type, enabled=False) if on else contextlib.nullcontext()


def at_least_float32(t: torch.Tensor) -> torch.Tensor:
    """`t` in float32 when it is in a 16-bit float type, else unchanged (float64 stays float64)."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def class_sums(
    probs: torch.Tensor, targets: torch.Tensor, num_classes: int, weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Y^T P and n: probs [B, C], targets [B] -> (sums [C, C], counts [C]), in float32 at least.

    Kept separate from the division so that callers can add sums and counts over batches and
    processes, and divide once (a mean of per-batch means would weight batches, not samples).
    weights [B] (0 or 1) leaves samples out, by multiplication: a boolean index would sync with
    the host. A sample whose probabilities are not all finite is left out too, since in the product
    its 0 * NaN would turn the row of every class to NaN, which reads as "class absent".
    Autocast is off inside: in bf16 the sums lose about 1 % at C = 10.
    """
    with autocast_off(probs.device):
        probs = at_least_float32(probs)
        finite = torch.isfinite(probs).all(1, keepdim=True)
        onehot = F.one_hot(targets, num_classes).to(probs.dtype) * finite
        if weights is not None:
            onehot = onehot * weights.to(probs.dtype).unsqueeze(1)
        return onehot.T @ torch.where(finite, probs, 0.0), onehot.sum(0)


def icc_from_sums(sums: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """M = diag(n)^-1 Y^T P: [C, C]; rows of classes with no sample are NaN, never 0."""
    counts = counts.to(sums.dtype).unsqueeze(1)
    return torch.where(counts > 0, sums / counts.clamp_min(1), torch.full_like(sums, float("nan")))


def class_conditional_icc(probs: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """M[k, j] = mean of P[i, j] over the samples i of class k. probs [B, C], targets [B] -> [C, C]."""
    return icc_from_sums(*class_sums(probs, targets, num_classes))


def secondary_icc(icc: torch.Tensor) -> torch.Tensor:
    """M2[k, j] = M[k, j] / (1 - M[k, k]) for j != k, zero diagonal. [C, C] -> [C, C].

    Removes the target confidence and leaves the class-to-class structure. NaN rows stay NaN;
    a row with no off-diagonal mass at all stays 0.
    """
    eye = torch.eye(icc.shape[0], dtype=torch.bool, device=icc.device)
    off_diagonal = icc.masked_fill(eye, 0.0)
    # The off-diagonal sum equals 1 - M[k, k] exactly, but unlike it does not cancel to 0 in
    # float32 when a class is predicted with near certainty.
    rest = off_diagonal.sum(1, keepdim=True).clamp_min(torch.finfo(icc.dtype).tiny)
    return off_diagonal / rest


def sharpen_rows(m2: torch.Tensor, power: float = 1.0) -> torch.Tensor:
    """T[k] ~ M2[k]^power, renormalised over j != k; rows that are NaN or all zero become uniform.

    m2 [C, C] with zero diagonal -> [C, C] with zero diagonal, each row summing to 1.
    """
    if not power > 0:
        raise ValueError(f"sharpening power must be > 0, got {power}")
    c = m2.shape[0]
    off_diag = ~torch.eye(c, dtype=torch.bool, device=m2.device)
    t = torch.nan_to_num(m2, nan=0.0).clamp_min(0) ** power * off_diag
    mass = t.sum(1, keepdim=True)
    uniform = off_diag.to(m2.dtype) / (c - 1)
    return torch.where(mass > 0, t / mass.clamp_min(torch.finfo(m2.dtype).tiny), uniform)


def nontarget_log_probs(logits: torch.Tensor, targets: torch.Tensor, tau: float) -> torch.Tensor:
    """log q_i: log-softmax over the non-target logits {z_ij / tau : j != y_i}.

    logits [B, C], targets [B] -> [B, C] with -inf at the target column.
    """
    target_mask = F.one_hot(targets, logits.shape[1]).bool()
    return F.log_softmax((logits / tau).masked_fill(target_mask, float("-inf")), dim=1)


def teacher_icc_regularizer(
    logits: torch.Tensor, targets: torch.Tensor, target_rows: torch.Tensor, tau: float = 4.0
) -> torch.Tensor:
    """tau^2 * mean_i KL(T[y_i] || q_i), the expressive-teacher term of docs/method.md §2.

    logits [B, C], targets [B], target_rows T [C, C] (rows sum to 1, zero diagonal, detached)
    -> scalar. q_i is the softmax over sample i's non-target logits at temperature tau.
    """
    check_tau(tau)
    t = target_rows.detach()[targets]
    log_q = nontarget_log_probs(logits, targets, tau)
    log_t = torch.log(t.clamp_min(torch.finfo(t.dtype).tiny))
    kl = torch.where(t > 0, t * (log_t - log_q), torch.zeros_like(t)).sum(1)
    return tau**2 * kl.mean()


def secondary_entropy(logits: torch.Tensor, targets: torch.Tensor, tau: float = 4.0) -> torch.Tensor:
    """mean_i H(q_i) / log(C - 1): the entropy of each sample's non-target distribution, in [0, 1].

    logits [B, C], targets [B] -> scalar. q_i is the softmax over sample i's non-target logits at
    temperature tau: 1 when the wrong classes share the rest equally, near 0 when one wrong class
    takes it all. Minimising it spreads the secondary probabilities apart (raises the secondary std); pair it
    with "icc_teacher", which keeps that spread consistent within each class. C = 2 raises a
    ValueError: the single non-target class has no spread to shape (log(C - 1) = 0).
    """
    check_tau(tau)
    c = logits.shape[1]
    if c < 3:
        raise ValueError(
            f"secondary_entropy needs C >= 3 classes, got C = {c}: with one non-target class there is "
            "no spread of secondary probabilities to shape"
        )
    log_q = nontarget_log_probs(logits, targets, tau)
    # The target column is -inf; zeroing it, not masking the product, keeps 0 * -inf (NaN) out of
    # the gradient.
    h = -(log_q.exp() * torch.nan_to_num(log_q, neginf=0.0)).sum(1)
    return h.mean() / math.log(c - 1)

"""Student-side ICC mimic terms (docs/method.md §3) and DIST.

All terms are label-free unless they say otherwise, detach the teacher, and are invariant to
repeating the batch: each matrix is normalised before it is compared (docs/method.md §3, "Scale
conventions").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .checks import check_tau
from .classic import kl_divergence
from .icc import at_least_float32, autocast_off, class_sums


def batch_class_gram(probs: torch.Tensor) -> torch.Tensor:
    """G = P^T P / B: probs [B, C] -> [C, C], the batch's joint distribution over pairs of classes.

    Non-negative and summing to exactly 1 (each row of P sums to 1), whatever B is. In float32
    even under autocast: in bf16 the loss is off by about 1 % and its gradient by 2 % at C = 10.
    """
    with autocast_off(probs.device):
        probs = at_least_float32(probs)
        return probs.T @ probs / probs.shape[0]


def _gram_pair(student_logits, teacher_logits, tau):
    check_tau(tau)
    g_s = batch_class_gram(F.softmax(student_logits / tau, dim=1))
    g_t = batch_class_gram(F.softmax(teacher_logits.detach() / tau, dim=1))
    return g_s, g_t


def icc_mimic_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float = 4.0) -> torch.Tensor:
    """tau^2 * KL(G_t || G_s) over the C*C entries of the two joint distributions.

    student_logits, teacher_logits [B, C] -> scalar; 0 when the two agree.
    """
    g_s, g_t = _gram_pair(student_logits, teacher_logits, tau)
    tiny = torch.finfo(g_s.dtype).tiny
    log_t = g_t.clamp_min(tiny).log().reshape(1, -1)
    log_s = g_s.clamp_min(tiny).log().reshape(1, -1)
    return tau**2 * kl_divergence(log_t, log_s).squeeze(0)


def icc_mimic_frobenius(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float = 4.0) -> torch.Tensor:
    """||G_s - G_t||_F^2 on the normalised G. [B, C] x 2 -> scalar."""
    g_s, g_t = _gram_pair(student_logits, teacher_logits, tau)
    return (g_s - g_t).pow(2).sum()


def pearson_columns(probs: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Correlation between class columns across the batch: probs [B, C] -> [C, C] in [-1, 1].

    A column that is constant over the batch has norm 0, and correlates 0 with every column: its
    squared norm is clamped at the smallest normal float before the square root, whose gradient
    at 0 is infinite (and times 0, NaN). In float32 even under autocast, as batch_class_gram.
    """
    with autocast_off(probs.device):
        probs = at_least_float32(probs)
        centred = probs - probs.mean(0, keepdim=True)
        squared = centred.pow(2).sum(0, keepdim=True)
        unit = centred / (squared.clamp_min(torch.finfo(squared.dtype).tiny).sqrt() + eps)
        return unit.T @ unit


def icc_mimic_pearson(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float = 4.0) -> torch.Tensor:
    """Mean squared difference of the Pearson-normalised G: mean_jk (R_s - R_t)[j, k]^2. -> scalar."""
    check_tau(tau)
    r_s = pearson_columns(F.softmax(student_logits / tau, dim=1))
    r_t = pearson_columns(F.softmax(teacher_logits.detach() / tau, dim=1))
    return (r_s - r_t).pow(2).mean()


def class_conditional_mimic(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor, tau: float = 4.0
) -> torch.Tensor:
    """tau^2 * sum_k (n_k / B) KL(M_t[k] || M_s[k]) over the classes k present in the batch.

    [B, C] x 2, targets [B] -> scalar. Weighting class rows by their share of the batch keeps the
    term a mean over samples, so it does not grow with the number of classes present.
    """
    check_tau(tau)
    c = student_logits.shape[1]
    sums_s, counts = class_sums(F.softmax(student_logits / tau, dim=1), targets, c)
    sums_t, _ = class_sums(F.softmax(teacher_logits.detach() / tau, dim=1), targets, c)
    # Absent classes get weight n_k = 0 (their rows are all 0, so their KL is 0 too) instead of
    # being dropped by a boolean mask, which would sync with the host every step.
    n = counts.clamp_min(1).unsqueeze(1)
    tiny = torch.finfo(sums_s.dtype).tiny
    m_s, m_t = sums_s / n, sums_t / n
    kl = kl_divergence(m_t.clamp_min(tiny).log(), m_s.clamp_min(tiny).log())
    return tau**2 * (kl * counts / targets.shape[0]).sum()


def _pearson_rows(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    # Each norm is clamped, as torch's cosine_similarity does, not their product: identical rows
    # then correlate exactly 1 down to a spread of eps, where a clamped product (1e-7 * 1e-7 <
    # 1e-12) would score them near 0.
    return (a * b).sum(1) / (a.norm(dim=1).clamp_min(eps) * b.norm(dim=1).clamp_min(eps))


def dist_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    tau: float = 4.0,
    inter_weight: float = 1.0,
    intra_weight: float = 1.0,
) -> torch.Tensor:
    """DIST (Huang et al. 2022): tau^2 * [inter * (1 - mean_i pearson(p_s[i], p_t[i]))
    + intra * (1 - mean_j pearson(p_s[:, j], p_t[:, j]))], p = softmax(z / tau).

    [B, C] x 2 -> scalar. The first part matches each sample's ranking over classes, the second
    each class's profile over the batch.
    """
    check_tau(tau)
    p_s = F.softmax(student_logits / tau, dim=1)
    p_t = F.softmax(teacher_logits.detach() / tau, dim=1)
    inter = 1 - _pearson_rows(p_s, p_t).mean()
    intra = 1 - _pearson_rows(p_s.T, p_t.T).mean()
    return tau**2 * (inter_weight * inter + intra_weight * intra)

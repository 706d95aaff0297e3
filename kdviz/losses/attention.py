"""Attention transfer (Zagoruyko and Komodakis, "Paying More Attention to Attention", ICLR 2017).

The spatial attention map of a feature map F [B, C, H, W] is the channel mean of |F|^p, flattened
and L2-normalised per sample:

    a(F)_b = v_b / ||v_b||_2,   v_b[h, w] = mean_c |F[b, c, h, w]|^p      (p = 2)

and the loss sums, over pairs of matching student and teacher stages, the mean squared difference
of their maps:

    L_AT = sum_stages mean over b, h, w of (a(F_s)_b[h, w] - a(F_t)_b[h, w])^2

Channels need not match (a map has none); sizes meet at the smaller one (`features.py`). This is
CRD's benchmark form, weighed by 1000 beside CE.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .features import at_least_float32


def attention_map(features: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """[B, C, H, W] -> [B, H * W]: the channel mean of |F|^p, L2-normalised per sample."""
    return F.normalize(at_least_float32(features).abs().pow(p).mean(1).flatten(1), dim=1)


def at_loss(student: torch.Tensor, teacher: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """mean over b and positions of (a(F_s) - a(F_t))^2 for maps of one spatial size -> scalar.

    student [B, C_s, H, W], teacher [B, C_t, H, W]; the teacher side is detached.
    """
    return (attention_map(student, p) - attention_map(teacher.detach(), p)).pow(2).mean()

"""Contrastive Representation Distillation (Tian et al., "Contrastive Representation Distillation", ICLR 2020).

Student and teacher penultimate features (the "pool" stage) are embedded by linear maps and
L2-normalised: s_i = g_s(f_s,i), t_i = g_t(f_t,i) in R^d (d = 128). A memory bank holds, for every
training sample j, a running student embedding S_j and teacher embedding T_j. For sample i (its
index in the training set) and K negatives j_1..j_K drawn uniformly from the bank, the scores

    h_t(i, j) = exp(t_i . S_j / T) / Z_t,        h_s(i, j) = exp(s_i . T_j / T) / Z_s

(Z fixed from the first batch: Z = N * mean of the exp(.) scores) enter the NCE loss (`nce_loss`)
with the positive j = i against the noise distribution P_n = 1 / N, computed from log h:

    L_CRD = NCE(h_s) + NCE(h_t)

The bank then moves towards the new embeddings, S_i <- normalise(m S_i + (1 - m) s_i) (m = 0.5;
likewise T_i), and starts uniform in [-1/sqrt(d/3), 1/sqrt(d/3)]. Defaults: K = 16384, T = 0.07,
d = 128; CRD's benchmark weighs the loss by 0.8 beside CE. Unlike CRD's code, whose default
draws negatives from the other classes, negatives here are uniform over the training set.
"""
from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .features import at_least_float32

def nce_loss(log_scores: torch.Tensor, n_data: int) -> torch.Tensor:
    """NCE with the positive in column 0: log_scores = log h [B, 1 + K] -> scalar.

    -mean_i [ log(h_i0 / (h_i0 + K / N)) + sum_{k >= 1} log((K / N) / (h_ik + K / N)) ]
      = mean_i [ softplus(log(K / N) - log h_i0) + sum_{k >= 1} softplus(log h_ik - log(K / N)) ]

    The softplus form needs no exp of the scores and no eps (CRD's code adds 1e-7 inside its logs).
    """
    log_noise = math.log((log_scores.shape[1] - 1) / n_data)  # log(K * P_n)
    positive = F.softplus(log_noise - log_scores[:, 0])
    negatives = F.softplus(log_scores[:, 1:] - log_noise).sum(1)
    return (positive + negatives).mean()


class Embed(nn.Module):
    """g: features [B, D] -> L2-normalised embeddings [B, d] by a linear map (with bias)."""

    def __init__(self, dim_in: int, dim_out: int = 128):
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.linear(x.flatten(1)), dim=1)


class ContrastMemory(nn.Module):
    """The memory bank of CRD: student and teacher embeddings [N, d] of the N training samples.

    `scores` gives both sides' [B, 1 + K] log-scores; the bank's momentum update of a step is applied
    at the start of the next `scores` call (or by `flush`), after that step's backward pass has
    used the bank, so that nothing is copied. Under torchrun every rank gathers all ranks' updates,
    so the banks stay identical. Nothing here waits for the device.
    """

    def __init__(self, n_data: int, dim: int, negatives: int, temperature: float, momentum: float):
        super().__init__()
        stdv = 1.0 / math.sqrt(dim / 3)
        # One spare row, N, receives the padding rows of an all-gather; negatives never reach it.
        self.register_buffer("student_bank", torch.rand(n_data + 1, dim).mul_(2 * stdv).add_(-stdv))
        self.register_buffer("teacher_bank", torch.rand(n_data + 1, dim).mul_(2 * stdv).add_(-stdv))
        self.register_buffer("log_z", torch.zeros(2))  # log Z_s, log Z_t; set by the first batch
        self.n_data, self.negatives, self.temperature, self.momentum = n_data, negatives, temperature, momentum
        self.capacity: int | None = None  # under torchrun: the most samples a rank holds in a step
        self.z_ready = False
        self._pending: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        # A bank restored from a checkpoint has its constants: it was saved after at least one step.
        self.register_load_state_dict_post_hook(lambda module, keys: setattr(module, "z_ready", True))

    def scores(self, s: torch.Tensor, t: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """s, t [B, d] unit embeddings, idx [B] their training-set indices -> (log h_s, log h_t), each [B, 1 + K]."""
        self.flush()
        columns = torch.cat([idx[:, None], self.draw_negatives(idx)], dim=1)
        # At least float32, even under bf16 autocast: x / 0.07 and the NCE terms need the precision.
        u_s = at_least_float32(torch.gather(s @ self.teacher_bank.T, 1, columns)) / self.temperature
        u_t = at_least_float32(torch.gather(t @ self.student_bank.T, 1, columns)) / self.temperature
        if not self.z_ready:
            self._set_constants(u_s.detach(), u_t.detach())
        self._pending = (idx, s.detach(), t.detach())
        return u_s - self.log_z[0], u_t - self.log_z[1]

    def _set_constants(self, u_s: torch.Tensor, u_t: torch.Tensor) -> None:
        """CRD's constants log Z = log(N * mean exp(u)) from the first batch (of every rank under
        torchrun, so that all ranks share them), computed on the device."""
        local = torch.stack([u_s.flatten().logsumexp(0), u_t.flatten().logsumexp(0),
                             torch.tensor(math.log(u_s.numel()), device=u_s.device, dtype=u_s.dtype)])
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            every = local.new_empty(dist.get_world_size(), 3)
            dist.all_gather_single(every, local[None])
            local = every.logsumexp(0)  # log of the sums over ranks: of exp(u), and of the counts
        self.log_z.copy_(local[:2] - local[2] + math.log(self.n_data))
        self.z_ready = True

    def draw_negatives(self, idx: torch.Tensor) -> torch.Tensor:
        """K indices per sample, uniform over the N training samples: idx [B] -> [B, K] (on idx's device)."""
        return torch.randint(0, self.n_data, (idx.shape[0], self.negatives), device=idx.device)

    @torch.no_grad()
    def flush(self) -> None:
        """Apply the last step's momentum update to both banks (gathered over ranks under torchrun)."""
        if self._pending is None:
            return
        idx, s, t = self._gather(*self._pending)
        self._pending = None
        for bank, new in ((self.student_bank, s), (self.teacher_bank, t)):
            moved = F.normalize(bank[idx] * self.momentum + new * (1 - self.momentum), dim=1)
            bank.index_copy_(0, idx, moved.to(bank.dtype))

    def _gather(self, idx, s, t):
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return idx, s, t
        if self.capacity is None:
            # Once per run (one host sync): the ranks' largest first batch, plus one for a trailing
            # batch that absorbed a single leftover sample; every rank then pads to it.
            size = torch.tensor([idx.shape[0] + 1], device=idx.device)
            dist.all_reduce(size, op=dist.ReduceOp.MAX)
            self.capacity = int(size)
        if idx.shape[0] > self.capacity:
            raise ValueError(f"CRD: a rank's batch of {idx.shape[0]} exceeds the bank's padding capacity {self.capacity}")
        pad = self.capacity - idx.shape[0]
        # Padding rows write to the spare row N: every rank's tensor then has the same shape.
        parts = [F.pad(idx, (0, pad), value=self.n_data), F.pad(s, (0, 0, 0, pad)), F.pad(t, (0, 0, 0, pad))]
        gathered = []
        for part in parts:
            out = part.new_empty((dist.get_world_size() * part.shape[0], *part.shape[1:]))
            dist.all_gather_single(out, part.contiguous())
            gathered.append(out)
        return gathered

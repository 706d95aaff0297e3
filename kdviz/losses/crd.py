"""Contrastive Representation Distillation (Tian et al., "Contrastive Representation Distillation", ICLR 2020).

Student and teacher penultimate features (the "pool" stage) are embedded by linear maps and
L2-normalised: s_i = g_s(f_s,i), t_i = g_t(f_t,i) in R^d (d = 128). A memory bank holds, for every
training sample j, a running student embedding S_j and teacher embedding T_j. The scores

    h_t(i, j) = exp(t_i . S_j / T) / Z_t,        h_s(i, j) = exp(s_i . T_j / T) / Z_s

(Z fixed from the first batch: Z = N * mean of the exp(.) scores of its drawn pairs) enter the
NCE loss (`nce_loss`) with the positive j = i against K negatives and the noise distribution
P_n = 1 / N:  L_CRD = NCE(h_s) + NCE(h_t).

Negatives as in CRD's code (its default 'exact' mode): the K negatives of sample i are drawn
uniformly from the samples of the other classes, without replacement when K is at most their
number M_c = N - n_c, with replacement otherwise. Both sides use the same draws. A negative drawn
c times counts c times, so the loss needs only the counts C [B, N] of the draws: with
x_ij = log h(i, j) - log(K P_n), the sum over the K draws is sum_j C_ij softplus(x_ij), computed
from the scores against the whole bank (the [B, d] x [d, N] product that a gather of K columns
needs too). No [B, K] tensor of scores, its gather or its backward scatter exists: for K > N/2
(CRD's K = 16384 on a bank of thousands) that is fewer passes over memory; the estimator is the same.

The bank then moves towards the new embeddings, S_i <- normalise(m S_i + (1 - m) s_i) (m = 0.5;
likewise T_i), and starts uniform in [-1/sqrt(d/3), 1/sqrt(d/3)]. Defaults: K = 16384, T = 0.07,
d = 128; CRD's benchmark weighs the loss by 0.8 beside CE.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .features import at_least_float32


def nce_loss(x: torch.Tensor, x_positive: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """NCE from x = log h - log(K P_n): x [B, N] over the bank, x_positive [B] of the positives and
    counts [B, N] (C_ij: how often j was drawn as a negative of i) -> scalar.

    -mean_i [ log(h_i,i / (h_i,i + K P_n)) + sum_j C_ij log(K P_n / (h_ij + K P_n)) ]
      = mean_i [ softplus(-x_i,i) + sum_j C_ij softplus(x_ij) ]

    The softplus form needs no exp of the scores and no eps (CRD's code adds 1e-7 inside its logs).
    """
    negatives = torch.dot(F.softplus(x).flatten(), counts.flatten())  # the weighted sum in one pass
    return F.softplus(-x_positive).mean() + negatives / x.shape[0]


class Embed(nn.Module):
    """g: features [B, D] -> L2-normalised embeddings [B, d] by a linear map (with bias)."""

    def __init__(self, dim_in: int, dim_out: int = 128):
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.linear(x.flatten(1)), dim=1)


class ContrastMemory(nn.Module):
    """The memory bank of CRD: student and teacher embeddings [N, d] of the N training samples
    with these labels [N], and the draw of each sample's negatives among the other classes.

    `scores` gives both sides' x = log h - log(K P_n) against the whole bank and the counts of the
    drawn negatives, with columns in class order (sample `order[p]` in column p): each class is a
    block, and the other classes of a sample are the M_c places that follow its block, read
    cyclically. `scores` applies the step's momentum update to the bank in place once it has read
    the rows it needs (the backward pass uses those copies, never the bank), so the bank holds no
    pending state between steps. Under torchrun every rank gathers all ranks' updates, so the banks
    stay identical. Nothing here waits for the device.
    """

    def __init__(self, labels: torch.Tensor, dim: int, negatives: int, temperature: float, momentum: float):
        super().__init__()
        labels = torch.as_tensor(labels).long().cpu()
        if labels.dim() != 1:
            raise ValueError(
                f"CRD needs the training split's labels, int64 [N], to draw its negatives; "
                f"got shape {tuple(labels.shape)}"
            )
        n_data, sizes = len(labels), torch.bincount(labels)
        others = n_data - sizes[sizes > 0]  # M_c of every class present
        if len(others) < 2:
            raise ValueError(
                f"CRD draws negatives from the other classes: its {n_data} training labels need two classes or more"
            )
        stdv = 1.0 / math.sqrt(dim / 3)
        # One spare row, N, receives the padding rows of an all-gather; negatives never reach it.
        self.register_buffer("student_bank", torch.rand(n_data + 1, dim).mul_(2 * stdv).add_(-stdv))
        self.register_buffer("teacher_bank", torch.rand(n_data + 1, dim).mul_(2 * stdv).add_(-stdv))
        self.register_buffer("log_z", torch.zeros(2))  # log Z_s, log Z_t; set by the first batch
        # Derived from the labels (not saved): the class order; per sample, its class block's end there and M_c.
        self.register_buffer("order", torch.argsort(labels, stable=True), persistent=False)
        self.register_buffer("block_end", sizes.cumsum(0)[labels].int(), persistent=False)  # int32: cheaper
        self.register_buffer("n_other", (n_data - sizes[labels]).int(), persistent=False)  # arithmetic on [B, K]
        self.n_data, self.negatives, self.temperature, self.momentum = n_data, negatives, temperature, momentum
        self.max_other = int(others.max())
        self.draws = (
            bool((negatives > others).any()),
            bool((negatives <= others).any()),
        )  # (with, without replacement)
        if self.draws[0]:  # said once per run: the memory bank is built once
            warnings.warn(
                f"CRD draws {negatives} negatives per sample, more than the {int(others.min())} training images of "
                f"the other classes that {int((negatives > others).sum())} class(es) have: their negatives are "
                "drawn with replacement, as in CRD's code (some images count several times); "
                f"negatives <= {int(others.min())} draws every negative once",
                stacklevel=2,
            )
        self.capacity: int | None = None  # under torchrun: the most samples a rank holds in a step
        self.z_ready = False  # a Python flag: only the run's first step sets the constants
        # A bank restored from a checkpoint has its constants: it was saved after at least one step.
        self.register_load_state_dict_post_hook(lambda module, keys: setattr(module, "z_ready", True))

    def negative_counts(self, idx: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """idx [B] -> C [B, N] in class order: how often each sample is drawn as a negative of idx_i.

        q_ik, the k-th negative's place among the M_c other-class samples, is uniform on [0, M_c):
        without replacement (the K smallest of M_c uniform keys) when K <= M_c, else a 31- or
        32-bit draw modulo M_c (bias below M_c / 2^31, the order of torch.randint's own). Its column is
        (end of i's class block + q_ik) mod N; the counts are gathered over 2N columns, then folded.
        """
        b, k, n, device = idx.shape[0], self.negatives, self.n_data, idx.device
        m, end = self.n_other[idx][:, None], self.block_end[idx][:, None]
        with_replacement, without = self.draws
        if with_replacement:
            # Two 32-bit draws from each 64-bit one: half the generator's calls of drawing int32s.
            bits = torch.empty(b, (k + 1) // 2, dtype=torch.int64, device=device).random_().view(torch.int32)[:, :k]
            columns = (bits % m + end).long()  # int32 arithmetic: a mixed-type add costs a conversion pass
        if without:
            keys = torch.rand(b, self.max_other, device=device)
            keys.masked_fill_(torch.arange(self.max_other, device=device) >= m, 2.0)  # places beyond M_c: never
            distinct = keys.topk(k, dim=1, largest=False, sorted=False).indices + end
            columns = torch.where(k > m, columns, distinct) if with_replacement else distinct
        ones = torch.ones((), dtype=dtype, device=device).expand(b, k)
        twice = torch.zeros(b, 2 * n, dtype=dtype, device=device).scatter_add_(1, columns, ones)
        return twice[:, :n] + twice[:, n:]

    def scores(self, s: torch.Tensor, t: torch.Tensor, idx: torch.Tensor):
        """s, t [B, d] unit embeddings, idx [B] their training-set indices -> ((x_s, x_s+), (x_t, x_t+), C):
        x [B, N] against every bank row in class order, x+ [B] against the sample's own row, C [B, N].
        Then moves the bank rows idx towards s and t."""
        sides = []
        for query, bank in ((s, self.teacher_bank), (t, self.student_bank)):
            query = at_least_float32(query) / self.temperature
            # At least float32, even under bf16 autocast: x / 0.07 and the NCE terms need the precision.
            u = at_least_float32(query @ bank.index_select(0, self.order).T)
            sides.append((u, (query * bank[idx]).sum(1)))
        counts = self.negative_counts(idx, sides[0][0].dtype)
        if not self.z_ready:
            self._set_constants(sides, counts)
        self._move_bank(idx, s.detach(), t.detach())
        shift = self.log_z + math.log(self.negatives / self.n_data)  # log Z + log(K P_n), per side
        (u_s, pos_s), (u_t, pos_t) = sides
        return (u_s - shift[0], pos_s - shift[0]), (u_t - shift[1], pos_t - shift[1]), counts

    @torch.no_grad()
    def _set_constants(self, sides, counts: torch.Tensor) -> None:
        """CRD's constants log Z = log(N * mean exp(u)) over the first batch's B (1 + K) drawn pairs
        (of every rank under torchrun, so that all ranks share them), computed on the device."""
        log_counts = counts.log()  # a negative drawn c times weighs c; one never drawn, -inf
        pairs = [torch.cat([u_pos, (u + log_counts).flatten()]).logsumexp(0) for u, u_pos in sides]
        local = torch.stack(
            [
                *pairs,
                torch.tensor(
                    math.log(counts.shape[0] * (1 + self.negatives)), device=counts.device, dtype=counts.dtype
                ),
            ]
        )
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            every = local.new_empty(dist.get_world_size(), 3)
            dist.all_gather_single(every, local[None])
            local = every.logsumexp(0)  # log of the sums over ranks: of exp(u), and of the counts
        self.log_z.copy_(local[:2] - local[2] + math.log(self.n_data))
        self.z_ready = True

    @torch.no_grad()
    def _move_bank(self, idx: torch.Tensor, s: torch.Tensor, t: torch.Tensor) -> None:
        """S_i <- normalise(m S_i + (1 - m) s_i), likewise T_i, for the rows idx (gathered over ranks under torchrun)."""
        idx, s, t = self._gather(idx, s, t)
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
            raise ValueError(
                f"CRD: a rank's batch of {idx.shape[0]} exceeds the bank's padding capacity {self.capacity}"
            )
        pad = self.capacity - idx.shape[0]
        # Padding rows write to the spare row N: every rank's tensor then has the same shape.
        parts = [F.pad(idx, (0, pad), value=self.n_data), F.pad(s, (0, 0, 0, pad)), F.pad(t, (0, 0, 0, pad))]
        gathered = []
        for part in parts:
            out = part.new_empty((dist.get_world_size() * part.shape[0], *part.shape[1:]))
            dist.all_gather_single(out, part.contiguous())
            gathered.append(out)
        return gathered

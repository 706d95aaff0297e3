"""Training state of the teacher-side terms: the class consensus of the previous epoch.

Both the ICC regulariser and Online Label Smoothing build their targets from the model's own
predictions on the training samples it classified correctly, accumulated over an epoch and
frozen at the epoch's end. The state lives here, in one small object per term.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from .icc import class_sums, icc_from_sums


class ClassConsensus:
    """Accumulates Y^T P and n over the correctly classified samples of an epoch.

    `update` is called every step (no host sync); `finish_epoch` returns M = diag(n)^-1 Y^T P
    [C, C] (NaN rows for classes with no correct sample) and resets. Under data parallelism the
    sums and counts are all-reduced before the division, so every rank gets the global matrix.
    The sums are allocated by the first update, on its device, and later reset in place: a step
    captured as a graph (kdviz.train.step) keeps adding into the same tensors every epoch.
    """

    def __init__(self, tau: float):
        self.tau = tau
        self.sums: torch.Tensor | None = None
        self.counts: torch.Tensor | None = None

    @torch.no_grad()
    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        probs = F.softmax(logits.detach().float() / self.tau, dim=1)
        sums, counts = class_sums(probs, targets, logits.shape[1], weights=logits.argmax(1) == targets)
        if self.sums is None or self.sums.device != sums.device:
            self.sums, self.counts = torch.zeros_like(sums), torch.zeros_like(counts)
        self.sums += sums
        self.counts += counts

    def finish_epoch(self) -> torch.Tensor | None:
        """M of the epoch's updates, or None if no update has ever been made."""
        if self.sums is None:
            return None
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.sums)
            dist.all_reduce(self.counts)
        matrix = icc_from_sums(self.sums, self.counts)
        self.sums.zero_()
        self.counts.zero_()
        return matrix

"""Data parallelism under torchrun: one process per device, gloo on CPU and nccl on CUDA.

Every rank draws the same shuffled order and takes its own slice of each global batch, so the
global batch and the gradient (DDP averages it over ranks) match a single-process run, except
for BatchNorm, whose statistics are those of each rank's slice unless `sync_bn` makes them the
global batch's. Only rank 0 writes files and shows a progress bar.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup_distributed(device: torch.device) -> tuple[DistContext, torch.device]:
    """Join the process group that torchrun describes in the environment (WORLD_SIZE, RANK,
    LOCAL_RANK, MASTER_ADDR/PORT); a no-op outside torchrun. On CUDA each rank takes the GPU of
    its local rank."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(), device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size()), device


def wrap_model(net: nn.Module, ctx: DistContext, device: torch.device, sync_bn: bool = False) -> nn.Module:
    """`net` in DistributedDataParallel under torchrun (itself otherwise). sync_bn: its BatchNorm
    layers become SyncBatchNorm first, in place, so that `net` keeps them after training."""
    if not ctx.enabled:
        return net
    if sync_bn:
        convert_sync_batchnorm(net)
    return nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks, differentiable: the gradient of each rank's input is the sum over ranks of
    the gradients of the output, since every rank's output depends on every rank's input."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        t = t.clone()
        dist.all_reduce(t)
        return t

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class SyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch, over all processes.

    For x [N, C, *] on each rank: mean_c = sum x / n and var_c = sum (x - mean)^2 / n, with the
    sums and n all-reduced over ranks, as one process holding the whole batch would compute them.
    The all-reduce is differentiable (its backward all-reduces the gradient), so the gradient is
    the global batch's too. torch's nn.SyncBatchNorm does the same on GPUs only; this one also
    runs on CPUs (gloo). In eval mode, or outside torchrun, it is plain BatchNorm.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected an input of at least 2 dimensions [N, C, ...], got {input.dim()}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = (1, -1) + (1,) * (x.dim() - 2)
        count = torch.full((1,), x.numel() // x.shape[1], dtype=x.dtype, device=x.device)
        sums = _AllReduceSum.apply(torch.cat([x.sum(dims), count]))
        n = sums[-1]
        mean = sums[:-1] / n
        centred = x - mean.view(shape)
        var = _AllReduceSum.apply(centred.pow(2).sum(dims)) / n
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach() * n / (n - 1).clamp_min(1))
        return y

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, unbiased_var: torch.Tensor) -> None:
        self.num_batches_tracked.add_(1)
        # momentum None is a cumulative average, as in nn.BatchNorm; its 1 / count is a host read.
        factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        self.running_mean.lerp_(mean, factor)
        self.running_var.lerp_(unbiased_var, factor)


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm layer inside `module` by a SyncBatchNorm holding the same parameter
    and buffer objects (in place; `module` itself is returned, so it must not be one). The same
    objects, not copies: an optimizer made before the conversion must go on updating them."""
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, SyncBatchNorm):
            sync = SyncBatchNorm(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
            sync._parameters, sync._buffers = child._parameters, child._buffers
            sync.train(child.training)
            setattr(module, name, sync)
        else:
            convert_sync_batchnorm(child)
    return module


def all_reduce(t: torch.Tensor, ctx: DistContext, op: str = "sum") -> torch.Tensor:
    """Sum (or max) of `t` over all ranks, in place; `t` itself outside torchrun."""
    if ctx.enabled:
        dist.all_reduce(t, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op])
    return t

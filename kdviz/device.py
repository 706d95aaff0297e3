"""Pick the training device (CUDA, then Apple's MPS, then the CPU, unless the user says), and
move small host tensors to it without stalling a GPU."""
from __future__ import annotations

import torch


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but CUDA is not available here; use device='cpu' or 'auto'")
    return dev


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`tensor` on `device`. A CPU tensor bound for CUDA goes through pinned memory without
    blocking: a plain copy would wait for every queued kernel, so that a per-batch copy of indices
    or crop offsets would stop the CPU from running ahead of the GPU at every step."""
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)

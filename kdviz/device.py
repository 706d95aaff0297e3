"""Pick the training device (CUDA, then Apple's MPS, then the CPU, unless the user says), and
move small host tensors to it without stalling a GPU."""

from __future__ import annotations

import torch


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def parse_device(device: str | torch.device) -> torch.device | None:
    """torch.device of a device name ('cpu', 'cuda', 'cuda:1', 'mps'), None for 'auto'; a ValueError
    that lists the valid names for anything else (torch's own is a RuntimeError with a long list)."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return None
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"{device!r} is not a device name; use auto, cpu, cuda (an NVIDIA GPU), cuda:N or mps"
        ) from None


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    dev = None if device is None else parse_device(device)
    if dev is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {str(device)!r} asked for, but CUDA is not available here; use device='cpu' or 'auto'"
        )
    if dev.type == "mps" and not _mps_available():
        raise ValueError(
            f"device {str(device)!r} asked for, but Apple's MPS is not available here; use device='cpu' or 'auto'"
        )
    return dev


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`tensor` on `device`. A CPU tensor bound for CUDA goes through pinned memory without
    blocking: a plain copy would wait for every queued kernel, so that a per-batch copy of indices
    or crop offsets would stop the CPU from running ahead of the GPU at every step."""
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)

"""Checkpoints: plain dicts of tensors and builtins, written atomically, read with weights_only.

A model checkpoint records how to rebuild the model (registry name and keyword arguments),
the dataset it was trained on and the versions that wrote it, so that `load_model` needs
nothing but the path.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path

import torch
from torch import nn

from .._version import __version__
from ..atomic import atomic_write
from ..models import build_model

FORMAT = "kdviz-checkpoint-1"


class CheckpointError(ValueError):
    """A file that is not a usable kdviz checkpoint; the message says why and what to do."""


def atomic_save(obj, path: str | os.PathLike) -> None:
    """torch.save `obj` to `path` atomically (kdviz.atomic.atomic_write)."""
    atomic_write(path, lambda f: torch.save(obj, f))


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Read a kdviz checkpoint safely (weights_only=True: a pickle that runs code is refused)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no checkpoint at {path}; train one with `kdviz train-teacher --out DIR` (it writes DIR/best.pt)"
        )
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError) as e:
        raise _unreadable(path, e) from e
    if not isinstance(ckpt, dict) or not str(ckpt.get("format", "")).startswith("kdviz-checkpoint-"):
        raise CheckpointError(
            f"{path} is not a kdviz checkpoint (expected format {FORMAT!r}); pass a best.pt or last.pt written by kdviz"
        )
    if ckpt["format"] != FORMAT:
        raise CheckpointError(
            f"{path} was written by kdviz {ckpt.get('kdviz_version', '?')} in format {ckpt['format']!r}; this kdviz "
            f"{__version__} reads {FORMAT!r}. Load it with that kdviz version, or retrain."
        )
    return ckpt


_TERMINAL_CODES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _unreadable(path: Path, e: BaseException) -> CheckpointError:
    """The error for a file torch.load refuses: a pickled object (e.g. torch.save(model)), or an
    empty, truncated or corrupt file, with what to do about each."""
    text = _TERMINAL_CODES.sub("", str(e))  # torch's message carries terminal colour codes
    pickled = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if pickled:
        return CheckpointError(
            f"{path} is a pickled Python object ({pickled[1]}), e.g. a whole module saved with torch.save(model), "
            "not a kdviz checkpoint; kdviz does not unpickle code. If you trust the file, load it yourself "
            "(torch.load(path, weights_only=False)) and pass the module through the Python API "
            "(kd.train(data, ..., teacher=module))."
        )
    size = path.stat().st_size
    reason = next((line.strip() for line in text.splitlines() if line.strip()), type(e).__name__).split(". ")[0]
    state = "empty (0 bytes)" if size == 0 else f"truncated or corrupt ({size} bytes: {reason})"
    # last.pt is a run's resume point: re-running the training would only trip over it again.
    fix = (
        "That run cannot be resumed from it (--resume reads this file): delete it to start the run over, or "
        "choose another --out (out_dir)."
        if path.name == "last.pt"
        else "Re-run the training that writes it."
    )
    return CheckpointError(f"{path} is not a readable kdviz checkpoint: the file is {state}. {fix}")


def model_checkpoint(model: nn.Module, model_spec: dict, dataset: str, **extra) -> dict:
    return {
        "format": FORMAT,
        "kdviz_version": __version__,
        "torch_version": str(torch.__version__),
        "model": dict(model_spec),
        "dataset": dataset,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **extra,
    }


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the model stored in a checkpoint; returns (model in eval mode, checkpoint dict)."""
    ckpt = load_checkpoint(path)
    spec = ckpt["model"]
    model = build_model(spec["name"], spec["num_classes"], tuple(spec["image_shape"]), **spec.get("kwargs", {}))
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise CheckpointError(
            f"{path}: weights do not fit model {spec['name']!r} with {spec.get('kwargs', {})}: {e}"
        ) from e
    return model.to(device).eval(), ckpt

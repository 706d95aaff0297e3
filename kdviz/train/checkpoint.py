"""Checkpoints: plain dicts of tensors and builtins, written atomically, read with weights_only.

A model checkpoint records how to rebuild the model (registry name and keyword arguments),
the dataset it was trained on and the versions that wrote it, so that `load_model` needs
nothing but the path.
"""
from __future__ import annotations

import errno
import os
import pickle
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

import torch
from torch import nn

from .. import __version__
from ..models import build_model

FORMAT = "kdviz-checkpoint-1"


class CheckpointError(ValueError):
    """A file that is not a usable kdviz checkpoint; the message says why and what to do."""


def atomic_save(obj, path: str | os.PathLike) -> None:
    """torch.save to a temporary file in the same folder, fsync, then rename over `path`, so an
    interruption leaves either the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if _disk_full(e):
            # torch reports a full disk as "enforce fail at inline_container.cc ... unexpected pos",
            # with the OSError that says why only in the middle of the traceback.
            free = shutil.disk_usage(path.parent).free
            raise OSError(
                errno.ENOSPC,
                f"No space left on device while writing {path} ({free / 2**20:.1f} MiB free in {path.parent}); "
                f"free some space or choose another folder. {path.name} is unchanged (the previous one, if any, is kept)",
            ) from e
        raise


def _disk_full(e: BaseException | None) -> bool:
    """Whether `e` or an exception it was raised from or during is ENOSPC."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Read a kdviz checkpoint safely (weights_only=True: a pickle that runs code is refused)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train one with `kdviz train-teacher --out DIR` (it writes DIR/best.pt)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError) as e:
        raise _unreadable(path, e) from e
    if not isinstance(ckpt, dict) or not str(ckpt.get("format", "")).startswith("kdviz-checkpoint-"):
        raise CheckpointError(f"{path} is not a kdviz checkpoint (expected format {FORMAT!r}); pass a best.pt or last.pt written by kdviz")
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
    fix = ("That run cannot be resumed from it (--resume reads this file): delete it to start the run over, or "
           "choose another --out (out_dir)." if path.name == "last.pt" else "Re-run the training that writes it.")
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
        raise CheckpointError(f"{path}: weights do not fit model {spec['name']!r} with {spec.get('kwargs', {})}: {e}") from e
    return model.to(device).eval(), ckpt

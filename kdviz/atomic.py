"""One way to write a file: all of it or none of it.

Every file a run writes (checkpoints, config.json, metrics.csv, result tables) goes through
`atomic_write`: the content goes to a temporary file in the same folder, is fsync'ed, then
renamed over the target. An interruption or a full disk leaves the old file or the new one,
never half of one, and no stray temporary file.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def atomic_write(path: str | os.PathLike, content: str | bytes | Callable[[BinaryIO], None]) -> Path:
    """Write `content` to `path` atomically; returns the path.

    content: text (written as UTF-8), bytes, or a function that writes into the open binary file
    (e.g. `lambda f: torch.save(obj, f)`). Missing parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content.encode() if isinstance(content, str) else content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path

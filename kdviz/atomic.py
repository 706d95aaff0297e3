"""One way to write a file: all of it or none of it.

Every file a run writes (checkpoints, config.json, metrics.csv, result tables) goes through
`atomic_write`: the content goes to a temporary file in the same folder, is fsync'ed, then
renamed over the target. An interruption or a full disk leaves the old file or the new one,
never half of one, and no stray temporary file. Only a process killed outright (SIGKILL, a power
cut) can leave one, `.<name>.<random>.tmp`: `remove_stale_temporaries` removes them when the
folder is next opened by a process that holds its lock (kdviz.train.lock.RunLock).
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

TEMPORARY_SUFFIX = ".tmp"


def atomic_write(path: str | os.PathLike, content: str | bytes | Callable[[BinaryIO], None]) -> Path:
    """Write `content` to `path` atomically; returns the path.

    content: text (written as UTF-8), bytes, or a function that writes into the open binary file
    (e.g. `lambda f: torch.save(obj, f)`). Missing parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content.encode() if isinstance(content, str) else content)
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
    return path


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that atomic_write left in `folder` when its process was killed
    mid-write; returns them. Call it only where no other process can be writing into `folder`
    (holding its lock): their temporary files look the same."""
    stale = [p for p in Path(folder).glob(f".*{TEMPORARY_SUFFIX}") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def _disk_full(e: BaseException | None) -> bool:
    """Whether `e` or an exception it was raised from or during is ENOSPC."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False

"""One process per run directory: an advisory lock that dies with its process.

fcntl.flock is released by the kernel when the holder exits, even on SIGKILL, so a crashed run
never leaves a stuck lock behind; the PID written into the file only serves the error message.
Whoever takes the lock removes the temporary files a killed holder left mid-write: nobody else
can be writing them.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..atomic import remove_stale_temporaries


class RunLockedError(RuntimeError):
    """Another live process is training in the same run directory."""


class RunLock:
    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / ".lock"
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunLockedError(
                f"{self.path.parent} is in use by another kdviz process (pid {holder}); "
                "wait for it to finish, or choose another out_dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        remove_stale_temporaries(self.path.parent)
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

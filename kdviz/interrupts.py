"""How kdviz's processes end: SIGTERM as Ctrl-C, and a sweep's workers with their parent.

SIGTERM is what a scheduler, `timeout`, a container stop or a notebook's escalation sends; its
default ends the process at once, in the middle of whatever file it was writing. Under
`sigterm_as_interrupt()` it raises `Terminated`, a KeyboardInterrupt, so that it unwinds as Ctrl-C
does: `atomic_write` removes the temporary file it was writing (the previous file is kept), the
run's lock is released, and the command line says where the run resumes. Its exit status is
128 + the signal's number, as a shell reports a process that signal ended: 143 for SIGTERM (what
schedulers and `timeout` expect to see), 130 for Ctrl-C.

A sweep's worker processes (`worker_init`) get SIGTERM when their parent dies, even by `kill -9`
(Linux: prctl(PR_SET_PDEATHSIG); elsewhere a thread that watches the parent), unwind the run under
way the same way, and exit: none is left idle, holding its memory, once nobody waits for it.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_task_running = False  # in a worker: whether a task is under way (then a signal unwinds it first)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread where it is, as Ctrl-C raises KeyboardInterrupt."""

    def __init__(self):
        super().__init__("stopped by SIGTERM")


def exit_status(interrupt: KeyboardInterrupt) -> int:
    """128 + the number of the signal that stopped the process: 143 (SIGTERM) or 130 (SIGINT, Ctrl-C)."""
    return 128 + (signal.SIGTERM if isinstance(interrupt, Terminated) else signal.SIGINT)


def _raise_terminated(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM, during the unwinding, ends it at once
    raise Terminated()


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Within the block, SIGTERM raises Terminated in the main thread (off the main thread, where
    Python cannot handle signals, it does nothing); the previous handler is restored after it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:  # None: a handler set outside Python, which Python cannot set again
        signal.signal(signal.SIGTERM, signal.SIG_DFL if before is None else before)


def worker_init(parent: int) -> None:
    """Initializer of a worker process of `parent` (ProcessPoolExecutor(initializer=..., initargs=(os.getpid(),))):
    SIGTERM and SIGINT unwind the task under way (see worker_task) and end the worker; the parent's
    death sends it SIGTERM."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _worker_signal)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    else:
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="kdviz-watch-parent").start()
    if os.getppid() != parent:  # the parent died before it could be watched
        os.kill(os.getpid(), signal.SIGTERM)


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGTERM)


def _worker_signal(signum, frame) -> None:
    if _task_running:
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
    _exit(128 + signum)  # idle: nothing to unwind


@contextlib.contextmanager
def worker_task():
    """Around a task in a worker: a signal unwinds it (its temporary files removed, its lock
    released), then the worker exits, where the pool's loop would wait for the next task."""
    global _task_running
    _task_running = True
    try:
        yield
    except KeyboardInterrupt as e:
        _exit(exit_status(e))
    finally:
        _task_running = False


def _exit(status: int) -> None:
    """End the worker now, after its exit handlers (which release what it registered, e.g. the
    semaphore of tqdm's lock, else reported as leaked by multiprocessing's resource tracker)."""
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


__all__ = ["Terminated", "exit_status", "sigterm_as_interrupt", "worker_init", "worker_task"]

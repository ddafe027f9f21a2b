"""Stop signals: Ctrl-C, SIGTERM and SIGHUP (and a launcher's death) stop a study cleanly.

SIGTERM and SIGHUP are raised as `Interrupted`, a KeyboardInterrupt, so every layer handles
them as it handles Ctrl-C; `signals_deferred` and `signals_ignored` keep a trial's bookkeeping
whole; the exit code of a stopped process is 128 + the signal.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = [
    "STOP_SIGNALS",
    "Interrupted",
    "describe_interrupt",
    "interrupt_exit_code",
    "signals_as_interrupt",
    "signals_deferred",
    "signals_ignored",
    "watch_launcher",
]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Signals that stop a study cleanly: Ctrl-C, kill / a job scheduler, a closed terminal."""
_LAUNCHER_GONE: list[str] = []
"""Set (to the launcher's description) by the watcher thread of a worker whose launcher died."""
_STOPPING = threading.Event()
"""Set once SIGTERM or SIGHUP has raised `Interrupted` in this process."""


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread and handled as Ctrl-C is."""

    def __init__(self, signum: int, why: str | None = None) -> None:
        self.signum = signum
        self.why = why or signal.Signals(signum).name
        super().__init__(self.why)


def interrupt_exit_code(err: KeyboardInterrupt) -> int:
    """128 + the signal number: 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP."""
    return 128 + (err.signum if isinstance(err, Interrupted) else signal.SIGINT)


def describe_interrupt(err: BaseException | None) -> str:
    """'Ctrl-C', 'SIGTERM', 'SIGHUP' or 'launcher PID is gone', for reasons and messages."""
    return err.why if isinstance(err, Interrupted) else "Ctrl-C"


@contextlib.contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP raise `Interrupted` (a KeyboardInterrupt) while the block runs, so
    they stop a study as Ctrl-C does. After SIGHUP, stdout and stderr that were a terminal
    (now gone) go to /dev/null, so the bookkeeping that follows cannot fail on them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    ttys = [fd for fd in (1, 2) if _isatty(fd)]

    def interrupt(signum: int, frame: Any) -> None:
        _STOPPING.set()
        if signum == signal.SIGHUP:
            _detach_from_terminal(ttys)
        raise Interrupted(signum, _LAUNCHER_GONE[0] if _LAUNCHER_GONE else None)

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def _detach_from_terminal(fds: Sequence[int]) -> None:
    if not fds:
        return
    with contextlib.suppress(OSError):
        null = os.open(os.devnull, os.O_WRONLY)
        for fd in fds:
            os.dup2(null, fd)
        os.close(null)


def watch_launcher(grace_seconds: float = 60.0) -> None:
    """Stop this worker process when its launcher dies (SIGKILL, OOM, a crash).

    A worker's parent is the launcher's fork server, not the launcher, so PR_SET_PDEATHSIG
    would fire only when the fork server exits; instead a thread waits on the pipe that
    multiprocessing keeps open from the launcher itself (`parent_process().sentinel`, at EOF
    once no launcher holds it). Then SIGTERM is raised in this process, which records its
    trials FAIL ('interrupted (launcher PID is gone)') as on Ctrl-C. SIGTERM is sent again
    each second until it is acted on (one that lands while a trial's bookkeeping ignores it is
    lost); after `grace_seconds` the process exits regardless.
    """
    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        _LAUNCHER_GONE.append(f"launcher {parent.pid} is gone")
        deadline = time.monotonic() + grace_seconds
        while time.monotonic() < deadline:
            if not _STOPPING.is_set():
                os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1.0)
        os._exit(128 + signal.SIGTERM)

    threading.Thread(target=watch, name="launcher-watch", daemon=True).start()


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP until the block ends, then act on the first one that
    came (KeyboardInterrupt / Interrupted as usual).

    The handlers are swapped, not the signal mask: a process-directed signal that the main
    thread blocks is delivered to another thread, and Python runs its handler anyway.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        pending.append(signum)

    previous = {s: signal.signal(s, hold) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if pending:
            handler = previous[pending[0]]
            if callable(handler):
                handler(pending[0], None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(pending[0])


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """Ignore SIGINT, SIGTERM and SIGHUP while the block runs (a second stop request must not
    cut a trial's bookkeeping short)."""
    try:
        previous = {s: signal.signal(s, signal.SIG_IGN) for s in STOP_SIGNALS}
    except ValueError:  # not the main thread: signals are not ours to change
        yield
        return
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

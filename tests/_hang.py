"""A worker process that hangs mid-trial and is SIGKILLed there, for the kill/retry tests."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from pathlib import Path
from typing import Any

from benchmark.trials import TEST_HANG_ENV


@contextlib.contextmanager
def hang_one_worker(folder: Path, monkeypatch) -> Any:
    """The first worker to reach the test hang point is SIGKILLed there; yields what it said
    (pid and trial number) once the block ends."""
    folder.mkdir()
    os.mkfifo(folder / "ready")
    monkeypatch.setenv(TEST_HANG_ENV, str(folder))
    said: dict[str, int] = {}

    def kill() -> None:
        with open(folder / "ready") as fifo:  # blocks until a worker is mid-trial
            words = fifo.read().split()
        if len(words) == 2:
            said["pid"], said["trial"] = int(words[0]), int(words[1])
            os.kill(said["pid"], signal.SIGKILL)

    killer = threading.Thread(target=kill, daemon=True)
    killer.start()
    try:
        yield said
    finally:
        if killer.is_alive():  # no worker hung: release the reader
            with open(os.open(folder / "ready", os.O_WRONLY | os.O_NONBLOCK), "w"):
                pass
        killer.join(timeout=10)

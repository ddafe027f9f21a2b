"""What a study worker is: its spec (passed as JSON on its command line), its id, and
whether a process (a worker, a writer) is still alive."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["WorkerSpec", "pid_alive", "worker_id"]


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs, passed as JSON on its command line."""

    study_name: str
    storage: str
    space: str
    objective: str
    sampler: str
    pruner: str
    trials: int
    """Target number of finished (complete + pruned) trials in the study, all workers."""
    settings: dict[str, Any]
    tracking_uri: str
    lock_path: str
    """Local lock file making budget check + ask atomic between this machine's workers."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Fixed params (--param), typed; keys as in the space (compare: unprefixed)."""
    deadline: float | None = None
    """Unix time after which no new trial starts (--timeout)."""
    device: str = "auto"
    threads: int | None = None
    max_retry: int = 2
    population: int = 1
    """Trials this worker trains at once as one batched population (1: one after another;
    0: auto, picked by the worker from its device, see benchmark.population)."""
    sampler_seed: int | None = None
    """Seed of this worker's sampler (the launcher gives worker k the study's seed + k)."""
    checkpoint_every: int = 5
    """A trial trained alone (population 1) saves its state every this many epochs beside
    the lock file (checkpoints/), and a trial of the same config continues from it (0: off)."""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WorkerSpec:
        return cls(**json.loads(text))


def worker_id(pid: int | None = None) -> str:
    """'host:pid' of a worker process (stored on the trials it runs)."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists on this machine and has not exited (an exited
    child not yet reaped, a zombie, is gone for every purpose here)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"

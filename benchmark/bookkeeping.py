"""Seconds a study worker's training thread spends on bookkeeping (Optuna, MLflow, artifacts).

A worker times its training (`train`), its scoring (`score`) and, by name, each bookkeeping
call it makes between epochs; `benchmark.throughput` reads the totals. With the environment
variable MIXBENCH_BOOKKEEPING_FILE set, a worker appends its totals to that file as one JSON
line when it stops.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BOOKKEEPING_FILE_ENV", "ENGINE_PARTS", "Clock"]

BOOKKEEPING_FILE_ENV = "MIXBENCH_BOOKKEEPING_FILE"
ENGINE_PARTS = ("build", "train", "score")
"""Parts that are the engine's own work; every other part is bookkeeping."""


@dataclass
class Clock:
    """Seconds per named part of a worker's loop on its training thread, and the trial-epochs
    trained (one per live trial per epoch, whatever its seeds)."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    trial_epochs: int = 0
    started: float = field(default_factory=time.perf_counter)
    _open: str | None = None

    @contextlib.contextmanager
    def part(self, name: str) -> Iterator[None]:
        """Time the block under `name`; a part inside another part counts for the outer one
        only (so the parts never add up to more than the wall time)."""
        if self._open is not None:
            yield
            return
        self._open = name
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start
            self.calls[name] += 1
            self._open = None

    def bookkeeping_seconds(self) -> float:
        return sum(s for name, s in self.seconds.items() if name not in ENGINE_PARTS)

    def summary(self) -> dict[str, Any]:
        """Totals as plain JSON: wall seconds since the clock started, seconds and calls per
        part, trial-epochs and bookkeeping milliseconds per trial-epoch."""
        book = self.bookkeeping_seconds()
        return {
            "pid": os.getpid(),
            "wall_seconds": time.perf_counter() - self.started,
            "seconds": dict(self.seconds),
            "calls": dict(self.calls),
            "trial_epochs": self.trial_epochs,
            "bookkeeping_seconds": book,
            "bookkeeping_ms_per_trial_epoch": (
                1000 * book / self.trial_epochs if self.trial_epochs else None
            ),
        }

    def dump(self) -> None:
        """Append the summary to $MIXBENCH_BOOKKEEPING_FILE (nothing when it is unset)."""
        path = os.environ.get(BOOKKEEPING_FILE_ENV)
        if not path:
            return
        with open(path, "a") as handle:
            handle.write(json.dumps(self.summary()) + "\n")

"""A small stderr progress bar with an ETA, so long work always shows where it is."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress", "format_seconds"]


def format_seconds(seconds: float) -> str:
    """'1h02m', '3m05s' or '42s'."""
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h}h{m:02d}m"
    if m:
        return f"{m}m{s:02d}s"
    return f"{s}s"


class Progress:
    """`done/total [#####.....] note, elapsed, ETA` redrawn in place on a terminal."""

    def __init__(
        self, total: int, label: str, *, stream: TextIO | None = None, width: int = 24
    ) -> None:
        self.total, self.label, self.width = max(1, total), label, width
        self.stream = stream if stream is not None else sys.stderr
        self.start = time.perf_counter()
        self.done = 0
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def update(self, done: int, note: str = "") -> None:
        self.done = done
        elapsed = time.perf_counter() - self.start
        eta = elapsed / done * (self.total - done) if done else float("nan")
        filled = int(self.width * done / self.total)
        bar = "#" * filled + "." * (self.width - filled)
        eta_s = format_seconds(eta) if done else "?"
        line = (
            f"{self.label} {done}/{self.total} [{bar}] {note} "
            f"elapsed {format_seconds(elapsed)}, left ~{eta_s}"
        )
        if self.tty:
            self.stream.write("\r\033[K" + line)
            if done >= self.total:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

"""Optuna journal files: find damage before anything is appended, and repair by truncation.

Optuna's JournalFileBackend (Optuna 5, optuna/storages/journal/_file.py) stores one JSON
object per line, each ending in a newline, each an operation with an integer ``op_code``
(JournalOperation in optuna/storages/journal/_storage.py). On reading it silently skips a
bad *last* line (a torn write, garbage) and raises on a bad line followed by more lines. An
append after a skipped bad line therefore makes the whole file unreadable from then on, so
MixBench checks the file before it opens it for writing.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["JournalDamage", "find_damage", "repair"]

OP_CODES = frozenset(range(11))
"""Optuna 5's JournalOperation values: CREATE_STUDY (0) ... DISCARD_TRIALS (10)."""


@dataclass(frozen=True)
class JournalDamage:
    """The first unreadable line of a journal file."""

    path: Path
    offset: int
    """Byte offset where the bad line starts (= the size of the readable prefix)."""
    line: int
    """1-based number of the bad line."""
    why: str
    size: int
    """The file's size in bytes."""

    def message(self) -> str:
        """What is wrong, where, and how to recover (for an exit-2 error)."""
        kept = self.line - 1
        return (
            f"journal file {str(self.path)!r} is damaged at byte {self.offset} of {self.size} "
            f"(line {self.line}: {self.why}); nothing was written to it. Optuna would skip "
            "this line and later writes would make the whole journal unreadable. To recover, "
            "re-run the study command (python -m benchmark.study ...) with --repair-journal: "
            f"it keeps the {kept} readable line(s) before byte "
            f"{self.offset} and moves the original aside (next to it, *.damaged-<time>); or "
            "restore the file from a backup"
        )


def find_damage(path: str | Path) -> JournalDamage | None:
    """The first line Optuna could not replay (truncated, not JSON, not an operation), or
    None when every line is good (a missing or empty file is good)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    offset = 0
    for number, line in enumerate(raw.splitlines(keepends=True), start=1):
        why = _line_problem(line)
        if why is not None:
            return JournalDamage(path, offset, number, why, len(raw))
        offset += len(line)
    return None


def _line_problem(line: bytes) -> str | None:
    if not line.endswith(b"\n"):
        return "truncated: no newline at the end of the file"
    try:
        op = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        return f"not JSON ({err.__class__.__name__}: {err})"
    if not isinstance(op, dict) or not isinstance(op.get("op_code"), int):
        return "not an Optuna journal operation (no integer op_code)"
    if op["op_code"] not in OP_CODES:
        return f"unknown op_code {op['op_code']}"
    return None


def repair(path: str | Path) -> tuple[JournalDamage, Path] | None:
    """Keep the readable prefix of a damaged journal; the original is moved aside.

    Returns (the damage found, where the original now is), or None when nothing was damaged.
    The prefix is a past state of the journal (operations are only ever appended), so the
    studies read back as they were before the damaged line; what came after it is lost from
    the journal but kept in the moved original.
    """
    path = Path(path)
    damage = find_damage(path)
    if damage is None:
        return None
    aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    counter = 1
    while aside.exists():
        aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}-{counter}")
        counter += 1
    with open(path, "rb") as src:
        prefix = src.read(damage.offset)
    staging = path.with_name(f".{path.name}.repair-{os.getpid()}")
    with open(staging, "wb") as out:
        out.write(prefix)
        out.flush()
        os.fsync(out.fileno())
    try:
        os.link(path, aside)  # the original, byte for byte, under its new name
    except OSError:
        shutil.copy2(path, aside)
    os.replace(staging, path)  # atomic: the journal's name always holds a whole file
    return damage, aside

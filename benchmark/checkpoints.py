"""Checkpoints of training in progress: a population's state and its members' records, saved
every few epochs so that a re-run continues from the last one instead of epoch 0.

`benchmark.reproduce` checkpoints its two populations; `benchmark.trials` checkpoints a study
trial trained alone (--population 1), in the study's folder (checkpoints/trial-<key>.pt). A
checkpoint carries a fingerprint of everything that changes the numbers, and is refused
(CheckpointError) when it does not match.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "fingerprint_key",
    "fingerprint",
    "load",
    "save",
]

CHECKPOINT_VERSION = 1
"""Bumped when the checkpoint layout changes (an older file is then refused, not misread)."""


class CheckpointError(ValueError):
    """A checkpoint cannot be read or was written by a different command (exit code 2)."""


def fingerprint_key(fingerprint: Mapping[str, Any]) -> str:
    """A short stable name for a fingerprint (a checkpoint's file name)."""
    text = json.dumps(fingerprint, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def save(path: Path, payload: dict[str, Any]) -> None:
    """Write `payload` (torch.save) to `path` atomically: a kill mid-write leaves the
    previous checkpoint intact."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    torch.save({"version": CHECKPOINT_VERSION, **payload}, tmp)
    os.replace(tmp, path)


def load(
    path: Path, wanted: Mapping[str, Any], fix: str, unreadable: str | None = None
) -> dict[str, Any] | None:
    """The checkpoint at `path`, or None when there is none; CheckpointError when its
    fingerprint differs from `wanted` (naming what differs, and `fix`: what the user can
    do) or when it cannot be read (then `unreadable`, default `fix`)."""
    import torch

    if not path.exists():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # a truncated or foreign file
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(err).__name__}: {err}); {unreadable or fix}"
        ) from None
    if payload.get("version") != CHECKPOINT_VERSION or payload.get("fingerprint") != wanted:
        theirs = payload.get("fingerprint") or {}
        differs = sorted(
            k
            for k in set(theirs) | set(wanted)
            if k != "settings" and theirs.get(k) != wanted.get(k)
        ) + sorted(
            f"settings.{k}"
            for k in set(theirs.get("settings", {})) | set(wanted.get("settings", {}))
            if theirs.get("settings", {}).get(k) != wanted.get("settings", {}).get(k)
        )
        raise CheckpointError(
            f"checkpoint {path} was written by a different command (differs: "
            f"{', '.join(differs) or 'checkpoint version'}); {fix}"
        )
    return payload


def fingerprint(settings: Any, data: Any, **identity: Any) -> dict[str, Any]:
    """What must match for a checkpoint to be continued: `identity` (what was trained, e.g.
    experiment or study, trainable, params), every setting that changes the numbers and the
    data. The same config trains the same numbers, so a re-run (or a retried trial, a re-run
    ablation cell) continues exactly where the interrupted one stopped."""
    from benchmark.artifacts import json_safe

    fixed = {k: v for k, v in vars(settings).items() if k not in ("device", "data_dir")}
    data_id = [data.name, data.split_note, list(data.train.shape)]
    return json_safe({**identity, "settings": fixed, "data": data_id})

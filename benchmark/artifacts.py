"""Files a user opens after a run: metrics.json, config.json, a sample grid and loss curves."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # the background writer imports this module without torch
    from benchmark.data import Dataset
    from benchmark.runner import RunResult

__all__ = ["json_safe", "payload_files", "run_payload", "write_payload", "write_run_artifacts"]


def json_safe(value: Any) -> Any:
    """JSON-serialisable copy: numpy scalars to Python, non-finite floats to None."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    return value


def run_payload(
    result: RunResult,
    *,
    data: Dataset | None = None,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything `write_payload` needs, as plain Python and numpy (picklable, no tensors):
    what a background writer receives from the training thread."""
    centers = None
    if data is not None and "centers" in data.extra:
        centers = np.asarray(data.extra["centers"])
    return {
        "config": {
            "variant": result.variant,
            "params": result.params,
            "seed": result.seed,
            "settings": settings or {},
            "split_note": result.split_note,
        },
        "summary": {
            "status": result.status,
            "reason": result.reason,
            "seconds": result.seconds,
            "final": result.final,
            "history": result.history,
        },
        "variant": result.variant,
        "g_losses": np.asarray(result.g_losses),
        "d_losses": np.asarray(result.d_losses),
        "samples": {mode: np.asarray(s) for mode, s in result.samples.items()},
        "centers": centers,
    }


def _sample_name(mode: str) -> str:
    return "samples.png" if mode in ("default", "buffer") else f"samples_{mode}.png"


def payload_files(payload: dict[str, Any]) -> list[str]:
    """The file names `write_payload` writes for `payload` (known before it runs)."""
    names = ["config.json", "metrics.json"]
    if len(payload["g_losses"]):
        names.append("losses.png")
    names += [
        _sample_name(mode)
        for mode, samples in payload["samples"].items()
        if np.isfinite(samples).all()
    ]
    return names


def write_payload(payload: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write a `run_payload`'s files into `out_dir`; returns {kind: path}."""
    from benchmark.reporting import figures

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    paths["config"] = out / "config.json"
    paths["config"].write_text(json.dumps(json_safe(payload["config"]), indent=2) + "\n")
    paths["metrics"] = out / "metrics.json"
    paths["metrics"].write_text(json.dumps(json_safe(payload["summary"]), indent=2) + "\n")
    variant = payload["variant"]
    if len(payload["g_losses"]):
        paths["losses"] = figures.loss_curves(
            {variant: payload["g_losses"]}, {variant: payload["d_losses"]}, out / "losses.png"
        )
    for mode, samples in payload["samples"].items():
        if not np.isfinite(samples).all():
            continue
        title = f"{variant} samples" + ("" if mode == "default" else f" ({mode} mode)")
        paths[f"samples_{mode}"] = figures.sample_grid(
            samples, out / _sample_name(mode), title=title, reference_points=payload["centers"]
        )
    return paths


def write_run_artifacts(
    result: RunResult,
    out_dir: str | Path,
    *,
    data: Dataset | None = None,
    settings: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Write the run's files into `out_dir`; returns {kind: path}."""
    return write_payload(run_payload(result, data=data, settings=settings), out_dir)

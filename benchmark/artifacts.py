"""Files a user opens after a run: metrics.json, config.json, a sample grid and loss curves."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from benchmark import figures
from benchmark.data import Dataset
from benchmark.runner import RunResult

__all__ = ["json_safe", "write_run_artifacts"]


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


def write_run_artifacts(
    result: RunResult,
    out_dir: str | Path,
    *,
    data: Dataset | None = None,
    settings: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Write the run's files into `out_dir`; returns {kind: path}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    paths["config"] = out / "config.json"
    config = {
        "variant": result.variant,
        "params": result.params,
        "seed": result.seed,
        "settings": settings or {},
        "split_note": result.split_note,
    }
    paths["config"].write_text(json.dumps(json_safe(config), indent=2) + "\n")
    paths["metrics"] = out / "metrics.json"
    summary = {
        "status": result.status,
        "reason": result.reason,
        "seconds": result.seconds,
        "final": result.final,
        "history": result.history,
    }
    paths["metrics"].write_text(json.dumps(json_safe(summary), indent=2) + "\n")
    if len(result.g_losses):
        paths["losses"] = figures.loss_curves(
            {result.variant: result.g_losses},
            {result.variant: result.d_losses},
            out / "losses.png",
        )
    centers = None
    if data is not None and "centers" in data.extra:
        centers = np.asarray(data.extra["centers"])
    for mode, samples in result.samples.items():
        if not np.isfinite(samples).all():
            continue
        name = "samples.png" if mode in ("default", "buffer") else f"samples_{mode}.png"
        title = f"{result.variant} samples" + ("" if mode == "default" else f" ({mode} mode)")
        paths[f"samples_{mode}"] = figures.sample_grid(
            samples, out / name, title=title, reference_points=centers
        )
    return paths

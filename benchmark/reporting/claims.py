"""A paper's claim and what each seed of a reproduction produced: the inputs of its report.

Light on purpose (no torch, scipy or matplotlib at import time), so `python -m
benchmark.reproduce --help` stays fast: the analysis and the files are
`benchmark.reporting.reproduce`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # the runner imports torch; only its type is needed here
    from benchmark.runner import RunResult

__all__ = [
    "DISTANCES",
    "EVAL_DRAWS",
    "SCALE_TOLERANCE",
    "PaperClaim",
    "SeedRun",
    "data_line",
    "paper_params",
    "run_values",
]

DISTANCES = ("w1", "sliced_w2", "pixel_w1")
"""Every distance the harness computes (RealMix also with the '_noise' suffix)."""

SCALE_TOLERANCE = 0.5
"""A measured distance is 'on the paper's scale' within this many orders of magnitude
(a factor of about 3.2 either way)."""


@dataclass(frozen=True)
class PaperClaim:
    """A paper's reported comparison: the numbers it states, where, and under what setting."""

    name: str
    """Experiment name on the command line."""
    source: str
    """Citation of the numbers (paper title, table)."""
    baseline: str
    """Trainable of the baseline (the paper's 'standard' model)."""
    treatment: str
    """Trainable of the method."""
    labels: Mapping[str, str]
    """Display name of each trainable."""
    reported: Mapping[str, Mapping[str, float]]
    """Quantity -> {trainable: the paper's value}; 'w_distance' is the paper's W distance."""
    dataset: str
    epochs: int
    train_images: int
    """Training images the paper used."""
    claim: str
    """The claim tested, in words."""
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Params differing from each trainable's defaults (none: the defaults are the paper's)."""


EVAL_DRAWS = 3
"""Evaluation sets each seed's final generator is scored on (see `SeedRun.evaluated`)."""


@dataclass
class SeedRun:
    """What one seed of one trainable produced (enough to rebuild every table and figure)."""

    trainable: str
    seed: int
    status: str
    final: dict[str, float]
    history: list[dict[str, float]]
    g_losses: np.ndarray
    d_losses: np.ndarray
    samples: dict[str, np.ndarray]
    seconds: float
    evaluated: dict[str, float] = field(default_factory=dict)
    """The final generator's distances averaged over EVAL_DRAWS random evaluation sets (its
    own held-out subsamples, generated samples and projections), so intervals over seeds
    include the evaluation-set variance; empty when the run diverged."""
    eval_sd: dict[str, float] = field(default_factory=dict)
    """Per distance, the sd over those evaluation draws (the evaluation-set spread)."""

    @classmethod
    def from_result(cls, result: RunResult, seconds: float) -> SeedRun:
        """The one conversion from the harness's `RunResult` (the population's wall time as
        `seconds`: the seeds trained side by side)."""
        return cls(
            trainable=result.variant,
            seed=result.seed,
            status=result.status,
            final=dict(result.final),
            history=list(result.history),
            g_losses=result.g_losses,
            d_losses=result.d_losses,
            samples=dict(result.samples),
            seconds=seconds,
        )


def run_values(runs: Sequence[SeedRun], key: str) -> np.ndarray:
    """Finite values of `key` over the finished seeds: a distance from `SeedRun.evaluated`
    when the run has it (evaluation-set variance included), else the last scored epoch."""
    vals = [
        r.evaluated[key] if key in r.evaluated else r.final.get(key, math.nan)
        for r in runs
        if r.status == "finished"
    ]
    return np.array([v for v in vals if v is not None and math.isfinite(v)], dtype=float)


def data_line(paper: PaperClaim, settings: Any, data: Any) -> str:
    """The run's data in one line, with how it differs from the paper's setting."""
    n_train, n_held = int(data.train.shape[0]), int(data.heldout.shape[0])
    kind = "images" if data.bounded else "points"
    line = (
        f"{data.name}: {n_train} train / {n_held} held-out {kind}, {settings.epochs} epoch(s), "
        f"{settings.seeds} seed(s) per model, n_eval {settings.n_eval} ({data.split_note})"
    )
    differs = []
    if data.name != paper.dataset:
        differs.append(f"dataset {data.name}, not {paper.dataset}")
    if n_train != paper.train_images:
        differs.append(f"{n_train} training images, not the paper's {paper.train_images:,}")
    if settings.epochs != paper.epochs:
        differs.append(f"{settings.epochs} epochs, not {paper.epochs}")
    if differs:
        line += "; NOT the paper's setting: " + "; ".join(differs)
    return line


def paper_params(paper: PaperClaim, trainable: str) -> dict[str, Any]:
    """Every param of `trainable` as the paper trains it: its defaults, then `paper.params`."""
    # here, not at the top: the trainables pull in torch, which `--help` should not wait for
    from benchmark.trainables import params_class

    return {**params_class(trainable)().to_dict(), **paper.params.get(trainable, {})}

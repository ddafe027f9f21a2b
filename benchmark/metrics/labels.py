"""The one table of metric keys: what each score means, its unit, which way is better.

Every key `benchmark.metrics.scoring` (and the loss part of `runner.score_members`) records is
here; a second sampling mode's values carry a '_<mode>' suffix on the same key (RealMix:
'w1_noise'). The module imports nothing heavy, so reports can read it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["LABELS", "Metric", "metric_of"]


@dataclass(frozen=True)
class Metric:
    """One metric key's description."""

    label: str
    """What the number is, in words (reports print it next to the key)."""
    short: str
    """A compact column title."""
    unit: str
    """The number's unit ('' for a dimensionless score or a count)."""
    direction: Literal["minimize", "maximize"] | None
    """Which way is better; None where neither is (a loss level, a two-sided statistic)."""
    needs_labels: bool = False
    """Only measured on a labelled digit dataset (the class-aware metrics of the CNN)."""


_DATA = "data units (Euclidean distance in sample space)"
_PIXEL = "pixel value"

LABELS: dict[str, Metric] = {
    "w1": Metric("exact W1 (Euclidean ground cost, POT emd2)", "W1", _DATA, "minimize"),
    "w1_converged": Metric(
        "1.0 if the exact W1 solver reached optimality within num_itermax, else 0.0 (w1 is "
        "then NaN)",
        "W1 converged",
        "",
        "maximize",
    ),
    "sliced_w2": Metric(
        "sliced W2 (random 1-D projections with a fixed seed, POT sliced_wasserstein_distance, "
        "p=2)",
        "sliced W2",
        _DATA,
        "minimize",
    ),
    "pixel_w1": Metric(
        "pixel-value W1 (1-D W1 between flattened value distributions, scipy)",
        "pixel W1",
        _PIXEL,
        "minimize",
    ),
    "copy_fraction": Metric(
        "share of samples closer to a training image than the held-out 5th percentile "
        "nearest-neighbour distance (~0.05 when nothing is copied)",
        "copy fraction",
        "share",
        "minimize",
    ),
    "copy_z_u": Metric(
        "Meehan et al. (2020) data-copying statistic Z_U (<< 0: copying, >> 0: underfitting)",
        "copy Z_U",
        "standard deviations",
        None,
    ),
    "cfid": Metric(
        "classifier-FID: Frechet distance of the digit CNN's penultimate features",
        "classifier-FID",
        "squared feature units",
        "minimize",
        needs_labels=True,
    ),
    "precision": Metric(
        "precision (Naeem et al. 2020) in classifier feature space",
        "precision",
        "share",
        "maximize",
        needs_labels=True,
    ),
    "recall": Metric(
        "recall (Naeem et al. 2020)", "recall", "share", "maximize", needs_labels=True
    ),
    "density": Metric("density (Naeem et al. 2020)", "density", "", "maximize", needs_labels=True),
    "coverage": Metric(
        "coverage (Naeem et al. 2020)", "coverage", "share", "maximize", needs_labels=True
    ),
    "mode_kl": Metric(
        "KL(predicted-class histogram || uniform), nats (0 = all classes equally)",
        "class KL",
        "nats",
        "minimize",
        needs_labels=True,
    ),
    "classes_covered": Metric(
        "classes holding at least 2.5% of the samples (of 10)",
        "classes covered",
        "classes",
        "maximize",
        needs_labels=True,
    ),
    "modes_covered": Metric(
        "2-D modes with samples within 3 std of their centre",
        "modes covered",
        "modes",
        "maximize",
    ),
    "high_quality": Metric(
        "share of 2-D samples within 3 std of some mode centre",
        "high quality",
        "share",
        "maximize",
    ),
    "g_loss": Metric("mean generator loss over the last epoch", "G loss", "loss", None),
    "d_loss": Metric("mean discriminator loss over the last epoch", "D loss", "loss", None),
    "g_loss_var": Metric(
        "variance of the per-step generator loss in the last epoch",
        "G-loss variance",
        "loss^2",
        "minimize",
    ),
    "d_loss_var": Metric(
        "variance of the per-step discriminator loss in the last epoch",
        "D-loss variance",
        "loss^2",
        "minimize",
    ),
    "oscillation": Metric(
        "EMA-smoothed loss see-saw per step (mean of G and D)",
        "oscillation",
        "loss per step",
        "minimize",
    ),
    "oscillation_g": Metric(
        "EMA-smoothed generator-loss see-saw per step",
        "G oscillation",
        "loss per step",
        "minimize",
    ),
    "oscillation_d": Metric(
        "EMA-smoothed discriminator-loss see-saw per step",
        "D oscillation",
        "loss per step",
        "minimize",
    ),
    "seconds": Metric("seconds the epoch's training took", "seconds", "s", "minimize"),
}
"""Metric key -> its description, for every key a scored epoch records."""


def metric_of(key: str) -> Metric | None:
    """The entry of a recorded key, a '_<mode>' suffix (e.g. 'w1_noise') removed; None for a
    key that is not a metric."""
    if key in LABELS:
        return LABELS[key]
    base, _, mode = key.rpartition("_")
    return LABELS.get(base) if base and mode else None

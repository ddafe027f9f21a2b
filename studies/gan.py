"""Standard GAN baseline space: learning rate, Adam betas and dropout.

The baseline is tuned with the same trial budget as the variants, so a comparison measures
the method rather than how much tuning each side got.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from benchmark.settings import Settings

if TYPE_CHECKING:
    from studies import Suggester

TRAINABLE: str | None = "gan"
SETTINGS = Settings(epochs=5, dataset="mnist")


def suggest(trial: Suggester) -> dict[str, Any]:
    """lr (log), beta1, beta2 and dropout in G and D."""
    return {
        "lr": trial.suggest_float("lr", 1e-5, 1e-2, log=True),
        "beta1": trial.suggest_float("beta1", 0.0, 0.95),
        "beta2": trial.suggest_float("beta2", 0.9, 0.9999),
        "dropout_g": trial.suggest_float("dropout_g", 0.0, 0.5),
        "dropout_d": trial.suggest_float("dropout_d", 0.0, 0.5),
    }


def next_fixed(trials: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Single-variant space: nothing to balance."""
    return {}

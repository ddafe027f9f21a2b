"""RealMixGAN space: mixing probability, scale and noise of the leaked real images, the
rolling buffer (capacity and refresh fraction) and the learning rate.

Adam betas and dropout stay at the paper's values (0.5/0.999, 0.2/0.3); override them with
``--param`` to study them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from benchmark.settings import Settings

if TYPE_CHECKING:
    from studies import Suggester

TRAINABLE: str | None = "realmix"
SETTINGS = Settings(epochs=5, dataset="mnist")


def suggest(trial: Suggester) -> dict[str, Any]:
    """p_mix, alpha (log), noise_sigma (log), buffer_refresh (log), buffer_capacity (log), lr."""
    return {
        "p_mix": trial.suggest_float("p_mix", 0.0, 1.0),
        "alpha": trial.suggest_float("alpha", 0.02, 2.0, log=True),
        "noise_sigma": trial.suggest_float("noise_sigma", 0.01, 1.0, log=True),
        "buffer_refresh": trial.suggest_float("buffer_refresh", 0.01, 1.0, log=True),
        "buffer_capacity": trial.suggest_int("buffer_capacity", 64, 8192, log=True),
        "lr": trial.suggest_float("lr", 1e-5, 1e-2, log=True),
    }


def next_fixed(trials: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Single-variant space: nothing to balance."""
    return {}

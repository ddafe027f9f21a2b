"""Mixture GAN space: the law mu of the mixing coefficient t, the learning rate and the
generator loss.

mu is delta(1) (the vanilla GAN), uniform on [0, 1], or Beta(a, b); a and b exist only on the
beta branch (a conditional sub-space), searched on a log scale in [0.1, 10].
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from benchmark.settings import Settings

if TYPE_CHECKING:
    from studies import Suggester

TRAINABLE: str | None = "mixture"
SETTINGS = Settings(epochs=5, dataset="mnist")

T_MEASURES = ("delta1", "uniform", "beta")
G_LOSSES = ("nonsaturating", "minimax")


def suggest(trial: Suggester) -> dict[str, Any]:
    """t_measure (with t_a, t_b when it is beta), lr (log) and g_loss."""
    params: dict[str, Any] = {"t_measure": trial.suggest_categorical("t_measure", T_MEASURES)}
    if params["t_measure"] == "beta":
        params["t_a"] = trial.suggest_float("t_a", 0.1, 10.0, log=True)
        params["t_b"] = trial.suggest_float("t_b", 0.1, 10.0, log=True)
    params["lr"] = trial.suggest_float("lr", 1e-5, 1e-2, log=True)
    params["g_loss"] = trial.suggest_categorical("g_loss", G_LOSSES)
    return params


def next_fixed(trials: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Single-variant space: nothing to balance."""
    return {}

"""Search spaces as Python: one module per space, each `suggest(trial) -> dict`.

Every space module defines

- ``TRAINABLE``: the variant it tunes, or None when the variant is itself searched (compare);
- ``SETTINGS``: the fixed :class:`benchmark.settings.Settings` of its studies (never searched);
- ``suggest(trial) -> dict``: the trainable's hyperparameters for one trial (for ``compare``
  the dict also holds ``"trainable"``);
- ``next_fixed(trials) -> dict``: parameters the harness must fix for the next trial so budgets
  stay balanced (``{}`` for single-variant spaces).

``SPACES`` lists them explicitly; nothing is imported by string.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from benchmark.settings import Settings
from studies import ablation, compare, gan, mixture, realmix

__all__ = ["SPACES", "SearchSpace", "SpaceError", "Suggester", "get_space", "split_variant"]

VARIANT_PARAM = "trainable"
"""Key of the variant in a suggested dict when the space searches over variants."""


class Suggester(Protocol):
    """The part of `optuna.trial.Trial` a space uses (so spaces can be wrapped and tested)."""

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float: ...

    def suggest_int(
        self, name: str, low: int, high: int, *, step: int = 1, log: bool = False
    ) -> int: ...

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...


class SearchSpace(Protocol):
    """What `benchmark.study` needs from a space module."""

    TRAINABLE: str | None
    SETTINGS: Settings

    def suggest(self, trial: Suggester) -> dict[str, Any]: ...

    def next_fixed(self, trials: Sequence[Mapping[str, Any]]) -> dict[str, Any]: ...


class SpaceError(KeyError):
    """Unknown search space name (CLI exit code 2)."""

    def __str__(self) -> str:
        return str(self.args[0])


SPACES: dict[str, SearchSpace] = {
    "realmix": realmix,
    "mixture": mixture,
    "gan": gan,
    "compare": compare,
    "realmix-ablation": ablation.REALMIX,
    "mixture-ablation": ablation.MIXTURE,
}


def get_space(name: str) -> SearchSpace:
    """The space called `name`; SpaceError listing the valid names otherwise."""
    if name not in SPACES:
        raise SpaceError(f"unknown search space {name!r}; valid: {', '.join(SPACES)}")
    return SPACES[name]


def split_variant(space: SearchSpace, suggested: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(variant, its params) from a suggested dict, whichever kind of space produced it."""
    params = dict(suggested)
    if space.TRAINABLE is not None:
        return space.TRAINABLE, params
    return str(params.pop(VARIANT_PARAM)), params

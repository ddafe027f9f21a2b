"""Head-to-head space: the trainable itself is a categorical, each branch its own sub-space.

Each branch reuses that variant's space (`studies.gan`, `studies.realmix`,
`studies.mixture`) with its parameter names prefixed by the variant (``realmix.lr``), so the
sampler models the branches separately and never mixes one variant's lr with another's.

Equal budget: the sampler does not choose the variant. Before every trial the harness calls
`next_fixed` with the parameters of every trial that already counts toward the budget
(complete, pruned, running or queued) and enqueues the trial with the variant used least so
far (ties in the order of `CHOICES`). With ``--trials N`` each variant gets N // 3 trials,
and the first N % 3 variants of `CHOICES` one more; pruned trials use up budget like complete
ones, failed ones do not (their retry does). Workers on other machines that bypass the local
ask lock can make the counts differ by one per concurrent worker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from benchmark.settings import Settings
from studies import gan as gan_space
from studies import mixture as mixture_space
from studies import realmix as realmix_space

if TYPE_CHECKING:
    from studies import Suggester

TRAINABLE: str | None = None
SETTINGS = Settings(epochs=5, dataset="mnist")

VARIANT_PARAM = "trainable"
BRANCHES = {"gan": gan_space, "realmix": realmix_space, "mixture": mixture_space}
CHOICES = tuple(BRANCHES)


class PrefixedTrial:
    """Forwards `suggest_*` to a trial with every parameter name prefixed by `prefix.`."""

    def __init__(self, trial: Suggester, prefix: str) -> None:
        self._trial, self._prefix = trial, prefix

    def _name(self, name: str) -> str:
        return f"{self._prefix}.{name}"

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        return self._trial.suggest_float(self._name(name), low, high, step=step, log=log)

    def suggest_int(
        self, name: str, low: int, high: int, *, step: int = 1, log: bool = False
    ) -> int:
        return self._trial.suggest_int(self._name(name), low, high, step=step, log=log)

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self._trial.suggest_categorical(self._name(name), choices)


def suggest(trial: Suggester) -> dict[str, Any]:
    """{"trainable": variant, **that variant's suggested params (unprefixed)}."""
    variant = trial.suggest_categorical(VARIANT_PARAM, CHOICES)
    return {VARIANT_PARAM: variant, **BRANCHES[variant].suggest(PrefixedTrial(trial, variant))}


def next_fixed(trials: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The variant with the fewest trials so far (params of each counted trial given)."""
    counts = dict.fromkeys(CHOICES, 0)
    for params in trials:
        variant = params.get(VARIANT_PARAM)
        if variant in counts:
            counts[variant] += 1
    return {VARIANT_PARAM: min(CHOICES, key=lambda v: counts[v])}

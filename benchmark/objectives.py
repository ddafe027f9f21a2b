"""What a study minimises: one table of objectives (metrics, pruning metric, variants, labels)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "INTERMEDIATE_METRIC",
    "OBJECTIVES",
    "Objective",
    "get_objective",
    "intermediate_metric",
    "metric_names",
]

INTERMEDIATE_METRIC = "sliced_w2"
"""Metric reported every scored epoch to drive pruning when the objective's own metric is not
scored every epoch (cheap; exact W1 only at the end)."""


@dataclass(frozen=True)
class Objective:
    """One `--objective`: the final metrics it minimises (mean over seeds) and how it prunes."""

    name: str
    metrics: tuple[str, ...]
    """The final metrics it minimises, in order (one per Optuna direction)."""
    text: str
    """What it scores, for the study's summary ('{n}': samples per side)."""
    noise: bool = False
    """Scores RealMix's samples drawn without any real image (its 'noise' mode), so copying
    cannot help; only RealMix spaces have that mode."""
    variants: tuple[str, ...] | None = None
    """The trainables it applies to (None: every one)."""
    needs_labels: bool = False
    """Needs a digit/image dataset with labels (classifier-FID); turns on extra metrics."""
    exact_every_epoch: bool = False
    """Its metric (exact W1) is scored every epoch by default, so the pruner sees it."""

    @property
    def directions(self) -> list[str]:
        """Optuna's directions: every metric is minimised."""
        return ["minimize"] * len(self.metrics)

    @property
    def multi(self) -> bool:
        """Several objectives at once (a Pareto front; Optuna's pruners do not apply)."""
        return len(self.metrics) > 1

    def intermediate(self, exact_every_epoch: bool = False) -> str:
        """The per-epoch metric that drives pruning.

        With exact W1 scored at every epoch (the study's default for the W1 objectives) it is
        the objective's own metric, so a pruned trial's value (its last intermediate value) is
        a W1 like a complete trial's; otherwise sliced W2, in the objective's sampling mode.
        """
        if exact_every_epoch and self.exact_every_epoch:
            return self.metrics[0]
        return f"{INTERMEDIATE_METRIC}_noise" if self.noise else INTERMEDIATE_METRIC

    def applies_to(self, variant: str | None) -> bool:
        return self.variants is None or variant in self.variants


OBJECTIVES: dict[str, Objective] = {
    o.name: o
    for o in (
        Objective(
            "wasserstein",
            ("w1",),
            "exact W1 at the last epoch, {n} samples per side vs held-out",
            exact_every_epoch=True,
        ),
        Objective(
            "wasserstein-noise",
            ("w1_noise",),
            "exact W1 of noise-mode samples (no real image), n={n}",
            noise=True,
            variants=("realmix",),
            exact_every_epoch=True,
        ),
        Objective("cfid", ("cfid",), "classifier-FID at the last epoch, n={n}", needs_labels=True),
        Objective(
            "cfid-noise",
            ("cfid_noise",),
            "classifier-FID of noise-mode samples, n={n}",
            noise=True,
            variants=("realmix",),
            needs_labels=True,
        ),
        Objective(
            "pareto",
            ("w1", "g_loss_var"),
            "(exact W1, G-loss variance) at the last epoch, n={n}",
            exact_every_epoch=True,
        ),
    )
}
"""Objective name -> its definition; `--objective` takes these names."""


def get_objective(name: str) -> Objective:
    """The objective `name`; ValueError naming the valid ones."""
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise ValueError(f"unknown objective {name!r}; valid: {', '.join(OBJECTIVES)}") from None


def intermediate_metric(objective: str, exact_every_epoch: bool = False) -> str:
    """The per-epoch metric that drives pruning for `objective` (see Objective.intermediate)."""
    return get_objective(objective).intermediate(exact_every_epoch)


def metric_names(objective: str, default: Sequence[str] = ("w1",)) -> tuple[str, ...]:
    """The final metrics of `objective`; `default` for a name not in the table (an old study)."""
    found = OBJECTIVES.get(objective)
    return found.metrics if found is not None else tuple(default)

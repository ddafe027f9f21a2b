"""Ablation designs as search spaces: every knob is a categorical whose values are the cells.

`benchmark.ablation` enqueues one trial per design cell; the enqueued params fix these
categoricals, so the study runs exactly the designed configurations with the harness's
workers, storage and MLflow tracking. The categoricals are named after the trainable's own
parameters (``p_mix``, ``beta1``, ...), so every suggested value is recorded on the trial.

- ``realmix-ablation`` (`REALMIX`): the three things RealMixGAN changes at once versus the
  standard GAN, as a 2^3 factorial: real-data mixing (p_mix 0.9 vs 0.0), dropout
  ((0.2, 0.3) vs (0, 0) in G, D) and Adam betas (the paper's (0.5, 0.999) vs the default
  (0.9, 0.999)). Everything else stays at RealMixGAN's paper defaults; with mixing off, G
  still receives its 784 extra inputs as small fallback noise (sigma 0.1), so the all-off
  cell is the RealMix architecture with nothing real leaked in, not the 100-input GAN.
- ``mixture-ablation`` (`MIXTURE`): a one-factor design over the law of Mixture GAN's t:
  delta1 (the vanilla GAN, the baseline), uniform and a few Beta shapes.

If a cell's trial fails, `next_fixed` hands the harness the missing cell again, so the
budget is always spent on the design.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from benchmark.settings import Settings

if TYPE_CHECKING:
    from studies import Suggester

__all__ = [
    "BETA_SHAPES",
    "MIXTURE",
    "REALMIX",
    "AblationSpace",
    "Factor",
    "mixture_cells",
    "realmix_cells",
]


@dataclass(frozen=True)
class Factor:
    """One switch of a design: a name, its two (or more) levels and the params of each."""

    name: str
    """Column name in the effects table, e.g. 'mixing'."""
    levels: tuple[str, ...]
    """Level labels, baseline first (e.g. ('off', 'on')): effects are 'level - baseline'."""
    params: tuple[Mapping[str, Any], ...]
    """The trainable params that realise each level (aligned with `levels`)."""

    def level_of(self, params: Mapping[str, Any]) -> str | None:
        """The level whose params `params` carries, or None when it matches no level."""
        for label, values in zip(self.levels, self.params, strict=True):
            if all(_same(params.get(k), v) for k, v in values.items()):
                return label
        return None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return abs(float(a) - float(b)) <= 1e-12
        except (TypeError, ValueError):
            return False
    return a == b


REALMIX_FACTORS = (
    Factor("mixing", ("off", "on"), ({"p_mix": 0.0}, {"p_mix": 0.9})),
    Factor(
        "dropout",
        ("off", "on"),
        ({"dropout_g": 0.0, "dropout_d": 0.0}, {"dropout_g": 0.2, "dropout_d": 0.3}),
    ),
    Factor("betas", ("default", "paper"), ({"beta1": 0.9}, {"beta1": 0.5})),
)
"""RealMixGAN's three changes versus the standard GAN (beta2 is 0.999 at both levels)."""

BETA_SHAPES = ((5.0, 1.0), (2.0, 2.0), (0.5, 0.5))
"""Beta(a, b) laws of t in the Mixture GAN ablation: mostly near 1 (close to vanilla),
centred on 1/2 (weak signal) and U-shaped (a mix of vanilla-like and uninformative steps)."""


def _measure_levels() -> tuple[tuple[str, ...], tuple[dict[str, Any], ...]]:
    labels = ["delta1", "uniform"]
    params: list[dict[str, Any]] = [{"t_measure": "delta1"}, {"t_measure": "uniform"}]
    for a, b in BETA_SHAPES:
        labels.append(f"beta({a:g},{b:g})")
        params.append({"t_measure": "beta", "t_a": a, "t_b": b})
    return tuple(labels), tuple(params)


MIXTURE_FACTORS = (Factor("t_measure", *_measure_levels()),)
"""Mixture GAN's law of t; delta1 (the vanilla GAN) is the baseline level."""


def realmix_cells() -> list[dict[str, Any]]:
    """The 8 cells of the RealMix factorial, as the params each trial is enqueued with."""
    return _product(REALMIX_FACTORS)


def mixture_cells() -> list[dict[str, Any]]:
    """One cell per t-measure (delta1 first)."""
    return _product(MIXTURE_FACTORS)


def _product(factors: Sequence[Factor]) -> list[dict[str, Any]]:
    cells: list[dict[str, Any]] = [{}]
    for factor in factors:
        cells = [{**cell, **dict(p)} for cell in cells for p in factor.params]
    return cells


@dataclass(frozen=True)
class AblationSpace:
    """A design as a `studies.SearchSpace`: categoricals over the values the cells use."""

    name: str
    """Space name in `studies.SPACES`."""
    TRAINABLE: str
    SETTINGS: Settings
    factors: tuple[Factor, ...]

    def cells(self) -> list[dict[str, Any]]:
        """Every cell of the design, as enqueue params (the factors' values only)."""
        return _product(self.factors)

    def choices(self) -> dict[str, tuple[Any, ...]]:
        """Each categorical's choices: the values the cells use, in first-seen order."""
        out: dict[str, list[Any]] = {}
        for factor in self.factors:
            for values in factor.params:
                for key, value in values.items():
                    seen = out.setdefault(key, [])
                    if value not in seen:
                        seen.append(value)
        return {k: tuple(v) for k, v in out.items()}

    def suggest(self, trial: Suggester) -> dict[str, Any]:
        """The cell's params (fixed by the enqueued trial); every other param keeps the
        trainable's default. Mixture's t_a and t_b are asked only on the beta branch."""
        params: dict[str, Any] = {}
        for key, options in self.choices().items():
            if key in ("t_a", "t_b") and params.get("t_measure") != "beta":
                continue
            params[key] = trial.suggest_categorical(key, options)
        return params

    def next_fixed(self, trials: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """The cell with the fewest counted trials (design order breaks ties).

        Called by the harness only when no enqueued trial is waiting, e.g. after a cell's
        trial failed: the budget then goes to the missing cell rather than to a random one.
        """
        counts = [0] * len(self.cells())
        for params in trials:
            index = self.cell_index(params)
            if index is not None:
                counts[index] += 1
        return dict(self.cells()[counts.index(min(counts))])

    def cell_index(self, params: Mapping[str, Any]) -> int | None:
        """Index of the cell `params` belongs to, or None for params outside the design."""
        levels = self.levels_of(params)
        if levels is None:
            return None
        for i, cell in enumerate(self.cells()):
            if self.levels_of(cell) == levels:
                return i
        return None

    def levels_of(self, params: Mapping[str, Any]) -> dict[str, str] | None:
        """{factor: level label} of a trial's params, or None when some factor matches none."""
        out: dict[str, str] = {}
        for factor in self.factors:
            level = factor.level_of(params)
            if level is None:
                return None
            out[factor.name] = level
        return out


REALMIX = AblationSpace(
    name="realmix-ablation",
    TRAINABLE="realmix",
    SETTINGS=Settings(epochs=5, dataset="mnist", seeds=3),
    factors=REALMIX_FACTORS,
)
"""RealMixGAN's 2^3 factorial: mixing x dropout x betas."""

MIXTURE = AblationSpace(
    name="mixture-ablation",
    TRAINABLE="mixture",
    SETTINGS=Settings(epochs=5, dataset="mnist", seeds=3),
    factors=MIXTURE_FACTORS,
)
"""Mixture GAN's t-measure: delta1 against uniform and three Beta shapes (lr, betas and the
non-saturating G loss at their defaults)."""

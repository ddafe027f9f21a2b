"""Run settings that are never searched: epochs, batch size, dataset, seeds, evaluation size."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Settings", "SettingsError", "setting_changes"]


class SettingsError(ValueError):
    """A run setting is out of range (CLI exit code 2)."""


@dataclass(frozen=True)
class Settings:
    """Fixed settings of a run or a study, kept apart from the searched hyperparameters."""

    epochs: int = 5
    """Training epochs per run (the paper uses 70 on the full MNIST training split)."""
    batch_size: int = 128
    """Minibatch size (the paper's 128)."""
    dataset: str = "mnist"
    """One of benchmark.data.DATASETS."""
    data_dir: str | None = None
    """Folder holding one sub-folder per dataset; None: MIXBENCH_DATA, cache, Debian, download."""
    seeds: int = 1
    """Seeds trained per configuration; a trial's objective is the mean over seeds."""
    base_seed: int = 0
    """Seed of the first seed; seed k of a trial is base_seed + k."""
    heldout_size: int = 2000
    """Held-out samples carved when a dataset ships only one split."""
    train_size: int | None = None
    """Use only this many training samples (a seeded subset); None: all of them."""
    n_eval: int = 1000
    """Samples per side for the exact W1 (POT emd2 cost grows about as n^3)."""
    eval_every: int = 1
    """Score every k-th epoch (the last epoch is always scored)."""
    exact_every_epoch: bool = False
    """Exact W1 at every scored epoch; False: only at the last, sliced W2 for the rest."""
    extra_metrics: bool = False
    """Also score copying and class/mode coverage (benchmark.metrics.scoring) at the last epoch."""
    device: str = "auto"
    """auto, cpu, cuda or cuda:N."""

    def __post_init__(self) -> None:
        bounds = {
            "epochs": 1,
            "batch_size": 2,
            "seeds": 1,
            "heldout_size": 10,
            "n_eval": 10,
            "eval_every": 1,
            "train_size": 1,
        }
        for name, bound in bounds.items():
            value = getattr(self, name)
            if value is not None and value < bound:
                raise SettingsError(f"{name}={value} is invalid; must be >= {bound}")

    def replace(self, **changes: object) -> Settings:
        """A copy with some fields changed (None values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def scored(self, epoch: int) -> bool:
        """Whether `epoch` (1-based) is scored: every `eval_every`-th and the last."""
        return epoch == self.epochs or epoch % self.eval_every == 0

    def seed_list(self) -> list[int]:
        return [self.base_seed + k for k in range(self.seeds)]


def setting_changes(
    assignments: Mapping[str, str], flags: Mapping[str, object] | None = None
) -> dict[str, Any]:
    """Typed changes to a `Settings` from a command line, the one way every CLI builds them:
    `assignments` ('--setting name=value', split) coerced to each setting's type, then the
    dedicated `flags` (e.g. {'epochs': args.epochs}; None: not given). SettingsError names an
    unknown setting or a value of the wrong type."""
    hints = typing.get_type_hints(Settings)
    changes: dict[str, Any] = {}
    for name, value in assignments.items():
        if name not in hints:
            raise SettingsError(
                f"--setting {name}: unknown setting; valid: {', '.join(sorted(hints))}"
            )
        changes[name] = _coerce(name, hints[name], value)
    changes.update({k: v for k, v in (flags or {}).items() if v is not None})
    return changes


def _coerce(name: str, hint: Any, value: str) -> Any:
    optional = type(None) in typing.get_args(hint)
    base = next((a for a in typing.get_args(hint) if a is not type(None)), hint)
    if optional and value.lower() in ("none", ""):
        return None
    try:
        if base is bool:
            low = value.lower()
            if low not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(value)
            return low in ("1", "true", "yes", "on")
        return base(value)
    except ValueError:
        raise SettingsError(
            f"--setting {name}={value!r} is not a valid {getattr(base, '__name__', base)}"
        ) from None

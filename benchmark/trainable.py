"""The one contract between MixBench's harness and its GAN variants.

Every trainable is a *population*: P members of the same variant trained at once, each with
its own hyperparameters (held as tensors), its own seed and its own random streams. A single
run is a population of one, so a study's populations and a run alone share one copy of the
math. Trainables never import optuna or mlflow: the harness scores them and decides pruning.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

import numpy as np
import torch

from benchmark.data import Dataset

__all__ = [
    "EpochResult",
    "ParamError",
    "Trainable",
    "TrainableParams",
    "param",
]


class ParamError(ValueError):
    """A hyperparameter is unknown or outside its allowed range (CLI exit code 2)."""


def param(
    default: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    choices: Sequence[Any] | None = None,
    help: str = "",
) -> Any:
    """A dataclass field carrying its allowed range, so validation and help are generated."""
    meta = {
        "low": low,
        "high": high,
        "low_open": low_open,
        "high_open": high_open,
        "choices": tuple(choices) if choices is not None else None,
        "help": help,
    }
    return dataclasses.field(default=default, metadata=meta)


P = TypeVar("P", bound="TrainableParams")


@dataclass(frozen=True)
class TrainableParams:
    """Base for each trainable's typed hyperparameters; subclasses add fields via `param()`."""

    variant: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            object.__setattr__(self, f.name, _check(self.variant, f, value))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def describe(cls, name: str) -> str:
        """Human-readable allowed range of one parameter, e.g. 'p_mix in [0, 1]'."""
        f = {f.name: f for f in dataclasses.fields(cls)}[name]
        return f"{name} {_range_text(f)}"

    @classmethod
    def from_mapping(cls: type[P], values: Mapping[str, Any]) -> P:
        """Build from a flat mapping (strings from the CLI are coerced to the field's type)."""
        known = set(cls.names())
        unknown = sorted(set(values) - known)
        if unknown:
            raise ParamError(
                f"unknown parameter(s) {', '.join(unknown)} for trainable '{cls.variant}'; "
                f"valid: {', '.join(sorted(known))}"
            )
        return cls(**dict(values))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _range_text(f: dataclasses.Field) -> str:
    m = f.metadata
    if m.get("choices") is not None:
        return "in {" + ", ".join(str(c) for c in m["choices"]) + "}"
    lo, hi = m.get("low"), m.get("high")
    if lo is None and hi is None:
        return f"of type {type(f.default).__name__}"
    left = "(" if m.get("low_open") else "["
    right = ")" if m.get("high_open") else "]"
    lo_s = "-inf" if lo is None else f"{lo:g}"
    hi_s = "inf" if hi is None else f"{hi:g}"
    return f"in {left}{lo_s}, {hi_s}{right}"


def _coerce(variant: str, f: dataclasses.Field, value: Any) -> Any:
    kind = type(f.default)
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    try:
        if kind is bool:
            if isinstance(value, str):
                low = value.strip().lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if kind is int:
            as_float = float(value)
            if not as_float.is_integer():
                raise ValueError(value)
            return int(as_float)
        return kind(value)
    except (TypeError, ValueError):
        raise ParamError(
            f"{variant}: parameter {f.name}={value!r} is not a valid {kind.__name__}; "
            f"allowed: {f.name} {_range_text(f)}"
        ) from None


def _check(variant: str, f: dataclasses.Field, value: Any) -> Any:
    value = _coerce(variant, f, value)
    m = f.metadata
    bad = False
    if m.get("choices") is not None:
        bad = value not in m["choices"]
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            bad = True
        lo, hi = m.get("low"), m.get("high")
        if lo is not None and (value < lo or (m.get("low_open") and value == lo)):
            bad = True
        if hi is not None and (value > hi or (m.get("high_open") and value == hi)):
            bad = True
    if bad:
        raise ParamError(
            f"{variant}: parameter {f.name}={value!r} is out of range; "
            f"allowed: {f.name} {_range_text(f)}"
        )
    return value


@dataclass
class EpochResult:
    """Per-step losses of one epoch for every member: arrays of shape (P, steps)."""

    g_losses: np.ndarray
    d_losses: np.ndarray
    seconds: float

    def member(self, i: int) -> EpochResult:
        return EpochResult(self.g_losses[i : i + 1], self.d_losses[i : i + 1], self.seconds)


class PopulationCore(Protocol):
    """The population mechanics every trainable keeps as ``.core``
    (benchmark.trainables.core.AdversarialCore): what the harness reads and sets on it."""

    data: Dataset
    device: torch.device
    batch_size: int

    def freeze(self, active: Sequence[bool]) -> None:
        """Freeze the members whose flag is False (their optimiser steps change nothing)."""
        ...

    def member_bytes(self) -> int:
        """Device memory of one member's networks, optimiser state and step activations."""
        ...


@runtime_checkable
class Trainable(Protocol):
    """What the harness needs from a GAN variant (a population of P >= 1 members).

    Construction (by `benchmark.trainables.build`): a sequence of typed params (one per
    member), a `Dataset`, one seed per member, a device and the batch size.
    """

    name: ClassVar[str]
    sample_modes: ClassVar[tuple[str, ...]]
    params_class: ClassVar[type[TrainableParams]]
    size: int
    core: PopulationCore
    """The shared population mechanics (benchmark.trainables.core)."""

    def train_epoch(self) -> EpochResult:
        """One pass over the training split; per-step G and D losses for every member."""
        ...

    def sample(self, n: int, mode: str | None = None, seed: int = 0) -> torch.Tensor:
        """(P, n, D) generated samples in eval mode, drawn from a private, seeded stream."""
        ...

    def adopt(self, index: int, other: Trainable) -> None:
        """Member `index` becomes a copy of `other`, a population of one of the same variant:
        the harness refills a finished member's slot with a new trial this way, while the
        other members keep training (see `benchmark.trainables.refill`)."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...

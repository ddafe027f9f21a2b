"""The GAN variants MixBench benchmarks, by name."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from benchmark.data import Dataset
from benchmark.trainable import ParamError, Trainable, TrainableParams
from benchmark.trainables.gan import GANParams, StandardGAN
from benchmark.trainables.mixture import MixtureGAN, MixtureParams
from benchmark.trainables.realmix import RealMixGAN, RealMixParams

__all__ = [
    "VARIANTS",
    "GANParams",
    "MixtureGAN",
    "MixtureParams",
    "RealMixGAN",
    "RealMixParams",
    "StandardGAN",
    "build",
    "params_class",
    "refill",
]

VARIANTS: dict[str, type] = {"gan": StandardGAN, "realmix": RealMixGAN, "mixture": MixtureGAN}


def params_class(name: str) -> type[TrainableParams]:
    """The typed hyperparameter dataclass of a variant; ParamError for an unknown name."""
    if name not in VARIANTS:
        raise ParamError(f"unknown trainable {name!r}; valid: {', '.join(VARIANTS)}")
    return VARIANTS[name].params_class


def build(
    name: str,
    params: Sequence[TrainableParams | Mapping[str, Any]],
    data: Dataset,
    *,
    seeds: Sequence[int],
    device: torch.device | str = "cpu",
    batch_size: int = 128,
) -> Trainable:
    """A population of `len(params)` members of variant `name`, member i seeded with seeds[i]."""
    cls = params_class(name)
    typed = [p if isinstance(p, cls) else cls.from_mapping(p) for p in params]
    if len(typed) != len(seeds) or not typed:
        raise ParamError(f"need one seed per member: {len(typed)} params, {len(seeds)} seeds")
    return VARIANTS[name](
        typed, data, seeds=list(seeds), device=torch.device(device), batch_size=batch_size
    )


def refill(
    population: Trainable, index: int, params: TrainableParams | Mapping[str, Any], seed: int
) -> None:
    """Restart member `index` of a running population as a new run with `params` and `seed`.

    The new member is built exactly as a population of one would be (same initial weights,
    buffer and random streams) and adopted into the slot, so it trains as that single run
    would, whatever the other members are doing.
    """
    core = population.core
    fresh = build(
        population.name,
        [params],
        core.data,
        seeds=[seed],
        device=core.device,
        batch_size=core.batch_size,
    )
    population.adopt(index, fresh)

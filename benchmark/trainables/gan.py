"""Standard GAN (Goodfellow et al. 2014) with MLPs, BCE and the non-saturating generator loss."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from benchmark.data import Dataset
from benchmark.nets import MemberRNG
from benchmark.trainable import EpochResult, TrainableParams, param
from benchmark.trainables.core import (
    AdversarialCore,
    check_adoptable,
    check_sample_mode,
    nonsaturating_g_loss,
    population_core,
    vanilla_d_loss,
)

__all__ = ["GANParams", "StandardGAN"]

SEARCHED = ("lr", "beta1", "beta2", "dropout_g", "dropout_d")


@dataclass(frozen=True)
class GANParams(TrainableParams):
    """Hyperparameters of the standard GAN (defaults: the MixBench brief's baseline)."""

    variant: ClassVar[str] = "gan"

    lr: float = param(2e-4, low=0.0, high=1.0, low_open=True, help="Adam learning rate (G and D)")
    beta1: float = param(0.9, low=0.0, high=1.0, high_open=True, help="Adam beta1")
    beta2: float = param(0.999, low=0.0, high=1.0, high_open=True, help="Adam beta2")
    dropout_g: float = param(0.0, low=0.0, high=1.0, high_open=True, help="dropout in G")
    dropout_d: float = param(0.0, low=0.0, high=1.0, high_open=True, help="dropout in D")
    z_dim: int = param(100, low=1, high=4096, help="latent dimension")


class StandardGAN:
    """Population of standard GANs: D learns real vs fake, G maximises log D(G(z))."""

    name: ClassVar[str] = "gan"
    sample_modes: ClassVar[tuple[str, ...]] = ("default",)
    params_class: ClassVar[type[GANParams]] = GANParams

    def __init__(
        self,
        params: Sequence[GANParams],
        data: Dataset,
        *,
        seeds: Sequence[int],
        device: torch.device,
        batch_size: int = 128,
    ) -> None:
        self.params, self.z_dim, self.core = population_core(
            params,
            data,
            seeds=seeds,
            device=device,
            batch_size=batch_size,
            searched=SEARCHED,
        )
        self.size = self.core.size

    # strategy hooks
    def before_step(self, core: AdversarialCore) -> None:
        pass

    def generator_input(
        self, core: AdversarialCore, n: int, rng: MemberRNG, mode: str | None
    ) -> torch.Tensor:
        return rng.randn(n, self.z_dim)

    d_loss = staticmethod(vanilla_d_loss)
    g_loss = staticmethod(nonsaturating_g_loss)

    # Trainable
    def train_epoch(self) -> EpochResult:
        return self.core.train_epoch(self)

    def sample(self, n: int, mode: str | None = None, seed: int = 0) -> torch.Tensor:
        mode = check_sample_mode(self.name, self.sample_modes, mode)
        return self.core.generate(self, n, mode, seed)

    def adopt(self, index: int, other: StandardGAN) -> None:
        """Member `index` becomes a copy of `other`'s single member (see AdversarialCore)."""
        check_adoptable(self, other)
        self.core.adopt(index, other.core)
        self.params[index] = other.params[0]

    def state_dict(self) -> dict[str, Any]:
        return {"core": self.core.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.core.load_state_dict(state["core"])

"""Mixture GAN ("Mixture GAN"): D(x, t) tells the mixtures (1+t)/2 data + (1-t)/2 gen (real)
and (1-t)/2 data + (1+t)/2 gen (fake) apart, with t ~ mu; mu = delta(1) is the vanilla GAN."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from scipy import special

from benchmark.data import Dataset
from benchmark.nets import MemberRNG
from benchmark.trainable import EpochResult, TrainableParams, param
from benchmark.trainables.core import (
    AdversarialCore,
    bce_fake,
    bce_real,
    check_adoptable,
    check_sample_mode,
    population_core,
)

__all__ = ["MixtureGAN", "MixtureParams", "t_quantiles"]

SEARCHED = ("lr", "beta1", "beta2", "dropout_g", "dropout_d")
T_MEASURES = ("delta1", "uniform", "beta")
QUANTILE_POINTS = 4097


@dataclass(frozen=True)
class MixtureParams(TrainableParams):
    """Mixture GAN hyperparameters; the optimiser defaults are the standard GAN's."""

    variant: ClassVar[str] = "mixture"

    lr: float = param(2e-4, low=0.0, high=1.0, low_open=True, help="Adam learning rate (G and D)")
    beta1: float = param(0.9, low=0.0, high=1.0, high_open=True, help="Adam beta1")
    beta2: float = param(0.999, low=0.0, high=1.0, high_open=True, help="Adam beta2")
    dropout_g: float = param(0.0, low=0.0, high=1.0, high_open=True, help="dropout in G")
    dropout_d: float = param(0.0, low=0.0, high=1.0, high_open=True, help="dropout in D")
    z_dim: int = param(100, low=1, high=4096, help="latent dimension")
    t_measure: str = param("uniform", choices=T_MEASURES, help="mu, the law of t on [0, 1]")
    t_a: float = param(1.0, low=0.0, high=1000.0, low_open=True, help="beta(a, b): a")
    t_b: float = param(1.0, low=0.0, high=1000.0, low_open=True, help="beta(a, b): b")
    g_loss: str = param(
        "nonsaturating", choices=("nonsaturating", "minimax"), help="generator objective"
    )


def t_quantiles(p: MixtureParams, points: int = QUANTILE_POINTS) -> np.ndarray:
    """The quantile function of mu on a uniform grid; t = Q(u) with u ~ U(0, 1)."""
    grid = np.linspace(0.0, 1.0, points)
    if p.t_measure == "delta1":
        return np.ones(points)
    if p.t_measure == "uniform":
        return grid
    return special.betaincinv(p.t_a, p.t_b, grid)


class MixtureGAN:
    """Population of Mixture GANs with a t-conditioned discriminator.

    D receives s = 1 - t through zero-initialised first-layer weights, so under delta(1)
    (s = 0) the network, its gradients and its random draws are exactly the standard GAN's.
    The non-saturating generator loss is -log D(fake mixture, t); `minimax` makes G minimise
    the discriminator's own objective, log D(real mixture, t) + log(1 - D(fake mixture, t)),
    since for t < 1 both mixtures contain generated data.
    """

    name: ClassVar[str] = "mixture"
    sample_modes: ClassVar[tuple[str, ...]] = ("default",)
    params_class: ClassVar[type[MixtureParams]] = MixtureParams

    def __init__(
        self,
        params: Sequence[MixtureParams],
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
            d_cond_dim=1,
        )
        self.size = self.core.size
        self.random_t = [p.t_measure != "delta1" for p in self.params]
        self.quantiles = torch.tensor(
            np.stack([t_quantiles(p) for p in self.params]), dtype=torch.float32, device=device
        )
        self.minimax_on = [p.g_loss == "minimax" for p in self.params]
        self.minimax = torch.tensor(self.minimax_on, device=device)
        self.random_t_t = torch.tensor(self.random_t, device=device)
        self._t: torch.Tensor | None = None

    def draw_t(self, n: int) -> torch.Tensor:
        """(P, n, 1) draws of t ~ mu by inverse-CDF interpolation; delta(1) draws nothing."""
        if not any(self.random_t):
            return torch.ones(self.size, n, 1, device=self.core.device)
        u = self.core.rng.rand(n, mask=self.random_t_t)
        pos = u * (self.quantiles.shape[1] - 1)
        lo = pos.floor().long().clamp_max(self.quantiles.shape[1] - 2)
        frac = pos - lo
        q_lo = self.quantiles.gather(1, lo)
        q_hi = self.quantiles.gather(1, lo + 1)
        t = q_lo + (q_hi - q_lo) * frac
        return torch.where(self.random_t_t[:, None], t, 1.0)[..., None]

    @staticmethod
    def mixtures(
        real: torch.Tensor, fake: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(real-labelled, fake-labelled) mixtures for per-sample t of shape (P, B, 1)."""
        hi, lo = (1 + t) / 2, (1 - t) / 2
        return hi * real + lo * fake, lo * real + hi * fake

    # strategy hooks
    def before_step(self, core: AdversarialCore) -> None:
        pass

    def generator_input(
        self, core: AdversarialCore, n: int, rng: MemberRNG, mode: str | None
    ) -> torch.Tensor:
        return rng.randn(n, self.z_dim)

    def d_loss(
        self, core: AdversarialCore, real: torch.Tensor, fake: torch.Tensor
    ) -> torch.Tensor:
        self._t = t = self.draw_t(real.shape[1])
        real_mix, fake_mix = self.mixtures(real, fake, t)
        s = 1 - t
        return bce_real(core.discriminate(real_mix, cond=s)) + bce_fake(
            core.discriminate(fake_mix, cond=s)
        )

    def g_loss(
        self, core: AdversarialCore, real: torch.Tensor, fake: torch.Tensor
    ) -> torch.Tensor:
        t = self._t if self._t is not None else self.draw_t(real.shape[1])
        real_mix, fake_mix = self.mixtures(real, fake, t)
        s = 1 - t
        fake_logits = core.discriminate(fake_mix, cond=s)
        loss = bce_real(fake_logits)
        if any(self.minimax_on):
            real_logits = core.discriminate(real_mix, cond=s, members=self.minimax)
            minimax = -bce_fake(fake_logits) - bce_real(real_logits)
            loss = torch.where(self.minimax, minimax, loss)
        return loss

    # Trainable
    def train_epoch(self) -> EpochResult:
        return self.core.train_epoch(self)

    def sample(self, n: int, mode: str | None = None, seed: int = 0) -> torch.Tensor:
        mode = check_sample_mode(self.name, self.sample_modes, mode)
        return self.core.generate(self, n, mode, seed)

    @torch.no_grad()
    def adopt(self, index: int, other: MixtureGAN) -> None:
        """Member `index` becomes a copy of `other`'s single member (t-measure included)."""
        check_adoptable(self, other)
        self.core.adopt(index, other.core)
        self.params[index] = other.params[0]
        self.random_t[index] = other.random_t[0]
        self.random_t_t[index] = other.random_t_t[0]
        self.quantiles[index] = other.quantiles[0]
        self.minimax_on[index] = other.minimax_on[0]
        self.minimax[index] = other.minimax[0]

    def state_dict(self) -> dict[str, Any]:
        return {"core": self.core.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.core.load_state_dict(state["core"])

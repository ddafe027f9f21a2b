"""RealMixGAN ("RealMixGAN: Accelerating GAN Convergence by Leaking Real Data Distribution
into the Latent Space"): noisy real images from a rolling buffer are fed to the generator."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from benchmark.data import Dataset
from benchmark.nets import MemberRNG, member_view
from benchmark.trainable import EpochResult, TrainableParams, param
from benchmark.trainables.core import (
    AdversarialCore,
    check_adoptable,
    check_sample_mode,
    nonsaturating_g_loss,
    population_core,
    vanilla_d_loss,
)

__all__ = ["RealMixGAN", "RealMixParams"]

SEARCHED = (
    "lr",
    "beta1",
    "beta2",
    "dropout_g",
    "dropout_d",
    "p_mix",
    "alpha",
    "noise_sigma",
    "fallback_sigma",
    "clamp",
    "per_sample_mix",
)


@dataclass(frozen=True)
class RealMixParams(TrainableParams):
    """RealMixGAN hyperparameters; every default is the paper's value."""

    variant: ClassVar[str] = "realmix"

    lr: float = param(2e-4, low=0.0, high=1.0, low_open=True, help="Adam learning rate (G and D)")
    beta1: float = param(0.5, low=0.0, high=1.0, high_open=True, help="Adam beta1")
    beta2: float = param(0.999, low=0.0, high=1.0, high_open=True, help="Adam beta2")
    dropout_g: float = param(0.2, low=0.0, high=1.0, high_open=True, help="dropout in G")
    dropout_d: float = param(0.3, low=0.0, high=1.0, high_open=True, help="dropout in D")
    z_dim: int = param(100, low=1, high=4096, help="latent dimension")
    p_mix: float = param(0.9, low=0.0, high=1.0, help="probability of feeding buffer images")
    alpha: float = param(0.2, low=0.0, high=10.0, help="scale of the noisy real images")
    noise_sigma: float = param(0.2, low=0.0, high=10.0, help="std of noise added to them")
    fallback_sigma: float = param(0.1, low=0.0, high=10.0, help="std of the no-mix noise input")
    clamp: bool = param(True, help="clamp noisy real images to [-1, 1] before scaling")
    buffer_capacity: int = param(1000, low=1, high=1_000_000, help="rolling buffer size")
    buffer_refresh: float = param(
        0.1, low=0.0, high=1.0, help="fraction of the buffer replaced each iteration"
    )
    per_sample_mix: bool = param(
        False, help="draw the mix/no-mix choice per sample (the paper: per minibatch)"
    )


class RealMixGAN:
    """Population of RealMixGANs: G(z ++ r) with r a noisy, scaled real image or small noise."""

    name: ClassVar[str] = "realmix"
    sample_modes: ClassVar[tuple[str, ...]] = ("buffer", "noise")
    params_class: ClassVar[type[RealMixParams]] = RealMixParams

    def __init__(
        self,
        params: Sequence[RealMixParams],
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
            extra_g_in=data.dim,
        )
        self.size = self.core.size
        n_train = self.core.train_x.shape[0]
        self.capacity = [p.buffer_capacity for p in self.params]
        self.n_refresh = [round(p.buffer_refresh * p.buffer_capacity) for p in self.params]
        self.cap_t = torch.tensor(self.capacity, device=device)
        self.refresh_t = torch.tensor(self.n_refresh, device=device)
        width = max(self.capacity)
        # One spare row per member absorbs the padded writes of members refreshing fewer slots.
        self.buffer = torch.zeros(self.size, width + 1, data.dim, device=device)
        idx = self.core.rng.randint_ragged(n_train, self.cap_t, width)
        self.buffer[:, :width] = self.core.train_x[idx]
        self.ptr = torch.zeros(self.size, dtype=torch.long, device=device)

    # strategy hooks
    def before_step(self, core: AdversarialCore) -> None:
        """Rolling refresh: the oldest `buffer_refresh` share of slots gets new real images."""
        width = max(self.n_refresh)
        if width == 0:
            return
        new = core.rng.randint_ragged(core.train_x.shape[0], self.refresh_t, width)
        offs = torch.arange(width, device=core.device)
        slots = (self.ptr[:, None] + offs) % self.cap_t[:, None]
        spare = self.buffer.shape[1] - 1
        slots = torch.where(offs < self.refresh_t[:, None], slots, spare)
        rows = torch.arange(self.size, device=core.device)[:, None]
        self.buffer[rows, slots] = core.train_x[new]
        self.ptr = (self.ptr + self.refresh_t) % self.cap_t

    def generator_input(
        self, core: AdversarialCore, n: int, rng: MemberRNG, mode: str | None
    ) -> torch.Tensor:
        hp = core.hp
        # One draw of words for every input of the batch (z, the coin, the buffer index,
        # the noise and the fallback), made whichever branch is taken, so streams stay
        # aligned across modes.
        dim, n_z = core.data.dim, n * self.z_dim
        n_normal = n_z + 2 * n * dim
        n_normal += n_normal & 1
        words = rng.words(n_normal + 2 * n)
        normal = rng.normals(words[:, :n_normal])
        z = normal[:, :n_z].view(self.size, n, self.z_dim)
        noise = normal[:, n_z : n_z + n * dim].view(self.size, n, dim)
        fallback = normal[:, n_z + n * dim : n_z + 2 * n * dim].view(self.size, n, dim)
        fallback = fallback * member_view(hp["fallback_sigma"], z)
        u = rng.uniforms(words[:, n_normal : n_normal + n])
        idx = rng.below(words[:, n_normal + n :], self.cap_t[:, None])
        if mode == "noise":
            return torch.cat([z, fallback], dim=-1)
        rows = torch.arange(self.size, device=core.device)[:, None]
        real = self.buffer[rows, idx] + noise * member_view(hp["noise_sigma"], z)
        real = torch.where(member_view(hp["clamp"] > 0, z), real.clamp(-1.0, 1.0), real)
        real = real * member_view(hp["alpha"], z)
        if mode is None:
            # Training mixes per minibatch (the paper) unless per_sample_mix; evaluation in
            # 'buffer' mode always decides per sample, so that one coin flip cannot turn a
            # whole evaluation set into noise-mode samples: its inputs follow the training
            # inputs' marginal law (a share p_mix of buffer images).
            u = torch.where(member_view(hp["per_sample_mix"] > 0, u), u, u[:, :1].expand_as(u))
        use_real = (u < member_view(hp["p_mix"], u))[..., None]
        return torch.cat([z, torch.where(use_real, real, fallback)], dim=-1)

    d_loss = staticmethod(vanilla_d_loss)
    g_loss = staticmethod(nonsaturating_g_loss)

    # Trainable
    def train_epoch(self) -> EpochResult:
        return self.core.train_epoch(self)

    def sample(self, n: int, mode: str | None = None, seed: int = 0) -> torch.Tensor:
        """mode 'buffer': inputs as in training; 'noise': no real data reaches G at all."""
        mode = check_sample_mode(self.name, self.sample_modes, mode)
        return self.core.generate(self, n, mode, seed)

    @torch.no_grad()
    def adopt(self, index: int, other: RealMixGAN) -> None:
        """Member `index` becomes a copy of `other`'s single member, buffer included; the
        buffer grows when the new member's capacity exceeds every current one."""
        check_adoptable(self, other)
        need = other.capacity[0] + 1
        if need > self.buffer.shape[1]:
            grown = torch.zeros(self.size, need, self.buffer.shape[2], device=self.buffer.device)
            grown[:, : self.buffer.shape[1] - 1] = self.buffer[:, :-1]
            self.buffer = grown
        self.core.adopt(index, other.core)
        self.params[index] = other.params[0]
        self.capacity[index] = other.capacity[0]
        self.n_refresh[index] = other.n_refresh[0]
        self.cap_t[index] = other.cap_t[0]
        self.refresh_t[index] = other.refresh_t[0]
        self.buffer[index].zero_()
        self.buffer[index, : other.capacity[0]] = other.buffer[0, : other.capacity[0]]
        self.ptr[index] = other.ptr[0]

    def state_dict(self) -> dict[str, Any]:
        return {"core": self.core.state_dict(), "buffer": self.buffer, "ptr": self.ptr}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.core.load_state_dict(state["core"])
        self.buffer.copy_(state["buffer"])
        self.ptr.copy_(state["ptr"])

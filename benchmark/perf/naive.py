"""The naive baseline: one trial as a single-run research script trains it.

``nn.Sequential`` G and D, ``torch.optim.Adam``, a ``DataLoader`` over a ``TensorDataset``
(shuffled batches), the variant's input (RealMix: a rolling buffer of real images mixed in per
batch) written in plain torch, and ``.item()`` per step for logging.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from benchmark.data import Dataset
from benchmark.trainable import TrainableParams
from benchmark.trainables.core import D_HIDDEN, G_HIDDEN

__all__ = ["NaiveTrial"]


def _mlp(sizes: Sequence[int], dropout: float, out: nn.Module | None) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(fan_in, fan_out))
        if i < len(sizes) - 2:
            layers.append(nn.LeakyReLU(0.2))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    if out is not None:
        layers.append(out)
    return nn.Sequential(*layers)


class NaiveTrial:
    """One trial trained the straightforward way, one optimiser step pair per `step()`.

    Same architecture and losses as MixBench's variants (G: 256-512-1024, D: 1024-512-256,
    LeakyReLU 0.2, dropout, tanh output for images, BCE on a sigmoid output), written as a
    typical single-run script: every random draw from the global torch RNG, batches from a
    shuffling `DataLoader`, the losses fetched with `.item()` every step.
    """

    def __init__(
        self,
        variant: str,
        params: TrainableParams,
        data: Dataset,
        *,
        seed: int,
        device: torch.device,
        batch_size: int,
    ) -> None:
        torch.manual_seed(seed)
        random.seed(seed)
        self.variant, self.p, self.device, self.batch_size = variant, params, device, batch_size
        self.dim = data.dim
        self.train_x = data.train.to(device)
        g_in = params.z_dim + (data.dim if variant == "realmix" else 0)
        d_in = data.dim + (1 if variant == "mixture" else 0)
        self.G = _mlp(
            (g_in, *G_HIDDEN, data.dim), params.dropout_g, nn.Tanh() if data.bounded else None
        )
        self.D = _mlp((d_in, *D_HIDDEN, 1), params.dropout_d, nn.Sigmoid())
        self.G.to(device).train()
        self.D.to(device).train()
        betas = (params.beta1, params.beta2)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=params.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=params.lr, betas=betas)
        self.criterion = nn.BCELoss()
        self.loader = DataLoader(
            TensorDataset(data.train.cpu()),
            batch_size=batch_size,
            shuffle=True,
            drop_last=True,
            pin_memory=device.type == "cuda",
        )
        self._batches: Iterator = iter(self.loader)
        self.log: list[tuple[float, float]] = []
        if variant == "realmix":
            self.capacity = params.buffer_capacity
            pick = torch.randint(len(self.train_x), (self.capacity,), device=device)
            self.buffer = self.train_x[pick].clone()
            self.ptr = 0
        if variant == "mixture" and params.t_measure == "beta":
            self.beta = torch.distributions.Beta(
                torch.tensor(params.t_a, device=device), torch.tensor(params.t_b, device=device)
            )

    def _next_batch(self) -> torch.Tensor:
        try:
            (x,) = next(self._batches)
        except StopIteration:  # a new epoch: reshuffle
            self._batches = iter(self.loader)
            (x,) = next(self._batches)
        return x.to(self.device, non_blocking=True)

    def _realmix_input(self, n: int) -> torch.Tensor:
        p = self.p
        k = round(p.buffer_refresh * self.capacity)
        if k:  # rolling refresh: the oldest k slots get fresh real images
            slots = (self.ptr + torch.arange(k, device=self.device)) % self.capacity
            new = torch.randint(len(self.train_x), (k,), device=self.device)
            self.buffer[slots] = self.train_x[new]
            self.ptr = (self.ptr + k) % self.capacity
        z = torch.randn(n, p.z_dim, device=self.device)
        if random.random() < p.p_mix:  # the paper mixes per minibatch
            real = self.buffer[torch.randint(self.capacity, (n,), device=self.device)]
            real = real + p.noise_sigma * torch.randn_like(real)
            if p.clamp:
                real = real.clamp(-1.0, 1.0)
            r = p.alpha * real
        else:
            r = p.fallback_sigma * torch.randn(n, self.dim, device=self.device)
        return torch.cat([z, r], dim=1)

    def _draw_t(self, n: int) -> torch.Tensor:
        if self.p.t_measure == "delta1":
            return torch.ones(n, 1, device=self.device)
        if self.p.t_measure == "uniform":
            return torch.rand(n, 1, device=self.device)
        return self.beta.sample((n, 1))

    def step(self) -> None:
        """One discriminator step and one generator step on the next minibatch."""
        real = self._next_batch()
        n = real.shape[0]
        ones = torch.ones(n, 1, device=self.device)
        zeros = torch.zeros(n, 1, device=self.device)
        if self.variant == "realmix":
            fake = self.G(self._realmix_input(n))
        else:
            fake = self.G(torch.randn(n, self.p.z_dim, device=self.device))

        if self.variant == "mixture":
            t = self._draw_t(n)
            s = 1 - t

            def mix(real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                return (
                    torch.cat([(1 + t) / 2 * real + (1 - t) / 2 * fake, s], dim=1),
                    torch.cat([(1 - t) / 2 * real + (1 + t) / 2 * fake, s], dim=1),
                )

            real_in, fake_in = mix(real, fake.detach())
        else:
            real_in, fake_in = real, fake.detach()

        self.opt_d.zero_grad()
        d_loss = self.criterion(self.D(real_in), ones) + self.criterion(self.D(fake_in), zeros)
        d_loss.backward()
        self.opt_d.step()

        self.opt_g.zero_grad()
        if self.variant == "mixture":
            real_g, fake_g = mix(real, fake)
            out = self.D(fake_g)
            g_loss = self.criterion(out, ones)
            if self.p.g_loss == "minimax":
                g_loss = -self.criterion(out, zeros) - self.criterion(self.D(real_g), ones)
        else:
            g_loss = self.criterion(self.D(fake), ones)
        g_loss.backward()
        self.opt_g.step()
        self.log.append((g_loss.item(), d_loss.item()))

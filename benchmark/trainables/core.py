"""The adversarial training loop shared by every variant, over a population of P members.

A variant supplies a small strategy (how the generator's input is drawn, its discriminator
and generator losses, an optional per-step hook); this module owns the networks, the
optimisers, the random streams and the epoch loop. Per-step losses stay on the device and are
copied to the host once per epoch.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch.nn import functional as F

from benchmark.data import Dataset
from benchmark.nets import MemberRNG, StackedAdam, StackedMLP
from benchmark.trainable import EpochResult, ParamError, Trainable, TrainableParams

__all__ = [
    "AdversarialCore",
    "Strategy",
    "bce_fake",
    "bce_real",
    "check_adoptable",
    "check_sample_mode",
    "eval_seeds",
    "freeze",
    "member_bytes",
    "nonsaturating_g_loss",
    "population_core",
    "stack_params",
    "vanilla_d_loss",
]

G_HIDDEN = (256, 512, 1024)
D_HIDDEN = (1024, 512, 256)


def bce_real(logits: torch.Tensor) -> torch.Tensor:
    """Per-member mean of -log sigmoid(logits): the BCE against label 1. logits: (P, B, 1)."""
    return F.softplus(-logits).mean(dim=(1, 2))


def bce_fake(logits: torch.Tensor) -> torch.Tensor:
    """Per-member mean of -log(1 - sigmoid(logits)): the BCE against label 0."""
    return F.softplus(logits).mean(dim=(1, 2))


def vanilla_d_loss(core: AdversarialCore, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """(P,) BCE of D on real (label 1) plus on generated (label 0) samples."""
    return bce_real(core.discriminate(real)) + bce_fake(core.discriminate(fake))


def nonsaturating_g_loss(
    core: AdversarialCore, real: torch.Tensor, fake: torch.Tensor
) -> torch.Tensor:
    """(P,) -log D(G(z)), the non-saturating generator loss."""
    return bce_real(core.discriminate(fake))


def stack_params(
    params: Sequence[TrainableParams], names: Sequence[str], device: torch.device
) -> dict[str, torch.Tensor]:
    """Searched hyperparameters as (P,) float32 tensors, one entry per member."""
    return {n: torch.tensor([float(getattr(p, n)) for p in params], device=device) for n in names}


def shared_value(params: Sequence[TrainableParams], name: str) -> Any:
    """A structural parameter that every member of a population must share."""
    values = {getattr(p, name) for p in params}
    if len(values) != 1:
        raise ParamError(
            f"parameter {name} changes tensor shapes and must be equal across a population; "
            f"got {sorted(values)}"
        )
    return values.pop()


def eval_seeds(seeds: Sequence[int], seed: int) -> list[int]:
    """Seeds of the private sampling streams, so evaluation never perturbs training."""
    return [(int(s) * 1_000_003 + 7919 * (seed + 1)) % (2**62) for s in seeds]


class Strategy(Protocol):
    """What a variant plugs into the loop."""

    def before_step(self, core: AdversarialCore) -> None: ...

    def generator_input(
        self, core: AdversarialCore, n: int, rng: MemberRNG, mode: str | None
    ) -> torch.Tensor: ...

    def d_loss(
        self, core: AdversarialCore, real: torch.Tensor, fake: torch.Tensor
    ) -> torch.Tensor:
        """(P,) discriminator losses; `fake` is detached."""
        ...

    def g_loss(
        self, core: AdversarialCore, real: torch.Tensor, fake: torch.Tensor
    ) -> torch.Tensor:
        """(P,) generator losses; `fake` carries the generator's graph."""
        ...


class AdversarialCore:
    """Generator, discriminator, their optimisers and the members' random streams."""

    def __init__(
        self,
        *,
        data: Dataset,
        seeds: Sequence[int],
        device: torch.device,
        batch_size: int,
        g_in: int,
        hp: Mapping[str, torch.Tensor],
        d_cond_dim: int = 0,
    ) -> None:
        if batch_size > data.train.shape[0]:
            raise ParamError(
                f"batch_size {batch_size} exceeds the {data.train.shape[0]} training samples"
            )
        self.data = data
        self.train_x = data.train.to(device)
        self.device = device
        self.seeds = [int(s) for s in seeds]
        self.batch_size = batch_size
        self.hp = dict(hp)
        # Which members use dropout, kept on the host: no device sync per forward pass.
        self.dropout_on = {
            name: [bool(v > 0) for v in hp[name].tolist()] for name in ("dropout_g", "dropout_d")
        }
        self.rng = MemberRNG(self.seeds, device)
        dim = data.dim
        self.G = StackedMLP((g_in, *G_HIDDEN, dim), self.rng, out_tanh=data.bounded)
        self.D = StackedMLP((dim, *D_HIDDEN, 1), self.rng, out_tanh=False, cond_dim=d_cond_dim)
        self.opt_g = StackedAdam(
            list(self.G.parameters()), lr=hp["lr"], beta1=hp["beta1"], beta2=hp["beta2"]
        )
        self.opt_d = StackedAdam(
            list(self.D.parameters()), lr=hp["lr"], beta1=hp["beta1"], beta2=hp["beta2"]
        )
        self.epoch = 0

    @property
    def size(self) -> int:
        return self.rng.size

    @property
    def steps_per_epoch(self) -> int:
        return self.train_x.shape[0] // self.batch_size

    def discriminate(
        self,
        x: torch.Tensor,
        *,
        cond: torch.Tensor | None = None,
        train: bool = True,
        members: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """D's logits. `members` ((P,) bool): a pass only those members make (the others'
        outputs are discarded), so only they draw dropout masks, as they would alone."""
        return self.D(
            x,
            dropout=self.hp["dropout_d"] if train else None,
            dropout_on=self.dropout_on["dropout_d"],
            rng=self.rng,
            cond=cond,
            members=members,
        )

    def train_epoch(self, strategy: Strategy) -> EpochResult:
        """One pass over the training split (last partial batch dropped), every member at once."""
        start = time.perf_counter()
        steps, bsz, p = self.steps_per_epoch, self.batch_size, self.size
        perm = self.rng.randperm(self.train_x.shape[0])
        g_buf = torch.zeros(p, steps, device=self.device)
        d_buf = torch.zeros(p, steps, device=self.device)
        for s in range(steps):
            real = self.train_x[perm[:, s * bsz : (s + 1) * bsz]]
            strategy.before_step(self)
            z_in = strategy.generator_input(self, bsz, self.rng, None)
            fake = self.G(
                z_in,
                dropout=self.hp["dropout_g"],
                dropout_on=self.dropout_on["dropout_g"],
                rng=self.rng,
            )

            d_loss = strategy.d_loss(self, real, fake.detach())
            self.opt_d.zero_grad()
            d_loss.sum().backward()
            self.opt_d.step()

            g_loss = strategy.g_loss(self, real, fake)
            self.opt_g.zero_grad()
            g_loss.sum().backward()
            self.opt_g.step()

            g_buf[:, s] = g_loss.detach()
            d_buf[:, s] = d_loss.detach()
        self.epoch += 1
        return EpochResult(
            g_losses=g_buf.cpu().numpy().astype(np.float64),
            d_losses=d_buf.cpu().numpy().astype(np.float64),
            seconds=time.perf_counter() - start,
        )

    @torch.no_grad()
    def generate(self, strategy: Strategy, n: int, mode: str | None, seed: int) -> torch.Tensor:
        """(P, n, D) samples in eval mode (no dropout) from a private seeded stream."""
        rng = MemberRNG(eval_seeds(self.seeds, seed), self.device)
        chunks, done = [], 0
        while done < n:
            k = min(2048, n - done)
            chunks.append(self.G(strategy.generator_input(self, k, rng, mode)))
            done += k
        return torch.cat(chunks, dim=1)

    @torch.no_grad()
    def adopt(self, index: int, other: AdversarialCore) -> None:
        """Member `index` becomes a copy of `other`'s single member (a population of one just
        built), in every piece of state: weights, optimiser moments and step counts, random
        streams and hyperparameters. Used to refill a finished member's slot with a new trial
        while the others keep training; from then on it trains exactly as `other` would."""
        if other.size != 1:
            raise ValueError(f"adopt takes a population of one, got {other.size} members")
        for net, src_net in ((self.G, other.G), (self.D, other.D)):
            for dst, src in zip(net.parameters(), src_net.parameters(), strict=True):
                if dst.shape[1:] != src.shape[1:]:
                    raise ValueError(
                        f"member shapes differ ({tuple(dst.shape[1:])} vs "
                        f"{tuple(src.shape[1:])}): a population shares z_dim and data"
                    )
                dst[index].copy_(src[0])
        for opt, src_opt in ((self.opt_g, other.opt_g), (self.opt_d, other.opt_d)):
            opt.reset_member(index)
            opt.steps[index] = src_opt.steps[0]
        for name, values in self.hp.items():
            values[index] = other.hp[name][0]
        for name, flags in self.dropout_on.items():
            flags[index] = other.dropout_on[name][0]
        self.rng.adopt(index, other.rng)
        self.seeds[index] = other.seeds[0]

    def freeze(self, active: Sequence[bool]) -> None:
        """Freeze the members whose flag is False (their optimiser steps change nothing)."""
        mask = (
            None if all(active) else torch.tensor(active, dtype=torch.float32, device=self.device)
        )
        self.opt_g.active = mask
        self.opt_d.active = mask

    def member_bytes(self) -> int:
        """Device memory of one member: its weights, gradients and two Adam moments (16 B per
        parameter) and the activations of one step (G pass and three D passes, kept for
        backward), estimated from a population of one."""
        n_params = sum(p.numel() for p in [*self.G.parameters(), *self.D.parameters()])
        widths = sum(self.G.sizes) + 3 * sum(self.D.sizes)
        activations = 3 * self.batch_size * widths * 4  # pre-activation, output, dropout mask
        return 16 * n_params + activations

    def state_dict(self) -> dict[str, Any]:
        return {
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "rng": self.rng.get_state(),
            "epoch": self.epoch,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.rng.set_state(state["rng"])
        self.epoch = int(state["epoch"])


def check_sample_mode(variant: str, modes: Sequence[str], mode: str | None) -> str:
    """The requested sampling mode, defaulting to the first; a clear error otherwise."""
    if mode is None:
        return modes[0]
    if mode not in modes:
        raise ParamError(f"{variant}: sample mode {mode!r} unknown; valid: {', '.join(modes)}")
    return mode


def check_adoptable(population: Any, other: Any) -> None:
    """A clear error when `other` cannot be adopted into `population` (see `adopt`)."""
    if type(other) is not type(population) or other.size != 1:
        raise ParamError(
            f"{population.name}: adopt takes a {population.name} population of one, got "
            f"{getattr(other, 'name', type(other).__name__)} with {other.size} member(s)"
        )
    if other.z_dim != population.z_dim:
        raise ParamError(
            f"parameter z_dim changes tensor shapes and must be equal across a population; "
            f"got {other.z_dim} for a population with {population.z_dim}"
        )


def population_core(
    params: Sequence[TrainableParams],
    data: Dataset,
    *,
    seeds: Sequence[int],
    device: torch.device,
    batch_size: int,
    searched: Sequence[str],
    extra_g_in: int = 0,
    d_cond_dim: int = 0,
) -> tuple[list[TrainableParams], int, AdversarialCore]:
    """(params, z_dim, core) of a variant's population: the members' params, their shared
    z_dim, and the core whose G takes z (plus `extra_g_in` inputs) and whose searched
    hyperparameters are stacked per member."""
    members = list(params)
    z_dim = int(shared_value(members, "z_dim"))
    core = AdversarialCore(
        data=data,
        seeds=seeds,
        device=device,
        batch_size=batch_size,
        g_in=z_dim + extra_g_in,
        hp=stack_params(members, searched, device),
        d_cond_dim=d_cond_dim,
    )
    return members, z_dim, core


# -- population mechanics the harness uses ----------------------------------------------


def freeze(population: Trainable, active: Sequence[bool]) -> None:
    """Freeze the members whose flag is False (their optimiser steps change nothing)."""
    population.core.freeze(active)


def member_bytes(population_of_one: Trainable) -> int:
    """Device memory one member needs, estimated from a population of one: its networks,
    optimiser state and activations (`AdversarialCore.member_bytes`) and its variant's own
    state (e.g. the RealMix buffer)."""
    state = sum(
        t.numel() * t.element_size()
        for t in vars(population_of_one).values()
        if isinstance(t, torch.Tensor)
    )
    return population_of_one.core.member_bytes() + state

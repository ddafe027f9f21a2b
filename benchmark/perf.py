"""python -m benchmark.perf: MixBench's training throughput against a naive per-trial PyTorch loop.

Contenders, measured side by side in one process, interleaved round by round so that a noisy
machine slows them alike:

- ``naive``: one trial as a single-run research script trains it: ``nn.Sequential`` G and D,
  ``torch.optim.Adam``, a ``DataLoader`` over a ``TensorDataset`` (shuffled batches), the
  variant's input (RealMix: a rolling buffer of real images mixed in per batch) written in
  plain torch, and ``.item()`` per step for logging;
- ``mixbench P=1``: `benchmark.trainables.build` with one member (the harness's one-trial path);
- ``mixbench P=k``: populations of k members trained at once;
- with ``--workers W`` (default 2 on a CPU with two or more threads): ``naive (W workers)``,
  W naive trials at once, and ``mixbench P=k (W workers x k/W)``, W populations at once, each
  worker on its own Python thread with threads/W torch threads, as W worker processes of a
  study would run.

For each contender: member-iterations per second, seconds per epoch per trial, trials per hour
at ``--target-epochs`` (extrapolated from the measured rate and the training split's steps per
epoch, plus the measured cost of scoring once per epoch), the ratio to the naive baseline and
the fraction of the device's roofline reached (FLOP and bytes per iteration counted from the
layer sizes; peak FLOP/s and bandwidth measured in-run). The table is printed and written to
``results/benchmarks/perf-<device>.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.data import DataLoader, TensorDataset

from benchmark.data import DATASETS, DataError, Dataset, load_dataset
from benchmark.runner import resolve_device, score_members
from benchmark.settings import SettingsError
from benchmark.trainable import ParamError, TrainableParams
from benchmark.trainables import VARIANTS, build, params_class
from benchmark.trainables.core import D_HIDDEN, G_HIDDEN

__all__ = [
    "Contender",
    "OpCounter",
    "IterationCost",
    "NaiveTrial",
    "Peak",
    "PerfReport",
    "PerfSettings",
    "Row",
    "iteration_cost",
    "count_ops_table",
    "main",
    "measure_peak",
    "ops_per_iteration",
    "render_markdown",
    "run_perf",
]

ADAM_BYTES_PER_PARAM = 7 * 4
"""An ideal Adam step reads param, grad, exp_avg, exp_avg_sq and writes three of them (fp32)."""


@dataclass(frozen=True)
class PerfSettings:
    """What `python -m benchmark.perf` measures; every field has a CLI flag."""

    trainable: str = "realmix"
    """Variant to time; every contender trains it with the variant's default params."""
    dataset: str = "mnist"
    """One of benchmark.data.DATASETS."""
    data_dir: str | None = None
    """Folder holding one sub-folder per dataset (see benchmark.data)."""
    populations: tuple[int, ...] = (1, 4, 8)
    """Population sizes P timed with MixBench (P=1 is the one-trial path)."""
    steps: int = 48
    """Member-iterations timed per contender (a population of P runs steps/P of its steps)."""
    epochs: float | None = None
    """Instead of `steps`: time this many epochs' worth of member-iterations per contender."""
    rounds: int = 8
    """Timed rounds; each round runs every contender once, in rotating order."""
    warmup: int = 1
    """Untimed rounds before the timed ones (allocator, caches, lazy initialisation)."""
    target_epochs: int = 70
    """Epoch budget of one trial for the trials-per-hour extrapolation (the paper: 70)."""
    epoch_size: int | None = None
    """Training samples per epoch for the extrapolation; None: the loaded training split."""
    batch_size: int = 128
    """Minibatch size of every contender (the paper: 128)."""
    n_eval: int = 1000
    """Samples per side of the timed scoring pass (exact W1 via POT emd2, sliced W2)."""
    device: str = "auto"
    """auto, cpu, cuda or cuda:N."""
    threads: int | None = None
    """torch.set_num_threads value; None: every CPU this process may run on."""
    workers: int | None = None
    """Also time W trials (naive) or W populations of P/W members (MixBench) run at once, with
    threads/W torch threads each; None: 2 on a CPU with >= 2 threads, else 1 (no such rows)."""
    seed: int = 0
    """Seed of the naive trial and of member 0 (member i gets seed + i)."""
    out_dir: str = "results/benchmarks"
    """Where perf-<device>.md and perf-<device>.json are written."""
    baseline_engine: str | None = None
    """Another MixBench checkout (e.g. a git worktree of the previous commit): its engine is
    timed too, as 'previous engine P=k' rows, each population in a subprocess that imports
    that copy, interleaved with the other contenders."""

    def __post_init__(self) -> None:
        if self.trainable not in VARIANTS:
            raise ParamError(
                f"--trainable {self.trainable!r} is unknown; valid: {', '.join(VARIANTS)}"
            )
        if not self.populations or any(p < 1 for p in self.populations):
            raise SettingsError(
                f"--populations {','.join(map(str, self.populations))} is invalid: give "
                "positive population sizes separated by commas, e.g. 1,4,8"
            )
        minimum = {
            "--steps": (self.steps, 1),
            "--rounds": (self.rounds, 1),
            "--warmup": (self.warmup, 0),
            "--target-epochs": (self.target_epochs, 1),
            "--batch-size": (self.batch_size, 2),
            "--n-eval": (self.n_eval, 10),
        }
        for flag, (value, low) in minimum.items():
            if value < low:
                raise SettingsError(f"{flag} {value} is invalid: must be >= {low}")
        if self.epochs is not None and not (self.epochs > 0 and math.isfinite(self.epochs)):
            raise SettingsError(f"--epochs {self.epochs} is invalid: must be > 0 and finite")
        if self.epoch_size is not None and self.epoch_size < self.batch_size:
            raise SettingsError(
                f"--epoch-size {self.epoch_size} is smaller than one batch ({self.batch_size})"
            )
        if self.threads is not None and self.threads < 1:
            raise SettingsError(f"--threads {self.threads} is invalid: must be >= 1")
        if self.workers is not None and self.workers < 1:
            raise SettingsError(f"--workers {self.workers} is invalid: must be >= 1")
        if (
            self.baseline_engine is not None
            and not (Path(self.baseline_engine) / "benchmark" / "trainables").is_dir()
        ):
            raise SettingsError(
                f"--baseline-engine {self.baseline_engine} is not a MixBench checkout (no "
                "benchmark/trainables/ in it); e.g. git worktree add /tmp/before <commit>"
            )


# --------------------------------------------------------------------------------------------
# The naive baseline
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Cost model and device peaks
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IterationCost:
    """FLOP and memory traffic of one member-iteration (one D step and one G step)."""

    flop: float
    bytes: float
    note: str

    @property
    def intensity(self) -> float:
        """FLOP per byte."""
        return self.flop / self.bytes


def _pass_cost(sizes: Sequence[int], batch: int) -> tuple[float, float, int]:
    """(FLOP, bytes, params) of one forward+backward pass through an MLP: 3x the forward."""
    flop = nbytes = 0.0
    params = 0
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        flop += 2.0 * batch * fan_in * fan_out
        nbytes += 4.0 * (batch * fan_in + fan_in * fan_out + batch * fan_out)
        params += fan_in * fan_out + fan_out
    return 3 * flop, 3 * nbytes, params


def iteration_cost(variant: str, params: TrainableParams, dim: int, batch: int) -> IterationCost:
    """Matmul FLOP (2*B*in*out forward, x3 with the backward) of every G/D pass, plus bytes.

    Passes per iteration: G once; D on real and on the detached fake (D step) and on the fake
    again (G step), plus D on the real mixture for a minimax Mixture GAN. Bytes: each matmul
    reads its input and weight and writes its output (x3 with the backward), plus one ideal
    Adam step over G's and D's parameters; elementwise ops are not counted, so the bytes are a
    lower bound and the roofline fraction is, if anything, flattering to memory-bound code.
    """
    g_in = params.z_dim + (dim if variant == "realmix" else 0)
    d_in = dim + (1 if variant == "mixture" else 0)
    g_flop, g_bytes, g_params = _pass_cost((g_in, *G_HIDDEN, dim), batch)
    d_flop, d_bytes, d_params = _pass_cost((d_in, *D_HIDDEN, 1), batch)
    d_passes = 3 + (1 if variant == "mixture" and params.g_loss == "minimax" else 0)
    flop = g_flop + d_passes * d_flop
    nbytes = g_bytes + d_passes * d_bytes + ADAM_BYTES_PER_PARAM * (g_params + d_params)
    note = (
        f"1 G pass + {d_passes} D passes, each 3x the forward matmuls; bytes: matmul "
        f"operands + ideal Adam ({ADAM_BYTES_PER_PARAM} B/param), elementwise ops not counted"
    )
    return IterationCost(flop=flop, bytes=nbytes, note=note)


@dataclass(frozen=True)
class Peak:
    """Peak FLOP/s and memory bandwidth of the device, measured in this process."""

    flops: float
    bandwidth: float
    how: str

    def best(self, other: Peak) -> Peak:
        """The higher of two measurements of each peak."""
        how = self.how if "rounds" in self.how else f"{self.how}; best over the rounds"
        return Peak(max(self.flops, other.flops), max(self.bandwidth, other.bandwidth), how)

    def roofline(self, intensity: float) -> float:
        """Attainable FLOP/s at `intensity` FLOP/byte: min(peak, intensity * bandwidth)."""
        return min(self.flops, intensity * self.bandwidth)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_seconds(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    fn()
    _sync(device)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def _matmul_flops(device: torch.device, n: int, repeats: int) -> float:
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, generator=gen)
    b = torch.randn(n, n, device=device, generator=gen)
    return 2.0 * n**3 / _best_seconds(lambda: torch.mm(a, b), device, repeats)


def _copy_bandwidth(device: torch.device, mib: int, repeats: int) -> float:
    src = torch.ones(mib * 2**18, device=device)
    dst = torch.empty_like(src)
    return 2.0 * mib * 2**20 / _best_seconds(lambda: dst.copy_(src), device, repeats)


def measure_peak(device: torch.device, repeats: int = 5) -> Peak:
    """Best-of-`repeats` fp32 matmul FLOP/s and copy bandwidth with the current settings.

    CPU: a 1024^3 matmul and a 64 MiB copy at torch's current thread count. CUDA: an 8192^3
    matmul (TF32 when enabled, as in training) and a 1 GiB copy.
    """
    cuda = device.type == "cuda"
    n, mib = (8192, 1024) if cuda else (1024, 64)
    flops = _matmul_flops(device, n, repeats)
    bandwidth = _copy_bandwidth(device, mib, repeats)
    if cuda:
        precision = torch.get_float32_matmul_precision()
        on = f"{torch.cuda.get_device_name(device)}, float32 matmul precision {precision}"
    else:
        on = f"{torch.get_num_threads()} torch threads"
    how = (
        f"measured in-run, best of {repeats}: fp32 matmul {n}^3 ({on}); copy of {mib} MiB "
        "(bytes read + written)"
    )
    return Peak(flops=flops, bandwidth=bandwidth, how=how)


# --------------------------------------------------------------------------------------------
# The contenders
# --------------------------------------------------------------------------------------------


@dataclass
class Contender:
    """One timed configuration: `shards` run concurrently, each `steps_per_round` steps."""

    name: str
    population: int
    """Members trained per step, over all shards (the naive loop: one per shard)."""
    shards: list[Callable[[], None]]
    """One callable per worker; each runs this contender's steps of one round."""
    torch_threads: int
    """torch.set_num_threads while this contender runs (per worker when there are several)."""
    steps_per_round: int
    seconds: list[float] = field(default_factory=list)
    """Seconds of each timed round."""
    threads_seen: set[int] = field(default_factory=set)
    """torch.get_num_threads() as seen by the shards while they ran."""

    @property
    def workers(self) -> int:
        return len(self.shards)

    @property
    def member_iterations_per_round(self) -> int:
        return self.steps_per_round * self.population

    def _shard(self, shard: Callable[[], None]) -> int:
        # torch's thread count belongs to the thread that runs the ops (OpenMP), so every
        # worker sets its own; the count it then sees is recorded for the report.
        torch.set_num_threads(self.torch_threads)
        seen = torch.get_num_threads()
        shard()
        return seen

    closers: list[Callable[[], None]] = field(default_factory=list)
    """Called once when timing is over (e.g. to end a baseline subprocess)."""

    def close(self) -> None:
        for closer in self.closers:
            closer()

    def run_round(self, pool: ThreadPoolExecutor) -> None:
        """Run every shard once: inline for one, concurrently on `pool`'s threads for several."""
        if len(self.shards) == 1:
            seen = [self._shard(self.shards[0])]
        else:
            seen = [f.result() for f in [pool.submit(self._shard, s) for s in self.shards]]
        self.threads_seen.update(seen)


def _chunk(data: Dataset, steps: int, batch_size: int) -> Dataset:
    """The first steps*batch_size training samples: one `train_epoch` is exactly `steps` steps."""
    return dataclasses.replace(data, train=data.train[: steps * batch_size])


def _mixbench_contender(
    settings: PerfSettings,
    data: Dataset,
    population: int,
    workers: int,
    steps_per_round: int,
    torch_threads: int,
    device: torch.device,
) -> Contender:
    """`workers` populations of population/workers members, each trained with `train_epoch`."""
    per_worker = population // workers
    chunk = _chunk(data, steps_per_round, settings.batch_size)
    params = params_class(settings.trainable)()
    shards = []
    for w in range(workers):
        seeds = [settings.seed + w * per_worker + i for i in range(per_worker)]
        trainable = build(
            settings.trainable,
            [params] * per_worker,
            chunk,
            seeds=seeds,
            device=device,
            batch_size=settings.batch_size,
        )
        shards.append(trainable.train_epoch)
    name = f"mixbench P={population}" + (
        f" ({workers} workers x {per_worker})" if workers > 1 else ""
    )
    return Contender(name, population, shards, torch_threads, steps_per_round)


def _naive_contender(
    settings: PerfSettings,
    data: Dataset,
    workers: int,
    steps_per_round: int,
    torch_threads: int,
    device: torch.device,
) -> Contender:
    params = params_class(settings.trainable)()
    shards = []
    for w in range(workers):
        trial = NaiveTrial(
            settings.trainable,
            params,
            data,
            seed=settings.seed + w,
            device=device,
            batch_size=settings.batch_size,
        )

        def run(trial: NaiveTrial = trial) -> None:
            for _ in range(steps_per_round):
                trial.step()

        shards.append(run)
    name = "naive" + (f" ({workers} workers)" if workers > 1 else "")
    return Contender(name, workers, shards, torch_threads, steps_per_round)


_BASELINE_SERVER = """
import dataclasses, sys
import torch
sys.path.insert(0, sys.argv[1])
from benchmark.data import load_dataset
from benchmark.trainables import build, params_class
name, data_dir, device, trainable = sys.argv[2], sys.argv[3] or None, sys.argv[4], sys.argv[5]
population, steps, batch, threads, seed = (int(a) for a in sys.argv[6:11])
torch.set_num_threads(threads)
data = load_dataset(name, data_dir=data_dir, device=device, batch_size=batch)
chunk = dataclasses.replace(data, train=data.train[: steps * batch])
params = [params_class(trainable)()] * population
pop = build(trainable, params, chunk, seeds=[seed + i for i in range(population)],
            device=device, batch_size=batch)
print("ready", flush=True)
for line in sys.stdin:
    if line.strip() != "run":
        break
    pop.train_epoch()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    print("done", flush=True)
"""


def _baseline_contender(
    settings: PerfSettings,
    data: Dataset,
    population: int,
    steps_per_round: int,
    torch_threads: int,
    device: torch.device,
) -> Contender:
    """The --baseline-engine's population of `population`, trained in its own subprocess."""
    root = str(Path(settings.baseline_engine or ".").resolve())
    data_dir = str(Path(settings.data_dir).resolve()) if settings.data_dir else ""
    argv = [sys.executable, "-c", _BASELINE_SERVER, root, settings.dataset, data_dir]
    argv += [str(device), settings.trainable, str(population), str(steps_per_round)]
    argv += [str(settings.batch_size), str(torch_threads), str(settings.seed)]
    env = {**os.environ, "PYTHONPATH": root}
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=root
    )
    assert proc.stdin is not None and proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise SettingsError(
            f"--baseline-engine {root} could not build a {settings.trainable} population "
            "(see its error above)"
        )

    def run() -> None:
        proc.stdin.write("run\n")
        proc.stdin.flush()
        if proc.stdout.readline().strip() != "done":
            raise RuntimeError(f"the baseline engine at {root} stopped (exit {proc.poll()})")

    def close() -> None:
        proc.stdin.close()
        proc.wait(timeout=60)

    return Contender(
        f"previous engine P={population}",
        population,
        [run],
        torch_threads,
        steps_per_round,
        closers=[close],
    )


# --------------------------------------------------------------------------------------------
# Operations per training iteration (--count-ops)
# --------------------------------------------------------------------------------------------

COUNT_OPS_PARAMS: dict[str, dict[str, Any]] = {"gan": {}, "realmix": {}, "mixture": {}}
"""The params whose op counts `--count-ops` reports: each variant's defaults (RealMix: the
paper's; Mixture GAN: t ~ uniform)."""


class OpCounter(TorchDispatchMode):
    """Counts ATen operators as they reach the dispatcher (forward and backward)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        self.count += 1
        return func(*args, **(kwargs or {}))


def ops_per_iteration(
    variant: str,
    population: int,
    data: Dataset,
    *,
    device: torch.device,
    batch_size: int = 128,
    params: Mapping[str, Any] | None = None,
) -> int:
    """ATen operators one training iteration of a population dispatches.

    Two populations train one epoch of 2 and of 4 steps; the difference of their counts over
    2 steps is one iteration's, so the per-epoch work (the shuffle, the loss copies) cancels.
    """
    counts = []
    for steps in (2, 4):
        trainable = build(
            variant,
            [dict(params or COUNT_OPS_PARAMS[variant])] * population,
            _chunk(data, steps, batch_size),
            seeds=list(range(population)),
            device=device,
            batch_size=batch_size,
        )
        with OpCounter() as counter:
            trainable.train_epoch()
        counts.append(counter.count)
    per_step, rest = divmod(counts[1] - counts[0], 2)
    if rest:
        raise RuntimeError(f"{variant} P={population}: uneven op counts {counts}")
    return per_step


def count_ops_table(
    data: Dataset,
    populations: Sequence[int],
    *,
    device: torch.device,
    batch_size: int = 128,
    variants: Sequence[str] = tuple(COUNT_OPS_PARAMS),
) -> tuple[dict[str, dict[int, int]], str]:
    """{variant: {P: ops per iteration}} and the same as a Markdown table."""
    counts = {
        v: {
            p: ops_per_iteration(v, p, data, device=device, batch_size=batch_size)
            for p in populations
        }
        for v in variants
    }
    lines = [
        "| variant | " + " | ".join(f"P={p}" for p in populations) + " |",
        "|---|" + "|".join("---" for _ in populations) + "|",
    ]
    lines += [
        f"| {v} | " + " | ".join(str(counts[v][p]) for p in populations) + " |" for v in variants
    ]
    return counts, "\n".join(lines)


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------


@dataclass
class Row:
    """One contender's line of the table (every rate per trial = per population member)."""

    contender: str
    population: int
    workers: int
    torch_threads: int
    """torch threads per worker, as the workers saw them while running."""
    member_iterations: int
    iters_per_s: float
    """Member-iterations per second (a population of P counts P per step)."""
    iters_per_s_rounds: list[float]
    s_per_epoch_per_trial: float
    trials_per_hour_train: float
    """Trials per hour at the epoch budget, training only (extrapolated)."""
    trials_per_hour: float
    """Trials per hour at the epoch budget, training plus scoring (extrapolated)."""
    train_ratio: float
    ratio: float
    """trials_per_hour / the naive baseline's."""
    gflops: float
    roofline_fraction: float
    scoring_share: float
    """Scoring's share of one trial's time at the epoch budget."""


@dataclass
class PerfReport:
    """Everything one `python -m benchmark.perf` run measured, with the conditions."""

    settings: dict[str, Any]
    device: dict[str, Any]
    torch_version: str
    python_version: str
    threads: int
    """torch.set_num_threads of the process (contenders with workers use threads/workers)."""
    interop_threads: int
    date: str
    load_average: dict[str, list[float]]
    dataset_note: str
    train_samples: int
    epoch_size: int
    steps_per_epoch: int
    cost: dict[str, Any]
    peak: dict[str, Any]
    scoring: dict[str, Any]
    rows: list[Row]
    notes: list[str]
    baseline_ratio: dict[str, float] = field(default_factory=dict)
    """P -> this engine's member-iterations per second / the --baseline-engine's."""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "device"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _device_info(device: torch.device) -> dict[str, Any]:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return {
            "type": "cuda",
            "name": props.name,
            "memory_gib": round(props.total_memory / 2**30, 1),
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "cuda": torch.version.cuda,
        }
    return {
        "type": "cpu",
        "name": _cpu_name(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": _usable_cpus(),
        "mkl": bool(torch.backends.mkl.is_available()),
    }


def _load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _time_scoring(settings: PerfSettings, data: Dataset, device: torch.device) -> dict[str, float]:
    """Seconds of one scoring pass of one trial (MixBench's `score_members`, P=1).

    'sliced_s': the per-epoch pass (samples of every sampling mode, sliced W2, pixel W1);
    'exact_s': the final pass, which adds the exact W1 (POT emd2) at n_eval per side.
    """
    trainable = build(
        settings.trainable,
        [params_class(settings.trainable)()],
        _chunk(data, 1, settings.batch_size),
        seeds=[settings.seed],
        device=device,
        batch_size=settings.batch_size,
    )
    result = trainable.train_epoch()
    score_members(trainable, data, result, n_eval=min(settings.n_eval, 50), exact=True)  # warm
    _sync(device)
    start = time.perf_counter()
    score_members(trainable, data, result, n_eval=settings.n_eval, exact=False)
    sliced = time.perf_counter() - start
    start = time.perf_counter()
    score_members(trainable, data, result, n_eval=settings.n_eval, exact=True)
    exact = time.perf_counter() - start
    return {"sliced_s": sliced, "exact_s": exact}


def _total_steps(settings: PerfSettings, train_steps: int) -> int:
    if settings.epochs is not None:
        return max(1, round(settings.epochs * train_steps))
    return settings.steps


def run_perf(settings: PerfSettings, *, log: Callable[[str], None] = print) -> PerfReport:
    """Measure every contender as described in the module docstring; nothing is written."""
    device = resolve_device(settings.device)
    threads = settings.threads or _usable_cpus()
    workers = settings.workers
    if workers is None:
        workers = 2 if device.type == "cpu" and threads >= 2 else 1
    if threads % workers:
        raise SettingsError(
            f"--workers {workers} must divide --threads {threads} (each worker gets "
            f"threads/workers torch threads)"
        )
    torch.set_num_threads(threads)
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32 matmuls, for every contender
    load_start = _load_average()

    data = load_dataset(
        settings.dataset, data_dir=settings.data_dir, device=device, batch_size=settings.batch_size
    )
    train_samples = int(data.train.shape[0])
    train_steps = train_samples // settings.batch_size
    epoch_size = settings.epoch_size or train_samples
    steps_per_epoch = epoch_size // settings.batch_size
    per_round = max(1, math.ceil(_total_steps(settings, train_steps) / settings.rounds))
    log(
        f"{settings.trainable} on {data.name} ({device}, {threads} torch threads); "
        f"{per_round} member-iterations per contender per round"
    )

    def steps_for(population: int) -> int:
        steps = max(1, round(per_round / population))
        if steps > train_steps:
            raise SettingsError(
                f"{steps} steps per round need {steps * settings.batch_size} training samples "
                f"but {data.name} holds {train_samples}; lower --steps or raise --rounds"
            )
        return steps

    contenders = [_naive_contender(settings, data, 1, steps_for(1), threads, device)]
    if workers > 1:
        contenders.append(
            _naive_contender(
                settings, data, workers, steps_for(workers), threads // workers, device
            )
        )
    for p in settings.populations:
        contenders.append(_mixbench_contender(settings, data, p, 1, steps_for(p), threads, device))
        if workers > 1 and p >= workers and p % workers == 0:
            contenders.append(
                _mixbench_contender(
                    settings, data, p, workers, steps_for(p), threads // workers, device
                )
            )

    if settings.baseline_engine is not None:
        for p in settings.populations:
            contenders.append(
                _baseline_contender(settings, data, p, steps_for(p), threads, device)
            )

    total_rounds = settings.warmup + settings.rounds
    peak: Peak | None = None
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for r in range(total_rounds):
            shift = r % len(contenders)
            for c in contenders[shift:] + contenders[:shift]:
                _sync(device)
                start = time.perf_counter()
                c.run_round(pool)
                _sync(device)
                seconds = time.perf_counter() - start
                if r >= settings.warmup:
                    c.seconds.append(seconds)
            # The peaks are measured between rounds too and the best kept, so that a burst of
            # load from other processes does not pass for the device's peak.
            torch.set_num_threads(threads)
            round_peak = measure_peak(device, repeats=3)
            peak = round_peak if peak is None else peak.best(round_peak)
            tag = "warm-up" if r < settings.warmup else "timed"
            log(f"  round {r + 1}/{total_rounds} ({tag}) done")
    torch.set_num_threads(threads)
    assert peak is not None

    log("  timing one scoring pass")
    scoring = _time_scoring(settings, data, device)
    scoring_s = (settings.target_epochs - 1) * scoring["sliced_s"] + scoring["exact_s"]
    cost = iteration_cost(
        settings.trainable, params_class(settings.trainable)(), data.dim, settings.batch_size
    )
    load_end = _load_average()

    rows: list[Row] = []
    for c in contenders:
        iters = c.member_iterations_per_round * len(c.seconds)
        rate = iters / sum(c.seconds)
        per_epoch = steps_per_epoch / rate
        train_s = settings.target_epochs * per_epoch
        rows.append(
            Row(
                contender=c.name,
                population=c.population,
                workers=c.workers,
                torch_threads=_one(c.threads_seen, c.name),
                member_iterations=iters,
                iters_per_s=rate,
                iters_per_s_rounds=[c.member_iterations_per_round / s for s in c.seconds],
                s_per_epoch_per_trial=per_epoch,
                trials_per_hour_train=3600 / train_s,
                trials_per_hour=3600 / (train_s + scoring_s),
                train_ratio=1.0,
                ratio=1.0,
                gflops=rate * cost.flop / 1e9,
                roofline_fraction=rate * cost.flop / peak.roofline(cost.intensity),
                scoring_share=scoring_s / (train_s + scoring_s),
            )
        )
    naive = rows[0]
    for row in rows[1:]:
        row.train_ratio = row.trials_per_hour_train / naive.trials_per_hour_train
        row.ratio = row.trials_per_hour / naive.trials_per_hour
    for c in contenders:
        c.close()
    by_name = {row.contender: row for row in rows}
    baseline = {
        str(p): by_name[f"mixbench P={p}"].iters_per_s
        / by_name[f"previous engine P={p}"].iters_per_s
        for p in settings.populations
        if f"previous engine P={p}" in by_name
    }

    notes = [
        f"Trials per hour are EXTRAPOLATED to {settings.target_epochs} epochs of {epoch_size} "
        f"samples ({steps_per_epoch} steps of {settings.batch_size}) from the measured "
        "member-iterations per second; nothing ran for that long.",
        f"Scoring per trial at that budget: {settings.target_epochs - 1} sliced passes "
        f"({scoring['sliced_s']:.3f} s each) + 1 pass with the exact W1 "
        f"({scoring['exact_s']:.3f} s), measured once with MixBench's score_members at "
        f"n_eval={settings.n_eval} and charged equally to every contender.",
        f"Contenders ran interleaved in {settings.rounds} timed rounds (after {settings.warmup}"
        " warm-up) in rotating order, in one process; rates are total member-iterations / "
        "total seconds; the median and range of the per-round rates show the noise.",
        "x naive: trials per hour relative to the first row (one naive trial using every torch "
        "thread). Rows with workers run that many trials or populations at once on Python "
        "threads with threads/workers torch threads each, as separate worker processes would; "
        "'naive (W workers)' is W naive scripts at once, for reference.",
        f"Roofline: achieved FLOP/s / min(peak, intensity x bandwidth); {cost.note}.",
    ]
    if baseline:
        ratios = ", ".join(f"P={p}: {r:.2f}x" for p, r in baseline.items())
        notes.append(
            f"This engine vs the previous engine at {settings.baseline_engine} (member-"
            f"iterations per second, same run, same rounds): {ratios}. The previous engine "
            "ran in a subprocess per population, driven round by round from this process."
        )
    return PerfReport(
        settings=dataclasses.asdict(settings),
        device=_device_info(device),
        torch_version=torch.__version__,
        python_version=platform.python_version(),
        threads=threads,
        interop_threads=torch.get_num_interop_threads(),
        date=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        load_average={"start": load_start, "end": load_end},
        dataset_note=data.split_note,
        train_samples=train_samples,
        epoch_size=epoch_size,
        steps_per_epoch=steps_per_epoch,
        cost={"flop": cost.flop, "bytes": cost.bytes, "intensity": cost.intensity},
        peak={"flops": peak.flops, "bandwidth": peak.bandwidth, "how": peak.how},
        scoring={**scoring, "per_trial_s": scoring_s},
        rows=rows,
        notes=notes,
        baseline_ratio=baseline,
    )


def _one(values: set[int], name: str) -> int:
    if len(values) != 1:
        raise RuntimeError(f"{name}: workers ran with differing torch thread counts {values}")
    return values.pop()


def _spread(row: Row) -> str:
    rates = row.iters_per_s_rounds
    return f"{statistics.median(rates):.2f} ({min(rates):.2f}-{max(rates):.2f})"


def _threads_cell(row: Row) -> str:
    return f"{row.workers}x{row.torch_threads}" if row.workers > 1 else str(row.torch_threads)


_COLUMNS: tuple[tuple[str, Callable[[Row], str]], ...] = (
    ("contender", lambda r: r.contender),
    ("P", lambda r: str(r.population)),
    ("threads", _threads_cell),
    ("timed it", lambda r: str(r.member_iterations)),
    ("it/s", lambda r: f"{r.iters_per_s:.2f}"),
    ("median (min-max) by round", _spread),
    ("s/epoch/trial", lambda r: f"{r.s_per_epoch_per_trial:.2f}"),
    ("trials/h (train)", lambda r: f"{r.trials_per_hour_train:.3g}"),
    ("trials/h (+scoring)", lambda r: f"{r.trials_per_hour:.3g}"),
    ("x naive (train)", lambda r: f"{r.train_ratio:.2f}"),
    ("x naive (+scoring)", lambda r: f"{r.ratio:.2f}"),
    ("GFLOP/s", lambda r: f"{r.gflops:.1f}"),
    ("roofline", lambda r: f"{100 * r.roofline_fraction:.1f}%"),
    ("scoring share", lambda r: f"{100 * r.scoring_share:.1f}%"),
)


def render_table(rows: Sequence[Row]) -> str:
    """The contenders as a Markdown table, one line per contender."""
    lines = [
        "| " + " | ".join(title for title, _ in _COLUMNS) + " |",
        "|" + "|".join("---" for _ in _COLUMNS) + "|",
    ]
    lines.extend("| " + " | ".join(fmt(row) for _, fmt in _COLUMNS) + " |" for row in rows)
    return "\n".join(lines)


def render_markdown(report: PerfReport) -> str:
    """The whole report: conditions, the table and how each number was obtained."""
    s, dev = report.settings, report.device
    where = f", {dev['usable_cpus']} usable CPUs" if dev["type"] == "cpu" else ""
    lines = [
        f"# MixBench throughput: {s['trainable']} on {dev['name']}",
        "",
        f"- date: {report.date}",
        f"- device: {dev['type']}, {dev['name']}{where}",
        f"- torch {report.torch_version}, Python {report.python_version}; torch threads "
        f"{report.threads} (torch.set_num_threads), inter-op threads {report.interop_threads}",
        f"- load average (1/5/15 min) at start {report.load_average['start']}, at end "
        f"{report.load_average['end']}",
        f"- dataset: {s['dataset']}: {report.dataset_note}",
        f"- batch {s['batch_size']}, default {s['trainable']} params; {report.steps_per_epoch} "
        f"steps per epoch ({report.epoch_size} samples); budget {s['target_epochs']} epochs",
        f"- cost per member-iteration: {report.cost['flop'] / 1e9:.2f} GFLOP, "
        f"{report.cost['bytes'] / 2**20:.0f} MiB, {report.cost['intensity']:.1f} FLOP/byte",
        f"- device peak: {report.peak['flops'] / 1e9:.1f} GFLOP/s, "
        f"{report.peak['bandwidth'] / 1e9:.1f} GB/s ({report.peak['how']})",
        f"- scoring per trial at the budget: {report.scoring['per_trial_s']:.1f} s",
        "",
        render_table(report.rows),
        "",
        *[f"- {note}" for note in report.notes],
        "",
    ]
    return "\n".join(lines)


def write_report(report: PerfReport, out_dir: str | Path) -> tuple[Path, Path]:
    """Write perf-<device>.md and perf-<device>.json into `out_dir`; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"perf-{_slug(report.device['name'])}"
    md, js = out / f"{stem}.md", out / f"{stem}.json"
    md.write_text(render_markdown(report))
    js.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return md, js


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _parse_populations(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise SettingsError(
            f"--populations {text!r} is invalid: give positive population sizes separated by "
            "commas, e.g. 1,4,8"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argparse parser."""
    d = PerfSettings()
    from benchmark.cli import HelpFormatter, add_data_dir, add_deprecated_alias

    p = argparse.ArgumentParser(
        prog="python -m benchmark.perf",
        description="Time MixBench populations against a naive per-trial PyTorch loop, "
        "side by side on this device, and write the table to results/benchmarks/.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--trainable", default=d.trainable, help=f"one of {', '.join(VARIANTS)}")
    p.add_argument("--dataset", default=d.dataset, help=f"one of {', '.join(DATASETS)}")
    add_data_dir(p)
    p.add_argument(
        "--populations",
        default=",".join(map(str, d.populations)),
        help="population sizes timed, comma-separated",
    )
    budget = p.add_mutually_exclusive_group()
    budget.add_argument(
        "--steps", type=int, default=d.steps, help="member-iterations timed per contender"
    )
    budget.add_argument(
        "--epochs",
        type=float,
        default=None,
        help="instead of --steps: epochs timed per contender (default: use --steps)",
    )
    p.add_argument("--rounds", type=int, default=d.rounds, help="interleaved timed rounds")
    p.add_argument("--warmup", type=int, default=d.warmup, help="untimed rounds first")
    p.add_argument(
        "--target-epochs",
        type=int,
        default=d.target_epochs,
        help="epoch budget of one trial for the trials-per-hour extrapolation",
    )
    p.add_argument(
        "--epoch-size",
        type=int,
        default=None,
        help="samples per epoch for the extrapolation (default: the loaded training split; "
        "60000 for the full MNIST training split)",
    )
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="minibatch size")
    p.add_argument("--n-eval", type=int, default=d.n_eval, help="samples per side when scoring")
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="also time this many trials/populations at once, threads/workers torch threads "
        "each (default: 2 on a CPU with >= 2 threads, else 1)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=d.seed,
        help="seed of the naive trial and of member 0 (member i gets seed + i)",
    )
    p.add_argument(
        "--out", dest="out_dir", default=d.out_dir, help="folder the report is written into"
    )
    add_deprecated_alias(p, "--out-dir", "--out", dest="out_dir")
    p.add_argument(
        "--baseline-engine",
        default=None,
        metavar="DIR",
        help="also time the engine of another MixBench checkout (e.g. a git worktree of the "
        "previous commit), in subprocesses, as 'previous engine P=k' rows (default: none)",
    )
    p.add_argument(
        "--count-ops",
        action="store_true",
        help="only print ATen operators per training iteration of every variant at each "
        "--populations size (no timing, nothing written)",
    )
    return p


def count_ops_main(args: argparse.Namespace) -> int:
    """`--count-ops`: the op-count table on stdout."""
    populations = _parse_populations(args.populations)
    if not populations or any(p < 1 for p in populations):
        raise SettingsError(f"--populations {args.populations} is invalid: e.g. 1,4,16")
    device = resolve_device(args.device)
    data = load_dataset(
        args.dataset, data_dir=args.data_dir, device=device, batch_size=args.batch_size
    )
    _, table = count_ops_table(data, populations, device=device, batch_size=args.batch_size)
    print(
        f"ATen operators per training iteration ({data.name}, batch {args.batch_size}, "
        f"{device}; each variant's default params, Mixture GAN t ~ uniform):"
    )
    print(table)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; exit code 2 on bad settings or missing data."""
    args = build_parser().parse_args(argv)
    if args.count_ops:
        try:
            return count_ops_main(args)
        except (SettingsError, DataError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    try:
        settings = PerfSettings(
            trainable=args.trainable,
            dataset=args.dataset,
            data_dir=args.data_dir,
            populations=_parse_populations(args.populations),
            steps=args.steps,
            epochs=args.epochs,
            rounds=args.rounds,
            warmup=args.warmup,
            target_epochs=args.target_epochs,
            epoch_size=args.epoch_size,
            batch_size=args.batch_size,
            n_eval=args.n_eval,
            device=args.device,
            threads=args.threads,
            workers=args.workers,
            seed=args.seed,
            out_dir=args.out_dir,
            baseline_engine=args.baseline_engine,
        )
        report = run_perf(settings, log=lambda m: print(m, file=sys.stderr, flush=True))
    except (ParamError, SettingsError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    md, js = write_report(report, settings.out_dir)
    print(render_markdown(report))
    print(f"wrote {md} and {js}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

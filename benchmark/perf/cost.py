"""Cost model and device peaks: FLOP and bytes of one member-iteration, the roofline."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from benchmark.trainable import TrainableParams
from benchmark.trainables.core import D_HIDDEN, G_HIDDEN

__all__ = [
    "ADAM_BYTES_PER_PARAM",
    "IterationCost",
    "Peak",
    "iteration_cost",
    "measure_peak",
    "sync",
]

ADAM_BYTES_PER_PARAM = 7 * 4
"""An ideal Adam step reads param, grad, exp_avg, exp_avg_sq and writes three of them (fp32)."""


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


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA), so a timer reads finished work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_seconds(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    fn()
    sync(device)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
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

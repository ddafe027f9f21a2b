"""python -m benchmark.perf --count-ops: ATen operators per training iteration.

Every ATen operator is a kernel launch on a GPU, so the count per iteration must not grow with
the population; a `TorchDispatchMode` counts them, forward and backward. On a CPU the random
draws are calls of the compiled Philox (`benchmark.native`), counted one each; the table also
counts the same iteration with the tensor-operator Philox that a GPU runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from benchmark import native
from benchmark.data import Dataset
from benchmark.perf.contenders import train_chunk
from benchmark.trainables import build

__all__ = ["COUNT_OPS_PARAMS", "OpCounter", "count_ops_table", "ops_per_iteration"]

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
    compiled_philox: bool = True,
) -> int:
    """ATen operators one training iteration of a population dispatches (and compiled Philox
    calls; with compiled_philox False, the tensor-operator Philox a GPU runs is counted).

    Two populations train one epoch of 2 and of 4 steps; the difference of their counts over
    2 steps is one iteration's, so the per-epoch work (the shuffle, the loss copies) cancels.
    """
    counts = []
    philox = compiled_philox and device.type == "cpu"
    for steps in (2, 4):
        with contextlib.nullcontext() if philox else native.tensor_operators():
            trainable = build(
                variant,
                [dict(params or COUNT_OPS_PARAMS[variant])] * population,
                train_chunk(data, steps, batch_size),
                seeds=list(range(population)),
                device=device,
                batch_size=batch_size,
            )
            before = native.calls()
            with OpCounter() as counter:
                trainable.train_epoch()
            counts.append(counter.count + native.calls() - before)
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
    """{variant: {P: ops per iteration}} and the same as a Markdown table. On a CPU with the
    compiled Philox, rows 'variant (tensor Philox, as on a GPU)' follow, keyed so in the
    dict too."""
    kinds = [(v, v, True) for v in variants]
    if device.type == "cpu" and native.implementation(device) == "compiled C":
        kinds += [(f"{v} (tensor Philox, as on a GPU)", v, False) for v in variants]
    counts = {
        name: {
            p: ops_per_iteration(
                v, p, data, device=device, batch_size=batch_size, compiled_philox=compiled
            )
            for p in populations
        }
        for name, v, compiled in kinds
    }
    lines = [
        "| variant | " + " | ".join(f"P={p}" for p in populations) + " |",
        "|---|" + "|".join("---" for _ in populations) + "|",
    ]
    lines += [
        f"| {name} | " + " | ".join(str(counts[name][p]) for p in populations) + " |"
        for name in counts
    ]
    return counts, "\n".join(lines)

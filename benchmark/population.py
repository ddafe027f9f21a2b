"""How many trials a worker trains at once: --population P, or auto from the device's memory.

The population loop itself is benchmark.trials; a population of one is a single run.
"""

from __future__ import annotations

import torch

from benchmark.data import Dataset
from benchmark.trainable import TrainableParams
from benchmark.trainables import build, params_class
from benchmark.trainables.core import member_bytes
from benchmark.trials import WorkerContext

__all__ = ["auto_population", "resolve_population"]

CPU_AUTO = 2
"""--population auto on a CPU: 2 trials per worker. In results/benchmarks/perf-amd-epyc.md
(2 cores, 2 single-threaded workers) a population of 2 per worker trained about 5% faster
than one trial per worker (1.36x vs 1.30x the naive loop, scoring included), and 4 per worker
no faster than 2; a study of 8 two-epoch MNIST trials took 68 s with --population 2 and 66 s
without (one run each), so on a CPU the gain is small. Populations are for GPUs."""
GPU_AUTO_MAX = 256
"""Upper bound of --population auto on a GPU (a guard against absurd memory estimates)."""
GPU_MEMORY_SHARE = 0.5
"""Share of the GPU's free memory --population auto fills with members."""


def auto_population(
    variant: str, params: TrainableParams, data: Dataset, device: torch.device, budget: int
) -> int:
    """--population auto: on a GPU as many members as fit in GPU_MEMORY_SHARE of its free
    memory (at most GPU_AUTO_MAX); on a CPU, CPU_AUTO; never more than the trial budget."""
    if device.type != "cuda":
        return max(1, min(CPU_AUTO, budget))
    one = build(variant, [params], data, seeds=[0], device=device)
    free, _ = torch.cuda.mem_get_info(device)
    fit = int(GPU_MEMORY_SHARE * free // member_bytes(one))
    del one
    return max(1, min(fit, GPU_AUTO_MAX, budget))


def resolve_population(ctx: WorkerContext) -> int:
    """The worker's population size: its spec's, or for 0 (auto) `auto_population` of the
    space's trainable with the study's fixed params (announced on stderr)."""
    if ctx.spec.population > 0:
        return ctx.spec.population
    variant = ctx.space.TRAINABLE
    cls = params_class(variant)
    params = cls.from_mapping({k: v for k, v in ctx.spec.overrides.items() if k in cls.names()})
    size = auto_population(variant, params, ctx.data, ctx.device, ctx.spec.trials)
    ctx.log(f"--population auto: {size} trial(s) at once on {ctx.device}")
    return size

"""The timed contenders: the naive loop, MixBench populations, another checkout's engine."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch

from benchmark.data import Dataset
from benchmark.perf.naive import NaiveTrial
from benchmark.perf.settings import PerfSettings
from benchmark.settings import SettingsError
from benchmark.trainables import build, params_class

__all__ = [
    "THIS_CHECKOUT",
    "Contender",
    "baseline_contender",
    "mixbench_contender",
    "naive_contender",
    "train_chunk",
]


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
    processes: list[int] = field(default_factory=list)
    """Pids of the subprocesses it trains in (the baseline engine's)."""

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


def train_chunk(data: Dataset, steps: int, batch_size: int) -> Dataset:
    """The first steps*batch_size training samples: one `train_epoch` is exactly `steps` steps."""
    return dataclasses.replace(data, train=data.train[: steps * batch_size])


def mixbench_contender(
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
    chunk = train_chunk(data, steps_per_round, settings.batch_size)
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


def naive_contender(
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


THIS_CHECKOUT = Path(__file__).resolve().parents[2]
"""The checkout this module runs from (its engine is 'this engine')."""


def baseline_contender(
    settings: PerfSettings,
    data: Dataset,
    population: int,
    steps_per_round: int,
    torch_threads: int,
    device: torch.device,
    *,
    checkout: Path | None = None,
) -> Contender:
    """The population of `population` of a checkout's engine (default: --baseline-engine's),
    trained in its own subprocess; with `checkout` = THIS_CHECKOUT, this engine, so that
    both engines of the comparison run the same way."""
    this = checkout is not None and Path(checkout).resolve() == THIS_CHECKOUT
    root = str(Path(checkout or settings.baseline_engine or ".").resolve())
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

    # Held stopped (SIGSTOP) while it is not the one timed: an idle process's OpenMP threads
    # keep spinning after its epoch and take the CPUs the other contenders are timed on.
    def hold() -> None:
        os.kill(proc.pid, signal.SIGSTOP)
        # returns once it is stopped (or has died: its exit status is left for proc.poll)
        os.waitid(os.P_PID, proc.pid, os.WSTOPPED | os.WEXITED | os.WNOWAIT)

    hold()

    def run() -> None:
        os.kill(proc.pid, signal.SIGCONT)
        try:
            proc.stdin.write("run\n")
            proc.stdin.flush()
            if proc.stdout.readline().strip() != "done":
                raise RuntimeError(f"the baseline engine at {root} stopped (exit {proc.poll()})")
        finally:
            if proc.poll() is None:
                hold()

    def close() -> None:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
        proc.stdin.close()
        proc.wait(timeout=60)

    return Contender(
        f"{'this engine (subprocess)' if this else 'previous engine'} P={population}",
        population,
        [run],
        torch_threads,
        steps_per_round,
        closers=[close],
        processes=[proc.pid],
    )

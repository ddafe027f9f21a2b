"""What `python -m benchmark.perf` measures: the typed settings, checked when built."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from benchmark.settings import SettingsError
from benchmark.trainable import ParamError
from benchmark.trainables import VARIANTS

__all__ = ["PerfSettings"]


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

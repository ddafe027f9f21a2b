"""Train and score runs: the loop shared by `benchmark.train` and the study workers."""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from benchmark.data import Dataset, load_dataset
from benchmark.metrics.divergence import DivergenceRule, rule_for
from benchmark.metrics.losses import loss_variance, oscillation
from benchmark.metrics.scoring import score
from benchmark.progress import Progress
from benchmark.settings import Settings, SettingsError
from benchmark.trainable import EpochResult, Trainable
from benchmark.trainables import build, params_class

__all__ = [
    "GRID_SAMPLES",
    "MemberRun",
    "RunResult",
    "frozen_heap",
    "load_data",
    "resolve_device",
    "score_members",
    "train_run",
]

OnEpoch = Callable[[int, dict[str, float]], bool | None]


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Training with the objects made so far (modules, data, store clients) out of the
    cyclic garbage collector's sight (`gc.freeze`): a full collection otherwise walks them
    all, 0.3-0.6 s at a time on a worker's heap (MLflow, SQLAlchemy, Optuna, torch), on the
    training thread. They are handed back to it (`gc.unfreeze`) on the way out. (No
    collection first: on that heap it takes as long as the pauses it saves.)"""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


GRID_SAMPLES = 64
"""Images (or points) in a finished run's sample grid: the first of its scoring samples."""


def resolve_device(spec: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; a clear SettingsError for unusable devices."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise SettingsError(
            f"device {spec!r} is not valid; use auto, cpu, cuda or cuda:N"
        ) from None
    if device.type == "cuda":
        count = torch.cuda.device_count()
        index = device.index or 0
        if count == 0:
            raise SettingsError(f"device {spec!r} requested but no CUDA GPU is visible; use cpu")
        if index >= count:
            raise SettingsError(f"device {spec!r} does not exist: {count} GPU(s) visible")
    elif device.type != "cpu":
        raise SettingsError(f"device {spec!r} is not supported; use auto, cpu, cuda or cuda:N")
    return device


def load_data(settings: Settings, device: torch.device) -> Dataset:
    """The settings' dataset on `device`; loaded once per process and reused."""
    return _load_data(
        settings.dataset,
        settings.data_dir,
        settings.heldout_size,
        settings.train_size,
        settings.batch_size,
        str(device),
    )


@lru_cache(maxsize=8)
def _load_data(
    name: str,
    data_dir: str | None,
    heldout_size: int,
    train_size: int | None,
    batch_size: int,
    device: str,
) -> Dataset:
    return load_dataset(
        name,
        data_dir=data_dir,
        device=device,
        heldout_size=heldout_size,
        train_size=train_size,
        batch_size=batch_size,
    )


@dataclass
class RunResult:
    """Everything one seed of one configuration produced."""

    variant: str
    params: dict[str, Any]
    seed: int
    status: str
    """finished | diverged | stopped (stopped early by the caller, e.g. pruned)."""
    history: list[dict[str, float]] = field(default_factory=list)
    """One metrics dict per scored epoch (with its 'epoch')."""
    g_losses: np.ndarray = field(default_factory=lambda: np.zeros(0))
    d_losses: np.ndarray = field(default_factory=lambda: np.zeros(0))
    samples: dict[str, np.ndarray] = field(default_factory=dict)
    """Generated samples by sampling mode, for grids (from the last epoch)."""
    seconds: float = 0.0
    split_note: str = ""
    reason: str | None = None

    @property
    def final(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}


def score_members(
    trainable: Trainable,
    data: Dataset,
    result: EpochResult,
    *,
    n_eval: int,
    exact: bool | Sequence[bool],
    seed: int = 0,
    extra: bool | Sequence[bool] = False,
    members: Sequence[int] | None = None,
    drawn: dict[str, torch.Tensor] | None = None,
) -> list[dict[str, float]]:
    """Per-member metrics of one epoch: losses, loss variance and every distance.

    `members` picks which members to score (default: all), in that order; `exact` and `extra`
    are one flag for all of them or one per picked member. Samples of every member come from
    one batched call. Distances are measured against the held-out split. The first sampling
    mode's values are unsuffixed (RealMix: 'buffer', as in training); other modes get a
    '_<mode>' suffix.

    `drawn`, when given, receives each mode's first GRID_SAMPLES samples of every member
    (shape (P, GRID_SAMPLES, D)): the sample grids of the runs that end at this epoch
    (`MemberRun.finish`), so they are not drawn a second time.
    """
    picked = list(range(trainable.size)) if members is None else list(members)
    exact_of = _per_member(exact, len(picked), "exact")
    extra_of = _per_member(extra, len(picked), "extra")
    out: list[dict[str, float]] = []
    for i in picked:
        g, d = result.g_losses[i], result.d_losses[i]
        out.append(
            {
                "g_loss": float(np.mean(g)),
                "d_loss": float(np.mean(d)),
                "g_loss_var": loss_variance(g),
                "d_loss_var": loss_variance(d),
                "oscillation_g": oscillation(g),
                "oscillation_d": oscillation(d),
                "seconds": result.seconds,
            }
        )
        out[-1]["oscillation"] = 0.5 * (out[-1]["oscillation_g"] + out[-1]["oscillation_d"])
    for k, mode in enumerate(trainable.sample_modes):
        samples = trainable.sample(n_eval, mode, seed=seed)
        if drawn is not None:  # a copy: a view would keep all n_eval samples alive
            drawn[mode] = samples[:, :GRID_SAMPLES].clone()
        suffix = "" if k == 0 else f"_{mode}"
        chosen = samples[torch.as_tensor(picked, device=samples.device)]
        scored = score(chosen, data, n=n_eval, seed=seed, exact=exact_of, extra=extra_of)
        for row, dist in enumerate(scored):
            out[row].update({f"{key}{suffix}": v for key, v in dist.items()})
    return out


def _per_member(flag: bool | Sequence[bool], n: int, name: str) -> list[bool]:
    if isinstance(flag, bool):
        return [flag] * n
    flags = [bool(f) for f in flag]
    if len(flags) != n:
        raise ValueError(f"{name}: {len(flags)} flags for {n} scored members")
    return flags


class MemberRun:
    """One member's run as it trains: its losses, scored epochs and status.

    `train_run` keeps one of these for its population of one; the study's population path
    keeps one per member, so both record a run the same way.
    """

    def __init__(
        self,
        variant: str,
        params: Any,
        seed: int,
        settings: Settings,
        split_note: str = "",
        rule: DivergenceRule | None = None,
    ) -> None:
        self.settings = settings
        self.rule = rule if rule is not None else DivergenceRule()
        """When the run has diverged (benchmark.metrics.divergence; `rule_for(data)` adds the
        check of the samples' scale against the data's)."""
        self.run = RunResult(variant, params.to_dict(), seed, "finished", split_note=split_note)
        self.epoch = 0
        self._g: list[np.ndarray] = []
        self._d: list[np.ndarray] = []
        self._start = time.perf_counter()

    @property
    def last(self) -> bool:
        """The epoch just trained is the run's last."""
        return self.epoch >= self.settings.epochs

    @property
    def due(self) -> bool:
        """The epoch just trained is scored (every `eval_every`-th and the last)."""
        return self.settings.scored(self.epoch)

    @property
    def exact(self) -> bool:
        return self.last or self.settings.exact_every_epoch

    @property
    def extra(self) -> bool:
        return self.last and self.settings.extra_metrics

    def add_epoch(self, result: EpochResult, index: int) -> bool:
        """Record member `index`'s losses of one epoch; True when they are not finite or have
        exploded (the run is then 'diverged', see benchmark.metrics.divergence)."""
        self.epoch += 1
        g, d = result.g_losses[index], result.d_losses[index]
        self._g.append(g)
        self._d.append(d)
        reason = self.rule.losses(g, d, self.epoch)
        if reason is not None:
            self.run.status, self.run.reason = "diverged", reason
            return True
        return False

    def add_scores(self, scores: dict[str, float]) -> bool:
        """Record the scores of the epoch just trained; True when its samples were not finite
        (`score_members` then leaves the distances out) or far off the data's scale (the run
        is then 'diverged', see benchmark.metrics.divergence)."""
        scores["epoch"] = float(self.epoch)
        self.run.history.append(scores)
        reason = self.rule.scores(scores, self.epoch)
        if reason is not None:
            self.run.status, self.run.reason = "diverged", reason
            return True
        return False

    def state(self) -> dict[str, Any]:
        """The record so far (epochs, status, scored history, losses), for a checkpoint."""
        return {
            "epoch": self.epoch,
            "status": self.run.status,
            "reason": self.run.reason,
            "history": self.run.history,
            "g": self._g,
            "d": self._d,
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Continue from a `state()` of the same run (a fresh MemberRun of its seed)."""
        self.epoch = int(state["epoch"])
        self.run.status, self.run.reason = state["status"], state["reason"]
        self.run.history = list(state["history"])
        self._g, self._d = list(state["g"]), list(state["d"])

    def finish(
        self,
        trainable: Trainable,
        index: int,
        sample_count: int = GRID_SAMPLES,
        drawn: Mapping[str, torch.Tensor] | None = None,
    ) -> RunResult:
        """The finished record, with member `index`'s sample grids unless it diverged.

        A grid is the first `sample_count` of the scoring samples (`n_eval` of them, seed 0)
        of the trained generator: taken from `drawn` where `score_members` filled it at this
        epoch, or drawn now (`drawn` None or empty: not scored in this call); both give the
        same images.
        """
        run = self.run
        run.g_losses = np.concatenate(self._g) if self._g else np.zeros(0)
        run.d_losses = np.concatenate(self._d) if self._d else np.zeros(0)
        if run.status != "diverged":
            run.samples = {}
            for mode in trainable.sample_modes:
                kept = drawn.get(mode) if drawn else None
                if kept is not None and kept.shape[1] >= sample_count:
                    samples = kept[index]
                else:
                    n = max(self.settings.n_eval, sample_count)
                    samples = trainable.sample(n, mode, seed=0)[index]
                run.samples[mode] = samples[:sample_count].cpu().numpy()
        run.seconds = time.perf_counter() - self._start
        return run


def train_run(
    variant: str,
    params: Mapping[str, Any],
    settings: Settings,
    *,
    seed: int,
    data: Dataset,
    device: torch.device,
    on_epoch: OnEpoch | None = None,
    progress: bool = False,
    sample_count: int = GRID_SAMPLES,
) -> RunResult:
    """Train one seed of one configuration for `settings.epochs`, scoring as configured.

    `on_epoch(epoch, metrics)` is called after every scored epoch; returning True stops the
    run (status 'stopped'). A run that diverges (non-finite or exploding losses, samples far
    off the data's scale: benchmark.metrics.divergence) ends with status 'diverged'.
    """
    typed = params_class(variant).from_mapping(params)
    trainable = build(
        variant, [typed], data, seeds=[seed], device=device, batch_size=settings.batch_size
    )
    member = MemberRun(variant, typed, seed, settings, data.split_note, rule_for(data))
    bar = Progress(settings.epochs, f"{variant} seed {seed}") if progress else None
    drawn: dict[str, torch.Tensor] | None = None
    while not member.last:
        result = trainable.train_epoch()
        drawn = None  # the samples of this epoch only
        if member.add_epoch(result, 0):
            break
        if not member.due:
            continue
        drawn = {}
        scores = score_members(
            trainable,
            data,
            result,
            n_eval=settings.n_eval,
            exact=member.exact,
            extra=member.extra,
            drawn=drawn,
        )[0]
        diverged = member.add_scores(scores)
        if bar is not None:
            bar.update(member.epoch, _progress_note(scores))
        if diverged:
            break
        if on_epoch is not None and on_epoch(member.epoch, scores):
            member.run.status = "stopped"
            break
    return member.finish(trainable, 0, sample_count, drawn)


def _progress_note(scores: Mapping[str, float]) -> str:
    parts = [f"G {scores['g_loss']:.3f}", f"D {scores['d_loss']:.3f}"]
    if "w1" in scores:
        parts.append(f"W1 {scores['w1']:.3f}")
    parts.append(f"SW2 {scores['sliced_w2']:.4f}")
    return ", ".join(parts)

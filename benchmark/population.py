"""The population path of a study worker: P trials trained at once as one batched population.

With ``python -m benchmark.study --population P`` each worker asks Optuna for P trials (TPE's
constant liar keeps them apart), trains them, one member per trial and seed, in a single
trainable, and reports every member's scored epochs to its own trial, as the one-trial path
does: the same MLflow runs, metrics, artifacts and user attrs. A trial that is pruned,
diverges or completes leaves the population at once; its slot is refilled with a newly asked
trial (`benchmark.trainables.refill`), so the device never idles while the budget lasts, and
slots left empty at the end are frozen (their optimiser steps are masked).

With ``--seeds S > 1`` a trial's S seeds train side by side and report their mean once per
scored epoch (the one-trial path reports seed after seed); the study remembers which, and a
resume with the other path is refused.
"""

from __future__ import annotations

import contextlib
import math
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from benchmark.metrics.divergence import rule_for
from benchmark.runner import MemberRun, score_members
from benchmark.trainable import EpochResult, Trainable
from benchmark.trainables import build, refill
from benchmark.urls import mask_text
from benchmark.worker import (
    MAX_CONSECUTIVE_FAILURES,
    Heartbeats,
    WorkerContext,
    _epoch_done,
    _judge,
    _sigint_deferred,
    _Stop,
    _trial_id,
    _wait_for_running,
    close_trial,
    epoch_metrics,
    interrupt_trial,
    objective_values,
    open_trial,
    record_seed,
    take_trial,
)

__all__ = [
    "auto_population",
    "member_bytes",
    "resolve_population",
    "run_population",
    "set_active",
]

OnTrialEnd = Callable[[optuna.Study, FrozenTrial | None], None]

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


@dataclass
class _Slot:
    """One trial in the population: its members (one per seed) and its bookkeeping."""

    trial: optuna.Trial
    run_id: str
    index: list[int]
    runs: list[MemberRun]
    step: int = 0
    summaries: list[dict[str, Any]] = field(default_factory=list)


class _EpochSamples:
    """The population's sample grids after one epoch, drawn once for every trial that ends
    in it (`MemberRun.finish` picks its member's rows)."""

    def __init__(self, population: Trainable) -> None:
        self.population = population
        self.sample_modes = population.sample_modes
        self.drawn: dict[tuple[int, str, int], torch.Tensor] = {}

    def sample(self, n: int, mode: str | None = None, seed: int = 0) -> torch.Tensor:
        key = (n, str(mode), seed)
        if key not in self.drawn:
            self.drawn[key] = self.population.sample(n, mode, seed=seed)
        return self.drawn[key]


def set_active(population: Trainable, active: list[bool]) -> None:
    """Freeze the members whose flag is False (their optimiser steps change nothing)."""
    core = population.core  # type: ignore[attr-defined]
    mask = None if all(active) else torch.tensor(active, dtype=torch.float32, device=core.device)
    core.opt_g.active = mask
    core.opt_d.active = mask


def member_bytes(population_of_one: Trainable) -> int:
    """Device memory one member needs, estimated from a population of one: its weights,
    gradients and two Adam moments (16 B per parameter), its other state (e.g. the RealMix
    buffer) and the activations of one step (G pass and three D passes, kept for backward)."""
    core = population_of_one.core  # type: ignore[attr-defined]
    n_params = sum(p.numel() for p in [*core.G.parameters(), *core.D.parameters()])
    state = sum(
        t.numel() * t.element_size()
        for t in vars(population_of_one).values()
        if isinstance(t, torch.Tensor)
    )
    widths = sum(core.G.sizes) + 3 * sum(core.D.sizes)
    activations = 3 * core.batch_size * widths * 4  # pre-activation, output, dropout mask
    return 16 * n_params + state + activations


def auto_population(
    variant: str, params: Any, data: Any, device: torch.device, budget: int
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
    from benchmark.trainables import params_class

    variant = ctx.space.TRAINABLE
    cls = params_class(variant)
    params = cls.from_mapping({k: v for k, v in ctx.spec.overrides.items() if k in cls.names()})
    size = auto_population(variant, params, ctx.data, ctx.device, ctx.spec.trials)
    ctx.log(f"--population auto: {size} trial(s) at once on {ctx.device}")
    return size


def run_population(ctx: WorkerContext, *, on_trial_end: OnTrialEnd | None = None) -> int:
    """Take trials P at a time until the budget or the deadline is reached; the exit code.

    KeyboardInterrupt propagates after every live trial is recorded FAIL ('interrupted').
    An error while training fails every live trial (the population shares it) and returns 1.
    """
    runner = _PopulationRunner(ctx, on_trial_end)
    try:
        return runner.run()
    finally:
        runner.beats.close()


class _PopulationRunner:
    def __init__(self, ctx: WorkerContext, on_trial_end: OnTrialEnd | None) -> None:
        self.ctx = ctx
        self.on_trial_end = on_trial_end
        self.seeds = ctx.settings.seed_list()
        self.slots: list[_Slot | None] = [None] * ctx.spec.population
        self.population: Trainable | None = None
        self.beats = Heartbeats(ctx.storage)
        self.grids: _EpochSamples | None = None

    def live(self) -> list[_Slot]:
        return [s for s in self.slots if s is not None]

    def run(self) -> int:
        ctx = self.ctx
        try:
            while True:
                # Empty slots are offered to the study every epoch: a trial re-queued after
                # another worker died is taken as soon as a slot is free.
                exhausted = self._fill()
                if not self.live():
                    if exhausted and _wait_for_running(ctx.study, ctx.storage, ctx.spec):
                        continue  # a silent worker's trial was re-queued: take it
                    return 0
                assert self.population is not None
                set_active(self.population, [self._slot_of(i) is not None for i in self._all()])
                with ctx.clock.part("train"):
                    result = self.population.train_epoch()
                ctx.clock.trial_epochs += len(self.live())
                self._advance(result)
        except KeyboardInterrupt:
            for slot in self.live():
                interrupt_trial(ctx, slot.trial, slot.run_id)
            raise
        except Exception as err:
            reason = mask_text(f"{type(err).__name__}: {err}")  # errors may quote a URL
            ctx.log(f"population failed: {reason}\n{mask_text(traceback.format_exc())}")
            for slot in self.live():
                with contextlib.suppress(Exception):
                    close_trial(ctx, slot.trial, slot.run_id, TrialState.FAIL, reason=reason)
            return 1

    def _all(self) -> range:
        return range(len(self.slots) * len(self.seeds))

    def _slot_of(self, member: int) -> _Slot | None:
        return self.slots[member // len(self.seeds)]

    # -- filling slots ---------------------------------------------------------------------

    def _fill(self) -> bool:
        """Put a new trial in every empty slot; True when the budget (or time) is used up."""
        pending: list[tuple[int, Any]] = []
        exhausted = False
        for k in range(len(self.slots)):
            if self.slots[k] is not None:
                continue
            with self.ctx.clock.part("start trials"):
                opened = self._open(k)
            if opened is None:
                exhausted = True
                break
            slot, typed = opened
            self.slots[k] = slot
            pending.append((k, typed))
        with self.ctx.clock.part("build"):
            self._build(pending)
        return exhausted

    def _build(self, pending: list[tuple[int, Any]]) -> None:
        """Build the population on the first fill; refill its freed members afterwards."""
        if self.population is None and pending:
            # First fill: the population is as large as the trials it got (a budget smaller
            # than P leaves no idle members).
            self.slots = self.slots[: len(pending)]
            self.population = build(
                self.slots[0].runs[0].run.variant,  # type: ignore[union-attr]
                [typed for _, typed in pending for _ in self.seeds],
                self.ctx.data,
                seeds=[s for _ in pending for s in self.seeds],
                device=self.ctx.device,
                batch_size=self.ctx.settings.batch_size,
            )
        elif self.population is not None:
            for k, typed in pending:
                for member, seed in zip(self.slots[k].index, self.seeds):  # type: ignore[union-attr]
                    refill(self.population, member, typed, seed)

    def _open(self, k: int) -> tuple[_Slot, Any] | None:
        """The next trial for slot `k`, opened (config suggested, MLflow run started), or None
        when the budget is used up. A trial that fails to open is recorded FAIL and the next
        is taken."""
        ctx = self.ctx
        failures = 0
        while True:
            trial = take_trial(ctx)
            if trial is None:
                return None
            run_id = None
            try:
                with _sigint_deferred():
                    variant, typed, run_id = open_trial(ctx, trial)
                if self.population is not None and variant != self.population.name:
                    raise ValueError(
                        f"trial {trial.number} is a {variant} run; this population trains "
                        f"{self.population.name} (a space with one trainable is needed)"
                    )
            except KeyboardInterrupt:
                interrupt_trial(ctx, trial, run_id)
                raise
            except Exception as err:
                reason = mask_text(f"{type(err).__name__}: {err}")
                ctx.log(f"trial {trial.number} failed: {reason}")
                close_trial(ctx, trial, run_id, TrialState.FAIL, reason=reason)
                self._ended(trial)
                failures += 1
                if failures >= MAX_CONSECUTIVE_FAILURES:
                    raise RuntimeError(f"{failures} trials failed to start in a row") from err
                continue
            self.beats.add(_trial_id(ctx.study, ctx.storage, trial.number))
            runs = [
                MemberRun(
                    variant, typed, seed, ctx.settings, ctx.data.split_note, rule_for(ctx.data)
                )
                for seed in self.seeds
            ]
            index = [k * len(self.seeds) + j for j in range(len(self.seeds))]
            return _Slot(trial, run_id, index, runs), typed

    # -- one epoch's results ---------------------------------------------------------------

    def _advance(self, result: EpochResult) -> None:
        """Record the epoch for every live trial; score the due ones in one batch; end the
        trials that diverged, were pruned or completed."""
        self.grids = _EpochSamples(self.population)  # type: ignore[arg-type]
        due: list[int] = []
        for k, slot in enumerate(self.slots):
            if slot is None:
                continue
            diverged = [run.add_epoch(result, i) for run, i in zip(slot.runs, slot.index)]
            if any(diverged):
                self._end(k, "diverged")
            elif slot.runs[0].due:
                due.append(k)
        if not due:
            return
        slots = [self.slots[k] for k in due]
        picked = [i for s in slots for i in s.index]  # type: ignore[union-attr]
        with self.ctx.clock.part("score"):
            scores = score_members(
                self.population,  # type: ignore[arg-type]
                self.ctx.data,
                result,
                n_eval=self.ctx.settings.n_eval,
                exact=[s.runs[0].exact for s in slots for _ in s.index],  # type: ignore[union-attr]
                extra=[s.runs[0].extra for s in slots for _ in s.index],  # type: ignore[union-attr]
                members=picked,
            )
        rows = iter(scores)
        metric = self.ctx.metric
        multi = len(self.seeds) > 1
        clock = self.ctx.clock
        for k, slot in zip(due, slots):
            assert slot is not None
            diverged = False
            values = []
            logged: dict[str, float] = {}
            for run in slot.runs:
                row = next(rows)
                diverged |= run.add_scores(row)
                logged.update(epoch_metrics(run.run.seed, multi, row))
                values.append(float(row.get(metric, math.nan)))
            with clock.part("mlflow metrics"):  # one call per trial and epoch, all its seeds
                self.ctx.tracker.log_metrics(slot.run_id, logged, slot.runs[0].epoch)
            if diverged:
                self._end(k, "diverged")
                continue
            with clock.part("optuna report"):
                reason = _judge(
                    self.ctx, slot.trial, slot.step, float(np.mean(values)), notify=False
                )
            slot.step += 1
            if reason is not None:
                self._end(k, reason)
            elif slot.runs[0].last:
                self._end(k, None)
        _epoch_done(self.ctx)  # one progress redraw per epoch, not one per trial

    def _end(self, k: int, reason: str | None) -> None:
        """Finish trial `k`: artifacts and seed summaries, then tell the study how it ended
        (reason None: completed; 'diverged' or a pruning reason: PRUNED) and free the slot."""
        ctx, slot = self.ctx, self.slots[k]
        assert slot is not None and self.population is not None
        for run in slot.runs:
            if reason is not None and run.run.status == "finished":
                run.run.status = "stopped"
        with ctx.clock.part("sample grids"):
            results = [run.finish(self.grids, i) for run, i in zip(slot.runs, slot.index)]
        with ctx.clock.part("artifacts"):
            for res in results:
                record_seed(ctx, slot.trial, slot.run_id, res, slot.summaries)
        if reason == "diverged":
            detail = next((r.reason for r in results if r.status == "diverged"), None)
            if detail:
                slot.trial.set_user_attr("detail", detail)
        if reason is None:
            try:
                with ctx.clock.part("objective"):
                    values = objective_values(
                        ctx, slot.trial, slot.run_id, [r.history for r in results]
                    )
            except _Stop as stop:
                reason = stop.reason
        with ctx.clock.part("close trial"):
            if reason is None:
                close_trial(ctx, slot.trial, slot.run_id, TrialState.COMPLETE, values=values)
            else:
                close_trial(ctx, slot.trial, slot.run_id, TrialState.PRUNED, reason=reason)
        self.slots[k] = None
        with ctx.clock.part("progress"):
            self._ended(slot.trial)

    def _ended(self, trial: optuna.Trial) -> None:
        ctx = self.ctx
        trial_id = _trial_id(ctx.study, ctx.storage, trial.number)
        self.beats.remove(trial_id)
        if self.on_trial_end is not None:
            self.on_trial_end(ctx.study, ctx.storage.get_trial(trial_id))

"""The trial loop of a study worker: a population of P >= 1 trials, refilled as trials end.

Each worker asks Optuna for trials (TPE's constant liar keeps concurrent ones apart), trains
them, one member per trial and seed, in a single trainable, and reports every member's scored
epochs to its own trial: MLflow runs, metrics, artifacts and user attrs (keys in
benchmark.records). A trial that is pruned, diverges or completes leaves the population at
once; its slot is refilled with a newly asked trial (`benchmark.trainables.refill`), so the
device never idles while the budget lasts, and slots left empty at the end are frozen (their
optimiser steps are masked).

With ``--seeds S > 1`` a trial's S seeds train side by side and report their mean once per
scored epoch; with --population 1 they train seed after seed (one step per scored epoch of
each); the study remembers which, and a resume with the other is refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from benchmark import records
from benchmark.artifacts import json_safe, run_payload
from benchmark.bookkeeping import Clock
from benchmark.budget import Heartbeats, acquire_trial, heartbeat, trial_id, wait_for_running
from benchmark.data import Dataset
from benchmark.divergence import rule_for
from benchmark.objectives import get_objective
from benchmark.records import epoch_metrics
from benchmark.runner import MemberRun, RunResult, score_members, train_run
from benchmark.settings import Settings
from benchmark.signals import describe_interrupt, signals_deferred, signals_ignored
from benchmark.spec import WorkerSpec, worker_id
from benchmark.storage import FarBehindRule
from benchmark.trainable import EpochResult, Trainable, TrainableParams
from benchmark.trainables import build, params_class, refill
from benchmark.trainables.core import freeze
from benchmark.urls import mask_text
from studies import SearchSpace, split_variant

__all__ = [
    "MAX_CONSECUTIVE_FAILURES",
    "TEST_HANG_ENV",
    "OnTrialEnd",
    "Stop",
    "WorkerContext",
    "run_trials",
]

OnTrialEnd = Callable[[optuna.Study, FrozenTrial | None], None]

MAX_CONSECUTIVE_FAILURES = 3
"""Trials that fail in a row before a worker gives up (exit code 1)."""
TEST_HANG_ENV = "MIXBENCH_TEST_HANG_DIR"
"""Test-only: makes one worker announce itself on a FIFO mid-trial and block (see _test_hang)."""


class Stop(Exception):
    """The trial ends early: pruned, far behind or diverged (recorded as PRUNED)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _test_hang(trial: optuna.Trial) -> None:
    """Test-only (TEST_HANG_ENV set): the first worker to get here announces its pid and the
    trial number on the FIFO `<dir>/ready`, then blocks until killed (at most 120 s)."""
    folder = os.environ.get(TEST_HANG_ENV)
    if not folder:
        return
    try:
        fd = os.open(os.path.join(folder, "hung"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    with open(os.path.join(folder, "ready"), "w") as fifo:
        fifo.write(f"{os.getpid()} {trial.number}\n")
    threading.Event().wait(120)
    os._exit(3)


@dataclass
class WorkerContext:
    """Per-process state shared by the trials of one worker."""

    spec: WorkerSpec
    study: optuna.Study
    storage: optuna.storages.BaseStorage
    space: SearchSpace
    settings: Settings
    data: Dataset
    device: torch.device
    tracker: Any
    """A benchmark.tracking.Tracker, or the writer.QueuedTracker in front of one."""
    parent_run_id: str
    rule: FarBehindRule | None
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True)
    clock: Clock = field(default_factory=Clock)
    """Seconds of training, scoring and bookkeeping on this worker's training thread."""
    on_epoch: Callable[[], None] | None = None
    """Called after every scored epoch's intermediate value is reported (progress display)."""

    @property
    def metric(self) -> str:
        """The intermediate metric reported to the pruner at every scored epoch."""
        return get_objective(self.spec.objective).intermediate(self.settings.exact_every_epoch)

    @property
    def multi_objective(self) -> bool:
        return get_objective(self.spec.objective).multi


def _configure(ctx: WorkerContext, trial: optuna.Trial) -> tuple[str, TrainableParams]:
    variant, params = split_variant(ctx.space, ctx.space.suggest(trial))
    cls = params_class(variant)
    params.update({k: v for k, v in ctx.spec.overrides.items() if k in cls.names()})
    return variant, cls.from_mapping(params)


def judge(
    ctx: WorkerContext, trial: optuna.Trial, step: int, value: float, *, notify: bool = True
) -> str | None:
    """Report the intermediate value; the reason to stop the trial, or None. `notify`: call
    ctx.on_epoch after reporting (the population path calls it once per epoch instead)."""
    if not ctx.multi_objective:
        trial.report(value, step)
        if notify:
            epoch_done(ctx)
        if trial.should_prune():
            return f"pruned by the {ctx.spec.pruner} pruner at step {step}"
        return None
    curve = dict(trial.user_attrs.get(records.CURVE) or {})
    curve[str(step)] = value if math.isfinite(value) else None
    trial.set_user_attr(records.CURVE, curve)
    if notify:
        epoch_done(ctx)
    if ctx.rule is None:
        return None
    others = [
        (t.user_attrs.get(records.CURVE) or {}).get(str(step))
        for t in ctx.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    ]
    return ctx.rule.verdict(value, [v for v in others if v is not None])


def epoch_done(ctx: WorkerContext) -> None:
    """Tell the progress display that an epoch's values are reported."""
    if ctx.on_epoch is not None:
        with contextlib.suppress(Exception):  # a display must never fail a trial
            ctx.on_epoch()


def _seed_summary(result: RunResult) -> dict[str, Any]:
    final = result.final
    out = {"seed": result.seed, "status": result.status, "epochs": len(result.history)}
    out.update({m: json_safe(final[m]) for m in records.SEED_SUMMARY if m in final})
    if result.reason:
        out["reason"] = result.reason
    return out


def log_epoch(
    ctx: WorkerContext, run_id: str, seed: int, multi: bool, metrics: Mapping[str, float]
) -> None:
    """One scored epoch of one seed to the trial's MLflow run (seed_<k>/ prefix if several)."""
    ctx.tracker.log_metrics(run_id, epoch_metrics(seed, multi, metrics), int(metrics["epoch"]))


def record_seed(
    ctx: WorkerContext,
    trial: optuna.Trial,
    run_id: str,
    result: RunResult,
    summaries: list[dict[str, Any]],
) -> None:
    """A finished seed's artifacts to MLflow (queued: the tracker's writer process draws and
    uploads them) and its summary, with the artifact paths it is to have, to the trial's
    `seeds` attr."""
    multi = ctx.settings.seeds > 1
    payload = run_payload(result, data=ctx.data, settings=dataclasses.asdict(ctx.settings))
    names = ctx.tracker.write_artifacts(run_id, records.seed_folder(result.seed, multi), payload)
    summaries.append({**_seed_summary(result), "artifacts": names})
    trial.set_user_attr(records.SEEDS, summaries)


def objective_values(
    ctx: WorkerContext, trial: optuna.Trial, run_id: str, histories: list[list[dict]]
) -> list[float]:
    """The objective values (means over seeds of the last scored epoch), logged and stored;
    raises Stop('diverged') when one is not finite."""
    metric_names = get_objective(ctx.spec.objective).metrics
    means = {
        key: float(np.mean([h[-1][key] for h in histories]))
        for key in histories[0][-1]
        if all(key in h[-1] for h in histories)
    }
    if len(histories) > 1:
        _log_mean_history(ctx, run_id, histories)
    values = [means.get(m, math.nan) for m in metric_names]
    if not all(math.isfinite(v) for v in values):
        raise Stop("diverged")
    logged = {records.objective_metric(m): v for m, v in zip(metric_names, values)}
    ctx.tracker.log_metrics(run_id, logged, 0)
    trial.set_user_attr(records.FINAL, {k: v for k, v in means.items() if math.isfinite(v)})
    return values


def _train(
    ctx: WorkerContext, trial: optuna.Trial, run_id: str, variant: str, typed: TrainableParams
) -> list[float]:
    """Train every seed, one after the other, logging as it goes; the objective values.

    Raises Stop when a seed diverges or the pruning rule stops it.
    """
    seeds = ctx.settings.seed_list()
    multi = len(seeds) > 1
    step = 0
    stop_reason: list[str] = []
    summaries: list[dict[str, Any]] = []
    histories: list[list[dict[str, float]]] = []
    for seed in seeds:

        def on_epoch(epoch: int, metrics: dict[str, float], seed: int = seed) -> bool:
            nonlocal step
            with ctx.clock.part("mlflow metrics"):
                log_epoch(ctx, run_id, seed, multi, metrics)
            value = metrics.get(ctx.metric, math.nan)
            with ctx.clock.part("optuna report"):
                reason = judge(ctx, trial, step, float(value))
            step += 1
            _test_hang(trial)
            if reason:
                stop_reason.append(reason)
            return reason is not None

        result = train_run(
            variant,
            typed.to_dict(),
            ctx.settings,
            seed=seed,
            data=ctx.data,
            device=ctx.device,
            on_epoch=on_epoch,
        )
        ctx.clock.trial_epochs += int(result.history[-1]["epoch"]) if result.history else 0
        with ctx.clock.part("artifacts"):
            record_seed(ctx, trial, run_id, result, summaries)
        histories.append(result.history)
        if result.status == "diverged":
            trial.set_user_attr(records.DETAIL, result.reason)
            raise Stop("diverged")
        if result.status == "stopped":
            raise Stop(stop_reason[-1] if stop_reason else "stopped")
    with ctx.clock.part("objective"):
        return objective_values(ctx, trial, run_id, histories)


def _log_mean_history(ctx: WorkerContext, run_id: str, histories: list[list[dict]]) -> None:
    """Per-epoch means over seeds under the unprefixed metric names (one call)."""
    now = int(time.time() * 1000)
    out = []
    for rows in zip(*histories):
        epoch = int(rows[0]["epoch"])
        keys = [k for k in rows[0] if k != "epoch" and all(k in r for r in rows)]
        out += [(k, float(np.mean([r[k] for r in rows])), now, epoch) for k in keys]
    ctx.tracker.log_metric_rows(run_id, out)


def open_trial(ctx: WorkerContext, trial: optuna.Trial) -> tuple[str, TrainableParams, str]:
    """(variant, typed params, MLflow run id) of an asked trial: its config suggested and
    stored, its retry history noted, its nested MLflow run started.

    Call it under `signals_deferred()` and assign the result inside that block: a Ctrl-C in
    between would leave an MLflow run that nobody knows to end, RUNNING forever.
    """
    frozen = ctx.storage.get_trial(trial_id(ctx.study, ctx.storage, trial.number))
    history = frozen.system_attrs.get("retry_history") or []
    failed_from = history[-1] if history else None
    if failed_from is not None:
        trial.set_user_attr(records.RETRIED_FROM, failed_from)
        for key, empty in records.STALE_ON_RETRY.items():  # copied from the failed trial
            if key in frozen.user_attrs:
                trial.set_user_attr(key, empty)
    variant, typed = _configure(ctx, trial)
    trial.set_user_attr(records.CONFIG, {"trainable": variant, "params": typed.to_dict()})
    tags = {"trainable": variant, "worker": worker_id()}
    if failed_from is not None:
        tags["retried_from"] = str(failed_from)
    run_id = ctx.tracker.start_trial(
        ctx.parent_run_id,
        study_name=ctx.study.study_name,
        number=trial.number,
        params={"trainable": variant, **typed.to_dict()},
        tags=tags,
    )
    trial.set_user_attr(records.MLFLOW_RUN_ID, run_id)
    return variant, typed, run_id


def close_trial(
    ctx: WorkerContext,
    trial: optuna.Trial,
    run_id: str | None,
    state: TrialState,
    *,
    values: Sequence[float] | None = None,
    reason: str | None = None,
) -> TrialState:
    """Record how a trial ended, in MLflow and in the study (tell)."""
    if state == TrialState.COMPLETE:
        if run_id is not None:
            ctx.tracker.end_trial(run_id, "COMPLETE")
        ctx.study.tell(trial, list(values or []))
        return state
    if reason is not None:
        with contextlib.suppress(Exception):
            trial.set_user_attr(records.REASON, reason)
    outcome = "PRUNED" if state == TrialState.PRUNED else "FAIL"
    if run_id is not None:
        with contextlib.suppress(Exception):
            ctx.tracker.end_trial(run_id, outcome, reason)
    ctx.study.tell(trial, state=state)
    return state


def interrupt_trial(ctx: WorkerContext, trial: optuna.Trial, run_id: str | None) -> None:
    """Ctrl-C (or SIGTERM, SIGHUP, the launcher's death): the trial is recorded FAIL (reason
    'interrupted', or 'interrupted (SIGTERM)' etc.), its MLflow run KILLED. Call it while
    handling the KeyboardInterrupt (it reads which signal it was)."""
    how = describe_interrupt(sys.exc_info()[1])
    reason = "interrupted" + ("" if how == "Ctrl-C" else f" ({how})")
    with signals_ignored():  # a second Ctrl-C must not cut the bookkeeping short
        with contextlib.suppress(Exception):
            trial.set_user_attr(records.REASON, reason)
        if run_id is not None:
            with contextlib.suppress(Exception):
                ctx.tracker.end_trial(run_id, "INTERRUPTED", f"interrupted ({how})")
        with contextlib.suppress(Exception):
            ctx.study.tell(trial, state=TrialState.FAIL)


def take_trial(ctx: WorkerContext) -> optuna.Trial | None:
    """`acquire_trial` with Ctrl-C held until it returns (never a half-asked trial or a stray
    ticket); a trial asked just before Ctrl-C is recorded FAIL ('interrupted')."""
    trial = None
    try:
        with signals_deferred():
            trial = acquire_trial(ctx.study, ctx.spec, ctx.space)
    except KeyboardInterrupt:
        if trial is not None:
            interrupt_trial(ctx, trial, None)
        raise
    return trial


def run_trial(ctx: WorkerContext, trial: optuna.Trial) -> TrialState:
    """Run one asked trial to its end and tell the study; KeyboardInterrupt is re-raised
    after the trial is recorded FAIL (reason 'interrupted') and its MLflow run KILLED."""
    run_id: str | None = None
    try:
        with heartbeat(ctx.study, ctx.storage, trial):
            with signals_deferred(), ctx.clock.part("start trials"):
                variant, typed, run_id = open_trial(ctx, trial)
            values = _train(ctx, trial, run_id, variant, typed)
            with ctx.clock.part("close trial"):
                return close_trial(ctx, trial, run_id, TrialState.COMPLETE, values=values)
    except Stop as stop:
        with ctx.clock.part("close trial"):
            return close_trial(ctx, trial, run_id, TrialState.PRUNED, reason=stop.reason)
    except KeyboardInterrupt:
        interrupt_trial(ctx, trial, run_id)
        raise
    except Exception as err:
        reason = mask_text(f"{type(err).__name__}: {err}")  # MLflow's errors quote its URL
        ctx.log(f"trial {trial.number} failed: {reason}\n{mask_text(traceback.format_exc())}")
        return close_trial(ctx, trial, run_id, TrialState.FAIL, reason=reason)


# -- the one-trial loop -------------------------------------------------------------------


def _one_trial_loop(ctx: WorkerContext, on_trial_end: OnTrialEnd | None) -> int:
    """The loop for --population 1: one trial after another."""
    study, storage, spec = ctx.study, ctx.storage, ctx.spec
    failures = 0
    while True:
        with ctx.clock.part("start trials"):
            trial = take_trial(ctx)
        if trial is None:
            if wait_for_running(study, storage, spec):
                continue  # a silent worker's trial was re-queued: take it
            return 0
        state = run_trial(ctx, trial)
        failures = failures + 1 if state == TrialState.FAIL else 0
        if on_trial_end is not None:
            with ctx.clock.part("progress"):
                on_trial_end(study, ctx.storage.get_trial(trial_id(study, storage, trial.number)))
        if failures >= MAX_CONSECUTIVE_FAILURES:
            ctx.log(f"worker {worker_id()}: {failures} trials failed in a row; stopping")
            return 1


# -- the population loop ------------------------------------------------------------------


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


def run_trials(ctx: WorkerContext, *, on_trial_end: OnTrialEnd | None = None) -> int:
    """Take trials until the budget or the deadline is reached; the worker's exit code.

    --population 1 trains one trial after another; P > 1 trains P at once as one population.
    KeyboardInterrupt propagates after the running trials are recorded FAIL ('interrupted').
    """
    if ctx.spec.population == 1:
        return _one_trial_loop(ctx, on_trial_end)
    return _run_population(ctx, on_trial_end=on_trial_end)


def _run_population(ctx: WorkerContext, *, on_trial_end: OnTrialEnd | None = None) -> int:
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
                    if exhausted and wait_for_running(ctx.study, ctx.storage, ctx.spec):
                        continue  # a silent worker's trial was re-queued: take it
                    return 0
                assert self.population is not None
                freeze(self.population, [self._slot_of(i) is not None for i in self._all()])
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
                with signals_deferred():
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
            self.beats.add(trial_id(ctx.study, ctx.storage, trial.number))
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
                reason = judge(
                    self.ctx, slot.trial, slot.step, float(np.mean(values)), notify=False
                )
            slot.step += 1
            if reason is not None:
                self._end(k, reason)
            elif slot.runs[0].last:
                self._end(k, None)
        epoch_done(self.ctx)  # one progress redraw per epoch, not one per trial

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
                slot.trial.set_user_attr(records.DETAIL, detail)
        if reason is None:
            try:
                with ctx.clock.part("objective"):
                    values = objective_values(
                        ctx, slot.trial, slot.run_id, [r.history for r in results]
                    )
            except Stop as stop:
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
        ended = trial_id(ctx.study, ctx.storage, trial.number)
        self.beats.remove(ended)
        if self.on_trial_end is not None:
            self.on_trial_end(ctx.study, ctx.storage.get_trial(ended))

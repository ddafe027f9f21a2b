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

A trial trained alone (--population 1) saves its state every `spec.checkpoint_every` epochs
(benchmark.checkpoints); a later trial of the same config continues from it exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from benchmark import records
from benchmark.artifacts import json_safe, run_payload
from benchmark.bookkeeping import Clock
from benchmark.budget import Heartbeats, acquire_trial, trial_id, wait_for_running
from benchmark.checkpoints import CheckpointError, fingerprint, fingerprint_key
from benchmark.checkpoints import load as load_checkpoint
from benchmark.checkpoints import save as save_checkpoint
from benchmark.data import Dataset
from benchmark.metrics.divergence import rule_for
from benchmark.objectives import get_objective
from benchmark.records import epoch_metrics
from benchmark.runner import MemberRun, RunResult, score_members
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
    "TEST_STOP_ENV",
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
TEST_STOP_ENV = "MIXBENCH_TEST_STOP_AFTER_EPOCHS"
"""Test-only: N makes a worker raise SIGINT in itself (Ctrl-C) after its N-th trained epoch."""


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
    stored, its retry history noted, its nested MLflow run started (with the worker's
    QueuedTracker the id is a placeholder while the run creator process makes the run:
    `link_run` records the real one).

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
    return variant, typed, run_id


def link_run(ctx: WorkerContext, trial: optuna.Trial, run_id: str) -> str:
    """Record the MLflow run of an opened trial in its Optuna record (waiting until a
    placeholder's run is created); returns the run's id. Raises what creating it raised."""
    run_id = ctx.tracker.resolve(run_id)
    trial.set_user_attr(records.MLFLOW_RUN_ID, run_id)
    return run_id


def _link_late(ctx: WorkerContext, trial: optuna.Trial, run_id: str | None) -> str | None:
    """The run id of a trial that ends, linked now if it ends before `link_run` (its build
    failed, Ctrl-C); None when there is no run (it could not be created)."""
    if run_id is None:
        return None
    try:
        created = ctx.tracker.resolve(run_id)
    except Exception:  # RunNotCreated: its reason is the trial's
        return None
    if created != run_id:
        with contextlib.suppress(Exception):
            trial.set_user_attr(records.MLFLOW_RUN_ID, created)
    return created


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
    run_id = _link_late(ctx, trial, run_id)
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
        run_id = _link_late(ctx, trial, run_id)
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


# -- the population loop ------------------------------------------------------------------


@dataclass(eq=False)
class _Slot:
    """One trial in the population: its members (its seeds side by side, or the seed it is
    at when they train seed after seed) and its bookkeeping."""

    trial: optuna.Trial
    run_id: str
    variant: str
    typed: TrainableParams
    index: list[int]
    """Members of the population this trial trains."""
    runs: list[MemberRun]
    """One per member: the runs of the seeds training now."""
    queue: list[int]
    """Seeds still to train after these (seed after seed; empty side by side)."""
    fresh: bool = True
    """Its members are still to be built (a new trial, or the next seed of this one)."""
    step: int = 0
    summaries: list[dict[str, Any]] = field(default_factory=list)
    finished: list[RunResult] = field(default_factory=list)
    """Its finished seeds' records (a checkpoint keeps them, to record them again)."""
    checkpoint: Path | None = None
    """Where its state is saved (trained alone, checkpoints on); None: not saved."""
    fingerprint: dict[str, Any] | None = None
    resume_state: Any = None
    """A checkpoint's population state, loaded into the population once it is built."""


class _GiveUp(Exception):
    """MAX_CONSECUTIVE_FAILURES trials failed in a row: the worker stops (exit code 1)."""


def run_trials(
    ctx: WorkerContext, *, seed_after_seed: bool, on_trial_end: OnTrialEnd | None = None
) -> int:
    """Take trials until the budget or the deadline is reached, `ctx.spec.population` at a
    time (1: one trial after another); the worker's exit code.

    `seed_after_seed`: a trial's seeds train one after another, each reporting its scored
    epochs (--population 1); otherwise side by side, reporting their mean once per scored
    epoch. KeyboardInterrupt propagates after every live trial is recorded FAIL
    ('interrupted'). A population of one fails only its trial when training raises, and the
    worker goes on until MAX_CONSECUTIVE_FAILURES trials failed in a row (exit code 1); a
    larger population fails every live trial (they share the error) and returns 1.
    """
    runner = _PopulationRunner(ctx, on_trial_end, seed_after_seed)
    try:
        return runner.run()
    finally:
        runner.beats.close()


class _PopulationRunner:
    def __init__(
        self, ctx: WorkerContext, on_trial_end: OnTrialEnd | None, seed_after_seed: bool
    ) -> None:
        self.ctx = ctx
        self.on_trial_end = on_trial_end
        self.seeds = ctx.settings.seed_list()
        self.seed_after_seed = seed_after_seed
        self.width = 1 if seed_after_seed else len(self.seeds)
        """Members per trial."""
        self.slots: list[_Slot | None] = [None] * ctx.spec.population
        self.population: Trainable | None = None
        self.beats = Heartbeats(ctx.storage)
        self.grids: dict[str, torch.Tensor] = {}
        """The first scoring samples of every member at this epoch: the sample grids of the
        trials that end in it (`score_members` fills it, `MemberRun.finish` reads it)."""
        self.failures = 0
        """Trials failed in a row (a complete or pruned trial resets it)."""
        self.checkpoints: Path | None = None
        """Folder of the checkpoints of trials trained alone (None: not saved)."""
        if seed_after_seed and ctx.spec.population == 1 and ctx.spec.checkpoint_every > 0:
            self.checkpoints = Path(ctx.spec.lock_path).parent / "checkpoints"
        self.trained = 0
        """Epochs trained by this worker (the test hook TEST_STOP_ENV counts them)."""

    def live(self) -> list[_Slot]:
        return [s for s in self.slots if s is not None]

    def run(self) -> int:
        ctx = self.ctx
        try:
            while True:
                try:
                    # Empty slots are offered to the study every epoch: a trial re-queued
                    # after another worker died is taken as soon as a slot is free.
                    exhausted = self._fill()
                    if not self.live():
                        if exhausted and wait_for_running(ctx.study, ctx.storage, ctx.spec):
                            continue  # a silent worker's trial was re-queued: take it
                        return 0
                    self._epoch()
                except _GiveUp as stop:
                    self._fail_live(str(stop))
                    return 1
                except Exception as err:  # recorded on the trials it failed
                    if not self._failed(err):
                        return 1
        except KeyboardInterrupt:
            for slot in self.live():
                interrupt_trial(ctx, slot.trial, slot.run_id)
            raise

    def _epoch(self) -> None:
        """Train one epoch of every live member and record it."""
        assert self.population is not None
        n = len(self.slots) * self.width
        freeze(self.population, [self.slots[i // self.width] is not None for i in range(n)])
        with self.ctx.clock.part("train"):
            result = self.population.train_epoch()
        self.ctx.clock.trial_epochs += len(self.live())
        self._advance(result)
        if self.checkpoints is not None:
            with self.ctx.clock.part("checkpoint"):
                self._save_checkpoints()
        self.trained += 1
        if os.environ.get(TEST_STOP_ENV) == str(self.trained):
            signal.raise_signal(signal.SIGINT)

    def _failed(self, err: Exception) -> bool:
        """Record the live trials FAIL after `err`; whether the worker goes on."""
        ctx = self.ctx
        reason = mask_text(f"{type(err).__name__}: {err}")  # MLflow's errors quote its URL
        trace = mask_text(traceback.format_exc())
        if len(self.slots) > 1:
            ctx.log(f"population failed: {reason}\n{trace}")
            self._fail_live(reason)
            return False
        for slot in self.live():  # a population of one: its trial alone failed
            ctx.log(f"trial {slot.trial.number} failed: {reason}\n{trace}")
            close_trial(ctx, slot.trial, slot.run_id, TrialState.FAIL, reason=reason)
            self.slots = [None]
            self.population = None
            try:
                with ctx.clock.part("progress"):
                    self._ended(slot.trial, TrialState.FAIL)
            except _GiveUp:
                return False
        return True

    def _fail_live(self, reason: str) -> None:
        for slot in self.live():
            with contextlib.suppress(Exception):
                close_trial(self.ctx, slot.trial, slot.run_id, TrialState.FAIL, reason=reason)

    # -- filling slots ---------------------------------------------------------------------

    def _fill(self) -> bool:
        """Put a new trial in every empty slot and build the members still to be built;
        True when the budget (or time) is used up."""
        exhausted = False
        opened = []
        for k in range(len(self.slots)):
            if self.slots[k] is not None:
                continue
            with self.ctx.clock.part("start trials"):
                slot = self._open(k)
            if slot is None:
                exhausted = True
                break
            self.slots[k] = slot
            opened.append(slot)
        with self.ctx.clock.part("build"):  # meanwhile the run creator makes their MLflow runs
            self._build([k for k, s in enumerate(self.slots) if s is not None and s.fresh])
        with self.ctx.clock.part("start trials"):
            for slot in opened:
                self._link(slot)
        return exhausted

    def _link(self, slot: _Slot) -> None:
        """The trial's MLflow run recorded in its Optuna record before it trains; a trial
        whose run could not be created is recorded FAIL and its slot freed."""
        try:
            with signals_deferred():
                slot.run_id = link_run(self.ctx, slot.trial, slot.run_id)
        except Exception as err:
            reason = mask_text(f"{type(err).__name__}: {err}")
            self.ctx.log(f"trial {slot.trial.number} failed: {reason}")
            close_trial(self.ctx, slot.trial, None, TrialState.FAIL, reason=reason)
            self.slots[self.slots.index(slot)] = None
            self._ended(slot.trial, TrialState.FAIL)

    def _build(self, pending: list[int]) -> None:
        """Build the population on the first fill (and every time for a population of one,
        as a run alone is built); refill the freed members of a larger one afterwards."""
        if not pending:
            return
        if self.population is None:
            # First fill: the population is as large as the trials it got (a budget smaller
            # than P leaves no idle members).
            self.slots = self.slots[: len(pending)]
        if self.population is None or len(self.slots) == 1:
            slots = self.live()
            self.population = build(
                slots[0].variant,
                [s.typed for s in slots for _ in s.runs],
                self.ctx.data,
                seeds=[run.run.seed for s in slots for run in s.runs],
                device=self.ctx.device,
                batch_size=self.ctx.settings.batch_size,
            )
            if len(slots) == 1 and slots[0].resume_state is not None:
                self.population.load_state_dict(slots[0].resume_state)
                slots[0].resume_state = None
        else:
            for k in pending:
                slot = self.slots[k]
                assert slot is not None
                for member, run in zip(slot.index, slot.runs):
                    refill(self.population, member, slot.typed, run.run.seed)
        for k in pending:
            self.slots[k].fresh = False  # type: ignore[union-attr]

    def _open(self, k: int) -> _Slot | None:
        """The next trial for slot `k`, opened (config suggested, MLflow run started), or None
        when the budget is used up. A trial that fails to open is recorded FAIL and the next
        is taken."""
        ctx = self.ctx
        while True:
            trial = take_trial(ctx)
            if trial is None:
                return None
            run_id = None
            try:
                with signals_deferred():
                    variant, typed, run_id = open_trial(ctx, trial)
                shared = self.population is not None and len(self.slots) > 1
                if shared and variant != self.population.name:  # type: ignore[union-attr]
                    raise ValueError(
                        f"trial {trial.number} is a {variant} run; this population trains "
                        f"{self.population.name} (a space with one trainable is needed)"  # type: ignore[union-attr]
                    )
                seeds, queue = self.seeds[: self.width], self.seeds[self.width :]
                index = [k * self.width + j for j in range(self.width)]
                runs = [self._member_run(variant, typed, seed) for seed in seeds]
                slot = _Slot(trial, run_id, variant, typed, index, runs, queue)
                if self.checkpoints is not None:
                    with signals_deferred():  # a resumed trial's record is written whole
                        self._resume(slot)
            except KeyboardInterrupt:
                interrupt_trial(ctx, trial, run_id)
                raise
            except Exception as err:
                reason = mask_text(f"{type(err).__name__}: {err}")
                ctx.log(f"trial {trial.number} failed: {reason}")
                close_trial(ctx, trial, run_id, TrialState.FAIL, reason=reason)
                self._ended(trial, TrialState.FAIL)
                continue
            self.beats.add(trial_id(ctx.study, ctx.storage, trial.number))
            return slot

    def _member_run(self, variant: str, typed: TrainableParams, seed: int) -> MemberRun:
        ctx = self.ctx
        return MemberRun(
            variant, typed, seed, ctx.settings, ctx.data.split_note, rule_for(ctx.data)
        )

    # -- one epoch's results ---------------------------------------------------------------

    def _advance(self, result: EpochResult) -> None:
        """Record the epoch for every live trial; score the due ones in one batch; end the
        seeds and trials that diverged, were pruned or completed."""
        assert self.population is not None
        self.grids = {}
        due: list[_Slot] = []
        for slot in self.live():
            diverged = [run.add_epoch(result, i) for run, i in zip(slot.runs, slot.index)]
            if any(diverged):
                self._end(slot, "diverged")
            elif slot.runs[0].due:
                due.append(slot)
        if not due:
            return
        with self.ctx.clock.part("score"):
            scores = score_members(
                self.population,
                self.ctx.data,
                result,
                n_eval=self.ctx.settings.n_eval,
                exact=[s.runs[0].exact for s in due for _ in s.index],
                extra=[s.runs[0].extra for s in due for _ in s.index],
                members=[i for s in due for i in s.index],
                drawn=self.grids,
            )
        rows = iter(scores)
        judged = [(slot, *self._report(slot, [next(rows) for _ in slot.runs])) for slot in due]
        # MLflow's metrics only once every Optuna report of the epoch is made: a writer starts
        # committing them at once, and its store commits made the training thread's journal
        # appends 5x slower (3.9 ms instead of 0.7 ms per report on 2 CPUs)
        ending = []
        for slot, ends, reason, logged in judged:
            if logged:
                with self.ctx.clock.part("mlflow metrics"):  # one call per trial and epoch
                    self.ctx.tracker.log_metrics(slot.run_id, logged, slot.runs[0].epoch)
                _test_hang(slot.trial)
            if ends:
                ending.append((slot, reason))
        # one progress redraw per epoch, not one per trial; before the trials that end in it
        # are told (the display shows their last epoch, then their end)
        epoch_done(self.ctx)
        for slot, reason in ending:
            self._end(slot, reason)

    def _report(
        self, slot: _Slot, rows: list[dict[str, float]]
    ) -> tuple[bool, str | None, dict[str, float]]:
        """One scored epoch of one trial: reported to the pruner and judged. Whether its
        seeds end now, why (None: completed), and the metrics to log for it (all its seeds in
        one call; none when it diverged: samples off the data's scale are not logged, as a
        run alone does not log them)."""
        diverged = False
        for run, row in zip(slot.runs, rows):
            diverged |= run.add_scores(row)
        if diverged:
            return True, "diverged", {}
        multi = len(self.seeds) > 1
        logged: dict[str, float] = {}
        for run, row in zip(slot.runs, rows):
            logged.update(epoch_metrics(run.run.seed, multi, row))
        value = float(np.mean([row.get(self.ctx.metric, math.nan) for row in rows]))
        with self.ctx.clock.part("optuna report"):
            reason = judge(self.ctx, slot.trial, slot.step, value, notify=False)
        slot.step += 1
        return reason is not None or slot.runs[0].last, reason, logged

    def _end(self, slot: _Slot, reason: str | None) -> None:
        """The seeds training in `slot` have ended: their artifacts and summaries are
        recorded; then the trial's next seed starts, or the study is told how the trial ended
        (reason None: completed; 'diverged' or a pruning reason: PRUNED) and the slot is
        freed."""
        ctx = self.ctx
        for run in slot.runs:
            if reason is not None and run.run.status == "finished":
                run.run.status = "stopped"
        with ctx.clock.part("sample grids"):
            results = [
                run.finish(self.population, i, drawn=self.grids)
                for run, i in zip(slot.runs, slot.index)
            ]
        with ctx.clock.part("artifacts"):
            for res in results:
                record_seed(ctx, slot.trial, slot.run_id, res, slot.summaries)
        slot.finished += results
        if reason is None and slot.queue:  # seed after seed: the next one
            slot.runs = [self._member_run(slot.variant, slot.typed, slot.queue.pop(0))]
            slot.fresh = True
            return
        if reason == "diverged":
            detail = next((r.reason for r in results if r.status == "diverged"), None)
            if detail:
                slot.trial.set_user_attr(records.DETAIL, detail)
        if reason is None:
            try:
                with ctx.clock.part("objective"):
                    values = objective_values(
                        ctx, slot.trial, slot.run_id, [r.history for r in slot.finished]
                    )
            except Stop as stop:
                reason = stop.reason
        state = TrialState.COMPLETE if reason is None else TrialState.PRUNED
        with ctx.clock.part("close trial"):
            if reason is None:
                close_trial(ctx, slot.trial, slot.run_id, state, values=values)
            else:
                close_trial(ctx, slot.trial, slot.run_id, state, reason=reason)
        self.slots = [None if s is slot else s for s in self.slots]
        if slot.checkpoint is not None:  # ended: nothing left to continue
            with contextlib.suppress(OSError):
                slot.checkpoint.unlink()
        with ctx.clock.part("progress"):
            self._ended(slot.trial, state)

    # -- checkpoints of a trial trained alone ---------------------------------------------

    def _save_checkpoints(self) -> None:
        """Save the live trial's state every `checkpoint_every` epochs of a seed, and when a
        seed has ended and the next is to start (then no population state is needed)."""
        for slot in self.live():
            run = slot.runs[0]
            if slot.checkpoint is None:
                continue
            if not slot.fresh and (run.epoch % self.ctx.spec.checkpoint_every or run.last):
                continue
            save_checkpoint(
                slot.checkpoint,
                {
                    "fingerprint": slot.fingerprint,
                    "trial": slot.trial.number,
                    "seed": run.run.seed,
                    "queue": list(slot.queue),
                    "step": slot.step,
                    "member": run.state(),
                    "finished": slot.finished,
                    "state": None if slot.fresh else self.population.state_dict(),  # type: ignore[union-attr]
                },
            )

    def _resume(self, slot: _Slot) -> None:
        """Give `slot` its checkpoint, if a trial of the same config left one (a retried
        trial, an ablation cell run again): its finished seeds are recorded again, its
        scored epochs logged and reported again, and training continues where it stopped."""
        ctx = self.ctx
        slot.fingerprint = fingerprint(
            ctx.settings, ctx.data, study=ctx.study.study_name, trainable=slot.variant,
            params=slot.typed.to_dict(), device=str(ctx.device.type),
        )  # fmt: skip
        assert self.checkpoints is not None
        slot.checkpoint = self.checkpoints / f"trial-{fingerprint_key(slot.fingerprint)}.pt"
        try:
            saved = load_checkpoint(slot.checkpoint, slot.fingerprint, "it is ignored")
        except CheckpointError as err:
            ctx.log(f"trial {slot.trial.number}: {err}; training from epoch 0")
            return
        if saved is None or self._owner_running(int(saved["trial"])):
            return
        run = self._member_run(slot.variant, slot.typed, int(saved["seed"]))
        run.restore(saved["member"])
        slot.runs, slot.queue, slot.step = [run], list(saved["queue"]), int(saved["step"])
        for res in saved["finished"]:
            record_seed(ctx, slot.trial, slot.run_id, res, slot.summaries)
        slot.finished = list(saved["finished"])
        slot.resume_state = saved["state"]
        self._replay(slot)
        where = {"from_trial": int(saved["trial"]), "seed": run.run.seed, "epoch": run.epoch}
        slot.trial.set_user_attr(records.RESUMED, where)
        ctx.tracker.set_tags(slot.run_id, {"resumed_from": json.dumps(where)})
        ctx.log(
            f"trial {slot.trial.number}: continuing trial {where['from_trial']}'s checkpoint "
            f"(seed {run.run.seed}, epoch {run.epoch} of {ctx.settings.epochs}; "
            f"{len(slot.finished)} seed(s) done) from {slot.checkpoint}"
        )

    def _owner_running(self, number: int) -> bool:
        """The trial that saved a checkpoint is still running (another worker's twin)."""
        ctx = self.ctx
        with contextlib.suppress(Exception):
            owner = ctx.storage.get_trial(trial_id(ctx.study, ctx.storage, number))
            return owner.state == TrialState.RUNNING
        return False

    def _replay(self, slot: _Slot) -> None:
        """A resumed trial's scored epochs so far, logged to its MLflow run and reported to
        its Optuna trial at the steps they had (no pruning decision is taken again)."""
        ctx = self.ctx
        multi = len(self.seeds) > 1
        done = [(r.seed, r.history) for r in slot.finished]
        current = slot.runs[0].run
        step = 0
        curve = {}
        for seed, history in [*done, (current.seed, current.history)]:
            for row in history:
                ctx.tracker.log_metrics(
                    slot.run_id, epoch_metrics(seed, multi, row), int(row["epoch"])
                )
                value = float(row.get(ctx.metric, math.nan))
                if ctx.multi_objective:
                    curve[str(step)] = value if math.isfinite(value) else None
                else:
                    slot.trial.report(value, step)
                step += 1
        if curve:
            slot.trial.set_user_attr(records.CURVE, curve)
        if step != slot.step:
            raise CheckpointError(
                f"checkpoint {slot.checkpoint} holds {step} scored steps, expected {slot.step}"
            )

    def _ended(self, trial: optuna.Trial, state: TrialState) -> None:
        """A trial has ended: its heartbeat stops, the display hears of it; after
        MAX_CONSECUTIVE_FAILURES failures in a row, `_GiveUp`."""
        ctx = self.ctx
        ended = trial_id(ctx.study, ctx.storage, trial.number)
        self.beats.remove(ended)
        if self.on_trial_end is not None:
            self.on_trial_end(ctx.study, ctx.storage.get_trial(ended))
        self.failures = self.failures + 1 if state == TrialState.FAIL else 0
        if self.failures >= MAX_CONSECUTIVE_FAILURES:
            ctx.log(f"worker {worker_id()}: {self.failures} trials failed in a row; stopping")
            raise _GiveUp(f"{self.failures} trials failed in a row")

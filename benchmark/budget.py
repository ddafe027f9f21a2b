"""A study's trials in the shared storage: the budget rule, asking under a local lock,
heartbeats, and failing and re-queueing the trials of workers that died."""

from __future__ import annotations

import contextlib
import fcntl
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from benchmark import records
from benchmark.spec import WorkerSpec, worker_id

__all__ = [
    "COUNTED_STATES",
    "FINISHED_STATES",
    "Heartbeats",
    "acquire_trial",
    "ask_lock",
    "budget_counts",
    "fail_and_retry",
    "fail_stale",
    "room_left",
    "trial_id",
    "wait_for_running",
]

FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
COUNTED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


@contextlib.contextmanager
def ask_lock(path: str) -> Iterator[None]:
    """Exclusive lock between local processes (released by the OS if the holder dies)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def budget_counts(trials: Sequence[FrozenTrial]) -> dict[str, int]:
    """Trials per state name (COMPLETE, PRUNED, RUNNING, WAITING, FAIL)."""
    counts = {s.name: 0 for s in TrialState}
    for t in trials:
        counts[t.state.name] += 1
    return counts


def known_params(trial: FrozenTrial) -> dict[str, Any]:
    """Params fixed at enqueue time plus those already suggested."""
    return {**trial.user_attrs.get(records.FIXED, {}), **trial.params}


def room_left(trials: Sequence[FrozenTrial], spec: WorkerSpec, *, running: bool = True) -> bool:
    """The budget rule: whether the study wants another trial. True when a retry is queued,
    or complete + pruned (+ running, if `running`) trials are fewer than the budget, and the
    deadline has not passed.

    A worker about to ask counts running trials (they will finish); the launcher, deciding
    whether to replace a dead worker, does not (the dead worker's trial is to be retried).
    """
    if spec.deadline is not None and time.time() >= spec.deadline:
        return False
    counts = budget_counts(trials)
    if counts["WAITING"]:
        return True
    taken = counts["COMPLETE"] + counts["PRUNED"] + (counts["RUNNING"] if running else 0)
    return taken < spec.trials


def acquire_trial(study: optuna.Study, spec: WorkerSpec, space: Any) -> optuna.Trial | None:
    """The next trial for this worker, or None when the budget is used up or time is over.

    Under the local ask lock: count complete + pruned + running trials against `spec.trials`;
    when there is room, enqueue a ticket (with the space's balancing params, e.g. compare's
    variant) and ask, which pops the oldest waiting trial (a ticket or a retry).
    """
    with ask_lock(spec.lock_path):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # no-op without RDB heartbeat
        trials = study.get_trials(deepcopy=False)
        if not room_left(trials, spec):
            return None
        if not any(t.state == TrialState.WAITING for t in trials):
            live = [known_params(t) for t in trials if t.state in COUNTED_STATES]
            fixed = space.next_fixed(live)
            study.enqueue_trial(
                fixed, user_attrs={records.FIXED: fixed, records.WORKER: worker_id()}
            )
        with warnings.catch_warnings():
            # RDB heartbeats are recorded by this module's own thread (see Heartbeats)
            warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
            trial = study.ask()
        trial.set_user_attr(records.WORKER, worker_id())
        return trial


def fail_and_retry(
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    trial_number: int,
    reason: str,
    *,
    retry: bool,
    max_retry: int = 2,
) -> int | None:
    """Fail a RUNNING trial whose worker is gone and (if `retry`) enqueue it again.

    Uses the same retry as the RDB heartbeat (RetryHeartbeatStaleTrialCallback): a WAITING
    copy with the same params, its system attrs naming the failed trial. Returns the failed
    trial's number, or None if another process already finished or failed it.
    """
    failed_id = trial_id(study, storage, trial_number)
    try:
        storage.set_trial_user_attr(failed_id, "reason", reason)
        if not storage.set_trial_state_values(failed_id, state=TrialState.FAIL):
            return None
    except optuna.exceptions.UpdateFinishedTrialError:
        return None
    if retry:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            RetryHeartbeatStaleTrialCallback(max_retry=max_retry)(
                study, storage.get_trial(failed_id)
            )
    return trial_number


def trial_id(study: optuna.Study, storage: Any, number: int) -> int:
    study_id = storage.get_study_id_from_name(study.study_name)
    return storage.get_trial_id_from_study_id_trial_number(study_id, number)


# -- running one trial --------------------------------------------------------------------


class Heartbeats:
    """RDB heartbeats of a worker's running trials, recorded from one thread (a no-op for
    storages without heartbeats), so a worker that dies has its trials failed and re-queued
    by whoever notices the stale heartbeat."""

    def __init__(self, storage: Any) -> None:
        self.storage = storage
        self.interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
        self.ids: set[int] = set()
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None
        if self.interval is not None:
            self.thread = threading.Thread(target=self._run, name="heartbeats", daemon=True)
            self.thread.start()

    def _beat(self, trial_id: int) -> None:
        with contextlib.suppress(Exception):
            self.storage.record_heartbeat(trial_id)

    def _run(self) -> None:
        while not self.stopped.wait(self.interval):
            with self.lock:
                ids = list(self.ids)
            for trial_id in ids:
                self._beat(trial_id)

    def add(self, trial_id: int) -> None:
        """Beat for `trial_id` now and every interval until `remove`."""
        if self.interval is None:
            return
        self._beat(trial_id)
        with self.lock:
            self.ids.add(trial_id)

    def remove(self, trial_id: int) -> None:
        with self.lock:
            self.ids.discard(trial_id)

    def close(self) -> None:
        self.stopped.set()
        if self.thread is not None:
            self.thread.join()


def fail_stale(study: optuna.Study) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # no-op without RDB heartbeat


def wait_for_running(study: optuna.Study, storage: Any, spec: WorkerSpec) -> bool:
    """With the budget used up, wait while other workers' trials run (RDB heartbeat only).

    A running trial either finishes or, when its worker (on any machine) went silent, is
    failed and re-queued once its heartbeat is stale; True then: this worker should take it.
    Without this, a study whose last trial died on another machine would end short of its
    budget, every worker having counted that trial as running.
    """
    interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
    if interval is None:
        return False
    while spec.deadline is None or time.time() < spec.deadline:
        fail_stale(study)
        states = [t.state for t in study.get_trials(deepcopy=False)]
        if TrialState.WAITING in states:
            return True
        if TrialState.RUNNING not in states:
            return False
        time.sleep(min(interval, 1.0))  # a finished last trial should not keep workers long
    return False

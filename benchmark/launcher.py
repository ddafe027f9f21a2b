"""Start one worker process per GPU (or CPU slot), watch them, and replace the ones that die.

The launcher is what makes a journal-file study fault tolerant: it owns its workers, so when
one dies (SIGKILL, OOM) it fails that worker's running trial, re-queues it with the same
params (user attr ``retried_from`` on the retry) and starts a replacement. RDB studies get
the same from the launcher for local workers, and from Optuna's heartbeat for workers started
elsewhere. Ctrl-C is forwarded once to every worker, which records its trial FAIL and its
MLflow run KILLED before exiting.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from benchmark.worker import WorkerSpec, fail_and_retry, worker_id

__all__ = ["Slot", "cpu_slots", "gpu_slots", "launch", "recover_orphans", "pid_alive"]

REPO_ROOT = Path(__file__).resolve().parents[1]
SHUTDOWN_GRACE_SECONDS = 60.0
"""How long workers get to record their trials after Ctrl-C before they are killed."""


@dataclass(frozen=True)
class Slot:
    """Where one worker runs: its label, device, torch threads and extra environment."""

    label: str
    device: str
    threads: int | None = None
    env: tuple[tuple[str, str], ...] = ()


def gpu_slots(gpus: Sequence[int], per_gpu: int = 1) -> list[Slot]:
    """`per_gpu` workers per GPU, each seeing only its GPU (CUDA_VISIBLE_DEVICES)."""
    return [
        Slot(
            f"gpu{g}" + (f".{k}" if per_gpu > 1 else ""),
            "cuda",
            None,
            (("CUDA_VISIBLE_DEVICES", str(g)),),
        )
        for g in gpus
        for k in range(per_gpu)
    ]


def cpu_slots(workers: int) -> list[Slot]:
    """`workers` CPU workers sharing the cores (each gets cores // workers torch threads)."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    env = (("OMP_NUM_THREADS", str(threads)), ("CUDA_VISIBLE_DEVICES", ""))
    return [Slot(f"cpu{k}", "cpu", threads, env) for k in range(workers)]


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owned_running(study: optuna.Study, owner: str) -> list[Any]:
    return [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if t.user_attrs.get("worker") == owner
    ]


def _end_mlflow_run(tracker: Any, trial: Any, outcome: str, reason: str) -> None:
    run_id = trial.user_attrs.get("mlflow_run_id")
    if tracker is not None and run_id:
        with contextlib.suppress(Exception):
            tracker.end_trial(run_id, outcome, reason)


def handle_dead_worker(
    study: optuna.Study,
    storage: Any,
    owner: str,
    reason: str,
    *,
    tracker: Any = None,
    retry: bool = True,
    max_retry: int = 2,
) -> list[int]:
    """Fail (and re-queue) the RUNNING trials of a dead worker; returns their numbers."""
    done = []
    for trial in _owned_running(study, owner):
        number = fail_and_retry(
            study, storage, trial.number, reason, retry=retry, max_retry=max_retry
        )
        if number is not None:
            _end_mlflow_run(tracker, trial, "FAIL" if retry else "INTERRUPTED", reason)
            done.append(number)
    return done


def recover_orphans(study: optuna.Study, storage: Any, *, tracker: Any = None) -> list[int]:
    """Fail and re-queue RUNNING trials left by workers of this machine that no longer exist
    (e.g. the whole study was killed); returns the trials' numbers."""
    host = worker_id().rsplit(":", 1)[0]
    recovered = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get("worker", "")
        owner_host, _, pid = owner.rpartition(":")
        if owner_host == host and pid.isdigit() and not pid_alive(int(pid)):
            recovered += handle_dead_worker(
                study, storage, owner, f"worker {owner} is gone", tracker=tracker
            )
    return recovered


def _describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exited with code {code}"


@dataclass
class _Worker:
    slot: Slot
    proc: subprocess.Popen
    pidfd: int | None

    @property
    def owner(self) -> str:
        return worker_id(self.proc.pid)


def _start(spec: WorkerSpec, slot: Slot) -> _Worker:
    worker_spec = dataclasses.replace(spec, device=slot.device, threads=slot.threads)
    env = {**os.environ, **dict(slot.env)}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmark.worker", worker_spec.to_json()],
        env=env,
        start_new_session=True,  # Ctrl-C reaches the launcher, which forwards it once
    )
    pidfd = None
    with contextlib.suppress(AttributeError, OSError):
        pidfd = os.pidfd_open(proc.pid)
    return _Worker(slot, proc, pidfd)


def _wait_any(workers: Sequence[_Worker], timeout: float) -> list[_Worker]:
    """Workers that exited within `timeout` seconds (reaped)."""
    fds = [w.pidfd for w in workers if w.pidfd is not None]
    if len(fds) == len(workers) and fds:
        select.select(fds, [], [], timeout)
    else:  # no pidfd support: poll
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and all(w.proc.poll() is None for w in workers):
            with contextlib.suppress(subprocess.TimeoutExpired):
                workers[0].proc.wait(timeout=min(0.2, timeout))
    exited = [w for w in workers if w.proc.poll() is not None]
    for w in exited:
        if w.pidfd is not None:
            os.close(w.pidfd)
    return exited


def launch(
    spec: WorkerSpec,
    slots: Sequence[Slot],
    *,
    study: optuna.Study,
    storage: Any,
    tracker: Any = None,
    on_tick: Callable[[], None] | None = None,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
    tick_seconds: float = 2.0,
) -> int:
    """Run workers in `slots` until the budget is used; returns an exit code (130: Ctrl-C).

    A worker that dies has its running trial failed and re-queued and is replaced on the
    same slot (at most `2 * len(slots)` replacements, so a crash loop ends).
    """
    workers = [_start(spec, s) for s in slots]
    replacements = 0
    worst = 0
    try:
        while workers:
            for w in _wait_any(workers, tick_seconds):
                workers.remove(w)
                code = w.proc.returncode
                if code == 0:
                    continue
                reason = f"worker {w.owner} ({w.slot.label}) {_describe_exit(code)}"
                failed = handle_dead_worker(
                    study, storage, w.owner, reason, tracker=tracker, max_retry=spec.max_retry
                )
                if failed:
                    log(f"{reason}; trial(s) {failed} failed and re-queued")
                else:
                    log(reason)
                if code == 2:  # bad configuration: replacing it would fail the same way
                    worst = max(worst, 2)
                    continue
                if _budget_left(study, spec) and replacements < 2 * len(slots):
                    replacements += 1
                    workers.append(_start(spec, w.slot))
                    log(f"started replacement worker {workers[-1].owner} on {w.slot.label}")
                else:
                    worst = max(worst, 1)
            if on_tick is not None:
                on_tick()
    except KeyboardInterrupt:
        _shutdown(workers, study, storage, tracker, log)
        return 130
    return worst


def _budget_left(study: optuna.Study, spec: WorkerSpec) -> bool:
    if spec.deadline is not None and time.time() >= spec.deadline:
        return False
    states = [t.state for t in study.get_trials(deepcopy=False)]
    if TrialState.WAITING in states:
        return True
    return sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states) < spec.trials


def _shutdown(
    workers: list[_Worker], study: optuna.Study, storage: Any, tracker: Any, log: Callable
) -> None:
    """Forward one SIGINT, wait for the workers to record their trials, kill stragglers."""
    with contextlib.suppress(ValueError):  # ValueError: not the main thread
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    log(f"interrupted: stopping {len(workers)} worker(s)...")
    for w in workers:
        with contextlib.suppress(ProcessLookupError):
            w.proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
    for w in workers:
        try:
            w.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            w.proc.kill()
            w.proc.wait()
        handle_dead_worker(
            study, storage, w.owner, "interrupted (Ctrl-C)", tracker=tracker, retry=False
        )
        if w.pidfd is not None:
            with contextlib.suppress(OSError):
                os.close(w.pidfd)

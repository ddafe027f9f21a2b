"""Start one worker process per GPU (or CPU slot), watch them, and replace the ones that die.

Workers are forked from a multiprocessing fork server that has already imported torch, POT
and MLflow, so starting one (or a replacement) costs milliseconds, not ten seconds. The
launcher is what makes a journal-file study fault tolerant: it owns its workers, so when
one dies (SIGKILL, OOM) it fails that worker's running trial, re-queues it with the same
params (user attr ``retried_from`` on the retry) and starts a replacement. RDB studies get
the same from the launcher for local workers, and from Optuna's heartbeat for workers started
elsewhere. Ctrl-C is forwarded once to every worker, which records its trial FAIL and its
MLflow run KILLED before exiting; SIGTERM and SIGHUP stop the study the same way.

Workers never outlive their launcher: each watches the launcher (`signals.watch_launcher`) and,
when it dies (SIGKILL, OOM), records its trial FAIL and exits; the fork server exits by itself
then. The study's MLflow parent run, which nobody could end, is closed by the next invocation
(`close_stale_parent`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from benchmark import records
from benchmark.budget import fail_and_retry, room_left
from benchmark.signals import (
    STOP_SIGNALS,
    Interrupted,
    describe_interrupt,
    interrupt_exit_code,
    signals_as_interrupt,
)
from benchmark.spec import WorkerSpec, pid_alive, worker_id
from benchmark.worker import process_main

__all__ = [
    "Slot",
    "close_stale_parent",
    "cpu_slots",
    "gpu_slots",
    "handle_dead_worker",
    "launch",
    "mark_invocation",
    "recover_orphans",
    "visible_device",
    "warm_up",
]

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
    """`per_gpu` workers per GPU, each seeing only its GPU (CUDA_VISIBLE_DEVICES).

    `gpus` index the GPUs this process sees: when CUDA_VISIBLE_DEVICES is already set (a job
    scheduler such as SLURM, a container that claimed its GPUs), index g is its g-th entry,
    not the machine's GPU g.
    """
    return [
        Slot(
            f"gpu{g}" + (f".{k}" if per_gpu > 1 else ""),
            "cuda",
            None,
            (("CUDA_VISIBLE_DEVICES", visible_device(g)),),
        )
        for g in gpus
        for k in range(per_gpu)
    ]


def visible_device(index: int) -> str:
    """The CUDA_VISIBLE_DEVICES value that shows a child process this process's GPU `index`."""
    visible = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")]
    visible = [d for d in visible if d]
    return visible[index] if index < len(visible) else str(index)


def cpu_slots(workers: int) -> list[Slot]:
    """`workers` CPU workers sharing the cores (each gets cores // workers torch threads)."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    env = (("OMP_NUM_THREADS", str(threads)), ("CUDA_VISIBLE_DEVICES", ""))
    return [Slot(f"cpu{k}", "cpu", threads, env) for k in range(workers)]


def _owned_running(study: optuna.Study, owner: str) -> list[Any]:
    return [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if t.user_attrs.get(records.WORKER) == owner
    ]


def _end_mlflow_run(tracker: Any, trial: Any, outcome: str, reason: str) -> None:
    run_id = trial.user_attrs.get(records.MLFLOW_RUN_ID)
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
        owner = trial.user_attrs.get(records.WORKER, "")
        owner_host, _, pid = owner.rpartition(":")
        if owner_host == host and pid.isdigit() and not pid_alive(int(pid)):
            recovered += handle_dead_worker(
                study, storage, owner, f"worker {owner} is gone", tracker=tracker
            )
    return recovered


INVOCATION_TAG = "invocation/"
"""Tag prefix on a study's MLflow parent run: one ``invocation/<host>/<pid>`` tag per
`benchmark.study` process that ran the study (value 'running', 'ended' or 'gone'), so a later
one can tell a parent run left RUNNING by a dead process from one still in use."""


def _invocation_tag(pid: int | None = None) -> str:
    host, _, own = worker_id(pid).rpartition(":")
    return f"{INVOCATION_TAG}{host}/{own}"


def mark_invocation(tracker: Any, parent_run_id: str, state: str) -> None:
    """Record this process's use of the parent run: 'running' from the start, then 'ended'."""
    with contextlib.suppress(Exception):  # bookkeeping: never a reason to stop a study
        tracker.client.set_tag(parent_run_id, _invocation_tag(), state)


def close_stale_parent(tracker: Any, parent_run_id: str | None) -> str | None:
    """End a parent run left RUNNING by invocations that are all gone; the message saying so.

    Stale means: RUNNING, and every invocation tagged 'running' on it is a process of this
    machine that no longer exists (a launcher killed with SIGKILL, a crashed machine
    rebooted). An invocation on another machine, or a parent run from before these tags,
    cannot be judged from here and is left alone. The run is marked KILLED with a
    ``stale_reason`` tag; a resumed study then marks it RUNNING again.
    """
    if tracker is None or not parent_run_id:
        return None
    try:
        run = tracker.client.get_run(parent_run_id)
    except Exception:
        return None
    if run.info.status != "RUNNING":
        return None
    running = [
        key
        for key, value in run.data.tags.items()
        if key.startswith(INVOCATION_TAG) and value == "running"
    ]
    host = socket.gethostname()
    gone = []
    for key in running:
        owner_host, _, pid = key.removeprefix(INVOCATION_TAG).rpartition("/")
        if owner_host != host or not pid.isdigit() or pid_alive(int(pid)):
            return None
        gone.append(pid)
    if not gone:
        return None
    reason = f"left RUNNING by process(es) {', '.join(gone)} on {host}, which are gone"
    for key in running:
        tracker.client.set_tag(parent_run_id, key, "gone")
    tracker.end_study(parent_run_id, "KILLED", stale_reason=reason)
    return f"closed the study's MLflow parent run {parent_run_id} as KILLED: {reason}"


def _describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exited with code {code}"


PRELOAD = (
    "benchmark.worker",
    "benchmark.runner",
    "benchmark.artifacts",
    "benchmark.tracking",
    "studies",
    "mlflow",
)
"""Imported once by the fork server, so a worker (or a replacement) starts in milliseconds
instead of re-importing torch, POT and MLflow. Nothing is initialised there: no CUDA context,
no database connection; each worker opens its own."""


def _context() -> Any:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(PRELOAD))
    return ctx


def warm_up() -> None:
    """Start the fork server now, so its imports overlap the launcher's own set-up."""
    _context()
    from multiprocessing import forkserver

    forkserver.ensure_running()


@dataclass
class _Worker:
    slot: Slot
    proc: Any  # multiprocessing.Process

    @property
    def owner(self) -> str:
        return worker_id(self.proc.pid)


def _start(spec: WorkerSpec, slot: Slot, index: int = 0) -> _Worker:
    """Start a worker on `slot`; the `index`-th worker started gets sampler seed + index."""
    seed = None if spec.sampler_seed is None else spec.sampler_seed + index
    worker_spec = dataclasses.replace(
        spec, device=slot.device, threads=slot.threads, sampler_seed=seed
    )
    env = {**os.environ, **dict(slot.env)}
    proc = _context().Process(
        target=process_main,
        args=(worker_spec.to_json(), env, os.getcwd()),
        name=f"mixbench-{slot.label}",
    )
    proc.start()
    return _Worker(slot, proc)


def _wait_any(workers: Sequence[_Worker], timeout: float) -> list[_Worker]:
    """Workers that exited within `timeout` seconds (joined)."""
    multiprocessing.connection.wait([w.proc.sentinel for w in workers], timeout)
    exited = [w for w in workers if w.proc.exitcode is not None]
    for w in exited:
        w.proc.join()
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
    """Run workers in `slots` until the budget is used; returns an exit code (130: Ctrl-C,
    143: SIGTERM, 129: SIGHUP, after every worker recorded its trial).

    A worker that dies has its running trial failed and re-queued and is replaced on the
    same slot (at most `2 * len(slots)` replacements, so a crash loop ends).
    """
    workers = [_start(spec, s, k) for k, s in enumerate(slots)]
    replacements = 0
    worst = 0
    with signals_as_interrupt():  # SIGTERM, SIGHUP: stop as on Ctrl-C
        try:
            while workers:
                for w in _wait_any(workers, tick_seconds):
                    workers.remove(w)
                    code = w.proc.exitcode
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
                    wanted = room_left(study.get_trials(deepcopy=False), spec, running=False)
                    if wanted and replacements < 2 * len(slots):
                        replacements += 1
                        workers.append(_start(spec, w.slot, len(slots) + replacements))
                        log(f"started replacement worker {workers[-1].owner} on {w.slot.label}")
                    else:
                        worst = max(worst, 1)
                if on_tick is not None:
                    on_tick()
        except KeyboardInterrupt as err:
            _shutdown(workers, study, storage, tracker, log, err)
            return interrupt_exit_code(err)
    return worst


def _shutdown(
    workers: list[_Worker],
    study: optuna.Study,
    storage: Any,
    tracker: Any,
    log: Callable,
    err: KeyboardInterrupt,
) -> None:
    """Forward the stop signal (SIGINT, SIGTERM or SIGHUP) once, wait for the workers to
    record their trials, kill stragglers."""
    with contextlib.suppress(ValueError):  # ValueError: not the main thread
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
    how = describe_interrupt(err)
    forward = err.signum if isinstance(err, Interrupted) else signal.SIGINT
    log(f"interrupted ({how}): stopping {len(workers)} worker(s)...")
    for w in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(w.proc.pid, forward)
    deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
    for w in workers:
        w.proc.join(timeout=max(0.1, deadline - time.monotonic()))
        if w.proc.exitcode is None:
            w.proc.kill()
            w.proc.join()
        handle_dead_worker(
            study, storage, w.owner, f"interrupted ({how})", tracker=tracker, retry=False
        )

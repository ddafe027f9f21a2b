"""A worker's MLflow logging and artifact files, done by a background process, in order.

The training thread hands each call (metrics of an epoch, a finished seed's arrays for its
files, the end of a trial run) to `QueuedTracker`, which puts it on a bounded queue and
returns; the training thread blocks only when the queue is full. A writer process (spawned,
so it shares no locks or threads with the worker; matplotlib on its Agg canvas) takes the
calls in order, writes the files, uploads them and logs the metrics, one ``log_batch`` per
run for all the metrics it has in hand.

Guarantees:
- `QueuedTracker.close` (the worker's last step, also after Ctrl-C) returns once every call
  is done; calls the writer could not do (it died) are done by the worker itself then.
- A trial run's ``artifacts`` tag lists the files uploaded, set after each upload.
- The writer holds a lock file, `<lock_dir>/writer-<pid>.lock`, while it lives. A worker that
  is SIGKILLed leaves its writer to finish what it received (it stops when the worker's end
  of the pipe closes); `wait_for_writers` waits for such writers, and `account_artifacts`
  then tags every trial run with what was written and what is missing.

Trial runs are created by one more process, the run creator (`creator-<pid>.lock`), at
once and in the order asked: `QueuedTracker.start_trial` returns a placeholder id, and the
worker resolves it (once the trial's members are built) before the trial trains and records
the run's id in the trial. A placeholder resolved while the creator is still starting is
made by the worker and withdrawn (the creator skips it). When the worker is SIGKILLed the
creator drops the requests still waiting; a run it was making then belongs to a trial that
ended without it, and the study's closing sweep ends such runs by trial number.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import logging
import multiprocessing
import os
import queue
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmark.artifacts import payload_files, write_payload
from benchmark.perf.machine import usable_cpus
from benchmark.spec import pid_alive
from benchmark.tracking import ARTIFACTS_TAG, MISSING_TAG, TRIAL_STATUS, connect
from benchmark.urls import mask_url

__all__ = [
    "QUEUE_SIZE",
    "QueuedTracker",
    "Writers",
    "default_writers",
    "account_artifacts",
    "wait_for_writers",
    "writer_lock_dir",
]

QUEUE_SIZE = 64
"""Calls waiting for the writer before the training thread blocks (a finished seed's arrays
are about 0.4 MB for MNIST, so the queue holds at most a few tens of MB)."""
WRITER_START_SECONDS = 60.0
"""How long `wait_for_writers` waits for a live writer process that has not locked its file."""
WITHDRAW = "withdraw"
"""(WITHDRAW, placeholder): the worker made that run itself; the creator skips it."""
READY = ("ready", None, None)
"""The run creator's first message: connected, taking requests."""
PLACEHOLDER = "pending-"
"""How `QueuedTracker.start_trial`'s placeholder run ids begin."""
BATCH = 256
"""Calls the writer takes at once (their metrics go out in one log_batch per run)."""


def writer_lock_dir(lock_path: str | Path) -> Path:
    """Where the writers of a study's workers keep their lock files (beside its ask lock)."""
    return Path(lock_path).parent / "writers"


# -- doing the calls (in the writer, or in the worker when the writer died) ---------------


def _execute(tracker: Any, jobs: Sequence[tuple], written: dict[str, set[str]]) -> list[str]:
    """Do `jobs` ((id, kind, run_id, args) tuples): all metrics first, one log_batch per run,
    then the rest in order. Returns error messages (a failed call does not stop the rest)."""

    errors: list[str] = []
    rows: dict[str, list[tuple[str, float, int, int]]] = defaultdict(list)
    for _, kind, run_id, args in jobs:
        if kind == "metrics":
            rows[run_id] += args
    for run_id, items in rows.items():
        try:
            tracker.log_metric_rows(run_id, items)
        except Exception as err:
            errors.append(f"metrics of run {run_id}: {type(err).__name__}: {err}")
    for _, kind, run_id, args in jobs:
        try:
            if kind == "files":
                folder, payload = args
                with tempfile.TemporaryDirectory(prefix="mixbench-writer-") as tmp:
                    paths = write_payload(payload, tmp)
                    tracker.log_artifacts(run_id, paths, folder)
                names = {f"{folder}/{p.name}" if folder else p.name for p in paths.values()}
                if run_id not in written:  # e.g. other seeds' files, uploaded by someone else
                    tags = tracker.client.get_run(run_id).data.tags
                    written[run_id] = set(tags.get(ARTIFACTS_TAG, "").split()) - {"none"}
                written[run_id] |= names
                tracker.set_tags(run_id, {ARTIFACTS_TAG: " ".join(sorted(written[run_id]))})
            elif kind == "end":
                tracker.end_trial(run_id, *args)
            elif kind == "tags":
                tracker.set_tags(run_id, args)
            elif kind == "params":
                tracker.log_params(run_id, args)
        except Exception as err:
            errors.append(f"{kind} of run {run_id}: {type(err).__name__}: {err}")
    return errors


def _writer_main(jobs: Any, acks: Any, lock_dir: str | None, role: str = "writer") -> None:
    """The writer process (or the run creator, `role` "creator"): import what it needs,
    learn the tracking URI (its first message), then take calls until the worker says stop
    or goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the worker, which drains us
    lock = None
    if lock_dir is not None:
        Path(lock_dir).mkdir(parents=True, exist_ok=True)
        lock = open(Path(lock_dir) / f"{role}-{os.getpid()}.lock", "a")  # noqa: SIM115
        fcntl.flock(lock, fcntl.LOCK_EX)  # released by the OS when this process ends
    try:
        _preload(figures=role != "creator")
        tracking_uri = jobs.recv()  # (an unused writer is terminated instead)
    except (EOFError, OSError):
        tracking_uri = None
    if tracking_uri is not None:
        serve = _serve_creations if role == "creator" else _serve
        # "Creating initial MLflow database tables..." (INFO) is the study's to tell, not ours
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
        try:
            tracker = connect(tracking_uri)
        except Exception:  # e.g. a bad URI: the worker reports it when it connects itself,
            tracker = None  # and does (or makes) these calls itself
        if tracker is not None:
            serve(tracker, jobs, acks)
    if lock is not None:
        with contextlib.suppress(OSError):
            os.unlink(lock.name)
        lock.close()
    # Every call is done and committed: skip the interpreter's teardown of MLflow, SQLAlchemy
    # and matplotlib (about a second, which the worker's last step would wait for).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _preload(figures: bool = True) -> None:
    """The imports of logging (and drawing, `figures`: a few CPU-seconds), done while the
    worker starts up rather than while it trains."""
    with contextlib.suppress(ImportError):  # only a head start: connect() imports them too
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
        from mlflow import MlflowClient  # noqa: F401
    if not figures:
        return
    os.environ["MPLBACKEND"] = "Agg"
    import matplotlib  # only in the writer process, which draws the figures

    matplotlib.use("Agg")
    from benchmark.reporting import figures as _  # noqa: F401


def _serve(tracker: Any, jobs: Any, acks: Any) -> None:
    written: dict[str, set[str]] = defaultdict(set)
    stop = False
    while not stop:
        batch: list = []
        try:
            batch.append(jobs.recv())
            while batch[-1] is not None and len(batch) < BATCH and jobs.poll():
                batch.append(jobs.recv())
        except (EOFError, OSError):  # the worker is gone (SIGKILL), maybe mid-message:
            stop = True  # what arrived whole is done below
        if batch and batch[-1] is None:
            batch.pop()
            stop = True
        errors = _execute(tracker, batch, written) if batch else []
        for message in errors:
            print(f"artifact writer: {message}", file=sys.stderr, flush=True)
        with contextlib.suppress(OSError):
            acks.send([job[0] for job in batch])


def _serve_creations(tracker: Any, jobs: Any, replies: Any) -> None:
    """The run creator: say it is ready, then create each trial run asked for, at once, and
    answer with its id (or the error) in the order asked; skip those the worker withdrew
    (it made them itself while this process was starting), reading every message waiting
    before each creation."""
    with contextlib.suppress(OSError):
        replies.send(READY)
    asked: collections.deque = collections.deque()
    withdrawn: set[str] = set()
    stop = False
    while asked or not stop:
        try:
            while not stop and (not asked or jobs.poll()):
                message = jobs.recv()
                if message is None:
                    stop = True
                elif message[0] == WITHDRAW:
                    withdrawn.add(message[1])
                else:
                    asked.append(message)
        except (EOFError, OSError):  # the worker is gone: its trials need no runs now
            return
        if not asked:
            continue
        placeholder, parent_run_id, run = asked.popleft()
        if placeholder in withdrawn:
            continue
        try:
            reply = (placeholder, tracker.start_trial(parent_run_id, params={}, **run), None)
        except Exception as err:
            reply = (placeholder, None, f"{type(err).__name__}: {err}")
        with contextlib.suppress(OSError):
            replies.send(reply)


# -- the worker's side ----------------------------------------------------------------------


class _Channel:
    """One writer process, the pipes to it and (once bound to a tracking URI) the thread
    feeding it from a bounded queue."""

    def __init__(self, lock_dir: Path | None, role: str = "writer") -> None:
        context = multiprocessing.get_context("spawn")
        jobs_out, self.jobs = context.Pipe(duplex=False)
        self.acks, acks_in = context.Pipe(duplex=False)
        self.bound = False
        self.lock_dir = lock_dir
        self.role = role
        self.proc = context.Process(
            target=_writer_main,
            args=(jobs_out, acks_in, str(lock_dir) if lock_dir else None, role),
            name=f"mixbench-{role}",
            daemon=False,  # a daemon is killed when the worker ends; this one finishes first
        )
        mask = threading.current_thread() is threading.main_thread()
        if mask:  # the writer must not see a terminal's Ctrl-C before it ignores SIGINT
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            self.proc.start()
        finally:
            if mask:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        jobs_out.close()
        acks_in.close()
        if lock_dir is not None:  # visible to wait_for_writers before the writer has started
            lock_dir.mkdir(parents=True, exist_ok=True)
            (lock_dir / f"{role}-{self.proc.pid}.lock").touch()

    def bind(self, tracking_uri: str, size: int, on_done: Any) -> None:
        """Give the writer its tracking URI and start feeding it calls, `size` at most
        waiting; `on_done(ids)` hears which calls it has done."""
        self.queue: queue.Queue = queue.Queue(maxsize=size)
        self.on_done = on_done
        self.bound = True
        with contextlib.suppress(OSError):  # a dead writer: close() does its calls
            self.jobs.send(tracking_uri)
        self.feeder = threading.Thread(target=self._feed, name="writer-feed", daemon=True)
        self.acker = threading.Thread(target=self._ack, name="writer-acks", daemon=True)
        self.feeder.start()
        self.acker.start()

    def _feed(self) -> None:
        alive = True
        while True:
            job = self.queue.get()
            try:
                if alive:
                    self.jobs.send(job)
            except OSError:  # the writer died: its calls stay pending, close() does them
                alive = False
            finally:
                self.queue.task_done()
            if job is None:
                return

    def _ack(self) -> None:
        while True:
            try:
                done = self.acks.recv()
            except (EOFError, OSError):
                return
            self.on_done(done)

    def close(self) -> None:
        if self.bound:
            self.queue.put(None)
            self.feeder.join()
        else:  # it was given nothing to do: no need to wait for its imports to finish
            self.proc.terminate()
        self.proc.join()
        if not self.bound and self.lock_dir is not None:
            with contextlib.suppress(OSError):
                (self.lock_dir / f"{self.role}-{self.proc.pid}.lock").unlink()
        if self.bound:
            self.acker.join()
        self.jobs.close()
        self.acks.close()


class RunNotCreated(RuntimeError):
    """MLflow could not create a trial's run (the message is the store's error)."""


class _Creator:
    """The run creator process, as the worker sees it: `ask` for a trial run (returns at
    once), `answer` waits for it (or, while the creator is still starting, withdraws the
    request for the worker to make the run itself). A process of its own, so that the
    worker's training thread neither waits for the store nor shares its GIL with MLflow's
    client, and the writers' queued figures do not hold the run up."""

    def __init__(self, lock_dir: Path | None, tracking_uri: str | None = None) -> None:
        self.channel = _Channel(lock_dir, "creator")
        self.answers: dict[str, tuple[str | None, str | None]] = {}
        self.withdrawn: set[str] = set()
        self.duplicates: list[str] = []
        """Runs it made for withdrawn placeholders (deleted when the tracker closes)."""
        self.is_ready = False
        self.gone = False
        self.uri = tracking_uri
        if tracking_uri is not None:  # it connects while the worker starts up
            self._send(tracking_uri)

    @property
    def bound(self) -> bool:
        return self.channel.bound

    def bind(self, tracking_uri: str) -> None:
        if self.uri not in (None, tracking_uri):
            raise ValueError(
                f"the run creator was started for tracking URI {mask_url(self.uri)!r}, not "
                f"{mask_url(tracking_uri)!r}"
            )
        self.channel.bound = True
        if self.uri is None:
            self.uri = tracking_uri
            self._send(tracking_uri)

    def _send(self, message: Any) -> None:
        if not self.gone:
            try:
                self.channel.jobs.send(message)
            except OSError:  # it died: the worker creates the runs itself
                self.gone = True

    def ready(self) -> bool:
        """Whether it has connected to the store (asks nothing, waits for nothing)."""
        try:
            while not self.is_ready and not self.gone and self.channel.acks.poll():
                self._take(self.channel.acks.recv())
        except (EOFError, OSError):  # it died while starting
            self.gone = True
        return self.is_ready and not self.gone

    def ask(self, placeholder: str, parent_run_id: str, run: Mapping[str, Any]) -> None:
        self._send((placeholder, parent_run_id, dict(run)))

    def answer(self, placeholder: str, wait: bool) -> tuple[str | None, str | None] | None:
        """(run id, None) or (None, error) for a placeholder asked for, waiting for it if
        `wait` (the creator was ready when it was asked); None when it has not answered
        and must not be waited for (a creator that has just started makes its first runs
        slowly), or died: the caller makes the run itself and the placeholder is
        withdrawn."""
        try:
            while placeholder not in self.answers and not self.gone:
                if not wait and not self.channel.acks.poll():
                    break
                self._take(self.channel.acks.recv())
        except (EOFError, OSError):
            self.gone = True
        if placeholder in self.answers:
            return self.answers.pop(placeholder)
        self.withdrawn.add(placeholder)
        self._send((WITHDRAW, placeholder))
        return None

    def _take(self, reply: tuple) -> None:
        if reply == READY:
            self.is_ready = True
        elif reply[0] in self.withdrawn:  # made before the withdrawal reached the creator
            if reply[1] is not None:
                self.duplicates.append(reply[1])
        else:
            self.answers[reply[0]] = reply[1:]

    def close(self) -> None:
        if not self.channel.bound:
            self.channel.close()
            return
        self._send(None)
        with contextlib.suppress(EOFError, OSError):
            while True:  # answers no one waited for (e.g. for withdrawn placeholders)
                self._take(self.channel.acks.recv())
        self.channel.proc.join()
        self.channel.jobs.close()
        self.channel.acks.close()


class Writers:
    """Writer processes (and the run creator) started ahead of a worker's own start-up
    (opening the study, loading the data, connecting to MLflow), so that their imports and
    store connection (a few CPU-seconds) are done by the time training starts; a
    `QueuedTracker` binds them to its tracking URI. Use it as a context manager: writers no
    tracker took are stopped on exit."""

    def __init__(
        self,
        lock_dir: Path | None = None,
        count: int | None = None,
        tracking_uri: str | None = None,
    ) -> None:
        """`tracking_uri`, when known: the run creator connects to it at once (it must be
        ready when the first trials open); the writers learn it from the tracker."""
        self.lock_dir = lock_dir
        self.creator = _Creator(lock_dir, tracking_uri)  # first: it is waited for first
        self.channels = [_Channel(lock_dir) for _ in range(count or default_writers())]

    def close(self) -> None:
        """Stop the writers no tracker took (those a tracker took, its `close` stops)."""
        for channel in self.channels:
            if not channel.bound:
                channel.close()
        if not self.creator.bound:
            self.creator.close()

    def __enter__(self) -> Writers:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def default_writers() -> int:
    """Writer processes per worker: one per 4 usable CPUs, 2 to 4. Figures are drawn while
    the worker trains, but the last trials' files only once training is over, and the worker
    waits for them: two writers halve that wait where the CPUs are free by then (ring8, 16
    trials ending together on 2 CPUs: 4.4 s with one writer, 2.0 s with two)."""
    return max(2, min(4, usable_cpus() // 4))


class QueuedTracker:
    """A `benchmark.tracking.Tracker` whose logging calls go to background writers.

    `log_metrics`, `log_metric_rows`, `write_artifacts`, `set_tags`, `end_trial` and the
    params of `start_trial` return at once (blocking only while `size` calls wait for a
    writer); everything else is the tracker's own, done now. A run's calls all go to one
    writer, in order. `close` waits until every call is done.

    `start_trial` returns at once too: the run creator process creates the run (on a
    SQLite store shared with the writers that took 14 ms a trial on the training thread,
    half of it waiting for their commits), and a placeholder id stands for the run until
    `resolve` gives the real one.
    """

    def __init__(
        self,
        tracker: Any,
        *,
        lock_dir: Path | None = None,
        size: int = QUEUE_SIZE,
        writers: int | Writers | None = None,
    ) -> None:
        """`writers`: how many writer processes to start (default `default_writers()`), or
        `Writers` started earlier (their lock folder is then theirs)."""
        self._tracker = tracker
        self._pending: dict[int, tuple] = {}
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._next = 0
        self._closed = False
        if not isinstance(writers, Writers):
            writers = Writers(lock_dir, writers)
        if writers.creator.bound or any(c.bound for c in writers.channels):
            raise ValueError("these writers are bound to another QueuedTracker already")
        self._creator = writers.creator
        self._creator.bind(tracker.tracking_uri)
        self._channels = writers.channels
        for channel in self._channels:
            channel.bind(tracker.tracking_uri, max(1, size // len(self._channels)), self._done)
        self._route: dict[str, int] = {}
        self._asked: dict[str, tuple[str, dict[str, Any], dict[str, Any], bool]] = {}
        """Placeholders of `start_trial` not resolved yet: (parent run, run, params, whether
        the creator was ready when it was asked)."""
        self._resolved: dict[str, str] = {}
        self._failed: dict[str, str] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tracker, name)

    @property
    def pids(self) -> list[int]:
        """The writer processes' pids."""
        return [c.proc.pid for c in self._channels]  # type: ignore[misc]

    # -- calls that are queued -------------------------------------------------------------

    def _submit(self, kind: str, run_id: str, args: Any) -> None:
        if self._closed:
            raise RuntimeError("QueuedTracker is closed")
        run_id = self.resolve(run_id)
        with self._lock:
            job = (self._next, kind, run_id, args)
            self._next += 1
            self._pending[job[0]] = job
            # a run's calls go to one writer, in order; runs are dealt out in turn
            channel = self._route.setdefault(run_id, len(self._route) % len(self._channels))
        try:
            self._channels[channel].queue.put(job)  # blocks while the queue is full
        except BaseException:  # Ctrl-C while blocked: the call was not made
            with self._lock:
                self._pending.pop(job[0], None)
            raise

    def _done(self, ids: Sequence[int]) -> None:
        with self._lock:
            for job_id in ids:
                self._pending.pop(job_id, None)
            if not self._pending:
                self._idle.notify_all()

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int) -> None:
        """As Tracker.log_metrics (non-numeric values dropped), done by the writer."""
        now = int(time.time() * 1000)
        rows = [
            (str(key), float(value), now, int(step))
            for key, value in metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)
        ]
        if rows:
            self._submit("metrics", run_id, rows)

    def log_metric_rows(self, run_id: str, rows: Sequence[tuple[str, float, int, int]]) -> None:
        """As Tracker.log_metric_rows, done by the writer."""
        if rows:
            self._submit("metrics", run_id, [tuple(r) for r in rows])

    def write_artifacts(
        self, run_id: str, folder: str | None, payload: dict[str, Any]
    ) -> list[str]:
        """As Tracker.write_artifacts, done by the writer; returns the artifact paths it will
        write."""

        names = [f"{folder}/{n}" if folder else n for n in payload_files(payload)]
        self._submit("files", run_id, (folder, payload))
        return names

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        self._submit("tags", run_id, {str(k): str(v) for k, v in tags.items()})

    def start_trial(self, parent_run_id: str, *, params: Mapping[str, Any], **run: Any) -> str:
        """As Tracker.start_trial (`run`: its other arguments), but the run is created by the
        run creator process while the caller goes on (building the trial's members):
        returns a placeholder id, which every call of this tracker takes, and `resolve`
        gives the run's id. Its params are logged by the writer, before the run's later
        calls."""
        if self._closed:
            raise RuntimeError("QueuedTracker is closed")
        placeholder = f"{PLACEHOLDER}{uuid.uuid4().hex}"
        ready = self._creator.ready()
        self._asked[placeholder] = (parent_run_id, run, dict(params), ready)
        if self._creator.gone:  # it died: `resolve` makes the run here, now
            return self.resolve(placeholder)
        self._creator.ask(placeholder, parent_run_id, run)
        return placeholder

    def resolve(self, run_id: str) -> str:
        """The MLflow run id behind `run_id`: a placeholder from `start_trial` waits until
        its run is created (and raises RunNotCreated if it could not be); a run id is
        itself. Where the run creator was still starting when the run was asked for and
        has not answered yet (or died), the run is made here, now, and the creator told to
        skip it."""
        if run_id in self._resolved:
            return self._resolved[run_id]
        if run_id in self._failed:
            raise RunNotCreated(self._failed[run_id])
        if run_id not in self._asked:
            return run_id
        parent_run_id, run, params, ready = self._asked.pop(run_id)
        answer = self._creator.answer(run_id, wait=ready)
        if answer is None:  # the creator is still starting, or died: the run is made here
            created = self._tracker.start_trial(parent_run_id, params={}, **run)
        elif answer[1] is not None:
            self._failed[run_id] = answer[1]
            raise RunNotCreated(answer[1])
        else:
            created = answer[0]
        self._resolved[run_id] = created
        if params:  # queued before any later call of the run
            self._submit("params", created, params)
        return created

    def end_trial(self, run_id: str, outcome: str, reason: str | None = None) -> None:
        """As Tracker.end_trial, done by the writer after the run's earlier calls."""

        if outcome not in TRIAL_STATUS:
            raise ValueError(f"outcome={outcome!r}; valid: {', '.join(TRIAL_STATUS)}")
        self._submit("end", run_id, (outcome, reason))

    # -- the end -----------------------------------------------------------------------------

    def wait_done(self, timeout: float | None = None) -> bool:
        """Wait until every call made so far is done (the writers are idle then; for tests
        and drills); False if `timeout` seconds passed first (e.g. a writer died)."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._pending, timeout)

    def handed_over(self) -> None:
        """Wait until every call made so far is in a writer's pipe (not necessarily done)."""
        for channel in self._channels:
            channel.queue.join()

    @property
    def pending(self) -> int:
        """Calls not done yet."""
        with self._lock:
            return len(self._pending)

    def close(self, log: Any = None) -> list[str]:
        """Wait until every call is done (Ctrl-C is ignored meanwhile); returns the errors of
        the calls the worker had to do itself because a writer died ([] normally)."""
        if self._closed:
            return []
        with _sigint_ignored():  # every run asked for exists, its params queued
            for placeholder in list(self._asked):
                with contextlib.suppress(Exception):  # RunNotCreated: the trial recorded it
                    self.resolve(placeholder)
            self._creator.close()
            for run_id in self._creator.duplicates:  # a withdrawn run made all the same
                with contextlib.suppress(Exception):
                    self._tracker.client.delete_run(run_id)
        self._closed = True
        waiting = self.pending
        if log is not None and waiting > QUEUE_SIZE // 4:
            log(f"writing {waiting} queued MLflow call(s) and artifact(s)...")
        with _sigint_ignored():
            for channel in self._channels:
                channel.close()
            with self._lock:
                left = sorted(self._pending.values())
                self._pending.clear()
            errors = []
            if left:  # a writer died before doing them
                errors = _execute(self._tracker, left, defaultdict(set))
                if log is not None:
                    codes = [c.proc.exitcode for c in self._channels]
                    log(
                        f"artifact writer(s) exited with code(s) {codes}; the worker did the "
                        f"{len(left)} call(s) they left"
                    )
        return errors


@contextlib.contextmanager
def _sigint_ignored() -> Any:
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


# -- after the workers: writers left behind, and the accounting ---------------------------


def wait_for_writers(lock_dir: Path) -> list[int]:
    """Wait until every writer (and run creator) with a lock file in `lock_dir` has ended
    (e.g. the writer of a worker that was SIGKILLed, finishing what it had received);
    returns the pids of those still alive when it looked."""
    waited = []
    folder = Path(lock_dir)
    for path in [*sorted(folder.glob("writer-*.lock")), *sorted(folder.glob("creator-*.lock"))]:
        pid = int(path.stem.split("-", 1)[1])
        unlocked_since = None
        while pid_alive(pid):
            waited.append(pid)
            with open(path, "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)  # blocks while the writer holds it
                fcntl.flock(handle, fcntl.LOCK_UN)
            if not pid_alive(pid):
                break
            # alive but not holding its lock: still starting, or the pid is another
            # process's now (the writer was killed itself); give up on it after a while
            unlocked_since = unlocked_since or time.monotonic()
            if time.monotonic() - unlocked_since > WRITER_START_SECONDS:
                break
            time.sleep(0.05)
        with contextlib.suppress(OSError):
            path.unlink()
    return sorted(set(waited))


def expected_artifacts(trial: Any) -> list[str]:
    """The artifact paths a trial's seeds were to write (its ``seeds`` user attr)."""
    return sorted(a for s in trial.user_attrs.get("seeds") or [] for a in s.get("artifacts", []))


def account_artifacts(tracker: Any, parent_run_id: str, trials: Iterable[Any]) -> dict[int, list]:
    """Tag every trial run of the study with what was written: ``artifacts`` (the paths in
    its artifact store, or "none") and, when some expected ones are not there,
    ``artifacts_missing``. Returns {trial number: missing paths} for trials missing some.

    A run whose ``artifacts`` tag already lists every expected path is complete (the writer
    sets the tag after each upload) and is not looked at again.
    """

    by_number = {t.number: t for t in trials}
    runs = tracker.client.search_runs(
        [tracker.experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}'"
    )
    missing_of: dict[int, list] = {}
    for run in runs:
        number = run.data.tags.get("trial")
        trial = by_number.get(int(number)) if number is not None else None
        if trial is None or trial.state.name in ("RUNNING", "WAITING"):
            continue  # not ours to judge (e.g. still running on another machine)
        expected = set(expected_artifacts(trial))
        tagged = set(run.data.tags.get(ARTIFACTS_TAG, "").split()) - {"none"}
        if ARTIFACTS_TAG in run.data.tags and expected <= tagged:
            continue
        present = set(_artifact_paths(tracker.client, run.info.run_id))
        missing = sorted(expected - present)
        tags = {ARTIFACTS_TAG: " ".join(sorted(present)) or "none"}
        if missing:
            tags[MISSING_TAG] = " ".join(missing)
            missing_of[trial.number] = missing
        tracker.set_tags(run.info.run_id, tags)
    return missing_of


def _artifact_paths(client: Any, run_id: str, path: str | None = None) -> list[str]:
    out = []
    for item in client.list_artifacts(run_id, path):
        out += _artifact_paths(client, run_id, item.path) if item.is_dir else [item.path]
    return out

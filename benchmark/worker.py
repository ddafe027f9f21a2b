"""One study worker: takes trials from the shared Optuna storage, trains, scores, logs.

A worker is the unit the launcher starts once per GPU (or per CPU slot); with a single
worker `benchmark.study` runs the same loop in-process. Workers never talk to each other:
they share the Optuna storage (trials, the budget, the MLflow parent run id as a study user
attr) and a local lock file that makes "count the budget, then ask" atomic between the
processes of one machine.

The launcher forks workers from its fork server (`process_main`); ``python -m
benchmark.worker SPEC_JSON`` runs one by hand.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import math
import os
import signal
import socket
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from benchmark.bookkeeping import Clock
from benchmark.urls import mask_text, mask_url

__all__ = [
    "FINISHED_STATES",
    "INTERMEDIATE_METRIC",
    "FarBehindRule",
    "Interrupted",
    "StorageError",
    "WorkerSpec",
    "acquire_trial",
    "budget_counts",
    "check_journal",
    "describe_interrupt",
    "fail_and_retry",
    "interrupt_exit_code",
    "is_in_memory_sqlite",
    "main",
    "make_pruner",
    "make_sampler",
    "mask_url",
    "open_storage",
    "process_main",
    "repair_journal",
    "room_left",
    "run_worker",
    "signals_as_interrupt",
    "storage_kind",
    "watch_launcher",
    "worker_id",
]

INTERMEDIATE_METRIC = "sliced_w2"
"""Metric reported every scored epoch to drive pruning (cheap; exact W1 only at the end)."""
OBJECTIVE_METRICS = {
    "wasserstein": ("w1",),
    "wasserstein-noise": ("w1_noise",),
    "cfid": ("cfid",),
    "cfid-noise": ("cfid_noise",),
    "pareto": ("w1", "g_loss_var"),
}
"""Objective name -> the final metrics it minimises. '-noise' objectives score RealMix's
samples drawn without any real image (its 'noise' mode), so copying cannot help them."""
NOISE_OBJECTIVES = ("wasserstein-noise", "cfid-noise")
CLASSIFIER_OBJECTIVES = ("cfid", "cfid-noise")


def intermediate_metric(objective: str, exact_every_epoch: bool = False) -> str:
    """The per-epoch metric that drives pruning for an objective.

    With exact W1 scored at every epoch (the study's default for the W1 objectives) it is the
    objective's own metric, so a pruned trial's value (its last intermediate value) is a W1
    like a complete trial's; otherwise sliced W2, in the objective's sampling mode.
    """
    if exact_every_epoch and objective in ("wasserstein", "wasserstein-noise", "pareto"):
        return OBJECTIVE_METRICS[objective][0]
    return f"{INTERMEDIATE_METRIC}_noise" if objective in NOISE_OBJECTIVES else INTERMEDIATE_METRIC


"""Objective name -> the final metrics it minimises (mean over seeds)."""
FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
COUNTED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
RDB_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mariadb", "oracle", "mssql")
JOURNAL_SUFFIXES = (".journal", ".log")
HEARTBEAT_SECONDS = 10
"""RDB heartbeat interval; a trial silent for 3 intervals is failed and retried."""
MAX_CONSECUTIVE_FAILURES = 3
STALE_ON_RETRY: dict[str, Any] = {"reason": None, "detail": None, "seeds": [], "curve": {}}
"""User attrs a retry inherits from its failed trial and must not report as its own."""
TEST_HANG_ENV = "MIXBENCH_TEST_HANG_DIR"
"""Test-only: makes one worker announce itself on a FIFO mid-trial and block (see _test_hang)."""


class StorageError(ValueError):
    """The Optuna storage URL is malformed or the storage cannot be reached (exit code 2)."""


# -- storage ----------------------------------------------------------------------------


def storage_kind(url: str) -> str:
    """'journal' for a journal file path, 'rdb' for a database URL; StorageError otherwise
    (also for a database URL that does not parse, e.g. a port that is not a number)."""
    if "://" in url:
        scheme = url.split("://", 1)[0].split("+", 1)[0].lower()
        if scheme not in RDB_SCHEMES:
            raise StorageError(_storage_help(url, f"unsupported scheme {scheme!r}"))
        _parse_db_url(url)
        return "rdb"
    if url.endswith(JOURNAL_SUFFIXES):
        return "journal"
    raise StorageError(_storage_help(url, "neither a database URL nor a journal file"))


def _parse_db_url(url: str) -> Any:
    """sqlalchemy's URL object for `url`; StorageError naming the problem (password hidden)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
        parsed.port  # noqa: B018 - a port that is not a number fails here or above
    except (ArgumentError, ValueError) as err:
        why = str(err).replace(url, mask_url(url) or "")
        if "port" in why.lower() or "invalid literal for int" in why:
            why = "the port is not a number"
        raise StorageError(_storage_help(mask_url(url) or "", why)) from None
    return parsed


def is_in_memory_sqlite(url: str) -> bool:
    """Whether `url` is an in-memory SQLite database (sqlite://, sqlite:///:memory:)."""
    if not url.lower().startswith("sqlite"):
        return False
    database = _parse_db_url(url).database
    return database in (None, "", ":memory:") or "mode=memory" in url


def _storage_help(url: str, why: str) -> str:
    return (
        f"invalid --storage {mask_url(url)!r}: {why}; use a journal file path ending in "
        ".journal or .log (e.g. results/optuna.journal, shared safely by local workers) or a "
        "database URL (sqlite:///results/optuna.db, postgresql://user:password@host:5432/db)"
    )


OUTPUT_ROOT = Path("results")
"""MixBench's output folder (relative to the working directory): created when missing, with
any sub-folder a storage path names inside it. Folders elsewhere must exist already."""


def _storage_folder(url: str, path: Path) -> None:
    """Create the folder of a storage file when it lies inside results/; StorageError when a
    folder elsewhere is missing (a mistyped path must not start a new, empty study)."""
    folder = path.parent
    if folder.exists():
        return
    root = OUTPUT_ROOT.absolute()
    target = folder.absolute()
    if target == root or root in target.parents:
        try:
            folder.mkdir(parents=True, exist_ok=True)  # a fresh clone has no results/
        except OSError as err:
            raise StorageError(f"cannot create folder {str(folder)!r}: {err}") from None
        return
    raise StorageError(
        f"folder {str(folder)!r} of --storage {mask_url(url)!r} does not exist; create it "
        f"first (mkdir -p {folder}) or fix the path. MixBench creates folders only inside "
        f"{OUTPUT_ROOT}/, so that a mistyped path cannot start a new, empty study elsewhere"
    )


def check_journal(path: Path, *, writable: bool = True) -> None:
    """StorageError when the journal file is damaged (see benchmark.journal) or, if
    `writable`, when its lock cannot be taken (e.g. a read-only folder). The check runs under
    Optuna's own journal lock, so it never sees another process's append half done."""
    from optuna.storages.journal import JournalFileSymlinkLock

    from benchmark.journal import find_damage

    lock = JournalFileSymlinkLock(str(path)) if writable else None
    if lock is not None:
        try:
            lock.acquire()
        except OSError as err:
            raise StorageError(
                f"cannot write to journal file {str(path)!r}: its lock file "
                f"{str(path)!r}.lock cannot be created ({err.strerror or err}); make "
                f"{str(path.parent)!r} writable, or pass --storage a journal in a writable "
                "folder"
            ) from None
    try:
        damage = find_damage(path)
    finally:
        if lock is not None:
            with contextlib.suppress(Exception):
                lock.release()
    if damage is not None:
        raise StorageError(damage.message())


def repair_journal(path: Path) -> str:
    """Repair a damaged journal (benchmark.journal.repair) under its lock; what was done."""
    from optuna.storages.journal import JournalFileSymlinkLock

    from benchmark.journal import repair

    lock = JournalFileSymlinkLock(str(path))
    try:
        lock.acquire()
    except OSError as err:
        raise StorageError(f"cannot repair journal file {str(path)!r}: {err}") from None
    try:
        done = repair(path)
    except OSError as err:
        raise StorageError(f"cannot repair journal file {str(path)!r}: {err}") from None
    finally:
        with contextlib.suppress(Exception):
            lock.release()
    if done is None:
        return f"journal file {str(path)!r} has no damage; nothing to repair"
    damage, aside = done
    return (
        f"repaired journal file {str(path)!r}: kept its first {damage.line - 1} line(s) "
        f"({damage.offset} bytes); dropped {damage.size - damage.offset} bytes from line "
        f"{damage.line} on ({damage.why}); the original is at {str(aside)!r}"
    )


def open_storage(
    url: str, *, heartbeat: bool = True, writable: bool = True
) -> optuna.storages.BaseStorage:
    """An Optuna storage for `url`: JournalStorage over a journal file, or RDBStorage.

    RDB storages get Optuna's heartbeat and `RetryHeartbeatStaleTrialCallback` (Optuna >= 4.9's
    name for RetryFailedTrialCallback), so a trial whose worker vanished is failed and retried
    by whichever worker next asks for a trial. A journal file is checked for damage first
    (before anything can be appended to it). Raises StorageError naming the URL and the fix.
    `writable=False` (reports) only reads: no folder is created, no lock taken.
    """
    kind = storage_kind(url)
    if kind == "journal":
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(url)
        try:
            if path.is_dir():
                raise IsADirectoryError(f"{path} is a directory")
            if writable:
                _storage_folder(url, path)
            if path.exists():
                check_journal(path, writable=writable)
            return JournalStorage(JournalFileBackend(str(path)))
        except OSError as err:
            raise StorageError(f"cannot open journal file {url!r}: {err}") from None
    parsed = _parse_db_url(url)
    engine_kwargs: dict[str, Any] = {}
    in_memory = parsed.database in (None, "", ":memory:")
    if parsed.get_backend_name() == "sqlite" and not in_memory and writable:
        _storage_folder(url, Path(parsed.database))
    if parsed.get_backend_name() in ("postgresql", "mysql", "mariadb"):
        engine_kwargs["connect_args"] = {"connect_timeout": 10}
    kwargs: dict[str, Any] = {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            if heartbeat:
                from optuna.storages import RetryHeartbeatStaleTrialCallback

                kwargs = {
                    "heartbeat_interval": HEARTBEAT_SECONDS,
                    "grace_period": 3 * HEARTBEAT_SECONDS,
                    "heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(
                        max_retry=2
                    ),
                }
            return _rdb_storage(url, engine_kwargs, kwargs)
    except ModuleNotFoundError as err:
        raise StorageError(
            f"cannot open storage {mask_url(url)!r}: database driver missing ({err.name}); "
            "install it, or for PostgreSQL use the driver MixBench's postgres extra installs: "
            "pip install -e '.[postgres]' and a postgresql+psycopg://user:pw@host/db URL"
        ) from None
    except Exception as err:  # sqlalchemy OperationalError, ArgumentError, ...
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise StorageError(
            f"cannot reach storage {mask_url(url)!r}: {first}; check that the database server "
            "is running and the URL (host, port, user, database) is right"
        ) from None


SCHEMA_RACE_RETRIES = 5
"""Attempts at opening an RDB storage whose tables another process is creating right now."""


def _rdb_storage(
    url: str, engine_kwargs: dict[str, Any], kwargs: dict[str, Any]
) -> optuna.storages.RDBStorage:
    """RDBStorage(url), tolerating workers that start together on an empty database.

    Each one creates Optuna's tables when it finds none; on PostgreSQL all but one then fail
    (duplicate key in pg_type, or relation exists). The tables exist by then: open again.
    """
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(1, SCHEMA_RACE_RETRIES):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
        except (IntegrityError, ProgrammingError):
            time.sleep(0.2 * attempt)
    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)


# -- samplers and pruners -----------------------------------------------------------------

SAMPLERS = ("tpe", "random", "cmaes", "nsga2", "gp")
PRUNERS = ("median", "hyperband", "none")


def make_sampler(
    name: str,
    *,
    multi_objective: bool,
    fixed: Mapping[str, Any] | None = None,
    seed: int | None = None,
) -> optuna.samplers.BaseSampler:
    """The sampler `name` (seeded when `seed` is not None), wrapped in PartialFixedSampler
    when some params are fixed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "tpe":
            sampler: optuna.samplers.BaseSampler = optuna.samplers.TPESampler(seed=seed)
        elif name == "random":
            sampler = optuna.samplers.RandomSampler(seed=seed)
        elif name == "cmaes":
            if multi_objective:
                raise ValueError("--sampler cmaes is single-objective; use nsga2, tpe or gp")
            sampler = optuna.samplers.CmaEsSampler(warn_independent_sampling=False, seed=seed)
        elif name == "nsga2":
            sampler = optuna.samplers.NSGAIISampler(seed=seed)
        elif name == "gp":
            sampler = optuna.samplers.GPSampler(warn_independent_sampling=False, seed=seed)
        else:
            raise ValueError(f"unknown sampler {name!r}; valid: {', '.join(SAMPLERS)}")
        if fixed:
            sampler = optuna.samplers.PartialFixedSampler(dict(fixed), sampler)
    return sampler


def make_pruner(name: str, *, steps: int) -> optuna.pruners.BasePruner:
    """Pruner over `steps` reported values per trial (scored epochs x seeds)."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=max(1, steps), reduction_factor=3
        )
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"unknown pruner {name!r}; valid: {', '.join(PRUNERS)}")


@dataclass(frozen=True)
class FarBehindRule:
    """Pruning for multi-objective studies, which Optuna's pruners do not support.

    A trial is stopped at step s when its intermediate value is worse than `factor` times the
    `quantile` of the values the completed trials had at step s (once `min_trials` of them
    reached s), or when the value is not finite.
    """

    quantile: float = 0.75
    factor: float = 1.5
    min_trials: int = 5
    metric: str = INTERMEDIATE_METRIC
    """Name of the intermediate metric, for the reasons it gives."""

    def verdict(self, value: float, others: Sequence[float]) -> str | None:
        """None to continue, else the reason to stop."""
        if not math.isfinite(value):
            return f"{self.metric} is {value}"
        finite = [v for v in others if math.isfinite(v)]
        if len(finite) < self.min_trials:
            return None
        bar = float(np.quantile(finite, self.quantile))
        if value > self.factor * bar:
            return (
                f"far-behind: {self.metric} {value:.4g} > {self.factor:g} x "
                f"{self.quantile:.0%} quantile {bar:.4g} of {len(finite)} completed trials"
            )
        return None


# -- worker spec ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs, passed as JSON on its command line."""

    study_name: str
    storage: str
    space: str
    objective: str
    sampler: str
    pruner: str
    trials: int
    """Target number of finished (complete + pruned) trials in the study, all workers."""
    settings: dict[str, Any]
    tracking_uri: str
    lock_path: str
    """Local lock file making budget check + ask atomic between this machine's workers."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Fixed params (--param), typed; keys as in the space (compare: unprefixed)."""
    deadline: float | None = None
    """Unix time after which no new trial starts (--timeout)."""
    device: str = "auto"
    threads: int | None = None
    max_retry: int = 2
    population: int = 1
    """Trials this worker trains at once as one batched population (1: one after another;
    0: auto, picked by the worker from its device, see benchmark.population)."""
    sampler_seed: int | None = None
    """Seed of this worker's sampler (the launcher gives worker k the study's seed + k)."""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WorkerSpec:
        return cls(**json.loads(text))


def worker_id(pid: int | None = None) -> str:
    """'host:pid' of a worker process (stored on the trials it runs)."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


# -- budget and trial acquisition ---------------------------------------------------------


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
    return {**trial.user_attrs.get("fixed", {}), **trial.params}


def room_left(trials: Sequence[FrozenTrial], spec: WorkerSpec) -> bool:
    """Whether a worker should take another trial: a retry is queued, or complete + pruned +
    running trials are fewer than the budget, and the deadline has not passed."""
    if spec.deadline is not None and time.time() >= spec.deadline:
        return False
    counts = budget_counts(trials)
    if counts["WAITING"]:
        return True
    return counts["COMPLETE"] + counts["PRUNED"] + counts["RUNNING"] < spec.trials


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
            study.enqueue_trial(fixed, user_attrs={"fixed": fixed, "worker": worker_id()})
        with warnings.catch_warnings():
            # RDB heartbeats are recorded by this module's own thread (see _heartbeat)
            warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
            trial = study.ask()
        trial.set_user_attr("worker", worker_id())
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
    trial_id = _trial_id(study, storage, trial_number)
    try:
        storage.set_trial_user_attr(trial_id, "reason", reason)
        if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
            return None
    except optuna.exceptions.UpdateFinishedTrialError:
        return None
    if retry:
        from optuna.storages import RetryHeartbeatStaleTrialCallback

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            RetryHeartbeatStaleTrialCallback(max_retry=max_retry)(
                study, storage.get_trial(trial_id)
            )
    return trial_number


def _trial_id(study: optuna.Study, storage: Any, number: int) -> int:
    study_id = storage.get_study_id_from_name(study.study_name)
    return storage.get_trial_id_from_study_id_trial_number(study_id, number)


# -- running one trial --------------------------------------------------------------------


class _Stop(Exception):
    """The trial ends early: pruned, far behind or diverged (recorded as PRUNED)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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


@contextlib.contextmanager
def _heartbeat(study: optuna.Study, storage: Any, trial: optuna.Trial) -> Iterator[None]:
    """Record the RDB heartbeat of `trial` while it runs (no-op for other storages)."""
    beats = Heartbeats(storage)
    try:
        if beats.interval is not None:
            beats.add(_trial_id(study, storage, trial.number))
        yield
    finally:
        beats.close()


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
    storage: Any
    space: Any
    settings: Any
    data: Any
    device: Any
    tracker: Any
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
        return intermediate_metric(self.spec.objective, self.settings.exact_every_epoch)

    @property
    def multi_objective(self) -> bool:
        return self.spec.objective == "pareto"


def _configure(ctx: WorkerContext, trial: optuna.Trial) -> tuple[str, Any]:
    from benchmark.trainables import params_class
    from studies import split_variant

    variant, params = split_variant(ctx.space, ctx.space.suggest(trial))
    cls = params_class(variant)
    params.update({k: v for k, v in ctx.spec.overrides.items() if k in cls.names()})
    return variant, cls.from_mapping(params)


def _judge(
    ctx: WorkerContext, trial: optuna.Trial, step: int, value: float, *, notify: bool = True
) -> str | None:
    """Report the intermediate value; the reason to stop the trial, or None. `notify`: call
    ctx.on_epoch after reporting (the population path calls it once per epoch instead)."""
    if not ctx.multi_objective:
        trial.report(value, step)
        if notify:
            _epoch_done(ctx)
        if trial.should_prune():
            return f"pruned by the {ctx.spec.pruner} pruner at step {step}"
        return None
    curve = dict(trial.user_attrs.get("curve") or {})
    curve[str(step)] = value if math.isfinite(value) else None
    trial.set_user_attr("curve", curve)
    if notify:
        _epoch_done(ctx)
    if ctx.rule is None:
        return None
    others = [
        (t.user_attrs.get("curve") or {}).get(str(step))
        for t in ctx.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    ]
    return ctx.rule.verdict(value, [v for v in others if v is not None])


def _epoch_done(ctx: WorkerContext) -> None:
    if ctx.on_epoch is not None:
        with contextlib.suppress(Exception):  # a display must never fail a trial
            ctx.on_epoch()


SEED_SUMMARY = (
    "w1",
    "g_loss_var",
    INTERMEDIATE_METRIC,
    "w1_noise",
    "sliced_w2_noise",
    "cfid",
    "cfid_noise",
    "classes_covered",
    "classes_covered_noise",
    "copy_fraction",
    "copy_fraction_noise",
)
"""Final metrics recorded per seed in the trial's ``seeds`` user attr (when present)."""


def _seed_summary(result: Any) -> dict[str, Any]:
    from benchmark.artifacts import json_safe

    final = result.final
    out = {"seed": result.seed, "status": result.status, "epochs": len(result.history)}
    out.update({m: json_safe(final[m]) for m in SEED_SUMMARY if m in final})
    if result.reason:
        out["reason"] = result.reason
    return out


def epoch_metrics(seed: int, multi: bool, metrics: Mapping[str, float]) -> dict[str, float]:
    """One scored epoch of one seed under its MLflow names (seed_<k>/ prefix if several)."""
    prefix = f"seed_{seed}/" if multi else ""
    return {f"{prefix}{k}": v for k, v in metrics.items() if k != "epoch"}


def log_epoch(
    ctx: WorkerContext, run_id: str, seed: int, multi: bool, metrics: Mapping[str, float]
) -> None:
    """One scored epoch of one seed to the trial's MLflow run (seed_<k>/ prefix if several)."""
    ctx.tracker.log_metrics(run_id, epoch_metrics(seed, multi, metrics), int(metrics["epoch"]))


def record_seed(
    ctx: WorkerContext,
    trial: optuna.Trial,
    run_id: str,
    result: Any,
    summaries: list[dict[str, Any]],
) -> None:
    """A finished seed's artifacts to MLflow (queued: the tracker's writer process draws and
    uploads them) and its summary, with the artifact paths it is to have, to the trial's
    `seeds` attr."""
    from benchmark.artifacts import run_payload

    multi = ctx.settings.seeds > 1
    payload = run_payload(result, data=ctx.data, settings=dataclasses.asdict(ctx.settings))
    names = ctx.tracker.write_artifacts(run_id, f"seed_{result.seed}" if multi else None, payload)
    summaries.append({**_seed_summary(result), "artifacts": names})
    trial.set_user_attr("seeds", summaries)


def objective_values(
    ctx: WorkerContext, trial: optuna.Trial, run_id: str, histories: list[list[dict]]
) -> list[float]:
    """The objective values (means over seeds of the last scored epoch), logged and stored;
    raises _Stop('diverged') when one is not finite."""
    metric_names = OBJECTIVE_METRICS[ctx.spec.objective]
    means = {
        key: float(np.mean([h[-1][key] for h in histories]))
        for key in histories[0][-1]
        if all(key in h[-1] for h in histories)
    }
    if len(histories) > 1:
        _log_mean_history(ctx, run_id, histories)
    values = [means.get(m, math.nan) for m in metric_names]
    if not all(math.isfinite(v) for v in values):
        raise _Stop("diverged")
    ctx.tracker.log_metrics(run_id, {f"objective/{m}": v for m, v in zip(metric_names, values)}, 0)
    trial.set_user_attr("final", {k: v for k, v in means.items() if math.isfinite(v)})
    return values


def _train(
    ctx: WorkerContext, trial: optuna.Trial, run_id: str, variant: str, typed: Any
) -> list[float]:
    """Train every seed, one after the other, logging as it goes; the objective values.

    Raises _Stop when a seed diverges or the pruning rule stops it.
    """
    from benchmark.runner import train_run

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
                reason = _judge(ctx, trial, step, float(value))
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
            trial.set_user_attr("detail", result.reason)
            raise _Stop("diverged")
        if result.status == "stopped":
            raise _Stop(stop_reason[-1] if stop_reason else "stopped")
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


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Signals that stop a study cleanly: Ctrl-C, kill / a job scheduler, a closed terminal."""
_LAUNCHER_GONE: list[str] = []
"""Set (to the launcher's description) by the watcher thread of a worker whose launcher died."""
_STOPPING = threading.Event()
"""Set once SIGTERM or SIGHUP has raised `Interrupted` in this process."""


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread and handled as Ctrl-C is."""

    def __init__(self, signum: int, why: str | None = None) -> None:
        self.signum = signum
        self.why = why or signal.Signals(signum).name
        super().__init__(self.why)


def interrupt_exit_code(err: KeyboardInterrupt) -> int:
    """128 + the signal number: 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP."""
    return 128 + (err.signum if isinstance(err, Interrupted) else signal.SIGINT)


def describe_interrupt(err: BaseException | None) -> str:
    """'Ctrl-C', 'SIGTERM', 'SIGHUP' or 'launcher PID is gone', for reasons and messages."""
    return err.why if isinstance(err, Interrupted) else "Ctrl-C"


@contextlib.contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP raise `Interrupted` (a KeyboardInterrupt) while the block runs, so
    they stop a study as Ctrl-C does. After SIGHUP, stdout and stderr that were a terminal
    (now gone) go to /dev/null, so the bookkeeping that follows cannot fail on them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    ttys = [fd for fd in (1, 2) if _isatty(fd)]

    def interrupt(signum: int, frame: Any) -> None:
        _STOPPING.set()
        if signum == signal.SIGHUP:
            _detach_from_terminal(ttys)
        raise Interrupted(signum, _LAUNCHER_GONE[0] if _LAUNCHER_GONE else None)

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def _detach_from_terminal(fds: Sequence[int]) -> None:
    if not fds:
        return
    with contextlib.suppress(OSError):
        null = os.open(os.devnull, os.O_WRONLY)
        for fd in fds:
            os.dup2(null, fd)
        os.close(null)


def watch_launcher(grace_seconds: float = 60.0) -> None:
    """Stop this worker process when its launcher dies (SIGKILL, OOM, a crash).

    A worker's parent is the launcher's fork server, not the launcher, so PR_SET_PDEATHSIG
    would fire only when the fork server exits; instead a thread waits on the pipe that
    multiprocessing keeps open from the launcher itself (`parent_process().sentinel`, at EOF
    once no launcher holds it). Then SIGTERM is raised in this process, which records its
    trials FAIL ('interrupted (launcher PID is gone)') as on Ctrl-C. SIGTERM is sent again
    each second until it is acted on (one that lands while a trial's bookkeeping ignores it is
    lost); after `grace_seconds` the process exits regardless.
    """
    import multiprocessing
    import multiprocessing.connection

    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        _LAUNCHER_GONE.append(f"launcher {parent.pid} is gone")
        deadline = time.monotonic() + grace_seconds
        while time.monotonic() < deadline:
            if not _STOPPING.is_set():
                os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1.0)
        os._exit(128 + signal.SIGTERM)

    threading.Thread(target=watch, name="launcher-watch", daemon=True).start()


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP until the block ends, then act on the first one that
    came (KeyboardInterrupt / Interrupted as usual).

    The handlers are swapped, not the signal mask: a process-directed signal that the main
    thread blocks is delivered to another thread, and Python runs its handler anyway.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        pending.append(signum)

    previous = {s: signal.signal(s, hold) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if pending:
            handler = previous[pending[0]]
            if callable(handler):
                handler(pending[0], None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(pending[0])


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Ignore SIGINT, SIGTERM and SIGHUP while the block runs (a second stop request must not
    cut a trial's bookkeeping short)."""
    try:
        previous = {s: signal.signal(s, signal.SIG_IGN) for s in STOP_SIGNALS}
    except ValueError:  # not the main thread: signals are not ours to change
        yield
        return
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def open_trial(ctx: WorkerContext, trial: optuna.Trial) -> tuple[str, Any, str]:
    """(variant, typed params, MLflow run id) of an asked trial: its config suggested and
    stored, its retry history noted, its nested MLflow run started.

    Call it under `_sigint_deferred()` and assign the result inside that block: a Ctrl-C in
    between would leave an MLflow run that nobody knows to end, RUNNING forever.
    """
    frozen = ctx.storage.get_trial(_trial_id(ctx.study, ctx.storage, trial.number))
    history = frozen.system_attrs.get("retry_history") or []
    failed_from = history[-1] if history else None
    if failed_from is not None:
        trial.set_user_attr("retried_from", failed_from)
        for key, empty in STALE_ON_RETRY.items():  # copied from the failed trial
            if key in frozen.user_attrs:
                trial.set_user_attr(key, empty)
    variant, typed = _configure(ctx, trial)
    trial.set_user_attr("config", {"trainable": variant, "params": typed.to_dict()})
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
    trial.set_user_attr("mlflow_run_id", run_id)
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
            trial.set_user_attr("reason", reason)
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
    with _sigint_ignored():  # a second Ctrl-C must not cut the bookkeeping short
        with contextlib.suppress(Exception):
            trial.set_user_attr("reason", "interrupted" + ("" if how == "Ctrl-C" else f" ({how})"))
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
        with _sigint_deferred():
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
        with _heartbeat(ctx.study, ctx.storage, trial):
            with _sigint_deferred(), ctx.clock.part("start trials"):
                variant, typed, run_id = open_trial(ctx, trial)
            values = _train(ctx, trial, run_id, variant, typed)
            with ctx.clock.part("close trial"):
                return close_trial(ctx, trial, run_id, TrialState.COMPLETE, values=values)
    except _Stop as stop:
        with ctx.clock.part("close trial"):
            return close_trial(ctx, trial, run_id, TrialState.PRUNED, reason=stop.reason)
    except KeyboardInterrupt:
        interrupt_trial(ctx, trial, run_id)
        raise
    except Exception as err:
        reason = mask_text(f"{type(err).__name__}: {err}")  # MLflow's errors quote its URL
        ctx.log(f"trial {trial.number} failed: {reason}\n{mask_text(traceback.format_exc())}")
        return close_trial(ctx, trial, run_id, TrialState.FAIL, reason=reason)


# -- the worker loop ----------------------------------------------------------------------


def load_worker_study(spec: WorkerSpec, storage: Any) -> optuna.Study:
    """The shared study with this worker's sampler and pruner."""
    from benchmark.settings import Settings

    settings = Settings(**spec.settings)
    multi = spec.objective == "pareto"
    fixed = fixed_sampler_params(spec.space, spec.overrides)
    n_scored = len([e for e in range(1, settings.epochs + 1) if settings.scored(e)])
    # One trial path: seed after seed, one step per scored epoch of each. Population path:
    # a trial's seeds train side by side and report their mean once per scored epoch.
    steps = n_scored if spec.population != 1 else n_scored * settings.seeds
    return optuna.load_study(
        study_name=spec.study_name,
        storage=storage,
        sampler=make_sampler(
            spec.sampler, multi_objective=multi, fixed=fixed, seed=spec.sampler_seed
        ),
        pruner=make_pruner(spec.pruner, steps=steps),
    )


def fixed_sampler_params(space_name: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Overrides under the names the space suggests them by (compare: 'variant.name')."""
    if space_name != "compare":
        return dict(overrides)
    from benchmark.trainables import params_class
    from studies import compare

    return {
        f"{variant}.{k}": v
        for variant in compare.CHOICES
        for k, v in overrides.items()
        if k in params_class(variant).names()
    }


def run_worker(
    spec: WorkerSpec,
    *,
    on_trial_end: Callable[[optuna.Study, FrozenTrial | None], None] | None = None,
    data: Any = None,
    tracker: Any = None,
    on_epoch: Callable[[], None] | None = None,
) -> int:
    """Take trials until the budget or the deadline is reached; returns the exit code.

    KeyboardInterrupt propagates after the running trial is recorded.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(spec.storage)
    peek = optuna.load_study(study_name=spec.study_name, storage=storage)
    _fail_stale(peek)  # a trial whose worker went silent elsewhere is room for this one
    if not room_left(peek.get_trials(deepcopy=False), spec) and not _wait_for_running(
        peek, storage, spec
    ):
        return 0  # e.g. a replacement worker whose retry another worker already took
    if spec.threads:
        import torch

        torch.set_num_threads(spec.threads)
    study = load_worker_study(spec, storage)

    from benchmark.runner import load_data, resolve_device
    from benchmark.settings import Settings
    from benchmark.tracking import connect
    from studies import get_space

    settings = Settings(**spec.settings)
    device = resolve_device(spec.device)
    ctx = WorkerContext(
        spec=spec,
        study=study,
        storage=storage,
        space=get_space(spec.space),
        settings=settings,
        data=data if data is not None else load_data(settings, device),
        device=device,
        tracker=tracker if tracker is not None else connect(spec.tracking_uri),
        parent_run_id=study.user_attrs["mlflow_parent_run_id"],
        rule=None,
        on_epoch=on_epoch,
    )
    if spec.objective == "pareto" and spec.pruner != "none":
        ctx.rule = FarBehindRule(metric=ctx.metric)
    from benchmark.writer import QueuedTracker, writer_lock_dir

    # MLflow calls and artifact files are done by a background writer process, in order;
    # closing it waits for all of them (after Ctrl-C too).
    ctx.tracker = QueuedTracker(ctx.tracker, lock_dir=writer_lock_dir(spec.lock_path))
    try:
        if spec.population != 1:
            from benchmark.population import resolve_population, run_population

            ctx.spec = dataclasses.replace(spec, population=resolve_population(ctx))
            return run_population(ctx, on_trial_end=on_trial_end)
        return _one_trial_loop(ctx, on_trial_end)
    finally:
        with ctx.clock.part("drain writer"):
            for error in ctx.tracker.close(ctx.log):
                ctx.log(f"MLflow call not done: {error}")
        ctx.clock.dump()


def _one_trial_loop(
    ctx: WorkerContext, on_trial_end: Callable[[optuna.Study, FrozenTrial | None], None] | None
) -> int:
    """run_worker's loop for --population 1: one trial after another."""
    study, storage, spec = ctx.study, ctx.storage, ctx.spec
    failures = 0
    while True:
        with ctx.clock.part("start trials"):
            trial = take_trial(ctx)
        if trial is None:
            if _wait_for_running(study, storage, spec):
                continue  # a silent worker's trial was re-queued: take it
            return 0
        state = run_trial(ctx, trial)
        failures = failures + 1 if state == TrialState.FAIL else 0
        if on_trial_end is not None:
            with ctx.clock.part("progress"):
                on_trial_end(study, ctx.storage.get_trial(_trial_id(study, storage, trial.number)))
        if failures >= MAX_CONSECUTIVE_FAILURES:
            ctx.log(f"worker {worker_id()}: {failures} trials failed in a row; stopping")
            return 1


def _fail_stale(study: optuna.Study) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # no-op without RDB heartbeat


def _wait_for_running(study: optuna.Study, storage: Any, spec: WorkerSpec) -> bool:
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
        _fail_stale(study)
        states = [t.state for t in study.get_trials(deepcopy=False)]
        if TrialState.WAITING in states:
            return True
        if TrialState.RUNNING not in states:
            return False
        time.sleep(min(interval, 1.0))  # a finished last trial should not keep workers long
    return False


def process_main(spec_json: str, env: Mapping[str, str], cwd: str) -> None:
    """Entry point of a worker process started by the launcher (from its fork server, which
    may have been started by an earlier launch with another environment and folder)."""
    os.environ.clear()
    os.environ.update(env)  # e.g. CUDA_VISIBLE_DEVICES: read when CUDA initialises, later
    os.chdir(cwd)
    os.setpgrp()  # a terminal's Ctrl-C reaches only the launcher, which forwards it once
    signal.signal(signal.SIGINT, signal.default_int_handler)
    watch_launcher()  # a worker never outlives its launcher
    sys.exit(main([spec_json]))


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m benchmark.worker SPEC_JSON` (started by benchmark.launcher)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m benchmark.worker SPEC_JSON", file=sys.stderr)
        return 2
    spec = WorkerSpec.from_json(args[0])
    try:
        with signals_as_interrupt():
            return run_worker(spec)
    except KeyboardInterrupt as err:
        return interrupt_exit_code(err)


if __name__ == "__main__":
    sys.exit(main())

"""Optuna storages (journal files and databases), their checks and repair; samplers; pruners."""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock, JournalStorage
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, ProgrammingError

from benchmark.journal import find_damage, repair
from benchmark.objectives import INTERMEDIATE_METRIC
from benchmark.urls import mask_url

__all__ = [
    "HEARTBEAT_SECONDS",
    "JOURNAL_SUFFIXES",
    "PRUNERS",
    "SAMPLERS",
    "FarBehindRule",
    "StorageError",
    "check_journal",
    "is_in_memory_sqlite",
    "make_pruner",
    "make_sampler",
    "open_storage",
    "repair_journal",
    "storage_kind",
]

RDB_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mariadb", "oracle", "mssql")
JOURNAL_SUFFIXES = (".journal", ".log")
HEARTBEAT_SECONDS = 10
"""RDB heartbeat interval; a trial silent for 3 intervals is failed and retried."""


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


def _parse_db_url(url: str) -> URL:
    """sqlalchemy's URL object for `url`; StorageError naming the problem (password hidden)."""
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

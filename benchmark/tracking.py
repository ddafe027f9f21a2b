"""Thin MLflow layer: one parent run per study, one nested run per trial, artifacts.

Everything goes through `mlflow.MlflowClient` with explicit run ids (no active-run globals),
so any worker process can log into a trial run and link it to the study's parent run with
the ``mlflow.parentRunId`` tag.

With a tracking server (http/https URI), MLflow's client retries a request the server did not
answer (MLFLOW_HTTP_REQUEST_MAX_RETRIES, default 7, exponential backoff: about four minutes in
all), so a server restart only delays the study. The user is told on stderr when the server
stops answering and when it answers again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from benchmark.artifacts import write_payload
from benchmark.urls import mask_text, mask_url

__all__ = [
    "ARTIFACTS_TAG",
    "EXPERIMENT",
    "MISSING_TAG",
    "RUN_LABELS",
    "TRIAL_STATUS",
    "Tracker",
    "TrackingError",
    "connect",
    "default_tracking_uri",
    "environment_tags",
    "probe",
    "run_label",
]

EXPERIMENT = "mixbench"
"""MLflow experiment holding every study's parent run and its trial runs."""

TRIAL_STATUS = {
    "COMPLETE": "FINISHED",
    "PRUNED": "KILLED",
    "FAIL": "FAILED",
    "INTERRUPTED": "KILLED",
}
"""MLflow run status of a trial run by the trial's outcome (the tag ``state`` keeps the
outcome itself, ``reason`` says why a run was pruned, failed or interrupted)."""

RUN_LABELS = {"PRUNED": "pruned", "FAIL": "failed", "INTERRUPTED": "interrupted"}
"""Label put before an ended trial run's name by outcome, e.g. 'pruned: trial-3 <study>'; a
pruned trial that diverged gets 'diverged: '. Complete runs keep their plain name."""


def run_label(outcome: str, reason: str | None = None) -> str | None:
    """The run-name label of a trial run that ended with `outcome` (None: no label)."""
    if outcome == "PRUNED" and reason == "diverged":
        return "diverged"
    return RUN_LABELS.get(outcome)


ARTIFACTS_TAG = "artifacts"
"""Tag of a trial run: its artifact paths written so far, space-separated ("none": nothing
was written; the tag ``artifacts_missing`` then, or when some are, lists what is missing)."""
MISSING_TAG = "artifacts_missing"
METRICS_PER_BATCH = 1000
"""MLflow's limit on metrics in one log_batch call."""

_PACKAGES = ("torch", "optuna", "mlflow", "pot", "numpy", "scipy")
_PARAM_MAX = 6000  # MLflow's limit on a param value's length


class TrackingError(RuntimeError):
    """The MLflow tracking store cannot be used (CLI exit code 2)."""


def default_tracking_uri() -> str:
    """MLflow's own default (MLFLOW_TRACKING_URI, else ./mlflow.db), as an absolute URI."""
    # mlflow is imported where it is used (here and below): importing it takes seconds, and
    # the CLIs import this module before their arguments are checked
    import mlflow

    return mlflow.get_tracking_uri()


def environment_tags() -> dict[str, str]:
    """Git commit (when the code is in a git checkout) and package versions, as MLflow tags."""
    tags = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            tags[f"version.{name}"] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    root = Path(__file__).resolve().parents[1]
    commit = _git(root, "rev-parse", "HEAD")
    if commit:
        tags["git_commit"] = commit
        status = _git(root, "status", "--porcelain", "--untracked-files=no")
        tags["git_dirty"] = "true" if status else "false"
    return tags


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _param_value(value: Any) -> str:
    return str(value)[:_PARAM_MAX]


class _ServerNotices(logging.Handler):
    """One stderr line when a tracking server stops answering, one when it answers again.

    MLflow retries through urllib3, which logs each retry to its own logger (silent by
    default: urllib3 gives it a NullHandler); this handler hears those records.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.state_lock = threading.Lock()  # not `lock`: logging.Handler holds that in emit()
        self.down_since: float | None = None
        self.uri = ""

    def emit(self, record: logging.LogRecord) -> None:
        if not record.getMessage().startswith("Retrying"):
            return
        with self.state_lock:
            if self.down_since is not None:
                return
            self.down_since = time.monotonic()
        error = record.args[1] if isinstance(record.args, tuple) and len(record.args) > 1 else ""
        why = type(error).__name__ if isinstance(error, BaseException) else "no answer"
        print(
            f"MLflow tracking server {self.uri or '(http)'} is not answering ({why}); "
            "retrying, nothing is dropped meanwhile (MLflow gives up after about 4 minutes: "
            "restart the server, or raise MLFLOW_HTTP_REQUEST_MAX_RETRIES)",
            file=sys.stderr,
            flush=True,
        )

    def answered(self) -> None:
        if self.down_since is None:
            return
        with self.state_lock:
            if self.down_since is None:
                return
            waited, self.down_since = time.monotonic() - self.down_since, None
        print(
            f"MLflow tracking server {self.uri} is answering again after {waited:.0f} s; "
            "the delayed requests went through",
            file=sys.stderr,
            flush=True,
        )


_NOTICES = _ServerNotices()


class _NoticingClient:
    """An MlflowClient whose successful calls end a 'not answering' notice."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            _NOTICES.answered()
            return result

        return call


def _watch_server(uri: str, client: Any) -> Any:
    """`client`, reporting outages of the tracking server at `uri` on stderr."""
    _NOTICES.uri = uri
    logger = logging.getLogger("urllib3.connectionpool")
    if _NOTICES not in logger.handlers:
        logger.addHandler(_NOTICES)
    return _NoticingClient(client)


@dataclass
class Tracker:
    """An MLflow client bound to one tracking store and experiment."""

    client: Any
    """mlflow.MlflowClient (typed loosely so importing this module stays cheap)."""
    tracking_uri: str
    experiment_id: str

    # -- study (parent) runs -------------------------------------------------------------

    def start_study(
        self, study_name: str, *, tags: Mapping[str, str], params: Mapping[str, Any]
    ) -> str:
        """Create the study's parent run (RUNNING); returns its run id."""
        run = self.client.create_run(
            self.experiment_id,
            run_name=study_name,
            tags={"study": study_name, "kind": "study", **environment_tags(), **tags},
        )
        self.log_params(run.info.run_id, params)
        return run.info.run_id

    def resume_study(self, run_id: str) -> bool:
        """Mark an existing parent run RUNNING again; False if this store does not hold it."""
        from mlflow.exceptions import MlflowException

        try:
            run = self.client.get_run(run_id)
        except MlflowException:
            return False
        if run.info.experiment_id != self.experiment_id:
            return False
        if run.info.status != "RUNNING":
            self.client.update_run(run_id, status="RUNNING")
        return True

    def end_study(self, run_id: str, status: str = "FINISHED", **tags: str) -> None:
        """Terminate the parent run (FINISHED, KILLED on Ctrl-C, FAILED on errors)."""
        for key, value in tags.items():
            self.client.set_tag(run_id, key, value)
        self.client.set_terminated(run_id, status=status)

    # -- trial (child) runs --------------------------------------------------------------

    def start_trial(
        self,
        parent_run_id: str,
        *,
        study_name: str,
        number: int,
        params: Mapping[str, Any],
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Create a trial's run nested under the study's parent run; returns its run id."""
        run = self.client.create_run(
            self.experiment_id,
            # the trial number first: MLflow's runs table cuts long names short
            run_name=f"trial-{number} {study_name}",
            tags={
                "mlflow.parentRunId": parent_run_id,
                "study": study_name,
                "kind": "trial",
                "trial": str(number),
                "state": "RUNNING",
                **(tags or {}),
            },
        )
        self.log_params(run.info.run_id, params)
        return run.info.run_id

    def resolve(self, run_id: str) -> str:
        """The run id `start_trial` returned is the run's (see QueuedTracker.resolve)."""
        return run_id

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int) -> None:
        """Log numeric metrics at `step` in one batch (non-finite values are kept as such)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [
            Metric(key, float(value), now, int(step))
            for key, value in metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)
        ]
        if batch:
            self.client.log_batch(run_id, metrics=batch)

    def log_metric_rows(self, run_id: str, rows: Sequence[tuple[str, float, int, int]]) -> None:
        """Log (key, value, timestamp ms, step) rows, steps mixed, in as few `log_batch` calls
        as MLflow allows (1000 metrics a call)."""
        from mlflow.entities import Metric

        batch = [Metric(key, float(value), int(ts), int(step)) for key, value, ts, step in rows]
        for start in range(0, len(batch), METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=batch[start : start + METRICS_PER_BATCH])

    def write_artifacts(
        self, run_id: str, folder: str | None, payload: dict[str, Any]
    ) -> list[str]:
        """Write a run's files (`benchmark.artifacts.run_payload`) and upload them into the
        run's artifact folder `folder` (None: its root), now; returns their artifact paths and
        records them in the run's ``artifacts`` tag. (`benchmark.writer.QueuedTracker` does
        the same in a background process.)"""

        with tempfile.TemporaryDirectory(prefix="mixbench-trial-") as tmp:
            paths = write_payload(payload, tmp)
            self.log_artifacts(run_id, paths, folder)
        names = [f"{folder}/{p.name}" if folder else p.name for p in paths.values()]
        written = self.client.get_run(run_id).data.tags.get(ARTIFACTS_TAG, "").split()
        self.set_tags(run_id, {ARTIFACTS_TAG: " ".join(sorted({*written, *names}))})
        return names

    def close(self) -> None:
        """Nothing to wait for (every call above is done when it returns)."""

    def log_artifacts(
        self, run_id: str, paths: Mapping[str, Path] | list[Path], artifact_path: str | None
    ) -> None:
        """Upload files into the run's artifact folder `artifact_path` (None: its root)."""
        values = paths.values() if isinstance(paths, Mapping) else paths
        for path in values:
            self.client.log_artifact(run_id, str(path), artifact_path=artifact_path)

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        """Set several tags (values stringified)."""
        for key, value in tags.items():
            self.client.set_tag(run_id, key, str(value))

    def end_trial(self, run_id: str, outcome: str, reason: str | None = None) -> None:
        """Terminate a trial run: outcome COMPLETE, PRUNED, FAIL or INTERRUPTED.

        A run that already ended (e.g. a worker finished it just before the launcher saw the
        worker die) is left as it is.
        """
        if outcome not in TRIAL_STATUS:
            raise ValueError(f"outcome={outcome!r}; valid: {', '.join(TRIAL_STATUS)}")
        info = self.client.get_run(run_id).info
        if info.status != "RUNNING":
            return
        tags = {"state": outcome}
        if reason:
            tags["reason"] = reason[:5000]
        self.set_tags(run_id, tags)
        label = run_label(outcome, reason)
        if label and info.run_name and not info.run_name.startswith(f"{label}: "):
            # MLflow shows a pruned run as KILLED, like a crash: the name tells them apart
            # (first, since the UI's run-name column cuts long names short)
            self.client.update_run(run_id, name=f"{label}: {info.run_name}")
        self.client.set_terminated(run_id, status=TRIAL_STATUS[outcome])

    def close_stale_trials(
        self, parent_run_id: str, outcomes: Mapping[int, tuple[str, str]]
    ) -> list[int]:
        """End the parent's trial runs still RUNNING whose trial has ended.

        `outcomes` maps a trial number to (outcome, reason) for every ended trial. A worker
        records its trial's outcome in MLflow itself; this sweep, run once the workers have
        stopped, ends the runs a worker could not (e.g. a store write that failed under lock
        contention during Ctrl-C). Returns the trial numbers whose runs it ended.
        """
        stale = self.client.search_runs(
            [self.experiment_id],
            f"tags.mlflow.parentRunId = '{parent_run_id}' and attributes.status = 'RUNNING'",
        )
        ended = []
        for run in stale:
            number = run.data.tags.get("trial")
            if number is None or int(number) not in outcomes:
                continue  # still running (e.g. on another machine), or not a trial run
            outcome, reason = outcomes[int(number)]
            self.end_trial(run.info.run_id, outcome, reason)
            ended.append(int(number))
        return sorted(ended)

    # -- helpers -------------------------------------------------------------------------

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Log a run's parameters (None values left out), 100 to a call as MLflow allows."""
        from mlflow.entities import Param

        items = [Param(str(k), _param_value(v)) for k, v in params.items() if v is not None]
        for start in range(0, len(items), 100):  # MLflow accepts at most 100 params a batch
            self.client.log_batch(run_id, params=items[start : start + 100])

    def run_status(self, run_id: str) -> str:
        """RUNNING, FINISHED, FAILED or KILLED."""
        return self.client.get_run(run_id).info.status


def connect(tracking_uri: str | None = None, experiment: str = EXPERIMENT) -> Tracker:
    """A Tracker on `tracking_uri` (None: MLflow's default), creating the experiment if needed.

    Raises TrackingError naming the URI when the store cannot be opened.
    """
    from mlflow import MlflowClient

    uri = tracking_uri or default_tracking_uri()
    _preflight(uri)
    if mask_url(uri) != uri:
        # MLflow prints "View run ... at: <the URI>" on stdout whenever a run ends
        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    for attempt in range(1, SCHEMA_RACE_RETRIES + 1):
        try:
            with _creation_lock(uri):
                client = MlflowClient(tracking_uri=uri)
                experiment_id = _experiment_id(client, experiment)
            break
        except Exception as err:  # sqlalchemy, OSError, MlflowException: all mean "unusable"
            if attempt < SCHEMA_RACE_RETRIES and _schema_race(err):
                time.sleep(0.2 * attempt)  # another process is creating the tables: reopen
                continue
            raise TrackingError(
                f"cannot use MLflow tracking URI {mask_url(uri)!r}: {_first_line(err)}; pass a "
                "reachable --tracking-uri (e.g. sqlite:///mlflow.db or http://host:5000)"
            ) from err
    if urlparse(uri).scheme in ("http", "https"):
        client = _watch_server(mask_url(uri) or uri, client)
    return Tracker(client=client, tracking_uri=uri, experiment_id=experiment_id)


SCHEMA_RACE_RETRIES = 8
"""Attempts at opening a database tracking store whose tables another process is creating."""
_RACE_MARKERS = (
    "already exists",
    "duplicate key",
    "duplicate column",
    "database is locked",
    "alembic_version",
)


@contextlib.contextmanager
def _creation_lock(uri: str) -> Iterator[None]:
    """For a SQLite store: an exclusive lock (a hidden file beside the database) while MLflow
    opens it, so that processes starting together on one machine never run MLflow's schema
    creation and migrations at once: on SQLite two of them can leave a half-migrated schema
    that no retry repairs. Other stores: nothing (the retry in `connect` covers them)."""
    import fcntl

    parsed = urlparse(uri)
    path = parsed.path[1:] if parsed.scheme == "sqlite" and parsed.path not in ("", "/") else ""
    if not path or path == ":memory:":
        yield
        return
    db = Path(path)
    try:
        handle = open(db.with_name(f".{db.name}.lock"), "a")  # noqa: SIM115 - held below
    except OSError:
        yield  # e.g. no such folder: MLflow's own error names the problem
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _schema_race(err: BaseException) -> bool:
    """Whether `err` is MLflow's schema-creation race: two processes found an empty database
    and both created its tables (e.g. 'table tags already exists'); the loser can reopen."""
    seen: BaseException | None = err
    while seen is not None:
        if any(m in str(seen).lower() for m in _RACE_MARKERS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _experiment_id(client: Any, experiment: str) -> str:
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(experiment)
    except MlflowException:
        # another worker created it between our lookup and create
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise
        return found.experiment_id


PROBE_SECONDS = 5.0
"""How long the start-up probe of a tracking server or database waits for an answer."""
_DB_PORTS = {"postgresql": 5432, "postgres": 5432, "mysql": 3306, "mariadb": 3306, "mssql": 1433}


def probe(uri: str, timeout: float = PROBE_SECONDS) -> str | None:
    """None when the tracking store at `uri` answers within `timeout` seconds, else why not.

    An http(s) server must answer an HTTP request (any status: a proxy asking for a login is
    alive); a database server must accept a TCP connection. File stores are not probed.
    MLflow's own client retries such stores for minutes before it gives up.
    """
    import urllib.error
    import urllib.request

    parsed = urlparse(uri)
    scheme = parsed.scheme.split("+", 1)[0].lower()
    if scheme in ("http", "https") and parsed.hostname:
        netloc = parsed.hostname if ":" not in parsed.hostname else f"[{parsed.hostname}]"
        if parsed.port:
            netloc += f":{parsed.port}"
        try:
            urllib.request.urlopen(f"{scheme}://{netloc}/health", timeout=timeout).close()
        except urllib.error.HTTPError:
            return None  # it answered
        except (OSError, ValueError) as err:
            return _why(getattr(err, "reason", err), timeout)
        return None
    if scheme in _DB_PORTS and parsed.hostname:
        try:
            port = parsed.port or _DB_PORTS[scheme]
        except ValueError:
            return "the port is not a number"
        try:
            socket.create_connection((parsed.hostname, port), timeout=timeout).close()
        except OSError as err:
            return _why(err, timeout)
    return None


def _why(err: object, timeout: float) -> str:
    if isinstance(err, TimeoutError):
        return f"no answer within {timeout:g} s"
    return f"no connection ({err})"


def _preflight(uri: str, timeout: float = PROBE_SECONDS) -> None:
    """Fail fast on an unreachable tracking server or database (MLflow itself retries for
    minutes: about 4 for a tracking server, about 2 for PostgreSQL)."""
    problem = probe(uri, timeout)
    if problem is None:
        return
    if urlparse(uri).scheme in ("http", "https"):
        what, fix = "MLflow tracking server", "start it (mlflow server)"
    else:
        what, fix = "MLflow tracking database", "start the database server"
    raise TrackingError(
        f"cannot reach {what} {mask_url(uri)!r}: {problem}; {fix} or pass another "
        "--tracking-uri (e.g. sqlite:///mlflow.db)"
    )


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return mask_text(text[0]) if text else type(err).__name__

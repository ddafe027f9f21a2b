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

import logging
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

__all__ = [
    "ARTIFACTS_TAG",
    "EXPERIMENT",
    "MISSING_TAG",
    "TRIAL_STATUS",
    "Tracker",
    "TrackingError",
    "connect",
    "default_tracking_uri",
    "environment_tags",
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
        self._log_params(run.info.run_id, params)
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
            run_name=f"{study_name}/trial-{number}",
            tags={
                "mlflow.parentRunId": parent_run_id,
                "study": study_name,
                "kind": "trial",
                "trial": str(number),
                "state": "RUNNING",
                **(tags or {}),
            },
        )
        self._log_params(run.info.run_id, params)
        return run.info.run_id

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
        from benchmark.artifacts import write_payload

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
        if self.client.get_run(run_id).info.status != "RUNNING":
            return
        tags = {"state": outcome}
        if reason:
            tags["reason"] = reason[:5000]
        self.set_tags(run_id, tags)
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

    def _log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
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
    from mlflow.exceptions import MlflowException

    uri = tracking_uri or default_tracking_uri()
    _preflight(uri)
    try:
        client = MlflowClient(tracking_uri=uri)
        found = client.get_experiment_by_name(experiment)
        if found is None:
            try:
                experiment_id = client.create_experiment(experiment)
            except MlflowException:
                # another worker created it between our lookup and create
                found = client.get_experiment_by_name(experiment)
                if found is None:
                    raise
                experiment_id = found.experiment_id
        else:
            experiment_id = found.experiment_id
    except Exception as err:  # sqlalchemy, OSError, MlflowException: all mean "unusable"
        raise TrackingError(
            f"cannot use MLflow tracking URI {uri!r}: {_first_line(err)}; pass a reachable "
            "--tracking-uri (e.g. sqlite:///mlflow.db or http://host:5000)"
        ) from err
    if urlparse(uri).scheme in ("http", "https"):
        client = _watch_server(uri, client)
    return Tracker(client=client, tracking_uri=uri, experiment_id=experiment_id)


def _preflight(uri: str, timeout: float = 5.0) -> None:
    """Fail fast on an unreachable tracking server (MLflow itself retries for minutes)."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=timeout).close()
    except OSError as err:
        raise TrackingError(
            f"cannot reach MLflow tracking server {uri!r}: {err}; start it (mlflow server) "
            "or pass another --tracking-uri (e.g. sqlite:///mlflow.db)"
        ) from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__

"""Loading a study for reporting: the Optuna storage's trials merged with their MLflow runs.

`load_study_data` opens a storage that must already exist, reads every trial into a
`TrialRecord` (params under the trainable's own names, per-seed summaries with every final
metric MLflow holds) and falls back to the storage alone, with a note, when the tracking store
cannot be read.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from mlflow import MlflowClient

from benchmark import records
from benchmark.objectives import metric_names
from benchmark.reporting.labels import short_name
from benchmark.storage import StorageError, open_storage, storage_kind
from benchmark.tracking import PROBE_SECONDS, probe
from benchmark.urls import mask_text, mask_url
from studies import get_space

__all__ = [
    "ReportError",
    "StudyData",
    "TrialRecord",
    "artifact",
    "history",
    "load_study_data",
    "mlflow_client",
    "open_existing_storage",
    "seed_values",
    "study_split_note",
]


class ReportError(ValueError):
    """The study, storage or tracking store asked for cannot be used (exit code 2)."""


@dataclass
class TrialRecord:
    """One trial as the report needs it (Optuna storage merged with its MLflow run)."""

    number: int
    state: str
    """COMPLETE, PRUNED, FAIL, RUNNING or WAITING."""
    values: list[float] | None
    """Objective values (COMPLETE only): [w1] or [w1, g_loss_var]."""
    trainable: str | None
    params: dict[str, Any]
    """Searched params under the trainable's own names (compare's prefix stripped)."""
    distributions: dict[str, Any]
    """Optuna distributions of `params`, same names."""
    config: dict[str, Any]
    """Every param of the trained configuration (searched, fixed and defaults)."""
    seeds: list[dict[str, Any]]
    """Per-seed summaries: the trial's user attr plus every final metric from MLflow."""
    final: dict[str, float]
    """Mean metrics over seeds (trial user attr)."""
    mlflow_run_id: str | None
    reason: str | None
    intermediate: dict[int, float]
    """Intermediate values reported for pruning (sliced W2, steps across seeds)."""
    curve: dict[str, Any]
    """Per-step intermediate values of pareto studies (trial user attr)."""

    @property
    def objective(self) -> float | None:
        """The first objective (e.g. W1, mean over seeds), or None if the trial did not
        complete."""
        return self.values[0] if self.values else None


@dataclass
class StudyData:
    """A study loaded for reporting."""

    name: str
    storage: str
    """The storage URL with any password masked."""
    directions: list[str]
    attrs: dict[str, Any]
    trials: list[TrialRecord]
    tracking_uri: str | None
    mlflow: Any
    """mlflow.MlflowClient, or None when the tracking store cannot be read."""
    notes: list[str] = field(default_factory=list)
    """Problems met while loading (shown at the top of the report)."""
    pareto: frozenset[int] = frozenset()
    """Numbers of the trials on the Pareto front (Optuna's `best_trials`) of a study with
    several objectives; empty for one objective."""

    @property
    def objective(self) -> str:
        return str(self.attrs.get("objective", "wasserstein"))

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.attrs.get("settings", {}))

    def state_counts(self) -> dict[str, int]:
        """Number of trials in each state, e.g. {'COMPLETE': 8, 'FAIL': 1}."""
        return dict(Counter(t.state for t in self.trials))

    @property
    def metric_names(self) -> tuple[str, ...]:
        return metric_names(self.objective)

    @property
    def primary(self) -> str:
        """The metric the study minimises first (w1, w1_noise, cfid, ...)."""
        return self.metric_names[0]

    @property
    def label(self) -> str:
        """Short display name of `primary`, e.g. 'W1'."""
        return short_name(self.primary)

    def complete(self, trainable: str | None = None) -> list[TrialRecord]:
        """Complete trials (of one trainable), in trial order."""
        return [
            t
            for t in self.trials
            if t.state == "COMPLETE"
            and t.values
            and all(math.isfinite(v) for v in t.values)
            and (trainable is None or t.trainable == trainable)
        ]

    def trainables(self) -> list[str]:
        """Trainables with at least one complete trial, best objective first."""
        names = {t.trainable for t in self.complete() if t.trainable}
        return sorted(names, key=lambda n: min(t.objective for t in self.complete(n)))

    def best(self, trainable: str) -> TrialRecord:
        """The complete trial of `trainable` with the lowest first objective (mean over seeds)."""
        return min(self.complete(trainable), key=lambda t: t.objective)


def open_existing_storage(url: str) -> Any:
    """Open an Optuna storage that must already exist (never creates an empty one)."""
    try:
        kind = storage_kind(url)
    except StorageError as err:
        raise ReportError(str(err)) from None
    missing: Path | None = None
    if kind == "journal" and not Path(url).exists():
        missing = Path(url)
    elif url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        path = Path(url[len("sqlite:///") :])
        if not path.exists():
            missing = path
    if missing is not None:
        raise ReportError(
            f"storage {mask_url(url)!r} does not exist ({missing} not found); run a study "
            "first (python -m benchmark.study --space ...) or pass the --storage it used"
        )
    try:
        return open_storage(url, heartbeat=False, writable=False)
    except StorageError as err:
        raise ReportError(str(err)) from None


def mlflow_client(uri: str | None) -> tuple[Any, str | None]:
    """(MlflowClient, None) or (None, why it cannot be used); never creates a store.

    A tracking server or database is probed once with a short timeout first: MLflow's own
    client would retry a dead one for minutes before the report could fall back.
    """
    if not uri:
        return None, "the study records no MLflow tracking URI"
    if ":***@" in uri:
        return None, (
            f"the study records its MLflow tracking URI with the password hidden ({uri}); "
            "pass --tracking-uri with the password to read it"
        )
    problem = probe(uri, PROBE_SECONDS)
    if problem is not None:
        return None, f"MLflow tracking store {mask_url(uri)} is not reachable: {problem}"
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///") :])
        if not path.exists():
            return None, f"MLflow store {uri} not found"
    elif "://" not in uri and not Path(uri).exists():
        return None, f"MLflow store {uri} not found"
    try:
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)
    except Exception as err:  # sqlalchemy, OSError, MlflowException: all mean unusable
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        return None, f"MLflow store {mask_url(uri)} cannot be read: {mask_text(first)}"
    return client, None


def load_study_data(name: str, storage_url: str, *, tracking_uri: str | None = None) -> StudyData:
    """Load study `name` and its MLflow runs; ReportError for an unknown study or storage.

    `tracking_uri` defaults to the one the study recorded. When MLflow cannot be read the
    report falls back to what the Optuna storage holds and says so.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_existing_storage(storage_url)
    names = optuna.study.get_all_study_names(storage)
    if name not in names:
        have = f"available: {', '.join(sorted(names))}" if names else "it holds no study yet"
        raise ReportError(f"study {name!r} not found in {mask_url(storage_url)!r}; {have}")
    study = optuna.load_study(study_name=name, storage=storage)
    attrs = dict(study.user_attrs)
    uri = tracking_uri or attrs.get("mlflow_tracking_uri")
    client, problem = mlflow_client(uri)
    notes = []
    if problem:
        notes.append(
            f"{problem}: falling back to the Optuna storage alone; per-seed loss variance, "
            "per-epoch curves and sample grids are missing; pass --tracking-uri to the store "
            "the study logged to"
        )
    data = StudyData(
        name=name,
        storage=mask_url(storage_url),
        directions=[d.name.lower() for d in study.directions],
        attrs=attrs,
        trials=[],
        tracking_uri=mask_url(uri),
        mlflow=client,
        notes=notes,
        pareto=frozenset(t.number for t in study.best_trials)
        if len(study.directions) > 1
        else frozenset(),
    )
    space = attrs.get("space")
    for trial in study.get_trials(deepcopy=False):
        data.trials.append(_record(trial, space, client, notes))
    return data


def _record(trial: Any, space: str | None, client: Any, notes: list[str]) -> TrialRecord:
    config = trial.user_attrs.get(records.CONFIG) or {}
    trainable = config.get("trainable")
    if trainable is None and space is not None:
        trainable = _space_trainable(space)
    prefix = f"{trainable}." if trainable and any("." in k for k in trial.params) else ""
    params, dists = {}, {}
    for key, value in trial.params.items():
        if key == "trainable":
            continue
        short = key[len(prefix) :] if prefix and key.startswith(prefix) else key
        params[short] = value
        dists[short] = trial.distributions[key]
    seeds = [dict(s) for s in trial.user_attrs.get(records.SEEDS, [])]
    run_id = trial.user_attrs.get(records.MLFLOW_RUN_ID)
    if client is not None and run_id and seeds:
        _merge_mlflow_finals(client, run_id, seeds, notes)
    values = list(trial.values) if trial.values is not None else None
    return TrialRecord(
        number=trial.number,
        state=trial.state.name,
        values=values,
        trainable=trainable,
        params=params,
        distributions=dists,
        config=dict(config.get("params", {})),
        seeds=seeds,
        final=dict(trial.user_attrs.get(records.FINAL, {})),
        mlflow_run_id=run_id,
        reason=trial.user_attrs.get(records.REASON),
        intermediate=dict(trial.intermediate_values),
        curve=dict(trial.user_attrs.get(records.CURVE, {})),
    )


def _space_trainable(space: str) -> str | None:
    try:
        return get_space(space).TRAINABLE
    except Exception:
        return None


def _merge_mlflow_finals(
    client: Any, run_id: str, seeds: list[dict[str, Any]], notes: list[str]
) -> None:
    """Add every last-epoch metric MLflow holds for each seed (keys 'seed_<s>/<metric>' when
    the trial trained several seeds, unprefixed for one)."""
    try:
        metrics = client.get_run(run_id).data.metrics
    except Exception as err:
        notes.append(f"MLflow run {run_id} unreadable ({type(err).__name__})")
        return
    multi = len(seeds) > 1
    for summary in seeds:
        prefix = records.seed_metric(summary.get("seed"), multi, "")
        for key, value in metrics.items():
            if prefix and not key.startswith(prefix):
                continue
            if not prefix and ("/" in key):
                continue
            name = key[len(prefix) :]
            summary.setdefault(name, value)


def seed_values(record: TrialRecord, key: str) -> np.ndarray:
    """Finite per-seed values of `key` for one trial (diverged or missing seeds left out)."""
    out = []
    for summary in record.seeds:
        value = summary.get(key)
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if numeric and math.isfinite(float(value)):
            out.append(float(value))
    return np.asarray(out, dtype=float)


def study_split_note(data: StudyData) -> str | None:
    """How the data was split (from the best trial's config.json in MLflow), or None."""
    if data.mlflow is None or not data.complete():
        return None
    best = min(data.complete(), key=lambda t: t.objective)
    if not best.mlflow_run_id or not best.seeds:
        return None
    name = records.seed_artifact(best.seeds[0].get("seed"), len(best.seeds) > 1, "config.json")
    raw = artifact(data, best.mlflow_run_id, name)
    if raw is None:
        return None
    try:
        return json.loads(raw).get("split_note")
    except ValueError:
        return None


def artifact(data: StudyData, run_id: str, path: str) -> bytes | None:
    """The bytes of one of a run's artifacts, or None when it cannot be read."""
    if data.mlflow is None:
        return None
    with tempfile.TemporaryDirectory(prefix="mixbench-report-") as tmp:
        try:
            return Path(data.mlflow.download_artifacts(run_id, path, tmp)).read_bytes()
        except Exception:  # missing artifact, unreachable artifact store
            return None


def history(data: StudyData, record: TrialRecord, key: str) -> np.ndarray | None:
    """(seeds, epochs) per-epoch values of `key` from MLflow (NaN where not logged)."""
    if data.mlflow is None or not record.mlflow_run_id or not record.seeds:
        return None
    epochs = int(data.settings.get("epochs") or 0)
    if epochs < 1:
        return None
    arr = np.full((len(record.seeds), epochs), np.nan)
    multi = len(record.seeds) > 1
    for i, summary in enumerate(record.seeds):
        metric = records.seed_metric(summary.get("seed"), multi, key)
        try:
            history = data.mlflow.get_metric_history(record.mlflow_run_id, metric)
        except Exception:
            return None
        for m in history:
            if 1 <= m.step <= epochs:
                arr[i, m.step - 1] = m.value
    return arr if np.isfinite(arr).any() else None

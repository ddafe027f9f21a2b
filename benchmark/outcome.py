"""Where a study's results go and how its end is told: the study's folder (one per study and
storage), best.json, and the lines printed when a study ends (counts, best trial(s), next
commands).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from benchmark import records
from benchmark.artifacts import json_safe
from benchmark.budget import budget_counts
from benchmark.objectives import get_objective
from benchmark.plan import DEFAULT_STORAGE, StudyPlan, UsageError
from benchmark.progress import format_seconds
from benchmark.storage import JOURNAL_SUFFIXES
from benchmark.tracking import environment_tags
from benchmark.urls import mask_url

__all__ = [
    "best_path",
    "fmt_value",
    "print_best",
    "print_counts",
    "print_next",
    "storage_tag",
    "study_folder",
    "writable_study_folder",
    "write_best",
]


# -- where the results go ------------------------------------------------------------------


def study_folder(plan: StudyPlan) -> Path:
    """Where best.json and ask.lock of this study on this storage go.

    results/studies/<study>/ for the default journal; results/studies/<study>@<storage-tag>/
    for any other storage, so that studies of one name on two storages never share a file.
    The tag is readable (kind and file or database name) plus a hash of where the storage
    is (absolute path, or backend, host, port and database: never the password).
    """
    if _storage_identity(plan.storage) == _storage_identity(DEFAULT_STORAGE):
        return plan.results_dir / plan.study_name
    return plan.results_dir / f"{plan.study_name}@{storage_tag(plan.storage)}"


def _storage_identity(url: str) -> str:
    if "://" not in url:
        return f"journal:{Path(url).absolute()}"
    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() == "sqlite" and database not in ("", ":memory:"):
        database = str(Path(database).absolute())
    return f"{parsed.get_backend_name()}://{parsed.host or ''}:{parsed.port or ''}/{database}"


def storage_tag(url: str) -> str:
    """A short folder-name tag for a storage, e.g. 'sqlite-optuna-3f2a9c1d'."""
    if "://" in url:
        parsed = make_url(url)
        kind = parsed.get_backend_name()
        name = Path(parsed.database or "memory").stem
    else:
        kind, name = "journal", Path(url).stem
    digest = hashlib.sha256(_storage_identity(url).encode()).hexdigest()[:8]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{kind}-{name}") + f"-{digest}"


def best_path(plan: StudyPlan) -> Path:
    """Where best.json is written: --out DIR, else `study_folder(plan)`."""
    folder = plan.out_dir if plan.out_dir is not None else study_folder(plan)
    return folder / "best.json"


def writable_study_folder(plan: StudyPlan) -> Path:
    """The study's ask.lock, created now: a read-only results/ fails here (UsageError),
    before the MLflow parent run or any trial exists."""
    folder = study_folder(plan)
    lock = folder / "ask.lock"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(lock, "a"):
            pass
        # best.json is written into this folder at the end; a probe of its own (invocations
        # starting together, even threads of one process, must not remove each other's)
        handle, probe = tempfile.mkstemp(prefix=".write-test-", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as err:
        raise UsageError(
            f"cannot write to {str(folder)!r} ({err.strerror or err}), where the study keeps "
            "its lock file and best.json; make it writable (chmod u+w) or run from another "
            "folder"
        ) from None
    return lock


# -- the end of a study --------------------------------------------------------------------


def _trial_entry(trial: Any, metric_names: Sequence[str]) -> dict[str, Any]:
    config = trial.user_attrs.get(records.CONFIG, {})
    return {
        "trial": trial.number,
        "values": dict(zip(metric_names, trial.values)),
        "trainable": config.get("trainable"),
        "params": config.get("params", {}),
        "suggested": trial.params,
        "seeds": trial.user_attrs.get(records.SEEDS, []),
        "final": trial.user_attrs.get(records.FINAL, {}),
        "mlflow_run_id": trial.user_attrs.get(records.MLFLOW_RUN_ID),
    }


def write_best(
    plan: StudyPlan, study: optuna.Study, parent_run_id: str, tracking_uri: str
) -> tuple[Path, dict[str, Any]]:
    """Write best.json into `study_folder(plan)`; returns its path and what it holds. It
    records the resolved package versions and git commit (`environment`) beside the result."""

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    names = get_objective(plan.objective).metrics
    if get_objective(plan.objective).multi:
        # Optuna's front; ties in the first objective in trial order, as before
        best = sorted(study.best_trials, key=lambda t: (t.values[0], t.number))
    else:
        best = [min(complete, key=lambda t: t.value)] if complete else []
    doc = {
        "study": plan.study_name,
        "space": plan.space,
        "objective": plan.objective,
        "metrics": list(names),
        "directions": plan.directions,
        "storage": mask_url(plan.storage),
        "mlflow_tracking_uri": mask_url(tracking_uri),
        "mlflow_parent_run_id": parent_run_id,
        "environment": environment_tags(),
        "settings": dataclasses.asdict(plan.settings),
        "fixed_params": plan.overrides,
        "trials": {k: v for k, v in budget_counts(trials).items() if v},
        "best": [_trial_entry(t, names) for t in best],
    }
    path = best_path(plan)
    path.parent.mkdir(parents=True, exist_ok=True)
    safe = json_safe(doc)
    path.write_text(json.dumps(safe, indent=2) + "\n")
    return path, safe


def print_best(plan: StudyPlan, path: Path, doc_best: list[dict[str, Any]]) -> None:
    if not doc_best:
        print(f"{plan.study_name}: no trial completed yet; see {path}")
        return
    head = "pareto-optimal trials" if get_objective(plan.objective).multi else "best trial"
    print(f"{plan.study_name}: {head} (mean over {plan.settings.seeds} seed(s)):")
    for entry in doc_best:
        values = ", ".join(f"{k} {v:.5g}" for k, v in entry["values"].items())
        params = ", ".join(f"{k}={fmt_value(v)}" for k, v in entry["suggested"].items())
        print(f"  #{entry['trial']} {entry['trainable']}: {values}  [{params}]")
        noise = entry.get("final", {}).get("w1_noise")
        if noise is not None and "w1_noise" not in entry["values"]:
            print(
                f"     W1 in noise mode {noise:.5g} (no real image reaches G: copying cannot "
                "help; `--objective wasserstein-noise` searches on it)"
            )
    print(f"written to {path}")


def print_counts(plan: StudyPlan, doc: dict[str, Any], seconds: float) -> None:
    """'<study>: 20 of 20 trials finished (14 complete, 6 pruned), 1 failed, in 1h02m'."""
    counts = doc["trials"]
    done = counts.get("COMPLETE", 0) + counts.get("PRUNED", 0)
    parts = [f"{counts.get('COMPLETE', 0)} complete", f"{counts.get('PRUNED', 0)} pruned"]
    words = {"FAIL": "failed", "RUNNING": "running", "WAITING": "waiting"}
    extra = [f"{counts[k]} {w}" for k, w in words.items() if counts.get(k)]
    print(
        f"{plan.study_name}: {done} of {plan.trials} trials finished ({', '.join(parts)})"
        + (f", {', '.join(extra)}" if extra else "")
        + f"; this session {format_seconds(seconds)}"
    )


def print_next(plan: StudyPlan, tracking_uri: str) -> None:
    """The commands to look at the results, and what to add for confidence intervals."""
    masked = mask_url(plan.storage) or plan.storage
    storage = "" if plan.storage == DEFAULT_STORAGE else f" --storage '{masked}'"
    print(f"next: python -m benchmark.report --study {plan.study_name}{storage}")
    shown = mask_url(tracking_uri) or tracking_uri
    if tracking_uri.startswith(("http://", "https://")):
        print(f"      MLflow: {shown} (the tracking server's UI)")
    else:
        print(f"      MLflow: mlflow ui --backend-store-uri {shown}")
    print(
        "      (at http://127.0.0.1:5000 click Model training, Experiments, mixbench, then +"
        " beside the study's run; see README)"
    )
    if plan.storage.endswith(JOURNAL_SUFFIXES) or plan.storage.startswith("sqlite:"):
        print(f"      Optuna dashboard: optuna-dashboard {plan.storage}")
    if plan.settings.seeds == 1:
        print(
            "note: every trial trained 1 seed, so the report can give no confidence interval "
            "or noise floor; for them add --seeds 3 "
            f"--study-name {plan.study_name}-s3 to this command (a new study, ~3x the time), "
            "or run `python -m benchmark.ablation` on the knobs you care about"
        )


def fmt_value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)

"""The record a study leaves: its trials' and its own user-attr keys, and MLflow's names.

Writers (benchmark.trials, benchmark.study, benchmark.budget) and readers (reports, ablation,
reproduce, the progress display) take the keys from here, so a record is spelled once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "SEED_SUMMARY",
    "STALE_ON_RETRY",
    "epoch_metrics",
    "objective_metric",
    "seed_artifact",
    "seed_folder",
    "seed_metric",
]

# -- a trial's user attrs -------------------------------------------------------------------

CONFIG = "config"
"""{'trainable': variant, 'params': the typed params as a dict} of the trial."""
FINAL = "final"
"""Means over seeds of the last scored epoch's metrics (complete trials)."""
SEEDS = "seeds"
"""One summary per finished seed: SEED_SUMMARY's metrics, status, epochs, artifact paths."""
CURVE = "curve"
"""Multi-objective studies: the intermediate values by step (Optuna keeps none for them)."""
REASON = "reason"
"""Why a trial was pruned or failed ('diverged', a pruner's reason, 'interrupted', an error)."""
DETAIL = "detail"
"""What the divergence rule saw, for a diverged trial."""
RETRIED_FROM = "retried_from"
"""The number of the failed trial a retry re-runs."""
RESUMED = "resumed"
"""Where a trial continued another's checkpoint: {from_trial, seed, epoch}."""
MLFLOW_RUN_ID = "mlflow_run_id"
"""The trial's nested MLflow run."""
WORKER = "worker"
"""'host:pid' of the worker that ran the trial."""
FIXED = "fixed"
"""Params fixed when the trial was enqueued (a space's balancing params, e.g. the variant)."""

STALE_ON_RETRY: dict[str, Any] = {REASON: None, DETAIL: None, SEEDS: [], CURVE: {}}
"""User attrs a retry inherits from its failed trial and must not report as its own."""

# -- the study's user attrs -----------------------------------------------------------------

STUDY_SPACE = "space"
STUDY_OBJECTIVE = "objective"
STUDY_SETTINGS = "settings"
STUDY_OVERRIDES = "overrides"
STUDY_TRIAL_STEPS = "trial_steps"
"""How a trial with several seeds reports to the pruner: 'seed after seed' or 'mean over seeds'."""
STUDY_SAMPLER_SEED = "sampler_seed"
STUDY_INTERMEDIATE_METRIC = "intermediate_metric"
STUDY_PARENT_RUN = "mlflow_parent_run_id"
"""The study's MLflow parent run (every worker process finds it here)."""
STUDY_TRACKING_URI = "mlflow_tracking_uri"

# -- MLflow names -------------------------------------------------------------------------------

SEED_SUMMARY = (
    "w1",
    "g_loss_var",
    "sliced_w2",
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


def seed_metric(seed: int | None, multi: bool, name: str) -> str:
    """MLflow name of one seed's metric: 'seed_<k>/<name>' when a trial has several seeds."""
    return f"seed_{seed}/{name}" if multi else name


def seed_folder(seed: int, multi: bool) -> str | None:
    """Artifact folder of one seed in the trial's run: 'seed_<k>' when it has several seeds."""
    return f"seed_{seed}" if multi else None


def seed_artifact(seed: int | None, multi: bool, name: str) -> str:
    """Path of one seed's artifact `name` in the trial's run ('seed_<k>/<name>' if several)."""
    folder = seed_folder(seed, multi) if seed is not None else None
    return f"{folder}/{name}" if folder else name


def epoch_metrics(seed: int, multi: bool, metrics: Mapping[str, float]) -> dict[str, float]:
    """One scored epoch of one seed under its MLflow names (seed_<k>/ prefix if several)."""
    return {seed_metric(seed, multi, k): v for k, v in metrics.items() if k != "epoch"}


def objective_metric(name: str) -> str:
    """MLflow name of a trial's objective value, logged at step 0 ('objective/w1')."""
    return f"objective/{name}"

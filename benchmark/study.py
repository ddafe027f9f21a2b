"""python -m benchmark.study: an Optuna study over one search space, logged to MLflow.

    python -m benchmark.study --space realmix --trials 30 --epochs 5
    python -m benchmark.study --space compare --trials 30 --gpus all
    python -m benchmark.study --space mixture --objective pareto --workers 2
    python -m benchmark.study --space realmix --population auto --gpus all

Defaults work on a fresh machine: trials go to the journal file results/optuna.journal
(safe for several local worker processes), MLflow to its default store in the working
directory (sqlite:///mlflow.db, so ``mlflow ui`` there shows the runs). Re-running with the
same study name resumes the study: finished (complete or pruned) trials count toward
--trials. The best trial (the Pareto front for --objective pareto) is printed at the end and
written to results/studies/<study>/best.json (other storages: see `study_folder`). A damaged
journal file is refused before anything is written (--repair-journal keeps its readable part).

One worker runs in this process; ``--workers N`` or ``--gpus`` start worker processes (see
`benchmark.launcher`) that share the study. A dead worker's trial is failed and re-queued.
``--population P`` makes each worker train P trials at once as one batched population (see
`benchmark.population`). Ctrl-C, SIGTERM (kill, a job scheduler) and SIGHUP (a closed
terminal) stop the study the same way: the running trials are recorded FAIL (reason
'interrupted', 'interrupted (SIGTERM)', ...), their MLflow runs and the parent run KILLED,
best.json written. Worker processes die with their launcher, even one killed by SIGKILL; the
next invocation then closes the parent run such a launcher left RUNNING.

Exit codes: 0 done (some trials may be pruned or failed), 1 workers kept failing, 2 bad
input (nothing stored is changed), 130 interrupted by Ctrl-C, 143 by SIGTERM, 129 by SIGHUP.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.study import StudyDirection
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from benchmark import records
from benchmark.artifacts import json_safe
from benchmark.budget import budget_counts
from benchmark.cli import HelpFormatter, add_data_dir, add_train_size, parse_overrides
from benchmark.data import DATASETS, IMAGE_DATASETS, DataError
from benchmark.objectives import OBJECTIVES, get_objective, intermediate_metric
from benchmark.progress import StudyProgress, TrialSteps, format_seconds
from benchmark.settings import Settings, SettingsError, setting_changes
from benchmark.signals import interrupt_exit_code, signals_as_interrupt
from benchmark.spec import WorkerSpec
from benchmark.storage import (
    JOURNAL_SUFFIXES,
    PRUNERS,
    SAMPLERS,
    StorageError,
    is_in_memory_sqlite,
    make_sampler,
    open_storage,
    repair_journal,
    storage_kind,
)
from benchmark.tracking import TrackingError, connect, environment_tags
from benchmark.trainable import ParamError
from benchmark.urls import mask_url
from benchmark.writer import account_artifacts, wait_for_writers, writer_lock_dir
from studies import SPACES, SearchSpace, SpaceError, compare, get_space

__all__ = ["UsageError", "StudyPlan", "build_parser", "main", "plan_from_args", "run_plan"]

DEFAULT_STORAGE = "results/optuna.journal"
RESULTS_DIR = Path("results") / "studies"
IGNORED_FOR_RESUME = ("device", "data_dir")
"""Settings that may change between sessions of one study (they do not change results)."""
INTERRUPTED_CODES = (130, 143, 129)
"""Exit codes of a stopped study: Ctrl-C (SIGINT), SIGTERM, SIGHUP (128 + the signal)."""
PARENT_WAIT_SECONDS = 120.0
"""How long an invocation that did not create the study waits for its MLflow parent run."""


class UsageError(ValueError):
    """Bad command-line input (exit code 2)."""


@dataclass
class StudyPlan:
    """Validated options of one invocation, before anything is stored."""

    space: str
    study_name: str
    objective: str
    sampler: str
    pruner: str
    trials: int
    settings: Any
    overrides: dict[str, Any]
    storage: str
    tracking_uri: str | None
    gpus: list[int] | None
    workers: int
    timeout: float | None
    population: int = 1
    """Trials each worker trains at once as one population (0: auto)."""
    results_dir: Path = field(default_factory=lambda: RESULTS_DIR)
    repair_journal: bool = False
    """Repair a damaged journal file (keep its readable prefix) instead of refusing it."""
    sampler_seed: int | None = None
    """Seed of the sampler (recorded with the study; a resume with another is refused)."""
    out_dir: Path | None = None
    """Folder for best.json; None: results_dir/<study>."""

    @classmethod
    def create(
        cls,
        space: str,
        *,
        trials: int = 20,
        objective: str = "wasserstein",
        sampler: str = "tpe",
        pruner: str = "median",
        settings: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        storage: str = DEFAULT_STORAGE,
        tracking_uri: str | None = None,
        gpus: str | None = None,
        device: str | None = None,
        workers: int | None = None,
        timeout: float | None = None,
        population: int = 1,
        repair_journal: bool = False,
        sampler_seed: int | None = None,
        study_name: str | None = None,
        out_dir: Path | None = None,
    ) -> StudyPlan:
        """A validated plan from typed values (the CLI, benchmark.ablation and the tests
        build plans this way); raises on bad input without touching any storage.

        `settings`: changes to the space's settings (`setting_changes` builds them from
        flags); `params`: fixed params (--param), validated against the space's trainables;
        `gpus`: 'all' or GPU indices like '0,1'; `device`: of the in-process worker (--device);
        `population`: 0 for auto.
        """
        found = get_space(space)
        n_workers = workers if workers is not None else 1
        if trials < 1:
            raise UsageError(f"--trials {trials}: must be >= 1")
        if n_workers < 1:
            raise UsageError(f"--workers {workers}: must be >= 1")
        if timeout is not None and not (timeout > 0 and math.isfinite(timeout)):
            raise UsageError(f"--timeout {timeout}: must be a positive number of seconds")
        if device is not None and (gpus is not None or n_workers > 1):
            raise UsageError(
                f"--device {device} sets the device of the one in-process worker; worker "
                "processes run on the CPU (--workers N) or one per GPU (--gpus): drop --device"
            )
        plan = cls(
            space=space,
            study_name=study_name or "",
            objective=objective,
            sampler=sampler,
            pruner=pruner,
            trials=trials,
            settings=_plan_settings(found, objective, {**(settings or {}), "device": device}),
            overrides={},
            storage=storage,
            tracking_uri=tracking_uri,
            gpus=None,
            workers=n_workers,
            timeout=timeout,
            population=population,
            repair_journal=repair_journal,
            sampler_seed=sampler_seed,
            out_dir=out_dir,
        )
        if population != 1 and getattr(found, "TRAINABLE", None) is None:
            raise UsageError(
                f"--population trains one trainable's trials together; space {space!r} "
                "searches over trainables. Use --workers N for it, or one of the "
                "single-trainable spaces with --population"
            )
        plan.settings = _check_objective(plan, found)
        plan.overrides = _overrides(found, params or {})
        _check_storage_and_sampler(plan)
        plan.gpus = _gpus(gpus)
        plan.study_name = study_name or f"{space}-{plan.settings.dataset}-{objective}"
        return plan

    @property
    def directions(self) -> list[str]:
        return get_objective(self.objective).directions

    @property
    def best_path(self) -> Path:
        """Where best.json is written: --out DIR, else `study_folder(self)`."""
        folder = self.out_dir if self.out_dir is not None else study_folder(self)
        return folder / "best.json"


# -- argument parsing --------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argparse parser (long: one flat add_argument per flag, no logic)."""

    p = argparse.ArgumentParser(
        prog="python -m benchmark.study",
        description="Search GAN hyperparameters with Optuna; log every trial to MLflow.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--space", required=True, help=f"search space: {', '.join(SPACES)}")
    p.add_argument("--trials", type=int, default=20, help="finished trials wanted in the study")
    p.add_argument(
        "--epochs", type=int, default=None, help="epochs per run (default: the space's, 5)"
    )
    p.add_argument(
        "--dataset",
        default=None,
        help=f"one of {', '.join(DATASETS)} (default: the space's, mnist)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=None,
        help="seeds trained per trial; the objective is their mean, and the report needs >= 2 "
        "for confidence intervals and a noise floor (default: the space's, 1)",
    )
    p.add_argument(
        "--objective",
        choices=tuple(OBJECTIVES),
        default="wasserstein",
        help="wasserstein: exact W1 at the last epoch; wasserstein-noise: the same for RealMix "
        "samples drawn with no real image; cfid / cfid-noise: classifier-FID (digit data); "
        "pareto: (W1, G-loss variance)",
    )
    p.add_argument("--sampler", choices=SAMPLERS, default="tpe", help="Optuna sampler")
    p.add_argument(
        "--sampler-seed",
        type=int,
        default=None,
        help="seed of the sampler, recorded with the study: the same command samples the same "
        "trials (one worker; with N workers, worker k gets seed+k) (default: unseeded)",
    )
    p.add_argument(
        "--pruner",
        choices=PRUNERS,
        default="median",
        help="pruner fed a metric at every scored epoch: the exact W1 for the W1 objectives "
        "(the objective's own units), sliced W2 for cfid; pareto studies use their own "
        "far-behind rule unless 'none'",
    )
    p.add_argument(
        "--storage",
        default=DEFAULT_STORAGE,
        help="Optuna storage: a journal file (*.journal, *.log) or a database URL "
        "(sqlite:///x.db, postgresql://user:pw@host/db)",
    )
    p.add_argument(
        "--repair-journal",
        action="store_true",
        help="if the journal file is damaged (a torn or garbage line), keep its readable "
        "prefix, move the original aside (next to it, *.damaged-<time>) and go on",
    )
    p.add_argument("--study-name", default=None, help="default: <space>-<dataset>-<objective>")
    p.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI (default: MLflow's, sqlite:///mlflow.db in the working "
        "directory)",
    )
    p.add_argument(
        "--device",
        default=None,
        help="auto, cpu, cuda or cuda:N for the in-process worker (default: auto); worker "
        "processes use --gpus",
    )
    p.add_argument(
        "--gpus",
        default=None,
        help="'all' or a list like 0,1,3: one worker process per GPU (default: none)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="CPU worker processes, or with --gpus workers per GPU (default: 1, in this process)",
    )
    p.add_argument(
        "--population",
        default="1",
        metavar="P|auto",
        help="trials each worker trains at once as one batched population, refilling a "
        "finished trial's slot with a new one; auto: from the device's free memory "
        "(GPU), 2 on a CPU (default: 1, one trial after another)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="start no trial after S seconds (default: no limit)",
    )
    add_data_dir(p)
    add_train_size(p)
    p.add_argument(
        "--n-eval",
        type=int,
        default=None,
        help="generated and held-out samples per side for the exact W1 (default: 1000)",
    )
    p.add_argument("--batch-size", type=int, default=None, help="minibatch size (default: 128)")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="fix a trainable parameter (not searched); repeatable (default: none)",
    )
    p.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set any other run setting, e.g. heldout_size=1000 or eval_every=2; repeatable "
        "(default: none)",
    )
    p.add_argument(
        "--out",
        default=None,
        help="folder for best.json (default: results/studies/<study>)",
    )
    return p


def _overrides(space: SearchSpace, raw: Mapping[str, Any]) -> dict[str, Any]:
    """Typed, validated --param values (ParamError naming the param and its range)."""
    # the trainables (and scipy, for Mixture's t-measures) load only when params are given:
    # --help and most argument errors answer without them
    from benchmark.trainables import params_class

    variants = [space.TRAINABLE] if space.TRAINABLE is not None else list(compare.CHOICES)
    typed: dict[str, Any] = {}
    for key, value in raw.items():
        owners = [v for v in variants if key in params_class(v).names()]
        if not owners:
            valid = sorted({n for v in variants for n in params_class(v).names()})
            raise ParamError(
                f"--param {key}: not a parameter of {' or '.join(variants)}; "
                f"valid: {', '.join(valid)}"
            )
        for variant in owners:
            typed[key] = params_class(variant).from_mapping({key: value}).to_dict()[key]
    return typed


def _gpus(spec: str | None) -> list[int] | None:
    if spec is None:
        return None
    count = torch.cuda.device_count()
    if spec.strip().lower() == "all":
        if count == 0:
            raise UsageError(
                "--gpus all: no CUDA GPU is visible (torch.cuda.device_count() == 0); "
                "drop --gpus, or use --workers N for CPU workers"
            )
        return list(range(count))
    try:
        ids = [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--gpus {spec!r}: use 'all' or GPU indices like 0,1,3") from None
    if not ids or len(set(ids)) != len(ids) or min(ids) < 0:
        raise UsageError(f"--gpus {spec!r}: use 'all' or distinct GPU indices like 0,1,3")
    missing = [i for i in ids if i >= count]
    if missing:
        have = f"GPUs 0..{count - 1}" if count else "no CUDA GPU"
        raise UsageError(
            f"--gpus {spec}: GPU {', '.join(map(str, missing))} not present; this machine has "
            f"{have} (torch.cuda.device_count() == {count})"
        )
    return ids


def population_arg(value: str) -> int:
    """--population as an int (0 for auto); UsageError for bad values."""
    if value.strip().lower() == "auto":
        return 0
    try:
        size = int(value)
    except ValueError:
        size = -1
    if size < 1:
        raise UsageError(
            f"--population {value}: must be a whole number >= 1 or 'auto' (e.g. --population 8)"
        )
    return size


def plan_from_args(args: argparse.Namespace) -> StudyPlan:
    """Validate every option without touching any storage (raises on bad input)."""
    flags = ("epochs", "dataset", "seeds", "data_dir", "train_size", "n_eval")
    changes = setting_changes(
        parse_overrides(args.setting, "--setting", "n_eval=500", error=ParamError),
        {flag: getattr(args, flag, None) for flag in (*flags, "batch_size")},
    )
    return StudyPlan.create(
        args.space,
        trials=args.trials,
        objective=args.objective,
        sampler=args.sampler,
        pruner=args.pruner,
        settings=changes,
        params=parse_overrides(args.param, error=ParamError),
        storage=args.storage,
        tracking_uri=args.tracking_uri,
        gpus=args.gpus,
        device=getattr(args, "device", None),
        workers=args.workers,
        timeout=args.timeout,
        population=population_arg(args.population),
        repair_journal=args.repair_journal,
        sampler_seed=getattr(args, "sampler_seed", None),
        study_name=args.study_name,
        out_dir=Path(args.out) if getattr(args, "out", None) else None,
    )


def _plan_settings(space: SearchSpace, objective: str, changes: Mapping[str, Any]) -> Settings:
    """The space's settings with `changes` (None values ignored); exact W1 every epoch for the
    objectives that prune on it unless set."""
    changes = {k: v for k, v in changes.items() if v is not None}
    if get_objective(objective).exact_every_epoch and "exact_every_epoch" not in changes:
        # the pruner then sees the objective's own metric (exact W1) at every scored epoch,
        # and a pruned trial's value is a W1 like a complete trial's
        changes["exact_every_epoch"] = True
    settings = dataclasses.replace(space.SETTINGS, **changes)  # SettingsError when out of range
    if settings.dataset not in DATASETS:
        raise UsageError(
            f"--dataset {settings.dataset!r} is unknown; valid: {', '.join(DATASETS)}"
        )
    return settings


def _check_objective(plan: StudyPlan, space: SearchSpace) -> Settings:
    """The settings the objective needs (extra metrics for classifier-FID); UsageError when
    it does not fit the space or the dataset."""
    objective = get_objective(plan.objective)
    if not objective.applies_to(getattr(space, "TRAINABLE", None)):
        raise UsageError(
            f"--objective {plan.objective} scores RealMix's noise sampling mode; space "
            f"{plan.space!r} is not a RealMix space (use --objective "
            f"{plan.objective.removesuffix('-noise')})"
        )
    if not objective.needs_labels:
        return plan.settings
    if plan.settings.dataset not in IMAGE_DATASETS:
        raise UsageError(
            f"--objective {plan.objective} needs a digit/image dataset with labels "
            f"({', '.join(IMAGE_DATASETS)}), not {plan.settings.dataset!r}"
        )
    return plan.settings.replace(extra_metrics=True)


def _check_storage_and_sampler(plan: StudyPlan) -> None:
    """UsageError for a storage no worker can share, or a sampler that cannot be made."""
    if storage_kind(plan.storage) == "rdb" and is_in_memory_sqlite(plan.storage):
        raise UsageError(
            f"--storage {plan.storage}: an in-memory SQLite database is private to one "
            "connection, so worker processes (and this process's own worker) cannot share it, "
            "and the study would be lost at exit; use a file, e.g. --storage "
            "sqlite:///results/optuna.db, or the default journal results/optuna.journal"
        )
    if plan.repair_journal and storage_kind(plan.storage) != "journal":
        raise UsageError(
            f"--repair-journal repairs a journal file; --storage {_mask(plan.storage)} is a "
            "database"
        )
    if plan.sampler == "cmaes":
        try:
            import cmaes  # noqa: F401 - only to check it is installed
        except ModuleNotFoundError:
            raise UsageError(
                "--sampler cmaes needs the cmaes package: pip install cmaes"
            ) from None
    seed = plan.sampler_seed
    if seed is not None and not 0 <= seed < 2**32 - 1024:
        raise UsageError(f"--sampler-seed {seed}: must be a whole number from 0 to 2**32 - 1025")
    try:
        make_sampler(plan.sampler, multi_objective=get_objective(plan.objective).multi, seed=seed)
    except ValueError as err:
        raise UsageError(str(err)) from None


# -- study creation / resume ---------------------------------------------------------------


def _settings_key(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if k not in IGNORED_FOR_RESUME}


def check_resume(plan: StudyPlan, attrs: dict[str, Any]) -> None:
    """UsageError when an existing study was created with other fixed options."""
    wanted = {
        "space": plan.space,
        "objective": plan.objective,
        "settings": _settings_key(dataclasses.asdict(plan.settings)),
        "overrides": plan.overrides,
    }
    diffs = []
    stored_seed = attrs.get(records.STUDY_SAMPLER_SEED)
    if plan.sampler_seed != stored_seed:
        diffs.append(
            f"sampler seed: stored {stored_seed!r}, asked {plan.sampler_seed!r} (--sampler-seed)"
        )
    stored = {
        "space": attrs.get(records.STUDY_SPACE),
        "objective": attrs.get(records.STUDY_OBJECTIVE),
        "settings": _settings_key(attrs.get(records.STUDY_SETTINGS, {})),
        "overrides": attrs.get(records.STUDY_OVERRIDES, {}),
    }
    if plan.settings.seeds > 1:
        steps = _trial_steps(plan.population)
        stored_steps = attrs.get(records.STUDY_TRIAL_STEPS, _trial_steps(1))
        if steps != stored_steps:
            diffs.append(
                f"pruning steps: stored {stored_steps!r}, asked {steps!r} (with --seeds > 1 "
                "a study keeps either --population 1 or --population > 1)"
            )
    for key in ("space", "objective"):
        if wanted[key] != stored[key]:
            diffs.append(f"{key}: stored {stored[key]!r}, asked {wanted[key]!r}")
    for group in ("settings", "overrides"):
        for k in sorted(set(wanted[group]) | set(stored[group])):
            a, b = stored[group].get(k), wanted[group].get(k)
            if a != b:
                hint = EXACT_HINT if k == "exact_every_epoch" and a is False else ""
                diffs.append(f"{k}: stored {a!r}, asked {b!r}{hint}")
    if diffs:
        raise UsageError(
            f"study {plan.study_name!r} already exists with other fixed options "
            f"({'; '.join(diffs)}); resume it with the same options or pass a new --study-name"
        )


EXACT_HINT = (
    " (a study made before W1 was scored every epoch: add --setting exact_every_epoch=false "
    "to resume it; its pruner then keeps seeing sliced W2)"
)


def _trial_steps(population: int) -> str:
    """How a trial with several seeds reports intermediate values to the pruner."""
    return "seed after seed" if population == 1 else "mean over seeds"


def _existing_study_attrs(storage: Any, name: str) -> dict[str, Any] | None:
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return None
    return storage.get_study_user_attrs(study_id)


def _open_study(plan: StudyPlan, storage: Any, tracker: Any) -> tuple[Any, str, bool]:
    """(study, MLflow parent run id, resumed?): create the study or resume it.

    The parent run id is a study user attr, so every worker process finds it; a resumed
    study whose parent run is not in this tracking store gets a new parent run. When several
    invocations start together on one database (several machines, `--scale worker=N`), the
    one whose create_new_study succeeded makes the parent run; the others wait for it, so a
    study has one parent run.
    """
    try:
        storage.create_new_study(
            [StudyDirection[d.upper()] for d in plan.directions], plan.study_name
        )
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        created = False
    study = optuna.load_study(study_name=plan.study_name, storage=storage)
    attrs = study.user_attrs
    if not created and "mlflow_parent_run_id" not in attrs:
        attrs = _wait_for_parent(
            storage, storage.get_study_id_from_name(plan.study_name), plan.study_name
        )
        if records.STUDY_SPACE in attrs:
            check_resume(plan, attrs)
    resumed = records.STUDY_SPACE in attrs
    tags = {
        "space": plan.space,
        "objective": plan.objective,
        "sampler": plan.sampler,
        "pruner": plan.pruner,
        "trials": str(plan.trials),
        "storage": _mask(plan.storage),
        "sampler_seed": str(plan.sampler_seed),
    }
    parent = attrs.get(records.STUDY_PARENT_RUN)
    if parent is not None and tracker.resume_study(parent):
        tracker.set_tags(parent, tags)
        return study, parent, resumed
    params = {
        "space": plan.space,
        "objective": plan.objective,
        **{f"settings.{k}": v for k, v in dataclasses.asdict(plan.settings).items()},
        **{f"fixed.{k}": v for k, v in plan.overrides.items()},
    }
    parent = tracker.start_study(plan.study_name, tags=tags, params=params)
    if not resumed:
        study.set_user_attr(records.STUDY_SPACE, plan.space)
        study.set_user_attr(records.STUDY_OBJECTIVE, plan.objective)
        study.set_user_attr(records.STUDY_SETTINGS, dataclasses.asdict(plan.settings))
        study.set_user_attr(records.STUDY_OVERRIDES, plan.overrides)
        study.set_user_attr(records.STUDY_TRIAL_STEPS, _trial_steps(plan.population))
        study.set_user_attr(records.STUDY_SAMPLER_SEED, plan.sampler_seed)
        study.set_user_attr(records.STUDY_INTERMEDIATE_METRIC, _intermediate(plan))
        _name_metrics(study, plan.objective)
    study.set_user_attr(records.STUDY_PARENT_RUN, parent)
    study.set_user_attr(records.STUDY_TRACKING_URI, _mask(tracker.tracking_uri))
    return study, parent, resumed


def _intermediate(plan: StudyPlan) -> str:
    return intermediate_metric(plan.objective, plan.settings.exact_every_epoch)


def _name_metrics(study: Any, objective: str) -> None:
    """Name the objective(s) for optuna-dashboard and trials_dataframe (not 'Objective 0')."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(get_objective(objective).metrics))


def _wait_for_parent(storage: Any, study_id: int, name: str) -> dict[str, Any]:
    """The study's user attrs once another invocation has recorded its MLflow parent run
    (at most PARENT_WAIT_SECONDS; then the attrs as they are, and this one makes its own)."""
    deadline = time.monotonic() + PARENT_WAIT_SECONDS
    while True:
        attrs = storage.get_study_user_attrs(study_id)
        if records.STUDY_PARENT_RUN in attrs:
            return attrs
        if time.monotonic() >= deadline:
            print(
                f"study {name!r} was created by another invocation that has not recorded its "
                f"MLflow parent run in {PARENT_WAIT_SECONDS:g} s; making a new one",
                file=sys.stderr,
            )
            return attrs
        time.sleep(0.5)


def _mask(url: str) -> str:
    return mask_url(url) or url


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


# -- progress and the end report -------------------------------------------------------------


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
    path = plan.best_path
    path.parent.mkdir(parents=True, exist_ok=True)
    safe = json_safe(doc)
    path.write_text(json.dumps(safe, indent=2) + "\n")
    return path, safe


def _print_best(plan: StudyPlan, path: Path, doc_best: list[dict[str, Any]]) -> None:
    if not doc_best:
        print(f"{plan.study_name}: no trial completed yet; see {path}")
        return
    head = "pareto-optimal trials" if get_objective(plan.objective).multi else "best trial"
    print(f"{plan.study_name}: {head} (mean over {plan.settings.seeds} seed(s)):")
    for entry in doc_best:
        values = ", ".join(f"{k} {v:.5g}" for k, v in entry["values"].items())
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in entry["suggested"].items())
        print(f"  #{entry['trial']} {entry['trainable']}: {values}  [{params}]")
        noise = entry.get("final", {}).get("w1_noise")
        if noise is not None and "w1_noise" not in entry["values"]:
            print(
                f"     W1 in noise mode {noise:.5g} (no real image reaches G: copying cannot "
                "help; `--objective wasserstein-noise` searches on it)"
            )
    print(f"written to {path}")


def _print_counts(plan: StudyPlan, doc: dict[str, Any], seconds: float) -> None:
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


def _print_next(plan: StudyPlan, tracking_uri: str) -> None:
    """The commands to look at the results, and what to add for confidence intervals."""
    storage = "" if plan.storage == DEFAULT_STORAGE else f" --storage '{_mask(plan.storage)}'"
    print(f"next: python -m benchmark.report --study {plan.study_name}{storage}")
    shown = _mask(tracking_uri)
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


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# -- running -------------------------------------------------------------------------------


def run_plan(
    plan: StudyPlan, *, stream: Any = None, prepare: Callable[[Any], None] | None = None
) -> int:
    """Open storage and tracking, create or resume the study, run the workers, report.

    `prepare(study)` runs once the study and its MLflow parent run exist, before any worker
    starts (benchmark.ablation enqueues its design there).
    """
    main_thread = threading.current_thread() is threading.main_thread()
    sigint = signal.getsignal(signal.SIGINT) if main_thread else None
    try:
        return _run_plan(plan, stream=stream, prepare=prepare)
    finally:
        # the launcher ignores stop signals while it stops its workers and the study wraps
        # up; an in-process caller (benchmark.ablation, a notebook, the tests) gets its
        # Ctrl-C handler back afterwards
        if sigint is not None:
            signal.signal(signal.SIGINT, sigint)


def _run_plan(
    plan: StudyPlan, *, stream: Any = None, prepare: Callable[[Any], None] | None = None
) -> int:
    """run_plan's body, run with the caller's SIGINT handler restored afterwards.

    About 90 lines: the main job's steps in the order they must happen (checks before anything
    is written, the MLflow parent run before any worker); each step is one call.
    """
    # The training side (torch, POT, MLflow, the trainables) is imported once the arguments
    # are checked, so that --help and bad input answer fast.
    from benchmark.launcher import (
        close_stale_parent,
        cpu_slots,
        gpu_slots,
        launch,
        mark_invocation,
        recover_orphans,
        warm_up,
    )
    from benchmark.runner import load_data, resolve_device
    from benchmark.worker import run_worker

    started = time.perf_counter()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if plan.repair_journal:
        print(repair_journal(Path(plan.storage)), file=sys.stderr)
    storage = open_storage(plan.storage)  # StorageError: bad, damaged or unreachable
    attrs = _existing_study_attrs(storage, plan.study_name)
    if attrs is not None and records.STUDY_SPACE in attrs:
        check_resume(plan, attrs)  # before anything is written
    lock = _writable_study_folder(plan)  # UsageError: read-only results/
    in_process = plan.gpus is None and plan.workers == 1
    if not in_process:
        warm_up()
    device_spec = plan.settings.device if in_process else "cpu"
    data = load_data(plan.settings, resolve_device(device_spec))  # DataError: exit 2
    with _quiet_mlflow_db_setup():
        tracker = connect(plan.tracking_uri)  # TrackingError: exit 2
    if attrs is not None:
        stale = close_stale_parent(tracker, attrs.get(records.STUDY_PARENT_RUN))
        if stale:
            print(stale, file=sys.stderr)
    study, parent, resumed = _open_study(plan, storage, tracker)
    mark_invocation(tracker, parent, "running")
    err = stream if stream is not None else sys.stderr
    for line in startup_summary(plan, study, data, tracker.tracking_uri, resumed, in_process):
        print(line, file=err)
    recovered = recover_orphans(study, storage, tracker=tracker)
    if recovered:
        print(f"re-queued trial(s) {recovered} left running by a dead worker", file=sys.stderr)
    if prepare is not None:
        prepare(study)
    spec = _worker_spec(plan, tracker.tracking_uri, lock, device_spec)
    progress = StudyProgress(
        study,
        plan.trials,
        plan.objective,
        stream,
        steps=trial_steps(plan),
        metric=_intermediate(plan),
        best_metric=get_objective(plan.objective).metrics[0],
    )
    progress.update()
    code = 0
    try:
        with signals_as_interrupt():  # SIGTERM, SIGHUP: stop as on Ctrl-C
            if in_process:
                code = run_worker(
                    spec,
                    on_trial_end=progress.update,
                    storage=storage,
                    data=data,
                    tracker=tracker,
                    on_epoch=progress.update,
                )
            else:
                slots = (
                    gpu_slots(plan.gpus, plan.workers)
                    if plan.gpus is not None
                    else cpu_slots(plan.workers)
                )
                code = launch(
                    spec,
                    slots,
                    study=study,
                    storage=storage,
                    tracker=tracker,
                    on_tick=progress.update,
                )
    except KeyboardInterrupt as err:
        code = interrupt_exit_code(err)
    progress.update()
    progress.close()  # after Ctrl-C the bar's line is still open: end it
    _finish(plan, study, parent, tracker, lock, code, time.perf_counter() - started)
    return code


def _worker_spec(plan: StudyPlan, tracking_uri: str, lock: Path, device: str) -> WorkerSpec:
    """What every worker of this invocation gets (in-process or forked)."""
    return WorkerSpec(
        study_name=plan.study_name,
        storage=str(Path(plan.storage).absolute()) if "://" not in plan.storage else plan.storage,
        space=plan.space,
        objective=plan.objective,
        sampler=plan.sampler,
        pruner=plan.pruner,
        trials=plan.trials,
        settings=dataclasses.asdict(plan.settings),
        tracking_uri=tracking_uri,
        lock_path=str(lock.absolute()),
        overrides=plan.overrides,
        deadline=time.time() + plan.timeout if plan.timeout else None,
        device=device,
        population=plan.population,
        sampler_seed=plan.sampler_seed,
    )


def _finish(
    plan: StudyPlan,
    study: optuna.Study,
    parent: str,
    tracker: Any,
    lock: Path,
    code: int,
    seconds: float,
) -> None:
    """After the workers: MLflow brought in line with the study, best.json, the ending."""
    from benchmark.launcher import mark_invocation  # the training side: see _run_plan

    _wait_for_writers(lock)
    _close_stale_runs(tracker, parent, study)
    _account_artifacts(tracker, parent, study)
    path, doc = write_best(plan, study, parent, tracker.tracking_uri)
    status = "FINISHED" if code == 0 else "KILLED" if code in INTERRUPTED_CODES else "FAILED"
    tracker.client.log_artifact(parent, str(path))
    _log_best_metrics(tracker, parent, doc)
    mark_invocation(tracker, parent, "ended")
    tracker.end_study(parent, status)
    _print_counts(plan, doc, seconds)
    _print_best(plan, path, doc["best"])
    if code in INTERRUPTED_CODES:
        print(
            "interrupted: the running trial(s) were recorded as FAIL; run the same command "
            "again to resume",
            file=sys.stderr,
        )
    _print_next(plan, tracker.tracking_uri)


def _writable_study_folder(plan: StudyPlan) -> Path:
    """The study's ask.lock, created now: a read-only results/ fails here (UsageError),
    before the MLflow parent run or any trial exists."""
    folder = study_folder(plan)
    lock = folder / "ask.lock"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(lock, "a"):
            pass
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_text("")  # best.json is written into this folder at the end
        probe.unlink()
    except OSError as err:
        raise UsageError(
            f"cannot write to {str(folder)!r} ({err.strerror or err}), where the study keeps "
            "its lock file and best.json; make it writable (chmod u+w) or run from another "
            "folder"
        ) from None
    return lock


@contextlib.contextmanager
def _quiet_mlflow_db_setup() -> Any:
    """MLflow logs 'Creating initial MLflow database tables...' at INFO on a fresh store; the
    start-up summary says where tracking goes instead."""
    logger = logging.getLogger("mlflow.store.db.utils")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def trial_steps(plan: StudyPlan) -> Any:
    """How a trial's reported steps map to seeds and epochs (the worker's own rule)."""
    s = plan.settings
    scored = tuple(e for e in range(1, s.epochs + 1) if s.scored(e))
    return TrialSteps(s.epochs, scored, s.seeds, seed_after_seed=plan.population == 1)


def _space_params(space: Any) -> list[str]:
    """The names a space suggests (one pass with a recording trial; compare: one branch)."""

    class Recorder:
        def __init__(self) -> None:
            self.names: list[str] = []

        def suggest_float(self, name: str, low: float, high: float, **_: Any) -> float:
            self.names.append(name)
            return low

        def suggest_int(self, name: str, low: int, high: int, **_: Any) -> int:
            self.names.append(name)
            return low

        def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
            self.names.append(name)
            return choices[0]

    rec = Recorder()
    with contextlib.suppress(Exception):  # a summary line is not worth failing a study for
        space.suggest(rec)
    return rec.names


def startup_summary(
    plan: StudyPlan, study: Any, data: Any, tracking_uri: str, resumed: bool, in_process: bool
) -> list[str]:
    """What this invocation is about to do, printed before the first trial starts."""

    from benchmark.runner import resolve_device  # the training side: see _run_plan

    s = plan.settings
    space = get_space(plan.space)
    trials = study.get_trials(deepcopy=False)
    done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    state = f"resuming: {done} of {plan.trials} trials finished" if resumed else "new study"
    params = [p for p in _space_params(space) if p not in plan.overrides]
    fixed = ", ".join(f"{k}={_fmt(v)}" for k, v in plan.overrides.items())
    steps = trial_steps(plan)
    metric = _intermediate(plan)
    if in_process:
        where = f"{resolve_device(s.device)}, 1 worker in this process"
    elif plan.gpus is not None:
        gpus = ",".join(map(str, plan.gpus))
        where = f"GPU(s) {gpus}, {plan.workers} worker process(es) per GPU"
    else:
        where = f"cpu, {plan.workers} worker processes"
    population = "auto" if plan.population == 0 else str(plan.population)
    seed = (
        f"seed {plan.sampler_seed}"
        if plan.sampler_seed is not None
        else "unseeded (--sampler-seed N makes the sampling reproducible)"
    )
    seeds = f"{s.seeds} seed{'s' if s.seeds > 1 else ''} per trial" + (
        " (no confidence intervals: --seeds 3 gives them)" if s.seeds == 1 else ""
    )
    if tracking_uri.startswith(("http://", "https://")):
        ui = f"{mask_url(tracking_uri)} (the server's UI)"
    else:
        shown = mask_url(tracking_uri)
        ui = f"{shown} (mlflow ui --backend-store-uri {shown})"
    space_line = f"{plan.space}: searches {', '.join(params) or '(nothing)'}"
    return [
        f"study {plan.study_name} ({state})",
        f"  space     {space_line}" + (f"; fixed {fixed}" if fixed else ""),
        f"  budget    {plan.trials} trials x {s.epochs} epochs, {seeds}, batch {s.batch_size}",
        f"  objective {plan.objective}: {_objective_text(plan)}",
        f"  pruning   {plan.pruner} on {metric} at each of {steps.total} scored step(s) per trial",
        f"  data      {data.name}: {data.split_note}",
        f"  device    {where}, population {population}",
        f"  sampler   {plan.sampler}, {seed}",
        f"  storage   {mask_url(plan.storage)}",
        f"  tracking  {ui}",
    ]


def _objective_text(plan: StudyPlan) -> str:
    return get_objective(plan.objective).text.format(n=plan.settings.n_eval)


def _close_stale_runs(tracker: Any, parent: str, study: Any) -> None:
    """End the MLflow runs of ended trials that a worker left RUNNING (see
    Tracker.close_stale_trials), so the MLflow UI agrees with the study."""
    outcomes = {}
    for t in study.get_trials(deepcopy=False):
        reason = str(t.user_attrs.get(records.REASON, ""))
        if t.state == TrialState.FAIL:
            outcome = "INTERRUPTED" if reason.startswith("interrupted") else "FAIL"
        elif t.state in (TrialState.COMPLETE, TrialState.PRUNED):
            outcome = t.state.name
        else:
            continue
        outcomes[t.number] = (outcome, reason or None)
    with contextlib.suppress(Exception):  # the study's results are stored; this is tidying
        ended = tracker.close_stale_trials(parent, outcomes)
        if ended:
            print(f"ended the MLflow runs left RUNNING of trial(s) {ended}", file=sys.stderr)


def _wait_for_writers(lock: Path) -> None:
    """Wait for artifact writers a killed worker left finishing its queue (benchmark.writer)."""
    if wait_for_writers(writer_lock_dir(lock)):
        print("waited for the artifact writer(s) of stopped workers", file=sys.stderr)


def _account_artifacts(tracker: Any, parent: str, study: Any) -> None:
    """Tag each trial run with the artifacts it has and, where some are missing, which."""
    try:
        missing = account_artifacts(tracker, parent, study.get_trials(deepcopy=False))
    except Exception as err:  # the results are stored; this is accounting
        print(f"could not check the trials' artifacts: {err}", file=sys.stderr)
        return
    for number, paths in sorted(missing.items()):
        print(f"trial {number}: artifacts missing: {' '.join(paths)}", file=sys.stderr)


def _log_best_metrics(tracker: Any, parent: str, doc: dict[str, Any]) -> None:
    if not get_objective(doc["objective"]).multi and doc["best"]:
        value = doc["best"][0]["values"].get("w1")
        if value is not None:
            tracker.log_metrics(parent, {"best_w1": value}, 0)
    done = doc["trials"].get("COMPLETE", 0) + doc["trials"].get("PRUNED", 0)
    tracker.log_metrics(parent, {"finished_trials": done}, 0)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (2 for bad input, 130/143/129 when stopped by
    Ctrl-C/SIGTERM/SIGHUP)."""

    parser = build_parser()
    args = parser.parse_args(argv)
    bad_input = (
        UsageError,
        SpaceError,
        ParamError,
        SettingsError,
        StorageError,
        TrackingError,
        DataError,
    )
    try:
        plan = plan_from_args(args)
        return run_plan(plan)
    except bad_input as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())

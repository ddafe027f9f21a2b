"""A typed, validated study plan: `StudyPlan.create` checks every option (space, objective,
settings, fixed params, storage, sampler, GPUs) before anything is stored, and `check_resume`
refuses to resume a study with other fixed options.

The CLI (`benchmark.study`), `benchmark.ablation` and the tests build plans here; running one
is `benchmark.study.run_plan`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmark import records
from benchmark.data import DATASETS, IMAGE_DATASETS
from benchmark.objectives import get_objective
from benchmark.settings import Settings
from benchmark.storage import is_in_memory_sqlite, make_sampler, storage_kind
from benchmark.trainable import ParamError
from benchmark.urls import mask_url
from studies import SearchSpace, compare, get_space

__all__ = [
    "DEFAULT_STORAGE",
    "RESULTS_DIR",
    "StudyPlan",
    "UsageError",
    "check_resume",
    "trial_steps_mode",
]

DEFAULT_STORAGE = "results/optuna.journal"
RESULTS_DIR = Path("results") / "studies"
IGNORED_FOR_RESUME = ("device", "data_dir")
"""Settings that may change between sessions of one study (they do not change results)."""


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
    checkpoint_every: int = 5
    """Epochs between checkpoints of a trial trained alone (--population 1; 0: none)."""

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
        checkpoint_every: int = 5,
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
        if checkpoint_every < 0:
            raise UsageError(
                f"--checkpoint-every {checkpoint_every}: must be >= 0 (0: no checkpoints)"
            )
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
            checkpoint_every=checkpoint_every,
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


# -- checks --------------------------------------------------------------------------------


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
        shown = mask_url(plan.storage) or plan.storage
        raise UsageError(
            f"--repair-journal repairs a journal file; --storage {shown} is a database"
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


# -- resume --------------------------------------------------------------------------------


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
        steps = trial_steps_mode(plan.population)
        stored_steps = attrs.get(records.STUDY_TRIAL_STEPS, trial_steps_mode(1))
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


def trial_steps_mode(population: int) -> str:
    """How a trial with several seeds reports intermediate values to the pruner."""
    return "seed after seed" if population == 1 else "mean over seeds"

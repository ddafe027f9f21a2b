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
written to results/studies/<study>/best.json.

One worker runs in this process; ``--workers N`` or ``--gpus`` start worker processes (see
`benchmark.launcher`) that share the study. A dead worker's trial is failed and re-queued.
``--population P`` makes each worker train P trials at once as one batched population (see
`benchmark.population`). Ctrl-C (or SIGTERM) records the running trials as FAIL and their
MLflow runs as KILLED.

Exit codes: 0 done (some trials may be pruned or failed), 1 workers kept failing, 2 bad
input (nothing stored is changed), 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import sys
import time
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["UsageError", "StudyPlan", "build_parser", "main", "plan_from_args", "run_plan"]

DEFAULT_STORAGE = "results/optuna.journal"
RESULTS_DIR = Path("results") / "studies"
OBJECTIVES = ("wasserstein", "wasserstein-noise", "cfid", "cfid-noise", "pareto")
IGNORED_FOR_RESUME = ("device", "data_dir")
"""Settings that may change between sessions of one study (they do not change results)."""
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

    @property
    def directions(self) -> list[str]:
        return ["minimize"] * (2 if self.objective == "pareto" else 1)


# -- argument parsing --------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argparse parser."""
    from benchmark.worker import PRUNERS, SAMPLERS
    from studies import SPACES

    p = argparse.ArgumentParser(
        prog="python -m benchmark.study",
        description="Search GAN hyperparameters with Optuna; log every trial to MLflow.",
    )
    p.add_argument("--space", required=True, help=f"search space: {', '.join(SPACES)}")
    p.add_argument("--trials", type=int, default=20, help="finished trials wanted in the study")
    p.add_argument("--epochs", type=int, default=None, help="epochs per run (space default)")
    p.add_argument("--dataset", default=None, help="dataset (space default: mnist)")
    p.add_argument("--seeds", type=int, default=None, help="seeds trained per trial (mean)")
    p.add_argument(
        "--objective",
        choices=OBJECTIVES,
        default="wasserstein",
        help="wasserstein: exact W1 at the last epoch; wasserstein-noise: the same for RealMix "
        "samples drawn with no real image; cfid / cfid-noise: classifier-FID (digit data); "
        "pareto: (W1, G-loss variance)",
    )
    p.add_argument("--sampler", choices=SAMPLERS, default="tpe")
    p.add_argument(
        "--pruner",
        choices=PRUNERS,
        default="median",
        help="pareto studies use their own far-behind rule unless 'none'",
    )
    p.add_argument(
        "--storage",
        default=DEFAULT_STORAGE,
        help="journal file (*.journal, *.log) or database URL (sqlite:///x.db, "
        "postgresql://user:pw@host/db)",
    )
    p.add_argument("--study-name", default=None, help="default: <space>-<dataset>-<objective>")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (MLflow default)")
    p.add_argument("--gpus", default=None, help="'all' or a list like 0,1,3: one worker per GPU")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="CPU worker processes (with --gpus: workers per GPU)",
    )
    p.add_argument(
        "--population",
        default="1",
        metavar="P|auto",
        help="trials each worker trains at once as one batched population, refilling a "
        "finished trial's slot with a new one; auto: from the device's free memory "
        "(GPU), 2 on a CPU (default 1: one trial after another)",
    )
    p.add_argument("--timeout", type=float, default=None, help="start no trial after S seconds")
    p.add_argument("--data-dir", default=None, help="folder with one sub-folder per dataset")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="fix a trainable parameter (not searched)",
    )
    p.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set any other run setting, e.g. n_eval=500 or batch_size=64",
    )
    return p


def _coerce_setting(name: str, hint: Any, value: str) -> Any:
    optional = type(None) in typing.get_args(hint)
    base = next((a for a in typing.get_args(hint) if a is not type(None)), hint)
    if optional and value.lower() in ("none", ""):
        return None
    try:
        if base is bool:
            low = value.lower()
            if low not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(value)
            return low in ("1", "true", "yes", "on")
        return base(value)
    except ValueError:
        raise UsageError(
            f"--setting {name}={value!r} is not a valid {getattr(base, '__name__', base)}"
        ) from None


def _settings(space: Any, args: argparse.Namespace) -> Any:
    from benchmark.data import DATASETS
    from benchmark.settings import Settings

    hints = typing.get_type_hints(Settings)
    from benchmark.train import parse_overrides

    extra = parse_overrides(args.setting, "--setting", "n_eval=500")
    changes: dict[str, Any] = {}
    for name, value in extra.items():
        if name not in hints:
            raise UsageError(
                f"--setting {name}: unknown setting; valid: {', '.join(sorted(hints))}"
            )
        changes[name] = _coerce_setting(name, hints[name], value)
    for flag in ("epochs", "dataset", "seeds", "data_dir"):
        if getattr(args, flag) is not None:
            changes[flag] = getattr(args, flag)
    settings = dataclasses.replace(space.SETTINGS, **changes)  # SettingsError when out of range
    if settings.dataset not in DATASETS:
        raise UsageError(
            f"--dataset {settings.dataset!r} is unknown; valid: {', '.join(DATASETS)}"
        )
    return settings


def _overrides(space_name: str, space: Any, items: Sequence[str]) -> dict[str, Any]:
    """Typed, validated --param values (ParamError naming the param and its range)."""
    from benchmark.train import parse_overrides
    from benchmark.trainable import ParamError
    from benchmark.trainables import params_class
    from studies import compare

    raw = parse_overrides(items)
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
    import torch

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


def _population(value: str, space: Any, space_name: str) -> int:
    """--population as an int (0 for auto); UsageError for bad values or spaces."""
    if value.strip().lower() == "auto":
        size = 0
    else:
        try:
            size = int(value)
        except ValueError:
            size = -1
        if size < 1:
            raise UsageError(
                f"--population {value}: must be a whole number >= 1 or 'auto' "
                "(e.g. --population 8)"
            )
    if size != 1 and getattr(space, "TRAINABLE", None) is None:
        raise UsageError(
            f"--population trains one trainable's trials together; space {space_name!r} "
            "searches over trainables. Use --workers N for it, or one of the single-trainable "
            "spaces with --population"
        )
    return size


def plan_from_args(args: argparse.Namespace) -> StudyPlan:
    """Validate every option without touching any storage (raises on bad input)."""
    from benchmark.worker import make_sampler, storage_kind
    from studies import get_space

    space = get_space(args.space)
    if args.trials < 1:
        raise UsageError(f"--trials {args.trials}: must be >= 1")
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers {args.workers}: must be >= 1")
    if args.timeout is not None and not (args.timeout > 0 and math.isfinite(args.timeout)):
        raise UsageError(f"--timeout {args.timeout}: must be a positive number of seconds")
    settings = _settings(space, args)
    population = _population(args.population, space, args.space)
    from benchmark.worker import CLASSIFIER_OBJECTIVES, NOISE_OBJECTIVES

    if args.objective in NOISE_OBJECTIVES and getattr(space, "TRAINABLE", None) != "realmix":
        raise UsageError(
            f"--objective {args.objective} scores RealMix's noise sampling mode; space "
            f"{args.space!r} is not a RealMix space (use --objective "
            f"{args.objective.removesuffix('-noise')})"
        )
    if args.objective in CLASSIFIER_OBJECTIVES:
        from benchmark.data import IMAGE_DATASETS

        if settings.dataset not in IMAGE_DATASETS:
            raise UsageError(
                f"--objective {args.objective} needs a digit/image dataset with labels "
                f"({', '.join(IMAGE_DATASETS)}), not {settings.dataset!r}"
            )
        settings = settings.replace(extra_metrics=True)
    overrides = _overrides(args.space, space, args.param)
    storage_kind(args.storage)
    if args.sampler == "cmaes":
        try:
            import cmaes  # noqa: F401
        except ModuleNotFoundError:
            raise UsageError(
                "--sampler cmaes needs the cmaes package: pip install cmaes"
            ) from None
    try:
        make_sampler(args.sampler, multi_objective=args.objective == "pareto")
    except ValueError as err:
        raise UsageError(str(err)) from None
    gpus = _gpus(args.gpus)
    name = args.study_name or f"{args.space}-{settings.dataset}-{args.objective}"
    return StudyPlan(
        space=args.space,
        study_name=name,
        objective=args.objective,
        sampler=args.sampler,
        pruner=args.pruner,
        trials=args.trials,
        settings=settings,
        overrides=overrides,
        storage=args.storage,
        tracking_uri=args.tracking_uri,
        gpus=gpus,
        workers=args.workers or 1,
        timeout=args.timeout,
        population=population,
    )


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
    stored = {
        "space": attrs.get("space"),
        "objective": attrs.get("objective"),
        "settings": _settings_key(attrs.get("settings", {})),
        "overrides": attrs.get("overrides", {}),
    }
    diffs = []
    if plan.settings.seeds > 1:
        steps = _trial_steps(plan.population)
        stored_steps = attrs.get("trial_steps", _trial_steps(1))
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
                diffs.append(f"{k}: stored {a!r}, asked {b!r}")
    if diffs:
        raise UsageError(
            f"study {plan.study_name!r} already exists with other fixed options "
            f"({'; '.join(diffs)}); resume it with the same options or pass a new --study-name"
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
    import optuna
    from optuna.study import StudyDirection

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
        if "space" in attrs:
            check_resume(plan, attrs)
    resumed = "space" in attrs
    tags = {
        "space": plan.space,
        "objective": plan.objective,
        "sampler": plan.sampler,
        "pruner": plan.pruner,
        "trials": str(plan.trials),
        "storage": _mask(plan.storage),
    }
    parent = attrs.get("mlflow_parent_run_id")
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
        study.set_user_attr("space", plan.space)
        study.set_user_attr("objective", plan.objective)
        study.set_user_attr("settings", dataclasses.asdict(plan.settings))
        study.set_user_attr("overrides", plan.overrides)
        study.set_user_attr("trial_steps", _trial_steps(plan.population))
    study.set_user_attr("mlflow_parent_run_id", parent)
    study.set_user_attr("mlflow_tracking_uri", tracker.tracking_uri)
    return study, parent, resumed


def _wait_for_parent(storage: Any, study_id: int, name: str) -> dict[str, Any]:
    """The study's user attrs once another invocation has recorded its MLflow parent run
    (at most PARENT_WAIT_SECONDS; then the attrs as they are, and this one makes its own)."""
    deadline = time.monotonic() + PARENT_WAIT_SECONDS
    while True:
        attrs = storage.get_study_user_attrs(study_id)
        if "mlflow_parent_run_id" in attrs:
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
    from benchmark.worker import mask_url

    return mask_url(url)


# -- progress and the end report -------------------------------------------------------------


class StudyProgress:
    """`study 5/20 [#####...] best W1 0.123, elapsed 1m02s, left ~3m` on stderr."""

    def __init__(self, study: Any, total: int, objective: str, stream: Any = None) -> None:
        self.study, self.total, self.objective = study, total, objective
        self.stream = stream if stream is not None else sys.stderr
        self.start = time.perf_counter()
        self.start_done = self._done()[0]
        self.last: tuple[int, str] | None = None
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def _done(self) -> tuple[int, list[Any]]:
        from optuna.trial import TrialState

        trials = self.study.get_trials(deepcopy=False)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
        return done, complete

    def update(self, *_: Any) -> None:
        from benchmark.progress import format_seconds

        done, complete = self._done()
        if self.objective == "pareto":
            best = f"pareto front {len(_pareto(complete))}" if complete else "no trial complete"
        else:
            best = f"best W1 {min(t.value for t in complete):.4g}" if complete else "no best yet"
        elapsed = time.perf_counter() - self.start
        new = done - self.start_done
        left = "?"
        if new > 0:
            left = "~" + format_seconds(elapsed / new * max(0, self.total - done))
        width = 20
        filled = int(width * min(done, self.total) / self.total)
        line = (
            f"{self.study.study_name} {done}/{self.total} [{'#' * filled}{'.' * (width - filled)}]"
            f" {best}, elapsed {format_seconds(elapsed)}, left {left}"
        )
        if (done, best) == (self.last or (None, None)):
            return
        self.last = (done, best)
        if self.tty:
            self.stream.write("\r\033[K" + line + ("\n" if done >= self.total else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _pareto(trials: list[Any]) -> list[Any]:
    front = []
    for t in trials:
        if not any(
            all(o <= v for o, v in zip(u.values, t.values))
            and any(o < v for o, v in zip(u.values, t.values))
            for u in trials
        ):
            front.append(t)
    return front


def _trial_entry(trial: Any, metric_names: Sequence[str]) -> dict[str, Any]:
    config = trial.user_attrs.get("config", {})
    return {
        "trial": trial.number,
        "values": dict(zip(metric_names, trial.values)),
        "trainable": config.get("trainable"),
        "params": config.get("params", {}),
        "suggested": trial.params,
        "seeds": trial.user_attrs.get("seeds", []),
        "final": trial.user_attrs.get("final", {}),
        "mlflow_run_id": trial.user_attrs.get("mlflow_run_id"),
    }


def write_best(plan: StudyPlan, study: Any, parent_run_id: str, tracking_uri: str) -> Path:
    """Write results/studies/<study>/best.json; returns its path."""
    from optuna.trial import TrialState

    from benchmark.artifacts import json_safe
    from benchmark.worker import OBJECTIVE_METRICS, budget_counts, mask_url

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    names = OBJECTIVE_METRICS[plan.objective]
    if plan.objective == "pareto":
        best = sorted(_pareto(complete), key=lambda t: t.values[0])
    else:
        best = [min(complete, key=lambda t: t.value)] if complete else []
    doc = {
        "study": plan.study_name,
        "space": plan.space,
        "objective": plan.objective,
        "metrics": list(names),
        "directions": plan.directions,
        "storage": mask_url(plan.storage),
        "mlflow_tracking_uri": tracking_uri,
        "mlflow_parent_run_id": parent_run_id,
        "settings": dataclasses.asdict(plan.settings),
        "fixed_params": plan.overrides,
        "trials": {k: v for k, v in budget_counts(trials).items() if v},
        "best": [_trial_entry(t, names) for t in best],
    }
    path = plan.results_dir / plan.study_name / "best.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_safe(doc), indent=2) + "\n")
    return path


def _print_best(plan: StudyPlan, path: Path, doc_best: list[dict[str, Any]]) -> None:
    if not doc_best:
        print(f"{plan.study_name}: no trial completed yet; see {path}")
        return
    head = "best trial" if plan.objective != "pareto" else "pareto-optimal trials"
    print(f"{plan.study_name}: {head} (mean over {plan.settings.seeds} seed(s)):")
    for entry in doc_best:
        values = ", ".join(f"{k} {v:.5g}" for k, v in entry["values"].items())
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in entry["suggested"].items())
        print(f"  #{entry['trial']} {entry['trainable']}: {values}  [{params}]")
    print(f"written to {path}")


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
    import optuna

    from benchmark.launcher import cpu_slots, gpu_slots, launch, recover_orphans, warm_up
    from benchmark.runner import load_data, resolve_device
    from benchmark.tracking import connect
    from benchmark.worker import WorkerSpec, open_storage, run_worker

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(plan.storage)  # StorageError: bad or unreachable
    attrs = _existing_study_attrs(storage, plan.study_name)
    if attrs is not None and "space" in attrs:
        check_resume(plan, attrs)  # before anything is written
    in_process = plan.gpus is None and plan.workers == 1
    if not in_process:
        warm_up()
    device_spec = plan.settings.device if in_process else "cpu"
    data = load_data(plan.settings, resolve_device(device_spec))  # DataError: exit 2
    tracker = connect(plan.tracking_uri)  # TrackingError: exit 2
    study, parent, resumed = _open_study(plan, storage, tracker)
    if resumed:
        print(f"resuming study {plan.study_name!r}", file=sys.stderr)
    recovered = recover_orphans(study, storage, tracker=tracker)
    if recovered:
        print(f"re-queued trial(s) {recovered} left running by a dead worker", file=sys.stderr)
    if prepare is not None:
        prepare(study)
    lock = plan.results_dir / plan.study_name / "ask.lock"
    spec = WorkerSpec(
        study_name=plan.study_name,
        storage=str(Path(plan.storage).absolute()) if "://" not in plan.storage else plan.storage,
        space=plan.space,
        objective=plan.objective,
        sampler=plan.sampler,
        pruner=plan.pruner,
        trials=plan.trials,
        settings=dataclasses.asdict(plan.settings),
        tracking_uri=tracker.tracking_uri,
        lock_path=str(lock.absolute()),
        overrides=plan.overrides,
        deadline=time.time() + plan.timeout if plan.timeout else None,
        device=device_spec,
        population=plan.population,
    )
    progress = StudyProgress(study, plan.trials, plan.objective, stream)
    progress.update()
    code = 0
    try:
        if in_process:
            code = run_worker(spec, on_trial_end=progress.update, data=data, tracker=tracker)
        else:
            slots = (
                gpu_slots(plan.gpus, plan.workers)
                if plan.gpus is not None
                else cpu_slots(plan.workers)
            )
            code = launch(
                spec, slots, study=study, storage=storage, tracker=tracker, on_tick=progress.update
            )
    except KeyboardInterrupt:
        code = 130
    progress.update()
    _wait_for_writers(lock)
    _close_stale_runs(tracker, parent, study)
    _account_artifacts(tracker, parent, study)
    path = write_best(plan, study, parent, tracker.tracking_uri)
    status = {0: "FINISHED", 130: "KILLED"}.get(code, "FAILED")
    tracker.client.log_artifact(parent, str(path))
    _log_best_metrics(tracker, parent, path)
    tracker.end_study(parent, status)
    _print_best(plan, path, json.loads(path.read_text())["best"])
    if code == 130:
        print(
            "interrupted: the running trial(s) were recorded as FAIL; re-run to resume",
            file=sys.stderr,
        )
    if tracker.tracking_uri.startswith(("http://", "https://")):
        print(f"MLflow: {tracker.tracking_uri} (the tracking server's UI)", file=sys.stderr)
    else:
        print(f"MLflow: mlflow ui --backend-store-uri {tracker.tracking_uri}", file=sys.stderr)
    return code


def _close_stale_runs(tracker: Any, parent: str, study: Any) -> None:
    """End the MLflow runs of ended trials that a worker left RUNNING (see
    Tracker.close_stale_trials), so the MLflow UI agrees with the study."""
    from optuna.trial import TrialState

    outcomes = {}
    for t in study.get_trials(deepcopy=False):
        reason = str(t.user_attrs.get("reason", ""))
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
    from benchmark.writer import wait_for_writers, writer_lock_dir

    if wait_for_writers(writer_lock_dir(lock)):
        print("waited for the artifact writer(s) of stopped workers", file=sys.stderr)


def _account_artifacts(tracker: Any, parent: str, study: Any) -> None:
    """Tag each trial run with the artifacts it has and, where some are missing, which."""
    from benchmark.writer import account_artifacts

    try:
        missing = account_artifacts(tracker, parent, study.get_trials(deepcopy=False))
    except Exception as err:  # the results are stored; this is accounting
        print(f"could not check the trials' artifacts: {err}", file=sys.stderr)
        return
    for number, paths in sorted(missing.items()):
        print(f"trial {number}: artifacts missing: {' '.join(paths)}", file=sys.stderr)


def _log_best_metrics(tracker: Any, parent: str, path: Path) -> None:
    doc = json.loads(path.read_text())
    if doc["objective"] != "pareto" and doc["best"]:
        value = doc["best"][0]["values"].get("w1")
        if value is not None:
            tracker.log_metrics(parent, {"best_w1": value}, 0)
    done = doc["trials"].get("COMPLETE", 0) + doc["trials"].get("PRUNED", 0)
    tracker.log_metrics(parent, {"finished_trials": done}, 0)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (2 for bad input, 130 for Ctrl-C)."""
    from benchmark.data import DataError
    from benchmark.settings import SettingsError
    from benchmark.tracking import TrackingError
    from benchmark.trainable import ParamError
    from benchmark.worker import StorageError
    from studies import SpaceError

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

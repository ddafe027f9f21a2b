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
written to results/studies/<study>/best.json (other storages: see
`benchmark.outcome.study_folder`). A damaged journal file is refused before anything is
written (--repair-journal keeps its readable part).

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
import logging
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import TrialState

from benchmark import records
from benchmark.cli import HelpFormatter, add_data_dir, add_train_size, parse_overrides
from benchmark.data import DATASETS, DataError
from benchmark.objectives import OBJECTIVES, get_objective, intermediate_metric
from benchmark.outcome import (
    fmt_value,
    print_best,
    print_counts,
    print_next,
    writable_study_folder,
    write_best,
)
from benchmark.plan import (
    DEFAULT_STORAGE,
    StudyPlan,
    UsageError,
    check_resume,
    trial_steps_mode,
)
from benchmark.progress import StudyProgress, TrialSteps
from benchmark.settings import SettingsError, setting_changes
from benchmark.signals import interrupt_exit_code, signals_as_interrupt
from benchmark.spec import WorkerSpec
from benchmark.storage import PRUNERS, SAMPLERS, StorageError, open_storage, repair_journal
from benchmark.tracking import TrackingError, connect, default_tracking_uri
from benchmark.trainable import ParamError
from benchmark.urls import mask_url
from benchmark.writer import account_artifacts, wait_for_writers, writer_lock_dir
from studies import SPACES, SpaceError, get_space

__all__ = ["build_parser", "main", "plan_from_args", "population_arg", "run_plan"]

INTERRUPTED_CODES = (130, 143, 129)
"""Exit codes of a stopped study: Ctrl-C (SIGINT), SIGTERM, SIGHUP (128 + the signal)."""
PARENT_WAIT_SECONDS = 120.0
"""How long an invocation that did not create the study waits for its MLflow parent run."""


# -- argument parsing ----------------------------------------------------------------------


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
        "--checkpoint-every",
        type=int,
        default=5,
        metavar="K",
        help="with --population 1, save a trial's state every K epochs (beside best.json, "
        "checkpoints/); a trial re-run with the same config (a retried trial, an ablation "
        "cell) continues from it instead of epoch 0; 0: never (default: 5)",
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
        checkpoint_every=getattr(args, "checkpoint_every", 5),
    )


# -- study creation / resume ----------------------------------------------------------------------


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
        study.set_user_attr(records.STUDY_TRIAL_STEPS, trial_steps_mode(plan.population))
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


# -- running --------------------------------------------------------------------------------


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
    """run_plan's body, run with the caller's SIGINT handler restored afterwards: the main
    job's steps in the order they must happen (checks before anything is written, the MLflow
    parent run before any worker); each step is one call.
    """
    # The training side (torch, POT, MLflow, the trainables) is imported once the arguments
    # are checked, so that --help and bad input answer fast.
    from benchmark.writer import Writers, writer_lock_dir

    started = time.perf_counter()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if plan.repair_journal:
        print(repair_journal(Path(plan.storage)), file=sys.stderr)
    storage = open_storage(plan.storage)  # StorageError: bad, damaged or unreachable
    attrs = _existing_study_attrs(storage, plan.study_name)
    if attrs is not None and records.STUDY_SPACE in attrs:
        check_resume(plan, attrs)  # before anything is written
    lock = writable_study_folder(plan)  # UsageError: read-only results/
    in_process = plan.gpus is None and plan.workers == 1
    # the in-process worker's writer processes start now: their imports and MLflow
    # connection overlap this process's own start-up instead of its first epoch
    uri = plan.tracking_uri or default_tracking_uri()  # as connect() resolves it
    writers = Writers(writer_lock_dir(lock.absolute()), tracking_uri=uri) if in_process else None
    try:
        return _start_and_run(plan, stream, prepare, storage, attrs, lock, writers, started)
    finally:
        if writers is not None:
            writers.close()


def _start_and_run(
    plan: StudyPlan,
    stream: Any,
    prepare: Callable[[Any], None] | None,
    storage: Any,
    attrs: dict[str, Any] | None,
    lock: Path,
    writers: Any,
    started: float,
) -> int:
    """The rest of `_run_plan`: data, MLflow, the study's records, the workers, the end."""
    from benchmark.launcher import close_stale_parent, mark_invocation, recover_orphans, warm_up
    from benchmark.runner import load_data, resolve_device

    in_process = writers is not None
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
    try:
        with signals_as_interrupt():  # SIGTERM, SIGHUP: stop as on Ctrl-C
            code = _run_workers(plan, spec, writers, study, storage, data, tracker, progress)
    except KeyboardInterrupt as err:
        code = interrupt_exit_code(err)
    progress.update()
    progress.close()  # after Ctrl-C the bar's line is still open: end it
    _finish(plan, study, parent, tracker, lock, code, time.perf_counter() - started)
    return code


def _run_workers(
    plan: StudyPlan,
    spec: WorkerSpec,
    writers: Any,
    study: optuna.Study,
    storage: Any,
    data: Any,
    tracker: Any,
    progress: StudyProgress,
) -> int:
    """Run the one in-process worker (with its `writers`), or (`writers` None) start and watch
    the worker processes; their exit code (KeyboardInterrupt, also for SIGTERM/SIGHUP, goes to
    the caller)."""
    from benchmark.launcher import cpu_slots, gpu_slots, launch  # the training side: see _run_plan
    from benchmark.worker import run_worker

    if writers is not None:
        return run_worker(
            spec,
            on_trial_end=progress.update,
            storage=storage,
            data=data,
            tracker=tracker,
            on_epoch=progress.update,
            writers=writers,
        )
    slots = (
        gpu_slots(plan.gpus, plan.workers) if plan.gpus is not None else cpu_slots(plan.workers)
    )
    return launch(
        spec, slots, study=study, storage=storage, tracker=tracker, on_tick=progress.update
    )


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
        checkpoint_every=plan.checkpoint_every,
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
    print_counts(plan, doc, seconds)
    print_best(plan, path, doc["best"])
    if code in INTERRUPTED_CODES:
        print(
            "interrupted: the running trial(s) were recorded as FAIL; run the same command "
            "again to resume",
            file=sys.stderr,
        )
    print_next(plan, tracker.tracking_uri)


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
    fixed = ", ".join(f"{k}={fmt_value(v)}" for k, v in plan.overrides.items())
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
    if plan.population == 1 and plan.checkpoint_every:
        population += f", a trial's state saved every {plan.checkpoint_every} epochs"
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

"""One study worker process: opens the shared study, runs the trial loop, exits with a code.

A worker is the unit the launcher starts once per GPU (or per CPU slot); with a single
worker `benchmark.study` runs the same loop in-process. Workers never talk to each other:
they share the Optuna storage (trials, the budget, the MLflow parent run id as a study user
attr) and a local lock file that makes "count the budget, then ask" atomic between the
processes of one machine (benchmark.budget).

The launcher forks workers from its fork server (`process_main`); ``python -m
benchmark.worker SPEC_JSON`` runs one by hand.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna
import torch

from benchmark import records
from benchmark.budget import fail_stale, room_left, wait_for_running
from benchmark.data import Dataset
from benchmark.objectives import get_objective
from benchmark.population import resolve_population
from benchmark.runner import frozen_heap, load_data, resolve_device
from benchmark.settings import Settings
from benchmark.signals import interrupt_exit_code, signals_as_interrupt, watch_launcher
from benchmark.spec import WorkerSpec
from benchmark.storage import FarBehindRule, make_pruner, make_sampler, open_storage
from benchmark.tracking import connect
from benchmark.trainables import params_class
from benchmark.trials import OnTrialEnd, WorkerContext, run_trials
from benchmark.writer import QueuedTracker, Writers, writer_lock_dir
from studies import compare, get_space

__all__ = ["fixed_sampler_params", "load_worker_study", "main", "process_main", "run_worker"]


def load_worker_study(
    spec: WorkerSpec, storage: optuna.storages.BaseStorage, settings: Settings
) -> optuna.Study:
    """The shared study with this worker's sampler and pruner."""
    multi = get_objective(spec.objective).multi
    fixed = fixed_sampler_params(spec.space, spec.overrides)
    n_scored = len([e for e in range(1, settings.epochs + 1) if settings.scored(e)])
    # One trial path: seed after seed, one step per scored epoch of each. Population path:
    # a trial's seeds train side by side and report their mean once per scored epoch.
    steps = n_scored if spec.population != 1 else n_scored * settings.seeds
    return optuna.load_study(
        study_name=spec.study_name,
        storage=storage,
        sampler=make_sampler(
            spec.sampler, multi_objective=multi, fixed=fixed, seed=spec.sampler_seed
        ),
        pruner=make_pruner(spec.pruner, steps=steps),
    )


def fixed_sampler_params(space_name: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Overrides under the names the space suggests them by (compare: 'variant.name')."""
    if space_name != "compare":
        return dict(overrides)
    return {
        f"{variant}.{k}": v
        for variant in compare.CHOICES
        for k, v in overrides.items()
        if k in params_class(variant).names()
    }


def run_worker(
    spec: WorkerSpec,
    *,
    on_trial_end: OnTrialEnd | None = None,
    storage: optuna.storages.BaseStorage | None = None,
    data: Dataset | None = None,
    tracker: Any = None,
    on_epoch: Callable[[], None] | None = None,
    writers: Writers | None = None,
) -> int:
    """Take trials until the budget or the deadline is reached; returns the exit code.

    `storage`, `data`, `tracker` and `writers` (the background writer processes): the
    in-process worker of `benchmark.study` shares those its caller has open. KeyboardInterrupt
    propagates after the running trials are recorded.
    """
    if writers is None:  # started first: they import and connect while this process starts
        with Writers(writer_lock_dir(spec.lock_path), tracking_uri=spec.tracking_uri) as writers:
            return _run_worker(spec, on_trial_end, storage, data, tracker, on_epoch, writers)
    return _run_worker(spec, on_trial_end, storage, data, tracker, on_epoch, writers)


def _run_worker(
    spec: WorkerSpec,
    on_trial_end: OnTrialEnd | None,
    storage: optuna.storages.BaseStorage | None,
    data: Dataset | None,
    tracker: Any,
    on_epoch: Callable[[], None] | None,
    writers: Writers,
) -> int:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if storage is None:
        storage = open_storage(spec.storage)
    settings = Settings(**spec.settings)
    study = load_worker_study(spec, storage, settings)
    fail_stale(study)  # a trial whose worker went silent elsewhere is room for this one
    if not room_left(study.get_trials(deepcopy=False), spec) and not wait_for_running(
        study, storage, spec
    ):
        return 0  # e.g. a replacement worker whose retry another worker already took
    if spec.threads:
        torch.set_num_threads(spec.threads)
    device = resolve_device(spec.device)
    ctx = WorkerContext(
        spec=spec,
        study=study,
        storage=storage,
        space=get_space(spec.space),
        settings=settings,
        data=data if data is not None else load_data(settings, device),
        device=device,
        tracker=tracker if tracker is not None else connect(spec.tracking_uri),
        parent_run_id=study.user_attrs[records.STUDY_PARENT_RUN],
        rule=None,
        on_epoch=on_epoch,
    )
    if ctx.multi_objective and spec.pruner != "none":
        ctx.rule = FarBehindRule(metric=ctx.metric)
    # MLflow calls and artifact files are done by a background writer process, in order;
    # closing it waits for all of them (after Ctrl-C too).
    ctx.tracker = QueuedTracker(ctx.tracker, writers=writers)
    try:
        ctx.spec = dataclasses.replace(spec, population=resolve_population(ctx))
        # --population 1 trains a trial's seeds one after another (and the pruner sees each
        # one's epochs); a population (or auto) trains them side by side
        with frozen_heap():
            return run_trials(ctx, seed_after_seed=spec.population == 1, on_trial_end=on_trial_end)
    finally:
        with ctx.clock.part("drain writer"):
            for error in ctx.tracker.close(ctx.log):
                ctx.log(f"MLflow call not done: {error}")
        ctx.clock.dump()


def process_main(spec_json: str, env: Mapping[str, str], cwd: str) -> None:
    """Entry point of a worker process started by the launcher (from its fork server, which
    may have been started by an earlier launch with another environment and folder)."""
    os.environ.clear()
    os.environ.update(env)  # e.g. CUDA_VISIBLE_DEVICES: read when CUDA initialises, later
    os.chdir(cwd)
    os.setpgrp()  # a terminal's Ctrl-C reaches only the launcher, which forwards it once
    signal.signal(signal.SIGINT, signal.default_int_handler)
    watch_launcher()  # a worker never outlives its launcher
    sys.exit(main([spec_json]))


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m benchmark.worker SPEC_JSON` (started by benchmark.launcher)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m benchmark.worker SPEC_JSON", file=sys.stderr)
        return 2
    spec = WorkerSpec.from_json(args[0])
    try:
        with signals_as_interrupt():
            return run_worker(spec)
    except KeyboardInterrupt as err:
        return interrupt_exit_code(err)


if __name__ == "__main__":
    sys.exit(main())

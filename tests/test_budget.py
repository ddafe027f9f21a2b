"""benchmark.budget: the one budget rule, as a worker (asking) and the launcher see it."""

from __future__ import annotations

import time

import optuna
from optuna.trial import TrialState

from benchmark.budget import budget_counts, room_left
from benchmark.spec import WorkerSpec
from benchmark.storage import open_storage


def _spec(trials: int, deadline: float | None = None) -> WorkerSpec:
    return WorkerSpec(
        study_name="s",
        storage="x.journal",
        space="gan",
        objective="wasserstein",
        sampler="random",
        pruner="none",
        trials=trials,
        settings={},
        tracking_uri="",
        lock_path="ask.lock",
        deadline=deadline,
    )


def test_running_trials_count_for_a_worker_but_not_for_the_launcher(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    study = optuna.create_study(storage=open_storage("results/optuna.journal"), study_name="s")
    study.tell(study.ask(), 1.0)
    study.tell(study.ask(), state=TrialState.PRUNED)
    study.ask()  # left running
    trials = study.get_trials(deepcopy=False)
    assert budget_counts(trials)["RUNNING"] == 1
    # budget 3: complete + pruned + running = 3 fills it for a worker about to ask; the
    # launcher still wants a replacement worker (the running trial may be a dead one's)
    assert not room_left(trials, _spec(3))
    assert room_left(trials, _spec(3), running=False)
    assert not room_left(trials, _spec(2), running=False)
    study.enqueue_trial({})  # a retry waiting: room for it whatever the counts
    trials = study.get_trials(deepcopy=False)
    assert room_left(trials, _spec(1)) and room_left(trials, _spec(1), running=False)
    assert not room_left(trials, _spec(10, deadline=time.time() - 1))

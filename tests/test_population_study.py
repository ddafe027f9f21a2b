"""python -m benchmark.study --population P: trials trained as one population give the same
trials, values and MLflow runs as the one-trial path (real journal storage, real MLflow store,
ring8)."""

from __future__ import annotations

import optuna
import pytest
import torch
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from benchmark import study as study_cli
from benchmark import worker
from benchmark.population import auto_population
from benchmark.runner import load_data, train_run
from benchmark.settings import Settings
from benchmark.spec import worker_id
from benchmark.tracking import connect
from benchmark.trainables import params_class
from benchmark.trainables.realmix import RealMixGAN

try:
    from tests._mlflow import fresh_mlflow_uri
except ImportError:  # tests/ on sys.path (pytest's default rootdir-less import)
    from _mlflow import fresh_mlflow_uri

SMALL = [
    "--dataset", "ring8", "--setting", "train_size=256", "--setting", "batch_size=64",
    "--setting", "n_eval=150", "--setting", "heldout_size=150", "--setting", "device=cpu",
]  # fmt: skip
# A member of a population trains bit for bit as its run alone on CPU (nets.member_matmul), so
# a trial's values, per-epoch metrics and losses must equal the one-trial path's exactly,
# whichever slot it trained in and whoever shared the population with it.


@pytest.fixture
def env(tmp_path, tmp_path_factory, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = fresh_mlflow_uri(tmp_path_factory, tmp_path)
    return {"uri": uri, "dir": tmp_path, "args": [*SMALL, "--tracking-uri", uri]}


def _study(env, name: str) -> optuna.Study:
    path = env["dir"] / "results" / "optuna.journal"
    return optuna.load_study(
        study_name=name, storage=JournalStorage(JournalFileBackend(str(path)))
    )


def _runs(env, study: optuna.Study) -> dict[int, object]:
    tracker = connect(env["uri"])
    parent = study.user_attrs["mlflow_parent_run_id"]
    runs = tracker.client.search_runs(
        [tracker.experiment_id], f"tags.mlflow.parentRunId = '{parent}'"
    )
    return {int(r.data.tags["trial"]): r for r in runs}


class PruneTrialZero(optuna.pruners.BasePruner):
    """Prunes trial 0 at its first report and nothing else: a deterministic mid-run prune."""

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return trial.number == 0


def test_pruned_slot_is_refilled_and_every_trial_equals_its_run_alone(env, monkeypatch):
    monkeypatch.setattr(worker, "make_pruner", lambda name, steps: PruneTrialZero())
    argv = ["--space", "realmix", "--trials", "3", "--epochs", "3", "--population", "2"]
    assert study_cli.main([*argv, *env["args"]]) == 0
    study = _study(env, "realmix-ring8-wasserstein")
    trials = study.trials
    assert [t.state for t in trials] == [
        TrialState.PRUNED,
        TrialState.COMPLETE,
        TrialState.COMPLETE,
    ]
    assert trials[0].user_attrs["reason"].startswith("pruned by the median pruner at step 0")
    # trial 2 took trial 0's slot while trial 1 was still training: the population was live
    assert trials[2].datetime_start < trials[1].datetime_complete
    assert trials[0].datetime_complete <= trials[2].datetime_start

    settings = Settings(**study.user_attrs["settings"])
    data = load_data(settings, torch.device("cpu"))
    runs = _runs(env, study)
    tracker = connect(env["uri"])
    for t in trials[1:]:
        alone = train_run(
            "realmix", t.user_attrs["config"]["params"], settings, seed=0, data=data,
            device=torch.device("cpu"),
        )  # fmt: skip
        assert t.value == alone.final["w1"]
        run = runs[t.number]
        assert run.info.status == "FINISHED"
        history = tracker.client.get_metric_history(run.info.run_id, "sliced_w2")
        assert [m.step for m in history] == [1, 2, 3]
        expected = [h["sliced_w2"] for h in alone.history]
        assert [m.value for m in history] == expected
        for loss in ("g_loss", "d_loss"):  # epoch means of the per-step losses
            logged = tracker.client.get_metric_history(run.info.run_id, loss)
            expected = [h[loss] for h in alone.history]
            assert [m.value for m in logged] == expected
        artifacts = {a.path for a in tracker.client.list_artifacts(run.info.run_id)}
        assert {"samples.png", "samples_noise.png", "losses.png", "metrics.json"} <= artifacts
    pruned = runs[0]
    assert (pruned.info.status, pruned.data.tags["state"]) == ("KILLED", "PRUNED")
    history = tracker.client.get_metric_history(pruned.info.run_id, "sliced_w2")
    assert [m.step for m in history] == [1]
    # the trials had different hyperparameters, so the comparison above could fail
    assert trials[1].params != trials[2].params


def test_seeds_train_side_by_side_and_the_study_remembers_it(env, capsys):
    argv = ["--space", "gan", "--trials", "2", "--epochs", "1", "--seeds", "2"]
    assert study_cli.main([*argv, "--population", "2", *env["args"]]) == 0
    study = _study(env, "gan-ring8-wasserstein")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert study.user_attrs["trial_steps"] == "mean over seeds"
    for t in study.trials:
        seeds = t.user_attrs["seeds"]
        assert [s["seed"] for s in seeds] == [0, 1]
        assert t.value == pytest.approx((seeds[0]["w1"] + seeds[1]["w1"]) / 2)
        assert seeds[0]["w1"] != seeds[1]["w1"]
        metrics = _runs(env, study)[t.number].data.metrics
        assert metrics["seed_0/w1"] == pytest.approx(seeds[0]["w1"])
        assert metrics["w1"] == pytest.approx(t.value)
    # a resume on the one-trial path would report pruning steps differently: refused
    journal = env["dir"] / "results" / "optuna.journal"
    before = journal.read_bytes()
    capsys.readouterr()
    assert study_cli.main([*argv, "--trials", "3", *env["args"]]) == 2
    assert "pruning steps" in capsys.readouterr().err
    assert journal.read_bytes() == before


def test_ctrl_c_fails_every_live_trial_of_the_population(env, monkeypatch):
    original = RealMixGAN.train_epoch
    calls = []

    def interrupt_second_epoch(self):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(RealMixGAN, "train_epoch", interrupt_second_epoch)
    argv = ["--space", "realmix", "--trials", "4", "--epochs", "2", "--population", "2"]
    assert study_cli.main([*argv, *env["args"]]) == 130
    study = _study(env, "realmix-ring8-wasserstein")
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 2
    assert {t.user_attrs["reason"] for t in study.trials} == {"interrupted"}
    runs = _runs(env, study)
    assert {(r.info.status, r.data.tags["state"]) for r in runs.values()} == {
        ("KILLED", "INTERRUPTED")
    }


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--space", "gan", "--population", "0"], "--population 0: must be a whole number"),
        (["--space", "gan", "--population", "many"], "or 'auto'"),
        (["--space", "compare", "--population", "4"], "searches over trainables"),
    ],
)
def test_bad_population_exits_2_and_stores_nothing(env, capsys, argv, message):
    assert study_cli.main([*argv, *env["args"]]) == 2
    assert message in capsys.readouterr().err
    assert not (env["dir"] / "results").exists()


def test_auto_population_on_cpu_is_bounded_by_the_budget(mnist_small):
    params = params_class("realmix")()
    cpu = torch.device("cpu")
    assert auto_population("realmix", params, mnist_small, cpu, budget=50) == 2
    assert auto_population("realmix", params, mnist_small, cpu, budget=1) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_auto_population_fits_on_the_gpu(mnist_small):
    """The size --population auto picks trains without running out of GPU memory."""
    from benchmark.trainables import build

    params = params_class("realmix")()
    gpu = torch.device("cuda")
    size = auto_population("realmix", params, mnist_small, gpu, budget=10_000)
    assert size > 1
    free, _ = torch.cuda.mem_get_info(gpu)
    torch.cuda.reset_peak_memory_stats(gpu)
    base = torch.cuda.memory_allocated(gpu)
    pop = build("realmix", [params] * size, mnist_small, seeds=range(size), device=gpu)
    result = pop.train_epoch()
    assert result.g_losses.shape[0] == size
    assert torch.cuda.max_memory_allocated(gpu) - base <= free


def test_two_worker_processes_each_train_a_population(env):
    """The launcher hands --population to its worker processes; the budget holds across them."""
    argv = ["--space", "gan", "--trials", "4", "--epochs", "1", "--workers", "2"]
    assert study_cli.main([*argv, "--population", "2", *env["args"]]) == 0
    study = _study(env, "gan-ring8-wasserstein")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    runs = _runs(env, study)
    assert sorted(runs) == [0, 1, 2, 3]
    for t in study.trials:
        assert runs[t.number].info.status == "FINISHED"
        assert runs[t.number].data.metrics["w1"] == pytest.approx(t.value)
        assert t.user_attrs["worker"] != worker_id()  # trained in a worker process

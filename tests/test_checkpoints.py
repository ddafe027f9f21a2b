"""Checkpoints of study trials trained alone (--population 1): a trial stopped by Ctrl-C and
run again with the same config continues from its checkpoint and ends with exactly the
numbers of an uninterrupted run. Real journal storage, a real MLflow store, ring8."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from benchmark import study as study_cli
from benchmark.checkpoints import CheckpointError, load, save
from benchmark.tracking import connect
from benchmark.trials import TEST_STOP_ENV

try:
    from tests._mlflow import fresh_mlflow_uri
except ImportError:  # tests/ on sys.path (pytest's default rootdir-less import)
    from _mlflow import fresh_mlflow_uri

NAME = "gan-ring8-wasserstein"
ARGS = [
    "--space", "gan", "--trials", "1", "--pruner", "none", "--checkpoint-every", "1",
    "--dataset", "ring8", "--epochs", "3", "--seeds", "2",
    "--param", "lr=0.001", "--param", "beta1=0.5", "--param", "beta2=0.999",
    "--param", "dropout_g=0.1", "--param", "dropout_d=0.2",
    "--setting", "train_size=256", "--setting", "n_eval=100", "--setting", "heldout_size=100",
    "--setting", "device=cpu",
]  # fmt: skip


def _study(folder: Path) -> optuna.Study:
    storage = JournalStorage(JournalFileBackend(str(folder / "results" / "optuna.journal")))
    return optuna.load_study(study_name=NAME, storage=storage)


def _history(uri: str, run_id: str) -> dict[str, list[tuple[int, float]]]:
    """Every metric of an MLflow run but wall times, as (step, value) in step order."""
    client = connect(uri).client
    keys = [k for k in client.get_run(run_id).data.metrics if "seconds" not in k]
    return {
        k: sorted((m.step, m.value) for m in client.get_metric_history(run_id, k)) for k in keys
    }


def _untimed(record: dict) -> dict:
    return {k: v for k, v in record.items() if "seconds" not in k}


def _seeds(trial: optuna.trial.FrozenTrial) -> list[dict]:
    return [_untimed(s) for s in trial.user_attrs["seeds"]]


@pytest.mark.parametrize(
    "stop_after",
    [3, 4],
    ids=["between-seeds", "mid-second-seed"],
)
def test_a_stopped_trial_continues_from_its_checkpoint_to_the_same_numbers(
    tmp_path, tmp_path_factory, monkeypatch, stop_after
):
    # the reference: the same trial, never stopped
    ref_dir = tmp_path / "reference"
    ref_dir.mkdir()
    monkeypatch.chdir(ref_dir)
    ref_uri = fresh_mlflow_uri(tmp_path_factory, ref_dir)
    assert study_cli.main([*ARGS, "--tracking-uri", ref_uri]) == 0
    (ref,) = _study(ref_dir).trials
    assert ref.state == TrialState.COMPLETE

    # stopped by Ctrl-C after `stop_after` of its 6 epochs (3 per seed), then run again
    run_dir = tmp_path / "stopped"
    run_dir.mkdir()
    monkeypatch.chdir(run_dir)
    uri = fresh_mlflow_uri(tmp_path_factory, run_dir)
    monkeypatch.setenv(TEST_STOP_ENV, str(stop_after))
    assert study_cli.main([*ARGS, "--tracking-uri", uri]) == 130
    monkeypatch.delenv(TEST_STOP_ENV)
    saved = list((run_dir / "results" / "studies" / NAME / "checkpoints").glob("trial-*.pt"))
    assert len(saved) == 1
    assert study_cli.main([*ARGS, "--tracking-uri", uri]) == 0

    stopped, resumed = _study(run_dir).trials
    assert stopped.state == TrialState.FAIL and stopped.user_attrs["reason"] == "interrupted"
    assert resumed.state == TrialState.COMPLETE
    seed, epoch = divmod(stop_after, 3)
    assert resumed.user_attrs["resumed"] == {"from_trial": 0, "seed": seed, "epoch": epoch}
    assert not saved[0].exists()  # the trial ended: nothing left to continue

    # the same numbers as the uninterrupted trial, bit for bit
    assert resumed.values == ref.values and math.isfinite(resumed.value)
    assert resumed.intermediate_values == ref.intermediate_values
    assert len(ref.intermediate_values) == 6
    assert _untimed(resumed.user_attrs["final"]) == _untimed(ref.user_attrs["final"])
    assert _seeds(resumed) == _seeds(ref)
    ours = _history(uri, resumed.user_attrs["mlflow_run_id"])
    theirs = _history(ref_uri, ref.user_attrs["mlflow_run_id"])
    assert ours == theirs and "seed_1/w1" in ours and len(ours["seed_0/w1"]) == 3
    run = connect(uri).client.get_run(resumed.user_attrs["mlflow_run_id"])
    assert run.info.status == "FINISHED" and "resumed_from" in run.data.tags
    artifacts = connect(uri).client.list_artifacts(run.info.run_id, "seed_0")
    assert {Path(a.path).name for a in artifacts} >= {"samples.png", "metrics.json"}


def test_a_checkpoint_of_another_config_is_refused_with_what_differs(tmp_path):
    path = tmp_path / "trial.pt"
    save(path, {"fingerprint": {"params": {"lr": 0.001}, "settings": {"epochs": 3}}})
    assert load(path, {"params": {"lr": 0.001}, "settings": {"epochs": 3}}, "fix")
    with pytest.raises(CheckpointError, match=r"differs: params, settings\.epochs\); fix"):
        load(path, {"params": {"lr": 0.002}, "settings": {"epochs": 4}}, "fix")
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load(path, {}, "fix")
    assert load(tmp_path / "none.pt", {}, "fix") is None

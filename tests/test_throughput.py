"""python -m benchmark.throughput end to end on a tiny ring8 budget: the real study process
(journal storage, MLflow SQLite store), the engine alone, the report files."""

from __future__ import annotations

import json

import pytest

from benchmark import throughput


def test_throughput_runs_the_study_and_the_engine_and_writes_both_reports(tmp_path, capsys):
    argv = ["--space", "gan", "--dataset", "ring8", "--trials", "2", "--population", "2",
            "--epochs", "2", "--rounds", "1", "--setting", "train_size=256",
            "--setting", "n_eval=100", "--setting", "device=cpu",
            "--out", str(tmp_path)]  # fmt: skip
    assert throughput.main(argv) == 0
    (md,) = tmp_path.glob("throughput-*.md")
    doc = json.loads(md.with_suffix(".json").read_text())
    (round_,) = doc["rounds"]
    clock = round_["clock"]
    assert clock["trial_epochs"] == 4  # 2 trials x 2 epochs, counted by the worker
    assert clock["calls"]["train"] == 2 and clock["calls"]["score"] == 2
    assert clock["calls"]["optuna report"] == 4 and clock["calls"]["mlflow metrics"] == 4
    parts = sum(clock["seconds"].values())
    assert 0 < parts <= clock["wall_seconds"] == round_["study_loop_seconds"]
    assert round_["study_loop_seconds"] < round_["study_process_seconds"]
    assert round_["engine_seconds"] > 0
    assert doc["ratio"] == doc["engine_seconds"] / doc["study_loop_seconds"]
    assert "Study / engine" in md.read_text() and "ms per trial-epoch" in capsys.readouterr().out


def test_a_budget_the_engine_cannot_mirror_exits_2(capsys):
    with pytest.raises(SystemExit) as stop:
        throughput.main(["--trials", "3", "--population", "2"])
    assert stop.value.code == 2
    assert "not a multiple of --population 2" in capsys.readouterr().err

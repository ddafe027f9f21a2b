"""python -m benchmark.throughput end to end on a tiny ring8 budget: the real study process
(journal storage, MLflow SQLite store), the engine alone, the report files."""

from __future__ import annotations

import json

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
    book = clock["bookkeeping_seconds"]
    wait = clock["seconds"]["drain writer"]
    steady = doc["targets"]["steady_bookkeeping_ms_per_trial_epoch"]
    assert steady == 1000 * (book - wait) / 4 < clock["bookkeeping_ms_per_trial_epoch"]
    assert "Study / engine" in md.read_text() and "ms per trial-epoch" in capsys.readouterr().out


def test_a_budget_the_engine_cannot_mirror_exits_2(capsys):
    assert throughput.main(["--trials", "3", "--population", "2"]) == 2
    assert "not a multiple of --population 2" in capsys.readouterr().err


def test_a_round_that_fails_after_others_keeps_them_and_says_why(tmp_path, monkeypatch, capsys):
    """Every round trains the same seeded configurations; when one still fails (e.g. a trial
    pruned as diverged), the rounds measured before it are reported, with the reason."""
    real, calls = throughput._study_round, []

    def second_fails(command, folder, log):
        calls.append(command)
        if len(calls) == 2:
            raise RuntimeError("1 trial(s) did not complete (test)")
        return real(command, folder, log)

    monkeypatch.setattr(throughput, "_study_round", second_fails)
    argv = ["--space", "gan", "--dataset", "ring8", "--trials", "2", "--population", "2",
            "--epochs", "1", "--rounds", "3", "--sampler-seed", "5",
            "--setting", "train_size=256", "--setting", "n_eval=100", "--setting", "device=cpu",
            "--out", str(tmp_path)]  # fmt: skip
    assert throughput.main(argv) == 0
    assert len(calls) == 2 and calls[0][calls[0].index("--sampler-seed") + 1] == "5"
    (md,) = tmp_path.glob("throughput-*.md")
    doc = json.loads(md.with_suffix(".json").read_text())
    assert len(doc["rounds"]) == 1
    assert doc["failed"].startswith("round 2 of 3 failed, the 1 before it kept")
    assert "did not complete (test)" in md.read_text()

"""benchmark.tracking against a real MLflow SQLite store in a temporary folder."""

from __future__ import annotations

import pytest

from benchmark import tracking

try:
    from tests._mlflow import fresh_mlflow_uri
except ImportError:  # tests/ on sys.path (pytest's default rootdir-less import)
    from _mlflow import fresh_mlflow_uri


@pytest.fixture
def tracker(tmp_path, tmp_path_factory, monkeypatch) -> tracking.Tracker:
    monkeypatch.chdir(tmp_path)  # MLflow puts artifacts in ./mlruns
    return tracking.connect(fresh_mlflow_uri(tmp_path_factory, tmp_path), experiment="test")


def test_study_and_trial_runs_are_linked_and_terminated_by_outcome(tracker, tmp_path):
    parent = tracker.start_study("s1", tags={"space": "gan"}, params={"settings.epochs": 2})
    client = tracker.client
    run = client.get_run(parent)
    assert run.data.tags["space"] == "gan"
    assert run.data.tags["version.optuna"]  # package versions are recorded
    assert run.data.params["settings.epochs"] == "2"

    outcomes = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
    children = {}
    for number, outcome in enumerate(outcomes):
        rid = tracker.start_trial(
            parent, study_name="s1", number=number, params={"lr": 1e-3, "clamp": True}
        )
        tracker.log_metrics(rid, {"sliced_w2": 1.0 / (number + 1), "epoch": 1.0}, step=1)
        tracker.log_metrics(rid, {"sliced_w2": 0.5 / (number + 1)}, step=2)
        tracker.end_trial(rid, outcome, None if outcome == "COMPLETE" else f"why {number}")
        children[rid] = outcome

    found = client.search_runs([tracker.experiment_id], f"tags.mlflow.parentRunId = '{parent}'")
    assert {r.info.run_id for r in found} == set(children)
    for r in found:
        outcome = children[r.info.run_id]
        assert r.info.status == outcomes[outcome]
        assert r.data.tags["state"] == outcome
        assert r.data.params == {"lr": "0.001", "clamp": "True"}
        history = client.get_metric_history(r.info.run_id, "sliced_w2")
        assert [(m.step, m.value) for m in history] == [
            (1, 1.0 / (int(r.data.tags["trial"]) + 1)),
            (2, 0.5 / (int(r.data.tags["trial"]) + 1)),
        ]
        assert ("reason" in r.data.tags) == (outcome != "COMPLETE")


def test_end_trial_leaves_a_run_that_already_ended_alone(tracker):
    parent = tracker.start_study("s2", tags={}, params={})
    rid = tracker.start_trial(parent, study_name="s2", number=0, params={})
    tracker.end_trial(rid, "COMPLETE")
    tracker.end_trial(rid, "FAIL", "a late launcher must not overwrite a finished run")
    run = tracker.client.get_run(rid)
    assert run.info.status == "FINISHED"
    assert "reason" not in run.data.tags
    with pytest.raises(ValueError, match="valid: COMPLETE, PRUNED, FAIL, INTERRUPTED"):
        tracker.end_trial(rid, "DONE")


def test_artifacts_land_in_the_trial_run(tracker, tmp_path):
    parent = tracker.start_study("s3", tags={}, params={})
    rid = tracker.start_trial(parent, study_name="s3", number=0, params={})
    (tmp_path / "config.json").write_text("{}\n")
    (tmp_path / "metrics.json").write_text("{}\n")
    tracker.log_artifacts(rid, {"config": tmp_path / "config.json"}, None)
    tracker.log_artifacts(rid, [tmp_path / "metrics.json"], "seed_1")
    listed = {a.path for a in tracker.client.list_artifacts(rid)}
    assert listed == {"config.json", "seed_1"}
    assert [a.path for a in tracker.client.list_artifacts(rid, "seed_1")] == [
        "seed_1/metrics.json"
    ]


def test_resume_study_reopens_a_finished_parent_and_rejects_unknown_ids(tracker):
    parent = tracker.start_study("s4", tags={}, params={})
    tracker.end_study(parent)
    assert tracker.run_status(parent) == "FINISHED"
    assert tracker.resume_study(parent)
    assert tracker.run_status(parent) == "RUNNING"
    assert not tracker.resume_study("0" * 32)


def test_unreachable_server_fails_fast_with_a_tracking_error():
    # port 1 on localhost refuses connections: no MLflow retry loop, an immediate error
    with pytest.raises(tracking.TrackingError, match="cannot reach MLflow tracking server"):
        tracking.connect("http://127.0.0.1:1")


def test_unusable_store_is_a_tracking_error_naming_the_uri(tmp_path):
    (tmp_path / "a-file").write_text("")
    uri = f"sqlite:///{tmp_path}/a-file/mlflow.db"  # parent is a file: cannot be created
    with pytest.raises(tracking.TrackingError, match="cannot use MLflow tracking URI"):
        tracking.connect(uri)


def test_close_stale_trials_ends_only_runs_of_ended_trials(tracker):
    parent = tracker.start_study("s3", tags={}, params={})
    other = tracker.start_study("s4", tags={}, params={})
    left = tracker.start_trial(parent, study_name="s3", number=0, params={})
    live = tracker.start_trial(parent, study_name="s3", number=1, params={})
    done = tracker.start_trial(parent, study_name="s3", number=2, params={})
    tracker.end_trial(done, "COMPLETE")
    foreign = tracker.start_trial(other, study_name="s4", number=0, params={})
    outcomes = {0: ("INTERRUPTED", "interrupted"), 2: ("FAIL", "late")}
    assert tracker.close_stale_trials(parent, outcomes) == [0]
    status = {rid: tracker.client.get_run(rid) for rid in (left, live, done, foreign)}
    assert status[left].info.status == "KILLED"
    assert status[left].data.tags["state"] == "INTERRUPTED"
    assert status[live].info.status == "RUNNING"  # its trial has not ended
    assert status[done].info.status == "FINISHED"  # already ended: untouched
    assert status[foreign].info.status == "RUNNING"  # another study's run

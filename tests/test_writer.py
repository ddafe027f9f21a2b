"""benchmark.writer: MLflow calls and artifact files done by background writer processes.

Real studies (journal storage, MLflow SQLite store, ring8), real writer processes and real
signals: a writer held stopped (SIGSTOP) makes its queue certainly non-empty when Ctrl-C or
SIGKILL comes, so what must be drained or lost is known without timing anything.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from benchmark import study as study_cli
from benchmark import writer
from benchmark.artifacts import payload_files
from benchmark.tracking import ARTIFACTS_TAG, MISSING_TAG, connect
from benchmark.trainables.gan import StandardGAN

try:
    from tests._hang import hang_one_worker
    from tests._mlflow import fresh_mlflow_uri
except ImportError:  # tests/ on sys.path (pytest's default rootdir-less import)
    from _hang import hang_one_worker
    from _mlflow import fresh_mlflow_uri

TINY = [
    "--dataset", "ring8", "--setting", "train_size=256", "--setting", "batch_size=128",
    "--setting", "n_eval=100", "--setting", "heldout_size=100", "--setting", "device=cpu",
]  # fmt: skip
FILES = {"config.json", "metrics.json", "losses.png", "samples.png"}
"""What a finished one-seed GAN trial's run holds."""


@pytest.fixture
def env(tmp_path, tmp_path_factory, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = fresh_mlflow_uri(tmp_path_factory, tmp_path)
    return {"uri": uri, "dir": tmp_path, "args": [*TINY, "--tracking-uri", uri]}


def _study(env, name: str) -> optuna.Study:
    path = env["dir"] / "results" / "optuna.journal"
    return optuna.load_study(
        study_name=name, storage=JournalStorage(JournalFileBackend(str(path)))
    )


def _runs(uri: str, study: optuna.Study) -> dict[int, object]:
    tracker = connect(uri)
    parent = study.user_attrs["mlflow_parent_run_id"]
    runs = tracker.client.search_runs(
        [tracker.experiment_id], f"tags.mlflow.parentRunId = '{parent}'"
    )
    return {int(r.data.tags["trial"]): r for r in runs}


def _files(client, run_id: str) -> set[str]:
    return {a.path for a in client.list_artifacts(run_id)}


def _gone(pid: int) -> bool:
    """The process has exited (an orphan's zombie counts: this container's init may not reap)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _writer_pids(folder: Path) -> list[int]:
    return [int(p.stem.split("-", 1)[1]) for p in folder.glob("writer-*.lock")]


def test_ctrl_c_drains_the_writer_queue_and_every_finished_trial_has_its_files(env, monkeypatch):
    locks = env["dir"] / "results" / "studies" / "gan-ring8-wasserstein" / "writers"
    original_epoch, original_close = StandardGAN.train_epoch, writer.QueuedTracker.close
    original_init = writer.QueuedTracker.__init__
    calls, stopped, pending_at_close, trackers = [], [], [], []

    def init(self, *args, **kwargs):
        trackers.append(self)
        original_init(self, *args, **kwargs)

    def epoch(self):
        calls.append(1)
        if len(calls) == 1:  # hold the writer: nothing the trials log can be done before ^C
            # once idle: a writer stopped inside a store commit would lock SQLite for all
            assert trackers[0].wait_done(timeout=60)
            stopped.extend(_writer_pids(locks))
            for pid in stopped:
                os.kill(pid, signal.SIGSTOP)
        if len(calls) == 2:  # trials 0 and 1 finished in epoch 1; 2 and 3 are training
            raise KeyboardInterrupt
        return original_epoch(self)

    def close(self, log=None):
        pending_at_close.append(self.pending)
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        return original_close(self, log)

    monkeypatch.setattr(StandardGAN, "train_epoch", epoch)
    monkeypatch.setattr(writer.QueuedTracker, "close", close)
    monkeypatch.setattr(writer.QueuedTracker, "__init__", init)
    argv = ["--space", "gan", "--trials", "4", "--epochs", "1", "--population", "2"]
    assert study_cli.main([*argv, *env["args"]]) == 130
    assert len(stopped) == writer.default_writers() >= 2
    # trials 0 and 1: epoch metrics, objective, files and run end each (their params were
    # logged before the writers were held); 2 and 3: params and run end
    assert pending_at_close == [12]

    study = _study(env, "gan-ring8-wasserstein")
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE] * 2 + [TrialState.FAIL] * 2
    runs = _runs(env["uri"], study)
    client = connect(env["uri"]).client
    for t in study.trials[:2]:
        run = runs[t.number]
        assert run.info.status == "FINISHED"
        assert t.user_attrs["seeds"][0]["artifacts"] == sorted(FILES, key=_written_order)
        assert _files(client, run.info.run_id) == FILES
        assert set(run.data.tags[ARTIFACTS_TAG].split()) == FILES
        assert MISSING_TAG not in run.data.tags
        for key in ("sliced_w2", "w1", "objective/w1"):  # each metric logged once
            assert len(client.get_metric_history(run.info.run_id, key)) == 1
    for t in study.trials[2:]:
        run = runs[t.number]
        assert t.user_attrs["reason"] == "interrupted"
        assert (run.info.status, run.data.tags["state"]) == ("KILLED", "INTERRUPTED")
        assert run.data.tags[ARTIFACTS_TAG] == "none" and MISSING_TAG not in run.data.tags
        assert _files(client, run.info.run_id) == set()
    assert list(locks.glob("*")) == []  # the writers ended and took their lock files along
    assert all(_gone(pid) for pid in stopped)


def _written_order(name: str) -> int:
    return ["config.json", "metrics.json", "losses.png", "samples.png"].index(name)


def test_one_metrics_call_per_trial_and_epoch_and_each_metric_once(env, monkeypatch):
    counted: Counter = Counter()
    original = writer.QueuedTracker.log_metrics

    def log_metrics(self, run_id, metrics, step):
        counted[run_id, step] += 1
        return original(self, run_id, metrics, step)

    monkeypatch.setattr(writer.QueuedTracker, "log_metrics", log_metrics)
    argv = ["--space", "gan", "--trials", "2", "--epochs", "3", "--seeds", "2"]
    assert study_cli.main([*argv, "--population", "2", *env["args"]]) == 0
    study = _study(env, "gan-ring8-wasserstein")
    runs = _runs(env["uri"], study)
    ids = {r.info.run_id for r in runs.values()}
    # both seeds of an epoch in one call; step 0 is the objective
    assert counted == Counter({(i, s): 1 for i in ids for s in (0, 1, 2, 3)})
    client = connect(env["uri"]).client
    for run in runs.values():
        keys = run.data.metrics.keys()
        assert {"seed_0/sliced_w2", "seed_1/sliced_w2", "sliced_w2", "objective/w1"} <= keys
        for key in keys:  # each metric once per step (exact W1 only at the last epoch)
            steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
            if key.startswith("objective/"):
                assert steps == [0], key
            elif key.rsplit("/", 1)[-1] in ("sliced_w2", "g_loss", "d_loss"):
                assert steps == [1, 2, 3], key
            else:
                assert steps in ([3], [1, 2, 3]), key
        assert set(run.data.tags[ARTIFACTS_TAG].split()) == {
            f"seed_{s}/{f}" for s in (0, 1) for f in FILES
        }


KILLED_WORKER = r"""
import json, os, signal, sys
import numpy as np
from benchmark.tracking import connect
from benchmark.writer import QueuedTracker

uri, lock_dir, run_a, run_b = sys.argv[1:]
tracker = connect(uri)
small = {"config": {}, "summary": {}, "variant": "gan", "g_losses": np.ones(4),
         "d_losses": np.ones(4), "samples": {"default": np.zeros((64, 2))}, "centers": None}
big = {**small, "samples": {"default": np.zeros((64, 784)), "noise": np.zeros((64, 784))}}
queued = QueuedTracker(tracker, lock_dir=__import__("pathlib").Path(lock_dir), writers=1)
os.kill(queued.pids[0], signal.SIGSTOP)  # the writer reads nothing until the test resumes it
queued.write_artifacts(run_a, None, small)
queued.end_trial(run_a, "COMPLETE")
queued.handed_over()  # run A's calls are in the writer's pipe (they fit in its buffer)
queued.write_artifacts(run_b, None, big)  # 0.8 MB: cannot be handed over to a stopped writer
queued.end_trial(run_b, "COMPLETE")
print(json.dumps(queued.pids), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_sigkilled_worker_its_writer_finishes_what_it_received_and_records_say_the_rest(
    env,
):
    tracker = connect(env["uri"])
    parent = tracker.start_study("killed", tags={}, params={})
    run_a = tracker.start_trial(parent, study_name="killed", number=0, params={})
    run_b = tracker.start_trial(parent, study_name="killed", number=1, params={})
    small = {"g_losses": np.ones(4), "samples": {"default": np.zeros((64, 2))}}
    big = {
        "g_losses": np.ones(4),
        "samples": {m: np.zeros((64, 784)) for m in ("default", "noise")},
    }
    study = optuna.create_study(
        study_name="killed",
        storage=JournalStorage(JournalFileBackend(str(env["dir"] / "killed.journal"))),
    )
    for payload in (small, big):
        trial = study.ask()
        trial.set_user_attr("seeds", [{"seed": 0, "artifacts": payload_files(payload)}])
        study.tell(trial, 1.0)
    locks = env["dir"] / "writers"
    out, err = env["dir"] / "worker.out", env["dir"] / "worker.err"
    with out.open("w") as stdout, err.open("w") as stderr:  # files: the writer outlives it
        done = subprocess.run(
            [sys.executable, "-c", KILLED_WORKER, env["uri"], str(locks), run_a, run_b],
            stdout=stdout,
            stderr=stderr,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        )
    assert done.returncode == -signal.SIGKILL, err.read_text()
    (pid,) = json.loads(out.read_text())
    os.kill(pid, signal.SIGCONT)  # the orphaned writer resumes: it finishes what it got
    # (its run creator, idle, may have exited already when the test looks)
    assert pid in writer.wait_for_writers(locks)
    assert _gone(pid) and list(locks.glob("*")) == []

    missing = writer.account_artifacts(tracker, parent, study.trials)
    assert missing == {
        1: ["config.json", "losses.png", "metrics.json", "samples.png", "samples_noise.png"]
    }
    a, b = tracker.client.get_run(run_a), tracker.client.get_run(run_b)
    assert _files(tracker.client, run_a) == {
        "config.json", "metrics.json", "losses.png", "samples.png"
    }  # fmt: skip
    assert a.info.status == "FINISHED" and MISSING_TAG not in a.data.tags
    assert set(a.data.tags[ARTIFACTS_TAG].split()) == _files(tracker.client, run_a)
    assert _files(tracker.client, run_b) == set()
    assert b.info.status == "RUNNING"  # its end never reached the writer: the study ends it
    assert b.data.tags[ARTIFACTS_TAG] == "none"
    assert b.data.tags[MISSING_TAG].split() == missing[1]


def test_study_with_a_sigkilled_worker_accounts_for_every_trials_files(env, tmp_path, monkeypatch):
    with hang_one_worker(tmp_path / "hang", monkeypatch) as killed:
        code = study_cli.main(["--space", "gan", "--trials", "2", "--workers", "2", *env["args"]])
    assert code == 0 and "pid" in killed
    study = _study(env, "gan-ring8-wasserstein")
    runs = _runs(env["uri"], study)
    client = connect(env["uri"]).client
    dead = study.trials[killed["trial"]]
    assert dead.state == TrialState.FAIL and "SIGKILL" in dead.user_attrs["reason"]
    run = runs[dead.number]
    assert run.info.status == "FAILED"
    assert run.data.tags[ARTIFACTS_TAG] == "none" and MISSING_TAG not in run.data.tags
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 2
    for t in complete:
        run = runs[t.number]
        assert run.info.status == "FINISHED"
        assert set(t.user_attrs["seeds"][0]["artifacts"]) == FILES
        assert _files(client, run.info.run_id) == FILES
        assert set(run.data.tags[ARTIFACTS_TAG].split()) == FILES
        assert MISSING_TAG not in run.data.tags
    locks = env["dir"] / "results" / "studies" / "gan-ring8-wasserstein" / "writers"
    assert list(locks.glob("*")) == []


def test_writers_started_early_serve_the_tracker_that_binds_them_and_unused_ones_stop(env):
    """`Writers` start before the worker knows its tracking URI (their imports overlap its
    start-up): a QueuedTracker binds them and its calls are done; writers nobody bound stop
    when their `Writers` closes, lock files gone; bound writers cannot be bound twice."""
    lock_dir = env["dir"] / "writers"
    tracker = connect(env["uri"])
    parent = tracker.start_study("early", tags={}, params={})
    run = tracker.start_trial(parent, study_name="early", number=0, params={})
    with writer.Writers(lock_dir, count=2) as used:
        assert len(list(lock_dir.glob("writer-*.lock"))) == 2
        queued = writer.QueuedTracker(tracker, writers=used)
        queued.log_metrics(run, {"w1": 0.5}, 1)
        queued.end_trial(run, "COMPLETE")
        with pytest.raises(ValueError, match="bound to another QueuedTracker"):
            writer.QueuedTracker(tracker, writers=used)
        assert queued.close() == []
    assert [p.exitcode for p in (c.proc for c in used.channels)] == [0, 0]
    done = tracker.client.get_run(run)
    assert done.data.metrics == {"w1": 0.5} and done.info.status == "FINISHED"
    with writer.Writers(lock_dir, count=1) as unused:
        pass
    (channel,) = unused.channels
    assert channel.proc.exitcode == -signal.SIGTERM and not channel.bound  # had nothing to do
    assert list(lock_dir.glob("writer-*.lock")) == []


def _ready(queued) -> None:
    """Wait for the run creator to be connected (its first message), as the worker's first
    fill may find it still starting."""
    creator = queued._creator
    while not creator.is_ready and not creator.gone:
        creator._take(creator.channel.acks.recv())
    assert creator.ready()


def test_trial_runs_are_created_by_the_run_creator_behind_a_placeholder(env):
    """`start_trial` returns a placeholder at once; `resolve` gives the run the creator made
    (name, tags, parent link, params logged before its later calls); calls made with the
    placeholder land in it."""
    tracker = connect(env["uri"])
    parent = tracker.start_study("creator", tags={}, params={})
    queued = writer.QueuedTracker(tracker, writers=writer.Writers(env["dir"] / "w", count=1))
    _ready(queued)  # (a run asked for before, not answered when resolved, is made here)
    placeholder = queued.start_trial(
        parent, study_name="creator", number=1, params={"lr": 0.2}, tags={"worker": "w"}
    )
    assert placeholder.startswith(writer.PLACEHOLDER)
    queued.log_metrics(placeholder, {"w1": 0.25}, 1)
    queued.end_trial(placeholder, "COMPLETE")
    run_id = queued.resolve(placeholder)
    assert queued.resolve(run_id) == run_id and queued.resolve(placeholder) == run_id
    assert queued._creator.withdrawn == set()  # the creator made it
    assert queued.close() == []
    run = tracker.client.get_run(run_id)
    assert run.info.run_name == "trial-1 creator" and run.info.status == "FINISHED"
    assert run.data.tags["mlflow.parentRunId"] == parent and run.data.tags["worker"] == "w"
    assert run.data.tags["trial"] == "1" and run.data.params == {"lr": "0.2"}
    assert run.data.metrics == {"w1": 0.25}
    assert list((env["dir"] / "w").glob("*")) == []  # creator and writer ended, locks gone


def test_a_run_resolved_while_the_creator_starts_is_made_at_once_and_made_once(env):
    """A placeholder resolved before the creator is ready is made by the worker and
    withdrawn: the creator, once started, skips it (one run per trial); a run it made all
    the same (its withdrawal came too late) is deleted when the tracker closes."""
    tracker = connect(env["uri"])
    parent = tracker.start_study("starting", tags={}, params={})
    writers = writer.Writers(env["dir"] / "w", count=1)
    creator = writers.creator.channel.proc
    os.kill(creator.pid, signal.SIGSTOP)  # it imports MLflow for seconds: not ready yet
    queued = writer.QueuedTracker(tracker, writers=writers)
    placeholder = queued.start_trial(parent, study_name="starting", number=0, params={"a": 1})
    run_id = queued.resolve(placeholder)
    assert not queued._creator.is_ready  # the premise: made here, not by the creator
    late = queued.start_trial(parent, study_name="starting", number=1, params={})
    # as if withdrawn (the worker made it) too late: the creator had taken it already
    queued._asked.pop(late)
    queued._creator.withdrawn.add(late)
    os.kill(creator.pid, signal.SIGCONT)
    queued.end_trial(run_id, "COMPLETE")
    assert queued.close() == []
    runs = tracker.client.search_runs(
        [tracker.experiment_id], f"tags.mlflow.parentRunId = '{parent}'"
    )
    assert [(r.info.run_id, r.data.params) for r in runs] == [(run_id, {"a": "1"})]
    (duplicate,) = queued._creator.duplicates  # trial 1's run: made, then deleted
    assert tracker.client.get_run(duplicate).info.lifecycle_stage == "deleted"


def test_a_run_the_store_refuses_fails_its_trial_and_a_dead_creator_is_replaced(env):
    """The creator's error reaches the caller as RunNotCreated (each time it resolves);
    once the creator is SIGKILLed, the worker creates runs itself."""
    tracker = connect(env["uri"])
    parent = tracker.start_study("refused", tags={}, params={})
    queued = writer.QueuedTracker(tracker, writers=writer.Writers(env["dir"] / "w", count=1))
    _ready(queued)
    tracker.client.delete_experiment(tracker.experiment_id)
    try:
        doomed = queued.start_trial(parent, study_name="refused", number=1, params={})
        with pytest.raises(writer.RunNotCreated, match="active"):
            queued.resolve(doomed)
        with pytest.raises(writer.RunNotCreated, match="active"):
            queued.resolve(doomed)
    finally:
        tracker.client.restore_experiment(tracker.experiment_id)
    os.kill(queued._creator.channel.proc.pid, signal.SIGKILL)
    queued._creator.channel.proc.join()
    after = queued.start_trial(parent, study_name="refused", number=2, params={"lr": 1})
    run_id = queued.resolve(after)
    assert queued.close() == []
    run = tracker.client.get_run(run_id)
    assert run.data.tags["trial"] == "2" and run.data.params == {"lr": "1"}


def test_a_trial_whose_run_cannot_be_created_fails_and_the_others_train(env, monkeypatch):
    original = writer.QueuedTracker.resolve
    refused = []

    def resolve(self, run_id):
        if run_id in self._asked and not refused:  # the first placeholder the worker links
            refused.append(run_id)
            original(self, run_id)  # the run exists; the store's answer is made a refusal
            raise writer.RunNotCreated("MlflowException: the store refused (test)")
        return original(self, run_id)

    monkeypatch.setattr(writer.QueuedTracker, "resolve", resolve)
    monkeypatch.setattr(writer._Creator, "ready", lambda self: True)  # placeholders always
    argv = ["--space", "gan", "--trials", "3", "--epochs", "1", "--population", "2"]
    assert study_cli.main([*argv, *env["args"]]) == 0
    study = _study(env, "gan-ring8-wasserstein")
    states = sorted(t.state.name for t in study.trials)
    # a failed trial is not part of the budget: a fourth was taken
    assert states == ["COMPLETE"] * 3 + ["FAIL"] and len(refused) == 1
    (failed,) = [t for t in study.trials if t.state == TrialState.FAIL]
    reason = "RunNotCreated: MlflowException: the store refused (test)"
    assert failed.user_attrs["reason"] == reason
    assert "mlflow_run_id" not in failed.user_attrs
    runs = _runs(env["uri"], study)
    # the run made behind the refusal: ended by the study's closing sweep, by trial number
    assert runs[failed.number].info.status == "FAILED"
    for t in study.trials:
        if t.state == TrialState.COMPLETE:
            assert t.user_attrs["mlflow_run_id"] == runs[t.number].info.run_id
            assert runs[t.number].info.status == "FINISHED"


def test_trials_that_fail_before_they_are_linked_still_name_their_runs(env, monkeypatch):
    """A population whose build fails ends its trials before the worker linked their runs:
    each failed trial still records its run, which ends FAILED."""
    from benchmark import trials

    def build(self, pending):
        raise RuntimeError("the build broke (test)")

    monkeypatch.setattr(trials._PopulationRunner, "_build", build)
    monkeypatch.setattr(writer._Creator, "ready", lambda self: True)  # placeholders always
    argv = ["--space", "gan", "--trials", "2", "--epochs", "1", "--population", "2"]
    assert study_cli.main([*argv, *env["args"]]) == 1
    study = _study(env, "gan-ring8-wasserstein")
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 2
    runs = _runs(env["uri"], study)
    for t in study.trials:
        assert t.user_attrs["reason"] == "RuntimeError: the build broke (test)"
        assert t.user_attrs["mlflow_run_id"] == runs[t.number].info.run_id
        assert runs[t.number].info.status == "FAILED"


def test_the_worker_trains_with_its_start_up_heap_frozen_and_thaws_it_after(env, monkeypatch):
    """Full garbage collections walked the whole worker heap (0.3-0.6 s each on the training
    thread); the worker trains under `frozen_heap` and hands the objects back at the end."""
    import gc

    from benchmark.runner import frozen_heap

    assert gc.get_freeze_count() == 0
    with frozen_heap():
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0
    seen, original = [], StandardGAN.train_epoch

    def epoch(self):
        seen.append(gc.get_freeze_count())
        return original(self)

    monkeypatch.setattr(StandardGAN, "train_epoch", epoch)
    argv = ["--space", "gan", "--trials", "2", "--epochs", "1", "--population", "2"]
    assert study_cli.main([*argv, *env["args"]]) == 0
    assert seen and all(count > 10_000 for count in seen)  # modules, torch, MLflow, ...
    assert gc.get_freeze_count() == 0

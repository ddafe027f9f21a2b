"""Stopping a study with real signals to real processes: SIGTERM and SIGHUP of a one-worker
study, Ctrl-C (SIGINT), SIGHUP and SIGKILL of a launcher with two worker processes; real
journal files and a real MLflow store. Every wait polls with a deadline."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from benchmark import study as study_cli
from benchmark.launcher import INVOCATION_TAG
from benchmark.tracking import connect
from benchmark.trials import TEST_HANG_ENV

try:
    from tests._mlflow import fresh_mlflow_uri
except ImportError:  # tests/ on sys.path
    from _mlflow import fresh_mlflow_uri

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "--space", "gan", "--dataset", "ring8", "--epochs", "1",
    "--setting", "train_size=256", "--setting", "batch_size=128",
    "--setting", "n_eval=150", "--setting", "heldout_size=150", "--setting", "device=cpu",
]  # fmt: skip
STUDY = "gan-ring8-wasserstein"
DEADLINE = 120.0


@pytest.fixture
def env(tmp_path, tmp_path_factory, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = fresh_mlflow_uri(tmp_path_factory, tmp_path)
    hang = tmp_path / "hang"
    hang.mkdir()
    os.mkfifo(hang / "ready")
    return {"uri": uri, "dir": tmp_path, "hang": hang, "args": [*TINY, "--tracking-uri", uri]}


def _start_study(env: dict, *extra: str) -> tuple[subprocess.Popen, int]:
    """`python -m benchmark.study` in its own process; returns it once the first worker to
    reach the test hang point (mid-trial, after an epoch was reported) says so."""
    reader = os.open(env["hang"] / "ready", os.O_RDONLY | os.O_NONBLOCK)
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmark.study", "--trials", "50", *env["args"], *extra],
        cwd=env["dir"],
        env={
            **os.environ,
            "PYTHONPATH": str(REPO),
            TEST_HANG_ENV: str(env["hang"]),
            "OMP_NUM_THREADS": "1",
        },
        # files, not pipes: a worker that outlived its launcher would hold a pipe open
        stdout=(env["dir"] / "stdout.txt").open("w"),
        stderr=(env["dir"] / "stderr.txt").open("w"),
    )
    try:
        words = b""
        deadline = time.monotonic() + DEADLINE
        while not words.endswith(b"\n"):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait(timeout=DEADLINE)
                pytest.fail(f"no worker reached the hang point: {_stderr(env)}")
            if select.select([reader], [], [], 0.2)[0]:
                words += os.read(reader, 100)
    finally:
        os.close(reader)
    pid, trial = (int(w) for w in words.split())
    return proc, trial


def _stop(env: dict, proc: subprocess.Popen, signum: int) -> str:
    """Send `signum`, wait for the process to exit; its stderr."""
    proc.send_signal(signum)
    proc.wait(timeout=DEADLINE)
    return _stderr(env)


def _stderr(env: dict) -> str:
    return (env["dir"] / "stderr.txt").read_text()


def _descendants(root: int) -> set[int]:
    """Every living process below `root` (from /proc: pid -> parent pid)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    found, frontier = set(), {root}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting to be reaped has stopped running)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _wait_until_gone(pids: set[int], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while any(_alive(p) for p in pids):
        if time.monotonic() > deadline:
            left = sorted(p for p in pids if _alive(p))
            for pid in left:  # this test started them: do not leave them training
                os.kill(pid, signal.SIGKILL)
            pytest.fail(f"{what}: processes {left} still ran after {DEADLINE:g} s")
        time.sleep(0.1)


def _study(env: dict) -> optuna.Study:
    path = env["dir"] / "results" / "optuna.journal"
    return optuna.load_study(
        study_name=STUDY, storage=JournalStorage(JournalFileBackend(str(path)))
    )


def _runs(env: dict, parent: str) -> dict[int, object]:
    tracker = connect(env["uri"])
    runs = tracker.client.search_runs(
        [tracker.experiment_id], f"tags.mlflow.parentRunId = '{parent}'"
    )
    return {int(r.data.tags["trial"]): r for r in runs}


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_or_sighup_of_a_one_worker_study_stops_it_as_ctrl_c_does(env, signum, code):
    proc, hung = _start_study(env)
    err = _stop(env, proc, signum)
    assert proc.returncode == code, err
    name = signal.Signals(signum).name
    assert "interrupted: the running trial(s) were recorded as FAIL" in err

    study = _study(env)
    trial = study.trials[hung]
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["reason"] == f"interrupted ({name})"
    assert all(t.state != TrialState.RUNNING for t in study.trials)
    parent = study.user_attrs["mlflow_parent_run_id"]
    tracker = connect(env["uri"])
    assert tracker.client.get_run(parent).info.status == "KILLED"
    run = _runs(env, parent)[hung]
    assert run.info.status == "KILLED"
    assert (run.data.tags["state"], run.data.tags["reason"]) == (
        "INTERRUPTED",
        f"interrupted ({name})",
    )
    best = json.loads((env["dir"] / "results" / "studies" / STUDY / "best.json").read_text())
    assert best["trials"]["FAIL"] == 1 and "RUNNING" not in best["trials"]


@pytest.mark.parametrize(
    ("signum", "code", "reason"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGHUP, 129, "interrupted (SIGHUP)")],
    ids=["ctrl-c", "sighup"],
)
def test_ctrl_c_or_sighup_of_the_launcher_stops_its_workers_and_records_everything(
    env, signum, code, reason
):
    # SIGINT sent to the launcher process is what a terminal's Ctrl-C delivers to it (the
    # workers are in their own process group: the launcher forwards it once)
    proc, hung = _start_study(env, "--workers", "2")
    below = _descendants(proc.pid)
    assert len(below) >= 3  # the fork server and two workers
    err = _stop(env, proc, signum)
    assert proc.returncode == code, err
    _wait_until_gone(below, f"after {signal.Signals(signum).name} of the launcher")

    study = _study(env)
    assert study.trials[hung].state == TrialState.FAIL
    assert study.trials[hung].user_attrs["reason"] == reason
    assert all(t.state != TrialState.RUNNING for t in study.trials)
    parent = study.user_attrs["mlflow_parent_run_id"]
    assert connect(env["uri"]).client.get_run(parent).info.status == "KILLED"
    for number, run in _runs(env, parent).items():
        expected = "FINISHED" if study.trials[number].state == TrialState.COMPLETE else "KILLED"
        assert run.info.status == expected
    assert (env["dir"] / "results" / "studies" / STUDY / "best.json").exists()


def test_sigkill_of_the_launcher_takes_its_workers_down_and_the_next_run_closes_the_parent(
    env, capsys
):
    proc, hung = _start_study(env, "--workers", "2")
    below = _descendants(proc.pid)
    assert len(below) >= 3  # the fork server and two workers
    _stop(env, proc, signal.SIGKILL)
    _wait_until_gone(below, "after SIGKILL of the launcher")

    study = _study(env)
    trial = study.trials[hung]
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["reason"] == f"interrupted (launcher {proc.pid} is gone)"
    assert all(t.state != TrialState.RUNNING for t in study.trials)
    parent = study.user_attrs["mlflow_parent_run_id"]
    tracker = connect(env["uri"])
    assert tracker.client.get_run(parent).info.status == "RUNNING"  # nobody could end it
    for number, run in _runs(env, parent).items():
        assert run.info.status != "RUNNING", f"trial {number}'s run left RUNNING"
    assert not (env["dir"] / "results" / "studies" / STUDY / "best.json").exists()

    finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    capsys.readouterr()
    assert study_cli.main(["--trials", str(finished + 1), *env["args"]]) == 0
    err = capsys.readouterr().err
    assert f"closed the study's MLflow parent run {parent} as KILLED" in err
    assert f"process(es) {proc.pid} on {socket.gethostname()}, which are gone" in err
    run = tracker.client.get_run(parent)
    assert run.info.status == "FINISHED"  # resumed by the re-run, then ended by it
    tag = f"{INVOCATION_TAG}{socket.gethostname()}/{proc.pid}"
    assert run.data.tags[tag] == "gone"
    assert run.data.tags[f"{INVOCATION_TAG}{socket.gethostname()}/{os.getpid()}"] == "ended"
    assert "stale_reason" in run.data.tags
    best = json.loads((env["dir"] / "results" / "studies" / STUDY / "best.json").read_text())
    assert best["mlflow_parent_run_id"] == parent

"""python -m benchmark.study end to end: real journal / SQLite storage, a real MLflow store,
real worker subprocesses, tiny ring8 budgets."""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from benchmark import study as study_cli
from benchmark.tracking import connect
from benchmark.trainables.gan import StandardGAN
from benchmark.trials import TEST_HANG_ENV

try:
    from tests._hang import hang_one_worker
    from tests._mlflow import fresh_mlflow_uri
except ImportError:  # tests/ on sys.path (pytest's default rootdir-less import)
    from _hang import hang_one_worker
    from _mlflow import fresh_mlflow_uri

TINY = [
    "--dataset", "ring8", "--epochs", "1",
    "--setting", "train_size=256", "--setting", "batch_size=128",
    "--setting", "n_eval=100", "--setting", "heldout_size=100", "--setting", "device=cpu",
]  # fmt: skip


@pytest.fixture
def env(tmp_path, tmp_path_factory, monkeypatch):
    """cwd = a fresh folder (results/ is created there) and a fresh MLflow store."""
    monkeypatch.chdir(tmp_path)
    uri = fresh_mlflow_uri(tmp_path_factory, tmp_path)
    return {"uri": uri, "dir": tmp_path, "args": [*TINY, "--tracking-uri", uri]}


def _journal(path: Path, name: str) -> optuna.Study:
    return optuna.load_study(
        study_name=name, storage=JournalStorage(JournalFileBackend(str(path)))
    )


def _children(uri: str, parent: str) -> list:
    tracker = connect(uri)
    return tracker.client.search_runs(
        [tracker.experiment_id], f"tags.mlflow.parentRunId = '{parent}'"
    )


def _states(study: optuna.Study) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.trials:
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def test_four_trials_complete_with_a_parent_and_four_child_runs(env, capsys):
    code = study_cli.main(["--space", "gan", "--trials", "4", *env["args"]])
    assert code == 0
    study = _journal(env["dir"] / "results" / "optuna.journal", "gan-ring8-wasserstein")
    assert _states(study) == {"COMPLETE": 4}
    for t in study.trials:
        # the objective is the final exact W1 of the (single) seed
        assert t.value == pytest.approx(t.user_attrs["seeds"][0]["w1"])
        assert t.value == pytest.approx(t.user_attrs["final"]["w1"])
        assert math.isfinite(t.value) and t.value > 0

    parent_id = study.user_attrs["mlflow_parent_run_id"]
    tracker = connect(env["uri"])
    parent = tracker.client.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    for tag in ("space", "sampler", "pruner", "objective", "version.optuna", "version.mlflow"):
        assert tag in parent.data.tags
    children = _children(env["uri"], parent_id)
    assert sorted(int(r.data.tags["trial"]) for r in children) == [0, 1, 2, 3]
    for run in children:
        assert run.info.status == "FINISHED"
        trial = study.trials[int(run.data.tags["trial"])]
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
        assert run.data.metrics["w1"] == pytest.approx(trial.value)
        assert float(run.data.params["lr"]) == pytest.approx(trial.params["lr"])
        artifacts = {a.path for a in tracker.client.list_artifacts(run.info.run_id)}
        assert {"samples.png", "losses.png", "config.json", "metrics.json"} <= artifacts

    best = json.loads((env["dir"] / "results/studies/gan-ring8-wasserstein/best.json").read_text())
    assert best["best"][0]["trial"] == min(study.trials, key=lambda t: t.value).number
    assert best["best"][0]["values"]["w1"] == pytest.approx(study.best_value)
    assert best["trials"] == {"COMPLETE": 4}
    assert f"#{study.best_trial.number} gan" in capsys.readouterr().out


def test_rerun_resumes_and_a_mismatched_rerun_touches_nothing(env):
    storage = "sqlite:///results/s.db"  # an RDB storage this time

    def args(trials: int) -> list[str]:
        return ["--space", "mixture", "--trials", str(trials), "--storage", storage, *env["args"]]

    assert study_cli.main(args(1)) == 0
    first = optuna.load_study(study_name="mixture-ring8-wasserstein", storage=storage)
    before = [(t.number, t.params, t.value) for t in first.trials]
    parent = first.user_attrs["mlflow_parent_run_id"]

    assert study_cli.main(args(2)) == 0
    again = optuna.load_study(study_name="mixture-ring8-wasserstein", storage=storage)
    assert _states(again) == {"COMPLETE": 2}  # one new trial, the first one counted
    assert [(t.number, t.params, t.value) for t in again.trials[:1]] == before
    assert again.user_attrs["mlflow_parent_run_id"] == parent
    assert len(_children(env["uri"], parent)) == 2

    digest = hashlib.sha256(Path("results/s.db").read_bytes()).hexdigest()
    assert study_cli.main([*args(3), "--epochs", "2"]) == 2
    assert hashlib.sha256(Path("results/s.db").read_bytes()).hexdigest() == digest


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--space", "wgan"], "valid: realmix, mixture, gan, compare"),
        (["--space", "gan", "--storage", "foo://bar"], "invalid --storage 'foo://bar'"),
        (["--space", "gan", "--storage", "optuna.txt"], "invalid --storage"),
        (["--space", "gan", "--param", "lr=5"], "lr in (0, 1]"),
        (["--space", "gan", "--param", "p_mix=0.5"], "not a parameter of gan"),
        (["--space", "compare", "--param", "t_a=-1"], "t_a in (0, 1000]"),
        (["--space", "gan", "--gpus", "0"], "torch.cuda.device_count() == 0"),
        (["--space", "gan", "--gpus", "all"], "no CUDA GPU is visible"),
        (["--space", "gan", "--trials", "0"], "--trials 0: must be >= 1"),
        (["--space", "gan", "--workers", "0"], "--workers 0: must be >= 1"),
        (["--space", "gan", "--setting", "n_evals=3"], "unknown setting; valid:"),
        (["--space", "gan", "--epochs", "0"], "epochs=0 is invalid"),
        (["--space", "gan", "--dataset", "cifar"], "valid: mnist"),
        (["--space", "gan", "--sampler", "cmaes", "--objective", "pareto"], "cmaes"),
        (["--space", "gan", "--objective", "wasserstein-noise"], "not a RealMix space"),
        (["--space", "gan", "--objective", "cfid", "--dataset", "ring8"], "needs a digit"),
    ],
)
def test_bad_input_exits_2_with_a_message_and_stores_nothing(env, capsys, argv, message):
    if torch_gpus() and "--gpus" in argv:
        pytest.skip("this machine has GPUs")
    assert study_cli.main([*argv, "--tracking-uri", env["uri"]]) == 2
    assert message in capsys.readouterr().err
    assert not (env["dir"] / "results").exists()


def test_unreachable_database_exits_2_without_leaking_the_password(env, capsys):
    bad = ["--space", "gan", "--storage", "postgresql://mix:s3cret@127.0.0.1:1/db"]
    assert study_cli.main([*bad, *env["args"]]) == 2
    err = capsys.readouterr().err
    assert "storage 'postgresql://mix:***@127.0.0.1:1/db'" in err
    assert "s3cret" not in err
    (env["dir"] / "not-a-dir").write_text("")
    sqlite_bad = ["--space", "gan", "--storage", "sqlite:///not-a-dir/optuna.db"]
    assert study_cli.main([*sqlite_bad, *env["args"]]) == 2
    assert "cannot reach storage 'sqlite:///not-a-dir/optuna.db'" in capsys.readouterr().err


def torch_gpus() -> int:
    import torch

    return torch.cuda.device_count()


def test_diverged_runs_are_pruned_with_a_reason_and_the_study_goes_on(env, monkeypatch):
    original = StandardGAN.train_epoch

    def nan_losses(self):
        result = original(self)
        result.g_losses[:] = np.nan
        return result

    monkeypatch.setattr(StandardGAN, "train_epoch", nan_losses)
    assert study_cli.main(["--space", "gan", "--trials", "2", *env["args"]]) == 0
    study = _journal(env["dir"] / "results" / "optuna.journal", "gan-ring8-wasserstein")
    assert _states(study) == {"PRUNED": 2}
    assert [t.user_attrs["reason"] for t in study.trials] == ["diverged", "diverged"]
    for run in _children(env["uri"], study.user_attrs["mlflow_parent_run_id"]):
        assert run.info.status == "KILLED"
        assert (run.data.tags["state"], run.data.tags["reason"]) == ("PRUNED", "diverged")


def test_ctrl_c_records_the_running_trial_and_keeps_completed_ones(env, monkeypatch):
    original = StandardGAN.train_epoch
    calls = []

    def interrupt_second_trial(self):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # what SIGINT does in the middle of an epoch
        return original(self)

    monkeypatch.setattr(StandardGAN, "train_epoch", interrupt_second_trial)
    assert study_cli.main(["--space", "gan", "--trials", "3", *env["args"]]) == 130
    study = _journal(env["dir"] / "results" / "optuna.journal", "gan-ring8-wasserstein")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL]
    assert study.trials[1].user_attrs["reason"] == "interrupted"
    tracker = connect(env["uri"])
    parent_id = study.user_attrs["mlflow_parent_run_id"]
    assert tracker.client.get_run(parent_id).info.status == "KILLED"
    runs = {int(r.data.tags["trial"]): r for r in _children(env["uri"], parent_id)}
    assert runs[0].info.status == "FINISHED"
    assert (runs[1].info.status, runs[1].data.tags["state"]) == ("KILLED", "INTERRUPTED")


def test_pareto_objective_with_fixed_params_and_two_seeds(env):
    argv = ["--space", "gan", "--objective", "pareto", "--trials", "2", "--seeds", "2",
            "--param", "lr=0.0005", "--param", "z_dim=8", *env["args"]]  # fmt: skip
    assert study_cli.main(argv) == 0
    study = _journal(env["dir"] / "results" / "optuna.journal", "gan-ring8-pareto")
    assert _states(study) == {"COMPLETE": 2}
    for t in study.trials:
        assert t.params["lr"] == 0.0005  # fixed through the sampler: recorded, not searched
        assert t.user_attrs["config"]["params"]["z_dim"] == 8
        seeds = t.user_attrs["seeds"]
        assert [s["seed"] for s in seeds] == [0, 1]
        assert t.values[0] == pytest.approx(np.mean([s["w1"] for s in seeds]))
        assert t.values[1] == pytest.approx(np.mean([s["g_loss_var"] for s in seeds]))
    best = json.loads((env["dir"] / "results/studies/gan-ring8-pareto/best.json").read_text())
    front = {e["trial"] for e in best["best"]}
    a, b = study.trials
    dominated = {
        x.number
        for x, y in ((a, b), (b, a))
        if all(p >= q for p, q in zip(x.values, y.values)) and x.values != y.values
    }
    assert front == {0, 1} - dominated
    tracker = connect(env["uri"])
    run = tracker.client.get_run(study.trials[0].user_attrs["mlflow_run_id"])
    assert {
        "seed_0/sliced_w2",
        "seed_1/sliced_w2",
        "w1",
        "objective/w1",
    } <= run.data.metrics.keys()
    assert {a.path for a in tracker.client.list_artifacts(run.info.run_id)} == {"seed_0", "seed_1"}


def test_noise_mode_objective_scores_realmix_without_real_data(env):
    # p_mix is fixed: TPE may sample p_mix ~ 0.002, and then most 100-sample buffer-mode
    # sets contain no buffer image at all, so the two modes' W1 coincide (the streams are
    # aligned across modes by design). At p_mix = 0.9 the modes must differ.
    argv = ["--space", "realmix", "--objective", "wasserstein-noise", "--trials", "2",
            "--pruner", "none", "--param", "p_mix=0.9", *env["args"]]  # fmt: skip
    assert study_cli.main(argv) == 0
    study = _journal(env["dir"] / "results" / "optuna.journal", "realmix-ring8-wasserstein-noise")
    assert _states(study) == {"COMPLETE": 2}
    for t in study.trials:
        (seed,) = t.user_attrs["seeds"]
        assert t.value == pytest.approx(seed["w1_noise"])
        assert seed["w1_noise"] != seed["w1"]


def test_two_workers_share_a_study_and_a_sigkilled_trial_is_retried(env, tmp_path, monkeypatch):
    with hang_one_worker(tmp_path / "hang", monkeypatch) as killed:
        code = study_cli.main(["--space", "gan", "--trials", "2", "--workers", "2", *env["args"]])
    assert code == 0
    assert "pid" in killed, "no worker reached the test hang point"

    study = _journal(env["dir"] / "results" / "optuna.journal", "gan-ring8-wasserstein")
    assert _states(study) == {"COMPLETE": 2, "FAIL": 1}
    dead = study.trials[killed["trial"]]
    assert dead.state == TrialState.FAIL
    assert "SIGKILL" in dead.user_attrs["reason"]
    retries = [t for t in study.trials if t.user_attrs.get("retried_from") == dead.number]
    assert len(retries) == 1
    assert retries[0].state == TrialState.COMPLETE and retries[0].params == dead.params
    # no trial lost or duplicated: 2 distinct configurations completed, each once
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len({tuple(sorted(t.params.items())) for t in complete}) == 2
    workers = {t.user_attrs["worker"].rsplit(":", 1)[1] for t in study.trials}
    assert len(workers) >= 2 and str(os.getpid()) not in workers

    runs = {
        r.info.run_id: r for r in _children(env["uri"], study.user_attrs["mlflow_parent_run_id"])
    }
    assert runs[dead.user_attrs["mlflow_run_id"]].info.status == "FAILED"
    finished = [r for r in runs.values() if r.info.status == "FINISHED"]
    assert sorted(int(r.data.tags["trial"]) for r in finished) == sorted(
        t.number for t in complete
    )


def test_compare_study_gives_each_variant_its_share_and_fixes_lr_in_every_branch(env):
    argv = ["--space", "compare", "--trials", "3", "--param", "lr=0.001", *env["args"]]
    assert study_cli.main(argv) == 0
    study = _journal(env["dir"] / "results" / "optuna.journal", "compare-ring8-wasserstein")
    assert _states(study) == {"COMPLETE": 3}
    assert sorted(t.params["trainable"] for t in study.trials) == ["gan", "mixture", "realmix"]
    for t in study.trials:
        variant = t.params["trainable"]
        assert t.params[f"{variant}.lr"] == 0.001
        assert t.user_attrs["config"] == {
            "trainable": variant,
            "params": t.user_attrs["config"]["params"],
        }
        assert t.user_attrs["config"]["params"]["lr"] == 0.001


def test_resume_requeues_a_trial_left_running_by_a_dead_worker(env):
    def argv(trials: int) -> list[str]:
        return ["--space", "gan", "--trials", str(trials), *env["args"]]

    assert study_cli.main(argv(1)) == 0
    study = _journal(env["dir"] / "results" / "optuna.journal", "gan-ring8-wasserstein")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    orphan = study.ask()
    orphan.suggest_float("lr", 1e-5, 1e-2, log=True)
    orphan.set_user_attr("worker", f"{socket.gethostname()}:{int(gone.stdout)}")

    assert study_cli.main(argv(2)) == 0
    study = _journal(env["dir"] / "results" / "optuna.journal", "gan-ring8-wasserstein")
    assert _states(study) == {"COMPLETE": 2, "FAIL": 1}
    assert study.trials[1].state == TrialState.FAIL
    assert "is gone" in study.trials[1].user_attrs["reason"]
    assert study.trials[2].user_attrs["retried_from"] == 1
    assert study.trials[2].params["lr"] == study.trials[1].params["lr"]


def test_ctrl_c_in_the_launcher_stops_every_worker_cleanly(env, tmp_path, monkeypatch):
    hang = tmp_path / "hang"
    hang.mkdir()
    os.mkfifo(hang / "ready")
    monkeypatch.setenv(TEST_HANG_ENV, str(hang))
    announced: list[str] = []

    def press_ctrl_c() -> None:
        with open(hang / "ready") as fifo:
            announced.extend(fifo.read().split())
        if announced:
            os.kill(os.getpid(), signal.SIGINT)  # the launcher runs in this process

    thread = threading.Thread(target=press_ctrl_c, daemon=True)
    thread.start()
    try:
        code = study_cli.main(["--space", "gan", "--trials", "50", "--workers", "2", *env["args"]])
    finally:
        if thread.is_alive():
            with open(os.open(hang / "ready", os.O_WRONLY | os.O_NONBLOCK), "w"):
                pass
        thread.join(timeout=10)
    assert announced, "no worker reached the test hang point"
    assert code == 130, f"SIGINT was sent to the launcher; it returned {code}"
    # the launcher ignored Ctrl-C while it stopped its workers; its in-process caller has its
    # own handler back (else every later Ctrl-C here, and in children it spawns, is ignored)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    study = _journal(env["dir"] / "results" / "optuna.journal", "gan-ring8-wasserstein")
    hung = study.trials[int(announced[1])]
    assert hung.state == TrialState.FAIL and hung.user_attrs["reason"] == "interrupted"
    states = _states(study)
    assert set(states) <= {"COMPLETE", "FAIL"} and states["FAIL"] <= 2  # nothing left running
    assert states.get("COMPLETE", 0) < 50
    tracker = connect(env["uri"])
    parent = study.user_attrs["mlflow_parent_run_id"]
    assert tracker.client.get_run(parent).info.status == "KILLED"
    for run in _children(env["uri"], parent):
        trial = study.trials[int(run.data.tags["trial"])]
        expected = "FINISHED" if trial.state == TrialState.COMPLETE else "KILLED"
        assert run.info.status == expected

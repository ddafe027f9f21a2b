"""What a user of `python -m benchmark.study` sees: the start-up summary, per-epoch progress,
reproducible sampling (--sampler-seed), pruned trials valued in the objective's units, the
ending, and one CLI vocabulary with every flag explained. Real journal storage, a real MLflow
store, tiny ring8 budgets."""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from benchmark import ablation, gpucheck, report, reproduce, train
from benchmark import study as study_cli
from benchmark.perf import cli as perf
from benchmark.progress import StudyProgress, TrialSteps
from benchmark.tracking import connect

try:
    from tests._mlflow import fresh_mlflow_uri
except ImportError:  # tests/ on sys.path (pytest's default rootdir-less import)
    from _mlflow import fresh_mlflow_uri

TINY = [
    "--dataset", "ring8", "--epochs", "2", "--train-size", "256", "--n-eval", "150",
    "--setting", "heldout_size=100", "--device", "cpu",
]  # fmt: skip
NAME = "realmix-ring8-wasserstein"


@pytest.fixture
def env(tmp_path, tmp_path_factory, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = fresh_mlflow_uri(tmp_path_factory, tmp_path)
    return {"uri": uri, "dir": tmp_path, "args": [*TINY, "--tracking-uri", uri]}


def _journal(folder: Path, name: str = NAME) -> optuna.Study:
    path = folder / "results" / "optuna.journal"
    return optuna.load_study(
        study_name=name, storage=JournalStorage(JournalFileBackend(str(path)))
    )


def test_startup_summary_per_epoch_progress_and_ending(env, capsys):
    argv = ["--space", "realmix", "--trials", "2", "--sampler-seed", "3", *env["args"]]
    assert study_cli.main(argv) == 0
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    study = _journal(env["dir"])

    # the summary comes first and says what is about to run, and where it goes
    assert err[0] == f"study {NAME} (new study)"
    summary = "\n".join(err[:10])
    for text in (
        "space     realmix: searches p_mix, alpha, noise_sigma, buffer_refresh, "
        "buffer_capacity, lr",
        "budget    2 trials x 2 epochs, 1 seed per trial",
        "objective wasserstein: exact W1 at the last epoch, 150 samples per side",
        "pruning   median on w1 at each of 2 scored step(s) per trial",
        "data      ring8: generated: 256 train / 100 held-out",
        "device    cpu, 1 worker in this process, population 1",
        "sampler   tpe, seed 3",
        "storage   results/optuna.journal",
        f"tracking  {env['uri']}",
    ):
        assert text in summary, text
    assert not any("[" in line for line in err[:10])  # no bar inside the summary

    # a progress line after every scored epoch of every trial, with its reported W1
    bars = [line for line in err if line.startswith(f"{NAME} ")]
    for trial in study.trials:
        for step, value in sorted(trial.intermediate_values.items()):
            note = f"#{trial.number} epoch {step + 1}/2 w1 "
            hits = [i for i, line in enumerate(bars) if note.lower() in line.lower()]
            assert hits, note
            assert f"W1 {value:.4g}" in bars[hits[0]]
    first_epoch = next(i for i, line in enumerate(bars) if "#0 epoch 1/2" in line)
    first_done = next(i for i, line in enumerate(bars) if f"{NAME} 1/2 " in line)
    assert first_epoch < first_done  # progress moved before any trial had ended

    # the ending: counts, noise-mode W1 of the best trial, the next commands
    out = captured.out
    states = [t.state for t in study.trials]
    complete, pruned = states.count(TrialState.COMPLETE), states.count(TrialState.PRUNED)
    assert f"{NAME}: 2 of 2 trials finished ({complete} complete, {pruned} pruned)" in out
    best = study.best_trial
    assert f"W1 in noise mode {best.user_attrs['final']['w1_noise']:.5g}" in out
    assert f"next: python -m benchmark.report --study {NAME}\n" in out
    assert f"mlflow ui --backend-store-uri {env['uri']}" in out
    assert f"add --seeds 3 --study-name {NAME}-s3" in out


def test_population_progress_shows_every_running_trial_once_per_epoch(env, capsys):
    argv = ["--space", "realmix", "--trials", "2", "--population", "2", *env["args"]]
    assert study_cli.main(argv) == 0
    bars = [line for line in capsys.readouterr().err.splitlines() if line.startswith(NAME)]
    study = _journal(env["dir"])
    # after epoch 1 both trials are shown on one line, with the W1 each reported
    line = next(b for b in bars if "#0 epoch 1/2" in b)
    for trial in study.trials:
        assert f"#{trial.number} epoch 1/2 W1 {trial.intermediate_values[0]:.4g}" in line
    # one redraw per population epoch (not one per trial), plus the first line and one per
    # trial end (epoch 2 is the last: its trials end, and those redraws show it)
    assert sum("epoch 1/2" in b for b in bars) <= 2
    assert len(bars) <= 1 + 2 + 2


def test_sampler_seed_reproduces_trial_zero_and_a_resume_with_another_is_refused(
    env, tmp_path, monkeypatch
):
    params = {}
    for folder, seed in (("a", 7), ("b", 7), ("c", 8)):
        (tmp_path / folder).mkdir()
        monkeypatch.chdir(tmp_path / folder)
        argv = ["--space", "realmix", "--trials", "1", "--sampler-seed", str(seed)]
        assert study_cli.main([*argv, *env["args"]]) == 0
        study = _journal(tmp_path / folder)
        assert study.user_attrs["sampler_seed"] == seed
        params[folder] = study.trials[0].params
    assert params["a"] == params["b"]  # two fresh studies, same seed: the same trial 0
    assert params["a"] != params["c"]

    monkeypatch.chdir(tmp_path / "a")
    journal = tmp_path / "a" / "results" / "optuna.journal"
    digest = hashlib.sha256(journal.read_bytes()).hexdigest()
    argv = ["--space", "realmix", "--trials", "2", "--sampler-seed", "8", *env["args"]]
    assert study_cli.main(argv) == 2
    assert hashlib.sha256(journal.read_bytes()).hexdigest() == digest
    argv = ["--space", "realmix", "--trials", "2", *env["args"]]  # unseeded: also another
    assert study_cli.main(argv) == 2
    assert hashlib.sha256(journal.read_bytes()).hexdigest() == digest


def test_sampler_seed_mismatch_message(env, capsys):
    assert study_cli.main(["--space", "gan", "--trials", "1", *env["args"]]) == 0
    capsys.readouterr()
    assert study_cli.main(["--space", "gan", "--trials", "2", "--sampler-seed", "1", *env["args"]])
    err = capsys.readouterr().err
    assert "sampler seed: stored None, asked 1 (--sampler-seed)" in err
    assert "Traceback" not in err


class OddTrialsPruner(optuna.pruners.BasePruner):
    """Prunes every odd-numbered trial at its first report (a real Optuna pruner)."""

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return trial.number % 2 == 1


def test_pruned_trials_carry_the_objectives_w1(env, monkeypatch):
    from benchmark import worker

    monkeypatch.setattr(worker, "make_pruner", lambda name, steps: OddTrialsPruner())
    assert study_cli.main(["--space", "realmix", "--trials", "3", *env["args"]]) == 0
    study = _journal(env["dir"])
    assert study.metric_names == ["w1"]  # the dashboard's label, not "Objective 0"
    assert study.user_attrs["intermediate_metric"] == "w1"
    tracker = connect(env["uri"])
    by_number = {t.number: t for t in study.trials}
    assert [t.state for t in study.trials] == [
        TrialState.COMPLETE,
        TrialState.PRUNED,
        TrialState.COMPLETE,
    ]
    for t in study.trials:
        run = tracker.client.get_run(t.user_attrs["mlflow_run_id"])
        logged = {
            m.step: m.value for m in tracker.client.get_metric_history(run.info.run_id, "w1")
        }
        # every intermediate value is the exact W1 the run logged at that epoch
        assert {s + 1: v for s, v in t.intermediate_values.items()} == logged
        if t.state == TrialState.COMPLETE:
            assert t.value == t.intermediate_values[1] == t.user_attrs["final"]["w1"]
            assert run.info.run_name == f"trial-{t.number} {NAME}"
        else:
            # Optuna values a pruned trial by its last intermediate value: the epoch-1 W1
            assert t.value == t.intermediate_values[0] == logged[1]
            assert run.info.run_name == f"pruned: trial-{t.number} {NAME}"
            assert run.data.tags["state"] == "PRUNED"
    # W1s, not sliced W2s: the pruned value lies where the complete ones do
    sw2 = tracker.client.get_metric_history(by_number[1].user_attrs["mlflow_run_id"], "sliced_w2")
    assert by_number[1].value != sw2[0].value


def test_ctrl_c_on_a_terminal_ends_the_bar_line_before_the_summary(env):
    """A real terminal (a pty) and a real Ctrl-C (SIGINT to the foreground process group):
    the summary starts on its own line, not glued to the bar."""
    master, slave = os.openpty()
    argv = ["--space", "realmix", "--trials", "50", *env["args"], "--epochs", "3"]
    repo = Path(__file__).resolve().parents[1]
    child_env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    # An ignored SIGINT survives exec, and Python then never raises KeyboardInterrupt: start
    # the child with Ctrl-C live whatever an earlier test left in this process.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmark.study", *argv],
            stdin=slave, stdout=slave, stderr=slave, start_new_session=True, env=child_env,
            cwd=env["dir"],
        )  # fmt: skip
    finally:
        signal.signal(signal.SIGINT, previous)
    os.close(slave)
    out, sent, deadline = b"", False, time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
            if not sent and b"#1 epoch 1/3" in out:
                os.killpg(proc.pid, signal.SIGINT)
                sent = True
            if proc.poll() is not None and not ready:
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert proc.wait() == 130 and sent
    text = out.decode(errors="replace")
    assert "\r\033[K" in text  # the bar was redrawn in place, as on any terminal
    before, summary = text.split(f"{NAME}: ", 1)[0], text.split(f"{NAME}: ", 1)[1]
    assert before.endswith("\n")  # the bar's line was ended first
    assert summary.startswith("1 of 50 trials finished (1 complete, 0 pruned), 1 failed")


def test_progress_line_is_ended_after_an_interrupt():
    """On a terminal the bar is redrawn in place; close() (called after Ctrl-C) ends its line
    so the summary that follows does not start glued to it."""

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    study = optuna.create_study(study_name="s")
    trial = study.ask()
    trial.report(1.5, 0)
    stream = Tty()
    bar = StudyProgress(
        study, 3, "wasserstein", stream, steps=TrialSteps(5, (1, 2, 3, 4, 5)), metric="w1"
    )
    bar.update()
    assert stream.getvalue().startswith("\r\033[K")
    assert "#0 epoch 1/5 W1 1.5" in stream.getvalue()
    assert not stream.getvalue().endswith("\n")
    bar.close()
    assert stream.getvalue().endswith("\n")
    bar.close()  # nothing open: nothing written
    assert stream.getvalue().count("\n") == 1


def test_trial_steps_name_seeds_and_epochs():
    one_by_one = TrialSteps(4, (2, 4), seeds=3, seed_after_seed=True)
    assert one_by_one.total == 6
    assert one_by_one.describe(0) == "epoch 0/4"
    assert one_by_one.describe(1) == "seed 1/3 epoch 2/4"
    assert one_by_one.describe(4) == "seed 2/3 epoch 4/4"
    side_by_side = TrialSteps(4, (2, 4), seeds=3, seed_after_seed=False)
    assert side_by_side.total == 2 and side_by_side.describe(2) == "epoch 4/4"


# -- one CLI vocabulary ------------------------------------------------------------------

PARSERS = {
    "study": study_cli.build_parser,
    "train": train.build_parser,
    "perf": perf.build_parser,
    "report": report.build_parser,
    "ablation": ablation.build_parser,
    "reproduce": reproduce.build_parser,
    "gpucheck": gpucheck.build_parser,
}


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {
        a.option_strings[-1]: a
        for a in parser._actions
        if a.option_strings and a.help is not argparse.SUPPRESS
    }


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_every_flag_has_help_and_shows_its_default(name):
    parser = PARSERS[name]()
    formatter = parser._get_formatter()
    for flag, action in _options(parser).items():
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help and action.help.strip(), f"{name} {flag} has no help text"
        text = formatter._expand_help(action)
        if action.required or isinstance(action, argparse._StoreTrueAction):
            continue
        assert "default" in text.lower(), f"{name} {flag}: default not shown: {text!r}"
        if not (action.default is None or action.default is False or action.default == []):
            assert str(action.default) in text, f"{name} {flag}: {text!r}"
    assert "(default: 20)" in study_cli.build_parser().format_help().replace("\n", " ")


def test_one_vocabulary_across_the_clis(capsys):
    options = {name: set(_options(build())) for name, build in PARSERS.items()}
    for name, flags in options.items():
        assert "--out" in flags, name  # one name for "write into this folder"
        assert not flags & {"--out-dir", "--results-dir"}, name
    for name in ("study", "train", "reproduce", "perf"):
        assert "--device" in options[name], name
    for name in ("study", "train", "ablation", "reproduce"):
        assert {"--train-size", "--n-eval", "--data-dir"} <= options[name], name
    # the old names still work, with a warning
    assert perf.build_parser().parse_args(["--out-dir", "x"]).out_dir == "x"
    assert "--out-dir is deprecated; use --out" in capsys.readouterr().err
    old = ablation.build_parser().parse_args(["--base", "realmix", "--results-dir", "r"])
    assert old.results_dir == "r" and "--results-dir is deprecated" in capsys.readouterr().err
    # study's new flags reach the settings
    plan = study_cli.plan_from_args(
        study_cli.build_parser().parse_args(["--space", "gan", *TINY, "--batch-size", "64"])
    )
    s = plan.settings
    assert (s.train_size, s.n_eval, s.device, s.batch_size) == (256, 150, "cpu", 64)
    assert s.exact_every_epoch  # the pruner sees the objective's W1 at every epoch


def test_device_with_worker_processes_is_refused(env, capsys):
    argv = ["--space", "gan", "--workers", "2", *env["args"]]
    assert study_cli.main(argv) == 2
    assert "--device cpu sets the device of the one in-process worker" in capsys.readouterr().err
    assert not (env["dir"] / "results").exists()

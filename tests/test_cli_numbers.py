"""Every numeric flag of every CLI: a value below its range exits 2 with a message naming it,
before anything is trained or stored; 0 is a value, never "use the default"."""

from __future__ import annotations

import argparse

import pytest

from benchmark import ablation, gpucheck, report, reproduce, study, throughput, train
from benchmark.perf import cli as perf

CLIS = {
    "study": (study.main, study.build_parser, ["--space", "gan", "--dataset", "ring8"]),
    "train": (train.main, train.build_parser, ["--trainable", "gan", "--dataset", "ring8"]),
    "reproduce": (reproduce.main, reproduce.build_parser, ["realmix-paper", "--dataset", "ring8"]),
    "ablation": (
        ablation.main,
        ablation.build_parser,
        ["--base", "realmix", "--dataset", "ring8"],
    ),
    "perf": (perf.main, perf.build_parser, ["--dataset", "ring8"]),
    "report": (report.main, report.build_parser, ["--study", "x"]),
    "gpucheck": (gpucheck.main, gpucheck.build_parser, ["--device", "cpu", "--dry-run"]),
    "throughput": (throughput.main, throughput.build_parser, ["--dataset", "ring8"]),
}
"""CLI name -> (main, parser factory, the required arguments of a cheap invocation)."""

BELOW_RANGE = {
    ("study", "--trials"): ("0", "--trials 0: must be >= 1"),
    ("study", "--epochs"): ("0", "epochs=0 is invalid; must be >= 1"),
    ("study", "--seeds"): ("0", "seeds=0 is invalid; must be >= 1"),
    ("study", "--workers"): ("0", "--workers 0: must be >= 1"),
    ("study", "--timeout"): ("0", "--timeout 0.0: must be a positive number"),
    ("gpucheck", "--steps"): ("0", "--steps 0 is invalid; must be >= 1"),
    ("gpucheck", "--rounds"): ("0", "--rounds 0 is invalid; must be >= 1"),
    ("gpucheck", "--budget-s"): ("9", "--budget-s 9 is invalid; must be >= 10"),
    ("study", "--batch-size"): ("1", "batch_size=1 is invalid; must be >= 2"),
    ("study", "--train-size"): ("0", "train_size=0 is invalid; must be >= 1"),
    ("study", "--n-eval"): ("0", "n_eval=0 is invalid; must be >= 10"),
    ("study", "--sampler-seed"): ("-1", "--sampler-seed -1: must be a whole number from 0"),
    ("study", "--checkpoint-every"): ("-1", "--checkpoint-every -1: must be >= 0"),
    ("train", "--epochs"): ("0", "epochs=0 is invalid; must be >= 1"),
    ("train", "--batch-size"): ("1", "batch_size=1 is invalid; must be >= 2"),
    ("train", "--train-size"): ("0", "train_size=0 is invalid; must be >= 1"),
    ("train", "--n-eval"): ("0", "n_eval=0 is invalid; must be >= 10"),
    ("train", "--seed"): None,  # any integer seeds torch
    ("reproduce", "--epochs"): ("0", "epochs=0 is invalid; must be >= 1"),
    ("reproduce", "--seeds"): ("0", "seeds=0 is invalid; must be >= 1"),
    ("reproduce", "--train-size"): ("0", "train_size=0 is invalid; must be >= 1"),
    ("reproduce", "--n-eval"): ("0", "n_eval=0 is invalid; must be >= 10"),
    ("reproduce", "--eval-every"): ("0", "eval_every=0 is invalid; must be >= 1"),
    ("reproduce", "--batch-size"): ("0", "batch_size=0 is invalid; must be >= 2"),
    ("reproduce", "--checkpoint-every"): ("-1", "--checkpoint-every -1 is invalid; must be >= 0"),
    ("reproduce", "--extra-every"): ("-1", "--extra-every -1 is invalid; must be >= 0"),
    ("ablation", "--seeds"): ("1", "--seeds 1: an ablation needs at least 2 seeds"),
    ("ablation", "--epochs"): ("0", "epochs=0 is invalid; must be >= 1"),
    ("ablation", "--workers"): ("0", "--workers 0: must be >= 1"),
    ("ablation", "--train-size"): ("0", "train_size=0 is invalid; must be >= 1"),
    ("ablation", "--n-eval"): ("0", "n_eval=0 is invalid; must be >= 10"),
    ("perf", "--steps"): ("0", "--steps 0 is invalid: must be >= 1"),
    ("perf", "--epochs"): ("0", "--epochs 0.0 is invalid: must be > 0"),
    ("perf", "--rounds"): ("0", "--rounds 0 is invalid: must be >= 1"),
    ("perf", "--warmup"): ("-1", "--warmup -1 is invalid: must be >= 0"),
    ("perf", "--target-epochs"): ("0", "--target-epochs 0 is invalid: must be >= 1"),
    ("perf", "--epoch-size"): ("0", "--epoch-size 0 is smaller than one batch"),
    ("perf", "--batch-size"): ("1", "--batch-size 1 is invalid: must be >= 2"),
    ("perf", "--n-eval"): ("0", "--n-eval 0 is invalid: must be >= 10"),
    ("perf", "--threads"): ("0", "--threads 0 is invalid: must be >= 1"),
    ("perf", "--workers"): ("0", "--workers 0 is invalid: must be >= 1"),
    ("perf", "--seed"): None,  # any integer seeds torch
    ("throughput", "--trials"): ("0", "--trials 0: must be >= 1"),
    ("throughput", "--population"): ("0", "--population 0: must be >= 1"),
    ("throughput", "--epochs"): ("0", "--epochs 0: must be >= 1"),
    ("throughput", "--rounds"): ("0", "--rounds 0: must be >= 1"),
    ("throughput", "--sampler-seed"): ("-1", "--sampler-seed -1: must be a whole number from 0"),
}
"""(CLI, numeric flag) -> (a value just below its range, the message it must give), or None
for a flag every value of its type suits."""


def _numeric_flags(parser: argparse.ArgumentParser) -> list[str]:
    return [
        a.option_strings[0] for a in parser._actions if a.option_strings and a.type in (int, float)
    ]


def test_every_numeric_flag_of_every_cli_has_a_range_checked_here():
    flags = {(name, f) for name, (_, parser, _) in CLIS.items() for f in _numeric_flags(parser())}
    assert sorted(flags - BELOW_RANGE.keys()) == []  # a new numeric flag needs a case here
    assert sorted(BELOW_RANGE.keys() - flags) == []


@pytest.mark.parametrize(
    ("cli", "flag"), sorted(k for k, v in BELOW_RANGE.items() if v is not None)
)
def test_a_value_below_range_exits_2_naming_it_before_anything_runs(
    cli, flag, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)

    def must_not_run(*args, **kwargs):
        raise AssertionError(f"{cli} {flag}: started work with an invalid value")

    # Whatever slips through validation would start training: make that fail loudly and fast.
    monkeypatch.setattr(reproduce, "run_experiment", must_not_run)
    monkeypatch.setattr(train, "train_run", must_not_run)
    monkeypatch.setattr(perf, "run_perf", must_not_run)
    monkeypatch.setattr(study, "run_plan", must_not_run)
    monkeypatch.setattr(throughput, "measure", must_not_run)
    main, _, required = CLIS[cli]
    value, message = BELOW_RANGE[(cli, flag)]
    code = main([*required, flag, value])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # nothing written: no results/, no journal


def test_study_setting_train_size_0_is_refused_before_the_journal_is_created(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    argv = ["--space", "gan", "--dataset", "ring8", "--setting", "train_size=0"]
    assert study.main(argv) == 2
    assert "train_size=0 is invalid; must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    ("cli", "flag", "message"),
    [
        ("study", "--timeout", "must be a positive number of seconds"),
        ("perf", "--epochs", "must be > 0 and finite"),
    ],
)
@pytest.mark.parametrize("value", ["inf", "nan"])
def test_float_flags_refuse_inf_and_nan(cli, flag, message, value, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(perf, "run_perf", lambda *a, **k: pytest.fail("perf started"))
    monkeypatch.setattr(study, "run_plan", lambda *a, **k: pytest.fail("study started"))
    main, _, required = CLIS[cli]
    assert main([*required, flag, value]) == 2
    assert message in capsys.readouterr().err

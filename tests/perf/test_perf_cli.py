"""python -m benchmark.perf as a command: one row per contender, bad settings exit 2, the
--baseline-engine rows (a behaviour test of the command; timings are never asserted)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from benchmark.perf import cli as perf


def test_perf_cli_writes_one_row_per_contender(tmp_path, capsys):
    args = "--trainable realmix --dataset ring8 --populations 1,2 --steps 2 --rounds 1"
    args += " --warmup 0 --n-eval 50 --threads 2 --workers 2 --device cpu"
    assert perf.main([*args.split(), "--out-dir", str(tmp_path)]) == 0
    (md,) = tmp_path.glob("perf-*.md")
    (js,) = tmp_path.glob("perf-*.json")
    report = json.loads(js.read_text())
    rows = report["rows"]
    assert [r["contender"] for r in rows] == [
        "naive",
        "naive (2 workers)",
        "mixbench P=1",
        "mixbench P=2",
        "mixbench P=2 (2 workers x 1)",
    ]
    assert [(r["population"], r["workers"], r["torch_threads"]) for r in rows] == [
        (1, 1, 2),
        (2, 2, 1),
        (1, 1, 2),
        (2, 1, 2),
        (2, 2, 1),
    ]
    for row in rows:
        for key in ("iters_per_s", "s_per_epoch_per_trial", "trials_per_hour", "ratio", "gflops"):
            assert math.isfinite(row[key]) and row[key] > 0, (row["contender"], key)
        assert 0 < row["scoring_share"] < 1 and row["roofline_fraction"] > 0
        # trials/hour follows from the per-epoch time and the measured scoring cost
        trial_s = report["settings"]["target_epochs"] * row["s_per_epoch_per_trial"]
        expected = 3600 / (trial_s + report["scoring"]["per_trial_s"])
        assert row["trials_per_hour"] == pytest.approx(expected, rel=1e-9)
    assert rows[0]["ratio"] == 1.0
    assert rows[3]["ratio"] == pytest.approx(
        rows[3]["trials_per_hour"] / rows[0]["trials_per_hour"]
    )
    assert report["threads"] == 2 and report["device"]["type"] == "cpu"
    assert report["steps_per_epoch"] == 8000 // 128  # ring8's generated training split
    assert "measured in-run" in report["peak"]["how"]
    text = md.read_text()
    assert f"torch {torch.__version__}" in text and "EXTRAPOLATED" in text
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert len(table) == 2 + len(rows)  # header, separator, one line per contender
    assert "mixbench P=2 (2 workers x 1)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--populations", "1,0"], "--populations 1,0 is invalid"),
        (["--populations", "4,x"], "--populations '4,x' is invalid"),
        (["--threads", "3", "--workers", "2", "--device", "cpu"], "--workers 2 must divide"),
        (["--trainable", "wgan"], "--trainable 'wgan' is unknown"),
    ],
)
def test_perf_cli_rejects_bad_settings(argv, message, tmp_path, capsys):
    assert perf.main([*argv, "--dataset", "ring8", "--out-dir", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_perf_times_a_baseline_engine_in_subprocesses(tmp_path):
    """--baseline-engine DIR adds 'previous engine P=k' rows (here: this very checkout) and,
    run the same way, 'this engine (subprocess) P=k' rows; the ratio of the two is in the
    report."""
    root = Path(__file__).resolve().parents[2]
    args = "--trainable gan --dataset ring8 --populations 1,2 --steps 2 --rounds 1 --warmup 0"
    args += " --n-eval 30 --threads 1 --workers 1 --device cpu"
    argv = [*args.split(), "--out-dir", str(tmp_path), "--baseline-engine", str(root)]
    assert perf.main(argv) == 0
    (js,) = tmp_path.glob("perf-*.json")
    report = json.loads(js.read_text())
    names = [r["contender"] for r in report["rows"]]
    assert names[-4:] == [
        "this engine (subprocess) P=1",
        "previous engine P=1",
        "this engine (subprocess) P=2",
        "previous engine P=2",
    ]
    rates = {r["contender"]: r["iters_per_s"] for r in report["rows"]}
    assert all(rates[n] > 0 for n in names)
    assert report["baseline_ratio"]["2"] == pytest.approx(
        rates["this engine (subprocess) P=2"] / rates["previous engine P=2"]
    )
    assert "vs the previous engine" in (tmp_path / js.name.replace(".json", ".md")).read_text()


def test_perf_rejects_a_baseline_that_is_no_checkout(tmp_path, capsys):
    argv = ["--dataset", "ring8", "--baseline-engine", str(tmp_path), "--out-dir", str(tmp_path)]
    assert perf.main(argv) == 2
    assert "is not a MixBench checkout" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_the_baseline_engine_is_held_stopped_except_while_it_is_timed():
    """An idle baseline subprocess must take no CPU from the contenders timed meanwhile (its
    OpenMP threads spin after an epoch): it is SIGSTOPped between its own rounds."""
    from benchmark.data import load_dataset
    from benchmark.perf.contenders import baseline_contender
    from benchmark.perf.settings import PerfSettings

    root = Path(__file__).resolve().parents[2]
    settings = PerfSettings(trainable="gan", dataset="ring8", baseline_engine=str(root))
    data = load_dataset("ring8", device="cpu", batch_size=settings.batch_size)
    contender = baseline_contender(settings, data, 1, 2, 1, torch.device("cpu"))
    (pid,) = contender.processes
    try:
        assert _state(pid) == "T"
        contender.shards[0]()  # an epoch: answered, so it ran
        assert _state(pid) == "T"
    finally:
        contender.close()
    assert not Path(f"/proc/{pid}").exists() or _state(pid) == "Z"

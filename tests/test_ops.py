"""Operators per training iteration do not grow with the population (`benchmark.perf`).

Every ATen operator is a kernel launch on a GPU, so a population engine whose iteration
dispatches more operators as P grows (a Python loop over members) cannot keep a GPU busy at
P = 256. The counts come from a TorchDispatchMode (forward and backward), per iteration.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmark import perf

CPU = torch.device("cpu")


@pytest.mark.parametrize("variant", ["gan", "realmix", "mixture"])
def test_ops_per_iteration_do_not_grow_with_the_population(variant, ring8):
    one = perf.ops_per_iteration(variant, 1, ring8, device=CPU, batch_size=32)
    sixteen = perf.ops_per_iteration(variant, 16, ring8, device=CPU, batch_size=32)
    assert one > 100  # the counter sees the iteration at all
    assert sixteen <= 1.10 * one, (variant, one, sixteen)


def test_ops_count_a_loop_over_members():
    """The counter would catch a per-member loop: P separate draws cost P times the ops."""

    def per_member(p: int) -> int:
        with perf.OpCounter() as counter:
            for _ in range(p):
                torch.rand(3).mul_(2)
        return counter.count

    assert per_member(16) == 16 * per_member(1)


def test_count_ops_cli_prints_the_table(capsys):
    argv = ["--count-ops", "--dataset", "ring8", "--populations", "1,2", "--batch-size", "32"]
    assert perf.main([*argv, "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    assert rows[0] == "| variant | P=1 | P=2 |"
    assert [r.split(" | ")[0] for r in rows[1:]] == ["| gan", "| realmix", "| mixture"]
    counts = [[int(c) for c in r.strip("| ").split(" | ")[1:]] for r in rows[1:]]
    assert all(c[0] > 100 and c[1] <= 1.1 * c[0] for c in counts)


def test_count_ops_cli_rejects_bad_populations(capsys):
    assert perf.main(["--count-ops", "--dataset", "ring8", "--populations", "1,x"]) == 2
    assert "--populations '1,x' is invalid" in capsys.readouterr().err


def test_perf_times_a_baseline_engine_in_subprocesses(tmp_path):
    """--baseline-engine DIR adds 'previous engine P=k' rows (here: this very checkout) and
    the ratio of the two engines' rates to the report."""
    root = Path(__file__).resolve().parents[1]
    args = "--trainable gan --dataset ring8 --populations 1,2 --steps 2 --rounds 1 --warmup 0"
    args += " --n-eval 30 --threads 1 --workers 1 --device cpu"
    argv = [*args.split(), "--out-dir", str(tmp_path), "--baseline-engine", str(root)]
    assert perf.main(argv) == 0
    (js,) = tmp_path.glob("perf-*.json")
    report = json.loads(js.read_text())
    names = [r["contender"] for r in report["rows"]]
    assert names[-2:] == ["previous engine P=1", "previous engine P=2"]
    rates = {r["contender"]: r["iters_per_s"] for r in report["rows"]}
    assert all(rates[n] > 0 for n in names)
    assert report["baseline_ratio"]["2"] == pytest.approx(
        rates["mixbench P=2"] / rates["previous engine P=2"]
    )
    assert "vs the previous engine" in (tmp_path / js.name.replace(".json", ".md")).read_text()


def test_perf_rejects_a_baseline_that_is_no_checkout(tmp_path, capsys):
    argv = ["--dataset", "ring8", "--baseline-engine", str(tmp_path), "--out-dir", str(tmp_path)]
    assert perf.main(argv) == 2
    assert "is not a MixBench checkout" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())

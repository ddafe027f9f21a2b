"""Operators per training iteration do not grow with the population (`benchmark.perf.ops`).

Every ATen operator is a kernel launch on a GPU, so a population engine whose iteration
dispatches more operators as P grows (a Python loop over members) cannot keep a GPU busy at
P = 256. The counts come from a TorchDispatchMode (forward and backward), per iteration.
"""

from __future__ import annotations

import pytest
import torch

from benchmark.perf import cli as perf
from benchmark.perf.ops import OpCounter, ops_per_iteration

CPU = torch.device("cpu")


@pytest.mark.parametrize("variant", ["gan", "realmix", "mixture"])
def test_ops_per_iteration_do_not_grow_with_the_population(variant, ring8):
    one = ops_per_iteration(variant, 1, ring8, device=CPU, batch_size=32)
    sixteen = ops_per_iteration(variant, 16, ring8, device=CPU, batch_size=32)
    assert one > 100  # the counter sees the iteration at all
    assert sixteen <= 1.10 * one, (variant, one, sixteen)


def test_ops_count_a_loop_over_members():
    """The counter would catch a per-member loop: P separate draws cost P times the ops."""

    def per_member(p: int) -> int:
        with OpCounter() as counter:
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

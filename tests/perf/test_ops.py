"""Operators per training iteration do not grow with the population (`benchmark.perf.ops`).

Every ATen operator is a kernel launch on a GPU, so a population engine whose iteration
dispatches more operators as P grows (a Python loop over members) cannot keep a GPU busy at
P = 256. The counts come from a TorchDispatchMode (forward and backward), per iteration.
"""

from __future__ import annotations

import pytest
import torch

from benchmark import native
from benchmark.perf import cli as perf
from benchmark.perf.ops import OpCounter, ops_per_iteration

CPU = torch.device("cpu")


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled-philox", "tensor-philox"])
@pytest.mark.parametrize("variant", ["gan", "realmix", "mixture"])
def test_ops_per_iteration_do_not_grow_with_the_population(variant, compiled, ring8):
    """Both ways this CPU can draw (the compiled Philox, and the tensor operators a GPU
    runs)."""
    kw = {"device": CPU, "batch_size": 32, "compiled_philox": compiled}
    one = ops_per_iteration(variant, 1, ring8, **kw)
    sixteen = ops_per_iteration(variant, 16, ring8, **kw)
    assert one > 100  # the counter sees the iteration at all
    assert sixteen <= 1.10 * one, (variant, one, sixteen)


def test_the_compiled_philox_calls_are_counted(ring8):
    """A compiled Philox call replaces ~85 tensor operators: fewer counted, none missed (a
    dropout-free GAN draws nothing per iteration but its shuffle-free steps' noise)."""
    if native.implementation(CPU) != "compiled C":
        pytest.skip("no C compiler on this machine")
    kw = {"device": CPU, "batch_size": 32}
    fast = ops_per_iteration("realmix", 2, ring8, **kw)
    slow = ops_per_iteration("realmix", 2, ring8, compiled_philox=False, **kw)
    assert fast < slow - 300  # six draws per RealMix iteration, ~85 operators each
    before = native.calls()
    ops_per_iteration("realmix", 2, ring8, **kw)
    assert native.calls() - before >= 6 * 6  # 2 + 4 steps of at least 6 draws


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
    names = [r.split(" | ")[0] for r in rows[1:]]
    assert names[:3] == ["| gan", "| realmix", "| mixture"]
    if native.implementation(CPU) == "compiled C":
        assert names[3:] == [
            f"| {v} (tensor Philox, as on a GPU)" for v in ("gan", "realmix", "mixture")
        ]
    else:
        assert names[3:] == []
    counts = [[int(c) for c in r.strip("| ").split(" | ")[1:]] for r in rows[1:]]
    assert all(c[0] > 100 and c[1] <= 1.1 * c[0] for c in counts)


def test_count_ops_cli_rejects_bad_populations(capsys):
    assert perf.main(["--count-ops", "--dataset", "ring8", "--populations", "1,x"]) == 2
    assert "--populations '1,x' is invalid" in capsys.readouterr().err

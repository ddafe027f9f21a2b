"""The cost model of `benchmark.perf`: FLOP of every G/D pass, bytes above the Adam floor."""

from __future__ import annotations

from benchmark.perf.cost import ADAM_BYTES_PER_PARAM, iteration_cost
from benchmark.trainables import params_class


def test_iteration_cost_counts_every_pass():
    """2*B*in*out per forward matmul, x3 with the backward: 1 G pass and 3 D passes."""
    g = 884 * 256 + 256 * 512 + 512 * 1024 + 1024 * 784
    d = 784 * 1024 + 1024 * 512 + 512 * 256 + 256 * 1
    cost = iteration_cost("realmix", params_class("realmix")(), 784, 128)
    assert cost.flop == 3 * 2 * 128 * (g + 3 * d)
    params = (g + 256 + 512 + 1024 + 784) + (d + 1024 + 512 + 256 + 1)
    assert cost.bytes > ADAM_BYTES_PER_PARAM * params
    # a minimax Mixture GAN also runs D on the real mixture in the G step; D sees t as well
    d_t = d + 1024
    minimax = params_class("mixture")(g_loss="minimax")
    g_z = 100 * 256 + 256 * 512 + 512 * 1024 + 1024 * 784
    assert iteration_cost("mixture", minimax, 784, 64).flop == 3 * 2 * 64 * (g_z + 4 * d_t)

"""The engine on CUDA: Philox answers, streams equal to the CPU's, populations equal to their
members alone. Skipped without a GPU; `python -m benchmark.gpucheck` runs them on one."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from benchmark.nets import KAT, MemberRNG, check_philox, philox4x32
from benchmark.perf.ops import ops_per_iteration
from benchmark.trainables import build

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA = torch.device("cuda")
SEEDS = list(range(100, 116))


def test_cuda_philox_known_answers():
    for counter, key, expected in KAT:
        assert tuple(int(w) for w in philox4x32(counter, key, device=CUDA)) == expected
    check_philox(CUDA)


def test_cuda_words_equal_the_cpu_words():
    """Integer draws are bit-identical across devices (the generator is pure int64 math)."""
    gpu, cpu = MemberRNG(SEEDS, CUDA), MemberRNG(SEEDS, torch.device("cpu"))
    assert torch.equal(gpu.words(1001).cpu(), cpu.words(1001))
    assert torch.equal(gpu.randperm(5000).cpu(), cpu.randperm(5000))
    assert torch.equal(
        gpu.randint_ragged(60000, [3, 9] * 8, 9).cpu(), cpu.randint_ragged(60000, [3, 9] * 8, 9)
    )
    torch.testing.assert_close(gpu.rand(4096).cpu(), cpu.rand(4096), rtol=0, atol=0)
    # normals go through log/cos/sin, whose CUDA and CPU roundings may differ by an ulp
    torch.testing.assert_close(gpu.randn(4096).cpu(), cpu.randn(4096), rtol=1e-5, atol=1e-6)


def test_cuda_member_draws_equal_a_population_of_one():
    pop = MemberRNG(SEEDS, CUDA)
    mask = [i % 3 == 0 for i in range(16)]
    together = [pop.randn(128, 100), pop.rand16(999, mask=mask), pop.randperm(777)]
    for i, seed in enumerate(SEEDS):
        alone = MemberRNG([seed], CUDA)
        single = [alone.randn(128, 100), alone.rand16(999, mask=[mask[i]]), alone.randperm(777)]
        for t, s in zip(together, single):
            assert torch.equal(t[i], s[0])


@pytest.mark.parametrize("name", ["gan", "realmix", "mixture"])
def test_cuda_population_matches_members_alone(name, mnist_small):
    """On CUDA cuBLAS may pick other kernels for other batch counts, so the population's
    losses equal the members' alone up to float32 rounding, not bit for bit."""
    data = dataclasses.replace(mnist_small, train=mnist_small.train[:96], train_labels=None)
    params = [{}, {"lr": 1e-3, "dropout_d": 0.2}, {"beta1": 0.5}]
    pop = build(name, params, data, seeds=[1, 2, 3], device=CUDA, batch_size=32)
    g_pop = np.concatenate([pop.train_epoch().g_losses for _ in range(2)], axis=1)
    for i, p in enumerate(params):
        alone = build(name, [p], data, seeds=[i + 1], device=CUDA, batch_size=32)
        g = np.concatenate([alone.train_epoch().g_losses for _ in range(2)], axis=1)
        np.testing.assert_allclose(g_pop[i], g[0], rtol=1e-3, atol=1e-4)
    assert not np.allclose(g_pop[0], g_pop[1], atol=1e-3)


def test_cuda_ops_per_iteration_do_not_grow(ring8):
    for variant in ("gan", "realmix", "mixture"):
        one = ops_per_iteration(variant, 1, ring8, device=CUDA, batch_size=32)
        many = ops_per_iteration(variant, 64, ring8, device=CUDA, batch_size=32)
        assert many <= 1.10 * one, (variant, one, many)

"""The members' counter-based random streams (benchmark.nets.MemberRNG, Philox-4x32-10).

Known answers from Random123, the laws of every draw against scipy (fixed seeds, so the tests
are deterministic), independence between members and between streams, and the property the
population engine rests on: member i of a population draws exactly what a population of one
with its seed draws, whatever the others do.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from benchmark.nets import KAT, MemberRNG, check_philox, philox4x32

CPU = torch.device("cpu")
SEEDS = [0, 1, 2, 3, 17, 2**31 - 1, 2**32, 2**32 + 1, 2**62 - 5, 12345, 99, 7, 8, 9, 10, 11]


def test_philox_known_answers():
    """Random123's kat_vectors for philox4x32_10: zeros, all ones, the digits of pi."""
    assert len(KAT) == 3
    for counter, key, expected in KAT:
        got = tuple(int(w) for w in philox4x32(counter, key))
        assert got == expected
    # the spelled-out first vector, not only the table
    zero = tuple(int(w) for w in philox4x32((0, 0, 0, 0), (0, 0)))
    assert zero == (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)
    check_philox(CPU)


def test_philox_broadcasts_and_matches_scalar_calls():
    counters = torch.arange(10, dtype=torch.int64)
    batched = philox4x32((counters, 0, 5, 0), (123, 456))
    for i in range(10):
        single = philox4x32((i, 0, 5, 0), (123, 456))
        assert [int(b[i]) for b in batched] == [int(s) for s in single]
    assert all(((w >= 0) & (w <= 0xFFFFFFFF)).all() for w in batched)


def test_draws_are_blocks_of_the_member_counter():
    """Member i's words are Philox(counter, key = seed words), 4 per block, counter += blocks."""
    seed = 2**40 + 77
    rng = MemberRNG([seed], CPU, stream=3)
    words = rng.words(10)
    assert int(rng.counter[0]) == 3  # ceil(10 / 4) blocks
    expected = []
    for block in range(3):
        expected += [int(w) for w in philox4x32((block, 0, 3, 0), (seed & 0xFFFFFFFF, 2**8))]
    assert words[0].tolist() == expected[:10]


def test_uniform_ks_and_chi_square():
    """KS per member for 64 members, then KS of those 64 p-values (uniform under the null),
    and one chi-square over 64 bins of the pooled draws."""
    u = MemberRNG(list(range(64)), CPU).rand(20_000).double().numpy()
    assert u.min() >= 0.0 and u.max() < 1.0
    pvalues = [stats.kstest(row, "uniform").pvalue for row in u]
    assert stats.kstest(pvalues, "uniform").pvalue > 1e-3
    assert min(pvalues) > 1e-4
    u = u.ravel()
    counts = np.bincount((u * 64).astype(int), minlength=64)
    assert stats.chisquare(counts).pvalue > 1e-3
    # the low bits of the words are uniform too (the 16-bit draws and the integers use them)
    w = MemberRNG([6], CPU).words(40_000)[0].numpy()
    assert stats.chisquare(np.bincount(w & 63, minlength=64)).pvalue > 1e-3
    lo16 = MemberRNG([6], CPU).rand16(40_000)[0].numpy()
    assert lo16.min() >= 0 and lo16.max() < 65536
    assert stats.chisquare(np.bincount(lo16 >> 10, minlength=64)).pvalue > 1e-3


def test_normal_ks_and_moments():
    draws = MemberRNG(list(range(64)), CPU).randn(20_000).double().numpy()
    pvalues = [stats.kstest(row, "norm").pvalue for row in draws]
    assert stats.kstest(pvalues, "uniform").pvalue > 1e-3 and min(pvalues) > 1e-4
    z = draws.ravel()
    assert stats.kstest(z, "norm").pvalue > 1e-3
    n = z.size
    assert abs(z.mean()) < 4 / math.sqrt(n)
    assert abs(z.var() - 1) < 4 * math.sqrt(2 / n)
    assert np.abs(z).max() < 5.78  # the 24-bit uniforms bound the tails at 5.77 sigma
    # both Box-Muller outputs (cos and sin halves) are normal and uncorrelated
    pairs = z.reshape(-1, 2)
    assert stats.kstest(pairs[:, 1], "norm").pvalue > 1e-3
    assert abs(np.corrcoef(pairs[:, 0], pairs[:, 1])[0, 1]) < 4 / math.sqrt(pairs.shape[0])


def test_integers_below_per_member_bounds():
    highs = [1, 2, 7, 1000, 60_000, 2**31]
    rng = MemberRNG(list(range(len(highs))), CPU)
    x = rng.randint(highs, 30_000)
    for row, high in zip(x, highs):
        assert int(row.min()) >= 0 and int(row.max()) < high
    assert (x[0] == 0).all()
    assert stats.chisquare(np.bincount(x[2].numpy(), minlength=7)).pvalue > 1e-3
    assert stats.kstest(x[4].numpy() / 60_000, "uniform").pvalue > 1e-3
    # shapes follow the request
    assert rng.randint(highs, 3, 5).shape == (len(highs), 3, 5)
    with pytest.raises(ValueError, match="one bound per member"):
        rng.randint([5], 4)
    with pytest.raises(ValueError, match=r"bounds must lie in \[0, 2\*\*31\]"):
        rng.randint([1, 2, 3, 4, 5, 2**31 + 1], 4)


def test_ragged_draws_are_prefixes_of_plain_draws():
    """Member i draws counts[i] integers: those a plain draw of counts[i] would give."""
    seeds, counts = [3, 4, 5], [0, 5, 9]
    rng = MemberRNG(seeds, CPU)
    ragged = rng.randint_ragged(100, counts, 12)
    assert ragged.shape == (3, 12)
    for i, (seed, c) in enumerate(zip(seeds, counts)):
        alone = MemberRNG([seed], CPU)
        if c:
            assert ragged[i, :c].tolist() == alone.randint([100], c)[0].tolist()
        assert (ragged[i, c:] == 0).all()
        assert int(rng.counter[i]) == int(alone.counter[0])  # ceil(c / 4) blocks each
    assert rng.counter.tolist() == [0, 2, 3]


def test_permutations():
    rng = MemberRNG(list(range(3000)), CPU)
    perms = rng.randperm(5)
    assert perms.shape == (3000, 5)
    assert (perms.sort(dim=1).values == torch.arange(5)).all()
    # each element lands in each position equally often (3000 independent members)
    first = np.bincount(perms[:, 0].numpy(), minlength=5)
    assert stats.chisquare(first).pvalue > 1e-3
    big = MemberRNG([1], CPU).randperm(60_000)[0]
    assert torch.equal(big.sort().values, torch.arange(60_000))
    # no drift: positions and values uncorrelated
    assert abs(stats.spearmanr(np.arange(60_000), big.numpy())[0]) < 4 / math.sqrt(60_000)


def _corr_bound(n: int) -> float:
    # |r| of independent samples is ~N(0, 1/n); 5 sigma over ~120 pairs fails by chance with
    # probability ~1e-4, and the seeds are fixed, so the outcome is deterministic anyway.
    return 5 / math.sqrt(n)


def test_members_are_independent():
    n = 20_000
    u = MemberRNG(SEEDS, CPU).rand(n).double().numpy()
    r = np.corrcoef(u)
    off = r[~np.eye(len(SEEDS), dtype=bool)]
    assert np.abs(off).max() < _corr_bound(n)
    # no member repeats another's stream shifted by a few blocks (seed s vs s + 1)
    for shift in (1, 4, 8):
        lag = np.corrcoef(u[0, shift:], u[1, :-shift])[0, 1]
        assert abs(lag) < _corr_bound(n)
    z = MemberRNG(SEEDS, CPU).randn(n).double().numpy()
    assert np.abs(np.corrcoef(z)[~np.eye(len(SEEDS), dtype=bool)]).max() < _corr_bound(n)


def test_streams_are_independent():
    n = 20_000
    a = MemberRNG(SEEDS, CPU, stream=0).rand(n).double().numpy()
    b = MemberRNG(SEEDS, CPU, stream=1).rand(n).double().numpy()
    assert not np.array_equal(a, b)
    for i in range(len(SEEDS)):
        assert abs(np.corrcoef(a[i], b[i])[0, 1]) < _corr_bound(n)


def _draw_sequence(rng: MemberRNG, masks: list[list[bool]]) -> list[torch.Tensor]:
    """A mixed sequence of every kind of draw, odd sizes included."""
    p = rng.size
    counts = [(5 * i + 3) % 11 for i in range(p)]
    highs = [10 + 13 * i for i in range(p)]
    return [
        rng.rand(7, 3),
        rng.randn(33),
        rng.rand(5, mask=masks[0]),
        rng.randn(4, 9, mask=masks[1]),
        rng.randint(highs, 17),
        rng.randint_ragged(1000, counts, 11),
        rng.rand16(1001, mask=masks[0]),
        rng.randperm(37),
        rng.words(6),
        rng.randn(128, 1024),
    ]


def test_population_of_16_draws_what_each_member_draws_alone():
    masks = [[i % 3 != 0 for i in range(16)], [i % 2 == 0 for i in range(16)]]
    pop = MemberRNG(SEEDS, CPU)
    together = _draw_sequence(pop, masks)
    for i, seed in enumerate(SEEDS):
        alone = MemberRNG([seed], CPU)
        counts = [(5 * i + 3) % 11]
        highs = [10 + 13 * i]
        m0, m1 = [masks[0][i]], [masks[1][i]]
        single = [
            alone.rand(7, 3),
            alone.randn(33),
            alone.rand(5, mask=m0),
            alone.randn(4, 9, mask=m1),
            alone.randint(highs, 17),
            alone.randint_ragged(1000, counts, counts[0]),
            alone.rand16(1001, mask=m0),
            alone.randperm(37),
            alone.words(6),
            alone.randn(128, 1024),
        ]
        for k, (t, s) in enumerate(zip(together, single)):
            width = s.shape[1]
            torch.testing.assert_close(
                t[i, :width] if k == 5 else t[i], s[0], rtol=0, atol=0, msg=f"draw {k}"
            )
        assert int(pop.counter[i]) == int(alone.counter[0])


def test_masked_member_draws_nothing():
    rng = MemberRNG([1, 2], CPU)
    out = rng.randn(50, mask=[True, False])
    assert (out[1] == 0).all() and (out[0] != 0).all()
    assert rng.counter.tolist() == [13, 0]
    out = rng.rand(8, mask=torch.tensor([False, True]))
    assert (out[0] == 0).all() and rng.counter.tolist() == [13, 2]
    # member 1's next draw is its first stream's values from block 2 on
    fresh = MemberRNG([2], CPU)
    fresh.rand(8)
    torch.testing.assert_close(rng.randn(10)[1], fresh.randn(10)[0], rtol=0, atol=0)


def test_state_round_trip_and_adopt():
    rng = MemberRNG([4, 5, 6], CPU)
    rng.randn(10)
    state = rng.get_state()
    expected = rng.rand(20)
    other = MemberRNG([9, 9, 9], CPU)
    other.set_state(state)
    torch.testing.assert_close(other.rand(20), expected, rtol=0, atol=0)
    # state is a copy: drawing afterwards does not change it
    assert state["counter"].tolist() == [3, 3, 3]
    # adopt: slot 0 continues member 1 of `donor` from where the donor stands
    donor = MemberRNG([40, 41], CPU)
    donor.rand(13)
    rng.adopt(0, donor, source=1)
    twin = MemberRNG([41], CPU)
    twin.rand(13)
    torch.testing.assert_close(rng.randn(7)[0], twin.randn(7)[0], rtol=0, atol=0)
    with pytest.raises(ValueError, match="before the counter-based generator"):
        rng.set_state([torch.zeros(5)])
    with pytest.raises(ValueError, match="stream 1 cannot be adopted"):
        rng.adopt(0, MemberRNG([1], CPU, stream=1))

"""The compiled Philox (benchmark.native) against the tensor-operator Philox of benchmark.nets.

Both must give the same integers, bit for bit: Random123's known answers, counters that cross
2**32, keys with the high bit set, every output mode (words, 16-bit halves, picked values),
every MemberRNG draw with and without masks, and whole training epochs. Where no C compiler
works the engine falls back to the tensor operators (checked in a subprocess with an empty
PATH and a fresh cache).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from benchmark import native
from benchmark.nets import KAT, PHILOX_ROUNDS, MemberRNG, philox4x32

CPU = torch.device("cpu")
SEEDS = [
    0,
    1,
    2**31 - 1,
    2**32,
    2**32 + 1,
    2**62 - 5,
    2**63 + 11,
    12345,
    99,
    7,
    8,
    9,
    10,
    11,
    3,
    4,
]

compiled = native.blocks_function()
needs_compiled = pytest.mark.skipif(compiled is None, reason="no C compiler on this machine")


@needs_compiled
def test_compiled_known_answers():
    for counter, key, expected in KAT:
        word = counter[0] | (counter[1] << 32)
        c = torch.tensor([word - (1 << 64) if word >> 63 else word])
        out = compiled(c, torch.tensor([key]), 1, counter[2] | (counter[3] << 32), PHILOX_ROUNDS)
        assert tuple(out[0].tolist()) == expected


@needs_compiled
@pytest.mark.parametrize("threads", [1, 2])
def test_compiled_blocks_equal_tensor_blocks(threads):
    """Random members, counters just below 2**32 (the carry into word 1), a 64-bit stream,
    sizes around the threading threshold (8192 blocks per thread) and the 16-lane groups."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for n_blocks in (1, 15, 16, 17, 8191, 20_000):
            fast = MemberRNG(SEEDS[:5], CPU, stream=2**40 + 3)
            slow = MemberRNG(SEEDS[:5], CPU, stream=2**40 + 3, compiled=False)
            for rng in (fast, slow):
                rng.counter += torch.tensor([0, 2**32 - 7, 5, 2**33 - 1, 123])
            assert fast._compiled is not None and slow._compiled is None
            words = fast._blocks(n_blocks)
            assert torch.equal(words, slow._blocks(n_blocks))
            c, k = fast.counter, fast.key
            halves = compiled(c, k, n_blocks, fast.stream, PHILOX_ROUNDS, True)
            lo_hi = torch.stack([words & 0xFFFF, words >> 16], dim=-1).view(5, -1)
            assert torch.equal(halves.long(), lo_hi)
            limit = torch.tensor([0, 1, 30_000, 65_535, 65_536], dtype=torch.int32)
            value = torch.tensor([2.0, -1.5, 1.25, 3.0, 0.5])
            picked = compiled(c, k, n_blocks, fast.stream, PHILOX_ROUNDS, pick=(limit, value))
            expected = torch.where(lo_hi < limit[:, None].long(), value[:, None], 0.0)
            assert torch.equal(picked, expected)
    finally:
        torch.set_num_threads(before)


@needs_compiled
def test_compiled_matches_the_scalar_philox_of_one_block():
    seed, stream, counter = 2**63 + 11, 2**64 - 3, 2**32 + 5
    rng = MemberRNG([seed], CPU, stream=stream)
    rng.counter += counter
    key = (seed & 0xFFFFFFFF, seed >> 32)
    words = (counter & 0xFFFFFFFF, counter >> 32, stream & 0xFFFFFFFF, stream >> 32)
    assert rng.words(4)[0].tolist() == [int(w) for w in philox4x32(words, key)]


@needs_compiled
def test_every_draw_is_the_same_with_and_without_the_compiled_generator():
    masks = [[i % 3 != 0 for i in range(16)], None]
    keep = torch.linspace(0.0, 1.0, 16)
    for mask in masks:
        fast = MemberRNG(SEEDS, CPU, stream=5)
        slow = MemberRNG(SEEDS, CPU, stream=5, compiled=False)
        for rng in (fast, slow):
            rng.counter += torch.arange(16) * (2**31 + 1)
        draws = [
            lambda r, mask: r.words(1001, mask=mask),
            lambda r, mask: r.rand(3, 333, mask=mask),
            lambda r, mask: r.rand16(999, mask=mask).long(),
            lambda r, mask: r.randn(7, 101, mask=mask),
            lambda r, mask: r.bernoulli16(12_345, keep, mask=mask),
            lambda r, mask: r.scaled_bernoulli16(
                12_345, keep, 1.0 / keep.clamp_min(0.5), mask=mask
            ),
            lambda r, mask: r.randint(list(range(1, 17)), 500),
            lambda r, mask: r.randint_ragged(60_000, list(range(16)), 20),
            lambda r, mask: r.randperm(300),
        ]
        for draw in draws:
            a, b = draw(fast, mask), draw(slow, mask)
            assert a.dtype == b.dtype and torch.equal(a, b)
            assert torch.equal(fast.counter, slow.counter)


@needs_compiled
def test_dropout_multipliers_keep_their_rate_and_scale():
    """The compiled one-pass multipliers: value 1 / keep with probability keep, else 0; a
    masked member gets its value everywhere and does not advance."""
    rng = MemberRNG([1, 2, 3], CPU)
    keep = torch.tensor([0.8, 0.5, 1.0])
    out = rng.scaled_bernoulli16(200_000, keep, 1.0 / keep, mask=[True, True, False])
    assert set(out[0].unique().tolist()) == {0.0, 1.25}
    assert set(out[1].unique().tolist()) == {0.0, 2.0}
    assert torch.equal(out[2], torch.ones(200_000))
    kept = (out > 0).double().mean(dim=1)
    assert abs(float(kept[0]) - 0.8) < 4 * (0.8 * 0.2 / 200_000) ** 0.5
    assert abs(float(kept[1]) - 0.5) < 4 * (0.5 * 0.5 / 200_000) ** 0.5
    assert rng.counter.tolist() == [25_000, 25_000, 0]  # 8 halves per block


@needs_compiled
def test_the_compiled_blocks_reject_what_would_write_out_of_bounds():
    with pytest.raises(ValueError, match="counter"):
        compiled(torch.zeros(2, dtype=torch.int64), torch.zeros(3, 2, dtype=torch.int64), 4, 0, 10)
    with pytest.raises(ValueError, match="pick"):
        limit = torch.zeros(2, dtype=torch.int64)  # not int32
        compiled(
            torch.zeros(2, dtype=torch.int64),
            torch.zeros(2, 2, dtype=torch.int64),
            4,
            0,
            10,
            pick=(limit, torch.zeros(2)),
        )


def _implementation_in_subprocess(tmp_path, **env) -> str:
    code = "from benchmark import native; print(native.implementation('cpu'))"
    full = {**os.environ, "MIXBENCH_CACHE": str(tmp_path / "cache"), **env}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=full, check=True
    )
    return done.stdout.strip()


def test_the_tensor_operators_are_used_where_no_compiler_works(tmp_path):
    """An empty PATH (no cc, no gcc) and a fresh cache: the engine still draws, with the
    tensor operators; MIXBENCH_PHILOX=tensor forces them."""
    assert _implementation_in_subprocess(tmp_path, PATH="", CC="") == "tensor operators"
    assert not list((tmp_path / "cache").rglob("*.so"))
    assert _implementation_in_subprocess(tmp_path, MIXBENCH_PHILOX="tensor") == "tensor operators"
    if compiled is not None:
        assert _implementation_in_subprocess(tmp_path) == "compiled C"
        assert len(list((tmp_path / "cache" / "native").glob("philox-*.so"))) == 1


@needs_compiled
@pytest.mark.parametrize("variant", ["gan", "realmix", "mixture"])
def test_an_epoch_trains_the_same_with_either_generator(variant, mnist_small, monkeypatch):
    """Two real training epochs of a population of 3 (different dropout per member, one
    without): weights and samples bit-identical with the compiled and the tensor Philox."""
    from benchmark.trainables import build, params_class

    def train() -> list[torch.Tensor]:
        params = [
            params_class(variant)(dropout_g=g, dropout_d=d)
            for g, d in ((0.2, 0.3), (0.0, 0.0), (0.5, 0.1))
        ]
        pop = build(variant, params, mnist_small, seeds=[0, 5, 9], device=CPU, batch_size=64)
        pop.train_epoch()
        pop.train_epoch()
        state = pop.core.state_dict()
        tensors = [*state["G"].values(), *state["D"].values()]
        return [*tensors, pop.sample(32, seed=0)]

    fast = train()
    monkeypatch.setattr(native, "blocks_function", lambda: None)
    slow = train()
    assert len(fast) == len(slow)
    assert all(torch.equal(a, b) for a, b in zip(fast, slow))


def test_an_unknown_implementation_is_a_clear_error(tmp_path):
    code = (
        "import torch; from benchmark.nets import MemberRNG; MemberRNG([0], torch.device('cpu'))"
    )
    env = {**os.environ, "MIXBENCH_CACHE": str(tmp_path), "MIXBENCH_PHILOX": "tensors"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode != 0
    assert "MIXBENCH_PHILOX='tensors' is not 'native' or 'tensor'" in done.stderr

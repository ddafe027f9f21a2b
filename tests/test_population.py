"""Populations train like separate runs.

Member i of a population of P must give the same per-step losses and samples as a population
of one built with member i's params and seed. On CPU this holds bit for bit (`nets.member_matmul`
keeps every member's arithmetic independent of P), so every comparison here is exact: a
tolerance would hide a misaligned random stream or a member leaking into another.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from benchmark.data import Dataset
from benchmark.trainable import ParamError
from benchmark.trainables import build, params_class, refill

BATCH = 32
EPOCHS = 2

REALMIX_MEMBERS = [
    {},  # the paper's defaults
    {
        "p_mix": 0.5,
        "alpha": 0.5,
        "buffer_capacity": 300,
        "buffer_refresh": 0.25,
        "per_sample_mix": True,
        "dropout_g": 0.0,
        "dropout_d": 0.1,
        "lr": 1e-3,
        "beta1": 0.3,
        "beta2": 0.99,
    },
    {
        "p_mix": 1.0,
        "alpha": 1.0,
        "buffer_capacity": 64,
        "buffer_refresh": 0.0,
        "dropout_g": 0.5,
        "dropout_d": 0.0,
        "lr": 5e-5,
        "beta1": 0.9,
    },
]
MIXTURE_MEMBERS = [
    {"t_measure": "delta1"},
    {"t_measure": "uniform", "g_loss": "minimax", "lr": 1e-3},
    {"t_measure": "beta", "t_a": 2.0, "t_b": 0.5, "lr": 5e-4, "beta1": 0.5},
]
GAN_MEMBERS = [{}, {"lr": 1e-3, "dropout_d": 0.2}, {"beta1": 0.5, "beta2": 0.99, "dropout_g": 0.1}]
MEMBERS = {"gan": GAN_MEMBERS, "realmix": REALMIX_MEMBERS, "mixture": MIXTURE_MEMBERS}
SEEDS = [11, 12, 13]


@pytest.fixture(scope="module")
def tiny(mnist_small: Dataset) -> Dataset:
    """96 real training digits: 3 steps of batch 32 per epoch."""
    return dataclasses.replace(mnist_small, train=mnist_small.train[:96], train_labels=None)


def _losses(trainable, epochs: int = EPOCHS) -> tuple[np.ndarray, np.ndarray]:
    results = [trainable.train_epoch() for _ in range(epochs)]
    g = np.concatenate([r.g_losses for r in results], axis=1)
    d = np.concatenate([r.d_losses for r in results], axis=1)
    return g, d


@pytest.mark.parametrize("name", sorted(MEMBERS))
def test_population_matches_separate_runs(name, tiny):
    members = MEMBERS[name]
    pop = build(name, members, tiny, seeds=SEEDS, batch_size=BATCH)
    g_pop, d_pop = _losses(pop)
    assert g_pop.shape == (len(members), EPOCHS * 3)
    pop_samples = {mode: pop.sample(40, mode, seed=3) for mode in pop.sample_modes}
    for i, (params, seed) in enumerate(zip(members, SEEDS)):
        alone = build(name, [params], tiny, seeds=[seed], batch_size=BATCH)
        g, d = _losses(alone)
        np.testing.assert_array_equal(g_pop[i], g[0])
        np.testing.assert_array_equal(d_pop[i], d[0])
        for mode, samples in pop_samples.items():
            expected = alone.sample(40, mode, seed=3)[0]
            torch.testing.assert_close(samples[i], expected, rtol=0, atol=0)
    # the members really differ, so the comparison above could have caught a mix-up
    assert not np.allclose(g_pop[0], g_pop[1], atol=1e-3)
    assert not np.allclose(d_pop[1], d_pop[2], atol=1e-3)


def test_population_order_does_not_matter(tiny):
    """Reversing the members reverses the rows; no member leaks into another."""
    fwd = build("realmix", REALMIX_MEMBERS, tiny, seeds=SEEDS, batch_size=BATCH)
    rev = build("realmix", REALMIX_MEMBERS[::-1], tiny, seeds=SEEDS[::-1], batch_size=BATCH)
    g_f, d_f = _losses(fwd, 1)
    g_r, d_r = _losses(rev, 1)
    np.testing.assert_array_equal(g_f, g_r[::-1])
    np.testing.assert_array_equal(d_f, d_r[::-1])


@pytest.mark.parametrize("name", sorted(MEMBERS))
def test_population_same_seeds_bit_identical(name, tiny):
    a = build(name, MEMBERS[name], tiny, seeds=SEEDS, batch_size=BATCH)
    b = build(name, MEMBERS[name], tiny, seeds=SEEDS, batch_size=BATCH)
    (ga, da), (gb, db) = _losses(a, 1), _losses(b, 1)
    np.testing.assert_array_equal(ga, gb)
    np.testing.assert_array_equal(da, db)
    for mode in a.sample_modes:
        torch.testing.assert_close(a.sample(16, mode), b.sample(16, mode), rtol=0, atol=0)


def test_mixture_delta1_member_is_gan_bit_identical(tiny):
    """Within one population, the delta(1) member's losses equal a standard GAN's exactly."""
    mix = build("mixture", MIXTURE_MEMBERS, tiny, seeds=SEEDS, batch_size=BATCH)
    gan_params = {"lr": 2e-4, "beta1": 0.9, "beta2": 0.999}
    gan = build("gan", [gan_params] * 3, tiny, seeds=SEEDS, batch_size=BATCH)
    g_mix, d_mix = _losses(mix)
    g_gan, d_gan = _losses(gan)
    np.testing.assert_array_equal(g_mix[0], g_gan[0])
    np.testing.assert_array_equal(d_mix[0], d_gan[0])
    assert not np.allclose(d_mix[1], d_gan[1], atol=1e-3)  # uniform t is not the GAN


@pytest.mark.parametrize("name", sorted(MEMBERS))
def test_population_checkpoint_continues_identically(name, tiny):
    """state_dict -> a fresh population -> load_state_dict: the next epoch is bit-identical."""
    t = build(name, MEMBERS[name], tiny, seeds=SEEDS, batch_size=BATCH)
    t.train_epoch()
    state = copy.deepcopy(t.state_dict())
    expected = t.train_epoch()
    fresh = build(name, MEMBERS[name], tiny, seeds=SEEDS, batch_size=BATCH)
    fresh.load_state_dict(state)
    got = fresh.train_epoch()
    np.testing.assert_array_equal(got.g_losses, expected.g_losses)
    np.testing.assert_array_equal(got.d_losses, expected.d_losses)
    for mode in t.sample_modes:
        torch.testing.assert_close(fresh.sample(16, mode), t.sample(16, mode), rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(MEMBERS))
def test_refilled_member_trains_as_a_fresh_run(name, tiny):
    """A slot refilled mid-run (the study's --population path) trains exactly as a new run.

    Members 0 and 1 train 2 epochs; member 1 is then replaced by member 2's params and seed
    and both train 2 more. The replacement must match a fresh single run of those params over
    its 2 epochs, and member 0 its own uninterrupted 4-epoch run.
    """
    members, seeds = MEMBERS[name], SEEDS
    pop = build(name, members[:2], tiny, seeds=seeds[:2], batch_size=BATCH)
    _losses(pop)
    refill(pop, 1, members[2], seeds[2])
    assert pop.params[1] == params_class(name).from_mapping(members[2])
    g_pop, d_pop = _losses(pop)
    fresh = build(name, [members[2]], tiny, seeds=[seeds[2]], batch_size=BATCH)
    g, d = _losses(fresh)
    np.testing.assert_array_equal(g_pop[1], g[0])
    np.testing.assert_array_equal(d_pop[1], d[0])
    for mode in pop.sample_modes:
        torch.testing.assert_close(
            pop.sample(40, mode, seed=3)[1], fresh.sample(40, mode, seed=3)[0], rtol=0, atol=0
        )
    long = build(name, [members[0]], tiny, seeds=[seeds[0]], batch_size=BATCH)
    g_long, d_long = _losses(long, 2 * EPOCHS)
    np.testing.assert_array_equal(g_pop[0], g_long[0, -g_pop.shape[1] :])
    np.testing.assert_array_equal(d_pop[0], d_long[0, -d_pop.shape[1] :])
    # the refilled member is not its predecessor continuing
    kept = build(name, members[:2], tiny, seeds=seeds[:2], batch_size=BATCH)
    g_kept, _ = _losses(kept, 2 * EPOCHS)
    assert not np.allclose(g_pop[1], g_kept[1, -g_pop.shape[1] :], atol=1e-3)


def test_refill_grows_the_realmix_buffer(tiny):
    """A new member with a larger buffer than any current one still gets its own buffer."""
    small = [{"buffer_capacity": 16, "buffer_refresh": 0.5}] * 2
    pop = build("realmix", small, tiny, seeds=[1, 2], batch_size=BATCH)
    pop.train_epoch()
    big = {"buffer_capacity": 80, "buffer_refresh": 0.1, "p_mix": 1.0}
    refill(pop, 0, big, 5)
    assert pop.buffer.shape[1] == 81 and pop.capacity == [80, 16]
    g_pop, _ = _losses(pop, 1)
    g, _ = _losses(build("realmix", [big], tiny, seeds=[5], batch_size=BATCH), 1)
    np.testing.assert_array_equal(g_pop[0], g[0])


def test_refill_refuses_another_shape(tiny):
    pop = build("gan", [{}, {}], tiny, seeds=[1, 2], batch_size=BATCH)
    with pytest.raises(ParamError, match="z_dim .* must be equal across a population"):
        refill(pop, 0, {"z_dim": 64}, 3)


def test_mixture_minimax_pass_draws_only_for_minimax_members(tiny):
    """The extra D pass of the minimax G loss runs for every member of the batch; its dropout
    draws must be made for the minimax members only, so that a non-saturating member with
    dropout trains as it does alone (where that pass does not exist)."""
    members = [{"g_loss": "minimax", "dropout_d": 0.2}, {"dropout_d": 0.3, "lr": 1e-3}]
    pop = build("mixture", members, tiny, seeds=[21, 22], batch_size=BATCH)
    g_pop, d_pop = _losses(pop)
    for i, (params, seed) in enumerate(zip(members, [21, 22])):
        g, d = _losses(build("mixture", [params], tiny, seeds=[seed], batch_size=BATCH))
        np.testing.assert_array_equal(g_pop[i], g[0])
        np.testing.assert_array_equal(d_pop[i], d[0])

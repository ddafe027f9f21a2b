"""Conformance of every trainable, plus each variant's paper-specific behaviour."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy import stats

from benchmark.metrics.wasserstein import pixel_wasserstein
from benchmark.trainable import ParamError, Trainable
from benchmark.trainables import VARIANTS, build, params_class
from benchmark.trainables.mixture import MixtureGAN, MixtureParams, t_quantiles


def _train(name, data, seed=0, epochs=1, batch_size=64, **params):
    t = build(name, [params], data, seeds=[seed], batch_size=batch_size)
    results = [t.train_epoch() for _ in range(epochs)]
    return t, results


@pytest.mark.parametrize("name", sorted(VARIANTS))
class TestConformance:
    def test_protocol_and_shapes(self, name, mnist_small):
        t, (res,) = _train(name, mnist_small)
        assert isinstance(t, Trainable)
        steps = mnist_small.train.shape[0] // 64
        assert res.g_losses.shape == (1, steps) and res.d_losses.shape == (1, steps)
        assert np.isfinite(res.g_losses).all() and np.isfinite(res.d_losses).all()
        for mode in t.sample_modes:
            x = t.sample(33, mode)
            assert x.shape == (1, 33, 784)
            assert x.min() >= -1 and x.max() <= 1  # tanh output for [-1, 1] images

    def test_same_seed_same_losses(self, name, mnist_small):
        _, (a,) = _train(name, mnist_small, seed=5)
        _, (b,) = _train(name, mnist_small, seed=5)
        _, (c,) = _train(name, mnist_small, seed=6)
        np.testing.assert_array_equal(a.g_losses, b.g_losses)
        np.testing.assert_array_equal(a.d_losses, b.d_losses)
        assert not np.array_equal(a.g_losses, c.g_losses)

    def test_sampling_does_not_perturb_training(self, name, mnist_small):
        t1 = build(name, [{}], mnist_small, seeds=[1], batch_size=64)
        t2 = build(name, [{}], mnist_small, seeds=[1], batch_size=64)
        t1.train_epoch()
        t2.train_epoch()
        for mode in t1.sample_modes:
            t1.sample(50, mode)
        np.testing.assert_array_equal(t1.train_epoch().g_losses, t2.train_epoch().g_losses)

    def test_checkpoint_roundtrip(self, name, mnist_small):
        t, _ = _train(name, mnist_small, seed=2)
        state = _clone(t.state_dict())
        expected = t.train_epoch()
        fresh = build(name, [{}], mnist_small, seeds=[99], batch_size=64)
        fresh.load_state_dict(state)
        np.testing.assert_array_equal(fresh.train_epoch().g_losses, expected.g_losses)

    def test_learns_pixel_distribution(self, name, mnist_small):
        """A few steps on real digits move the pixel-value distribution towards the data's."""
        t = build(name, [{}], mnist_small, seeds=[0], batch_size=64)
        before = pixel_wasserstein(t.sample(200)[0], mnist_small.heldout)
        for _ in range(4):
            t.train_epoch()
        after = pixel_wasserstein(t.sample(200)[0], mnist_small.heldout)
        assert after < 0.7 * before

    def test_runs_on_2d_points(self, name, ring8):
        small = dataclasses.replace(ring8, train=ring8.train[:256], heldout=ring8.heldout[:64])
        t = build(name, [{}], small, seeds=[0], batch_size=64)
        assert np.isfinite(t.train_epoch().g_losses).all()
        x = t.sample(10)
        assert x.shape == (1, 10, 2) and torch.isfinite(x).all()

    def test_bad_params_name_the_range(self, name):
        cls = params_class(name)
        with pytest.raises(ParamError, match=r"lr=-1.*allowed: lr in \(0, 1\]"):
            cls.from_mapping({"lr": "-1"})
        with pytest.raises(ParamError, match="unknown parameter.*nonsense.*valid:"):
            cls.from_mapping({"nonsense": 1})


def _clone(state):
    if isinstance(state, torch.Tensor):
        return state.clone()
    if isinstance(state, dict):
        return {k: _clone(v) for k, v in state.items()}
    if isinstance(state, list):
        return [_clone(v) for v in state]
    return state


def test_unknown_trainable_lists_valid():
    with pytest.raises(ParamError, match="valid: gan, realmix, mixture"):
        params_class("wgan")


def test_realmix_range_errors():
    cls = params_class("realmix")
    with pytest.raises(ParamError, match=r"p_mix=1.5.*p_mix in \[0, 1\]"):
        cls.from_mapping({"p_mix": 1.5})
    with pytest.raises(ParamError, match=r"noise_sigma=-0.1.*\[0, 10\]"):
        cls.from_mapping({"noise_sigma": -0.1})
    with pytest.raises(ParamError, match="buffer_capacity='2.5' is not a valid int"):
        cls.from_mapping({"buffer_capacity": "2.5"})


def test_realmix_paper_defaults():
    p = params_class("realmix")()
    assert (p.p_mix, p.alpha, p.noise_sigma, p.fallback_sigma) == (0.9, 0.2, 0.2, 0.1)
    assert (p.buffer_capacity, p.buffer_refresh, p.dropout_g, p.dropout_d) == (1000, 0.1, 0.2, 0.3)
    assert (p.beta1, p.beta2, p.lr, p.z_dim) == (0.5, 0.999, 2e-4, 100)
    g = params_class("gan")()
    assert (g.beta1, g.beta2, g.dropout_g, g.dropout_d, g.lr) == (0.9, 0.999, 0.0, 0.0, 2e-4)


def test_realmix_generator_input_is_884(mnist_small):
    t = build("realmix", [{}], mnist_small, seeds=[0])
    assert t.core.G.sizes[0] == 884
    assert t.core.G.sizes == (884, 256, 512, 1024, 784)
    assert t.core.D.sizes == (784, 1024, 512, 256, 1)


def test_realmix_buffer_rolls_ten_percent(mnist_small):
    t = build("realmix", [{"buffer_capacity": 50, "buffer_refresh": 0.1}], mnist_small, seeds=[0])
    before = t.buffer[0, :50].clone()
    t.before_step(t.core)
    changed = (t.buffer[0, :50] != before).any(dim=1)
    # the 5 oldest slots (0..4) are replaced; a slot may by chance receive the same image
    assert not changed[5:].any() and changed[:5].sum() >= 4
    t.before_step(t.core)
    assert int(t.ptr[0]) == 10


def test_realmix_noise_mode_uses_no_real_data(mnist_small):
    t = build("realmix", [{}], mnist_small, seeds=[0], batch_size=64)
    t.train_epoch()
    noise_a, buffer_a = t.sample(64, "noise"), t.sample(64, "buffer")
    t.buffer.mul_(0).add_(1.0)  # replace every buffered image by a white square
    noise_b, buffer_b = t.sample(64, "noise"), t.sample(64, "buffer")
    torch.testing.assert_close(noise_a, noise_b, rtol=0, atol=0)
    assert (buffer_a - buffer_b).abs().max() > 1e-3


def test_realmix_mix_probability(mnist_small):
    """With p_mix = 0 the generator never sees the buffer, even in buffer mode."""
    t = build("realmix", [{"p_mix": 0.0}], mnist_small, seeds=[0])
    z_in = t.generator_input(t.core, 2000, t.core.rng, None)
    r = z_in[0, :, 100:]
    assert abs(r.std().item() - 0.1) < 0.005  # fallback noise, sigma 0.1
    t1 = build("realmix", [{"p_mix": 1.0, "noise_sigma": 0.0}], mnist_small, seeds=[0])
    r1 = t1.generator_input(t1.core, 500, t1.core.rng, None)[0, :, 100:]
    assert r1.abs().max() <= 0.2 + 1e-6  # alpha * clamp(image) stays within alpha
    rows = t1.buffer[0, :1000]
    dist = torch.cdist(r1 / 0.2, rows, compute_mode="donot_use_mm_for_euclid_dist")
    dist = dist.min(dim=1).values
    assert dist.max() < 1e-4  # every input is an exact buffered image, scaled by alpha


def _from_buffer(r: torch.Tensor) -> torch.Tensor:
    """Rows that are alpha * (clamped) digits: their background pixels sit exactly at -alpha."""
    return (r == -0.2).float().mean(dim=1) > 0.3


def test_realmix_per_batch_vs_per_sample_mixing(mnist_small):
    for per_sample, expect_mixed in ((False, False), (True, True)):
        t = build(
            "realmix", [{"p_mix": 0.5, "per_sample_mix": per_sample}], mnist_small, seeds=[3]
        )
        mixed_batches = 0
        for _ in range(20):
            r = t.generator_input(t.core, 64, t.core.rng, None)[0, :, 100:]
            from_buffer = _from_buffer(r)
            mixed_batches += int(0 < from_buffer.sum() < 64)
        assert (mixed_batches > 10) == expect_mixed


def test_mixture_delta1_is_exactly_gan(mnist_small):
    gan = build("gan", [{}], mnist_small, seeds=[4], batch_size=64)
    mix = build("mixture", [{"t_measure": "delta1"}], mnist_small, seeds=[4], batch_size=64)
    for _ in range(2):
        a, b = gan.train_epoch(), mix.train_epoch()
        np.testing.assert_array_equal(a.g_losses, b.g_losses)
        np.testing.assert_array_equal(a.d_losses, b.d_losses)
    torch.testing.assert_close(gan.sample(20), mix.sample(20), rtol=0, atol=0)


def test_mixture_uniform_differs_from_gan(mnist_small):
    gan = build("gan", [{}], mnist_small, seeds=[4], batch_size=64)
    mix = build("mixture", [{"t_measure": "uniform"}], mnist_small, seeds=[4], batch_size=64)
    assert not np.allclose(gan.train_epoch().d_losses, mix.train_epoch().d_losses)


def test_mixture_t0_mixtures_coincide():
    real, fake = torch.randn(1, 8, 5), torch.randn(1, 8, 5)
    a, b = MixtureGAN.mixtures(real, fake, torch.zeros(1, 8, 1))
    torch.testing.assert_close(a, b)
    a1, b1 = MixtureGAN.mixtures(real, fake, torch.ones(1, 8, 1))
    torch.testing.assert_close(a1, real)
    torch.testing.assert_close(b1, fake)


@pytest.mark.parametrize("a,b", [(0.5, 0.5), (2.0, 5.0), (1.0, 1.0)])
def test_beta_t_measure_matches_scipy(a, b, mnist_small):
    q = t_quantiles(MixtureParams(t_measure="beta", t_a=a, t_b=b))
    grid = np.linspace(0, 1, len(q))
    np.testing.assert_allclose(q[1:-1], stats.beta.ppf(grid[1:-1], a, b), atol=1e-8)
    t = build("mixture", [{"t_measure": "beta", "t_a": a, "t_b": b}], mnist_small, seeds=[0])
    draws = t.draw_t(20000).flatten().numpy()
    assert stats.kstest(draws, stats.beta(a, b).cdf).pvalue > 1e-3
    assert draws.min() >= 0 and draws.max() <= 1


def test_mixture_minimax_generator_loss(mnist_small):
    t = build("mixture", [{"g_loss": "minimax"}], mnist_small, seeds=[0], batch_size=64)
    res = t.train_epoch()
    # minimax G loss is log D(real mix) + log(1 - D(fake mix)) <= 0; the NS loss is >= 0
    assert (res.g_losses < 0).all()
    ns = build("mixture", [{}], mnist_small, seeds=[0], batch_size=64).train_epoch()
    assert (ns.g_losses > 0).all()


def test_population_must_share_structure(mnist_small):
    with pytest.raises(ParamError, match="z_dim.*equal across a population"):
        build("gan", [{"z_dim": 100}, {"z_dim": 64}], mnist_small, seeds=[0, 1])
    with pytest.raises(ParamError, match="one seed per member"):
        build("gan", [{}, {}], mnist_small, seeds=[0])


def test_realmix_buffer_mode_evaluation_mixes_per_sample(mnist_small):
    """Evaluation in buffer mode feeds a share p_mix of buffer images, whatever the seed."""
    t = build("realmix", [{"noise_sigma": 0.0}], mnist_small, seeds=[0])
    for seed in range(5):
        rng = t.core.rng.__class__([seed], t.core.device)
        r = t.generator_input(t.core, 1000, rng, "buffer")[0, :, 100:]
        from_buffer = _from_buffer(r).float().mean().item()
        assert abs(from_buffer - 0.9) < 0.04

"""Mode coverage on ring8/grid25 against known answers."""

from __future__ import annotations

import math

import pytest
import torch

from benchmark.metrics.modes import mode_coverage_2d


def _ring8() -> tuple[torch.Tensor, float]:
    angles = 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8
    return 2.0 * torch.stack([angles.cos(), angles.sin()], 1), 0.02


def _grid25() -> tuple[torch.Tensor, float]:
    axis = torch.arange(-4.0, 5.0, 2.0, dtype=torch.float64)
    xs, ys = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([xs.ravel(), ys.ravel()], 1), 0.05


def _mixture(centres: torch.Tensor, std: float, n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    modes = torch.randint(len(centres), (n,), generator=gen)
    return centres[modes] + std * torch.randn(n, 2, generator=gen, dtype=torch.float64)


# share of a 2-D isotropic Gaussian within 3 std of its mean: 1 - exp(-9/2) = 0.98889
IN_3_STD = 1 - math.exp(-4.5)


@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_perfect_sampler_covers_every_mode(name):
    centres, std = _ring8() if name == "ring8" else _grid25()
    n = 20_000
    report = mode_coverage_2d(_mixture(centres, std, n, seed=7), centres, std)
    k = len(centres)
    assert report.modes_covered == report.n_modes == k and report.coverage == 1.0
    assert report.high_quality == pytest.approx(IN_3_STD, abs=4 * math.sqrt(0.011 / n))
    assert report.kl_uniform is not None and report.kl_uniform < 0.01
    assert report.min_count == math.ceil(0.01 * n / k)
    assert sum(report.counts) == round(report.high_quality * n)


@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_one_mode_generator_covers_one(name):
    centres, std = _ring8() if name == "ring8" else _grid25()
    collapsed = _mixture(centres[3:4], std, 5000, seed=8)
    report = mode_coverage_2d(collapsed, centres, std)
    assert report.modes_covered == 1
    assert report.counts[3] == sum(report.counts)
    assert report.kl_uniform == pytest.approx(math.log(len(centres)), rel=1e-12)
    assert report.high_quality == pytest.approx(IN_3_STD, abs=0.01)


def test_min_count_ignores_stray_points_and_off_mode_samples_are_low_quality():
    centres, std = _ring8()
    main = _mixture(centres[:1], std, 5000, seed=9)
    stray = centres[1:2].repeat(5, 1)  # 5 points on mode 1: below ceil(1% of 5005/8) = 7
    report = mode_coverage_2d(torch.cat([main, stray]), centres, std)
    assert report.min_count == 7 and report.modes_covered == 1
    assert mode_coverage_2d(torch.cat([main, stray]), centres, std, min_count=1).modes_covered == 2
    # the ring's centre is 2 (= 100 std) from every mode: nothing is high quality
    nowhere = mode_coverage_2d(torch.zeros(100, 2), centres, std)
    assert nowhere.high_quality == 0.0 and nowhere.modes_covered == 0
    assert nowhere.kl_uniform is None
    with pytest.raises(ValueError, match="std"):
        mode_coverage_2d(main, centres, 0.0)

"""Loss-stability scores against closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.metrics.losses import loss_variance, oscillation


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ------------------------------------------------------------------------------ losses


def test_loss_variance_equals_np_var_over_window():
    losses = _rng(11).normal(size=300) * 0.7 + 1.0
    assert loss_variance(losses) == pytest.approx(np.var(losses), rel=1e-12)
    assert loss_variance(losses, window=50) == pytest.approx(np.var(losses[-50:]), rel=1e-12)
    assert loss_variance(torch.from_numpy(losses)) == pytest.approx(np.var(losses), rel=1e-12)
    assert loss_variance([2.0]) == 0.0
    with pytest.raises(ValueError, match="window"):
        loss_variance(losses, window=0)
    with pytest.raises(ValueError, match=r"g_losses\[i\]"):
        loss_variance(np.zeros((2, 10)))


def test_oscillation_zero_for_monotone_series():
    t = np.arange(400, dtype=np.float64)
    assert oscillation(np.full(400, 0.69)) == 0.0
    assert oscillation(3.0 - 0.01 * t) == 0.0
    assert oscillation(0.5 * t) == 0.0
    assert oscillation(np.exp(-t / 50.0)) == 0.0  # a smoothly decaying loss is not unstable
    assert oscillation([1.0]) == 0.0


def test_oscillation_alternating_closed_form_and_growth():
    # an EMA (alpha = 2/(span+1)) of a * (-1)^t settles to +-a*alpha/(2-alpha): each step
    # moves 2*a*alpha/(2-alpha) with no net drift
    span = 10.0
    alpha = 2.0 / (span + 1.0)
    sign = np.tile([1.0, -1.0], 1000)
    values = []
    for a in (0.05, 0.2, 1.0):
        value = oscillation(a * sign, span=span)
        assert value == pytest.approx(2 * a * alpha / (2 - alpha), rel=0.01)
        values.append(value)
    assert values[0] < values[1] < values[2]
    # on top of a slow trend the alternation is still measured, minus the trend's drift
    trend = oscillation(1.0 - 1e-4 * np.arange(2000) + 0.2 * sign, span=span)
    assert trend == pytest.approx(2 * 0.2 * alpha / (2 - alpha) - 1e-4, rel=0.01)
    # span=1 means no smoothing: 1999 raw steps of 0.4, net drift 0.4 (0.2 -> -0.2)
    assert oscillation(0.2 * sign, span=1) == pytest.approx((0.4 * 1999 - 0.4) / 1999, rel=1e-12)

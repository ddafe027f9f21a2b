"""Loss-stability scores of one member's per-step losses: variance and EMA see-saw.

Nothing here imports optuna, mlflow or a trainable; every function takes a 1-D series (a tensor
on any device, an array or a list) and returns a plain float or array.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.signal
import torch

__all__ = ["ema", "loss_variance", "oscillation"]

ArrayLike = torch.Tensor | np.ndarray | Sequence[float]


def _losses_1d(losses: ArrayLike, name: str = "losses") -> np.ndarray:
    if isinstance(losses, torch.Tensor):
        arr = losses.detach().to("cpu", torch.float64).numpy()
    else:
        arr = np.asarray(losses, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(
            f"{name} must be a 1-D series of per-step losses, got shape {tuple(arr.shape)}; "
            "for an EpochResult pass one member's row, e.g. result.g_losses[i]"
        )
    if arr.size == 0:
        raise ValueError(f"{name} is empty; pass at least one per-step loss")
    return arr


def loss_variance(losses: ArrayLike, window: int | None = None) -> float:
    """Population variance (ddof=0, as `np.var`) of the last `window` per-step losses.

    `window=None` uses every value given; the harness passes one epoch's losses. Non-finite
    losses (a diverged run) give NaN rather than an error, so the caller can decide.
    """
    arr = _losses_1d(losses)
    if window is not None:
        if window < 1:
            raise ValueError(f"window must be >= 1 (or None for all steps), got {window}")
        arr = arr[-int(window) :]
    return float(np.var(arr))


def ema(losses: ArrayLike, *, span: float = 10.0) -> np.ndarray:
    """Exponential moving average with alpha = 2 / (span + 1), started at the first value."""
    if not span >= 1.0:
        raise ValueError(f"span must be >= 1 (1 means no smoothing), got {span}")
    arr = _losses_1d(losses)
    alpha = 2.0 / (float(span) + 1.0)
    smoothed, _ = scipy.signal.lfilter(
        [alpha], [1.0, alpha - 1.0], arr, zi=[(1.0 - alpha) * arr[0]]
    )
    return smoothed


def oscillation(losses: ArrayLike, *, span: float = 10.0) -> float:
    """Back-and-forth movement of the EMA-smoothed losses, in loss units per step.

    Definition: with e = EMA(losses, span) (alpha = 2 / (span + 1), e_0 = losses_0),

        oscillation = mean_t |e_t - e_{t-1}|  -  |e_T - e_0| / T

    i.e. the smoothed series' total variation minus its net drift, per step. Why this one:
    - smoothing first removes the per-minibatch noise that `loss_variance` already measures,
      keeping slower swings (the D/G see-saw of an unstable GAN);
    - subtracting the net drift makes any monotone curve score exactly 0 (a constant, a line,
      or a smoothly decaying loss), whereas deviation-from-EMA or the plain mean absolute EMA
      step would charge a steadily decreasing loss for its trend;
    - an EMA of a monotone series is itself monotone, so those zeros are exact.
    Fewer than two values give 0.0.
    """
    smoothed = ema(losses, span=span)
    if smoothed.size < 2:
        return 0.0
    steps = np.diff(smoothed)
    excess = np.abs(steps).sum() - abs(smoothed[-1] - smoothed[0])
    # the two sums agree to rounding for monotone input; do not report rounding as movement
    tol = 64 * np.finfo(np.float64).eps * max(1.0, np.abs(steps).sum())
    return float(max(excess, 0.0) / steps.size) if excess > tol else 0.0

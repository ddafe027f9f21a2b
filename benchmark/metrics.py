"""Distances between generated and held-out samples, and loss-stability scores.

Every distance here is meant to be measured on the held-out split (`Dataset.heldout`), never on
the training images. Functions take plain tensors (any device) or numpy arrays and return plain
floats; nothing here imports optuna, mlflow or a trainable.

- `wasserstein1`: exact Wasserstein-1 with a Euclidean ground cost (POT `emd2` on `ot.dist`).
- `sliced_wasserstein`: sliced Wasserstein-p (SW2 by default) with a fixed projection seed.
- `pixel_wasserstein`: 1-D Wasserstein-1 between the flattened pixel-value distributions.
- `loss_variance`, `oscillation`: how noisy / how see-sawing a run's per-step losses are.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import ot
import ot.sliced
import scipy.signal
import scipy.stats
import torch

__all__ = [
    "METRIC_LABELS",
    "WResult",
    "distances",
    "distances_batch",
    "ema",
    "loss_variance",
    "oscillation",
    "pixel_wasserstein",
    "sliced_wasserstein",
    "subsample_indices",
    "wasserstein1",
]

ArrayLike = torch.Tensor | np.ndarray | Sequence[float] | Sequence[Sequence[float]]

METRIC_LABELS: dict[str, str] = {
    "w1": "exact W1 (Euclidean ground cost, POT emd2)",
    "sliced_w2": "sliced W2 (random 1-D projections with a fixed seed, POT "
    "sliced_wasserstein_distance, p=2)",
    "pixel_w1": "pixel-value W1 (1-D W1 between flattened value distributions, scipy)",
    "w1_converged": "1.0 if the exact W1 solver reached optimality within num_itermax, else "
    "0.0 (w1 is then NaN)",
}
"""Human-readable label for every key `distances` returns, so reports say W1 vs W2 explicitly."""

_POT_ITERMAX_TEXT = "numItermax reached"


@dataclass(frozen=True)
class WResult:
    """Result of an exact Wasserstein-1 computation."""

    value: float
    """The transport cost. Meaningless when `converged` is False: the stopped network simplex
    reports the cost of a plan that is neither optimal nor guaranteed feasible, and it can lie
    below the true W1 (seen in tests), so it is not even a bound."""
    converged: bool
    """True when POT's network simplex reported an optimal solution."""
    warning: str | None = None
    """POT's solver message when it did not reach optimality, e.g. the iteration limit."""


def _to_numpy(x: ArrayLike, name: str, *, check_finite: bool = True) -> np.ndarray:
    """(N, D) float64 numpy copy of a tensor (any device) or array; 1-D input becomes (N, 1)."""
    if isinstance(x, torch.Tensor):
        arr = x.detach().to("cpu", torch.float64).numpy()
    else:
        arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a (N, D) sample matrix, got shape {tuple(arr.shape)}; pass one "
            "population member's samples (e.g. samples[i]) and flatten images to (N, D)"
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty; pass at least one sample")
    if check_finite and not np.isfinite(arr).all():
        raise ValueError(
            f"{name} contains NaN or inf ({int((~np.isfinite(arr)).any(1).sum())} of "
            f"{arr.shape[0]} samples); distances are undefined (a diverged generator?)"
        )
    return np.ascontiguousarray(arr)


def _pair(x: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    xa, ya = _to_numpy(x, "x"), _to_numpy(y, "y")
    if xa.shape[1] != ya.shape[1]:
        raise ValueError(
            f"x and y must have the same feature dimension, got {xa.shape[1]} and {ya.shape[1]}"
        )
    return xa, ya


def wasserstein1(x: ArrayLike, y: ArrayLike, *, num_itermax: int = 1_000_000) -> WResult:
    """Exact Wasserstein-1 between two empirical distributions with uniform weights.

    Ground cost is the Euclidean distance (`ot.dist(x, y, metric="euclidean")`, float64), solved
    with POT's network simplex (`ot.emd2`). Sizes may differ. If the solver stops at
    `num_itermax` before optimality, the result has `converged=False`, POT's message in
    `warning`, and a `UserWarning` is emitted: the value is then NOT W1 (see `WResult.value`).
    """
    if num_itermax < 1:
        raise ValueError(f"num_itermax must be >= 1, got {num_itermax}; the default is 1_000_000")
    xa, ya = _pair(x, y)
    cost = ot.dist(xa, ya, metric="euclidean")
    a = np.full(xa.shape[0], 1.0 / xa.shape[0])
    b = np.full(ya.shape[0], 1.0 / ya.shape[0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value, log = ot.emd2(a, b, cost, numItermax=int(num_itermax), log=True)
    message = log.get("warning")
    others: list[warnings.WarningMessage] = []
    for w in caught:
        text = str(w.message)
        if _POT_ITERMAX_TEXT in text:
            message = message or text
        elif not any(str(o.message) == text for o in others):
            others.append(w)
    for w in others:  # unrelated warnings are passed on, not swallowed
        warnings.warn(w.message, w.category, stacklevel=2)
    if message is not None:
        hint = (
            f" Raise num_itermax (now {num_itermax}) or reduce the sample count "
            f"({xa.shape[0]} x {ya.shape[0]})."
            if _POT_ITERMAX_TEXT in message
            else ""
        )
        warnings.warn(
            f"exact W1 did not reach optimality ({message.strip()}); the solver's value "
            f"{float(value):.6g} is not W1 and not a bound on it.{hint}",
            UserWarning,
            stacklevel=2,
        )
    return WResult(value=float(value), converged=message is None, warning=message)


def sliced_wasserstein(
    x: ArrayLike, y: ArrayLike, *, n_projections: int = 256, seed: int = 0, p: int = 2
) -> float:
    """Sliced Wasserstein-p (SW2 for p=2) with Euclidean 1-D costs and uniform weights.

    Projections are drawn from a FIXED seed so every run and trial is scored on the same
    directions; the Monte Carlo error of the slicing is then shared, not noise between trials.
    """
    if n_projections < 1:
        raise ValueError(f"n_projections must be >= 1, got {n_projections}")
    if p < 1:
        raise ValueError(f"p must be >= 1, got {p}; p=2 gives SW2")
    xa, ya = _pair(x, y)
    value = ot.sliced_wasserstein_distance(
        xa, ya, n_projections=int(n_projections), p=p, seed=int(seed)
    )
    return float(value)


def pixel_wasserstein(x: ArrayLike, y: ArrayLike) -> float:
    """1-D Wasserstein-1 between the flattened value distributions of `x` and `y`.

    Ignores where values sit in the image: it compares only how often each intensity occurs
    (e.g. a generator that never outputs the background value of -1 scores badly).
    """
    xa, ya = _pair(x, y)
    u, v = xa.ravel(), ya.ravel()
    if u.size == v.size:
        # Equal sizes: the optimal 1-D coupling matches the k-th smallest values, so W1 is
        # the mean gap between the sorted samples (the same number scipy computes through
        # the CDFs, about 15x faster on 784,000 pixel values).
        return float(np.mean(np.abs(np.sort(u) - np.sort(v))))
    return float(scipy.stats.wasserstein_distance(u, v))


def subsample_indices(total: int, n: int | None, seed: int, stream: int) -> np.ndarray:
    """Sorted indices of min(n, total) items without replacement, from (seed, stream).

    Separate streams make the held-out subset independent of how many samples were generated,
    so every trial scored with the same seed sees the same held-out subset.
    """
    if n is None or n >= total:
        return np.arange(total)
    rng = np.random.default_rng([int(seed), int(stream)])
    return np.sort(rng.choice(total, size=int(n), replace=False))


def _take(x: ArrayLike, idx: np.ndarray, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        if x.dim() != 2:
            raise ValueError(
                f"{name} must be a (N, D) sample matrix, got shape {tuple(x.shape)}; pass one "
                "population member's samples (e.g. samples[i])"
            )
        # index on the tensor's own device: only the subsample travels to the CPU
        x = x.detach()[torch.as_tensor(idx, device=x.device)]
        return _to_numpy(x, name, check_finite=False)
    return _to_numpy(x, name, check_finite=False)[idx]


def _length(x: ArrayLike) -> int:
    return int(x.shape[0]) if hasattr(x, "shape") else len(x)


def distances(
    generated: ArrayLike,
    heldout: ArrayLike,
    *,
    n: int | None = 1000,
    seed: int = 0,
    exact: bool = True,
    num_itermax: int = 1_000_000,
    n_projections: int = 256,
) -> dict[str, float]:
    """All distances between generated samples and the held-out split, on subsamples.

    Draws n of each (all when fewer, or when n is None) deterministically from `seed`, then
    returns {"w1", "w1_converged", "sliced_w2", "pixel_w1"}; "w1" and "w1_converged" are
    omitted when `exact` is False. When the exact solver stops before optimality, "w1" is NaN
    (with "w1_converged" 0.0 and a UserWarning) rather than a wrong number. Non-finite
    generated samples (a diverged generator) give NaN for every distance, with a UserWarning;
    a non-finite held-out split raises ValueError. See
    `METRIC_LABELS` for what each key means.
    """
    if n is not None and n < 1:
        raise ValueError(f"n must be >= 1 (or None for all samples), got {n}")
    gen = _take(generated, subsample_indices(_length(generated), n, seed, 0), "generated")
    held = _take(heldout, subsample_indices(_length(heldout), n, seed, 1), "heldout")
    if gen.shape[1] != held.shape[1]:
        raise ValueError(
            f"generated and heldout must have the same feature dimension, got {gen.shape[1]} "
            f"and {held.shape[1]}"
        )
    if not np.isfinite(held).all():
        raise ValueError("heldout contains NaN or inf; the held-out split itself is broken")
    if not np.isfinite(gen).all():
        # a diverged generator is an outcome of the search, not a bug: score it NaN, loudly
        warnings.warn(
            "generated samples contain NaN or inf (diverged generator?); every distance is NaN",
            UserWarning,
            stacklevel=2,
        )
        nan = float("nan")
        failed = {"w1": nan, "w1_converged": 0.0} if exact else {}
        return failed | {"sliced_w2": nan, "pixel_w1": nan}
    out: dict[str, float] = {}
    if exact:
        w1 = wasserstein1(gen, held, num_itermax=num_itermax)
        out["w1"] = w1.value if w1.converged else float("nan")
        out["w1_converged"] = 1.0 if w1.converged else 0.0
    out["sliced_w2"] = sliced_wasserstein(gen, held, n_projections=n_projections, seed=seed, p=2)
    out["pixel_w1"] = pixel_wasserstein(gen, held)
    return out


def sliced_and_pixel_batch(
    generated: torch.Tensor, heldout: torch.Tensor, *, n_projections: int = 256, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(P,) sliced W2 and (P,) pixel W1 of every member's samples, in one batch.

    generated: (P, n, D), heldout: (n, D), equal sample counts; computed in float64 on
    `generated`'s device with POT's own projections for `seed` (`get_random_projections`),
    as `sliced_wasserstein(generated[i], heldout, seed=seed)` and
    `pixel_wasserstein(generated[i], heldout)` compute them one member at a time. With equal
    counts both are closed forms on sorted values: SW2^2 is the mean over projections of the
    mean squared gap between the sorted projections, pixel W1 the mean absolute gap between
    the sorted pixel values. The results differ from the one-member functions only in the
    order of float64 summation (POT integrates its quantile functions; measured relative
    differences below 1e-13, tests/test_metrics.py).
    """
    if generated.dim() != 3 or heldout.dim() != 2 or generated.shape[1:] != heldout.shape:
        raise ValueError(
            f"need generated (P, n, D) and heldout (n, D) with equal n and D, got "
            f"{tuple(generated.shape)} and {tuple(heldout.shape)}"
        )
    device = generated.device
    gen = generated.detach().to(torch.float64)
    held = heldout.detach().to(device=device, dtype=torch.float64)
    dim = gen.shape[2]
    proj = torch.as_tensor(
        ot.sliced.get_random_projections(dim, int(n_projections), int(seed)), device=device
    )
    gen_proj = torch.matmul(gen, proj).sort(dim=1).values  # (P, n, L)
    held_proj = (held @ proj).sort(dim=0).values  # (n, L)
    sliced = (gen_proj - held_proj).square().mean(dim=1).mean(dim=1).sqrt()
    gen_pix = gen.reshape(gen.shape[0], -1).sort(dim=1).values
    held_pix = held.reshape(-1).sort().values
    pixel = (gen_pix - held_pix).abs().mean(dim=1)
    return sliced.cpu().numpy(), pixel.cpu().numpy()


def distances_batch(
    generated: torch.Tensor,
    heldout: ArrayLike,
    *,
    n: int | None = 1000,
    seed: int = 0,
    exact: bool | Sequence[bool] = True,
    num_itermax: int = 1_000_000,
    n_projections: int = 256,
    chunk: int = 64,
) -> list[dict[str, float]]:
    """`distances(generated[i], heldout, ...)` for every member i of a (P, N, D) tensor.

    The same subsamples (they depend on the counts and the seed only) and the same keys;
    sliced W2 and pixel W1 of all finite members come from `sliced_and_pixel_batch` on the
    samples' device, `chunk` members at a time, when both subsamples have equal size (else
    member by member, as `distances`). The exact W1 stays POT's CPU solver, one member at a
    time. A member with non-finite samples gets NaN for every distance (with a UserWarning).
    """
    if not isinstance(generated, torch.Tensor) or generated.dim() != 3:
        raise ValueError("generated must be a (P, N, D) tensor of every member's samples")
    if n is not None and n < 1:
        raise ValueError(f"n must be >= 1 (or None for all samples), got {n}")
    p = generated.shape[0]
    flags = [bool(exact)] * p if isinstance(exact, bool) else [bool(e) for e in exact]
    if len(flags) != p:
        raise ValueError(f"exact: {len(flags)} flags for {p} members")
    gen_idx = subsample_indices(generated.shape[1], n, seed, 0)
    held = _take(heldout, subsample_indices(_length(heldout), n, seed, 1), "heldout")
    if generated.shape[2] != held.shape[1]:
        raise ValueError(
            f"generated and heldout must have the same feature dimension, got "
            f"{generated.shape[2]} and {held.shape[1]}"
        )
    if not np.isfinite(held).all():
        raise ValueError("heldout contains NaN or inf; the held-out split itself is broken")
    gen = generated.detach()[:, torch.as_tensor(gen_idx, device=generated.device)]
    finite = torch.isfinite(gen).flatten(1).all(dim=1).tolist()
    out: list[dict[str, float]] = [{} for _ in range(p)]
    ok = [i for i in range(p) if finite[i]]
    if ok and gen.shape[1] == held.shape[0]:
        held_t = torch.as_tensor(held, device=generated.device)
        for start in range(0, len(ok), chunk):
            rows = ok[start : start + chunk]
            idx = torch.as_tensor(rows, device=generated.device)
            sliced, pixel = sliced_and_pixel_batch(
                gen[idx], held_t, n_projections=n_projections, seed=seed
            )
            for k, i in enumerate(rows):
                out[i] = {"sliced_w2": float(sliced[k]), "pixel_w1": float(pixel[k])}
    for i in range(p):
        if not finite[i]:
            warnings.warn(
                "generated samples contain NaN or inf (diverged generator?); every distance "
                "is NaN",
                UserWarning,
                stacklevel=2,
            )
            nan = float("nan")
            failed = {"w1": nan, "w1_converged": 0.0} if flags[i] else {}
            out[i] = failed | {"sliced_w2": nan, "pixel_w1": nan}
            continue
        member = (
            _to_numpy(gen[i], "generated", check_finite=False) if flags[i] or not out[i] else None
        )
        first: dict[str, float] = {}
        if flags[i]:
            w1 = wasserstein1(member, held, num_itermax=num_itermax)
            first = {
                "w1": w1.value if w1.converged else float("nan"),
                "w1_converged": 1.0 if w1.converged else 0.0,
            }
        if not out[i]:
            out[i] = {
                "sliced_w2": sliced_wasserstein(
                    member, held, n_projections=n_projections, seed=seed, p=2
                ),
                "pixel_w1": pixel_wasserstein(member, held),
            }
        out[i] = first | out[i]
    return out


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

"""Wasserstein distances between generated and held-out samples (POT and closed forms).

Every distance here is meant to be measured on the held-out split (`Dataset.heldout`), never on
the training images. Functions take plain tensors (any device) or numpy arrays and return plain
floats; nothing here imports optuna, mlflow or a trainable.

- `wasserstein1`: exact Wasserstein-1 with a Euclidean ground cost (POT `emd2` on `ot.dist`).
- `sliced_wasserstein`: sliced Wasserstein-p (SW2 by default) with a fixed projection seed.
- `pixel_wasserstein`: 1-D Wasserstein-1 between the flattened pixel-value distributions.
- `distances`, `distances_batch`: all three on the deterministic subsamples a run is scored on.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

import numpy as np
import ot
import ot.sliced
import scipy.stats
import torch

from benchmark.metrics.checks import same_dim
from benchmark.perf.machine import usable_cpus

__all__ = [
    "WResult",
    "distances",
    "distances_batch",
    "pixel_wasserstein",
    "sliced_wasserstein",
    "subsample_indices",
    "wasserstein1",
]

ArrayLike = torch.Tensor | np.ndarray | Sequence[float] | Sequence[Sequence[float]]

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
    same_dim(xa.shape[1], ya.shape[1], "x", "y")
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
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value, log = _emd2(xa.shape[0], ya.shape[0], cost, num_itermax)
    _pass_on(caught)
    return _w1_result(value, log.get("warning"), caught, num_itermax, cost.shape)


def _emd2(n_x: int, n_y: int, cost: np.ndarray, num_itermax: int) -> tuple[float, dict]:
    a = np.full(n_x, 1.0 / n_x)
    b = np.full(n_y, 1.0 / n_y)
    return ot.emd2(a, b, cost, numItermax=int(num_itermax), log=True)


def _pass_on(caught: Sequence[warnings.WarningMessage]) -> None:
    """Warnings other than POT's iteration limit are passed on (once each), not swallowed."""
    seen: set[str] = set()
    for w in caught:
        text = str(w.message)
        if _POT_ITERMAX_TEXT not in text and text not in seen:
            seen.add(text)
            warnings.warn(w.message, w.category, stacklevel=3)


def _w1_result(
    value: float,
    message: str | None,
    caught: Sequence[warnings.WarningMessage],
    num_itermax: int,
    shape: tuple[int, ...],
) -> WResult:
    """The solver's value as a WResult; a UserWarning when it stopped before optimality."""
    if message is None:
        message = next(
            (str(w.message) for w in caught if _POT_ITERMAX_TEXT in str(w.message)), None
        )
    if message is not None:
        hint = (
            f" Raise num_itermax (now {num_itermax}) or reduce the sample count "
            f"({shape[0]} x {shape[1]})."
            if _POT_ITERMAX_TEXT in message
            else ""
        )
        warnings.warn(
            f"exact W1 did not reach optimality ({message.strip()}); the solver's value "
            f"{float(value):.6g} is not W1 and not a bound on it.{hint}",
            UserWarning,
            stacklevel=3,
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


def _check_n(n: int | None) -> None:
    if n is not None and n < 1:
        raise ValueError(f"n must be >= 1 (or None for all samples), got {n}")


def _scored_heldout(heldout: ArrayLike, n: int | None, seed: int, dim: int) -> np.ndarray:
    """The held-out subsample a run is scored against (stream 1 of `seed`), checked against
    the generated samples' feature dimension `dim`; a broken held-out split raises."""
    held = _take(heldout, subsample_indices(_length(heldout), n, seed, 1), "heldout")
    same_dim(dim, held.shape[1], "generated", "heldout")
    if not np.isfinite(held).all():
        raise ValueError("heldout contains NaN or inf; the held-out split itself is broken")
    return held


def _diverged(exact: bool) -> dict[str, float]:
    """Every distance NaN, with a UserWarning at the caller of `distances(_batch)`: a diverged
    generator is an outcome of the search, not a bug, so it is scored NaN, loudly."""
    warnings.warn(
        "generated samples contain NaN or inf (diverged generator?); every distance is NaN",
        UserWarning,
        stacklevel=3,
    )
    nan = float("nan")
    failed = {"w1": nan, "w1_converged": 0.0} if exact else {}
    return failed | {"sliced_w2": nan, "pixel_w1": nan}


def _exact_w1(gen: np.ndarray, held: np.ndarray, num_itermax: int) -> dict[str, float]:
    """{"w1", "w1_converged"}; w1 is NaN when the solver stopped before optimality."""
    return _w1_keys(wasserstein1(gen, held, num_itermax=num_itermax))


def _w1_keys(w1: WResult) -> dict[str, float]:
    return {
        "w1": w1.value if w1.converged else float("nan"),
        "w1_converged": 1.0 if w1.converged else 0.0,
    }


def _exact_w1_many(
    members: Sequence[np.ndarray], held: np.ndarray, num_itermax: int
) -> list[dict[str, float]]:
    """`_exact_w1` of every member, the same values. POT's network simplex releases the GIL,
    so with several members the solves run on one thread per usable CPU while this thread
    builds the next cost matrices (a few at most ahead: 8 MB each at n = 1000), e.g. the
    many members of a population that finish at the same epoch."""
    threads = min(len(members), usable_cpus())
    if threads <= 1:
        return [_exact_w1(m, held, num_itermax) for m in members]
    results: list[tuple[float, dict] | None] = [None] * len(members)
    shapes = [(m.shape[0], held.shape[0]) for m in members]
    # warnings filters are process-wide: one catch around every thread's solve
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with ThreadPoolExecutor(threads, thread_name_prefix="exact-w1") as pool:
            pending: dict[Future, int] = {}
            for k, member in enumerate(members):
                cost = ot.dist(member, held, metric="euclidean")
                pending[pool.submit(_emd2, *shapes[k], cost, num_itermax)] = k
                while len(pending) > 2 * threads:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        results[pending.pop(future)] = future.result()
            for future in list(pending):
                results[pending.pop(future)] = future.result()
    _pass_on(caught)
    out = []
    for (value, log), shape in zip(results, shapes):  # type: ignore[misc]
        # POT's own itermax warning is matched to its member by the solver's log
        out.append(_w1_keys(_w1_result(value, log.get("warning"), [], num_itermax, shape)))
    return out


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
    a non-finite held-out split raises ValueError. See `benchmark.metrics.labels.LABELS` for
    what each key means.
    """
    _check_n(n)
    gen = _take(generated, subsample_indices(_length(generated), n, seed, 0), "generated")
    held = _scored_heldout(heldout, n, seed, gen.shape[1])
    if not np.isfinite(gen).all():
        return _diverged(exact)
    out = _exact_w1(gen, held, num_itermax) if exact else {}
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
    differences below 1e-13, tests/metrics/test_wasserstein.py).
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
    _check_n(n)
    p = generated.shape[0]
    flags = [bool(exact)] * p if isinstance(exact, bool) else [bool(e) for e in exact]
    if len(flags) != p:
        raise ValueError(f"exact: {len(flags)} flags for {p} members")
    gen_idx = subsample_indices(generated.shape[1], n, seed, 0)
    held = _scored_heldout(heldout, n, seed, generated.shape[2])
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
    # each finite member as an array once: for its exact W1 and/or its distances one by one
    arrays = {
        i: _to_numpy(gen[i], "generated", check_finite=False)
        for i in range(p)
        if finite[i] and (flags[i] or not out[i])
    }
    solved = [i for i in range(p) if finite[i] and flags[i]]
    firsts = dict(zip(solved, _exact_w1_many([arrays[i] for i in solved], held, num_itermax)))
    for i in range(p):
        if not finite[i]:
            out[i] = _diverged(flags[i])
            continue
        member = arrays.get(i)
        first = firsts.get(i, {})
        if not out[i]:
            out[i] = {
                "sliced_w2": sliced_wasserstein(
                    member, held, n_projections=n_projections, seed=seed, p=2
                ),
                "pixel_w1": pixel_wasserstein(member, held),
            }
        out[i] = first | out[i]
    return out

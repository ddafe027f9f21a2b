"""`score`: every metric of a population's samples in one call, as the harness records them.

- the distances to the held-out split (`wasserstein.distances_batch`), for every member;
- where asked, copy detection against the training images (the only use of the training
  split in scoring), and for digit data with labels classifier-FID, precision/recall/density/
  coverage and class coverage (`classifier`), for the 2-D mixtures modes covered and the share
  of high-quality samples (`modes`): `extra_metrics`.

The keys are described in `benchmark.metrics.labels.LABELS`. Nothing here imports optuna,
mlflow or a trainable.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from benchmark.data import Dataset
from benchmark.metrics.classifier import class_metrics, classifier_for
from benchmark.metrics.copying import copy_detection
from benchmark.metrics.modes import mode_coverage_2d
from benchmark.metrics.wasserstein import distances_batch

__all__ = ["extra_metrics", "score"]


def score(
    samples: torch.Tensor,
    data: Dataset,
    *,
    n: int,
    seed: int,
    exact: Sequence[bool],
    extra: Sequence[bool],
) -> list[dict[str, float]]:
    """Metrics of every member's (P, N, D) `samples`, one dict per member, in order.

    Distances on n samples per side from `seed` ('w1' and 'w1_converged' where `exact[i]`),
    plus `extra_metrics` where `extra[i]`. A member whose samples are not all finite gets an
    empty dict: no distance at all, which the divergence rule reads as non-finite samples.
    Sliced W2 and pixel W1 of all finite members come from one batch on the samples' device;
    the exact W1 member by member (POT, CPU).
    """
    p = samples.shape[0]
    if len(exact) != p or len(extra) != p:
        raise ValueError(f"score: {len(exact)} exact and {len(extra)} extra flags for {p} members")
    finite = torch.isfinite(samples).flatten(1).all(dim=1).tolist()
    rows = [i for i in range(p) if finite[i]]
    out: list[dict[str, float]] = [{} for _ in range(p)]
    if not rows:
        return out
    chosen = samples if len(rows) == p else samples[torch.as_tensor(rows, device=samples.device)]
    dists = distances_batch(chosen, data.heldout, n=n, seed=seed, exact=[exact[i] for i in rows])
    for i, dist in zip(rows, dists):
        if extra[i]:
            dist.update(extra_metrics(samples[i], data, n=n))
        out[i] = dist
    return out


def extra_metrics(samples: torch.Tensor, data: Dataset, *, n: int = 1000) -> dict[str, float]:
    """Copy detection plus class- or mode-aware metrics of (n, D) generated samples."""
    samples = samples[:n]
    heldout = data.heldout[:n]
    out: dict[str, float] = {}
    copy = copy_detection(samples, data.train, heldout)
    out["copy_fraction"] = float(copy.copy_fraction)
    out["copy_z_u"] = float(copy.z_u)
    classifier = classifier_for(data)
    if classifier is not None:
        out.update({k: float(v) for k, v in class_metrics(classifier, samples, heldout).items()})
    if "centers" in data.extra:
        modes = mode_coverage_2d(samples, data.extra["centers"], float(data.extra["std"]))
        out["modes_covered"] = float(modes.modes_covered)
        out["high_quality"] = float(modes.high_quality)
    return out

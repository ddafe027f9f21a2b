"""Input checks shared by the metrics: (N, D) sample matrices and matching feature dimensions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["ArrayLike", "as_matrix", "same_dim"]

ArrayLike = torch.Tensor | np.ndarray | Sequence[Sequence[float]]


def same_dim(a: int, b: int, name_a: str, name_b: str) -> None:
    """ValueError naming both inputs when their feature dimensions differ."""
    if a != b:
        raise ValueError(
            f"{name_a} and {name_b} must have the same feature dimension, got {a} and {b}"
        )


def as_matrix(x: ArrayLike, name: str, device: torch.device | None = None) -> torch.Tensor:
    """A non-empty (N, D) floating-point tensor of `x` (on `device` when given), detached."""
    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if device is not None:
        t = t.to(device)
    if t.dim() != 2:
        raise ValueError(
            f"{name} must be a (N, D) sample matrix, got shape {tuple(t.shape)}; pass one "
            "population member's samples (e.g. samples[i]) with images flattened"
        )
    if t.shape[0] == 0:
        raise ValueError(f"{name} is empty; pass at least one sample")
    if not t.is_floating_point():
        t = t.float()
    return t

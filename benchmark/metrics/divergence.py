"""When a run has diverged: the rule that records a trial PRUNED with reason 'diverged'.

A run diverges when, in some epoch,

1. a loss is not finite, or its samples are not (NaN/inf);
2. half or more of the epoch's per-step G or D losses are larger in magnitude than
   `LOSS_BOUND` = 10,000 x log 2 (every MixBench loss is a sum of at most two binary
   cross-entropies, log 2 or 2 log 2 at chance; a BCE of L means logits of about L, i.e. a
   discriminator scaled out of any meaningful range); or
3. the samples are far from the data's scale: a sliced W2 (any sampling mode) more than
   `SCALE_FACTOR` = 100 times that of a generator that always outputs the mean of the held-out
   data (sqrt(trace(cov) / dim), about what an untrained generator scores on centred data).

The bounds were measured (README, "Divergence"): on MNIST (the 8,000-image training part of
../shared/data) and ring8, with the paper defaults of gan, realmix and mixture (3 and 5 epochs),
no epoch's median |loss| exceeded 6 and no sliced W2 exceeded 6.6 x the constant-generator
level (Mixture GAN with the minimax G loss on ring8). The largest value of a run that did not
blow up, a standard GAN at lr 1e-2 (the top of the search range) on MNIST, reached a median G
loss of 262 in its first epoch while scoring like the defaults. The runs that blew up (lr 1.0,
RealMix with alpha 10, noise sigma 10, no clamp) had median losses of 9e6 or more and, on
ring8, sliced W2 of 8.7e6 x the constant-generator level or more, from their first epoch.
Samples saturated at +-1 on bounded data need no rule of their own: every such run measured
also broke the loss bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["LOSS_BOUND", "SCALE_FACTOR", "DivergenceRule", "constant_generator_sw2", "rule_for"]

LOSS_BOUND = 1e4 * math.log(2)
"""Median per-step |loss| of an epoch above which the run has diverged (10,000 x log 2)."""
SCALE_FACTOR = 100.0
"""Sliced W2 above this multiple of the constant-generator level means the run has diverged."""


@dataclass(frozen=True)
class DivergenceRule:
    """The divergence rule of one dataset; each check returns None or the reason in words."""

    reference_sw2: float | None = None
    """Sliced W2 of a generator that always outputs the held-out mean (None: no scale check)."""
    loss_bound: float = LOSS_BOUND
    scale_factor: float = SCALE_FACTOR

    def losses(self, g_losses: np.ndarray, d_losses: np.ndarray, epoch: int) -> str | None:
        """Checks 1 and 2 on one member's per-step losses of one epoch."""
        for name, losses in (("G", g_losses), ("D", d_losses)):
            values = np.asarray(losses, dtype=np.float64)
            if not np.isfinite(values).all():
                return f"non-finite loss in epoch {epoch}"
            if values.size and float(np.median(np.abs(values))) > self.loss_bound:
                return (
                    f"{name} loss exploded in epoch {epoch}: median |loss| "
                    f"{float(np.median(np.abs(values))):.3g} > {self.loss_bound:.4g} "
                    "(10,000 x log 2)"
                )
        return None

    def scores(self, scores: dict[str, float], epoch: int) -> str | None:
        """Checks 1 and 3 on one member's scores of one epoch."""
        if "sliced_w2" not in scores:  # score_members leaves out distances of non-finite samples
            return f"non-finite samples in epoch {epoch}"
        if self.reference_sw2 is None or not self.reference_sw2 > 0:
            return None
        limit = self.scale_factor * self.reference_sw2
        for key in sorted(k for k in scores if k.startswith("sliced_w2")):
            value = scores[key]
            if not value <= limit:  # also catches NaN
                return (
                    f"samples far off the data's scale in epoch {epoch}: {key} {value:.3g} > "
                    f"{self.scale_factor:g} x {self.reference_sw2:.3g} (a generator always "
                    "outputting the held-out mean)"
                )
        return None


def constant_generator_sw2(heldout: Any) -> float:
    """Sliced W2 between `heldout` and a point mass at its mean: sqrt(trace(cov) / dim), the
    mean over uniformly random directions of each projection's variance, square-rooted."""
    x = np.asarray(heldout.detach().cpu() if hasattr(heldout, "detach") else heldout)
    x = x.reshape(len(x), -1).astype(np.float64)
    return float(math.sqrt(x.var(axis=0).sum() / x.shape[1]))


_RULES: dict[int, tuple[Any, DivergenceRule]] = {}


def rule_for(data: Any) -> DivergenceRule:
    """The divergence rule for a loaded dataset (computed once per dataset object)."""
    key = id(data)
    cached = _RULES.get(key)
    if cached is None or cached[0] is not data:
        cached = (data, DivergenceRule(reference_sw2=constant_generator_sw2(data.heldout)))
        _RULES[key] = cached
    return cached[1]

"""Population building blocks: stacked MLPs, a per-member Adam and per-member random streams.

Every tensor here has a leading member dimension P. A member's weights, optimiser state and
random draws depend only on its own seed and hyperparameters, so member i of a population
trains exactly as a population of one with the same seed would: on CPU bit for bit
(`member_matmul`); on CUDA up to the rounding of the batched matmul kernels cuBLAS picks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["MemberRNG", "StackedAdam", "StackedMLP", "member_matmul", "member_view"]


def member_view(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a (P,) tensor so it broadcasts against `like` of shape (P, ...)."""
    return values.view(-1, *([1] * (like.dim() - 1)))


def member_matmul(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """x @ w (+ b) for every member: x (P, B, K), w (P, K, N), b (P, 1, N).

    Member i's result (and its gradients) are bit-identical whatever P is. `torch.baddbmm`
    keeps that on CPU except for a width of one (K = 1 or N = 1), where BLAS takes a
    matrix-vector path whose summation order depends on the batch count (differences of
    ~1e-5 measured at P = 1 vs 2, 3, 16); those two shapes are written as a broadcast product
    and a row sum, which reduce each member on its own.
    """
    if w.shape[-1] == 1:
        y = (x * w.transpose(1, 2)).sum(-1, keepdim=True)
        return y if b is None else y + b
    if w.shape[-2] == 1:
        y = x * w
        return y if b is None else y + b
    return torch.baddbmm(b, x, w) if b is not None else torch.bmm(x, w)


class MemberRNG:
    """One torch.Generator per member; every draw returns a (P, *shape) tensor.

    A member whose `mask` entry is False draws nothing (its stream does not advance) and gets
    zeros, so a member with e.g. dropout 0 consumes the same random numbers in a population as
    it would alone.
    """

    def __init__(self, seeds: Sequence[int], device: torch.device) -> None:
        self.device = device
        self.gens = [torch.Generator(device=device) for _ in seeds]
        for gen, seed in zip(self.gens, seeds):
            gen.manual_seed(int(seed))

    @property
    def size(self) -> int:
        return len(self.gens)

    def _draw(self, fill, shape: tuple[int, ...], mask: Sequence[bool] | None) -> torch.Tensor:
        # Each member's draw fills its own contiguous row in place: the same values as
        # torch.rand/randn(shape, generator=g) (which are empty(shape) filled in place),
        # without the copy that stacking separate draws costs.
        out = torch.empty(self.size, *shape, device=self.device)
        for i, gen in enumerate(self.gens):
            if mask is None or mask[i]:
                fill(out[i], gen)
            else:
                out[i].zero_()
        return out

    def randn(self, *shape: int, mask: Sequence[bool] | None = None) -> torch.Tensor:
        return self._draw(lambda t, g: t.normal_(generator=g), shape, mask)

    def rand(self, *shape: int, mask: Sequence[bool] | None = None) -> torch.Tensor:
        return self._draw(lambda t, g: t.uniform_(generator=g), shape, mask)

    def randint(self, highs: Sequence[int], *shape: int) -> torch.Tensor:
        """Integers in [0, highs[i]) for member i."""
        return torch.stack(
            [
                torch.randint(int(h), shape, generator=g, device=self.device)
                for g, h in zip(self.gens, highs)
            ]
        )

    def randint_ragged(self, high: int, counts: Sequence[int], width: int) -> torch.Tensor:
        """Member i draws counts[i] integers in [0, high), padded with zeros to `width`."""
        out = torch.zeros(self.size, width, dtype=torch.long, device=self.device)
        for i, (g, c) in enumerate(zip(self.gens, counts)):
            out[i, : int(c)] = torch.randint(int(high), (int(c),), generator=g, device=self.device)
        return out

    def randperm(self, n: int) -> torch.Tensor:
        return torch.stack([torch.randperm(n, generator=g, device=self.device) for g in self.gens])

    def get_state(self) -> list[torch.Tensor]:
        return [g.get_state() for g in self.gens]

    def adopt(self, index: int, other: MemberRNG, source: int = 0) -> None:
        """Member `index` continues `other`'s member `source` stream from its current state."""
        self.gens[index].set_state(other.gens[source].get_state())

    def set_state(self, states: Sequence[torch.Tensor]) -> None:
        for g, s in zip(self.gens, states):
            g.set_state(s)


class StackedMLP(nn.Module):
    """P independent MLPs evaluated with batched matmuls (`torch.baddbmm`).

    Hidden layers use LeakyReLU(0.2) followed by per-member dropout; the output layer is
    linear, optionally followed by tanh. `cond_dim` extra inputs (e.g. the Mixture GAN's t)
    enter the first layer through weights initialised to zero, added separately so that a
    zero condition leaves the computation bit-identical to an unconditioned net.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        rng: MemberRNG,
        *,
        out_tanh: bool,
        cond_dim: int = 0,
    ) -> None:
        super().__init__()
        self.sizes = tuple(int(s) for s in sizes)
        self.out_tanh = out_tanh
        p = rng.size
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(self.sizes[:-1], self.sizes[1:]):
            # nn.Linear's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for W and b.
            bound = 1.0 / math.sqrt(fan_in)
            w = (rng.rand(fan_in, fan_out) * 2 - 1) * bound
            b = (rng.rand(1, fan_out) * 2 - 1) * bound
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))
        self.cond = (
            nn.Parameter(torch.zeros(p, cond_dim, self.sizes[1], device=rng.device))
            if cond_dim
            else None
        )

    def forward(
        self,
        x: torch.Tensor,
        *,
        dropout: torch.Tensor | None = None,
        dropout_on: Sequence[bool] | None = None,
        rng: MemberRNG | None = None,
        cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: (P, B, in). dropout: (P,) rates, applied when given with an rng (training).

        `dropout_on[i]` says whether member i's rate is above 0 (kept on the host by the
        caller, so deciding which members draw dropout masks never waits for the device).
        """
        use_dropout = dropout is not None and rng is not None
        if use_dropout:
            keep = 1.0 - dropout
            mask_members = list(dropout_on) if dropout_on is not None else (dropout > 0).tolist()
        last = len(self.weights) - 1
        h = x
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = member_matmul(h, w, b)
            if i == 0 and self.cond is not None and cond is not None:
                h = h + member_matmul(cond, self.cond)
            if i == last:
                break
            h = torch.nn.functional.leaky_relu(h, 0.2)
            if use_dropout and any(mask_members):
                u = rng.rand(*h.shape[1:], mask=mask_members)
                scale = torch.where(keep > 0, 1.0 / keep.clamp_min(1e-12), 0.0)
                drop = (u < member_view(keep, u)).to(h.dtype) * member_view(scale, u)
                # A member without dropout has u = 0, keep = 1 and scale = 1, so its drop is
                # exactly 1.0 and h * drop leaves it (and its gradient) bit-identical.
                h = h * drop
        return torch.tanh(h) if self.out_tanh else h


class StackedAdam:
    """Adam over stacked parameters with per-member lr, beta1 and beta2 (tensors of shape (P,)).

    Follows torch.optim.Adam's update (bias-corrected, eps outside the sqrt). Every member has
    its own step count, so a member restarted in a running population (`reset_member`) gets
    the bias correction of a fresh optimiser. Members whose `active` entry is False are frozen
    (used to mask out pruned members of a population).
    """

    def __init__(
        self,
        params: Sequence[torch.Tensor],
        *,
        lr: torch.Tensor,
        beta1: torch.Tensor,
        beta2: torch.Tensor,
        eps: float = 1e-8,
    ) -> None:
        self.params = [p for p in params]
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.steps = torch.zeros(len(lr), device=lr.device)
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.active: torch.Tensor | None = None

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        t = self.steps
        bc1 = 1 - torch.pow(self.beta1, t)
        bc2_sqrt = torch.sqrt(1 - torch.pow(self.beta2, t))
        lr = self.lr if self.active is None else self.lr * self.active
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq):
            if p.grad is None:
                continue
            g = p.grad
            b1, b2 = member_view(self.beta1, p), member_view(self.beta2, p)
            # The same elementwise ops in the same order as the plain expressions
            # m*b1 + g*(1-b1), v*b2 + g*g*(1-b2), p - m / (sqrt(v)/bc2 + eps) * (lr/bc1)
            # (bit-identical results), written into one scratch tensor: fresh temporaries
            # of parameter size made this step ~2x slower on CPU.
            tmp = torch.mul(g, 1 - b1)
            m.mul_(b1).add_(tmp)
            torch.mul(g, g, out=tmp).mul_(1 - b2)
            v.mul_(b2).add_(tmp)
            torch.sqrt(v, out=tmp).div_(member_view(bc2_sqrt, p)).add_(self.eps)
            torch.div(m, tmp, out=tmp).mul_(member_view(lr / bc1, p))
            p.sub_(tmp)

    @torch.no_grad()
    def reset_member(self, index: int) -> None:
        """Member `index` starts afresh: zero moments and step count (its lr/betas are the
        shared hyperparameter tensors, set by the caller)."""
        self.steps[index] = 0
        for m, v in zip(self.exp_avg, self.exp_avg_sq):
            m[index].zero_()
            v[index].zero_()

    def state_dict(self) -> dict:
        return {"step": self.steps, "exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq}

    def load_state_dict(self, state: dict) -> None:
        self.steps.copy_(torch.as_tensor(state["step"], dtype=self.steps.dtype))
        for dst, src in zip(self.exp_avg, state["exp_avg"]):
            dst.copy_(src)
        for dst, src in zip(self.exp_avg_sq, state["exp_avg_sq"]):
            dst.copy_(src)

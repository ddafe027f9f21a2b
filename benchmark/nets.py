"""Population building blocks: stacked MLPs, a per-member Adam and per-member random streams.

Every tensor here has a leading member dimension P. A member's weights, optimiser state and
random draws depend only on its own seed and hyperparameters, so member i of a population
trains exactly as a population of one with the same seed would: on CPU bit for bit
(`member_matmul`); on CUDA up to the rounding of the batched matmul kernels cuBLAS picks.
The random streams are counter-based (Philox-4x32-10, `MemberRNG`: in tensor ops, or on CPU
in compiled C, `benchmark.native`, with the same words), so every draw is one evaluation for
all members: nothing here loops over members.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from benchmark import native

__all__ = [
    "KAT",
    "MemberRNG",
    "StackedAdam",
    "StackedMLP",
    "check_compiled",
    "check_philox",
    "member_matmul",
    "member_view",
    "philox4x32",
    "round_keys",
]


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


PHILOX_M = (0xD2511F53, 0xCD9E8D57)
"""Philox-4x32 round multipliers (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
SC 2011; the Random123 constants)."""
PHILOX_W = (0x9E3779B9, 0xBB67AE85)
"""Philox-4x32 key increments (the golden ratio and sqrt(3) - 1 as 32-bit fractions)."""
PHILOX_ROUNDS = 10
MASK32 = 0xFFFFFFFF
KAT = (
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((MASK32,) * 4, (MASK32,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
)
"""Random123's known-answer tests for Philox-4x32-10: (counter, key, output) words."""


def _philox_rounds(
    c0: torch.Tensor,
    c1: torch.Tensor,
    c2: torch.Tensor,
    c3: torch.Tensor,
    round_keys: torch.Tensor,
) -> list[torch.Tensor]:
    """Philox-4x32 on int64 tensors of uint32 values; returns the output words (c0..c3).

    c0..c3: equal shapes; round_keys: (rounds, 2, ...) broadcastable against them. torch has
    no unsigned 32 x 32 -> 64 multiply, so the product is taken in int64: it may pass 2**63
    and wrap to a negative number whose low and high 32 bits are still the unsigned
    product's (two's complement); `check_philox` verifies this on each device against the
    Random123 known answers before a generator draws there.

    The words are kept in two stacked pairs, a = (c0, c2) and b = (c3, c1), so that a round
    is seven in-place operators whatever the shape: with p = a * (M0, M1),
    a' = swap(hi(p) ^ b) ^ key and b' = lo(p), which is Philox's
    (c0, c1, c2, c3)' = (hi(p1) ^ c1 ^ k0, lo(p1), hi(p0) ^ c3 ^ k1, lo(p0)).
    """
    a = torch.stack([c0, c2])
    b = torch.stack([c3, c1])
    mult = torch.tensor(PHILOX_M, dtype=torch.int64, device=a.device)
    mult = mult.view(2, *([1] * (a.dim() - 1)))
    swap = torch.tensor([1, 0], device=a.device)
    p, t = torch.empty_like(a), torch.empty_like(a)
    for key in round_keys:
        torch.mul(a, mult, out=p)
        torch.bitwise_right_shift(p, 32, out=t).bitwise_and_(MASK32).bitwise_xor_(b)
        torch.index_select(t, 0, swap, out=a).bitwise_xor_(key)
        torch.bitwise_and(p, MASK32, out=b)
    return [a[0], b[1], a[1], b[0]]


def round_keys(key: torch.Tensor, rounds: int = PHILOX_ROUNDS) -> torch.Tensor:
    """(rounds, 2, *key.shape[1:]) Philox key schedule of key (2, ...) int64 (uint32 words)."""
    step = torch.tensor(PHILOX_W, dtype=torch.int64, device=key.device)
    r = torch.arange(rounds, dtype=torch.int64, device=key.device)
    inc = (r[:, None] * step[None]).view(rounds, 2, *([1] * (key.dim() - 1)))
    return (key[None] + inc) & MASK32


def philox4x32(
    counter: Sequence[int | torch.Tensor],
    key: Sequence[int | torch.Tensor],
    *,
    device: torch.device | str = "cpu",
    rounds: int = PHILOX_ROUNDS,
) -> list[torch.Tensor]:
    """Philox-4x32-`rounds` of counter words (c0, c1, c2, c3) under key words (k0, k1).

    Words are Python ints or int64 tensors of uint32 values (broadcast together); returns the
    four output words as int64 tensors.
    """

    def as_tensor(v: int | torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(v, dtype=torch.int64, device=device)

    *words, k0, k1 = torch.broadcast_tensors(*[as_tensor(w) for w in (*counter, *key)])
    k = torch.stack([k0, k1])
    return _philox_rounds(*[w.clone() for w in words], round_keys(k, rounds))


_CHECKED: set[str] = set()


def check_philox(device: torch.device | str) -> None:
    """Raise RuntimeError unless this device's int64 arithmetic gives Random123's answers."""
    name = str(torch.device(device))
    if name in _CHECKED:
        return
    for counter, key, expected in KAT:
        got = tuple(int(w) for w in philox4x32(counter, key, device=device))
        if got != expected:
            raise RuntimeError(
                f"Philox-4x32-10 on {name} gives {[hex(w) for w in got]} for counter "
                f"{[hex(w) for w in counter]}, expected {[hex(w) for w in expected]}: this "
                "device's int64 multiply does not wrap as two's complement; MixBench's "
                "random streams cannot run on it"
            )
    _CHECKED.add(name)


def check_compiled(blocks: native.BlocksFunction) -> None:
    """Raise RuntimeError unless the compiled Philox gives Random123's answers, as words and
    as 16-bit halves."""
    if "compiled" in _CHECKED:
        return
    for counter, key, expected in KAT:
        word = counter[0] | (counter[1] << 32)
        c = torch.tensor([word - (1 << 64) if word >> 63 else word], dtype=torch.int64)
        k = torch.tensor([key], dtype=torch.int64)
        stream = counter[2] | (counter[3] << 32)
        words = blocks(c, k, 1, stream, PHILOX_ROUNDS, False)[0].tolist()
        halves = blocks(c, k, 1, stream, PHILOX_ROUNDS, True)[0].tolist()
        if words != list(expected) or halves != [
            h for w in expected for h in (w & 0xFFFF, w >> 16)
        ]:
            raise RuntimeError(
                f"the compiled Philox-4x32-10 ({native.__name__}) gives {[hex(w) for w in words]}"
                f" (halves {[hex(h) for h in halves]}) for counter {[hex(w) for w in counter]}, "
                f"expected {[hex(w) for w in expected]}; run with "
                f"{native.IMPLEMENTATION_ENV}=tensor and report this"
            )
    _CHECKED.add("compiled")


Mask = Sequence[bool] | torch.Tensor | None


class MemberRNG:
    """Counter-based random streams for P members: Philox-4x32-10 in batched tensor ops.

    Member i's stream is keyed by its seed (the 64-bit key) and the generator's `stream`
    (counter words 2 and 3); its counter (words 0 and 1) counts the 128-bit blocks it has
    drawn. Every draw returns a (P, *shape) tensor made by one Philox evaluation for all
    members, so a draw costs the same number of kernels whatever P is, and member i's values
    depend only on its seed, the stream and how many blocks it has drawn: a population draws
    for member i exactly what a population of one with the same seed draws.

    A member whose `mask` entry is False gets zeros and its counter does not advance (so a
    member with e.g. dropout 0 consumes the same numbers in a population as alone). Each
    draw of n values takes ceil(n / 4) blocks (n / 8 for the 16-bit `rand16`); the unused
    words of the last block are discarded.
    """

    def __init__(
        self,
        seeds: Sequence[int],
        device: torch.device,
        *,
        stream: int = 0,
        compiled: bool = True,
    ) -> None:
        """compiled: on CPU, draw with the compiled Philox of `benchmark.native` where it
        is available (the same words as the tensor operators, in one pass)."""
        check_philox(device)
        self.device = torch.device(device)
        self._compiled = (
            native.blocks_function() if compiled and self.device.type == "cpu" else None
        )
        if self._compiled is not None:
            check_compiled(self._compiled)
        self.stream = int(stream) & ((1 << 64) - 1)
        keys = [[int(s) & MASK32, (int(s) >> 32) & MASK32] for s in seeds]
        self.key = torch.tensor(keys, dtype=torch.int64, device=self.device).view(-1, 2)
        self.counter = torch.zeros(len(keys), dtype=torch.int64, device=self.device)
        self._refresh_keys()

    def _refresh_keys(self) -> None:
        self._round_keys = round_keys(self.key.t()[:, :, None])  # (rounds, 2, P, 1)

    @property
    def size(self) -> int:
        return int(self.key.shape[0])

    def _mask(self, mask: Mask) -> torch.Tensor | None:
        if mask is None:
            return None
        if isinstance(mask, torch.Tensor):
            return mask.to(device=self.device, dtype=torch.bool)
        return torch.tensor([bool(m) for m in mask], dtype=torch.bool, device=self.device)

    def _blocks(self, n_blocks: int) -> torch.Tensor:
        """(P, 4 * n_blocks) words of the members' next n_blocks blocks (no advance)."""
        if self._compiled is not None:
            return self._compiled(self.counter, self.key, n_blocks, self.stream, PHILOX_ROUNDS)
        ctr = self.counter[:, None] + torch.arange(n_blocks, device=self.device)
        c0 = ctr & MASK32
        c1 = ctr >> 32
        c2 = torch.full_like(ctr, self.stream & MASK32)
        c3 = torch.full_like(ctr, self.stream >> 32)
        words = _philox_rounds(c0, c1, c2, c3, self._round_keys)
        return torch.stack(words, dim=-1).view(self.size, 4 * n_blocks)

    def words(self, n: int, mask: Mask = None) -> torch.Tensor:
        """(P, n) int64 uniform 32-bit words; member i's counter advances ceil(n / 4)."""
        return self._words(n, self._mask(mask))

    def _advance(self, n_blocks: int, mask: torch.Tensor | None) -> None:
        """Every member whose mask entry is True (all without a mask) has drawn n_blocks."""
        self.counter += n_blocks if mask is None else mask.long() * n_blocks

    def _words(self, n: int, mask: torch.Tensor | None) -> torch.Tensor:
        n_blocks = -(-int(n) // 4)
        out = self._blocks(n_blocks)[:, :n]
        self._advance(n_blocks, mask)
        return out if mask is None else torch.where(mask[:, None], out, 0)

    def _ragged_words(self, counts: torch.Tensor, width: int) -> torch.Tensor:
        """(P, width) words, member i's first counts[i] real, the rest 0; it advances
        ceil(counts[i] / 4) blocks (its words are those of a plain draw of counts[i])."""
        n_blocks = -(-int(width) // 4)
        out = self._blocks(n_blocks)[:, :width]
        self.counter += (counts + 3) // 4
        keep = torch.arange(width, device=self.device)[None] < counts[:, None]
        return torch.where(keep, out, 0)

    def rand(self, *shape: int, mask: Mask = None) -> torch.Tensor:
        """Uniform floats in [0, 1) (24 random bits each, as torch.rand's float32)."""
        n = math.prod(shape)
        return self.uniforms(self._words(n, self._mask(mask))).view(self.size, *shape)

    def rand16(self, n: int, mask: Mask = None) -> torch.Tensor:
        """(P, n) uniform integers in [0, 65536), two per word (each word's low 16 bits, then
        its high 16): half the Philox work of `rand` where 16 bits of resolution are enough
        (dropout keep/drop decisions). int32 from the compiled generator, else int64."""
        m = self._mask(mask)
        u = self._halves(n, m)
        return u if m is None else torch.where(m[:, None], u, 0)

    def _halves(self, n: int, mask: torch.Tensor | None) -> torch.Tensor:
        """(P, n) 16-bit halves of the members' next ceil(n / 2) words; a member whose mask
        entry is False does not advance (its values are not zeroed here)."""
        n_words = -(-int(n) // 2)
        n_blocks = self._half_blocks(n)
        if self._compiled is not None:
            u = self._compiled(self.counter, self.key, n_blocks, self.stream, PHILOX_ROUNDS, True)[
                :, :n
            ]
        else:
            w = self._blocks(n_blocks)[:, :n_words]
            u = torch.stack([w & 0xFFFF, w >> 16], dim=-1).view(self.size, -1)[:, :n]
        self._advance(n_blocks, mask)
        return u

    @staticmethod
    def _half_blocks(n: int) -> int:
        """Blocks a draw of n 16-bit halves takes: 8 halves per block."""
        return -(-int(n) // 8)

    def bernoulli16(self, n: int, keep: torch.Tensor, mask: Mask = None) -> torch.Tensor:
        """(P, n) bool, True with probability keep[i] for member i (to within 2**-16): a
        `rand16` value u kept when u < keep * 2**16. A member whose mask entry is False gets
        all True and does not advance, as in `rand16`."""
        m = self._mask(mask)
        return self._halves(n, m) < self._limit16(keep, m)[:, None]

    def scaled_bernoulli16(
        self, n: int, keep: torch.Tensor, value: torch.Tensor, mask: Mask = None
    ) -> torch.Tensor:
        """(P, n) float32: value[i] where `bernoulli16` is True, else 0 (e.g. dropout's
        multipliers, value = 1 / keep). Made in one pass by the compiled generator."""
        m = self._mask(mask)
        value = value.to(device=self.device, dtype=torch.float32)
        if self._compiled is None:
            kept = self._halves(n, m) < self._limit16(keep, m)[:, None]
            return torch.where(kept, value[:, None], 0.0)
        n_blocks = self._half_blocks(n)
        limit = self._limit16(keep, m).to(torch.int32)
        out = self._compiled(
            self.counter, self.key, n_blocks, self.stream, PHILOX_ROUNDS, pick=(limit, value)
        )
        self._advance(n_blocks, m)
        return out[:, :n]

    def _limit16(self, keep: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        # u < x <=> u < ceil(x) for an integer u: the halves are compared as integers
        limit = torch.ceil(keep.to(device=self.device, dtype=torch.float32) * 65536.0)
        if mask is not None:
            limit = torch.where(mask, limit, 65536.0)
        return limit.to(torch.int64)

    def randn(self, *shape: int, mask: Mask = None) -> torch.Tensor:
        """Standard normal floats (Box-Muller on pairs of words, see `normals`)."""
        n = math.prod(shape)
        m = self._mask(mask)
        z = self.normals(self._words(n + (n & 1), m))[:, :n]
        if m is not None:
            z = torch.where(m[:, None], z, 0.0)
        return z.reshape(self.size, *shape)

    @staticmethod
    def uniforms(words: torch.Tensor) -> torch.Tensor:
        """Words -> uniform float32 in [0, 1) (their top 24 bits, as torch.rand's float32)."""
        return (words >> 8).to(torch.float32) * 2.0**-24

    @staticmethod
    def normals(words: torch.Tensor) -> torch.Tensor:
        """(P, 2m) words -> (P, 2m) standard normals by Box-Muller: words 2j and 2j+1 give
        normals 2j and 2j+1; the 24-bit uniforms cut the tails at sqrt(2 ln 2**24) = 5.77."""
        p = words.shape[0]
        w = words.reshape(p, -1, 2)
        u1 = ((w[..., 0] >> 8) + 1).to(torch.float32) * 2.0**-24  # (0, 1]: log is finite
        u2 = (w[..., 1] >> 8).to(torch.float32) * (2.0**-24 * 2.0 * math.pi)
        r = torch.sqrt(-2.0 * torch.log(u1))
        return torch.stack([r * torch.cos(u2), r * torch.sin(u2)], dim=-1).view(p, -1)

    def _highs(self, highs: Sequence[int] | torch.Tensor) -> torch.Tensor:
        if not isinstance(highs, torch.Tensor) and any(not 0 <= int(x) <= 2**31 for x in highs):
            raise ValueError(f"bounds must lie in [0, 2**31], got {list(highs)}")
        h = torch.as_tensor(highs, dtype=torch.int64, device=self.device).view(-1)
        if h.shape[0] != self.size:
            raise ValueError(f"need one bound per member: {h.shape[0]} for {self.size}")
        return h

    @staticmethod
    def below(words: torch.Tensor, highs: torch.Tensor | int) -> torch.Tensor:
        """Words -> integers in [0, highs) (highs broadcasts against words; <= 2**31)."""
        # Multiply-shift (Lemire 2019): floor(w * h / 2**32), in [0, h); the bias is below
        # h / 2**32 per value (< 1.4e-5 for h = 60,000). h <= 2**31 keeps w * h in int64.
        return (words * highs) >> 32

    def randint(self, highs: Sequence[int] | torch.Tensor, *shape: int) -> torch.Tensor:
        """Integers in [0, highs[i]) for member i; highs: P ints (list or tensor), <= 2**31."""
        h = self._highs(highs)
        w = self._words(math.prod(shape), None)
        return self.below(w, h[:, None]).view(self.size, *shape)

    def randint_ragged(
        self, high: int, counts: Sequence[int] | torch.Tensor, width: int
    ) -> torch.Tensor:
        """Member i draws counts[i] integers in [0, high), padded with zeros to `width`."""
        c = self._highs(counts)
        return self.below(self._ragged_words(c, width), int(high))

    def randperm(self, n: int) -> torch.Tensor:
        """(P, n) permutations: the stable argsort of 63-bit random keys (two words each)."""
        w = self._words(2 * int(n), None).view(self.size, n, 2)
        keys = ((w[..., 0] >> 1) << 32) | w[..., 1]
        return torch.argsort(keys, dim=1, stable=True)

    def get_state(self) -> dict[str, torch.Tensor | int]:
        """Every member's key and counter (copies), and the stream."""
        return {"key": self.key.clone(), "counter": self.counter.clone(), "stream": self.stream}

    def set_state(self, state: dict[str, torch.Tensor | int]) -> None:
        if not isinstance(state, dict) or not {"key", "counter", "stream"} <= set(state):
            raise ValueError(
                "random-stream state is not a MemberRNG state (a checkpoint written before "
                "the counter-based generator?): re-run from the start to resume"
            )
        key = torch.as_tensor(state["key"], dtype=torch.int64)
        if tuple(key.shape) != tuple(self.key.shape):
            raise ValueError(f"state holds {key.shape[0]} members, this generator {self.size}")
        self.key.copy_(key)
        self.counter.copy_(torch.as_tensor(state["counter"], dtype=torch.int64))
        self.stream = int(state["stream"])
        self._refresh_keys()

    def adopt(self, index: int, other: MemberRNG, source: int = 0) -> None:
        """Member `index` continues `other`'s member `source` stream from its current state."""
        if other.stream != self.stream:
            raise ValueError(f"stream {other.stream} cannot be adopted into stream {self.stream}")
        self.key[index] = other.key[source]
        self.counter[index] = other.counter[source]
        self._refresh_keys()


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

    def _dropout_multipliers(
        self,
        batch: int,
        dropout: torch.Tensor | None,
        dropout_on: Sequence[bool] | None,
        rng: MemberRNG | None,
        members: torch.Tensor | None = None,
    ) -> list[torch.Tensor] | None:
        """Every hidden layer's (P, batch, width) dropout multipliers (0 or 1 / keep), drawn
        in one call: 16-bit uniforms u, an element kept when u < keep * 2**16 (the rate is
        honoured to within 2**-16). None when no member uses dropout."""
        if dropout is None or rng is None:
            return None
        on = list(dropout_on) if dropout_on is not None else (dropout > 0).tolist()
        if not any(on):
            return None
        widths = self.sizes[1:-1]
        keep = 1.0 - dropout
        mask = dropout > 0 if members is None else (dropout > 0) & members
        scale = torch.where(keep > 0, 1.0 / keep.clamp_min(1e-12), 0.0)
        if members is not None:  # a frozen slot's multipliers are 1 (its draws all kept)
            scale = torch.where(members, scale, 1.0)
        drop = rng.scaled_bernoulli16(batch * sum(widths), keep, scale, mask=mask)
        parts = drop.split([batch * w for w in widths], dim=1)
        return [part.view(-1, batch, w) for part, w in zip(parts, widths)]

    def forward(
        self,
        x: torch.Tensor,
        *,
        dropout: torch.Tensor | None = None,
        dropout_on: Sequence[bool] | None = None,
        rng: MemberRNG | None = None,
        cond: torch.Tensor | None = None,
        members: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: (P, B, in). dropout: (P,) rates, applied when given with an rng (training).

        `dropout_on[i]` says whether member i's rate is above 0 (kept on the host by the
        caller, so deciding which members draw dropout masks never waits for the device).
        `members`: (P,) bool, the members for which this pass exists (others draw nothing
        and get no dropout; their outputs must be discarded by the caller).
        """
        drops = self._dropout_multipliers(x.shape[1], dropout, dropout_on, rng, members)
        last = len(self.weights) - 1
        h = x
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = member_matmul(h, w, b)
            if i == 0 and self.cond is not None and cond is not None:
                h = h + member_matmul(cond, self.cond)
            if i == last:
                break
            h = torch.nn.functional.leaky_relu(h, 0.2)
            if drops is not None:
                # A member without dropout has multiplier exactly 1.0, so h * drop leaves it
                # (and its gradient) bit-identical.
                h = h * drops[i]
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

"""Philox-4x32 blocks for CPU tensors in compiled C: one pass instead of ~85 tensor operators.

`nets.MemberRNG` draws its counter-based random numbers as Philox-4x32-10 blocks. Written in
tensor operators, one evaluation reads and writes every word about 70 times and dispatches
about 85 operators; on a CPU that made the engine slower than torch's own generator (issue
12). This module compiles the same function in C with the system's C compiler (`cc`, about
0.1 s, once per machine: the library is kept in the user cache under a name hashed from the
source and the compiler flags) and calls it through ctypes, which releases the GIL while it
runs. It gives the same words as the tensor operators, bit for bit (integer arithmetic;
`tests/test_rng.py` checks both against Random123's known answers and against each other).

Where no C compiler works, or with MIXBENCH_PHILOX=tensor, `blocks_function` returns None and
the tensor operators are used: the numbers are the same, only slower.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from benchmark.data import cache_dir

__all__ = [
    "IMPLEMENTATION_ENV",
    "SOURCE",
    "blocks_function",
    "calls",
    "implementation",
    "tensor_operators",
]

log = logging.getLogger(__name__)

IMPLEMENTATION_ENV = "MIXBENCH_PHILOX"
"""'tensor' forces the tensor-operator Philox; unset or 'native' uses the compiled one."""

SOURCE = r"""
#include <pthread.h>
#include <stdint.h>

#define LANES 16

typedef struct {
  const int64_t *counter, *key;
  int64_t n_blocks, start, end;
  uint64_t stream;
  void *out;
  int rounds, mode;
  const int32_t *limit;
  const float *value;
} job_t;

/* Blocks start..end-1 of the flat (member, block) range. Word w of block j of member i is
   word w of Philox-4x32-rounds(counter (counter[i] + j, stream), key (key[i, 0], key[i, 1]));
   mode 0: out[i, 4j + w] = the word (int64);
   mode 1: out[i, 8j + 2w] = its low 16 bits, out[i, 8j + 2w + 1] its high 16 bits (int32);
   mode 2: those 16-bit halves h become out = (h < limit[i] ? value[i] : 0) (float). */
static void *run(void *arg) {
  const job_t *job = (const job_t *)arg;
  const uint32_t s0 = (uint32_t)job->stream, s1 = (uint32_t)(job->stream >> 32);
  int64_t flat = job->start;
  while (flat < job->end) {
    const int64_t i = flat / job->n_blocks, first = flat % job->n_blocks;
    int64_t stop = job->n_blocks;
    if (stop - first > job->end - flat) stop = first + (job->end - flat);
    const uint32_t k0 = (uint32_t)job->key[2 * i], k1 = (uint32_t)job->key[2 * i + 1];
    const uint64_t c = (uint64_t)job->counter[i];
    int64_t *words = (int64_t *)job->out + i * 4 * job->n_blocks;
    int32_t *halves = (int32_t *)job->out + i * 8 * job->n_blocks;
    float *picked = (float *)job->out + i * 8 * job->n_blocks;
    const int32_t below = job->mode == 2 ? job->limit[i] : 0;
    const float value = job->mode == 2 ? job->value[i] : 0.0f;
    for (int64_t j0 = first; j0 < stop; j0 += LANES) {
      uint32_t x[4][LANES];
      for (int l = 0; l < LANES; l++) {
        const uint64_t cj = c + (uint64_t)(j0 + l);
        x[0][l] = (uint32_t)cj; x[1][l] = (uint32_t)(cj >> 32); x[2][l] = s0; x[3][l] = s1;
      }
      uint32_t a0 = k0, a1 = k1;
      for (int r = 0; r < job->rounds; r++) {
        for (int l = 0; l < LANES; l++) {
          const uint64_t p0 = (uint64_t)0xD2511F53u * x[0][l];
          const uint64_t p1 = (uint64_t)0xCD9E8D57u * x[2][l];
          const uint32_t y0 = (uint32_t)(p1 >> 32) ^ x[1][l] ^ a0;
          const uint32_t y2 = (uint32_t)(p0 >> 32) ^ x[3][l] ^ a1;
          x[1][l] = (uint32_t)p1; x[3][l] = (uint32_t)p0; x[0][l] = y0; x[2][l] = y2;
        }
        a0 += 0x9E3779B9u; a1 += 0xBB67AE85u;
      }
      const int64_t m = stop - j0 < LANES ? stop - j0 : LANES;
      if (job->mode == 0) {
        for (int64_t l = 0; l < m; l++)
          for (int w = 0; w < 4; w++) words[4 * (j0 + l) + w] = x[w][l];
      } else if (job->mode == 1) {
        for (int64_t l = 0; l < m; l++)
          for (int w = 0; w < 4; w++) {
            halves[8 * (j0 + l) + 2 * w] = (int32_t)(x[w][l] & 0xFFFF);
            halves[8 * (j0 + l) + 2 * w + 1] = (int32_t)(x[w][l] >> 16);
          }
      } else {
        for (int64_t l = 0; l < m; l++)
          for (int w = 0; w < 4; w++) {
            picked[8 * (j0 + l) + 2 * w] = (int32_t)(x[w][l] & 0xFFFF) < below ? value : 0.0f;
            picked[8 * (j0 + l) + 2 * w + 1] = (int32_t)(x[w][l] >> 16) < below ? value : 0.0f;
          }
      }
    }
    flat += stop - first;
  }
  return 0;
}

/* Split over up to `threads` threads (the calling one included) when the work is large
   enough to pay for starting them; a thread that cannot start leaves its share to this one. */
void philox_blocks(const int64_t *counter, const int64_t *key, int64_t members,
                   int64_t n_blocks, uint64_t stream, void *out, int rounds, int mode,
                   const int32_t *limit, const float *value, int threads) {
  enum { MAX_THREADS = 64, MIN_BLOCKS_PER_THREAD = 8192 };
  const int64_t total = members * n_blocks;
  if (total <= 0) return;
  int64_t t = total / MIN_BLOCKS_PER_THREAD;
  if (t > threads) t = threads;
  if (t > MAX_THREADS) t = MAX_THREADS;
  if (t < 1) t = 1;
  job_t jobs[MAX_THREADS];
  pthread_t ids[MAX_THREADS];
  int started[MAX_THREADS] = {0};
  for (int64_t k = 0; k < t; k++) {
    job_t job = {counter, key, n_blocks, total * k / t, total * (k + 1) / t,
                 stream, out, rounds, mode, limit, value};
    jobs[k] = job;
  }
  for (int64_t k = 1; k < t; k++) started[k] = pthread_create(&ids[k], 0, run, &jobs[k]) == 0;
  run(&jobs[0]);
  for (int64_t k = 1; k < t; k++) {
    if (started[k]) pthread_join(ids[k], 0);
    else run(&jobs[k]);
  }
}
"""

_FLAGS = ("-O3", "-shared", "-fPIC", "-pthread")
_CALLS = [0]
_OFF = [0]


@contextlib.contextmanager
def tensor_operators() -> Iterator[None]:
    """Generators made inside this block use the tensor-operator Philox (e.g. to count the
    operators a GPU would launch)."""
    _OFF[0] += 1
    try:
        yield
    finally:
        _OFF[0] -= 1


def calls() -> int:
    """Compiled Philox calls made in this process so far (each is one pass, like one kernel:
    `benchmark.perf --count-ops` counts them beside the ATen operators)."""
    return _CALLS[0]


BlocksFunction = Callable[..., torch.Tensor]
"""(counter, key, n_blocks, stream, rounds, halves=False, pick=None) -> words: see
`blocks_function`."""


def _library_path() -> Path:
    digest = hashlib.sha256((SOURCE + " ".join(_FLAGS)).encode()).hexdigest()[:16]
    return cache_dir() / "native" / f"philox-{digest}.so"


def _build(target: Path) -> None:
    """Compile SOURCE to `target` (atomically: a temporary name, then a rename)."""
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if compiler is None:
        raise OSError("no C compiler (cc or gcc) on PATH")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        src = Path(tmp) / "philox.c"
        src.write_text(SOURCE)
        built = Path(tmp) / target.name
        done = subprocess.run(
            [compiler, *_FLAGS, "-o", str(built), str(src)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise OSError(f"{compiler} failed: {done.stderr.strip()[:500]}")
        os.replace(built, target)


@functools.lru_cache(maxsize=1)
def _load() -> ctypes.CDLL | None:
    choice = os.environ.get(IMPLEMENTATION_ENV, "").strip().lower() or "native"
    if choice not in ("native", "tensor"):
        raise ValueError(
            f"{IMPLEMENTATION_ENV}={os.environ[IMPLEMENTATION_ENV]!r} is not 'native' or "
            "'tensor': unset it (the compiled Philox where a C compiler works) or set it to "
            "'tensor' (the tensor operators); both give the same numbers"
        )
    if choice == "tensor":
        return None
    target = _library_path()
    try:
        if not target.exists():
            _build(target)
        lib = ctypes.CDLL(str(target))
    except (OSError, subprocess.SubprocessError) as exc:
        log.info("compiled Philox unavailable (%s); using tensor operators", exc)
        return None
    fn = lib.philox_blocks
    fn.argtypes = [
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_uint64,
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_int,
    ]
    fn.restype = None
    return lib


def blocks_function() -> BlocksFunction | None:
    """fn(counter, key, n_blocks, stream, rounds, halves=False, pick=None) -> the
    Philox-4x32-`rounds` words of each member's next n_blocks blocks (counter (P,) int64,
    key (P, 2) int64 of uint32 words, CPU tensors); None when no compiled library is
    available. The result is (P, 4 * n_blocks) int64 words; with halves, (P, 8 * n_blocks)
    int32, each word's low then high 16 bits; with pick = (limit (P,) int32, value (P,)
    float32), (P, 8 * n_blocks) float32: value[i] where member i's half is below limit[i],
    else 0."""
    lib = None if _OFF[0] else _load()
    if lib is None:
        return None
    fn = lib.philox_blocks

    def blocks(
        counter: torch.Tensor,
        key: torch.Tensor,
        n_blocks: int,
        stream: int,
        rounds: int,
        halves: bool = False,
        pick: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        p = counter.shape[0]
        # a wrong shape, dtype or device here would read or write out of bounds
        cpu = [t.device.type == "cpu" for t in (counter, key, *(pick or ()))]
        if not (
            all(cpu)
            and counter.dtype == key.dtype == torch.int64
            and tuple(counter.shape) == (p,)
            and tuple(key.shape) == (p, 2)
            and (
                pick is None
                or (
                    pick[0].dtype == torch.int32
                    and pick[1].dtype == torch.float32
                    and tuple(pick[0].shape) == tuple(pick[1].shape) == (p,)
                )
            )
        ):
            raise ValueError(
                "philox blocks need counter (P,) and key (P, 2) int64 CPU tensors, and "
                "pick = (limit (P,) int32, value (P,) float32)"
            )
        keep = [counter.contiguous(), key.contiguous()]
        limit = value = None
        if pick is not None:
            mode, out = 2, torch.empty(p, 8 * n_blocks, dtype=torch.float32)
            limit, value = pick[0].contiguous(), pick[1].contiguous()
        elif halves:
            mode, out = 1, torch.empty(p, 8 * n_blocks, dtype=torch.int32)
        else:
            mode, out = 0, torch.empty(p, 4 * n_blocks, dtype=torch.int64)
        _CALLS[0] += 1
        fn(
            keep[0].data_ptr(),
            keep[1].data_ptr(),
            p,
            n_blocks,
            stream & ((1 << 64) - 1),
            out.data_ptr(),
            rounds,
            mode,
            None if limit is None else limit.data_ptr(),
            None if value is None else value.data_ptr(),
            torch.get_num_threads(),
        )
        return out

    return blocks


def implementation(device: torch.device | str) -> str:
    """Which Philox draws on `device`: 'compiled C' or 'tensor operators'."""
    cpu = torch.device(device).type == "cpu"
    return "compiled C" if cpu and blocks_function() is not None else "tensor operators"

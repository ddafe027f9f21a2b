"""A/B of whole engines: several MixBench checkouts' realmix populations, each in its own
subprocess (the `benchmark.perf --baseline-engine` server, held stopped while the others
run), timed in alternating rounds. Only ratios within one run compare (the host's speed
drifts between runs).

    python scripts/engine_ab.py /path/to/old,/path/to/new,/path/to/new@tensor --population 1

A checkout followed by @tensor runs with MIXBENCH_PHILOX=tensor (the tensor-operator Philox).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark.perf.contenders import baseline_contender  # noqa: E402
from benchmark.perf.settings import PerfSettings  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkouts", help="comma-separated checkout folders (the first is the 1.0x)")
    p.add_argument("--population", type=int, default=1)
    p.add_argument("--rounds", type=int, default=16)
    p.add_argument("--steps", type=int, default=24, help="steps per round")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data-dir", default="../shared/data")
    args = p.parse_args()
    contenders = []
    for spec in args.checkouts.split(","):
        root, _, mode = spec.partition("@")
        if mode:
            os.environ["MIXBENCH_PHILOX"] = mode
        else:
            os.environ.pop("MIXBENCH_PHILOX", None)
        settings = PerfSettings(data_dir=args.data_dir, baseline_engine=root)
        c = baseline_contender(
            settings, None, args.population, args.steps, args.threads, torch.device("cpu")
        )
        c.name = spec
        contenders.append(c)
    pool = ThreadPoolExecutor(1)
    for c in contenders:
        c.run_round(pool)  # warm-up
    times: dict[str, list[float]] = {c.name: [] for c in contenders}
    for k in range(args.rounds):
        shift = k % len(contenders)
        for c in contenders[shift:] + contenders[:shift]:
            start = time.perf_counter()
            c.run_round(pool)
            times[c.name].append(time.perf_counter() - start)
    for c in contenders:
        c.close()
    work = args.steps * args.population
    first = times[contenders[0].name]
    base = work * len(first) / sum(first)
    for name, ts in times.items():
        rate = work * len(ts) / sum(ts)
        paired = statistics.median([a / b for a, b in zip(first, ts)])
        print(
            f"{name:45s} {rate:6.2f} it/s  ratio {rate / base:.3f}  per-round median {paired:.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

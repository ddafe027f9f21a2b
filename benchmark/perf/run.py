"""The measurement of `python -m benchmark.perf`: contenders timed round by round, then rated.

`run_perf` prepares the data and the contenders, times them interleaved (`_time_rounds`),
times one scoring pass, and turns the seconds into the report's rows and notes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch

from benchmark import native
from benchmark.data import Dataset, load_dataset
from benchmark.perf.contenders import (
    THIS_CHECKOUT,
    Contender,
    baseline_contender,
    mixbench_contender,
    naive_contender,
    train_chunk,
)
from benchmark.perf.cost import IterationCost, Peak, iteration_cost, measure_peak, sync
from benchmark.perf.machine import cpu_name, load_average, usable_cpus
from benchmark.perf.settings import PerfSettings
from benchmark.perf.tables import PerfReport, Row
from benchmark.runner import resolve_device, score_members
from benchmark.settings import SettingsError
from benchmark.trainables import build, params_class

__all__ = ["device_info", "run_perf", "time_scoring"]


def device_info(device: torch.device) -> dict[str, Any]:
    """The device a measurement ran on: GPU name, memory and matmul precision, or the CPU's."""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return {
            "type": "cuda",
            "name": props.name,
            "memory_gib": round(props.total_memory / 2**30, 1),
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "cuda": torch.version.cuda,
        }
    return {
        "type": "cpu",
        "name": cpu_name(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "mkl": bool(torch.backends.mkl.is_available()),
        "philox": native.implementation(device),
    }


def time_scoring(settings: PerfSettings, data: Dataset, device: torch.device) -> dict[str, float]:
    """Seconds of one scoring pass of one trial (MixBench's `score_members`, P=1).

    'sliced_s': the per-epoch pass (samples of every sampling mode, sliced W2, pixel W1);
    'exact_s': the final pass, which adds the exact W1 (POT emd2) at n_eval per side.
    """
    trainable = build(
        settings.trainable,
        [params_class(settings.trainable)()],
        train_chunk(data, 1, settings.batch_size),
        seeds=[settings.seed],
        device=device,
        batch_size=settings.batch_size,
    )
    result = trainable.train_epoch()
    score_members(trainable, data, result, n_eval=min(settings.n_eval, 50), exact=True)  # warm
    sync(device)
    start = time.perf_counter()
    score_members(trainable, data, result, n_eval=settings.n_eval, exact=False)
    sliced = time.perf_counter() - start
    start = time.perf_counter()
    score_members(trainable, data, result, n_eval=settings.n_eval, exact=True)
    exact = time.perf_counter() - start
    return {"sliced_s": sliced, "exact_s": exact}


@dataclass(frozen=True)
class _Setup:
    """The device, threads and data of one run, and how many steps a round times."""

    device: torch.device
    threads: int
    workers: int
    data: Dataset
    train_steps: int
    """Whole batches in the loaded training split."""
    epoch_size: int
    steps_per_epoch: int
    per_round: int
    """Member-iterations per contender per round."""
    load_start: list[float]

    def steps_for(self, population: int, batch_size: int) -> int:
        """Steps per round of a population of `population` (per_round member-iterations)."""
        steps = max(1, round(self.per_round / population))
        if steps > self.train_steps:
            raise SettingsError(
                f"{steps} steps per round need {steps * batch_size} training samples "
                f"but {self.data.name} holds {int(self.data.train.shape[0])}; lower --steps or "
                "raise --rounds"
            )
        return steps


def _total_steps(settings: PerfSettings, train_steps: int) -> int:
    if settings.epochs is not None:
        return max(1, round(settings.epochs * train_steps))
    return settings.steps


def _setup(settings: PerfSettings) -> _Setup:
    """Resolve the device and the workers, set torch's threads, load the data."""
    device = resolve_device(settings.device)
    threads = settings.threads or usable_cpus()
    workers = settings.workers
    if workers is None:
        workers = 2 if device.type == "cpu" and threads >= 2 else 1
    if threads % workers:
        raise SettingsError(
            f"--workers {workers} must divide --threads {threads} (each worker gets "
            f"threads/workers torch threads)"
        )
    torch.set_num_threads(threads)
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32 matmuls, for every contender
    load_start = load_average()

    data = load_dataset(
        settings.dataset, data_dir=settings.data_dir, device=device, batch_size=settings.batch_size
    )
    train_samples = int(data.train.shape[0])
    train_steps = train_samples // settings.batch_size
    epoch_size = settings.epoch_size or train_samples
    steps_per_epoch = epoch_size // settings.batch_size
    per_round = max(1, math.ceil(_total_steps(settings, train_steps) / settings.rounds))
    return _Setup(
        device, threads, workers, data, train_steps, epoch_size, steps_per_epoch, per_round,
        load_start,
    )  # fmt: skip


def _contenders(settings: PerfSettings, run: _Setup) -> list[Contender]:
    """Every contender, in the table's order: the naive loop first (the ratios' baseline)."""
    data, device, threads, workers = run.data, run.device, run.threads, run.workers

    def steps_for(population: int) -> int:
        return run.steps_for(population, settings.batch_size)

    contenders = [naive_contender(settings, data, 1, steps_for(1), threads, device)]
    if workers > 1:
        contenders.append(
            naive_contender(
                settings, data, workers, steps_for(workers), threads // workers, device
            )
        )
    for p in settings.populations:
        contenders.append(mixbench_contender(settings, data, p, 1, steps_for(p), threads, device))
        if workers > 1 and p >= workers and p % workers == 0:
            contenders.append(
                mixbench_contender(
                    settings, data, p, workers, steps_for(p), threads // workers, device
                )
            )

    if settings.baseline_engine is not None:
        # both engines of the comparison in a subprocess each, driven the same way
        for p in settings.populations:
            for checkout in (THIS_CHECKOUT, None):
                contenders.append(
                    baseline_contender(
                        settings, data, p, steps_for(p), threads, device, checkout=checkout
                    )
                )
    return contenders


def _time_rounds(
    settings: PerfSettings,
    run: _Setup,
    contenders: Sequence[Contender],
    log: Callable[[str], None],
) -> Peak:
    """Run the rounds, each contender once per round in rotating order, recording the timed
    rounds' seconds on the contenders; returns the best device peak seen between rounds."""
    device, threads = run.device, run.threads
    total_rounds = settings.warmup + settings.rounds
    peak: Peak | None = None
    with ThreadPoolExecutor(max_workers=run.workers) as pool:
        for r in range(total_rounds):
            shift = r % len(contenders)
            for c in [*contenders[shift:], *contenders[:shift]]:
                sync(device)
                start = time.perf_counter()
                c.run_round(pool)
                sync(device)
                seconds = time.perf_counter() - start
                if r >= settings.warmup:
                    c.seconds.append(seconds)
            # The peaks are measured between rounds too and the best kept, so that a burst of
            # load from other processes does not pass for the device's peak.
            torch.set_num_threads(threads)
            round_peak = measure_peak(device, repeats=3)
            peak = round_peak if peak is None else peak.best(round_peak)
            tag = "warm-up" if r < settings.warmup else "timed"
            log(f"  round {r + 1}/{total_rounds} ({tag}) done")
    torch.set_num_threads(threads)
    assert peak is not None
    return peak


def _one(values: set[int], name: str) -> int:
    if len(values) != 1:
        raise RuntimeError(f"{name}: workers ran with differing torch thread counts {values}")
    return values.pop()


def _rows(
    settings: PerfSettings,
    run: _Setup,
    contenders: Sequence[Contender],
    scoring_s: float,
    cost: IterationCost,
    peak: Peak,
) -> list[Row]:
    """One row per contender: its rates, the extrapolation and the ratios to the first row."""
    rows: list[Row] = []
    for c in contenders:
        iters = c.member_iterations_per_round * len(c.seconds)
        rate = iters / sum(c.seconds)
        per_epoch = run.steps_per_epoch / rate
        train_s = settings.target_epochs * per_epoch
        rows.append(
            Row(
                contender=c.name,
                population=c.population,
                workers=c.workers,
                torch_threads=_one(c.threads_seen, c.name),
                member_iterations=iters,
                iters_per_s=rate,
                iters_per_s_rounds=[c.member_iterations_per_round / s for s in c.seconds],
                s_per_epoch_per_trial=per_epoch,
                trials_per_hour_train=3600 / train_s,
                trials_per_hour=3600 / (train_s + scoring_s),
                train_ratio=1.0,
                ratio=1.0,
                gflops=rate * cost.flop / 1e9,
                roofline_fraction=rate * cost.flop / peak.roofline(cost.intensity),
                scoring_share=scoring_s / (train_s + scoring_s),
            )
        )
    naive = rows[0]
    for row in rows[1:]:
        row.train_ratio = row.trials_per_hour_train / naive.trials_per_hour_train
        row.ratio = row.trials_per_hour / naive.trials_per_hour
    return rows


def _baseline_ratio(settings: PerfSettings, rows: Sequence[Row]) -> dict[str, float]:
    """P -> this engine's member-iterations per second / the --baseline-engine's, both in
    their subprocesses."""
    by_name = {row.contender: row for row in rows}
    return {
        str(p): by_name[f"this engine (subprocess) P={p}"].iters_per_s
        / by_name[f"previous engine P={p}"].iters_per_s
        for p in settings.populations
        if f"previous engine P={p}" in by_name
    }


def _notes(
    settings: PerfSettings,
    run: _Setup,
    scoring: dict[str, float],
    cost: IterationCost,
    baseline: dict[str, float],
) -> list[str]:
    """How each number of the table was obtained, in words."""
    notes = [
        f"Trials per hour are EXTRAPOLATED to {settings.target_epochs} epochs of "
        f"{run.epoch_size} samples ({run.steps_per_epoch} steps of {settings.batch_size}) from "
        "the measured member-iterations per second; nothing ran for that long.",
        f"Scoring per trial at that budget: {settings.target_epochs - 1} sliced passes "
        f"({scoring['sliced_s']:.3f} s each) + 1 pass with the exact W1 "
        f"({scoring['exact_s']:.3f} s), measured once with MixBench's score_members at "
        f"n_eval={settings.n_eval} and charged equally to every contender.",
        f"Contenders ran interleaved in {settings.rounds} timed rounds (after {settings.warmup}"
        " warm-up) in rotating order, in one process; rates are total member-iterations / "
        "total seconds; the median and range of the per-round rates show the noise.",
        "x naive: trials per hour relative to the first row (one naive trial using every torch "
        "thread). Rows with workers run that many trials or populations at once on Python "
        "threads with threads/workers torch threads each, as separate worker processes would; "
        "'naive (W workers)' is W naive scripts at once, for reference.",
        f"Roofline: achieved FLOP/s / min(peak, intensity x bandwidth); {cost.note}.",
    ]
    if baseline:
        ratios = ", ".join(f"P={p}: {r:.2f}x" for p, r in baseline.items())
        notes.append(
            f"This engine vs the previous engine at {settings.baseline_engine} (member-"
            f"iterations per second, same run, same rounds): {ratios}. Both engines ran in a "
            "subprocess per population ('this engine (subprocess)' and 'previous engine' "
            "rows), driven round by round from this process and held stopped while the "
            "others were timed."
        )
    return notes


def run_perf(settings: PerfSettings, *, log: Callable[[str], None] = print) -> PerfReport:
    """Measure every contender as described in `benchmark.perf`; nothing is written."""
    run = _setup(settings)
    data, device = run.data, run.device
    log(
        f"{settings.trainable} on {data.name} ({device}, {run.threads} torch threads); "
        f"{run.per_round} member-iterations per contender per round"
    )
    contenders = _contenders(settings, run)
    peak = _time_rounds(settings, run, contenders, log)

    log("  timing one scoring pass")
    scoring = time_scoring(settings, data, device)
    scoring_s = (settings.target_epochs - 1) * scoring["sliced_s"] + scoring["exact_s"]
    cost = iteration_cost(
        settings.trainable, params_class(settings.trainable)(), data.dim, settings.batch_size
    )
    load_end = load_average()
    rows = _rows(settings, run, contenders, scoring_s, cost, peak)
    for c in contenders:
        c.close()
    baseline = _baseline_ratio(settings, rows)
    return PerfReport(
        settings=dataclasses.asdict(settings),
        device=device_info(device),
        torch_version=torch.__version__,
        python_version=platform.python_version(),
        threads=run.threads,
        interop_threads=torch.get_num_interop_threads(),
        date=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        load_average={"start": run.load_start, "end": load_end},
        dataset_note=data.split_note,
        train_samples=int(data.train.shape[0]),
        epoch_size=run.epoch_size,
        steps_per_epoch=run.steps_per_epoch,
        cost={"flop": cost.flop, "bytes": cost.bytes, "intensity": cost.intensity},
        peak={"flops": peak.flops, "bandwidth": peak.bandwidth, "how": peak.how},
        scoring={**scoring, "per_trial_s": scoring_s},
        rows=rows,
        notes=_notes(settings, run, scoring, cost, baseline),
        baseline_ratio=baseline,
    )

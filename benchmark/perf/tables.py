"""The perf report: one row per contender and the Markdown document."""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmark.perf.machine import slug

__all__ = ["PerfReport", "Row", "render_markdown", "render_table"]


@dataclass
class Row:
    """One contender's line of the table (every rate per trial = per population member)."""

    contender: str
    population: int
    workers: int
    torch_threads: int
    """torch threads per worker, as the workers saw them while running."""
    member_iterations: int
    iters_per_s: float
    """Member-iterations per second (a population of P counts P per step)."""
    iters_per_s_rounds: list[float]
    s_per_epoch_per_trial: float
    trials_per_hour_train: float
    """Trials per hour at the epoch budget, training only (extrapolated)."""
    trials_per_hour: float
    """Trials per hour at the epoch budget, training plus scoring (extrapolated)."""
    train_ratio: float
    ratio: float
    """trials_per_hour / the naive baseline's."""
    gflops: float
    roofline_fraction: float
    scoring_share: float
    """Scoring's share of one trial's time at the epoch budget."""


@dataclass
class PerfReport:
    """Everything one `python -m benchmark.perf` run measured, with the conditions."""

    settings: dict[str, Any]
    device: dict[str, Any]
    torch_version: str
    python_version: str
    threads: int
    """torch.set_num_threads of the process (contenders with workers use threads/workers)."""
    interop_threads: int
    date: str
    load_average: dict[str, list[float]]
    dataset_note: str
    train_samples: int
    epoch_size: int
    steps_per_epoch: int
    cost: dict[str, Any]
    peak: dict[str, Any]
    scoring: dict[str, Any]
    rows: list[Row]
    notes: list[str]
    baseline_ratio: dict[str, float] = field(default_factory=dict)
    """P -> this engine's member-iterations per second / the --baseline-engine's."""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def stem(self) -> str:
        """The report files' name without suffix: perf-<device>."""
        return f"perf-{slug(self.device['name'])}"


def _spread(row: Row) -> str:
    rates = row.iters_per_s_rounds
    return f"{statistics.median(rates):.2f} ({min(rates):.2f}-{max(rates):.2f})"


def _threads_cell(row: Row) -> str:
    return f"{row.workers}x{row.torch_threads}" if row.workers > 1 else str(row.torch_threads)


_COLUMNS: tuple[tuple[str, Callable[[Row], str]], ...] = (
    ("contender", lambda r: r.contender),
    ("P", lambda r: str(r.population)),
    ("threads", _threads_cell),
    ("timed it", lambda r: str(r.member_iterations)),
    ("it/s", lambda r: f"{r.iters_per_s:.2f}"),
    ("median (min-max) by round", _spread),
    ("s/epoch/trial", lambda r: f"{r.s_per_epoch_per_trial:.2f}"),
    ("trials/h (train)", lambda r: f"{r.trials_per_hour_train:.3g}"),
    ("trials/h (+scoring)", lambda r: f"{r.trials_per_hour:.3g}"),
    ("x naive (train)", lambda r: f"{r.train_ratio:.2f}"),
    ("x naive (+scoring)", lambda r: f"{r.ratio:.2f}"),
    ("GFLOP/s", lambda r: f"{r.gflops:.1f}"),
    ("roofline", lambda r: f"{100 * r.roofline_fraction:.1f}%"),
    ("scoring share", lambda r: f"{100 * r.scoring_share:.1f}%"),
)


def render_table(rows: Sequence[Row]) -> str:
    """The contenders as a Markdown table, one line per contender."""
    lines = [
        "| " + " | ".join(title for title, _ in _COLUMNS) + " |",
        "|" + "|".join("---" for _ in _COLUMNS) + "|",
    ]
    lines.extend("| " + " | ".join(fmt(row) for _, fmt in _COLUMNS) + " |" for row in rows)
    return "\n".join(lines)


def render_markdown(report: PerfReport) -> str:
    """The whole report: conditions, the table and how each number was obtained."""
    s, dev = report.settings, report.device
    where = ""
    if dev["type"] == "cpu":
        where = f", {dev['usable_cpus']} usable CPUs"
        if "philox" in dev:
            where += f"; random streams: Philox-4x32-10 in {dev['philox']}"
    lines = [
        f"# MixBench throughput: {s['trainable']} on {dev['name']}",
        "",
        f"- date: {report.date}",
        f"- device: {dev['type']}, {dev['name']}{where}",
        f"- torch {report.torch_version}, Python {report.python_version}; torch threads "
        f"{report.threads} (torch.set_num_threads), inter-op threads {report.interop_threads}",
        f"- load average (1/5/15 min) at start {report.load_average['start']}, at end "
        f"{report.load_average['end']}",
        f"- dataset: {s['dataset']}: {report.dataset_note}",
        f"- batch {s['batch_size']}, default {s['trainable']} params; {report.steps_per_epoch} "
        f"steps per epoch ({report.epoch_size} samples); budget {s['target_epochs']} epochs",
        f"- cost per member-iteration: {report.cost['flop'] / 1e9:.2f} GFLOP, "
        f"{report.cost['bytes'] / 2**20:.0f} MiB, {report.cost['intensity']:.1f} FLOP/byte",
        f"- device peak: {report.peak['flops'] / 1e9:.1f} GFLOP/s, "
        f"{report.peak['bandwidth'] / 1e9:.1f} GB/s ({report.peak['how']})",
        f"- scoring per trial at the budget: {report.scoring['per_trial_s']:.1f} s",
        "",
        render_table(report.rows),
        "",
        *[f"- {note}" for note in report.notes],
        "",
    ]
    return "\n".join(lines)

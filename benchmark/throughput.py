"""python -m benchmark.throughput: a study's trials per hour end to end against the engine's.

One run measures, on the same data, population size P and budget:

- the study: the real ``python -m benchmark.study`` (one in-process worker, journal storage
  and an MLflow SQLite store in a temporary folder, pruner off so every trial trains the full
  budget), timed by its worker's own clock (benchmark.bookkeeping): its loop from the first
  ask to the last artifact written, and the seconds its training thread spent on bookkeeping
  (Optuna, MLflow, artifacts) per trial-epoch;
- the engine alone, right after each study: that study's own trial configurations, P at a
  time, trained and scored as the worker does (`build`, `train_epoch`, `score_members`),
  with no Optuna, MLflow or files.

Rounds of the two alternate (`--rounds`, default 2) and the fastest of each is compared, since
other jobs on the machine slow some rounds. It prints both throughputs, their ratio, the share
of the study's loop spent on engine work, the bookkeeping, and writes
``results/benchmarks/throughput-<device>.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmark.bookkeeping import BOOKKEEPING_FILE_ENV, ENGINE_PARTS
from benchmark.perf.machine import cpu_name, load_average, publish, usable_cpus
from benchmark.settings import Settings

__all__ = [
    "ThroughputReport",
    "build_parser",
    "engine_seconds",
    "main",
    "measure",
    "render_markdown",
]

TARGET_RATIO = 0.9
"""The study's throughput should be at least this share of the engine's."""
TARGET_BOOKKEEPING_MS = 5.0
"""Bookkeeping on the training thread per trial-epoch should stay below this."""


@dataclass
class Round:
    """One study run and one engine run on its trials' configurations, back to back."""

    study_process_seconds: float
    """Wall time of the whole `benchmark.study` process (start-up, data, MLflow store)."""
    study_loop_seconds: float
    """The worker's loop: first ask to last artifact written."""
    engine_seconds: float
    """The engine alone on the same configurations."""
    clock: dict[str, Any]
    """The worker's bookkeeping clock (benchmark.bookkeeping.Clock.summary)."""


@dataclass
class ThroughputReport:
    """Everything one measurement found (written as the JSON file). Rounds alternate study
    and engine; the fastest of each is compared (the least disturbed by other load)."""

    command: list[str]
    device: dict[str, Any]
    load_average_before: list[float]
    load_average_after: list[float]
    trials: int
    population: int
    epochs: int
    rounds: list[Round] = field(default_factory=list)
    failed: str | None = None
    """Why the measurement stopped before its last round (None: every round ran)."""

    @property
    def best_study(self) -> Round:
        return min(self.rounds, key=lambda r: r.study_loop_seconds)

    @property
    def best_engine(self) -> float:
        return min(r.engine_seconds for r in self.rounds)

    def per_hour(self, seconds: float) -> float:
        return 3600.0 * self.trials / seconds if seconds > 0 else float("nan")

    @property
    def ratio(self) -> float:
        """Study throughput (its fastest loop) over the engine's (its fastest run)."""
        return self.best_engine / self.best_study.study_loop_seconds

    @property
    def engine_share(self) -> float:
        """Share of the fastest study loop its worker spent on engine work (build, train,
        score), timed in the same process at the same time: less sensitive to load."""
        clock = self.best_study.clock
        engine = sum(v for k, v in clock["seconds"].items() if k in ENGINE_PARTS)
        return engine / clock["wall_seconds"]

    @property
    def bookkeeping_ms(self) -> float | None:
        return self.best_study.clock.get("bookkeeping_ms_per_trial_epoch")

    @property
    def steady_bookkeeping_seconds(self) -> float:
        """Bookkeeping without the final wait for the writers (`drain writer`): that wait
        happens once per study, so dividing it by the trial-epochs of a short measurement
        inflates it; both are reported."""
        clock = self.best_study.clock
        return clock["bookkeeping_seconds"] - clock["seconds"].get("drain writer", 0.0)

    @property
    def steady_bookkeeping_ms(self) -> float:
        """`steady_bookkeeping_seconds` per trial-epoch, in milliseconds."""
        return (
            1000 * self.steady_bookkeeping_seconds / max(1, self.best_study.clock["trial_epochs"])
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        best = self.best_study
        out.update(
            study_loop_seconds=best.study_loop_seconds,
            engine_seconds=self.best_engine,
            study_trials_per_hour=self.per_hour(best.study_loop_seconds),
            study_process_trials_per_hour=self.per_hour(best.study_process_seconds),
            engine_trials_per_hour=self.per_hour(self.best_engine),
            ratio=self.ratio,
            engine_share_of_study_loop=self.engine_share,
            targets={
                "ratio": TARGET_RATIO,
                "ratio_met": self.ratio >= TARGET_RATIO,
                "bookkeeping_ms_per_trial_epoch": TARGET_BOOKKEEPING_MS,
                "bookkeeping_met": (self.bookkeeping_ms or 0) < TARGET_BOOKKEEPING_MS,
                "steady_bookkeeping_ms_per_trial_epoch": self.steady_bookkeeping_ms,
                "steady_bookkeeping_met": self.steady_bookkeeping_ms < TARGET_BOOKKEEPING_MS,
            },
        )
        return out


def engine_seconds(configs: Sequence[dict[str, Any]], settings: Any, population: int) -> float:
    """Seconds the engine alone takes to train and score `configs` (dicts with 'trainable'
    and 'params'), `population` at a time, every member for `settings.epochs`, scored as the
    worker scores (every scored epoch; exact W1 at the last)."""
    # Imported here, not at the top: torch, the trainables and optuna take seconds to import,
    # and `--help` and the usage errors (exit 2) must not wait for them.
    import torch

    from benchmark.runner import frozen_heap, load_data, resolve_device, score_members
    from benchmark.trainables import build

    device = resolve_device(settings.device)
    data = load_data(settings, device)
    seeds = settings.seed_list()
    groups = [configs[i : i + population] for i in range(0, len(configs), population)]
    # One untimed epoch first: a process's first epoch pays one-off set-up (allocator, kernel
    # selection) several times over an epoch's cost; the study's loop pays it inside its own
    # timing, so this favours the engine.
    warm = build(
        groups[0][0]["trainable"],
        [c["params"] for c in groups[0] for _ in seeds],
        data,
        seeds=[s for _ in groups[0] for s in seeds],
        device=device,
        batch_size=settings.batch_size,
    )
    score_members(warm, data, warm.train_epoch(), n_eval=settings.n_eval, exact=True)
    del warm
    with frozen_heap():  # as the worker trains
        start = time.perf_counter()
        for group in groups:
            trainable = build(
                group[0]["trainable"],
                [c["params"] for c in group for _ in seeds],
                data,
                seeds=[s for _ in group for s in seeds],
                device=device,
                batch_size=settings.batch_size,
            )
            for epoch in range(1, settings.epochs + 1):
                result = trainable.train_epoch()
                if settings.scored(epoch):
                    last = epoch == settings.epochs
                    score_members(
                        trainable,
                        data,
                        result,
                        n_eval=settings.n_eval,
                        exact=last or settings.exact_every_epoch,
                        extra=last and settings.extra_metrics,
                    )
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start


def _device(device: str) -> dict[str, Any]:
    # torch and the runner only once the arguments are checked (see engine_seconds)
    import torch

    from benchmark.runner import resolve_device

    resolved = resolve_device(device)
    if resolved.type == "cuda":
        return {"type": "cuda", "name": torch.cuda.get_device_properties(resolved).name}
    return {"type": "cpu", "name": cpu_name(), "cpus": usable_cpus()}


def device_slug(device: dict[str, Any]) -> str:
    """'amd-epyc' for an 'AMD EPYC 7B13 ...' CPU; the GPU's name for a GPU."""
    words = re.sub(r"[^a-z0-9]+", " ", device["name"].lower()).split()
    words = [w for w in words if w not in ("nvidia", "r", "tm", "processor")]
    return "-".join(words[:2] if device["type"] == "cpu" else words) or device["type"]


def _study_round(
    command: list[str], folder: Path, log: Any
) -> tuple[float, dict[str, Any], list[dict[str, Any]], Any]:
    """Run the study command in `folder`; (process seconds, clock, configs, settings)."""
    # optuna only once the arguments are checked (see engine_seconds)
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    command = [*command, "--storage", str(folder / "optuna.journal")]
    command += ["--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}"]
    env = {**os.environ, BOOKKEEPING_FILE_ENV: str(folder / "clock.jsonl")}
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    start = time.perf_counter()
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"benchmark.study exited {done.returncode}:\n{done.stderr[-3000:]}")
    clocks = [json.loads(line) for line in (folder / "clock.jsonl").read_text().splitlines()]
    if len(clocks) != 1:
        raise RuntimeError(f"expected one worker clock, got {len(clocks)}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(
        study_name="throughput",
        storage=JournalStorage(JournalFileBackend(str(folder / "optuna.journal"))),
    )
    trials = sorted(study.trials, key=lambda t: t.number)
    configs = [t.user_attrs["config"] for t in trials if t.state.name == "COMPLETE"]
    if len(configs) != len(trials):  # the engine alone would train them for the whole budget
        ended = "; ".join(
            f"trial {t.number} {t.state.name} ({t.user_attrs.get('reason', 'no reason recorded')})"
            for t in trials
            if t.state.name != "COMPLETE"
        )
        raise RuntimeError(
            f"{len(trials) - len(configs)} trial(s) did not complete, so the engine cannot train "
            f"the same work: {ended}; try another --sampler-seed"
        )
    log(f"study: {clocks[0]['wall_seconds']:.1f} s loop, {seconds:.1f} s process")
    return seconds, clocks[0], configs, Settings(**study.user_attrs["settings"])


def measure(
    *,
    space: str,
    dataset: str,
    data_dir: str | None,
    trials: int,
    population: int,
    epochs: int,
    settings: Sequence[str],
    rounds: int = 2,
    sampler_seed: int = 0,
    log: Any = print,
) -> ThroughputReport:
    """`rounds` times: run the study, then the engine alone on its trials' configurations.
    The sampler is seeded, so every round trains the same configurations. A round that fails
    after others were measured ends the measurement with those (`failed` says why)."""
    command = [sys.executable, "-m", "benchmark.study", "--space", space]
    command += ["--dataset", dataset, "--trials", str(trials), "--epochs", str(epochs)]
    command += ["--population", str(population), "--pruner", "none"]
    command += ["--study-name", "throughput", "--sampler-seed", str(sampler_seed)]
    if data_dir:
        command += ["--data-dir", str(Path(data_dir).absolute())]
    for item in settings:
        command += ["--setting", item]
    load_before = load_average()
    log(f"study: {' '.join(command[1:])} (storage and MLflow store in a temporary folder)")
    done: list[Round] = []
    run_settings = None
    failed = None
    for k in range(rounds):
        try:
            with tempfile.TemporaryDirectory(prefix="mixbench-throughput-") as tmp:
                seconds, clock, configs, run_settings = _study_round(command, Path(tmp), log)
        except RuntimeError as err:
            if not done:
                raise
            failed = f"round {k + 1} of {rounds} failed, the {len(done)} before it kept: {err}"
            log(failed)
            break
        engine = engine_seconds(configs, run_settings, population)
        log(f"engine alone: {engine:.1f} s")
        done.append(Round(seconds, clock["wall_seconds"], engine, clock))
    assert run_settings is not None
    return ThroughputReport(
        failed=failed,
        command=command[1:],
        device=_device(run_settings.device),
        load_average_before=load_before,
        load_average_after=load_average(),
        trials=trials,
        population=population,
        epochs=epochs,
        rounds=done,
    )


def render_markdown(report: ThroughputReport) -> str:
    """The report as Markdown: the two throughputs, their ratio, the bookkeeping parts."""
    doc = report.to_dict()
    best = report.best_study
    clock = best.clock
    per = report.bookkeeping_ms
    book_met = "met" if doc["targets"]["bookkeeping_met"] else "not met"
    during = report.steady_bookkeeping_ms
    steady_met = "met" if doc["targets"]["steady_bookkeeping_met"] else "not met"
    per_trial = 1000 * report.steady_bookkeeping_seconds / max(1, report.trials)
    wait = clock["seconds"].get("drain writer", 0.0)
    rounds = "; ".join(
        f"study loop {r.study_loop_seconds:.1f} s (process {r.study_process_seconds:.1f} s), "
        f"engine {r.engine_seconds:.1f} s"
        for r in report.rounds
    )
    lines = [
        f"# Study throughput end to end ({report.device['name']})",
        "",
        f"`python {' '.join(report.command)}` (journal storage and MLflow SQLite store in a "
        "temporary folder)",
        "",
        f"{report.trials} trials, population {report.population}, {report.epochs} epochs each; "
        f"load average before {report.load_average_before}, after {report.load_average_after} "
        "(a shared machine: the seconds between rounds vary with other jobs; the engine share "
        "and the bookkeeping seconds, timed inside the study, depend less on load).",
        "",
        f"Rounds: {rounds}. The fastest of each:"
        + (f" (**{report.failed}**)" if report.failed else ""),
        "",
        "| what | seconds | trials/hour |",
        "| --- | --- | --- |",
        f"| study, worker loop (first ask to last artifact) | {best.study_loop_seconds:.1f} "
        f"| {doc['study_trials_per_hour']:.0f} |",
        f"| study, whole process (start-up, data, MLflow store) | "
        f"{best.study_process_seconds:.1f} | {doc['study_process_trials_per_hour']:.0f} |",
        f"| engine alone (build, train, score) | {report.best_engine:.1f} "
        f"| {doc['engine_trials_per_hour']:.0f} |",
        "",
        f"Study / engine: **{report.ratio:.0%}** (target >= {TARGET_RATIO:.0%}: "
        f"{'met' if doc['targets']['ratio_met'] else 'not met'}). Inside the study's loop, "
        f"engine work (build, train, score) took **{report.engine_share:.0%}** of the time.",
        "",
        f"Bookkeeping on the training thread: {clock['bookkeeping_seconds']:.2f} s over "
        f"{clock['trial_epochs']} trial-epochs = **{per:.1f} ms per trial-epoch** (target < "
        f"{TARGET_BOOKKEEPING_MS:g} ms: {book_met}). Without the final wait for the writers "
        f"(`drain writer`, {wait:.2f} s once per study, whatever its length): **{during:.1f} "
        f"ms per trial-epoch** ({steady_met}), {per_trial:.0f} ms per trial."
        if per is not None
        else "No trial-epoch was trained.",
        "",
        "| part of the worker loop | seconds | calls | ms per trial-epoch |",
        "| --- | --- | --- | --- |",
    ]
    epochs = max(1, clock["trial_epochs"])
    for name, seconds in sorted(clock["seconds"].items(), key=lambda kv: -kv[1]):
        lines.append(
            f"| {name} | {seconds:.2f} | {clock['calls'].get(name, 0)} "
            f"| {1000 * seconds / epochs:.1f} |"
        )
    rest = clock["wall_seconds"] - sum(clock["seconds"].values())
    lines += [
        f"| (not in a part: loop overhead, loss checks) | {rest:.2f} | | "
        f"{1000 * rest / epochs:.1f} |",
        "",
        "`build`, `train` and `score` are the engine's own work; every other part is "
        "bookkeeping. `drain writer` is the wait, after the last epoch, for the background "
        "writer to finish the last trials' files.",
        "",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmark.throughput",
        description="A study's trials per hour end to end (real journal storage and MLflow "
        "store) against the engine alone (train + scoring), same data, P and budget.",
    )
    p.add_argument("--space", default="realmix", help="search space (default: realmix)")
    p.add_argument("--dataset", default="mnist", help="dataset (default: mnist)")
    p.add_argument("--data-dir", default=None, help="data folder (e.g. ../shared/data)")
    p.add_argument("--trials", type=int, default=4, help="trials (default: 4)")
    p.add_argument("--population", type=int, default=2, help="population size P (default: 2)")
    p.add_argument("--epochs", type=int, default=2, help="epochs per trial (default: 2)")
    p.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a run setting, as for benchmark.study (default: n_eval=500)",
    )
    p.add_argument("--rounds", type=int, default=2, help="study + engine rounds (default: 2)")
    p.add_argument(
        "--sampler-seed",
        type=int,
        default=0,
        help="the study's sampler seed: every round trains the same configurations (default: 0)",
    )
    p.add_argument("--out", default="results/benchmarks", help="report folder")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; exit code 2 for bad input."""
    parser = build_parser()
    args = parser.parse_args(argv)

    def usage_error(message: str) -> int:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        return 2

    for name in ("trials", "population", "epochs", "rounds"):
        if getattr(args, name) < 1:
            return usage_error(f"--{name} {getattr(args, name)}: must be >= 1")
    if args.sampler_seed < 0:
        return usage_error(f"--sampler-seed {args.sampler_seed}: must be a whole number from 0")
    if args.trials % args.population:
        return usage_error(
            f"--trials {args.trials} is not a multiple of --population {args.population}: the "
            "engine alone would train a smaller last population than the study"
        )
    settings = args.setting or ["n_eval=500"]
    try:
        flags = ("space", "dataset", "data_dir", "trials", "population", "epochs", "rounds",
                 "sampler_seed")  # fmt: skip
        report = measure(settings=settings, **{name: getattr(args, name) for name in flags})
    except RuntimeError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    publish(args.out, f"throughput-{device_slug(report.device)}", render_markdown(report),
            report.to_dict())  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""python -m benchmark.throughput: a study's trials per hour end to end against the engine's.

One run measures, on the same data, population size P and budget:

- the study: the real ``python -m benchmark.study`` (one in-process worker, journal storage
  and an MLflow SQLite store in a temporary folder, pruner off so every trial trains the full
  budget), timed by its worker's own clock (benchmark.bookkeeping): its loop from the first
  ask to the last artifact written, and the seconds its training thread spent on bookkeeping
  (Optuna, MLflow, artifacts) per trial-epoch;
- the engine alone, twice, once the study has ended: the study's own trial configurations,
  P at a time, trained and scored as the worker does (`build`, `train_epoch`,
  `score_members`), with no Optuna, MLflow or files.

It prints both throughputs, their ratio and the bookkeeping, and writes
``results/benchmarks/throughput-<device>.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ThroughputReport", "engine_seconds", "main", "measure", "render_markdown"]

TARGET_RATIO = 0.9
"""The study's throughput should be at least this share of the engine's."""
TARGET_BOOKKEEPING_MS = 5.0
"""Bookkeeping on the training thread per trial-epoch should stay below this."""


@dataclass
class ThroughputReport:
    """Everything one measurement found (written as the JSON file)."""

    command: list[str]
    device: dict[str, Any]
    load_average_before: list[float]
    load_average_after: list[float]
    trials: int
    population: int
    epochs: int
    study_process_seconds: float
    """Wall time of the whole `benchmark.study` process (start-up, data, MLflow store)."""
    study_loop_seconds: float
    """The worker's loop: first ask to last artifact written."""
    engine_seconds: list[float]
    """The engine alone on the same configurations, two runs."""
    clock: dict[str, Any]
    """The worker's bookkeeping clock (benchmark.bookkeeping.Clock.summary)."""
    states: dict[str, int] = field(default_factory=dict)

    @property
    def engine_mean(self) -> float:
        return sum(self.engine_seconds) / len(self.engine_seconds)

    def per_hour(self, seconds: float) -> float:
        return 3600.0 * self.trials / seconds if seconds > 0 else float("nan")

    @property
    def ratio(self) -> float:
        """Study throughput (its loop) over the engine's (mean of its two runs)."""
        return self.engine_mean / self.study_loop_seconds

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(
            engine_mean_seconds=self.engine_mean,
            study_trials_per_hour=self.per_hour(self.study_loop_seconds),
            study_process_trials_per_hour=self.per_hour(self.study_process_seconds),
            engine_trials_per_hour=self.per_hour(self.engine_mean),
            ratio=self.ratio,
            targets={
                "ratio": TARGET_RATIO,
                "ratio_met": self.ratio >= TARGET_RATIO,
                "bookkeeping_ms_per_trial_epoch": TARGET_BOOKKEEPING_MS,
                "bookkeeping_met": (self.clock.get("bookkeeping_ms_per_trial_epoch") or 0)
                < TARGET_BOOKKEEPING_MS,
            },
        )
        return out


def engine_seconds(configs: Sequence[dict[str, Any]], settings: Any, population: int) -> float:
    """Seconds the engine alone takes to train and score `configs` (dicts with 'trainable'
    and 'params'), `population` at a time, every member for `settings.epochs`, scored as the
    worker scores (every scored epoch; exact W1 at the last)."""
    import torch

    from benchmark.runner import load_data, resolve_device, score_members
    from benchmark.trainables import build

    device = resolve_device(settings.device)
    data = load_data(settings, device)
    seeds = settings.seed_list()
    start = time.perf_counter()
    for first in range(0, len(configs), population):
        group = configs[first : first + population]
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


def _load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _device(device: str) -> dict[str, Any]:
    import torch

    from benchmark.runner import resolve_device

    resolved = resolve_device(device)
    if resolved.type == "cuda":
        return {"type": "cuda", "name": torch.cuda.get_device_properties(resolved).name}
    name = platform.processor() or platform.machine() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"type": "cpu", "name": name, "cpus": len(os.sched_getaffinity(0))}


def device_slug(device: dict[str, Any]) -> str:
    """'amd-epyc' for an 'AMD EPYC 7B13 ...' CPU; the GPU's name for a GPU."""
    words = re.sub(r"[^a-z0-9]+", " ", device["name"].lower()).split()
    words = [w for w in words if w not in ("nvidia", "r", "tm", "processor")]
    return "-".join(words[:2] if device["type"] == "cpu" else words) or device["type"]


def measure(
    *,
    space: str,
    dataset: str,
    data_dir: str | None,
    trials: int,
    population: int,
    epochs: int,
    settings: Sequence[str],
    log: Any = print,
) -> ThroughputReport:
    """Run the study, then the engine alone twice on its trials' configurations."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    from benchmark.bookkeeping import BOOKKEEPING_FILE_ENV
    from benchmark.settings import Settings

    with tempfile.TemporaryDirectory(prefix="mixbench-throughput-") as tmp:
        folder = Path(tmp)
        command = [sys.executable, "-m", "benchmark.study", "--space", space]
        command += ["--dataset", dataset, "--trials", str(trials), "--epochs", str(epochs)]
        command += ["--population", str(population), "--pruner", "none"]
        command += ["--study-name", "throughput", "--storage", str(folder / "optuna.journal")]
        command += ["--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}"]
        if data_dir:
            command += ["--data-dir", str(Path(data_dir).absolute())]
        for item in settings:
            command += ["--setting", item]
        env = {**os.environ, BOOKKEEPING_FILE_ENV: str(folder / "clock.jsonl")}
        root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
        load_before = _load_average()
        log(f"study: {' '.join(command[1:])}")
        start = time.perf_counter()
        done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
        process_seconds = time.perf_counter() - start
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
        finished = sorted(study.trials, key=lambda t: t.number)
        states: dict[str, int] = {}
        for t in finished:
            states[t.state.name] = states.get(t.state.name, 0) + 1
        configs = [t.user_attrs["config"] for t in finished if t.state.name == "COMPLETE"]
        if len(configs) != trials:
            raise RuntimeError(f"{len(configs)} of {trials} trials completed: {states}")
        run_settings = Settings(**study.user_attrs["settings"])
    log(f"study: {clocks[0]['wall_seconds']:.1f} s loop, {process_seconds:.1f} s process")
    engine = []
    for k in range(2):  # twice: the spread says how much the machine's load moved the figures
        engine.append(engine_seconds(configs, run_settings, population))
        log(f"engine alone, run {k + 1}: {engine[-1]:.1f} s")
    return ThroughputReport(
        command=command[1:],
        device=_device(run_settings.device),
        load_average_before=load_before,
        load_average_after=_load_average(),
        trials=trials,
        population=population,
        epochs=epochs,
        study_process_seconds=process_seconds,
        study_loop_seconds=clocks[0]["wall_seconds"],
        engine_seconds=engine,
        clock=clocks[0],
        states=states,
    )


def render_markdown(report: ThroughputReport) -> str:
    """The report as Markdown: the two throughputs, their ratio, the bookkeeping parts."""
    doc = report.to_dict()
    clock = report.clock
    per = clock.get("bookkeeping_ms_per_trial_epoch")
    book_met = "met" if doc["targets"]["bookkeeping_met"] else "not met"
    lines = [
        f"# Study throughput end to end ({report.device['name']})",
        "",
        f"`python {' '.join(report.command)}`",
        "",
        f"{report.trials} trials, population {report.population}, {report.epochs} epochs each; "
        f"load average before {report.load_average_before}, after {report.load_average_after} "
        "(the machine is shared: compare the bookkeeping seconds, which depend less on load).",
        "",
        "| what | seconds | trials/hour |",
        "| --- | --- | --- |",
        f"| study, worker loop (first ask to last artifact) | {report.study_loop_seconds:.1f} "
        f"| {doc['study_trials_per_hour']:.0f} |",
        f"| study, whole process (start-up, data, MLflow store) | "
        f"{report.study_process_seconds:.1f} | {doc['study_process_trials_per_hour']:.0f} |",
        f"| engine alone (train + scoring), mean of "
        f"{', '.join(f'{s:.1f}' for s in report.engine_seconds)} | {report.engine_mean:.1f} "
        f"| {doc['engine_trials_per_hour']:.0f} |",
        "",
        f"Study / engine: **{report.ratio:.0%}** (target >= {TARGET_RATIO:.0%}: "
        f"{'met' if doc['targets']['ratio_met'] else 'not met'}).",
        "",
        f"Bookkeeping on the training thread: {clock['bookkeeping_seconds']:.2f} s over "
        f"{clock['trial_epochs']} trial-epochs = **{per:.1f} ms per trial-epoch** (target < "
        f"{TARGET_BOOKKEEPING_MS:g} ms: {book_met})."
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
        "`train` and `score` are the engine's own work; every other part is bookkeeping.",
        "",
    ]
    return "\n".join(lines)


def write_report(report: ThroughputReport, out_dir: str | Path) -> tuple[Path, Path]:
    """Write throughput-<device>.md and .json into `out_dir`; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"throughput-{device_slug(report.device)}"
    md, js = out / f"{stem}.md", out / f"{stem}.json"
    md.write_text(render_markdown(report))
    js.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return md, js


def _parser() -> argparse.ArgumentParser:
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
        help="a run setting, as for benchmark.study (default: train_size=1024, n_eval=300)",
    )
    p.add_argument("--out", default="results/benchmarks", help="report folder")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; exit code 2 for bad input."""
    parser = _parser()
    args = parser.parse_args(argv)
    for name in ("trials", "population", "epochs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} {getattr(args, name)}: must be >= 1")
    if args.trials % args.population:
        parser.error(
            f"--trials {args.trials} is not a multiple of --population {args.population}: the "
            "engine alone would train a smaller last population than the study"
        )
    settings = args.setting or ["train_size=1024", "n_eval=300"]
    try:
        report = measure(
            space=args.space,
            dataset=args.dataset,
            data_dir=args.data_dir,
            trials=args.trials,
            population=args.population,
            epochs=args.epochs,
            settings=settings,
        )
    except RuntimeError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    md, js = write_report(report, args.out)
    print(render_markdown(report))
    print(f"wrote {md} and {js}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

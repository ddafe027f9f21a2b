"""Small stderr progress bars with an ETA, so long work always shows where it is: `Progress`
for one run, `StudyProgress` for a study (per trial and per scored epoch)."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

from benchmark import records

__all__ = ["Progress", "StudyProgress", "TrialSteps", "format_seconds"]


def format_seconds(seconds: float) -> str:
    """'1h02m', '3m05s' or '42s'."""
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h}h{m:02d}m"
    if m:
        return f"{m}m{s:02d}s"
    return f"{s}s"


class Progress:
    """`done/total [#####.....] note, elapsed, ETA` redrawn in place on a terminal."""

    def __init__(
        self, total: int, label: str, *, stream: TextIO | None = None, width: int = 24
    ) -> None:
        self.total, self.label, self.width = max(1, total), label, width
        self.stream = stream if stream is not None else sys.stderr
        self.start = time.perf_counter()
        self.done = 0
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def update(self, done: int, note: str = "") -> None:
        self.done = done
        elapsed = time.perf_counter() - self.start
        eta = elapsed / done * (self.total - done) if done else float("nan")
        filled = int(self.width * done / self.total)
        bar = "#" * filled + "." * (self.width - filled)
        eta_s = format_seconds(eta) if done else "?"
        line = (
            f"{self.label} {done}/{self.total} [{bar}] {note} "
            f"elapsed {format_seconds(elapsed)}, left ~{eta_s}"
        )
        if self.tty:
            self.stream.write("\r\033[K" + line)
            if done >= self.total:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


METRIC_NAMES = {
    "w1": "W1",
    "w1_noise": "W1 (noise)",
    "sliced_w2": "SW2",
    "sliced_w2_noise": "SW2 (noise)",
    "cfid": "cFID",
    "cfid_noise": "cFID (noise)",
}
"""Short names of the metrics the study's progress line shows."""


@dataclass(frozen=True)
class TrialSteps:
    """How a trial's reported steps map to seeds and epochs (see worker.load_worker_study)."""

    epochs: int
    scored: tuple[int, ...]
    """The scored epochs (1-based): one step each."""
    seeds: int = 1
    seed_after_seed: bool = True
    """One-trial path: seed after seed, n_scored steps each; population path: one step per
    scored epoch for the mean over seeds."""

    @property
    def total(self) -> int:
        return len(self.scored) * (self.seeds if self.seed_after_seed else 1)

    def describe(self, steps: int) -> str:
        """'epoch 2/5' (or 'seed 2/3 epoch 4/5') after `steps` reported steps."""
        if steps <= 0:
            return f"epoch 0/{self.epochs}"
        n = len(self.scored)
        if self.seed_after_seed and self.seeds > 1:
            seed, k = divmod(steps - 1, n)
            return f"seed {seed + 1}/{self.seeds} epoch {self.scored[k]}/{self.epochs}"
        return f"epoch {self.scored[min(steps, n) - 1]}/{self.epochs}"


class StudyProgress:
    """`study 5/20 [#####...] best W1 0.123, #6 epoch 2/5 W1 0.2, elapsed 1m02s, left ~3m`.

    Redrawn (on stderr) whenever a trial ends or a running trial reports a scored epoch: it
    reads the running trials' intermediate values from the storage, so it shows the epochs of
    every worker process's trials. The bar and the ETA count finished epochs, not only
    finished trials.
    """

    def __init__(
        self,
        study: Any,
        total: int,
        objective: str,
        stream: TextIO | None = None,
        *,
        steps: TrialSteps | None = None,
        metric: str = "sliced_w2",
        best_metric: str = "w1",
        shown: int = 2,
    ) -> None:
        self.study, self.total, self.objective = study, total, objective
        self.stream = stream if stream is not None else sys.stderr
        self.steps, self.metric, self.best_metric, self.shown = steps, metric, best_metric, shown
        self.start = time.perf_counter()
        self.start_done = self._snapshot()[0]
        self.last: tuple[Any, ...] | None = None
        self.open_line = False
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def _snapshot(self) -> tuple[int, list[Any], list[Any]]:
        from optuna.trial import TrialState

        trials = self.study.get_trials(deepcopy=False)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
        running = [t for t in trials if t.state == TrialState.RUNNING]
        return done, complete, running

    def _reported(self, trial: Any) -> list[float]:
        """The trial's intermediate values so far (the pareto rule keeps them as a user attr)."""
        if trial.intermediate_values:
            return [trial.intermediate_values[k] for k in sorted(trial.intermediate_values)]
        curve = trial.user_attrs.get(records.CURVE) or {}
        return [v for _, v in sorted((int(k), v) for k, v in curve.items())]

    def _best(self, complete: list[Any]) -> str:
        if self.objective == "pareto":
            return f"pareto front {len(self.study.best_trials)}" if complete else "none complete"
        if not complete:
            return "no best yet"
        name = METRIC_NAMES.get(self.best_metric, self.best_metric)
        return f"best {name} {min(t.value for t in complete):.4g}"

    def _running(self, running: list[Any]) -> tuple[str, float]:
        """('#6 epoch 2/5 W1 20.1, +1 running', finished share of the running trials)."""
        notes, partial = [], 0.0
        for t in sorted(running, key=lambda t: t.number):
            values = self._reported(t)
            if self.steps is not None and self.steps.total:
                partial += min(1.0, len(values) / self.steps.total)
            if len(notes) < self.shown:
                where = self.steps.describe(len(values)) if self.steps else f"step {len(values)}"
                note = f"#{t.number} {where}"
                if values and values[-1] is not None and math.isfinite(values[-1]):
                    note += f" {METRIC_NAMES.get(self.metric, self.metric)} {values[-1]:.4g}"
                notes.append(note)
        if len(running) > self.shown:
            notes.append(f"+{len(running) - self.shown} running")
        return ", ".join(notes), partial

    def update(self, *_: Any) -> None:
        """Redraw when anything changed (arguments are ignored: a trial-end callback)."""
        done, complete, running = self._snapshot()
        best = self._best(complete)
        now, partial = self._running(running)
        key = (done, best, now)
        if key == self.last:
            return
        self.last = key
        elapsed = time.perf_counter() - self.start
        progress = done - self.start_done + partial
        left = "?"
        if progress > 0:
            left = "~" + format_seconds(elapsed / progress * max(0.0, self.total - done - partial))
        width = 20
        filled = int(width * min(1.0, (done + partial) / self.total))
        bar = "#" * filled + "." * (width - filled)
        line = f"{self.study.study_name} {done}/{self.total} [{bar}]"
        line += f" {best}" + (f", {now}" if now else "")
        line += f", elapsed {format_seconds(elapsed)}, left {left}"
        if self.tty:
            self.stream.write("\r\033[K" + line)
            self.open_line = True
            if done >= self.total:
                self.close()
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line (after Ctrl-C too), so what follows starts on its own line."""
        if self.open_line:
            self.stream.write("\n")
            self.stream.flush()
            self.open_line = False

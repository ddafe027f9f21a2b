"""python -m benchmark.report: a study's tables and figures, with its uncertainty shown honestly.

    python -m benchmark.report --study realmix-mnist-wasserstein
    python -m benchmark.report --study compare-mnist-wasserstein --storage sqlite:///optuna.db

Reads the Optuna storage (trial params, objective values, per-seed summaries) and the study's
MLflow runs (per-seed final metrics, per-epoch histories, sample grids) and writes
``report.html`` (self-contained: figures embedded as base64 PNG), ``report.md``,
``summary.csv`` and every figure as PNG into ``<out>/<study>/`` (default
``results/reports/<study>/``).

What it shows: the best configuration per trainable with Student-t CIs over seeds; how far
apart the variants' bests are compared with the seed-to-seed noise floor; expected best
after n trials per variant (did a variant win, or was it tuned longer?); parameter
importances, slices and contours of the searched knobs; the Pareto front of pareto studies;
curves and sample grids of the best trials.

`Document` (a small Markdown + HTML writer) is shared with `benchmark.ablation` and
`benchmark.reproduce`.
"""

from __future__ import annotations

import argparse
import base64
import csv
import html
import json
import math
import os
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_OUT",
    "CONTOUR_PAIRS",
    "Document",
    "ReportError",
    "StudyData",
    "TrialRecord",
    "build_report",
    "format_ci",
    "load_study_data",
    "main",
    "metric_label",
    "open_existing_storage",
    "seed_values",
    "study_split_note",
    "summary_rows",
]

DEFAULT_OUT = Path("results") / "reports"
"""Parent folder of the per-study report folders."""

SUMMARY_METRICS = ("w1", "w1_noise", "cfid", "cfid_noise", "sliced_w2", "g_loss_var", "d_loss_var")
"""Metrics of the summary table (a metric missing for a trainable, e.g. w1_noise for the
standard GAN, which has one sampling mode, is left out of its row)."""

CONTOUR_PAIRS: dict[str, tuple[tuple[str, str], ...]] = {
    "realmix": (("p_mix", "alpha"), ("lr", "noise_sigma")),
    "mixture": (("t_a", "t_b"),),
    "gan": (("lr", "beta1"),),
}
"""Pairs of searched knobs drawn against each other (when both were searched)."""

MIN_IMPORTANCE_TRIALS = 4
"""Fewer complete trials than this: no importances, a note instead."""
RELIABLE_IMPORTANCE_TRIALS = 20
"""Below this many trials importances are printed with a warning."""
TOP_TRIALS = 5
"""Trials per trainable in the 'are the top configurations distinguishable?' table."""

LOSS_LABELS: dict[str, str] = {
    "g_loss": "mean generator loss over the last epoch",
    "d_loss": "mean discriminator loss over the last epoch",
    "g_loss_var": "variance of the per-step generator loss in the last epoch",
    "d_loss_var": "variance of the per-step discriminator loss in the last epoch",
    "oscillation": "EMA-smoothed loss see-saw per step (mean of G and D)",
}

SHORT_NAMES: dict[str, str] = {
    "w1": "W1",
    "w1_noise": "W1 (noise mode)",
    "sliced_w2": "sliced W2",
    "sliced_w2_noise": "sliced W2 (noise mode)",
    "pixel_w1": "pixel W1",
    "pixel_w1_noise": "pixel W1 (noise mode)",
    "cfid": "classifier-FID",
    "cfid_noise": "classifier-FID (noise mode)",
    "g_loss_var": "G-loss variance",
    "d_loss_var": "D-loss variance",
    "g_loss": "G loss",
    "d_loss": "D loss",
}


class ReportError(ValueError):
    """The study, storage or tracking store asked for cannot be used (exit code 2)."""


def metric_label(key: str) -> str:
    """What a metric key means, e.g. 'w1_noise' -> 'exact W1 (...), noise sampling mode'."""
    from benchmark.metrics import METRIC_LABELS

    base, noise = (key[: -len("_noise")], True) if key.endswith("_noise") else (key, False)
    text = METRIC_LABELS.get(base) or LOSS_LABELS.get(base)
    if text is None:  # benchmark.evaluate pulls in the classifier: import it only when needed
        from benchmark.evaluate import EXTRA_METRIC_LABELS

        text = EXTRA_METRIC_LABELS.get(base, base)
    if noise:
        text += "; RealMix noise sampling mode (no real image reaches G)"
    return text


def short_name(key: str) -> str:
    """A compact column title for a metric key."""
    return SHORT_NAMES.get(key, key)


# --------------------------------------------------------------------------------------------
# A small Markdown + self-contained HTML writer
# --------------------------------------------------------------------------------------------


_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222;
       max-width: 1120px; margin: 24px auto; padding: 0 20px; line-height: 1.45; }
h1 { font-size: 1.7em; border-bottom: 2px solid #ddd; padding-bottom: 6px; }
h2 { font-size: 1.3em; margin-top: 1.8em; border-bottom: 1px solid #eee; padding-bottom: 4px; }
h3 { font-size: 1.08em; margin-top: 1.3em; }
table { border-collapse: collapse; margin: 10px 0 16px; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
tr:nth-child(even) td { background: #fafafa; }
code { background: #f2f2f2; padding: 1px 4px; border-radius: 3px; font-size: 0.92em; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 6px 12px; margin: 10px 0; }
figure { margin: 14px 0 22px; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.88em; color: #555; margin-top: 4px; }
.gallery { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
.gallery figure { margin: 6px 0; }
.cols-2 figure { width: calc(50% - 6px); }
.cols-3 figure { width: calc(33.33% - 8px); }
.caption { font-size: 0.88em; color: #555; margin: -4px 0 6px; }
.v-helps { color: #1a7f37; font-weight: 600; }
.v-hurts { color: #c62828; font-weight: 600; }
.v-inconclusive { color: #666; }
"""

_VERDICT_WORDS = ("helps", "hurts", "inconclusive", "holds", "contradicted", "worse", "better")


@dataclass
class Document:
    """Headings, paragraphs, tables and figures, rendered as Markdown and as one HTML file.

    Inline text may use `backticks` for code. Figures are PNG files in the output folder:
    Markdown links them by file name, HTML embeds them as base64 data URIs.
    """

    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        """A section heading (level 2 or 3; the title is level 1)."""
        self.blocks.append(("heading", (level, text)))

    def paragraph(self, text: str) -> None:
        """A paragraph of plain text."""
        self.blocks.append(("paragraph", text))

    def note(self, text: str) -> None:
        """A highlighted remark (a caveat the reader must not miss)."""
        self.blocks.append(("note", text))

    def bullets(self, items: Sequence[str]) -> None:
        """A bulleted list."""
        if items:
            self.blocks.append(("bullets", list(items)))

    def table(
        self, header: Sequence[str], rows: Sequence[Sequence[Any]], caption: str | None = None
    ) -> None:
        """A table of already formatted cells."""
        cells = [[_cell(v) for v in row] for row in rows]
        self.blocks.append(("table", (list(header), cells, caption)))

    def figure(self, path: str | Path, caption: str) -> None:
        """A PNG figure (which must exist in the folder the document is written to)."""
        self.blocks.append(("figure", (Path(path), caption)))

    def gallery(self, items: Sequence[tuple[str | Path, str]], columns: int = 3) -> None:
        """Several PNG figures side by side (2 or 3 per row in HTML; one after another in
        Markdown)."""
        if items:
            figs = [(Path(p), c) for p, c in items]
            self.blocks.append(("gallery", (figs, 2 if columns <= 2 else 3)))

    def figures(self) -> list[Path]:
        """Paths of every figure in the document."""
        out = []
        for kind, value in self.blocks:
            if kind == "figure":
                out.append(value[0])
            elif kind == "gallery":
                out += [p for p, _ in value[0]]
        return out

    def to_markdown(self) -> str:
        """The document as GitHub-flavoured Markdown (figures linked by file name)."""
        out = [f"# {self.title}", ""]
        for kind, value in self.blocks:
            if kind == "heading":
                level, text = value
                out += ["#" * level + " " + text, ""]
            elif kind == "paragraph":
                out += [value, ""]
            elif kind == "note":
                out += ["> **Note.** " + value, ""]
            elif kind == "bullets":
                out += [f"- {item}" for item in value] + [""]
            elif kind == "table":
                header, rows, caption = value
                if caption:
                    out += [f"*{caption}*", ""]
                out.append("| " + " | ".join(_md_escape(h) for h in header) + " |")
                out.append("|" + "|".join(" --- " for _ in header) + "|")
                out += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
                out.append("")
            elif kind in ("figure", "gallery"):
                for path, caption in [value] if kind == "figure" else value[0]:
                    out += [f"![{path.stem}]({path.name})", "", f"*{caption}*", ""]
        return "\n".join(out).rstrip() + "\n"

    def to_html(self, folder: str | Path) -> str:
        """The document as one self-contained HTML page (figures read from `folder`)."""
        base = Path(folder)
        body = [f"<h1>{_inline(self.title)}</h1>"]
        for kind, value in self.blocks:
            if kind == "heading":
                level, text = value
                body.append(f"<h{level}>{_inline(text)}</h{level}>")
            elif kind == "paragraph":
                body.append(f"<p>{_inline(value)}</p>")
            elif kind == "note":
                body.append(f'<div class="note"><b>Note.</b> {_inline(value)}</div>')
            elif kind == "bullets":
                items = "".join(f"<li>{_inline(item)}</li>" for item in value)
                body.append(f"<ul>{items}</ul>")
            elif kind == "table":
                header, rows, caption = value
                if caption:
                    body.append(f'<p class="caption">{_inline(caption)}</p>')
                head = "".join(f"<th>{_inline(h)}</th>" for h in header)
                trs = "".join("<tr>" + "".join(_td(c) for c in row) + "</tr>" for row in rows)
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{trs}</tbody></table>")
            elif kind == "figure":
                body.append(_html_figure(base, *value))
            elif kind == "gallery":
                figs, columns = value
                inner = "".join(_html_figure(base, p, c) for p, c in figs)
                body.append(f'<div class="gallery cols-{columns}">{inner}</div>')
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(body)
            + "\n</body></html>\n"
        )

    def write(self, folder: str | Path) -> tuple[Path, Path]:
        """Write report.md and report.html into `folder`; returns their paths."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        md = out / "report.md"
        md.write_text(self.to_markdown())
        page = out / "report.html"
        page.write_text(self.to_html(out))
        return md, page


def _html_figure(base: Path, path: Path, caption: str) -> str:
    data = base64.b64encode((base / path.name).read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{_inline(caption)}</figcaption></figure>"
    )


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return _num(value)
    return str(value)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _inline(text: str) -> str:
    escaped = html.escape(text)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", escaped)


def _td(text: str) -> str:
    for word in _VERDICT_WORDS:
        if text == word or text.startswith(word + " ") or text.startswith(word + ":"):
            css = {"holds": "helps", "better": "helps", "contradicted": "hurts", "worse": "hurts"}
            return f'<td class="v-{css.get(word, word)}">{_inline(text)}</td>'
    return f"<td>{_inline(text)}</td>"


def _num(value: float | None, digits: int = 4) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.{digits}g}"


def format_ci(interval: Any, digits: int = 4) -> str:
    """'1.905 [1.898, 1.912] (n=3)', or '1.905 (n=1, no CI)' for a degenerate interval."""
    est = _num(interval.estimate, digits)
    if interval.degenerate:
        return f"{est} (n={interval.n}, no CI)"
    return f"{est} [{_num(interval.low, digits)}, {_num(interval.high, digits)}] (n={interval.n})"


def format_p(p: float | None) -> str:
    """A p-value for a table ('undefined' when the test could not be run)."""
    if p is None or not math.isfinite(p):
        return "undefined"
    return f"{p:.2g}"


# --------------------------------------------------------------------------------------------
# Loading a study
# --------------------------------------------------------------------------------------------


@dataclass
class TrialRecord:
    """One trial as the report needs it (Optuna storage merged with its MLflow run)."""

    number: int
    state: str
    """COMPLETE, PRUNED, FAIL, RUNNING or WAITING."""
    values: list[float] | None
    """Objective values (COMPLETE only): [w1] or [w1, g_loss_var]."""
    trainable: str | None
    params: dict[str, Any]
    """Searched params under the trainable's own names (compare's prefix stripped)."""
    distributions: dict[str, Any]
    """Optuna distributions of `params`, same names."""
    config: dict[str, Any]
    """Every param of the trained configuration (searched, fixed and defaults)."""
    seeds: list[dict[str, Any]]
    """Per-seed summaries: the trial's user attr plus every final metric from MLflow."""
    final: dict[str, float]
    """Mean metrics over seeds (trial user attr)."""
    mlflow_run_id: str | None
    reason: str | None
    intermediate: dict[int, float]
    """Intermediate values reported for pruning (sliced W2, steps across seeds)."""
    curve: dict[str, Any]
    """Per-step intermediate values of pareto studies (trial user attr)."""

    @property
    def objective(self) -> float | None:
        """The first objective (e.g. W1, mean over seeds), or None if the trial did not
        complete."""
        return self.values[0] if self.values else None


@dataclass
class StudyData:
    """A study loaded for reporting."""

    name: str
    storage: str
    """The storage URL with any password masked."""
    directions: list[str]
    attrs: dict[str, Any]
    trials: list[TrialRecord]
    tracking_uri: str | None
    mlflow: Any
    """mlflow.MlflowClient, or None when the tracking store cannot be read."""
    notes: list[str] = field(default_factory=list)
    """Problems met while loading (shown at the top of the report)."""

    @property
    def objective(self) -> str:
        return str(self.attrs.get("objective", "wasserstein"))

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.attrs.get("settings", {}))

    def state_counts(self) -> dict[str, int]:
        """Number of trials in each state, e.g. {'COMPLETE': 8, 'FAIL': 1}."""
        return dict(Counter(t.state for t in self.trials))

    @property
    def metric_names(self) -> tuple[str, ...]:
        from benchmark.objectives import metric_names

        return metric_names(self.objective)

    @property
    def primary(self) -> str:
        """The metric the study minimises first (w1, w1_noise, cfid, ...)."""
        return self.metric_names[0]

    @property
    def label(self) -> str:
        """Short display name of `primary`, e.g. 'W1'."""
        return short_name(self.primary)

    def complete(self, trainable: str | None = None) -> list[TrialRecord]:
        """Complete trials (of one trainable), in trial order."""
        return [
            t
            for t in self.trials
            if t.state == "COMPLETE"
            and t.values
            and all(math.isfinite(v) for v in t.values)
            and (trainable is None or t.trainable == trainable)
        ]

    def trainables(self) -> list[str]:
        """Trainables with at least one complete trial, best objective first."""
        names = {t.trainable for t in self.complete() if t.trainable}
        return sorted(names, key=lambda n: min(t.objective for t in self.complete(n)))

    def best(self, trainable: str) -> TrialRecord:
        """The complete trial of `trainable` with the lowest first objective (mean over seeds)."""
        return min(self.complete(trainable), key=lambda t: t.objective)


def open_existing_storage(url: str) -> Any:
    """Open an Optuna storage that must already exist (never creates an empty one)."""
    from benchmark.storage import StorageError, open_storage, storage_kind
    from benchmark.urls import mask_url

    try:
        kind = storage_kind(url)
    except StorageError as err:
        raise ReportError(str(err)) from None
    missing: Path | None = None
    if kind == "journal" and not Path(url).exists():
        missing = Path(url)
    elif url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        path = Path(url[len("sqlite:///") :])
        if not path.exists():
            missing = path
    if missing is not None:
        raise ReportError(
            f"storage {mask_url(url)!r} does not exist ({missing} not found); run a study "
            "first (python -m benchmark.study --space ...) or pass the --storage it used"
        )
    try:
        return open_storage(url, heartbeat=False, writable=False)
    except StorageError as err:
        raise ReportError(str(err)) from None


def _mlflow_client(uri: str | None) -> tuple[Any, str | None]:
    """(MlflowClient, None) or (None, why it cannot be used); never creates a store.

    A tracking server or database is probed once with a short timeout first: MLflow's own
    client would retry a dead one for minutes before the report could fall back.
    """
    from benchmark.tracking import PROBE_SECONDS, probe
    from benchmark.urls import mask_text, mask_url

    if not uri:
        return None, "the study records no MLflow tracking URI"
    if ":***@" in uri:
        return None, (
            f"the study records its MLflow tracking URI with the password hidden ({uri}); "
            "pass --tracking-uri with the password to read it"
        )
    problem = probe(uri, PROBE_SECONDS)
    if problem is not None:
        return None, f"MLflow tracking store {mask_url(uri)} is not reachable: {problem}"
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///") :])
        if not path.exists():
            return None, f"MLflow store {uri} not found"
    elif "://" not in uri and not Path(uri).exists():
        return None, f"MLflow store {uri} not found"
    try:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)
    except Exception as err:  # sqlalchemy, OSError, MlflowException: all mean unusable
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        return None, f"MLflow store {mask_url(uri)} cannot be read: {mask_text(first)}"
    return client, None


def load_study_data(name: str, storage_url: str, *, tracking_uri: str | None = None) -> StudyData:
    """Load study `name` and its MLflow runs; ReportError for an unknown study or storage.

    `tracking_uri` defaults to the one the study recorded. When MLflow cannot be read the
    report falls back to what the Optuna storage holds and says so.
    """
    import optuna

    from benchmark.urls import mask_url

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_existing_storage(storage_url)
    names = optuna.study.get_all_study_names(storage)
    if name not in names:
        have = f"available: {', '.join(sorted(names))}" if names else "it holds no study yet"
        raise ReportError(f"study {name!r} not found in {mask_url(storage_url)!r}; {have}")
    study = optuna.load_study(study_name=name, storage=storage)
    attrs = dict(study.user_attrs)
    uri = tracking_uri or attrs.get("mlflow_tracking_uri")
    client, problem = _mlflow_client(uri)
    notes = []
    if problem:
        notes.append(
            f"{problem}: falling back to the Optuna storage alone; per-seed loss variance, "
            "per-epoch curves and sample grids are missing; pass --tracking-uri to the store "
            "the study logged to"
        )
    data = StudyData(
        name=name,
        storage=mask_url(storage_url),
        directions=[d.name.lower() for d in study.directions],
        attrs=attrs,
        trials=[],
        tracking_uri=mask_url(uri),
        mlflow=client,
        notes=notes,
    )
    space = attrs.get("space")
    for trial in study.get_trials(deepcopy=False):
        data.trials.append(_record(trial, space, client, notes))
    return data


def _record(trial: Any, space: str | None, client: Any, notes: list[str]) -> TrialRecord:
    config = trial.user_attrs.get("config") or {}
    trainable = config.get("trainable")
    if trainable is None and space is not None:
        trainable = _space_trainable(space)
    prefix = f"{trainable}." if trainable and any("." in k for k in trial.params) else ""
    params, dists = {}, {}
    for key, value in trial.params.items():
        if key == "trainable":
            continue
        short = key[len(prefix) :] if prefix and key.startswith(prefix) else key
        params[short] = value
        dists[short] = trial.distributions[key]
    seeds = [dict(s) for s in trial.user_attrs.get("seeds", [])]
    run_id = trial.user_attrs.get("mlflow_run_id")
    if client is not None and run_id and seeds:
        _merge_mlflow_finals(client, run_id, seeds, notes)
    values = list(trial.values) if trial.values is not None else None
    return TrialRecord(
        number=trial.number,
        state=trial.state.name,
        values=values,
        trainable=trainable,
        params=params,
        distributions=dists,
        config=dict(config.get("params", {})),
        seeds=seeds,
        final=dict(trial.user_attrs.get("final", {})),
        mlflow_run_id=run_id,
        reason=trial.user_attrs.get("reason"),
        intermediate=dict(trial.intermediate_values),
        curve=dict(trial.user_attrs.get("curve", {})),
    )


def _space_trainable(space: str) -> str | None:
    try:
        from studies import get_space

        return get_space(space).TRAINABLE
    except Exception:
        return None


def _merge_mlflow_finals(
    client: Any, run_id: str, seeds: list[dict[str, Any]], notes: list[str]
) -> None:
    """Add every last-epoch metric MLflow holds for each seed (keys 'seed_<s>/<metric>' when
    the trial trained several seeds, unprefixed for one)."""
    try:
        metrics = client.get_run(run_id).data.metrics
    except Exception as err:
        notes.append(f"MLflow run {run_id} unreadable ({type(err).__name__})")
        return
    multi = len(seeds) > 1
    for summary in seeds:
        prefix = f"seed_{summary.get('seed')}/" if multi else ""
        for key, value in metrics.items():
            if prefix and not key.startswith(prefix):
                continue
            if not prefix and ("/" in key):
                continue
            name = key[len(prefix) :]
            summary.setdefault(name, value)


def seed_values(record: TrialRecord, key: str) -> np.ndarray:
    """Finite per-seed values of `key` for one trial (diverged or missing seeds left out)."""
    out = []
    for summary in record.seeds:
        value = summary.get(key)
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if numeric and math.isfinite(float(value)):
            out.append(float(value))
    return np.asarray(out, dtype=float)


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


def summary_rows(data: StudyData, metrics: Sequence[str] = SUMMARY_METRICS) -> list[dict]:
    """One row per (trainable, metric) for each trainable's best trial: mean and 95%
    Student-t CI over seeds (`stats.t_ci`; n=1: no interval, flagged degenerate)."""
    from benchmark import stats

    rows = []
    for trainable in data.trainables():
        best = data.best(trainable)
        for metric in metrics:
            values = seed_values(best, metric)
            if values.size == 0:
                continue
            ci = stats.t_ci(values)
            rows.append(
                {
                    "trainable": trainable,
                    "trial": best.number,
                    "metric": metric,
                    "mean": ci.estimate,
                    "ci_low": ci.low,
                    "ci_high": ci.high,
                    "n": ci.n,
                    "degenerate": ci.degenerate,
                }
            )
    return rows


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        if not rows:
            handle.write("")
            return path
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _params_text(params: Mapping[str, Any]) -> str:
    parts = []
    for key, value in params.items():
        parts.append(f"{key}={_num(value) if isinstance(value, float) else value}")
    return ", ".join(parts)


# --------------------------------------------------------------------------------------------
# Small figures not in benchmark.figures
# --------------------------------------------------------------------------------------------


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from benchmark.figures import DPI

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> Path:
    from benchmark.figures import DPI

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI, bbox_inches="tight")
    return path


def importance_plot(importances: Mapping[str, float], path: Path, *, title: str) -> Path:
    """Horizontal bars of normalised parameter importances, largest on top."""
    names = list(importances)[::-1]
    # as large as the report's other figures (it used to be a short strip, tiny on the page)
    fig = _figure(7.0, max(4.5, 1.2 + 0.5 * len(names)))
    ax = fig.subplots()
    ax.barh(names, [importances[n] for n in names], color="#4c72b0")
    ax.set_xlabel("importance (share of explained objective variance)")
    ax.set_xlim(0, 1)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, path)


def strip_plot(
    categories: Sequence[Any],
    values: Sequence[float],
    path: Path,
    *,
    param: str,
    ylabel: str,
    title: str | None = None,
) -> Path:
    """Objective per value of a categorical knob: one jittered point per trial, a bar at the
    median."""
    labels = [str(c) for c in categories]
    order = list(dict.fromkeys(sorted(set(labels), key=labels.index)))
    fig = _figure(6.0, 4.2)
    ax = fig.subplots()
    rng = np.random.default_rng(0)
    for i, label in enumerate(order):
        ys = np.array([v for c, v in zip(labels, values, strict=True) if c == label])
        xs = i + rng.uniform(-0.12, 0.12, size=ys.size)
        ax.scatter(xs, ys, s=26, alpha=0.75, color="#4c72b0", edgecolors="none")
        ax.plot([i - 0.25, i + 0.25], [np.median(ys)] * 2, color="#c44e52", linewidth=2)
        ax.annotate(
            f"n={ys.size}", (i, 1.0), xycoords=("data", "axes fraction"), ha="center",
            va="bottom", fontsize="x-small",
        )  # fmt: skip
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels(order)
    ax.set_xlabel(param)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title or f'{ylabel} by {param}'} (red: median)", pad=16)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# Report sections
# --------------------------------------------------------------------------------------------


@dataclass
class _Context:
    data: StudyData
    out: Path
    doc: Document
    summary: list[dict] = field(default_factory=list)


def build_report(data: StudyData, out: str | Path) -> tuple[Path, Path]:
    """Write report.md, report.html, summary.csv and the figures into `out`."""
    folder = Path(out)
    if folder.exists():
        for old in folder.glob("*.png"):
            old.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    ctx = _Context(data, folder, Document(f"MixBench study report: {data.name}"))
    _header(ctx)
    if not data.complete():
        ctx.doc.note("No trial has completed yet: there is nothing to summarise.")
        _write_csv(folder / "summary.csv", [])
        return ctx.doc.write(folder)
    _summary(ctx)
    _noise_floor(ctx)
    _expected_best(ctx)
    if data.objective == "pareto" or len(data.directions) > 1:
        _pareto(ctx)
    _importances(ctx)
    _knobs(ctx)
    _curves(ctx)
    _samples(ctx)
    _write_csv(folder / "summary.csv", ctx.summary)
    return ctx.doc.write(folder)


def _header(ctx: _Context) -> None:
    data, doc = ctx.data, ctx.doc
    s = data.settings
    counts = data.state_counts()
    doc.bullets(
        [
            f"space `{data.attrs.get('space')}`, objective `{data.objective}` "
            f"({', '.join(short_name(m) for m in data.metric_names)}, minimised; each trial's "
            "value is the mean over its seeds)",
            f"settings: dataset `{s.get('dataset')}`, {s.get('epochs')} epoch(s), "
            f"{s.get('seeds')} seed(s) per trial, batch {s.get('batch_size')}, "
            f"train_size {s.get('train_size') or 'all'}, n_eval {s.get('n_eval')} samples per "
            "side for the exact W1",
            "data: " + (study_split_note(data) or "(split note not available from MLflow)"),
            "trials: " + ", ".join(f"{n} {state.lower()}" for state, n in sorted(counts.items())),
            f"Optuna storage `{data.storage}`; MLflow `{data.tracking_uri or 'not recorded'}`",
        ]
    )
    for note in dict.fromkeys(data.notes):
        doc.note(note)
    doc.paragraph(
        "Every mean comes with a 95% Student-t CI over seeds and its n (differences: Welch t); "
        "with one seed there is no interval ('n=1, no CI'). A t interval covers 95% for "
        "normal seed noise at any n >= 2 but less for skewed noise (about 0.83-0.90 at 2-10 "
        "seeds for lognormal values), so a difference is only called when a test "
        "(Holm-corrected), its CI and the seed-to-seed noise floor all agree; otherwise it is "
        "labelled inconclusive."
    )


def study_split_note(data: StudyData) -> str | None:
    """How the data was split (from the best trial's config.json in MLflow), or None."""
    if data.mlflow is None or not data.complete():
        return None
    best = min(data.complete(), key=lambda t: t.objective)
    if not best.mlflow_run_id or not best.seeds:
        return None
    prefix = f"seed_{best.seeds[0].get('seed')}/" if len(best.seeds) > 1 else ""
    raw = _artifact(data, best.mlflow_run_id, prefix + "config.json")
    if raw is None:
        return None
    try:
        return json.loads(raw).get("split_note")
    except ValueError:
        return None


def _artifact(data: StudyData, run_id: str, artifact: str) -> bytes | None:
    """The bytes of one of a run's artifacts, or None when it cannot be read."""
    if data.mlflow is None:
        return None
    with tempfile.TemporaryDirectory(prefix="mixbench-report-") as tmp:
        try:
            return Path(data.mlflow.download_artifacts(run_id, artifact, tmp)).read_bytes()
        except Exception:  # missing artifact, unreachable artifact store
            return None


def _reference_rows(
    data: StudyData, metrics: Sequence[str], rows: list[list[str]], lead: int
) -> str:
    """Append the real-vs-real floor and untrained-G rows under `metrics` columns (after a
    label and `lead` empty cells); the caption sentence that explains them."""
    from benchmark.reference import REFERENCE_NOTE, reference_for_settings, reference_rows

    scale, why = reference_for_settings(data.settings, data.trainables())
    if scale is None:
        return f"No reference scale: {why}."
    labels = ("real-vs-real floor", "untrained G")
    for label, cells in zip(labels, reference_rows(scale, metrics), strict=True):
        rows.append([label, *(["–"] * lead), *cells])
    spread = ", ".join(f"{k} {v:.3g}" for k, v in scale.floor_sd.items())
    return (
        f"{REFERENCE_NOTE} (n={scale.n}, mean of {scale.draws} evaluation draws). Every trial "
        "is scored on one fixed held-out subsample and projection seed; how much the choice of "
        f"evaluation set moves a score, measured on real images, is the floor's sd over draws "
        f"({spread}); it is not in the CIs above (benchmark.reproduce includes it)."
    )


def _scale_sentence(data: StudyData, metric: str) -> str:
    """' For scale: real-vs-real floor X, untrained G Y.' when `metric` is a distance."""
    from benchmark.reference import DISTANCES, reference_for_settings, scale_text

    base = metric.removesuffix("_noise")
    if base not in DISTANCES:
        return ""
    scale, _ = reference_for_settings(data.settings, data.trainables())
    if scale is None:
        return ""
    return f" For scale ({base}, n={scale.n}): {scale_text(scale, base)}."


def _summary(ctx: _Context) -> None:
    from benchmark import stats

    data, doc = ctx.data, ctx.doc
    doc.heading("Best configuration per trainable")
    ctx.summary = summary_rows(data)
    by_key = {(r["trainable"], r["metric"]): r for r in ctx.summary}
    metrics = [m for m in SUMMARY_METRICS if any(r["metric"] == m for r in ctx.summary)]
    header = ["trainable", "best trial", "complete trials"] + [short_name(m) for m in metrics]
    rows = []
    for trainable in data.trainables():
        best = data.best(trainable)
        row = [trainable, f"#{best.number}", str(len(data.complete(trainable)))]
        for metric in metrics:
            r = by_key.get((trainable, metric))
            if r is None:
                row.append("–")
                continue
            interval = stats.Interval(
                r["mean"], r["ci_low"], r["ci_high"], r["n"], degenerate=r["degenerate"]
            )
            row.append(format_ci(interval))
        rows.append(row)
    scale_note = _reference_rows(data, metrics, rows, lead=2)
    doc.table(
        header,
        rows,
        caption="Mean over the best trial's seeds with a 95% Student-t CI (n seeds); lower is "
        f"better for every column. The best trial is picked by its mean {data.label}, so its "
        "own mean is optimistic (winner's curse): confirm with fresh seeds before claiming "
        "a gain. " + scale_note,
    )
    doc.bullets([f"`{m}`: {metric_label(m)}" for m in metrics])
    prow = [
        [t, f"#{data.best(t).number}", _params_text(data.best(t).params) or "(none searched)"]
        for t in data.trainables()
    ]
    doc.table(["trainable", "trial", "searched params of the best trial"], prow)
    if "realmix" in data.trainables():
        doc.paragraph(
            "RealMixGAN feeds real images to its generator: `W1` is measured in buffer mode (as "
            "trained), `W1 (noise mode)` with no real image reaching G. A gap between the two "
            "means part of the buffer-mode score may come from copying."
        )


def _noise_floor(ctx: _Context) -> None:
    from benchmark import stats

    data, doc = ctx.data, ctx.doc
    doc.heading("Noise floor: which differences are real?")
    floors: dict[str, float] = {}
    lines = []
    for trainable in data.trainables():
        values = seed_values(data.best(trainable), data.primary)
        if values.size >= 2:
            floors[trainable] = stats.noise_floor(values)
            lines.append(
                f"{trainable}: noise floor {_num(floors[trainable])} (2 x the sd of "
                f"{data.label} over the best trial's {values.size} seeds)"
            )
        else:
            lines.append(
                f"{trainable}: the best trial has {values.size} seed(s), so seed-to-seed spread "
                "is unknown; rerun the study with --seeds 3 or more"
            )
    doc.bullets(lines)
    doc.paragraph(
        "A difference smaller than the noise floor is what re-seeding alone can produce; such "
        "differences are labelled inconclusive whatever their p-value."
    )
    trainables = data.trainables()
    if len(trainables) > 1:
        winner = trainables[0]
        base = seed_values(data.best(winner), data.primary)
        comps, others = [], []
        for other in trainables[1:]:
            values = seed_values(data.best(other), data.primary)
            if base.size < 2 or values.size < 2:
                continue
            comps.append(stats.compare(base, values))
            others.append(other)
        if comps:
            p_holm = stats.holm([c.p_value if c.p_value is not None else 1.0 for c in comps])
            rows = []
            for other, comp, p in zip(others, comps, p_holm, strict=True):
                floor = max(floors.get(winner, 0.0), floors.get(other, 0.0))
                v = stats.verdict(comp, floor, p_adjusted=p if comp.p_value is not None else None)
                word = {"hurts": "worse", "helps": "better"}.get(v, "inconclusive")
                rows.append(
                    [
                        other,
                        format_ci(comp.ci),
                        format_p(comp.p_value),
                        format_p(p if comp.p_value is not None else None),
                        _num(floor),
                        f"{word} than {winner}" if word != "inconclusive" else word,
                    ]
                )
            doc.table(
                [
                    "trainable",
                    f"Δ{data.label} vs {winner} (best trials)",
                    "p (Welch)",
                    "p (Holm)",
                    "noise floor",
                    "verdict",
                ],  # fmt: skip
                rows,
                caption=f"Each trainable's best trial against the best overall ({winner}), "
                "seeds as replicates. 'worse' needs Holm p < 0.05, a CI excluding 0 and "
                "|Δ| above the larger noise floor of the two."
                + _scale_sentence(data, data.primary),
            )
    for trainable in trainables:
        _top_trials(ctx, trainable, floors.get(trainable))


def _top_trials(ctx: _Context, trainable: str, floor: float | None) -> None:
    from benchmark import stats

    data, doc = ctx.data, ctx.doc
    ranked = sorted(data.complete(trainable), key=lambda t: t.objective)[:TOP_TRIALS]
    if len(ranked) < 2:
        return
    best = seed_values(ranked[0], data.primary)
    comps: list[Any] = []
    for t in ranked[1:]:
        values = seed_values(t, data.primary)
        comps.append(stats.compare(best, values) if best.size >= 2 and values.size >= 2 else None)
    raw = [c.p_value if c is not None and c.p_value is not None else 1.0 for c in comps]
    p_holm = stats.holm(raw) if raw else np.zeros(0)
    rows = [[f"#{ranked[0].number}", format_ci(stats.t_ci(best)) if best.size else "–",
             "–", "–", "best"]]  # fmt: skip
    for t, comp, p in zip(ranked[1:], comps, p_holm, strict=True):
        values = seed_values(t, data.primary)
        mean = format_ci(stats.t_ci(values)) if values.size else "–"
        if comp is None or floor is None:
            rows.append([f"#{t.number}", mean, _num(t.objective - ranked[0].objective), "–",
                         "inconclusive (too few seeds)"])  # fmt: skip
            continue
        v = stats.verdict(comp, floor, p_adjusted=p if comp.p_value is not None else None)
        if v == "inconclusive" and abs(comp.diff) <= floor:
            label = "inconclusive (Δ within noise floor)"
        elif v == "inconclusive":
            label = "inconclusive (not significant)"
        else:
            label = "worse" if v == "hurts" else "better"
        rows.append([f"#{t.number}", mean, format_ci(comp.ci), format_p(p), label])
    doc.table(
        ["trial", f"{data.label} mean [95% CI]", "Δ to best [95% CI]", "p (Holm)", "verdict"],
        rows,
        caption=f"Top {len(ranked)} {trainable} trials: are they distinguishable from the best?"
        + _scale_sentence(data, data.primary),
    )


def _expected_best(ctx: _Context) -> None:
    from benchmark import figures, stats

    data, doc = ctx.data, ctx.doc
    doc.heading(f"Expected best {data.label} after n trials")
    curves = {}
    for trainable in data.trainables():
        values = [t.objective for t in data.complete(trainable)]
        curves[trainable] = stats.expected_best(values)
    values = np.concatenate([[t.objective for t in data.complete(n)] for n in curves])
    spread = bool(values.min() > 0 and values.max() / values.min() > 100)
    path = figures.expected_best_plot(
        curves,
        ctx.out / "expected_best.png",
        ylabel=data.label,
        log_x=max(len(c.n) for c in curves.values()) > 10,
        log_y=spread,
    )
    doc.figure(
        path,
        f"Expected best {data.label} after n trials per trainable (exact order statistics of "
        "the complete trials; band: 95% range over random trial orders).",
    )
    if spread:
        doc.note(
            f"Complete trials' {data.label} spans {values.min():.3g} to {values.max():.3g} (a "
            "diverging configuration, most likely), so the figure's y axis is logarithmic."
        )
    n_common = min(c.n_trials for c in curves.values())
    header = ["trainable", "complete trials N", f"E[best {data.label}] after n={n_common}"]
    rows = [[t, str(c.n_trials), _num(float(c.mean[n_common - 1]))] for t, c in curves.items()]
    if any(c.n_trials != n_common for c in curves.values()):
        header.append(f"E[best {data.label}] after n=N")
        for row, c in zip(rows, curves.values(), strict=True):
            row.append(_num(float(c.mean[-1])))
    doc.table(header, rows)
    pruned = sum(t.state == "PRUNED" for t in data.trials)
    lines = []
    if len(curves) > 1:
        at_common = min(curves, key=lambda t: curves[t].mean[n_common - 1])
        at_own = min(curves, key=lambda t: curves[t].mean[-1])
        lines.append(
            f"At an equal budget of n={n_common} trials the lowest expected best is "
            f"{at_common}'s; with each trainable's own budget it is {at_own}'s."
            + (
                " The ranking depends on the budget: a lead seen only at the full budget may "
                "come from more tuning."
                if at_common != at_own
                else ""
            )
        )
    lines.append(
        "Curves use complete trials only"
        + (f" ({pruned} pruned trial(s) left out)" if pruned else "")
        + "; at n = N a curve ends at the best observed value."
    )
    doc.bullets(lines)


def _pareto(ctx: _Context) -> None:
    from benchmark import figures

    data, doc = ctx.data, ctx.doc
    names = data.metric_names
    doc.heading(f"Pareto front: {' against '.join(short_name(m) for m in names)}")
    trials = [t for t in data.complete() if t.values and len(t.values) >= 2]
    if not trials:
        doc.note("No complete trial has two objective values.")
        return
    points = np.array([t.values[:2] for t in trials], dtype=float)
    front = np.array(
        [
            not any(
                np.all(points[j] <= points[i]) and np.any(points[j] < points[i])
                for j in range(len(points))
            )
            for i in range(len(points))
        ]
    )
    path = figures.pareto_plot(
        points, front, ctx.out / "pareto.png", xlabel=short_name(names[0]),
        ylabel=short_name(names[1]) if len(names) > 1 else "objective 2",
    )  # fmt: skip
    doc.figure(path, "Trials in the two objectives (means over seeds); red: non-dominated.")
    rows = [
        [
            f"#{t.number}",
            t.trainable or "?",
            _num(t.values[0]),
            _num(t.values[1]),
            _params_text(t.params),
        ]  # fmt: skip
        for t, on in sorted(zip(trials, front, strict=True), key=lambda p: p[0].values[0])
        if on
    ]
    doc.table(["trial", "trainable", short_name(names[0]), short_name(names[1]), "params"], rows)


def _importances(ctx: _Context) -> None:
    data, doc = ctx.data, ctx.doc
    doc.heading("Parameter importances")
    items, remarks, rough = [], [], []
    for trainable in data.trainables():
        trials = data.complete(trainable)
        result, note = _param_importances(trials)
        if note:
            remarks.append(f"{trainable}: {note}")
        if result is None:
            continue
        importances, evaluator = result
        path = importance_plot(
            importances,
            ctx.out / f"importance_{trainable}.png",
            title=f"{trainable}: {evaluator} importances ({len(trials)} trials)",
        )
        what = f"share of {data.label} variance explained per searched knob"
        items.append(
            (path, f"{trainable}: {what} (Optuna {evaluator}, {len(trials)} complete trials).")
        )
        if len(trials) < RELIABLE_IMPORTANCE_TRIALS:
            rough.append(f"{trainable} ({len(trials)})")
    if len(items) == 1:  # alone in a 3-column gallery it was shown at a third of the width
        doc.figure(*items[0])
    else:
        doc.gallery(items, columns=2)
    if rough:
        doc.note(
            f"Importances from few trials are rough: {', '.join(rough)}. They rest on a random "
            f"forest fitted to that many points; below about {RELIABLE_IMPORTANCE_TRIALS} trials "
            "read them as a hint, not a ranking."
        )
    doc.bullets(remarks)


def _param_importances(
    trials: Sequence[TrialRecord],
) -> tuple[tuple[dict[str, float], str] | None, str | None]:
    """((importances, evaluator name), note) or (None, why not)."""
    import warnings

    import optuna

    if len(trials) < MIN_IMPORTANCE_TRIALS:
        return None, (
            f"too few complete trials ({len(trials)}) for parameter importances; they need at "
            f"least {MIN_IMPORTANCE_TRIALS} (better {RELIABLE_IMPORTANCE_TRIALS}+)"
        )
    common = set.intersection(*(set(t.params) for t in trials))
    varying = sorted(k for k in common if len({repr(t.params[k]) for t in trials}) > 1)
    if not varying:
        return None, "no searched parameter varies across the complete trials"
    study = optuna.create_study(direction="minimize")
    for t in trials:
        study.add_trial(
            optuna.trial.create_trial(
                params={k: t.params[k] for k in varying},
                distributions={k: t.distributions[k] for k in varying},
                value=t.objective,
            )
        )
    conditional = sorted(set().union(*(set(t.params) for t in trials)) - common)
    note = (
        f"parameters present in only some trials (conditional branches: {', '.join(conditional)}) "
        "are left out"
        if conditional
        else None
    )
    evaluators: list[tuple[str, Callable[[], Any]]] = [
        ("fANOVA", lambda: optuna.importance.FanovaImportanceEvaluator(seed=0)),
        ("PED-ANOVA", lambda: optuna.importance.PedAnovaImportanceEvaluator()),
    ]
    errors = []
    for name, make in evaluators:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                values = optuna.importance.get_param_importances(study, evaluator=make())
        except Exception as err:  # ImportError (no scikit-learn), too few distinct points
            errors.append(f"{name}: {type(err).__name__}: {err}")
            continue
        if values and all(math.isfinite(v) for v in values.values()):
            return ({k: float(v) for k, v in values.items()}, name), note
        errors.append(f"{name}: no finite importances")
    return None, "Optuna could not compute importances (" + "; ".join(errors) + ")"


def _knobs(ctx: _Context) -> None:
    from optuna.distributions import CategoricalDistribution

    from benchmark import figures

    data, doc = ctx.data, ctx.doc
    y_label = data.label
    doc.heading("Searched knobs: slices and contours")
    doc.paragraph(
        f"One point per complete trial ({data.label} = mean over its seeds). Slices show one "
        "knob at a time with every other knob varying too, so a trend is a hint, not an "
        "effect; the ablation command measures effects."
    )
    for trainable in data.trainables():
        trials = data.complete(trainable)
        names = sorted({k for t in trials for k in t.params})
        if not names:
            continue
        doc.heading(trainable, 3)
        contours = []
        for x, y in CONTOUR_PAIRS.get(trainable, ()):
            having = [t for t in trials if x in t.params and y in t.params]
            if len(having) < 3:
                continue
            dx, dy = having[0].distributions[x], having[0].distributions[y]
            if isinstance(dx, CategoricalDistribution) or isinstance(dy, CategoricalDistribution):
                continue
            path = figures.contour_plot(
                [t.params[x] for t in having], [t.params[y] for t in having],
                [t.objective for t in having], ctx.out / f"contour_{trainable}_{x}_{y}.png",
                xlabel=x, ylabel=y, zlabel=y_label, log_x=bool(getattr(dx, "log", False)),
                log_y=bool(getattr(dy, "log", False)),
                title=f"{trainable}: {y_label} over {x} x {y}",
            )  # fmt: skip
            contours.append(
                (path, f"{trainable}: {y_label} over {x} and {y} ({len(having)} trials).")
            )
        doc.gallery(contours, columns=2)
        slices = []
        for name in names:
            having = [t for t in trials if name in t.params]
            if len({repr(t.params[name]) for t in having}) < 2:
                continue
            dist = having[0].distributions[name]
            z = [t.objective for t in having]
            file = ctx.out / f"slice_{trainable}_{_slug(name)}.png"
            if isinstance(dist, CategoricalDistribution):
                path = strip_plot(
                    [t.params[name] for t in having], z, file, param=name, ylabel=y_label,
                    title=f"{trainable}: {y_label} by {name}",
                )  # fmt: skip
            else:
                path = figures.slice_plot(
                    [t.params[name] for t in having], z, file, param_name=name,
                    log=bool(getattr(dist, "log", False)), ylabel=y_label,
                    title=f"{trainable}: {y_label} vs {name}",
                    trial_numbers=[t.number for t in having],
                )  # fmt: skip
            slices.append((path, f"{trainable}: {y_label} against {name} ({len(having)} trials)."))
        doc.gallery(slices, columns=3)
        if not contours and not slices:
            doc.paragraph("No searched knob took two different values in the complete trials.")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name)


def _history(data: StudyData, record: TrialRecord, key: str) -> np.ndarray | None:
    """(seeds, epochs) per-epoch values of `key` from MLflow (NaN where not logged)."""
    if data.mlflow is None or not record.mlflow_run_id or not record.seeds:
        return None
    epochs = int(data.settings.get("epochs") or 0)
    if epochs < 1:
        return None
    arr = np.full((len(record.seeds), epochs), np.nan)
    multi = len(record.seeds) > 1
    for i, summary in enumerate(record.seeds):
        metric = (f"seed_{summary.get('seed')}/" if multi else "") + key
        try:
            history = data.mlflow.get_metric_history(record.mlflow_run_id, metric)
        except Exception:
            return None
        for m in history:
            if 1 <= m.step <= epochs:
                arr[i, m.step - 1] = m.value
    return arr if np.isfinite(arr).any() else None


def _curves(ctx: _Context) -> None:
    from benchmark import figures

    data, doc = ctx.data, ctx.doc
    doc.heading("Training curves of the best trials")
    g, d, dist, w1 = {}, {}, {}, {}
    for trainable in data.trainables():
        best = data.best(trainable)
        label = f"{trainable} #{best.number}"
        for key, target in (("g_loss", g), ("d_loss", d)):
            arr = _history(data, best, key)
            if arr is not None:
                target[label] = arr
        for key, target in (("sliced_w2", dist), ("w1", w1)):
            for suffix, tag in (("", ""), ("_noise", " noise mode")):
                arr = _history(data, best, key + suffix)
                if arr is not None and (np.isfinite(arr).sum(axis=1) >= 2).any():
                    target[label + tag] = arr
        # without MLflow: the sliced W2 values reported for pruning (pareto: the curve attr),
        # one per scored epoch, seed after seed
        reported = best.intermediate or {
            int(k): (math.nan if v is None else v) for k, v in best.curve.items()
        }
        if not any(k.startswith(label) for k in dist) and reported and best.seeds:
            steps = [reported[k] for k in sorted(reported)]
            per_seed = len(steps) // len(best.seeds)
            if per_seed >= 2 and per_seed * len(best.seeds) == len(steps):
                dist[label] = np.array(steps, dtype=float).reshape(len(best.seeds), per_seed)
    if g and d:
        path = figures.loss_curves(
            g, d, ctx.out / "losses_best.png", xlabel="epoch",
            title="Per-epoch mean losses of the best trials (band: ±1 sd over seeds)",
        )  # fmt: skip
        doc.figure(path, "Generator and discriminator loss per epoch (mean of the epoch's steps).")
    if w1:
        path = figures.metric_curves(
            w1, ctx.out / "w1_best.png", ylabel="W1", band="minmax", title="W1 per epoch"
        )
        doc.figure(path, f"Exact W1 per epoch of the best trials ({metric_label('w1')}).")
    elif data.settings.get("epochs", 1) > 1:
        doc.paragraph(
            "Exact W1 was computed only at the last epoch (setting exact_every_epoch=False), so "
            "the per-epoch curve below uses sliced W2."
        )
    if dist:
        path = figures.metric_curves(
            dist, ctx.out / "sliced_w2_best.png", ylabel="sliced W2", band="minmax",
            title="Sliced W2 per epoch (band: range over seeds)",
        )  # fmt: skip
        doc.figure(path, f"Sliced W2 per epoch of the best trials ({metric_label('sliced_w2')}).")
    if not (g or dist or w1):
        doc.paragraph("No per-epoch history is available (MLflow not readable, one epoch, or no "
                      "scored epoch).")  # fmt: skip


def _real_samples(ctx: _Context) -> tuple[Path, str] | None:
    """A grid of real held-out samples, drawn like the generated grids, for comparison (None
    with a note when the study's dataset cannot be loaded here)."""
    from benchmark import figures
    from benchmark.data import load_dataset

    s = ctx.data.settings
    name = s.get("dataset")
    if not name:
        return None
    try:
        real = load_dataset(
            name, data_dir=s.get("data_dir"), heldout_size=int(s.get("heldout_size") or 2000),
            train_size=s.get("train_size"), download=False,
        )  # fmt: skip
    except Exception as err:  # the data may live on another machine: say so, go on
        ctx.data.notes.append(f"real {name} samples not shown: {err}")
        return None
    path = figures.sample_grid(
        real.heldout[:64].cpu().numpy(), ctx.out / "samples_real.png",
        title=f"real {name} (held-out split)", reference_points=real.extra.get("centers"),
    )  # fmt: skip
    return path, f"Real {name} images from the held-out split the distances are measured on."


def _samples(ctx: _Context) -> None:
    data, doc = ctx.data, ctx.doc
    doc.heading("Samples of the best trials")
    grids, losses = [], []
    real = _real_samples(ctx)
    if real is not None:
        grids.append(real)
    for trainable in data.trainables():
        best = data.best(trainable)
        if not best.mlflow_run_id or not best.seeds:
            continue
        seed = best.seeds[0].get("seed")
        prefix = f"seed_{seed}/" if len(best.seeds) > 1 else ""
        for artifact, target, what in (
            ("samples.png", f"samples_{trainable}.png",
             "buffer mode (as trained)" if trainable == "realmix" else "samples"),
            ("samples_noise.png", f"samples_{trainable}_noise.png",
             "noise mode (no real data reaches G)"),
            ("losses.png", f"losses_{trainable}.png", "per-step losses"),
        ):  # fmt: skip
            raw = _artifact(data, best.mlflow_run_id, prefix + artifact)
            if raw is None:
                continue
            (ctx.out / target).write_bytes(raw)
            item = (
                ctx.out / target,
                f"{trainable}, best trial #{best.number}, seed {seed}: {what}.",
            )
            (losses if artifact == "losses.png" else grids).append(item)
    doc.gallery(grids, columns=3)
    doc.gallery(losses, columns=2)
    if len(grids) <= (real is not None):
        doc.paragraph("No sample grid could be read from MLflow for the best trials.")


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argparse parser."""
    from benchmark.cli import HelpFormatter
    from benchmark.study import DEFAULT_STORAGE

    p = argparse.ArgumentParser(
        prog="python -m benchmark.report",
        description="Tables and figures of a study, with t CIs over seeds.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--study", required=True, help="study name (as printed by benchmark.study)")
    p.add_argument(
        "--storage",
        default=DEFAULT_STORAGE,
        help="Optuna storage: a journal file or a database URL",
    )
    p.add_argument(
        "--tracking-uri", default=None, help="MLflow tracking URI (default: the study's own)"
    )
    p.add_argument(
        "--out",
        default=None,
        help=f"folder the report is written into (default: {DEFAULT_OUT}/<study>)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (2 for an unknown study or storage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        data = load_study_data(args.study, args.storage, tracking_uri=args.tracking_uri)
    except ReportError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    folder = Path(args.out) if args.out is not None else DEFAULT_OUT / args.study
    try:
        md, page = build_report(data, folder)
    except OSError as err:
        print(
            f"{parser.prog}: error: cannot write the report to {str(folder)!r} "
            f"({err.strerror or err}: {err.filename or folder}); pass --out a writable folder",
            file=sys.stderr,
        )
        return 2
    print(f"{args.study}: {len(data.complete())} complete trial(s) of {len(data.trials)}")
    for note in dict.fromkeys(data.notes):
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {page}\n      {md}\n      {folder / 'summary.csv'}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    sys.exit(main())

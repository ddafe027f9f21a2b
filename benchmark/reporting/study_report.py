"""The study report's sections: each computes its numbers from a `StudyData`, then renders
them into a `Document` (tables, figures, notes); `build_report` writes them all.

What it shows: the best configuration per trainable with Student-t CIs over seeds; how far
apart the variants' bests are compared with the seed-to-seed noise floor; expected best
after n trials per variant (did a variant win, or was it tuned longer?); parameter
importances, slices and contours of the searched knobs; the Pareto front of pareto studies;
curves and sample grids of the best trials.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution

from benchmark import records
from benchmark.data import load_dataset
from benchmark.metrics.reference import (
    DISTANCES,
    REFERENCE_NOTE,
    reference_for_settings,
    reference_rows,
    scale_text,
)
from benchmark.reporting import figures, stats
from benchmark.reporting.document import Document, format_ci, format_p, num, params_text, write_csv
from benchmark.reporting.labels import metric_label, short_name
from benchmark.reporting.load import (
    StudyData,
    TrialRecord,
    artifact,
    history,
    seed_values,
    study_split_note,
)

__all__ = ["CONTOUR_PAIRS", "SUMMARY_METRICS", "build_report", "summary_rows"]

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


def summary_rows(data: StudyData, metrics: Sequence[str] = SUMMARY_METRICS) -> list[dict]:
    """One row per (trainable, metric) for each trainable's best trial: mean and 95%
    Student-t CI over seeds (`stats.t_ci`; n=1: no interval, flagged degenerate)."""
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
        write_csv(folder / "summary.csv", [])
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
    write_csv(folder / "summary.csv", ctx.summary)
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


def _reference_rows(
    data: StudyData, metrics: Sequence[str], rows: list[list[str]], lead: int
) -> str:
    """Append the real-vs-real floor and untrained-G rows under `metrics` columns (after a
    label and `lead` empty cells); the caption sentence that explains them."""
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
    base = metric.removesuffix("_noise")
    if base not in DISTANCES:
        return ""
    scale, _ = reference_for_settings(data.settings, data.trainables())
    if scale is None:
        return ""
    return f" For scale ({base}, n={scale.n}): {scale_text(scale, base)}."


def _summary(ctx: _Context) -> None:
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
        [t, f"#{data.best(t).number}", params_text(data.best(t).params) or "(none searched)"]
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
    data, doc = ctx.data, ctx.doc
    doc.heading("Noise floor: which differences are real?")
    floors: dict[str, float] = {}
    lines = []
    for trainable in data.trainables():
        values = seed_values(data.best(trainable), data.primary)
        if values.size >= 2:
            floors[trainable] = stats.noise_floor(values)
            lines.append(
                f"{trainable}: noise floor {num(floors[trainable])} (2 x the sd of "
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
    rows = _versus_winner_rows(data, floors)
    if rows:
        winner = data.trainables()[0]
        doc.table(
            ["trainable", f"Δ{data.label} vs {winner} (best trials)", "p (Welch)", "p (Holm)",
             "noise floor", "verdict"],
            rows,
            caption=f"Each trainable's best trial against the best overall ({winner}), "
            "seeds as replicates. 'worse' needs Holm p < 0.05, a CI excluding 0 and "
            "|Δ| above the larger noise floor of the two."
            + _scale_sentence(data, data.primary),
        )  # fmt: skip
    for trainable in data.trainables():
        _top_trials(ctx, trainable, floors.get(trainable))


def _versus_winner_rows(data: StudyData, floors: dict[str, float]) -> list[list[str]]:
    """Each other trainable's best trial against the overall winner's (both with 2+ seeds)."""
    trainables = data.trainables()
    if len(trainables) < 2:
        return []
    winner = trainables[0]
    base = seed_values(data.best(winner), data.primary)
    others, groups = [], []
    for other in trainables[1:]:
        values = seed_values(data.best(other), data.primary)
        if base.size >= 2 and values.size >= 2:
            others.append(other)
            groups.append(values)
    pair_floors = [max(floors.get(winner, 0.0), floors.get(o, 0.0)) for o in others]
    rows = []
    for other, ranked in zip(others, stats.against_best(base, groups, pair_floors), strict=True):
        assert ranked is not None  # every candidate passed has 2+ seeds
        word = {"hurts": "worse", "helps": "better"}.get(ranked.verdict, "inconclusive")
        rows.append(
            [
                other,
                format_ci(ranked.comparison.ci),
                format_p(ranked.comparison.p_value),
                format_p(ranked.p_holm),
                num(ranked.floor),
                f"{word} than {winner}" if word != "inconclusive" else word,
            ]
        )
    return rows


def _top_trials(ctx: _Context, trainable: str, floor: float | None) -> None:
    data, doc = ctx.data, ctx.doc
    ranked = sorted(data.complete(trainable), key=lambda t: t.objective)[:TOP_TRIALS]
    if len(ranked) < 2:
        return
    best = seed_values(ranked[0], data.primary)
    runs = [seed_values(t, data.primary) for t in ranked[1:]]
    usable = [v if best.size >= 2 and v.size >= 2 else None for v in runs]
    judged = stats.against_best(best, usable, [floor] * len(usable))
    rows = [[f"#{ranked[0].number}", format_ci(stats.t_ci(best)) if best.size else "–",
             "–", "–", "best"]]  # fmt: skip
    for t, values, r in zip(ranked[1:], runs, judged, strict=True):
        mean = format_ci(stats.t_ci(values)) if values.size else "–"
        if r is None or floor is None:
            rows.append([f"#{t.number}", mean, num(t.objective - ranked[0].objective), "–",
                         "inconclusive (too few seeds)"])  # fmt: skip
            continue
        if r.verdict == "inconclusive" and abs(r.comparison.diff) <= floor:
            label = "inconclusive (Δ within noise floor)"
        elif r.verdict == "inconclusive":
            label = "inconclusive (not significant)"
        else:
            label = "worse" if r.verdict == "hurts" else "better"
        p = r.p_holm if r.p_holm is not None else 1.0
        rows.append([f"#{t.number}", mean, format_ci(r.comparison.ci), format_p(p), label])
    doc.table(
        ["trial", f"{data.label} mean [95% CI]", "Δ to best [95% CI]", "p (Holm)", "verdict"],
        rows,
        caption=f"Top {len(ranked)} {trainable} trials: are they distinguishable from the best?"
        + _scale_sentence(data, data.primary),
    )


def _expected_best(ctx: _Context) -> None:
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
    rows = [[t, str(c.n_trials), num(float(c.mean[n_common - 1]))] for t, c in curves.items()]
    if any(c.n_trials != n_common for c in curves.values()):
        header.append(f"E[best {data.label}] after n=N")
        for row, c in zip(rows, curves.values(), strict=True):
            row.append(num(float(c.mean[-1])))
    doc.table(header, rows)
    doc.bullets(_budget_lines(data, curves, n_common))


def _budget_lines(data: StudyData, curves: dict[str, Any], n_common: int) -> list[str]:
    """Which trainable leads at an equal budget and at its own, and what the curves leave out."""
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
    return lines


def _pareto(ctx: _Context) -> None:
    data, doc = ctx.data, ctx.doc
    names = data.metric_names
    doc.heading(f"Pareto front: {' against '.join(short_name(m) for m in names)}")
    trials = [t for t in data.complete() if t.values and len(t.values) >= 2]
    if not trials:
        doc.note("No complete trial has two objective values.")
        return
    points = np.array([t.values[:2] for t in trials], dtype=float)
    front = np.array([t.number in data.pareto for t in trials])
    path = figures.pareto_plot(
        points, front, ctx.out / "pareto.png", xlabel=short_name(names[0]),
        ylabel=short_name(names[1]) if len(names) > 1 else "objective 2",
    )  # fmt: skip
    doc.figure(path, "Trials in the two objectives (means over seeds); red: non-dominated.")
    rows = [
        [
            f"#{t.number}",
            t.trainable or "?",
            num(t.values[0]),
            num(t.values[1]),
            params_text(t.params),
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
        path = figures.importance_plot(
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
    data, doc = ctx.data, ctx.doc
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
        contours = _contours(ctx, trainable, trials)
        doc.gallery(contours, columns=2)
        slices = _slices(ctx, trainable, trials, names)
        doc.gallery(slices, columns=3)
        if not contours and not slices:
            doc.paragraph("No searched knob took two different values in the complete trials.")


def _contours(ctx: _Context, trainable: str, trials: list[TrialRecord]) -> list[tuple[Path, str]]:
    """Contour figures of the trainable's CONTOUR_PAIRS (both numeric, 3+ trials having both)."""
    y_label = ctx.data.label
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
        contours.append((path, f"{trainable}: {y_label} over {x} and {y} ({len(having)} trials)."))
    return contours


def _slices(
    ctx: _Context, trainable: str, trials: list[TrialRecord], names: list[str]
) -> list[tuple[Path, str]]:
    """One slice (numeric) or strip (categorical) figure per knob that took 2+ values."""
    y_label = ctx.data.label
    slices = []
    for name in names:
        having = [t for t in trials if name in t.params]
        if len({repr(t.params[name]) for t in having}) < 2:
            continue
        dist = having[0].distributions[name]
        z = [t.objective for t in having]
        file = ctx.out / f"slice_{trainable}_{_slug(name)}.png"
        if isinstance(dist, CategoricalDistribution):
            path = figures.strip_plot(
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
    return slices


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name)


def _best_curves(data: StudyData) -> tuple[dict, dict, dict, dict]:
    """Per-epoch (seeds, epochs) arrays of the best trials: G loss, D loss, sliced W2, W1."""
    g: dict[str, np.ndarray] = {}
    d: dict[str, np.ndarray] = {}
    dist: dict[str, np.ndarray] = {}
    w1: dict[str, np.ndarray] = {}
    for trainable in data.trainables():
        best = data.best(trainable)
        label = f"{trainable} #{best.number}"
        for key, target in (("g_loss", g), ("d_loss", d)):
            arr = history(data, best, key)
            if arr is not None:
                target[label] = arr
        for key, target in (("sliced_w2", dist), ("w1", w1)):
            for suffix, tag in (("", ""), ("_noise", " noise mode")):
                arr = history(data, best, key + suffix)
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
    return g, d, dist, w1


def _curves(ctx: _Context) -> None:
    data, doc = ctx.data, ctx.doc
    doc.heading("Training curves of the best trials")
    g, d, dist, w1 = _best_curves(data)
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
        multi = len(best.seeds) > 1
        for name, target, what in (
            ("samples.png", f"samples_{trainable}.png",
             "buffer mode (as trained)" if trainable == "realmix" else "samples"),
            ("samples_noise.png", f"samples_{trainable}_noise.png",
             "noise mode (no real data reaches G)"),
            ("losses.png", f"losses_{trainable}.png", "per-step losses"),
        ):  # fmt: skip
            raw = artifact(data, best.mlflow_run_id, records.seed_artifact(seed, multi, name))
            if raw is None:
                continue
            (ctx.out / target).write_bytes(raw)
            item = (
                ctx.out / target,
                f"{trainable}, best trial #{best.number}, seed {seed}: {what}.",
            )
            (losses if name == "losses.png" else grids).append(item)
    doc.gallery(grids, columns=3)
    doc.gallery(losses, columns=2)
    if len(grids) <= (real is not None):
        doc.paragraph("No sample grid could be read from MLflow for the best trials.")

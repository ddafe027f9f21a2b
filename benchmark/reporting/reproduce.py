"""The reproduction report: a paper's numbers beside the measured ones, the scale they share,
and whether the paper's claim holds, with t CIs over seeds and the evaluation-set variance.

`python -m benchmark.reproduce` trains the runs and calls `write_outputs` (table.csv,
results.json, summary.json, figures, report.md, report.html) and `print_summary`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.artifacts import json_safe
from benchmark.reporting import figures, stats
from benchmark.reporting.claims import (
    DISTANCES,
    EVAL_DRAWS,
    SCALE_TOLERANCE,
    PaperClaim,
    SeedRun,
    data_line,
    paper_params,
    run_values,
)
from benchmark.reporting.document import Document, format_p, num
from benchmark.reporting.labels import metric_label, short_name

__all__ = [
    "ScaleMatch",
    "claim_rows",
    "claim_text",
    "eval_share",
    "paper_vs_floor",
    "print_summary",
    "scale_match",
    "scale_text",
    "side_by_side",
    "summary_dict",
    "write_outputs",
]


@dataclass(frozen=True)
class ScaleMatch:
    """Which measured distance is on the paper's scale, in orders of magnitude."""

    distance: str | None
    """The measured distance within SCALE_TOLERANCE orders of magnitude, or None."""
    closest: str
    """The distance closest to the paper's scale (whether or not within tolerance)."""
    orders: dict[str, float]
    """Distance -> mean over both trainables of log10(measured / paper)."""


def scale_match(paper: PaperClaim, runs: Mapping[str, Sequence[SeedRun]]) -> ScaleMatch:
    """Compare every measured distance with the paper's W distance in orders of magnitude.

    For each distance: log10(measured mean / paper value) for the baseline and the treatment
    (buffer mode, as trained), averaged. The closest is on the paper's scale when its
    |orders| <= SCALE_TOLERANCE.
    """
    reported = paper.reported["w_distance"]
    orders: dict[str, float] = {}
    for distance in DISTANCES:
        logs = []
        for trainable in (paper.baseline, paper.treatment):
            values = run_values(runs[trainable], distance)
            if values.size and values.mean() > 0:
                logs.append(math.log10(values.mean() / reported[trainable]))
        if logs:
            orders[distance] = float(np.mean(logs))
    if not orders:
        raise ValueError("no finite measured distance: every run diverged")
    closest = min(orders, key=lambda d: abs(orders[d]))
    within = closest if abs(orders[closest]) <= SCALE_TOLERANCE else None
    return ScaleMatch(within, closest, orders)


def _pair_floor(a: np.ndarray, b: np.ndarray) -> float | None:
    """2 x the pooled seed sd of the two groups; None when neither has 2 seeds (the spread is
    unknown, which is not a floor of 0)."""
    try:
        return stats.pooled_noise_floor([a, b])
    except ValueError:
        return None


def claim_rows(paper: PaperClaim, runs: Mapping[str, Sequence[SeedRun]]) -> list[dict[str, Any]]:
    """Does the treatment have a lower distance than the baseline? One row per distance and
    treatment sampling mode: difference (treatment - baseline) with a 95% Welch t CI,
    Welch p, Holm over all rows, noise floor (2 x the pooled seed sd) and a verdict:
    'holds' (stats 'helps'), 'contradicted' ('hurts') or 'inconclusive'."""
    base_runs, treat_runs = runs[paper.baseline], runs[paper.treatment]
    modes = [("", "buffer")]
    if any("w1_noise" in r.final for r in treat_runs):
        modes.append(("_noise", "noise"))
    pending = []
    for distance in DISTANCES:
        for suffix, mode in modes:
            a, b = run_values(base_runs, distance), run_values(treat_runs, distance + suffix)
            if a.size == 0 or b.size == 0:
                continue
            comp = stats.compare(a, b)
            pending.append((distance, mode, a, b, comp))
    p_holm = stats.holm([c.p_value if c.p_value is not None else 1.0 for *_, c in pending])
    rows = []
    for (distance, mode, a, b, comp), p in zip(pending, p_holm, strict=True):
        floor = _pair_floor(a, b)
        adjusted = float(p) if comp.p_value is not None else None
        v = None
        if adjusted is not None and floor is not None:
            v = stats.verdict(comp, floor, p_adjusted=adjusted)
        rows.append(
            {
                "distance": distance,
                "mode": mode,
                "baseline_mean": comp.mean_a,
                "treatment_mean": comp.mean_b,
                "diff": comp.diff,
                "ci_low": comp.ci.low,
                "ci_high": comp.ci.high,
                "n_baseline": comp.n_a,
                "n_treatment": comp.n_b,
                "degenerate": comp.ci.degenerate,
                "p": comp.p_value,
                "p_holm": adjusted,
                "noise_floor": floor,
                "verdict": {"helps": "holds", "hurts": "contradicted"}.get(
                    v or "inconclusive", "inconclusive"
                ),
            }
        )
    return rows


def side_by_side(
    paper: PaperClaim, runs: Mapping[str, Sequence[SeedRun]], reference: Any = None
) -> list[dict]:
    """The table: one row per measured quantity with the paper's values beside it.

    Columns: quantity, paper_quantity, paper_<baseline>, paper_<treatment>, then for the
    baseline, the treatment (buffer mode) and the treatment in noise mode: mean, ci_low,
    ci_high, n (Student t over seeds); orders_<baseline> / orders_<treatment> =
    log10(measured / paper) for the distances; and with a `reference.ReferenceScale`, for the
    distances: floor (real vs real), floor_sd and ceiling (untrained G, the lowest over the
    sampling modes measured).
    """
    b, t = paper.baseline, paper.treatment
    rows = []
    quantities = [(d, "w_distance") for d in DISTANCES] + [
        ("g_loss", "g_loss"),
        ("d_loss", "d_loss"),
    ]
    for key, reported in quantities:
        row: dict[str, Any] = {
            "quantity": key,
            "paper_quantity": reported,
            f"paper_{b}": paper.reported[reported][b],
            f"paper_{t}": paper.reported[reported][t],
        }
        columns = [(b, key, b), (t, key, t)]
        if any(key + "_noise" in r.final for r in runs[t]):
            columns.append((t, key + "_noise", f"{t}_noise"))
        for trainable, metric, name in columns:
            values = run_values(runs[trainable], metric)
            if values.size == 0:
                row.update({f"{name}_mean": None, f"{name}_ci_low": None,
                            f"{name}_ci_high": None, f"{name}_n": 0})  # fmt: skip
                continue
            ci = stats.t_ci(values)
            row.update(
                {
                    f"{name}_mean": ci.estimate,
                    f"{name}_ci_low": ci.low,
                    f"{name}_ci_high": ci.high,
                    f"{name}_n": ci.n,
                }
            )
        if reported == "w_distance" and reference is not None:
            row["floor"] = reference.floor.get(key)
            row["floor_sd"] = reference.floor_sd.get(key)
            row["ceiling"] = reference.ceiling_of(key)
        if reported == "w_distance":
            for trainable in (b, t):
                mean = row.get(f"{trainable}_mean")
                ok = mean is not None and mean > 0
                ref = paper.reported[reported][trainable]
                row[f"orders_{trainable}"] = math.log10(mean / ref) if ok else None
        rows.append(row)
    return rows


def _stack(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Rows of unequal length (a diverged seed) padded with NaN into one (seeds, T) array."""
    width = max(len(a) for a in arrays)
    out = np.full((len(arrays), width), np.nan)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return out


def _curve(runs: Sequence[SeedRun], key: str, epochs: int) -> np.ndarray | None:
    out = np.full((len(runs), epochs), np.nan)
    for i, r in enumerate(runs):
        for h in r.history:
            e = int(h["epoch"])
            if key in h and 1 <= e <= epochs:
                out[i, e - 1] = h[key]
    return out if (np.isfinite(out).sum(axis=1) >= 1).any() else None


def _model_curves(
    paper: PaperClaim,
    settings: Any,
    runs: Mapping[str, Sequence[SeedRun]],
    metric: str,
    *,
    keys: bool = False,
) -> dict[str, np.ndarray]:
    """(seeds, epochs) curves of `metric` for the baseline, the treatment and the treatment's
    noise mode, those that have it; keyed by figure label, or by summary key (`keys`)."""
    b, t = paper.baseline, paper.treatment
    lb, lt = paper.labels[b], paper.labels[t]
    wanted = (
        (b if keys else lb, b, metric),
        (t if keys else f"{lt} buffer", t, metric),
        (f"{t}_noise" if keys else f"{lt} noise", t, metric + "_noise"),
    )
    curves = {}
    for name, trainable, key in wanted:
        arr = _curve(runs[trainable], key, settings.epochs)
        if arr is not None:
            curves[name] = arr
    return curves


def write_outputs(
    paper: PaperClaim,
    settings: Any,
    data: Any,
    runs: Mapping[str, Sequence[SeedRun]],
    out: str | Path,
    reference: Any = None,
) -> tuple[Path, Path, list[dict], ScaleMatch, list[dict]]:
    """Write table.csv, results.json, summary.json, figures, report.md and report.html into
    `out`; `reference` (a `reference.ReferenceScale`) puts the floor and ceiling beside every
    distance."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    table = side_by_side(paper, runs, reference)
    pd.DataFrame(table).to_csv(folder / "table.csv", index=False)
    scale = scale_match(paper, runs)
    claims = claim_rows(paper, runs)
    line = data_line(paper, settings, data)
    floor_words = paper_vs_floor(paper, reference) if reference is not None else None
    spread = eval_share(runs)
    summary = summary_dict(paper, settings, data, runs, table, claims, reference)
    summary["paper_vs_floor"] = floor_words
    summary["eval_share"] = spread
    summary["learning_curves"] = learning_curves(paper, settings, runs)
    (folder / "summary.json").write_text(json.dumps(json_safe(summary), indent=2) + "\n")
    results = _results_dict(paper, settings, runs, line, table, scale, claims, reference)
    (folder / "results.json").write_text(json.dumps(json_safe(results), indent=2) + "\n")
    doc = Document(f"Reproducing {paper.name}: {paper.labels[paper.baseline]} vs "
                   f"{paper.labels[paper.treatment]}")  # fmt: skip
    doc.note("Data of this run: " + line + ".")
    doc.heading("Bottom line")
    doc.bullets(
        [scale_text(paper, scale, short=True), *claim_text(paper, scale, claims)]
        + ([floor_words] if floor_words else [])
    )
    _hypothesis(doc, paper)
    _measured(doc, paper, table, spread)
    doc.heading("Which distance is on the paper's scale?")
    doc.paragraph(scale_text(paper, scale))
    _claims(doc, paper, claims)
    _figures(doc, paper, settings, data, runs, folder, reference)
    doc.heading("Settings")
    doc.bullets(
        [f"{paper.labels[x]} params: `{json.dumps(paper_params(paper, x))}`"
         for x in (paper.baseline, paper.treatment)]
        + [f"settings: `{json.dumps(json_safe(settings.__dict__))}`"]
    )  # fmt: skip
    md, page = doc.write(folder)
    return md, page, table, scale, claims


def _results_dict(
    paper: PaperClaim,
    settings: Any,
    runs: Mapping[str, Sequence[SeedRun]],
    line: str,
    table: list[dict],
    scale: ScaleMatch,
    claims: list[dict],
    reference: Any,
) -> dict[str, Any]:
    """results.json: the paper's numbers, every per-seed number, the table and the claims."""
    return {
        "experiment": paper.name,
        "source": paper.source,
        "paper": {k: dict(v) for k, v in paper.reported.items()},
        "data": line,
        "settings": settings.__dict__,
        "runs": {
            k: [
                {
                    "seed": r.seed,
                    "status": r.status,
                    "final": r.final,
                    "history": r.history,
                    "evaluated": r.evaluated,
                    "eval_sd": r.eval_sd,
                    "seconds": r.seconds,
                }  # fmt: skip
                for r in v
            ]
            for k, v in runs.items()
        },
        "table": table,
        "scale": scale.__dict__,
        "claims": claims,
        "reference": None if reference is None else reference.to_dict(),
    }


def _hypothesis(doc: Document, paper: PaperClaim) -> None:
    """The paper's source, setting and numbers."""
    b, t = paper.baseline, paper.treatment
    doc.heading("The hypothesis: the paper's numbers")
    doc.paragraph(
        f"Source: {paper.source}. Trained on the full {paper.dataset} training split "
        f"({paper.train_images:,} images) for {paper.epochs} epochs. Claim tested: "
        f"{paper.claim}."
    )
    doc.table(
        ["quantity", paper.labels[b], paper.labels[t]],
        [
            [q, f"{v[b]:.4f}", f"{v[t]:.4f}"]
            for q, v in (
                ("W distance", paper.reported["w_distance"]),
                ("G loss", paper.reported["g_loss"]),
                ("D loss", paper.reported["d_loss"]),
            )
        ],
    )


def _measured(
    doc: Document,
    paper: PaperClaim,
    table: list[dict],
    spread: Mapping[str, Mapping[str, float]],
) -> None:
    """The side-by-side table of measured and reported numbers."""
    b, t = paper.baseline, paper.treatment
    lb, lt = paper.labels[b], paper.labels[t]
    doc.heading("The result: measured side by side")
    rows = []
    for r in table:
        cells = [r["quantity"], _PAPER_NAMES[r["paper_quantity"]], f"{r[f'paper_{b}']:.4f}",
                 f"{r[f'paper_{t}']:.4f}"]  # fmt: skip
        for name in (b, t, f"{t}_noise"):
            cells.append(_ci_cell(r, name))
        cells.append(num(r.get("floor")) + " / " + num(r.get("ceiling")))
        cells.append(
            " / ".join(
                "–" if r.get(f"orders_{x}") is None else f"{r[f'orders_{x}']:+.2f}" for x in (b, t)
            )
            if r["paper_quantity"] == "w_distance"
            else "–"
        )
        rows.append(cells)
    doc.table(
        ["measured", "paper's", f"paper {lb}", f"paper {lt}", f"measured {lb}",
         f"measured {lt} (buffer)", f"measured {lt} (noise)",
         "real-vs-real floor / untrained G", "log10(measured/paper)"],
        rows,
        caption="Measured: mean over seeds [95% Student-t CI] (n seeds; n=1: no CI), last "
        f"epoch; each seed's distance is its mean over {EVAL_DRAWS} random evaluation sets "
        "(held-out subsample, generated samples, projections), so the interval includes "
        "evaluation-set variance. Losses are the mean over the last epoch's steps. Floor: two "
        "independent sets of n held-out real images (what a perfect generator scores); "
        "untrained G: a freshly initialised generator; both on the same split and n. The last "
        "column is how many orders of magnitude each measured distance lies from the paper's "
        f"W distance ({lb} / {lt}).",
    )  # fmt: skip
    if spread:
        doc.paragraph(_share_text(spread))
    doc.bullets([f"`{k}`: {metric_label(k)}" for k in DISTANCES])


def _claims(doc: Document, paper: PaperClaim, claims: list[dict]) -> None:
    """The claim's table: one row per distance and sampling mode, with its verdict."""
    lb, lt = paper.labels[paper.baseline], paper.labels[paper.treatment]
    doc.heading(f"Does the claim hold? ({paper.claim})")
    crow = [
        [
            c["distance"],
            c["mode"],
            num(c["baseline_mean"]),
            num(c["treatment_mean"]),
            f"{num(c['diff'])} [{num(c['ci_low'])}, {num(c['ci_high'])}]"
            + (" (n=1, no CI)" if c["degenerate"] else ""),
            format_p(c["p_holm"]),
            num(c["noise_floor"]),
            c["verdict"],
        ]  # fmt: skip
        for c in claims
    ]
    doc.table(
        ["distance", f"{lt} mode", lb, lt, f"Δ {lt} − {lb} [95% Welch t CI]", "p (Welch, Holm)",
         "noise floor", "verdict"],
        crow,
        caption="'holds' needs Holm p < 0.05, a CI below 0 and |Δ| above the noise floor "
        "(2 x pooled seed sd); 'contradicted' the same with Δ > 0; else inconclusive. Noise "
        "mode: RealMix sampled with no real image reaching G.",
    )  # fmt: skip


def _figures(
    doc: Document,
    paper: PaperClaim,
    settings: Any,
    data: Any,
    runs: Mapping[str, Sequence[SeedRun]],
    folder: Path,
    reference: Any,
) -> None:
    """Loss curves, the evolution of every distance and the sample grids."""
    b, t = paper.baseline, paper.treatment
    lb, lt = paper.labels[b], paper.labels[t]
    doc.heading("Figures")
    steps = max(1, int(data.train.shape[0]) // settings.batch_size)
    g = {lb: _stack([r.g_losses for r in runs[b]]), lt: _stack([r.g_losses for r in runs[t]])}
    d = {lb: _stack([r.d_losses for r in runs[b]]), lt: _stack([r.d_losses for r in runs[t]])}
    path = figures.loss_curves(
        g, d, folder / "losses.png", smooth=steps, xlabel="step",
        title=f"Losses per step (mean ± 1 sd over {settings.seeds} seeds)",
    )  # fmt: skip
    doc.figure(
        path, f"Per-step G and D losses; bold: moving average over one epoch ({steps} steps)."
    )
    doc.gallery(_evolution(paper, settings, runs, folder, reference), columns=2)
    doc.gallery(_sparse_evolution(paper, settings, runs, folder), columns=2)
    doc.gallery(_sample_grids(paper, settings, data, runs, folder), columns=3)


def _evolution(
    paper: PaperClaim,
    settings: Any,
    runs: Mapping[str, Sequence[SeedRun]],
    folder: Path,
    reference: Any,
) -> list[tuple[Path, str]]:
    """One figure per distance: its value per epoch, with the floor and untrained-G lines."""
    evolution = []
    for distance in DISTANCES:
        curves = _model_curves(paper, settings, runs, distance)
        if not curves:
            continue
        width = next(iter(curves.values())).shape[1]
        if reference is not None and distance in reference.floor:
            # flat lines: where a perfect generator and an untrained one would score
            curves["real-vs-real floor"] = np.full(width, reference.floor[distance])
            ceiling = reference.ceiling_of(distance)
            if ceiling is not None:
                curves["untrained G"] = np.full(width, ceiling)
        path = figures.metric_curves(
            curves, folder / f"evolution_{distance}.png", ylabel=distance, band="minmax",
            title=f"{distance} per epoch (band: range over seeds)",
        )  # fmt: skip
        evolution.append(
            (
                path,
                f"Evolution of {distance} ({metric_label(distance)}); flat lines: the "
                "real-vs-real floor and an untrained generator, same split and n.",
            )
        )
    return evolution


SPARSE_CURVES = ("cfid", "classes_covered")
"""Metrics scored only at some epochs (`--extra-every K`), drawn at the epochs that have them."""


def learning_curves(
    paper: PaperClaim, settings: Any, runs: Mapping[str, Sequence[SeedRun]]
) -> dict[str, Any]:
    """{metric: {variant or 'realmix_noise': {epochs, mean, min, max, n}}} for the metrics of
    SPARSE_CURVES at the epochs they were scored (empty without --extra-every)."""
    out: dict[str, Any] = {}
    for metric in SPARSE_CURVES:
        entry = {}
        for name, arr in _model_curves(paper, settings, runs, metric, keys=True).items():
            at = np.flatnonzero(np.isfinite(arr).any(axis=0))
            if at.size < 2:
                continue
            cols = arr[:, at]
            entry[name] = {
                "epochs": (at + 1).tolist(),
                "mean": np.nanmean(cols, axis=0).tolist(),
                "min": np.nanmin(cols, axis=0).tolist(),
                "max": np.nanmax(cols, axis=0).tolist(),
                "n": int(np.isfinite(cols).all(axis=1).sum()),
            }
        if entry:
            out[metric] = entry
    return out


def _sparse_evolution(
    paper: PaperClaim, settings: Any, runs: Mapping[str, Sequence[SeedRun]], folder: Path
) -> list[tuple[Path, str]]:
    """One figure per metric of SPARSE_CURVES measured at two epochs or more: its value at
    those epochs, per model (and RealMix's noise mode), mean and range over seeds."""
    out = []
    for metric in SPARSE_CURVES:
        curves = _model_curves(paper, settings, runs, metric)
        if not curves:
            continue
        seen = np.isfinite(np.stack(list(curves.values()), axis=0)).any(axis=(0, 1))
        epochs = np.flatnonzero(seen) + 1
        if epochs.size < 2:
            continue  # the last epoch alone: the table has it
        path = figures.metric_curves(
            {k: v[:, epochs - 1] for k, v in curves.items()},
            folder / f"evolution_{metric}.png", ylabel=short_name(metric), band="minmax",
            title=f"{short_name(metric)} at epochs {epochs[0]}-{epochs[-1]} (band: range over "
            "seeds)", x=epochs,
        )  # fmt: skip
        out.append((path, f"Learning curve of {metric_label(metric)}."))
    return out


def _sample_grids(
    paper: PaperClaim,
    settings: Any,
    data: Any,
    runs: Mapping[str, Sequence[SeedRun]],
    folder: Path,
) -> list[tuple[Path, str]]:
    """The first finished seed's samples of each trainable, in every sampling mode."""
    centers = data.extra.get("centers")
    ref = np.asarray(centers.cpu()) if centers is not None else None
    grids = []
    for trainable in (paper.baseline, paper.treatment):
        first = next((r for r in runs[trainable] if r.samples), None)
        if first is None:
            continue
        for mode, samples in first.samples.items():
            if not np.isfinite(samples).all():
                continue
            suffix = "" if mode in ("default", "buffer") else f"_{mode}"
            name = f"samples_{trainable}{suffix}.png"
            what = paper.labels[trainable] + ("" if mode == "default" else f", {mode} mode")
            path = figures.sample_grid(
                samples, folder / name, title=f"{what} (seed {first.seed})",
                reference_points=ref,
            )  # fmt: skip
            grids.append((path, f"{what}, seed {first.seed}, after {settings.epochs} epochs."))
    return grids


def paper_vs_floor(paper: PaperClaim, reference: Any) -> str:
    """Where the paper's W distances lie against each distance's real-vs-real floor, in words
    computed from the measured floors."""
    reported = paper.reported["w_distance"]
    low, high = min(reported.values()), max(reported.values())
    below = [d for d in DISTANCES if d in reference.floor and high < reference.floor[d]]
    above = [d for d in DISTANCES if d in reference.floor and d not in below]
    nums = " / ".join(f"{reported[k]:.4g}" for k in (paper.baseline, paper.treatment))
    floors = ", ".join(f"{d} {reference.floor[d]:.4g}" for d in DISTANCES if d in reference.floor)
    text = (
        f"The paper's W distances ({nums}) against the real-vs-real floors measured here "
        f"(two independent sets of {reference.n} held-out images; {floors}): "
    )
    if below:
        text += (
            f"they are below the floor of {', '.join(below)}, a score not even real images "
            "reach on this split and n, so the paper's number cannot be one of these"
        )
    if above:
        joined = ", ".join(
            f"{d} (floor {reference.floor[d]:.4g} "
            + ("below both" if reference.floor[d] < low else "between them or above")
            + ")"
            for d in above
        )
        text += ("; " if below else "") + f"they are not below the floor of {joined}"
    return text + "."


def eval_share(runs: Mapping[str, Sequence[SeedRun]]) -> dict[str, dict[str, float]]:
    """How much of a score's variance the evaluation set adds, per distance (pooled over the
    trainables): eval_sd is the sd over evaluation sets within a run; seed_sd the seed-to-seed
    sd of the true score (between-seed variance of the EVAL_DRAWS-set means, less the
    evaluation part); share = eval_sd^2 / (eval_sd^2 + seed_sd^2), the part of a run scored on
    ONE evaluation set that comes from which set it was."""
    out: dict[str, dict[str, float]] = {}
    keys = sorted({k for rs in runs.values() for r in rs for k in r.eval_sd})
    for key in keys:
        within, between, dof = [], 0.0, 0
        for rs in runs.values():
            done = [r for r in rs if key in r.eval_sd and key in r.evaluated]
            within += [r.eval_sd[key] ** 2 for r in done]
            if len(done) >= 2:
                between += (len(done) - 1) * float(
                    np.var([r.evaluated[key] for r in done], ddof=1)
                )
                dof += len(done) - 1
        if not within or dof == 0:
            continue
        eval_var = float(np.mean(within))
        seed_var = max(0.0, between / dof - eval_var / EVAL_DRAWS)
        total = eval_var + seed_var
        out[key] = {
            "eval_sd": math.sqrt(eval_var),
            "seed_sd": math.sqrt(seed_var),
            "share": eval_var / total if total > 0 else 0.0,
        }
    return out


def _share_text(spread: Mapping[str, Mapping[str, float]]) -> str:
    parts = ", ".join(
        f"{k} {100 * v['share']:.0f}% (sd {v['eval_sd']:.3g} over evaluation sets vs "
        f"{v['seed_sd']:.3g} over seeds)"
        for k, v in spread.items()
    )
    return (
        "Evaluation-set variance: the share of a single-evaluation-set score's variance that "
        f"comes from which held-out subsample, samples and projections were drawn: {parts}."
    )


def summary_dict(
    paper: PaperClaim,
    settings: Any,
    data: Any,
    runs: Mapping[str, Sequence[SeedRun]],
    table: Sequence[Mapping[str, Any]],
    claims: Sequence[Mapping[str, Any]],
    reference: Any = None,
) -> dict[str, Any]:
    """summary.json: the run's setting and, per variant and metric, mean and interval (n)."""
    b, t = paper.baseline, paper.treatment
    variants: dict[str, dict[str, Any]] = {b: {}, t: {}, f"{t}_noise": {}}
    for row in table:
        for name in variants:
            if row.get(f"{name}_mean") is None:
                continue
            n = int(row[f"{name}_n"])
            variants[name][row["quantity"]] = {
                "mean": row[f"{name}_mean"],
                "ci_low": row[f"{name}_ci_low"] if n >= 2 else None,
                "ci_high": row[f"{name}_ci_high"] if n >= 2 else None,
                "n": n,
                "interval": "95% Student t over seeds" if n >= 2 else "n=1, no interval",
            }
    return {
        "experiment": paper.name,
        "dataset": data.name,
        "epochs": settings.epochs,
        "seeds": settings.seeds,
        "train_size": int(data.train.shape[0]),
        "heldout_size": int(data.heldout.shape[0]),
        "n_eval": settings.n_eval,
        "eval_draws": EVAL_DRAWS,
        "iterations_per_run": settings.epochs * (int(data.train.shape[0]) // settings.batch_size),
        "paper": {k: dict(v) for k, v in paper.reported.items()},
        "variants": {k: v for k, v in variants.items() if v},
        "floor": None if reference is None else dict(reference.floor),
        "floor_sd": None if reference is None else dict(reference.floor_sd),
        "ceiling": None if reference is None else dict(reference.ceiling),
        "claims": list(claims),
        "seconds": {k: max((r.seconds for r in v), default=0.0) for k, v in runs.items()},
        "status": {k: [r.status for r in v] for k, v in runs.items()},
    }


_PAPER_NAMES = {"w_distance": "W distance", "g_loss": "G loss", "d_loss": "D loss"}


def _ci_cell(row: Mapping[str, Any], name: str) -> str:
    mean = row.get(f"{name}_mean")
    if mean is None:
        return "–"
    n = row[f"{name}_n"]
    if n < 2:
        return f"{num(mean)} (n=1, no CI)"
    return f"{num(mean)} [{num(row[f'{name}_ci_low'])}, {num(row[f'{name}_ci_high'])}] (n={n})"


def scale_text(paper: PaperClaim, scale: ScaleMatch, *, short: bool = False) -> str:
    if short:
        if scale.distance is not None:
            return (
                f"`{scale.distance}` is the measured distance on the paper's scale "
                f"({scale.orders[scale.distance]:+.2f} orders of magnitude from it)."
            )
        return (
            f"No measured distance is on the paper's scale; the closest, `{scale.closest}`, is "
            f"{scale.orders[scale.closest]:+.2f} orders of magnitude away."
        )
    parts = ", ".join(f"{d} {o:+.2f}" for d, o in scale.orders.items())
    head = (
        f"Orders of magnitude from the paper's W distance (log10 of measured / paper, mean of "
        f"both models, buffer mode): {parts}. "
    )
    if scale.distance is not None:
        return head + (
            f"`{scale.distance}` is the closest to the paper's scale and within "
            f"{SCALE_TOLERANCE} orders of magnitude of it, so the paper's 'W distance' is most "
            "comparable to it. Values need not match: the paper's estimator, sample sizes and "
            "data differ."
        )
    return head + (
        f"On this run's data and budget no measured distance is within {SCALE_TOLERANCE} orders "
        f"of magnitude of the paper's; the closest is `{scale.closest}` "
        f"({scale.orders[scale.closest]:+.2f})."
    )


def claim_text(paper: PaperClaim, scale: ScaleMatch, claims: Sequence[dict]) -> list[str]:
    """One line per claim row, every distance (the one on the paper's scale, or the closest,
    first): leaving a distance out of the bottom line would hide where the claim holds."""
    lines = []
    first = scale.distance or scale.closest
    for distance in dict.fromkeys([first, *(c["distance"] for c in claims)]):
        for c in claims:
            if c["distance"] != distance:
                continue
            scale_note = (
                " (the distance on the paper's scale)" if distance == scale.distance else ""
            )
            outcome = _CLAIM_WORDS[c["verdict"]]
            lines.append(
                f"`{distance}`{scale_note}, {paper.labels[paper.treatment]} {c['mode']} mode: "
                f"the claim {outcome} (Δ {num(c['diff'])}, 95% CI [{num(c['ci_low'])}, "
                f"{num(c['ci_high'])}], Holm p {format_p_text(c['p_holm'])})."
            )
    buffer_ok = {
        c["distance"] for c in claims if c["mode"] == "buffer" and c["verdict"] == "holds"
    }
    noise_ok = {c["distance"] for c in claims if c["mode"] == "noise" and c["verdict"] == "holds"}
    if buffer_ok - noise_ok and any(c["mode"] == "noise" for c in claims):
        lines.append(
            "Where the claim holds in buffer mode but not in noise mode, the advantage needs "
            "real images fed to G at sampling time: it may reflect copying, not a better "
            "generator."
        )
    return lines


_CLAIM_WORDS = {
    "holds": "**holds**",
    "contradicted": "is **contradicted**",
    "inconclusive": "is **not supported** (inconclusive)",
}


def format_p_text(p: float | None) -> str:
    """A p-value in running text."""
    return "undefined" if p is None else f"{p:.2g}"


def print_summary(
    paper: PaperClaim, table: Sequence[dict], scale: ScaleMatch, claims: Sequence[dict]
) -> None:
    """The side-by-side table, the scale and the claim's verdicts on stdout."""
    b, t = paper.baseline, paper.treatment
    print(f"\n{'quantity':<10} {'paper ' + b:>12} {'paper ' + t:>14} {'ours ' + b:>12} "
          f"{'ours ' + t:>14} {'ours ' + t + ' noise':>20} {'floor':>9} "
          f"{'untrained':>10}")  # fmt: skip
    for r in table:
        print(
            f"{r['quantity']:<10} {r[f'paper_{b}']:>12.4f} {r[f'paper_{t}']:>14.4f} "
            f"{num(r.get(f'{b}_mean')):>12} {num(r.get(f'{t}_mean')):>14} "
            f"{num(r.get(f'{t}_noise_mean')):>20} {num(r.get('floor')):>9} "
            f"{num(r.get('ceiling')):>10}"
        )
    print(
        "(ours: mean over seeds; floor: real vs real held-out images, untrained: a freshly "
        "initialised G, on the same split and n)"
    )
    print("\n" + scale_text(paper, scale))
    for line in claim_text(paper, scale, claims):
        print("- " + line.replace("**", ""))

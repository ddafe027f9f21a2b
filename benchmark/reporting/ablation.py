"""The ablation report: from a design's stored trials to effects, verdicts and report files.

`runs_frame` turns the study's trials into one row per (trial, seed); `effects_table` estimates
each factor's effect (`stats.factorial_effects` for 2^k designs, each level against the
baseline for one factor); `write_ablation_report` writes report.md, report.html,
summary.json, effects.csv, cells.csv, runs.csv and the effects plots. `python -m
benchmark.ablation` runs the design and calls it.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.artifacts import json_safe
from benchmark.metrics.labels import metric_of
from benchmark.metrics.reference import REFERENCE_NOTE, reference_for_settings, reference_rows
from benchmark.reporting import figures, stats
from benchmark.reporting.document import Document, format_ci, format_p
from benchmark.reporting.labels import metric_label, short_name
from benchmark.reporting.load import StudyData, history, study_split_note
from studies import ablation as designs

__all__ = [
    "HIGHER_IS_BETTER",
    "RESPONSES",
    "cell_rows",
    "effects_table",
    "runs_frame",
    "write_ablation_report",
]

RESPONSES = (
    "w1",
    "w1_noise",
    "sliced_w2",
    "sliced_w2_noise",
    "g_loss_var",
    "cfid",
    "cfid_noise",
    "classes_covered",
    "classes_covered_noise",
)
"""Responses analysed when the runs hold them (w1_noise: RealMix only; g_loss_var: MLflow;
the classifier metrics with ``--setting extra_metrics=true`` on digit data)."""

HIGHER_IS_BETTER = frozenset(
    r for r in RESPONSES if (m := metric_of(r)) is not None and m.direction == "maximize"
)
"""Responses where a larger value is better, from `metrics.labels` (every other is minimised)."""


def runs_frame(data: StudyData, design: designs.AblationSpace) -> tuple[pd.DataFrame, list[str]]:
    """One row per (trial, seed) of the design's cells: factor levels, seed and responses.

    Complete trials contribute every seed; a pruned
    trial (a diverged seed stops it) contributes its finished seeds. Seeds without a finite
    value are left out of that response. Returns (frame, notes on what was left out).
    """
    rows, notes = [], []
    for trial in data.trials:
        if trial.state not in ("COMPLETE", "PRUNED"):
            continue
        levels = _trial_levels(trial, design)
        if levels is None:
            notes.append(f"trial #{trial.number} is not a cell of the design; left out")
            continue
        for summary in trial.seeds:
            if summary.get("status", "finished") != "finished":
                notes.append(
                    f"trial #{trial.number} ({_cell_name(levels)}), seed {summary.get('seed')}: "
                    f"{summary.get('status')} ({summary.get('reason', 'no reason recorded')}); "
                    "left out"
                )
                continue
            row: dict[str, Any] = {"trial": trial.number, "seed": summary.get("seed"), **levels}
            for response in RESPONSES:
                value = summary.get(response)
                ok = isinstance(value, (int, float)) and math.isfinite(float(value))
                row[response] = float(value) if ok else math.nan
            rows.append(row)
    columns = ["trial", "seed", *(f.name for f in design.factors), *RESPONSES]
    frame = pd.DataFrame(rows, columns=columns)
    present = [r for r in RESPONSES if frame[r].notna().any()]
    return frame[["trial", "seed", *(f.name for f in design.factors), *present]], notes


def _trial_levels(trial: Any, design: designs.AblationSpace) -> dict[str, str] | None:
    """The design cell a stored trial trained (its levels), or None if it is not one."""
    params = {**trial.config, **trial.params} if trial.config else dict(trial.params)
    return design.levels_of(params)


def _cell_name(levels: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in levels.items())


def effects_table(
    runs: pd.DataFrame,
    design: designs.AblationSpace,
    response: str,
    *,
    test: str = "welch",
    alpha: float = 0.05,
    n_boot: int = 2_000,
    seed: int = 0,
) -> pd.DataFrame:
    """Effects of the design's factors on `response` (lower is better), with verdicts.

    Two-level factors: `stats.factorial_effects` (main effects and two-way interactions, a
    contrast of cell means with a Welch-Satterthwaite t CI, Welch or aligned Mann-Whitney test,
    Holm over the effects, noise floor 2 x the pooled within-cell sd). One factor with more
    levels: each level against the first (the baseline) with `stats.compare`, Holm over the
    comparisons, the same noise floor and `stats.verdict`. Columns: effect, kind, estimate,
    ci_low, ci_high, p, p_holm, verdict, response; ``attrs`` as factorial_effects sets them.
    Raises ValueError when a cell has fewer than 2 finite runs. A response in
    HIGHER_IS_BETTER is maximised (a positive effect helps); every other is minimised.
    """
    minimize = response not in HIGHER_IS_BETTER
    names = [f.name for f in design.factors]
    df = runs[[*names, response]].dropna()
    for cell in design.cells():
        levels = design.levels_of(cell) or {}
        n = int((df[names] == pd.Series(levels)).all(axis=1).sum())
        if n < 2:
            raise ValueError(
                f"cell ({_cell_name(levels)}) has {n} finite {response} run(s); every cell "
                "needs at least 2 seeds (a diverged seed leaves it short: rerun with more seeds)"
            )
    if all(len(f.levels) == 2 for f in design.factors):
        out = stats.factorial_effects(
            df, names, response, n_boot=n_boot, seed=seed, test=test, alpha=alpha,
            levels={f.name: (f.levels[0], f.levels[1]) for f in design.factors},
            minimize=minimize,
        )  # fmt: skip
    elif len(design.factors) == 1:
        out = _one_factor(df, design.factors[0], response, test, alpha, n_boot, seed, minimize)
    else:
        raise ValueError("a design is either all two-level factors or a single factor")
    out["response"] = response
    return out


def _one_factor(
    df: pd.DataFrame,
    factor: designs.Factor,
    response: str,
    test: str,
    alpha: float,
    n_boot: int,
    seed: int,
    minimize: bool = True,
) -> pd.DataFrame:
    groups = {lv: df.loc[df[factor.name] == lv, response].to_numpy(float) for lv in factor.levels}
    floor = stats.pooled_noise_floor(list(groups.values()))
    base = factor.levels[0]
    judged = stats.against_best(
        groups[base], [groups[lv] for lv in factor.levels[1:]],
        [floor] * (len(factor.levels) - 1), alpha=alpha, test=test, n_boot=n_boot, seed=seed,
        minimize=minimize,
    )  # fmt: skip
    rows = []
    for level, r in zip(factor.levels[1:], judged, strict=True):
        assert r is not None  # every level is compared
        rows.append(
            {
                "effect": f"{level} vs {base}",
                "kind": "level",
                "estimate": r.comparison.diff,
                "ci_low": r.comparison.ci.low,
                "ci_high": r.comparison.ci.high,
                "p": math.nan if r.comparison.p_value is None else r.comparison.p_value,
                "p_holm": math.nan if r.p_holm is None else r.p_holm,
                "verdict": r.verdict,
            }
        )
    out = pd.DataFrame(rows, columns=list(stats.EFFECT_COLUMNS))
    out.attrs.update(
        noise_floor=floor, alpha=alpha, minimize=minimize, confidence=0.95, test=test,
        levels={factor.name: factor.levels},
    )  # fmt: skip
    return out


def cell_rows(runs: pd.DataFrame, design: designs.AblationSpace) -> list[dict[str, Any]]:
    """Per cell and response: mean with a 95% Student-t CI over seeds (and n)."""
    names = [f.name for f in design.factors]
    responses = [c for c in runs.columns if c in RESPONSES]
    rows = []
    for cell in design.cells():
        levels = design.levels_of(cell) or {}
        mask = (runs[names] == pd.Series(levels)).all(axis=1)
        for response in responses:
            values = runs.loc[mask, response].dropna().to_numpy(float)
            row: dict[str, Any] = {**levels, "response": response, "n": int(values.size)}
            if values.size:
                ci = stats.t_ci(values)
                row.update(mean=ci.estimate, ci_low=ci.low, ci_high=ci.high)
            else:
                row.update(mean=math.nan, ci_low=math.nan, ci_high=math.nan)
            rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------


def write_ablation_report(
    data: StudyData, design: designs.AblationSpace, out: str | Path, *, test: str = "welch"
) -> tuple[Path, Path, pd.DataFrame]:
    """Analyse the stored trials of `data` and write the report into `out`; returns
    (report.md, report.html, the effects of every response)."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    runs, notes = runs_frame(data, design)
    responses = [c for c in runs.columns if c in RESPONSES]
    doc = Document(f"MixBench ablation: {data.name}")
    _introduction(doc, data, design, notes)
    conclusions_at = len(doc.blocks)  # the conclusions go first; they are known at the end
    runs.to_csv(folder / "runs.csv", index=False)
    cells = cell_rows(runs, design)
    pd.DataFrame(cells).to_csv(folder / "cells.csv", index=False)
    scale = _cell_means(doc, data, design, runs, cells, responses)
    curves = _learning_curves(doc, data, design, folder)
    effects, verdicts = [], {}
    for response in responses:
        frame = _effects_section(doc, runs, design, response, folder, test)
        if frame is not None:
            effects.append(frame)
            verdicts[response] = {r.effect: r for r in frame.itertuples(index=False)}
    all_effects = pd.concat(effects, ignore_index=True) if effects else pd.DataFrame()
    all_effects.to_csv(folder / "effects.csv", index=False)
    _write_summary(folder / "summary.json", data, design, runs, cells, effects, scale, curves)
    summary = Document("")
    summary.heading("What the data say")
    summary.bullets(_conclusions(design, verdicts))
    doc.blocks[conclusions_at:conclusions_at] = summary.blocks
    md, page = doc.write(folder)
    return md, page, all_effects


def _introduction(
    doc: Document, data: StudyData, design: designs.AblationSpace, notes: list[str]
) -> None:
    """The design, budget and data in bullets, what an effect means, the loading notes."""
    names = [f.name for f in design.factors]
    s = data.settings
    counts = data.state_counts()
    doc.bullets(
        [
            f"design `{design.name}` on `{design.TRAINABLE}`: "
            + "; ".join(
                f"**{f.name}** "
                + " vs ".join(
                    f"{lv} ({', '.join(f'{k}={v:g}' if isinstance(v, float) else f'{k}={v}' for k, v in p.items())})"  # noqa: E501
                    for lv, p in zip(f.levels, f.params, strict=True)
                )
                for f in design.factors
            ),
            f"{len(design.cells())} cells x {s.get('seeds')} seeds, {s.get('epochs')} epoch(s) "
            f"on `{s.get('dataset')}` (train_size {s.get('train_size') or 'all'}, n_eval "
            f"{s.get('n_eval')}); every other parameter at {design.TRAINABLE}'s defaults",
            "data: " + (study_split_note(data) or "(split note not available from MLflow)"),
            "trials: " + ", ".join(f"{n} {k.lower()}" for k, n in sorted(counts.items())),
            f"Optuna storage `{data.storage}`, study `{data.name}`; MLflow "
            f"`{data.tracking_uri or 'not recorded'}`",
        ]
    )
    if design.TRAINABLE == "realmix":
        doc.paragraph(
            "RealMixGAN changes three things at once versus the standard GAN. This 2^3 "
            "factorial separates them: an effect is the mean response with the factor at its "
            "second level minus at its first, averaged over the other factors' cells; A:B is "
            "the effect of A at B's second level minus at its first. With mixing off, G "
            "still gets its 784 extra inputs as small noise (fallback_sigma), so the all-off "
            "cell is not exactly the 100-input standard GAN."
        )
    else:
        doc.paragraph(
            f"One factor, {names[0]}: each level is compared with the baseline "
            f"{design.factors[0].levels[0]} (Welch / Mann-Whitney, Holm over the comparisons)."
        )
    for note in dict.fromkeys([*data.notes, *notes]):
        doc.note(note)
    doc.paragraph(
        "Lower is better for every response but classes covered (higher is better), so a "
        "negative effect helps (a positive one for classes covered). A verdict is 'helps' "
        "or 'hurts' only when the Holm-corrected p < 0.05, the 95% t CI excludes 0 "
        "and |effect| exceeds the noise floor (2 x the pooled seed-to-seed sd within cells); "
        "anything else is inconclusive. Holm corrects within each response's family."
    )


def _cell_means(
    doc: Document,
    data: StudyData,
    design: designs.AblationSpace,
    runs: pd.DataFrame,
    cells: list[dict[str, Any]],
    responses: list[str],
) -> Any:
    """The cell means table with the reference rows under it; returns the reference scale
    (None when there is none)."""
    names = [f.name for f in design.factors]
    doc.heading("Cell means")
    header = [*names, "seeds"] + [short_name(r) for r in responses]
    table = []
    for cell in design.cells():
        levels = design.levels_of(cell) or {}
        row = [levels[n] for n in names]
        mine = [c for c in cells if all(c[n] == levels[n] for n in names)]
        row.append(str(max((c["n"] for c in mine), default=0)))
        for response in responses:
            c = next(c for c in mine if c["response"] == response)
            row.append(_ci_text(c))
        table.append(row)
    scale, why = reference_for_settings(data.settings, [design.TRAINABLE])
    if scale is not None:
        for label, row in zip(
            ("real-vs-real floor", "untrained G"), reference_rows(scale, responses), strict=True
        ):
            table.append([label, *([""] * (len(names) - 1)), "–", *row])
    doc.table(
        header,
        table,
        caption="Mean over seeds with a 95% Student-t CI (n = seeds). "
        + (f"{REFERENCE_NOTE} (n={scale.n})" if scale is not None else f"No floor: {why}."),
    )
    doc.bullets([f"`{r}`: {metric_label(r)}" for r in responses])
    return scale


def _effects_section(
    doc: Document,
    runs: pd.DataFrame,
    design: designs.AblationSpace,
    response: str,
    folder: Path,
    test: str,
) -> pd.DataFrame | None:
    """The effects on one response: table and figure; None (with a note) when they cannot be
    estimated."""
    names = [f.name for f in design.factors]
    doc.heading(f"Effects on {short_name(response)}")
    try:
        frame = effects_table(runs, design, response, test=test)
    except ValueError as err:
        doc.note(f"no effects on {response}: {err}")
        return None
    floor = frame.attrs["noise_floor"]
    rows = [
        [
            r.effect,
            r.kind,
            format_ci(stats.Interval(r.estimate, r.ci_low, r.ci_high, _min_n(runs, names))),
            format_p(None if math.isnan(r.p) else r.p),
            format_p(None if math.isnan(r.p_holm) else r.p_holm),
            r.verdict,
        ]  # fmt: skip
        for r in frame.itertuples(index=False)
    ]
    doc.table(
        ["effect", "kind", "estimate [95% CI]", "p", "p (Holm)", "verdict"],
        rows,
        caption=f"{metric_label(response)}; test {frame.attrs['test']}, noise floor "
        f"{floor:.4g}, n = seeds in the smallest cell.",
    )
    path = figures.effects_plot(
        frame,
        folder / f"effects_{response}.png",
        title=f"{design.TRAINABLE}: effects on {short_name(response)} (95% t CIs)",
        xlabel=f"change in {short_name(response)} (negative = better)",
    )
    doc.figure(path, f"Effects on {short_name(response)}; grey band: noise floor.")
    return frame


CURVE_METRICS = ("w1", "sliced_w2")
"""Per-epoch metrics drawn as learning curves, one line per cell (those MLflow holds)."""
TAIL_EPOCHS = 10
"""The learning-curve check: the change over the last this many epochs."""


def _learning_curves(
    doc: Document, data: StudyData, design: designs.AblationSpace, folder: Path
) -> dict[str, Any]:
    """One figure per metric in CURVE_METRICS: each cell's per-epoch mean over its seeds
    (band: +/- 1 sd), from MLflow; and per cell, the change over the last TAIL_EPOCHS epochs
    against the seed-to-seed sd there (is the budget long enough for the curve to flatten?).
    Returns {metric: {cell: {"mean": [...], "tail_change": x, "tail_sd": y}}}."""
    out: dict[str, Any] = {}
    for key in CURVE_METRICS:
        by_cell: dict[str, Any] = {}
        for trial in data.trials:
            if trial.state != "COMPLETE":
                continue
            levels = _trial_levels(trial, design)
            arr = history(data, trial, key) if levels is not None else None
            if arr is not None:
                by_cell[_cell_name(levels)] = arr
        if not by_cell:
            continue
        label = short_name(key)
        path = figures.metric_curves(
            by_cell,
            folder / f"curves_{key}.png",
            ylabel=label,
            title=f"{design.TRAINABLE}: {label} by epoch, each cell (mean ± 1 sd over seeds)",
        )
        rows, entry = [], {}
        for cell, arr in by_cell.items():
            with np.errstate(invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN epoch
                mean = np.nanmean(arr, axis=0)
                tail = min(TAIL_EPOCHS, mean.size - 1)
                change = float(mean[-1] - mean[-1 - tail]) if tail > 0 else math.nan
                sd = float(np.nanmean(np.nanstd(arr[:, -tail - 1 :], axis=0, ddof=1)))
            entry[cell] = {"mean": mean.tolist(), "tail_change": change, "tail_sd": sd}
            rows.append([cell, _num(mean[-1], ".4g"), _num(change, "+.3g"), _num(sd, ".3g")])
        out[key] = entry
        doc.heading(f"Learning curves: {label}", level=3)
        doc.table(
            [
                "cell",
                f"{label} at the last epoch",
                f"change over the last {TAIL_EPOCHS}",
                "seed sd",
            ],
            rows,
        )
        doc.figure(
            path,
            f"{label} per epoch for every cell. A change over the last {TAIL_EPOCHS} epochs "
            "well inside the seed sd means the curve has flattened at this budget.",
        )
    return out


def _num(value: float, spec: str) -> str:
    return format(value, spec) if math.isfinite(value) else "–"


def _write_summary(
    path: Path,
    data: StudyData,
    design: designs.AblationSpace,
    runs: pd.DataFrame,
    cells: list[dict[str, Any]],
    effects: list[pd.DataFrame],
    scale: Any,
    curves: dict[str, Any] | None = None,
) -> Path:
    """summary.json: the budget, every effect with its interval (n) and verdict, the cell
    means, the reference scale and the learning curves (per-epoch means per cell)."""
    names = [f.name for f in design.factors]
    s = data.settings
    summary = {
        "study": data.name,
        "design": design.name,
        "trainable": design.TRAINABLE,
        "dataset": s.get("dataset"),
        "epochs": s.get("epochs"),
        "seeds": s.get("seeds"),
        "train_size": s.get("train_size"),
        "n_eval": s.get("n_eval"),
        "factors": {f.name: list(f.levels) for f in design.factors},
        "effects": {
            str(frame["response"].iloc[0]): {
                "higher_is_better": bool(str(frame["response"].iloc[0]) in HIGHER_IS_BETTER),
                "noise_floor": frame.attrs.get("noise_floor"),
                "test": frame.attrs.get("test"),
                "interval": "95% Welch-Satterthwaite t",
                "n": _min_n(runs, names),
                "rows": [
                    {k: getattr(r, k) for k in stats.EFFECT_COLUMNS}
                    for r in frame.itertuples(index=False)
                ],
            }
            for frame in effects
            if len(frame)
        },
        "cells": cells,
        "floor": None if scale is None else dict(scale.floor),
        "ceiling": None if scale is None else dict(scale.ceiling),
        "curves": curves or {},
    }
    path.write_text(json.dumps(json_safe(summary), indent=2) + "\n")
    return path


def _min_n(runs: pd.DataFrame, names: list[str]) -> int:
    return int(runs.groupby(names).size().min()) if len(runs) else 0


def _ci_text(row: dict[str, Any]) -> str:
    if not row["n"]:
        return "–"
    interval = stats.Interval(
        row["mean"], row["ci_low"], row["ci_high"], row["n"], degenerate=row["n"] == 1
    )
    return format_ci(interval)


def _conclusions(design: designs.AblationSpace, verdicts: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    first = verdicts.get("w1")
    if first is None:
        return ["No effect on W1 could be estimated (see the notes above)."]
    for effect, row in first.items():
        if row.kind == "interaction" and row.verdict == "inconclusive":
            continue
        text = (
            f"**{effect}** on W1: {row.verdict} ({row.estimate:+.4g}, "
            f"95% CI [{row.ci_low:.4g}, {row.ci_high:.4g}])"
        )
        noise = verdicts.get("w1_noise", {}).get(effect)
        if noise is not None:
            text += f"; in noise mode: {noise.verdict} ({noise.estimate:+.4g})"
            if row.verdict == "helps" and noise.verdict != "helps":
                text += (
                    ". The gain shows only when real images reach G: it may come from copying "
                    "the buffer rather than from better training"
                )
        var = verdicts.get("g_loss_var", {}).get(effect)
        if var is not None:
            text += f"; on G-loss variance: {var.verdict}"
        lines.append(text + ".")
    if any(r.kind == "interaction" for r in first.values()) and not any(
        r.kind == "interaction" and r.verdict != "inconclusive" for r in first.values()
    ):
        lines.append("No two-way interaction on W1 is distinguishable from seed noise.")
    for response, rows in verdicts.items():
        if response in ("w1", "w1_noise", "g_loss_var"):
            continue
        decided = [
            f"{effect} {row.verdict} ({row.estimate:+.4g}, Holm p {format_p(row.p_holm)})"
            for effect, row in rows.items()
            if row.verdict != "inconclusive"
        ]
        lines.append(
            f"On {short_name(response)}: "
            + ("; ".join(decided) if decided else "every effect inconclusive")
            + "."
        )
    return lines

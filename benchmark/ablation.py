"""python -m benchmark.ablation: which of a variant's changes matter, as a replicated design.

    python -m benchmark.ablation --base realmix --seeds 3 --epochs 5
    python -m benchmark.ablation --base mixture --seeds 3 --dataset fashion-mnist

``--base realmix``: RealMixGAN changes three things at once versus the standard GAN (real-data
mixing, dropout, Adam betas). The 2^3 factorial of those switches runs as ONE Optuna study on
the ``realmix-ablation`` space (`studies.ablation`): the 8 cells are enqueued, then the study
CLI's workers run them with K seeds each, logging to the same storage and MLflow store as any
study. Effects and two-way interactions come from `stats.factorial_effects` on W1 in buffer
mode AND in noise mode (no real data reaches G: a mixing gain seen only in buffer mode may be
copying), and on the G-loss variance.

``--base mixture``: one factor, Mixture GAN's law of t; each measure is compared with delta1
(the vanilla GAN), Holm-corrected over the comparisons.

With ``--setting extra_metrics=true`` the last epoch is also scored by the digit classifier
(classifier-FID and classes covered, in both RealMix sampling modes) and those are analysed
too.

Re-running with the same options resumes the study: cells already run are not run again.
Writes report.md, report.html, summary.json (epochs, seeds, every effect with its interval, n
and verdict, the cell means, the real-vs-real floor), effects.csv, cells.csv and the effects
plots into ``results/ablation/<study>/``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from studies import ablation as designs

__all__ = [
    "DEFAULT_OUT",
    "DESIGNS",
    "RESPONSES",
    "cell_rows",
    "effects_table",
    "enqueue_missing",
    "main",
    "runs_frame",
    "write_ablation_report",
]

DEFAULT_OUT = Path("results") / "ablation"
"""Parent folder of the per-study ablation reports."""

DESIGNS: dict[str, designs.AblationSpace] = {
    "realmix": designs.REALMIX,
    "mixture": designs.MIXTURE,
}
"""--base name -> the design (a `studies.ablation.AblationSpace`)."""

RESPONSES = (
    "w1",
    "w1_noise",
    "g_loss_var",
    "cfid",
    "cfid_noise",
    "classes_covered",
    "classes_covered_noise",
)
"""Responses analysed when the runs hold them (w1_noise: RealMix only; g_loss_var: MLflow;
the classifier metrics with ``--setting extra_metrics=true`` on digit data)."""

HIGHER_IS_BETTER = frozenset({"classes_covered", "classes_covered_noise"})
"""Responses where a larger value is better (every other response is minimised)."""

PRESENT_STATES = ("COMPLETE", "PRUNED", "RUNNING", "WAITING")
"""Trial states that mean a cell needs no new trial (a PRUNED cell diverged: a result)."""


class UsageError(ValueError):
    """Bad command-line input (exit code 2)."""


# --------------------------------------------------------------------------------------------
# Running the design as a study
# --------------------------------------------------------------------------------------------


def enqueue_missing(study: Any, design: designs.AblationSpace) -> list[dict[str, Any]]:
    """Enqueue every cell of `design` that has no complete, pruned, running or waiting trial
    (a failed cell is enqueued again); returns the cells enqueued."""
    present = set()
    for trial in study.get_trials(deepcopy=False):
        if trial.state.name not in PRESENT_STATES:
            continue
        known = {**trial.user_attrs.get("fixed", {}), **trial.system_attrs.get("fixed_params", {})}
        known.update(trial.params)
        index = design.cell_index(known)
        if index is not None:
            present.add(index)
    added = []
    for index, cell in enumerate(design.cells()):
        if index not in present:
            study.enqueue_trial(cell, user_attrs={"fixed": cell, "cell": index})
            added.append(cell)
    return added


def _study_plan(args: argparse.Namespace, design: designs.AblationSpace) -> Any:
    """The study of `design`: every cell once, random order, no pruning (a StudyPlan)."""
    from benchmark import study as study_cli
    from benchmark.cli import parse_overrides
    from benchmark.settings import setting_changes
    from benchmark.trainable import ParamError

    assignments = parse_overrides(args.setting, "--setting", "n_eval=500", error=ParamError)
    # --train-size and --n-eval act as --setting items given first: a --setting of one wins
    first = {"train_size": args.train_size, "n_eval": args.n_eval}
    flags = {"epochs": args.epochs, "seeds": args.seeds, "dataset": args.dataset}
    flags["data_dir"] = args.data_dir
    changes = {k: v for k, v in first.items() if v is not None}
    changes.update(setting_changes(assignments, flags))
    population = 1 if args.population is None else study_cli.population_arg(args.population)
    return study_cli.StudyPlan.create(
        design.name,
        trials=len(design.cells()),
        objective="wasserstein",
        sampler="random",
        pruner="none",
        settings=changes,
        storage=args.storage,
        tracking_uri=args.tracking_uri,
        workers=args.workers,
        population=population,
    )


def run_design(args: argparse.Namespace, design: designs.AblationSpace) -> tuple[Any, int]:
    """Create or resume the study, enqueue missing cells, run them; (plan, exit code)."""
    import optuna

    from benchmark import study as study_cli
    from benchmark.storage import open_storage

    plan = _study_plan(args, design)
    if plan.settings.seeds < 2:
        raise UsageError(
            f"--seeds {plan.settings.seeds}: an ablation needs at least 2 seeds per cell to "
            "separate effects from seed noise; use --seeds 3 or more"
        )
    s = plan.settings
    plan.study_name = args.study_name or f"{design.name}-{s.dataset}-e{s.epochs}-s{s.seeds}"
    if getattr(args, "results_dir", None) is not None:  # deprecated: parent of <study>/
        plan.results_dir = Path(args.results_dir)
    if args.study_out is not None:
        plan.out_dir = Path(args.study_out)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(plan.storage)
    try:
        attrs = storage.get_study_user_attrs(storage.get_study_id_from_name(plan.study_name))
    except KeyError:
        attrs = None
    if attrs is not None and "space" in attrs:
        study_cli.check_resume(plan, attrs)  # UsageError before anything is enqueued

    def enqueue(study: Any) -> None:
        # Called by run_plan once the study (and its MLflow parent run) exists, before any
        # worker starts: enqueueing into a study created here would make run_plan wait for
        # a parent run that another invocation was expected to record.
        added = enqueue_missing(study, design)
        done = len(design.cells()) - len(added)
        print(
            f"{plan.study_name}: {len(design.cells())} cells x {s.seeds} seeds; "
            f"{done} cell(s) already run or queued, {len(added)} enqueued",
            file=sys.stderr,
        )

    return plan, study_cli.run_plan(plan, prepare=enqueue)


# --------------------------------------------------------------------------------------------
# From stored trials to effects
# --------------------------------------------------------------------------------------------


def runs_frame(data: Any, design: designs.AblationSpace) -> tuple[pd.DataFrame, list[str]]:
    """One row per (trial, seed) of the design's cells: factor levels, seed and responses.

    `data` is a `benchmark.report.StudyData`. Complete trials contribute every seed; a pruned
    trial (a diverged seed stops it) contributes its finished seeds. Seeds without a finite
    value are left out of that response. Returns (frame, notes on what was left out).
    """
    rows, notes = [], []
    for trial in data.trials:
        if trial.state not in ("COMPLETE", "PRUNED"):
            continue
        params = {**trial.config, **trial.params} if trial.config else dict(trial.params)
        levels = design.levels_of(params)
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


def _cell_name(levels: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in levels.items())


def _pooled_floor(groups: Sequence[np.ndarray]) -> float:
    """2 x the pooled within-group sd (the default floor of `stats.factorial_effects`)."""
    usable = [g for g in groups if g.size >= 2]
    dof = sum(g.size - 1 for g in usable)
    if dof == 0:
        raise ValueError("every level needs at least 2 seeds to measure seed-to-seed spread")
    return 2.0 * math.sqrt(sum((g.size - 1) * g.var(ddof=1) for g in usable) / dof)


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
    from benchmark import stats

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
    from benchmark import stats

    groups = {lv: df.loc[df[factor.name] == lv, response].to_numpy(float) for lv in factor.levels}
    floor = _pooled_floor(list(groups.values()))
    base = factor.levels[0]
    comps = [
        stats.compare(
            groups[base], groups[lv], test=test, n_boot=n_boot, seed=seed, minimize=minimize
        )
        for lv in factor.levels[1:]
    ]
    raw = [c.p_value for c in comps]
    p_holm = stats.holm([1.0 if p is None else p for p in raw])
    rows = []
    for level, comp, p, ph in zip(factor.levels[1:], comps, raw, p_holm, strict=True):
        # an undefined test (no spread at all) is never evidence
        decided = "inconclusive" if p is None else stats.verdict(comp, floor, alpha, p_adjusted=ph)
        rows.append(
            {
                "effect": f"{level} vs {base}",
                "kind": "level",
                "estimate": comp.diff,
                "ci_low": comp.ci.low,
                "ci_high": comp.ci.high,
                "p": math.nan if p is None else p,
                "p_holm": math.nan if p is None else float(ph),
                "verdict": decided,
            }
        )
    out = pd.DataFrame(
        rows, columns=["effect", "kind", "estimate", "ci_low", "ci_high", "p", "p_holm", "verdict"]
    )
    out.attrs.update(
        noise_floor=floor, alpha=alpha, minimize=minimize, confidence=0.95, test=test,
        levels={factor.name: factor.levels},
    )  # fmt: skip
    return out


def cell_rows(runs: pd.DataFrame, design: designs.AblationSpace) -> list[dict[str, Any]]:
    """Per cell and response: mean with a 95% Student-t CI over seeds (and n)."""
    from benchmark import stats

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
    data: Any, design: designs.AblationSpace, out: str | Path, *, test: str = "welch"
) -> tuple[Path, Path, pd.DataFrame]:
    """Analyse the stored trials of `data` (a report.StudyData) and write the report into
    `out`; returns (report.md, report.html, the effects of every response)."""
    from benchmark import figures, stats
    from benchmark.report import (
        Document,
        format_ci,
        format_p,
        metric_label,
        short_name,
        study_split_note,
    )

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    runs, notes = runs_frame(data, design)
    names = [f.name for f in design.factors]
    responses = [c for c in runs.columns if c in RESPONSES]
    doc = Document(f"MixBench ablation: {data.name}")
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
    conclusions_at = len(doc.blocks)  # the conclusions go first; they are known at the end
    runs.to_csv(folder / "runs.csv", index=False)
    cells = cell_rows(runs, design)
    pd.DataFrame(cells).to_csv(folder / "cells.csv", index=False)
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
            row.append(_ci_text(c, stats, format_ci))
        table.append(row)
    from benchmark.reference import REFERENCE_NOTE, reference_for_settings, reference_rows

    scale, why = reference_for_settings(s, [design.TRAINABLE])
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

    effects: list[pd.DataFrame] = []
    verdicts: dict[str, dict[str, pd.Series]] = {}
    for response in responses:
        doc.heading(f"Effects on {short_name(response)}")
        try:
            frame = effects_table(runs, design, response, test=test)
        except ValueError as err:
            doc.note(f"no effects on {response}: {err}")
            continue
        effects.append(frame)
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
        verdicts[response] = {r.effect: r for r in frame.itertuples(index=False)}
    all_effects = pd.concat(effects, ignore_index=True) if effects else pd.DataFrame()
    all_effects.to_csv(folder / "effects.csv", index=False)
    _write_summary(folder / "summary.json", data, design, runs, cells, effects, scale)
    summary = Document("")
    summary.heading("What the data say")
    summary.bullets(_conclusions(design, verdicts))
    doc.blocks[conclusions_at:conclusions_at] = summary.blocks
    md, page = doc.write(folder)
    return md, page, all_effects


_EFFECT_KEYS = ("effect", "kind", "estimate", "ci_low", "ci_high", "p", "p_holm", "verdict")


def _write_summary(
    path: Path,
    data: Any,
    design: designs.AblationSpace,
    runs: pd.DataFrame,
    cells: list[dict[str, Any]],
    effects: list[pd.DataFrame],
    scale: Any,
) -> Path:
    """summary.json: the budget, every effect with its interval (n) and verdict, the cell
    means and the reference scale."""
    import json

    from benchmark.artifacts import json_safe

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
                    {k: getattr(r, k) for k in _EFFECT_KEYS} for r in frame.itertuples(index=False)
                ],
            }
            for frame in effects
            if len(frame)
        },
        "cells": cells,
        "floor": None if scale is None else dict(scale.floor),
        "ceiling": None if scale is None else dict(scale.ceiling),
    }
    path.write_text(json.dumps(json_safe(summary), indent=2) + "\n")
    return path


def _min_n(runs: pd.DataFrame, names: list[str]) -> int:
    return int(runs.groupby(names).size().min()) if len(runs) else 0


def _ci_text(row: dict[str, Any], stats: Any, format_ci: Any) -> str:
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
    return lines


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argparse parser."""
    from benchmark.cli import HelpFormatter, add_data_dir, add_deprecated_alias, add_train_size
    from benchmark.stats import TESTS
    from benchmark.study import DEFAULT_STORAGE

    p = argparse.ArgumentParser(
        prog="python -m benchmark.ablation",
        description="Run an ablation design as one Optuna study and report each factor's effect.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--base", required=True, choices=list(DESIGNS), help="variant to ablate")
    p.add_argument("--seeds", type=int, default=None, help="seeds per cell (default 3, min 2)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per run (default 5)")
    p.add_argument("--dataset", default=None, help="dataset (default mnist)")
    add_data_dir(p)
    p.add_argument(
        "--storage", default=DEFAULT_STORAGE, help="Optuna storage: a journal file or a URL"
    )
    p.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI (default: MLflow's, sqlite:///mlflow.db here)",
    )
    p.add_argument("--workers", type=int, default=None, help="CPU worker processes (default: 1)")
    p.add_argument(
        "--population",
        default=None,
        metavar="P|auto",
        help="cells each worker trains at once as one population, see benchmark.study "
        "(default: 1)",
    )
    add_train_size(p)
    p.add_argument(
        "--n-eval",
        type=int,
        default=None,
        help="samples per side for the exact W1 (default: 1000)",
    )
    p.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any other run setting, as for benchmark.study; repeatable (default: none)",
    )
    p.add_argument("--study-name", default=None, help="default: <space>-<dataset>-e<E>-s<K>")
    p.add_argument("--test", choices=TESTS, default="welch", help="two-sample test")
    p.add_argument(
        "--out",
        default=None,
        help=f"folder the report is written into (default: {DEFAULT_OUT}/<study>)",
    )
    add_deprecated_alias(p, "--results-dir", "--study-out", dest="results_dir")
    p.add_argument(
        "--study-out",
        dest="study_out",
        default=None,
        help="folder for the study's best.json (default: results/studies/<study>)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (2 for bad input)."""
    from benchmark.data import DataError
    from benchmark.report import ReportError, load_study_data
    from benchmark.settings import SettingsError
    from benchmark.storage import StorageError
    from benchmark.study import UsageError as StudyUsageError
    from benchmark.tracking import TrackingError
    from benchmark.trainable import ParamError
    from studies import SpaceError

    parser = build_parser()
    args = parser.parse_args(argv)
    design = DESIGNS[args.base]
    bad_input = (
        UsageError, StudyUsageError, SpaceError, ParamError, SettingsError, StorageError,
        TrackingError, DataError, ReportError,
    )  # fmt: skip
    try:
        plan, code = run_design(args, design)
        data = load_study_data(plan.study_name, plan.storage, tracking_uri=args.tracking_uri)
    except bad_input as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    folder = Path(args.out) if args.out is not None else DEFAULT_OUT / plan.study_name
    md, page, effects = write_ablation_report(data, design, folder, test=args.test)
    if not effects.empty:
        cols = ["response", "effect", "estimate", "ci_low", "ci_high", "p_holm", "verdict"]
        with pd.option_context("display.width", 120, "display.float_format", "{:.4g}".format):
            print(effects[cols].to_string(index=False))
    print(f"wrote {page}\n      {md}\n      {folder / 'effects.csv'}")
    return code


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    sys.exit(main())

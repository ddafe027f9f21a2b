"""python -m benchmark.reproduce: re-run a paper's comparison and set its numbers beside ours.

    python -m benchmark.reproduce realmix-paper --data-dir ../shared/data
    python -m benchmark.reproduce realmix-paper --epochs 5 --seeds 3 --train-size 2000

``realmix-paper`` trains the standard GAN and RealMixGAN with the paper's stated settings
(every default of their params classes) for K seeds each and writes, into
``results/reproduce/realmix-paper/``: a side-by-side table (table.csv, report.md,
report.html) of the paper's Table 2 next to every distance MixBench measures (exact W1,
sliced W2, pixel W1; RealMix in both sampling modes) with 95% Student-t CIs over seeds, loss
and W-evolution figures, sample grids and results.json with every per-seed number.

The paper's numbers are the hypothesis; the measured numbers are the result. The report says
which measured distance is on the paper's scale (compared in orders of magnitude, not assumed)
and whether "RealMix has a lower W distance than the standard GAN" holds on the measured data,
in buffer mode and in noise mode (no real image reaches G), with a CI- and test-based verdict.
Every run prints what data it used, so a short run is never mistaken for the paper's setting.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_OUT",
    "EXPERIMENTS",
    "REALMIX_PAPER",
    "DISTANCES",
    "PaperClaim",
    "claim_rows",
    "main",
    "scale_match",
    "side_by_side",
]

DEFAULT_OUT = Path("results") / "reproduce"
"""Parent folder of the per-experiment outputs."""

DISTANCES = ("w1", "sliced_w2", "pixel_w1")
"""Every distance the harness computes (RealMix also with the '_noise' suffix)."""

SCALE_TOLERANCE = 0.5
"""A measured distance is 'on the paper's scale' within this many orders of magnitude
(a factor of about 3.2 either way)."""


@dataclass(frozen=True)
class PaperClaim:
    """A paper's reported comparison: the numbers it states, where, and under what setting."""

    name: str
    """Experiment name on the command line."""
    source: str
    """Citation of the numbers (paper title, table)."""
    baseline: str
    """Trainable of the baseline (the paper's 'standard' model)."""
    treatment: str
    """Trainable of the method."""
    labels: Mapping[str, str]
    """Display name of each trainable."""
    reported: Mapping[str, Mapping[str, float]]
    """Quantity -> {trainable: the paper's value}; 'w_distance' is the paper's W distance."""
    dataset: str
    epochs: int
    train_images: int
    """Training images the paper used."""
    claim: str
    """The claim tested, in words."""
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Params differing from each trainable's defaults (none: the defaults are the paper's)."""


REALMIX_PAPER = PaperClaim(
    name="realmix-paper",
    source=(
        '"RealMixGAN: Accelerating GAN Convergence by Leaking Real Data Distribution into the '
        'Latent Space", Table 2 (MNIST, 70 epochs)'
    ),
    baseline="gan",
    treatment="realmix",
    labels={"gan": "standard GAN", "realmix": "RealMixGAN"},
    reported={
        "w_distance": {"gan": 0.0290, "realmix": 0.0137},
        "g_loss": {"gan": 1.3177, "realmix": 1.0261},
        "d_loss": {"gan": 1.0431, "realmix": 1.2033},
    },
    dataset="mnist",
    epochs=70,
    train_images=60_000,
    claim="RealMixGAN reaches a lower Wasserstein distance than the standard GAN",
)
"""The RealMixGAN paper's Table 2; both trainables' defaults are the paper's settings."""

EXPERIMENTS: dict[str, PaperClaim] = {REALMIX_PAPER.name: REALMIX_PAPER}


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------


@dataclass
class SeedRun:
    """What one seed of one trainable produced (enough to rebuild every table and figure)."""

    trainable: str
    seed: int
    status: str
    final: dict[str, float]
    history: list[dict[str, float]]
    g_losses: np.ndarray
    d_losses: np.ndarray
    samples: dict[str, np.ndarray]
    seconds: float
    evaluated: dict[str, float] = field(default_factory=dict)
    """The final generator's distances averaged over EVAL_DRAWS random evaluation sets (its
    own held-out subsamples, generated samples and projections), so intervals over seeds
    include the evaluation-set variance; empty when the run diverged."""
    eval_sd: dict[str, float] = field(default_factory=dict)
    """Per distance, the sd over those evaluation draws (the evaluation-set spread)."""


CHECKPOINT_VERSION = 1
"""Bumped when the checkpoint layout changes (an older file is then refused, not misread)."""

EVAL_DRAWS = 3
"""Evaluation sets each seed's final generator is scored on (see `SeedRun.evaluated`)."""


class CheckpointError(ValueError):
    """A checkpoint in the output folder was written by a different command (exit code 2)."""


def _fingerprint(paper: PaperClaim, trainable: str, settings: Any, data: Any) -> dict[str, Any]:
    """What must match for a checkpoint to be continued: everything that changes the numbers."""
    from benchmark.artifacts import json_safe

    fixed = {k: v for k, v in settings.__dict__.items() if k not in ("device", "data_dir")}
    return json_safe(
        {
            "experiment": paper.name,
            "trainable": trainable,
            "params": _params(paper, trainable),
            "settings": fixed,
            "data": [data.name, data.split_note, list(data.train.shape)],
        }
    )


def _save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)  # a kill mid-write leaves the previous checkpoint intact


def _load_checkpoint(path: Path, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    import torch

    if not path.exists():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # a truncated or foreign file
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(err).__name__}: {err}); delete it or run "
            "with --fresh to start from epoch 0"
        ) from None
    if payload.get("version") != CHECKPOINT_VERSION or payload.get("fingerprint") != fingerprint:
        theirs = payload.get("fingerprint") or {}
        differs = sorted(
            k
            for k in set(theirs) | set(fingerprint)
            if k != "settings" and theirs.get(k) != fingerprint.get(k)
        ) + sorted(
            f"settings.{k}"
            for k in set(theirs.get("settings", {})) | set(fingerprint["settings"])
            if theirs.get("settings", {}).get(k) != fingerprint["settings"].get(k)
        )
        raise CheckpointError(
            f"checkpoint {path} was written by a different command (differs: "
            f"{', '.join(differs) or 'checkpoint version'}); re-run with the same options to "
            "continue it, pass another --out, or --fresh to discard it"
        )
    return payload


def _member_state(member: Any) -> dict[str, Any]:
    return {
        "epoch": member.epoch,
        "status": member.run.status,
        "reason": member.run.reason,
        "history": member.run.history,
        "g": member._g,
        "d": member._d,
    }


def _restore_member(member: Any, state: Mapping[str, Any]) -> None:
    member.epoch = int(state["epoch"])
    member.run.status, member.run.reason = state["status"], state["reason"]
    member.run.history = list(state["history"])
    member._g, member._d = list(state["g"]), list(state["d"])


def run_experiment(
    paper: PaperClaim,
    settings: Any,
    data: Any,
    device: Any,
    *,
    log: Any = None,
    checkpoints: Path | None = None,
    checkpoint_every: int = 5,
    stop_after: int | None = None,
) -> dict[str, list[SeedRun]]:
    """Train baseline and treatment, each as ONE population of `settings.seeds` members (the
    seeds side by side); {trainable: runs}.

    With `checkpoints` (a folder), each population's state (weights, optimisers, random
    streams, buffers, every member's losses and scores) is saved there every
    `checkpoint_every` epochs and at the end, and a call with the same settings continues
    from the last one instead of epoch 0; on CPU the result is bit-identical to an
    uninterrupted run. `stop_after` (testing): return after that many epochs of training in
    this call, as a killed run would (checkpoints written, no results).
    """
    out: dict[str, list[SeedRun]] = {}
    budget = [stop_after]
    if checkpoints is not None:  # refuse a foreign checkpoint before training anything
        for trainable in (paper.baseline, paper.treatment):
            fp = _fingerprint(paper, trainable, settings, data)
            _load_checkpoint(Path(checkpoints) / f"{trainable}.pt", fp)
    for trainable in (paper.baseline, paper.treatment):
        runs = _train_population(
            paper, trainable, settings, data, device, log, checkpoints, checkpoint_every, budget
        )
        if runs is None:
            return {}
        out[trainable] = runs
    return out


class _Interrupted(Exception):
    pass


def _train_population(
    paper: PaperClaim,
    trainable: str,
    settings: Any,
    data: Any,
    device: Any,
    log: Any,
    checkpoints: Path | None,
    checkpoint_every: int,
    budget: list[int | None],
) -> list[SeedRun] | None:
    from benchmark.progress import Progress
    from benchmark.runner import MemberRun, score_members
    from benchmark.trainables import build, params_class
    from benchmark.trainables.core import freeze

    seeds = settings.seed_list()
    typed = params_class(trainable).from_mapping(_params(paper, trainable))
    population = build(
        trainable, [typed] * len(seeds), data, seeds=seeds, device=device,
        batch_size=settings.batch_size,
    )  # fmt: skip
    members = [MemberRun(trainable, typed, s, settings, data.split_note) for s in seeds]
    fingerprint = _fingerprint(paper, trainable, settings, data)
    path = None if checkpoints is None else Path(checkpoints) / f"{trainable}.pt"
    elapsed, epoch = 0.0, 0
    saved = _load_checkpoint(path, fingerprint) if path is not None else None
    if saved is not None:
        population.load_state_dict(saved["state"])
        for member, state in zip(members, saved["members"], strict=True):
            _restore_member(member, state)
        elapsed, epoch = float(saved["elapsed"]), int(saved["epoch"])
        if log is not None:
            log(f"{trainable}: continuing from the checkpoint at epoch {epoch} ({path})")
    start = time.perf_counter()

    def save() -> None:
        if path is None:
            return
        _save_checkpoint(
            path,
            {
                "version": CHECKPOINT_VERSION,
                "fingerprint": fingerprint,
                "epoch": epoch,
                "elapsed": elapsed + time.perf_counter() - start,
                "state": population.state_dict(),
                "members": [_member_state(m) for m in members],
            },
        )

    bar = Progress(settings.epochs, f"{trainable} x{len(seeds)} seeds")
    live = [m.run.status == "finished" for m in members]
    while epoch < settings.epochs and any(live):
        if budget[0] is not None:
            if budget[0] <= 0:
                return None
            budget[0] -= 1
        freeze(population, live)
        result = population.train_epoch()
        epoch += 1
        for i, member in enumerate(members):
            if live[i] and member.add_epoch(result, i):
                live[i] = False
        due = [i for i, m in enumerate(members) if live[i] and m.due]
        if due:
            scores = score_members(
                population, data, result, n_eval=settings.n_eval,
                exact=[members[i].exact for i in due], extra=[members[i].extra for i in due],
                members=due,
            )  # fmt: skip
            for i, row in zip(due, scores, strict=True):
                if members[i].add_scores(row):
                    live[i] = False
            bar.update(epoch, _note(members[due[0]].run.history[-1]))
        if checkpoint_every and (epoch % checkpoint_every == 0 or epoch == settings.epochs):
            save()
    if path is not None and (not any(live) or epoch == settings.epochs):
        save()
    seconds = elapsed + time.perf_counter() - start
    runs = []
    for i, member in enumerate(members):
        res = member.finish(population, i)
        run = SeedRun(
            trainable=trainable, seed=res.seed, status=res.status, final=dict(res.final),
            history=list(res.history), g_losses=res.g_losses, d_losses=res.d_losses,
            samples=dict(res.samples), seconds=seconds,
        )  # fmt: skip
        if run.status == "finished":
            run.evaluated, run.eval_sd = _evaluate(population, i, data, settings)
        runs.append(run)
        if log is not None:
            w1 = run.final.get("w1", math.nan)
            log(f"{trainable} seed {run.seed}: {run.status}, W1 {w1:.4g}")
    if log is not None:
        log(f"{trainable}: {len(seeds)} seeds side by side in {seconds:.1f}s")
    return runs


def _note(scores: Mapping[str, float]) -> str:
    parts = [f"G {scores.get('g_loss', math.nan):.3f}", f"D {scores.get('d_loss', math.nan):.3f}"]
    if "w1" in scores:
        parts.append(f"W1 {scores['w1']:.3f}")
    return ", ".join(parts)


def _evaluate(
    population: Any, index: int, data: Any, settings: Any
) -> tuple[dict[str, float], dict[str, float]]:
    """Member `index`'s final distances over EVAL_DRAWS evaluation sets of its own (seeds
    derived from the member's seed, so no two seeds share one), and their sd."""
    from benchmark.reference import eval_spread, resampled_distances

    member_seed = settings.seed_list()[index]
    draws = [10_000 + 100 * member_seed + r for r in range(EVAL_DRAWS)]
    means: dict[str, float] = {}
    spread: dict[str, float] = {}
    for k, mode in enumerate(population.sample_modes):
        suffix = "" if k == 0 else f"_{mode}"
        rows = []
        for s in draws:
            samples = population.sample(settings.n_eval, mode, seed=s)[index]
            rows.extend(resampled_distances(samples, data.heldout, n=settings.n_eval, seeds=[s]))
        for key in DISTANCES:
            values = [r[key] for r in rows if math.isfinite(r.get(key, math.nan))]
            if len(values) == len(rows):
                means[key + suffix] = float(np.mean(values))
        spread.update({key + suffix: v for key, v in eval_spread(rows).items()})
    return means, spread


def _values(runs: Sequence[SeedRun], key: str) -> np.ndarray:
    """Finite values of `key` over the finished seeds: a distance from `SeedRun.evaluated`
    when the run has it (evaluation-set variance included), else the last scored epoch."""
    vals = [
        r.evaluated[key] if key in r.evaluated else r.final.get(key, math.nan)
        for r in runs
        if r.status == "finished"
    ]
    return np.array([v for v in vals if v is not None and math.isfinite(v)], dtype=float)


# --------------------------------------------------------------------------------------------
# Analysis
# --------------------------------------------------------------------------------------------


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
            values = _values(runs[trainable], distance)
            if values.size and values.mean() > 0:
                logs.append(math.log10(values.mean() / reported[trainable]))
        if logs:
            orders[distance] = float(np.mean(logs))
    if not orders:
        raise ValueError("no finite measured distance: every run diverged")
    closest = min(orders, key=lambda d: abs(orders[d]))
    within = closest if abs(orders[closest]) <= SCALE_TOLERANCE else None
    return ScaleMatch(within, closest, orders)


def _pooled_floor(a: np.ndarray, b: np.ndarray) -> float:
    groups = [g for g in (a, b) if g.size >= 2]
    dof = sum(g.size - 1 for g in groups)
    if dof == 0:
        return 0.0
    return 2.0 * math.sqrt(sum((g.size - 1) * g.var(ddof=1) for g in groups) / dof)


def claim_rows(paper: PaperClaim, runs: Mapping[str, Sequence[SeedRun]]) -> list[dict[str, Any]]:
    """Does the treatment have a lower distance than the baseline? One row per distance and
    treatment sampling mode: difference (treatment - baseline) with a 95% Welch t CI,
    Welch p, Holm over all rows, noise floor (2 x the pooled seed sd) and a verdict:
    'holds' (stats 'helps'), 'contradicted' ('hurts') or 'inconclusive'."""
    from benchmark import stats

    base_runs, treat_runs = runs[paper.baseline], runs[paper.treatment]
    modes = [("", "buffer")]
    if any("w1_noise" in r.final for r in treat_runs):
        modes.append(("_noise", "noise"))
    pending = []
    for distance in DISTANCES:
        for suffix, mode in modes:
            a, b = _values(base_runs, distance), _values(treat_runs, distance + suffix)
            if a.size == 0 or b.size == 0:
                continue
            comp = stats.compare(a, b)
            pending.append((distance, mode, a, b, comp))
    p_holm = stats.holm([c.p_value if c.p_value is not None else 1.0 for *_, c in pending])
    rows = []
    for (distance, mode, a, b, comp), p in zip(pending, p_holm, strict=True):
        floor = _pooled_floor(a, b)
        adjusted = float(p) if comp.p_value is not None else None
        v = stats.verdict(comp, floor, p_adjusted=adjusted) if adjusted is not None else None
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
    from benchmark import stats

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
            values = _values(runs[trainable], metric)
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


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


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


def data_line(paper: PaperClaim, settings: Any, data: Any) -> str:
    """The run's data in one line, with how it differs from the paper's setting."""
    n_train, n_held = int(data.train.shape[0]), int(data.heldout.shape[0])
    kind = "images" if data.bounded else "points"
    line = (
        f"{data.name}: {n_train} train / {n_held} held-out {kind}, {settings.epochs} epoch(s), "
        f"{settings.seeds} seed(s) per model, n_eval {settings.n_eval} ({data.split_note})"
    )
    differs = []
    if data.name != paper.dataset:
        differs.append(f"dataset {data.name}, not {paper.dataset}")
    if n_train != paper.train_images:
        differs.append(f"{n_train} training images, not the paper's {paper.train_images:,}")
    if settings.epochs != paper.epochs:
        differs.append(f"{settings.epochs} epochs, not {paper.epochs}")
    if differs:
        line += "; NOT the paper's setting: " + "; ".join(differs)
    return line


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
    import pandas as pd

    from benchmark import figures
    from benchmark.artifacts import json_safe
    from benchmark.report import Document, format_p, metric_label

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    b, t = paper.baseline, paper.treatment
    lb, lt = paper.labels[b], paper.labels[t]
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
    (folder / "summary.json").write_text(json.dumps(json_safe(summary), indent=2) + "\n")
    (folder / "results.json").write_text(
        json.dumps(
            json_safe(
                {
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
            ),
            indent=2,
        )
        + "\n"
    )

    doc = Document(f"Reproducing {paper.name}: {lb} vs {lt}")
    doc.note("Data of this run: " + line + ".")
    doc.heading("Bottom line")
    doc.bullets(
        [_scale_text(paper, scale, short=True), *_claim_text(paper, scale, claims)]
        + ([floor_words] if floor_words else [])
    )
    doc.heading("The hypothesis: the paper's numbers")
    doc.paragraph(
        f"Source: {paper.source}. Trained on the full {paper.dataset} training split "
        f"({paper.train_images:,} images) for {paper.epochs} epochs. Claim tested: "
        f"{paper.claim}."
    )
    doc.table(
        ["quantity", lb, lt],
        [
            [q, f"{v[b]:.4f}", f"{v[t]:.4f}"]
            for q, v in (
                ("W distance", paper.reported["w_distance"]),
                ("G loss", paper.reported["g_loss"]),
                ("D loss", paper.reported["d_loss"]),
            )
        ],
    )
    doc.heading("The result: measured side by side")
    rows = []
    for r in table:
        cells = [r["quantity"], _PAPER_NAMES[r["paper_quantity"]], f"{r[f'paper_{b}']:.4f}",
                 f"{r[f'paper_{t}']:.4f}"]  # fmt: skip
        for name in (b, t, f"{t}_noise"):
            cells.append(_ci_cell(r, name))
        cells.append(_num(r.get("floor")) + " / " + _num(r.get("ceiling")))
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
    doc.heading("Which distance is on the paper's scale?")
    doc.paragraph(_scale_text(paper, scale))
    doc.heading(f"Does the claim hold? ({paper.claim})")
    crow = [
        [
            c["distance"],
            c["mode"],
            _num(c["baseline_mean"]),
            _num(c["treatment_mean"]),
            f"{_num(c['diff'])} [{_num(c['ci_low'])}, {_num(c['ci_high'])}]"
            + (" (n=1, no CI)" if c["degenerate"] else ""),
            format_p(c["p_holm"]),
            _num(c["noise_floor"]),
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
    evolution, grids = [], []
    for distance in DISTANCES:
        curves = {}
        for label, trainable, key in ((lb, b, distance), (f"{lt} buffer", t, distance),
                                      (f"{lt} noise", t, distance + "_noise")):  # fmt: skip
            arr = _curve(runs[trainable], key, settings.epochs)
            if arr is not None:
                curves[label] = arr
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
    doc.gallery(evolution, columns=2)
    centers = data.extra.get("centers")
    ref = np.asarray(centers.cpu()) if centers is not None else None
    for trainable in (b, t):
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
    doc.gallery(grids, columns=3)
    doc.heading("Settings")
    doc.bullets(
        [f"{paper.labels[x]} params: `{json.dumps(_params(paper, x))}`" for x in (b, t)]
        + [f"settings: `{json.dumps(json_safe(settings.__dict__))}`"]
    )
    md, page = doc.write(folder)
    return md, page, table, scale, claims


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


def _params(paper: PaperClaim, trainable: str) -> dict[str, Any]:
    from benchmark.trainables import params_class

    return {**params_class(trainable)().to_dict(), **paper.params.get(trainable, {})}


def _num(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.4g}"


def _ci_cell(row: Mapping[str, Any], name: str) -> str:
    mean = row.get(f"{name}_mean")
    if mean is None:
        return "–"
    n = row[f"{name}_n"]
    if n < 2:
        return f"{_num(mean)} (n=1, no CI)"
    return f"{_num(mean)} [{_num(row[f'{name}_ci_low'])}, {_num(row[f'{name}_ci_high'])}] (n={n})"


def _scale_text(paper: PaperClaim, scale: ScaleMatch, *, short: bool = False) -> str:
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


def _claim_text(paper: PaperClaim, scale: ScaleMatch, claims: Sequence[dict]) -> list[str]:
    lines = []
    for distance in dict.fromkeys([scale.distance or scale.closest, "w1"]):
        for c in claims:
            if c["distance"] != distance:
                continue
            scale_note = (
                " (the distance on the paper's scale)" if distance == scale.distance else ""
            )
            outcome = _CLAIM_WORDS[c["verdict"]]
            lines.append(
                f"`{distance}`{scale_note}, {paper.labels[paper.treatment]} {c['mode']} mode: "
                f"the claim {outcome} (Δ {_num(c['diff'])}, 95% CI [{_num(c['ci_low'])}, "
                f"{_num(c['ci_high'])}], Holm p {format_p_text(c['p_holm'])})."
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


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argparse parser."""
    from benchmark.cli import HelpFormatter, add_data_dir, add_train_size

    p = argparse.ArgumentParser(
        prog="python -m benchmark.reproduce",
        description="Re-run a paper's comparison and put its reported numbers beside ours.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("experiment", choices=list(EXPERIMENTS), help="which paper result")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: the paper's)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per model")
    p.add_argument("--dataset", default=None, help="dataset (default: the paper's)")
    add_data_dir(p)
    add_train_size(p)
    p.add_argument("--n-eval", type=int, default=1000, help="samples per side for each distance")
    p.add_argument("--eval-every", type=int, default=1, help="score every k-th epoch")
    p.add_argument("--batch-size", type=int, default=128, help="minibatch (the paper's 128)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument(
        "--out",
        default=None,
        help=f"folder the outputs are written into (default: {DEFAULT_OUT}/<experiment>)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=5,
        metavar="K",
        help="save each population's state every K epochs into OUT/<experiment>/checkpoints/; "
        "re-running the same command continues from there (default 5; 0: only at the end)",
    )
    p.add_argument(
        "--fresh", action="store_true", help="discard existing checkpoints and start at epoch 0"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; 0 when every run finished, 1 when some diverged, 2 for bad input."""
    from benchmark.data import DATASETS, DataError
    from benchmark.runner import load_data, resolve_device
    from benchmark.settings import Settings, SettingsError

    parser = build_parser()
    args = parser.parse_args(argv)
    paper = EXPERIMENTS[args.experiment]
    try:
        dataset = paper.dataset if args.dataset is None else args.dataset
        if dataset not in DATASETS:
            raise SettingsError(f"--dataset {dataset!r} is unknown; valid: {', '.join(DATASETS)}")
        settings = Settings(
            epochs=paper.epochs if args.epochs is None else args.epochs,
            batch_size=args.batch_size,
            dataset=dataset,
            data_dir=args.data_dir,
            seeds=args.seeds,
            train_size=args.train_size,
            n_eval=args.n_eval,
            eval_every=args.eval_every,
            exact_every_epoch=True,
            device=args.device,
        )
        if args.checkpoint_every < 0:
            raise SettingsError(
                f"--checkpoint-every {args.checkpoint_every} is invalid; must be >= 0"
            )
        device = resolve_device(settings.device)
        data = load_data(settings, device)
    except (SettingsError, DataError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    line = data_line(paper, settings, data)
    print(f"{paper.name} on {device}: {line}", flush=True)
    folder = Path(args.out) if args.out is not None else DEFAULT_OUT / paper.name
    checkpoints = folder / "checkpoints"
    if args.fresh:
        for old in checkpoints.glob("*.pt"):
            old.unlink()

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    from benchmark.reference import reference_scale

    try:
        runs = run_experiment(
            paper, settings, data, device, log=log, checkpoints=checkpoints,
            checkpoint_every=args.checkpoint_every,
        )  # fmt: skip
    except CheckpointError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    reference = reference_scale(
        data, settings.n_eval, trainables=(paper.baseline, paper.treatment),
        batch_size=settings.batch_size,
    )  # fmt: skip
    md, page, table, scale, claims = write_outputs(paper, settings, data, runs, folder, reference)
    _print_summary(paper, table, scale, claims)
    print("- " + paper_vs_floor(paper, reference))
    print(f"data: {line}")
    print(
        f"wrote {page}\n      {md}\n      {folder / 'table.csv'}\n      "
        f"{folder / 'summary.json'}\n      checkpoints in {checkpoints} (delete them, or "
        "pass --fresh, to train again from epoch 0)"
    )
    finished = all(r.status == "finished" for rs in runs.values() for r in rs)
    return 0 if finished else 1


def _print_summary(
    paper: PaperClaim, table: Sequence[dict], scale: ScaleMatch, claims: Sequence[dict]
) -> None:
    b, t = paper.baseline, paper.treatment
    print(f"\n{'quantity':<10} {'paper ' + b:>12} {'paper ' + t:>14} {'ours ' + b:>12} "
          f"{'ours ' + t:>14} {'ours ' + t + ' noise':>20} {'floor':>9} "
          f"{'untrained':>10}")  # fmt: skip
    for r in table:
        print(
            f"{r['quantity']:<10} {r[f'paper_{b}']:>12.4f} {r[f'paper_{t}']:>14.4f} "
            f"{_num(r.get(f'{b}_mean')):>12} {_num(r.get(f'{t}_mean')):>14} "
            f"{_num(r.get(f'{t}_noise_mean')):>20} {_num(r.get('floor')):>9} "
            f"{_num(r.get('ceiling')):>10}"
        )
    print(
        "(ours: mean over seeds; floor: real vs real held-out images, untrained: a freshly "
        "initialised G, on the same split and n)"
    )
    print("\n" + _scale_text(paper, scale))
    for line in _claim_text(paper, scale, claims):
        print("- " + line.replace("**", ""))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())

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
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.checkpoints import CheckpointError, fingerprint
from benchmark.checkpoints import load as load_checkpoint
from benchmark.checkpoints import save as save_checkpoint
from benchmark.cli import HelpFormatter, add_data_dir, add_train_size
from benchmark.reporting.claims import (
    DISTANCES,
    EVAL_DRAWS,
    PaperClaim,
    SeedRun,
    data_line,
    paper_params,
)

__all__ = [
    "CheckpointError",
    "DEFAULT_OUT",
    "EXPERIMENTS",
    "REALMIX_PAPER",
    "main",
    "run_experiment",
]

DEFAULT_OUT = Path("results") / "reproduce"
"""Parent folder of the per-experiment outputs."""

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


def _fingerprint(
    paper: PaperClaim, trainable: str, settings: Any, data: Any, extra_every: int = 0
) -> dict[str, Any]:
    """What must match for a checkpoint to be continued: everything that changes the numbers."""
    identity = {"experiment": paper.name, "trainable": trainable}
    identity["params"] = _params(paper, trainable)
    if extra_every:  # (absent when 0: checkpoints written before the option still match)
        identity["extra_every"] = extra_every
    return fingerprint(settings, data, **identity)


_CHECKPOINT_FIX = (
    "re-run with the same options to continue it, pass another --out, or --fresh to discard it"
)
_CHECKPOINT_UNREADABLE = "delete it or run with --fresh to start from epoch 0"


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
    extra_every: int = 0,
) -> dict[str, list[SeedRun]]:
    """Train baseline and treatment, each as ONE population of `settings.seeds` members (the
    seeds side by side); {trainable: runs}.

    With `checkpoints` (a folder), each population's state (weights, optimisers, random
    streams, buffers, every member's losses and scores) is saved there every
    `checkpoint_every` epochs and at the end, and a call with the same settings continues
    from the last one instead of epoch 0; on CPU the result is bit-identical to an
    uninterrupted run. `stop_after` (testing): return after that many epochs of training in
    this call, as a killed run would (checkpoints written, no results). `extra_every` K > 0:
    the extra metrics (classifier-FID, classes covered, copying...) also every K-th epoch,
    for learning curves (with `settings.extra_metrics`, they are computed at the last).
    """
    out: dict[str, list[SeedRun]] = {}
    budget = [stop_after]
    if checkpoints is not None:  # refuse a foreign checkpoint before training anything
        for trainable in (paper.baseline, paper.treatment):
            fp = _fingerprint(paper, trainable, settings, data, extra_every)
            load_checkpoint(
                Path(checkpoints) / f"{trainable}.pt", fp, _CHECKPOINT_FIX, _CHECKPOINT_UNREADABLE
            )
    for trainable in (paper.baseline, paper.treatment):
        runs = _train_population(
            paper, trainable, settings, data, device, log, checkpoints, checkpoint_every, budget,
            extra_every,
        )  # fmt: skip
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
    extra_every: int = 0,
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
    wanted = _fingerprint(paper, trainable, settings, data, extra_every)
    path = None if checkpoints is None else Path(checkpoints) / f"{trainable}.pt"
    elapsed, epoch = 0.0, 0
    saved = None
    if path is not None:
        saved = load_checkpoint(path, wanted, _CHECKPOINT_FIX, _CHECKPOINT_UNREADABLE)
    if saved is not None:
        population.load_state_dict(saved["state"])
        for member, state in zip(members, saved["members"], strict=True):
            member.restore(state)
        elapsed, epoch = float(saved["elapsed"]), int(saved["epoch"])
        if log is not None:
            log(f"{trainable}: continuing from the checkpoint at epoch {epoch} ({path})")
    start = time.perf_counter()

    def save() -> None:
        if path is None:
            return
        save_checkpoint(
            path,
            {
                "fingerprint": wanted,
                "epoch": epoch,
                "elapsed": elapsed + time.perf_counter() - start,
                "state": population.state_dict(),
                "members": [m.state() for m in members],
            },
        )

    bar = Progress(settings.epochs, f"{trainable} x{len(seeds)} seeds")
    live = [m.run.status == "finished" for m in members]
    drawn: dict[str, Any] = {}
    """The last scored epoch's first samples of every member: their sample grids."""
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
        drawn = {}
        if due:
            scores = score_members(
                population, data, result, n_eval=settings.n_eval,
                exact=[members[i].exact for i in due],
                extra=[members[i].extra or bool(extra_every and epoch % extra_every == 0)
                       for i in due],
                members=due, drawn=drawn,
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
        res = member.finish(population, i, drawn=drawn)
        run = SeedRun.from_result(res, seconds)
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
    from benchmark.metrics.reference import eval_spread, resampled_distances

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


def _params(paper: PaperClaim, trainable: str) -> dict[str, Any]:
    """The params each trainable is trained with; the checkpoints' fingerprint holds them."""
    return paper_params(paper, trainable)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argparse parser."""
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
    p.add_argument(
        "--extra-every",
        type=int,
        default=0,
        metavar="K",
        help="also compute the classifier metrics (classifier-FID, classes covered) and the "
        "copy checks every K-th epoch and at the last, for learning curves (0: never)",
    )
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
    # imported here, not at the top: the data and runner modules pull in torch, which
    # `--help` should not wait for
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
            extra_metrics=args.extra_every > 0,
            device=args.device,
        )
        if args.extra_every < 0:
            raise SettingsError(f"--extra-every {args.extra_every} is invalid; must be >= 0")
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

    # here, after training has been set up: matplotlib, scipy and the reference's torch code
    # would slow down `--help` and argument errors
    from benchmark.metrics.reference import reference_scale
    from benchmark.reporting.reproduce import paper_vs_floor, print_summary, write_outputs

    try:
        runs = run_experiment(
            paper, settings, data, device, log=log, checkpoints=checkpoints,
            checkpoint_every=args.checkpoint_every, extra_every=args.extra_every,
        )  # fmt: skip
    except CheckpointError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    reference = reference_scale(
        data, settings.n_eval, trainables=(paper.baseline, paper.treatment),
        batch_size=settings.batch_size,
    )  # fmt: skip
    md, page, table, scale, claims = write_outputs(paper, settings, data, runs, folder, reference)
    print_summary(paper, table, scale, claims)
    print("- " + paper_vs_floor(paper, reference))
    print(f"data: {line}")
    print(
        f"wrote {page}\n      {md}\n      {folder / 'table.csv'}\n      "
        f"{folder / 'summary.json'}\n      checkpoints in {checkpoints} (delete them, or "
        "pass --fresh, to train again from epoch 0)"
    )
    finished = all(r.status == "finished" for rs in runs.values() for r in rs)
    return 0 if finished else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())

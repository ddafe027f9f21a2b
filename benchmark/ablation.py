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
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from benchmark import records
from benchmark.cli import (
    HelpFormatter,
    add_data_dir,
    add_deprecated_alias,
    add_train_size,
    parse_overrides,
)
from benchmark.data import DataError
from benchmark.plan import DEFAULT_STORAGE, StudyPlan, check_resume
from benchmark.plan import UsageError as StudyUsageError
from benchmark.settings import SettingsError, setting_changes
from benchmark.storage import StorageError, open_storage
from benchmark.study import population_arg, run_plan
from benchmark.tracking import TrackingError
from benchmark.trainable import ParamError
from studies import ablation as designs

__all__ = ["DEFAULT_OUT", "DESIGNS", "enqueue_missing", "main"]

DEFAULT_OUT = Path("results") / "ablation"
"""Parent folder of the per-study ablation reports."""

DESIGNS: dict[str, designs.AblationSpace] = {
    "realmix": designs.REALMIX,
    "mixture": designs.MIXTURE,
}
"""--base name -> the design (a `studies.ablation.AblationSpace`)."""

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
        known = {
            **trial.user_attrs.get(records.FIXED, {}),
            **trial.system_attrs.get("fixed_params", {}),
        }
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


def _study_plan(args: argparse.Namespace, design: designs.AblationSpace) -> StudyPlan:
    """The study of `design`: every cell once, random order, no pruning (a StudyPlan)."""
    assignments = parse_overrides(args.setting, "--setting", "n_eval=500", error=ParamError)
    # --train-size and --n-eval act as --setting items given first: a --setting of one wins
    first = {"train_size": args.train_size, "n_eval": args.n_eval}
    flags = {"epochs": args.epochs, "seeds": args.seeds, "dataset": args.dataset}
    flags["data_dir"] = args.data_dir
    changes = {k: v for k, v in first.items() if v is not None}
    changes.update(setting_changes(assignments, flags))
    population = 1 if args.population is None else population_arg(args.population)
    return StudyPlan.create(
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


def run_design(args: argparse.Namespace, design: designs.AblationSpace) -> tuple[StudyPlan, int]:
    """Create or resume the study, enqueue missing cells, run them; (plan, exit code)."""
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
        check_resume(plan, attrs)  # UsageError before anything is enqueued

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

    return plan, run_plan(plan, prepare=enqueue)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argparse parser."""
    from benchmark.reporting.stats import TESTS  # here: scipy is slow to import for --help

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
    # imported here, not at the top: these pull in scipy, mlflow and matplotlib (seconds),
    # which `--help` and an argument error should not wait for
    from benchmark.reporting.ablation import write_ablation_report
    from benchmark.reporting.load import ReportError, load_study_data
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

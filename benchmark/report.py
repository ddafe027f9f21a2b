"""python -m benchmark.report: a study's tables and figures, with its uncertainty shown honestly.

    python -m benchmark.report --study realmix-mnist-wasserstein
    python -m benchmark.report --study compare-mnist-wasserstein --storage sqlite:///optuna.db

Reads the Optuna storage (trial params, objective values, per-seed summaries) and the study's
MLflow runs (per-seed final metrics, per-epoch histories, sample grids) and writes
``report.html`` (self-contained: figures embedded as base64 PNG), ``report.md``,
``summary.csv`` and every figure as PNG into ``<out>/<study>/`` (default
``results/reports/<study>/``). The loading lives in `benchmark.reporting.load`, the sections
in `benchmark.reporting.study_report`; this module is the command line.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmark.cli import HelpFormatter
from benchmark.plan import DEFAULT_STORAGE

__all__ = ["DEFAULT_OUT", "build_parser", "main"]

DEFAULT_OUT = Path("results") / "reports"
"""Parent folder of the per-study report folders."""


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argparse parser."""
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
    # imported after the arguments are checked: optuna, mlflow and matplotlib take seconds to
    # import, which `--help` and a usage error should not wait for
    from benchmark.reporting.load import ReportError, load_study_data
    from benchmark.reporting.study_report import build_report

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

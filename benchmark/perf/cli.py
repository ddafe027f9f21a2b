"""The command line of `python -m benchmark.perf`: flags -> PerfSettings -> run -> report."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

from benchmark import native
from benchmark.cli import HelpFormatter, add_data_dir, add_deprecated_alias
from benchmark.data import DATASETS, DataError, load_dataset
from benchmark.perf.machine import publish
from benchmark.perf.ops import count_ops_table
from benchmark.perf.run import run_perf
from benchmark.perf.settings import PerfSettings
from benchmark.perf.tables import render_markdown
from benchmark.runner import resolve_device
from benchmark.settings import SettingsError
from benchmark.trainable import ParamError
from benchmark.trainables import VARIANTS

__all__ = ["build_parser", "count_ops_main", "main"]

_OPTIONS: tuple[tuple[str, type, str], ...] = (
    ("--rounds", int, "interleaved timed rounds"),
    ("--warmup", int, "untimed rounds first"),
    ("--target-epochs", int, "epoch budget of one trial for the trials-per-hour extrapolation"),
    (
        "--epoch-size",
        int,
        "samples per epoch for the extrapolation (default: the loaded training split; "
        "60000 for the full MNIST training split)",
    ),
    ("--batch-size", int, "minibatch size"),
    ("--n-eval", int, "samples per side when scoring"),
    ("--device", str, "auto, cpu, cuda or cuda:N"),
    ("--threads", int, "torch threads (default: all)"),
    (
        "--workers",
        int,
        "also time this many trials/populations at once, threads/workers torch threads "
        "each (default: 2 on a CPU with >= 2 threads, else 1)",
    ),
    ("--seed", int, "seed of the naive trial and of member 0 (member i gets seed + i)"),
)
"""The flags between --epochs and --out, in --help order: (flag, type, help); each defaults to
its PerfSettings field."""


def _parse_populations(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise SettingsError(
            f"--populations {text!r} is invalid: give positive population sizes separated by "
            "commas, e.g. 1,4,8"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argparse parser."""
    d = PerfSettings()
    p = argparse.ArgumentParser(
        prog="python -m benchmark.perf",
        description="Time MixBench populations against a naive per-trial PyTorch loop, "
        "side by side on this device, and write the table to results/benchmarks/.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--trainable", default=d.trainable, help=f"one of {', '.join(VARIANTS)}")
    p.add_argument("--dataset", default=d.dataset, help=f"one of {', '.join(DATASETS)}")
    add_data_dir(p)
    p.add_argument(
        "--populations",
        default=",".join(map(str, d.populations)),
        help="population sizes timed, comma-separated",
    )
    budget = p.add_mutually_exclusive_group()
    budget.add_argument(
        "--steps", type=int, default=d.steps, help="member-iterations timed per contender"
    )
    budget.add_argument(
        "--epochs",
        type=float,
        default=None,
        help="instead of --steps: epochs timed per contender (default: use --steps)",
    )
    for flag, kind, text in _OPTIONS:
        default = getattr(d, flag[2:].replace("-", "_"))
        p.add_argument(flag, type=kind, default=default, help=text)
    p.add_argument(
        "--out", dest="out_dir", default=d.out_dir, help="folder the report is written into"
    )
    add_deprecated_alias(p, "--out-dir", "--out", dest="out_dir")
    p.add_argument(
        "--baseline-engine",
        default=None,
        metavar="DIR",
        help="also time the engine of another MixBench checkout (e.g. a git worktree of the "
        "previous commit), in subprocesses, as 'previous engine P=k' rows (default: none)",
    )
    p.add_argument(
        "--count-ops",
        action="store_true",
        help="only print ATen operators per training iteration of every variant at each "
        "--populations size (no timing, nothing written)",
    )
    return p


def count_ops_main(args: argparse.Namespace) -> int:
    """`--count-ops`: the op-count table on stdout."""
    populations = _parse_populations(args.populations)
    if not populations or any(p < 1 for p in populations):
        raise SettingsError(f"--populations {args.populations} is invalid: e.g. 1,4,16")
    device = resolve_device(args.device)
    data = load_dataset(
        args.dataset, data_dir=args.data_dir, device=device, batch_size=args.batch_size
    )
    _, table = count_ops_table(data, populations, device=device, batch_size=args.batch_size)
    print(
        f"ATen operators per training iteration ({data.name}, batch {args.batch_size}, "
        f"{device}; each variant's default params, Mixture GAN t ~ uniform; random streams: "
        f"Philox-4x32-10 in {native.implementation(device)}, a compiled call counted as "
        "one operator):"
    )
    print(table)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; exit code 2 on bad settings or missing data."""
    args = build_parser().parse_args(argv)
    if args.count_ops:
        try:
            return count_ops_main(args)
        except (SettingsError, DataError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    try:
        # every PerfSettings field has the flag of the same name (dest = field name)
        given = {f.name: getattr(args, f.name) for f in dataclasses.fields(PerfSettings)}
        settings = PerfSettings(**given | {"populations": _parse_populations(args.populations)})
        report = run_perf(settings, log=lambda m: print(m, file=sys.stderr, flush=True))
    except (ParamError, SettingsError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    publish(settings.out_dir, report.stem, render_markdown(report), report.to_json())
    return 0

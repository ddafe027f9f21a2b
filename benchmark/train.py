"""python -m benchmark.train: one run of one trainable, no Optuna, for debugging a config."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmark.artifacts import json_safe, write_run_artifacts
from benchmark.cli import HelpFormatter, add_data_dir, add_train_size, parse_overrides
from benchmark.data import DATASETS, DataError
from benchmark.runner import load_data, resolve_device, train_run
from benchmark.settings import Settings, SettingsError, setting_changes
from benchmark.trainable import ParamError
from benchmark.trainables import VARIANTS, params_class

__all__ = ["DEFAULT_OUT", "build_parser", "main"]

DEFAULT_OUT = Path("results") / "runs"
"""Parent folder of the run folders when --out is not given."""

COLUMNS = (
    ("epoch", "epoch", "{:>5.0f}"),
    ("g_loss", "G loss", "{:>7.4f}"),
    ("d_loss", "D loss", "{:>7.4f}"),
    ("w1", "W1 exact", "{:>8.4f}"),
    ("sliced_w2", "SW2", "{:>7.4f}"),
    ("pixel_w1", "pixel W1", "{:>8.5f}"),
    ("w1_noise", "W1 noise", "{:>8.4f}"),
    ("sliced_w2_noise", "SW2 noise", "{:>9.4f}"),
    ("pixel_w1_noise", "pixW1 noise", "{:>11.5f}"),
    ("seconds", "sec", "{:>6.1f}"),
)


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argparse parser."""
    p = argparse.ArgumentParser(
        prog="python -m benchmark.train",
        description="Train one GAN variant once and write its metrics, samples and loss curves.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--trainable", required=True, help=f"one of {', '.join(VARIANTS)}")
    p.add_argument("--dataset", default="mnist", help=f"one of {', '.join(DATASETS)}")
    p.add_argument("--epochs", type=int, default=3, help="training epochs")
    p.add_argument("--batch-size", type=int, default=128, help="minibatch size")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a trainable parameter (see --list-params); repeatable (default: the "
        "variant's paper defaults)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the run (weights, data order)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    add_data_dir(p)
    add_train_size(p)
    p.add_argument("--n-eval", type=int, default=1000, help="samples per side for the exact W1")
    p.add_argument(
        "--exact-every-epoch",
        action="store_true",
        help="exact W1 at every epoch (default: only at the last, sliced W2 before)",
    )
    p.add_argument(
        "--extra-metrics",
        action="store_true",
        help="also score copying and class/mode coverage at the last epoch (default: off)",
    )
    p.add_argument(
        "--out",
        default=None,
        help="folder the run's files are written into (default: results/runs/NAME)",
    )
    p.add_argument(
        "--name",
        default=None,
        help="run name, the folder under results/runs/ when --out is not given (default: "
        "<trainable>-<dataset>-s<seed>-<date>-<time>)",
    )
    p.add_argument(
        "--list-params",
        action="store_true",
        help="print the trainable's parameters with their ranges and exit (default: off)",
    )
    return p


def _row(values: dict[str, float], keys: Sequence[tuple[str, str, str]]) -> str:
    cells = []
    for key, _title, fmt in keys:
        v = values.get(key)
        width = len(fmt.format(0.0))
        cells.append(fmt.format(v) if v is not None else "-".rjust(width))
    return " ".join(cells)


def _print_reference(
    data: Any, settings: Settings, trainable: str, keys: Sequence[tuple[str, str, str]]
) -> None:
    """Two rows under the table: the real-vs-real floor and an untrained G's score of every
    distance column, on the same split and n (cached after the first run)."""
    from benchmark.metrics.reference import reference_scale

    scale = reference_scale(
        data, settings.n_eval, trainables=(trainable,), batch_size=settings.batch_size
    )
    floor, ceiling = {}, {}
    for key, _title, _fmt in keys:
        base = key.removesuffix("_noise")
        suffix = key[len(base) :]
        if base in scale.floor:
            floor[key] = scale.floor[base]
            own = scale.ceiling.get(trainable + suffix) or scale.ceiling.get(trainable, {})
            ceiling[key] = own.get(base)
    print(_row(floor, keys) + "   <- real-vs-real floor (two sets of held-out images)")
    print(_row(ceiling, keys) + f"   <- untrained {trainable} (a freshly initialised G)")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cls = params_class(args.trainable)
        if args.list_params:
            for name in cls.names():
                print(f"{cls.describe(name)} (default {getattr(cls(), name)!r})")
            return 0
        params = cls.from_mapping(parse_overrides(args.param, error=ParamError))
        flags = {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "dataset": args.dataset,
            "data_dir": args.data_dir,
            "base_seed": args.seed,
            "n_eval": args.n_eval,
            "train_size": args.train_size,
            "extra_metrics": args.extra_metrics,
            "exact_every_epoch": args.exact_every_epoch,
            "device": args.device,
        }
        settings = Settings().replace(**setting_changes({}, flags))
        device = resolve_device(settings.device)
        data = load_data(settings, device)
    except (ParamError, SettingsError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    print(f"{args.trainable} on {data.name} ({device}): {data.split_note}")
    print(f"params: {json.dumps(params.to_dict())}")
    keys = [c for c in COLUMNS if not c[0].endswith("_noise") or args.trainable == "realmix"]
    print(" ".join(f"{title:>{len(fmt.format(0.0))}}" for _, title, fmt in keys))

    def show(epoch: int, scores: dict[str, float]) -> bool:
        print(_row(scores, keys), flush=True)
        return False

    try:
        result = train_run(
            args.trainable,
            params.to_dict(),
            settings,
            seed=args.seed,
            data=data,
            device=device,
            on_epoch=show,
            progress=True,
        )
    except (ParamError, SettingsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    _print_reference(data, settings, args.trainable, keys)
    name = (
        args.name or f"{args.trainable}-{data.name}-s{args.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    out = Path(args.out) if args.out is not None else DEFAULT_OUT / name
    paths = write_run_artifacts(result, out, data=data, settings=json_safe(settings.__dict__))
    if result.status == "diverged":
        print(f"run diverged: {result.reason}", file=sys.stderr)
    print(f"status: {result.status}; {result.seconds:.1f}s; wrote {out}/")
    for kind, path in paths.items():
        print(f"  {kind}: {path}")
    return 0 if result.status == "finished" else 1


if __name__ == "__main__":
    sys.exit(main())

"""python -m benchmark.copy_curve: the measured detection limit of `copying.copy_detection`.

    python -m benchmark.copy_curve --data-dir ../shared/data

Mixes noisy copies of real MNIST training digits (each pixel + N(0, 0.05^2)) into sets of
generated samples at shares 0-30%, on three backgrounds: fresh digits (held-out images never
used as the reference: a faithful generator), fresh digits with heavy pixel noise (an
underfitting generator) and uniform noise (a generator that draws nothing). Each mixture is
scored exactly as `copy_detection` scores a run (1,000 generated vs 1,000 held-out samples,
the whole training split, 8 k-means cells for C_T) and its verdict recorded, over several
random draws per share. Writes curve.json (every statistic of every draw and the share of
"copying" verdicts per share) and curve.png into ``results/copy-detection/``.

NN distances of every candidate sample are computed once, so the curve takes seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.data import DataError
from benchmark.metrics import copying as ev
from benchmark.runner import load_data
from benchmark.settings import Settings

__all__ = ["BACKGROUNDS", "copy_curve", "main"]

DEFAULT_OUT = Path("results") / "copy-detection"
BACKGROUNDS = ("faithful", "underfitting", "noise")
SHARES = (*(round(0.01 * k, 3) for k in range(16)), 0.2, 0.25, 0.3)
COPY_NOISE = 0.05
"""Pixel noise sd of a noisy copy (images in [-1, 1]): NN distance ~1.4 vs ~9.6 for fresh."""
UNDERFIT_NOISE = 0.4
"""Pixel noise sd of the underfitting background."""


def _pools(data: Any, m: int, seed: int) -> dict[str, torch.Tensor]:
    """Candidate samples: 'heldout' (the whole held-out split: each draw splits it into the
    reference and the fresh digits), 'underfitting' (every held-out image with heavy noise),
    'copies' and 'noise' (2m each)."""
    g = torch.Generator().manual_seed(seed)
    held = data.heldout
    if held.shape[0] < 2 * m:
        raise ValueError(f"the held-out split has {held.shape[0]} images; need 2 x {m}")
    picks = torch.randperm(data.train.shape[0], generator=g)[: 2 * m]
    copies = data.train[picks] + COPY_NOISE * torch.randn(2 * m, data.dim, generator=g)
    blurred = (held + UNDERFIT_NOISE * torch.randn(held.shape, generator=g)).clamp(-1, 1)
    noise = torch.rand(2 * m, data.dim, generator=g) * 2 - 1
    return {"heldout": held, "copies": copies, "underfitting": blurred, "noise": noise}


def copy_curve(
    data: Any,
    *,
    m: int = 1000,
    cells: int = 8,
    draws: int = 20,
    shares: Sequence[float] = SHARES,
    percentile: float = 5.0,
    seed: int = 0,
) -> dict[str, Any]:
    """The detection curve: for each background and share of noisy copies, the verdicts of
    `draws` random mixtures of m samples (see the module docstring). Each draw also splits
    the held-out split afresh into the m reference images and the m fresh ones, so the
    threshold's own sampling error is part of the curve."""
    pools = _pools(data, m, seed)
    train = data.train
    centres, train_lab = ev.kmeans(train, cells, seed=seed)
    pre = {}
    for name, pool in pools.items():
        lab, cell = ev.cell_distances(pool, centres, train, train_lab)
        pre[name] = (ev.nearest_distances(pool, train), lab, cell)
    rng = np.random.default_rng(seed)
    n_held = int(pools["heldout"].shape[0])
    curves: dict[str, list[dict[str, Any]]] = {b: [] for b in BACKGROUNDS}
    for share in shares:
        c = int(round(share * m))
        found: dict[str, list[dict[str, Any]]] = {b: [] for b in BACKGROUNDS}
        for _ in range(draws):
            order = rng.permutation(n_held)
            ref, fresh = order[:m], order[m : 2 * m]
            held = tuple(t[torch.as_tensor(ref)] for t in pre["heldout"])
            threshold = float(torch.quantile(held[0], percentile / 100.0))
            take_c = rng.choice(2 * m, size=c, replace=False)
            for background in BACKGROUNDS:
                pool = {"faithful": "heldout"}.get(background, background)
                if background == "noise":
                    take_b = rng.choice(2 * m, size=m - c, replace=False)
                else:
                    take_b = rng.choice(fresh, size=m - c, replace=False)
                parts = [(pre["copies"], take_c), (pre[pool], take_b)]
                found[background].append(_verdict(parts, held, threshold, cells, percentile))
        for background, stats in found.items():
            curves[background].append(_row(share, c, stats))
    return {
        "m_generated": m,
        "n_heldout": m,
        "n_train": int(train.shape[0]),
        "cells": cells,
        "draws": draws,
        "percentile": percentile,
        "copy_noise_sd": COPY_NOISE,
        "underfit_noise_sd": UNDERFIT_NOISE,
        "rule": (
            "copying if Z_U < -3, C_T < -3 or the close-sample count exceeds its no-copying "
            "expectation by more than 3 standard errors (copy_excess_z); else underfitting if "
            "Z_U > 3; else no copying detected"
        ),
        "dataset": data.name,
        "split_note": data.split_note,
        "curves": curves,
        "detection_limit": {b: _limit(rows) for b, rows in curves.items()},
    }


Precomputed = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""Per candidate sample: NN distance to train, k-means cell, NN distance within the cell."""


def _verdict(
    parts: Sequence[tuple[Precomputed, np.ndarray]],
    held: Precomputed,
    threshold: float,
    cells: int,
    percentile: float,
) -> dict[str, Any]:
    """Every statistic and the verdict of one mixture: the samples `parts` pick (pool, index)
    against the reference held-out samples `held`, as `copy_detection` computes them."""
    m = sum(len(i) for _, i in parts)
    d, lab, cell = (
        torch.cat([p[k][torch.as_tensor(i, dtype=torch.long)] for p, i in parts]) for k in range(3)
    )
    close = int((d < threshold).sum())
    excess = ev.copy_excess_z(close, m, int(held[0].shape[0]), percentile)
    zu = ev.z_u(d, held[0])
    c_t, _ = ev.c_t_from(lab, cell, held[1], held[2], cells, 20)
    return {"z_u": zu, "c_t": c_t, "excess_z": excess, "copy_fraction": close / m,
            "verdict": ev.copy_verdict(zu, c_t, excess)}  # fmt: skip


def _row(share: float, copies: int, stats: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One point of a background's curve: the share of each verdict over the draws."""
    verdicts = [s["verdict"] for s in stats]
    draws = len(stats)
    return {
        "share": share,
        "copies": copies,
        "copying": verdicts.count("copying") / draws,
        "underfitting": verdicts.count("underfitting") / draws,
        "no_copying": verdicts.count("no copying detected") / draws,
        "median_z_u": float(np.median([s["z_u"] for s in stats])),
        "median_c_t": float(np.median([s["c_t"] for s in stats if s["c_t"]])),
        "median_excess_z": float(np.median([s["excess_z"] for s in stats])),
        "draws": list(stats),
    }


def _limit(rows: Sequence[dict[str, Any]]) -> float | None:
    """The smallest share from which every larger share is called 'copying' in >= 95% of
    draws; None when no share reaches it."""
    limit = None
    for row in reversed(rows):
        if row["copying"] < 0.95:
            break
        limit = row["share"]
    return limit


def _figure(curve: dict[str, Any], path: Path) -> Path:
    # matplotlib only for the figure, and the Agg backend must be chosen before pyplot loads
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    styles = {"faithful": "-", "underfitting": "--", "noise": ":"}
    for background, rows in curve["curves"].items():
        ax.plot([100 * r["share"] for r in rows], [r["copying"] for r in rows], marker="o",
                ls=styles.get(background, "-"), label=f"{background} background")  # fmt: skip
    ax.axhline(0.95, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("noisy copies of training digits in the set (%)")
    ax.set_ylabel("share of draws called 'copying'")
    ax.set_title(
        f"Copy detection on MNIST: {curve['m_generated']} generated vs {curve['n_heldout']} "
        f"held-out, {curve['draws']} draws"
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; 2 for bad input."""
    p = argparse.ArgumentParser(
        prog="python -m benchmark.copy_curve",
        description="Measure copy detection's verdict against the share of copied digits.",
    )
    p.add_argument("--data-dir", default=None, help="folder with one sub-folder per dataset")
    p.add_argument("--draws", type=int, default=20, help="random mixtures per share")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="output folder")
    args = p.parse_args(argv)
    if args.draws < 1:
        print(f"{p.prog}: error: --draws {args.draws} must be >= 1", file=sys.stderr)
        return 2
    try:
        data = load_data(Settings(dataset="mnist", data_dir=args.data_dir), torch.device("cpu"))
        curve = copy_curve(data, draws=args.draws)
    except (DataError, ValueError) as err:
        print(f"{p.prog}: error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "curve.json").write_text(json.dumps(curve, indent=1) + "\n")
    _figure(curve, out / "curve.png")
    for background, rows in curve["curves"].items():
        cells = ", ".join(f"{100 * r['share']:.1f}%: {r['copying']:.2f}" for r in rows)
        print(f"{background}: share of draws called copying by share of copies: {cells}")
    print(f"detection limit (>= 95% of draws from there on): {curve['detection_limit']}")
    print(f"wrote {out / 'curve.json'}\n      {out / 'curve.png'}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())

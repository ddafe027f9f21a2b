"""Figures for MixBench runs and reports: each function takes arrays and a path, writes a PNG.

Figures are drawn on `matplotlib.figure.Figure` objects rendered by the Agg canvas, never
through pyplot, so importing this module changes no global backend and nothing leaks between
calls (safe in worker processes and threads). Inputs are plain arrays; nothing here imports
optuna or mlflow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from benchmark.reporting.stats import ExpectedBest

__all__ = [
    "DPI",
    "VERDICT_COLORS",
    "contour_plot",
    "effects_plot",
    "expected_best_plot",
    "importance_plot",
    "log_ticks",
    "loss_curves",
    "metric_curves",
    "pareto_plot",
    "sample_grid",
    "slice_plot",
    "strip_plot",
]

DPI = 120
"""Resolution of every PNG written here."""

VERDICT_COLORS = {"helps": "#1a9850", "hurts": "#d73027", "inconclusive": "#7f7f7f"}
"""Colour of each verdict in `effects_plot` (colour-blind-safe green/red/grey)."""


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    out = Path(path)
    if out.suffix.lower() != ".png":
        raise ValueError(f"path must end in .png (figures are written as PNG); got {str(out)!r}.")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=DPI, bbox_inches="tight")
    return out


def _curve(values: Any, name: str) -> np.ndarray:
    """A 1-D (epochs,) or 2-D (seeds, epochs) float array; NaN allowed (pruned/diverged)."""
    arr = np.asarray(values, dtype=float)
    if arr.ndim not in (1, 2) or arr.size == 0:
        raise ValueError(
            f"{name} must be a non-empty (steps,) or (seeds, steps) array; got shape {arr.shape}."
        )
    return arr


def _smooth(y: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over ``window`` points, ignoring NaN; the first points average
    what is available (no edge artefacts, no look-ahead)."""
    if window <= 1:
        return y
    ok = np.isfinite(y)
    vals = np.where(ok, y, 0.0)
    csum = np.concatenate([[0.0], np.cumsum(vals)])
    ccount = np.concatenate([[0], np.cumsum(ok)])
    idx = np.arange(1, y.size + 1)
    start = np.maximum(idx - window, 0)
    count = ccount[idx] - ccount[start]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (csum[idx] - csum[start]) / count
    return np.where(count > 0, out, np.nan)


def _mean_band(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Mean over seeds (ignoring NaN) and its +/-1 sd band (None for a single curve)."""
    if arr.ndim == 1:
        return arr, None
    count = np.isfinite(arr).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        masked = np.where(np.isfinite(arr), arr, np.nan)
        total = np.nansum(masked, axis=0)
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        sq = np.nansum((masked - mean) ** 2, axis=0)
        sd = np.where(count > 1, np.sqrt(sq / np.maximum(count - 1, 1)), 0.0)
    return mean, sd


def _check_log(values: np.ndarray, label: str, what: str) -> None:
    finite = values[np.isfinite(values)]
    if finite.size and finite.min() <= 0:
        raise ValueError(
            f"{what} on a log scale needs positive values; {label!r} has minimum "
            f"{finite.min():.4g}. Pass log=False or shift the values."
        )


# --------------------------------------------------------------------------------------------
# Training curves
# --------------------------------------------------------------------------------------------


MARKED_POINTS = 20
"""Curves of at most this many points are drawn with a marker at every point."""


def loss_curves(
    g_losses_by_label: Mapping[str, Any],
    d_losses_by_label: Mapping[str, Any],
    path: str | Path,
    *,
    smooth: int = 1,
    xlabel: str = "step",
    title: str | None = None,
) -> Path:
    """Generator and discriminator losses side by side, one line per label.

    Each value is a (steps,) array, or (seeds, steps) for a mean line with a +/-1 sd band.
    ``smooth`` > 1 draws a trailing moving average over that many steps on top of the faint
    raw curve. NaN values (diverged steps) leave gaps.
    """
    if int(smooth) != smooth or smooth < 1:
        raise ValueError(f"smooth must be an integer window >= 1 (1 = raw); got {smooth!r}.")
    if not g_losses_by_label and not d_losses_by_label:
        raise ValueError("loss_curves needs at least one labelled loss array.")
    fig = _new_figure(11.0, 4.0)
    axes = fig.subplots(1, 2)
    colors = _label_colors([*g_losses_by_label, *d_losses_by_label])
    panels = (
        (axes[0], g_losses_by_label, "Generator loss"),
        (axes[1], d_losses_by_label, "Discriminator loss"),
    )
    for ax, by_label, panel_title in panels:
        for label, values in by_label.items():
            arr = _curve(values, f"losses[{label!r}]")
            mean, sd = _mean_band(arr)
            x = np.arange(1, mean.size + 1)
            color = colors[label]
            if smooth > 1:
                ax.plot(x, mean, color=color, alpha=0.25, linewidth=0.8)
                ax.plot(x, _smooth(mean, int(smooth)), color=color, label=label, linewidth=1.6)
            else:
                # a line needs two points: short curves (e.g. a 1-epoch study) get markers
                marker = "o" if mean.size <= MARKED_POINTS else None
                ax.plot(x, mean, color=color, label=label, linewidth=1.2, marker=marker, ms=4)
            if sd is not None:
                ax.fill_between(x, mean - sd, mean + sd, color=color, alpha=0.15, linewidth=0)
        ax.set_title(panel_title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        if by_label:
            ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    note = f"moving average over {int(smooth)} {xlabel}s" if smooth > 1 else None
    if note:
        fig.text(0.99, 0.01, note, ha="right", va="bottom", fontsize="x-small", color="0.4")
    return _save(fig, path)


def _label_colors(labels: list[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    out: dict[str, Any] = {}
    for label in labels:
        if label not in out:
            out[label] = cmap(len(out) % 10)
    return out


def metric_curves(
    values_by_label: Mapping[str, Any],
    path: str | Path,
    *,
    ylabel: str,
    log: bool = False,
    band: str = "sd",
    xlabel: str = "epoch",
    title: str | None = None,
    x: Sequence[float] | None = None,
) -> Path:
    """A metric over epochs, one line per label (at epochs 1, 2, ... or at `x`).

    Each value is (epochs,) for one run, or (seeds, epochs): then the mean over seeds with a
    shaded band (the legend gives the seed count): ``band='sd'`` is mean +/- 1 sd, 'minmax'
    the range over seeds (better for skewed metrics on a log axis, where an sd band below
    zero is clipped to the smallest observed value). NaN entries (runs pruned or diverged
    before that epoch) are left out of the mean at that epoch.
    """
    if not values_by_label:
        raise ValueError("metric_curves needs at least one labelled array.")
    if band not in _BAND_LABELS:
        raise ValueError(f"band must be one of {list(_BAND_LABELS)}; got {band!r}.")
    fig = _new_figure(7.0, 4.5)
    ax = fig.subplots()
    colors = _label_colors(list(values_by_label))
    any_band = False
    for label, values in values_by_label.items():
        arr = _curve(values, f"values_by_label[{label!r}]")
        if log:
            _check_log(arr, label, ylabel)
        mean, sd = _mean_band(arr)
        at = np.arange(1, mean.size + 1) if x is None else np.asarray(x, dtype=float)
        if at.shape != mean.shape:
            raise ValueError(f"x has {at.size} points; {label!r} has {mean.size} epochs")
        legend = label if arr.ndim == 1 else f"{label} (n={arr.shape[0]} seeds)"
        ax.plot(at, mean, color=colors[label], label=legend, linewidth=1.6, marker=".")
        if sd is None or arr.shape[0] < 2:
            continue
        any_band = True
        if band == "sd":
            low, high = mean - sd, mean + sd
        else:
            finite = np.where(np.isfinite(arr), arr, np.nan)
            with np.errstate(invalid="ignore"):
                low, high = np.nanmin(finite, axis=0), np.nanmax(finite, axis=0)
        if log:  # a log axis cannot show values <= 0
            low = np.maximum(low, np.nanmin(arr[np.isfinite(arr)]))
        ax.fill_between(at, low, high, color=colors[label], alpha=0.2, linewidth=0)
    if log:
        ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    suffix = f" ({_BAND_LABELS[band]})" if any_band else ""
    ax.set_title(title or f"{ylabel} by {xlabel}{suffix}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    return _save(fig, path)


_BAND_LABELS = {"sd": "mean ± 1 sd over seeds", "minmax": "mean, range over seeds"}


# --------------------------------------------------------------------------------------------
# Samples
# --------------------------------------------------------------------------------------------


def sample_grid(
    samples: Any,
    path: str | Path,
    *,
    nrow: int = 8,
    title: str | None = None,
    reference_points: Any = None,
    max_images: int = 64,
) -> Path:
    """Generated samples: an image grid for (N, side*side) images, a scatter for (N, 2) points.

    Images are expected in [-1, 1] (tanh outputs) and are clipped to it; ``nrow`` images go in
    each row and at most ``max_images`` are shown. For 2-D points ``reference_points`` (e.g.
    the mode centres of ring8/grid25, shape (M, 2)) are drawn as red crosses over the samples.
    """
    arr = np.asarray(samples, dtype=float)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"samples must be a non-empty (N, D) array; got shape {arr.shape}.")
    if int(nrow) != nrow or nrow < 1:
        raise ValueError(f"nrow must be a positive integer; got {nrow!r}.")
    if arr.shape[1] == 2:
        return _scatter_samples(arr, path, title=title, reference_points=reference_points)
    side = math.isqrt(arr.shape[1])
    if side * side != arr.shape[1]:
        raise ValueError(
            f"samples have D={arr.shape[1]}: expected 2 (points) or a square image size such "
            "as 784 (28x28, flattened)."
        )
    images = np.clip(arr[:max_images], -1.0, 1.0).reshape(-1, side, side)
    n = images.shape[0]
    cols = min(int(nrow), n)
    rows = math.ceil(n / cols)
    pad = 2
    # Light grey gutters keep dark-background digits apart.
    canvas = np.full((rows * (side + pad) + pad, cols * (side + pad) + pad), 0.4)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        top, left = pad + r * (side + pad), pad + c * (side + pad)
        canvas[top : top + side, left : left + side] = img
    scale = 0.45 if side <= 32 else 0.9
    fig = _new_figure(max(2.5, cols * scale + 0.4), max(2.5, rows * scale + 0.6))
    ax = fig.subplots()
    ax.imshow((canvas + 1.0) / 2.0, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title or f"{n} samples")
    return _save(fig, path)


def _scatter_samples(
    points: np.ndarray, path: str | Path, *, title: str | None, reference_points: Any
) -> Path:
    fig = _new_figure(5.5, 5.5)
    ax = fig.subplots()
    finite = np.isfinite(points).all(axis=1)
    ax.scatter(
        points[finite, 0],
        points[finite, 1],
        s=4,
        alpha=0.35,
        color="#1f77b4",
        label=f"samples (n={int(finite.sum())})",
        linewidths=0,
    )
    if reference_points is not None:
        ref = np.asarray(reference_points, dtype=float)
        if ref.ndim != 2 or ref.shape[1] != 2:
            raise ValueError(f"reference_points must be (M, 2); got shape {ref.shape}.")
        ax.scatter(ref[:, 0], ref[:, 1], marker="x", s=60, color="#d62728", label="mode centres")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.set_title(title or "samples")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper right")
    return _save(fig, path)


# --------------------------------------------------------------------------------------------
# Report figures
# --------------------------------------------------------------------------------------------


def expected_best_plot(
    curves: Mapping[str, ExpectedBest],
    path: str | Path,
    *,
    ylabel: str = "best objective",
    title: str | None = None,
    log_x: bool = True,
    log_y: bool = False,
) -> Path:
    """Expected best score after n trials, one line per search (e.g. per variant), with bands.

    The band is whatever each `ExpectedBest` carries ('order': spread over trial orders;
    'bootstrap': CI of the curve); the legend says which and how many trials it rests on.
    `log_y` keeps a few far-off values (a diverging configuration) from flattening the rest.
    """
    if not curves:
        raise ValueError("expected_best_plot needs at least one curve.")
    if log_y and any(
        isinstance(c, ExpectedBest) and np.nanmin(c.low) <= 0 for c in curves.values()
    ):
        raise ValueError("log_y needs positive values; plot with log_y=False.")
    fig = _new_figure(7.0, 4.5)
    ax = fig.subplots()
    colors = _label_colors(list(curves))
    bands = set()
    for label, curve in curves.items():
        if not isinstance(curve, ExpectedBest):
            raise TypeError(
                f"curves[{label!r}] must be a stats.ExpectedBest (from stats.expected_best); "
                f"got {type(curve).__name__}."
            )
        bands.add((curve.band, curve.confidence))
    # One band kind for all curves goes in the title; mixed kinds are named per line.
    shared = len(bands) == 1
    for label, curve in curves.items():
        color = colors[label]
        band_text = f"{curve.confidence:.0%} {_BAND_TEXT[curve.band]}"
        text = f"{label} (N={curve.n_trials} trials" + ("" if shared else f"; {band_text}") + ")"
        ax.plot(curve.n, curve.mean, color=color, linewidth=1.8, label=text)
        ax.fill_between(curve.n, curve.low, curve.high, color=color, alpha=0.18, linewidth=0)
    if log_x:
        ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("number of trials n")
    ax.set_ylabel(f"{ylabel} after n trials" + (" (log scale)" if log_y else ""))
    if title is None:
        title = "Expected best after n trials"
        if shared:
            band, confidence = next(iter(bands))
            title += f"\n(line: expectation; shaded: {confidence:.0%} {_BAND_TEXT[band]})"
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    return _save(fig, path)


_BAND_TEXT = {"order": "range over trial orders", "bootstrap": "bootstrap CI of the curve"}


def effects_plot(
    effects: pd.DataFrame,
    path: str | Path,
    *,
    title: str | None = None,
    xlabel: str = "effect on response",
    noise_floor: float | None = None,
) -> Path:
    """Forest plot of effects with their CIs, coloured by verdict.

    ``effects`` is the frame of `stats.factorial_effects` (columns effect, estimate, ci_low,
    ci_high, verdict; p_holm is printed beside each row when present). The noise floor (from
    ``noise_floor`` or ``effects.attrs['noise_floor']``) is shaded around zero: effects inside
    it are not reportable whatever their p-value.
    """
    needed = ["effect", "estimate", "ci_low", "ci_high", "verdict"]
    missing = [c for c in needed if c not in effects.columns]
    if missing:
        raise ValueError(f"effects is missing columns {missing}; expected {needed}.")
    if effects.empty:
        raise ValueError("effects has no rows to plot.")
    unknown = sorted(set(effects["verdict"]) - set(VERDICT_COLORS))
    if unknown:
        raise ValueError(f"unknown verdicts {unknown}; expected {list(VERDICT_COLORS)}.")
    if noise_floor is None:
        noise_floor = effects.attrs.get("noise_floor")
    n = len(effects)
    fig = _new_figure(7.5, 1.2 + 0.45 * n)
    ax = fig.subplots()
    y = np.arange(n)[::-1]
    if noise_floor:
        ax.axvspan(-noise_floor, noise_floor, color="0.85", alpha=0.6, label="noise floor")
    ax.axvline(0.0, color="0.3", linewidth=0.8)
    for yi, row in zip(y, effects.itertuples(index=False), strict=True):
        color = VERDICT_COLORS[row.verdict]
        ax.plot([row.ci_low, row.ci_high], [yi, yi], color=color, linewidth=2.2)
        ax.plot(row.estimate, yi, "o", color=color, markersize=6)
    ax.set_yticks(y)
    ax.set_yticklabels([str(e) for e in effects["effect"]])
    if "p_holm" in effects.columns:
        texts = [
            "p_holm undefined" if pd.isna(p) else f"p_holm={p:.2g}" for p in effects["p_holm"]
        ]
        for yi, text in zip(y, texts, strict=True):
            ax.annotate(
                text,
                xy=(1.0, yi),
                xycoords=("axes fraction", "data"),
                xytext=(6, 0),
                textcoords="offset points",
                va="center",
                fontsize="x-small",
            )
    for verdict_name, color in VERDICT_COLORS.items():
        ax.plot([], [], "o-", color=color, label=verdict_name)
    ax.set_xlabel(xlabel)
    if title is None:
        conf = effects.attrs.get("confidence")
        title = f"Effects with {conf:.0%} bootstrap CIs" if conf else "Effects with CIs"
    ax.set_title(title, pad=22)  # room for the verdict legend between title and axes
    ax.grid(alpha=0.3, axis="x")
    ax.set_ylim(-0.7, n - 0.3)
    ax.legend(
        fontsize="x-small",
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        borderaxespad=0.2,
        ncol=4,
        frameon=False,
    )
    return _save(fig, path)


def pareto_plot(
    points: Any,
    front_mask: Any,
    path: str | Path,
    *,
    xlabel: str,
    ylabel: str,
    title: str | None = None,
) -> Path:
    """Trials as points in two objectives, the Pareto front highlighted and joined.

    ``points`` is (N, 2); ``front_mask`` (N,) marks the non-dominated ones. The front is
    drawn as a staircase in x order.
    """
    pts = np.asarray(points, dtype=float)
    mask = np.asarray(front_mask, dtype=bool)
    if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] == 0:
        raise ValueError(f"points must be a non-empty (N, 2) array; got shape {pts.shape}.")
    if mask.shape != (pts.shape[0],):
        raise ValueError(f"front_mask must have shape ({pts.shape[0]},); got {mask.shape}.")
    fig = _new_figure(6.0, 4.8)
    ax = fig.subplots()
    rest = ~mask
    ax.scatter(
        pts[rest, 0],
        pts[rest, 1],
        s=18,
        color="0.6",
        alpha=0.7,
        label=f"trials ({int(rest.sum())})",
    )
    front = pts[mask]
    front = front[np.argsort(front[:, 0], kind="stable")]
    ax.step(front[:, 0], front[:, 1], where="post", color="#d62728", linewidth=1.2, alpha=0.8)
    ax.scatter(
        front[:, 0],
        front[:, 1],
        s=36,
        color="#d62728",
        zorder=3,
        label=f"Pareto front ({len(front)})",
    )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title or "Pareto front")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)


def log_ticks(axis: Any) -> None:
    """Readable ticks on a log axis: labels at 1, 2 and 5 x 10^k written as plain numbers,
    unlabelled minor ticks (matplotlib's default labels every minor tick of a short range in
    scientific notation, and they overlap)."""
    low, high = sorted(axis.get_view_interval())
    decades = math.log10(high / low) if low > 0 and high > 0 else 3.0
    # about 4-8 labels whatever the range: fewer subdivisions the more decades it spans
    subs = (
        (1.0,) if decades >= 2.5 else (1.0, 2.0, 5.0) if decades >= 1.0 else (1.0, 2.0, 3.0, 5.0)
    )
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_locator(LogLocator(base=10, subs=np.arange(1.0, 10.0)))
    axis.set_minor_formatter(NullFormatter())


def slice_plot(
    param_values: Any,
    objective_values: Any,
    path: str | Path,
    *,
    param_name: str,
    log: bool = False,
    ylabel: str = "objective",
    title: str | None = None,
    trial_numbers: Any = None,
) -> Path:
    """Objective against one hyperparameter, one point per trial, coloured by the Optuna trial
    number (`trial_numbers`; without them by the point's index, and the colour bar says so)."""
    x = np.asarray(param_values, dtype=float)
    z = np.asarray(objective_values, dtype=float)
    if x.ndim != 1 or x.shape != z.shape or x.size == 0:
        raise ValueError(
            "param_values and objective_values must be non-empty 1-D arrays of equal length; "
            f"got shapes {x.shape} and {z.shape}."
        )
    if trial_numbers is not None:
        order = np.asarray(trial_numbers, dtype=float)
        if order.shape != x.shape:
            raise ValueError(f"trial_numbers has shape {order.shape}; expected {x.shape}.")
        label = "Optuna trial number"
    else:
        order, label = np.arange(x.size, dtype=float), "point index (order given)"
    if log:
        _check_log(x, param_name, "param_values")
    fig = _new_figure(6.0, 4.5)
    ax = fig.subplots()
    sc = ax.scatter(x, z, c=order, cmap="viridis", s=24, edgecolors="none")
    fig.colorbar(sc, ax=ax, label=label)
    _finish_axes(ax, param_name, ylabel, title or f"{ylabel} vs {param_name}", log_x=log)
    return _save(fig, path)


def contour_plot(
    x: Any,
    y: Any,
    z: Any,
    path: str | Path,
    *,
    xlabel: str,
    ylabel: str,
    zlabel: str = "objective",
    log_x: bool = False,
    log_y: bool = False,
    log_z: bool = False,
    title: str | None = None,
) -> Path:
    """Objective over two hyperparameters from scattered trials, as coloured points.

    Scattered trials do not fill a grid, so the objective is shown where it was measured
    (colour = ``zlabel``) rather than interpolated into regions nobody sampled.
    """
    xs, ys, zs = (np.asarray(v, dtype=float) for v in (x, y, z))
    if not (xs.ndim == 1 and xs.shape == ys.shape == zs.shape and xs.size > 0):
        raise ValueError(
            f"x, y and z must be non-empty 1-D arrays of equal length; got shapes {xs.shape}, "
            f"{ys.shape}, {zs.shape}."
        )
    if log_x:
        _check_log(xs, xlabel, "x")
    if log_y:
        _check_log(ys, ylabel, "y")
    if log_z:
        _check_log(zs, zlabel, "z")
    fig = _new_figure(6.2, 4.8)
    ax = fig.subplots()
    ok = np.isfinite(zs)
    norm = LogNorm() if log_z else None
    sc = ax.scatter(
        xs[ok], ys[ok], c=zs[ok], cmap="viridis_r", norm=norm, s=40, edgecolors="k", linewidths=0.3
    )
    if (~ok).any():
        ax.scatter(xs[~ok], ys[~ok], marker="x", color="#d62728", s=30, label="failed (no value)")
        ax.legend(fontsize="small")
    fig.colorbar(sc, ax=ax, label=zlabel)
    title = title or f"{zlabel} over {xlabel} and {ylabel}"
    _finish_axes(ax, xlabel, ylabel, title, log_x=log_x, log_y=log_y)
    return _save(fig, path)


def _finish_axes(
    ax: Any, xlabel: str, ylabel: str, title: str, *, log_x: bool = False, log_y: bool = False
) -> None:
    """Log axes (with readable ticks), labels, title and a light grid of a scatter figure."""
    if log_x:
        ax.set_xscale("log")
        log_ticks(ax.xaxis)
    if log_y:
        ax.set_yscale("log")
        log_ticks(ax.yaxis)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")


def importance_plot(importances: Mapping[str, float], path: Path, *, title: str) -> Path:
    """Horizontal bars of normalised parameter importances, largest on top."""
    names = list(importances)[::-1]
    # as large as the report's other figures (it used to be a short strip, tiny on the page)
    fig = _new_figure(7.0, max(4.5, 1.2 + 0.5 * len(names)))
    ax = fig.subplots()
    ax.barh(names, [importances[n] for n in names], color="#4c72b0")
    ax.set_xlabel("importance (share of explained objective variance)")
    ax.set_xlim(0, 1)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, path)


def strip_plot(
    categories: Sequence[Any],
    values: Sequence[float],
    path: Path,
    *,
    param: str,
    ylabel: str,
    title: str | None = None,
) -> Path:
    """Objective per value of a categorical knob: one jittered point per trial, a bar at the
    median."""
    labels = [str(c) for c in categories]
    order = list(dict.fromkeys(sorted(set(labels), key=labels.index)))
    fig = _new_figure(6.0, 4.2)
    ax = fig.subplots()
    rng = np.random.default_rng(0)
    for i, label in enumerate(order):
        ys = np.array([v for c, v in zip(labels, values, strict=True) if c == label])
        xs = i + rng.uniform(-0.12, 0.12, size=ys.size)
        ax.scatter(xs, ys, s=26, alpha=0.75, color="#4c72b0", edgecolors="none")
        ax.plot([i - 0.25, i + 0.25], [np.median(ys)] * 2, color="#c44e52", linewidth=2)
        ax.annotate(
            f"n={ys.size}", (i, 1.0), xycoords=("data", "axes fraction"), ha="center",
            va="bottom", fontsize="x-small",
        )  # fmt: skip
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels(order)
    ax.set_xlabel(param)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title or f'{ylabel} by {param}'} (red: median)", pad=16)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)

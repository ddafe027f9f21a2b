"""Figures: every function writes a real, decodable PNG; bad inputs fail with clear errors."""

from __future__ import annotations

import gzip
import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib import image as mpimg

from benchmark.reporting import figures, stats

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _read_png(path: Path) -> np.ndarray:
    assert path.exists() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50
    return img


def _not_blank(img: np.ndarray) -> bool:
    return float(img[..., :3].std()) > 0.02


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_loss_curves(tmp_path, rng):
    g = {"gan": 1.0 + 0.1 * rng.normal(size=200), "realmix": 0.8 + 0.1 * rng.normal(size=(3, 200))}
    d = {"gan": 1.3 + 0.1 * rng.normal(size=200), "realmix": 1.2 + 0.1 * rng.normal(size=(3, 200))}
    g["gan"][150:160] = np.nan  # a diverged stretch leaves a gap, not a crash
    out = figures.loss_curves(g, d, tmp_path / "sub" / "losses.png", smooth=10)
    assert out == tmp_path / "sub" / "losses.png"
    img = _read_png(out)
    assert img.shape[1] > 2 * img.shape[0]  # two panels side by side
    assert _not_blank(img)
    with pytest.raises(ValueError, match="smooth"):
        figures.loss_curves(g, d, tmp_path / "x.png", smooth=0)


def test_a_one_epoch_loss_curve_is_visible(tmp_path, monkeypatch):
    """One point makes no line: short curves are drawn with markers (a 1-epoch study's
    report showed empty loss panels)."""

    def blue_pixels(path: Path) -> int:
        img = _read_png(path)[..., :3]
        blue = np.array([0x1F, 0x77, 0xB4]) / 255  # matplotlib's first colour, C0
        return int((np.abs(img - blue).max(axis=-1) < 0.1).sum())

    one = {"gan": np.array([0.7])}
    marked = blue_pixels(figures.loss_curves(one, one, tmp_path / "marked.png"))
    monkeypatch.setattr(figures, "MARKED_POINTS", 0)
    plain = blue_pixels(figures.loss_curves(one, one, tmp_path / "plain.png"))
    assert marked > plain + 20  # a marker per panel, beyond the legend's line sample


def test_metric_curves_with_seed_bands_and_log_scale(tmp_path, rng):
    curves = np.exp(-np.arange(15) / 4)[None] * rng.lognormal(0, 0.3, size=(4, 1)) + 0.01
    curves[1, 10:] = np.nan  # one seed pruned after 10 epochs
    for band in ("sd", "minmax"):
        out = figures.metric_curves(
            {"gan": curves, "mixture": curves * 0.5, "one run": curves[0]},
            tmp_path / f"w1_{band}.png",
            ylabel="W1 to held-out",
            log=True,
            band=band,
        )
        assert _not_blank(_read_png(out))
    with pytest.raises(ValueError, match="log scale needs positive values"):
        figures.metric_curves({"bad": curves - 1.0}, tmp_path / "bad.png", ylabel="W1", log=True)
    with pytest.raises(ValueError, match="band"):
        figures.metric_curves({"a": curves}, tmp_path / "b.png", ylabel="W1", band="iqr")


def test_sample_grid_on_real_mnist_digits(tmp_path, shared_data_dir):
    with gzip.open(shared_data_dir / "mnist" / "t10k-images-idx3-ubyte.gz") as f:
        raw = f.read(16 + 64 * 784)
    digits = np.frombuffer(raw, np.uint8, offset=16, count=64 * 784).reshape(64, 784)
    images = digits / 127.5 - 1.0  # the [-1, 1] scaling generators produce
    square = _read_png(figures.sample_grid(images, tmp_path / "sq.png", nrow=8, title="MNIST"))
    wide = _read_png(figures.sample_grid(images, tmp_path / "wide.png", nrow=16))
    # nrow images per row: 8x8 is about square, 16x4 clearly wider than tall.
    assert 0.8 < square.shape[1] / square.shape[0] < 1.25
    assert wide.shape[1] / wide.shape[0] > 2.0
    # White strokes on black backgrounds survive the [-1, 1] -> [0, 1] mapping.
    gray = square[..., :3].mean(axis=2)
    assert (gray > 0.95).mean() > 0.02 and (gray < 0.05).mean() > 0.2


def test_sample_grid_scatter_for_points(tmp_path, rng):
    angles = np.arange(8) * np.pi / 4
    centres = np.c_[2 * np.cos(angles), 2 * np.sin(angles)]
    points = centres[rng.integers(0, 8, 500)] + 0.05 * rng.normal(size=(500, 2))
    out = figures.sample_grid(points, tmp_path / "ring.png", reference_points=centres)
    assert _not_blank(_read_png(out))
    with pytest.raises(ValueError, match="D=5"):
        figures.sample_grid(rng.normal(size=(4, 5)), tmp_path / "bad.png")
    with pytest.raises(ValueError, match="reference_points"):
        figures.sample_grid(points, tmp_path / "bad.png", reference_points=np.zeros((3, 3)))


def test_expected_best_plot(tmp_path, rng):
    curves = {
        "gan": stats.expected_best(rng.lognormal(size=30)),
        "realmix": stats.expected_best(rng.lognormal(size=20), band="bootstrap", n_boot=200),
    }
    out = figures.expected_best_plot(curves, tmp_path / "eb.png", ylabel="W1")
    assert _not_blank(_read_png(out))
    with pytest.raises(TypeError, match="ExpectedBest"):
        figures.expected_best_plot({"gan": np.arange(3)}, tmp_path / "bad.png")


def test_expected_best_plot_log_y_for_a_diverged_trial(tmp_path, rng):
    values = np.append(rng.uniform(1.0, 2.0, size=15), 5e4)  # one diverging configuration
    curves = {"realmix": stats.expected_best(values)}
    linear = _read_png(figures.expected_best_plot(curves, tmp_path / "lin.png"))
    log = _read_png(figures.expected_best_plot(curves, tmp_path / "log.png", log_y=True))
    assert _not_blank(log) and not np.array_equal(linear, log)
    with pytest.raises(ValueError, match="log_y needs positive values"):
        figures.expected_best_plot(
            {"gan": stats.expected_best(np.array([0.0, 1.0, 2.0]))},
            tmp_path / "bad.png",
            log_y=True,
        )


def test_effects_plot_from_factorial_effects(tmp_path, rng):
    rows = [
        {"A": a, "B": b, "w1": 10 - 5 * a + rng.normal()}
        for a, b in itertools.product((0, 1), repeat=2)
        for _ in range(4)
    ]
    effects = stats.factorial_effects(pd.DataFrame(rows), ["A", "B"], "w1", n_boot=300)
    out = figures.effects_plot(effects, tmp_path / "effects.png")
    img = _read_png(out)
    # The "helps" green of VERDICT_COLORS is drawn (A lowers the response by 5 sigma).
    green = np.array([0x1A, 0x98, 0x50]) / 255
    assert (np.abs(img[..., :3] - green).sum(axis=2) < 0.05).sum() > 20
    with pytest.raises(ValueError, match="missing columns"):
        figures.effects_plot(effects.drop(columns="verdict"), tmp_path / "bad.png")


def test_pareto_slice_and_contour_plots(tmp_path, rng):
    pts = rng.random((40, 2))
    front = np.array(
        [not any((q <= p).all() and (q < p).any() for q in pts) for p in pts], dtype=bool
    )
    out = figures.pareto_plot(pts, front, tmp_path / "pareto.png", xlabel="W1", ylabel="seconds")
    assert _not_blank(_read_png(out))
    lr = 10 ** rng.uniform(-5, -2, 50)
    score = (np.log10(lr) + 3.5) ** 2 + rng.random(50)
    out = figures.slice_plot(lr, score, tmp_path / "slice.png", param_name="lr", log=True)
    assert _not_blank(_read_png(out))
    score[3] = np.nan  # a failed trial is marked, not dropped silently
    out = figures.contour_plot(
        lr,
        rng.random(50),
        score,
        tmp_path / "contour.png",
        xlabel="lr",
        ylabel="p_mix",
        log_x=True,
    )
    assert _not_blank(_read_png(out))
    with pytest.raises(ValueError, match="front_mask"):
        figures.pareto_plot(pts, front[:5], tmp_path / "bad.png", xlabel="a", ylabel="b")
    with pytest.raises(ValueError, match="equal length"):
        figures.slice_plot(lr, score[:3], tmp_path / "bad.png", param_name="lr")


def test_path_must_be_png(tmp_path):
    with pytest.raises(ValueError, match=r"\.png"):
        figures.slice_plot([1.0, 2.0], [3.0, 4.0], tmp_path / "slice.pdf", param_name="x")


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (1e-5, 1e-2, ["1e-05", "0.0001", "0.001", "0.01"]),  # 3 decades: one label each
        (0.01, 1.0, ["0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1"]),
        (0.12, 0.9, ["0.2", "0.3", "0.5"]),  # under a decade: still labelled, in plain numbers
    ],
)
def test_log_ticks_are_few_plain_numbers_and_minor_ticks_are_unlabelled(low, high, expected):
    from matplotlib.figure import Figure

    ax = Figure().subplots()
    ax.set_xscale("log")
    ax.set_xlim(low, high)
    figures.log_ticks(ax.xaxis)
    ticks = [t for t in ax.xaxis.get_majorticklocs() if low * 0.999 <= t <= high * 1.001]
    labels = [ax.xaxis.get_major_formatter()(t, i) for i, t in enumerate(ticks)]
    assert labels == expected
    minor = ax.xaxis.get_minorticklocs()
    assert len(minor) > len(ticks)
    assert {ax.xaxis.get_minor_formatter()(t, i) for i, t in enumerate(minor)} == {""}


def test_slice_plot_checks_its_trial_numbers(tmp_path):
    out = figures.slice_plot(
        [0.1, 0.2, 0.4], [3.0, 2.0, 1.0], tmp_path / "s.png", param_name="lr", log=True,
        trial_numbers=[4, 9, 17],
    )  # fmt: skip
    assert _not_blank(_read_png(out))
    with pytest.raises(ValueError, match="trial_numbers has shape"):
        figures.slice_plot(
            [0.1, 0.2], [1.0, 2.0], tmp_path / "t.png", param_name="lr", trial_numbers=[1]
        )

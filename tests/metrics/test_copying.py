"""Copy detection on real MNIST, against known answers."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.metrics.copying import (
    COPY_FRACTION_FACTOR,
    copy_detection,
    copy_excess_z,
    copy_verdict,
    kmeans,
    nearest_distances,
    nearest_neighbours,
    z_u,
)

MNIST = (
    Path(__file__).resolve().parents[2]
    / ".."
    / "shared"
    / "data"
    / "mnist"
    / "t10k-images-idx3-ubyte.gz"
)


@pytest.fixture(scope="module")
def mnist_splits() -> dict[str, torch.Tensor]:
    """1000 train / 500 held-out / 500 fresh images from the official MNIST test split."""
    if not MNIST.exists():
        pytest.skip(f"MNIST not found at {MNIST.resolve()}; ../shared/data must sit beside repo")
    with gzip.open(MNIST, "rb") as f:
        raw = f.read()
    images = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(-1, 784)
    x = torch.from_numpy(images.astype(np.float32) / 127.5 - 1.0)
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))
    return {
        "train": x[perm[:1000]],
        "heldout": x[perm[1000:1500]],
        "fresh": x[perm[1500:2000]],
    }


# ------------------------------------------------------------------------ nearest neighbours


def test_nearest_neighbours_exact_against_direct_cdist():
    gen = torch.Generator().manual_seed(1)
    q, r = torch.randn(300, 50, generator=gen), torch.randn(700, 50, generator=gen)
    brute = torch.cdist(q.double(), r.double(), compute_mode="donot_use_mm_for_euclid_dist")
    want_d, want_i = brute.min(1)
    for chunk in (37, 1024):  # block boundaries must not change the answer
        d, i = nearest_neighbours(q, r, chunk=chunk)
        assert d.dtype == torch.float64
        assert torch.equal(i, want_i)
        assert torch.allclose(d, want_d, rtol=0, atol=1e-10)
    # a query that is in the reference set is at distance exactly 0
    assert nearest_distances(r[:5], r).tolist() == [0.0] * 5


def test_nearest_neighbours_on_cuda_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    gen = torch.Generator().manual_seed(2)
    q, r = torch.randn(200, 784, generator=gen), torch.randn(3000, 784, generator=gen)
    d_cpu, i_cpu = nearest_neighbours(q, r, chunk=256)
    d_gpu, i_gpu = nearest_neighbours(q.cuda(), r.cuda(), chunk=256)
    assert d_gpu.device.type == "cuda"
    assert torch.equal(i_gpu.cpu(), i_cpu)
    assert torch.allclose(d_gpu.cpu(), d_cpu, rtol=0, atol=1e-9)


def test_z_u_matches_pair_count_definition():
    rng = np.random.default_rng(3)
    gen = np.round(rng.normal(size=40), 1)  # rounding creates ties
    held = np.round(rng.normal(size=30) + 0.3, 1)
    u = sum((g > h) + 0.5 * (g == h) for g in gen for h in held)
    m, n = len(gen), len(held)
    want = (u - m * n / 2) / math.sqrt(m * n * (m + n + 1) / 12)
    assert z_u(gen, held) == pytest.approx(want, rel=1e-12)
    assert z_u(held, held) == 0.0


def test_kmeans_recovers_separated_blobs():
    gen = torch.Generator().manual_seed(4)
    means = torch.tensor([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 10.0, 5.0]])
    truth = torch.arange(3).repeat_interleave(100)
    x = means[truth] + 0.3 * torch.randn(300, 3, generator=gen)
    centres, labels = kmeans(x, 3, seed=0)
    # same partition as the truth, up to relabelling
    mapping = {int(t): int(lab) for t, lab in zip(truth, labels, strict=True)}
    assert len(set(mapping.values())) == 3
    assert torch.equal(labels, torch.tensor([mapping[int(t)] for t in truth]))
    for t in range(3):
        assert torch.allclose(centres[mapping[t]], x[truth == t].double().mean(0), atol=1e-5)
    again = kmeans(x, 3, seed=0)
    assert torch.equal(again[1], labels)


# ------------------------------------------------------------------------ copy detection


def test_generator_returning_training_images_is_flagged(mnist_splits):
    s = mnist_splits
    report = copy_detection(s["train"][:500], s["train"], s["heldout"], cells=4)
    m, n = 500, 500
    assert report.verdict == "copying" and report.copying
    assert report.copy_fraction == 1.0
    assert report.generated_median_nn == 0.0
    # every generated distance (0) is below every held-out one: U = 0
    assert report.z_u == pytest.approx(-math.sqrt(3 * m * n / (m + n + 1)), rel=1e-12)
    assert report.p_value < 1e-12
    assert report.c_t is not None and report.c_t < -3 and report.cells_used >= 2
    assert "copying" in report.summary() and "Z_U=" in report.summary()


def test_noisy_and_partial_copies_are_flagged(mnist_splits):
    s = mnist_splits
    gen = torch.Generator().manual_seed(5)
    noisy = s["train"][:500] + 0.05 * torch.randn(500, 784, generator=gen)
    assert copy_detection(noisy, s["train"], s["heldout"]).verdict == "copying"
    # 20% copies mixed into fresh images: the copy fraction alone exceeds 2x its 5% baseline
    partial = torch.cat([s["train"][:100], s["fresh"][:400]])
    report = copy_detection(partial, s["train"], s["heldout"])
    assert report.copy_fraction >= 0.2
    assert report.verdict == "copying"


def test_generator_returning_heldout_images_is_not_flagged(mnist_splits):
    s = mnist_splits
    report = copy_detection(s["heldout"], s["train"], s["heldout"])
    assert report.verdict == "no copying detected" and not report.copying
    assert report.z_u == 0.0  # identical distance samples
    assert report.copy_fraction == pytest.approx(0.05, abs=0.005)
    assert report.c_t is None and report.cells_used == 0


def test_generator_returning_fresh_images_is_not_flagged(mnist_splits):
    s = mnist_splits
    report = copy_detection(s["fresh"], s["train"], s["heldout"], cells=4)
    assert report.verdict == "no copying detected"
    assert abs(report.z_u) < 3.0
    assert report.c_t is not None and abs(report.c_t) < 3.0
    assert report.copy_fraction < 2 * report.expected_fraction
    assert report.generated_median_nn == pytest.approx(report.heldout_median_nn, rel=0.1)


def test_noise_generator_reads_as_underfitting(mnist_splits):
    s = mnist_splits
    noise = torch.rand(500, 784, generator=torch.Generator().manual_seed(6)) * 2 - 1
    report = copy_detection(noise, s["train"], s["heldout"])
    assert report.verdict == "underfitting"
    assert report.copy_fraction == 0.0 and report.z_u > 3


def test_copy_boundary_is_three_standard_errors_of_the_close_count(mnist_splits):
    """Exact copies (distance 0) on a uniform-noise background (no close sample): the count
    of close samples is the number of copies, and the verdict flips exactly where
    copy_excess_z crosses 3: 25 + 3 * sqrt(500 * 0.05 * 0.95 * 2) = 45.7 of 500."""
    s = mnist_splits
    noise = torch.rand(500, 784, generator=torch.Generator().manual_seed(11)) * 2 - 1
    for copies, want in ((45, "underfitting"), (46, "copying")):
        mixed = torch.cat([s["train"][:copies], noise[copies:]])
        report = copy_detection(mixed, s["train"], s["heldout"])
        expected_z = (copies - 25) / math.sqrt(500 * 0.05 * 0.95 * 2)
        assert report.excess_z == pytest.approx(expected_z, rel=1e-12)
        assert copy_excess_z(copies, 500, 500, 5.0) == pytest.approx(expected_z, rel=1e-12)
        assert report.z_u > 3  # the rest underfits: Z_U alone would say "underfitting"
        assert report.verdict == want, (copies, report.summary())
    # the case: exactly 10% NOISY copies on an underfitting background is copying
    gen = torch.Generator().manual_seed(12)
    noisy = s["train"][100:150] + 0.05 * torch.randn(50, 784, generator=gen)
    report = copy_detection(torch.cat([noisy, noise[:450]]), s["train"], s["heldout"])
    assert report.copy_fraction == 0.1 and report.verdict == "copying"
    # the former fixed rule (strictly more than 2 x 5%) missed it
    assert not report.copy_fraction > COPY_FRACTION_FACTOR * report.expected_fraction


def test_copy_verdict_precedence():
    assert copy_verdict(-3.5, None, 0.0) == "copying"
    assert copy_verdict(0.0, -3.1, 0.0) == "copying"
    assert copy_verdict(10.0, None, 3.01) == "copying"  # copying beats underfitting
    assert copy_verdict(10.0, None, 3.0) == "underfitting"
    assert copy_verdict(2.9, 2.0, 2.9) == "no copying detected"


def test_copy_detection_errors_name_the_parameter():
    x = torch.zeros(10, 3)
    with pytest.raises(ValueError, match="percentile"):
        copy_detection(x, x, x, percentile=0.0)
    with pytest.raises(ValueError, match="cells"):
        copy_detection(x, x, x, cells=0)
    with pytest.raises(ValueError, match="feature dimension"):
        copy_detection(x, torch.zeros(10, 4), x)
    with pytest.raises(ValueError, match=r"samples\[i\]"):
        copy_detection(torch.zeros(2, 10, 3), x, x)
    with pytest.raises(ValueError, match="generated contains NaN"):
        copy_detection(torch.full((10, 3), math.nan), x, x)

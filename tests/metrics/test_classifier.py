"""Class-aware metrics on real MNIST: the classifier, its cache, cFID, PRDC and mode coverage.

The official MNIST test split (../shared/data/mnist, 10,000 digits) is split deterministically
into 8000 training and 2000 held-out images; the classifier is trained once per module.
"""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import benchmark.metrics.classifier as clf_mod
from benchmark.metrics.classifier import (
    Classifier,
    class_histogram,
    class_metrics,
    classes_covered,
    default_cache_dir,
    frechet_distance,
    get_classifier,
    mode_coverage_kl,
    prdc,
    train_classifier,
)

MNIST_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mnist"
TEST_EPOCHS = 2  # ~96.5% held-out accuracy on this split; the default (3) gives ~97%


def _read_idx(name: str, offset: int) -> np.ndarray:
    path = MNIST_DIR / name
    if not path.exists():
        pytest.fail(f"real MNIST not found at {path}; CI needs ../shared/data beside the repo")
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


@pytest.fixture(scope="module")
def mnist() -> dict[str, torch.Tensor]:
    images = _read_idx("t10k-images-idx3-ubyte.gz", 16).reshape(10000, 784)
    labels = _read_idx("t10k-labels-idx1-ubyte.gz", 8).astype(np.int64)
    x = torch.from_numpy(images.astype(np.float32) / 127.5 - 1.0)  # as Dataset.train
    y = torch.from_numpy(labels)
    perm = torch.randperm(10000, generator=torch.Generator().manual_seed(0))
    train, held = perm[:8000], perm[8000:]
    return {"x": x[train], "y": y[train], "hx": x[held], "hy": y[held]}


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mixbench-cache")


@pytest.fixture(scope="module")
def classifier(mnist: dict[str, torch.Tensor], cache_root: Path) -> Classifier:
    """Trained once per module (the only full-size training in this file)."""
    return get_classifier(
        "mnist",
        mnist["x"],
        mnist["y"],
        mnist["hx"],
        mnist["hy"],
        cache_dir=cache_root,
        epochs=TEST_EPOCHS,
    )


@pytest.fixture(scope="module")
def heldout_features(classifier: Classifier, mnist: dict[str, torch.Tensor]) -> torch.Tensor:
    return classifier.features(mnist["hx"])


@pytest.fixture
def train_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts real `train_classifier` calls made by `get_classifier`."""
    calls: list[int] = []
    real = clf_mod.train_classifier

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(clf_mod, "train_classifier", counting)
    return calls


# ------------------------------------------------------------------------------------------
# Classifier and cache
# ------------------------------------------------------------------------------------------


def test_classifier_accuracy_is_real(classifier: Classifier, mnist: dict[str, torch.Tensor]):
    assert not classifier.from_cache
    assert classifier.accuracy > 0.9
    # The stored accuracy is what the model actually scores on the held-out split.
    pred = classifier.predict(mnist["hx"])
    assert pred.shape == (2000,) and pred.dtype == torch.int64
    assert (pred == mnist["hy"]).double().mean().item() == pytest.approx(classifier.accuracy)
    feats = classifier.features(mnist["hx"][:10].numpy())  # numpy input works too
    assert feats.shape == (10, 128) and feats.dtype == torch.float32
    assert not feats.requires_grad


def test_cache_is_hit_without_retraining(
    classifier: Classifier,
    mnist: dict[str, torch.Tensor],
    cache_root: Path,
    train_calls: list[int],
    monkeypatch: pytest.MonkeyPatch,
):
    path = classifier.path
    assert path is not None and path.parent == cache_root / "classifiers"
    assert path.name.startswith("mnist-") and path.suffix == ".pt"
    mtime = path.stat().st_mtime_ns
    # No cache_dir: resolved from $MIXBENCH_CACHE, which points at the same root.
    monkeypatch.setenv("MIXBENCH_CACHE", str(cache_root))
    again = get_classifier(
        "mnist", mnist["x"], mnist["y"], mnist["hx"], mnist["hy"], epochs=TEST_EPOCHS
    )
    assert train_calls == []
    assert again.from_cache and again.path == path
    assert path.stat().st_mtime_ns == mtime
    assert again.accuracy == classifier.accuracy
    probe = mnist["hx"][:64]
    torch.testing.assert_close(again.features(probe), classifier.features(probe))


def test_corrupt_cache_file_is_retrained(tmp_path: Path, mnist, train_calls):
    small = (mnist["x"][:300], mnist["y"][:300], mnist["hx"][:100], mnist["hy"][:100])
    first = get_classifier("mnist", *small, cache_dir=tmp_path, epochs=1)
    assert train_calls == [1] and not first.from_cache
    assert first.path is not None and first.path.exists()

    good_bytes = first.path.read_bytes()
    for corrupt in (b"not a torch file", good_bytes[: len(good_bytes) // 2]):
        first.path.write_bytes(corrupt)
        with pytest.warns(RuntimeWarning, match="unusable"):
            redo = get_classifier("mnist", *small, cache_dir=tmp_path, epochs=1)
        assert not redo.from_cache
        assert redo.path == first.path
    assert len(train_calls) == 3
    # The retrained file was written back and is used next time; training is seeded.
    hit = get_classifier("mnist", *small, cache_dir=tmp_path, epochs=1)
    assert hit.from_cache and len(train_calls) == 3
    assert hit.accuracy == first.accuracy

    # Different training data (one label changed) is a different cache entry.
    labels = small[1].clone()
    labels[0] = (labels[0] + 1) % 10
    other = get_classifier("mnist", small[0], labels, *small[2:], cache_dir=tmp_path, epochs=1)
    assert not other.from_cache and other.path != first.path
    assert len(train_calls) == 4


def test_default_cache_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MIXBENCH_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("MIXBENCH_CACHE")
    assert default_cache_dir() == tmp_path / "xdg" / "mixbench"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "mixbench"


def test_bad_inputs_name_the_parameter(mnist):
    x, y = mnist["x"][:20], mnist["y"][:20]
    with pytest.raises(ValueError, match=r"images must have shape \(N, 784\)"):
        train_classifier(x[:, :100], y, heldout_images=x, heldout_labels=y, epochs=1)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 9\]"):
        train_classifier(x, y + 10, heldout_images=x, heldout_labels=y, epochs=1)
    with pytest.raises(ValueError, match="heldout_labels has 19 labels for 20 images"):
        train_classifier(x, y, heldout_images=x, heldout_labels=y[:19], epochs=1)
    with pytest.raises(ValueError, match="floating-point"):
        train_classifier((x > 0).to(torch.uint8), y, heldout_images=x, heldout_labels=y)
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        train_classifier(x, y, heldout_images=x, heldout_labels=y, epochs=0)


# ------------------------------------------------------------------------------------------
# Classifier-FID
# ------------------------------------------------------------------------------------------


def test_cfid_zero_for_identical_sets_and_large_when_half_the_classes_vanish(
    classifier: Classifier, heldout_features: torch.Tensor, mnist
):
    hy = mnist["hy"]
    half = classifier.features(mnist["hx"][hy < 5])
    fid_half = frechet_distance(heldout_features, half)
    fid_self = frechet_distance(heldout_features, heldout_features)
    # Sampling noise level: two disjoint random halves of the same held-out split.
    fid_noise = frechet_distance(heldout_features[:1000], heldout_features[1000:])
    assert fid_self <= 1e-6 * fid_half
    assert fid_half > 5 * fid_noise
    assert fid_half > 20


def test_cfid_closed_forms_on_real_features(heldout_features: torch.Tensor):
    f = heldout_features.double().numpy()
    shift = np.linspace(-1.0, 1.0, f.shape[1])
    # Same covariance, means apart by `shift`: the distance is exactly |shift|^2.
    assert frechet_distance(f, f + shift) == pytest.approx(shift @ shift, rel=1e-6)
    # b = 2a: |mu|^2 + tr(S + 4S - 2 * 2S) = |mu|^2 + tr(S).
    mu = f.mean(0)
    expected = mu @ mu + np.trace(np.cov(f, rowvar=False))
    assert frechet_distance(f, 2 * f) == pytest.approx(expected, rel=1e-6)
    # Symmetric, and accepts tensors and arrays alike.
    a, b = heldout_features[:700], heldout_features[700:]
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b.numpy(), a.numpy()))
    with pytest.raises(ValueError, match="same feature dimension"):
        frechet_distance(f, f[:, :10])


# ------------------------------------------------------------------------------------------
# PRDC
# ------------------------------------------------------------------------------------------


def _prdc_reference(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    """Full-matrix transcription of clovaai/generative-evaluation-prdc (Naeem et al. 2020)."""

    def dist(a, b):
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    real_r = np.sort(dist(real, real), axis=1)[:, k]
    fake_r = np.sort(dist(fake, fake), axis=1)[:, k]
    d = dist(real, fake)  # (R, F)
    return {
        "precision": (d < real_r[:, None]).any(axis=0).mean(),
        "recall": (d < fake_r[None, :]).any(axis=1).mean(),
        "density": (d < real_r[:, None]).sum(axis=0).mean() / k,
        "coverage": (d.min(axis=1) < real_r).mean(),
    }


def test_prdc_matches_reference_with_batching():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(120, 6))
    fake = rng.normal(loc=0.4, scale=1.3, size=(90, 6))
    expected = _prdc_reference(real, fake, k=4)
    for batch_size in (7, 1000):
        got = prdc(torch.from_numpy(real), fake, k=4, batch_size=batch_size)
        assert got == pytest.approx(expected, abs=1e-12)
    assert 0.1 < expected["precision"] < 0.99  # the example is not degenerate


def test_prdc_real_vs_real_is_near_one(heldout_features: torch.Tensor):
    m = prdc(heldout_features[:1000], heldout_features[1000:], k=5)
    assert m["precision"] > 0.93 and m["recall"] > 0.93
    assert 0.9 < m["density"] < 1.1
    # For identical distributions the expected coverage is 1 - 1/2^k (Naeem et al., Sec. 4).
    assert m["coverage"] == pytest.approx(1 - 0.5**5, abs=0.04)


# ------------------------------------------------------------------------------------------
# Mode coverage
# ------------------------------------------------------------------------------------------


def test_class_histogram_kl_and_coverage_closed_forms():
    pred = np.array([0, 0, 1, 3, 3, 3, 3, 3])
    np.testing.assert_allclose(class_histogram(pred), [0.25, 0.125, 0, 0.625, 0, 0, 0, 0, 0, 0])
    assert mode_coverage_kl(np.arange(10).repeat(3)) == pytest.approx(0.0, abs=1e-12)
    assert mode_coverage_kl(torch.full((7,), 4)) == pytest.approx(math.log(10))
    expected = 0.5 * math.log(0.5 * 10) * 2
    assert mode_coverage_kl(np.array([2, 8] * 5)) == pytest.approx(expected)
    assert classes_covered(pred) == 3
    assert classes_covered(pred, min_share=0.2) == 2
    # 1 stray sample out of 100 (1%) is below the default 2.5% share; 3 of 100 are above.
    assert classes_covered(np.array([5] * 99 + [6])) == 1
    assert classes_covered(np.array([5] * 97 + [6] * 3)) == 2
    with pytest.raises(ValueError, match="pred must lie in"):
        class_histogram(np.array([0, 10]))
    with pytest.raises(ValueError, match="min_share"):
        classes_covered(pred, min_share=0.0)


def test_single_digit_generator_covers_one_class(classifier: Classifier, mnist):
    hx, hy = mnist["hx"], mnist["hy"]
    ones = hx[hy == 1]
    m = class_metrics(classifier, ones, hx)
    assert set(m) == {
        "cfid",
        "precision",
        "recall",
        "density",
        "coverage",
        "mode_kl",
        "classes_covered",
    }
    assert all(isinstance(v, float) for v in m.values())
    assert m["classes_covered"] == 1.0
    # ~97% of the 1s are classified as 1; a perfect classifier would give exactly log(10).
    assert m["mode_kl"] == pytest.approx(math.log(10), abs=0.25)
    # Real 1s are realistic (precision) but cover only the 1s' share of the real data.
    assert m["precision"] > 0.9
    share = ones.shape[0] / hx.shape[0]
    assert m["coverage"] < share + 0.05
    assert m["cfid"] > 100

    all_digits = class_metrics(classifier, hx[:1000], hx[1000:])
    assert all_digits["classes_covered"] == 10.0
    assert all_digits["mode_kl"] < 0.05
    assert all_digits["coverage"] > 0.9 and all_digits["cfid"] < m["cfid"] / 10

"""Class-aware metrics for digit data from a small CNN trained once on the labelled split.

Pixel-space distances say little about missing modes, so MixBench trains a small classifier on
the training split of a labelled image dataset (MNIST family), caches its weights on disk, and
scores generated samples in its 128-d penultimate feature space and through its predictions:

- classifier-FID (Frechet distance of Gaussians fitted to penultimate features, as in Heusel et
  al. 2017 with the Inception network replaced by this classifier);
- precision, recall, density and coverage (Naeem et al. 2020, "Reliable Fidelity and Diversity
  Metrics for Generative Models");
- the predicted class histogram, its KL divergence from uniform and the number of classes covered.

The metric functions are pure: they take features / predicted labels (torch tensors or numpy
arrays) and return plain floats, so they can be reused with any feature extractor.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.linalg
import torch
from torch import nn

from benchmark.data import IMAGE_DATASETS, Dataset
from benchmark.metrics.checks import same_dim

__all__ = [
    "CACHE_ENV",
    "DEFAULT_EPOCHS",
    "DEFAULT_MIN_SHARE",
    "FEATURE_DIM",
    "N_CLASSES",
    "Classifier",
    "DigitCNN",
    "class_histogram",
    "class_metrics",
    "classifier_for",
    "classes_covered",
    "default_cache_dir",
    "frechet_distance",
    "get_classifier",
    "mode_coverage_kl",
    "prdc",
    "train_classifier",
]

N_CLASSES = 10
FEATURE_DIM = 128
IMAGE_SHAPE = (1, 28, 28)
DEFAULT_EPOCHS = 3
"""Epochs of `train_classifier`: 97.15% held-out accuracy when trained on 8000 MNIST digits."""
DEFAULT_MIN_SHARE = 0.25 / N_CLASSES
"""A class counts as covered when it holds >= 1/4 of its uniform share (2.5% for 10 classes)."""
CACHE_ENV = "MIXBENCH_CACHE"
_CACHE_FORMAT = 1
"""Bump when the architecture or training recipe changes: old cache files stop matching."""

ArrayLike = torch.Tensor | np.ndarray


class DigitCNN(nn.Module):
    """Two 3x3 conv blocks, a 128-d ReLU feature layer and a 10-way linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * 7 * 7, FEATURE_DIM),
            nn.ReLU(),
        )
        self.head = nn.Linear(FEATURE_DIM, N_CLASSES)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


def _as_images(x: ArrayLike, name: str) -> torch.Tensor:
    """(N, 784), (N, 28, 28) or (N, 1, 28, 28) floats in [-1, 1] -> (N, 1, 28, 28) float32."""
    t = torch.as_tensor(x)
    if not t.is_floating_point():
        raise ValueError(
            f"{name} must be floating-point images scaled to [-1, 1], got dtype {t.dtype}; "
            "convert uint8 pixels with x / 127.5 - 1"
        )
    if t.dim() not in (2, 3, 4) or math.prod(t.shape[1:]) != 784:
        raise ValueError(
            f"{name} must have shape (N, 784) (flattened 28x28 images, as Dataset.train), "
            f"got {tuple(t.shape)}"
        )
    n = t.shape[0]
    if n == 0:
        raise ValueError(f"{name} is empty; pass at least one image")
    return t.reshape(n, *IMAGE_SHAPE).to(torch.float32)


def _as_labels(y: ArrayLike, n: int, name: str) -> torch.Tensor:
    t = torch.as_tensor(y)
    if t.is_floating_point() or t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"{name} must be integer class labels (int64), got dtype {t.dtype}")
    t = t.reshape(-1).to(torch.int64)
    if t.numel() != n:
        raise ValueError(f"{name} has {t.numel()} labels for {n} images; they must match")
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= N_CLASSES):
        raise ValueError(
            f"{name} must lie in [0, {N_CLASSES - 1}], got range [{int(t.min())}, {int(t.max())}]"
        )
    return t


def _as_float64(x: ArrayLike, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (N, D) feature array, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf values")
    return a


def _as_pred(pred: ArrayLike, n_classes: int) -> np.ndarray:
    if isinstance(pred, torch.Tensor):
        pred = pred.detach().cpu().numpy()
    p = np.asarray(pred).reshape(-1)
    if p.size == 0:
        raise ValueError("pred is empty; pass at least one predicted label")
    if not np.issubdtype(p.dtype, np.integer):
        raise ValueError(f"pred must be integer class labels, got dtype {p.dtype}")
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    if p.min() < 0 or p.max() >= n_classes:
        raise ValueError(
            f"pred must lie in [0, {n_classes - 1}] (n_classes={n_classes}), "
            f"got range [{p.min()}, {p.max()}]"
        )
    return p.astype(np.int64)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def _accuracy(
    model: DigitCNN, images: torch.Tensor, labels: torch.Tensor, device: torch.device
) -> float:
    model.eval()
    correct = 0
    for start in range(0, images.shape[0], 1024):
        xb = images[start : start + 1024].to(device)
        yb = labels[start : start + 1024].to(device)
        correct += int((model(xb).argmax(1) == yb).sum())
    return correct / images.shape[0]


def train_classifier(
    images: ArrayLike,
    labels: ArrayLike,
    *,
    heldout_images: ArrayLike,
    heldout_labels: ArrayLike,
    epochs: int = DEFAULT_EPOCHS,
    seed: int = 0,
    device: str | torch.device = "cpu",
    batch_size: int = 64,
    lr: float = 2e-3,
) -> tuple[DigitCNN, float]:
    """Train the small digit CNN; returns (model in eval mode, held-out accuracy in [0, 1]).

    `images` are (N, 784) float32 in [-1, 1] (as `Dataset.train`), `labels` int64 in [0, 9].
    Adam with a linearly decaying learning rate; the seed fixes the initialisation and the
    batch order (the global torch RNG is left untouched).
    """
    x = _as_images(images, "images")
    y = _as_labels(labels, x.shape[0], "labels")
    hx = _as_images(heldout_images, "heldout_images")
    hy = _as_labels(heldout_labels, hx.shape[0], "heldout_labels")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    device = torch.device(device)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DigitCNN()
    model.to(device)
    gen = torch.Generator().manual_seed(seed)
    steps_per_epoch = math.ceil(x.shape[0] / batch_size)
    total = epochs * steps_per_epoch
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 - step / total)
    x_dev, y_dev = x.to(device), y.to(device)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(x.shape[0], generator=gen).to(device)
        for start in range(0, x.shape[0], batch_size):
            idx = order[start : start + batch_size]
            loss = nn.functional.cross_entropy(model(x_dev[idx]), y_dev[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    accuracy = _accuracy(model, hx, hy, device)
    model.eval()
    return model, accuracy


# --------------------------------------------------------------------------------------------
# Cached classifier
# --------------------------------------------------------------------------------------------


class Classifier:
    """A trained digit CNN in eval mode: batched, no-grad features and predictions."""

    def __init__(
        self,
        model: DigitCNN,
        accuracy: float,
        *,
        device: str | torch.device = "cpu",
        path: Path | None = None,
        from_cache: bool = False,
        batch_size: int = 1024,
    ) -> None:
        self.model = model.to(device).eval()
        self.accuracy = float(accuracy)
        """Held-out accuracy measured right after training."""
        self.device = torch.device(device)
        self.path = path
        """Cache file holding the weights (None when not cached)."""
        self.from_cache = from_cache
        """True when the weights were loaded from `path` instead of trained."""
        self.batch_size = batch_size

    def _map(self, x: ArrayLike, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        images = _as_images(x, "x")
        out = []
        with torch.inference_mode():
            for start in range(0, images.shape[0], self.batch_size):
                out.append(fn(images[start : start + self.batch_size].to(self.device)).cpu())
        return torch.cat(out)

    def features(self, x: ArrayLike) -> torch.Tensor:
        """(N, 128) float32 penultimate (post-ReLU) features of (N, 784) images, on the CPU."""
        return self._map(x, self.model.features)

    def logits(self, x: ArrayLike) -> torch.Tensor:
        """(N, 10) class logits of (N, 784) images, on the CPU."""
        return self._map(x, self.model)

    def predict(self, x: ArrayLike) -> torch.Tensor:
        """(N,) int64 predicted labels of (N, 784) images, on the CPU."""
        return self.logits(x).argmax(1)


def default_cache_dir() -> Path:
    """MixBench's cache root: $MIXBENCH_CACHE, else $XDG_CACHE_HOME/mixbench, else ~/.cache."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "mixbench"
    return Path.home() / ".cache" / "mixbench"


def _digest(tensors: list[tuple[torch.Tensor, bool]], epochs: int, seed: int) -> str:
    """sha256 over uint8-quantised images, int64 labels, their shapes and the recipe."""
    h = hashlib.sha256(f"mixbench-classifier/{_CACHE_FORMAT}/{epochs}/{seed}".encode())
    for t, is_image in tensors:
        t = t.detach().cpu()
        if is_image:
            t = ((t.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        h.update(repr(tuple(t.shape)).encode())
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def _load(path: Path, digest: str, device: torch.device) -> Classifier:
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if blob.get("format") != _CACHE_FORMAT or blob.get("digest") != digest:
        raise ValueError("cache file does not match the training data or recipe")
    model = DigitCNN()
    model.load_state_dict(blob["state_dict"])
    accuracy = float(blob["accuracy"])
    if not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"stored accuracy {accuracy} is not in [0, 1]")
    return Classifier(model, accuracy, device=device, path=path, from_cache=True)


def _save(path: Path, blob: dict) -> None:
    """Write atomically so that concurrent workers never read a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(blob, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def get_classifier(
    dataset_name: str,
    images: ArrayLike,
    labels: ArrayLike,
    heldout_images: ArrayLike,
    heldout_labels: ArrayLike,
    *,
    cache_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    epochs: int = DEFAULT_EPOCHS,
    seed: int = 0,
) -> Classifier:
    """The digit classifier for one dataset, trained once and then loaded from the cache.

    Weights live in `<cache_dir>/classifiers/<dataset>-<sha256[:16]>.pt`, where `cache_dir`
    defaults to `default_cache_dir()` and the checksum covers the uint8-quantised training and
    held-out images, their labels, `epochs` and `seed`: changing any of them retrains. The file
    also stores the held-out accuracy, returned as `Classifier.accuracy`. An unreadable or
    mismatching cache file is retrained and overwritten (with a warning), never a crash.
    """
    x = _as_images(images, "images")
    y = _as_labels(labels, x.shape[0], "labels")
    hx = _as_images(heldout_images, "heldout_images")
    hy = _as_labels(heldout_labels, hx.shape[0], "heldout_labels")
    device = torch.device(device)
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    digest = _digest([(x, True), (y, False), (hx, True), (hy, False)], epochs, seed)
    safe_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", dataset_name) or "dataset"
    path = root / "classifiers" / f"{safe_name}-{digest[:16]}.pt"

    if path.exists():
        try:
            return _load(path, digest, device)
        except Exception as exc:  # whatever makes a cache file unreadable means "retrain"
            warnings.warn(
                f"classifier cache file {path} is unusable ({type(exc).__name__}: {exc}); "
                "retraining and overwriting it",
                RuntimeWarning,
                stacklevel=2,
            )

    model, accuracy = train_classifier(
        x, y, heldout_images=hx, heldout_labels=hy, epochs=epochs, seed=seed, device=device
    )
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    blob = {
        "format": _CACHE_FORMAT,
        "digest": digest,
        "dataset": dataset_name,
        "accuracy": accuracy,
        "epochs": epochs,
        "seed": seed,
        "n_train": int(x.shape[0]),
        "n_heldout": int(hx.shape[0]),
        "state_dict": state,
    }
    _save(path, blob)
    return Classifier(model, accuracy, device=device, path=path, from_cache=False)


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


def class_histogram(pred: ArrayLike, n_classes: int = N_CLASSES) -> np.ndarray:
    """(n_classes,) float64 share of samples predicted as each class; sums to 1."""
    p = _as_pred(pred, n_classes)
    return np.bincount(p, minlength=n_classes).astype(np.float64) / p.size


def mode_coverage_kl(pred: ArrayLike, n_classes: int = N_CLASSES) -> float:
    """KL(class histogram || uniform) in nats: 0 for balanced classes, log(K) for one class."""
    hist = class_histogram(pred, n_classes)
    nz = hist[hist > 0]
    return float(np.sum(nz * np.log(nz * n_classes)))


def classes_covered(
    pred: ArrayLike, n_classes: int = N_CLASSES, min_share: float = DEFAULT_MIN_SHARE
) -> int:
    """Number of classes holding at least `min_share` of the samples.

    The default (0.025 for 10 classes) is a quarter of the uniform share, so a class counts as
    present only when a generator produces it at a noticeable rate, not through a few strays.
    """
    if not 0.0 < min_share <= 1.0:
        raise ValueError(f"min_share must be in (0, 1], got {min_share}")
    return int(np.sum(class_histogram(pred, n_classes) >= min_share))


def frechet_distance(feat_a: ArrayLike, feat_b: ArrayLike, eps: float = 1e-6) -> float:
    """Frechet distance between Gaussians fitted to two (N, D) feature sets (in float64).

    ||mu_a - mu_b||^2 + tr(S_a + S_b - 2 sqrtm(S_a S_b)). As in the reference FID code, when
    the product is singular (scipy warns or returns non-finite values; dead ReLU units do
    that), `eps` is added to both covariance diagonals; a negligible imaginary part left by
    round-off is dropped (a large one is an error). The result is clamped at 0, since
    round-off can leave about -1e-12 for identical sets.
    """
    a = _as_float64(feat_a, "feat_a")
    b = _as_float64(feat_b, "feat_b")
    same_dim(a.shape[1], b.shape[1], "feat_a", "feat_b")
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError(
            f"frechet_distance needs at least 2 samples per set to fit a covariance, got "
            f"{a.shape[0]} and {b.shape[0]}"
        )
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a = np.atleast_2d(np.cov(a, rowvar=False))
    cov_b = np.atleast_2d(np.cov(b, rowvar=False))

    with warnings.catch_warnings():
        # Dead ReLU units make the covariances singular; scipy then warns and may return
        # non-finite values, which the offset below fixes.
        warnings.simplefilter("error", scipy.linalg.LinAlgWarning)
        try:
            covmean = scipy.linalg.sqrtm(cov_a @ cov_b)
            singular = not np.isfinite(covmean).all()
        except scipy.linalg.LinAlgWarning:
            singular = True
    if singular:
        # Offset the covariances everywhere, not only inside sqrtm, so that the result is the
        # exact distance between the regularised Gaussians (0 for identical sets).
        offset = np.eye(cov_a.shape[0]) * eps
        cov_a, cov_b = cov_a + offset, cov_b + offset
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
            covmean = scipy.linalg.sqrtm(cov_a @ cov_b)
        if not np.isfinite(covmean).all():
            raise ValueError(
                "sqrtm of the covariance product is not finite even with an offset of "
                f"eps={eps} on the diagonals; pass a larger eps"
            )
    if np.iscomplexobj(covmean):
        scale = max(np.abs(covmean).max(), 1.0)
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3 * scale):
            raise ValueError(
                f"sqrtm of the covariance product has a large imaginary part "
                f"({np.abs(covmean.imag).max():.3g}); the feature covariances are ill-conditioned"
            )
        covmean = covmean.real
    diff = mu_a - mu_b
    fd = diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(covmean)
    return float(max(fd, 0.0))


_EXACT = "donot_use_mm_for_euclid_dist"
"""cdist mode without the |a|^2 + |b|^2 - 2ab shortcut, whose round-off can reorder ties."""


def _kth_nn_radii(feat: torch.Tensor, k: int, batch_size: int) -> torch.Tensor:
    """Distance from each row to its k-th nearest other row (the row itself is excluded)."""
    radii = []
    for start in range(0, feat.shape[0], batch_size):
        d = torch.cdist(feat[start : start + batch_size], feat, compute_mode=_EXACT)
        # Column `k` of the sorted distances skips the zero self-distance at column 0.
        radii.append(d.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(radii)


def prdc(
    real_feat: ArrayLike, fake_feat: ArrayLike, k: int = 5, batch_size: int = 1024
) -> dict[str, float]:
    """Precision, recall, density and coverage of `fake_feat` against `real_feat` (Naeem 2020).

    Exact k-nearest-neighbour balls in float64, computed over row blocks of `batch_size`, so
    memory is O(batch_size * N) instead of O(N^2). Matches the reference implementation
    (clovaai/generative-evaluation-prdc): a ball around a point has the distance to its k-th
    nearest neighbour within its own set as radius, and membership is strict (<).
    """
    real = torch.from_numpy(_as_float64(real_feat, "real_feat"))
    fake = torch.from_numpy(_as_float64(fake_feat, "fake_feat"))
    same_dim(real.shape[1], fake.shape[1], "real_feat", "fake_feat")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if real.shape[0] <= k or fake.shape[0] <= k:
        raise ValueError(
            f"prdc needs more than k={k} samples in each set, got {real.shape[0]} real and "
            f"{fake.shape[0]} fake; lower k or pass more samples"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    real_r = _kth_nn_radii(real, k, batch_size)
    fake_r = _kth_nn_radii(fake, k, batch_size)

    in_real_balls = torch.zeros(fake.shape[0], dtype=torch.int64)  # per fake: # real balls
    recalled = torch.zeros(real.shape[0], dtype=torch.bool)  # per real: inside a fake ball
    nearest_fake = torch.full((real.shape[0],), math.inf, dtype=torch.float64)
    for start in range(0, fake.shape[0], batch_size):
        d = torch.cdist(fake[start : start + batch_size], real, compute_mode=_EXACT)  # (b, R)
        in_real_balls[start : start + batch_size] = (d < real_r[None, :]).sum(1)
        fr = fake_r[start : start + batch_size]
        recalled |= (d < fr[:, None]).any(0)
        nearest_fake = torch.minimum(nearest_fake, d.min(0).values)
    return {
        "precision": float((in_real_balls > 0).double().mean()),
        "recall": float(recalled.double().mean()),
        "density": float(in_real_balls.double().mean() / k),
        "coverage": float((nearest_fake < real_r).double().mean()),
    }


def class_metrics(
    classifier: Classifier,
    generated: ArrayLike,
    heldout: ArrayLike,
    *,
    k: int = 5,
    min_share: float = DEFAULT_MIN_SHARE,
) -> dict[str, float]:
    """All class-aware metrics of `generated` images against `heldout` images.

    Keys: "cfid" (classifier-FID), "precision", "recall", "density", "coverage" (PRDC with
    `k` neighbours), "mode_kl" (KL of the predicted class histogram from uniform, nats) and
    "classes_covered" (classes with at least `min_share` of the generated samples).
    """
    gen_feat = classifier.features(generated)
    real_feat = classifier.features(heldout)
    pred = classifier.predict(generated)
    out = {"cfid": frechet_distance(real_feat, gen_feat)}
    out.update(prdc(real_feat, gen_feat, k=k))
    out["mode_kl"] = mode_coverage_kl(pred)
    out["classes_covered"] = float(classes_covered(pred, min_share=min_share))
    return out


_CLASSIFIERS: dict[tuple, Classifier] = {}


def classifier_for(data: Dataset) -> Classifier | None:
    """The cached digit classifier of an image dataset with labels; None otherwise."""
    if data.name not in IMAGE_DATASETS or data.train_labels is None:
        return None
    if data.heldout_labels is None:
        return None
    key = (
        data.name,
        data.source,
        data.split_note,
        tuple(data.train.shape),
        str(data.train.device),
    )
    if key not in _CLASSIFIERS:
        # get_classifier caches on disk by a checksum of the data; this avoids re-hashing.
        _CLASSIFIERS[key] = get_classifier(
            data.name,
            data.train,
            data.train_labels,
            data.heldout,
            data.heldout_labels,
            device=data.train.device,
        )
    return _CLASSIFIERS[key]

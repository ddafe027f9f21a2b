"""Leak-aware, mode-aware scores of generated samples, beyond the Wasserstein distances.

- copy detection against the training images (the only use of the training split in scoring);
- for digit data with labels: classifier-FID, precision/recall/density/coverage and class
  coverage from a small CNN trained once per dataset and cached;
- for the 2-D mixtures: modes covered and the share of high-quality samples.
"""

from __future__ import annotations

import torch

from benchmark.classifier import Classifier, class_metrics, get_classifier
from benchmark.data import IMAGE_DATASETS, Dataset
from benchmark.evaluation import copy_detection, mode_coverage_2d

__all__ = ["EXTRA_METRIC_LABELS", "classifier_for", "extra_metrics"]

EXTRA_METRIC_LABELS: dict[str, str] = {
    "copy_fraction": "share of samples closer to a training image than the held-out 5th "
    "percentile nearest-neighbour distance (~0.05 when nothing is copied)",
    "copy_z_u": "Meehan et al. (2020) data-copying statistic Z_U (<< 0: copying, >> 0: "
    "underfitting)",
    "cfid": "classifier-FID: Frechet distance of the digit CNN's penultimate features",
    "precision": "precision (Naeem et al. 2020) in classifier feature space",
    "recall": "recall (Naeem et al. 2020)",
    "density": "density (Naeem et al. 2020)",
    "coverage": "coverage (Naeem et al. 2020)",
    "mode_kl": "KL(predicted-class histogram || uniform), nats (0 = all classes equally)",
    "classes_covered": "classes holding at least 2.5% of the samples (of 10)",
    "modes_covered": "2-D modes with samples within 3 std of their centre",
    "high_quality": "share of 2-D samples within 3 std of some mode centre",
}


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


_CLASSIFIERS: dict[tuple, Classifier] = {}


def extra_metrics(samples: torch.Tensor, data: Dataset, *, n: int = 1000) -> dict[str, float]:
    """Copy detection plus class- or mode-aware metrics of (n, D) generated samples."""
    samples = samples[:n]
    heldout = data.heldout[:n]
    out: dict[str, float] = {}
    copy = copy_detection(samples, data.train, heldout)
    out["copy_fraction"] = float(copy.copy_fraction)
    out["copy_z_u"] = float(copy.z_u)
    classifier = classifier_for(data)
    if classifier is not None:
        out.update({k: float(v) for k, v in class_metrics(classifier, samples, heldout).items()})
    if "centers" in data.extra:
        modes = mode_coverage_2d(samples, data.extra["centers"], float(data.extra["std"]))
        out["modes_covered"] = float(modes.modes_covered)
        out["high_quality"] = float(modes.high_quality)
    return out

"""What each metric key means, in words and as a short column title."""

from __future__ import annotations

from benchmark.metrics import METRIC_LABELS

__all__ = ["LOSS_LABELS", "SHORT_NAMES", "metric_label", "short_name"]

LOSS_LABELS: dict[str, str] = {
    "g_loss": "mean generator loss over the last epoch",
    "d_loss": "mean discriminator loss over the last epoch",
    "g_loss_var": "variance of the per-step generator loss in the last epoch",
    "d_loss_var": "variance of the per-step discriminator loss in the last epoch",
    "oscillation": "EMA-smoothed loss see-saw per step (mean of G and D)",
}

SHORT_NAMES: dict[str, str] = {
    "w1": "W1",
    "w1_noise": "W1 (noise mode)",
    "sliced_w2": "sliced W2",
    "sliced_w2_noise": "sliced W2 (noise mode)",
    "pixel_w1": "pixel W1",
    "pixel_w1_noise": "pixel W1 (noise mode)",
    "cfid": "classifier-FID",
    "cfid_noise": "classifier-FID (noise mode)",
    "g_loss_var": "G-loss variance",
    "d_loss_var": "D-loss variance",
    "g_loss": "G loss",
    "d_loss": "D loss",
}


def metric_label(key: str) -> str:
    """What a metric key means, e.g. 'w1_noise' -> 'exact W1 (...), noise sampling mode'."""
    base, noise = (key[: -len("_noise")], True) if key.endswith("_noise") else (key, False)
    text = METRIC_LABELS.get(base) or LOSS_LABELS.get(base)
    if text is None:  # benchmark.evaluate pulls in the classifier: import it only when needed
        from benchmark.evaluate import EXTRA_METRIC_LABELS

        text = EXTRA_METRIC_LABELS.get(base, base)
    if noise:
        text += "; RealMix noise sampling mode (no real image reaches G)"
    return text


def short_name(key: str) -> str:
    """A compact column title for a metric key."""
    return SHORT_NAMES.get(key, key)

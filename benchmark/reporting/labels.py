"""What each metric key means, in words and as a short column title (from `metrics.labels`)."""

from __future__ import annotations

from benchmark.metrics.labels import metric_of

__all__ = ["metric_label", "short_name"]

_NOISE = "_noise"


def _split(key: str) -> tuple[str, bool]:
    return (key[: -len(_NOISE)], True) if key.endswith(_NOISE) else (key, False)


def metric_label(key: str) -> str:
    """What a metric key means, e.g. 'w1_noise' -> 'exact W1 (...), noise sampling mode'."""
    base, noise = _split(key)
    metric = metric_of(base)
    text = metric.label if metric is not None else base
    if noise:
        text += "; RealMix noise sampling mode (no real image reaches G)"
    return text


def short_name(key: str) -> str:
    """A compact column title for a metric key (the key itself when it is not a metric)."""
    base, noise = _split(key)
    metric = metric_of(base)
    if metric is None:
        return key
    return metric.short + (" (noise mode)" if noise else "")

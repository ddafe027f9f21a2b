"""python -m benchmark.copy_curve: the measured detection limit of copy detection, re-measured."""

from __future__ import annotations

import json
from pathlib import Path

from benchmark.copy_curve import BACKGROUNDS, copy_curve


def test_detection_curve_on_real_mnist(mnist):
    """The committed curve's claims, re-measured: no false alarm on faithful sets, every
    draw with 10% noisy copies called copying whatever the background."""
    curve = copy_curve(mnist, draws=100, shares=(0.0, 0.1))
    faithful = {r["share"]: r for r in curve["curves"]["faithful"]}
    underfit = {r["share"]: r for r in curve["curves"]["underfitting"]}
    assert faithful[0.0]["copying"] <= 0.02  # each test's level is 0.13%; 3 tests
    assert faithful[0.0]["no_copying"] >= 0.98
    assert underfit[0.0]["underfitting"] == 1.0
    for background in BACKGROUNDS:
        row = {r["share"]: r for r in curve["curves"][background]}[0.1]
        assert row["copying"] == 1.0 and row["copies"] == 100, background
    committed = Path(__file__).resolve().parents[1] / "results" / "copy-detection"
    saved = json.loads((committed / "curve.json").read_text())
    assert (committed / "curve.png").read_bytes().startswith(b"\x89PNG")
    assert saved["rule"] == curve["rule"] and saved["m_generated"] == 1000
    assert saved["detection_limit"]["underfitting"] <= 0.1

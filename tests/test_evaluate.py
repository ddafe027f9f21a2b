"""Leak-aware scores as the runner computes them, on real digits and on ring8."""

from __future__ import annotations

import torch

from benchmark.evaluate import extra_metrics


def test_copying_generator_is_flagged_on_real_mnist(mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("MIXBENCH_CACHE", str(tmp_path))
    copies = extra_metrics(mnist.train[:300], mnist, n=300)
    fresh = extra_metrics(mnist.heldout[-300:], mnist, n=300)
    assert copies["copy_fraction"] > 0.9 and copies["copy_z_u"] < -3
    assert fresh["copy_fraction"] < 0.15 and fresh["copy_z_u"] > -3
    # the classifier sees digits in both; a single-class set covers one class
    assert fresh["classes_covered"] == 10
    ones = mnist.heldout[mnist.heldout_labels == 1][:200]
    assert extra_metrics(ones, mnist, n=200)["classes_covered"] == 1
    assert (tmp_path / "classifiers").is_dir()


def test_ring_modes(ring8):
    one_mode = ring8.extra["centers"][0] + 0.02 * torch.randn(500, 2)
    out = extra_metrics(one_mode, ring8, n=500)
    assert out["modes_covered"] == 1 and out["high_quality"] > 0.95
    assert "cfid" not in out

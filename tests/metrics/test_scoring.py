"""Leak-aware scores as the runner computes them, on real digits and on ring8."""

from __future__ import annotations

import pytest
import torch

from benchmark.metrics.labels import LABELS, metric_of
from benchmark.metrics.scoring import extra_metrics, score
from benchmark.metrics.wasserstein import distances_batch
from benchmark.runner import score_members
from benchmark.trainables import build, params_class


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


def test_score_equals_the_distances_and_extra_metrics_of_each_member(ring8):
    """`score` gives each member what `distances_batch` and `extra_metrics` give it, exactly;
    a member with non-finite samples gets no distance at all (the divergence rule reads it)."""
    gen = torch.Generator().manual_seed(3)
    samples = ring8.heldout[:120].repeat(3, 1, 1) + 0.1 * torch.randn(3, 120, 2, generator=gen)
    samples[1, 7, 0] = float("nan")
    out = score(
        samples, ring8, n=100, seed=2, exact=[True, True, False], extra=[True, False, False]
    )
    assert out[1] == {}
    finite = samples[[0, 2]]
    batch = distances_batch(finite, ring8.heldout, n=100, seed=2, exact=[True, False])
    assert out[0] == batch[0] | extra_metrics(samples[0], ring8, n=100)
    assert out[2] == batch[1] and "w1" not in out[2] and "modes_covered" not in out[2]
    assert {"w1", "w1_converged", "copy_z_u", "modes_covered"} <= set(out[0])
    with pytest.raises(ValueError, match="2 exact and 3 extra flags for 3 members"):
        score(samples, ring8, n=100, seed=2, exact=[True, True], extra=[False] * 3)


def test_every_key_a_scored_epoch_records_is_in_labels(ring8, mnist_small, tmp_path, monkeypatch):
    """runner.score_members' keys (losses, distances, extra metrics of both datasets kinds,
    with a second sampling mode's suffix) all have a LABELS entry; the class-aware ones say
    they need labels and appear only for labelled digits."""
    monkeypatch.setenv("MIXBENCH_CACHE", str(tmp_path))
    keys = set()
    for data in (ring8, mnist_small):
        trainable = build("realmix", [params_class("realmix")()], data, seeds=[0], batch_size=64)
        result = trainable.train_epoch()
        (row,) = score_members(trainable, data, result, n_eval=100, exact=True, extra=True)
        assert "w1_noise" in row and "copy_z_u_noise" in row
        assert all(metric_of(k) is not None for k in row), sorted(row)
        labelled = {k for k in row if metric_of(k).needs_labels}
        if data is ring8:
            assert not labelled
        else:
            assert {"cfid", "precision", "classes_covered"} <= labelled
        keys |= set(row)
    assert {metric_of(k).direction for k in keys} == {"minimize", "maximize", None}
    assert metric_of("w1_noise") is LABELS["w1"] and metric_of("nonsense") is None


def test_a_finished_runs_sample_grid_is_the_start_of_its_scoring_samples(ring8):
    """The grid of a finished run is the first GRID_SAMPLES of the samples it was scored on:
    taken from `score_members`' `drawn` (the study's population path) or drawn again (a run
    whose last epoch was not scored in this process, e.g. a resumed one), the same points,
    and for member 1 of a population the same as for that member's run alone."""
    from benchmark.runner import GRID_SAMPLES, MemberRun
    from benchmark.settings import Settings

    settings = Settings(epochs=1, n_eval=100)
    params = [params_class("realmix")(), params_class("realmix")(p_mix=0.5, alpha=0.5)]
    pop = build("realmix", params, ring8, seeds=[4, 5], batch_size=64)
    result = pop.train_epoch()
    drawn: dict = {}
    score_members(pop, ring8, result, n_eval=100, exact=False, drawn=drawn)
    assert set(drawn) == {"buffer", "noise"}
    assert drawn["buffer"].shape == (2, GRID_SAMPLES, 2)

    def finished(trainable, index, grids):
        run = MemberRun("realmix", params[1], 5, settings)
        run.add_epoch(result, 1)
        return run.finish(trainable, index, drawn=grids).samples

    from_scoring, redrawn = finished(pop, 1, drawn), finished(pop, 1, None)
    alone = build("realmix", params[1:], ring8, seeds=[5], batch_size=64)
    alone.train_epoch()
    for mode in ("buffer", "noise"):
        scored = pop.sample(100, mode, seed=0)[1, :GRID_SAMPLES].numpy()
        assert (from_scoring[mode] == scored).all() and (redrawn[mode] == scored).all()
        assert (finished(alone, 0, None)[mode] == scored).all()
    assert not (from_scoring["buffer"] == from_scoring["noise"]).all()

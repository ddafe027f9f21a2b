"""The naive baseline of `benchmark.perf` has MixBench's architecture and trains."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from benchmark.data import Dataset
from benchmark.perf.naive import NaiveTrial
from benchmark.trainables import build, params_class

BATCH = 32


@pytest.fixture(scope="module")
def tiny(mnist_small: Dataset) -> Dataset:
    """96 real training digits: 3 steps of batch 32 per epoch."""
    return dataclasses.replace(mnist_small, train=mnist_small.train[:96], train_labels=None)


@pytest.mark.parametrize("name", ["gan", "mixture", "realmix"])
def test_naive_baseline_matches_mixbench_architecture(name, tiny):
    naive = NaiveTrial(
        name, params_class(name)(), tiny, seed=0, device=torch.device("cpu"), batch_size=BATCH
    )
    pop = build(name, [{}], tiny, seeds=[0], batch_size=BATCH)
    for ours, theirs in ((naive.G, pop.core.G), (naive.D, pop.core.D)):
        assert sum(p.numel() for p in ours.parameters()) == sum(
            p[0].numel() for p in theirs.parameters()
        )
    rate = params_class(name)().dropout_g
    dropouts = [m.p for m in naive.G if isinstance(m, torch.nn.Dropout)]
    assert dropouts == ([rate] * 3 if rate > 0 else [])
    for _ in range(4):  # more than one epoch of 3 batches: the loader reshuffles
        naive.step()
    assert len(naive.log) == 4 and np.isfinite(naive.log).all()

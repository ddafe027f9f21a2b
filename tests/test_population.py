"""Populations train like separate runs; `python -m benchmark.perf` writes its table.

Member i of a population of P must give the same per-step losses and samples as a population
of one built with member i's params and seed. The batched kernels (`torch.baddbmm` over P
members) may round differently from P = 1, so population-vs-single comparisons use the stated
tolerance below; comparisons that do not change the batching are exact.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.data import Dataset
from benchmark.trainables import build

LOSS_ATOL = 1e-5
"""Absolute tolerance on per-step losses, population member vs. the same member run alone."""
SAMPLE_ATOL = 1e-5
"""Absolute tolerance on generated samples (tanh outputs in [-1, 1]), same comparison."""
BATCH = 32
EPOCHS = 2
REPO = Path(__file__).resolve().parents[1]

REALMIX_MEMBERS = [
    {},  # the paper's defaults
    {
        "p_mix": 0.5,
        "alpha": 0.5,
        "buffer_capacity": 300,
        "buffer_refresh": 0.25,
        "per_sample_mix": True,
        "dropout_g": 0.0,
        "dropout_d": 0.1,
        "lr": 1e-3,
        "beta1": 0.3,
        "beta2": 0.99,
    },
    {
        "p_mix": 1.0,
        "alpha": 1.0,
        "buffer_capacity": 64,
        "buffer_refresh": 0.0,
        "dropout_g": 0.5,
        "dropout_d": 0.0,
        "lr": 5e-5,
        "beta1": 0.9,
    },
]
MIXTURE_MEMBERS = [
    {"t_measure": "delta1"},
    {"t_measure": "uniform", "g_loss": "minimax", "lr": 1e-3},
    {"t_measure": "beta", "t_a": 2.0, "t_b": 0.5, "lr": 5e-4, "beta1": 0.5},
]
GAN_MEMBERS = [{}, {"lr": 1e-3, "dropout_d": 0.2}, {"beta1": 0.5, "beta2": 0.99, "dropout_g": 0.1}]
MEMBERS = {"gan": GAN_MEMBERS, "realmix": REALMIX_MEMBERS, "mixture": MIXTURE_MEMBERS}
SEEDS = [11, 12, 13]


@pytest.fixture(scope="module")
def tiny(mnist_small: Dataset) -> Dataset:
    """128 real training digits: 4 steps of batch 32 per epoch."""
    return dataclasses.replace(mnist_small, train=mnist_small.train[:128], train_labels=None)


def _losses(trainable, epochs: int = EPOCHS) -> tuple[np.ndarray, np.ndarray]:
    results = [trainable.train_epoch() for _ in range(epochs)]
    g = np.concatenate([r.g_losses for r in results], axis=1)
    d = np.concatenate([r.d_losses for r in results], axis=1)
    return g, d


@pytest.mark.parametrize("name", sorted(MEMBERS))
def test_population_matches_separate_runs(name, tiny):
    members = MEMBERS[name]
    pop = build(name, members, tiny, seeds=SEEDS, batch_size=BATCH)
    g_pop, d_pop = _losses(pop)
    assert g_pop.shape == (len(members), EPOCHS * 4)
    pop_samples = {mode: pop.sample(40, mode, seed=3) for mode in pop.sample_modes}
    for i, (params, seed) in enumerate(zip(members, SEEDS)):
        alone = build(name, [params], tiny, seeds=[seed], batch_size=BATCH)
        g, d = _losses(alone)
        np.testing.assert_allclose(g_pop[i], g[0], rtol=0, atol=LOSS_ATOL)
        np.testing.assert_allclose(d_pop[i], d[0], rtol=0, atol=LOSS_ATOL)
        for mode, samples in pop_samples.items():
            torch.testing.assert_close(
                samples[i], alone.sample(40, mode, seed=3)[0], rtol=0, atol=SAMPLE_ATOL
            )
    # the members really differ, so the comparison above could have caught a mix-up
    assert not np.allclose(g_pop[0], g_pop[1], atol=1e-3)
    assert not np.allclose(d_pop[1], d_pop[2], atol=1e-3)


def test_population_order_does_not_matter(tiny):
    """Reversing the members reverses the rows; no member leaks into another."""
    fwd = build("realmix", REALMIX_MEMBERS, tiny, seeds=SEEDS, batch_size=BATCH)
    rev = build("realmix", REALMIX_MEMBERS[::-1], tiny, seeds=SEEDS[::-1], batch_size=BATCH)
    g_f, d_f = _losses(fwd, 1)
    g_r, d_r = _losses(rev, 1)
    np.testing.assert_allclose(g_f, g_r[::-1], rtol=0, atol=LOSS_ATOL)
    np.testing.assert_allclose(d_f, d_r[::-1], rtol=0, atol=LOSS_ATOL)


@pytest.mark.parametrize("name", sorted(MEMBERS))
def test_population_same_seeds_bit_identical(name, tiny):
    a = build(name, MEMBERS[name], tiny, seeds=SEEDS, batch_size=BATCH)
    b = build(name, MEMBERS[name], tiny, seeds=SEEDS, batch_size=BATCH)
    (ga, da), (gb, db) = _losses(a, 1), _losses(b, 1)
    np.testing.assert_array_equal(ga, gb)
    np.testing.assert_array_equal(da, db)
    for mode in a.sample_modes:
        torch.testing.assert_close(a.sample(16, mode), b.sample(16, mode), rtol=0, atol=0)


def test_mixture_delta1_member_is_gan_bit_identical(tiny):
    """Within one population, the delta(1) member's losses equal a standard GAN's exactly."""
    mix = build("mixture", MIXTURE_MEMBERS, tiny, seeds=SEEDS, batch_size=BATCH)
    gan_params = {"lr": 2e-4, "beta1": 0.9, "beta2": 0.999}
    gan = build("gan", [gan_params] * 3, tiny, seeds=SEEDS, batch_size=BATCH)
    g_mix, d_mix = _losses(mix)
    g_gan, d_gan = _losses(gan)
    np.testing.assert_array_equal(g_mix[0], g_gan[0])
    np.testing.assert_array_equal(d_mix[0], d_gan[0])
    assert not np.allclose(d_mix[1], d_gan[1], atol=1e-3)  # uniform t is not the GAN


@pytest.mark.parametrize("name", sorted(MEMBERS))
def test_population_checkpoint_continues_identically(name, tiny):
    """state_dict -> a fresh population -> load_state_dict: the next epoch is bit-identical."""
    t = build(name, MEMBERS[name], tiny, seeds=SEEDS, batch_size=BATCH)
    t.train_epoch()
    state = copy.deepcopy(t.state_dict())
    expected = t.train_epoch()
    fresh = build(name, MEMBERS[name], tiny, seeds=SEEDS, batch_size=BATCH)
    fresh.load_state_dict(state)
    got = fresh.train_epoch()
    np.testing.assert_array_equal(got.g_losses, expected.g_losses)
    np.testing.assert_array_equal(got.d_losses, expected.d_losses)
    for mode in t.sample_modes:
        torch.testing.assert_close(fresh.sample(16, mode), t.sample(16, mode), rtol=0, atol=0)


# --------------------------------------------------------------------------------------------
# python -m benchmark.perf (a behaviour test of the command; timings are never asserted)
# --------------------------------------------------------------------------------------------


def test_perf_cli_writes_one_row_per_contender(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "benchmark.perf",
        "--trainable",
        "realmix",
        "--dataset",
        "ring8",
        "--populations",
        "1,2",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--rounds",
        "1",
        "--n-eval",
        "50",
        "--threads",
        "1",
        "--device",
        "cpu",
        "--out-dir",
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    (md,) = tmp_path.glob("perf-*.md")
    (js,) = tmp_path.glob("perf-*.json")
    report = json.loads(js.read_text())
    rows = report["rows"]
    assert [r["contender"] for r in rows] == ["naive", "mixbench P=1", "mixbench P=2"]
    assert [r["population"] for r in rows] == [1, 1, 2]
    for row in rows:
        for key in ("iters_per_s", "s_per_epoch_per_trial", "trials_per_hour", "ratio"):
            assert math.isfinite(row[key]) and row[key] > 0, (row["contender"], key)
        assert 0 < row["scoring_share"] < 1
    assert rows[0]["ratio"] == 1.0
    assert report["threads"] == 1 and report["device"]["type"] == "cpu"
    assert report["steps_per_epoch"] == 8000 // 128  # ring8's generated training split
    text = md.read_text()
    assert "torch " + torch.__version__ in text and "extrapolated" in text
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(table) == 2 + len(rows)  # header, separator, one line per contender
    assert "naive" in proc.stdout and "mixbench P=2" in proc.stdout


def test_perf_cli_rejects_bad_populations(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmark.perf",
            "--populations",
            "1,0",
            "--out-dir",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "--populations" in proc.stderr and "positive" in proc.stderr

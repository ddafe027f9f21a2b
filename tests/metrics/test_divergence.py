"""The divergence rule: its bounds against closed forms, and a finite blow-up (lr 1.0) recorded
PRUNED 'diverged' by a real study (journal storage, MLflow store), in both trial paths."""

from __future__ import annotations

import json
import math

import numpy as np
import optuna
import pytest
import torch
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from benchmark import study as study_cli
from benchmark.metrics.divergence import (
    LOSS_BOUND,
    SCALE_FACTOR,
    DivergenceRule,
    constant_generator_sw2,
    rule_for,
)
from benchmark.metrics.wasserstein import sliced_wasserstein
from benchmark.runner import train_run
from benchmark.settings import Settings
from benchmark.tracking import connect

try:
    from tests._mlflow import fresh_mlflow_uri
except ImportError:  # tests/ on sys.path
    from _mlflow import fresh_mlflow_uri

TINY = [
    "--dataset", "ring8", "--epochs", "1",
    "--setting", "train_size=256", "--setting", "n_eval=150", "--setting", "heldout_size=150",
    "--setting", "device=cpu",
]  # fmt: skip
BLOW_UP = ["--param", "lr=1.0", "--param", "alpha=10", "--param", "noise_sigma=10",
           "--param", "clamp=false"]  # fmt: skip


def test_loss_bound_is_ten_thousand_times_log_2_on_the_median_of_an_epoch():
    rule = DivergenceRule()
    assert abs(LOSS_BOUND - 6931.47) < 0.01
    calm = np.full(10, 0.7)
    above = np.full(10, LOSS_BOUND * 1.001)
    assert rule.losses(calm, calm, 1) is None
    assert rule.losses(np.full(10, LOSS_BOUND * 0.999), calm, 1) is None
    assert rule.losses(above, calm, 3).startswith("G loss exploded in epoch 3")
    assert rule.losses(calm, -above, 2).startswith("D loss exploded in epoch 2")  # |minimax|
    spikes = calm.copy()
    spikes[:4] = 1e12  # 4 of 10 steps: a spike, not sustained
    assert rule.losses(spikes, calm, 1) is None
    spikes[:6] = 1e12  # 6 of 10: the median is past the bound
    assert rule.losses(spikes, calm, 1) is not None
    nan = calm.copy()
    nan[5] = np.nan
    assert rule.losses(calm, nan, 4) == "non-finite loss in epoch 4"


def test_scale_check_against_the_constant_generator_level():
    rule = DivergenceRule(reference_sw2=2.0)
    limit = SCALE_FACTOR * 2.0
    assert rule.scores({"sliced_w2": limit * 0.999}, 1) is None
    assert rule.scores({"sliced_w2": limit * 1.001}, 2).startswith("samples far off")
    noise = {"sliced_w2": 1.0, "sliced_w2_noise": limit * 1.001}
    assert "sliced_w2_noise" in rule.scores(noise, 1)  # RealMix's noise mode counts too
    assert rule.scores({"g_loss": 1.0}, 5) == "non-finite samples in epoch 5"
    assert DivergenceRule().scores({"sliced_w2": 1e30}, 1) is None  # no reference: no check


@pytest.mark.parametrize("dataset", ["ring8", "mnist"])
def test_constant_generator_level_matches_the_sliced_w2_of_a_point_mass(
    dataset, ring8, mnist_small
):
    data = ring8 if dataset == "ring8" else mnist_small
    held = data.heldout
    point = held.mean(dim=0, keepdim=True).expand_as(held)
    measured = sliced_wasserstein(point, held, n_projections=2000, seed=0)
    assert constant_generator_sw2(held) == pytest.approx(measured, rel=0.05)
    assert rule_for(data).reference_sw2 == constant_generator_sw2(held)
    assert rule_for(data) is rule_for(data)


def _blow_up_study(tmp_path, tmp_path_factory, monkeypatch, *extra: str) -> tuple:
    monkeypatch.chdir(tmp_path)
    uri = fresh_mlflow_uri(tmp_path_factory, tmp_path)
    argv = ["--space", "realmix", "--trials", "2", *TINY, *BLOW_UP, "--tracking-uri", uri]
    assert study_cli.main([*argv, *extra]) == 0
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "results" / "optuna.journal")))
    study = optuna.load_study(study_name="realmix-ring8-wasserstein", storage=storage)
    return study, uri


@pytest.mark.parametrize("population", ["1", "2"])
def test_a_finite_blow_up_is_pruned_as_diverged_and_never_the_best(
    tmp_path, tmp_path_factory, monkeypatch, population
):
    """lr 1.0 with RealMix's alpha 10, noise sigma 10, no clamp: losses near 1e15 and W1 near
    1e6, all finite; it was recorded COMPLETE and could become the best trial."""
    study, uri = _blow_up_study(
        tmp_path, tmp_path_factory, monkeypatch, "--population", population
    )
    assert [t.state for t in study.trials] == [TrialState.PRUNED] * 2
    for t in study.trials:
        assert t.user_attrs["reason"] == "diverged"
        detail = t.user_attrs["detail"]
        assert "exploded in epoch 1" in detail or "far off the data's scale" in detail, detail
        (seed,) = t.user_attrs["seeds"]
        assert seed["status"] == "diverged" and seed["reason"] == detail
    tracker = connect(uri)
    for t in study.trials:
        run = tracker.client.get_run(t.user_attrs["mlflow_run_id"])
        assert run.info.status == "KILLED"
        assert (run.data.tags["state"], run.data.tags["reason"]) == ("PRUNED", "diverged")
    best = json.loads(
        (tmp_path / "results/studies/realmix-ring8-wasserstein/best.json").read_text()
    )
    assert best["best"] == [] and best["trials"] == {"PRUNED": 2}


def test_the_paper_defaults_on_real_mnist_do_not_diverge(mnist_small):
    """The rule on real training: two epochs of each variant's defaults on MNIST digits."""
    settings = Settings(epochs=2, dataset="mnist", n_eval=100, device="cpu")
    for variant in ("gan", "realmix", "mixture"):
        result = train_run(
            variant, {}, settings, seed=0, data=mnist_small, device=torch.device("cpu")
        )
        assert result.status == "finished", (variant, result.reason)
        assert all(math.isfinite(h["sliced_w2"]) for h in result.history)

"""benchmark.storage: storage kinds, samplers and pruners, the multi-objective pruning rule."""

from __future__ import annotations

import optuna
import pytest

from benchmark.storage import (
    FarBehindRule,
    StorageError,
    make_pruner,
    make_sampler,
    open_storage,
    storage_kind,
)


def test_far_behind_rule_against_its_closed_form():
    rule = FarBehindRule(quantile=0.75, factor=1.5, min_trials=5)
    others = [1.0, 2.0, 3.0, 4.0, 5.0]  # 75% quantile (linear) = 4.0, bar = 6.0
    assert rule.verdict(6.01, others).startswith("far-behind")
    assert rule.verdict(5.99, others) is None
    assert rule.verdict(100.0, others[:4]) is None  # too few completed trials to judge
    assert rule.verdict(float("nan"), []) is not None


def test_storage_kinds_and_a_bad_url_named_with_the_fix():
    assert storage_kind("results/optuna.journal") == "journal"
    assert storage_kind("sqlite:///results/optuna.db") == "rdb"
    with pytest.raises(StorageError, match="neither a database URL nor a journal file"):
        storage_kind("results/optuna.txt")
    with pytest.raises(StorageError, match="unsupported scheme 'ftp'"):
        storage_kind("ftp://host/db")


def test_journal_storage_is_created_inside_results(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    storage = open_storage("results/sub/optuna.journal")
    optuna.create_study(storage=storage, study_name="s")
    assert (tmp_path / "results" / "sub" / "optuna.journal").stat().st_size > 0
    with pytest.raises(StorageError, match="does not exist"):
        open_storage(str(tmp_path / "missing" / "optuna.journal"))


def test_samplers_and_pruners_by_name():
    assert isinstance(make_sampler("random", multi_objective=False), optuna.samplers.RandomSampler)
    fixed = make_sampler("tpe", multi_objective=False, fixed={"lr": 0.1}, seed=1)
    assert isinstance(fixed, optuna.samplers.PartialFixedSampler)
    with pytest.raises(ValueError, match="single-objective"):
        make_sampler("cmaes", multi_objective=True)
    hyperband = make_pruner("hyperband", steps=9)
    assert isinstance(hyperband, optuna.pruners.HyperbandPruner)
    assert hyperband._max_resource == 9
    with pytest.raises(ValueError, match="valid: median, hyperband, none"):
        make_pruner("asha", steps=3)

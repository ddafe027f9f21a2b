"""Search spaces: every space samples valid trainable params; compare balances its budget."""

from __future__ import annotations

import collections

import optuna
import pytest

import studies
from benchmark.settings import Settings
from benchmark.trainables import VARIANTS, params_class
from studies import compare

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _sample(space, n: int, seed: int = 0) -> list[tuple[optuna.trial.FrozenTrial, dict]]:
    """n trials on an in-memory study, each with the params the space suggested."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        fixed = space.next_fixed([t.params for t in study.trials])
        if fixed:
            study.enqueue_trial(fixed)
        trial = study.ask()
        suggested = space.suggest(trial)
        study.tell(trial, 0.0)
        out.append((study.trials[-1], suggested))
    return out


@pytest.mark.parametrize("name", list(studies.SPACES))
def test_every_space_samples_params_its_trainable_accepts(name: str) -> None:
    space = studies.get_space(name)
    assert isinstance(space.SETTINGS, Settings)
    assert space.TRAINABLE is None or space.TRAINABLE in VARIANTS
    for frozen, suggested in _sample(space, 24):
        variant, params = studies.split_variant(space, suggested)
        assert variant in VARIANTS
        typed = params_class(variant).from_mapping(params)  # raises if out of range
        for key, value in params.items():
            assert getattr(typed, key) == value
        # every suggested value is recorded on the trial (compare: under a prefixed name)
        prefix = f"{variant}." if space.TRAINABLE is None else ""
        assert {prefix + k: v for k, v in params.items()}.items() <= frozen.params.items()


def test_mixture_beta_parameters_exist_only_on_the_beta_branch() -> None:
    seen = set()
    for frozen, params in _sample(studies.get_space("mixture"), 40, seed=3):
        seen.add(params["t_measure"])
        has_ab = {"t_a", "t_b"} <= params.keys() and {"t_a", "t_b"} <= frozen.params.keys()
        assert has_ab == (params["t_measure"] == "beta")
        assert not (params.keys() & {"t_a", "t_b"}) or params["t_measure"] == "beta"
    assert seen == {"delta1", "uniform", "beta"}


def test_realmix_space_searches_the_issue_knobs() -> None:
    (frozen, _), *_ = _sample(studies.get_space("realmix"), 1)
    assert set(frozen.params) == {
        "p_mix",
        "alpha",
        "noise_sigma",
        "buffer_refresh",
        "buffer_capacity",
        "lr",
    }


def test_compare_gives_each_variant_an_equal_share_of_the_budget() -> None:
    trials = _sample(studies.get_space("compare"), 7)
    counts = collections.Counter(params["trainable"] for _, params in trials)
    assert counts == {"gan": 3, "realmix": 2, "mixture": 2}  # 7 = 3 + 2 + 2, CHOICES order
    # branches never share a parameter name, so the sampler models them apart
    for frozen, params in trials:
        branch = {k for k in frozen.params if k != "trainable"}
        assert all(k.startswith(params["trainable"] + ".") for k in branch)


def test_compare_next_fixed_counts_only_the_trials_it_is_given() -> None:
    assert compare.next_fixed([]) == {"trainable": "gan"}
    given = [{"trainable": "gan"}, {"trainable": "gan"}, {"trainable": "realmix"}]
    assert compare.next_fixed(given) == {"trainable": "mixture"}
    given.append({"trainable": "mixture"})
    assert compare.next_fixed(given) == {"trainable": "realmix"}


def test_unknown_space_names_the_valid_ones() -> None:
    with pytest.raises(studies.SpaceError, match="valid: realmix, mixture, gan, compare"):
        studies.get_space("wgan")

"""Ablation designs stored as Optuna studies with known per-seed responses (no training), for
the tests of benchmark.ablation and benchmark.reporting.ablation."""

from __future__ import annotations

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution

from benchmark.trainables import MixtureParams, RealMixParams
from studies import ablation as designs


def distributions(design: designs.AblationSpace, params: dict) -> dict:
    choices = design.choices()
    return {k: CategoricalDistribution(choices[k]) for k in params}


def store_design(
    url: str,
    design: designs.AblationSpace,
    responses,
    *,
    seeds: int = 3,
    name: str = "syn",
    skip: tuple[int, ...] = (),
) -> optuna.Study:
    """A study holding one complete trial per cell whose per-seed values are
    `responses(levels, seed) -> {"w1": ..., "w1_noise": ...}`."""
    study = optuna.create_study(storage=url, study_name=name, direction="minimize")
    study.set_user_attr("space", design.name)
    study.set_user_attr("objective", "wasserstein")
    study.set_user_attr("settings", {"epochs": 1, "dataset": "ring8", "seeds": seeds})
    params_class = RealMixParams if design.TRAINABLE == "realmix" else MixtureParams
    for index, cell in enumerate(design.cells()):
        if index in skip:
            continue
        levels = design.levels_of(cell)
        summaries = [
            {"seed": s, "status": "finished", **responses(levels, s)} for s in range(seeds)
        ]
        config = {"trainable": design.TRAINABLE, "params": params_class(**cell).to_dict()}
        study.add_trial(
            optuna.trial.create_trial(
                params=cell,
                distributions=distributions(design, cell),
                value=float(np.mean([x["w1"] for x in summaries])),
                user_attrs={"seeds": summaries, "config": config, "fixed": cell},
            )
        )
    return study


def cell_noise(levels: dict, seed: int, salt: int) -> float:
    key = sum(ord(c) for c in "".join(levels.values()))
    return float(np.random.default_rng([key, seed, salt]).normal(0.0, 0.01))


def mixing_helps_in_buffer_mode_only(levels: dict, seed: int) -> dict:
    gain = -0.3 if levels["mixing"] == "on" else 0.0
    return {
        "w1": 2.0 + gain + cell_noise(levels, seed, 0),
        "w1_noise": 2.0 + cell_noise(levels, seed, 1),
    }

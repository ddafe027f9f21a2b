"""benchmark.ablation: effects from stored trials (synthetic, with known effects) and a tiny
real 2^3 RealMix factorial run end to end through the study harness."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution

from benchmark import ablation
from benchmark.reporting import ablation as ablation_report
from benchmark.reporting import load
from benchmark.trainables import MixtureParams, RealMixParams
from studies import ablation as designs

try:
    from tests._mlflow import fresh_mlflow_uri
except ImportError:  # tests/ on sys.path (pytest's default rootdir-less import)
    from _mlflow import fresh_mlflow_uri

REPO = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _distributions(design: designs.AblationSpace, params: dict) -> dict:
    choices = design.choices()
    return {k: CategoricalDistribution(choices[k]) for k in params}


def _store_design(
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
                distributions=_distributions(design, cell),
                value=float(np.mean([x["w1"] for x in summaries])),
                user_attrs={"seeds": summaries, "config": config, "fixed": cell},
            )
        )
    return study


def _noise(levels: dict, seed: int, salt: int) -> float:
    key = sum(ord(c) for c in "".join(levels.values()))
    return float(np.random.default_rng([key, seed, salt]).normal(0.0, 0.01))


def _mixing_helps_in_buffer_mode_only(levels: dict, seed: int) -> dict:
    gain = -0.3 if levels["mixing"] == "on" else 0.0
    return {
        "w1": 2.0 + gain + _noise(levels, seed, 0),
        "w1_noise": 2.0 + _noise(levels, seed, 1),
    }


def test_known_effect_is_found_and_no_effect_is_inconclusive(tmp_path):
    url = f"sqlite:///{tmp_path / 'syn.db'}"
    _store_design(url, designs.REALMIX, _mixing_helps_in_buffer_mode_only)
    data = load.load_study_data("syn", url)
    runs, notes = ablation_report.runs_frame(data, designs.REALMIX)
    assert len(runs) == 8 * 3 and not notes
    assert set(runs.columns) >= {"mixing", "dropout", "betas", "w1", "w1_noise"}

    w1 = ablation_report.effects_table(runs, designs.REALMIX, "w1").set_index("effect")
    assert list(w1.index) == [
        "mixing",
        "dropout",
        "betas",
        "mixing:dropout",
        "mixing:betas",
        "dropout:betas",
    ]
    # the estimate is the contrast of cell means: mean(on) - mean(off) in a balanced design
    on = runs.loc[runs.mixing == "on", "w1"].mean()
    off = runs.loc[runs.mixing == "off", "w1"].mean()
    assert w1.loc["mixing", "estimate"] == pytest.approx(on - off, abs=1e-12)
    assert w1.loc["mixing", "estimate"] == pytest.approx(-0.3, abs=0.02)
    assert w1.loc["mixing", "verdict"] == "helps"
    assert (w1.drop(index="mixing")["verdict"] == "inconclusive").all()
    assert (w1["p_holm"] >= w1["p"]).all()

    noise = ablation_report.effects_table(runs, designs.REALMIX, "w1_noise")
    assert (noise["verdict"] == "inconclusive").all()

    md, page, effects = ablation_report.write_ablation_report(
        data, designs.REALMIX, tmp_path / "out"
    )
    assert set(effects["response"]) == {"w1", "w1_noise"}
    text = md.read_text()
    assert "**mixing** on W1: helps" in text
    assert "may come from copying" in text  # a buffer-only gain is flagged
    for name in ("effects_w1.png", "effects_w1_noise.png"):
        assert (tmp_path / "out" / name).read_bytes().startswith(PNG)
    cells = pd.read_csv(tmp_path / "out" / "cells.csv")
    assert len(cells) == 8 * 2 and (cells["n"] == 3).all()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (summary["epochs"], summary["seeds"], summary["dataset"]) == (1, 3, "ring8")
    rows = {r["effect"]: r for r in summary["effects"]["w1"]["rows"]}
    assert summary["effects"]["w1"]["n"] == 3
    assert rows["mixing"]["verdict"] == "helps"
    assert rows["mixing"]["ci_low"] < rows["mixing"]["estimate"] < rows["mixing"]["ci_high"]
    assert rows["mixing"]["estimate"] == pytest.approx(w1.loc["mixing", "estimate"])
    # the real-vs-real floor of the study's split and n sits under the cell means
    assert summary["floor"]["w1"] > 0 and "| real-vs-real floor |" in text


def test_classifier_metrics_are_analysed_with_their_own_direction(tmp_path):
    url = f"sqlite:///{tmp_path / 'cls.db'}"

    def responses(levels: dict, seed: int) -> dict:
        on = levels["mixing"] == "on"
        return {
            "w1": 2.0 + _noise(levels, seed, 0),
            "cfid": 100.0 - (20.0 if on else 0.0) + 10 * _noise(levels, seed, 1),
            "classes_covered": 5.0 + (3.0 if on else 0.0) + 10 * _noise(levels, seed, 2),
            "classes_covered_noise": 5.0 + 10 * _noise(levels, seed, 3),
        }

    _store_design(url, designs.REALMIX, responses, name="cls")
    data = load.load_study_data("cls", url)
    runs, _ = ablation_report.runs_frame(data, designs.REALMIX)
    assert {"cfid", "classes_covered", "classes_covered_noise"} <= set(runs.columns)
    cfid = ablation_report.effects_table(runs, designs.REALMIX, "cfid").set_index("effect")
    assert cfid.loc["mixing", "verdict"] == "helps" and cfid.attrs["minimize"]
    covered = ablation_report.effects_table(runs, designs.REALMIX, "classes_covered")
    covered = covered.set_index("effect")
    # more classes is better: a positive effect helps
    assert covered.attrs["minimize"] is False
    assert covered.loc["mixing", "estimate"] == pytest.approx(3.0, abs=0.2)
    assert covered.loc["mixing", "verdict"] == "helps"
    _, _, effects = ablation_report.write_ablation_report(data, designs.REALMIX, tmp_path / "out")
    assert set(effects["response"]) == {"w1", "cfid", "classes_covered", "classes_covered_noise"}
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["effects"]["classes_covered"]["higher_is_better"] is True


def test_mixture_one_factor_design_compares_each_measure_with_delta1(tmp_path):
    url = f"sqlite:///{tmp_path / 'mix.db'}"

    def responses(levels: dict, seed: int) -> dict:
        shift = 0.4 if levels["t_measure"] == "uniform" else 0.0
        return {"w1": 1.0 + shift + _noise(levels, seed, 0)}

    _store_design(url, designs.MIXTURE, responses, name="mix")
    data = load.load_study_data("mix", url)
    runs, _ = ablation_report.runs_frame(data, designs.MIXTURE)
    table = ablation_report.effects_table(runs, designs.MIXTURE, "w1").set_index("effect")
    assert list(table.index) == [
        "uniform vs delta1",
        "beta(5,1) vs delta1",
        "beta(2,2) vs delta1",
        "beta(0.5,0.5) vs delta1",
    ]
    assert table.loc["uniform vs delta1", "verdict"] == "hurts"
    assert table.loc["uniform vs delta1", "estimate"] == pytest.approx(0.4, abs=0.03)
    assert (table.drop(index="uniform vs delta1")["verdict"] == "inconclusive").all()
    assert (table["p_holm"] >= table["p"]).all()


def test_cell_short_of_seeds_is_reported_not_guessed(tmp_path):
    url = f"sqlite:///{tmp_path / 'short.db'}"
    _store_design(url, designs.REALMIX, _mixing_helps_in_buffer_mode_only, seeds=1)
    runs, _ = ablation_report.runs_frame(load.load_study_data("syn", url), designs.REALMIX)
    with pytest.raises(ValueError, match="needs at least 2 seeds"):
        ablation_report.effects_table(runs, designs.REALMIX, "w1")


def test_failed_cell_is_enqueued_again_and_nothing_else(tmp_path):
    url = f"sqlite:///{tmp_path / 'q.db'}"
    study = _store_design(url, designs.REALMIX, _mixing_helps_in_buffer_mode_only, skip=(5,))
    lost = designs.REALMIX.cells()[5]
    study.add_trial(
        optuna.trial.create_trial(
            params=lost,
            distributions=_distributions(designs.REALMIX, lost),
            state=optuna.trial.TrialState.FAIL,
        )
    )
    assert ablation.enqueue_missing(study, designs.REALMIX) == [lost]
    assert ablation.enqueue_missing(study, designs.REALMIX) == []  # it is waiting now
    waiting = [t for t in study.trials if t.state.name == "WAITING"]
    assert len(waiting) == 1 and waiting[0].system_attrs["fixed_params"] == lost
    # the space hands the same cell to the harness if the queue is empty
    live = [{**t.params} for t in study.trials if t.state.name == "COMPLETE"]
    assert designs.REALMIX.next_fixed(live) == lost


def test_tiny_realmix_factorial_end_to_end(tmp_path, tmp_path_factory):
    uri = fresh_mlflow_uri(tmp_path_factory, tmp_path)
    storage = tmp_path / "optuna.journal"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(
        [sys.executable, "-m", "benchmark.ablation", "--base", "realmix", "--seeds", "2",
         "--epochs", "1", "--dataset", "ring8", "--train-size", "128", "--n-eval", "100",
         "--setting", "heldout_size=200", "--setting", "device=cpu",
         "--storage", str(storage), "--tracking-uri", uri,
         "--out", str(tmp_path / "out" / "realmix-ablation-ring8-e1-s2")],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # the ablation makes its study's MLflow parent run itself (it used to wait 120 s for one)
    assert "created by another invocation" not in proc.stderr
    name = "realmix-ablation-ring8-e1-s2"
    study = optuna.load_study(study_name=name, storage=load.open_existing_storage(str(storage)))
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(study.trials) == len(complete) == 8
    assert sorted(designs.REALMIX.cell_index(t.params) for t in complete) == list(range(8))
    for t in complete:
        assert len(t.user_attrs["seeds"]) == 2
        if t.params["p_mix"] == 0.0:  # no real image reaches G: both modes are one sampler
            for s in t.user_attrs["seeds"]:
                assert s["w1"] == s["w1_noise"]

    out = tmp_path / "out" / name
    effects = pd.read_csv(out / "effects.csv")
    assert set(effects["response"]) == {"w1", "w1_noise", "g_loss_var"}
    assert len(effects) == 3 * 6
    assert set(effects["verdict"]) <= {"helps", "hurts", "inconclusive"}
    # the mixing main effect is the contrast of the stored trials' cell means
    means = {
        designs.REALMIX.levels_of(t.params)["mixing"]: [] for t in complete
    }  # fmt: skip
    for t in complete:
        level = designs.REALMIX.levels_of(t.params)["mixing"]
        means[level].append(np.mean([s["w1"] for s in t.user_attrs["seeds"]]))
    mixing = effects[(effects.response == "w1") & (effects.effect == "mixing")].iloc[0]
    assert mixing["estimate"] == pytest.approx(np.mean(means["on"]) - np.mean(means["off"]))
    assert "mixing" in proc.stdout and "w1_noise" in proc.stdout
    page = (out / "report.html").read_text()
    for png in ("effects_w1.png", "effects_w1_noise.png", "effects_g_loss_var.png"):
        assert (out / png).read_bytes().startswith(PNG)
    assert page.count("data:image/png;base64,") == 3
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["epochs"], summary["seeds"]) == (1, 2)
    assert set(summary["effects"]) == {"w1", "w1_noise", "g_loss_var"}
    for response, block in summary["effects"].items():
        assert block["n"] == 2 and len(block["rows"]) == 6, response
        assert {r["verdict"] for r in block["rows"]} <= {"helps", "hurts", "inconclusive"}
    assert summary["floor"]["w1"] > 0
    assert "real-vs-real floor" in (out / "report.md").read_text()
    # resuming: every cell is there, so nothing is enqueued again
    assert ablation.enqueue_missing(study, designs.REALMIX) == []


def test_one_seed_per_cell_is_refused_before_anything_is_stored(tmp_path, capsys):
    storage = tmp_path / "a.journal"
    code = ablation.main(
        ["--base", "realmix", "--seeds", "1", "--dataset", "ring8", "--storage", str(storage)]
    )
    assert code == 2
    assert "at least 2 seeds per cell" in capsys.readouterr().err
    assert not storage.exists()

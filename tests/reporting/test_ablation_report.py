"""benchmark.reporting.ablation: effects from stored trials (synthetic designs with known
effects, no training), their verdicts and the report files."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from benchmark.reporting import ablation as ablation_report
from benchmark.reporting import load
from studies import ablation as designs

try:
    from tests._designs import cell_noise, mixing_helps_in_buffer_mode_only, store_design
except ImportError:  # tests/ on sys.path (pytest's default rootdir-less import)
    from _designs import cell_noise, mixing_helps_in_buffer_mode_only, store_design

PNG = b"\x89PNG\r\n\x1a\n"


def test_known_effect_is_found_and_no_effect_is_inconclusive(tmp_path):
    url = f"sqlite:///{tmp_path / 'syn.db'}"
    store_design(url, designs.REALMIX, mixing_helps_in_buffer_mode_only)
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
            "w1": 2.0 + cell_noise(levels, seed, 0),
            "cfid": 100.0 - (20.0 if on else 0.0) + 10 * cell_noise(levels, seed, 1),
            "classes_covered": 5.0 + (3.0 if on else 0.0) + 10 * cell_noise(levels, seed, 2),
            "classes_covered_noise": 5.0 + 10 * cell_noise(levels, seed, 3),
        }

    store_design(url, designs.REALMIX, responses, name="cls")
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
        return {"w1": 1.0 + shift + cell_noise(levels, seed, 0)}

    store_design(url, designs.MIXTURE, responses, name="mix")
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
    store_design(url, designs.REALMIX, mixing_helps_in_buffer_mode_only, seeds=1)
    runs, _ = ablation_report.runs_frame(load.load_study_data("syn", url), designs.REALMIX)
    with pytest.raises(ValueError, match="needs at least 2 seeds"):
        ablation_report.effects_table(runs, designs.REALMIX, "w1")

"""benchmark.ablation: enqueueing a design's missing cells and a tiny real 2^3 RealMix factorial
run end to end through the study harness (the effects from stored trials are
tests/reporting/test_ablation_report.py)."""

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

from benchmark import ablation
from benchmark.reporting import load
from studies import ablation as designs

try:
    from tests._designs import distributions, mixing_helps_in_buffer_mode_only, store_design
    from tests._mlflow import fresh_mlflow_uri
except ImportError:  # tests/ on sys.path (pytest's default rootdir-less import)
    from _designs import distributions, mixing_helps_in_buffer_mode_only, store_design
    from _mlflow import fresh_mlflow_uri

REPO = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_failed_cell_is_enqueued_again_and_nothing_else(tmp_path):
    url = f"sqlite:///{tmp_path / 'q.db'}"
    study = store_design(url, designs.REALMIX, mixing_helps_in_buffer_mode_only, skip=(5,))
    lost = designs.REALMIX.cells()[5]
    study.add_trial(
        optuna.trial.create_trial(
            params=lost,
            distributions=distributions(designs.REALMIX, lost),
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
    responses = {"w1", "w1_noise", "sliced_w2", "sliced_w2_noise", "g_loss_var"}
    assert set(effects["response"]) == responses
    assert len(effects) == 5 * 6
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
    pngs = [f"effects_{r}.png" for r in sorted(responses)]
    for png in (*pngs, "curves_w1.png", "curves_sliced_w2.png"):
        assert (out / png).read_bytes().startswith(PNG)
    assert page.count("data:image/png;base64,") == 5 + 2
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["epochs"], summary["seeds"]) == (1, 2)
    assert set(summary["effects"]) == responses
    for response, block in summary["effects"].items():
        assert block["n"] == 2 and len(block["rows"]) == 6, response
        assert {r["verdict"] for r in block["rows"]} <= {"helps", "hurts", "inconclusive"}
    assert summary["floor"]["w1"] > 0
    assert "real-vs-real floor" in (out / "report.md").read_text()
    # learning curves: each cell's per-epoch mean over its seeds, read back from MLflow
    curves = summary["curves"]["w1"]
    assert len(curves) == 8
    for t in complete:
        levels = designs.REALMIX.levels_of(t.params)
        cell = ", ".join(f"{k}={v}" for k, v in levels.items())
        mean_w1 = np.mean([s["w1"] for s in t.user_attrs["seeds"]])
        assert curves[cell]["mean"] == [pytest.approx(mean_w1)]
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

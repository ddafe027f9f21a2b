"""benchmark.reproduce: a tiny real run of the RealMixGAN paper comparison on the MNIST split in
../shared/data, side-by-side seeds, checkpoints (the scale and claim logic on known numbers is
tests/reporting/test_reproduce_report.py)."""

from __future__ import annotations

import base64
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmark import reproduce
from benchmark.reporting.claims import DISTANCES
from benchmark.reporting.document import num
from benchmark.reproduce import REALMIX_PAPER

REPO = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


def test_tiny_paper_reproduction_on_real_mnist(tmp_path, shared_data_dir):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MIXBENCH_CACHE": str(tmp_path / "cache")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    command = [sys.executable, "-m", "benchmark.reproduce", "realmix-paper", "--epochs", "2",
               "--seeds", "2", "--data-dir", str(shared_data_dir), "--train-size", "256",
               "--n-eval", "100", "--device", "cpu",
               "--out", str(tmp_path / "realmix-paper")]  # fmt: skip
    proc = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env
    )
    assert proc.returncode == 0, proc.stderr
    # the data is printed so nobody mistakes the run for the paper's setting
    assert "256 train / 2000 held-out" in proc.stdout
    assert "NOT the paper's setting" in proc.stdout and "not the paper's 60,000" in proc.stdout
    out = tmp_path / "realmix-paper"
    results = json.loads((out / "results.json").read_text())
    with (out / "table.csv").open() as handle:
        table = {r["quantity"]: r for r in csv.DictReader(handle)}
    assert set(table) == {"w1", "sliced_w2", "pixel_w1", "g_loss", "d_loss"}
    assert float(table["w1"]["paper_gan"]) == 0.0290
    assert float(table["w1"]["paper_realmix"]) == 0.0137
    assert float(table["g_loss"]["paper_realmix"]) == 1.0261
    assert float(table["d_loss"]["paper_gan"]) == 1.0431
    for quantity, row in table.items():
        columns = [("gan", "gan", quantity), ("realmix", "realmix", quantity)]
        columns.append(("realmix_noise", "realmix", quantity + "_noise"))
        for name, trainable, key in columns:
            # distances: each seed's mean over its evaluation sets; losses: the last epoch
            field = "evaluated" if quantity in DISTANCES else "final"
            seeds = [r[field][key] for r in results["runs"][trainable] if key in r[field]]
            if not seeds:
                assert row.get(f"{name}_mean") in ("", None), (quantity, name)
                continue
            assert len(seeds) == 2
            assert float(row[f"{name}_mean"]) == pytest.approx(np.mean(seeds), rel=1e-12)
    # the scale statement is computed from the measured numbers, not assumed
    orders = {d: float(np.mean([float(table[d]["orders_gan"]), float(table[d]["orders_realmix"])]))
              for d in ("w1", "sliced_w2", "pixel_w1")}  # fmt: skip
    closest = min(orders, key=lambda d: abs(orders[d]))
    assert results["scale"]["closest"] == closest
    assert results["scale"]["distance"] == (closest if abs(orders[closest]) <= 0.5 else None)
    assert {(c["distance"], c["mode"]) for c in results["claims"]} == {
        (d, m) for d in ("w1", "sliced_w2", "pixel_w1") for m in ("buffer", "noise")
    }
    markdown = (out / "report.md").read_text()
    assert "RealMixGAN: Accelerating GAN Convergence" in markdown  # the source is cited
    page = (out / "report.html").read_text()
    pngs = sorted(out.glob("*.png"))
    names = {p.name for p in pngs}
    assert {"losses.png", "evolution_w1.png", "samples_gan.png", "samples_realmix.png",
            "samples_realmix_noise.png"} <= names  # fmt: skip
    for path in pngs:
        data = path.read_bytes()
        assert data.startswith(PNG) and base64.b64encode(data).decode() in page, path.name

    # summary.json: the setting, mean and interval (with n) per variant and metric, floors
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["epochs"], summary["seeds"], summary["dataset"]) == (2, 2, "mnist")
    assert summary["train_size"] == 256 and summary["iterations_per_run"] == 2 * (256 // 128)
    for name in ("gan", "realmix", "realmix_noise"):
        for quantity in ("w1", "sliced_w2", "pixel_w1"):
            cell = summary["variants"][name][quantity]
            assert cell["n"] == 2 and cell["ci_low"] < cell["mean"] < cell["ci_high"]
            assert cell["mean"] == pytest.approx(float(table[quantity][f"{name}_mean"]))
    import torch

    from benchmark.metrics.reference import reference_scale
    from benchmark.runner import load_data
    from benchmark.settings import Settings

    settings = Settings(dataset="mnist", data_dir=str(shared_data_dir), train_size=256)
    direct = reference_scale(load_data(settings, torch.device("cpu")), 100,
                             trainables=("gan", "realmix"), cache=False)  # fmt: skip
    assert summary["floor"] == direct.floor and summary["ceiling"] == direct.ceiling
    for quantity in ("w1", "sliced_w2", "pixel_w1"):
        assert float(table[quantity]["floor"]) == direct.floor[quantity]
        assert 0 < direct.floor[quantity] < direct.ceiling_of(quantity)
        # the floor and ceiling are printed and shown beside every distance in the report
        assert f"{num(direct.floor[quantity])} / " in markdown
    assert "real-vs-real floor" in markdown and "floor" in proc.stdout
    assert "untrained" in proc.stdout
    # the paper's 0.0290 / 0.0137 against the floors, in words computed from them
    assert summary["paper_vs_floor"] in proc.stdout
    below = [d for d in ("w1", "sliced_w2", "pixel_w1") if direct.floor[d] > 0.0290]
    assert f"below the floor of {', '.join(below)}" in summary["paper_vs_floor"]
    assert set(summary["eval_share"]) >= {"w1", "sliced_w2", "pixel_w1"}

    # the same command again continues from the finished checkpoints and trains nothing
    again = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env
    )
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("continuing from the checkpoint at epoch 2") == 2
    assert json.loads((out / "summary.json").read_text())["variants"] == summary["variants"]
    # another setting with the same folder is refused, naming what differs
    other = subprocess.run(
        [*command[:5], "3", *command[6:]], cwd=tmp_path, capture_output=True, text=True,
        timeout=600, env=env,
    )  # fmt: skip
    assert other.returncode == 2 and "settings.epochs" in other.stderr
    assert "Traceback" not in other.stderr


def test_unknown_dataset_exits_2(tmp_path, capsys):
    code = reproduce.main(["realmix-paper", "--dataset", "cifar", "--out", str(tmp_path)])
    assert code == 2
    assert "--dataset 'cifar' is unknown" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


# --------------------------------------------------------------------------------------------
# seeds side by side, checkpoints and resuming
# --------------------------------------------------------------------------------------------


def _tiny(shared_data_dir: Path, **changes):
    import torch

    from benchmark.runner import load_data
    from benchmark.settings import Settings

    settings = Settings(
        epochs=3, dataset="mnist", data_dir=str(shared_data_dir), seeds=2, train_size=256,
        n_eval=60, exact_every_epoch=True, device="cpu",
    ).replace(**changes)  # fmt: skip
    return settings, load_data(settings, torch.device("cpu"))


def _same_runs(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for trainable in want:
        assert len(got[trainable]) == len(want[trainable])
        for a, b in zip(got[trainable], want[trainable], strict=True):
            assert (a.seed, a.status) == (b.seed, b.status)
            strip = [{k: v for k, v in h.items() if k != "seconds"} for h in a.history]
            assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in b.history]
            np.testing.assert_array_equal(a.g_losses, b.g_losses)
            np.testing.assert_array_equal(a.d_losses, b.d_losses)
            assert a.evaluated == b.evaluated and a.eval_sd == b.eval_sd
            assert set(a.samples) == set(b.samples)
            for mode in a.samples:
                np.testing.assert_array_equal(a.samples[mode], b.samples[mode])


def test_seeds_train_side_by_side_as_one_population_like_single_runs(shared_data_dir):
    import torch

    from benchmark.runner import train_run

    settings, data = _tiny(shared_data_dir, epochs=2)
    runs = reproduce.run_experiment(REALMIX_PAPER, settings, data, torch.device("cpu"))
    for trainable in ("gan", "realmix"):
        assert [r.seed for r in runs[trainable]] == [0, 1]
        for run in runs[trainable]:
            alone = train_run(
                trainable, reproduce._params(REALMIX_PAPER, trainable), settings,
                seed=run.seed, data=data, device=torch.device("cpu"),
            )  # fmt: skip
            # a population member is bit-identical to its run alone on CPU
            np.testing.assert_array_equal(run.g_losses, alone.g_losses)
            assert run.final["w1"] == alone.final["w1"]
            assert run.final["sliced_w2"] == alone.final["sliced_w2"]
        # every seed's final distances come from its own evaluation sets: they differ from
        # the fixed-subsample score, and the spread over sets is recorded
        for run in runs[trainable]:
            assert set(run.evaluated) >= {"w1", "sliced_w2", "pixel_w1"}
            assert run.evaluated["w1"] != run.final["w1"] and run.eval_sd["w1"] > 0
    assert {"w1_noise", "sliced_w2_noise"} <= set(runs["realmix"][0].evaluated)


@pytest.mark.parametrize("stops", [[2], [1, 4]])
def test_resumed_run_gives_the_same_numbers_as_an_uninterrupted_one(
    tmp_path, shared_data_dir, stops
):
    """Killed after k epochs of training (in the baseline, in the treatment, twice): re-runs
    continue from the last checkpoint and end bit-identical to one uninterrupted run."""
    import torch

    settings, data = _tiny(shared_data_dir)
    cpu = torch.device("cpu")
    want = reproduce.run_experiment(REALMIX_PAPER, settings, data, cpu)
    folder = tmp_path / "checkpoints"
    done = 0
    for stop in stops:
        partial = reproduce.run_experiment(
            REALMIX_PAPER, settings, data, cpu, checkpoints=folder, checkpoint_every=1,
            stop_after=stop - done,
        )  # fmt: skip
        assert partial == {}  # interrupted: no results yet
        done = stop
        saved = torch.load(folder / ("gan.pt" if stop <= 3 else "realmix.pt"), weights_only=False)
        assert saved["epoch"] == (stop if stop <= 3 else stop - 3)
    log: list[str] = []
    got = reproduce.run_experiment(
        REALMIX_PAPER, settings, data, cpu, checkpoints=folder, checkpoint_every=1,
        log=log.append,
    )  # fmt: skip
    _same_runs(got, want)
    resumed = [m for m in log if "continuing from the checkpoint" in m]
    assert resumed and f"epoch {done if done <= 3 else done - 3}" in resumed[-1]
    # a finished checkpoint is reused as it is: a re-run trains nothing and agrees again
    log.clear()
    again = reproduce.run_experiment(
        REALMIX_PAPER, settings, data, cpu, checkpoints=folder, log=log.append
    )
    _same_runs(again, want)
    assert sum("continuing from the checkpoint at epoch 3" in m for m in log) == 2


def test_checkpoint_of_another_command_is_refused_not_overwritten(tmp_path, shared_data_dir):
    import torch

    settings, data = _tiny(shared_data_dir, epochs=1, seeds=1)
    folder = tmp_path / "checkpoints"
    reproduce.run_experiment(REALMIX_PAPER, settings, data, torch.device("cpu"),
                             checkpoints=folder)  # fmt: skip
    before = (folder / "gan.pt").read_bytes()
    other, _ = _tiny(shared_data_dir, epochs=2, seeds=1)
    with pytest.raises(reproduce.CheckpointError, match=r"settings\.epochs.*--fresh"):
        reproduce.run_experiment(REALMIX_PAPER, other, data, torch.device("cpu"),
                                 checkpoints=folder)  # fmt: skip
    assert (folder / "gan.pt").read_bytes() == before


def test_reference_cache_is_not_reused_after_the_random_streams_change(
    ring8, tmp_path, monkeypatch
):
    """The untrained-G ceiling depends on the random streams: a ceiling cached with another
    generator (before issue 12's Philox streams) must be measured again, not reused."""
    from benchmark.metrics import reference

    first = reference.reference_scale(ring8, 50, trainables=("gan",), draws=1, cache=tmp_path)
    assert len(list(tmp_path.glob("*.json"))) == 1
    again = reference.reference_scale(ring8, 50, trainables=("gan",), draws=1, cache=tmp_path)
    assert again.ceiling == first.ceiling and len(list(tmp_path.glob("*.json"))) == 1
    monkeypatch.setattr(reference, "_stream_fingerprint", lambda: [0.5, 0.25])
    reference.reference_scale(ring8, 50, trainables=("gan",), draws=1, cache=tmp_path)
    assert len(list(tmp_path.glob("*.json"))) == 2  # another key: measured afresh


def test_extra_every_scores_the_classifier_metrics_for_a_learning_curve(shared_data_dir):
    """--extra-every K: classifier-FID and classes covered every K-th epoch and at the last,
    and the learning curves in summary.json are the seeds' own values at those epochs."""
    import torch

    from benchmark.reporting.reproduce import learning_curves

    settings, data = _tiny(shared_data_dir, extra_metrics=True, n_eval=100)
    runs = reproduce.run_experiment(
        REALMIX_PAPER, settings, data, torch.device("cpu"), extra_every=2
    )
    for run in runs["gan"]:
        scored = {int(h["epoch"]): h for h in run.history}
        assert "cfid" not in scored[1]
        assert {"cfid", "classes_covered"} <= set(scored[2]) and "cfid" in scored[3]
    curves = learning_curves(REALMIX_PAPER, settings, runs)
    assert set(curves) == {"cfid", "classes_covered"}
    assert set(curves["cfid"]) == {"gan", "realmix", "realmix_noise"}
    gan = curves["cfid"]["gan"]
    assert gan["epochs"] == [2, 3] and gan["n"] == 2
    for k, epoch in enumerate(gan["epochs"]):
        values = [next(h["cfid"] for h in r.history if h["epoch"] == epoch) for r in runs["gan"]]
        assert gan["mean"][k] == pytest.approx(np.mean(values))
        assert gan["min"][k] == min(values) and gan["max"][k] == max(values)

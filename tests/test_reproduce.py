"""benchmark.reproduce: the scale and claim logic on known numbers, and a tiny real run of
the RealMixGAN paper comparison on the MNIST split in ../shared/data."""

from __future__ import annotations

import base64
import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmark import reproduce
from benchmark.reproduce import REALMIX_PAPER, SeedRun

REPO = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


def _runs(trainable: str, finals: dict[str, list[float]]) -> list[SeedRun]:
    n = len(next(iter(finals.values())))
    return [
        SeedRun(
            trainable=trainable,
            seed=s,
            status="finished",
            final={k: v[s] for k, v in finals.items()},
            history=[],
            g_losses=np.zeros(1),
            d_losses=np.zeros(1),
            samples={},
            seconds=0.0,
        )  # fmt: skip
        for s in range(n)
    ]


def _around(center: float, sd: float, n: int = 4, salt: int = 0) -> list[float]:
    return list(center + sd * np.random.default_rng(salt).standard_normal(n))


def test_scale_and_claim_on_known_numbers():
    gan = _runs("gan", {
        "w1": _around(9.0, 0.05, salt=1), "sliced_w2": _around(0.2, 0.004, salt=2),
        "pixel_w1": _around(0.030, 0.001, salt=3),
    })  # fmt: skip
    realmix = _runs("realmix", {
        "w1": _around(9.0, 0.05, salt=4), "sliced_w2": _around(0.2, 0.004, salt=5),
        "pixel_w1": _around(0.015, 0.001, salt=6), "w1_noise": _around(9.0, 0.05, salt=7),
        "sliced_w2_noise": _around(0.2, 0.004, salt=8),
        "pixel_w1_noise": _around(0.030, 0.001, salt=9),
    })  # fmt: skip
    runs = {"gan": gan, "realmix": realmix}
    scale = reproduce.scale_match(REALMIX_PAPER, runs)
    assert scale.distance == scale.closest == "pixel_w1"
    expected = np.mean(
        [
            math.log10(np.mean([r.final["pixel_w1"] for r in gan]) / 0.0290),
            math.log10(np.mean([r.final["pixel_w1"] for r in realmix]) / 0.0137),
        ]
    )
    assert scale.orders["pixel_w1"] == pytest.approx(expected)
    assert scale.orders["w1"] > 2.0  # exact W1 in pixel space is orders of magnitude larger

    claims = {(c["distance"], c["mode"]): c for c in reproduce.claim_rows(REALMIX_PAPER, runs)}
    assert len(claims) == 6
    assert claims[("pixel_w1", "buffer")]["verdict"] == "holds"
    assert claims[("pixel_w1", "buffer")]["diff"] == pytest.approx(
        np.mean([r.final["pixel_w1"] for r in realmix])
        - np.mean([r.final["pixel_w1"] for r in gan])
    )
    assert claims[("pixel_w1", "noise")]["verdict"] == "inconclusive"
    assert claims[("w1", "buffer")]["verdict"] == "inconclusive"
    assert all(c["p_holm"] >= c["p"] for c in claims.values())


def test_no_distance_on_the_paper_scale_is_said_so():
    big = {"w1": [9.0, 9.1], "sliced_w2": [5.0, 5.1], "pixel_w1": [3.0, 3.1]}
    scale = reproduce.scale_match(REALMIX_PAPER, {"gan": _runs("gan", big),
                                                  "realmix": _runs("realmix", big)})  # fmt: skip
    assert scale.distance is None and scale.closest == "pixel_w1"
    assert "no measured distance is within" in reproduce._scale_text(REALMIX_PAPER, scale)


def test_tiny_paper_reproduction_on_real_mnist(tmp_path, shared_data_dir):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(
        [sys.executable, "-m", "benchmark.reproduce", "realmix-paper", "--epochs", "2",
         "--seeds", "2", "--data-dir", str(shared_data_dir), "--train-size", "256",
         "--n-eval", "100", "--device", "cpu", "--out", str(tmp_path / "realmix-paper")],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
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
            seeds = [r["final"][key] for r in results["runs"][trainable] if key in r["final"]]
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


def test_unknown_dataset_exits_2(tmp_path, capsys):
    code = reproduce.main(["realmix-paper", "--dataset", "cifar", "--out", str(tmp_path)])
    assert code == 2
    assert "--dataset 'cifar' is unknown" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())

"""The single-run CLI, run as a user would: a real process, real data, real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PNG = b"\x89PNG\r\n\x1a\n"


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmark.train", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )


def test_realmix_on_real_mnist(tmp_path, shared_data_dir):
    proc = _run(
        "--trainable", "realmix", "--dataset", "mnist", "--data-dir", str(shared_data_dir),
        "--epochs", "1", "--train-size", "512", "--n-eval", "200", "--param", "alpha=0.3",
        "--out", str(tmp_path / "r1"),
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "held-out = 2000 carved deterministically" in proc.stdout
    header = next(line for line in proc.stdout.splitlines() if line.strip().startswith("epoch"))
    assert "W1 exact" in header and "W1 noise" in header
    run = tmp_path / "r1"
    metrics = json.loads((run / "metrics.json").read_text())
    final = metrics["final"]
    assert metrics["status"] == "finished"
    for key in ("w1", "sliced_w2", "pixel_w1", "w1_noise", "g_loss", "d_loss", "g_loss_var"):
        assert isinstance(final[key], float), key
    assert json.loads((run / "config.json").read_text())["params"]["alpha"] == 0.3
    for png in ("samples.png", "samples_noise.png", "losses.png"):
        data = (run / png).read_bytes()
        assert data.startswith(PNG) and len(data) > 1000


def test_gan_on_ring8(tmp_path):
    proc = _run(
        "--trainable", "gan", "--dataset", "ring8", "--epochs", "2", "--train-size", "512",
        "--n-eval", "200", "--out", str(tmp_path / "g"),
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "g" / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1.0, 2.0]
    assert "w1" in metrics["history"][-1] and "w1" not in metrics["history"][0]
    assert (tmp_path / "g" / "samples.png").read_bytes().startswith(PNG)
    # the floor and the untrained-G ceiling are printed under the distance columns
    from benchmark.data import load_dataset
    from benchmark.metrics.reference import reference_scale

    data = load_dataset("ring8", train_size=512, batch_size=128)
    direct = reference_scale(data, 200, trainables=("gan",), cache=False)
    lines = proc.stdout.splitlines()
    floor = next(line for line in lines if line.endswith("<- real-vs-real floor (two sets of "
                                                         "held-out images)"))  # fmt: skip
    ceiling = next(line for line in lines if "<- untrained gan" in line)
    assert f"{direct.floor['w1']:>8.4f}" in floor and f"{direct.floor['sliced_w2']:>7.4f}" in floor
    assert f"{direct.ceiling['gan']['w1']:>8.4f}" in ceiling


@pytest.mark.parametrize(
    "args, message",
    [
        (["--trainable", "wgan"], "unknown trainable 'wgan'; valid: gan, realmix, mixture"),
        (["--trainable", "realmix", "--param", "p_mix=1.5"], "p_mix in [0, 1]"),
        (["--trainable", "realmix", "--param", "noise_sigma=-1"], "noise_sigma in [0, 10]"),
        (["--trainable", "gan", "--param", "alpha=0.3"], "unknown parameter(s) alpha"),
        (["--trainable", "gan", "--param", "lr"], "not of the form name=value"),
        (["--trainable", "gan", "--dataset", "cifar"], "valid"),
        (["--trainable", "gan", "--epochs", "0"], "epochs=0 is invalid"),
        (["--trainable", "gan", "--device", "cuda:3"], "cuda:3"),
    ],
)
def test_bad_input_exits_2(tmp_path, args, message):
    proc = _run(*args, "--dataset", "ring8", cwd=tmp_path) if "--dataset" not in args else None
    proc = proc or _run(*args, cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "results").exists()

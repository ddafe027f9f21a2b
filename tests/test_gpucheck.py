"""The prepared GPU check parses, plans the GPU run, and its steps work (rehearsed on CPU)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from benchmark import gpucheck

ROOT = Path(__file__).resolve().parents[1]


def test_shell_entry_point_parses():
    script = ROOT / "scripts" / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text()
    assert 'pip install -q -e ".[dev]"' in text and "benchmark.gpucheck" in text


def test_gpu_plan_covers_the_brief(tmp_path, capsys):
    """--dry-run on cuda prints the plan and runs nothing (no GPU needed)."""
    assert gpucheck.main(["--dry-run", "--out", str(tmp_path), "--data-dir", "/d"]) == 0
    out = capsys.readouterr().out
    perf_line = next(line for line in out.splitlines() if "--trainable realmix" in line)
    assert "--populations 1,16,64,256" in perf_line and "--epoch-size 60000" in perf_line
    assert "--device cuda" in perf_line and f"--out-dir {tmp_path}" in perf_line
    assert "--count-ops" in out and "tests/test_cuda.py" in out
    assert all(t in out for t in gpucheck.CUDA_TESTS)
    assert not list(tmp_path.iterdir())


def test_cpu_rehearsal_runs_every_step(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("OUT", str(tmp_path))
    assert gpucheck.main(["--dry-run", "--device", "cpu", "--budget-s", "3000"]) == 0
    report = (tmp_path / "gpucheck.md").read_text()
    assert report.count(": exit 0,") == 3
    (js,) = tmp_path.glob("perf-*.json")
    rows = json.loads(js.read_text())["rows"]
    assert [r["contender"] for r in rows] == ["naive", "mixbench P=1", "mixbench P=2"]
    assert "| realmix |" in report  # the op-count table made it into the record


def test_bad_device_is_a_usage_error(capsys):
    assert gpucheck.main(["--device", "tpu"]) == 2
    assert "--device 'tpu' is not cuda" in capsys.readouterr().err

"""python -m benchmark.gpucheck: the prepared GPU check, one command on a bare GPU machine.

`bash scripts/gpu_check.sh` installs the package (``pip install -e ".[dev]"``) and runs this
module, which, within a time budget (default 8 minutes in all):

1. runs the CUDA tests (tests/test_cuda.py, and every test that skips without a GPU:
   test_data, metrics/test_copying, metrics/test_wasserstein, test_population_study:
   `CUDA_TESTS`), the population equivalence and random-stream tests on CUDA among them;
2. runs `python -m benchmark.perf` for RealMix at P = 1, 16, 64, 256 against the naive loop,
   extrapolated to 60,000-sample epochs, and its `--count-ops` table on the GPU;
3. writes results/benchmarks/perf-<gpu>.md and .json (perf's report) and gpucheck.md (what
   ran, exit codes, timings) into $OUT when set, else into --out.

`--dry-run` prints the plan without running it; with `--device cpu` it also runs every step
on tiny settings on the CPU (what tests/test_gpucheck.py does), so that the command is known
to work before a GPU is spent on it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmark.cli import HelpFormatter

__all__ = ["Step", "main", "plan"]

CUDA_TESTS = (
    "tests/test_cuda.py",
    "tests/test_data.py::test_tensors_land_on_the_requested_device",
    "tests/metrics/test_copying.py::test_nearest_neighbours_on_cuda_matches_cpu",
    "tests/metrics/test_wasserstein.py::test_distances_exact_false_omits_w1_and_accepts_tensors",
    "tests/test_population_study.py::test_auto_population_fits_on_the_gpu",
)
"""Every test that needs (or also covers) a CUDA GPU."""


@dataclass(frozen=True)
class Step:
    """One command of the check, with the seconds it may take."""

    name: str
    argv: list[str]
    timeout_s: int


def _data_dir(explicit: str | None) -> str | None:
    """--data-dir, else MIXBENCH_DATA, else the first of shared/data, ../shared/data holding
    mnist/ (the layout of a MixBench checkout with the shared data next to it)."""
    if explicit:
        return explicit
    if os.environ.get("MIXBENCH_DATA"):
        return os.environ["MIXBENCH_DATA"]
    for candidate in ("shared/data", "../shared/data"):
        if (Path(candidate) / "mnist").is_dir():
            return str(Path(candidate).resolve())
    return None


def plan(args: argparse.Namespace, out: Path) -> list[Step]:
    """The commands the check runs, in order."""
    py = sys.executable
    tiny = args.device == "cpu"
    data = ["--data-dir", args.data_dir] if args.data_dir else []
    if tiny:
        # The CPU rehearsal: the same commands on ring8 with a handful of steps.
        perf_args = ["--dataset", "ring8", "--populations", "1,2", "--steps", "2", "--rounds"]
        perf_args += ["1", "--warmup", "0", "--n-eval", "30", "--workers", "1"]
        ops_args = ["--dataset", "ring8", "--populations", "1", "--batch-size", "32"]
        tests = [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_cuda.py"]
    else:
        perf_args = ["--dataset", "mnist", *data, "--populations", args.populations]
        perf_args += ["--steps", str(args.steps), "--rounds", str(args.rounds), "--warmup", "1"]
        perf_args += ["--epoch-size", "60000", "--n-eval", "1000", "--workers", "1"]
        ops_args = ["--dataset", "mnist", *data, "--populations", "1,16,64"]
        tests = [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", *CUDA_TESTS]
    device = ["--device", args.device]
    # The budgets are the GPU run's; a CPU rehearsal on a shared machine may take longer.
    scale = 5 if tiny else 1
    steps = [
        Step("CUDA tests", tests, 200 * scale),
        Step(
            "ops per iteration",
            [py, "-m", "benchmark.perf", "--count-ops", *ops_args, *device],
            60 * scale,
        ),
        Step(
            "perf: realmix vs the naive loop",
            [py, "-m", "benchmark.perf", "--trainable", "realmix", *perf_args, *device]
            + ["--out-dir", str(out)],
            240 * scale,
        ),
    ]
    return steps


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmark.gpucheck",
        description="The prepared GPU check: CUDA tests, equivalence on CUDA, benchmark.perf "
        "for realmix at P=1,16,64,256; results into $OUT (or --out).",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--device", default="cuda", help="cuda (the check) or cpu (a rehearsal)")
    p.add_argument("--populations", default="1,16,64,256", help="perf population sizes")
    p.add_argument("--steps", type=int, default=512, help="perf member-iterations per contender")
    p.add_argument("--rounds", type=int, default=4, help="perf timed rounds")
    p.add_argument("--data-dir", default=None, help="folder holding mnist/ (default: found)")
    p.add_argument(
        "--out", default=None, help="results folder (default: $OUT, else results/benchmarks)"
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan; on cpu, rehearse it")
    p.add_argument(
        "--budget-s", type=int, default=450, help="stop starting steps after this many seconds"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the plan; exit 0 when every step passed, 1 when one failed, 2 on bad usage."""
    args = build_parser().parse_args(argv)
    if args.device not in ("cuda", "cpu") and not args.device.startswith("cuda:"):
        print(f"error: --device {args.device!r} is not cuda, cuda:N or cpu", file=sys.stderr)
        return 2
    for flag, value in (("--steps", args.steps), ("--rounds", args.rounds)):
        if value < 1:
            print(f"error: {flag} {value} is invalid; must be >= 1", file=sys.stderr)
            return 2
    if args.budget_s < 10:
        print(f"error: --budget-s {args.budget_s} is invalid; must be >= 10", file=sys.stderr)
        return 2
    out = Path(args.out or os.environ.get("OUT") or "results/benchmarks")
    args.data_dir = _data_dir(args.data_dir)
    if args.device != "cpu" and not args.dry_run and args.data_dir is None:
        print(
            "error: no mnist/ found (tried --data-dir, MIXBENCH_DATA, shared/data, "
            "../shared/data); put the MNIST files there or pass --data-dir DIR",
            file=sys.stderr,
        )
        return 2
    steps = plan(args, out)
    for step in steps:
        print(f"[plan] {step.name} (<= {step.timeout_s} s): {' '.join(step.argv)}")
    if args.dry_run and args.device != "cpu":
        return 0
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    lines = ["# MixBench GPU check", "", f"- device: {args.device}", ""]
    failed = False
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    for step in steps:
        left = args.budget_s - (time.monotonic() - start)
        if left < 10:
            lines.append(f"- {step.name}: NOT RUN (budget of {args.budget_s} s spent)")
            failed = True
            continue
        t0 = time.monotonic()
        try:
            proc = subprocess.run(
                step.argv,
                env=env,
                timeout=min(step.timeout_s, left),
                capture_output=True,
                text=True,
            )
            rc, text = proc.returncode, proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as err:
            rc, text = 124, f"timed out after {err.timeout:.0f} s"
        seconds = time.monotonic() - t0
        print(f"[{'ok' if rc == 0 else 'FAILED'}] {step.name}: exit {rc}, {seconds:.0f} s")
        print(text[-3000:])
        failed |= rc != 0
        tail = "\n".join(text.strip().splitlines()[-40:])
        lines += [f"## {step.name}: exit {rc}, {seconds:.0f} s", "", "```", tail, "```", ""]
    (out / "gpucheck.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'gpucheck.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

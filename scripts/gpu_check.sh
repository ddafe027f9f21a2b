#!/usr/bin/env bash
# The prepared GPU check (README: "GPU check"): from a bare machine with a CUDA GPU,
#   bash scripts/gpu_check.sh            # results into $OUT, else results/benchmarks/
# installs MixBench with its dev extras, then runs python -m benchmark.gpucheck (the CUDA
# tests, the equivalence tests on CUDA, benchmark.perf for realmix at P=1,16,64,256 against
# the naive loop, 60,000-sample epochs for the extrapolation). Extra arguments go to
# benchmark.gpucheck (e.g. --data-dir DIR, --dry-run). Budget: 8 minutes in all.
set -u
cd "$(dirname "$0")/.."
start=$(date +%s)
if ! python -m pip install -q -e ".[dev]"; then
    # No package index reachable: the dependencies must already be installed.
    echo "pip install -e .[dev] failed; trying without dependencies" >&2
    python -m pip install -q --no-deps --no-build-isolation -e . || exit 2
fi
echo "install: $(( $(date +%s) - start )) s"
budget=$(( 470 - ($(date +%s) - start) ))
exec python -m benchmark.gpucheck --budget-s "$budget" "$@"

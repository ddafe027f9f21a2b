"""python -m benchmark.perf: MixBench's training throughput against a naive per-trial PyTorch loop.

Contenders, measured side by side in one process, interleaved round by round so that a noisy
machine slows them alike:

- ``naive``: one trial as a single-run research script trains it (`naive.NaiveTrial`);
- ``mixbench P=1``: `benchmark.trainables.build` with one member (the harness's one-trial path);
- ``mixbench P=k``: populations of k members trained at once;
- with ``--workers W`` (default 2 on a CPU with two or more threads): ``naive (W workers)``,
  W naive trials at once, and ``mixbench P=k (W workers x k/W)``, W populations at once, each
  worker on its own Python thread with threads/W torch threads, as W worker processes of a
  study would run.

For each contender: member-iterations per second, seconds per epoch per trial, trials per hour
at ``--target-epochs`` (extrapolated from the measured rate and the training split's steps per
epoch, plus the measured cost of scoring once per epoch), the ratio to the naive baseline and
the fraction of the device's roofline reached (FLOP and bytes per iteration counted from the
layer sizes; peak FLOP/s and bandwidth measured in-run). The table is printed and written to
``results/benchmarks/perf-<device>.md`` and ``.json``.

Modules: `cli` (the command), `settings` (PerfSettings), `run` (the measurement), `contenders`
(what is timed), `naive` (the baseline), `cost` (cost model and device peaks), `ops`
(``--count-ops``), `tables` (the report), `machine` (machine facts and report files, shared
with `benchmark.throughput`). The package imports none of them.
"""

"""python -m benchmark.perf (see `benchmark.perf.cli`)."""

from __future__ import annotations

import sys

from benchmark.perf.cli import main

if __name__ == "__main__":
    sys.exit(main())

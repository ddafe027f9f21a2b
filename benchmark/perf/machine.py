"""What a measurement records about the machine, and the report files every benchmark writes.

Shared by `python -m benchmark.perf` and `python -m benchmark.throughput` (and `usable_cpus`
by the background writers and the exact-W1 threads); imports no torch, so that the
throughput CLI's usage errors stay fast and the writer processes start light.
"""

from __future__ import annotations

import json
import os
import platform
import re
from pathlib import Path
from typing import Any

__all__ = ["cpu_name", "load_average", "publish", "slug", "usable_cpus"]


def slug(text: str) -> str:
    """'amd-epyc-7b13' for 'AMD EPYC 7B13': a file-name part."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "device"


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def usable_cpus() -> int:
    """CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages ([] where the system has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def publish(out_dir: str | Path, stem: str, markdown: str, doc: Any) -> tuple[Path, Path]:
    """Write `<stem>.md` and `<stem>.json` into `out_dir` (created), print the Markdown and
    where both files went, as the benchmark CLIs end; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / f"{stem}.md", out / f"{stem}.json"
    md.write_text(markdown)
    js.write_text(json.dumps(doc, indent=2) + "\n")
    print(markdown)
    print(f"wrote {md} and {js}")
    return md, js

"""Write constraints.txt: the versions installed now of MixBench's dependencies, pinned.

    python .ci/constraints.py > constraints.txt

Walks the requirements of the installed `mixbench` distribution (with its dev and postgres
extras) through every installed dependency, evaluating environment markers here, and pins
each to the version installed now (`pip freeze` restricted to what MixBench pulls in).
Run it after `pip install -U -e ".[dev]"` to move the lock forward, then run the tests.
"""

from __future__ import annotations

import sys
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = "mixbench"
EXTRAS = ("dev", "postgres")


def closure() -> dict[str, str]:
    """Canonical name -> installed version of every package `mixbench[dev,postgres]` needs."""
    pins: dict[str, str] = {}
    todo: list[tuple[str, tuple[str, ...]]] = [(ROOT, EXTRAS)]
    seen: set[tuple[str, tuple[str, ...]]] = set()
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        dist = metadata.distribution(name)
        if canonicalize_name(name) != ROOT:
            pins[canonicalize_name(name)] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            envs = [{"extra": e} for e in extras] or [{"extra": ""}]
            if req.marker is not None and not any(req.marker.evaluate(e) for e in envs):
                continue
            try:
                metadata.distribution(req.name)
            except metadata.PackageNotFoundError:
                continue  # not installed here (e.g. a platform-only dependency)
            todo.append((req.name, tuple(sorted(req.extras))))
    return pins


OPTIONAL = {"optuna-dashboard": "0.21.0", "bottle": "0.13.4"}
"""The `dashboard` extra, which CI does not install: pinned to the versions
`pip install --dry-run ".[dashboard]" -c constraints.txt` resolved (move them by hand)."""


def main() -> int:
    pins = {**OPTIONAL, **closure()}
    print(
        "# Versions MixBench is tested with (CI and the README install with -c constraints.txt)."
    )
    print("# Regenerate: python .ci/constraints.py > constraints.txt (see that script).")
    for name in sorted(pins):
        print(f"{name}=={pins[name]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

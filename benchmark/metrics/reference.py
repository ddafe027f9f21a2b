"""Reference scale for every distance: the real-vs-real floor and the untrained-G ceiling.

A W1 of 15.8 means nothing on its own. Two numbers measured on the same split and the same n
as a run give it a scale:

- the **floor**: the distance between two independent sets of n real held-out images (the
  score a perfect generator would get, since its n samples are as far from the held-out
  subsample as other real images are). Set B is exactly the held-out subsample a run is
  scored against (`wasserstein.subsample_indices(..., stream=1)`); set A is n other held-out
  images (disjoint from B). When the held-out split has fewer than 2n images, A has what is
  left and ``n_floor`` says so.
- the **ceiling**: the distance of a freshly initialised generator's samples (default params,
  seed 0, every sampling mode) to the same held-out subsample: where training starts.

Both are repeated over ``draws`` evaluation seeds (other held-out subsamples and projection
seeds), so they also measure the evaluation-set spread (`eval_spread`). They are computed
once per (dataset, split, n, draws) and cached in a small JSON file
(``CACHE/reference/<key>.json``, `benchmark.data.cache_dir`), never per trial or epoch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.data import Dataset, cache_dir, load_dataset
from benchmark.metrics.wasserstein import distances, subsample_indices
from benchmark.nets import MemberRNG
from benchmark.settings import Settings
from benchmark.trainables import VARIANTS, build, params_class

__all__ = [
    "DISTANCES",
    "REFERENCE_NOTE",
    "ReferenceScale",
    "eval_spread",
    "reference_for_settings",
    "reference_rows",
    "reference_scale",
    "resampled_distances",
    "scale_text",
]

DISTANCES = ("w1", "sliced_w2", "pixel_w1")
"""The distances a reference scale is given for."""

VERSION = 1
"""Bumped when the measurement changes, so stale cache files are not reused."""


@dataclass(frozen=True)
class ReferenceScale:
    """Floor and ceiling of every distance for one (dataset, split, n)."""

    dataset: str
    split_note: str
    n: int
    """Samples per side, as the runs are scored (n_eval)."""
    n_floor: int
    """Size of set A of the floor (n unless the held-out split has fewer than 2n images)."""
    draws: int
    """Evaluation seeds each number is averaged over."""
    floor: dict[str, float]
    """Distance -> mean real-vs-real distance over the draws."""
    floor_sd: dict[str, float]
    """Distance -> sd of the real-vs-real distance over the draws (evaluation-set spread)."""
    ceiling: dict[str, dict[str, float]] = field(default_factory=dict)
    """Trainable (with '_<mode>' for a second sampling mode) -> distance -> mean distance of
    an untrained generator's samples."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ReferenceScale:
        return cls(
            dataset=str(raw["dataset"]),
            split_note=str(raw["split_note"]),
            n=int(raw["n"]),
            n_floor=int(raw["n_floor"]),
            draws=int(raw["draws"]),
            floor={k: float(v) for k, v in raw["floor"].items()},
            floor_sd={k: float(v) for k, v in raw["floor_sd"].items()},
            ceiling={t: {k: float(v) for k, v in d.items()} for t, d in raw["ceiling"].items()},
        )

    def ceiling_of(self, distance: str) -> float | None:
        """The lowest untrained-G ceiling of `distance` over the trainables measured."""
        values = [c[distance] for c in self.ceiling.values() if distance in c]
        return min(values) if values else None


def resampled_distances(
    generated: torch.Tensor,
    heldout: torch.Tensor,
    *,
    n: int,
    seeds: Sequence[int],
    exact: bool = True,
) -> list[dict[str, float]]:
    """`distances` of one set of samples against several evaluation draws: draw s uses
    seed s for the held-out subsample, the generated subsample and the projections."""
    return [distances(generated, heldout, n=n, seed=int(s), exact=exact) for s in seeds]


def eval_spread(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Per distance, the sd (ddof=1) of `resampled_distances` rows: the evaluation-set part of
    a run's score (0 for a single draw)."""
    out: dict[str, float] = {}
    for key in DISTANCES:
        values = np.array([r[key] for r in rows if key in r and math.isfinite(r[key])])
        if values.size:
            out[key] = float(values.std(ddof=1)) if values.size > 1 else 0.0
    return out


def _floor_sets(total: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(A, B): B is the run's held-out subsample under `seed`; A is up to n others."""
    b = subsample_indices(total, n, seed, 1)
    rest = np.setdiff1d(np.arange(total), b)
    rng = np.random.default_rng([int(seed), 2])
    a = np.sort(rng.choice(rest, size=min(n, rest.size), replace=False))
    return a, b


def _mean(rows: Sequence[Mapping[str, float]], key: str) -> float:
    return float(np.mean([r[key] for r in rows]))


def _measure(
    data: Dataset,
    n: int,
    draws: int,
    trainables: Sequence[str],
    build_untrained: Callable[[str], Any],
) -> ReferenceScale:
    held = data.heldout
    total = int(held.shape[0])
    n_eff = min(n, total)
    floor_rows, n_floor = [], n_eff
    for s in range(draws):
        a, b = _floor_sets(total, n_eff, s)
        n_floor = int(a.size)
        if n_floor < 2:
            raise ValueError(
                f"the held-out split has {total} samples: too few for a real-vs-real floor at "
                f"n={n}; lower n_eval"
            )
        set_a = held[torch.as_tensor(a, device=held.device)]
        set_b = held[torch.as_tensor(b, device=held.device)]
        row = distances(set_a, set_b, n=None, seed=s, exact=True)
        floor_rows.append(row)
    floor = {k: _mean(floor_rows, k) for k in DISTANCES}
    floor_sd = {k: float(np.std([r[k] for r in floor_rows], ddof=1)) if draws > 1 else 0.0
                for k in DISTANCES}  # fmt: skip
    ceiling: dict[str, dict[str, float]] = {}
    for name in trainables:
        untrained = build_untrained(name)
        for k, mode in enumerate(untrained.sample_modes):
            rows = []
            for s in range(draws):
                samples = untrained.sample(n_eff, mode, seed=s)[0]
                rows.append(distances(samples, held, n=n_eff, seed=s, exact=True))
            key = name if k == 0 else f"{name}_{mode}"
            ceiling[key] = {d: _mean(rows, d) for d in DISTANCES}
    return ReferenceScale(
        data.name, data.split_note, n_eff, n_floor, draws, floor, floor_sd, ceiling
    )


def _stream_fingerprint() -> list[float]:
    """A few numbers of member 0's random stream: the untrained generators (the ceiling)
    depend on it, so a change of the generator (e.g. issue 12's Philox streams) must not
    reuse ceilings measured with the previous one."""
    return MemberRNG([0], torch.device("cpu")).rand(4).flatten().tolist()


def _cache_key(data: Dataset, n: int, draws: int, trainables: Sequence[str]) -> str:
    fingerprint = json.dumps(
        [
            VERSION,
            data.name,
            data.split_note,
            data.source,
            list(data.train.shape),
            list(data.heldout.shape),
            float(data.heldout[:64].double().sum()),
            n,
            draws,
            sorted(trainables),
            _stream_fingerprint(),
        ]
    )
    return hashlib.sha256(fingerprint.encode()).hexdigest()[:20]


def reference_scale(
    data: Dataset,
    n: int,
    *,
    trainables: Sequence[str] = ("gan",),
    draws: int = 3,
    cache: Path | None | bool = True,
    batch_size: int = 128,
) -> ReferenceScale:
    """Floor and ceiling for `data` scored at `n` samples per side (see the module docstring).

    `cache`: True (default) uses ``CACHE/reference/``, a Path uses that folder, False
    measures afresh. A cache file that cannot be read or written is ignored (measured again).
    """
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    folder = (cache_dir() / "reference") if cache is True else (cache or None)
    path = None
    if folder is not None:
        path = Path(folder) / f"{_cache_key(data, n, draws, trainables)}.json"
        try:
            return ReferenceScale.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            pass

    def untrained(name: str) -> Any:
        return build(
            name,
            [params_class(name)()],
            data,
            seeds=[0],
            device=data.heldout.device,
            batch_size=batch_size,
        )

    scale = _measure(data, n, draws, trainables, untrained)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(scale.to_dict(), indent=2) + "\n")
            tmp.replace(path)
        except OSError:
            pass
    return scale


def scale_text(scale: ReferenceScale, distance: str, value: float | None = None) -> str:
    """'floor 11.76, untrained 25.3' for one distance, with where `value` lies between them
    (0% at the floor, 100% at the ceiling) when given."""
    floor = scale.floor.get(distance)
    ceiling = scale.ceiling_of(distance)
    if floor is None:
        return ""
    text = f"real-vs-real floor {floor:.4g}"
    if ceiling is not None:
        text += f", untrained G {ceiling:.4g}"
        if value is not None and math.isfinite(value) and ceiling > floor:
            text += f" ({100 * (value - floor) / (ceiling - floor):.0f}% of the way up)"
    return text


def reference_for_settings(
    settings: Mapping[str, Any], trainables: Sequence[str]
) -> tuple[ReferenceScale | None, str | None]:
    """The reference scale of a study or ablation from its stored settings (dataset,
    data_dir, heldout_size, train_size, n_eval) on the CPU: (scale, None), or (None, why not)
    when the data cannot be loaded here without a download (the report then says so instead
    of a floor)."""
    known = {"dataset", "data_dir", "heldout_size", "train_size", "n_eval", "batch_size"}
    try:
        s = Settings(**{k: v for k, v in settings.items() if k in known})
        # never a download from a report: the data is where the study found it, or no floor
        data = load_dataset(
            s.dataset, data_dir=s.data_dir, heldout_size=s.heldout_size,
            train_size=s.train_size, batch_size=s.batch_size, download=False,
        )  # fmt: skip
        names = [t for t in trainables if t in VARIANTS] or ["gan"]
        return reference_scale(data, s.n_eval, trainables=names, batch_size=s.batch_size), None
    except Exception as err:  # missing data, an old study's settings
        return None, f"reference scale not available ({type(err).__name__}: {err})"


def reference_rows(
    scale: ReferenceScale, columns: Sequence[str], digits: int = 4
) -> list[list[str]]:
    """Two table rows, 'real-vs-real floor' and 'untrained G', with a value under each
    column that is a distance (a '_noise' column takes the same floor; its ceiling is the
    noise-mode one where measured) and '–' elsewhere."""

    def fmt(v: float | None) -> str:
        return "–" if v is None or not math.isfinite(v) else f"{v:.{digits}g}"

    floor_row, ceiling_row = [], []
    for column in columns:
        base = column.removesuffix("_noise")
        if base not in DISTANCES:
            floor_row.append("–")
            ceiling_row.append("–")
            continue
        floor_row.append(fmt(scale.floor.get(base)))
        ceiling_row.append(fmt(scale.ceiling_of(base)))
    return [floor_row, ceiling_row]


REFERENCE_NOTE = (
    "Reference scale, on the same split and n: 'real-vs-real floor' is the distance between "
    "two independent sets of n held-out real images (what a perfect generator scores); "
    "'untrained G' is a freshly initialised generator's score (where training starts)."
)

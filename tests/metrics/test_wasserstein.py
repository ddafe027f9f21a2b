"""Wasserstein distances against closed forms and against POT/scipy directly."""

from __future__ import annotations

import math
import os
import warnings

import numpy as np
import ot
import pytest
import scipy.stats
import torch

from benchmark.metrics.labels import LABELS
from benchmark.metrics.wasserstein import (
    WResult,
    distances,
    distances_batch,
    pixel_wasserstein,
    sliced_wasserstein,
    subsample_indices,
    wasserstein1,
)


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ------------------------------------------------------------------------------ wasserstein1


def test_identical_sets_give_zero_for_all_three():
    x = _rng().normal(size=(200, 16))
    assert wasserstein1(x, x) == WResult(value=0.0, converged=True, warning=None)
    assert sliced_wasserstein(x, x) == 0.0
    assert pixel_wasserstein(x, x) == 0.0


def test_same_1d_sample_shifted_by_c_gives_exactly_c():
    x = _rng().normal(size=(500, 1))
    for c in (0.3, 2.5):
        assert wasserstein1(x, x + c).value == pytest.approx(c, abs=1e-10)
        # in 1-D every direction projects onto +-x, so SW2 is the 1-D W2 = c as well
        assert sliced_wasserstein(x, x + c) == pytest.approx(c, abs=1e-10)
        assert pixel_wasserstein(x, x + c) == pytest.approx(c, abs=1e-10)


def test_shift_in_784d_gives_norm_of_shift():
    # W1 >= |E x - E y| (the 1-Lipschitz witness <., v/|v|>), and the shift plan attains |v|
    rng = _rng(1)
    x = rng.normal(size=(150, 784))
    v = rng.normal(size=784) * 0.1
    assert wasserstein1(x, x + v).value == pytest.approx(np.linalg.norm(v), rel=1e-9)


def test_independent_gaussian_samples_shifted_by_c():
    rng = _rng(2)
    c = 2.0
    x, y = rng.normal(size=1000), rng.normal(size=1000) + c
    w1 = wasserstein1(x, y).value
    assert abs(w1 - c) < 0.15
    # 1-D exact W1 equals the CDF formula scipy uses (equal weights, equal sizes)
    assert w1 == pytest.approx(scipy.stats.wasserstein_distance(x, y), abs=1e-9)


@pytest.mark.parametrize("dim", [2, 784])
def test_point_masses_at_distance_d(dim):
    rng = _rng(dim)
    p, q = rng.normal(size=dim), rng.normal(size=dim)
    x, y = np.tile(p, (5, 1)), np.tile(q, (3, 1))  # unequal sizes, uniform weights
    assert wasserstein1(x, y).value == pytest.approx(np.linalg.norm(p - q), rel=1e-12)


def test_unequal_sizes_match_1d_closed_form():
    # mass 1/3 at 0, 1, 2 against 1/2 at 0, 2: the point at 1 sends 1/6 to each side
    assert wasserstein1([0.0, 1.0, 2.0], [0.0, 2.0]).value == pytest.approx(1.0 / 3.0)


def test_equals_pot_called_directly_numpy_and_torch():
    rng = _rng(3)
    x, y = rng.normal(size=(120, 20)), rng.normal(size=(90, 20)) + 0.5
    a, b = np.full(120, 1 / 120), np.full(90, 1 / 90)
    direct = ot.emd2(a, b, ot.dist(x, y, metric="euclidean"), numItermax=1_000_000)
    assert wasserstein1(x, y).value == pytest.approx(float(direct), rel=1e-12)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    assert wasserstein1(xt, yt).value == pytest.approx(float(direct), rel=1e-12)


def test_iteration_limit_surfaces_as_warning_and_result():
    rng = _rng(4)
    x, y = rng.normal(size=(60, 2)), rng.normal(size=(60, 2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = wasserstein1(x, y, num_itermax=1)
    assert res.converged is False
    assert res.warning is not None and "numItermax" in res.warning
    # exactly one, clear warning: POT's duplicated message is folded into ours
    assert len(caught) == 1
    assert issubclass(caught[0].category, UserWarning)
    assert "num_itermax" in str(caught[0].message) and "not W1" in str(caught[0].message)
    # the stopped solver's cost is not W1 (here it is even below the optimum)
    assert res.value != pytest.approx(wasserstein1(x, y).value, rel=1e-3)
    with pytest.warns(UserWarning, match="num_itermax"):
        out = distances(x, y, num_itermax=1)
    assert out["w1_converged"] == 0.0 and math.isnan(out["w1"])


def test_converged_solve_emits_no_warning():
    x = _rng(5).normal(size=(80, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert wasserstein1(x, x[::-1] + 1.0).converged


def test_bad_inputs_name_the_parameter():
    with pytest.raises(ValueError, match=r"samples\[i\]"):
        wasserstein1(np.zeros((2, 3, 4)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="feature dimension"):
        wasserstein1(np.zeros((3, 4)), np.zeros((3, 5)))
    with pytest.raises(ValueError, match="num_itermax"):
        wasserstein1(np.zeros((3, 4)), np.zeros((3, 4)), num_itermax=0)
    with pytest.raises(ValueError, match="n_projections"):
        sliced_wasserstein(np.zeros((3, 4)), np.zeros((3, 4)), n_projections=0)


# ------------------------------------------------------------------------------ sliced / pixel


def test_sliced_is_reproducible_with_seed_and_matches_pot():
    rng = _rng(6)
    x, y = rng.normal(size=(200, 10)), rng.normal(size=(150, 10)) * 1.5
    a = sliced_wasserstein(x, y, seed=3)
    assert a == sliced_wasserstein(x, y, seed=3)
    assert a != sliced_wasserstein(x, y, seed=4)
    direct = ot.sliced_wasserstein_distance(x, y, n_projections=256, p=2, seed=3)
    assert a == pytest.approx(float(direct), rel=1e-12)


def test_pixel_w1_is_scipy_on_flattened_values():
    rng = _rng(7)
    x, y = rng.uniform(-1, 1, size=(40, 784)), rng.uniform(-1, 0.5, size=(30, 784))
    expected = scipy.stats.wasserstein_distance(x.ravel(), y.ravel())
    assert pixel_wasserstein(x, y) == pytest.approx(expected, rel=1e-12)
    # a pixel permutation moves no value: pixel W1 is blind to it, exact W1 is not
    perm = rng.permutation(784)
    assert pixel_wasserstein(x, x[:, perm]) == pytest.approx(0.0, abs=1e-12)
    assert wasserstein1(x, x[:, perm]).value > 1.0


def test_pixel_w1_equal_sizes_takes_the_sorted_path_and_agrees_with_scipy():
    rng = _rng(8)
    x, y = rng.normal(0, 0.5, size=(50, 784)), rng.uniform(-1, 1, size=(50, 784))
    expected = scipy.stats.wasserstein_distance(x.ravel(), y.ravel())
    assert pixel_wasserstein(x, y) == pytest.approx(expected, rel=1e-9)
    # ties (a saturated generator outputs -1 everywhere) are handled the same way
    sat = np.where(x < 0, -1.0, x)
    expected = scipy.stats.wasserstein_distance(sat.ravel(), y.ravel())
    assert pixel_wasserstein(sat, y) == pytest.approx(expected, rel=1e-9)


# ------------------------------------------------------------------------------ distances


def test_distances_keys_labels_and_subsampling():
    rng = _rng(8)
    gen, held = rng.normal(size=(300, 8)), rng.normal(size=(400, 8)) + 0.2
    out = distances(gen, held, n=100, seed=5)
    assert set(out) == {"w1", "w1_converged", "sliced_w2", "pixel_w1"}
    assert set(out) <= set(LABELS)
    assert "W1" in LABELS["w1"].label and "W2" in LABELS["sliced_w2"].label
    g = gen[subsample_indices(300, 100, 5, 0)]
    h = held[subsample_indices(400, 100, 5, 1)]
    assert out["w1"] == pytest.approx(wasserstein1(g, h).value, rel=1e-12)
    assert out["w1_converged"] == 1.0
    assert out["sliced_w2"] == pytest.approx(sliced_wasserstein(g, h, seed=5), rel=1e-12)
    assert out["pixel_w1"] == pytest.approx(pixel_wasserstein(g, h), rel=1e-12)
    assert distances(gen, held, n=100, seed=5) == out
    assert distances(gen, held, n=100, seed=6) != out


def test_distances_heldout_subset_does_not_depend_on_generated_count():
    assert np.array_equal(subsample_indices(400, 100, 5, 1), subsample_indices(400, 100, 5, 1))
    rng = _rng(9)
    held = rng.normal(size=(400, 4))
    a = distances(held[:50], held, n=100, exact=False)
    b = distances(held[:80], held, n=100, exact=False)
    h = held[subsample_indices(400, 100, 0, 1)]
    assert a["pixel_w1"] == pytest.approx(pixel_wasserstein(held[:50], h))
    assert b["pixel_w1"] == pytest.approx(pixel_wasserstein(held[:80], h))


def test_distances_exact_false_omits_w1_and_accepts_tensors():
    rng = _rng(10)
    gen, held = rng.normal(size=(60, 5)), rng.normal(size=(70, 5))
    fast = distances(gen, held, exact=False)
    assert set(fast) == {"sliced_w2", "pixel_w1"}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        gt = torch.from_numpy(gen).float().to(device)
        ht = torch.from_numpy(held).float().to(device)
        out = distances(gt, ht)
        ref = distances(gen.astype(np.float32), held.astype(np.float32))
        for key, value in ref.items():
            assert out[key] == pytest.approx(value, rel=1e-9), (device, key)


def test_non_finite_samples():
    held = _rng(12).normal(size=(40, 3))
    gen = held.copy()
    gen[3, 1] = np.nan
    with pytest.warns(UserWarning, match="diverged"):
        out = distances(gen, held)
    assert out["w1_converged"] == 0.0
    assert all(math.isnan(out[k]) for k in ("w1", "sliced_w2", "pixel_w1"))
    with pytest.raises(ValueError, match="heldout contains NaN"):
        distances(held, gen)
    with pytest.raises(ValueError, match="x contains NaN"):
        wasserstein1(gen, held)


def test_distances_rejects_bad_n_and_population_tensors():
    with pytest.raises(ValueError, match="n must be >= 1"):
        distances(np.zeros((3, 2)), np.zeros((3, 2)), n=0)
    with pytest.raises(ValueError, match=r"samples\[i\]"):
        distances(torch.zeros(2, 5, 3), torch.zeros(5, 3))


def test_distances_batch_equals_distances_member_by_member():
    """Every member of a (P, N, D) batch gets what `distances` gives it alone: W1 exactly (the
    same solver on the same subsamples), sliced W2 and pixel W1 to float64 rounding (measured
    below 1e-15 relative; asserted at 1e-12)."""
    rng = _rng(13)
    gen = torch.tensor(np.tanh(rng.normal(size=(5, 260, 784))), dtype=torch.float32)
    gen[3] = gen[3] * 0.2 - 0.7  # a member far from the others
    held = torch.tensor(np.tanh(1.3 * rng.normal(size=(400, 784))), dtype=torch.float32)
    exact = [True, False, True, False, True]
    batch = distances_batch(gen, held, n=150, seed=4, exact=exact)
    assert len(batch) == 5
    for i in range(5):
        alone = distances(gen[i], held, n=150, seed=4, exact=exact[i])
        assert set(batch[i]) == set(alone)
        if exact[i]:
            assert batch[i]["w1"] == alone["w1"] and batch[i]["w1_converged"] == 1.0
        for key in ("sliced_w2", "pixel_w1"):
            assert batch[i][key] == pytest.approx(alone[key], rel=1e-12, abs=0)
    assert batch[3]["sliced_w2"] > 2 * batch[0]["sliced_w2"]  # members are not mixed up


def test_distances_batch_unequal_sizes_and_diverged_member():
    """Fewer held-out samples than n: the member-by-member path; a NaN member: NaN, warned."""
    rng = _rng(14)
    gen = torch.tensor(rng.normal(size=(3, 90, 4)), dtype=torch.float32)
    gen[1, :, 2] = float("nan")
    held = rng.normal(size=(60, 4))
    with pytest.warns(UserWarning, match="NaN or inf"):
        batch = distances_batch(gen, held, n=80, seed=0, exact=True)
    assert all(math.isnan(batch[1][k]) for k in ("w1", "sliced_w2", "pixel_w1"))
    for i in (0, 2):
        alone = distances(gen[i], held, n=80, seed=0, exact=True)
        assert batch[i] == pytest.approx(alone, rel=1e-12)
    with pytest.raises(ValueError, match=r"\(P, N, D\) tensor"):
        distances_batch(gen[0], held)
    with pytest.raises(ValueError, match="3 flags for 2 members|2 members"):
        distances_batch(gen[:2], held, exact=[True, False, True])


def test_the_exact_w1_of_many_members_runs_on_threads_with_the_same_values(monkeypatch):
    """Members finishing together: their exact W1 solves run on several threads (POT releases
    the GIL) and give what each member gets alone; a member whose solve stops at the
    iteration limit gets NaN and the warning, the others their exact value."""
    import threading

    import ot

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one usable CPU: the solves run on this thread")
    names: list[str] = []
    solve = ot.emd2

    def recording(*args, **kwargs):
        names.append(threading.current_thread().name)
        return solve(*args, **kwargs)

    monkeypatch.setattr(ot, "emd2", recording)
    rng = _rng(21)
    gen = torch.tensor(np.tanh(rng.normal(size=(6, 120, 64))), dtype=torch.float32)
    held = torch.tensor(np.tanh(rng.normal(size=(300, 64))), dtype=torch.float32)
    batch = distances_batch(gen, held, n=120, seed=2, exact=True)
    assert len(names) == 6 and all(n.startswith("exact-w1") for n in names)
    for i in range(6):
        assert batch[i]["w1"] == distances(gen[i], held, n=120, seed=2)["w1"]
    with pytest.warns(UserWarning, match="did not reach optimality") as record:
        stopped = distances_batch(gen[:3], held, n=120, seed=2, exact=True, num_itermax=5)
    assert all(math.isnan(row["w1"]) and row["w1_converged"] == 0.0 for row in stopped)
    assert sum("did not reach optimality" in str(w.message) for w in record) == 3

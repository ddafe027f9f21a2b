"""Tests for benchmark.data on real files: shared MNIST, Debian Fashion-MNIST, a local mirror."""

from __future__ import annotations

import gzip
import hashlib
import itertools
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark import data
from benchmark.data import DataError, load_dataset

try:
    from tests._http import serve_directory, unused_port
except ImportError:  # tests/ is not a package: pytest put tests/ itself on sys.path
    from _http import serve_directory, unused_port

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
MNIST_DIR = SHARED / "mnist"
T10K = data.SPLIT_FILES["t10k"]
# from ../shared/data/README.md (the official files, byte-identical to torchvision's)
MNIST_T10K_MD5 = {
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")

pytestmark = pytest.mark.skipif(
    not all((MNIST_DIR / f).is_file() for f in T10K),
    reason=f"no MNIST t10k files in {MNIST_DIR}",
)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No user settings leak in: empty cache and system folders, no data dir, no mirror."""
    for var in ("MIXBENCH_DATA", "MIXBENCH_MIRROR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MIXBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "SYSTEM_DATA_DIR", tmp_path / "system")
    return tmp_path


def raw_idx(path: Path) -> np.ndarray:
    """An independent IDX reader (ubyte, gzip) to check the loader against."""
    raw = gzip.decompress(path.read_bytes())
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def link_split(folder: Path, names: tuple[str, str] = T10K) -> Path:
    """A dataset folder holding the shared MNIST t10k files under `names` (symlinks)."""
    folder.mkdir(parents=True, exist_ok=True)
    for src, dst in zip(T10K, names):
        (folder / dst).symlink_to((MNIST_DIR / src).resolve())
    return folder


# --------------------------------------------------------------------------------------------
# MNIST from ../shared/data (only the t10k split: carve)
# --------------------------------------------------------------------------------------------


def test_mnist_shared_shapes_range_labels_and_note():
    ds = load_dataset("mnist", data_dir=SHARED)
    assert ds.train.shape == (8000, 784) and ds.heldout.shape == (2000, 784)
    assert ds.train.dtype == ds.heldout.dtype == torch.float32
    assert ds.shape == (1, 28, 28) and ds.bounded and ds.dim == 784
    for x in (ds.train, ds.heldout):
        assert x.min().item() == -1.0 and x.max().item() == 1.0
    assert ds.train_labels.dtype == torch.int64 and ds.train_labels.shape == (8000,)
    assert set(ds.train_labels.tolist()) == set(range(10))
    assert set(ds.heldout_labels.tolist()) == set(range(10))
    assert ds.source == str(MNIST_DIR)
    assert ds.split_note == (
        f"only the t10k split (10000) found in {MNIST_DIR}; held-out = 2000 carved "
        "deterministically (seed 0), train = 8000"
    )


def test_carve_is_deterministic_disjoint_and_matches_the_file():
    a = load_dataset("mnist", data_dir=SHARED, seed=0, heldout_size=1000)
    b = load_dataset("mnist", data_dir=SHARED, seed=0, heldout_size=1000)
    c = load_dataset("mnist", data_dir=SHARED, seed=1, heldout_size=1000)
    assert torch.equal(a.train, b.train) and torch.equal(a.heldout, b.heldout)
    assert not torch.equal(a.extra["heldout_index"], c.extra["heldout_index"])
    tr, ho = a.extra["train_index"].numpy(), a.extra["heldout_index"].numpy()
    assert len(ho) == 1000 and not set(tr) & set(ho)
    assert sorted(np.concatenate([tr, ho])) == list(range(10000))
    images = raw_idx(MNIST_DIR / T10K[0]).reshape(10000, 784)
    labels = raw_idx(MNIST_DIR / T10K[1])
    expected = torch.from_numpy(images[ho].astype(np.float32) / 127.5 - 1.0)
    assert torch.equal(a.heldout, expected)
    assert torch.equal(a.train_labels, torch.from_numpy(labels[tr].astype(np.int64)))


def test_repeated_loads_hit_the_cache_and_return_fresh_tensors():
    first = load_dataset("mnist", data_dir=SHARED)
    hits = data._read_idx_cached.cache_info().hits
    first.train.fill_(0.0)  # a caller mutating its copy must not poison later loads
    again = load_dataset("mnist", data_dir=SHARED)
    assert data._read_idx_cached.cache_info().hits == hits + 2
    assert again.train.min().item() == -1.0


def test_heldout_size_must_leave_one_batch():
    with pytest.raises(DataError, match=r"heldout_size=9950 is too large.*heldout_size <= 9936"):
        load_dataset("mnist", data_dir=SHARED, heldout_size=9950, batch_size=64)
    ok = load_dataset("mnist", data_dir=SHARED, heldout_size=9936, batch_size=64)
    assert ok.train.shape == (64, 784)
    with pytest.raises(DataError, match="heldout_size=10000"):
        load_dataset("mnist", data_dir=SHARED, heldout_size=10000)
    with pytest.raises(DataError, match=r"heldout_size=0 is invalid; must be an integer >= 1"):
        load_dataset("mnist", data_dir=SHARED, heldout_size=0)


def test_train_size_takes_a_seeded_subset():
    full = load_dataset("mnist", data_dir=SHARED)
    small = load_dataset("mnist", data_dir=SHARED, train_size=500)
    assert small.train.shape == (500, 784) and torch.equal(small.heldout, full.heldout)
    assert set(small.extra["train_index"].tolist()) <= set(full.extra["train_index"].tolist())
    assert small.split_note.endswith("; training subset of 500 (seed 0)")


def test_lookup_order_data_dir_env_cache_system(isolated, monkeypatch):
    system = link_split(isolated / "system" / "mnist").parent
    cache = link_split(isolated / "cache" / "mnist").parent
    env = link_split(isolated / "env" / "mnist").parent
    arg = link_split(isolated / "arg" / "mnist").parent
    monkeypatch.setenv("MIXBENCH_DATA", str(env))
    assert load_dataset("mnist", data_dir=arg).source == str(arg / "mnist")
    assert load_dataset("mnist").source == str(env / "mnist")
    monkeypatch.setenv("MIXBENCH_DATA", str(isolated / "nowhere"))
    assert load_dataset("mnist").source == str(cache / "mnist")
    shutil.rmtree(cache)
    ds = load_dataset("mnist", download=False)
    assert ds.source == str(system / "mnist") and ds.extra["looked_up"] == "system (Debian)"


def test_only_train_split_and_uncompressed_files(isolated):
    folder = link_split(isolated / "d" / "mnist", data.SPLIT_FILES["train"])
    ds = load_dataset("mnist", data_dir=folder.parent, heldout_size=500)
    assert ds.split_note.startswith(f"only the train split (10000) found in {folder}")
    assert ds.extra["splits"] == ("train",)
    plain = isolated / "plain" / "mnist"
    plain.mkdir(parents=True)
    for name in T10K:
        (plain / name.removesuffix(".gz")).write_bytes(
            gzip.decompress((MNIST_DIR / name).read_bytes())
        )
    reference = load_dataset("mnist", data_dir=SHARED)
    ds = load_dataset("mnist", data_dir=plain.parent)
    assert torch.equal(ds.train, reference.train) and torch.equal(ds.heldout, reference.heldout)


def test_unknown_name_lists_valid_names():
    with pytest.raises(DataError) as info:
        load_dataset("cifar10")
    assert "unknown dataset 'cifar10'" in str(info.value)
    for name in data.DATASETS:
        assert name in str(info.value)


# --------------------------------------------------------------------------------------------
# Fashion-MNIST from the Debian package (both splits)
# --------------------------------------------------------------------------------------------


@pytest.mark.skipif(
    not (DEBIAN_FASHION / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian package dataset-fashion-mnist not installed "
    "(apt-get install -y dataset-fashion-mnist)",
)
def test_fashion_mnist_from_debian_location(monkeypatch):
    monkeypatch.setattr(data, "SYSTEM_DATA_DIR", DEBIAN_FASHION.parent)
    ds = load_dataset("fashion-mnist", download=False)
    assert ds.source == str(DEBIAN_FASHION)
    assert ds.train.shape == (60000, 784) and ds.heldout.shape == (10000, 784)
    assert ds.train.min().item() == -1.0 and ds.train.max().item() == 1.0
    assert torch.equal(torch.bincount(ds.train_labels), torch.full((10,), 6000))
    assert torch.equal(torch.bincount(ds.heldout_labels), torch.full((10,), 1000))
    assert ds.split_note == (
        f"train = the train split (60000), held-out = the t10k split (10000) from "
        f"{DEBIAN_FASHION}; heldout_size=2000 not used"
    )


# --------------------------------------------------------------------------------------------
# Download over real HTTP from a local mirror
# --------------------------------------------------------------------------------------------


@pytest.fixture
def mirror_root(isolated):
    """A folder served as a mirror: copies of the real MNIST t10k files, no train split."""
    root = isolated / "mirror"
    (root / "mnist").mkdir(parents=True)
    for name in T10K:
        shutil.copy(MNIST_DIR / name, root / name)
        shutil.copy(MNIST_DIR / name, root / "mnist" / name)
    return root


@pytest.mark.parametrize("template", ["{url}", "{url}{{name}}"], ids=["plain", "per-name"])
def test_download_from_mirror_verifies_md5_and_carves(
    isolated, mirror_root, template, monkeypatch
):
    cache = isolated / "cache" / "mnist"
    with serve_directory(mirror_root) as server:
        monkeypatch.setenv("MIXBENCH_MIRROR", template.format(url=server.url))
        ds = load_dataset("mnist")
        asked = list(server.requests)
        again = load_dataset("mnist")  # now from the cache: no new request
        assert server.requests == asked
    prefix = "/mnist/" if "name" in template else "/"
    assert asked == [prefix + f for f in (*data.SPLIT_FILES["train"][:1], *T10K)]
    assert sorted(p.name for p in cache.iterdir()) == sorted(T10K)  # no .part left over
    assert {f: md5(cache / f) for f in T10K} == MNIST_T10K_MD5
    assert ds.source == again.source == str(cache)
    assert "(train split not available there)" in ds.split_note
    assert "held-out = 2000 carved deterministically (seed 0)" in ds.split_note
    reference = load_dataset("mnist", data_dir=SHARED)
    assert torch.equal(ds.train, reference.train) and torch.equal(ds.heldout, reference.heldout)


def test_download_split_directly(isolated, mirror_root):
    dest = isolated / "dl"
    with serve_directory(mirror_root) as server:
        images, labels = data.download_split("mnist", "t10k", dest, mirror=server.url)
        with pytest.raises(DataError) as info:
            data.download_split("mnist", "train", dest, mirror=server.url)
    assert (images.name, labels.name) == T10K and md5(images) == MNIST_T10K_MD5[T10K[0]]
    assert f"{server.url}train-images-idx3-ubyte.gz: HTTP 404" in str(info.value)
    assert sorted(p.name for p in dest.iterdir()) == sorted(T10K)


def test_corrupt_download_is_rejected_and_not_kept(isolated, mirror_root, monkeypatch):
    served = mirror_root / T10K[0]
    blob = bytearray(served.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # same size, one byte flipped
    served.write_bytes(bytes(blob))
    with serve_directory(mirror_root) as server:
        monkeypatch.setenv("MIXBENCH_MIRROR", server.url)
        with pytest.raises(DataError) as info:
            load_dataset("mnist")
    message = str(info.value)
    assert f"downloaded {T10K[0]} from {server.url}{T10K[0]} is corrupt" in message
    assert f"expected {MNIST_T10K_MD5[T10K[0]]}" in message
    cache = isolated / "cache" / "mnist"
    assert not (cache / T10K[0]).exists()
    assert not [p for p in cache.iterdir() if p.name.endswith(".part")]


def test_nothing_anywhere_and_mirror_unreachable_lists_every_place(isolated, monkeypatch):
    (isolated / "mine").mkdir()
    url = f"http://127.0.0.1:{unused_port()}/"
    monkeypatch.setenv("MIXBENCH_MIRROR", url)
    with pytest.raises(DataError) as info:
        load_dataset("kmnist", data_dir=isolated / "mine")
    message = str(info.value)
    assert message.startswith("dataset 'kmnist' not found. MixBench looked in:")
    assert f"1. data_dir (--data-dir): {isolated / 'mine' / 'kmnist'} - does not exist" in message
    assert f"2. cache: {isolated / 'cache' / 'kmnist'} - does not exist" in message
    assert f"3. system (Debian): {isolated / 'system' / 'kmnist'} - does not exist" in message
    assert f"{url}train-images-idx3-ubyte.gz: unreachable" in message
    assert "--data-dir DIR (or set MIXBENCH_DATA=DIR)" in message
    assert not (isolated / "cache" / "kmnist").exists() or not any(
        (isolated / "cache" / "kmnist").iterdir()
    )

    with pytest.raises(DataError) as info:
        load_dataset("fashion-mnist", download=False)
    message = str(info.value)
    assert "1. data_dir (--data-dir) / MIXBENCH_DATA: not set" in message
    assert "download: disabled (download=False)" in message
    assert "apt-get install -y dataset-fashion-mnist" in message


def test_builtin_mirror_table_matches_torchvision():
    tvd = pytest.importorskip("torchvision.datasets")
    data._remote_table.cache_clear()
    for name, cls in (("mnist", tvd.MNIST), ("fashion-mnist", tvd.FashionMNIST)):
        mirrors, md5s, origin = data._remote_table(name)
        assert origin == "torchvision"
        assert (mirrors, md5s) == data._FALLBACK_REMOTE[name]
        assert tuple(cls.mirrors) == mirrors
    assert data._remote_table("kmnist")[1] == data._FALLBACK_REMOTE["kmnist"][1]
    assert data._FALLBACK_REMOTE["mnist"][1] | MNIST_T10K_MD5 == data._FALLBACK_REMOTE["mnist"][1]


# --------------------------------------------------------------------------------------------
# Corrupt files in a data dir
# --------------------------------------------------------------------------------------------


def _header(raw: bytes, count: int) -> bytes:
    return raw[:4] + count.to_bytes(4, "big") + raw[8:]


CORRUPTIONS = {
    "not-gzip": (0, lambda gz, raw: b"<html>404 Not Found</html>"),
    "truncated-gzip": (0, lambda gz, raw: gz[: len(gz) // 2]),
    "bad-magic": (0, lambda gz, raw: gzip.compress(b"\x00\x00\x0d\x03" + raw[4:], 1)),
    "size-mismatch": (0, lambda gz, raw: gzip.compress(raw[:-784], 1)),
    "label-count": (1, lambda gz, raw: gzip.compress(_header(raw, 9999)[:-1], 1)),
}


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_corrupt_idx_in_data_dir_names_the_file(isolated, kind):
    which, corrupt = CORRUPTIONS[kind]
    folder = isolated / "d" / "mnist"
    folder.mkdir(parents=True)
    for i, name in enumerate(T10K):
        gz = (MNIST_DIR / name).read_bytes()
        blob = corrupt(gz, gzip.decompress(gz)) if i == which else gz
        (folder / name).write_bytes(blob)
    with pytest.raises(DataError) as info:
        load_dataset("mnist", data_dir=folder.parent)
    assert str(folder / T10K[which]) in str(info.value)
    error = info.value  # no gzip/numpy traceback chained to it
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


# --------------------------------------------------------------------------------------------
# ring8 / grid25
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "centers", "std"),
    [
        (
            "ring8",
            [(2 * np.cos(a), 2 * np.sin(a)) for a in np.arange(8) * np.pi / 4],
            0.02,
        ),
        ("grid25", list(itertools.product([-4, -2, 0, 2, 4], repeat=2)), 0.05),
    ],
)
def test_mode_benchmarks(name, centers, std):
    ds = load_dataset(name, seed=3)
    expected = torch.tensor(centers, dtype=torch.float32)
    assert ds.train.shape == (8000, 2) and ds.heldout.shape == (2000, 2)
    assert ds.shape == (2,) and not ds.bounded and ds.source == "generated"
    assert ds.extra["std"] == std
    assert torch.allclose(ds.extra["centers"], expected, atol=1e-6)
    for x, labels in ((ds.train, ds.train_labels), (ds.heldout, ds.heldout_labels)):
        nearest = torch.cdist(x, expected).argmin(dim=1)
        assert torch.equal(nearest, labels)  # modes are 4 std+ apart: each point by its own
        residual = x - expected[labels]
        assert residual.abs().max().item() < 6 * std
        assert abs(residual.std().item() / std - 1) < 0.05
        assert torch.bincount(labels, minlength=len(centers)).min().item() > 0
    again = load_dataset(name, seed=3)
    other = load_dataset(name, seed=4)
    assert torch.equal(again.train, ds.train) and torch.equal(again.heldout, ds.heldout)
    assert not torch.equal(other.train, ds.train)
    smaller = load_dataset(name, seed=3, train_size=100)
    assert torch.equal(smaller.train, ds.train[:100]) and torch.equal(smaller.heldout, ds.heldout)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_tensors_land_on_the_requested_device():
    cpu = load_dataset("mnist", data_dir=SHARED)
    gpu = load_dataset("mnist", data_dir=SHARED, device="cuda")
    assert gpu.train.is_cuda and gpu.heldout_labels.is_cuda
    assert torch.equal(gpu.train.cpu(), cpu.train)
    assert load_dataset("grid25", device="cuda").extra["centers"].is_cuda

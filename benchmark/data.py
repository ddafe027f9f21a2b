"""Datasets for MixBench: IDX image sets (MNIST family) and generated 2-D mode benchmarks.

Image data (mnist, fashion-mnist, kmnist) is looked up, in order, in

1. ``data_dir`` (CLI ``--data-dir DIR``), else the ``MIXBENCH_DATA`` variable: ``DIR/<name>/``;
2. the user cache: ``MIXBENCH_CACHE``, else ``$XDG_CACHE_HOME/mixbench``, else
   ``~/.cache/mixbench``: ``CACHE/<name>/``;
3. the Debian dataset location ``/usr/share/datasets/<name>/``;
4. a download from the standard mirrors (or ``MIXBENCH_MIRROR``) into the cache, md5-verified.

A folder holds the standard IDX files (gzip-compressed or not). When it holds both splits,
train is the train split and held-out the t10k split; when it holds one, a held-out part is
carved from it with a fixed permutation of ``seed`` and ``Dataset.split_note`` says so.

ring8 and grid25 are the 2-D mode-collapse benchmarks of Metz et al. (Unrolled GANs, 2017):
Gaussians on a circle and on a grid, generated deterministically from ``seed``.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import logging
import os
import urllib.error
import urllib.request
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "DATASETS",
    "IMAGE_DATASETS",
    "POINT_DATASETS",
    "DataError",
    "Dataset",
    "cache_dir",
    "download_split",
    "load_dataset",
    "read_idx",
]

log = logging.getLogger(__name__)

IMAGE_DATASETS = ("mnist", "fashion-mnist", "kmnist")
POINT_DATASETS = ("ring8", "grid25")
DATASETS = IMAGE_DATASETS + POINT_DATASETS

SYSTEM_DATA_DIR = Path("/usr/share/datasets")
"""Where Debian's dataset-* packages install data (one folder per dataset)."""
DEBIAN_PACKAGES = {"fashion-mnist": "dataset-fashion-mnist"}
"""Debian packages shipping a dataset into SYSTEM_DATA_DIR/<name>/."""
DOWNLOAD_TIMEOUT_S = 30.0
"""Socket timeout of one download request."""

SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "t10k": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
"""Standard IDX file names (images, labels) of each split."""

# The same mirrors and md5s as torchvision's MNIST/FashionMNIST/KMNIST classes; used when
# torchvision does not import (a test checks the two tables agree when it does).
_FALLBACK_REMOTE: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "mnist": (
        (
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    ),
    "fashion-mnist": (
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    ),
    "kmnist": (
        ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        {
            "train-images-idx3-ubyte.gz": "bdb82020997e1d708af4cf47b453dcf7",
            "train-labels-idx1-ubyte.gz": "e144d726b3acfaa3e44228e80efcd344",
            "t10k-images-idx3-ubyte.gz": "5c965bf0a639b31b8f53240b1b52f4d7",
            "t10k-labels-idx1-ubyte.gz": "7320c461ea6c1c855c0b718fb2a4b134",
        },
    ),
}

_TORCHVISION_CLASSES = {
    "mnist": "MNIST",
    "fashion-mnist": "FashionMNIST",
    "kmnist": "KMNIST",
}

_IMAGE_SHAPE = (28, 28)
_N_CLASSES = 10
_IDX_UBYTE = 0x08


class DataError(RuntimeError):
    """Data could not be found or read; the message says where MixBench looked and the fix."""


@dataclass
class Dataset:
    """Training and held-out splits, flattened, as float32 tensors on one device."""

    name: str
    train: torch.Tensor
    """(N, D) training samples; images scaled to [-1, 1] and flattened (D = 784)."""
    heldout: torch.Tensor
    """(M, D) held-out samples: every metric is computed against these, never `train`."""
    shape: tuple[int, ...]
    """Shape of one sample before flattening: (1, 28, 28) for images, (2,) for points."""
    bounded: bool
    """True when samples lie in [-1, 1] (images): generators then end in tanh."""
    split_note: str
    """How the two splits were obtained, e.g. a held-out part carved from the only split."""
    source: str
    """Where the data came from (a folder, or 'generated')."""
    train_labels: torch.Tensor | None = None
    heldout_labels: torch.Tensor | None = None
    extra: dict = field(default_factory=dict)
    """Dataset-specific facts, e.g. mode centres and std for ring8/grid25."""

    @property
    def dim(self) -> int:
        return int(self.train.shape[1])


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


def load_dataset(
    name: str,
    *,
    data_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    heldout_size: int = 2000,
    seed: int = 0,
    download: bool = True,
    batch_size: int | None = None,
    train_size: int | None = None,
    mirror: str | None = None,
) -> Dataset:
    """Load one of `DATASETS` as float32 tensors on `device`.

    Args:
        name: one of `DATASETS`.
        data_dir: folder with one sub-folder per dataset (``DIR/mnist/``); None: the
            ``MIXBENCH_DATA`` variable, then the cache, the Debian location and a download.
        device: where the tensors are put.
        heldout_size: held-out samples when they must be carved from the only split found,
            and the held-out size of ring8/grid25 (a folder with both splits uses the t10k
            split whole).
        seed: seeds the carving permutation, the train subset and the generated points.
        download: False: never touch the network.
        batch_size: when given, the training split must hold at least one batch.
        train_size: cap on training samples (a seeded subset; images only) or the number of
            generated training points (ring8/grid25, default 8000).
        mirror: base URL replacing the standard mirrors (``MIXBENCH_MIRROR``); a ``{name}`` in
            it is replaced by the dataset name, otherwise file names are appended to it.

    Raises:
        DataError: unknown name, bad sizes, data not found anywhere, or a corrupt file.
    """
    key = _canonical_name(name)
    _check_int("heldout_size", heldout_size, 1)
    _check_int("seed", seed, 0)
    if batch_size is not None:
        _check_int("batch_size", batch_size, 1)
    if train_size is not None:
        _check_int("train_size", train_size, 1)
    min_train = batch_size or 1
    if key in POINT_DATASETS:
        n_train = 8000 if train_size is None else train_size
        if n_train < min_train:
            raise DataError(
                f"train_size={n_train} is smaller than one batch (batch_size={batch_size}); "
                f"use train_size >= {min_train}"
            )
        return _generated(key, n_train, heldout_size, seed, torch.device(device))
    return _load_images(
        key,
        data_dir=data_dir,
        device=torch.device(device),
        heldout_size=heldout_size,
        seed=seed,
        download=download,
        min_train=min_train,
        batch_size=batch_size,
        train_size=train_size,
        mirror=mirror,
    )


def cache_dir() -> Path:
    """The user cache: MIXBENCH_CACHE, else $XDG_CACHE_HOME/mixbench, else ~/.cache/mixbench."""
    explicit = os.environ.get("MIXBENCH_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "mixbench"


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (gzip-compressed when its name ends in .gz) as a read-only uint8 array.

    Results are cached per (path, size, mtime), so repeated loads in one process are cheap.

    Raises:
        DataError: the file is missing, not gzip, truncated, or not a well-formed ubyte IDX.
    """
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise DataError(f"cannot read IDX file {p}: {exc.strerror or exc}") from None
    return _read_idx_cached(str(p.absolute()), st.st_size, st.st_mtime_ns)


# --------------------------------------------------------------------------------------------
# Generated 2-D benchmarks
# --------------------------------------------------------------------------------------------


def _mode_centers(name: str) -> tuple[np.ndarray, float]:
    if name == "ring8":
        angles = 2.0 * np.pi * np.arange(8) / 8
        return 2.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1), 0.02
    axis = np.arange(-4.0, 5.0, 2.0)
    xs, ys = np.meshgrid(axis, axis, indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=1), 0.05


def _generated(name: str, n_train: int, n_heldout: int, seed: int, device: torch.device):
    centers, std = _mode_centers(name)

    def draw(n: int, stream: int) -> tuple[torch.Tensor, torch.Tensor]:
        # independent streams: held-out points do not depend on the training size, and
        # fewer training points are a prefix of more
        modes = np.random.default_rng([seed, stream, 0]).integers(0, len(centers), size=n)
        noise = np.random.default_rng([seed, stream, 1]).standard_normal((n, 2))
        points = centers[modes] + std * noise
        return (
            torch.from_numpy(points.astype(np.float32)).to(device),
            torch.from_numpy(modes.astype(np.int64)).to(device),
        )

    train, train_labels = draw(n_train, 0)
    heldout, heldout_labels = draw(n_heldout, 1)
    return Dataset(
        name=name,
        train=train,
        heldout=heldout,
        shape=(2,),
        bounded=False,
        split_note=(
            f"generated: {n_train} train / {n_heldout} held-out points from seed {seed} "
            f"({len(centers)} Gaussians, std {std:g}, independent streams)"
        ),
        source="generated",
        train_labels=train_labels,
        heldout_labels=heldout_labels,
        extra={
            "centers": torch.from_numpy(centers.astype(np.float32)).to(device),
            "std": std,
        },
    )


# --------------------------------------------------------------------------------------------
# IDX image sets: locating
# --------------------------------------------------------------------------------------------


@dataclass
class _Folder:
    """One place looked at, and what it holds."""

    label: str
    path: Path | None
    splits: dict[str, tuple[Path, Path]] = field(default_factory=dict)
    note: str = ""


def _find_file(folder: Path, gz_name: str) -> Path | None:
    for candidate in (folder / gz_name, folder / gz_name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def _scan(label: str, folder: Path | None, unset_note: str = "") -> _Folder:
    if folder is None:
        return _Folder(label, None, note=unset_note)
    found = _Folder(label, folder)
    if not folder.is_dir():
        found.note = "does not exist"
        return found
    partial = []
    for split, (img_name, lbl_name) in SPLIT_FILES.items():
        img, lbl = _find_file(folder, img_name), _find_file(folder, lbl_name)
        if img is not None and lbl is not None:
            found.splits[split] = (img, lbl)
        elif img is not None or lbl is not None:
            partial.append(f"{(img or lbl).name} without {lbl_name if img else img_name}")
    if not found.splits:
        found.note = "incomplete: " + "; ".join(partial) if partial else "holds no IDX files"
    return found


def _user_dir(data_dir: str | Path | None) -> tuple[str, Path | None]:
    if data_dir is not None and str(data_dir) != "":
        return "data_dir (--data-dir)", Path(data_dir).expanduser()
    env = os.environ.get("MIXBENCH_DATA")
    if env:
        return "MIXBENCH_DATA", Path(env).expanduser()
    return "data_dir (--data-dir) / MIXBENCH_DATA", None


# --------------------------------------------------------------------------------------------
# IDX image sets: downloading
# --------------------------------------------------------------------------------------------


@functools.cache
def _remote_table(name: str) -> tuple[tuple[str, ...], dict[str, str], str]:
    """(mirrors, {file: md5}, where the table came from) for one image dataset."""
    try:
        import torchvision.datasets as tvd

        cls = getattr(tvd, _TORCHVISION_CLASSES[name])
        mirrors = tuple(str(m) for m in cls.mirrors)
        md5s = {os.path.basename(str(f)): str(m) for f, m in cls.resources}
        if mirrors and set(md5s) == {f for pair in SPLIT_FILES.values() for f in pair}:
            return mirrors, md5s, "torchvision"
    except Exception as exc:  # any torchvision failure means: use our own table
        log.debug("torchvision mirror table unavailable (%s); using the built-in one", exc)
    mirrors, md5s = _FALLBACK_REMOTE[name]
    return mirrors, dict(md5s), "builtin"


def _mirror_urls(name: str, mirror: str | None) -> tuple[str, ...]:
    override = mirror or os.environ.get("MIXBENCH_MIRROR") or None
    if override is None:
        return _remote_table(name)[0]
    base = override.replace("{name}", name)
    return (base if base.endswith("/") else base + "/",)


class _Unavailable(Exception):
    """A file could not be fetched from one mirror (reason in the message)."""

    def __init__(self, reason: str, *, mirror_down: bool) -> None:
        super().__init__(reason)
        self.mirror_down = mirror_down


def _fetch(url: str, dest: Path, md5: str) -> None:
    """Download `url` to `dest` atomically; DataError on an md5 mismatch (nothing is kept)."""
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    digest = hashlib.md5()
    request = urllib.request.Request(url, headers={"User-Agent": "mixbench"})
    try:
        try:
            with (
                urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as resp,
                tmp.open("wb") as out,
            ):
                while chunk := resp.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
        except urllib.error.HTTPError as exc:
            raise _Unavailable(f"HTTP {exc.code} {exc.reason}", mirror_down=False) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise _Unavailable(f"unreachable ({reason})", mirror_down=True) from None
        if digest.hexdigest() != md5:
            raise DataError(
                f"downloaded {dest.name} from {url} is corrupt: md5 {digest.hexdigest()}, "
                f"expected {md5}; it was not kept in {dest.parent}. Retry later, or point "
                "MIXBENCH_MIRROR / --data-dir at a good copy."
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def download_split(
    name: str, split: str, dest: str | Path, *, mirror: str | None = None
) -> tuple[Path, Path]:
    """Download one split's (images, labels) files of an image dataset into `dest`.

    Files already in `dest` are kept. Each download is md5-verified and renamed into place
    only when it matches, so `dest` never holds a partial or corrupt file.

    Raises:
        DataError: unknown name/split, a corrupt download (md5 mismatch), or the split is on
            no mirror (the message lists every URL tried and why it failed).
    """
    key = _canonical_name(name)
    if key not in IMAGE_DATASETS:
        raise DataError(f"{name!r} is not downloadable; image datasets: {IMAGE_DATASETS}")
    if split not in SPLIT_FILES:
        raise DataError(f"unknown split {split!r}; valid: {', '.join(SPLIT_FILES)}")
    failures: list[str] = []
    paths = _download_split(key, split, Path(dest), _mirror_urls(key, mirror), set(), failures)
    if paths is None:
        raise DataError(
            f"could not download the {split} split of {key}:\n  " + "\n  ".join(failures)
        )
    return paths


def _download_split(
    name: str,
    split: str,
    dest: Path,
    mirrors: tuple[str, ...],
    down: set[str],
    failures: list[str],
) -> tuple[Path, Path] | None:
    """Fetch both files of one split; None (reasons appended to `failures`) when unavailable."""
    md5s = _remote_table(name)[1]
    paths = []
    for file_name in SPLIT_FILES[split]:
        target = dest / file_name
        if target.is_file():
            paths.append(target)
            continue
        for base in mirrors:
            if base in down:
                continue
            url = base + file_name
            log.info("downloading %s -> %s", url, target)
            try:
                dest.mkdir(parents=True, exist_ok=True)
                _fetch(url, target, md5s[file_name])
            except _Unavailable as exc:
                failures.append(f"{url}: {exc}")
                if exc.mirror_down:
                    down.add(base)
                continue
            except OSError as exc:  # the cache itself is not writable
                raise DataError(f"cannot write {target}: {exc}; set MIXBENCH_CACHE") from None
            paths.append(target)
            break
        else:
            return None
    return paths[0], paths[1]


# --------------------------------------------------------------------------------------------
# IDX image sets: reading and splitting
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _read_idx_cached(path: str, size: int, mtime_ns: int) -> np.ndarray:
    del size, mtime_ns  # part of the cache key only: a replaced file is read again
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        if path.endswith(".gz"):
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"corrupt or truncated IDX file {path}: not a readable gzip file ({exc}). "
            "Delete it and re-run (MixBench downloads a fresh copy into its cache) or replace "
            "it with the original."
        ) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != _IDX_UBYTE or raw[3] == 0:
        raise DataError(
            f"corrupt IDX file {path}: bad magic number {raw[:4].hex() or '(empty)'}, expected "
            "0000 08 0N (unsigned bytes, N dimensions). Replace it with the original file."
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"truncated IDX file {path}: header cut short. Replace it.")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        raise DataError(
            f"corrupt or truncated IDX file {path}: header says shape {dims} "
            f"({expected} bytes) but the data holds {len(raw)} bytes. Replace it with the "
            "original file."
        )
    array = np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)
    array.flags.writeable = False
    return array


def _read_split(split: str, images_path: Path, labels_path: Path) -> tuple[np.ndarray, ...]:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != _IMAGE_SHAPE:
        raise DataError(
            f"{images_path} holds an array of shape {images.shape}; expected (N, 28, 28) images"
        )
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(
            f"{labels_path} holds labels of shape {labels.shape} but {images_path.name} holds "
            f"{len(images)} images; the two files of the {split} split do not belong together"
        )
    if len(labels) and int(labels.max()) >= _N_CLASSES:
        raise DataError(f"{labels_path} holds label {int(labels.max())}; expected 0..9")
    return images, labels


def _subset(n: int, seed: int, stream: int) -> np.ndarray:
    """A fixed permutation of range(n) from `seed` (numpy's PCG64: stable across versions)."""
    return np.random.default_rng([seed, stream]).permutation(n)


def _load_images(
    name: str,
    *,
    data_dir: str | Path | None,
    device: torch.device,
    heldout_size: int,
    seed: int,
    download: bool,
    min_train: int,
    batch_size: int | None,
    train_size: int | None,
    mirror: str | None,
) -> Dataset:
    user_label, user_root = _user_dir(data_dir)
    cache_root = cache_dir()
    looked = [
        _scan(user_label, user_root / name if user_root else None, "not set"),
        _scan("cache", cache_root / name),
        _scan("system (Debian)", SYSTEM_DATA_DIR / name),
    ]
    chosen = next((f for f in looked if f.splits), None)
    if user_root is not None and chosen is not looked[0]:
        log.warning("%s: %s/%s %s", user_label, user_root, name, looked[0].note)
    origin = ""
    if chosen is None:
        chosen, origin = _download_into(name, cache_root / name, download, mirror, looked)
    folder = chosen.path
    assert folder is not None

    if "train" in chosen.splits and "t10k" in chosen.splits:
        x_tr, y_tr = _read_split("train", *chosen.splits["train"])
        x_ho, y_ho = _read_split("t10k", *chosen.splits["t10k"])
        train_idx, heldout_idx = np.arange(len(x_tr)), np.arange(len(x_ho))
        note = (
            f"train = the train split ({len(x_tr)}), held-out = the t10k split ({len(x_ho)}) "
            f"from {folder}; heldout_size={heldout_size} not used"
        )
    else:
        ((split, paths),) = chosen.splits.items()
        x_all, y_all = _read_split(split, *paths)
        n = len(x_all)
        if heldout_size >= n or n - heldout_size < min_train:
            need = f"leave at least {min_train} training samples" + (
                f" (one batch of batch_size={batch_size})" if batch_size else ""
            )
            raise DataError(
                f"heldout_size={heldout_size} is too large: only the {split} split ({n}) "
                f"was found in {folder} and the held-out part must {need}; "
                f"use heldout_size <= {n - min_train}"
            )
        perm = _subset(n, seed, 0)
        heldout_idx, train_idx = perm[:heldout_size], perm[heldout_size:]
        x_tr, y_tr, x_ho, y_ho = x_all, y_all, x_all, y_all
        note = (
            f"only the {split} split ({n}) found in {folder}; held-out = {heldout_size} "
            f"carved deterministically (seed {seed}), train = {n - heldout_size}"
        )
    if train_size is not None and train_size < len(train_idx):
        if train_size < min_train:
            raise DataError(
                f"train_size={train_size} is smaller than one batch (batch_size={batch_size})"
            )
        train_idx = train_idx[_subset(len(train_idx), seed, 1)[:train_size]]
        note += f"; training subset of {train_size} (seed {seed})"
    elif len(train_idx) < min_train:
        raise DataError(
            f"the training split in {folder} holds {len(train_idx)} samples, fewer than one "
            f"batch (batch_size={batch_size})"
        )
    if origin:
        note = f"{origin}; {note}"

    return Dataset(
        name=name,
        train=_to_tensor(x_tr, train_idx, device),
        heldout=_to_tensor(x_ho, heldout_idx, device),
        shape=(1, *_IMAGE_SHAPE),
        bounded=True,
        split_note=note,
        source=str(folder),
        train_labels=torch.from_numpy(y_tr[train_idx].astype(np.int64)).to(device),
        heldout_labels=torch.from_numpy(y_ho[heldout_idx].astype(np.int64)).to(device),
        extra={
            "train_index": torch.from_numpy(train_idx.astype(np.int64)),
            "heldout_index": torch.from_numpy(heldout_idx.astype(np.int64)),
            "splits": tuple(chosen.splits),
            "looked_up": chosen.label,
        },
    )


def _to_tensor(images: np.ndarray, index: np.ndarray, device: torch.device) -> torch.Tensor:
    """Selected images as (n, 784) float32 in [-1, 1] on `device` (0 -> -1, 255 -> 1 exactly)."""
    flat = images.reshape(len(images), -1)
    if len(index) == len(flat) and np.array_equal(index, np.arange(len(flat))):
        # the whole split in file order: skip the fancy-index copy. The cached array is
        # read-only; torch warns about that, but it is only read (the float copy is new).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            source = torch.from_numpy(flat)
    else:
        source = torch.from_numpy(flat[index])
    # move as uint8 (4x fewer bytes to a GPU), then convert there; the float tensor is new
    return source.to(device).to(torch.float32).div_(127.5).sub_(1.0)


def _download_into(
    name: str, dest: Path, download: bool, mirror: str | None, looked: list[_Folder]
) -> tuple[_Folder, str]:
    """Download into the cache, or raise the one not-found error listing every place."""
    failures: list[str] = []
    if download:
        mirrors = _mirror_urls(name, mirror)
        down: set[str] = set()
        missing = [
            split
            for split in SPLIT_FILES
            if _download_split(name, split, dest, mirrors, down, failures) is None
        ]
        got = _scan("download", dest)
        if got.splits:
            absent = f" ({', '.join(missing)} split not available there)" if missing else ""
            return got, f"downloaded into {dest} from {', '.join(mirrors)}{absent}"
    lines = [f"dataset {name!r} not found. MixBench looked in:"]
    for i, f in enumerate(looked, 1):
        where = f"{f.path}" if f.path else ""
        lines.append(f"  {i}. {f.label}: {where}{' - ' if where else ''}{f.note}")
    if download:
        lines.append(f"  {len(looked) + 1}. download into {dest}:")
        lines.extend(f"       {line}" for line in failures)
    else:
        lines.append(f"  {len(looked) + 1}. download: disabled (download=False)")
    files = " and ".join(SPLIT_FILES["t10k"])
    lines.append(
        f"Fix: pass --data-dir DIR (or set MIXBENCH_DATA=DIR) where DIR/{name}/ holds {files} "
        "(train-* files too for the full training split)"
    )
    if name in DEBIAN_PACKAGES:
        lines.append(f"  or: apt-get install -y {DEBIAN_PACKAGES[name]}")
    lines.append(
        "  or: re-run with internet access (files are cached), or set MIXBENCH_MIRROR=URL"
    )
    raise DataError("\n".join(lines))


# --------------------------------------------------------------------------------------------
# Small checks
# --------------------------------------------------------------------------------------------


def _canonical_name(name: str) -> str:
    key = str(name).strip().lower().replace("_", "-")
    if key == "fashionmnist":
        key = "fashion-mnist"
    if key not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    return key


def _check_int(param: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise DataError(f"{param}={value!r} is invalid; must be an integer >= {low}")

"""Shared fixtures: the real MNIST split from ../shared/data and small generated datasets."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch

from benchmark.data import Dataset, load_dataset

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    if not (SHARED_DATA / "mnist" / "t10k-images-idx3-ubyte.gz").exists():
        pytest.fail(f"real MNIST split missing: expected {SHARED_DATA}/mnist (see README)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def mnist(shared_data_dir: Path) -> Dataset:
    """The official MNIST test split with a deterministic held-out part carved from it."""
    return load_dataset("mnist", data_dir=shared_data_dir, heldout_size=2000)


@pytest.fixture(scope="session")
def mnist_small(mnist: Dataset) -> Dataset:
    """256 real training digits and 256 held-out ones: enough for a few fast steps."""
    return Dataset(
        name="mnist",
        train=mnist.train[:256],
        heldout=mnist.heldout[:256],
        shape=mnist.shape,
        bounded=True,
        split_note=mnist.split_note + " (test subset: 256 train / 256 held-out)",
        source=mnist.source,
        train_labels=mnist.train_labels[:256] if mnist.train_labels is not None else None,
        heldout_labels=mnist.heldout_labels[:256] if mnist.heldout_labels is not None else None,
    )


@pytest.fixture(scope="session")
def ring8() -> Dataset:
    return load_dataset("ring8")


@pytest.fixture(scope="session", autouse=True)
def _ctrl_c_is_delivered():
    """Tests press Ctrl-C (SIGINT) in studies run in this process and in launcher processes
    it starts. A shell starts a background job (`cmd &`, no job control) with SIGINT ignored,
    and Python and every process it starts keep it ignored: a suite launched that way would
    see every Ctrl-C it sends dropped. The suite runs as in a terminal's foreground instead."""
    previous = signal.getsignal(signal.SIGINT)
    if previous == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(autouse=True)
def _few_threads():
    # Tests run beside each other on 2 cores; one thread each avoids oversubscription.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)

"""Shared fixtures: tiny IDX files written on the fly, a tiny in-memory `Data`, and the real-MNIST skip rule.

Tests marked `@pytest.mark.mnist` run only when AECORE_DATA_DIR names a folder holding the four MNIST IDX
files. Every other test runs with AECORE_DATA_DIR removed and the working directory set to its own tmp_path,
so neither a developer's environment nor a stray ./data folder can change which files are found; every test,
those included, gets an empty download cache of its own (AECORE_CACHE_DIR).
"""
from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from aecore.engine.data import ENV_VAR, Data, Split
from aecore.engine.fetch import CACHE_ENV

N_TRAIN, N_TEST = 64, 32
STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


# ---------------------------------------------------------------------------------------------- IDX writing
def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array of 1 or 3 dimensions (magic 0x00000801 / 0x00000803)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    return header + array.tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write `array` as IDX to `path`, gzip-compressed when the name ends in .gz."""
    data = idx_bytes(array)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def make_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n learnable 28x28 uint8 images: a bright bar whose place depends on the label, plus speckle."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 10).astype(np.uint8)
    rng.shuffle(labels)
    images = (rng.random((n, 28, 28)) < 0.05).astype(np.uint8) * 60
    for i, c in enumerate(labels):
        row = 3 + 2 * int(c)
        images[i, row:row + 3, 4:24] = 255
        images[i, 4:24, row:row + 2] = 200
    return images, labels


@pytest.fixture(scope="session")
def arrays() -> dict[str, np.ndarray]:
    """The contents every tiny IDX folder holds (64 train and 32 test images, labels 0-9)."""
    train_x, train_y = make_images(N_TRAIN, seed=1)
    test_x, test_y = make_images(N_TEST, seed=2)
    return {"train-images": train_x, "train-labels": train_y, "test-images": test_x, "test-labels": test_y}


def write_dataset(root: Path, arrays: dict, gz: bool = True, layout: str = "flat") -> Path:
    """Write the four files under `root` (flat) or `root/MNIST/raw` (torchvision); returns that folder."""
    folder = {"flat": root, "torchvision": root / "MNIST" / "raw",
              "fashion": root / "fashion-mnist", "fashion-torchvision": root / "FashionMNIST" / "raw"}[layout]
    ext = ".gz" if gz else ""
    for split, (img_stem, lab_stem) in STEMS.items():
        write_idx(folder / (img_stem + ext), arrays[f"{split}-images"])
        write_idx(folder / (lab_stem + ext), arrays[f"{split}-labels"])
    return folder


@pytest.fixture
def make_dataset(tmp_path, arrays):
    """Factory: make_dataset(name, gz=True, layout='flat', arrays=None) -> the root folder written."""
    def make(name: str = "idx", gz: bool = True, layout: str = "flat", contents: dict | None = None) -> Path:
        root = tmp_path / name
        root.mkdir(parents=True, exist_ok=True)
        write_dataset(root, contents or arrays, gz=gz, layout=layout)
        return root
    return make


@pytest.fixture
def mnist_dir(make_dataset) -> Path:
    """A flat folder of gzip-compressed tiny IDX files."""
    return make_dataset("mnist-gz", gz=True, layout="flat")


@pytest.fixture
def mnist_raw_dir(make_dataset) -> Path:
    """A torchvision-style root (<root>/MNIST/raw) of uncompressed tiny IDX files."""
    return make_dataset("mnist-raw", gz=False, layout="torchvision")


@pytest.fixture
def tiny_data(arrays) -> Data:
    """The tiny images as a `Data` (no validation split), straight from tensors."""
    def split(name):
        return Split(torch.from_numpy(arrays[f"{name}-images"].copy()),
                     torch.from_numpy(arrays[f"{name}-labels"].astype(np.int64)))
    return Data(train=split("train"), val=None, test=split("test"))


# ---------------------------------------------------------------------------------------------- real MNIST
def real_mnist_dir() -> Path | None:
    """The folder AECORE_DATA_DIR names, if it (or its MNIST/raw) holds all four MNIST files."""
    value = os.environ.get(ENV_VAR)
    if not value:
        return None
    for folder in (Path(value), Path(value) / "mnist", Path(value) / "MNIST" / "raw"):
        if all(any((folder / (s + e)).is_file() for e in ("", ".gz")) for pair in STEMS.values() for s in pair):
            return folder
    return None


def pytest_runtest_setup(item):
    if item.get_closest_marker("mnist") and real_mnist_dir() is None:
        pytest.skip(f"real MNIST not available: set {ENV_VAR} to a folder with the four IDX files")


# Test modules of the dashboard layer set up their own environment and working directory.
_OWN_ENVIRONMENT = ("test_app", "test_browser", "test_job", "test_preprocess")


@pytest.fixture(autouse=True)
def _isolated(request, monkeypatch, tmp_path, tmp_path_factory):
    """Every test: an empty download cache of its own (AECORE_CACHE_DIR), so a developer's real cache never
    changes which files are found. Engine tests not marked mnist also: no AECORE_DATA_DIR, and ./data means
    tmp_path/data (absent unless made)."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("aelab-cache")))
    if request.node.get_closest_marker("mnist") or request.node.path.name.startswith(_OWN_ENVIRONMENT):
        return
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)


# ---------------------------------------------------------------------------------------------- local mirror
@pytest.fixture
def serve():
    """Factory: serve(files, delay=0) -> a running Mirror, shut down after the test."""
    from local_mirror import Mirror   # it imports this module's idx_bytes
    started = []

    def make(files: dict[str, bytes], delay: float = 0.0) -> Mirror:
        started.append(Mirror(files, delay))
        return started[-1]
    yield make
    for m in started:
        m.close()


# ---------------------------------------------------------------------------------------------- Ray
@pytest.fixture(scope="module")
def ray_address():
    """A local Ray instance of 2 CPUs for one test module (skipped where Ray is not installed); its GCS address,
    what AELAB_RAY_ADDRESS would name."""
    ray = pytest.importorskip("ray")
    from aecore.runs import cluster
    cluster.disconnect()
    ray.init(num_cpus=2, include_dashboard=False, **cluster.init_options())
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        cluster.disconnect()
        ray.shutdown()

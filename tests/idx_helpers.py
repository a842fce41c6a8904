"""Plain helpers for synthetic digit sets and IDX files (the fixtures built on them are in conftest.py).

One generator (`images_and_labels`) makes every synthetic set: as arrays (`tiny_arrays`), as a `Data` in memory
(`tiny_data`), or written as the four MNIST IDX files (`write_dataset`, `write_idx_folder`). `real_mnist_dir`
finds the real MNIST files that tests marked `mnist` need.
"""
from __future__ import annotations

import gzip
import io
import os
import struct
from pathlib import Path

import numpy as np
import torch

from aecore.engine.data import ENV_VAR, Data, Split

STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


# ---------------------------------------------------------------------------------------------- synthetic digits
def images_and_labels(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n uint8 images (n, 28, 28) with labels 0-9 in turn: a bar and a stroke placed by the label, plus speckle."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 10).astype(np.uint8)
    images = (rng.random((n, 28, 28)) < 0.04).astype(np.uint8) * 50
    for i, c in enumerate(labels):
        row = 4 + 2 * int(c)
        images[i, row:row + 2, 5:23] = 255
        images[i, 5:23, 22 - 2 * int(c):24 - 2 * int(c)] = 180
    return images, labels


def tiny_arrays(n_train: int = 200, n_test: int = 50, seed: int = 0) -> dict[str, np.ndarray]:
    """The four arrays of a synthetic set, keyed "train-images", "train-labels", "test-images", "test-labels"
    (the test split drawn with seed + 1)."""
    train_x, train_y = images_and_labels(n_train, seed)
    test_x, test_y = images_and_labels(n_test, seed + 1)
    return {"train-images": train_x, "train-labels": train_y, "test-images": test_x, "test-labels": test_y}


def as_data(arrays: dict[str, np.ndarray]) -> Data:
    """The arrays of `tiny_arrays` as a `Data` without a validation split, built straight from tensors."""
    def split(name):
        return Split(torch.from_numpy(arrays[f"{name}-images"].copy()),
                     torch.from_numpy(arrays[f"{name}-labels"].astype(np.int64)))
    return Data(train=split("train"), val=None, test=split("test"))


def tiny_data(n_train: int = 200, n_test: int = 50, seed: int = 0) -> Data:
    """A synthetic `Data` without a validation split, built straight from tensors."""
    return as_data(tiny_arrays(n_train, n_test, seed))


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


def write_dataset(root: Path, arrays: dict, gz: bool = True, layout: str = "flat") -> Path:
    """Write the four files under `root` (flat) or `root/MNIST/raw` (torchvision); returns that folder."""
    folder = {"flat": root, "torchvision": root / "MNIST" / "raw",
              "fashion": root / "fashion-mnist", "fashion-torchvision": root / "FashionMNIST" / "raw"}[layout]
    ext = ".gz" if gz else ""
    for split, (img_stem, lab_stem) in STEMS.items():
        write_idx(folder / (img_stem + ext), arrays[f"{split}-images"])
        write_idx(folder / (lab_stem + ext), arrays[f"{split}-labels"])
    return folder


def write_idx_folder(folder: Path, n_train: int = 120, n_test: int = 40, seed: int = 0) -> Path:
    """The four MNIST file names, gzip-compressed, in `folder` (created); returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    return write_dataset(folder, tiny_arrays(n_train, n_test, seed))


def png_bytes(array: np.ndarray) -> bytes:
    """PNG encoding of a uint8 array (H, W), (H, W, 3) or (H, W, 4)."""
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


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

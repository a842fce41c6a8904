"""Small synthetic digit sets for the dashboard-layer tests: in memory (`tiny_data`) or as IDX files."""
from __future__ import annotations

import gzip
import io
import struct
from pathlib import Path

import numpy as np
import torch

from aecore.engine.data import Data, Split

IDX_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


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


def tiny_data(n_train: int = 200, n_test: int = 50, seed: int = 0) -> Data:
    """A `Data` without a validation split, built straight from tensors."""
    def split(n, s):
        x, y = images_and_labels(n, s)
        return Split(torch.from_numpy(x), torch.from_numpy(y.astype(np.int64)))
    return Data(train=split(n_train, seed), val=None, test=split(n_test, seed + 1))


def idx_bytes(array: np.ndarray) -> bytes:
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    return header + array.tobytes()


def write_idx_folder(folder: Path, n_train: int = 120, n_test: int = 40, seed: int = 0) -> Path:
    """The four MNIST file names, gzip-compressed, in `folder` (created); returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, s in (("train", n_train, seed), ("test", n_test, seed + 1)):
        x, y = images_and_labels(n, s)
        img_stem, lab_stem = IDX_STEMS[split]
        (folder / (img_stem + ".gz")).write_bytes(gzip.compress(idx_bytes(x)))
        (folder / (lab_stem + ".gz")).write_bytes(gzip.compress(idx_bytes(y)))
    return folder


def png_bytes(array: np.ndarray) -> bytes:
    """PNG encoding of a uint8 array (H, W), (H, W, 3) or (H, W, 4)."""
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()

"""The data sets a server's training processes read, shared through files that every process maps.

A run's process used to receive its images through a pipe: a pickled copy per run (MNIST's 60,000 training
images are 47 MB), built, sent and unpickled before the first step. Here `publish(data)` in the server writes each
split once to a file in a temporary folder and returns a `SharedData` of paths, shapes and dtypes that pickles in
microseconds; `attach(shared)` in a training process maps those files copy-on-write. The pages are the kernel's
page cache: one copy for the whole machine however many runs read it, and a run that wrote to its images (none
does) would write to private pages, never to the file.

A split's file lives as long as the server holds its tensor (a weak reference removes it with the tensor), and the
folder goes when the server exits; a process that still maps a removed file keeps reading it (Linux unlinks
lazily).
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import uuid
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from aecore.engine.data import Data, Split

_lock = threading.Lock()
_folder: Path | None = None
_written: dict[int, tuple[weakref.ref, str]] = {}    # id(tensor) → (the tensor, weakly; its file)
_mapped: OrderedDict[str, torch.Tensor] = OrderedDict()   # in a training process: the files it maps, newest last
KEEP_MAPPED = 8          # files a training process keeps mapped between runs (address space only, no copy)


@dataclass(frozen=True)
class SharedArray:
    path: str
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class SharedData:
    """A Data as files: (images, labels) per split, None for a missing split."""
    train: tuple[SharedArray, SharedArray]
    val: tuple[SharedArray, SharedArray] | None
    test: tuple[SharedArray, SharedArray]


def folder() -> Path:
    """This server's folder of shared splits (created on first use, removed at exit)."""
    global _folder
    if _folder is None:
        _folder = Path(tempfile.mkdtemp(prefix="aelab-shared-"))
        atexit.register(shutil.rmtree, _folder, True)
    return _folder


def _write(tensor: torch.Tensor) -> SharedArray:
    """The tensor's file, written once per tensor object (held weakly: the file goes with the tensor)."""
    with _lock:
        known = _written.get(id(tensor))
        if known is not None and known[0]() is tensor:
            path = known[1]
        else:
            path = str(folder() / f"{uuid.uuid4().hex}.npy")
            part = path + ".part"
            with open(part, "wb") as f:      # a file object: np.save would add ".npy" to a name
                np.save(f, tensor.contiguous().numpy(), allow_pickle=False)
            os.replace(part, path)           # a reader never maps a half-written file
            key = id(tensor)
            _written[key] = (weakref.ref(tensor), path)
            weakref.finalize(tensor, _forget, key, path)
    return SharedArray(path, tuple(tensor.shape), str(tensor.dtype).removeprefix("torch."))


def _forget(key: int, path: str) -> None:
    with _lock:
        if _written.get(key, (None, None))[1] == path:
            del _written[key]
    try:
        os.unlink(path)
    except OSError:
        pass


def publish(data: Data) -> SharedData:
    """`data` as files every training process can map (each tensor written once while the server holds it)."""
    def pair(split: Split | None):
        return None if split is None else (_write(split.images), _write(split.labels))
    return SharedData(pair(data.train), pair(data.val), pair(data.test))


def _map(a: SharedArray) -> torch.Tensor:
    """The file as a tensor over a copy-on-write mapping, kept for the next runs of this process."""
    tensor = _mapped.get(a.path)
    if tensor is None:
        array = np.load(a.path, mmap_mode="c", allow_pickle=False)
        if array.shape != a.shape or str(array.dtype) != a.dtype:
            raise ValueError(f"the shared file {a.path} holds {array.dtype}{array.shape}, not {a.dtype}{a.shape}")
        tensor = torch.from_numpy(array)
        _mapped[a.path] = tensor
        while len(_mapped) > KEEP_MAPPED:
            _mapped.popitem(last=False)
    _mapped.move_to_end(a.path)
    return tensor


def attach(shared: SharedData) -> Data:
    """In a training process: the Data that `publish` wrote, mapped, not copied."""
    def split(pair):
        return None if pair is None else Split(_map(pair[0]), _map(pair[1]))
    return Data(split(shared.train), split(shared.val), split(shared.test))

"""MNIST and Fashion-MNIST from IDX files, held as uint8 tensors, plus per-batch noise.

Look-up order for the files: an explicit directory, the AECORE_DATA_DIR setting, ./data, AE Lab's download
cache (`cache_dir()/<dataset>`: $AECORE_CACHE_DIR, else ~/.cache/aelab), and for Fashion-MNIST Debian's
/usr/share/datasets/fashion-mnist. In each place we accept the flat official files
(`train-images-idx3-ubyte[.gz]` ...) and torchvision's `<root>/MNIST/raw` (or `FashionMNIST/raw`) layout.
Nothing is downloaded here: a caller that wants missing files fetched asks `aecore.engine.fetch` (`fetch.load`),
which puts them into the explicit directory if one is given, else into the cache.

A third kind of data set is a visitor's own picture set (`dataset="images"`, `DataConfig.images` naming its file):
the app prepares it once (aecore.engine.images) and saves it with `save_picture_set` as one .npz of uint8 arrays and
a JSON description, read back without unpickling (`load`, `picture_set_about`).
"""
from __future__ import annotations

import gzip
import math
import os
import struct
import json
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from aecore.engine.fields import DATASETS, NOISE_KINDS, validate

ENV_VAR = "AECORE_DATA_DIR"
IMAGES = "images"                  # DataConfig.dataset of a visitor's saved picture set
CACHE_ENV = "AECORE_CACHE_DIR"
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
# Sub-folders tried inside every root; a flat root is MNIST's by default, Fashion-MNIST's only where named.
_SUBDIRS = {"mnist": ("", "mnist", "MNIST/raw"), "fashion-mnist": ("fashion-mnist", "FashionMNIST/raw")}
_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_COUNTS = {"train": 60_000, "test": 10_000}
CLASS_NAMES = {
    "mnist": tuple(str(i) for i in range(10)),
    "fashion-mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
}


class DataError(Exception):
    """Data missing, unreadable or malformed; the message says what and where, and how to fix it."""


@dataclass(frozen=True)
class DataConfig:
    """Which images a run trains and validates on."""
    dataset: str = "mnist"              # "mnist" or "fashion-mnist"; IMAGES for a saved picture set
    val_fraction: float = 0.0           # first fraction of train held out (Keras tutorial: 0.2); 0 = none
    classes: tuple[int, ...] = ()       # train/test only on these labels (conv tutorial: (0,)); () = all
    images: str = ""                    # with dataset IMAGES: the picture set's file (save_picture_set); else ""

    def __post_init__(self):
        object.__setattr__(self, "classes", tuple(int(c) for c in self.classes))
        if self.dataset != IMAGES and not self.images:
            validate(self, "data")   # the ranges of aecore.engine.fields, the one table of settings
            return
        if self.dataset != IMAGES or not isinstance(self.images, str) or not self.images:
            raise ValueError(f"DataConfig.images names a picture set's file exactly when dataset is {IMAGES!r}; "
                             f"got dataset {self.dataset!r} and images {self.images!r}")
        # A picture set may have more than ten classes: its labels are checked only for sign; the rest as usual.
        replace(self, dataset=DATASETS[0], images="", classes=())   # its __post_init__ validates the rest
        if any(c < 0 for c in self.classes):
            raise ValueError(f"DataConfig.classes must be class numbers >= 0, got {self.classes!r}")


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # (N, 28, 28) uint8
    labels: torch.Tensor  # (N,) int64

    def __len__(self):
        return len(self.labels)

    def take(self, mask_or_index) -> "Split":
        return Split(self.images[mask_or_index], self.labels[mask_or_index])


@dataclass(frozen=True)
class Data:
    train: Split
    val: Split | None   # the held-out part of train, if DataConfig.val_fraction > 0
    test: Split


# ---------------------------------------------------------------------------------------------- IDX files
def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into a uint8 array, checking magic number and sizes."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:  # zlib.error: corrupt deflate data
        raise DataError(f"{path}: cannot read ({e}); the file is truncated or not gzip data") from None
    if len(raw) < 4:
        raise DataError(f"{path}: only {len(raw)} bytes, too short to be an IDX file")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08 or ndim not in (1, 3):
        raise DataError(f"{path}: bad magic number 0x{raw[:4].hex()} (expected 0x00000801 for labels "
                        f"or 0x00000803 for images); not an MNIST-style IDX file")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: header cut short ({len(raw)} bytes)")
    shape = struct.unpack(">" + "I" * ndim, raw[4:header])
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise DataError(f"{path}: header promises {shape} = {expected:,} bytes of data, file holds "
                        f"{len(raw) - header:,}; the file is truncated or corrupt")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find_file(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def candidate_dirs(dataset: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Every folder searched for `dataset`, in order."""
    roots = []
    if data_dir is not None:
        roots.append((Path(data_dir), True))
    if os.environ.get(ENV_VAR):
        roots.append((Path(os.environ[ENV_VAR]), False))
    roots.append((Path("data"), False))
    dirs = []
    for root, explicit in roots:
        dirs += _layouts(root, dataset, explicit)
    dirs.append(cache_dir() / dataset)   # where aecore.engine.fetch puts downloads
    if dataset == "fashion-mnist":
        dirs += _layouts(DEBIAN_FASHION, dataset, explicit=True)
    return dirs


def _layouts(root: Path, dataset: str, explicit: bool) -> list[Path]:
    subs = _SUBDIRS[dataset]
    if explicit and "" not in subs:
        subs = ("",) + subs   # a folder named for this data set may hold the flat files
    return [root / s if s else root for s in subs]


def cache_dir() -> Path:
    """Where downloaded data sets live (aecore.engine.fetch puts them there): $AECORE_CACHE_DIR, else ~/.cache/aelab."""
    value = os.environ.get(CACHE_ENV)
    return Path(value).expanduser() if value else Path.home() / ".cache" / "aelab"


def load_split(dataset: str, split: str, data_dir=None) -> Split:
    """Load 'train' or 'test' of `dataset` as uint8 images (N, 28, 28) and int64 labels (N,)."""
    if dataset not in DATASETS:
        raise DataError(f"unknown data set {dataset!r}; choose one of {DATASETS}")
    found = _find_split(dataset, split, data_dir)
    if found is None:
        places = "\n".join(f"  - {p}" for p in candidate_dirs(dataset, data_dir))
        stems = ", ".join(s + "[.gz]" for s in _FILES[split])
        raise DataError(
            f"{dataset} {split} data not found. Looked for {stems} in:\n{places}\n"
            f"Fix: set {ENV_VAR} to the folder holding the IDX files (e.g. export {ENV_VAR}=/path/to/mnist), "
            f"pass --data-dir, or put them in ./data"
            + (" (Debian: apt-get install dataset-fashion-mnist)" if dataset == "fashion-mnist" else "")
            + "; or download it: python -m aecore.train --download, or the app's download button.")
    img_f, lab_f = found
    images, labels = read_idx(img_f), read_idx(lab_f)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"{img_f}: images have shape {images.shape}, expected (N, 28, 28)")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"{lab_f}: {len(labels):,} labels for {len(images):,} images in {img_f.name}")
    return Split(torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64)))


def found(dataset: str, data_dir=None) -> bool:
    """Whether both splits of `dataset` are somewhere in the searched folders."""
    return all(_find_split(dataset, s, data_dir) is not None for s in _FILES)


def _find_split(dataset: str, split: str, data_dir) -> tuple[Path, Path] | None:
    """The first searched folder holding both files of `split`: (images, labels), or None."""
    for folder in candidate_dirs(dataset, data_dir):
        img_f, lab_f = (_find_file(folder, stem) for stem in _FILES[split])
        if img_f and lab_f:
            return img_f, lab_f
    return None


def load(cfg: DataConfig, data_dir=None) -> Data:
    """Train/validation/test splits for `cfg`: class filter first, then the first val_fraction of train."""
    if cfg.dataset == IMAGES:
        train, test, _, _ = load_picture_set(cfg.images)
        return split(train, test, cfg)
    train = load_split(cfg.dataset, "train", data_dir)
    test = load_split(cfg.dataset, "test", data_dir)
    return split(train, test, cfg)


# ---------------------------------------------------------------------------------------------- picture sets
def save_picture_set(path: str | os.PathLike, data: Data, about: dict, masks: torch.Tensor | None = None) -> Path:
    """Write a prepared picture set: uint8 pictures (N, S, S) or (N, 3, S, S), int64 labels, the test pictures'
    defect masks (N_test, S, S) if any, and `about` (JSON: class names, side, colour, fit, source name...)."""
    path = Path(path)
    arrays = {"train_images": data.train.images, "train_labels": data.train.labels,
              "test_images": data.test.images, "test_labels": data.test.labels}
    if masks is not None:
        arrays["test_masks"] = masks
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:                # np.savez would add .npz to a name that lacks it
        np.savez(f, about=np.array(json.dumps(about)), **{k: v.numpy() for k, v in arrays.items()})
    tmp.replace(path)                         # never a half-written set under the real name
    return path


def load_picture_set(path: str | os.PathLike) -> tuple[Split, Split, torch.Tensor | None, dict]:
    """(train, test, test masks or None, about) of a file `save_picture_set` wrote; DataError when it is gone
    or not such a file (nothing in it is unpickled)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            about = json.loads(str(z["about"]))
            train, test = (Split(torch.from_numpy(z[f"{s}_images"]), torch.from_numpy(z[f"{s}_labels"]).long())
                           for s in ("train", "test"))
            masks = torch.from_numpy(z["test_masks"]) if "test_masks" in z.files else None
    except FileNotFoundError:
        raise DataError(f"picture set {path} not found: it was removed (its visitor's files are kept only while "
                        f"they use them)") from None
    except (OSError, KeyError, ValueError) as e:
        raise DataError(f"{path}: not a picture set saved by AE Lab ({e})") from None
    return train, test, masks, about


def picture_set_about(cfg: DataConfig) -> dict | None:
    """The description of the picture set a config names (None for MNIST and Fashion-MNIST, or a set whose file
    is gone): what a checkpoint of a run on it records."""
    if cfg.dataset != IMAGES:
        return None
    try:
        with np.load(cfg.images, allow_pickle=False) as z:
            return json.loads(str(z["about"]))
    except (OSError, KeyError, ValueError):
        return None


def split(train: Split, test: Split, cfg: DataConfig) -> Data:
    if cfg.classes:
        keep = torch.tensor(cfg.classes)
        train = train.take(torch.isin(train.labels, keep))
        test = test.take(torch.isin(test.labels, keep))
    val = None
    if cfg.val_fraction > 0:
        n_val = int(round(len(train) * cfg.val_fraction))
        train, val = train.take(slice(n_val, None)), train.take(slice(0, n_val))
    return Data(train, val, test)


# ---------------------------------------------------------------------------------------------- noise
def add_noise(x: torch.Tensor, kind: str, level: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Corrupt a batch of [0, 1] images; the clean batch stays the target.

    mask: zero a random `level` fraction of pixels (Chainer denoising cases);
    gaussian: add N(0, level^2) and clip to [0, 1] (Keras blog's denoising example).
    """
    if kind == "none" or level == 0:
        return x
    if kind == "mask":
        keep = torch.rand(x.shape, device=x.device, generator=generator) >= level
        return x * keep
    if kind == "gaussian":
        noise = torch.randn(x.shape, device=x.device, generator=generator)
        return (x + level * noise).clamp_(0.0, 1.0)
    raise ValueError(f"noise kind must be one of {NOISE_KINDS}, got {kind!r}")


# At deform level 1 each image turns by up to 15 degrees, grows or shrinks by up to 10 %, moves by up to 3 px and is
# bent by an elastic field: per-pixel uniform displacements smoothed by a Gaussian of 4 px and scaled by 34 px
# (Simard, Steinkraus and Platt 2003's values for MNIST), about 1.4 px at a pixel, in smooth swirls.
DEFORM_AT_1 = {"degrees": 15.0, "scale": 0.10, "pixels": 3.0, "elastic": 34.0, "smooth": 4.0}


def _gaussian_blur(field: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur (C, 1, H, W) maps with a separable Gaussian of `sigma` pixels, reflecting at the edges."""
    r = min(int(3 * sigma), field.shape[-1] - 1)
    t = torch.arange(-r, r + 1, device=field.device, dtype=field.dtype)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    field = F.conv2d(F.pad(field, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(field, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))


def deform(x: torch.Tensor, level: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Warp each image of a batch (B, 1, H, W) by its own random rotation, scaling, shift and elastic bend
    (bilinear; the uncovered edge is black); `level` scales all four (DEFORM_AT_1 gives level 1).

    As a corruption the clean batch stays the target: to rebuild the digit as it was written, the autoencoder's
    code must hold the digit's shape rather than its pose or the wobble of its strokes, which is what a
    classifier built on that code needs.
    """
    if level == 0:
        return x
    at1 = DEFORM_AT_1
    b, side, dev = len(x), x.shape[-1], x.device
    draw = lambda *shape: torch.rand(*shape, device=dev, generator=generator) * 2 - 1   # noqa: E731  U[-1, 1)
    angle = draw(b) * math.radians(level * at1["degrees"])
    scale = 1 + draw(b) * level * at1["scale"]
    unit = 2 / side                                                         # one pixel in [-1, 1] grid units
    dx, dy = draw(b) * level * at1["pixels"] * unit, draw(b) * level * at1["pixels"] * unit
    # The image turns by `angle` and scales by `scale` about its centre, then moves by (dx, dy). affine_grid
    # wants the inverse (where each output pixel reads from): A = R(-angle) / scale, and t = -A (dx, dy).
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, sin, -(cos * dx + sin * dy)], 1),
                         torch.stack([-sin, cos, -(-sin * dx + cos * dy)], 1)], 1)   # (B, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)        # (B, H, W, 2)
    if at1["elastic"]:
        bend = _gaussian_blur(draw(2 * b, 1, side, side), at1["smooth"])   # (2B, 1, H, W), x then y per image
        grid = grid + bend.view(b, 2, side, side).permute(0, 2, 3, 1) * level * at1["elastic"] * unit
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def to_float(images, dtype: torch.dtype = torch.float32, channel: bool = True) -> torch.Tensor:
    """Pictures as floats in [0, 1], a tensor on the pictures' device: numpy or torch; uint8 is divided by 255,
    floats are taken as they are (cast to `dtype`). With `channel`, grey pictures (N, S, S), (N, 1, S, S) or one
    (S, S), and colour ones (N, 3, S, S), come back (N, C, S, S) (ValueError for other shapes: a picture that is
    not square, a channel count other than 1 or 3); without, in the shape they came (a model reshapes its input to
    the (C, S, S) or C·S·S it reads). Three dimensions are always grey pictures, as MNIST's splits hold them."""
    x = images if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
    if channel:
        shape = tuple(x.shape)
        if (x.ndim not in (2, 3, 4) or shape[-1] != shape[-2] or shape[-1] == 0
                or (x.ndim == 4 and shape[1] not in (1, 3))):
            raise ValueError(f"images must have shape (N, 28, 28) as MNIST's, or in general (N, S, S), (N, 1, S, S) "
                             f"or (S, S) for grey pictures and (N, 3, S, S) for colour ones; got {shape}")
        if x.ndim < 4:
            x = x.reshape(1 if x.ndim == 2 else len(x), 1, shape[-1], shape[-1])   # (N, 1, S, S)
    if x.dtype == torch.uint8:     # one pass for float32 (the same numbers as converting, then dividing)
        return x.div(255.0) if dtype == torch.float32 else x.to(dtype).div_(255.0)
    return x.to(dtype)

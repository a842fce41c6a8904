"""The digit judge's network: a small convolutional MNIST classifier, its training, its predictions and its file.

Two 3x3 convolutions with max pooling and one dense layer (`DigitCNN`, sized by a frozen `ClassifierConfig`),
trained by `fit` on uint8 images with random shifts, zooms and turns, one record per epoch. `predict_proba` gives
class probabilities for any batch of images in [0, 1]. Saved as safetensors with JSON metadata (the config and
whatever figures the caller adds); `load` never unpickles and refuses any other file by name.

`aecore.labs.classifier` is the judge built on it: the shipped model, what it makes of a set of images, its
measured figures and the command line that trains and measures it.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save as st_save
from torch import nn

from aecore.engine import checkpoint
from aecore.engine.data import Split, to_float
from aecore.engine.models import batched, from_dict
from aecore.engine.train import TrainingDiverged

FORMAT = "aecore-classifier/1"
CLASSES, SIDE = 10, 28
BATCH = 1000                  # images per forward pass when predicting: bounded memory for any N


@dataclass(frozen=True)
class ClassifierConfig:
    """The network and its training; written into the saved file."""
    channels: tuple[int, int] = (16, 32)   # the two convolutions; 32, 64 costs 4x the time for ~0.1 point
    dense: int = 128              # the hidden dense layer on the (channels[1], 7, 7) features
    dropout: float = 0.25         # before the last layer, against memorising the training digits
    epochs: int = 10              # passes over the 60,000 images
    batch: int = 128              # images per step
    lr: float = 2e-3              # AdamW's starting rate, decayed to 0 along a cosine over all steps
    weight_decay: float = 1e-4    # AdamW's decay
    shift: float = 2.0            # each training image moves by up to this many pixels each way
    scale: float = 0.1            # ... is zoomed by a factor in [1 - scale, 1 + scale]
    rotate: float = 10.0          # ... and turned by up to this many degrees: digits drawn by hand lean
    seed: int = 0                 # the weights, batch order, augmentation and dropout

    def __post_init__(self):
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        rules = [("channels", len(self.channels) == 2 and min(self.channels) >= 1, "two sizes >= 1"),
                 ("dense", self.dense >= 1, ">= 1"), ("dropout", 0 <= self.dropout < 1, "in [0, 1)"),
                 ("epochs", self.epochs >= 1, ">= 1"), ("batch", self.batch >= 1, ">= 1"),
                 ("lr", self.lr > 0, "> 0"), ("weight_decay", self.weight_decay >= 0, ">= 0"),
                 ("shift", 0 <= self.shift <= 8, "from 0 to 8"), ("scale", 0 <= self.scale < 0.5, "in [0, 0.5)"),
                 ("rotate", 0 <= self.rotate <= 45, "from 0 to 45")]
        for name, ok, allowed in rules:
            if not ok:
                raise ValueError(f"ClassifierConfig.{name} must be {allowed}, got {getattr(self, name)!r}")

    @classmethod
    def from_dict(cls, d: dict) -> "ClassifierConfig":
        return from_dict(cls, d)


class DigitCNN(nn.Module):
    """Images (B, 1, 28, 28) in [0, 1] -> logits (B, 10)."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        c1, c2 = config.channels
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),    # (B, c1, 14, 14)
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))   # (B, c2, 7, 7)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c2 * 7 * 7, config.dense), nn.ReLU(),
                                  nn.Dropout(config.dropout), nn.Linear(config.dense, CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build(config: ClassifierConfig) -> DigitCNN:
    """A fresh network, the same weights for the same seed, the global random state left alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return DigitCNN(config)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------- training
def augment(x: torch.Tensor, cfg: ClassifierConfig, g: torch.Generator) -> torch.Tensor:
    """Each image of a batch (B, 1, 28, 28) shifted, zoomed and turned by its own random amounts (bilinear,
    black outside)."""
    if cfg.shift == cfg.scale == cfg.rotate == 0:
        return x
    b = len(x)
    u = lambda: 2 * torch.rand(b, generator=g) - 1   # noqa: E731  uniform in [-1, 1)
    angle, zoom = torch.deg2rad(cfg.rotate * u()), 1 + cfg.scale * u()
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    # theta maps output to input coordinates in [-1, 1]: a digit zoomed by z samples the input at 1/z; one
    # pixel is 2/28 of that range.
    tx, ty = (2 * cfg.shift / SIDE) * u(), (2 * cfg.shift / SIDE) * u()
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)   # (B, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@dataclass(frozen=True)
class Epoch:
    epoch: int
    epochs: int
    loss: float                  # mean training cross-entropy over the epoch (augmented images, dropout on)
    test_accuracy: float | None  # on the test split when one was given
    seconds: float               # since training began


def fit(model: DigitCNN, train: Split, test: Split | None = None) -> Iterator[Epoch]:
    """Train `model` in place on uint8 images (N, 28, 28) with `model.config`; yields one record per epoch."""
    cfg = model.config
    g = torch.Generator().manual_seed(cfg.seed)
    n = len(train)
    steps = cfg.epochs * math.ceil(n / cfg.batch)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    # channels_last makes the CPU convolutions about 1.5x faster; the weights go back to the usual layout after
    model.to(memory_format=torch.channels_last).train()
    t0 = time.perf_counter()
    try:
        with torch.random.fork_rng(devices=[]):   # dropout draws from the global generator
            torch.manual_seed(cfg.seed)
            for epoch in range(1, cfg.epochs + 1):
                order, total = torch.randperm(n, generator=g), 0.0
                for i in range(0, n, cfg.batch):
                    idx = order[i:i + cfg.batch]
                    x = augment(to_float(train.images[idx]), cfg, g).contiguous(memory_format=torch.channels_last)
                    loss = F.cross_entropy(model(x), train.labels[idx])
                    if not math.isfinite(loss.item()):
                        raise TrainingDiverged(f"the classifier's loss became {loss.item()} in epoch {epoch}; "
                                               f"try a lower learning rate")
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    total += loss.item() * len(idx)
                acc = accuracy(model, test) if test is not None else None
                yield Epoch(epoch, cfg.epochs, round(total / n, 5), acc, round(time.perf_counter() - t0, 1))
    finally:
        model.to(memory_format=torch.contiguous_format)


# ---------------------------------------------------------------------------------------------- predicting
def predict_proba(model: nn.Module, images) -> np.ndarray:
    """Class probabilities (N, 10), float64, for images (N, 28, 28) or (N, 1, 28, 28) in [0, 1] (a numpy array
    or tensor; uint8 is scaled by 1/255) or one image (28, 28) -> (1, 10). Raises ValueError for other shapes,
    NaN or values outside [0, 1]."""
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images).detach().cpu()
    if x.dtype != torch.uint8 and not x.dtype.is_floating_point:
        raise ValueError(f"images must be floats in [0, 1] or uint8 in 0..255; got dtype {x.dtype}")
    x = to_float(x)                                       # (N, C, S, S); ValueError for other shapes
    if tuple(x.shape[1:]) != (1, 28, 28):                 # the classifier reads MNIST digits only
        raise ValueError(f"images must have shape (N, 28, 28), (N, 1, 28, 28) or (28, 28); got {tuple(x.shape)}")
    if len(x) and not torch.isfinite(x).all():
        raise ValueError("images hold NaN or infinite values")
    if len(x) and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"image values must lie in [0, 1] (uint8: 0..255); got {x.min():.3g} .. {x.max():.3g}")
    probs = batched(model, lambda b: torch.softmax(model(b).double(), 1), x, BATCH)
    return probs.reshape(-1, CLASSES).double().numpy()


def accuracy(model: nn.Module, split: Split) -> float:
    """Share of a split's uint8 images whose most likely class is their label."""
    return round(float((predict_proba(model, split.images).argmax(1) == split.labels.numpy()).mean()), 5)


# ---------------------------------------------------------------------------------------------- files
class ClassifierFileError(ValueError):
    """The file is missing or not a usable digit classifier; the message says which and why."""


def save(path, model: DigitCNN, meta: dict) -> Path:
    """Weights as safetensors (float32), `meta` (JSON-able) and the config as JSON beside them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    blob = st_save(tensors, metadata={"format": FORMAT,
                                      "classifier": json.dumps({**meta, "config": asdict(model.config)})})
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(blob)
    tmp.replace(path)   # a crash mid-write never leaves half a file under the real name
    return path


def load(source) -> tuple[DigitCNN, dict]:
    """A saved classifier from a path or bytes: (model on the CPU in eval mode, meta with meta["config"] a
    ClassifierConfig). Raises ClassifierFileError for anything else: pickles, other safetensors files, truncated
    or corrupt files, tensors that do not fit the config."""
    name, blob, header = checkpoint.read(source, "classifier file", ClassifierFileError)
    info = header.get("__metadata__") or {}
    if info.get("format") != FORMAT:
        raise ClassifierFileError(f"{name}: a safetensors file, but not a digit classifier (format "
                                  f"{info.get('format')!r}, expected {FORMAT!r})")
    try:
        meta = json.loads(info.get("classifier", ""))
        meta["config"] = ClassifierConfig.from_dict(meta["config"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ClassifierFileError(f"{name}: invalid metadata ({e})") from None
    model = DigitCNN(meta["config"])
    checkpoint.fill(model, blob, name, "the config", ClassifierFileError)
    return model.eval(), meta

"""Few-label classification, the experiment: an autoencoder-pretrained encoder against the same network from
random weights, both fine-tuned on the same few labelled images.

A denoising autoencoder learns from every training image without its label (the project's own `fit` loop): it
rebuilds each digit from a copy with half its pixels masked that is also turned, scaled, moved and bent a little
(`data.deform`), so its code keeps the digit's shape rather than its pose. Its encoder plus a linear softmax head
is then trained on N labelled images, N/10 of each digit drawn by seed: the "pretrained" arm. The "random" arm is
the same encoder and head built from random weights and trained on the same N images by the same procedure
(steps, batch, shifts if any, head warm-up). Each row reports test accuracy, mean and sample standard deviation
over the seeds. N equal to the whole training set takes every image as it is (MNIST's digits are not balanced:
5,421 fives, 6,742 ones), so there the seeds differ only in weights and batch order.

`aecore.labs.pretrain` runs it from the command line or as a run of the run service (the page's comparison),
keeps its results file and draws its figure.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aecore.engine import checkpoint
from aecore.engine.data import Data, DataConfig, to_float
from aecore.engine.models import Autoencoder, ModelConfig, batched, build, from_dict
from aecore.engine.train import TrainConfig, TrainingDiverged, evaluate, fit

DEFAULT_LABELS = (100, 300, 1000, 60_000)
CLASSES = 10


@dataclass(frozen=True)
class PretrainConfig:
    """Every choice of the experiment, for both arms; written into the results."""
    hidden: tuple[int, ...] = (512, 256, 128)  # encoder 784-512-256-128: codes of 16 and 32 did 1-3 points worse
    batch_norm: bool = True           # batch norm in the autoencoder: it trains faster and codes cluster better
    ae_epochs: int = 20               # autoencoder passes over the 60,000 unlabelled images
    ae_batch: int = 256               # large batches keep an epoch near 10 s on two CPU cores
    ae_lr: float = 1e-3               # Adam's usual rate; the autoencoder loss is stable with it
    noise: str = "mask"               # denoising: the code must hold the digit's shape, not single pixels
    noise_level: float = 0.5          # half the pixels masked: stronger corruption gave better few-label codes
    deform: float = 1.0               # and each input turned, scaled, moved and bent (data.DEFORM_AT_1): to
                                      # rebuild the digit as written, the code keeps its shape and drops its pose
    head_steps: int = 100             # the head alone first (encoder frozen), so fine-tuning starts from a sane head
    steps: int = 400                  # optimiser steps on the labelled images, whatever N is
    batch: int = 256                  # labelled images per step (all of them when N is smaller)
    lr: float = 1e-3                  # one Adam rate for every layer in both arms: only the start differs
    shift: int = 0                    # labelled images move by up to this many pixels each step, in both arms;
                                      # none by default, as in the references (the README measures 2 as well)
    weight_decay: float = 0.0         # AdamW decay; none was needed at these step counts
    seed: int = 0                     # the autoencoder's weights and batch order

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        rules = [("hidden", len(self.hidden) >= 1 and all(h >= 1 for h in self.hidden), "one or more sizes >= 1"),
                 ("ae_epochs", self.ae_epochs >= 1, ">= 1"), ("ae_batch", self.ae_batch >= 1, ">= 1"),
                 ("head_steps", self.head_steps >= 0, ">= 0"), ("steps", self.steps >= 1, ">= 1"),
                 ("batch", self.batch >= 1, ">= 1"), ("lr", self.lr > 0, "> 0"),
                 ("shift", 0 <= self.shift <= 8, "from 0 to 8"),
                 ("weight_decay", self.weight_decay >= 0, ">= 0")]
        for name, ok, allowed in rules:
            if not ok:
                raise ValueError(f"PretrainConfig.{name} must be {allowed}, got {getattr(self, name)!r}")
        self.ae_model(), self.ae_train()   # their own checks name any bad value

    def ae_model(self) -> ModelConfig:
        return ModelConfig(family="deep", hidden=self.hidden, batch_norm=self.batch_norm, activation="relu",
                           output="sigmoid", loss="bce")

    def ae_train(self, device: str = "cpu") -> TrainConfig:
        return TrainConfig(epochs=self.ae_epochs, batch_size=self.ae_batch, lr=self.ae_lr, noise=self.noise,
                           noise_level=self.noise_level, deform=self.deform, seed=self.seed, device=device,
                           log_every=50)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PretrainConfig":
        return from_dict(cls, d)


# A smoke configuration: the whole pipeline in seconds, for tests and `--quick`; its figures mean little.
QUICK = PretrainConfig(ae_epochs=1, head_steps=10, steps=40)


# ---------------------------------------------------------------------------------------------- labelled draw
def draw_labelled(labels: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Indices of N labelled images: N/10 of each digit, drawn without replacement by `seed`, digit by digit.

    N equal to the number of images takes them all (in order). Raises ValueError for an N that is not a
    positive multiple of 10, or that asks for more images of a digit than there are.
    """
    total = len(labels)
    if n == total:
        return torch.arange(total)
    if n <= 0 or n % CLASSES:
        raise ValueError(f"the number of labels must be a positive multiple of {CLASSES} (N/{CLASSES} per digit) "
                         f"or all {total:,} training images; got {n}")
    per = n // CLASSES
    counts = torch.bincount(labels, minlength=CLASSES)
    short = [c for c in range(CLASSES) if counts[c] < per]
    if short:
        raise ValueError(f"{n} labels need {per:,} images of each digit, but digit {short[0]} has only "
                         f"{int(counts[short[0]]):,} training images; use at most "
                         f"{CLASSES * int(counts.min()):,} or all {total:,}")
    g = torch.Generator().manual_seed(seed)
    picks = []
    for c in range(CLASSES):
        where = torch.nonzero(labels == c).flatten()
        picks.append(where[torch.randperm(len(where), generator=g)[:per]].sort().values)
    return torch.cat(picks)   # (N,) digit 0's first, then digit 1's, ...


def shift(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Move each image of a batch (B, 1, 28, 28) by its own random offset of up to k pixels each way; the
    uncovered edge is black."""
    if k == 0:
        return x
    b, side = len(x), x.shape[-1]
    padded = F.pad(x[:, 0], (k, k, k, k))                                    # (B, 28 + 2k, 28 + 2k)
    dy, dx = (torch.randint(0, 2 * k + 1, (b,), generator=generator) for _ in range(2))
    rows = (dy[:, None] + torch.arange(side))[:, :, None]                     # (B, 28, 1)
    cols = (dx[:, None] + torch.arange(side))[:, None, :]                     # (B, 1, 28)
    return padded[torch.arange(b)[:, None, None], rows, cols].unsqueeze(1)   # (B, 1, 28, 28)


# ---------------------------------------------------------------------------------------------- the classifier
class Classifier(nn.Module):
    """An autoencoder's encoder and a linear softmax head: images (B, 1, 28, 28) -> logits (B, 10)."""

    def __init__(self, encoder: nn.Sequential, code: int, seed: int = 0):
        super().__init__()
        self.encoder = encoder
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.head = nn.Linear(code, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x.reshape(len(x), -1)))   # (B, 784) -> (B, code) -> (B, 10)


def classifier(cfg: PretrainConfig, seed: int, autoencoder: Autoencoder | None = None) -> Classifier:
    """The pretrained arm (a copy of `autoencoder`'s encoder) or, without one, the random arm: the same encoder
    built from random weights. The head is random in both, from the same seed."""
    if autoencoder is None:
        encoder = build(cfg.ae_model(), seed=10_000 + seed).encoder
    else:
        if autoencoder.config.family != "deep" or autoencoder.config.hidden != cfg.hidden:
            raise ValueError(f"the autoencoder's encoder ({autoencoder.config.family}, {autoencoder.config.hidden})"
                             f" is not the configured one (deep, {cfg.hidden})")
        encoder = copy.deepcopy(autoencoder.encoder).cpu()
    return Classifier(encoder, cfg.hidden[-1], seed)


def fine_tune(net: Classifier, images: torch.Tensor, labels: torch.Tensor, cfg: PretrainConfig,
              seed: int) -> Classifier:
    """Train `net` in place on uint8 images (N, 28, 28) and their labels: `head_steps` on the head alone with
    the encoder frozen (eval mode), then `steps` on every layer. Both arms go through exactly this."""
    for _ in fine_tune_steps(net, images, labels, cfg, seed):
        pass
    return net


def fine_tune_steps(net: Classifier, images: torch.Tensor, labels: torch.Tensor, cfg: PretrainConfig,
                    seed: int) -> Iterator[int]:
    """`fine_tune`, one optimiser step at a time: yields the steps done so far (1 .. head_steps + steps), so that
    a run can show its progress and stop between two steps."""
    device = next(net.parameters()).device
    g = torch.Generator().manual_seed(seed)
    n, bs = len(labels), min(cfg.batch, len(labels))
    order, at = torch.randperm(n, generator=g), 0

    def batch():
        nonlocal order, at
        if bs == n:
            idx = torch.arange(n)
        else:
            if at + bs > n:
                order, at = torch.randperm(n, generator=g), 0
            idx, at = order[at:at + bs], at + bs
        x = shift(to_float(images[idx]), cfg.shift, g)
        return x.to(device), labels[idx].to(device)

    def train(params: list[dict], steps: int, done: int):
        opt = torch.optim.AdamW(params, weight_decay=cfg.weight_decay)
        for i in range(steps):
            x, y = batch()
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            yield done + i + 1
        if not math.isfinite(loss.item()):
            raise TrainingDiverged(f"the classifier's loss became {loss.item()}; try a lower learning rate")

    net.train()
    if cfg.head_steps:
        net.encoder.eval().requires_grad_(False)
        yield from train([{"params": net.head.parameters(), "lr": cfg.lr}], cfg.head_steps, 0)
        net.encoder.train().requires_grad_(True)
    yield from train([{"params": net.parameters(), "lr": cfg.lr}], cfg.steps, cfg.head_steps)


def accuracy(net: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 2000) -> float:
    """Fraction of uint8 images (N, 28, 28) whose most likely class is their label, in eval mode."""
    guesses = batched(net, lambda x: net(x).argmax(1), images, batch_size)   # (N,)
    return (guesses == labels).sum().item() / max(len(labels), 1)


# ---------------------------------------------------------------------------------------------- pretraining
def _ae_key(cfg: PretrainConfig, data: Data) -> str:
    """Names a cached autoencoder by what made it: its part of the config and the training images themselves."""
    h = hashlib.sha256(json.dumps([cfg.ae_model().to_dict(), cfg.ae_train().to_dict()]).encode())
    h.update(data.train.images.numpy().tobytes())
    return h.hexdigest()[:16]


def pretrain(data: Data, cfg: PretrainConfig, cache: Path | None = None, device: str = "cpu",
             log: Callable[[str], None] = lambda s: None) -> tuple[Autoencoder, dict]:
    """The denoising autoencoder on every training image, labels unused; from `cache` when it holds one made by
    the same config from the same images. Returns (model on the CPU, {"source", "seconds", "test_loss"})."""
    steps = pretrain_steps(data, cfg, cache, device)
    while True:
        try:
            m = next(steps)
        except StopIteration as end:
            model, info = end.value
            if info["source"] != "trained":
                log(f"autoencoder from the cache: {info['source']}")
            return model, info
        if m.epoch_end:
            log(f"autoencoder epoch {m.epoch}/{cfg.ae_epochs}: loss {m.epoch_loss:.4f} ({m.elapsed:.0f} s)")


def pretrain_steps(data: Data, cfg: PretrainConfig, cache: Path | None = None, device: str = "cpu"):
    """`pretrain` as a generator: yields `fit`'s Metrics while it trains (none from the cache) and returns
    (model, info), so that a run can show the autoencoder's progress and stop between two steps."""
    path = cache / f"ae-{_ae_key(cfg, data)}.safetensors" if cache else None
    if path is not None and path.is_file():
        model, meta = checkpoint.load(path)
        return model, {"source": str(path), "seconds": meta["pretrain"]["seconds"],
                       "test_loss": meta["pretrain"]["test_loss"]}
    model = build(cfg.ae_model(), seed=cfg.seed)
    t = time.perf_counter()
    yield from fit(model, data, cfg.ae_train(device))
    seconds = time.perf_counter() - t
    model.cpu().eval()
    info = {"source": "trained", "seconds": round(seconds, 1), "test_loss": round(evaluate(model, data.test.images), 5)}
    if path is not None:
        checkpoint.save(path, model, {"name": "pretrain-autoencoder", "train": cfg.ae_train(device),
                                      "data": DataConfig(), "pretrain": info})
    return model, info


def load_autoencoder(path, cfg: PretrainConfig) -> tuple[Autoencoder, dict]:
    """An autoencoder checkpoint to use as the pretrained encoder; its encoder must be the configured one."""
    model, meta = checkpoint.load(path)
    if model.config.family != "deep" or model.config.hidden != cfg.hidden:
        raise ValueError(f"{path}: a {model.config.family} autoencoder with sizes {model.config.hidden}; the "
                         f"experiment needs the deep family with sizes {cfg.hidden}")
    return model, {"source": str(path), "seconds": None, "test_loss": None}


# ---------------------------------------------------------------------------------------------- the table
def _mean_std(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def table(data: Data, autoencoder: Autoencoder, cfg: PretrainConfig, labels=DEFAULT_LABELS, seeds: int = 5,
          device: str = "cpu", log: Callable[[str], None] = lambda s: None) -> Iterator[dict]:
    """One row per N: both arms trained on the same N images per seed (seeds 0 .. seeds-1), test accuracy."""
    for n in labels:
        draw_labelled(data.train.labels, n, 0)   # a bad N fails before any training
    for n in labels:
        t = time.perf_counter()
        accs = {"pretrained": [], "random": []}
        for seed in range(seeds):
            idx = draw_labelled(data.train.labels, n, seed)
            images, targets = data.train.images[idx], data.train.labels[idx]
            for arm, ae in (("pretrained", autoencoder), ("random", None)):
                net = classifier(cfg, seed, ae).to(device)
                fine_tune(net, images, targets, cfg, seed)
                accs[arm].append(round(accuracy(net, data.test.images, data.test.labels), 4))
            log(f"N={n} seed {seed}: pretrained {accs['pretrained'][-1]:.4f}, random {accs['random'][-1]:.4f}")
        yield row(n, accs, time.perf_counter() - t)


def row(n: int, accs: dict[str, list[float]], seconds: float) -> dict:
    """A table row: N, each arm's mean and sample std over its seeds, the per-seed accuracies, the time."""
    (pm, ps), (rm, rs) = _mean_std(accs["pretrained"]), _mean_std(accs["random"])
    return {"labels": n, "pretrained_mean": round(pm, 4), "pretrained_std": round(ps, 4),
            "random_mean": round(rm, 4), "random_std": round(rs, 4), "seeds": len(accs["pretrained"]),
            "pretrained": accs["pretrained"], "random": accs["random"], "seconds": round(seconds, 1)}

"""The digit judge: a small convolutional MNIST classifier, trained once and shipped, that judges any generator's
samples (inception score, share of confident verdicts, class balance) and tells what a drawing is.

Two 3x3 convolutions with max pooling and one dense layer, trained on the 60,000 training images with random
shifts, zooms and turns, measured on the 10,000 test images and on the drawing set of `aecore.labs.drawset` after the
Draw page's preprocessing (`aecore.engine.preprocess.to_mnist`). Saved as safetensors with JSON metadata (config, the
measured figures, date, training seconds); loading never unpickles and refuses any other file by name.

    python -m aecore.labs.classifier [--epochs N] [--data-dir D] [--out PATH] [--seed S] [--threads N]
    python -m aecore.labs.classifier --evaluate [--model PATH] [--data-dir D] [--threads N]

stdout: training prints a final JSON object (each epoch's JSON line goes to stderr); --evaluate prints one JSON
object of figures. Bad options exit 2, missing data or model exit 1.
"""
from __future__ import annotations

import argparse
import datetime
import functools
import json
import math
import sys
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
from aecore.argv import OneLineParser, positive_int
from aecore.engine.data import DataConfig, DataError, Split, load as load_data, load_split, to_float
from aecore.engine.models import from_dict, inference
from aecore.engine.train import TrainingDiverged

FORMAT = "aecore-classifier/1"
MODELS_DIR = Path(__file__).resolve().parents[1] / "models" / "classifier"
SHIPPED = MODELS_DIR / "digits-cnn.safetensors"
CLASSES, SIDE = 10, 28
BATCH = 1000                  # images per forward pass when predicting: bounded memory for any N
DRAWINGS_PER_DIGIT = 50       # enlarged MNIST and stroke digits of each class in the measured drawing set
MISTAKES = 20                 # wrongly read drawings listed per kind


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


# ---------------------------------------------------------------------------------------------- judging
def predict_proba(model: nn.Module, images) -> np.ndarray:
    """Class probabilities (N, 10), float64, for images (N, 28, 28) or (N, 1, 28, 28) in [0, 1] (a numpy array
    or tensor; uint8 is scaled by 1/255) or one image (28, 28) -> (1, 10). Raises ValueError for other shapes,
    NaN or values outside [0, 1]."""
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images).detach().cpu()
    shape = tuple(x.shape)
    if x.ndim == 4 and shape[1] == 1:
        x = x[:, 0]
    elif x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or tuple(x.shape[1:]) != (SIDE, SIDE):
        raise ValueError(f"images must have shape (N, 28, 28), (N, 1, 28, 28) or (28, 28); got {shape}")
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    elif x.dtype.is_floating_point:
        x = x.float()
    else:
        raise ValueError(f"images must be floats in [0, 1] or uint8 in 0..255; got dtype {x.dtype}")
    if len(x) and not torch.isfinite(x).all():
        raise ValueError("images hold NaN or infinite values")
    if len(x) and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"image values must lie in [0, 1] (uint8: 0..255); got {x.min():.3g} .. {x.max():.3g}")
    device = next(model.parameters()).device
    out = []
    with inference(model):
        for i in range(0, len(x), BATCH):
            out.append(torch.softmax(model(x[i:i + BATCH, None].to(device)).double(), 1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, CLASSES))


def accuracy(model: nn.Module, split: Split) -> float:
    """Share of a split's uint8 images whose most likely class is their label."""
    return round(float((predict_proba(model, split.images).argmax(1) == split.labels.numpy()).mean()), 5)


def _check_probs(probs) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or len(p) == 0 or p.shape[1] < 2:
        raise ValueError(f"probs must be a table (N, classes) with N >= 1 rows and 2 or more classes; got shape "
                         f"{p.shape}")
    if not np.isfinite(p).all() or p.min() < 0 or np.abs(p.sum(1) - 1).max() > 1e-4:
        raise ValueError("probs rows must be probabilities: finite, >= 0, each row summing to 1")
    return p


def inception_score(probs) -> float:
    """exp(mean over rows of KL(p(y|x) || p(y))), p(y) the mean row: from 1 (every row alike) to the number of
    classes (each row sure of one class, the classes equally often)."""
    p = _check_probs(probs)
    marginal = p.mean(0)
    safe = lambda a: np.log(np.where(a > 0, a, 1.0))   # noqa: E731  0 log 0 = 0
    return float(np.exp((p * (safe(p) - safe(marginal)[None])).sum(1).mean()))


def judge(probs, confident: float = 0.9) -> dict:
    """What the classifier makes of a set of images from their probabilities (N, 10)."""
    if not 0 < confident <= 1:
        raise ValueError(f"confident must be in (0, 1], got {confident!r}")
    p = _check_probs(probs)
    counts = np.bincount(p.argmax(1), minlength=p.shape[1])
    return {"n": len(p), "confident_share": float((p.max(1) >= confident).mean()),
            "class_counts": counts.tolist(), "class_share": (counts / len(p)).tolist(),
            "inception_score": inception_score(p)}


def drawing_accuracy(model: nn.Module, drawings) -> dict:
    """The drawing set through the Draw page's preprocessing and the classifier: accuracy and count per digit
    kind, the share of confident (>= 0.9) verdicts per kind (non-digits included: a judge sure of a letter is
    fooled), and per digit kind the first digits it gets wrong ("what -> verdict")."""
    from aecore.labs import drawset
    from aecore.engine.preprocess import to_mnist
    probs = predict_proba(model, np.stack([to_mnist(d.image) for d in drawings]))
    kinds, verdict = np.array([d.kind for d in drawings]), probs.argmax(1)
    # every digit drawing's description starts with its digit ("7 in DejaVuSans", "7: test image 0", ...)
    digit = np.array([int(d.what[0]) if d.is_digit else -1 for d in drawings])
    present = [k for k in drawset.DIGIT_KINDS + drawset.OTHER_KINDS if (kinds == k).any()]
    return {"accuracy_by_kind": {k: round(float((verdict[kinds == k] == digit[kinds == k]).mean()), 4)
                                 for k in present if k in drawset.DIGIT_KINDS},
            "confident_by_kind": {k: round(float((probs[kinds == k].max(1) >= 0.9).mean()), 4) for k in present},
            "count_by_kind": {k: int((kinds == k).sum()) for k in present},
            "mistakes": {k: [f"{drawings[i].what} -> {verdict[i]}" for i in np.flatnonzero(
                (kinds == k) & (verdict != digit))][:MISTAKES] for k in present if k in drawset.DIGIT_KINDS}}


def measure(model: nn.Module, test: Split) -> dict:
    """The figures stored with the model and printed by --evaluate (the drawing set is always seed 0's)."""
    from aecore.labs import drawset
    probs = predict_proba(model, test.images)
    j = judge(probs)
    return {"test_accuracy": round(float((probs.argmax(1) == test.labels.numpy()).mean()), 5),
            "test_inception_score": round(j["inception_score"], 4), "test_confident_share": j["confident_share"],
            "test_images": len(test),
            "drawings": drawing_accuracy(model, drawset.build(test, per_digit=DRAWINGS_PER_DIGIT, seed=0))}


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


def sureness(meta: dict) -> str | None:
    """How sure the classifier is of real digits and of things that are not digits, in words, from the figures
    its file holds (`--evaluate` on the drawing set): "98 % of real test digits, but also 54 % of letters, …";
    None when it was not measured."""
    sure = (meta.get("drawings") or {}).get("confident_by_kind")
    if not sure or meta.get("test_confident_share") is None:
        return None
    others = [f"{sure[k]:.0%} of {k}s" for k in ("letter", "symbol", "shape", "scribble") if k in sure]
    return f"{meta['test_confident_share']:.0%} of real test digits, but also " + ", ".join(others)


def digit_classifier(path=None) -> tuple[DigitCNN, dict]:
    """The shipped classifier (or the one at `path`): (model on the CPU in eval mode, meta), loaded once per
    process and shared, so callers must not train or change it."""
    path = Path(path or SHIPPED)
    if not path.is_file():
        raise ClassifierFileError(f"no digit classifier at {path}; train one with: "
                                  f"python -m aecore.labs.classifier --out {path}")
    return _cached(str(path.resolve()), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _cached(path: str, mtime_ns: int) -> tuple[DigitCNN, dict]:   # mtime: a retrained file is read again
    model, meta = load(path)
    return model.requires_grad_(False), meta


# ---------------------------------------------------------------------------------------------- command line
def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m aecore.labs.classifier", description="Train or measure the digit classifier.")
    p.add_argument("--epochs", type=positive_int, help=f"passes over the training images (default "
                                                    f"{ClassifierConfig.epochs})")
    p.add_argument("--seed", type=int, help="weights, batch order and augmentation (default 0)")
    p.add_argument("--data-dir", help="folder with the IDX files (else $AECORE_DATA_DIR, ./data, the cache)")
    p.add_argument("--out", help="where the trained model goes (default runs/digits-cnn.safetensors)")
    p.add_argument("--threads", type=positive_int, default=1,
                   help="CPU threads for torch (default 1: on a busy machine more threads wait on each other)")
    p.add_argument("--evaluate", action="store_true", help="measure a saved model instead of training one")
    p.add_argument("--model", help=f"the model --evaluate measures (default {_shown(SHIPPED)})")
    return p


def _shown(path: Path) -> str:
    """A path inside the repository relative to its root (as the README writes it), any other as given."""
    try:
        return str(Path(path).resolve().relative_to(MODELS_DIR.parents[1]))
    except ValueError:
        return str(path)


def main(argv=None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.evaluate and (args.epochs or args.seed is not None or args.out):
        p.error("--evaluate measures a saved model: leave out --epochs, --seed and --out (name it with --model)")
    if args.model and not args.evaluate:
        p.error("--model names the model --evaluate measures; add --evaluate")
    previous = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _evaluate(args) if args.evaluate else _train(args)
    finally:
        torch.set_num_threads(previous)   # main() may be called in-process (tests): leave torch as it was


def _fail(message) -> int:
    print(f"aecore.labs.classifier: {message}", file=sys.stderr)
    return 1


def _train(args) -> int:
    cfg = ClassifierConfig(epochs=args.epochs or ClassifierConfig.epochs, seed=args.seed or 0)
    try:
        data = load_data(DataConfig(), args.data_dir)
    except DataError as e:
        return _fail(e)
    model = build(cfg)
    print(f"digit classifier: {count_params(model):,} parameters, {len(data.train):,} training images, "
          f"{args.threads} thread(s)", file=sys.stderr, flush=True)
    history = []
    try:
        for e in fit(model, data.train, data.test):
            history.append(asdict(e))
            print(json.dumps(history[-1]), file=sys.stderr, flush=True)
    except TrainingDiverged as e:
        return _fail(e)
    figures = measure(model, data.test)
    meta = {**figures, "train_seconds": history[-1]["seconds"], "parameters": count_params(model),
            "train_images": len(data.train), "threads": args.threads, "torch": torch.__version__,
            "date": datetime.datetime.now().isoformat(timespec="seconds"), "history": history}
    path = save(args.out or "runs/digits-cnn.safetensors", model, meta)
    print(json.dumps({"test_accuracy": figures["test_accuracy"], "test_inception_score":
                      figures["test_inception_score"], "drawing_accuracy": figures["drawings"]["accuracy_by_kind"],
                      "seconds": meta["train_seconds"], "parameters": meta["parameters"],
                      "bytes": path.stat().st_size, "path": _shown(path)}), flush=True)
    return 0


def _evaluate(args) -> int:
    path = Path(args.model) if args.model else SHIPPED
    try:
        model, meta = load(path)
        test = load_split("mnist", "test", args.data_dir)
    except (ClassifierFileError, DataError) as e:
        return _fail(e)
    t = time.perf_counter()
    figures = measure(model, test)
    print(json.dumps({"model": _shown(path), **figures, "parameters": count_params(model),
                      "bytes": path.stat().st_size, "config": asdict(meta["config"]),
                      "train_seconds": meta.get("train_seconds"), "trained": meta.get("date"),
                      "measure_seconds": round(time.perf_counter() - t, 1), "torch": torch.__version__,
                      "date": datetime.datetime.now().isoformat(timespec="seconds")}, indent=1), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

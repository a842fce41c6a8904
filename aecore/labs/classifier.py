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

The network, its training and its file format are `aecore.labs.digitcnn`; this module is the judge built on it
(the shipped model, `judge`, `drawing_accuracy`, `measure`) and its command line. The network's names are
importable from here too, as the pages and the tests do (`classifier.build`, `classifier.load`, ...).
"""
from __future__ import annotations

import argparse
import datetime
import functools
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from aecore.argv import OneLineParser, positive_int
from aecore.engine.data import DataConfig, DataError, Split, load as load_data, load_split
from aecore.engine.train import TrainingDiverged
from aecore.labs.digitcnn import (BATCH, CLASSES, FORMAT, SIDE, ClassifierConfig, ClassifierFileError,  # noqa: F401
                                  DigitCNN, Epoch, accuracy, augment, build, count_params, fit, load,
                                  predict_proba, save)

MODELS_DIR = Path(__file__).resolve().parents[2] / "models" / "classifier"
SHIPPED = MODELS_DIR / "digits-cnn.safetensors"
DRAWINGS_PER_DIGIT = 50       # enlarged MNIST and stroke digits of each class in the measured drawing set
MISTAKES = 20                 # wrongly read drawings listed per kind


# ---------------------------------------------------------------------------------------------- judging
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


# ---------------------------------------------------------------------------------------------- the shipped model
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

"""One-class anomaly detection: train on the "normal" classes only, score every test image, measure with ROC-AUC.

A recipe is the model and training that make a detector; `score` turns a trained model and images into one
number per image (higher = more anomalous: the reconstruction's squared error where it is worst, computable from
a checkpoint alone); `auc`, `roc_curve`, `confusion` and `threshold_for` say how well a score separates normal from anomalous.
A detector's checkpoint stores its recipe, normal classes, test AUCs and the quantiles of its scores on held-out
normal images (for thresholds by false-alarm rate), so the app needs no data to use one.

The digit detector answers the Draw page's "is this a digit at all?": the recommended recipe trained on all ten
MNIST digits, with a verdict threshold (the score above which VERDICT_FALSE_ALARM of held-out digits lie once
drawn on the canvas and brought back) and its figures on the drawing set of `aecore.labs.drawset` stored in its
checkpoint.

    python -m aecore.labs.anomaly --dataset mnist --normal 0 [--recipe NAME] [--epochs N] [--out PATH] [--device D]
    python -m aecore.labs.anomaly --all [--recipe NAME]      # the ten one-class tasks, one JSON line each, then the mean
    python -m aecore.labs.anomaly --digits [--out PATH]      # the digit detector, measured on the drawing sets
    python -m aecore.labs.anomaly --digits --evaluate [--model PATH]   # a saved one (default: the shipped one)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from aecore.engine import checkpoint
from aecore.engine.data import DATASETS, Data, DataConfig, DataError, Split, load_split, split
from aecore.engine.models import Autoencoder, ModelConfig, build
from aecore.engine.train import RunSpec
from aecore.engine.scoring import error_quantiles, pixel_errors
from aecore.engine.train import TrainConfig, TrainingDiverged, fit

MODELS_DIR = Path(__file__).resolve().parents[2] / "models" / "anomaly"
DIGIT_DETECTOR = MODELS_DIR.parent / "digits" / "digit-detector.safetensors"
VERDICT_FALSE_ALARM = 0.01   # the digit detector calls "unusual" what scores above 99% of held-out MNIST digits
                             # drawn on the canvas (enlarged onto it, then back through to_mnist)
HELD_OUT = 0.1      # the first tenth of the normal training images: thresholds by false-alarm rate come from it
CONFUSED = 10       # drawing_figures names this many of the detector's likeliest mistakes each way
WORST_PIXELS = 20   # `score` averages the squared error over this many of an image's worst-reconstructed pixels


@dataclass(frozen=True)
class Recipe:
    name: str
    title: str
    model: ModelConfig
    train: TrainConfig
    note: str


RECIPES = {r.name: r for r in [
    Recipe("tutorial", "Tutorial conv AE (196-number code)",
           ModelConfig(family="conv", channels=(16, 4), activation="relu", output="sigmoid", loss="mse"),
           TrainConfig(epochs=30, batch_size=50, lr=1e-3),
           "The tutorial's conv-digit0 model: its wide code reconstructs almost any digit, so its error mostly "
           "measures how much ink an image has."),
    Recipe("dense-bn-16", "Dense 784-256-64-16 with batch norm",
           ModelConfig(family="deep", hidden=(256, 64, 16), activation="relu", batch_norm=True, output="sigmoid",
                       loss="bce"),
           TrainConfig(epochs=20, batch_size=128, lr=1e-3),
           "A narrow 16-number code with batch normalisation: it can only reconstruct what it was trained on."),
]}
DEFAULT_RECIPE = "dense-bn-16"


def run_spec(recipe: str, dataset: str, normal: tuple[int, ...], epochs: int | None = None,
             device: str = "auto", seed: int = 0) -> RunSpec:
    """What to train for a one-class detector (the app queues it through aecore.runs like any run)."""
    r = RECIPES[recipe]
    train = replace(r.train, device=device, seed=seed, **({"epochs": epochs} if epochs else {}))
    name = f"{recipe}-{dataset}-{'+'.join(map(str, normal))}"
    return RunSpec(name=name, model=r.model, data=DataConfig(dataset, HELD_OUT, tuple(normal)), train=train)


def recipe_of(spec: RunSpec) -> str | None:
    """The recipe a run's model comes from (any epochs), or None for a model no recipe builds."""
    return next((r.name for r in RECIPES.values() if r.model == spec.model), None)


# ---------------------------------------------------------------------------------------------- scores and AUC
def score(model: Autoencoder, images) -> np.ndarray:
    """One anomaly score per image (N, 28, 28), higher = stranger: the mean squared error of its reconstruction
    over the WORST_PIXELS pixels it gets most wrong.

    What tells an image apart from the digits a model knows is local (a bar too many, a loop missing); averaged
    over all 784 pixels that difference is diluted by the pixels any model gets right (the README's anomaly
    tables measure both).
    """
    worst = np.partition(pixel_errors(model, images), -WORST_PIXELS, axis=1)[:, -WORST_PIXELS:]
    return worst.mean(axis=1, dtype=np.float64)


def auc(scores, is_anomaly) -> float:
    """ROC-AUC: the chance that a random anomaly scores above a random normal image (ties count half)."""
    s, y = np.asarray(scores, np.float64), np.asarray(is_anomaly, bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs both normal and anomalous images")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    # average ranks over ties (1-based), then the Mann-Whitney U of the anomalies
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_s)) + 1]
    ends = np.r_[starts[1:], len(s)]
    for a, b in zip(starts, ends):
        ranks[order[a:b]] = (a + b + 1) / 2
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(scores, is_anomaly) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false-alarm rate, detection rate, threshold) for every distinct threshold, from (0, 0) to (1, 1)."""
    s, y = np.asarray(scores, np.float64), np.asarray(is_anomaly, bool)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(y)[last_of_tie]
    fp = np.cumsum(~y)[last_of_tie]
    fpr = np.r_[0.0, fp / max(fp[-1], 1)]
    tpr = np.r_[0.0, tp / max(tp[-1], 1)]
    return fpr, tpr, np.r_[np.inf, s[last_of_tie]]


def confusion(scores, is_anomaly, threshold: float) -> dict:
    """Images scoring above `threshold` are called anomalous: the counts, precision, recall, false-alarm rate."""
    s, y = np.asarray(scores, np.float64), np.asarray(is_anomaly, bool)
    flagged = s > threshold
    tp, fp = int((flagged & y).sum()), int((flagged & ~y).sum())
    fn, tn = int((~flagged & y).sum()), int((~flagged & ~y).sum())
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "precision": tp / (tp + fp) if tp + fp else 1.0, "recall": tp / (tp + fn) if tp + fn else 0.0,
            "false_alarm_rate": fp / (fp + tn) if fp + tn else 0.0}


def threshold_for(normal_quantiles, false_alarm_rate: float) -> float:
    """The score above which `false_alarm_rate` of held-out normal images lie (from their stored quantiles)."""
    if not 0.0 <= false_alarm_rate <= 1.0:
        raise ValueError(f"false-alarm rate must be in [0, 1], got {false_alarm_rate}")
    q = np.asarray(normal_quantiles, np.float64)
    return float(np.interp(1.0 - false_alarm_rate, np.linspace(0, 1, len(q)), q))


def per_class_auc(scores, labels, normal) -> dict[int, float]:
    """For each anomalous class: the AUC of normal images against that class alone."""
    labels = np.asarray(labels)
    is_normal = np.isin(labels, list(normal))
    return {int(c): auc(np.r_[scores[is_normal], scores[labels == c]],
                        np.r_[np.zeros(is_normal.sum(), bool), np.ones((labels == c).sum(), bool)])
            for c in sorted(set(labels.tolist()) - set(normal))}


def evaluate(model: Autoencoder, test: Split, normal) -> dict:
    """The detector on a whole test set: scores, "not normal" as positive, overall and per-class AUC."""
    scores = score(model, test.images)
    labels = test.labels.numpy()
    is_anomaly = ~np.isin(labels, list(normal))
    return {"scores": scores, "labels": labels, "is_anomaly": is_anomaly, "auc": auc(scores, is_anomaly),
            "per_class_auc": per_class_auc(scores, labels, normal)}


def detector_meta(model: Autoencoder, spec: RunSpec, held_out: Split, test: Split, recipe: str,
                  seconds: float) -> dict:
    """What a detector's checkpoint stores besides the weights: recipe, classes, AUCs, held-out quantiles."""
    everything = set(spec.data.classes) >= set(test.labels.tolist())
    result = {"auc": None, "per_class_auc": {}} if everything else evaluate(model, test, spec.data.classes)
    return spec.meta("cpu", anomaly={
        "recipe": recipe, "dataset": spec.data.dataset, "normal": list(spec.data.classes),
        "auc": None if result["auc"] is None else round(result["auc"], 4),
        "per_class_auc": {str(c): round(a, 4) for c, a in result["per_class_auc"].items()},
        "held_out_quantiles": error_quantiles(score(model, held_out.images)),
        "train_seconds": round(seconds, 1)})


# ---------------------------------------------------------------------------------------------- training
def train(recipe: str, dataset: str, normal: tuple[int, ...], epochs: int | None = None, device: str = "auto",
          seed: int = 0, data_dir=None, log=None) -> tuple[Autoencoder, dict]:
    """Train one detector and measure it on the whole test set; returns (model on CPU, checkpoint meta)."""
    model, meta, _ = _train(recipe, dataset, normal, epochs, device, seed, data_dir, log)
    return model, meta


def _train(recipe, dataset, normal, epochs, device, seed, data_dir, log) -> tuple[Autoencoder, dict, Data]:
    """`train`, also returning the data it used (train, held-out normal images, the whole test set)."""
    spec = run_spec(recipe, dataset, normal, epochs, device, seed)
    train_split, test = load_split(dataset, "train", data_dir), load_split(dataset, "test", data_dir)
    data = split(train_split, test, spec.data)
    model = build(spec.model, seed=seed)
    t = time.perf_counter()
    for m in fit(model, data, spec.train):
        if log and m.epoch_end:
            log(f"epoch {m.epoch}/{spec.train.epochs}: loss {m.epoch_loss:.4f}")
    seconds = time.perf_counter() - t
    model.cpu().eval()
    return model, detector_meta(model, spec, data.val, test, recipe, seconds), Data(data.train, data.val, test)


def load_detector(path) -> tuple[Autoencoder, dict]:
    """A detector checkpoint: (model, meta) with meta["anomaly"] as `detector_meta` wrote it."""
    model, meta = checkpoint.load(path)
    if "anomaly" not in meta:
        raise checkpoint.CheckpointError(f"{path}: an AE Lab model, but not a one-class detector")
    return model, meta


def digit_detector(path=None) -> tuple[Autoencoder, dict]:
    """The Draw page's "is this a digit?" detector: (model, meta), meta["anomaly"]["verdict_threshold"] on the
    `score` scale, ["canvas_quantiles"] the held-out digits' scores as the page sees them, and ["drawings"] its
    figures on the drawing set."""
    model, meta = load_detector(path or DIGIT_DETECTOR)
    if not {"verdict_threshold", "canvas_quantiles", "drawings"} <= set(meta["anomaly"]):
        raise checkpoint.CheckpointError(f"{path or DIGIT_DETECTOR}: a detector without a verdict threshold")
    return model, meta


def drawing_figures(model: Autoencoder, threshold: float, drawings) -> dict:
    """How a detector's verdict holds on a drawing set: digits vs the rest AUC, the share of non-digits called
    "unusual" and of digits called "typical" at `threshold`, the share called unusual per kind, and the CONFUSED
    non-digits scoring lowest and digits scoring highest (its likeliest mistakes)."""
    from aecore.labs import drawset
    from aecore.engine.preprocess import to_mnist
    scores = score(model, np.stack([to_mnist(d.image) for d in drawings]))
    is_digit = np.array([d.is_digit for d in drawings])
    kinds = np.array([d.kind for d in drawings])
    order = np.argsort(scores, kind="stable")
    return {"auc": round(auc(scores, ~is_digit), 4),
            "most_digit_like_non_digits": [drawings[i].what for i in order if not is_digit[i]][:CONFUSED],
            "least_digit_like_digits": [drawings[i].what for i in order[::-1] if is_digit[i]][:CONFUSED],
            "non_digits_unusual": round(float((scores[~is_digit] > threshold).mean()), 4),
            "digits_typical": round(float((scores[is_digit] <= threshold).mean()), 4),
            "unusual_by_kind": {k: round(float((scores[kinds == k] > threshold).mean()), 4)
                                for k in drawset.DIGIT_KINDS + drawset.OTHER_KINDS if (kinds == k).any()},
            "count_by_kind": {k: int((kinds == k).sum()) for k in drawset.DIGIT_KINDS + drawset.OTHER_KINDS}}


def train_digit_detector(recipe: str = DEFAULT_RECIPE, epochs: int | None = None, device: str = "auto",
                         seed: int = 0, data_dir=None, log=None) -> tuple[Autoencoder, dict]:
    """The recipe trained on all ten MNIST digits, its verdict threshold, and its figures on the drawing set."""
    from aecore.labs import drawset
    from aecore.engine.preprocess import to_mnist
    model, meta, data = _train(recipe, "mnist", tuple(range(10)), epochs, device, seed, data_dir, log)
    a = meta["anomaly"]
    # The page sees digits after the canvas and to_mnist, which smooth them: its line comes from digits so seen.
    on_canvas = np.stack([to_mnist(drawset.enlarge(x)) for x in data.val.images.numpy()])
    a["canvas_quantiles"] = error_quantiles(score(model, on_canvas))
    a["verdict_threshold"] = threshold_for(a["canvas_quantiles"], VERDICT_FALSE_ALARM)
    a["verdict_false_alarm"] = VERDICT_FALSE_ALARM
    a["drawings"] = drawing_figures(model, a["verdict_threshold"], drawset.build(data.test, seed=seed))
    return model, meta


def shipped_detectors() -> dict[str, Path]:
    """name -> path of the one-class detectors in models/anomaly/."""
    return {p.stem: p for p in sorted(MODELS_DIR.glob("*.safetensors"))}


# ---------------------------------------------------------------------------------------------- command line
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m aecore.labs.anomaly", description="Train and measure one-class detectors.")
    p.add_argument("--dataset", choices=DATASETS, default="mnist")
    p.add_argument("--normal", help="the normal class(es), e.g. 0 or 3,5")
    p.add_argument("--all", action="store_true", help="the ten one-class tasks, one after another")
    p.add_argument("--digits", action="store_true",
                   help="the Draw page's digit detector: trained on all ten MNIST digits, measured on drawings")
    p.add_argument("--recipe", choices=sorted(RECIPES), default=DEFAULT_RECIPE)
    p.add_argument("--epochs", type=int, help="override the recipe's epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--data-dir", help="folder with the IDX files (else $AECORE_DATA_DIR, ./data, the cache)")
    p.add_argument("--out", help="checkpoint path (one task) or folder (--all); default: none saved")
    p.add_argument("--evaluate", action="store_true",
                   help="with --digits: measure a saved digit detector on both drawing sets instead of training one")
    p.add_argument("--model", help=f"the detector --evaluate measures (default {DIGIT_DETECTOR.name}, shipped)")
    args = p.parse_args(argv)
    if (args.evaluate or args.model) and not args.digits:
        p.error("--evaluate and --model measure the digit detector: add --digits")
    if args.digits:
        return _digits(p, args)
    if args.all == bool(args.normal):
        p.error("give one of --normal CLASSES, --all or --digits")
    try:
        tasks = [(c,) for c in range(10)] if args.all else [tuple(int(c) for c in args.normal.split(","))]
    except ValueError:
        p.error(f"--normal takes class numbers 0-9 separated by commas, got {args.normal!r}")
    if any(not 0 <= c <= 9 for t in tasks for c in t):
        p.error("--normal takes class numbers 0-9")
    rows = []
    try:
        for normal in tasks:
            model, meta = train(args.recipe, args.dataset, normal, args.epochs, args.device, args.seed,
                                args.data_dir, log=lambda s: print(s, file=sys.stderr))
            a = meta["anomaly"]
            path = None
            if args.out:
                out = Path(args.out)
                path = out / f"{args.recipe}-{args.dataset}-{'+'.join(map(str, normal))}.safetensors" \
                    if args.all else out
                checkpoint.save(path, model, meta)
            row = {"dataset": args.dataset, "recipe": args.recipe, "normal": list(normal), "auc": a["auc"],
                   "worst_class": min(a["per_class_auc"].items(), key=lambda kv: kv[1])[0],
                   "seconds": a["train_seconds"], "checkpoint": str(path) if path else None}
            rows.append(row)
            print(json.dumps(row), flush=True)
    except (DataError, TrainingDiverged) as e:
        print(f"aecore.labs.anomaly: {e}", file=sys.stderr)
        return 1
    if args.all:
        aucs = [r["auc"] for r in rows]
        print(json.dumps({"final": True, "dataset": args.dataset, "recipe": args.recipe,
                          "mean_auc": round(float(np.mean(aucs)), 4), "worst_auc": min(aucs),
                          "worst_normal_class": rows[int(np.argmin(aucs))]["normal"][0],
                          "seconds_per_class": round(float(np.mean([r["seconds"] for r in rows])), 1),
                          "aucs": aucs}))
    return 0


def _digits(p, args) -> int:
    """Train the digit detector (or, with --evaluate, load a saved one) and print its figures on the drawing set
    it is judged on and on the second, independent one (`aecore.labs.drawset2`), which nothing was tuned on."""
    from aecore.labs import drawset, drawset2
    if args.all or args.normal or args.dataset != "mnist":
        p.error("--digits trains on all ten MNIST digits: leave out --normal, --all and --dataset")
    if args.model and not args.evaluate:
        p.error("--model names the detector --evaluate measures; add --evaluate")
    if args.evaluate and (args.out or args.epochs):
        p.error("--evaluate measures a saved detector: leave out --out and --epochs")
    try:
        if args.evaluate:
            model, meta = digit_detector(args.model)
            test = load_split("mnist", "test", args.data_dir)
            meta["anomaly"]["drawings"] = drawing_figures(model, meta["anomaly"]["verdict_threshold"],
                                                          drawset.build(test, seed=args.seed))
        else:
            model, meta = train_digit_detector(args.recipe, args.epochs, args.device, args.seed, args.data_dir,
                                               log=lambda s: print(s, file=sys.stderr))
    except (DataError, TrainingDiverged, checkpoint.CheckpointError) as e:
        print(f"aecore.labs.anomaly: {e}", file=sys.stderr)
        return 1
    if args.out:
        checkpoint.save(args.out, model, meta)
    a = meta["anomaly"]
    second = drawing_figures(model, a["verdict_threshold"], drawset2.build(seed=args.seed))
    print(json.dumps({"recipe": a["recipe"], "verdict_threshold": a["verdict_threshold"],
                      "verdict_false_alarm": a["verdict_false_alarm"], "seconds": a["train_seconds"],
                      **a["drawings"], "second_set": {**second, "fonts_missing": drawset2.missing_fonts()},
                      "checkpoint": (args.model or str(DIGIT_DETECTOR)) if args.evaluate else args.out}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

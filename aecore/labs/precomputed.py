"""Figures of the shipped models, computed ahead and shipped in models/precomputed/, so that a fresh server shows
them at once instead of computing them for its first visitor.

- anomaly-scores.npz: `anomaly.score` of every shipped one-class detector and of conv-digit0 on the whole MNIST
  test set (10,000 float64 each): the Anomalies page's histograms, ROC curves and AUCs, the Start page's 0-vs-6 AUC.
- generate.json: the digit classifier's verdict (`generative.judge_images`) on 1,000 samples (seed 0) of every
  shipped autoencoder, and on the first 1,000 real test digits: the Generate page's first view.

Every entry names what it was computed from by digests of content (`digest`: the model's weights and buffers,
the images, the judge's weights), and a lookup (`anomaly_scores`, `judged_samples`, `judged_reference`) returns
it only when all of them match what the caller holds; otherwise None, and the page computes as it did before. A
retrained model, other data or another judge never read stale figures; tests/test_precomputed.py recomputes every
entry from the shipped models and MNIST and compares.

    python -m aecore.labs.precomputed [--data-dir D]    # recompute both files (needs MNIST; under a minute)
"""
from __future__ import annotations

import functools
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

from aecore.argv import OneLineParser
from aecore.engine import checkpoint
from aecore.engine.data import DataConfig, DataError, load_split, split
from aecore.labs import anomaly, classifier, generative

MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
FOLDER = MODELS_DIR / "precomputed"
SCORES = FOLDER / "anomaly-scores.npz"
GENERATE = FOLDER / "generate.json"
SCORED = "conv-digit0"   # the shipped autoencoder scored besides the detectors (the tutorial's "is a 6 abnormal?")
SAMPLES = 1000           # samples judged per model, and real test digits judged: the Generate page's JUDGED
FIT_IMAGES = 5000        # training images a plain autoencoder's Gaussian is fitted to: the page's FIT_IMAGES
SEED = 0                 # the samples a visitor sees first


# ---------------------------------------------------------------------------------------------- digests
def digest(thing) -> str:
    """sha256 of what a figure depends on: a module's state (every parameter and buffer, by name, dtype and shape)
    or an array / tensor of images (dtype, shape and bytes). Equal digests, equal inputs."""
    h = hashlib.sha256()
    items = thing.state_dict().items() if isinstance(thing, torch.nn.Module) else [("", thing)]
    for name, value in items:
        a = np.ascontiguousarray(value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value)
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------- lookups
def anomaly_scores(model, images) -> np.ndarray | None:
    """The shipped `anomaly.score(model, images)` (float64 (N,), read-only), or None when the file holds none for
    this model's weights and these images."""
    scores = _scores(*_version(SCORES))
    key = (digest(model), digest(images), anomaly.WORST_PIXELS)
    return scores.get(key)


def judged_samples(model, judge, seed: int = SEED, n: int = SAMPLES, fitted_on: str | None = None) -> dict | None:
    """The shipped verdict of `judge` on `generative.sample_images(model, n, seed, ...)`: drawn from a VAE's prior,
    or, with `fitted_on` (the `digest` of the images a plain autoencoder's Gaussian is fitted to by
    `generative.code_gaussian`), from that Gaussian. None when the file holds none for exactly these."""
    entries = _generate(*_version(GENERATE))["samples"]
    key = (digest(model), digest(judge), int(seed), int(n), fitted_on)
    return next((dict(e["verdict"]) for e in entries if _sample_key(e) == key), None)


def judged_reference(images, judge) -> dict | None:
    """The shipped verdict of `judge` on these real images (`generative.judge_images`), or None."""
    entries = _generate(*_version(GENERATE))["reference"]
    key = (digest(images), digest(judge))
    return next((dict(e["verdict"]) for e in entries if (e["images"], e["judge"]) == key), None)


def _version(path: Path) -> tuple[str, int]:
    try:
        return str(path), path.stat().st_mtime_ns
    except OSError:
        return str(path), 0


@functools.lru_cache(maxsize=2)
def _scores(path: str, version: int) -> dict:   # version: a rewritten file is read again; 0: none
    if not version:
        return {}
    with np.load(path, allow_pickle=False) as f:
        index = json.loads(str(f["index"]))
        out = {}
        for name, e in index.items():
            scores = f[name].astype(np.float64)
            scores.flags.writeable = False          # shared by every caller
            out[(e["weights"], e["images"], e["worst_pixels"])] = scores
    return out


@functools.lru_cache(maxsize=2)
def _generate(path: str, version: int) -> dict:
    if not version:
        return {"samples": [], "reference": []}
    return json.loads(Path(path).read_text())


def _sample_key(e: dict) -> tuple:
    return e["weights"], e["judge"], e["seed"], e["n"], e["fitted_on"]


# ---------------------------------------------------------------------------------------------- computing
def shipped_autoencoders() -> dict[str, tuple]:
    """name -> (model, meta) for every checkpoint in models/ (what the app's `caches.shipped_models` loads)."""
    return {p.stem: checkpoint.load(p) for p in sorted(MODELS_DIR.glob("*.safetensors"))}


def fit_images(meta: dict, data_dir=None) -> torch.Tensor:
    """The training images a plain autoencoder's Gaussian is fitted to on the Generate page: the first FIT_IMAGES
    of the data its checkpoint names (all of MNIST when it names none)."""
    cfg = meta.get("data") or DataConfig()
    data = split(load_split(cfg.dataset, "train", data_dir), load_split(cfg.dataset, "test", data_dir), cfg)
    return data.train.images[:FIT_IMAGES]


def compute_scores(data_dir=None, log=print) -> dict[str, dict]:
    """name -> {"scores", "weights", "images", "worst_pixels"} for conv-digit0 and every shipped detector."""
    test = load_split("mnist", "test", data_dir)
    models = {SCORED: checkpoint.load(MODELS_DIR / f"{SCORED}.safetensors")[0]}
    models.update({name: anomaly.load_detector(path)[0] for name, path in anomaly.shipped_detectors().items()})
    out = {}
    for name, model in models.items():
        log(f"scoring the test set with {name}")
        out[name] = {"scores": anomaly.score(model, test.images), "weights": digest(model),
                     "images": digest(test.images), "worst_pixels": anomaly.WORST_PIXELS}
    return out


def compute_generate(data_dir=None, log=print) -> dict:
    """{"samples": [...], "reference": [...]}: the judge's verdict on SAMPLES samples (seed SEED) of every shipped
    autoencoder trained on MNIST, and on the first SAMPLES test digits."""
    judge = classifier.digit_classifier()[0]
    test = load_split("mnist", "test", data_dir)
    samples = []
    for name, (model, meta) in shipped_autoencoders().items():
        if (meta.get("data") or DataConfig()).dataset != "mnist":
            continue                                   # the page judges MNIST models only
        log(f"judging {SAMPLES} samples of {name}")
        fitted_on = None if model.config.variational else fit_images(meta, data_dir)
        gaussian = None if fitted_on is None else generative.code_gaussian(model, fitted_on)
        images = generative.sample_images(model, SAMPLES, SEED, gaussian=gaussian)
        samples.append({"model": name, "weights": digest(model), "judge": digest(judge), "seed": SEED,
                        "n": SAMPLES, "fitted_on": None if fitted_on is None else digest(fitted_on),
                        "verdict": generative.judge_images(images, judge)})
    real = test.images[:SAMPLES]
    reference = [{"images": digest(real), "judge": digest(judge), "n": len(real),
                  "verdict": generative.judge_images(real, judge)}]
    return {"samples": samples, "reference": reference}


def write(data_dir=None, log=print) -> list[Path]:
    """Recompute both files from the shipped models and MNIST; returns their paths."""
    scores, generate = compute_scores(data_dir, log), compute_generate(data_dir, log)
    FOLDER.mkdir(parents=True, exist_ok=True)
    index = {name: {k: v for k, v in e.items() if k != "scores"} for name, e in scores.items()}
    with open(SCORES, "wb") as f:   # an open file: np.savez would add ".npz" to a name without it
        np.savez_compressed(f, index=np.array(json.dumps(index)), **{n: e["scores"] for n, e in scores.items()})
    GENERATE.write_text(json.dumps({"torch": torch.__version__, **generate}, indent=1) + "\n")
    return [SCORES, GENERATE]


def main(argv=None) -> int:
    p = OneLineParser(prog="python -m aecore.labs.precomputed", description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", help="folder with the MNIST IDX files (else $AECORE_DATA_DIR, ./data, the cache)")
    args = p.parse_args(argv)
    try:
        paths = write(args.data_dir, log=lambda s: print(s, file=sys.stderr))
    except (DataError, checkpoint.CheckpointError, classifier.ClassifierFileError) as e:
        print(f"aecore.labs.precomputed: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"written": [str(p.relative_to(MODELS_DIR.parent)) for p in paths],
                      "bytes": [p.stat().st_size for p in paths]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

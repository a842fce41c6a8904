"""Test-set likelihood of variational autoencoders, the figure VAE papers report.

    python -m aecore.labs.likelihood MODEL.safetensors [MODEL ...] [--k 1000] [--images 10000] [--data-dir D]
                                [--threads N]

For each checkpoint (a vae or conv-vae), on the first `--images` test images of its data set: the ELBO (analytic
KL, reconstruction term averaged over 10 draws of the code) and the importance-sampled estimate of log p(x) with
k samples (`aecore.labs.generative.log_likelihood`; Burda et al. use k = 5,000), both in nats per image, means over
the images. A model trained on dynamically binarised images is scored on one fixed binarisation of the test
images (seed 0, as `aecore.engine.train.evaluate` does), which is what published binary-MNIST figures use; a model
trained on grey levels is scored on them, where the Bernoulli term is a cross-entropy, not a probability, so its
figures compare only with models scored the same way.

stdout: one JSON object per model; progress on stderr. Bad options exit 2; unreadable models or missing data 1.
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch

from aecore.engine import checkpoint
from aecore.labs import generative
from aecore.argv import OneLineParser, positive_int
from aecore.engine.data import DataConfig, DataError, load_split, to_float


def test_images(meta: dict, n: int, data_dir=None) -> torch.Tensor:
    """The first `n` test images of the model's data set, in [0, 1], binarised once (seed 0) when it trained so."""
    data = meta.get("data") or DataConfig()
    images = to_float(load_split(data.dataset, "test", data_dir).images[:n]).reshape(-1, 28, 28)
    train = meta.get("train")
    if train is not None and train.binarize:
        images = torch.bernoulli(images, generator=torch.Generator().manual_seed(0))
    return images


def score(model, images: torch.Tensor, k: int) -> dict:
    """Mean ELBO and mean k-sample log p(x), nats per image, and how long each took."""
    t = time.perf_counter()
    elbo = generative.elbo(model, images)
    t_elbo = time.perf_counter() - t
    ll = generative.log_likelihood(model, images, k=k)
    return {"elbo": round(float(np.mean(elbo)), 3), "log_likelihood": round(float(np.mean(ll)), 3),
            "k": k, "seconds_elbo": round(t_elbo, 1), "seconds": round(time.perf_counter() - t, 1)}


def main(argv=None) -> int:
    p = OneLineParser(prog="python -m aecore.labs.likelihood", description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", help="VAE checkpoints (.safetensors)")
    p.add_argument("--k", type=positive_int, default=1000, help="importance samples per image (default 1000)")
    p.add_argument("--images", type=positive_int, default=10_000, help="first test images scored (default all)")
    p.add_argument("--data-dir", help="folder with the IDX files (else $AECORE_DATA_DIR, ./data)")
    p.add_argument("--threads", type=positive_int, help="torch threads (default: torch's)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    for path in args.models:
        try:
            model, meta = checkpoint.load(path)
        except checkpoint.CheckpointError as e:
            print(f"aecore.labs.likelihood: {e}", file=sys.stderr)
            return 1
        if not model.config.variational:
            print(f"aecore.labs.likelihood: {path}: a {model.config.family} autoencoder has no likelihood; "
                  f"give a vae or conv-vae checkpoint", file=sys.stderr)
            return 1
        try:
            images = test_images(meta, args.images, args.data_dir)
        except DataError as e:
            print(f"aecore.labs.likelihood: {e}", file=sys.stderr)
            return 1
        print(f"{path}: {len(images):,} test images, k = {args.k}…", file=sys.stderr)
        train = meta.get("train")
        row = {"model": str(path), "name": meta.get("name"), "images": len(images),
               "binarized": bool(train is not None and train.binarize),
               "epochs": train.epochs if train is not None else None, **score(model, images, args.k)}
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

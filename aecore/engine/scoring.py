"""Per-image reconstruction error, where an error falls in a model's test-set distribution, the errors class by
class, pictures with a training noise on them, and how sparse a model's code is."""
from __future__ import annotations

import numpy as np
import torch

from aecore.engine.data import add_noise, to_float
from aecore.engine.models import Autoencoder, batched

QUANTILE_STEPS = 1000  # checkpoints keep the test-error distribution as 1001 quantiles (0.1 % apart)


def reconstruct(model: Autoencoder, images, batch_size: int = 1000) -> np.ndarray:
    """Reconstructions in [0, 1] pixel space, float32, of grey pictures (N, S, S) -> (N, S, S) or colour ones
    (N, 3, S, S) -> (N, 3, S, S) (uint8 or [0, 1] float)."""
    x = to_float(images)                                                      # (N, C, S, S)
    shape = x.shape if x.shape[1] == 3 else (len(x), *x.shape[2:])
    return batched(model, lambda b: model(b).x_hat.clamp(0, 1), x, batch_size).reshape(shape).numpy()


def pixel_errors(model: Autoencoder, images) -> np.ndarray:
    """Squared error of every number's reconstruction in [0, 1] pixel space, float32 (N, C*S*S): (N, 784) for MNIST."""
    x = to_float(images).numpy()                                              # (N, C, S, S)
    return ((reconstruct(model, images).reshape(len(x), -1) - x.reshape(len(x), -1)) ** 2)


def reconstruction_error(model: Autoencoder, images) -> np.ndarray:
    """One error per image: mean squared error in [0, 1] pixel space, whatever the model's loss or output."""
    return pixel_errors(model, images).mean(axis=1)


def error_quantiles(errors: np.ndarray) -> list[float]:
    """The distribution summarised as QUANTILE_STEPS + 1 evenly spaced quantiles (for percentiles later)."""
    qs = np.quantile(np.asarray(errors, dtype=np.float64), np.linspace(0, 1, QUANTILE_STEPS + 1))
    return [float(f"{q:.6g}") for q in qs]


def percentile(error: float, quantiles: list[float]) -> float:
    """Percent of the test set whose error is below `error` (0-100), read off the stored quantiles."""
    q = np.asarray(quantiles, dtype=np.float64)
    if len(q) < 2:
        raise ValueError("need at least two quantiles")
    return float(np.interp(error, q, np.linspace(0, 100, len(q)), left=0.0, right=100.0))


def code_sparsity(model: Autoencoder, images, batch_size: int = 1000) -> dict:
    """How sparse an MLP autoencoder's flat code is on images (N, 28, 28) (uint8 or [0, 1] float), in eval mode:
    mean_activation, the mean of every code number (the Keras blog's "mean activation of the code");
    zero_share (units,), for each unit the share of images whose code is exactly 0 there; zero_share_all, that
    share over all code numbers; dead_units, how many units are 0 for every image; values (N * units,) float32,
    every code number, for a histogram; images, N. Raises ValueError for a convolutional or variational model
    (their codes are not one vector of units) and for no images."""
    cfg = model.config
    if cfg.convolutional or cfg.variational:
        raise ValueError(f"model: code_sparsity needs an MLP autoencoder with a flat code, got the {cfg.family} "
                         f"family")
    x = to_float(images)
    if len(x) == 0:
        raise ValueError("images: code_sparsity needs at least one image")
    z = batched(model, model.encode, x, batch_size).numpy()   # (N, units)
    zero = z == 0
    return {"mean_activation": float(z.mean(dtype=np.float64)), "zero_share": zero.mean(axis=0),
            "zero_share_all": float(zero.mean()), "dead_units": int(zero.all(axis=0).sum()),
            "values": z.reshape(-1).astype(np.float32), "images": len(z)}


def by_class(errors, labels, shown: int = 6) -> list[dict]:
    """A test set's per-picture errors (N,) split by their class labels (N,): for each class present, in label
    order, `class`, `count`, the `mean` error, its standard error `sem` (sample std / √n; 0 for one picture), and
    the indices (into the N pictures) of its `shown` worst-rebuilt pictures, worst first (`worst`), and its best,
    best first (`best`). Ties keep the pictures' order."""
    errors, labels = np.asarray(errors, dtype=np.float64), np.asarray(labels)
    if errors.ndim != 1 or errors.shape != labels.shape:
        raise ValueError(f"errors {errors.shape} and labels {labels.shape} must be two vectors of one length")
    rows = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        e = errors[idx]
        best_first = idx[np.argsort(e, kind="stable")]
        worst_first = idx[np.argsort(-e, kind="stable")]
        rows.append({"class": int(c), "count": len(idx), "mean": float(e.mean()),
                     "sem": float(e.std(ddof=1) / np.sqrt(len(e))) if len(e) > 1 else 0.0,
                     "worst": worst_first[:shown].tolist(), "best": best_first[:shown].tolist()})
    return rows


def with_noise(pictures, kind: str, level: float, seed: int = 0) -> np.ndarray:
    """Pictures (N, S, S) or (N, 3, S, S), uint8 or floats in [0, 1], corrupted as training corrupts an input
    (`aecore.engine.data.add_noise`: "mask" zeroes a `level` share of the pixels, "gaussian" adds σ = `level` and
    clips), float32 in [0, 1] of the same shape; the same `seed` gives the same noise."""
    x = to_float(pictures)
    noisy = add_noise(x, kind, level, torch.Generator().manual_seed(seed))
    return noisy.reshape(np.shape(pictures)).numpy()

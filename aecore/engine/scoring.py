"""Per-image reconstruction error, where an error falls in a model's test-set distribution, and how sparse a
model's code is."""
from __future__ import annotations

import numpy as np
import torch

from aecore.engine.models import Autoencoder, inference

QUANTILE_STEPS = 1000  # checkpoints keep the test-error distribution as 1001 quantiles (0.1 % apart)


def reconstruct(model: Autoencoder, images, batch_size: int = 1000) -> np.ndarray:
    """Reconstructions in [0, 1] pixel space, float32 (N, 28, 28), of images (N, 28, 28) (uint8 or [0, 1] float)."""
    x = _as_float(images)
    device = next(model.parameters()).device
    with inference(model):
        parts = [model(x[i:i + batch_size].to(device)).x_hat.clamp(0, 1).cpu()
                 for i in range(0, len(x), batch_size)]
    return torch.cat(parts).reshape(-1, 28, 28).numpy() if parts else np.zeros((0, 28, 28), np.float32)


def pixel_errors(model: Autoencoder, images) -> np.ndarray:
    """Squared error of every pixel's reconstruction in [0, 1] pixel space, float32 (N, 784)."""
    x = _as_float(images).reshape(-1, 28, 28).numpy()
    return ((reconstruct(model, images) - x) ** 2).reshape(len(x), -1)


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
    x = _as_float(images)
    if len(x) == 0:
        raise ValueError("images: code_sparsity needs at least one image")
    device = next(model.parameters()).device
    with inference(model):
        z = torch.cat([model.encode(x[i:i + batch_size].to(device)).cpu()
                       for i in range(0, len(x), batch_size)]).numpy()   # (N, units)
    zero = z == 0
    return {"mean_activation": float(z.mean(dtype=np.float64)), "zero_share": zero.mean(axis=0),
            "zero_share_all": float(zero.mean()), "dead_units": int(zero.all(axis=0).sum()),
            "values": z.reshape(-1).astype(np.float32), "images": len(z)}


def _as_float(images) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(images)) if not isinstance(images, torch.Tensor) else images
    if x.ndim == 2:
        x = x.unsqueeze(0)
    if x.shape[-2:] != (28, 28):
        raise ValueError(f"images must be shaped (N, 28, 28), got {tuple(x.shape)}")
    x = x.reshape(-1, 1, 28, 28)
    return x.float().div(255.0) if x.dtype == torch.uint8 else x.float()

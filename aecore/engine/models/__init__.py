"""The autoencoder families behind one contract (`encode`, `decode`, `forward`, `loss`), and `build`.

- `base`: `ModelConfig` (with the pictures' side and colour, from which every layer size follows), the plain
  families (shallow, deep, conv) as `Autoencoder`, and the helpers every model shares (`inference`, `batched`
  (inference over a data set, batch by batch), `summary`, `count_params`, `from_dict`, `conv_side`).
- `vae`: the variational families (vae, conv-vae) as `VariationalAutoencoder`, a subclass of `Autoencoder`.
- `losses`: BCE from logits on the CPU's vector units; `direct`: the plain MLPs' training step written out without
  autograd, which `fit` takes for them (the same numbers as autograd's).

`build` lives here, above both, so that the base never needs to know its subclasses.
"""
from __future__ import annotations

import torch

from aecore.engine.models.base import (ACTIVATIONS, COLOR_CHANNELS, COLORS, DROPOUT_PLACES, FAMILIES, INITS,
                                       LOSSES, OUTPUTS, SIDE, SIDES, VARIATIONAL, Autoencoder, ModelConfig, Output,
                                       batched, conv_side, count_params, from_dict, inference, initialise, summary,
                                       summary_text)
from aecore.engine.models.vae import VariationalAutoencoder, gaussian_kl

__all__ = ["ACTIVATIONS", "COLOR_CHANNELS", "COLORS", "DROPOUT_PLACES", "FAMILIES", "INITS", "LOSSES", "OUTPUTS",
           "SIDE", "SIDES", "VARIATIONAL", "Autoencoder", "ModelConfig", "Output", "VariationalAutoencoder",
           "batched", "build", "conv_side", "count_params", "from_dict", "gaussian_kl", "inference", "initialise",
           "summary", "summary_text"]


def build(config: ModelConfig, seed: int | None = None) -> Autoencoder:
    """A fresh model; with a seed, the same weights every time without touching the global RNG state."""
    cls = VariationalAutoencoder if config.variational else Autoencoder
    if seed is None:
        return cls(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(config)

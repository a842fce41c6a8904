"""Variational autoencoders behind the same contract as every AE Lab model (`aecore.engine.models`).

The encoder gives the posterior q(z|x) = N(mu, diag(exp(logvar))); `encode(x)` returns its mean, so every page
that shows codes works unchanged. `forward` samples the code with the reparameterisation trick while training
(z = mu + exp(logvar / 2) * eps) and uses the mean in eval mode. `loss` is, per image, the reconstruction term
summed over the picture's n = C*S*S numbers (784 for MNIST) plus beta times the analytic KL to the prior N(0, I),
averaged over the batch:

- reconstruction "bce": -log p(x|z) of a Bernoulli decoder with logits `raw` (exact for binary pixels);
- reconstruction "mse": the summed squared error, which is -log p(x|z) of a Gaussian decoder with variance 1/2
  up to the constant n/2 * log(pi) (`log_px` includes it, so likelihoods are in nats either way).

`loss_terms` reports the two terms apart (reconstruction and the unweighted KL, in nats per image); with a KL
warm-up (`ModelConfig.kl_warmup` epochs) `fit` raises the KL weight linearly from 0 to beta (`at_epoch`).

Two builds: "vae", MLP encoder n-h1-...-hk then two linear heads to the latent size, decoder mirrored; and
"conv-vae" (the keras-io example): 3x3 stride-2 convolutions from the picture's C channels (28 -> 14 -> 7; 64 ->
32 -> 16), dense layers, two heads; the decoder maps the code straight to the last feature map (no dense layers,
as in that example), then 3x3 stride-2 transposed convolutions and a last 3x3 convolution to C channels.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from aecore.engine.models.base import ACTIVATIONS, Autoencoder, ModelConfig, Output, conv_side
from aecore.engine.models.losses import bce_with_logits


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag exp(logvar)) || N(0, I)) per row, in nats."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=-1)


class VariationalAutoencoder(Autoencoder):
    """The "vae" and "conv-vae" families: `posterior`, `log_px` and `latent_dim` besides the shared contract."""

    def make_layers(self, config: ModelConfig) -> None:
        self.encoder, self.heads, self.decoder = (_conv if config.family == "conv-vae" else _mlp)(config)
        self.beta = config.beta                # β; a run may change it while it trains (engine.steering)
        self.kl_weight = config.beta           # lowered during a KL warm-up (at_epoch)

    @property
    def latent_dim(self) -> int:
        return self.config.latent

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of q(z|x), each (B, latent)."""
        h = self.encoder(x.reshape(len(x), *self._input_shape))
        mu, logvar = self.heads(h).chunk(2, dim=1)
        return mu, logvar

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x)[0]

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).view(len(z), *self.config.picture_shape)

    def forward(self, x: torch.Tensor) -> Output:
        mu, logvar = self.posterior(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        return Output(z=z, raw=self.decode_raw(z), output=self.config.output, mu=mu, logvar=logvar)

    def log_px(self, x: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        """log p(x|z) per image in nats, summed over the pixels; `raw` is decode_raw(z)."""
        x, raw = x.reshape(len(x), -1), raw.reshape(len(raw), -1)
        if self.config.loss == "bce":
            return -F.binary_cross_entropy_with_logits(raw, x, reduction="none").sum(dim=1)
        return -(torch.sigmoid(raw) - x).pow(2).sum(dim=1) - 0.5 * x.shape[1] * math.log(math.pi)

    def loss_terms(self, target: torch.Tensor, out: Output) -> dict[str, torch.Tensor]:
        """Batch means, per image: the reconstruction term and the (unweighted) KL, in nats."""
        target = target.reshape(len(target), -1)
        raw = out.raw.reshape(len(out.raw), -1)
        if self.config.loss == "bce":
            recon = bce_with_logits(raw, target, reduction="sum") / len(target)
        else:
            recon = (torch.sigmoid(raw) - target).pow(2).sum() / len(target)
        return {"reconstruction": recon, "KL": gaussian_kl(out.mu, out.logvar).mean()}

    def combine(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        return terms["reconstruction"] + self.kl_weight * terms["KL"]

    def at_epoch(self, epochs_done: float) -> None:
        """The KL warm-up: the weight rises linearly from 0 to beta over the first `kl_warmup` epochs."""
        warmup = self.config.kl_warmup
        self.kl_weight = self.beta * (min(1.0, epochs_done / warmup) if warmup else 1.0)


def _mlp(cfg: ModelConfig):
    act = ACTIVATIONS[cfg.activation]
    sizes = [cfg.pixels, *cfg.hidden]
    enc = []
    for a, b in zip(sizes, sizes[1:]):
        enc += [nn.Linear(a, b), act()]
    back = [cfg.latent, *cfg.hidden[::-1]]
    dec = []
    for a, b in zip(back, back[1:]):
        dec += [nn.Linear(a, b), act()]
    dec.append(nn.Linear(back[-1], cfg.pixels))
    return nn.Sequential(*enc), nn.Linear(sizes[-1], 2 * cfg.latent), nn.Sequential(*dec)


def _conv(cfg: ModelConfig):
    act = ACTIVATIONS[cfg.activation]
    chans = [cfg.in_channels, *cfg.channels]
    side = conv_side(cfg.side, cfg.channels)              # the last feature map's side: 7 at 28, 16 at 64
    flat = chans[-1] * side * side
    enc: list[nn.Module] = []
    for a, b in zip(chans, chans[1:]):                    # 3x3, stride 2, "same" padding: the side halves
        enc += [nn.Conv2d(a, b, 3, stride=2, padding=1), act()]
    enc.append(nn.Flatten())
    dense = [flat, *cfg.hidden]
    for a, b in zip(dense, dense[1:]):
        enc += [nn.Linear(a, b), act()]
    dec: list[nn.Module] = [nn.Linear(cfg.latent, flat), act()]     # straight to the feature map, as keras-io
    dec.append(nn.Unflatten(1, (chans[-1], side, side)))
    width = chans[-1]
    for c in cfg.channels[::-1]:                           # transposed 3x3 stride 2: the side doubles exactly
        dec += [nn.ConvTranspose2d(width, c, 3, stride=2, padding=1, output_padding=1), act()]
        width = c
    dec.append(nn.Conv2d(width, cfg.in_channels, 3, padding=1))
    return nn.Sequential(*enc), nn.Linear(dense[-1], 2 * cfg.latent), nn.Sequential(*dec)

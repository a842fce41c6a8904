"""The autoencoder families behind one contract: encode, decode, forward, loss.

shallow (n-h-n, optionally sparse: an L1 penalty on the code), deep (a mirrored MLP) and conv are plain
autoencoders (`Autoencoder`, here); vae and conv-vae are variational (`aecore.engine.models.vae`).

Pictures are S x S with C channels (`ModelConfig.side`, `color`: MNIST's 28 x 28 grey by default, or a picture
set's 32 or 64, grey or RGB); every layer size follows from them: an MLP takes n = C*S*S inputs (784 for MNIST), a
conv encoder C channels. Images travel as float tensors (B, C, S, S) in [0, 1]. `forward` returns an `Output`
holding the code `z`, the decoder's pre-activation `raw` and the image `x_hat`; `loss` reads whichever of those its
objective needs (BCE from `raw` when the output is a sigmoid, which is exact and numerically safe).
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aecore.engine.data import to_float
from aecore.engine.fields import (COLORS, DROPOUT_PLACES, FAMILIES, INITS, LOSSES,  # noqa: F401 (public here too)
                                  OUTPUTS, SIDES, VARIATIONAL, validate)
from aecore.engine.models.losses import bce_with_logits

# The choices are the settings table's (aecore.engine.fields), which also holds every range checked below.
ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}   # keyed as fields.ACTIVATION_NAMES
SIDE = 28  # MNIST images are 28 x 28: the default side
COLOR_CHANNELS = {"grey": 1, "rgb": 3}   # keyed as fields.COLORS


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model; stored as JSON in every checkpoint."""
    family: str = "shallow"             # shallow n-h-n (n = 784 for MNIST), deep (mirrored MLP), conv
    hidden: tuple[int, ...] = (200,)    # MLP encoder sizes after the input; shallow takes exactly one
    channels: tuple[int, ...] = (16, 4)  # conv encoder channels, one 3x3 conv + 2x2 max-pool per entry (1 or 2)
    activation: str = "relu"            # hidden activation: relu, sigmoid or tanh
    linear_code: bool = False           # deep only: no activation on the code layer (unbounded latent)
    output: str = "sigmoid"             # sigmoid keeps pixels in [0, 1]; identity as in the Chainer study
    loss: str = "bce"                   # bce or mse, averaged over pixels and batch
    dropout: float = 0.0                # rate for nn.Dropout; 0 disables it
    dropout_where: str = "hidden"       # hidden, or hidden+output as the Chainer cases do
    init: str = "torch"                 # torch default, keras (Glorot-uniform, zero bias), chainer (N(0, 1/fan_in))
    batch_norm: bool = False            # batch normalisation before each hidden activation (one-class recipes)
    sparsity: float = 0.0               # shallow only: weight of the L1 penalty on the code (per image, summed)
    latent: int = 2                     # vae, conv-vae: the code size (hidden holds the layers before it)
    beta: float = 1.0                   # vae, conv-vae: weight of the KL term
    kl_warmup: int = 0                  # vae, conv-vae: epochs over which the KL weight rises from 0 to beta
    side: int = SIDE                    # the pictures' side in pixels: 28 (MNIST), 32 or 64 (picture sets)
    color: str = "grey"                 # grey (one channel) or rgb (three); older checkpoints are 28 x 28 grey

    def __post_init__(self):
        def check(ok, field, allowed, value):
            if not ok:
                raise ValueError(f"ModelConfig.{field} must be {allowed}, got {value!r}")
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        try:
            validate(self, "model", self.family)   # the family, then each setting's range as this family takes it
        except ValueError as e:
            # The side is checked last; where a conv stack cannot halve it exactly, that is the more telling message.
            if self.convolutional and isinstance(self.side, int) and str(e).startswith("ModelConfig.side"):
                e = _halving_error(self.side, self.channels) or e
            raise e from None
        check(isinstance(self.batch_norm, bool), "batch_norm", "true or false", self.batch_norm)
        check(not (self.loss == "bce" and self.output == "identity"), "loss",
              "'mse' when output is 'identity' (BCE needs outputs in [0, 1])", self.loss)
        check(not (self.batch_norm and self.family in VARIATIONAL), "dropout",
              "0 (and batch_norm off) for a variational autoencoder", self.dropout)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        return from_dict(cls, d)

    @property
    def variational(self) -> bool:
        return self.family in VARIATIONAL

    @property
    def convolutional(self) -> bool:
        """Its first layer is a convolution (its filters are kernels, not S×S tiles)."""
        return self.family in ("conv", "conv-vae")

    @property
    def in_channels(self) -> int:
        """Channels per picture: 1 for grey, 3 for RGB."""
        return COLOR_CHANNELS[self.color]

    @property
    def picture_shape(self) -> tuple[int, int, int]:
        """One picture as the model reads and writes it: (C, S, S)."""
        return (self.in_channels, self.side, self.side)

    @property
    def image_shape(self) -> tuple[int, ...]:
        """One picture as the data sets and pages hold it: (S, S) grey, as MNIST's splits; (3, S, S) colour."""
        return self.picture_shape[1:] if self.in_channels == 1 else self.picture_shape

    @property
    def pixels(self) -> int:
        """Numbers per picture, C·S·S: an MLP's input and output size (784 for MNIST)."""
        return self.in_channels * self.side * self.side

    @property
    def sizes_text(self) -> str:
        """Layer sizes in words: '784-200-784', '1→16→4 channels, code 4×7×7', '784-256-2-256-784, Gaussian code';
        for 64×64 RGB pictures '12288-512-64-512-12288', '3→32→64 channels, code 64×16×16'."""
        chans = "→".join(map(str, [self.in_channels, *self.channels]))
        if self.family == "conv":
            return chans + " channels, code " + "×".join(map(str, self.code_shape))
        if self.family == "conv-vae":
            return (chans + " channels (stride 2), dense " + "-".join(map(str, self.hidden))
                    + f", Gaussian code of {self.latent}")
        n = self.pixels
        if self.variational:
            return "-".join(map(str, [n, *self.hidden, self.latent, *self.hidden[::-1], n])) + ", Gaussian code"
        return "-".join(map(str, [n, *self.hidden, *self.hidden[-2::-1], n]))

    @property
    def code_range(self) -> tuple[float, float] | None:
        """The interval every code number lies in (eval mode), or None when the code is unbounded (ReLU, linear,
        a VAE's posterior mean)."""
        if (self.family == "deep" and self.linear_code) or self.variational:
            return None
        return {"tanh": (-1.0, 1.0), "sigmoid": (0.0, 1.0)}.get(self.activation)

    @property
    def code_shape(self) -> tuple[int, ...]:
        if self.variational:
            return (self.latent,)
        if self.family == "conv":
            side = conv_side(self.side, self.channels)
            return (self.channels[-1], side, side)
        return (self.hidden[-1],)


def conv_side(side: int, channels: tuple[int, ...]) -> int:
    """The side of the last feature map of a conv encoder with one halving stage per entry of `channels`:
    side >> len(channels). ValueError unless the halvings are exact (the decoder's doublings must come back to
    `side`)."""
    error = _halving_error(side, channels)
    if error:
        raise error
    return side >> len(channels)


def _halving_error(side: int, channels: tuple[int, ...]) -> ValueError | None:
    stages = len(channels)
    if side % (1 << stages) == 0:
        return None
    return ValueError(f"ModelConfig.side must divide by 2**{stages} = {1 << stages} for {stages} conv stage(s) "
                      f"(channels {tuple(channels)}), as each halves the side; got side {side}")


def from_dict(cls, d: dict):
    """Build a frozen config from JSON, rejecting unknown fields by name (lists become tuples)."""
    if not isinstance(d, dict):
        raise ValueError(f"{cls.__name__} must be a JSON object, got {type(d).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown field(s) {unknown} for {cls.__name__}; known: {sorted(known)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@dataclass(frozen=True)
class Output:
    z: torch.Tensor      # code: (B, h) for MLPs, (B, c, S/4, S/4) for a two-stage conv model (c, 7, 7 at 28)
    raw: torch.Tensor    # decoder output before the output activation, (B, C, S, S): the input's shape
    output: str          # the config's output activation
    mu: torch.Tensor | None = None       # a VAE's posterior mean and log-variance, (B, latent)
    logvar: torch.Tensor | None = None

    @cached_property
    def x_hat(self) -> torch.Tensor:
        """Reconstruction in pixel space, (B, C, S, S); computed only when asked (BCE training never is)."""
        return torch.sigmoid(self.raw) if self.output == "sigmoid" else self.raw


class Autoencoder(nn.Module):
    """One class for every family: the config decides which layers the encoder and decoder hold."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.sparsity = config.sparsity     # the L1 weight; a run may change it while it trains (engine.steering)
        self.make_layers(config)
        initialise(self, config.init)

    def make_layers(self, config: ModelConfig) -> None:
        """Create the encoder and decoder (a subclass adds its own parts here, in construction order)."""
        self.encoder, self.decoder = (_conv_layers if config.family == "conv" else _mlp_layers)(config)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.reshape(len(x), *self._input_shape))  # (B, C*S*S) or (B, C, S, S)

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).view(len(z), *self.config.picture_shape)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Code -> image in pixel space, (B, C, S, S)."""
        return Output(z, self.decode_raw(z), self.config.output).x_hat

    def forward(self, x: torch.Tensor) -> Output:
        z = self.encode(x)
        raw = self.decode_raw(z)
        return Output(z=z, raw=raw, output=self.config.output)

    def loss(self, target: torch.Tensor, out: Output) -> torch.Tensor:
        """The training objective against the clean `target` (B, C, S, S): for a plain autoencoder the mean
        per-pixel BCE or MSE (plus the sparsity penalty when the config asks for one)."""
        return self.combine(self.loss_terms(target, out))

    def loss_terms(self, target: torch.Tensor, out: Output) -> dict[str, torch.Tensor]:
        """The loss's named parts (batch means); `combine` weighs them into the loss. Training reports each."""
        target = target.view_as(out.raw)
        if self.config.loss == "bce":
            recon = bce_with_logits(out.raw, target)
        else:
            recon = F.mse_loss(out.x_hat, target)
        if not self.sparsity:
            return {"reconstruction": recon}
        return {"reconstruction": recon, "code L1": out.z.abs().sum(dim=1).mean()}

    def combine(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        if len(terms) == 1:
            return terms["reconstruction"]
        return terms["reconstruction"] + self.sparsity * terms["code L1"]

    def at_epoch(self, epochs_done: float) -> None:
        """Told before every training step how far training has come (a VAE's KL warm-up uses it)."""

    @property
    def _input_shape(self):
        return self.config.picture_shape if self.config.convolutional else (self.config.pixels,)


def _stack(cfg: ModelConfig, sizes: list[int], layer, plain_last: bool, encoder: bool, pool=None) -> nn.Sequential:
    """Layers sizes[0] -> sizes[1] -> ..., each followed by batch norm if asked, the activation, `pool()` if
    given, and dropout.

    `layer(a, b)` makes the module for one step. The last step stays plain (no activation) when
    `plain_last`: the decoder's output, or a deep model's linear code. A decoder ends with output dropout
    when the config places dropout on hidden+output (the Chainer cases).
    """
    act = ACTIVATIONS[cfg.activation]
    norm = nn.BatchNorm2d if cfg.family == "conv" else nn.BatchNorm1d
    mods = []
    steps = list(zip(sizes, sizes[1:]))
    for i, (a, b) in enumerate(steps):
        mods.append(layer(a, b))
        if not (plain_last and i == len(steps) - 1):
            if cfg.batch_norm:
                mods.append(norm(b))
            mods.append(act())
            if pool is not None:
                mods.append(pool())
            if cfg.dropout:
                mods.append(nn.Dropout(cfg.dropout))
    if not encoder and cfg.dropout and cfg.dropout_where == "hidden+output":
        mods.append(nn.Dropout(cfg.dropout))
    return nn.Sequential(*mods)


def _mlp_layers(cfg: ModelConfig):
    sizes = [cfg.pixels, *cfg.hidden]
    linear_code = cfg.family == "deep" and cfg.linear_code
    return (_stack(cfg, sizes, nn.Linear, plain_last=linear_code, encoder=True),
            _stack(cfg, sizes[::-1], nn.Linear, plain_last=True, encoder=False))


def _conv_layers(cfg: ModelConfig):
    chans = [cfg.in_channels, *cfg.channels]
    # 3x3 conv keeps the side, 2x2 max-pool halves it; a 2x2 stride-2 transposed conv doubles it exactly.
    return (_stack(cfg, chans, lambda a, b: nn.Conv2d(a, b, 3, padding=1), plain_last=False, encoder=True,
                   pool=lambda: nn.MaxPool2d(2)),
            _stack(cfg, chans[::-1], lambda a, b: nn.ConvTranspose2d(a, b, 2, stride=2), plain_last=True,
                   encoder=False))


def initialise(model: nn.Module, scheme: str) -> None:
    """Re-initialise every linear and conv layer with the named scheme (torch: leave the defaults)."""
    if scheme == "torch":
        return
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            if scheme == "keras":
                nn.init.xavier_uniform_(m.weight)
            else:  # Chainer v1: N(0, sqrt(1 / fan_in))
                fan_in, _ = nn.init._calculate_fan_in_and_fan_out(m.weight)
                if isinstance(m, nn.ConvTranspose2d):  # weight is (in, out, k, k): fan_in is in * k * k
                    fan_in = m.weight.shape[0] * m.weight[0, 0].numel()
                nn.init.normal_(m.weight, 0.0, math.sqrt(1.0 / fan_in))
            nn.init.zeros_(m.bias)


@contextmanager
def inference(model: nn.Module):
    """Eval mode without gradients for the block; the model's previous mode comes back afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def batched(model: nn.Module, fn, inputs, batch_size: int = 1000) -> torch.Tensor:
    """`fn(batch)` for each `batch_size` inputs in turn, under `inference(model)`, the results concatenated on the
    CPU: torch.cat([fn(x[i:i + batch_size]) ...]). `inputs` (N, ...), numpy or torch: uint8 images become floats in
    [0, 1] (`data.to_float`, shape kept), floats the model's dtype; each batch goes to the model's device. No
    inputs give an empty float32 tensor (0,), for the caller to reshape."""
    param = next(model.parameters())
    x = inputs if isinstance(inputs, torch.Tensor) else torch.as_tensor(np.asarray(inputs))
    with inference(model):
        parts = [fn(to_float(x[i:i + batch_size], param.dtype, channel=False).to(param.device)).cpu()
                 for i in range(0, len(x), batch_size)]
    return torch.cat(parts) if parts else torch.zeros(0)


def summary(model: Autoencoder) -> list[dict]:
    """One row per layer: name, layer type, output shape (without batch) and parameter count."""
    rows = []
    hooks = []
    for name, m in model.named_modules():
        if len(list(m.children())) == 0:
            def hook(mod, inp, out, name=name):
                rows.append({"name": name, "layer": type(mod).__name__, "output_shape": tuple(out.shape[1:]),
                             "params": sum(p.numel() for p in mod.parameters())})
            hooks.append(m.register_forward_hook(hook))
    try:
        with inference(model):
            model(torch.zeros(1, *model.config.picture_shape, device=next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
    return rows


def summary_text(model: Autoencoder) -> str:
    """Keras-style table: for 784-32-784 the two Linear rows read 25,120 and 25,872."""
    rows = summary(model)
    lines = [f"{'layer':<22}{'output shape':<20}{'params':>12}", "-" * 54]
    for r in rows:
        shape = "(B, " + ", ".join(map(str, r["output_shape"])) + ")"
        lines.append(f"{r['name'] + ' ' + r['layer']:<22}{shape:<20}{r['params']:>12,}")
    lines += ["-" * 54, f"{'total':<42}{count_params(model):>12,}"]
    return "\n".join(lines)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

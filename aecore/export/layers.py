"""The model part of an exported script: an AE Lab model written out as a plain torch `nn.Module` class.

The class is written from the built model itself, layer by layer (`layer_code`), so its layers, their order and
their names are AE Lab's: the same seed gives the same first weights, and a checkpoint's tensors load into it by
name. Each layer's line ends with the shape it gives, found by running a zero picture through the model.
"""
from __future__ import annotations

import torch
from torch import nn

from aecore.engine.models import Autoencoder, ModelConfig


class ExportError(ValueError):
    """The model or run cannot be written in the asked form; the message says what and why."""


def layer_code(m: nn.Module) -> str:
    """One layer as the torch call that builds it: `nn.Linear(784, 200)`, `nn.Conv2d(1, 16, 3, padding=1)`."""
    if isinstance(m, nn.Linear):
        return f"nn.Linear({m.in_features}, {m.out_features})"
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        args = [str(m.in_channels), str(m.out_channels), str(m.kernel_size[0])]
        if m.stride[0] != 1:
            args.append(f"stride={m.stride[0]}")
        if m.padding[0]:
            args.append(f"padding={m.padding[0]}")
        if isinstance(m, nn.ConvTranspose2d) and m.output_padding[0]:
            args.append(f"output_padding={m.output_padding[0]}")
        return f"nn.{type(m).__name__}({', '.join(args)})"
    if isinstance(m, nn.MaxPool2d):
        return f"nn.MaxPool2d({m.kernel_size})"
    if isinstance(m, (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.Flatten)):
        return f"nn.{type(m).__name__}()"
    if isinstance(m, nn.Dropout):
        return f"nn.Dropout({m.p!r})"
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return f"nn.{type(m).__name__}({m.num_features})"
    if isinstance(m, nn.Unflatten):
        return f"nn.Unflatten({m.dim}, {tuple(m.unflattened_size)})"
    raise ExportError(f"no code for the layer {type(m).__name__}")


def _shape(t: torch.Tensor) -> str:
    return "(B, " + ", ".join(map(str, t.shape[1:])) + ")"


def sequential_code(seq: nn.Sequential, x: torch.Tensor, indent: str) -> tuple[list[str], torch.Tensor]:
    """`nn.Sequential(...)` lines, each layer commented with its output shape; and the output of `x` through it."""
    lines = ["nn.Sequential("]
    with torch.no_grad():
        for m in seq:
            x = m(x)
            code = f"{indent}    {layer_code(m)},"
            lines.append(f"{code:<52}# -> {_shape(x)}")
    lines.append(f"{indent})")
    return lines, x


INIT_CODE = {
    "keras": '''def init_weights(model):
    """Glorot-uniform weights and zero biases (Keras's defaults), every linear and conv layer in turn."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
''',
    "chainer": '''def init_weights(model):
    """Chainer v1's initialisation: weights drawn from N(0, 1 / fan_in), zero biases, every layer in turn."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            if isinstance(m, nn.ConvTranspose2d):      # weight (in, out, k, k): fan_in is in * k * k
                fan_in = m.weight.shape[0] * m.weight[0, 0].numel()
            else:                                       # weight (out, in, ...): fan_in is one row
                fan_in = m.weight[0].numel()
            nn.init.normal_(m.weight, 0.0, math.sqrt(1.0 / fan_in))
            nn.init.zeros_(m.bias)
''',
}


def model_code(model: Autoencoder, sparse: bool) -> str:
    """The model class (and, for a Keras or Chainer initialisation, `init_weights` before it). `sparse`: the
    shallow model's L1 code penalty is written (its weight is set, or changes while the run trains)."""
    cfg: ModelConfig = model.config
    model = model.cpu().eval()
    c, s = cfg.in_channels, cfg.side
    reads = f"{c}, {s}, {s}" if cfg.convolutional else str(cfg.pixels)
    first = torch.zeros(1, *cfg.picture_shape) if cfg.convolutional else torch.zeros(1, cfg.pixels)
    enc_lines, h = sequential_code(model.encoder, first, " " * 8)
    out = [INIT_CODE[cfg.init] + "\n\n"] if cfg.init in INIT_CODE else []
    title = "Variational autoencoder" if cfg.variational else "Autoencoder"
    out.append(f'''class Autoencoder(nn.Module):
    """{title} {cfg.sizes_text}.
    It reads pictures (B, {c}, {s}, {s}) in [0, 1].

    The layers, their order and their names are AE Lab's: the same seed gives the same first weights,
    and a checkpoint's tensors load into it with load_state_dict."""

    def __init__(self):
        super().__init__()
''')
    if cfg.variational:
        with torch.no_grad():
            code = model.heads(h)
        dec_lines, _ = sequential_code(model.decoder, torch.zeros(1, cfg.latent), " " * 8)
        head = f"nn.Linear({model.heads.in_features}, {model.heads.out_features})"
        out.append("        # Built in AE Lab's order (encoder, decoder, heads), which decides the first weights\n"
                   "        encoder = " + "\n".join(enc_lines) + "\n"
                   "        decoder = " + "\n".join(dec_lines) + "\n"
                   f"        heads = {head:<40}# -> {_shape(code)}: the mean and log-variance side by side\n"
                   "        self.encoder, self.heads, self.decoder = encoder, heads, decoder\n"
                   "        self.beta = BETA                 # the KL term's full weight\n"
                   "        self.kl_weight = BETA            # its weight now (lower during a KL warm-up)\n")
    else:
        dec_lines, _ = sequential_code(model.decoder, h, " " * 8)
        out.append("        self.encoder = " + "\n".join(enc_lines) + "\n"
                   "        self.decoder = " + "\n".join(dec_lines) + "\n")
        if sparse:
            out.append("        self.sparsity = SPARSITY         # the weight of the L1 penalty on the code\n")
    if cfg.init in INIT_CODE:
        out.append("        init_weights(self)\n")
    out.append("\n")
    if cfg.variational:
        out.append(f'''    def posterior(self, x):
        """q(z|x): its mean and log-variance, each (B, {cfg.latent})."""
        h = self.encoder(x.reshape(len(x), {reads}))
        mu, logvar = self.heads(h).chunk(2, dim=1)
        return mu, logvar

    def encode(self, x):
        return self.posterior(x)[0]             # the code of a picture is its posterior mean

''')
    else:
        out.append(f'''    def encode(self, x):
        return self.encoder(x.reshape(len(x), {reads}))

''')
    squash = ("torch.sigmoid(self.decode_raw(z))" if cfg.output == "sigmoid"
              else "self.decode_raw(z)                  # an identity output: the values as they come")
    out.append(f'''    def decode_raw(self, z):
        """Codes -> the decoder's output before the output activation, (B, {c}, {s}, {s})."""
        return self.decoder(z).view(len(z), {c}, {s}, {s})

    def decode(self, z):
        """Codes -> pictures."""
        return {squash}

''')
    if cfg.variational:
        out.append('''    def forward(self, x):
        """(z, raw, mu, logvar): while training the code is sampled, z = mu + sigma * eps (the
        reparameterisation trick); in eval mode it is the mean."""
        mu, logvar = self.posterior(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        return z, self.decode_raw(z), mu, logvar

''')
    else:
        out.append('''    def forward(self, x):
        """(z, raw): the code and the decoder's output before the output activation."""
        z = self.encode(x)
        return z, self.decode_raw(z)

''')
    out.append(_loss_code(cfg, sparse))
    return "".join(out)


def _loss_code(cfg: ModelConfig, sparse: bool) -> str:
    if cfg.variational:
        n = cfg.pixels
        recon = ("F.binary_cross_entropy_with_logits(raw, x, reduction=\"sum\") / len(x)" if cfg.loss == "bce"
                 else "(torch.sigmoid(raw) - x).pow(2).sum() / len(x)")
        what = ("BCE summed over its" if cfg.loss == "bce" else "squared error summed over its")
        warm = (f"self.beta * min(1.0, epochs_done / KL_WARMUP)" if cfg.kl_warmup else "self.beta")
        return f'''    def loss(self, x, out):
        """Per picture, the reconstruction term ({what} {n} numbers) plus kl_weight times the
        KL divergence of q(z|x) from N(0, I), in nats; averaged over the batch."""
        z, raw, mu, logvar = out
        recon = {recon}
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=-1).mean()
        return recon + self.kl_weight * kl

    def at_epoch(self, epochs_done):
        """Told before every step how far training has come (a float, in epochs): the KL weight{
            " rises from 0 to beta over KL_WARMUP epochs" if cfg.kl_warmup else " is beta"}."""
        self.kl_weight = {warm}
'''
    if cfg.loss == "bce":
        body = ("        loss = F.binary_cross_entropy_with_logits(raw, x)    # from the logits: exact and safe\n")
        what = "Binary cross-entropy per pixel, averaged over the pixels and the batch"
    else:
        x_hat = "torch.sigmoid(raw)" if cfg.output == "sigmoid" else "raw"
        body = f"        loss = F.mse_loss({x_hat}, x)\n"
        what = "Squared error per pixel, averaged over the pixels and the batch"
    if sparse:
        body += ("        if self.sparsity:                # L1 on the code: summed per picture, mean over the batch\n"
                 "            loss = loss + self.sparsity * z.abs().sum(dim=1).mean()\n")
        what += ", plus the sparsity penalty"
    return f'''    def loss(self, x, out):
        """{what}."""
        z, raw = out
{body}        return loss
'''

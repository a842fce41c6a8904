"""An AE Lab model as one offline HTML page: the model inside, and a forward pass of its own in JavaScript.

The page draws a canvas to write on, the model's reconstruction of it and the error map, and for a 2-D code the
latent plane, whose every point decodes under the pointer. Nothing is fetched: the weights are in the file as
base64 float32, the script and styles inline, and a Content-Security-Policy forbids any request. The model is a list
of operations (`ops`): linear, conv, transposed conv, 2×2 max-pool, batch norm folded into a per-channel affine map,
the activations, and reshapes; dropout is left out (eval mode). `window.aelab.reconstruct(pixels)`, with pixels an
array of side·side·channels values in 0..1 (row by row, a pixel's channels together), resolves to the
reconstruction in the same layout; `encode` and `decode` likewise.
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from aecore.engine.models import Autoencoder, count_params
from aecore.export.layers import ExportError

TEMPLATE = Path(__file__).with_name("page.html")
PLANE = 3.0     # the latent plane's half-width where the code is unbounded (a VAE's prior: ±3 sigma)


class _Weights:
    """The float32 numbers of every layer, one after another; `add` gives an array's offset."""

    def __init__(self):
        self.parts: list[np.ndarray] = []
        self.size = 0

    def add(self, t: torch.Tensor) -> int:
        a = t.detach().cpu().float().numpy().astype("<f4").ravel()
        self.parts.append(a)
        self.size += a.size
        return self.size - a.size

    def base64(self) -> str:
        return base64.b64encode(np.concatenate(self.parts).tobytes() if self.parts else b"").decode("ascii")


def _ops(seq, w: _Weights) -> list[dict]:
    ops = []
    for m in seq:
        if isinstance(m, nn.Linear):
            ops.append({"op": "linear", "in": m.in_features, "out": m.out_features, "w": w.add(m.weight),
                        "b": w.add(m.bias)})
        elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            ops.append({"op": "conv" if isinstance(m, nn.Conv2d) else "convt", "cin": m.in_channels,
                        "cout": m.out_channels, "k": m.kernel_size[0], "s": m.stride[0], "p": m.padding[0],
                        "op_pad": m.output_padding[0] if isinstance(m, nn.ConvTranspose2d) else 0,
                        "w": w.add(m.weight), "b": w.add(m.bias)})
        elif isinstance(m, nn.MaxPool2d):
            ops.append({"op": "maxpool", "k": m.kernel_size})
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):     # eval mode: y = x * scale + shift per channel
            scale = m.weight / torch.sqrt(m.running_var + m.eps)
            ops.append({"op": "affine", "scale": w.add(scale), "shift": w.add(m.bias - m.running_mean * scale),
                        "n": m.num_features})
        elif isinstance(m, (nn.ReLU, nn.Sigmoid, nn.Tanh)):
            ops.append({"op": type(m).__name__.lower()})
        elif isinstance(m, nn.Flatten):
            ops.append({"op": "flatten"})
        elif isinstance(m, nn.Unflatten):
            ops.append({"op": "shape", "shape": list(m.unflattened_size)})
        elif isinstance(m, nn.Dropout):
            continue                                               # eval mode: the identity
        else:
            raise ExportError(f"the offline page has no {type(m).__name__} layer")
    return ops


def description(model: Autoencoder, name: str) -> tuple[dict, str]:
    """The page's model: its shapes and operations (JSON-able), and its weights as base64."""
    cfg = model.config
    model = model.cpu().eval()
    w = _Weights()
    encoder = [{"op": "shape", "shape": list(cfg.picture_shape) if cfg.convolutional else [cfg.pixels]}]
    encoder += _ops(model.encoder, w)
    if cfg.variational:                 # the code is the posterior mean: the first `latent` outputs of the heads
        heads = model.heads
        encoder.append({"op": "linear", "in": heads.in_features, "out": cfg.latent,
                        "w": w.add(heads.weight[:cfg.latent]), "b": w.add(heads.bias[:cfg.latent])})
    decoder = [{"op": "shape", "shape": list(cfg.code_shape)}, *_ops(model.decoder, w),
               {"op": "shape", "shape": list(cfg.picture_shape)},
               {"op": "sigmoid" if cfg.output == "sigmoid" else "clamp"}]
    low, high = cfg.code_range or (-PLANE, PLANE)
    kind = {"shallow": "shallow autoencoder", "deep": "deep autoencoder", "conv": "convolutional autoencoder",
            "vae": "variational autoencoder", "conv-vae": "convolutional variational autoencoder"}[cfg.family]
    about = {"name": name, "family": cfg.family, "kind": kind, "sizes": cfg.sizes_text, "params": count_params(model),
             "side": cfg.side, "channels": cfg.in_channels, "code": list(cfg.code_shape),
             "plane": [low, high], "bounded": cfg.code_range is not None, "encoder": encoder, "decoder": decoder,
             "floats": w.size}
    return about, w.base64()


def html_page(model: Autoencoder, name: str) -> str:
    """The whole page, one self-contained HTML file."""
    about, weights = description(model, name)
    page = TEMPLATE.read_text(encoding="utf-8")
    return (page.replace("__TITLE__", html.escape(f"{name}: {model.config.sizes_text}"))
                .replace("/*MODEL*/null", json.dumps(about, separators=(",", ":")))
                .replace("__WEIGHTS__", weights))

"""An AE Lab model as ONNX: the whole autoencoder (pictures to their reconstruction), its encoder or its decoder.

Every part reads and writes pictures as floats (B, C, S, S) in [0, 1], the batch size free: "all" maps pictures to
their reconstruction, "encoder" pictures to codes (a VAE's posterior mean), "decoder" codes to pictures. A model
with an identity output is clamped to [0, 1] in "all" and "decoder", so every export gives pixels. torch's
TorchScript-based exporter writes it (`dynamo=False`: plain layers need no more, and it needs no onnxscript); the
onnx package is imported here only, when an export is asked for.
"""
from __future__ import annotations

import io
import warnings

import torch
from torch import nn

from aecore.engine.models import Autoencoder
from aecore.export.layers import ExportError

PARTS = ("all", "encoder", "decoder")
OPSET = 17


class Part(nn.Module):
    """One part of a model, in eval mode, written with shapes the exporter keeps free (no Python ints of the batch
    size: `len(x)` would be traced as a constant)."""

    def __init__(self, model: Autoencoder, part: str):
        super().__init__()
        if part not in PARTS:
            raise ExportError(f"part must be one of {', '.join(PARTS)}, got {part!r}")
        self.model, self.part = model, part

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.model.config
        h = x.reshape(-1, *cfg.picture_shape) if cfg.convolutional else x.reshape(-1, cfg.pixels)
        h = self.model.encoder(h)
        return self.model.heads(h)[:, :cfg.latent] if cfg.variational else h     # a VAE's code: the mean (mu, logvar)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        cfg = self.model.config
        raw = self.model.decoder(z).reshape(-1, *cfg.picture_shape)
        return torch.sigmoid(raw) if cfg.output == "sigmoid" else raw.clamp(0.0, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.part == "encoder":
            return self.encode(x)
        if self.part == "decoder":
            return self.decode(x)
        return self.decode(self.encode(x))


def io_names(part: str) -> tuple[str, str]:
    return {"all": ("pictures", "reconstruction"), "encoder": ("pictures", "code"),
            "decoder": ("code", "pictures")}[part]


def example_input(model: Autoencoder, part: str, batch: int = 1) -> torch.Tensor:
    """An input of the part's shape: pictures (B, C, S, S), or codes (B, *code_shape) for the decoder."""
    cfg = model.config
    return torch.zeros(batch, *(cfg.code_shape if part == "decoder" else cfg.picture_shape))


def onnx_bytes(model: Autoencoder, part: str = "all") -> bytes:
    """The part as an ONNX model (opset 17), checked by onnx's checker; the batch dimension is named "batch"."""
    try:
        import onnx
    except ImportError:
        raise ExportError("ONNX export needs the onnx package: pip install onnx (see requirements.txt)") from None
    wrapped = Part(model.cpu().eval(), part).eval()
    name_in, name_out = io_names(part)
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")      # the TorchScript exporter's deprecation notice
        torch.onnx.export(wrapped, (example_input(model, part),), buf, dynamo=False, opset_version=OPSET,
                          input_names=[name_in], output_names=[name_out],
                          dynamic_axes={name_in: {0: "batch"}, name_out: {0: "batch"}})
    proto = onnx.load_from_string(buf.getvalue())
    proto.doc_string = f"AE Lab {model.config.family} autoencoder {model.config.sizes_text}: {part}"
    onnx.checker.check_model(proto)
    return proto.SerializeToString()

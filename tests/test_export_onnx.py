"""ONNX exports against torch, with onnxruntime: every family, every part, a batch size other than the traced one."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from aecore.engine.models import ModelConfig, build
from aecore.export import ExportError
from aecore.export.toonnx import Part, onnx_bytes

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

MODELS = {
    "shallow": ModelConfig(family="shallow", hidden=(32,), sparsity=1e-4),
    "deep": ModelConfig(family="deep", hidden=(64, 16, 2), activation="tanh", loss="mse", output="identity",
                        dropout=0.3, dropout_where="hidden+output", linear_code=True),
    "deep-bn": ModelConfig(family="deep", hidden=(32, 8), batch_norm=True),
    "conv": ModelConfig(family="conv", channels=(4, 2), loss="mse", batch_norm=True),
    "vae": ModelConfig(family="vae", hidden=(32,), latent=2),
    "conv-vae": ModelConfig(family="conv-vae", channels=(4, 8), hidden=(8,), latent=3),
    "rgb-conv": ModelConfig(family="conv", channels=(8,), side=32, color="rgb", loss="mse"),
}


def trained_like(cfg: ModelConfig) -> torch.nn.Module:
    """A fresh model whose batch-norm statistics are not the defaults (so eval mode matters)."""
    model = build(cfg, seed=1)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.parametrize("name", list(MODELS))
def test_each_part_matches_torch(name):
    model = trained_like(MODELS[name])
    cfg = model.config
    x = torch.rand(5, *cfg.picture_shape)
    with torch.no_grad():
        z = model.encode(x)
        x_hat = model.decode(z).clamp(0, 1)
    for part, given, want in [("all", x, x_hat), ("encoder", x, z), ("decoder", z, x_hat)]:
        session = ort.InferenceSession(onnx_bytes(model, part))
        (got,) = session.run(None, {session.get_inputs()[0].name: given.numpy()})
        assert got.shape == tuple(want.shape)
        np.testing.assert_allclose(got, want.numpy(), atol=1e-4, rtol=0, err_msg=part)


def test_the_graph_names_its_inputs_and_outputs_and_a_free_batch():
    session = ort.InferenceSession(onnx_bytes(build(MODELS["vae"], seed=0), "encoder"))
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, out.name) == ("pictures", "code")
    assert inp.shape == ["batch", 1, 28, 28] and out.shape == ["batch", 2]


def test_an_unknown_part_is_refused():
    with pytest.raises(ExportError, match="part must be one of all, encoder, decoder"):
        Part(build(MODELS["shallow"]), "middle")

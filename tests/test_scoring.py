"""aecore.engine.scoring: per-image reconstruction error, test-error quantiles and percentiles, code sparsity."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from aecore.engine.models import ModelConfig, build
from aecore.engine.scoring import (QUANTILE_STEPS, code_sparsity, error_quantiles, percentile, reconstruct,
                            reconstruction_error)


@pytest.fixture
def images():
    return torch.from_numpy(np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8))


def _manual_error(model, x01: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        x_hat = model.eval()(torch.from_numpy(x01).float().view(-1, 1, 28, 28)).x_hat
    x_hat = x_hat.clamp(0, 1).numpy().reshape(-1, 28, 28)
    return ((x_hat - x01) ** 2).mean(axis=(1, 2))


@pytest.mark.parametrize("cfg", [ModelConfig(hidden=(16,)),
                                 ModelConfig(hidden=(16,), output="identity", loss="mse"),
                                 ModelConfig(family="conv", channels=(4, 2), loss="mse")])
def test_reconstruction_error_is_per_image_pixel_mse(images, cfg):
    model = build(cfg, seed=0)
    if cfg.output == "identity":
        with torch.no_grad():
            model.decoder[-1].bias.add_(0.8)   # push outputs past 1 so the clamp matters
    errors = reconstruction_error(model, images)
    assert errors.shape == (7,)
    assert ((errors >= 0) & (errors <= 1)).all()
    expected = _manual_error(model, images.numpy().astype(np.float32) / 255)
    np.testing.assert_allclose(errors, expected, rtol=1e-5, atol=1e-7)


def test_uint8_and_float_inputs_agree(images):
    model = build(ModelConfig(hidden=(16,)), seed=0)
    from_uint8 = reconstruction_error(model, images)
    from_float = reconstruction_error(model, images.float() / 255)
    from_numpy = reconstruction_error(model, images.numpy())
    np.testing.assert_allclose(from_uint8, from_float, rtol=1e-6)
    np.testing.assert_allclose(from_uint8, from_numpy, rtol=1e-6)


def test_single_image_and_channel_axis(images):
    model = build(ModelConfig(hidden=(16,)), seed=0)
    all_errors = reconstruction_error(model, images)
    assert reconstruction_error(model, images[2]).shape == (1,)
    assert reconstruction_error(model, images[2])[0] == pytest.approx(all_errors[2], rel=1e-6)
    assert reconstruction_error(model, images.unsqueeze(1)).shape == (7,)


def test_perfect_reconstruction_scores_zero():
    model = build(ModelConfig(hidden=(16,), output="identity", loss="mse"), seed=0)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    blank = torch.zeros(3, 28, 28, dtype=torch.uint8)
    assert reconstruction_error(model, blank).tolist() == [0.0, 0.0, 0.0]
    white = torch.full((2, 28, 28), 255, dtype=torch.uint8)
    assert reconstruction_error(model, white).tolist() == [1.0, 1.0]


@pytest.mark.parametrize("shape", [(5, 784), (5, 28, 27), (28,)])
def test_bad_shape_is_rejected(shape):
    model = build(ModelConfig(hidden=(16,)), seed=0)
    with pytest.raises(ValueError, match=r"\(N, 28, 28\)"):
        reconstruction_error(model, torch.zeros(shape))


def test_reconstruct_keeps_training_mode_and_range(images):
    model = build(ModelConfig(hidden=(16,), dropout=0.5), seed=0).train()
    out = reconstruct(model, images, batch_size=3)
    assert model.training
    assert out.shape == (7, 28, 28) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1
    np.testing.assert_allclose(out, reconstruct(model, images), atol=1e-6)   # eval mode: no dropout
    assert reconstruct(model, images[:0]).shape == (0, 28, 28)


def test_error_quantiles_length_and_order():
    errors = np.random.default_rng(1).gamma(2.0, 0.01, size=500)
    q = error_quantiles(errors)
    assert len(q) == QUANTILE_STEPS + 1 == 1001
    assert q == sorted(q)
    assert q[0] == pytest.approx(errors.min(), rel=1e-5)
    assert q[-1] == pytest.approx(errors.max(), rel=1e-5)
    assert q[500] == pytest.approx(np.median(errors), rel=1e-5)


def test_percentile_reads_the_quantiles():
    errors = np.random.default_rng(2).random(2000) * 0.1
    q = error_quantiles(errors)
    assert percentile(-1.0, q) == 0.0
    assert percentile(q[0], q) == 0.0
    assert percentile(q[-1], q) == 100.0
    assert percentile(10.0, q) == 100.0
    probes = np.linspace(-0.01, 0.11, 60)
    values = [percentile(p, q) for p in probes]
    assert values == sorted(values)
    assert percentile(float(np.quantile(errors, 0.9)), q) == pytest.approx(90.0, abs=0.2)


def test_percentile_needs_two_quantiles():
    with pytest.raises(ValueError):
        percentile(0.1, [0.2])


# ---------------------------------------------------------------------------------------------- code sparsity
def test_code_sparsity_of_a_hand_made_code():
    """784-4 ReLU code reading only pixel (0, 0): unit u's code is relu(c_u * pixel + b_u), known exactly."""
    model = build(ModelConfig(hidden=(4,)), seed=0).train()
    with torch.no_grad():
        layer = model.encoder[0]
        layer.weight.zero_()
        layer.weight[:, 0] = torch.tensor([2.0, 4.0, -1.0, 0.0])
        layer.bias.copy_(torch.tensor([-1.0, 0.0, -0.5, 3.0]))
    images = np.zeros((3, 28, 28), np.float32)
    images[:, 0, 0] = [0.0, 0.5, 1.0]
    # codes (image x unit): [0, 0, 0, 3], [0, 2, 0, 3], [1, 4, 0, 3]
    s = code_sparsity(model, images)
    assert model.training                                  # measured in eval mode, its mode given back
    assert s["values"].tolist() == [0, 0, 0, 3, 0, 2, 0, 3, 1, 4, 0, 3] and s["values"].dtype == np.float32
    assert s["mean_activation"] == 16 / 12
    np.testing.assert_array_equal(s["zero_share"], [2 / 3, 1 / 3, 1.0, 0.0])
    assert s["zero_share_all"] == 0.5 and s["dead_units"] == 1 and s["images"] == 3
    one_by_one = code_sparsity(model, torch.from_numpy(images), batch_size=1)
    np.testing.assert_array_equal(one_by_one["values"], s["values"])


def test_code_sparsity_matches_the_code_of_a_deep_model(images):
    model = build(ModelConfig(family="deep", hidden=(64, 8), dropout=0.5), seed=3)
    with torch.no_grad():
        model.encoder[-3].bias[5] = -1e3                      # the code layer's unit 5 can never fire
    s = code_sparsity(model, images, batch_size=4)
    with torch.no_grad():
        z = model.eval().encode(images.float().div(255).view(-1, 1, 28, 28)).numpy()   # oracle: (7, 8)
    assert z.shape == (7, 8) and s["zero_share"].shape == (8,)
    np.testing.assert_allclose(s["values"], z.reshape(-1), rtol=1e-5, atol=1e-6)   # float32 GEMMs over batches of 4 and of 7 differ in the last bits
    assert s["mean_activation"] == pytest.approx(float(z.mean()), rel=1e-6)
    np.testing.assert_array_equal(s["zero_share"], (z == 0).mean(axis=0))
    assert s["zero_share"][5] == 1.0 and s["dead_units"] == int((z == 0).all(axis=0).sum()) >= 1


@pytest.mark.parametrize("cfg", [ModelConfig(family="conv", channels=(4, 2)), ModelConfig(family="vae")])
def test_code_sparsity_needs_a_flat_code(images, cfg):
    with pytest.raises(ValueError, match=f"flat code, got the {cfg.family} family"):
        code_sparsity(build(cfg, seed=0), images)


def test_code_sparsity_needs_images():
    with pytest.raises(ValueError, match="at least one image"):
        code_sparsity(build(ModelConfig(hidden=(4,)), seed=0), np.zeros((0, 28, 28), np.uint8))

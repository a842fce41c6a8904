"""Every autoencoder family at every picture side and colour: shapes, parameter counts worked out by hand, a loss
that falls under `fit` on coloured squares made here, checkpoints that keep side and colour, and clear errors."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from safetensors.torch import save as st_save

from aecore.engine import checkpoint
from aecore.engine.data import Data, Split, to_float
from aecore.engine.models import FAMILIES, ModelConfig, build, conv_side, count_params
from aecore.engine.scoring import pixel_errors, reconstruct
from aecore.engine.train import TrainConfig, evaluate, fit, results

SIDES, COLORS = (32, 64), ("grey", "rgb")
CASES = list(itertools.product(FAMILIES, SIDES, COLORS))
# Small sizes for each family; `sparse` is the shallow family with the L1 penalty on its code.
SMALL = {"shallow": dict(hidden=(24,)), "deep": dict(hidden=(48, 12)), "conv": dict(channels=(8, 8)),
         "vae": dict(hidden=(32,), latent=4), "conv-vae": dict(channels=(4, 8), hidden=(16,), latent=3)}


def config(family: str, side: int, color: str, **extra) -> ModelConfig:
    return ModelConfig(family=family, side=side, color=color, **{**SMALL[family], **extra})


def channels_of(color: str) -> int:
    return {"grey": 1, "rgb": 3}[color]


# ---------------------------------------------------------------------------------------------- hand formulas
def mlp_params(sizes: list[int]) -> int:
    """Linear a->b layers along `sizes`: a*b weights and b biases each."""
    return sum(a * b + b for a, b in zip(sizes, sizes[1:]))


def expected_params(cfg: ModelConfig) -> int:
    c, s = channels_of(cfg.color), cfg.side
    n = c * s * s
    if cfg.family in ("shallow", "deep"):             # n-h1-..-hk, mirrored back to n
        return mlp_params([n, *cfg.hidden]) + mlp_params([n, *cfg.hidden][::-1])
    if cfg.family == "vae":                           # encoder, one head to 2 * latent, decoder latent-..-n
        return (mlp_params([n, *cfg.hidden]) + mlp_params([cfg.hidden[-1], 2 * cfg.latent])
                + mlp_params([cfg.latent, *cfg.hidden[::-1], n]))
    c1, c2 = cfg.channels
    if cfg.family == "conv":                          # two 3x3 convs, two 2x2 transposed convs back to c channels
        return (c * c1 * 9 + c1) + (c1 * c2 * 9 + c2) + (c2 * c1 * 4 + c1) + (c1 * c * 4 + c)
    f, dense = (s // 4) ** 2, cfg.hidden[0]           # conv-vae: the last feature map has f places
    enc = (9 * c * c1 + c1) + (9 * c1 * c2 + c2) + (f * c2 * dense + dense) + (dense * 2 * cfg.latent + 2 * cfg.latent)
    dec = (cfg.latent * f * c2 + f * c2) + (9 * c2 * c2 + c2) + (9 * c2 * c1 + c1) + (9 * c1 * c + c)
    return enc + dec


def expected_code_shape(cfg: ModelConfig) -> tuple[int, ...]:
    if cfg.family in ("vae", "conv-vae"):
        return (cfg.latent,)
    if cfg.family == "conv":
        return (cfg.channels[-1], cfg.side // 4, cfg.side // 4)
    return (cfg.hidden[-1],)


# ---------------------------------------------------------------------------------------------- shapes and counts
@pytest.mark.parametrize("family,side,color", CASES)
def test_every_family_keeps_the_pictures_shape_at_every_side_and_colour(family, side, color):
    cfg = config(family, side, color)
    c = channels_of(color)
    assert cfg.in_channels == c and cfg.picture_shape == (c, side, side)
    model = build(cfg, seed=0).eval()
    x = torch.rand(5, c, side, side, generator=torch.Generator().manual_seed(0))
    out = model(x)
    assert out.x_hat.shape == out.raw.shape == x.shape
    assert tuple(out.z.shape) == (5, *expected_code_shape(cfg)) and cfg.code_shape == expected_code_shape(cfg)
    assert model.decode(model.encode(x)).shape == x.shape
    assert model(x.reshape(5, -1)).x_hat.shape == x.shape                     # flat input, C*S*S numbers
    assert count_params(model) == expected_params(cfg)
    assert torch.isfinite(model.loss(x, out))


@pytest.mark.parametrize("cfg,count", [
    (ModelConfig(side=64, color="rgb", hidden=(64,)), 1_585_216),             # 12288*64 + 64 + 64*12288 + 12288
    (ModelConfig(side=32, hidden=(32,)), 66_592),                            # 1024*32 + 32 + 32*1024 + 1024
    (ModelConfig(family="conv", side=64, color="rgb", channels=(32, 64)), 28_003),   # 896 + 18496 + 8224 + 387
    (ModelConfig(family="conv", side=32, channels=(16, 4)), 1_077),          # as 28 x 28: convs do not see the side
])
def test_parameter_counts_worked_out(cfg, count):
    assert count_params(build(cfg)) == expected_params(cfg) == count


def test_sparse_shallow_takes_any_picture():
    cfg = ModelConfig(side=64, color="rgb", hidden=(16,), sparsity=1e-3)
    model = build(cfg, seed=0)
    x = torch.rand(3, 3, 64, 64)
    out = model(x)
    terms = model.loss_terms(x, out)
    assert out.x_hat.shape == x.shape and set(terms) == {"reconstruction", "code L1"}
    assert terms["code L1"].item() == pytest.approx(out.z.abs().sum(1).mean().item())


def test_sizes_in_words():
    assert ModelConfig(family="deep", side=64, color="rgb", hidden=(512, 64)).sizes_text == "12288-512-64-512-12288"
    assert (ModelConfig(family="conv", side=64, color="rgb", channels=(32, 64)).sizes_text
            == "3→32→64 channels, code 64×16×16")
    assert ModelConfig(family="vae", side=32, hidden=(256,)).sizes_text == "1024-256-2-256-1024, Gaussian code"
    assert ModelConfig(family="conv-vae", side=32, color="rgb").sizes_text.startswith("3→16→4 channels (stride 2)")
    assert ModelConfig().sizes_text == "784-200-784"                          # MNIST's, as before
    assert ModelConfig(family="conv").sizes_text == "1→16→4 channels, code 4×7×7"


# ---------------------------------------------------------------------------------------------- errors
def test_a_conv_stack_that_cannot_halve_the_side_is_refused_by_name():
    with pytest.raises(ValueError, match=r"ModelConfig\.side must divide by 2\*\*2 = 4 .*channels \(8, 4\).*30"):
        ModelConfig(family="conv", side=30, channels=(8, 4))
    with pytest.raises(ValueError, match=r"side must divide by 2\*\*2 = 4 .*got side 30"):
        ModelConfig(family="conv-vae", side=30, channels=(8, 4))
    with pytest.raises(ValueError, match=r"2\*\*3 = 8 .*got side 36"):
        conv_side(36, (4, 4, 4))
    assert conv_side(64, (4, 4)) == 16 and conv_side(28, (4, 4)) == 7


@pytest.mark.parametrize("kwargs,words", [
    (dict(side=48), "ModelConfig.side must be one of 28, 32 or 64, got 48"),
    (dict(side=30), "ModelConfig.side must be one of 28, 32 or 64, got 30"),     # an MLP halves nothing
    (dict(color="cmyk"), "ModelConfig.color must be one of ('grey', 'rgb'), got 'cmyk'"),
])
def test_a_side_or_colour_outside_the_table_is_refused(kwargs, words):
    with pytest.raises(ValueError) as e:
        ModelConfig(**kwargs)
    assert str(e.value) == words


def test_fit_refuses_pictures_the_model_does_not_read():
    model = build(ModelConfig(side=64, color="rgb", hidden=(8,)), seed=0)
    grey = squares(8, 28, "grey")
    with pytest.raises(ValueError, match=r"training images have shape \(8, 28, 28\), but the model reads 64×64 rgb "
                                         r"pictures \(N, 3, 64, 64\)"):
        next(fit(model, Data(grey, None, grey), TrainConfig(device="cpu")))


# ---------------------------------------------------------------------------------------------- pictures in
def test_to_float_takes_grey_and_colour_pictures_of_any_side():
    grey = torch.full((4, 32, 32), 51, dtype=torch.uint8)
    rgb = torch.full((4, 3, 64, 64), 255, dtype=torch.uint8)
    assert to_float(grey).shape == (4, 1, 32, 32) and to_float(grey)[0, 0, 0, 0] == pytest.approx(0.2)
    assert to_float(grey[:, None]).shape == (4, 1, 32, 32) and to_float(grey[0]).shape == (1, 1, 32, 32)
    assert to_float(rgb).shape == (4, 3, 64, 64) and to_float(rgb).max() == 1.0
    assert to_float(rgb, channel=False).shape == (4, 3, 64, 64)              # the shape they came in
    assert to_float(grey.numpy(), torch.float64).dtype == torch.float64
    for bad in (torch.zeros(4, 2, 32, 32), torch.zeros(4, 32, 30), torch.zeros(1024)):
        with pytest.raises(ValueError, match=rf"got {tuple(bad.shape)}".replace("(", r"\(").replace(")", r"\)")):
            to_float(bad)


# ---------------------------------------------------------------------------------------------- training
def squares(n: int, side: int, color: str, seed: int = 0) -> Split:
    """`n` black pictures, each with one filled square of a random colour (grey: a random brightness), a quarter
    of the side wide, at a random place: uint8 (n, S, S) grey or (n, 3, S, S) colour, as picture sets hold them."""
    g = np.random.default_rng(seed)
    c, w = channels_of(color), side // 4
    images = np.zeros((n, c, side, side), dtype=np.uint8)
    for i in range(n):
        top, left = g.integers(0, side - w, size=2)
        images[i, :, top:top + w, left:left + w] = g.integers(64, 256, size=(c, 1, 1))
    t = torch.from_numpy(images)
    return Split(t[:, 0] if c == 1 else t, torch.from_numpy(g.integers(0, 10, n)))


@pytest.mark.parametrize("family,side,color", CASES)
def test_fit_lowers_the_loss_on_coloured_squares(family, side, color):
    train, test = squares(64, side, color, seed=1), squares(16, side, color, seed=2)
    data = Data(train, None, test)
    model = build(config(family, side, color), seed=0)
    before = evaluate(model, test.images)
    cfg = TrainConfig(epochs=4, batch_size=16, lr=1e-2, device="cpu", seed=0, log_every=4)
    history = list(fit(model, data, cfg))
    after = evaluate(model, test.images)
    assert history[-1].epoch_end and history[-1].step == 16
    assert after < 0.6 * before, (before, after)          # 0.07 to 0.4 of it in every case when written
    report = results(model, data, history)                                     # what a finished run stores
    assert report["figures"]["test_loss"] == pytest.approx(after, rel=1e-5)
    assert len(report["test_error_quantiles"]) == 1001
    recon = reconstruct(model, test.images)
    assert recon.shape == tuple(test.images.shape) and recon.dtype == np.float32
    assert pixel_errors(model, test.images).shape == (16, channels_of(color) * side * side)


# ---------------------------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("family,side,color", [("conv", 64, "rgb"), ("vae", 32, "rgb"), ("deep", 64, "grey"),
                                               ("conv-vae", 64, "rgb"), ("shallow", 32, "grey")])
def test_a_checkpoint_keeps_side_and_colour(family, side, color):
    model = build(config(family, side, color), seed=3).eval()
    back, meta = checkpoint.load(checkpoint.to_bytes(model, {"name": "pictures"}))
    assert back.config == model.config and (back.config.side, back.config.color) == (side, color)
    assert meta["model"] == model.config
    x = torch.rand(2, channels_of(color), side, side)
    assert torch.equal(back(x).x_hat, model(x).x_hat)


def test_a_checkpoint_from_before_pictures_had_a_side_loads_as_28_grey():
    model = build(ModelConfig(family="conv"), seed=0)
    old = model.config.to_dict()
    del old["side"], old["color"]
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    blob = st_save(tensors, metadata={"format": checkpoint.FORMAT, "aecore": json.dumps({"model": old})})
    back, meta = checkpoint.load(blob)
    assert (meta["model"].side, meta["model"].color) == (28, "grey") and back.config == model.config
    assert ModelConfig.from_dict({"family": "shallow", "hidden": [32]}).picture_shape == (1, 28, 28)

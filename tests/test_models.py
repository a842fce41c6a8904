"""aecore.engine.models: shapes and parameter counts of every preset, losses, initialisation, config checks."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from aecore.engine import presets
from aecore.engine.models import ModelConfig, build, count_params, summary, summary_text


# ---------------------------------------------------------------------------------------------- parameter counts
def shallow_params(h: int) -> int:
    """784-h-784: encoder Linear 784*h + h, decoder Linear h*784 + 784."""
    return 784 * h + h + h * 784 + 784


def deep_params(hidden: tuple[int, ...]) -> int:
    """Mirrored MLP: encoder Linear a->b has a*b + b, the decoder's mirror b->a has b*a + a."""
    sizes = [784, *hidden]
    encoder = sum(a * b + b for a, b in zip(sizes, sizes[1:]))
    decoder = sum(b * a + a for a, b in zip(sizes, sizes[1:]))
    return encoder + decoder


def conv_params(c1: int, c2: int) -> int:
    """Two 3x3 convs, then two 2x2 stride-2 transposed convs back to one channel."""
    conv1 = 1 * c1 * 9 + c1
    conv2 = c1 * c2 * 9 + c2
    tconv1 = c2 * c1 * 4 + c1
    tconv2 = c1 * 1 * 4 + 1
    return conv1 + conv2 + tconv1 + tconv2


def vae_params(hidden: tuple[int, ...], latent: int) -> int:
    """MLP encoder 784-h1-..-hk, mean and log-variance heads (one Linear to 2 * latent), mirrored decoder."""
    sizes = [784, *hidden]
    enc = sum(a * b + b for a, b in zip(sizes, sizes[1:])) + hidden[-1] * 2 * latent + 2 * latent
    back = [latent, *hidden[::-1], 784]
    dec = sum(a * b + b for a, b in zip(back, back[1:]))
    return enc + dec


def conv_vae_params(c1: int, c2: int, dense: int, latent: int) -> int:
    """keras-io: 3x3 stride-2 convs, dense, heads; decoder dense to 7x7xc2, 3x3 transposed convs c2, c1, conv to 1."""
    enc = (9 * c1 + c1) + (9 * c1 * c2 + c2) + (49 * c2 * dense + dense) + (dense * 2 * latent + 2 * latent)
    dec = (latent * 49 * c2 + 49 * c2) + (9 * c2 * c2 + c2) + (9 * c2 * c1 + c1) + (9 * c1 + 1)
    return enc + dec


def expected_params(cfg: ModelConfig) -> int:
    if cfg.family == "vae":
        return vae_params(cfg.hidden, cfg.latent)
    if cfg.family == "conv-vae":
        return conv_vae_params(*cfg.channels, cfg.hidden[0], cfg.latent)
    if cfg.family == "shallow":
        return shallow_params(cfg.hidden[0])
    if cfg.family == "deep":
        return deep_params(cfg.hidden)
    return conv_params(*cfg.channels)


def expected_code_shape(cfg: ModelConfig) -> tuple[int, ...]:
    if cfg.family in ("vae", "conv-vae"):
        return (5, cfg.latent)
    if cfg.family == "conv":
        return (5, cfg.channels[-1], 7, 7)
    return (5, cfg.hidden[-1])


# The hand formulas worked out, so a wrong formula above cannot hide a wrong model.
KNOWN_COUNTS = {
    "pytorch-784-200": 314_584,
    "keras-784-32": 50_992,
    "chainer-case1": 1_569_784,
    "chainer-case3": 628_384,
    "chainer-case7": 157_684,
    "conv-digit0": 1_077,
    "stacked-2d": 485_266,
    # the references' own summaries: the Keras example 404,244; keras-io encoder 69,076 + decoder 65,089
    "keras-vae-2d": 404_244,
    "conv-vae-2d": 134_165,
    "sparse-784-32": 50_992,
    "iwae-vae-50": 425_284,
}


@pytest.mark.parametrize("name", list(presets.PRESETS))
def test_every_preset_builds_with_exact_shapes_and_parameters(name):
    cfg = presets.get(name).model
    model = build(cfg, seed=0).eval()
    x = torch.rand(5, 1, 28, 28)
    out = model(x)
    assert tuple(out.z.shape) == expected_code_shape(cfg)
    assert tuple(out.x_hat.shape) == (5, 1, 28, 28)
    assert tuple(out.raw.shape) == (5, 1, 28, 28)
    assert count_params(model) == expected_params(cfg)
    if name in KNOWN_COUNTS:
        assert count_params(model) == KNOWN_COUNTS[name]
    assert tuple(model.encode(x).shape) == expected_code_shape(cfg)
    assert tuple(model.decode(out.z).shape) == (5, 1, 28, 28)
    assert model.config.code_shape == expected_code_shape(cfg)[1:]


def test_flat_input_is_accepted():
    model = build(ModelConfig(hidden=(16,)), seed=0)
    assert model(torch.rand(3, 784)).x_hat.shape == (3, 1, 28, 28)


def test_sigmoid_output_in_unit_range_and_identity_unbounded():
    torch.manual_seed(0)
    x = torch.rand(8, 1, 28, 28)
    sig = build(ModelConfig(hidden=(16,)), seed=0)
    xs = sig(x).x_hat
    assert xs.min() >= 0 and xs.max() <= 1
    ident = build(ModelConfig(hidden=(16,), output="identity", loss="mse"), seed=0)
    out = ident(x)
    assert torch.equal(out.x_hat, out.raw)


# ---------------------------------------------------------------------------------------------- summary table
def test_keras_summary_table():
    model = build(presets.get("keras-784-32").model, seed=0)
    rows = summary(model)
    linear = [r for r in rows if r["layer"] == "Linear"]
    assert [r["params"] for r in linear] == [25_120, 25_872]
    assert [r["output_shape"] for r in linear] == [(32,), (784,)]
    text = summary_text(model)
    assert "25,120" in text and "25,872" in text
    assert "50,992" in text.splitlines()[-1]


def test_summary_keeps_training_mode():
    model = build(ModelConfig(hidden=(16,), dropout=0.5), seed=0).train()
    summary(model)
    assert model.training
    model.eval()
    summary(model)
    assert not model.training


# ---------------------------------------------------------------------------------------------- losses
def test_bce_loss_matches_torch_oracle():
    model = build(ModelConfig(hidden=(32,), output="sigmoid", loss="bce"), seed=1)
    torch.manual_seed(0)
    x = torch.rand(6, 1, 28, 28)
    out = model(x)
    expected = F.binary_cross_entropy(out.x_hat, x)
    assert model.loss(x, out).item() == pytest.approx(expected.item(), abs=1e-5)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_fast_bce_from_logits_matches_torchs_value_and_gradient(reduction):
    """aecore's BCE from logits against torch's, on ordinary logits and on extremes (±100, where a naive
    log(sigmoid) would give inf): the value to one float32 rounding per pixel, the gradient exactly."""
    from aecore.engine.models.losses import bce_with_logits
    gen = torch.Generator().manual_seed(0)
    raw = torch.cat([torch.randn(124, 784, generator=gen) * 4,
                     torch.tensor([[-100., -30., -17., -1e-3, 0., 1e-3, 17., 30., 100.] * 87 + [0.]])])
    target = torch.rand(raw.shape, generator=gen)
    target[0] = (target[0] > 0.5).float()                    # binary pixels too
    ours, theirs = raw.clone().requires_grad_(), raw.clone().requires_grad_()
    got = bce_with_logits(ours, target, reduction)
    want = F.binary_cross_entropy_with_logits(theirs, target, reduction=reduction)
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    (got * 3).backward()
    (want * 3).backward()
    assert torch.allclose(ours.grad, theirs.grad, rtol=1e-6, atol=1e-12)
    per_pixel = F.binary_cross_entropy_with_logits(raw, target, reduction="none")
    assert per_pixel.sum().item() == pytest.approx(bce_with_logits(raw, target, "sum").item(), rel=1e-6)


@pytest.mark.parametrize("shape", [(124, 784), (125, 784), (3, 7), (1, 64)])
def test_fast_bce_sum_holds_against_float64(shape):
    """The sum of BCE by products of 64 factors (and a shorter tail where the count is no multiple of 64) against
    the same sum in float64: within two float32 roundings of the sum (its last digit), as torch's own float32
    value is."""
    from aecore.engine.models.losses import bce_sum
    gen = torch.Generator().manual_seed(1)
    raw = torch.randn(shape, generator=gen) * 8
    raw.view(-1)[:5] = torch.tensor([-100., -30., 0., 30., 100.])
    target = torch.rand(shape, generator=gen) * (torch.rand(shape, generator=gen) > 0.7)
    exact = F.binary_cross_entropy_with_logits(raw.double(), target.double(), reduction="sum").item()
    total, p = bce_sum(raw, target)
    torch_f32 = F.binary_cross_entropy_with_logits(raw, target, reduction="sum").item()
    assert abs(total.item() - exact) <= 2.4e-7 * exact
    assert abs(torch_f32 - exact) <= 2.4e-7 * exact
    assert torch.equal(p, torch.sigmoid(raw))


def test_fast_bce_refuses_what_it_cannot_compute():
    from aecore.engine.models.losses import bce_with_logits
    raw, target = torch.zeros(2, 3), torch.full((2, 3), 0.5)
    with pytest.raises(ValueError, match="reduction must be 'mean' or 'sum'"):
        bce_with_logits(raw, target, "none")
    with pytest.raises(ValueError, match="no gradient to the target"):
        bce_with_logits(raw, target.clone().requires_grad_())
    with pytest.raises(ValueError, match=r"raw \(2, 3\) and target \(3, 2\) differ"):
        bce_with_logits(raw, target.view(3, 2))
    assert bce_with_logits(raw, target).item() == pytest.approx(math.log(2), rel=1e-6)


@pytest.mark.parametrize("output", ["sigmoid", "identity"])
def test_mse_loss_matches_torch_oracle(output):
    model = build(ModelConfig(hidden=(32,), output=output, loss="mse"), seed=1)
    torch.manual_seed(0)
    x = torch.rand(6, 1, 28, 28)
    out = model(x)
    expected = F.mse_loss(out.x_hat, x)
    assert model.loss(x, out).item() == pytest.approx(expected.item(), abs=1e-6)


# ---------------------------------------------------------------------------------------------- initialisation
def _weighted(model):
    return [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d))]


def test_keras_init_is_glorot_uniform_with_zero_bias():
    model = build(ModelConfig(hidden=(32,), init="keras"), seed=0)
    for layer in _weighted(model):
        fan_out, fan_in = layer.weight.shape
        bound = math.sqrt(6 / (fan_in + fan_out))
        assert torch.count_nonzero(layer.bias) == 0
        assert layer.weight.abs().max().item() <= bound
        # spread over the whole Glorot range (torch's default bound 1/sqrt(fan_in) is much narrower here)
        assert layer.weight.abs().max().item() > 0.95 * bound


def test_chainer_init_is_normal_with_std_sqrt_one_over_fan_in():
    model = build(ModelConfig(hidden=(1000,), init="chainer", output="identity", loss="mse"), seed=0)
    first, second = _weighted(model)
    assert first.weight.shape == (1000, 784)
    for layer, fan_in in ((first, 784), (second, 1000)):
        assert torch.count_nonzero(layer.bias) == 0
        assert layer.weight.std().item() == pytest.approx(math.sqrt(1 / fan_in), rel=0.03)
        assert abs(layer.weight.mean().item()) < 1e-3


def test_chainer_init_conv_uses_fan_in():
    model = build(ModelConfig(family="conv", channels=(16, 4), init="chainer"), seed=0)
    tconv1 = model.decoder[0]
    assert isinstance(tconv1, nn.ConvTranspose2d)
    # weight (in=4, out=16, 2, 2): fan_in is in * k * k = 16 (torch's own helper would count out * k * k)
    assert tconv1.weight.std().item() == pytest.approx(math.sqrt(1 / 16), rel=0.2)
    conv2 = model.encoder[3]
    assert isinstance(conv2, nn.Conv2d)
    assert conv2.weight.std().item() == pytest.approx(math.sqrt(1 / (16 * 9)), rel=0.2)


def test_torch_init_keeps_default_biases():
    model = build(ModelConfig(hidden=(32,)), seed=0)
    assert all(torch.count_nonzero(layer.bias) > 0 for layer in _weighted(model))


# ---------------------------------------------------------------------------------------------- config checks
@pytest.mark.parametrize("kwargs,field", [
    ({"hidden": (1,)}, "hidden"),
    ({"hidden": (2001,)}, "hidden"),
    ({"hidden": (32, 16)}, "hidden"),
    ({"family": "deep", "hidden": (64, -2)}, "hidden"),
    ({"family": "deep", "hidden": ()}, "hidden"),
    ({"family": "conv", "channels": (16, -4)}, "channels"),
    ({"family": "conv", "channels": (16, 8, 4)}, "channels"),
    ({"dropout": 1.0}, "dropout"),
    ({"dropout": -0.1}, "dropout"),
    ({"output": "identity", "loss": "bce"}, "loss"),
    ({"activation": "gelu"}, "activation"),
    ({"family": "rnn"}, "family"),
    ({"init": "xavier"}, "init"),
    ({"dropout_where": "output"}, "dropout_where"),
])
def test_invalid_model_config_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"ModelConfig.{field}"):
        ModelConfig(**kwargs)


def test_model_config_dict_round_trip():
    cfg = presets.get("stacked-2d").model
    d = cfg.to_dict()
    d["hidden"] = list(d["hidden"])   # as JSON gives it back
    assert ModelConfig.from_dict(d) == cfg
    with pytest.raises(ValueError, match="bogus"):
        ModelConfig.from_dict({**d, "bogus": 1})


# ---------------------------------------------------------------------------------------------- build
def test_seeded_build_is_reproducible_and_leaves_global_rng_alone():
    cfg = ModelConfig(family="deep", hidden=(64, 8))
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a, b = build(cfg, seed=3), build(cfg, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    c = build(cfg, seed=4)
    assert not torch.equal(a.encoder[0].weight, c.encoder[0].weight)


# ---------------------------------------------------------------------------------------------- layer layout
def test_linear_code_leaves_the_code_unbounded():
    cfg = ModelConfig(family="deep", hidden=(64, 2), activation="tanh", linear_code=True)
    model = build(cfg, seed=0)
    assert isinstance(model.encoder[-1], nn.Linear) and model.encoder[-1].out_features == 2
    model.encoder[-1].bias.data.fill_(5.0)          # a tanh code could never exceed 1
    assert model.encode(torch.rand(4, 1, 28, 28)).min().item() > 1.0


def test_bounded_code_without_linear_code():
    model = build(ModelConfig(family="deep", hidden=(64, 2), activation="tanh"), seed=0)
    assert isinstance(model.encoder[-1], nn.Tanh)
    model.encoder[-2].bias.data.fill_(5.0)
    assert model.encode(torch.rand(4, 1, 28, 28)).max().item() <= 1.0


@pytest.mark.parametrize("kwargs,expected", [
    ({"family": "deep", "hidden": (64, 2), "activation": "tanh"}, (-1.0, 1.0)),
    ({"family": "deep", "hidden": (64, 2), "activation": "tanh", "linear_code": True}, None),
    ({"family": "shallow", "hidden": (16,), "activation": "sigmoid"}, (0.0, 1.0)),
    ({"family": "shallow", "hidden": (16,), "activation": "relu"}, None),
    ({"family": "conv", "channels": (4,), "activation": "tanh"}, (-1.0, 1.0)),
])
def test_code_range_holds_every_code(kwargs, expected):
    cfg = ModelConfig(**kwargs)
    assert cfg.code_range == expected
    if expected is not None:      # push every pre-activation far out: the codes still stay inside the range
        model = build(cfg, seed=0)
        for p in model.encoder.parameters():
            p.data.mul_(50.0)
        codes = model.encode(torch.rand(8, 1, 28, 28) * 4 - 2)
        assert expected[0] <= codes.min().item() and codes.max().item() <= expected[1]


def test_linear_code_ignored_for_shallow_family():
    model = build(ModelConfig(hidden=(16,), linear_code=True), seed=0)
    assert isinstance(model.encoder[-1], nn.ReLU)


@pytest.mark.parametrize("family,kwargs", [("shallow", {"hidden": (16,)}),
                                           ("deep", {"hidden": (32, 8)}),
                                           ("conv", {"channels": (8, 4)})])
def test_dropout_placement(family, kwargs):
    hidden_only = build(ModelConfig(family=family, dropout=0.5, dropout_where="hidden", **kwargs), seed=0)
    with_output = build(ModelConfig(family=family, dropout=0.5, dropout_where="hidden+output", **kwargs), seed=0)
    assert not isinstance(hidden_only.decoder[-1], nn.Dropout)
    assert isinstance(with_output.decoder[-1], nn.Dropout)
    assert with_output.decoder[-1].p == 0.5
    assert len(with_output.decoder) == len(hidden_only.decoder) + 1
    assert isinstance(hidden_only.encoder[-1], nn.Dropout)   # after the code's activation
    none = build(ModelConfig(family=family, dropout_where="hidden+output", **kwargs), seed=0)
    assert not any(isinstance(m, nn.Dropout) for m in none.modules())


def test_dropout_is_active_only_in_training_mode():
    model = build(ModelConfig(hidden=(64,), dropout=0.5), seed=0)
    x = torch.rand(4, 1, 28, 28)
    model.eval()
    assert torch.equal(model(x).x_hat, model(x).x_hat)
    model.train()
    torch.manual_seed(0)
    assert not torch.equal(model(x).x_hat, model(x).x_hat)

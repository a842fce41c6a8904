"""The variational family (aecore.engine.models.vae) and the sparse autoencoder option behind the one contract, trained by the
one `fit`: the loss's terms against their closed forms, sampling in training and the mean in eval mode, gradients
through the sampled code, the KL warm-up, the sparsity penalty's effect, the optimiser and binarisation options,
checkpoints, and one short real VAE run when MNIST is present."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from aecore.engine import checkpoint, presets
from aecore.engine.data import Data, DataConfig, load
from aecore.engine.models import ModelConfig, build
from aecore.engine.train import TrainConfig, evaluate, fit
from aecore.engine.models.vae import gaussian_kl

from idx_helpers import real_mnist_dir, tiny_data

VAE = ModelConfig(family="vae", hidden=(32,), latent=3)
CONV_VAE = ModelConfig(family="conv-vae", channels=(4, 8), hidden=(16,), latent=2)


@pytest.fixture(scope="module")
def data():
    return tiny_data(n_train=300, n_test=40)


def batch(n=6, seed=0):
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------- the loss
@pytest.mark.parametrize("cfg", [VAE, CONV_VAE], ids=["mlp", "conv"])
def test_the_loss_is_the_summed_reconstruction_plus_beta_times_the_kl(cfg):
    cfg = replace(cfg, beta=2.5)
    model = build(cfg, seed=0).train()
    x = batch()
    torch.manual_seed(1)
    out = model(x)
    terms = model.loss_terms(x, out)
    bce = F.binary_cross_entropy_with_logits(out.raw.reshape(6, -1), x.reshape(6, -1), reduction="none").sum(1)
    assert terms["reconstruction"].item() == pytest.approx(bce.mean().item(), rel=1e-6)
    kl = 0.5 * (out.mu ** 2 + out.logvar.exp() - 1 - out.logvar).sum(1)
    assert terms["KL"].item() == pytest.approx(kl.mean().item(), rel=1e-6)
    assert model.loss(x, out).item() == pytest.approx(bce.mean().item() + 2.5 * kl.mean().item(), rel=1e-6)
    assert tuple(out.mu.shape) == tuple(out.logvar.shape) == (6, cfg.latent)


def test_the_kl_matches_its_closed_form_and_a_monte_carlo_estimate():
    mu, logvar = torch.tensor([[0.5, -1.0]]), torch.tensor([[math.log(0.25), math.log(2.0)]])
    by_hand = 0.5 * ((0.25 + 0.25 - 1 - math.log(0.25)) + (1.0 + 2.0 - 1 - math.log(2.0)))
    assert gaussian_kl(mu, logvar).item() == pytest.approx(by_hand, rel=1e-6)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    z = q.sample((200_000,))
    p = torch.distributions.Normal(0.0, 1.0)
    monte_carlo = (q.log_prob(z) - p.log_prob(z)).sum(-1).mean().item()
    assert monte_carlo == pytest.approx(by_hand, abs=0.02)


def test_log_px_is_a_normalised_likelihood_for_both_reconstruction_terms():
    x = batch(4)
    bce = build(VAE, seed=0)
    raw = torch.randn(4, 1, 28, 28)
    binary = (x > 0.5).float()                 # a Bernoulli likelihood is a probability for binary pixels
    expected = torch.distributions.Bernoulli(logits=raw.reshape(4, -1)).log_prob(binary.reshape(4, -1)).sum(1)
    assert torch.allclose(bce.log_px(binary, raw), expected, atol=1e-3)
    gauss = build(replace(VAE, loss="mse"), seed=0)
    normal = torch.distributions.Normal(torch.sigmoid(raw.reshape(4, -1)), math.sqrt(0.5))
    assert torch.allclose(gauss.log_px(x, raw), normal.log_prob(x.reshape(4, -1)).sum(1), rtol=1e-5)
    # the training term is -log p(x|z) up to the Gaussian's constant
    out = gauss(x)
    recon = gauss.loss_terms(x, out)["reconstruction"]
    assert recon.item() == pytest.approx(-(gauss.log_px(x, out.raw).mean().item()
                                           + 0.5 * 784 * math.log(math.pi)), rel=1e-5)


# ---------------------------------------------------------------------------------------------- sampling
def test_training_samples_the_code_and_eval_uses_the_mean():
    model = build(VAE, seed=0)
    x = batch()
    model.train()
    a, b = model(x), model(x)
    assert not torch.equal(a.z, b.z), "two training passes draw two codes"
    assert torch.equal(a.mu, b.mu)
    model.eval()
    out = model(x)
    assert torch.equal(out.z, out.mu) and torch.equal(model.encode(x), out.mu)
    assert tuple(model.encode(x).shape) == (6, 3) and model.config.code_shape == (3,)


def test_gradients_flow_through_the_sampled_code():
    """With beta = 0 only the reconstruction term is left: the encoder learns through z = mu + sigma * eps, the
    log-variance head included (it only enters through the sample)."""
    model = build(replace(VAE, beta=0.0), seed=0).train()
    x = batch()
    model.loss(x, model(x)).backward()
    head = model.heads.weight.grad
    assert head is not None
    assert head[:3].abs().sum() > 0, "the mean head gets a gradient"
    assert head[3:].abs().sum() > 0, "the log-variance head gets one through the sample"
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())


def test_the_kl_warm_up_raises_the_weight_linearly():
    model = build(replace(VAE, beta=4.0, kl_warmup=2), seed=0)
    weights = []
    for e in (0.0, 0.5, 1.0, 2.0, 3.5):
        model.at_epoch(e)
        weights.append(model.kl_weight)
    assert weights == [0.0, 1.0, 2.0, 4.0, 4.0]


# ---------------------------------------------------------------------------------------------- training
@pytest.mark.parametrize("cfg", [VAE, CONV_VAE], ids=["mlp", "conv"])
def test_fit_trains_a_vae_and_reports_both_terms(cfg, data):
    model = build(cfg, seed=0)
    records = list(fit(model, data, TrainConfig(epochs=4, batch_size=30, log_every=5, device="cpu")))
    assert records[-1].train_loss < 0.8 * records[0].train_loss
    assert [name for name, _ in records[-1].terms] == ["reconstruction", "KL"]
    ends = [r for r in records if r.epoch_end]
    assert [name for name, _ in ends[-1].epoch_terms] == ["reconstruction", "KL"]
    recon, kl = dict(ends[-1].epoch_terms)["reconstruction"], dict(ends[-1].epoch_terms)["KL"]
    assert ends[-1].epoch_loss == pytest.approx(recon + kl, rel=1e-4)
    assert kl > 0


def test_plain_models_report_no_terms(data):
    records = list(fit(build(ModelConfig(hidden=(8,)), seed=0), data, TrainConfig(epochs=1, batch_size=50,
                                                                                  device="cpu")))
    assert all(r.terms == () and r.epoch_terms == () for r in records)


def test_the_sparsity_penalty_lowers_the_codes_activity(data):
    means = {}
    for weight in (0.0, 0.05):
        cfg = ModelConfig(family="shallow", hidden=(32,), sparsity=weight)
        model = build(cfg, seed=0)
        records = list(fit(model, data, TrainConfig(epochs=6, batch_size=30, device="cpu")))
        if weight:
            assert [n for n, _ in records[-1].terms] == ["reconstruction", "code L1"]
        with torch.no_grad():
            means[weight] = model.eval().encode(data.test.images.float() / 255).mean().item()
    assert means[0.05] < 0.5 * means[0.0], means


def test_rmsprop_trains_and_binarised_evaluation_is_fixed(data):
    model = build(VAE, seed=0)
    cfg = TrainConfig(epochs=3, batch_size=30, device="cpu", optimizer="rmsprop", binarize=True, adam_eps=1e-7)
    records = list(fit(model, data, cfg))
    assert records[-1].train_loss < records[0].train_loss
    a = evaluate(model, data.test.images, binarize=True)
    assert a == evaluate(model, data.test.images, binarize=True)
    assert a != evaluate(model, data.test.images)


@pytest.mark.parametrize("cfg", [VAE, CONV_VAE], ids=["mlp", "conv"])
def test_a_vae_checkpoint_round_trips(cfg):
    model = build(replace(cfg, beta=0.5, kl_warmup=3), seed=3).eval()
    loaded, meta = checkpoint.load(checkpoint.to_bytes(model, {"name": "v"}))
    assert meta["model"] == model.config and type(loaded) is type(model)
    x = batch()
    assert torch.equal(loaded(x).raw, model(x).raw)


@pytest.mark.parametrize("changes, message", [
    (dict(output="identity", loss="mse"), "ModelConfig.output must be 'sigmoid' for a variational autoencoder"),
    (dict(dropout=0.2), "ModelConfig.dropout must be 0 (and batch_norm off) for a variational autoencoder"),
    (dict(latent=0), "ModelConfig.latent must be an integer from 1 to 512"),
    (dict(beta=-1.0), "ModelConfig.beta must be in [0, 100]"),
    (dict(family="conv-vae", channels=(8, 8, 8)), "ModelConfig.channels must be 1 or 2 channel counts"),
    (dict(family="deep", hidden=(64, 8), sparsity=0.1), "ModelConfig.sparsity must be 0 outside the shallow family"),
])
def test_bad_generative_settings_are_named(changes, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]")):
        replace(VAE, **changes)


# ---------------------------------------------------------------------------------------------- real MNIST
@pytest.mark.mnist
def test_one_epoch_of_the_keras_vae_on_mnist():
    folder = real_mnist_dir()
    pre = presets.get("keras-vae-2d")
    data: Data = load(DataConfig(), folder)
    model = build(pre.model, seed=0)
    before = evaluate(model, data.test.images)
    records = list(fit(model, data, replace(pre.train, epochs=1, device="cpu")))
    after = evaluate(model, data.test.images)
    assert before > 500 and after < 175, (before, after)     # nats per image: 784 coin flips are 543
    recon, kl = dict(records[-1].epoch_terms)["reconstruction"], dict(records[-1].epoch_terms)["KL"]
    assert 2 < kl < 10 and recon > 130


def test_the_weight_init_setting_reaches_a_vae():
    """init='keras' (Glorot-uniform, zero biases) as for the plain families; the keras-io conv VAE's dense layer
    keeps units alive with it where torch's default loses most of them."""
    keras = build(replace(CONV_VAE, init="keras"), seed=0)
    torch_default = build(CONV_VAE, seed=0)
    assert all((m.bias == 0).all() for m in keras.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)))
    assert not torch.equal(keras.heads.weight, torch_default.heads.weight)
    fan_in, fan_out = keras.heads.weight.shape[1], keras.heads.weight.shape[0]
    assert keras.heads.weight.abs().max() <= math.sqrt(6 / (fan_in + fan_out))

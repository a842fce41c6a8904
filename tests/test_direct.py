"""The written-out step (aecore.engine.models.direct) trains every plain MLP as autograd does: the same gradients for
one batch, the same losses and weights after whole runs (noise, a short last batch, a sparsity penalty switched on
mid-run included), and no written-out step where the maths is not the one it knows."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from aecore.engine.models import ModelConfig, build
from aecore.engine.models.direct import direct_step
from aecore.engine.data import to_float
from aecore.engine.train import TrainConfig, fit
from idx_helpers import tiny_data

MLPS = {
    "shallow relu bce": ModelConfig(hidden=(40,)),
    "shallow tanh bce": ModelConfig(hidden=(40,), activation="tanh"),
    "shallow sigmoid mse identity": ModelConfig(hidden=(40,), activation="sigmoid", output="identity", loss="mse"),
    "deep tanh mse sigmoid": ModelConfig(family="deep", hidden=(64, 16, 2), activation="tanh", loss="mse"),
    "deep relu bce linear code": ModelConfig(family="deep", hidden=(48, 8), linear_code=True),
}


@pytest.mark.parametrize("name", MLPS)
def test_one_step_gives_autograds_loss_and_gradients(name):
    cfg = MLPS[name]
    model = build(cfg, seed=3)
    step = direct_step(model)
    assert step is not None and step.applies()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(7, 1, 28, 28, generator=gen)
    noisy = (x + 0.2 * torch.randn(x.shape, generator=gen)).clamp(0, 1)     # the input differs from the target
    loss = model.loss(x, model(noisy))
    loss.backward()
    want = [p.grad.clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = None
    got = step(noisy, x)
    assert not got.requires_grad
    assert got.item() == pytest.approx(loss.item(), rel=1e-6)
    for (pname, p), w in zip(model.named_parameters(), want):
        assert p.grad.shape == w.shape
        assert torch.allclose(p.grad, w, rtol=1e-5, atol=1e-9), pname


@pytest.mark.parametrize("name", MLPS)
@pytest.mark.parametrize("noise", ["none", "mask"])
def test_fit_trains_to_the_same_losses_and_weights_both_ways(name, noise):
    data = tiny_data(n_train=250, n_test=20)                  # batches of 64: three whole, the last of 58
    train = TrainConfig(epochs=3, batch_size=64, seed=1, device="cpu", log_every=2, noise=noise,
                        noise_level=0.3 if noise == "mask" else 0.0)
    runs = []
    for direct in (True, False):
        model = build(MLPS[name], seed=0)
        runs.append(([m.train_loss for m in fit(model, data, train, direct=direct)], model))
    (losses_d, model_d), (losses_a, model_a) = runs
    assert len(losses_d) == len(losses_a) == 6               # two records an epoch
    assert losses_d == pytest.approx(losses_a, rel=1e-6)
    assert losses_d[-1] < losses_d[0]                          # it learns: the two are not equal constants
    for p, q in zip(model_d.parameters(), model_a.parameters()):
        assert torch.allclose(p, q, rtol=1e-5, atol=1e-7)


def test_a_sparsity_penalty_switched_on_mid_run_goes_through_autograd():
    data = tiny_data(n_train=256, n_test=20)
    cfg = ModelConfig(hidden=(32,))
    train = TrainConfig(epochs=2, batch_size=64, seed=0, device="cpu", log_every=1, changes=((3, "sparsity", 0.05),))
    runs = []
    for direct in (True, False):
        runs.append(list(fit(build(cfg, seed=0), data, train, direct=direct)))
    direct_run, autograd_run = runs
    assert [m.train_loss for m in direct_run] == pytest.approx([m.train_loss for m in autograd_run], rel=1e-6)
    assert [dict(m.terms) for m in direct_run][:3] == [{}, {}, {}]
    assert all("code L1" in dict(m.terms) for m in direct_run[3:])   # the penalty is in the loss from step 4 on


@pytest.mark.parametrize("change", [
    {"family": "vae", "hidden": (32,)},
    {"family": "conv"},
    {"dropout": 0.2},
    {"batch_norm": True},
])
def test_no_written_out_step_where_its_maths_does_not_hold(change):
    assert direct_step(build(replace(ModelConfig(hidden=(16,)), **change), seed=0)) is None


def test_the_steps_buffers_serve_each_batch_size():
    model = build(ModelConfig(hidden=(16,)), seed=0)
    step = direct_step(model)
    images = tiny_data(n_train=10, n_test=1).train.images
    full, short = to_float(images[:6]), to_float(images[6:9])
    first = step(full, full).item()
    assert step(short, short).item() == pytest.approx(model.loss(short, model(short)).item(), rel=1e-6)
    assert step(full, full).item() == pytest.approx(first, rel=1e-7)     # the weights did not move: no optimiser
    assert sorted(step._buffers) == [3, 6]


def test_a_hooked_model_trains_through_autograd_and_its_modules():
    model = build(ModelConfig(hidden=(16,)), seed=0)
    step = direct_step(model)
    assert step.applies()
    handle = model.encoder.register_forward_pre_hook(lambda module, args: None)
    assert not step.applies()              # the hook expects the encoder to be called
    handle.remove()
    handle = model.decoder[0].weight.register_hook(lambda grad: grad)
    assert not step.applies()              # and this one a gradient through autograd
    handle.remove()
    handle = torch.nn.modules.module.register_module_forward_hook(lambda module, args, out: None)
    try:
        assert not step.applies()          # a hook on every module
    finally:
        handle.remove()
    assert step.applies()

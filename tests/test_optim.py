"""LeanAdam is torch's fused Adam to the bit: the same weights and state after the same steps, learning-rate
changes included, state_dicts that load either way, and torch's own step for whatever it does not cover."""
from __future__ import annotations

import copy

import pytest
import torch

from aecore.engine.models import ModelConfig, build
from aecore.engine.optim import LeanAdam


def train(make_opt, steps: int = 12, lr_change_at: int = 6, model=None) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """`steps` Adam steps of a small shallow model on fixed random batches; the rate drops at `lr_change_at`."""
    model = model or build(ModelConfig("shallow", hidden=(16,)), seed=0)
    opt = make_opt(model.parameters())
    gen = torch.Generator().manual_seed(1)
    for step in range(steps):
        if step == lr_change_at:
            opt.param_groups[0]["lr"] = 3e-4
        x = torch.rand(8, 1, 28, 28, generator=gen)
        loss = model.loss(x, model(x))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model, opt


def torch_adam(params):
    return torch.optim.Adam(params, lr=1e-3, eps=1e-8, fused=True)


def lean_adam(params):
    return LeanAdam(params, lr=1e-3, eps=1e-8)


def same_state(a: torch.optim.Optimizer, b: torch.optim.Optimizer) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa["param_groups"] == sb["param_groups"] and all(
        torch.equal(sa["state"][i][k], sb["state"][i][k]) for i in sa["state"] for k in sa["state"][i])


def test_lean_adam_gives_the_same_weights_and_state_as_torch_fused_adam_to_the_bit(monkeypatch):
    calls = []
    real = torch.optim.Adam.step
    monkeypatch.setattr(torch.optim.Adam, "step", lambda self, closure=None: calls.append(1) or real(self, closure))
    lean, lean_opt = train(lean_adam)
    assert len(calls) == 1                # torch's step made the state; the other 11 called the kernel directly
    monkeypatch.undo()
    ref, ref_opt = train(torch_adam)
    for (name, p), q in zip(lean.named_parameters(), ref.parameters()):
        assert torch.equal(p, q), name
    assert same_state(lean_opt, ref_opt)
    assert lean_opt.state_dict()["state"][0]["step"].item() == 12


def test_a_state_dict_loads_either_way_and_training_goes_on_the_same():
    model_a, opt_a = train(lean_adam, steps=5)
    model_b = build(ModelConfig("shallow", hidden=(16,)), seed=0)
    model_b.load_state_dict(model_a.state_dict())
    opt_b = torch_adam(model_b.parameters())
    # deep copies, as a checkpoint holds them (a state_dict shares its tensors with the optimiser)
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))   # a checkpoint's optimiser, read by plain Adam ...
    opt_c = lean_adam(model_a.parameters())
    opt_c.load_state_dict(copy.deepcopy(opt_b.state_dict()))   # ... and plain Adam's, read by LeanAdam
    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    for model, opt in ((model_a, opt_c), (model_b, opt_b)):
        opt.zero_grad()
        model.loss(x, model(x)).backward()
        opt.step()
    assert all(torch.equal(p, q) for p, q in zip(model_a.parameters(), model_b.parameters()))
    assert same_state(opt_b, opt_c)


def test_what_it_does_not_cover_goes_through_torchs_own_step():
    # a parameter without a gradient this step (a frozen part), a closure, weight decay, two groups: as torch does
    for make in (lambda ps: LeanAdam(ps), lambda ps: torch.optim.Adam(ps, lr=1e-3, fused=True)):
        torch.manual_seed(0)
        frozen = torch.nn.Parameter(torch.ones(3))
        w = torch.nn.Parameter(torch.randn(4, 3))
        opt = make([w, frozen])
        for _ in range(3):
            opt.zero_grad()
            (w.sum() ** 2).backward()
            opt.step()
        assert frozen.grad is None and torch.equal(frozen, torch.ones(3))
        loss = opt.step(lambda: (w ** 2).sum())       # a closure: torch's step runs it and returns its loss
        assert loss is None or torch.isfinite(loss)
        if isinstance(opt, LeanAdam):
            lean_w = w.detach().clone()
        else:
            assert torch.equal(w, lean_w)
    decayed = LeanAdam([torch.nn.Parameter(torch.ones(2))])
    decayed.param_groups[0]["weight_decay"] = 0.1
    assert not decayed._covered()
    two = LeanAdam([{"params": [torch.nn.Parameter(torch.ones(2))]}, {"params": [torch.nn.Parameter(torch.ones(2))]}])
    assert not two._covered()


def test_zero_grad_clears_or_zeroes_as_asked():
    w = torch.nn.Parameter(torch.ones(3))
    opt = LeanAdam([w])
    w.grad = torch.ones(3)
    opt.zero_grad(set_to_none=False)
    assert torch.equal(w.grad, torch.zeros(3))
    opt.zero_grad()
    assert w.grad is None


def make_params() -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(torch.linspace(-1, 1, 12).view(3, 4)), torch.nn.Parameter(torch.zeros(4))]


def set_grads(params, i: int) -> None:
    for k, p in enumerate(params):
        p.grad = torch.sin(torch.arange(p.numel(), dtype=torch.float32) * (i + 1) + k).view_as(p)


def test_step_hooks_run_once_a_step_and_the_hooked_step_is_adams():
    """LeanAdam's step skips torch.optim's hook wrapper; a step with a hook registered (on the optimiser or for
    every optimiser) is Adam's own, which runs each hook once, and the weights still come out as Adam's."""
    from torch.optim.optimizer import register_optimizer_step_post_hook
    torch.optim.Adam([torch.nn.Parameter(torch.ones(1))])   # torch wraps Adam's step once a plain Adam exists
    lean_params, plain_params = make_params(), make_params()
    lean, plain = LeanAdam(lean_params), torch.optim.Adam(plain_params, lr=1e-3, eps=1e-8, fused=True)
    calls = []
    lean.register_step_pre_hook(lambda opt, args, kwargs: calls.append("pre"))
    handle = lean.register_step_post_hook(lambda opt, args, kwargs: calls.append("post"))
    for opt, params in ((lean, lean_params), (plain, plain_params)):
        for i in range(3):
            set_grads(params, i)
            opt.step()
    assert calls == ["pre", "post"] * 3
    handle.remove()
    global_handle = register_optimizer_step_post_hook(lambda opt, args, kwargs: calls.append("global"))
    try:
        set_grads(lean_params, 3)
        lean.step()
    finally:
        global_handle.remove()
    assert calls[6:] == ["pre", "global"]
    set_grads(plain_params, 3)
    plain.step()
    for a, b in zip(lean_params, plain_params):
        assert torch.equal(a, b)


@pytest.mark.parametrize("family", ["shallow", "conv", "vae"])
def test_fit_trains_with_it_and_the_losses_match_torch_adam(family, monkeypatch):
    from aecore.engine import optim, train as train_module
    from aecore.engine.data import Data, Split
    from aecore.engine.train import TrainConfig, fit

    imgs = (torch.rand(96, 28, 28, generator=torch.Generator().manual_seed(3)) * 255).to(torch.uint8)
    split = Split(imgs, torch.zeros(96, dtype=torch.long))
    data = Data(split, None, Split(imgs[:16], torch.zeros(16, dtype=torch.long)))
    cfg = TrainConfig(epochs=2, batch_size=16, device="cpu", log_every=3)
    model_cfg = ModelConfig(family, hidden=(16,) if family != "vae" else (32,))
    lean = [m.train_loss for m in fit(build(model_cfg, seed=0), data, cfg)]
    monkeypatch.setattr(train_module, "LeanAdam", lambda params, lr, eps: optim.torch.optim.Adam(
        params, lr=lr, eps=eps, fused=True))
    plain = [m.train_loss for m in fit(build(model_cfg, seed=0), data, cfg)]
    assert lean == plain and lean[-1] < lean[0]


def test_a_setting_changed_on_the_group_after_the_first_steps_hands_the_step_back_to_adam():
    lean, opt = train(lean_adam, steps=3)
    assert opt._covered()
    opt.param_groups[0]["weight_decay"] = 0.1      # set by a caller mid-run: the direct call would ignore it
    assert not opt._covered()
    opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(2))]})
    opt.param_groups[0]["weight_decay"] = 0.0
    assert not opt._covered()                      # two groups now

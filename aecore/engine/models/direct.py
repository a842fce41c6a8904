"""A training step written out for the plain MLP autoencoders: forward, loss and gradients without autograd.

For a stack of `Linear` layers with ReLU, sigmoid or tanh between them (shallow without a sparsity penalty, deep;
no dropout, no batch normalisation) and a BCE or MSE loss, the step's maths is short enough to write down:
each layer's output goes into a buffer made once per batch size, and the backward pass is the chain rule, layer
by layer, with the kernels autograd itself calls (`addmm`/`mm` for the products, `sum` for the biases,
`threshold_backward`, `sigmoid_backward` and `tanh_backward` for the activations), the gradients written
straight into each parameter's `.grad`. Autograd would do the same arithmetic, plus a graph of nodes, a fresh
tensor for every activation and gradient, and a Python call for each module. `fit` takes this step wherever
`direct_step(model)` gives one and its `applies()` still holds (a run may switch on a sparsity penalty while it
trains); `tests/test_direct.py` trains each kind of model both ways and finds the same losses and weights.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules import module as nn_module

from aecore.engine.models.base import ACTIVATIONS, Autoencoder
from aecore.engine.models.losses import bce_sum

_ACT = {cls: name for name, cls in ACTIVATIONS.items()}          # nn.ReLU -> "relu", as the models build them
_FORWARD = {"relu": torch.relu_, "sigmoid": torch.sigmoid_, "tanh": torch.tanh_}     # in place, on a buffer


def direct_step(model: Autoencoder) -> "DirectStep | None":
    """The written-out step for `model`, or None where autograd must train it (a VAE, a conv model, dropout,
    batch normalisation, a layer this module does not know)."""
    cfg = model.config
    if cfg.family not in ("shallow", "deep") or cfg.dropout or cfg.batch_norm or type(model) is not Autoencoder:
        return None
    layers: list[tuple[nn.Linear, str | None]] = []
    for module in [*model.encoder, *model.decoder]:
        if isinstance(module, nn.Linear):
            layers.append((module, None))
        elif type(module) in _ACT and layers and layers[-1][1] is None:
            layers[-1] = (layers[-1][0], _ACT[type(module)])
        else:
            return None
    if layers[-1][1] is not None or any(lin.bias is None for lin, _ in layers):   # the last layer's output is the
        return None                                                                  # loss's `raw`; biases as built
    return DirectStep(model, layers)


class DirectStep:
    """`step(inputs, target)` trains nothing by itself: it sets every parameter's `.grad` for the batch and returns
    the loss (a detached scalar tensor, the model's `loss`); the optimiser steps after it, as after `backward`."""

    def __init__(self, model: Autoencoder, layers: list[tuple[nn.Linear, str | None]]):
        self.model = model
        # (weight, bias, activation) for each layer: the parameters themselves (read through the module, each is a
        # Python lookup a step); the optimiser updates them in place, and loading a state_dict copies into them
        self.layers = [(lin.weight, lin.bias, act) for lin, act in layers]
        self._modules, self._params = list(model.modules()), list(model.parameters())
        self._buffers: dict[int, tuple] = {}          # batch size -> buffers, scale

    def applies(self) -> bool:
        """Whether the written-out step does what autograd's would now: not with a sparsity penalty (a run may
        switch one on), nor while anything is hooked into the model (a module's forward or backward hook, a
        parameter's gradient hook), which expects the modules to be called and the gradients to be accumulated."""
        return not self.model.sparsity and not _hooked(self._modules, self._params)

    def _buffers_for(self, b: int, like: torch.Tensor):
        """Each layer's output, the loss's gradient at each layer's output, the sigmoid of the last, a workspace of
        its shape, and the scale of the mean (1/N for BCE, 2/N for the squared error, as a 0-d tensor: the same float
        as the number): made once per batch size (an epoch's last batch may be shorter)."""
        if b not in self._buffers:
            sizes = [weight.shape[0] for weight, _, _ in self.layers]
            n = b * sizes[-1]
            scale = torch.tensor((1 if self.model.config.loss == "bce" else 2) / n, dtype=like.dtype)
            self._buffers[b] = ([like.new_empty(b, k) for k in sizes], [like.new_empty(b, k) for k in sizes],
                                like.new_empty(b, sizes[-1]), like.new_empty(b, sizes[-1]), scale)
        return self._buffers[b]

    @torch.no_grad()
    def __call__(self, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        b = inputs.shape[0]
        outs, grads, p, work, scale = self._buffers_for(b, inputs)
        x, y = inputs.reshape(b, -1), target.reshape(b, -1)
        acts = [x]                                       # the input of each layer, then the decoder's raw output
        for (weight, bias, act), out in zip(self.layers, outs):
            torch.addmm(bias, acts[-1], weight.t(), out=out)
            acts.append(_FORWARD[act](out) if act else out)
        raw, grad = acts.pop(), grads[-1]
        cfg = self.model.config
        if cfg.loss == "bce":                            # mean BCE of sigmoid(raw): gradient (p - y) / N
            total, p = bce_sum(raw, y, p, work)
            loss = total * scale                         # as bce_with_logits scales it: the same float
            torch.sub(p, y, out=grad).mul_(scale)
        else:                                            # mean squared error of the output: 2 (x_hat - y) / N
            x_hat = torch.sigmoid(raw, out=p) if cfg.output == "sigmoid" else raw
            loss = torch.sub(x_hat, y, out=grad).square().mean()
            grad.mul_(scale)
            if cfg.output == "sigmoid":
                _act_backward_(grad, x_hat, "sigmoid")
        for i in range(len(self.layers) - 1, -1, -1):   # grads[i]: the loss's gradient at layer i's output
            weight, bias, _ = self.layers[i]
            torch.mm(grads[i].t(), acts[i], out=_grad(weight))
            torch.sum(grads[i], 0, out=_grad(bias))
            if i:
                torch.mm(grads[i], weight, out=grads[i - 1])
                _act_backward_(grads[i - 1], acts[i], self.layers[i - 1][2])
        return loss


def _hooked(modules: list[nn.Module], params: list[torch.Tensor]) -> bool:
    """Whether a hook watches these modules or parameters, or every module (torch's global module hooks)."""
    if any(getattr(nn_module, name, None) for name in _GLOBAL_HOOKS):
        return True
    return any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
               for m in modules) or any(p._backward_hooks or getattr(p, "_post_accumulate_grad_hooks", None)
                                        for p in params)


_GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                 "_global_backward_pre_hooks")


def _act_backward_(grad: torch.Tensor, out: torch.Tensor, act: str | None) -> None:
    """The gradient before an activation, in place of the one after it, from the activation's output, by the
    kernels autograd calls."""
    if act == "relu":
        torch.ops.aten.threshold_backward.grad_input(grad, out, 0, grad_input=grad)
    elif act == "sigmoid":
        torch.ops.aten.sigmoid_backward.grad_input(grad, out, grad_input=grad)
    elif act == "tanh":
        torch.ops.aten.tanh_backward.grad_input(grad, out, grad_input=grad)


def _grad(param: torch.Tensor) -> torch.Tensor:
    """The parameter's gradient tensor to write into: the one it has, or a new one after `zero_grad` set it to
    None (autograd's steps take the gradients away that way) or where autograd left a transposed one."""
    if param.grad is None or not param.grad.is_contiguous():
        param.grad = torch.empty_like(param, memory_format=torch.contiguous_format)
    return param.grad

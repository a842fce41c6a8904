"""The optimiser `fit` trains with: torch's fused Adam, with less work around each step.

`torch.optim.Adam(fused=True)` runs its whole update in one native kernel (`torch._fused_adam_`), but each
`step()` first goes through torch.optim's general machinery: hooks, profiling labels, grouping the tensors by
device and dtype, checks for CUDA graphs and complex numbers. For pytorch-784-200 on a 2-core CPU that machinery
took 90 µs of a 180 µs step of the optimiser, and `zero_grad` another 10 µs, in a training step of about 2 ms.
`LeanAdam` is that same optimiser (a subclass: its state_dict, param_groups and learning-rate changes are Adam's)
whose `step` calls the same kernel with the same arguments directly once the state exists, so every weight comes
out the same to the bit (`tests/test_optim.py`); anything it does not cover (a closure, a parameter without a
gradient, several groups or devices, amsgrad, maximize, weight decay) goes through Adam's own step.
"""
from __future__ import annotations

import torch
from torch.optim import optimizer as optimizer_module


class LeanAdam(torch.optim.Adam):
    """Adam(params, lr, eps, fused=True), stepped without torch.optim's per-call bookkeeping."""

    def __init__(self, params, lr: float = 1e-3, eps: float = 1e-8):
        super().__init__(params, lr=lr, eps=eps, fused=True)
        self._uniform = None       # whether the parameters share one device and dtype, none complex: known once
        self._ones: dict = {}      # a 1 of the step counters' dtype on their device

    def add_param_group(self, param_group) -> None:
        super().add_param_group(param_group)
        self._uniform = None       # another group's parameters (the direct call then leaves it to Adam's step)

    def _covered(self) -> bool:
        """Whether the direct kernel call does what Adam's step would: one group, plain Adam settings (read at
        every step, since a caller may set them on the group), parameters of one device and dtype."""
        if len(self.param_groups) != 1:
            return False
        group = self.param_groups[0]
        if (group["amsgrad"] or group["maximize"] or group["weight_decay"] or group["capturable"]
                or group["differentiable"] or group.get("decoupled_weight_decay", False)):
            return False
        if self._uniform is None:
            params = group["params"]
            self._uniform = bool(params) and len({(p.device, p.dtype) for p in params}) == 1 and not any(
                p.is_complex() for p in params)
        return self._uniform

    @torch.no_grad()
    def step(self, closure=None):
        group = self.param_groups[0]
        params = group["params"]
        states = [self.state.get(p) for p in params]
        if (closure is not None or not self._covered() or any(s is None or "step" not in s for s in states)
                or any(p.grad is None for p in params) or self._step_hooks()):
            return _adam_step(self, closure)             # the first step makes the state; odd cases as ever
        steps = [s["step"] for s in states]
        torch._foreach_add_(steps, [self._one(steps[0])] * len(steps))     # + 1: a number would be wrapped each time
        beta1, beta2 = group["betas"]
        torch._fused_adam_(params, [p.grad for p in params], [s["exp_avg"] for s in states],
                           [s["exp_avg_sq"] for s in states], [], steps, amsgrad=False, lr=group["lr"],
                           beta1=beta1, beta2=beta2, weight_decay=0.0, eps=group["eps"], maximize=False,
                           grad_scale=None, found_inf=None)
        return None

    # torch.optim wraps each optimiser class's `step` once, to run the step hooks and label the step for the profiler
    # (20 µs a step here); marked as wrapped, this one is left as it is and hands any step with a hook to Adam's.
    step.hooked = True

    def _one(self, step: torch.Tensor) -> torch.Tensor:
        key = (step.device, step.dtype)
        if key not in self._ones:
            self._ones[key] = torch.ones((), device=step.device, dtype=step.dtype)
        return self._ones[key]

    def _step_hooks(self) -> bool:
        return bool(self._optimizer_step_pre_hooks or self._optimizer_step_post_hooks
                    or optimizer_module._global_optimizer_pre_hooks or optimizer_module._global_optimizer_post_hooks)

    def zero_grad(self, set_to_none: bool = True) -> None:
        if not set_to_none:
            return super().zero_grad(set_to_none=False)
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None


def _adam_step(opt: LeanAdam, closure):
    """Adam's own step for `opt`, with the step hooks and the profiler's label torch.optim wraps around it."""
    step = torch.optim.Adam.step
    if not getattr(step, "hooked", False):     # no plain Adam made yet: torch has not wrapped Adam's step
        step = torch.optim.Optimizer.profile_hook_step(step)
    return step(opt, closure)

"""Binary cross-entropy from logits, computed with the CPU's fast vector functions.

The value is torch's `F.binary_cross_entropy_with_logits`: per pixel, max(z, 0) - z*y + log(1 + exp(-|z|)). torch
writes the last term with log1p, which this CPU build runs element by element: for a batch of 124 MNIST pictures
it took 0.53 ms a step, a fifth of pytorch-784-200's whole step. Here it is -log(max(p, 1 - p)) with p = sigmoid(z),
the same quantity (sigmoid(|z|) is max(p, 1 - p)). Only the sum of those logs is needed, and each max(p, 1 - p)
lies in [0.5, 1], so the logs are taken of products of 64 of them (never below 0.5**64, about 5e-20, far from
float32's smallest normal number): one log where there were 64, and the product's roundings, about 64 float32
roundings at worst, move the sum by less than 1e-8 per pixel. The two formulas differ from a float64 computation
by the same few 1e-8 per pixel (`tests/test_models.py` checks them against each other, extremes included), and
the gradient is the same formula, (p - y) / N, from the p the forward pass kept.
"""
from __future__ import annotations

import torch

CHUNK = 64     # factors in one product: 0.5**64 stays a normal float32
_ONE = torch.tensor(1.0)      # 1 - p with a 0-d tensor: the same float as with the number, without wrapping it


def bce_sum(raw: torch.Tensor, target: torch.Tensor, p: torch.Tensor | None = None,
            work: torch.Tensor | None = None):
    """(the sum over every element of BCE(sigmoid(raw), target), sigmoid(raw)), by the formula above, without
    autograd's bookkeeping. The written-out step (models.direct) passes buffers of raw's shape, made once: `p` for
    sigmoid(raw) and `work` (contiguous) for the terms on the way, one after the other; without them they are made
    here."""
    p = torch.sigmoid(raw, out=p)
    work = torch.empty_like(raw, memory_format=torch.contiguous_format) if work is None else work
    q = torch.maximum(p, torch.sub(_ONE, p, out=work), out=work).view(-1)   # sigmoid(|z|) = max(p, 1 - p) in [.5, 1]
    whole = q.shape[0] - q.shape[0] % CHUNK
    log_q = q[:whole].view(-1, CHUNK).prod(1).log_().sum()     # the sum of log(q), 64 factors to a log
    if whole < q.shape[0]:
        log_q += q[whole:].log().sum()
    return torch.clamp_min(raw, 0, out=work).addcmul_(raw, target, value=-1).sum().sub_(log_q), p


class _BCEWithLogits(torch.autograd.Function):
    @staticmethod
    def forward(ctx, raw: torch.Tensor, target: torch.Tensor, mean: bool) -> torch.Tensor:
        total, p = bce_sum(raw, target)
        scale = 1 / raw.numel() if mean else 1.0
        ctx.save_for_backward(p, target)
        ctx.scale = scale
        return total * scale

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        p, target = ctx.saved_tensors
        return p.sub(target).mul_(grad * ctx.scale), None, None


def bce_with_logits(raw: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """BCE of sigmoid(raw) against `target` (same shape, in [0, 1]), its mean ("mean") or sum ("sum") over every
    element. The target is data: it takes no gradient (a target that asks for one is refused)."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    if target.requires_grad:
        raise ValueError("bce_with_logits gives no gradient to the target; pass it detached")
    if raw.shape != target.shape:
        raise ValueError(f"raw {tuple(raw.shape)} and target {tuple(target.shape)} differ in shape")
    return _BCEWithLogits.apply(raw, target, reduction == "mean")

"""One training loop for every autoencoder: `fit` is a generator of frozen `Metrics` records.

The data stay uint8 on the training device, grey pictures (N, S, S) or colour ones (N, 3, S, S) of the side and
colour the model reads; each step gathers one shuffled batch, scales it to [0, 1] as (B, C, S, S), corrupts a copy
when the run uses noise or deformation, and trains on the clean batch as target. A `Control` object lets
another thread pause, resume or stop the loop between two steps. `RunSpec` bundles the configs
of one run. The command line is `python -m aecore.train` (`aecore/train.py`).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Iterator

import torch

from aecore.engine.data import Data, DataConfig, add_noise, deform, picture_set_about, to_float
from aecore.engine.fields import OPTIMIZERS, validate  # noqa: F401 (OPTIMIZERS: public here too)
from aecore.engine.models import Autoencoder, ModelConfig, from_dict, inference
from aecore.engine.models.direct import direct_step
from aecore.engine.optim import LeanAdam
from aecore.engine.scoring import error_quantiles, reconstruction_error
from aecore.engine.steering import Control, apply, check_schedule  # noqa: F401 (Control: public here too)

# Subnormal floats (below 1.2e-38) become zeros on this thread and on every thread started from it later, torch's
# compute threads included: Adam's moments of a weight that rarely sees a gradient (a corner pixel's) decay through
# them, and a CPU handles them many times slower (a fifth of an epoch of pytorch-784-200). No loss changes by as
# much as 1e-6 (tests/test_bench.py). A thread's compute threads take the setting when they start, so it is made
# here, before any training work, and again by `fit` for a thread that trains.
torch.set_flush_denormal(True)


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained; stored as JSON in every checkpoint."""
    epochs: int = 10
    batch_size: int = 124
    lr: float = 1e-3
    adam_eps: float = 1e-8               # the optimiser's epsilon; Keras's Adam and RMSprop use 1e-7
    lr_milestones: tuple[int, ...] = ()  # after each of these epochs the learning rate is multiplied by lr_gamma
    lr_gamma: float = 0.5
    noise: str = "none"                  # none, mask (zero a ratio of pixels) or gaussian (add sigma * N(0, 1))
    noise_level: float = 0.0             # the masking ratio or the Gaussian sigma, in [0, 1]
    deform: float = 0.0                  # random turn, scaling, shift and elastic bend of the input (0..2)
    seed: int = 0
    device: str = "auto"                 # auto picks CUDA when present
    optimizer: str = "adam"              # adam, or rmsprop (Keras's: rho 0.9, the same eps) as the Keras VAE uses
    binarize: bool = False               # dynamic binarisation: each batch's pixels drawn as Bernoulli(intensity)
    log_every: int = 20                  # steps per metrics record; also how often the NaN guard looks
    changes: tuple = ()                  # ((step, setting, value), ...): what changes while it trains (steering)

    def __post_init__(self):
        object.__setattr__(self, "lr_milestones", tuple(int(m) for m in self.lr_milestones))
        try:                             # JSON gives lists: ((120, "lr", 0.0005), ...) again
            object.__setattr__(self, "changes", tuple(tuple(c) for c in self.changes))
        except TypeError:
            pass                         # not a list of changes: validate names it
        validate(self, "train")   # the ranges of aecore.engine.fields, the one table of settings
        if not 1 <= self.log_every:
            raise ValueError(f"TrainConfig.log_every must be an integer >= 1, got {self.log_every!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return from_dict(cls, d)


@dataclass(frozen=True)
class RunSpec:
    """What to train: a name, the three configs and, for a tutorial preset, its name."""
    name: str
    model: ModelConfig
    data: DataConfig
    train: TrainConfig
    preset: str | None = None

    def meta(self, device: str, **extra) -> dict:
        """What a checkpoint of this run stores beside the weights (the model config is added on save); a run on a
        picture set also records the set (its class names, side, colour, fit and source name)."""
        about = picture_set_about(self.data)
        return {"name": self.name, "preset": self.preset, "data": self.data, "train": self.train, "device": device,
                **({"picture_set": about} if about is not None else {}), **extra}


@dataclass(frozen=True)
class Metrics:
    step: int                      # optimiser steps so far
    epoch: int                     # 1-based epoch this record belongs to
    samples: int                   # training samples seen so far
    train_loss: float              # mean training loss since the previous record
    val_loss: float | None         # held-out loss (eval mode), on epoch-end records only
    epoch_loss: float | None       # mean training loss over the whole epoch, on epoch-end records only
    epoch_end: bool
    samples_per_s: float           # training throughput since the previous record
    elapsed: float                 # seconds spent training so far, pauses excluded
    lr: float
    total_steps: int               # steps the whole run will take
    # the loss's parts, mean since the previous record, for models whose loss has several (a VAE's
    # reconstruction and KL, a sparse autoencoder's code penalty): ((name, value), ...); empty otherwise
    terms: tuple[tuple[str, float], ...] = ()
    epoch_terms: tuple[tuple[str, float], ...] = ()   # the same over the whole epoch, on epoch-end records only
    # what changed since the previous record, scheduled or sent while it trained: ((step, setting, value), ...)
    changes: tuple[tuple[int, str, float | str], ...] = ()
    live: bool = False             # made before its usual count: a Step ended or the run is slowed down


@dataclass(frozen=True)
class TrainState:
    """Where `fit` stands after `epoch` whole epochs: what it needs to go on exactly there (aecore.engine.trainstate
    writes it to a file with the weights)."""
    epoch: int
    step: int
    samples: int
    busy: float                                  # seconds of training so far, pauses excluded
    optimizer: dict                              # the optimiser's state_dict
    generator: torch.Tensor                      # the loop's torch.Generator state (shuffling, noise, binarisation)
    rng: torch.Tensor                            # torch's global CPU generator state (dropout on the CPU)
    cuda_rng: torch.Tensor | None = None         # the CUDA device's generator state, on a GPU run


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the model holds the last weights that gave a finite loss."""


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA GPU is available; use 'auto' or 'cpu'")
    return torch.device(name)


def available_devices() -> list[str]:
    """Device choices for this machine: auto and cpu always, cuda when a GPU is present."""
    return ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def evaluate(model: Autoencoder, images: torch.Tensor, batch_size: int = 1000, binarize: bool = False) -> float:
    """Mean loss of `model` on uint8 pictures (N, S, S) or (N, 3, S, S), in eval mode; restores the previous mode.
    With `binarize`, on one fixed binarisation of the images (seed 0), the same at every call."""
    return evaluate_terms(model, images, batch_size, binarize)["loss"]


def evaluate_terms(model: Autoencoder, images: torch.Tensor, batch_size: int = 1000,
                   binarize: bool = False) -> dict[str, float]:
    """As `evaluate`, with the loss's named parts (`model.loss_terms`, e.g. a VAE's reconstruction and KL, each
    unweighted) beside it under "loss": means over the images."""
    check_pictures(model, images, "held-out")
    device = next(model.parameters()).device
    totals: dict[str, torch.Tensor] = {}
    gen = torch.Generator(device=device).manual_seed(0)
    with inference(model):
        for i in range(0, len(images), batch_size):
            x = to_float(images[i:i + batch_size].to(device))                # (B, C, S, S)
            if binarize:
                x = torch.bernoulli(x, generator=gen)
            terms = model.loss_terms(x, model(x))
            for name, value in {**terms, "loss": model.combine(terms)}.items():
                totals[name] = totals.get(name, 0.0) + value * len(x)
    n = max(len(images), 1)
    return {name: t.item() / n for name, t in totals.items()} if totals else {"loss": 0.0}


def check_pictures(model: Autoencoder, images: torch.Tensor, what: str = "training") -> None:
    """ValueError unless `images`, grey (N, S, S) or (N, C, S, S), are pictures of the side and colour `model`
    reads: a 64 x 64 colour model cannot learn MNIST, and the message says so before a layer fails."""
    cfg, shape = model.config, tuple(images.shape)
    if ((1, *shape[1:]) if len(shape) == 3 else shape[1:]) != cfg.picture_shape:
        s = cfg.side
        want = f"(N, {s}, {s})" if cfg.in_channels == 1 else f"(N, {cfg.in_channels}, {s}, {s})"
        raise ValueError(f"the {what} images have shape {shape}, but the model reads {s}×{s} {cfg.color} pictures "
                         f"{want} (ModelConfig.side {s}, color {cfg.color!r})")


def corrupt(x: torch.Tensor, cfg: TrainConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """What `fit` feeds the model for a clean batch (B, C, S, S): deformed (cfg.deform), then noised (cfg.noise,
    cfg.noise_level). The clean batch stays the target; with neither, the batch itself."""
    return add_noise(deform(x, cfg.deform, generator), cfg.noise, cfg.noise_level, generator)


def fit(model: Autoencoder, data: Data, cfg: TrainConfig, control: Control | None = None,
        resume: TrainState | None = None, at_epoch_end=None, direct: bool = True) -> Iterator[Metrics]:
    """Train `model` in place, yielding a `Metrics` record every `cfg.log_every` steps and at each epoch end.

    The held-out loss is measured on `data.val` when the data config has a validation split, else on
    `data.test`. Raises TrainingDiverged on a NaN/inf loss after restoring the last good weights.
    `at_epoch_end(TrainState)` is called after each epoch, before its last record is yielded; given one as
    `resume` (and the model with that epoch's weights), `fit` goes on from the epoch after it, and its steps are
    those the run would have taken without the break. A plain MLP trains by its step written out
    (`models.direct`: the same losses, without autograd's bookkeeping); `direct=False` sends every step through
    autograd (the benchmark and the tests compare the two).
    """
    control = control or Control()
    device = resolve_device(cfg.device)
    torch.set_flush_denormal(True)     # on this thread too, and on the compute threads it starts (see above)
    model.to(device).train()
    held_out = (data.val if data.val is not None else data.test).images
    check_pictures(model, data.train.images)
    check_pictures(model, held_out, "held-out")
    images = data.train.images.to(device)   # (N, S, S) or (N, 3, S, S) uint8: 47 MB for MNIST, for every batch
    n, bs = len(images), cfg.batch_size
    if n == 0:
        raise ValueError("the training split is empty; check DataConfig.classes")
    steps_per_epoch = math.ceil(n / bs)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)   # shuffling and noise
    torch.manual_seed(cfg.seed)                                  # dropout draws from the global generator
    if cfg.optimizer == "rmsprop":
        opt = torch.optim.RMSprop(model.parameters(), lr=cfg.lr, alpha=0.9, eps=cfg.adam_eps)
    else:
        opt = LeanAdam(model.parameters(), lr=cfg.lr, eps=cfg.adam_eps)     # Adam(fused=True), to the bit

    written_out = direct_step(model) if direct else None
    good = _snapshot(model)
    step = samples = 0
    busy = 0.0                      # seconds spent training, pauses and evaluation excluded
    check_schedule(model.config, cfg.changes)
    if resume is not None:
        step, samples, busy = resume.step, resume.samples, resume.busy
        opt.load_state_dict(resume.optimizer)
        gen.set_state(resume.generator)
        torch.set_rng_state(resume.rng)
        if resume.cuda_rng is not None and device.type == "cuda":
            torch.cuda.set_rng_state(resume.cuda_rng, device)
    for s, name, value in cfg.changes:       # what a resumed run had changed (its optimiser holds the rate)
        if s < step:
            cfg = apply(name, value, model, None, cfg)
    schedule = [c for c in cfg.changes if c[0] >= step]
    control.reset()
    made: list[tuple] = []          # changes made since the previous record
    for epoch in range(1 + (resume.epoch if resume else 0), cfg.epochs + 1):
        perm = torch.randperm(n, device=device, generator=gen)
        epoch_sum = torch.zeros((), device=device)
        window_sum, window_n, window_samples, window_busy = torch.zeros((), device=device), 0, 0, 0.0
        window_terms: dict[str, torch.Tensor] = {}
        epoch_terms: dict[str, torch.Tensor] = {}
        t = since = time.perf_counter()
        for i in range(0, n, bs):
            waited, asked = control.between_steps()
            t += waited                         # paused (or slowed-down) time does not count as training time
            if control.stopped:
                return
            while schedule and schedule[0][0] <= step:
                made.append(schedule.pop(0))
                cfg = apply(made[-1][1], made[-1][2], model, opt, cfg)
            for change in asked:
                made.append((step, change.name, change.value))
                cfg = apply(change.name, change.value, model, opt, cfg)
            model.at_epoch(epoch - 1 + i / n)
            x = to_float(images.index_select(0, perm[i:i + bs]))  # (B, C, S, S) clean target
            if cfg.binarize:                                     # a new binary image each time (Burda et al.)
                x = torch.bernoulli(x, generator=gen)
            if written_out is not None and written_out.applies():
                loss = written_out(corrupt(x, cfg, gen), x)      # sets the gradients, as backward() would
            else:
                out = model(corrupt(x, cfg, gen))
                terms = model.loss_terms(x, out)
                loss = model.combine(terms)
                if len(terms) > 1:
                    for name, value in terms.items():
                        window_terms[name] = window_terms.get(name, 0.0) + value.detach()
                        epoch_terms[name] = epoch_terms.get(name, 0.0) + value.detach() * len(x)
                opt.zero_grad(set_to_none=True)
                loss.backward()
            opt.step()
            b, loss = x.shape[0], loss.detach()
            step += 1
            samples += b
            window_sum += loss
            epoch_sum += loss * b
            window_n += 1
            window_samples += b
            last = i + bs >= n
            usual = window_n == cfg.log_every or last
            early = control.record_due(since, usual)
            if usual or early:
                now = since = time.perf_counter()
                window_busy, busy, t = now - t, busy + (now - t), now
                mean = window_sum.item() / window_n
                if not math.isfinite(mean):
                    model.load_state_dict(good)
                    raise TrainingDiverged(
                        f"the loss became {mean} at step {step} (epoch {epoch}); training stopped and the "
                        f"model keeps the last weights with a finite loss. Try a lower learning rate "
                        f"(it was {opt.param_groups[0]['lr']:g}).")
                good = _snapshot(model)
                if last:
                    for m in cfg.lr_milestones:
                        if m == epoch:
                            for g in opt.param_groups:
                                g["lr"] *= cfg.lr_gamma
                    val = evaluate(model, held_out, binarize=cfg.binarize) if len(held_out) else None
                    if at_epoch_end is not None:
                        at_epoch_end(TrainState(
                            epoch, step, samples, busy, opt.state_dict(), gen.get_state(), torch.get_rng_state(),
                            torch.cuda.get_rng_state(device) if device.type == "cuda" else None))
                    t = time.perf_counter()   # evaluation does not count as training time
                yield Metrics(step=step, epoch=epoch, samples=samples, train_loss=mean,
                              val_loss=val if last else None,
                              epoch_loss=epoch_sum.item() / n if last else None, epoch_end=last,
                              samples_per_s=window_samples / max(window_busy, 1e-9), elapsed=busy,
                              lr=opt.param_groups[0]["lr"], total_steps=steps_per_epoch * cfg.epochs,
                              terms=tuple((k, v.item() / window_n) for k, v in window_terms.items()),
                              epoch_terms=tuple((k, v.item() / n) for k, v in epoch_terms.items()) if last else (),
                              changes=tuple(made), live=early and not last)
                made = []
                window_terms = {}
                window_sum.zero_()
                window_n = window_samples = 0


def results(model: Autoencoder, data: Data, history: list[Metrics], binarize: bool = False) -> dict:
    """What a finished run reports and its checkpoint keeps: figures, per-epoch history, test-error quantiles.

    figures: train_loss (last epoch's mean training loss), val_loss (validation split, if any) and
    test_loss (test set, eval mode), all in the model's own loss.
    """
    epochs = [m for m in history if m.epoch_end]
    errors = reconstruction_error(model, data.test.images)
    last = epochs[-1] if epochs else None
    figures = {
        "train_loss": last.epoch_loss if last else None,
        "val_loss": evaluate(model, data.val.images, binarize=binarize) if data.val is not None and len(data.val)
        else None,
        "test_loss": evaluate(model, data.test.images, binarize=binarize) if len(data.test) else None,
    }
    return {
        "figures": figures,
        "history": epoch_history(history),
        "steps": [[m.step, m.train_loss] for m in history[:: max(1, len(history) // 500)]],
        "test_error_quantiles": error_quantiles(errors) if len(errors) else [],
    }


def epoch_history(history: list[Metrics]) -> list[dict]:
    """Each epoch of a run's records as `epoch_record` gives it."""
    epochs = [m for m in history if m.epoch_end]
    return [epoch_record(m, prev) for m, prev in zip(epochs, [None] + epochs[:-1])]


def epoch_record(m: Metrics, previous: Metrics | None) -> dict:
    """One epoch as the CLI prints it and checkpoints store it."""
    seconds = m.elapsed - (previous.elapsed if previous else 0.0)
    n = m.samples - (previous.samples if previous else 0)
    return {"epoch": m.epoch, "train_loss": m.epoch_loss, "val_loss": m.val_loss, **dict(m.epoch_terms),
            "seconds": round(seconds, 3), "samples_per_s": round(n / max(seconds, 1e-9), 1)}


def _snapshot(model: Autoencoder) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


"""Replay: small snapshots of a run taken after every epoch, so that Inspect and Latent can show how each figure
formed.

A `Frame` is one epoch's snapshot: the run's fixed probe digits as the model rebuilt them (uint8), the first
layer's weights as Inspect draws them (float16, unscaled: an MLP's first `FILTERS` encoder rows as pictures, a conv
model's first-layer kernels) and the codes of the first test pictures (float16; a VAE's means). A `Replay` holds one
run's frames in epoch order, with the probe digits and the pictures' labels stored once, and stays under MAX_BYTES:
when a new frame would pass the bound, the older frames are thinned evenly (the first and the newest always stay).
`capture` takes one frame (one forward pass over the probe and the code pictures, in inference mode); a checkpoint
stores a replay as tensors named `replay.*` beside a small JSON index (`to_tensors`, `from_tensors`), and
`from_tensors` checks every part, since a checkpoint may come from anyone.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from aecore.engine.models import Autoencoder, ModelConfig, batched
from aecore.engine.scoring import reconstruct

MAX_BYTES = 4 * 1024 * 1024   # 4 MiB: one run's replay, all frames together (a 784-200-784 frame is 563 kB: 7 fit)
CODE_PICTURES = 1_000         # test pictures whose codes each frame keeps ...
CODE_NUMBERS = 200_000        # ... at most this many code numbers a frame: a code wider than 200 keeps fewer pictures
FILTERS = 100                 # MLP encoder units whose weights a frame keeps (Inspect's default tile count) ...
FILTER_NUMBERS = 80_000       # ... at most this many weights: a colour model keeps fewer units
MOST_FRAMES = 10_000          # an index listing more epochs than this is not one of ours
PREFIX = "replay."
F16 = float(np.finfo(np.float16).max)


@dataclass(frozen=True, eq=False)   # eq=False: arrays do not compare to one bool
class Frame:
    """What a run looked like after one epoch."""
    epoch: int
    recon: np.ndarray     # (P, S, S) grey or (P, 3, S, S) colour, uint8: the probe digits rebuilt
    filters: np.ndarray   # float16, unscaled: MLP (K, S, S) / (K, 3, S, S); conv (C, k, k) / (C, 3, k, k)
    codes: np.ndarray     # (N, d) float16: the codes of the first N test pictures (a VAE's means)

    @property
    def nbytes(self) -> int:
        return self.recon.nbytes + self.filters.nbytes + self.codes.nbytes


def pictures(config: ModelConfig) -> int:
    """How many test pictures a frame of this model keeps the codes of: CODE_PICTURES, fewer for a wide code."""
    return max(1, min(CODE_PICTURES, CODE_NUMBERS // int(np.prod(config.code_shape))))


def first_layer(model: Autoencoder) -> torch.Tensor:
    """The first layer's weights as Inspect draws them, unscaled: an MLP's first FILTERS encoder rows as pictures
    (K, S, S) or (K, 3, S, S); a conv model's kernels (C, k, k) or (C, 3, k, k)."""
    cfg = model.config
    if cfg.convolutional:
        w = next(m for m in model.modules() if isinstance(m, nn.Conv2d)).weight.detach()    # (C, in, k, k)
        return w if w.shape[1] == 3 else w[:, 0]
    w = next(m for m in model.modules() if isinstance(m, nn.Linear)).weight.detach()        # (h, C*S*S)
    k = max(1, min(FILTERS, len(w), FILTER_NUMBERS // w.shape[1]))
    c, s, _ = cfg.picture_shape
    w = w[:k].reshape(k, c, s, s)
    return w[:, 0] if c == 1 else w


def _half(t: torch.Tensor) -> np.ndarray:
    """float16, with what float16 cannot hold (a diverging run's huge or NaN values) made finite."""
    return np.nan_to_num(t.detach().cpu().double().numpy(), nan=0.0).clip(-F16, F16).astype(np.float16)


def capture(model: Autoencoder, probe, code_images, epoch: int) -> Frame:
    """The frame of `epoch`: the `probe` pictures (uint8) rebuilt, the first layer, and the codes of the first
    `pictures(model.config)` of `code_images`; in inference mode (the model's train mode comes back after)."""
    recon = np.rint(reconstruct(model, probe) * 255).astype(np.uint8)       # clamped to [0, 1] by reconstruct
    codes = batched(model, lambda x: model.encode(x).flatten(1), code_images[:pictures(model.config)])
    return Frame(int(epoch), recon, _half(first_layer(model)), _half(codes))


def tiles(frame: Frame) -> np.ndarray:
    """A frame's filters as pictures in [0, 1], float32, each scaled on its own (as Inspect scales its filters)."""
    f = frame.filters.astype(np.float32)
    flat = f.reshape(len(f), -1)
    lo, hi = flat.min(1, keepdims=True), flat.max(1, keepdims=True)
    return ((flat - lo) / np.maximum(hi - lo, 1e-12)).reshape(f.shape)


def align(xy: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """`xy` (N, 2) with each axis turned (its sign flipped) to run the way the same axis of `reference` (N, 2) runs,
    so that a principal component, whose sign is arbitrary, does not flip from one epoch to the next."""
    agree = ((xy - xy.mean(0)) * (reference - reference.mean(0))).sum(0)     # (2,): each axis's covariance
    return xy * np.where(agree < 0, -1.0, 1.0)


def _gap_to_drop(epochs: list[int]) -> int:
    """The index of the inner frame whose neighbours are closest together (the earliest among equals)."""
    gaps = [epochs[i + 1] - epochs[i - 1] for i in range(1, len(epochs) - 1)]
    return 1 + gaps.index(min(gaps))


@dataclass(frozen=True, eq=False)
class Replay:
    """One run's frames in epoch order, its probe digits and its code pictures' labels. Immutable: `added` gives
    a new replay, so a page may hold one while the run goes on."""
    probe: np.ndarray            # (P, S, S) or (P, 3, S, S) uint8: the fixed digits every frame rebuilds
    labels: np.ndarray           # (N,) int32: the classes of the pictures whose codes the frames keep
    frames: tuple[Frame, ...] = ()

    @staticmethod
    def start(probe, labels) -> "Replay":
        """An empty replay of these probe pictures (uint8) and code pictures' labels."""
        p = probe.numpy() if isinstance(probe, torch.Tensor) else np.asarray(probe)
        y = labels.numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
        return Replay(np.ascontiguousarray(p, dtype=np.uint8), np.ascontiguousarray(y, dtype=np.int32))

    @property
    def epochs(self) -> list[int]:
        return [f.epoch for f in self.frames]

    @property
    def nbytes(self) -> int:
        return self.probe.nbytes + self.labels.nbytes + sum(f.nbytes for f in self.frames)

    def at(self, epoch: int) -> Frame:
        """The frame of `epoch` (KeyError for an epoch not kept)."""
        for f in self.frames:
            if f.epoch == epoch:
                return f
        raise KeyError(f"no frame of epoch {epoch}: this replay keeps epochs {self.epochs}")

    def added(self, frame: Frame) -> "Replay":
        """This replay with `frame` as its newest (replacing any of the same or a later epoch: a run resumed from an
        earlier epoch), thinned under MAX_BYTES: inner frames go, those whose neighbours are closest first."""
        if frame.recon.shape != self.probe.shape or len(frame.codes) != len(self.labels):
            raise ValueError(f"a frame of {frame.recon.shape[0]} probe pictures and {len(frame.codes)} codes does "
                             f"not fit a replay of {len(self.probe)} and {len(self.labels)}")
        frames = [f for f in self.frames if f.epoch < frame.epoch] + [frame]
        fixed = self.probe.nbytes + self.labels.nbytes
        while fixed + sum(f.nbytes for f in frames) > MAX_BYTES:
            if len(frames) == 1:
                raise ValueError(f"a frame of {frame.nbytes:,} bytes does not fit in {MAX_BYTES:,}")
            del frames[_gap_to_drop([f.epoch for f in frames]) if len(frames) > 2 else 0]
        return Replay(self.probe, self.labels, tuple(frames))

    # ------------------------------------------------------------------------------------------ storage
    def to_tensors(self) -> tuple[dict, dict[str, torch.Tensor]]:
        """(the JSON index, the tensors named PREFIX...) that a checkpoint stores."""
        tensors = {PREFIX + "probe": torch.from_numpy(self.probe), PREFIX + "labels": torch.from_numpy(self.labels)}
        for f in self.frames:
            for part in ("recon", "filters", "codes"):
                tensors[f"{PREFIX}{f.epoch}.{part}"] = torch.from_numpy(np.ascontiguousarray(getattr(f, part)))
        return {"epochs": self.epochs}, tensors

    @staticmethod
    def from_tensors(index, tensors: dict[str, torch.Tensor]) -> "Replay":
        """The replay of `to_tensors`, every part checked: ValueError says what does not fit."""
        epochs = index.get("epochs") if isinstance(index, dict) else None
        if (not isinstance(epochs, list) or not 0 < len(epochs) <= MOST_FRAMES
                or not all(type(e) is int and e >= 0 for e in epochs) or epochs != sorted(set(epochs))):
            raise ValueError("its index must list the epochs kept, increasing whole numbers")
        want = {PREFIX + "probe", PREFIX + "labels"} | {f"{PREFIX}{e}.{p}" for e in epochs
                                                        for p in ("recon", "filters", "codes")}
        if set(tensors) != want:
            missing, extra = sorted(want - set(tensors)), sorted(set(tensors) - want)
            raise ValueError(f"its tensors do not match its index (missing {missing[:3]}, unexpected {extra[:3]})")
        probe, labels = tensors[PREFIX + "probe"], tensors[PREFIX + "labels"]
        _expect(probe, "its probe pictures", torch.uint8)
        _expect(labels, "its labels", torch.int32, 1)
        if probe.ndim not in (3, 4) or probe.shape[-1] != probe.shape[-2] or (probe.ndim == 4 and probe.shape[1] != 3):
            raise ValueError(f"its probe pictures are {list(probe.shape)}, not (P, S, S) or (P, 3, S, S)")
        first = None
        frames = []
        for e in epochs:
            recon, filters, codes = (tensors[f"{PREFIX}{e}.{p}"] for p in ("recon", "filters", "codes"))
            _expect(recon, f"epoch {e}'s reconstructions", torch.uint8)
            _expect(filters, f"epoch {e}'s filters", torch.float16)
            _expect(codes, f"epoch {e}'s codes", torch.float16, 2)
            if len(codes) != len(labels):
                raise ValueError(f"epoch {e} keeps {len(codes)} codes for {len(labels)} labels")
            if recon.shape != probe.shape or filters.ndim not in (3, 4) \
                    or (first is not None and (filters.shape, codes.shape) != first):
                raise ValueError(f"epoch {e}'s frame has shapes {list(recon.shape)}, {list(filters.shape)}, "
                                 f"{list(codes.shape)} that do not match the probe pictures or the other frames")
            if not (torch.isfinite(filters).all() and torch.isfinite(codes).all()):
                raise ValueError(f"epoch {e}'s filters or codes hold NaN or infinite values")
            first = (filters.shape, codes.shape)
            frames.append(Frame(e, recon.numpy(), filters.numpy(), codes.numpy()))
        replay = Replay(probe.numpy(), labels.numpy(), tuple(frames))
        if replay.nbytes > MAX_BYTES:
            raise ValueError(f"it holds {replay.nbytes:,} bytes, more than a replay's {MAX_BYTES:,}")
        return replay

    def check(self, config: ModelConfig) -> None:
        """ValueError unless this replay could come from a model of `config`: its pictures, codes and filters."""
        shape = tuple(self.probe.shape[1:])
        picture = config.picture_shape if config.in_channels == 3 else config.picture_shape[1:]
        if shape != picture:
            raise ValueError(f"its pictures are {list(shape)}, the model's {list(picture)}")
        f, width = self.frames[0], int(np.prod(config.code_shape))
        if f.codes.shape[1] != width:
            raise ValueError(f"its codes have {f.codes.shape[1]} numbers, the model's {width}")
        if f.filters.ndim != (4 if config.in_channels == 3 else 3) \
                or (not config.convolutional and f.filters.shape[1:] != picture):
            raise ValueError(f"its filters are {list(f.filters.shape)}, not the model's first layer")


def _expect(t: torch.Tensor, what: str, dtype: torch.dtype, ndim: int | None = None) -> None:
    if t.dtype != dtype or (ndim is not None and t.ndim != ndim):
        raise ValueError(f"{what} are {list(t.shape)} {t.dtype}, not {dtype}"
                         + (f" with {ndim} dimension{'s' if ndim > 1 else ''}" if ndim else ""))


def parts(tensors: dict) -> tuple[dict, dict]:
    """`tensors` split into (a replay's, the rest)."""
    mine = {k: v for k, v in tensors.items() if k.startswith(PREFIX)}
    return mine, {k: v for k, v in tensors.items() if not k.startswith(PREFIX)}

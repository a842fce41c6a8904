"""Benchmark: `fit` against the PyTorch tutorial's own pipeline, side by side in one process.

    python -m aecore.bench [--epochs 2] [--data-dir DIR] [--device auto|cpu|cuda] [--families]

Both train pytorch-784-200 (784-200-784, BCE, Adam 1e-3, batch 124) on the same MNIST training images.
The tutorial pipeline is a torchvision MNIST dataset with a per-sample ToTensor transform and a shuffling
DataLoader; `fit` keeps the images on the device, gathers whole batches and, for this plain MLP, trains by the
step written out without autograd (`aecore.engine.models.direct`). The floor is one epoch's five matrix products
alone, timed before `fit` and after each of its epochs (the fastest counts); `fit_over_matmul_floor` divides
`fit`'s steady epoch (the fastest after the first) by it, and `fit_over_floor_by_epoch` each epoch by the floor
timed right after it (the machine's speed drifts; a pair sees the same moment). `autograd_*` is the same `fit` with
every step through autograd, side by side: what the written-out step saves. Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import struct
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from aecore.argv import positive_int
from aecore.engine import presets
from aecore.engine.data import Data, DataConfig, Split, load
from aecore.engine.models import build
from aecore.engine.train import fit, resolve_device

FAMILY_PRESETS = {"shallow": "pytorch-784-200", "deep": "stacked-2d", "conv": "conv-digit0", "vae": "keras-vae-2d",
                  "conv-vae": "conv-vae-2d", "sparse": "sparse-784-32"}


def training_only(train: Split) -> Data:
    """`train` as a `Data` with no held-out pictures, so `fit` spends no time evaluating."""
    return Data(train, None, Split(train.images[:0], train.labels[:0]))


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_fit(train: Split, epochs: int, device: str, seed: int = 0, preset: str = "pytorch-784-200",
             between=None, direct: bool = True) -> tuple[float, list[float], float]:
    """Seconds per epoch, each epoch's training seconds and the last epoch's mean loss of `fit` training `preset`'s
    model and settings (no held-out evaluation). `between()`, if given, runs after each epoch, untimed;
    `direct=False` trains every step through autograd instead of the model's written-out step."""
    pre = presets.get(preset)
    model = build(pre.model, seed=seed)
    cfg = replace(pre.train, epochs=epochs, device=device, seed=seed, log_every=10_000)
    aside = [0.0]

    def at_epoch_end(_state) -> None:
        t0 = time.perf_counter()
        between()
        aside[0] += time.perf_counter() - t0

    _sync(device)
    t = time.perf_counter()
    ends = [m for m in fit(model, training_only(train), cfg, at_epoch_end=at_epoch_end if between else None,
                           direct=direct) if m.epoch_end]
    total = time.perf_counter() - t - aside[0]
    busy = [m.elapsed - (prev.elapsed if prev else 0.0) for m, prev in zip(ends, [None] + ends[:-1])]
    return total / epochs, busy, ends[-1].epoch_loss


def over_floors(times: list[float], floors: list[float]) -> list[float]:
    """Each epoch's seconds over the floor timed right after it: on a machine whose speed drifts, the pair saw the
    same moment."""
    return [round(t / f, 3) for t, f in zip(times, floors)]


def steady(times: list[float]) -> float:
    """The steady epoch: the fastest after the first (the first builds the optimiser's state), or the only one."""
    return min(times[1:] or times)


def time_families(train: Split, device: str, n: int = 12_000) -> dict:
    """Each family's steady samples/s: one preset of each, its own settings, on the first `n` training pictures,
    two epochs (the second one timed)."""
    part = Split(train.images[:n], train.labels[:n])
    n, out = len(part), {}
    for family, preset in FAMILY_PRESETS.items():
        _, busy, _ = time_fit(part, 2, device, preset=preset)
        out[family] = {"preset": preset, "samples": n, "samples_per_s": round(n / steady(busy))}
    return out


def time_tutorial(train: Split, epochs: int, device: str, seed: int = 0) -> tuple[float, float]:
    """Seconds per epoch and last epoch's mean loss of the tutorial's DataLoader pipeline."""
    from torch import nn
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp, "MNIST", "raw")
        raw.mkdir(parents=True)
        n = len(train)
        # torchvision reads the uncompressed official files from <root>/MNIST/raw; we write ours there.
        (raw / "train-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x803, n, 28, 28) +
                                                      train.images.numpy().tobytes())
        (raw / "train-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, n) +
                                                      train.labels.to(torch.uint8).numpy().tobytes())
        for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
            (raw / stem).write_bytes(b"")   # torchvision checks the test files exist even for train=True
        ds = datasets.MNIST(tmp, train=True, transform=transforms.ToTensor(), download=False)
        torch.manual_seed(seed)
        loader = DataLoader(ds, batch_size=124, shuffle=True)
        model = nn.Sequential(nn.Linear(784, 200), nn.ReLU(), nn.Linear(200, 784), nn.Sigmoid()).to(device)
        criterion = nn.BCELoss()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        t = time.perf_counter()
        for _ in range(epochs):
            total = torch.zeros((), device=device)
            for img, _ in loader:
                img = img.view(img.size(0), -1).to(device)
                loss = criterion(model(img), img)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.detach() * len(img)
            epoch_loss = total.item() / n
        return (time.perf_counter() - t) / epochs, epoch_loss


def time_matmuls(n: int, device: str, batch: int = 124, hidden: int = 200) -> float:
    """Seconds for one epoch's five matrix products alone (forward 2, backward 3): the floor for any loop."""
    steps = -(-n // batch)
    x = torch.rand(batch, 784, device=device)
    w1, w2 = torch.rand(hidden, 784, device=device), torch.rand(784, hidden, device=device)
    g = torch.rand(batch, 784, device=device)
    h = x @ w1.t()
    for _ in range(3):    # warm-up
        _ = x @ w1.t(), h @ w2.t(), g.t() @ h, g @ w2, h.t() @ x
    _sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        h = x @ w1.t()          # encoder forward  (B, 200)
        _ = h @ w2.t()          # decoder forward  (B, 784)
        _ = g.t() @ h           # decoder weight gradient (784, 200)
        dh = g @ w2             # gradient at the code (B, 200)
        _ = dh.t() @ x          # encoder weight gradient (200, 784)
    _sync(device)
    return time.perf_counter() - t


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m aecore.bench", description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=positive_int, default=2,
                   help="epochs for each pipeline (fit's steady epoch is the fastest after the first)")
    p.add_argument("--data-dir")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=positive_int, help="torch intra-op threads for both pipelines (default: torch's)")
    p.add_argument("--skip-tutorial", action="store_true", help="time fit only (e.g. 10 epochs on a GPU)")
    p.add_argument("--skip-autograd", action="store_true",
                   help="leave out fit with every step through autograd (what the written-out step saves)")
    p.add_argument("--samples", type=positive_int, help="train on the first N training pictures only (default: all 60,000)")
    p.add_argument("--families", action="store_true",
                   help="also each family's steady samples/s (one preset each, 2 epochs, the second timed)")
    p.add_argument("--family-samples", type=positive_int, default=12_000,
                   help="training pictures for each family (default: 12,000; 60,000 shows what builds up in a long "
                        "run)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = str(resolve_device(args.device))
    train = load(DataConfig(), args.data_dir).train
    if args.samples:
        train = Split(train.images[:args.samples], train.labels[:args.samples])
    out = {"device": device, "threads": torch.get_num_threads(), "epochs": args.epochs,
           "samples_per_epoch": len(train)}
    floors = [time_matmuls(len(train), device)]          # the floor: before fit, then after each epoch of each

    def timed_floor() -> None:
        floors.append(time_matmuls(len(train), device))

    out["fit_s_per_epoch"], fit_times, out["fit_loss"] = time_fit(train, args.epochs, device, between=timed_floor)
    out["fit_steady_s_per_epoch"] = steady(fit_times)
    out["fit_over_floor_by_epoch"] = over_floors(fit_times, floors[1:])
    if not args.skip_autograd:
        _, autograd_times, out["autograd_loss"] = time_fit(train, args.epochs, device, between=timed_floor,
                                                           direct=False)
        out["autograd_steady_s_per_epoch"] = steady(autograd_times)
        out["autograd_over_floor_by_epoch"] = over_floors(autograd_times, floors[-len(autograd_times):])
    out["matmul_s_per_epoch"] = min(floors)                # the fastest of them
    out["fit_over_matmul_floor"] = out["fit_steady_s_per_epoch"] / out["matmul_s_per_epoch"]
    if not args.skip_autograd:
        out["autograd_over_matmul_floor"] = out["autograd_steady_s_per_epoch"] / out["matmul_s_per_epoch"]
    if args.families:
        out["families"] = time_families(train, device, args.family_samples)
    if not args.skip_tutorial:
        try:
            out["tutorial_s_per_epoch"], out["tutorial_loss"] = time_tutorial(train, args.epochs, device)
            out["speedup"] = out["tutorial_s_per_epoch"] / out["fit_s_per_epoch"]
        except ImportError as e:          # the tutorial pipeline needs torchvision, which a host may lack
            out["tutorial"] = f"skipped: {e}"
    print(json.dumps({k: float(f"{v:.5g}") if isinstance(v, float) else v for k, v in out.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

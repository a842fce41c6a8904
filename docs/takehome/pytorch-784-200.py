"""pytorch-784-200: a shallow autoencoder, 784-200-784, as AE Lab trains it.

Written by AE Lab (python -m aecore.export) for the tutorial preset pytorch-784-200.
It needs torch and numpy, nothing of AE Lab's.
Run it with: python run.py --data-dir DIR [--epochs N]

With the same settings, seed, data and device it takes the same steps as AE Lab's run: the same first
weights, the same batches in the same order, the same noise, the same loss; it prints one JSON line
per epoch and a last one with train_loss and test_loss.

The tutorial: PyTorch tutorial: 784-200-784, ReLU hidden, sigmoid output, BCE, Adam 1e-3, batch 124, 10 epochs;
reports a final training BCE of 0.066.
Its figure (train_loss): final train BCE: 0.066.
"""

import argparse
import gzip
import json
import math
import struct
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


# ---------------------------------------------------------------------------------------------------------------------
# 1. Settings
# The run's settings as AE Lab recorded them; change them here.
# ---------------------------------------------------------------------------------------------------------------------
SEED = 0                        # the first weights, the shuffling and the noise all follow from it
EPOCHS = 10                     # passes over the training pictures
BATCH_SIZE = 124                # pictures per optimiser step
OPTIMIZER = 'adam'              # adam, or rmsprop (Keras's: rho 0.9)
LR = 0.001                      # the learning rate
ADAM_EPS = 1e-08                # the optimiser's epsilon (Keras uses 1e-7)
DEVICE = 'auto'                 # auto: CUDA when there is one; AE Lab's numbers need its run's device


# ---------------------------------------------------------------------------------------------------------------------
# 2. The data: MNIST's IDX files
# MNIST's four files (train-images-idx3-ubyte[.gz], ...) in one folder, --data-dir. Pictures stay uint8, (N, 28, 28);
# each batch becomes floats in [0, 1] as it is used.
# ---------------------------------------------------------------------------------------------------------------------
def read_idx(path):
    """One IDX file (gzipped or not) as a uint8 array: a 4-byte magic number, the sizes, then the bytes."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    ndim = raw[3]
    shape = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def find(folder, stem):
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise SystemExit(f"{folder / stem}[.gz] not found: --data-dir names the folder holding the four IDX files")


def load_split(folder, prefix):
    """uint8 pictures (N, 28, 28) and int64 labels (N,)."""
    images = read_idx(find(folder, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(find(folder, f"{prefix}-labels-idx1-ubyte"))
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def load_data(folder):
    """(train, held-out or None, test) pictures, as AE Lab splits them."""
    train_x, train_y = load_split(folder, "train")
    test_x, test_y = load_split(folder, "t10k")
    return train_x, None, test_x


# ---------------------------------------------------------------------------------------------------------------------
# 3. The model and its loss
# The model owns its objective: `loss(x, out)` against the clean pictures `x`.
# ---------------------------------------------------------------------------------------------------------------------
class Autoencoder(nn.Module):
    """Autoencoder 784-200-784.
    It reads pictures (B, 1, 28, 28) in [0, 1].

    The layers, their order and their names are AE Lab's: the same seed gives the same first weights,
    and a checkpoint's tensors load into it with load_state_dict."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(784, 200),                    # -> (B, 200)
            nn.ReLU(),                              # -> (B, 200)
        )
        self.decoder = nn.Sequential(
            nn.Linear(200, 784),                    # -> (B, 784)
        )

    def encode(self, x):
        return self.encoder(x.reshape(len(x), 784))

    def decode_raw(self, z):
        """Codes -> the decoder's output before the output activation, (B, 1, 28, 28)."""
        return self.decoder(z).view(len(z), 1, 28, 28)

    def decode(self, z):
        """Codes -> pictures."""
        return torch.sigmoid(self.decode_raw(z))

    def forward(self, x):
        """(z, raw): the code and the decoder's output before the output activation."""
        z = self.encode(x)
        return z, self.decode_raw(z)

    def loss(self, x, out):
        """Binary cross-entropy per pixel, averaged over the pixels and the batch."""
        z, raw = out
        loss = F.binary_cross_entropy_with_logits(raw, x)    # from the logits: exact and safe
        return loss


# ---------------------------------------------------------------------------------------------------------------------
# 4. Training
# Each epoch draws a new order of the training pictures from the generator; each step takes the next batch, computes
# the loss against the clean batch and takes one optimiser step.
# ---------------------------------------------------------------------------------------------------------------------
def to_float(images):
    """uint8 pictures -> floats in [0, 1], (B, 1, 28, 28)."""
    return images.reshape(len(images), 1, 28, 28).float().div_(255.0)


def train_epoch(model, optimizer, images, epoch, gen, step):
    """One pass over the training pictures in a shuffled order; returns (the epoch's mean loss, steps so far)."""
    n = len(images)
    perm = torch.randperm(n, device=images.device, generator=gen)   # AE Lab's order, for the same seed
    total = torch.zeros((), device=images.device)
    for i in range(0, n, BATCH_SIZE):
        x = to_float(images.index_select(0, perm[i:i + BATCH_SIZE]))   # the clean batch: the target
        out = model(x)
        loss = model.loss(x, out)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        total += loss.detach() * len(x)
    return total.item() / n, step


# ---------------------------------------------------------------------------------------------------------------------
# 5. Evaluation
# The mean loss over held-out pictures, in eval mode (no dropout; a VAE's code at its mean), 1,000 at a time.
# ---------------------------------------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(model, images, batch_size=1000):
    """The mean loss over uint8 pictures, in eval mode; the model goes back to training mode after."""
    device = next(model.parameters()).device
    model.eval()
    total = torch.zeros((), device=device)
    for i in range(0, len(images), batch_size):
        x = to_float(images[i:i + batch_size].to(device))
        total += model.loss(x, model(x)) * len(x)
    model.train()
    return total.item() / max(len(images), 1)


# ---------------------------------------------------------------------------------------------------------------------
# 6. Main
# Load the data, build the model with the seed, train, and print one JSON line per epoch and a last one with the final
# losses.
# ---------------------------------------------------------------------------------------------------------------------
def main(argv=None):
    p = argparse.ArgumentParser(description='pytorch-784-200: train it as AE Lab did')
    p.add_argument("--data-dir", required=True, help="the folder holding the four IDX files")
    p.add_argument("--epochs", type=int, default=EPOCHS)
    p.add_argument("--device", default=DEVICE, help="auto, cpu or cuda")
    args = p.parse_args(argv)
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(auto if args.device == "auto" else args.device)
    torch.set_flush_denormal(True)        # as AE Lab: tiny Adam moments become 0 instead of slow subnormals

    train_x, val_x, test_x = load_data(Path(args.data_dir))
    held_out = val_x if val_x is not None else test_x
    torch.manual_seed(SEED)               # the first weights
    model = Autoencoder().to(device).train()
    gen = torch.Generator(device=device).manual_seed(SEED)   # the shuffling, the noise, the binarisation
    torch.manual_seed(SEED)               # dropout and a VAE's sampling draw from torch's global generator
    if OPTIMIZER == "rmsprop":            # Keras's RMSprop: rho 0.9
        optimizer = torch.optim.RMSprop(model.parameters(), lr=LR, alpha=0.9, eps=ADAM_EPS)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=LR, eps=ADAM_EPS, fused=True)
    images = train_x.to(device)
    step = 0
    for epoch in range(1, args.epochs + 1):
        train_loss, step = train_epoch(model, optimizer, images, epoch, gen, step)
        if not math.isfinite(train_loss):
            raise SystemExit(f"the loss became {train_loss} in epoch {epoch}: try a lower learning rate")
        record = {"epoch": epoch, "train_loss": train_loss, "val_loss": evaluate(model, held_out)}
        print(json.dumps(record), flush=True)
    model.cpu()
    final = {"train_loss": train_loss, "test_loss": evaluate(model, test_x)}
    print(json.dumps(final), flush=True)


if __name__ == "__main__":
    main()

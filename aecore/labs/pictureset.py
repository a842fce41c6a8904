"""A picture set in the MVTec AD layout, made from Fashion-MNIST, to try the own-pictures detector on.

    python -m aecore.labs.pictureset OUT [--seed N] [--side S] [--n-train N] ...

OUT/train/good/     tinted, enlarged sneakers (Fashion-MNIST class 7, training split): the only thing trained on
OUT/test/good/      other tinted sneakers (test split)
OUT/test/scratch/   sneakers with a 2-px line drawn across in a random colour: a small, located defect
OUT/test/sandal/    sandals (class 5), tinted the same way: the wrong object, a defect of the whole picture
OUT/ground_truth/scratch/<name>_mask.png   255 on the line's pixels, 0 elsewhere

Sandals get no mask, as MVTec's own "good" pictures get none: a full-picture mask would call every background
pixel of a sandal anomalous though it is the same black as a sneaker's, so pixel AUROC would mostly measure how
well black is rebuilt; without one, pixel AUROC measures what it is for, finding where a located defect lies.

Every picture is a Fashion-MNIST picture enlarged (bilinear) to side × side and multiplied by its own colour
(each channel drawn from [0.4, 1]), so a detector must accept a range of tints and shapes yet notice a thin
line or a different object. The same seed writes the same bytes.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from aecore.argv import OneLineParser, positive_int
from aecore.engine.data import DataError, load_split

SNEAKER, SANDAL = 7, 5          # Fashion-MNIST classes
TINT = (0.4, 1.0)               # each channel's factor is drawn from this range, per picture
LINE_WIDTH = 2                  # the scratch's width in pixels
LINE_COLOUR = (64, 256)         # each channel of a scratch's colour: bright enough to see on black


@dataclass(frozen=True)
class Made:
    """What `make_set` wrote: the folder and the count per sub-folder (e.g. {'train/good': 600, ...})."""
    root: Path
    counts: dict


def enlarge(images: np.ndarray, side: int) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, side, side) in [0, 1], bilinear."""
    x = torch.from_numpy(images).float().div(255).unsqueeze(1)          # (N, 1, 28, 28)
    if side != x.shape[-1]:
        x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
    return x[:, 0].clamp(0, 1).numpy()


def tint(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """float (N, S, S) in [0, 1] -> uint8 (N, S, S, 3): each picture times its own random colour."""
    colours = rng.uniform(*TINT, size=(len(grey), 1, 1, 3))
    return np.round(grey[..., None] * colours * 255).astype(np.uint8)


def scratch(picture: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A LINE_WIDTH-px line from one edge to the opposite one, in a random bright colour, drawn on a copy of
    `picture` uint8 (S, S, 3); returns (picture, mask uint8 (S, S) with 255 on the line)."""
    side = picture.shape[0]
    a, b = rng.uniform(0, side - 1, 2)
    ends = [(0, a), (side - 1, b)] if rng.random() < 0.5 else [(a, 0), (b, side - 1)]   # across, left-right or up-down
    colour = tuple(int(c) for c in rng.integers(*LINE_COLOUR, 3))
    img = Image.fromarray(picture)
    ImageDraw.Draw(img).line(ends, fill=colour, width=LINE_WIDTH)
    mask = Image.new("L", (side, side), 0)
    ImageDraw.Draw(mask).line(ends, fill=255, width=LINE_WIDTH)
    return np.asarray(img), np.asarray(mask)


def make_set(out_dir, seed: int = 0, side: int = 64, n_train: int = 600, n_test_good: int = 120,
             n_scratch: int = 60, n_other: int = 60, data_dir=None) -> Made:
    """Write the set under `out_dir` (created; existing files of the same names are overwritten). Raises
    DataError when Fashion-MNIST is missing or holds too few pictures for the counts asked."""
    if side < 8:
        raise ValueError(f"side must be at least 8 pixels, got {side}")
    rng = np.random.default_rng(seed)
    train, test = load_split("fashion-mnist", "train", data_dir), load_split("fashion-mnist", "test", data_dir)
    pick = lambda split, cls, n: _pick(split, cls, n, rng)   # noqa: E731
    train_good = pick(train, SNEAKER, n_train)
    test_sneakers = pick(test, SNEAKER, n_test_good + n_scratch)
    sandals = pick(test, SANDAL, n_other)
    root = Path(out_dir)
    groups = {"train/good": tint(enlarge(train_good, side), rng),
              "test/good": tint(enlarge(test_sneakers[:n_test_good], side), rng)}
    scratched = [scratch(p, rng) for p in tint(enlarge(test_sneakers[n_test_good:], side), rng)]
    groups["test/scratch"] = [p for p, _ in scratched]
    groups["test/sandal"] = tint(enlarge(sandals, side), rng)
    for name, pictures in groups.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i, p in enumerate(pictures):
            Image.fromarray(p).save(folder / f"{i:03d}.png")
    masks = root / "ground_truth" / "scratch"
    masks.mkdir(parents=True, exist_ok=True)
    for i, (_, m) in enumerate(scratched):
        Image.fromarray(m).save(masks / f"{i:03d}_mask.png")
    return Made(root, {name: len(p) for name, p in groups.items()} | {"ground_truth/scratch": len(scratched)})


def _pick(split, cls: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """n pictures of class `cls`, drawn without replacement: uint8 (n, 28, 28)."""
    index = np.flatnonzero(split.labels.numpy() == cls)
    if n > len(index):
        raise DataError(f"Fashion-MNIST holds {len(index)} pictures of class {cls} here, {n} were asked for")
    return split.images.numpy()[np.sort(rng.choice(index, n, replace=False))]


def main(argv=None) -> int:
    p = OneLineParser(prog="python -m aecore.labs.pictureset",
                      description="Write a picture set in the MVTec layout made from Fashion-MNIST sneakers.")
    p.add_argument("out", help="the folder to write (train/, test/, ground_truth/ under it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--side", type=positive_int, default=64, help="the pictures' side in pixels")
    p.add_argument("--n-train", type=positive_int, default=600)
    p.add_argument("--n-test-good", type=positive_int, default=120)
    p.add_argument("--n-scratch", type=positive_int, default=60)
    p.add_argument("--n-other", type=positive_int, default=60, help="sandals")
    p.add_argument("--data-dir", help="folder with the Fashion-MNIST IDX files")
    args = p.parse_args(argv)
    try:
        made = make_set(args.out, args.seed, args.side, args.n_train, args.n_test_good, args.n_scratch,
                        args.n_other, args.data_dir)
    except (DataError, ValueError) as e:
        print(f"aecore.labs.pictureset: {e}", file=sys.stderr)
        return 1
    print(f"{made.root}: " + ", ".join(f"{k} {v}" for k, v in made.counts.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

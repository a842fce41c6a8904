"""Command line for anomaly detection on one's own pictures: `python -m aecore.anomaly --folder PATH`.

PATH is a folder or a .zip in the MVTec AD layout (train/good/, test/good/, test/<defect>/, optionally
ground_truth/<defect>/<name>_mask.png); `python -m aecore.labs.pictureset OUT` writes one to try. The detector
learns train/good only, beside a PCA floor (aecore.labs.pictures). Progress lines go to stdout; the last stdout
line is one JSON object: image_auroc, pca_image_auroc, per_defect_auroc, pixel_auroc (null without masks),
threshold (the good-only threshold and the best-F1 one, each with its confusion counts), skipped, seconds, and
more. A set that is refused or cannot be used exits with status 2 and one line on stderr; bad options too.
"""
from __future__ import annotations

import json
import sys

from aecore.argv import OneLineParser, positive_int
from aecore.engine.data import DataError
from aecore.engine.images import COLORS, FITS, SIDES, ImageSetConfig, ImageSetError, load_images
from aecore.engine.train import TrainingDiverged
from aecore.labs.picturerun import DetectorError, detect
from aecore.labs.pictures import DEFAULT_RECIPE, FALSE_ALARM, RECIPES, WORST_PIXELS

PROG = "python -m aecore.anomaly"


def parser() -> OneLineParser:
    p = OneLineParser(prog=PROG, description="Learn the good pictures of an MVTec-layout set, find the defects.")
    p.add_argument("--folder", required=True, help="a folder or .zip in the MVTec AD layout")
    p.add_argument("--recipe", choices=sorted(RECIPES), default=DEFAULT_RECIPE,
                   help=f"the detector (default {DEFAULT_RECIPE}: " + RECIPES[DEFAULT_RECIPE].title + ")")
    p.add_argument("--side", type=int, choices=SIDES, help="the pictures' side in pixels (default: from them)")
    p.add_argument("--color", choices=COLORS, help="grey or rgb (default: rgb when any picture has colour)")
    p.add_argument("--fit", choices=FITS, default="letterbox", help="letterbox pads to a square; crop takes the centre")
    p.add_argument("--epochs", type=positive_int, help="override the recipe's epochs")
    p.add_argument("--seed", type=int, default=0, help="training and the held-out good pictures")
    p.add_argument("--worst-pixels", type=positive_int, default=WORST_PIXELS,
                   help="a picture's pixel score averages this many worst pixels")
    p.add_argument("--false-alarm", type=float, default=FALSE_ALARM,
                   help="the good-only threshold's false-alarm rate on good pictures (0-1)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    return p


def main(argv=None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if not 0 < args.false_alarm < 1:
        p.error(f"--false-alarm must be between 0 and 1 (exclusive), got {args.false_alarm:g}")
    if args.seed < 0:
        p.error(f"--seed must be >= 0, got {args.seed}")
    try:
        images = load_images(args.folder, ImageSetConfig(side=args.side, color=args.color, fit=args.fit,
                                                         seed=args.seed))
    except (ImageSetError, DataError, OSError) as e:
        print(f"aecore.anomaly: {_one_line(e)}", file=sys.stderr)
        return 2
    if images.skipped:
        print(f"{len(images.skipped)} file(s) skipped, e.g. {images.skipped[0].file}: {images.skipped[0].reason}")
    try:
        found = detect(images, args.recipe, args.epochs, args.seed, args.worst_pixels, args.false_alarm,
                       args.device, log=lambda line: print(line, flush=True))
    except DetectorError as e:
        print(f"aecore.anomaly: {_one_line(e)}", file=sys.stderr)
        return 2
    except TrainingDiverged as e:
        print(f"aecore.anomaly: {_one_line(e)}", file=sys.stderr)
        return 1
    print(json.dumps(_rounded(found.figures)), flush=True)
    return 0


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())


def _rounded(x):
    """Floats to 4 significant decimals, for a readable JSON line."""
    if isinstance(x, float):
        return round(x, 4)
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_rounded(v) for v in x]
    return x


if __name__ == "__main__":
    raise SystemExit(main())

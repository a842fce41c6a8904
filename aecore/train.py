"""Command line for training: `python -m aecore.train --preset pytorch-784-200`, or on one's own pictures:
`python -m aecore.train --images PATH [--side N] [--color grey|rgb] [--fit letterbox|crop] --family conv ...`.

stdout gets one JSON object per epoch and a final one with "final": true; progress goes to stderr.
Bad options and a refused picture set exit with status 2 and a one-line message; missing data or a diverged run
exit with status 1. A picture set is prepared once and kept beside the checkpoint (`<out>.pictures.npz`), which
names it: Inspect and the other pages read it back from there.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from aecore.argv import OneLineParser, ints
from aecore.engine import checkpoint, fetch, presets
from aecore.engine.data import IMAGES, DataConfig, DataError, load, save_picture_set
from aecore.engine.fields import FAMILIES, FIELDS, PICTURE, parse_schedule
from aecore.engine.images import FITS, ImageSetConfig, ImageSetError, load_images
from aecore.engine.models import ModelConfig, build, count_params
from aecore.engine.train import (Control, RunSpec, TrainConfig, TrainingDiverged, epoch_record, fit, resolve_device,
                                 results)

GROUPS = {"model": "model (override a preset, or build a custom model)", "data": "data", "train": "training"}


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m aecore.train", description="Train an AE Lab autoencoder.")
    p.add_argument("--preset", help="a tutorial preset (see --list-presets); other options override it")
    p.add_argument("--list-presets", action="store_true", help="list the presets and exit")
    p.add_argument("--data-dir", help="folder with the IDX files (else $AECORE_DATA_DIR, ./data)")
    p.add_argument("--download", action="store_true",
                   help="download the data set if it is not found, with AE Lab's own fetcher (mirrors: "
                        "$AECORE_MNIST_MIRROR / $AECORE_FASHION_MIRROR; cache: $AECORE_CACHE_DIR, "
                        "else ~/.cache/aelab)")
    p.add_argument("--out", help="checkpoint path (default runs/<name>.safetensors)")
    p.add_argument("--minutes", type=float, help="stop once training has taken this long (pauses and evaluation "
                                                   "excluded), even mid-epoch; the model is saved as it is then")
    # One option per setting of the table (aecore.engine.fields), named after its config field; the configs check
    # the ranges, the same as the form's and a link's.
    for section, title in GROUPS.items():
        group = p.add_argument_group(title)
        for f in (f for f in FIELDS.values() if f.config == section):
            notes = [f.describe()] if f.kind in ("int", "float", "ints") else []
            notes += [] if f.families == FAMILIES else [", ".join(f.families) + " only"]
            text = (f.help + (f" ({'; '.join(notes)})" if notes else "")).replace("%", "%%")
            if f.kind == "bool":
                group.add_argument(f.option, action=argparse.BooleanOptionalAction, default=None, help=text)
            elif f.kind == "choice":
                group.add_argument(f.option, choices=f.choices, help=text)
            else:
                kind = {"int": int, "float": float, "ints": ints, "schedule": schedule}[f.kind]
                group.add_argument(f.option, type=kind, help=text,
                                   metavar=f.name.upper())
    pictures = p.add_argument_group("your own pictures (instead of MNIST)")
    pictures.add_argument("--images", metavar="PATH",
                          help="a folder or .zip of PNG, JPEG, BMP, WebP or GIF pictures: one sub-folder per class, "
                               "train/ and test/ folders, or the MVTec AD layout (train/good, test/<defect>)")
    pictures.add_argument("--side", type=int, choices=PICTURE["side"].values,
                          help="the pictures' side in pixels (default: the nearest to their median size)")
    pictures.add_argument("--color", choices=PICTURE["color"].choices,
                          help="grey or rgb (default: rgb when any picture has colour)")
    pictures.add_argument("--fit", choices=FITS,
                          help="letterbox keeps the whole picture on a square (default); crop takes the centre")
    return p


def schedule(text: str) -> tuple:
    """An argparse type: changes while training, `120:lr=0.0005,300:noise=mask`."""
    try:
        return parse_schedule(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def picture_data(args: argparse.Namespace, data_cfg: DataConfig, model_cfg: ModelConfig, out: Path, seed: int):
    """With --images: the set prepared (and saved as out.pictures.npz), the configs that name it and read its
    pictures, and what was skipped. Raises ImageSetError for a refused set."""
    pictures = load_images(args.images, ImageSetConfig(side=args.side, color=args.color,
                                                       fit=args.fit or "letterbox", seed=seed))
    for s in pictures.skipped:
        print(f"skipped {s.file}: {s.reason}", file=sys.stderr)
    saved = save_picture_set(out.with_name(out.stem + ".pictures.npz"), pictures.data, pictures.describe(),
                             pictures.masks)
    data_cfg = replace(data_cfg, dataset=IMAGES, images=str(saved))
    model_cfg = replace(model_cfg, side=pictures.config.side, color=pictures.config.color)
    return data_cfg, model_cfg, [{"file": s.file, "reason": s.reason} for s in pictures.skipped]


def configs(args: argparse.Namespace) -> tuple[ModelConfig, DataConfig, TrainConfig]:
    """The three configs the options ask for: the preset's (or the defaults), with every option given over it;
    ValueError naming the setting when one is out of range."""
    pre = presets.get(args.preset) if args.preset else None
    base = {"model": pre.model if pre else ModelConfig(), "data": pre.data if pre else DataConfig(),
            "train": pre.train if pre else TrainConfig()}
    return tuple(replace(cfg, **{n: getattr(args, n) for n, f in FIELDS.items()
                                 if f.config == section and getattr(args, n) is not None})
                 for section, cfg in base.items())


def main(argv=None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.list_presets:
        for pr in presets.PRESETS.values():
            print(f"{pr.name:18} {pr.title}  [{pr.figure_label or 'figure'}: {pr.figure}]")
        return 0
    try:
        pre = presets.get(args.preset) if args.preset else None
        model_cfg, data_cfg, train_cfg = configs(args)
        device = resolve_device(train_cfg.device)
    except ValueError as e:
        p.error(str(e))
    name = pre.name if pre else "custom"
    out = Path(args.out or f"runs/{name}.safetensors")
    skipped = None
    if args.images is None and (args.side or args.color or args.fit):
        p.error("--side, --color and --fit shape the pictures of --images")
    try:
        if args.images is not None:
            data_cfg, model_cfg, skipped = picture_data(args, data_cfg, model_cfg, out, train_cfg.seed)
        data = (fetch.load if args.download else load)(data_cfg, args.data_dir)
    except ImageSetError as e:
        print(f"aecore.train: {e}", file=sys.stderr)
        return 2
    except DataError as e:
        print(f"aecore.train: {e}", file=sys.stderr)
        return 1
    except ValueError as e:        # a model that cannot read these pictures (a conv side that does not halve)
        p.error(str(e))
    model = build(model_cfg, seed=train_cfg.seed)
    print(f"{name}: {count_params(model):,} parameters, {len(data.train):,} training images, on {device}",
          file=sys.stderr)
    history, previous, control = [], None, Control()
    if args.minutes is not None and args.minutes <= 0:
        p.error(f"--minutes must be > 0, got {args.minutes:g}")
    try:
        for m in fit(model, data, train_cfg, control):
            history.append(m)
            if args.minutes is not None and m.elapsed >= args.minutes * 60 and not control.stopped:
                control.stop()       # fit returns before its next step
                print(f"\nstopped after {m.elapsed / 60:.1f} min of training: {m.samples / len(data.train):.2f} "
                      f"passes over the training images", file=sys.stderr)
            print(f"\repoch {m.epoch}/{train_cfg.epochs} step {m.step}/{m.total_steps} "
                  f"loss {m.train_loss:.4f} {m.samples_per_s:,.0f} samples/s", end="", file=sys.stderr)
            if m.epoch_end:
                print(file=sys.stderr)
                print(json.dumps(epoch_record(m, previous)), flush=True)
                previous = m
    except TrainingDiverged as e:
        print(f"\naecore.train: {e}", file=sys.stderr)
        return 1
    model.cpu()
    res = results(model, data, history, binarize=train_cfg.binarize)
    spec = RunSpec(name=name, model=model_cfg, data=data_cfg, train=train_cfg, preset=args.preset)
    last = history[-1]
    passes = round(last.samples / len(data.train), 3)     # fewer than the epochs when --minutes stopped it
    checkpoint.save(out, model, spec.meta(str(device), passes=passes, **res))
    final = {"final": True, "name": name, **res["figures"], "seconds": round(last.elapsed, 2), "passes": passes,
             "checkpoint": str(out), **({"pictures": data_cfg.images, "skipped": skipped} if skipped is not None
                                        else {})}
    if pre:
        measured = res["figures"][pre.figure_metric]
        final.update(tutorial_figure=pre.figure, figure_metric=pre.figure_metric,
                     compare=pre.figure_text(measured))
    print(json.dumps(final), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

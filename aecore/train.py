"""Command line for training: `python -m aecore.train --preset pytorch-784-200`.

stdout gets one JSON object per epoch and a final one with "final": true; progress goes to stderr.
Bad options exit with status 2 and a one-line message; missing data or a diverged run exit with status 1.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from aecore.argv import OneLineParser, ints
from aecore.engine import checkpoint, fetch, presets
from aecore.engine.data import DataConfig, DataError, load
from aecore.engine.fields import FAMILIES, FIELDS
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
                group.add_argument(f.option, type={"int": int, "float": float, "ints": ints}[f.kind], help=text,
                                   metavar=f.name.upper())
    return p


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
    try:
        data = (fetch.load if args.download else load)(data_cfg, args.data_dir)
    except DataError as e:
        print(f"aecore.train: {e}", file=sys.stderr)
        return 1
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
             "checkpoint": str(out)}
    if pre:
        measured = res["figures"][pre.figure_metric]
        final.update(tutorial_figure=pre.figure, figure_metric=pre.figure_metric,
                     compare=pre.figure_text(measured))
    print(json.dumps(final), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

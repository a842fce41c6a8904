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
from aecore.engine.models import FAMILIES, ModelConfig, build, count_params
from aecore.engine.train import (OPTIMIZERS, Control, RunSpec, TrainConfig, TrainingDiverged, epoch_record, fit, resolve_device,
                          results)


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
    m = p.add_argument_group("model (override a preset, or build a custom model)")
    m.add_argument("--family", choices=FAMILIES)
    m.add_argument("--hidden", type=ints, help="MLP sizes, e.g. 200 or 256,128,64,2")
    m.add_argument("--channels", type=ints, help="conv channels, e.g. 16,4")
    m.add_argument("--activation", choices=("relu", "sigmoid", "tanh"))
    m.add_argument("--linear-code", action=argparse.BooleanOptionalAction, default=None)
    m.add_argument("--output", choices=("sigmoid", "identity"))
    m.add_argument("--loss", choices=("bce", "mse"))
    m.add_argument("--dropout", type=float)
    m.add_argument("--dropout-where", choices=("hidden", "hidden+output"))
    m.add_argument("--init", choices=("torch", "keras", "chainer"))
    m.add_argument("--sparsity", type=float, help="shallow: weight of the L1 penalty on the code")
    m.add_argument("--latent", type=int, help="vae, conv-vae: the code size")
    m.add_argument("--beta", type=float, help="vae, conv-vae: weight of the KL term")
    m.add_argument("--kl-warmup", type=int, help="vae, conv-vae: epochs over which the KL weight rises to beta")
    d = p.add_argument_group("data")
    d.add_argument("--dataset", choices=("mnist", "fashion-mnist"))
    d.add_argument("--val-fraction", type=float)
    d.add_argument("--classes", type=ints, help="train only on these labels, e.g. 0")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--adam-eps", type=float)
    t.add_argument("--lr-milestones", type=ints)
    t.add_argument("--lr-gamma", type=float)
    t.add_argument("--noise", choices=("none", "mask", "gaussian"))
    t.add_argument("--noise-level", type=float)
    t.add_argument("--deform", type=float, help="random turn, scaling, shift and elastic bend of the input, 0 to 2 "
                                                 "(1: up to 15 degrees, 10 %%, 3 px, a 34 px bend); the target "
                                                 "stays clean")
    t.add_argument("--seed", type=int)
    t.add_argument("--device", choices=("auto", "cpu", "cuda"))
    t.add_argument("--optimizer", choices=OPTIMIZERS)
    t.add_argument("--binarize", action=argparse.BooleanOptionalAction, default=None,
                   help="draw each batch's pixels as Bernoulli(intensity)")
    return p


def _override(cfg, args, names):
    changes = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    return replace(cfg, **changes)


def main(argv=None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.list_presets:
        for pr in presets.PRESETS.values():
            print(f"{pr.name:18} {pr.title}  [{pr.figure_label or 'figure'}: {pr.figure}]")
        return 0
    try:
        pre = presets.get(args.preset) if args.preset else None
        model_cfg = _override(pre.model if pre else ModelConfig(), args,
                              ("family", "hidden", "channels", "activation", "linear_code", "output", "loss",
                               "dropout", "dropout_where", "init", "sparsity", "latent", "beta", "kl_warmup"))
        data_cfg = _override(pre.data if pre else DataConfig(), args, ("dataset", "val_fraction", "classes"))
        train_cfg = _override(pre.train if pre else TrainConfig(), args,
                              ("epochs", "batch_size", "lr", "adam_eps", "lr_milestones", "lr_gamma", "noise",
                               "noise_level", "deform", "seed", "device", "optimizer", "binarize"))
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

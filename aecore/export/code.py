"""A run as a standalone training script (torch, numpy and the standard library only) and as a notebook.

`sections(spec)` writes the script in parts, each a title, a few lines of prose and its code: the settings, the
data, the model and its loss, what the model sees of a batch, training, evaluation, the main function. `script`
joins them into one file (the prose as comments), `notebook` into an nbformat v4 notebook (the prose as markdown
cells). The script trains exactly as `aecore.engine.train.fit` does: the same first weights for the seed, the same
shuffling from a torch.Generator seeded the same way, the same noise draws, the same loss; on the same device and
data its losses are AE Lab's (to float rounding: its BCE is torch's, AE Lab's a faster form of the same).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from aecore.engine.data import IMAGES, DataConfig
from aecore.engine.models import ModelConfig, build
from aecore.engine.presets import PRESETS
from aecore.engine.train import RunSpec, TrainConfig
from aecore.export.layers import ExportError, model_code
from aecore.export.snippets import CORRUPT, DEFORM_CODE, IDX_CODE, PICTURES_CODE, evaluate_code, main_code


@dataclass(frozen=True)
class Section:
    title: str
    text: str      # prose: comments in the script, a markdown cell in the notebook
    code: str


def changes_of(train: TrainConfig) -> tuple:
    """The run's schedule of (step, name, value) changes, if its TrainConfig has one."""
    return tuple(tuple(c) for c in (getattr(train, "changes", ()) or ()))


def sections(spec: RunSpec) -> list[Section]:
    """The script's parts, in order; ExportError when the run's data cannot be read by a plain script."""
    m, d, t = spec.model, spec.data, spec.train
    changes = changes_of(t)
    changed = {name for _, name, _ in changes}
    noisy = (t.noise != "none" and t.noise_level > 0) or bool(changed & {"noise", "noise_level"})
    corrupted = noisy or t.deform > 0
    sparse = m.family == "shallow" and (m.sparsity > 0 or "sparsity" in changed)
    model = build(m, seed=t.seed)
    out = [Section("Settings", "The run's settings as AE Lab recorded them; change them here.",
                   _settings(spec, noisy, sparse, changes)),
           _data_section(d, m)]
    out.append(Section("The model and its loss",
                       "The model owns its objective: `loss(x, out)` against the clean pictures `x`.",
                       model_code(model, sparse)))
    if corrupted:
        out.append(_corrupt_section(t, noisy))
    out.append(_train_section(spec, corrupted, changes))
    out.append(Section("Evaluation",
                       "The mean loss over held-out pictures, in eval mode (no dropout; a VAE's code at its mean), "
                       "1,000 at a time." + (" Binarised once, with a generator seeded 0, the same every time."
                                             if t.binarize else ""),
                       evaluate_code(m, t.binarize)))
    out.append(Section("Main", "Load the data, build the model with the seed, train, and print one JSON line per "
                               "epoch and a last one with the final losses.",
                       main_code(spec, picture_set=d.dataset == IMAGES)))
    return out


def _settings(spec: RunSpec, noisy: bool, sparse: bool, changes: tuple) -> str:
    m, d, t = spec.model, spec.data, spec.train
    rows = [("SEED", t.seed, "the first weights, the shuffling and the noise all follow from it"),
            ("EPOCHS", t.epochs, "passes over the training pictures"),
            ("BATCH_SIZE", t.batch_size, "pictures per optimiser step"),
            ("OPTIMIZER", t.optimizer, "adam, or rmsprop (Keras's: rho 0.9)"),
            ("LR", t.lr, "the learning rate"),
            ("ADAM_EPS", t.adam_eps, "the optimiser's epsilon (Keras uses 1e-7)")]
    if t.lr_milestones:
        rows += [("LR_MILESTONES", tuple(t.lr_milestones), "after each of these epochs the learning rate ..."),
                 ("LR_GAMMA", t.lr_gamma, "... is multiplied by this")]
    if noisy:
        rows += [("NOISE", t.noise, "what corrupts the input: none, mask (zero pixels) or gaussian"),
                 ("NOISE_LEVEL", t.noise_level, "the masked share of pixels, or the Gaussian sigma")]
    if t.deform:
        rows.append(("DEFORM", t.deform, "random turn, scaling, shift and elastic bend of the input (0..2)"))
    if t.binarize:
        rows.append(("BINARIZE", True, "each batch's pixels drawn as Bernoulli(intensity), anew every time"))
    if sparse:
        rows.append(("SPARSITY", m.sparsity, "weight of the L1 penalty on the code (per picture, summed)"))
    if m.variational:
        rows += [("BETA", m.beta, "weight of the KL term"),
                 ("KL_WARMUP", m.kl_warmup, "epochs over which the KL weight rises from 0 to BETA")]
    if d.classes:
        rows.append(("CLASSES", tuple(d.classes), "train and test on these labels only"))
    if d.val_fraction:
        rows.append(("VAL_FRACTION", d.val_fraction, "the first part of the training set, held out"))
    rows.append(("DEVICE", t.device, "auto: CUDA when there is one; AE Lab's numbers need its run's device"))
    lines = []
    for name, value, why in rows:
        lines.append(f"{f'{name} = {value!r}':<32}# {why}")
    if changes:
        lines.append("# What changed while it trained: after STEP optimiser steps, before the next, SETTING becomes"
                     " VALUE")
        lines.append("CHANGES = [")
        lines += [f"    ({step}, {name!r}, {value!r})," for step, name, value in changes]
        lines.append("]")
    return "\n".join(lines) + "\n"


def _data_section(d: DataConfig, m: ModelConfig) -> Section:
    if d.dataset == IMAGES:
        return Section("The data: the picture set AE Lab prepared",
                       "This run learned your own pictures. AE Lab prepared them once (sized to "
                       f"{m.side}×{m.side} {m.color}, letterboxed or cropped) and saved them as one .npz of uint8 "
                       "arrays; this script reads that file (--pictures). It cannot redo the preparation from the "
                       "picture folder: that is AE Lab's (python -m aecore.train --images).",
                       PICTURES_CODE.format(filter=_filter_code(d)))
    name = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}[d.dataset]
    return Section(f"The data: {name}'s IDX files",
                   f"{name}'s four files (train-images-idx3-ubyte[.gz], ...) in one folder, --data-dir. Pictures stay "
                   "uint8, (N, 28, 28); each batch becomes floats in [0, 1] as it is used.",
                   IDX_CODE.format(filter=_filter_code(d)))


def _filter_code(d: DataConfig) -> str:
    code = ""
    if d.classes:
        code += ("    keep = torch.tensor(CLASSES)                   # the classes first ...\n"
                 "    train_x = train_x[torch.isin(train_y, keep)]\n"
                 "    test_x = test_x[torch.isin(test_y, keep)]\n")
    if d.val_fraction:
        code += ("    n_val = int(round(len(train_x) * VAL_FRACTION))  # ... then the held-out part\n"
                 "    return train_x[n_val:], train_x[:n_val], test_x\n")
    else:
        code += "    return train_x, None, test_x\n"
    return code


def _corrupt_section(t: TrainConfig, noisy: bool) -> Section:
    text = ("The model sees a corrupted copy of each batch and learns to give back the clean one: "
            + ", then ".join((["deformed"] if t.deform else []) + (["noised"] if noisy else []))
            + ". Every random draw comes from the loop's generator, in AE Lab's order.")
    parts = [DEFORM_CODE] if t.deform else []
    parts.append(CORRUPT.format(deform="    x = deform(x, DEFORM, gen)\n" if t.deform else "",
                                noise=_noise_code() if noisy else "    return x\n"))
    return Section("What the model sees of a batch", text, "\n\n\n".join(parts))


def _noise_code() -> str:
    return ('''    if NOISE == "mask" and NOISE_LEVEL > 0:                  # zero a random share of the pixels
        keep = torch.rand(x.shape, device=x.device, generator=gen) >= NOISE_LEVEL
        return x * keep
    if NOISE == "gaussian" and NOISE_LEVEL > 0:              # add sigma * N(0, 1), clipped to [0, 1]
        return (x + NOISE_LEVEL * torch.randn(x.shape, device=x.device, generator=gen)).clamp_(0.0, 1.0)
    return x
''')


def _train_section(spec: RunSpec, corrupted: bool, changes: tuple) -> Section:
    m, t = spec.model, spec.train
    c, s = m.in_channels, m.side
    pre = ""
    if changes:
        pre += ("        for at, name, value in CHANGES:           # the run's changes due before this step\n"
                "            if at == step:\n"
                "                apply_change(model, optimizer, name, value)\n")
    if m.variational:
        pre += "        model.at_epoch(epoch - 1 + i / n)\n"
    binarize = ("        x = torch.bernoulli(x, generator=gen)      # a new binary picture every time\n"
                if t.binarize else "")
    feed = "model(corrupt(x, gen))" if corrupted else "model(x)"
    code = ""
    if changes:
        code += '''def apply_change(model, optimizer, name, value):
    """One change of the schedule: the learning rate of every parameter group, the noise, every dropout
    layer's rate, a VAE's beta or the sparsity weight."""
    global NOISE, NOISE_LEVEL
    if name == "lr":
        for group in optimizer.param_groups:
            group["lr"] = value
    elif name == "noise":
        NOISE = value
    elif name == "noise_level":
        NOISE_LEVEL = value
    elif name == "dropout":
        for layer in model.modules():
            if isinstance(layer, nn.Dropout):
                layer.p = float(value)
    else:                                               # beta or sparsity
        setattr(model, name, float(value))


'''
    code += f'''def to_float(images):
    """uint8 pictures -> floats in [0, 1], (B, {c}, {s}, {s})."""
    return images.reshape(len(images), {c}, {s}, {s}).float().div_(255.0)


def train_epoch(model, optimizer, images, epoch, gen, step):
    """One pass over the training pictures in a shuffled order; returns (the epoch's mean loss, steps so far)."""
    n = len(images)
    perm = torch.randperm(n, device=images.device, generator=gen)   # AE Lab's order, for the same seed
    total = torch.zeros((), device=images.device)
    for i in range(0, n, BATCH_SIZE):
{pre}        x = to_float(images.index_select(0, perm[i:i + BATCH_SIZE]))   # the clean batch: the target
{binarize}        out = {feed}
        loss = model.loss(x, out)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        total += loss.detach() * len(x)
    return total.item() / n, step
'''
    text = ("Each epoch draws a new order of the training pictures from the generator; each step takes the next "
            "batch, " + ("corrupts a copy, " if corrupted else "") + "computes the loss against the clean batch and "
            "takes one optimiser step.")
    if t.binarize:
        text += (" Dynamic binarisation: each batch's pixels are drawn as 0 or 1 with their intensity as the chance, "
                 "anew every time (Burda et al.), from the same generator.")
    if changes:
        text += " The run's changes (CHANGES) are made between two steps, as AE Lab made them."
    return Section("Training", text, code)


def script(spec: RunSpec) -> str:
    """The whole standalone script."""
    parts = [_header(spec) + "\n\n" + _IMPORTS]
    for i, sec in enumerate(sections(spec), 1):
        rule = "# " + "-" * 117
        prose = "\n".join("# " + line for line in _wrap(sec.text))
        parts.append(f"{rule}\n# {i}. {sec.title}\n{prose}\n{rule}\n{sec.code}")
    parts.append('if __name__ == "__main__":\n    main()\n')
    return "\n\n\n".join(p.rstrip("\n") for p in parts) + "\n"


def notebook(spec: RunSpec) -> str:
    """The script as an nbformat v4 notebook: a markdown cell and a code cell per section, then a cell that runs it."""
    def cell(kind, text):
        c = {"cell_type": kind, "metadata": {}, "source": text.rstrip("\n").splitlines(keepends=True)}
        return c if kind == "markdown" else {**c, "execution_count": None, "outputs": []}
    cells = [cell("markdown", _header(spec, notebook=True)), cell("code", _IMPORTS)]
    for i, sec in enumerate(sections(spec), 1):
        cells += [cell("markdown", f"## {i}. {sec.title}\n\n{sec.text}"), cell("code", sec.code)]
    arg = "--pictures" if spec.data.dataset == IMAGES else "--data-dir"
    default = spec.data.images if spec.data.dataset == IMAGES else "data"
    cells += [cell("markdown", "## Run it\n\nName the folder that holds the data, and how many epochs."),
              cell("code", f"DATA = {default!r}\nmain([{arg!r}, DATA, \"--epochs\", str(EPOCHS)])\n")]
    nb = {"cells": cells, "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                                      "name": "python3"},
                                       "language_info": {"name": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    for i, c in enumerate(nb["cells"]):
        c["id"] = f"cell-{i}"
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


_IMPORTS = """import argparse
import gzip
import json
import math
import struct
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
"""


def _header(spec: RunSpec, notebook: bool = False) -> str:
    m = spec.model
    what = f"{'the tutorial preset ' + spec.preset if spec.preset else 'the run ' + repr(spec.name)}"
    run = ("python run.py --pictures FILE.npz [--epochs N]" if spec.data.dataset == IMAGES
           else "python run.py --data-dir DIR [--epochs N]")
    kind = {"shallow": "a shallow autoencoder", "deep": "a deep autoencoder", "conv": "a convolutional autoencoder",
            "vae": "a variational autoencoder", "conv-vae": "a convolutional variational autoencoder"}[m.family]
    lines = [*_wrap(f"{spec.name}: {kind}, {m.sizes_text}, as AE Lab trains it.", 112), "",
             f"Written by AE Lab (python -m aecore.export) for {what}.",
             "It needs torch and numpy, nothing of AE Lab's.",
             ("Run the cells in order; the last one trains." if notebook else f"Run it with: {run}"), "",
             "With the same settings, seed, data and device it takes the same steps as AE Lab's run: the same first",
             "weights, the same batches in the same order, the same noise, the same loss; it prints one JSON line",
             "per epoch and a last one with train_loss and test_loss."]
    pre = PRESETS.get(spec.preset or "")
    if pre is not None:
        figure = f"{pre.figure_label}: {pre.figure:g}" if pre.figure is not None else "a picture, no number"
        lines += ["", *_wrap(f"The tutorial: {pre.tutorial}", 112), f"Its figure ({pre.figure_metric}): {figure}."]
    if notebook:
        return "# " + "\n".join(lines)
    return '"""' + "\n".join(lines) + '\n"""'


def _wrap(text: str, width: int = 116) -> list[str]:
    words, lines, line = text.split(), [], ""
    for w in words:
        if line and len(line) + 1 + len(w) > width:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}" if line else w
    return lines + ([line] if line else [])


def spec_from_meta(meta: dict, model: ModelConfig | None = None) -> RunSpec:
    """A checkpoint's record (`checkpoint.load`'s meta, or a `ModelEntry`'s with its model's config as `model`) as
    the RunSpec it was trained from; settings it did not record are AE Lab's defaults."""
    model = model or meta.get("model")
    if not isinstance(model, ModelConfig):
        raise ExportError("the checkpoint records no model configuration")
    data = meta.get("data") if isinstance(meta.get("data"), DataConfig) else DataConfig()
    train = meta.get("train") if isinstance(meta.get("train"), TrainConfig) else TrainConfig()
    name = str(meta.get("name") or "model")
    return RunSpec(name=name, model=model, data=data, train=train, preset=meta.get("preset"))

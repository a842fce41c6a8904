"""The tutorial presets' code: each preset's exported script beside its tutorial's figure, for docs/takehome/.

`files()` gives every file of that folder (the index, README.md, and `<preset>.py` for each preset of
aecore.engine.presets); `write_presets(folder)` writes them (`python -m aecore.export presets -o docs/takehome`), and
a test checks the committed folder against `files()`, so it never drifts from what the exporter writes.
`measure(name, data_dir)` trains a preset for one epoch both ways, AE Lab's `fit` and its script in a clean
interpreter, for the README's reproduction table (`python -m aecore.export.tutorials --data-dir DIR`).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from aecore.engine.presets import PRESETS, Preset
from aecore.engine.train import RunSpec
from aecore.export.code import script


def preset_spec(p: Preset) -> RunSpec:
    return RunSpec(name=p.name, model=p.model, data=p.data, train=p.train, preset=p.name)


def index() -> str:
    """docs/takehome/README.md: each preset, its tutorial's figure and its script."""
    rows = []
    for p in PRESETS.values():
        figure = f"{p.figure:g}" if p.figure is not None else "a picture"
        rows.append(f"| [{p.name}]({p.name}.py) | {p.title} | {p.figure_label} ({p.figure_metric}) | {figure} |")
    return "\n".join([
        "# The tutorial presets as code", "",
        "Each preset of AE Lab (`aecore/engine/presets.py`) as the standalone training script AE Lab exports for it:",
        "torch and numpy only, the settings at the top, and `python <preset>.py --data-dir DIR [--epochs N]` trains",
        "as AE Lab does, step for step, printing `train_loss` and `test_loss` last. Diff a script with the tutorial's",
        "own code to see what AE Lab does differently; each script's docstring says what the tutorial did.", "",
        "Written by `python -m aecore.export presets -o docs/takehome` (a test checks that they are what it writes "
        "now).", "",
        "| preset | title | the tutorial's figure | its value |", "|---|---|---|---|", *rows, ""])


def files() -> dict[str, str]:
    """Every file of docs/takehome/ by name."""
    return {"README.md": index(), **{f"{p.name}.py": script(preset_spec(p)) for p in PRESETS.values()}}


def write_presets(folder: str | os.PathLike) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files().items():
        (folder / name).write_text(text, encoding="utf-8")
        written.append(folder / name)
    return written


def measure(name: str, data_dir: str, epochs: int = 1) -> dict:
    """One preset trained `epochs` epochs on the CPU by AE Lab and by its script (python -I, from a temp folder):
    {"preset", "ae_lab": figures, "script": its last JSON line}."""
    from aecore.engine.data import load
    from aecore.engine.models import build
    from aecore.engine.train import fit, results
    p = PRESETS[name]
    train = replace(p.train, epochs=epochs, device="cpu")
    data = load(p.data, data_dir)
    model = build(p.model, seed=train.seed)
    ours = results(model.cpu(), data, list(fit(model, data, train)), binarize=train.binarize)["figures"]
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "run.py").write_text(script(preset_spec(p)))
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        done = subprocess.run([sys.executable, "-I", "run.py", "--data-dir", str(Path(data_dir).resolve()),
                               "--epochs", str(epochs), "--device", "cpu"], cwd=tmp, env=env, capture_output=True,
                              text=True, check=True)
    return {"preset": name, "ae_lab": ours, "script": json.loads(done.stdout.strip().splitlines()[-1])}


def main(argv=None) -> int:
    from aecore.argv import OneLineParser, positive_int
    p = OneLineParser(prog="python -m aecore.export.tutorials",
                      description="Each preset for a few epochs, by AE Lab and by its exported script: a table.")
    p.add_argument("--data-dir", required=True, help="the folder holding MNIST's IDX files")
    p.add_argument("--epochs", type=positive_int, default=1)
    p.add_argument("presets", nargs="*", help="presets to measure (default: all)")
    args = p.parse_args(argv)
    print("| preset | AE Lab train_loss | script train_loss | AE Lab test_loss | script test_loss |")
    print("|---|---:|---:|---:|---:|")
    for name in args.presets or PRESETS:
        r = measure(name, args.data_dir, args.epochs)
        a, s = r["ae_lab"], r["script"]
        print(f"| {name} | {a['train_loss']:.6g} | {s['train_loss']:.6g} | {a['test_loss']:.6g} | "
              f"{s['test_loss']:.6g} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

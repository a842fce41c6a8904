"""The training benchmark (`python -m aecore.bench`) on tiny synthetic IDX files: it reports every figure it
documents (the floor, fit's steady epoch and their ratio, each family's samples/s), each positive and finite, and
its loss is the loss `fit` computes for the same preset and seed; never how fast anything is.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from aecore import bench
from aecore.engine import presets
from aecore.engine.data import DataConfig, load
from aecore.engine.models import build
from aecore.engine.train import fit

from idx_helpers import tiny_data


def test_the_benchmark_reports_the_floor_the_steady_epoch_and_every_family(mnist_dir, capsys):
    assert bench.main(["--data-dir", str(mnist_dir), "--epochs", "2", "--skip-tutorial", "--families",
                       "--family-samples", "48", "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    train = load(DataConfig(), str(mnist_dir)).train
    assert out["samples_per_epoch"] == len(train) and out["epochs"] == 2
    for key in ("matmul_s_per_epoch", "fit_s_per_epoch", "fit_steady_s_per_epoch", "fit_over_matmul_floor",
                "autograd_steady_s_per_epoch", "autograd_over_matmul_floor"):
        assert math.isfinite(out[key]) and out[key] > 0, (key, out)
    assert out["fit_steady_s_per_epoch"] <= out["fit_s_per_epoch"] * 2   # the fastest of two epochs
    for key in ("fit_over_floor_by_epoch", "autograd_over_floor_by_epoch"):  # an epoch and the floor after it
        assert len(out[key]) == 2 and min(out[key]) > 0, (key, out)
    # the steady epoch over the fastest floor is no less than that epoch over the floor timed after it
    assert out["fit_over_floor_by_epoch"][1] <= out["fit_over_matmul_floor"] * 1.001 + 1e-3
    assert out["fit_over_matmul_floor"] == pytest.approx(
        out["fit_steady_s_per_epoch"] / out["matmul_s_per_epoch"], rel=1e-2)
    assert set(out["families"]) == {"shallow", "deep", "conv", "vae", "conv-vae", "sparse"}
    for family, figure in out["families"].items():
        model = presets.get(figure["preset"]).model
        assert (model.family, bool(model.sparsity)) == (("shallow", True) if family == "sparse" else (family, False))
        assert figure["samples_per_s"] > 0, (family, figure)
        assert figure["samples"] == 48
    assert "tutorial_s_per_epoch" not in out

    # the loss it reports is fit's own for the preset and seed 0
    pre = presets.get("pytorch-784-200")
    cfg = replace(pre.train, epochs=2, device="cpu", seed=0, log_every=10_000)
    ends = [m for m in fit(build(pre.model, seed=0), bench.training_only(train), cfg) if m.epoch_end]
    assert out["fit_loss"] == pytest.approx(ends[-1].epoch_loss, abs=1e-4)
    assert out["autograd_loss"] == pytest.approx(out["fit_loss"], abs=1e-6)   # the same training, through autograd


def test_samples_limits_the_training_pictures(mnist_dir, capsys):
    assert bench.main(["--data-dir", str(mnist_dir), "--epochs", "1", "--samples", "40", "--skip-tutorial",
                       "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["samples_per_epoch"] == 40
    assert 0 < out["fit_steady_s_per_epoch"] <= out["fit_s_per_epoch"]   # the only epoch, its set-up not counted


# The speed work must not change a number: the same seed trains to the same losses with the loop as it was (every
# subnormal float kept) as with subnormals flushed to zeros. Each side runs in its own process, since a thread's
# compute threads take the setting when they start. pytorch-784-200 trains 1,000 steps on real MNIST, long enough for
# Adam's moments to reach the subnormal floats; every other family a few steps on 512 pictures.
_LOSSES = r"""
import json, sys
import torch
if sys.argv[1] == "kept":
    torch.set_flush_denormal = lambda on: False       # the loop as it was before the speed work
from dataclasses import replace
from aecore.bench import FAMILY_PRESETS, training_only
from aecore.engine import presets
from aecore.engine.data import Split, load
from aecore.engine.models import build
from aecore.engine.train import fit
torch.set_num_threads(2)
full = load(presets.get("pytorch-784-200").data)
out, subnormal = {}, []
for family, name in FAMILY_PRESETS.items():
    pre = presets.get(name)
    n, epochs = (6_200, 20) if family == "shallow" else (512, 2)
    train = Split(full.train.images[:n], full.train.labels[:n])
    cfg = replace(pre.train, epochs=epochs, device="cpu", seed=0, log_every=10_000)
    states = []
    ends = [m for m in fit(build(pre.model, seed=0), training_only(train), cfg, at_epoch_end=states.append)
            if m.epoch_end]
    out[family] = [m.epoch_loss for m in ends]
    if family == "shallow":
        moments = [s["exp_avg"] for s in states[-1].optimizer["state"].values()]
        subnormal = sum(int(((m != 0) & (m.abs() < torch.finfo(torch.float32).tiny)).sum()) for m in moments)
print(json.dumps({"losses": out, "subnormal": subnormal,
                  "flushed": (torch.tensor([1e-39]) * 1.0).item() == 0.0}))
"""


@pytest.mark.mnist
def test_flushing_subnormals_changes_no_loss():
    runs = {}
    for mode in ("kept", "flushed"):
        done = subprocess.run([sys.executable, "-c", _LOSSES, mode], capture_output=True, text=True, timeout=600,
                              cwd=Path(__file__).resolve().parents[1])
        assert done.returncode == 0, done.stderr[-2000:]
        runs[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    kept, flushed = runs["kept"], runs["flushed"]
    assert (kept["flushed"], flushed["flushed"]) == (False, True)      # each side ran as it says
    assert kept["subnormal"] > 0 and flushed["subnormal"] == 0         # the test reaches what the setting changes
    assert kept["losses"].keys() == flushed["losses"].keys() == set(bench.FAMILY_PRESETS)
    for family, losses in kept["losses"].items():
        assert flushed["losses"][family] == pytest.approx(losses, rel=1e-6, abs=1e-6), family


@pytest.mark.parametrize("option", ["--samples", "--family-samples", "--epochs"])
def test_a_picture_count_below_one_is_refused(option, capsys):
    with pytest.raises(SystemExit) as exit_:
        bench.main([option, "0", "--skip-tutorial"])
    assert exit_.value.code == 2
    assert f"argument {option}: expected a whole number >= 1, got '0'" in capsys.readouterr().err

"""The training benchmark (`python -m aecore.bench`) on tiny synthetic IDX files: it reports every figure it
documents (the floor, fit's steady epoch and their ratio, each family's samples/s), each positive and finite, and
its loss is the loss `fit` computes for the same preset and seed; never how fast anything is.
"""
from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from aecore import bench
from aecore.engine import presets
from aecore.engine.data import Data, DataConfig, Split, load
from aecore.engine.models import build
from aecore.engine.train import fit


def test_the_benchmark_reports_the_floor_the_steady_epoch_and_every_family(mnist_dir, capsys):
    assert bench.main(["--data-dir", str(mnist_dir), "--epochs", "2", "--skip-tutorial", "--families",
                       "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    train = load(DataConfig(), str(mnist_dir)).train
    assert out["samples_per_epoch"] == len(train) and out["epochs"] == 2
    for key in ("matmul_s_per_epoch", "fit_s_per_epoch", "fit_steady_s_per_epoch", "fit_over_matmul_floor"):
        assert math.isfinite(out[key]) and out[key] > 0, (key, out)
    assert out["fit_steady_s_per_epoch"] <= out["fit_s_per_epoch"] * 2   # the fastest of two epochs
    assert out["fit_over_matmul_floor"] == pytest.approx(
        out["fit_steady_s_per_epoch"] / out["matmul_s_per_epoch"], rel=1e-2)
    assert set(out["families"]) == {"shallow", "deep", "conv", "vae", "conv-vae", "sparse"}
    for family, figure in out["families"].items():
        model = presets.get(figure["preset"]).model
        assert (model.family, bool(model.sparsity)) == (("shallow", True) if family == "sparse" else (family, False))
        assert figure["samples_per_s"] > 0, (family, figure)
    assert "tutorial_s_per_epoch" not in out

    # the loss it reports is fit's own for the preset and seed 0
    pre = presets.get("pytorch-784-200")
    cfg = replace(pre.train, epochs=2, device="cpu", seed=0, log_every=10_000)
    ends = [m for m in fit(build(pre.model, seed=0), Data(train, None, Split(train.images[:0], train.labels[:0])),
                           cfg) if m.epoch_end]
    assert out["fit_loss"] == pytest.approx(ends[-1].epoch_loss, abs=1e-4)


def test_samples_limits_the_training_pictures(mnist_dir, capsys):
    assert bench.main(["--data-dir", str(mnist_dir), "--epochs", "1", "--samples", "40", "--skip-tutorial",
                       "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["samples_per_epoch"] == 40
    assert 0 < out["fit_steady_s_per_epoch"] <= out["fit_s_per_epoch"]   # the only epoch, its set-up not counted

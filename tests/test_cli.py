"""The training command line, `python -m aecore.train`: JSON lines out, exit statuses, one-line errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aecore.engine import checkpoint, presets
from aecore.train import main
from aecore.engine.data import ENV_VAR
from aecore.engine.models import ModelConfig

REPO = Path(__file__).resolve().parents[1]
EPOCH_KEYS = {"epoch", "train_loss", "val_loss", "seconds", "samples_per_s"}


def run_cli(*args, cwd=REPO, timeout=240) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "aecore.train", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_training_run_prints_json_lines_and_writes_a_checkpoint(mnist_dir, tmp_path):
    out = tmp_path / "ck" / "tiny.safetensors"
    proc = run_cli("--data-dir", mnist_dir, "--hidden", "8", "--epochs", "2", "--batch-size", "16",
                   "--device", "cpu", "--out", out)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]   # every stdout line is JSON
    *epochs, final = lines
    assert [e["epoch"] for e in epochs] == [1, 2]
    for e in epochs:
        assert set(e) == EPOCH_KEYS
        assert e["train_loss"] > 0 and e["val_loss"] > 0 and e["seconds"] >= 0 and e["samples_per_s"] > 0
    assert final["final"] is True
    assert final["train_loss"] == epochs[-1]["train_loss"]
    assert final["test_loss"] > 0 and final["val_loss"] is None
    assert Path(final["checkpoint"]) == out
    model, meta = checkpoint.load(final["checkpoint"])
    assert meta["model"] == ModelConfig(hidden=(8,))
    assert (meta["train"].epochs, meta["train"].batch_size) == (2, 16)
    assert meta["history"] == epochs
    assert len(meta["test_error_quantiles"]) == 1001
    assert "parameters" in proc.stderr          # progress goes to stderr, not stdout


def test_list_presets():
    proc = run_cli("--list-presets")
    assert proc.returncode == 0, proc.stderr
    listed = [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]
    assert listed == list(presets.PRESETS)


def test_bad_option_exits_2_with_one_line():
    proc = run_cli("--dropout", "2")
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "dropout" in lines[0]


def test_missing_data_exits_1(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "never.safetensors"
    proc = run_cli("--data-dir", empty, "--epochs", "1", "--out", out, cwd=tmp_path)
    assert proc.returncode == 1
    assert "not found" in proc.stderr and ENV_VAR in proc.stderr
    assert str(empty) in proc.stderr
    assert proc.stdout == ""
    assert not out.exists()


# ---------------------------------------------------------------------------------------------- in process
@pytest.mark.parametrize("argv,field", [
    (["--dropout", "2"], "dropout"),
    (["--bogus"], "--bogus"),
    (["--family", "conv", "--channels", "16,8,4"], "channels"),
    (["--epochs", "0"], "epochs"),
    (["--batch-size", "0"], "batch_size"),
    (["--hidden", "a,b"], "--hidden"),
    (["--loss", "bce", "--output", "identity"], "loss"),
    (["--val-fraction", "1"], "val_fraction"),
    (["--noise-level", "1.5"], "noise_level"),
    (["--preset", "nope"], "nope"),
])
def test_bad_options_exit_2_with_one_line_naming_the_field(capsys, argv, field):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert field in lines[0]
    assert lines[0].startswith("aecore.train: error:")


def test_cuda_without_gpu_exits_2(capsys, monkeypatch):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as info:
        main(["--device", "cuda"])
    assert info.value.code == 2
    assert "cuda" in capsys.readouterr().err


def test_preset_with_overrides(capsys, mnist_dir, tmp_path):
    out = tmp_path / "keras.safetensors"
    code = main(["--preset", "keras-784-32", "--hidden", "8", "--epochs", "1", "--device", "cpu",
                 "--data-dir", str(mnist_dir), "--out", str(out)])
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    final = lines[-1]
    assert final["name"] == "keras-784-32"
    assert final["val_loss"] is not None                  # the preset holds out 20 % of train
    assert final["figure_metric"] == "val_loss" and final["tutorial_figure"] == 0.093
    assert final["compare"] == presets.get("keras-784-32").figure_text(final["val_loss"])
    _, meta = checkpoint.load(out)
    assert meta["model"].hidden == (8,) and meta["model"].init == "keras"
    assert meta["data"].val_fraction == 0.2 and meta["train"].adam_eps == 1e-7
    assert meta["preset"] == "keras-784-32"


def test_default_checkpoint_path_is_under_runs(capsys, mnist_dir, tmp_path):
    # the working directory is tmp_path, so the default runs/ folder lands there
    assert main(["--hidden", "4", "--epochs", "1", "--data-dir", str(mnist_dir), "--device", "cpu"]) == 0
    final = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert final["checkpoint"] == str(Path("runs", "custom.safetensors"))
    assert (tmp_path / "runs" / "custom.safetensors").is_file()


def test_minutes_stops_a_run_mid_way_and_saves_it(capsys, mnist_dir, tmp_path):
    """--minutes: the run stops once training has taken that long; the model is saved with its passes."""
    out = tmp_path / "budget.safetensors"
    code = main(["--data-dir", str(mnist_dir), "--family", "vae", "--hidden", "16", "--latent", "2",
                 "--epochs", "1000", "--batch-size", "4", "--device", "cpu", "--minutes", "0.001", "--out", str(out)])
    assert code == 0
    final = json.loads(capsys.readouterr().out.splitlines()[-1])
    model, meta = checkpoint.load(out)
    assert 0 < final["passes"] < 1000 and meta["passes"] == final["passes"]
    assert meta["train"].epochs == 1000 and model.config.family == "vae"


def test_vae_options_reach_the_configs(capsys, mnist_dir, tmp_path):
    out = tmp_path / "v.safetensors"
    code = main(["--data-dir", str(mnist_dir), "--family", "vae", "--hidden", "16", "--latent", "3", "--beta", "2",
                 "--kl-warmup", "1", "--optimizer", "rmsprop", "--binarize", "--epochs", "1", "--device", "cpu",
                 "--out", str(out)])
    assert code == 0
    _, meta = checkpoint.load(out)
    m, t = meta["model"], meta["train"]
    assert (m.family, m.latent, m.beta, m.kl_warmup, t.optimizer, t.binarize) == ("vae", 3, 2.0, 1, "rmsprop", True)
    epochs = [json.loads(line) for line in capsys.readouterr().out.splitlines()[:-1]]
    assert {"reconstruction", "KL"} <= set(epochs[0])


def test_the_likelihood_command_scores_a_vae(capsys, mnist_dir, tmp_path):
    from aecore.labs import likelihood
    from aecore.engine.models import build
    model = build(ModelConfig(family="vae", hidden=(16,), latent=2), seed=0)
    path = checkpoint.save(tmp_path / "v.safetensors", model, {"name": "v"})
    assert likelihood.main([str(path), "--k", "20", "--images", "10", "--data-dir", str(mnist_dir)]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["images"] == 10 and row["k"] == 20 and not row["binarized"]
    assert row["elbo"] <= row["log_likelihood"] + 1.0 and row["log_likelihood"] < 0
    plain = checkpoint.save(tmp_path / "p.safetensors", build(ModelConfig(hidden=(8,)), seed=0), {"name": "p"})
    assert likelihood.main([str(plain), "--data-dir", str(mnist_dir)]) == 1
    assert "has no likelihood" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- --images
def picture_folder(root: Path, per_class: int = 12) -> Path:
    """Two classes of 40×30 colour pictures (a red or a blue box at a random place) and one file that is not a
    picture."""
    import random

    from PIL import Image, ImageDraw

    rng = random.Random(0)
    for colour in ("red", "blue"):
        (root / colour).mkdir(parents=True)
        for i in range(per_class):
            im = Image.new("RGB", (40, 30), "white")
            x = rng.randint(0, 15)
            ImageDraw.Draw(im).rectangle([x, 4, x + 20, 24], fill=colour)
            im.save(root / colour / f"{i}.png")
    (root / "red" / "notes.txt").write_text("not a picture")
    return root


def test_images_trains_on_a_folder_of_colour_pictures(capsys, tmp_path):
    folder = picture_folder(tmp_path / "boxes")
    out = tmp_path / "out" / "boxes.safetensors"
    code = main(["--images", str(folder), "--side", "32", "--family", "conv", "--channels", "8,4", "--epochs", "2",
                 "--batch-size", "8", "--out", str(out)])
    assert code == 0
    final = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert final["skipped"] == [{"file": "red/notes.txt", "reason": final["skipped"][0]["reason"]}]
    assert "not a picture" in final["skipped"][0]["reason"]
    model, meta = checkpoint.load(out)
    assert (model.config.side, model.config.color, model.config.in_channels) == (32, "rgb", 3)
    assert meta["picture_set"]["class_names"] == ["blue", "red"] and meta["picture_set"]["side"] == 32
    assert meta["data"].dataset == "images" and Path(meta["data"].images) == Path(final["pictures"])
    assert Path(final["pictures"]).exists() and final["test_loss"] < 0.75


def test_images_refuses_a_climbing_zip_with_status_2_and_one_line(tmp_path):
    import zipfile

    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("../x.png", b"\x89PNG\r\n\x1a\n")
    r = subprocess.run([sys.executable, "-m", "aecore.train", "--images", str(archive), "--out",
                        str(tmp_path / "m.safetensors")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and "../x.png" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.zip"]        # nothing written beside it


def test_side_without_images_exits_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--side", "32"])
    assert e.value.code == 2 and "--images" in capsys.readouterr().err

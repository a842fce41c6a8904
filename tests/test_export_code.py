"""The exported training script: it trains as AE Lab does, to the same losses, for every family and option.

Each case trains one configuration twice on the same tiny IDX files: with `aecore` (`fit`, `results`) and with the
script `aecore.export.script` writes. In-process (the script imported as a module) for speed; in a clean
subprocess (`python -I` from a temp folder, nothing of AE Lab's importable) behind the slow marker.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path

import pytest
import torch

from aecore.engine.data import DataConfig, load
from aecore.engine.models import ModelConfig, build
from aecore.engine.train import RunSpec, TrainConfig, fit, results
from aecore.export import notebook, script
from idx_helpers import write_idx_folder

HAS_CHANGES = "changes" in {f.name for f in fields(TrainConfig)}
T = dict(batch_size=32, epochs=1, device="cpu")
CASES = {
    "shallow": (ModelConfig(family="shallow", hidden=(32,)), DataConfig(), TrainConfig(**T)),
    "sparse": (ModelConfig(family="shallow", hidden=(16,), sparsity=1e-3, init="keras"),
               DataConfig(val_fraction=0.25), TrainConfig(**T, adam_eps=1e-7)),
    "deep": (ModelConfig(family="deep", hidden=(64, 16, 2), activation="tanh", loss="mse", output="identity",
                         dropout=0.2, dropout_where="hidden+output", init="chainer"),
             DataConfig(), TrainConfig(**{**T, "epochs": 2}, lr_milestones=(1,), lr_gamma=0.1, noise="mask",
                                       noise_level=0.2)),
    "conv": (ModelConfig(family="conv", channels=(4, 2), loss="mse", batch_norm=True),
             DataConfig(classes=(0, 1, 2, 3, 4, 5)), TrainConfig(**T, noise="gaussian", noise_level=0.1, deform=0.5)),
    "vae": (ModelConfig(family="vae", hidden=(32,), latent=2, activation="tanh", beta=0.5, kl_warmup=1),
            DataConfig(), TrainConfig(**T, binarize=True, optimizer="rmsprop")),
    "conv-vae": (ModelConfig(family="conv-vae", channels=(4, 8), hidden=(8,), latent=2, loss="mse", init="keras"),
                 DataConfig(), TrainConfig(**T)),
}
if HAS_CHANGES:
    CASES["steered"] = (ModelConfig(family="shallow", hidden=(16,), dropout=0.1),
                        DataConfig(), TrainConfig(**T, changes=((1, "lr", 5e-4), (2, "noise", "mask"),
                                                                (2, "noise_level", 0.3), (3, "dropout", 0.3),
                                                                (3, "sparsity", 1e-3))))
    CASES["steered-vae"] = (ModelConfig(family="vae", hidden=(16,), latent=2),
                            DataConfig(), TrainConfig(**T, changes=((2, "beta", 0.25),)))


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory) -> Path:
    return write_idx_folder(tmp_path_factory.mktemp("idx"), n_train=120, n_test=40)


def ae_lab(name: str, folder: Path) -> dict:
    """AE Lab's own figures for the case: fit, then results, as a run does."""
    model_cfg, data_cfg, train_cfg = CASES[name]
    data = load(data_cfg, folder)
    model = build(model_cfg, seed=train_cfg.seed)
    history = list(fit(model, data, train_cfg))
    return results(model.cpu(), data, history, binarize=train_cfg.binarize)["figures"]


def spec(name: str) -> RunSpec:
    return RunSpec(name, *CASES[name])


def close(ours: dict, theirs: dict, rel: float) -> None:
    for key in ("train_loss", "test_loss"):
        assert theirs[key] == pytest.approx(ours[key], rel=rel), key


@pytest.mark.parametrize("name", list(CASES))
def test_script_reproduces_ae_lab_in_process(name, idx_dir, tmp_path, capsys):
    path = tmp_path / f"run_{name.replace('-', '_')}.py"
    path.write_text(script(spec(name)))
    module_spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    # The same first weights for the seed, tensor for tensor and under the same names.
    torch.manual_seed(CASES[name][2].seed)
    theirs = module.Autoencoder().state_dict()
    ours = build(CASES[name][0], seed=CASES[name][2].seed).state_dict()
    assert list(theirs) == list(ours)
    assert all(torch.equal(theirs[k], ours[k]) for k in ours)
    capsys.readouterr()
    module.main(["--data-dir", str(idx_dir), "--device", "cpu"])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    close(ae_lab(name, idx_dir), last, rel=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["shallow", "deep", "conv", "vae", "conv-vae"] + (["steered"] if HAS_CHANGES else []))
def test_script_runs_alone_and_reproduces_ae_lab(name, idx_dir, tmp_path):
    """In a clean interpreter, from a temp folder, with nothing of AE Lab's importable."""
    (tmp_path / "run.py").write_text(script(spec(name)))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    done = subprocess.run([sys.executable, "-I", "run.py", "--data-dir", str(idx_dir), "--device", "cpu"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.strip().splitlines()]
    assert [line["epoch"] for line in lines[:-1]] == list(range(1, CASES[name][2].epochs + 1))
    close(ae_lab(name, idx_dir), lines[-1], rel=0.02)


@pytest.mark.parametrize("name", list(CASES))
def test_script_imports_torch_numpy_and_the_standard_library_only(name):
    tree = ast.parse(script(spec(name)))
    roots = {a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    roots |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert roots - set(sys.stdlib_module_names) == {"torch", "numpy"}


def test_script_writes_only_the_sections_a_run_needs():
    plain = script(spec("shallow"))
    assert "def corrupt" not in plain and "CHANGES" not in plain and "init_weights" not in plain
    assert "nn.Linear(784, 32)" in plain and "F.binary_cross_entropy_with_logits(raw, x)" in plain
    deep = script(spec("deep"))
    assert "LR_MILESTONES = (1,)" in deep and "NOISE = 'mask'" in deep and "N(0, 1 / fan_in)" in deep
    assert "def deform" in script(spec("conv")) and "CLASSES = (0, 1, 2, 3, 4, 5)" in script(spec("conv"))
    if HAS_CHANGES:
        assert "(3, 'sparsity', 0.001)," in script(spec("steered"))


def test_notebook_is_nbformat_v4_with_the_scripts_sections(tmp_path):
    nb = json.loads(notebook(spec("vae")))
    assert nb["nbformat"] == 4 and nb["nbformat_minor"] >= 4
    kinds = [c["cell_type"] for c in nb["cells"]]
    assert kinds[0] == "markdown" and kinds.count("code") >= 7
    assert all(isinstance(c["source"], list) and "id" in c for c in nb["cells"])
    code = "".join("".join(c["source"]) + "\n" for c in nb["cells"] if c["cell_type"] == "code")
    ast.parse(code)
    titles = [c["source"][0] for c in nb["cells"] if c["cell_type"] == "markdown"][1:]
    assert titles[:3] == ["## 1. Settings\n", "## 2. The data: MNIST's IDX files\n", "## 3. The model and its loss\n"]


def test_notebook_validates_with_nbformat_where_installed():
    nbformat = pytest.importorskip("nbformat")
    nbformat.validate(nbformat.reads(notebook(spec("conv")), as_version=4))


def test_a_deformed_run_can_be_written_with_its_whole_corruption():
    text = script(RunSpec("d", ModelConfig(), DataConfig(), replace(TrainConfig(), deform=1.0)))
    assert "x = deform(x, DEFORM, gen)" in text and "DEFORM = 1.0" in text


def test_a_picture_set_run_reads_the_prepared_set(tmp_path, capsys):
    """A run on one's own pictures: the script reads the .npz AE Lab prepared (--pictures) and trains the same."""
    import numpy as np
    from aecore.engine.data import Data, Split, save_picture_set
    rng = np.random.default_rng(0)
    def split(n):
        return Split(torch.from_numpy(rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)),
                     torch.from_numpy(np.arange(n) % 2))
    path = save_picture_set(tmp_path / "set.pictures.npz", Data(split(48), None, split(16)), {"classes": ["a", "b"]})
    model_cfg = ModelConfig(family="conv", channels=(4,), side=32, color="rgb", loss="mse")
    data_cfg = DataConfig(dataset="images", images=str(path), classes=(1,))
    train_cfg = TrainConfig(batch_size=8, epochs=1, device="cpu")
    text = script(RunSpec("mine", model_cfg, data_cfg, train_cfg))
    assert "--pictures" in text and "cannot redo the preparation" in text
    (tmp_path / "mine.py").write_text(text)
    module_spec = importlib.util.spec_from_file_location("mine", tmp_path / "mine.py")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    capsys.readouterr()
    module.main(["--device", "cpu"])                      # the recorded path is the default
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    data = load(data_cfg)
    model = build(model_cfg, seed=0)
    ours = results(model.cpu(), data, list(fit(model, data, train_cfg)))["figures"]
    close(ours, last, rel=1e-5)

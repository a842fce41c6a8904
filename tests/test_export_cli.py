"""`python -m aecore.export`: each kind from a checkpoint, and the refusals, one line on stderr and exit 2."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from aecore.engine import checkpoint
from aecore.engine.data import DataConfig
from aecore.engine.models import ModelConfig, build
from aecore.engine.train import RunSpec, TrainConfig
from aecore.export import notebook, script
from aecore.export.__main__ import main

SPEC = RunSpec("tiny-vae", ModelConfig(family="vae", hidden=(16,), latent=2), DataConfig(val_fraction=0.1),
               TrainConfig(epochs=3, batch_size=50, lr_milestones=(2,)), preset=None)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    return checkpoint.save(path, build(SPEC.model, seed=0), SPEC.meta("cpu"))


def refusal(argv, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("aecore.export: error: "), err
    return err


def test_code_and_notebook_from_a_checkpoint_are_its_runs(ckpt, tmp_path):
    assert main(["code", str(ckpt), "-o", str(tmp_path / "run.py")]) == 0
    assert (tmp_path / "run.py").read_text() == script(SPEC)
    assert main(["notebook", str(ckpt), "-o", str(tmp_path / "run.ipynb")]) == 0
    assert json.loads((tmp_path / "run.ipynb").read_text()) == json.loads(notebook(SPEC))


def test_a_file_that_is_not_a_checkpoint_is_refused_in_one_line(tmp_path, capsys):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    assert "notes.txt" in refusal(["code", str(bad), "-o", str(tmp_path / "x.py")], capsys)
    assert "cannot read" in refusal(["onnx", str(tmp_path / "gone.safetensors"), "-o", str(tmp_path / "x")], capsys)
    torch.save({"w": torch.zeros(2)}, tmp_path / "pickle.pt")
    assert "pickle" in refusal(["html", str(tmp_path / "pickle.pt"), "-o", str(tmp_path / "x")], capsys)
    save_file({"w": torch.zeros(2)}, tmp_path / "other.safetensors")
    assert "not an AE Lab checkpoint" in refusal(["code", str(tmp_path / "other.safetensors"), "-o",
                                                  str(tmp_path / "x")], capsys)


def test_an_unknown_family_is_refused_naming_it(tmp_path, capsys):
    meta = {**SPEC.meta("cpu"), "data": SPEC.data.to_dict() if hasattr(SPEC.data, "to_dict") else {},
            "train": SPEC.train.to_dict(), "model": {**SPEC.model.to_dict(), "family": "transformer"}}
    path = tmp_path / "odd.safetensors"
    save_file({"w": torch.zeros(2)}, path, metadata={"format": checkpoint.FORMAT, "aecore": json.dumps(meta)})
    err = refusal(["code", str(path), "-o", str(tmp_path / "x.py")], capsys)
    assert "transformer" in err and "family" in err


def test_usage_errors_are_one_line(ckpt, tmp_path, capsys):
    refusal(["code", "-o", str(tmp_path / "x.py")], capsys)                       # no checkpoint
    refusal(["pdf", str(ckpt), "-o", str(tmp_path / "x")], capsys)                # no such kind
    refusal(["code", str(ckpt), "-o", str(tmp_path / "x"), "--part", "encoder"], capsys)
    refusal(["presets", str(ckpt), "-o", str(tmp_path)], capsys)

"""aecore.engine.checkpoint: safetensors round trip, and every kind of rejected file with its own message."""
from __future__ import annotations

import io
import json
import pathlib
import pickle
import random

import pytest
import torch
from safetensors.torch import save as st_save

from aecore.engine import checkpoint
from aecore.engine.checkpoint import CheckpointError
from aecore.engine.data import DataConfig
from aecore.engine.models import ModelConfig, build
from aecore.engine.train import TrainConfig

SMALL = ModelConfig(hidden=(32,))
META = {
    "name": "custom",
    "train": TrainConfig(epochs=3, batch_size=16, lr_milestones=(2,)),
    "data": DataConfig(val_fraction=0.25, classes=(0, 1)),
    "history": [{"epoch": 1, "train_loss": 0.25, "val_loss": 0.2, "seconds": 1.5, "samples_per_s": 40.0}],
    "test_error_quantiles": [i / 1000 for i in range(1001)],
    "figures": {"train_loss": 0.25, "val_loss": 0.2, "test_loss": None},
}


@pytest.fixture
def model():
    return build(SMALL, seed=0)


@pytest.fixture
def blob(model) -> bytes:
    return checkpoint.to_bytes(model, META)


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


def _rebuild(blob: bytes, edit) -> bytes:
    """Re-save a checkpoint's tensors with its aecore metadata passed through `edit(meta) -> meta`."""
    from safetensors.torch import load as st_load
    header_len = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + header_len])
    meta = json.loads(header["__metadata__"]["aecore"])
    return st_save(st_load(blob), metadata={"format": checkpoint.FORMAT, "aecore": json.dumps(edit(meta))})


# ---------------------------------------------------------------------------------------------- round trip
def test_save_and_load_round_trip(tmp_path, model):
    path = checkpoint.save(tmp_path / "runs" / "m.safetensors", model, META)
    assert path.is_file() and not path.with_suffix(".safetensors.tmp").exists()
    loaded, meta = checkpoint.load(path)
    assert _same_weights(model, loaded)
    assert not loaded.training
    assert isinstance(meta["model"], ModelConfig) and meta["model"] == SMALL
    assert isinstance(meta["train"], TrainConfig) and meta["train"] == META["train"]
    assert isinstance(meta["data"], DataConfig) and meta["data"] == META["data"]
    assert meta["history"] == META["history"]
    assert meta["test_error_quantiles"] == META["test_error_quantiles"]
    assert meta["figures"] == META["figures"]
    assert meta["name"] == "custom"
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model.eval()(x).x_hat, loaded(x).x_hat)


def test_load_from_bytes(blob, model):
    for source in (blob, bytearray(blob), memoryview(blob)):
        loaded, meta = checkpoint.load(source)
        assert _same_weights(model, loaded)
        assert meta["model"] == SMALL


@pytest.mark.parametrize("cfg", [ModelConfig(family="conv", channels=(8, 4), loss="mse"),
                                 ModelConfig(family="deep", hidden=(64, 2), activation="tanh", linear_code=True)])
def test_round_trip_other_families(cfg):
    model = build(cfg, seed=1)
    loaded, meta = checkpoint.load(checkpoint.to_bytes(model, {"train": {"epochs": 2}}))
    assert meta["model"] == cfg
    assert meta["train"] == TrainConfig(epochs=2)
    assert _same_weights(model, loaded)


def test_meta_without_train_or_data_is_fine(model):
    _, meta = checkpoint.load(checkpoint.to_bytes(model, {}))
    assert set(meta) == {"model"}


@pytest.mark.parametrize("first_bytes", [b"\x80", b"PK"])
def test_header_length_that_starts_like_a_pickle_still_loads(model, first_bytes):
    """The 8-byte header length is little-endian: a 0x..80 or 0x..4b50 length begins with a pickle's byte."""
    low = int.from_bytes(first_bytes, "little")
    modulus = 256 ** len(first_bytes)
    n0 = int.from_bytes(checkpoint.to_bytes(model, {"name": ""})[:8], "little")
    target = n0 + (low - n0) % modulus                    # first header length with those low bytes
    for pad in range(max(0, target - n0 - 8), target - n0 + 9):   # headers are padded to 8 bytes
        blob = checkpoint.to_bytes(model, {"name": "x" * pad})
        if blob.startswith(first_bytes):
            break
    else:
        pytest.fail("no padding gives the wanted header length")
    loaded, meta = checkpoint.load(blob)
    assert meta["name"] == "x" * pad
    assert _same_weights(model, loaded)


# ---------------------------------------------------------------------------------------------- pickles
class _Touch:
    """Unpickling this creates `target`: a stand-in for any code a pickle could run."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.target),)


def test_the_pickle_payload_really_runs_code(tmp_path):
    target = tmp_path / "proof"
    pickle.loads(pickle.dumps(_Touch(target)))
    assert target.exists()


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_pickle_file_is_rejected_without_unpickling(tmp_path, protocol):
    target = tmp_path / "pwned"
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps({"weights": _Touch(target)}, protocol=protocol))
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(path)
    assert "pickle" in str(info.value)
    assert str(path) in str(info.value)
    assert not target.exists()


@pytest.mark.parametrize("zipfile", [True, False])
def test_torch_save_file_is_rejected_without_unpickling(tmp_path, model, zipfile):
    target = tmp_path / "pwned"
    buf = io.BytesIO()
    torch.save({"state": model.state_dict(), "extra": _Touch(target)}, buf,
               _use_new_zipfile_serialization=zipfile)
    with pytest.raises(CheckpointError, match="pickle") as info:
        checkpoint.load(buf.getvalue())
    assert "torch.save" in str(info.value)
    assert not target.exists()


# ---------------------------------------------------------------------------------------------- damaged files
@pytest.mark.parametrize("cut", [lambda b: b[:20], lambda b: b[: len(b) // 2], lambda b: b[:-1]],
                         ids=["inside-header", "half", "last-byte"])
def test_truncated_checkpoint(blob, cut):
    with pytest.raises(CheckpointError, match="truncated"):
        checkpoint.load(cut(blob))


def test_truncated_file_on_disk_names_the_file(tmp_path, blob):
    path = tmp_path / "cut.safetensors"
    path.write_bytes(blob[: len(blob) // 3])
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(path)
    assert str(path) in str(info.value) and "truncated" in str(info.value)


def test_wrong_tensor_shapes_name_the_tensor(blob):
    def claim_64_hidden(meta):
        meta["model"]["hidden"] = [64]
        return meta
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(_rebuild(blob, claim_64_hidden))
    message = str(info.value)
    assert "encoder.0.weight" in message
    assert "[32, 784]" in message and "[64, 784]" in message


def test_missing_tensors_are_named(blob):
    def deep(meta):
        meta["model"].update(family="deep", hidden=[32, 8])
        return meta
    with pytest.raises(CheckpointError, match="encoder.2.weight"):
        checkpoint.load(_rebuild(blob, deep))


@pytest.mark.parametrize("section,config", [("model", "ModelConfig"), ("train", "TrainConfig"),
                                            ("data", "DataConfig")])
def test_unknown_config_field_is_named(blob, section, config):
    def add_field(meta):
        meta[section]["warp_factor"] = 9
        return meta
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(_rebuild(blob, add_field))
    assert "warp_factor" in str(info.value) and config in str(info.value)


def test_invalid_config_value_is_named(blob):
    def bad_dropout(meta):
        meta["model"]["dropout"] = 3
        return meta
    with pytest.raises(CheckpointError, match="ModelConfig.dropout"):
        checkpoint.load(_rebuild(blob, bad_dropout))


def test_non_finite_weights_are_rejected(model):
    with torch.no_grad():
        model.decoder[0].bias[3] = float("nan")
    with pytest.raises(CheckpointError, match="decoder.0.bias.*NaN"):
        checkpoint.load(checkpoint.to_bytes(model, {}))


def test_safetensors_without_our_metadata(model):
    plain = st_save({k: v.contiguous() for k, v in model.state_dict().items()})
    with pytest.raises(CheckpointError, match="not an AE Lab checkpoint"):
        checkpoint.load(plain)


def test_random_bytes_are_rejected_clearly():
    rng = random.Random(1)
    noise = bytes(rng.randrange(256) for _ in range(4096))
    assert noise[:1] != b"\x80" and noise[:2] != b"PK"
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        checkpoint.load(noise)


@pytest.mark.parametrize("data,words", [(b"", "too short"), (b"abc", "too short"),
                                        (b"\x10\x00\x00\x00\x00\x00\x00\x00[1, 2, 3, 4, 5, 6, 7]",
                                         "not a safetensors file"),
                                        (b"\x05\x00\x00\x00\x00\x00\x00\x00{abc}", "corrupt safetensors header")])
def test_tiny_or_odd_files(data, words):
    with pytest.raises(CheckpointError, match=words):
        checkpoint.load(data)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="cannot read"):
        checkpoint.load(tmp_path / "nope.safetensors")


def test_metadata_reads_the_header_alone_and_refuses_what_load_refuses(tmp_path, model):
    path = checkpoint.save(tmp_path / "m.safetensors", model, {"name": "x", "train": TrainConfig(epochs=3)})
    meta = checkpoint.metadata(path)
    assert meta["name"] == "x" and meta["train"]["epochs"] == 3
    assert ModelConfig.from_dict(meta["model"]) == model.config   # plain JSON: the configs are not rebuilt
    with pytest.raises(CheckpointError, match="no classifier metadata"):
        checkpoint.metadata(path, "classifier")
    with pytest.raises(CheckpointError):
        checkpoint.metadata(pickle.dumps({"a": 1}))

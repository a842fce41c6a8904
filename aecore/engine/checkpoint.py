"""Checkpoints as safetensors: weights plus JSON metadata (configs, history, test-error quantiles), and
`ModelEntry`, a model with what its checkpoint records, as the app lists, activates and compares models.

Loading never unpickles. We parse the safetensors header ourselves first so that a pickle or torch.save
file, a truncated file, wrong tensor shapes or an unknown config field each get a message that says which.
A run trained here also stores its replay (`aecore.engine.replay`, `meta["replay"]`): tensors named `replay.*`
beside the weights and their index in the JSON; a checkpoint without one loads as before.
"""
from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from aecore.engine.data import DataConfig
from aecore.engine.models import Autoencoder, build, ModelConfig, from_dict
from aecore.engine.replay import Replay, parts
from aecore.engine.steering import settle
from aecore.engine.train import TrainConfig

FORMAT = "aecore-checkpoint/1"
MAX_HEADER = 10 * 1024 * 1024   # our headers are a few kB; anything huge is not one of ours


class CheckpointError(Exception):
    """The file is not a usable AE Lab checkpoint; the message says why."""


@dataclass(frozen=True, eq=False)   # eq=False: hashed by identity (meta is a dict)
class ModelEntry:
    """One model and what its checkpoint records: the sidebar's active model, a row of the Compare page."""
    key: str        # "shipped:<name>", "session:<name>" (as the sidebar's selector) or "run:<id>"
    name: str       # unique among the entries of one listing
    source: str     # where it came from, in words
    model: Autoencoder   # in eval mode; never trained further
    meta: dict      # as `load` returns it (or a run's): configs, figures, per-epoch history

    @property
    def config(self) -> ModelConfig:
        return self.model.config

    @property
    def shipped(self) -> bool:
        return self.key.startswith("shipped:")

    @property
    def dataset(self) -> str:
        """The data set it learned (a checkpoint without data settings learned MNIST)."""
        data = self.meta.get("data")
        recorded = data.get("dataset") if isinstance(data, Mapping) else getattr(data, "dataset", None)
        return recorded or "mnist"

    @property
    def history(self) -> list[dict]:
        return list(self.meta.get("history") or [])

    @property
    def figures(self) -> dict:
        return dict(self.meta.get("figures") or {})

    @property
    def uses_noise(self) -> bool:
        """True when it trained on corrupted inputs: noise, or deformation."""
        tr = self.meta.get("train")
        return bool(tr and ((tr.noise != "none" and tr.noise_level > 0) or tr.deform > 0))


def to_bytes(model: Autoencoder, meta: dict) -> bytes:
    """Serialise `model` and `meta` (JSON-able; may hold 'train'/'data' configs as dataclasses or dicts)."""
    meta = dict(meta)
    for key in ("train", "data"):
        if is_dataclass(meta.get(key)):
            meta[key] = asdict(meta[key])
    meta["model"] = model.config.to_dict()
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    replay = meta.pop("replay", None)      # none stored for a run stopped before its first epoch's end
    if isinstance(replay, Replay) and replay.frames:      # its frames as tensors, their index in the JSON
        meta["replay"], frames = replay.to_tensors()
        tensors.update(frames)
    return st_save(tensors, metadata={"format": FORMAT, "aecore": json.dumps(meta)})


def save(path, model: Autoencoder, meta: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(to_bytes(model, meta))
    tmp.replace(path)   # a crash mid-write never leaves a half checkpoint under the real name
    return path


def load(source) -> tuple[Autoencoder, dict]:
    """Read a checkpoint from a path or bytes; returns (model on CPU in eval mode, meta).

    meta["model"], meta["train"], meta["data"] come back as ModelConfig, TrainConfig, DataConfig, and
    meta["replay"], when the checkpoint has one, as a Replay.
    """
    name, blob, header = read(source, "checkpoint", CheckpointError)
    meta = _metadata(header, "aecore", name)
    try:
        meta["model"] = ModelConfig.from_dict(meta.get("model"))
        if "train" in meta:
            meta["train"] = TrainConfig.from_dict(meta["train"])
        if "data" in meta:
            meta["data"] = from_dict(DataConfig, meta["data"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{name}: invalid configuration: {e}") from None
    model = build(meta["model"])
    frames, weights = parts(tensors(blob, name, CheckpointError))
    fill_tensors(model, weights, name, f"the config {meta['model'].family} {_sizes(meta['model'])}", CheckpointError)
    settle(model, meta["train"].changes if "train" in meta else ())   # β, sparsity as the run left them
    if "replay" in meta or frames:
        try:
            meta["replay"] = Replay.from_tensors(meta.get("replay"), frames)
            meta["replay"].check(meta["model"])
        except ValueError as e:
            raise CheckpointError(f"{name}: a damaged replay (the per-epoch snapshots): {e}") from None
    return model.eval(), meta


def metadata(source, key: str = "aecore") -> dict:
    """The JSON object a safetensors file keeps under `key` in its header ("aecore" for autoencoders, "classifier"
    for the digit judge), without building a model. Raises CheckpointError as `load` does."""
    name, _, header = read(source, "checkpoint", CheckpointError)
    return _metadata(header, key, name)


def _metadata(header: dict, key: str, name: str) -> dict:
    try:
        meta = json.loads((header.get("__metadata__") or {}).get(key) or "")
    except json.JSONDecodeError:
        raise CheckpointError(f"{name}: a safetensors file, but not an AE Lab checkpoint (no {key} metadata)") \
            from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{name}: metadata is not a JSON object")
    return meta


def fill(model: torch.nn.Module, blob: bytes, name: str, what: str, error: type[Exception]) -> None:
    """Load the tensors of the safetensors `blob` into `model` after checking that they are exactly its tensors
    (names, shapes, dtypes) and finite; otherwise raise `error` naming the file (`name`), the tensor and `what`
    the model was built from."""
    fill_tensors(model, tensors(blob, name, error), name, what, error)


def tensors(blob: bytes, name: str, error: type[Exception]) -> dict:
    """The tensors of the safetensors `blob` (name -> tensor); `error` for a corrupt body."""
    try:
        return st_load(blob)
    except Exception as e:  # safetensors raises its own SafetensorError for malformed bodies
        raise error(f"{name}: corrupt tensor data ({e})") from None


def fill_tensors(model: torch.nn.Module, tensors: dict, name: str, what: str, error: type[Exception]) -> None:
    """As `fill`, for tensors already read (name -> tensor)."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise error(f"{name}: tensors do not match the model config (missing {missing[:4]}, unexpected {extra[:4]})")
    for key, want in expected.items():
        got = tensors[key]
        if got.shape != want.shape or got.dtype != want.dtype:
            raise error(f"{name}: tensor {key} is {list(got.shape)} {got.dtype}, {what} needs {list(want.shape)} "
                        f"{want.dtype}")
        if not torch.isfinite(got).all():
            raise error(f"{name}: tensor {key} holds NaN or infinite values")
    model.load_state_dict(tensors)


def read(source, default_name: str, error: type[Exception]) -> tuple[str, bytes, dict]:
    """A safetensors file from a path or bytes: (its name for messages, its bytes, its JSON header), read by hand
    so that each kind of wrong file gets its own `error`: unreadable, a pickle, truncated, a corrupt header."""
    name = default_name
    if isinstance(source, (bytes, bytearray, memoryview)):
        blob = bytes(source)
    else:
        name = str(source)
        try:
            blob = Path(source).read_bytes()
        except OSError as e:
            raise error(f"{name}: cannot read ({e.strerror or e})") from None
    return name, blob, _header(blob, name, error)


def _header(blob: bytes, name: str, error: type[Exception] = CheckpointError) -> dict:
    # A safetensors header length (little-endian u64) may itself start with 0x80 or "PK"; only a file that
    # does not look like safetensors (JSON at byte 8) is taken for a pickle / torch.save zip.
    looks_safetensors = len(blob) >= 9 and struct.unpack("<Q", blob[:8])[0] <= MAX_HEADER and blob[8:9] == b"{"
    if not looks_safetensors and (blob[:2] == b"PK" or blob[:1] == b"\x80"):
        raise error(f"{name}: this is a pickle / torch.save file. AE Lab only loads safetensors "
                              f"checkpoints, because unpickling a file can run arbitrary code")
    if len(blob) < 8:
        raise error(f"{name}: {len(blob)} bytes, too short: not a safetensors file")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > MAX_HEADER or blob[8:9] != b"{":
        raise error(f"{name}: not a safetensors file (no JSON header at the start)")
    if 8 + n > len(blob):
        raise error(f"{name}: truncated: the header needs {n:,} bytes, the file has {len(blob) - 8:,}")
    try:
        header = json.loads(blob[8:8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise error(f"{name}: corrupt safetensors header") from None
    if not isinstance(header, dict):
        raise error(f"{name}: corrupt safetensors header")
    body = len(blob) - 8 - n
    ends = [v["data_offsets"][1] for k, v in header.items()
            if k != "__metadata__" and isinstance(v, dict) and len(v.get("data_offsets", ())) == 2]
    if ends and max(ends) > body:
        raise error(f"{name}: truncated: tensors need {max(ends):,} bytes of data, "
                              f"the file holds {body:,}")
    return header


def _sizes(cfg: ModelConfig) -> str:
    return str(list(cfg.channels if cfg.convolutional else cfg.hidden))

"""A training caught at the end of an epoch, as one safetensors file: enough to go on exactly where it stopped.

`fit` hands a `TrainState` (aecore.engine.train) to its `at_epoch_end` callback after every epoch, and takes one back as `resume=`: the
epoch and step counts, the optimiser's state (moments, step counts, the learning rate after its milestones) and the
random generators' states (the loop's generator: shuffling, noise, binarisation; torch's global one: dropout), so
that the next step of a resumed run computes the same loss as the uninterrupted run would have. `to_bytes` puts
it in one file with the model's weights, the metrics records so far, the per-epoch reconstructions and the replay
(`aecore.engine.replay`, so that a resumed run still replays its earlier epochs); `load` reads such a file back and
never unpickles: its structure is JSON in the safetensors header, its numbers tensors.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from aecore.engine import checkpoint
from aecore.engine.checkpoint import CheckpointError
from aecore.engine.models import Autoencoder, ModelConfig, build
from aecore.engine.replay import Replay, parts
from aecore.engine.train import Metrics, TrainState

FORMAT = "aecore-trainstate/1"


@dataclass(frozen=True)
class Saved:
    """What a training-state file holds: the model (weights at the epoch's end), where `fit` stood, the metrics
    records so far (as dicts, see aecore.engine.train.Metrics), the fixed digits and their reconstructions after
    each epoch, and the replay so far (None in a file written without one)."""
    model: Autoencoder
    state: TrainState
    records: list[dict]
    originals: np.ndarray
    frames: list[tuple[int, np.ndarray]] = field(default_factory=list)
    replay: Replay | None = None


def to_bytes(model: Autoencoder, state: TrainState, records: list[dict], originals: np.ndarray,
             frames: list[tuple[int, np.ndarray]], replay: Replay | None = None) -> bytes:
    """The whole training state: weights, optimiser, generators, the timeline (records, frames) and the replay."""
    tensors = {f"model.{k}": v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    opt_state = {}
    for index, values in state.optimizer["state"].items():
        kinds = {}
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"opt.{index}.{name}"] = value.detach().to("cpu").contiguous()
                kinds[name] = "tensor"
            else:
                kinds[name] = value
        opt_state[str(index)] = kinds
    tensors["rng.generator"] = state.generator.contiguous()
    tensors["rng.global"] = state.rng.contiguous()
    if state.cuda_rng is not None:
        tensors["rng.cuda"] = state.cuda_rng.contiguous()
    about = {"model": model.config.to_dict(), "epoch": state.epoch, "step": state.step, "samples": state.samples,
             "busy": state.busy, "optimizer": {"state": opt_state, "param_groups": state.optimizer["param_groups"]}}
    if replay is not None and replay.frames:
        about["replay"], snapshots = replay.to_tensors()
        tensors.update(snapshots)
    return _save(tensors, about, records, originals, frames)


def timeline_bytes(records: list[dict], originals: np.ndarray, frames: list[tuple[int, np.ndarray]]) -> bytes:
    """The timeline alone (what an ended run's page draws): its records, fixed digits and reconstructions."""
    return _save({}, {}, records, originals, frames)


def _save(tensors: dict, about: dict, records, originals, frames) -> bytes:
    tensors["originals"] = torch.from_numpy(np.ascontiguousarray(originals, dtype=np.float32))
    for epoch, frame in frames:
        tensors[f"frame.{epoch}"] = torch.from_numpy(np.ascontiguousarray(frame, dtype=np.float32))
    about = {**about, "records": records, "frames": [e for e, _ in frames]}
    return st_save(tensors, metadata={"format": FORMAT, "trainstate": json.dumps(about)})


def load(source, name: str = "training state") -> Saved:
    """Read a training-state file (path or bytes); CheckpointError says what is wrong with a bad one."""
    about, tensors, name = _read(source, name)
    try:
        model = build(ModelConfig.from_dict(about["model"]))
        weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        checkpoint.fill_tensors(model, weights, name, "its model config", CheckpointError)
        opt = about["optimizer"]
        state = {int(i): {k: tensors[f"opt.{i}.{k}"] if v == "tensor" else v for k, v in values.items()}
                 for i, values in opt["state"].items()}
        ts = TrainState(epoch=int(about["epoch"]), step=int(about["step"]), samples=int(about["samples"]),
                        busy=float(about["busy"]), optimizer={"state": state, "param_groups": opt["param_groups"]},
                        generator=tensors["rng.generator"], rng=tensors["rng.global"], cuda_rng=tensors.get("rng.cuda"))
        snapshots = parts(tensors)[0]
        replay = Replay.from_tensors(about.get("replay"), snapshots) if "replay" in about or snapshots else None
        return Saved(model, ts, *_timeline(about, tensors), replay)
    except CheckpointError:
        raise
    except Exception as e:     # a missing key or tensor, a wrong type: a damaged or foreign file
        raise CheckpointError(f"{name}: a damaged training state ({type(e).__name__}: {e})") from None


def load_timeline(source, name: str = "timeline") -> tuple[list[dict], np.ndarray, list[tuple[int, np.ndarray]]]:
    """The records, fixed digits and reconstructions of a training-state or timeline file."""
    about, tensors, name = _read(source, name)
    try:
        return _timeline(about, tensors)
    except Exception as e:
        raise CheckpointError(f"{name}: a damaged timeline ({type(e).__name__}: {e})") from None


def _read(source, name: str) -> tuple[dict, dict, str]:
    name, blob, header = checkpoint.read(source, name, CheckpointError)
    if (header.get("__metadata__") or {}).get("format") != FORMAT:
        raise CheckpointError(f"{name}: not an AE Lab training state ({FORMAT})")
    try:
        return json.loads(header["__metadata__"]["trainstate"]), st_load(blob), name
    except Exception as e:
        raise CheckpointError(f"{name}: a damaged training state ({type(e).__name__}: {e})") from None


def _timeline(about: dict, tensors: dict) -> tuple[list[dict], np.ndarray, list[tuple[int, np.ndarray]]]:
    frames = [(int(e), tensors[f"frame.{e}"].numpy()) for e in about["frames"]]
    return list(about["records"]), tensors["originals"].numpy(), frames


def records_of(records) -> list[dict]:
    """Metrics records as JSON-able dicts (their tuples as lists)."""
    return [asdict(m) for m in records]


def metrics_of(records: list[dict]) -> list[Metrics]:
    """The records of `records_of` as Metrics again."""
    return [Metrics(**{**r, "terms": tuple(map(tuple, r.get("terms", ()))),
                       "epoch_terms": tuple(map(tuple, r.get("epoch_terms", ()))),
                       "changes": tuple(map(tuple, r.get("changes", ())))}) for r in records]

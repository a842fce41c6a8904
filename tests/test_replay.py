"""Replay (aecore.engine.replay): per-epoch snapshots of a run, what they hold, their size bound, how a checkpoint
and a training state keep them (and refuse a forged one), a real run's, and the Epoch sliders of Inspect and
Latent."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from aecore.engine import checkpoint, trainstate, viz
from aecore.engine.checkpoint import CheckpointError
from aecore.engine.data import DataConfig
from aecore.engine.models import ModelConfig, build
from aecore.engine.replay import (CODE_PICTURES, MAX_BYTES, Frame, Replay, align, capture, pictures, tiles)
from aecore.engine.train import Control, RunSpec, TrainConfig
from aecore.labs import latent
from aecore.runs.job import _fixed_digits, train_run

from app_helpers import ROOT, goto, open_app, texts
from idx_helpers import tiny_data

MLP = ModelConfig(family="shallow", hidden=(12,))
CONV = ModelConfig(family="conv", channels=(4, 8))
VAE = ModelConfig(family="vae", hidden=(16,), latent=2)
MODELS = ROOT / "models"


@pytest.fixture(scope="module")
def data():
    return tiny_data(n_train=120, n_test=40, seed=2)


def random_pictures(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def replay_of(cfg: ModelConfig, epochs, n_codes: int = 30) -> tuple[Replay, object]:
    """A replay of a model whose weights change between epochs (a new seed each), and the last model."""
    pics = random_pictures(n_codes)
    replay = Replay.start(pics[:8], torch.arange(n_codes) % 10)
    for e in epochs:
        model = build(cfg, seed=e)
        replay = replay.added(capture(model, pics[:8], pics, e))
    return replay, model


# ------------------------------------------------------------------------------------------- capture
@pytest.mark.parametrize("cfg, filters, code_width", [(MLP, (12, 28, 28), 12), (CONV, (4, 3, 3), 8 * 7 * 7),
                                                      (VAE, (16, 28, 28), 2)])
def test_capture_holds_the_probe_rebuilt_the_first_layer_and_the_codes(cfg, filters, code_width):
    model = build(cfg, seed=1).train()
    pics = random_pictures(20)
    frame = capture(model, pics[:8], pics, 3)
    assert model.training, "capture gives the model back in train mode"
    assert frame.epoch == 3
    assert frame.recon.shape == (8, 28, 28) and frame.recon.dtype == np.uint8
    assert frame.filters.shape == filters and frame.filters.dtype == np.float16
    assert frame.codes.shape == (20, code_width) and frame.codes.dtype == np.float16
    with torch.no_grad():
        model.eval()
        x = pics.float().div(255).unsqueeze(1)
        codes = model.encode(x).flatten(1)                      # a VAE's means: no sampling in eval mode
        recon = model(x[:8]).x_hat.clamp(0, 1).reshape(8, 28, 28)
    np.testing.assert_allclose(frame.codes.astype(np.float32), codes.numpy(), rtol=2e-3, atol=2e-3)
    assert np.abs(frame.recon.astype(int) - np.rint(recon.numpy() * 255)).max() <= 1
    # The filters as Inspect draws them (each scaled on its own), up to float16's precision.
    drawn = viz.conv_kernels(model) if cfg.convolutional else viz.encoder_filters(model, 100)
    np.testing.assert_allclose(tiles(frame), drawn.numpy(), atol=3e-3)


def test_capture_keeps_fewer_pictures_of_a_wide_code_and_fewer_filters_of_a_colour_model():
    assert pictures(ModelConfig(family="shallow", hidden=(200,))) == CODE_PICTURES
    assert pictures(ModelConfig(family="shallow", hidden=(400,))) == 500
    colour = build(ModelConfig(family="shallow", hidden=(64,), color="rgb", side=32), seed=0)
    pics = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    frame = capture(colour, pics, pics, 1)
    assert frame.filters.shape == (26, 3, 32, 32) and frame.recon.shape == (5, 3, 32, 32)   # 80,000 // 3,072


# ------------------------------------------------------------------------------------------- the bound
def big_frame(epoch: int) -> Frame:
    """A frame of 563 kB, as a 784-200-784 model's (100 filters, 1,000 codes of 200)."""
    return Frame(epoch, np.zeros((8, 28, 28), np.uint8), np.zeros((100, 28, 28), np.float16),
                 np.full((1000, 200), epoch, np.float16))


def test_the_replay_stays_under_its_bound_thinning_older_frames_evenly():
    replay = Replay.start(np.zeros((8, 28, 28), np.uint8), np.zeros(1000))
    for e in range(1, 51):
        replay = replay.added(big_frame(e))
        assert replay.nbytes <= MAX_BYTES
        assert replay.epochs[0] == 1 and replay.epochs[-1] == e
    epochs = replay.epochs
    assert len(epochs) == MAX_BYTES // big_frame(1).nbytes == 7
    gaps = np.diff(epochs)
    assert gaps.max() <= 2 * 49 / (len(epochs) - 1), epochs           # spread over the run, not bunched
    assert [int(replay.at(e).codes[0, 0]) for e in epochs] == epochs    # each epoch keeps its own frame
    with pytest.raises(KeyError):
        replay.at(epochs[1] + 1)


def test_a_short_run_keeps_every_epoch_and_a_resumed_epoch_replaces_later_frames():
    replay, _ = replay_of(MLP, [1, 2, 3])
    assert replay.epochs == [1, 2, 3]
    assert not np.array_equal(replay.at(1).filters, replay.at(3).filters)
    again = replay.added(replace_epoch(replay.at(1), 2))
    assert again.epochs == [1, 2] and replay.epochs == [1, 2, 3]        # immutable: the old replay is unchanged
    with pytest.raises(ValueError, match="does not fit"):
        replay.added(Frame(4, np.zeros((7, 28, 28), np.uint8), replay.at(1).filters, replay.at(1).codes))


def replace_epoch(frame: Frame, epoch: int) -> Frame:
    return Frame(epoch, frame.recon, frame.filters, frame.codes)


def test_align_turns_each_axis_to_run_as_the_reference():
    ref = np.random.default_rng(0).normal(size=(50, 2))
    flipped = ref * np.array([-1.0, 1.0]) * 2
    np.testing.assert_allclose(align(flipped, ref), ref * 2)


# ------------------------------------------------------------------------------------------- checkpoints
def test_a_replay_goes_through_checkpoint_bytes():
    replay, model = replay_of(MLP, [1, 2, 5])
    blob = checkpoint.to_bytes(model, {"name": "r", "replay": replay})
    assert checkpoint.metadata(blob)["replay"] == {"epochs": [1, 2, 5]}        # the JSON keeps the index only
    loaded, meta = checkpoint.load(blob)
    back = meta["replay"]
    assert isinstance(back, Replay) and back.epochs == [1, 2, 5] and back.nbytes == replay.nbytes
    for a, b in zip(replay.frames, back.frames):
        for part in ("recon", "filters", "codes"):
            assert np.array_equal(getattr(a, part), getattr(b, part))
    assert np.array_equal(back.probe, replay.probe) and np.array_equal(back.labels, replay.labels)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())


def test_a_run_stopped_before_its_first_epoch_end_stores_no_replay():
    model = build(MLP, seed=0)
    empty = Replay.start(random_pictures(8), np.zeros(30))
    _, meta = checkpoint.load(checkpoint.to_bytes(model, {"name": "early", "replay": empty}))
    assert "replay" not in meta


@pytest.mark.parametrize("name", ["pytorch-784-200", "conv-vae-2d", "keras-vae-2d"])
def test_a_shipped_checkpoint_loads_as_before_without_a_replay(name):
    path = MODELS / f"{name}.safetensors"
    model, meta = checkpoint.load(path)
    assert "replay" not in meta and "replay" not in checkpoint.metadata(path)
    assert set(model.state_dict()) == set(st_load(path.read_bytes()))       # every tensor is the model's
    _, again = checkpoint.load(checkpoint.to_bytes(model, {"name": "plain"}))
    assert "replay" not in again


def forged(change) -> bytes:
    """A checkpoint whose replay part `change(index, tensors)` has altered."""
    replay, model = replay_of(MLP, [1, 2])
    index, tensors = replay.to_tensors()
    change(index, tensors)
    meta = {"name": "forged", "model": MLP.to_dict(), "replay": index}
    weights = {k: v.contiguous() for k, v in model.state_dict().items()}
    tensors = {k: v.contiguous().clone() for k, v in tensors.items()}     # a slice or a shared tensor, saved alone
    return st_save({**weights, **tensors}, metadata={"format": checkpoint.FORMAT, "aecore": json.dumps(meta)})


def codes_nan(index, t):
    t["replay.2.codes"][0, 0] = float("nan")


FORGERIES = {   # what is forged: (the change, what the message says)
    "a frame missing": (lambda index, t: t.pop("replay.2.codes"), r"missing \['replay.2.codes'\]"),
    "an unlisted frame": (lambda index, t: t.update({"replay.9.codes": t["replay.2.codes"].clone()}),
                          r"unexpected \['replay.9.codes'\]"),
    "epochs not a list": (lambda index, t: index.update(epochs="all"), "its index must list the epochs"),
    "epochs out of order": (lambda index, t: index.update(epochs=[2, 1]), "its index must list the epochs"),
    "codes in float32": (lambda index, t: t.update({"replay.2.codes": t["replay.2.codes"].float()}),
                         "epoch 2's codes are .* torch.float32, not torch.float16"),
    "codes not finite": (codes_nan, "epoch 2's filters or codes hold NaN"),
    "labels of another count": (lambda index, t: t.update({"replay.labels": t["replay.labels"][:5]}),
                                "epoch 1 keeps 30 codes for 5 labels"),
    "recon of another shape": (lambda index, t: t.update({"replay.1.recon": t["replay.1.recon"][:, :14, :14]}),
                               r"epoch 1's frame has shapes \[8, 14, 14\]"),
    "pictures of another side": (lambda index, t: t.update(
        {k: v[..., :14, :14] for k, v in t.items() if k.endswith(("probe", "recon"))}),
        r"its pictures are \[14, 14\], the model's \[28, 28\]"),
    "codes of another width": (lambda index, t: t.update({k: v[:, :3] for k, v in t.items() if k.endswith("codes")}),
                               "its codes have 3 numbers, the model's 12"),
    "too big": (lambda index, t: t.update({f"replay.{e}.codes": torch.zeros(30, 60_000, dtype=torch.float16)
                                           for e in (1, 2)}), "it holds 7,256,568 bytes, more than"),
}


@pytest.mark.parametrize("how", FORGERIES)
def test_a_forged_replay_is_refused_with_a_message(how):
    change, says = FORGERIES[how]
    with pytest.raises(CheckpointError, match="checkpoint: a damaged replay .*" + says):
        checkpoint.load(forged(change))


def test_replay_tensors_without_an_index_are_refused():
    replay, model = replay_of(MLP, [1, 2])
    blob = checkpoint.to_bytes(model, {"name": "x", "replay": replay})
    meta = checkpoint.metadata(blob)
    del meta["replay"]
    tensors = st_load(blob)
    bare = st_save(tensors, metadata={"format": checkpoint.FORMAT, "aecore": json.dumps(meta)})
    with pytest.raises(CheckpointError, match="its index must list the epochs"):
        checkpoint.load(bare)


# ------------------------------------------------------------------------------------------- a real run
def run(data, epochs: int, resume: bytes | None = None) -> list[tuple]:
    spec = RunSpec(name="tiny", model=MLP, data=DataConfig(),
                   train=TrainConfig(epochs=epochs, batch_size=40, log_every=3, device="cpu"))
    events = []
    train_run(spec, data, _fixed_digits(data, 8), Control(), 1, lambda *e: events.append(e), resume)
    return events


def test_a_run_keeps_one_frame_per_epoch_and_a_resumed_run_keeps_its_earlier_ones(data):
    events = run(data, 3)
    done = next(e for e in events if e[0] == "done")
    replay = done[4]["replay"]
    assert replay.epochs == [1, 2, 3] and len(replay.labels) == 40 == len(replay.at(1).codes)
    assert np.array_equal(replay.labels, data.test.labels.numpy())
    assert np.array_equal(replay.probe, _fixed_digits(data, 8).numpy())
    assert not np.array_equal(replay.at(1).filters, replay.at(3).filters)     # the weights moved
    assert checkpoint.load(done[2])[1]["replay"].epochs == [1, 2, 3]          # the run's checkpoint keeps it
    states = [e for e in events if e[0] == "state"]
    assert [trainstate.load(s[2]).replay.epochs for s in states] == [[1], [1, 2], [1, 2, 3]]
    # Resumed after epoch 2 (a server restart), the run still replays epochs 1 and 2, then adds 3.
    resumed = next(e for e in run(data, 3, resume=states[1][2]) if e[0] == "done")[4]["replay"]
    assert resumed.epochs == [1, 2, 3]
    assert np.array_equal(resumed.at(1).codes, replay.at(1).codes)


# ------------------------------------------------------------------------------------------- the pages
app = pytest.mark.usefixtures("app_environment")     # this module's AppTests (the others need no app)


def upload(at, blob: bytes, name: str = "replayed.safetensors"):
    at.get("file_uploader")[0].set_value((name, blob, "application/octet-stream")).run()
    assert not at.exception
    assert at.sidebar.selectbox(key="app.active").value == f"session:{name.removesuffix('.safetensors')}"
    return at


@pytest.fixture
def run_checkpoint(data) -> bytes:
    return next(e for e in run(data, 3) if e[0] == "done")[2]


@app
def test_inspect_replays_the_filters_and_reconstructions_epoch_by_epoch(tiny_idx, run_checkpoint):
    at = goto(upload(open_app(), run_checkpoint), "app_pages/inspect.py")
    assert "Epoch by epoch" in texts(at.header)
    slider = at.select_slider(key="inspect.epoch")
    assert slider.options == ["1", "2", "3"] and slider.value == 3
    assert any("after epoch 3: the run kept a small snapshot of all 3 epochs" in t for t in texts(at.caption))
    last = {c: img.proto.imgs[0].url for img in at.get("image") for c in [img.proto.imgs[0].caption]}
    assert "12 encoder filters after epoch 3, each scaled on its own" in last
    slider.set_value(1).run()
    assert not at.exception
    first = {c: img.proto.imgs[0].url for img in at.get("image") for c in [img.proto.imgs[0].caption]}
    assert "12 encoder filters after epoch 1, each scaled on its own" in first
    assert "top: 8 fixed test digits; below: rebuilt after epoch 1" in first
    assert first["12 encoder filters after epoch 1, each scaled on its own"] != \
        last["12 encoder filters after epoch 3, each scaled on its own"]         # another picture
    assert not any("One epoch to show" in t for t in texts(at.caption))


@app
def test_a_shipped_model_has_one_epoch_to_show_and_says_so(tiny_idx):
    at = goto(open_app(), "app_pages/inspect.py")
    notes = [t for t in texts(at.caption) if "One epoch to show" in t]
    assert len(notes) == 1 and "a shipped checkpoint keeps only its final weights" in notes[0]
    assert "inspect.epoch" not in [s.key for s in at.get("select_slider")]
    goto(at, "app_pages/latent.py")
    notes = [t for t in texts(at.caption) if "One epoch to show" in t]
    assert len(notes) == 1 and "pytorch-784-200: a shipped checkpoint keeps only its final weights" in notes[0]
    assert len(at.get("vega_lite_chart")) == 1                            # the plane, no replayed one


@app
def test_an_uploaded_checkpoint_without_a_replay_says_why(tiny_idx):
    at = upload(open_app(), checkpoint.to_bytes(build(MLP, seed=0), {"name": "plain"}), "plain.safetensors")
    goto(at, "app_pages/inspect.py")
    assert any("**One epoch to show** for plain: its checkpoint keeps only the final weights" in t
               for t in texts(at.caption))
    assert "Epoch by epoch" not in texts(at.header)


@app
def test_a_thinned_replay_says_how_many_epochs_it_kept(tiny_idx):
    replay, model = replay_of(MLP, [1, 4, 6])
    history = [{"epoch": e, "val_loss": 0.5 / e} for e in range(1, 7)]
    blob = checkpoint.to_bytes(model, {"name": "thinned", "replay": replay, "history": history})
    at = goto(upload(open_app(), blob, "thinned.safetensors"), "app_pages/inspect.py")
    assert at.select_slider(key="inspect.epoch").options == ["1", "4", "6"]
    assert any("kept a small snapshot of 3 of its 6 epochs (a replay stays under 4 MiB" in t for t in texts(at.caption))
    at.select_slider(key="inspect.epoch").set_value(4).run()
    assert "Held-out loss after epoch 4: 0.1250." in texts(at.caption)


@app
def test_latent_replays_the_codes_on_the_plane_epoch_by_epoch(tiny_idx, run_checkpoint):
    at = goto(upload(open_app(), run_checkpoint), "app_pages/latent.py")
    assert "How the codes formed, epoch by epoch" in texts(at.header)
    slider = at.select_slider(key="latent.epoch")
    assert slider.options == ["1", "2", "3"] and slider.value == 3
    charts = at.get("vega_lite_chart")
    assert len(charts) == 2 and "after epoch 3: PCA" in charts[1].proto.spec
    slider.set_value(1).run()
    assert not at.exception and not at.error
    replayed = at.get("vega_lite_chart")[1].proto
    assert "after epoch 1: PCA" in replayed.spec
    # The 40 codes the run kept after epoch 1, on that epoch's PCA plane turned as the last epoch's.
    replay = checkpoint.load(run_checkpoint)[1]["replay"]
    last = latent.project(replay.at(3).codes, latent.ProjectionConfig())
    want = align(latent.project(replay.at(1).codes, latent.ProjectionConfig()).xy, last.xy)
    shown = pa.ipc.open_stream(replayed.data.data).read_pandas()
    np.testing.assert_allclose(shown[["x", "y"]].to_numpy(), want, rtol=1e-6, atol=1e-9)
    assert shown["class"].tolist() == [str(c) for c in replay.labels]

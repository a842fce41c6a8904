"""aecore.engine.train: the fit generator (learning, control, NaN guard, determinism, schedule) and TrainConfig."""
from __future__ import annotations

import math
import queue
import threading
from dataclasses import replace

import pytest
import torch

from aecore.engine import presets
from aecore.engine.data import Data, Split, load, to_float
from aecore.engine.models import ModelConfig, build
from aecore.engine.train import (Control, Metrics, TrainConfig, TrainingDiverged, epoch_record, evaluate, fit,
                          resolve_device, results)

SMALL = ModelConfig(hidden=(16,))
CPU = dict(device="cpu", batch_size=16)


def _train(model, data, control=None, **kw):
    return list(fit(model, data, TrainConfig(**{**CPU, **kw}), control))


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ---------------------------------------------------------------------------------------------- learning
def test_fit_lowers_the_loss(tiny_data):
    model = build(SMALL, seed=0)
    records = _train(model, tiny_data, epochs=8, lr=1e-2, log_every=1)
    assert len(records) == 32                       # 64 images / 16 per batch * 8 epochs, one record each
    assert all(isinstance(m, Metrics) for m in records)
    first, last = records[0].train_loss, records[-1].train_loss
    assert last < 0.6 * first
    assert records[-1].epoch_loss < records[3].epoch_loss


def test_records_count_steps_samples_and_epochs(tiny_data):
    records = _train(build(SMALL, seed=0), tiny_data, epochs=2, batch_size=24, log_every=2)
    # 64 images in batches of 24: 3 steps per epoch (24, 24, 16); a record every 2 steps and at each epoch end
    assert [(m.step, m.epoch, m.epoch_end) for m in records] == [(2, 1, False), (3, 1, True),
                                                                 (5, 2, False), (6, 2, True)]
    assert [m.samples for m in records] == [48, 64, 112, 128]
    assert all(m.total_steps == 6 for m in records)
    assert all(m.samples_per_s > 0 and m.elapsed >= 0 for m in records)
    assert records[1].elapsed <= records[3].elapsed


def test_val_loss_only_on_epoch_end_records(tiny_data):
    records = _train(build(SMALL, seed=0), tiny_data, epochs=2, log_every=1)
    for m in records:
        if m.epoch_end:
            assert m.val_loss is not None and math.isfinite(m.val_loss)
            assert m.epoch_loss is not None and math.isfinite(m.epoch_loss)
        else:
            assert m.val_loss is None and m.epoch_loss is None
    assert sum(m.epoch_end for m in records) == 2


def test_val_loss_is_measured_on_the_validation_split(tiny_data):
    val = Split(tiny_data.train.images[:16], tiny_data.train.labels[:16])
    data = Data(Split(tiny_data.train.images[16:], tiny_data.train.labels[16:]), val, tiny_data.test)
    model = build(SMALL, seed=0)
    last = _train(model, data, epochs=1)[-1]
    assert last.val_loss == pytest.approx(evaluate(model, val.images), rel=1e-5)
    assert last.val_loss != pytest.approx(evaluate(model, tiny_data.test.images), rel=1e-5)


def test_empty_training_split_is_rejected(tiny_data):
    empty = Split(tiny_data.train.images[:0], tiny_data.train.labels[:0])
    with pytest.raises(ValueError, match="empty"):
        _train(build(SMALL, seed=0), Data(empty, None, tiny_data.test), epochs=1)


def test_training_with_mask_noise(tiny_data):
    records = _train(build(SMALL, seed=0), tiny_data, epochs=2, noise="mask", noise_level=0.3, lr=1e-2)
    assert all(math.isfinite(m.train_loss) for m in records)


def test_deform_warps_the_input_and_keeps_the_clean_target(tiny_data):
    seen = {}

    class Spy(type(build(SMALL, seed=0))):
        def forward(self, x):
            seen.setdefault("input", x.detach().clone())
            return super().forward(x)

        def loss_terms(self, target, out):
            seen.setdefault("target", target.detach().clone())
            return super().loss_terms(target, out)

    for level in (0.0, 1.0):
        seen.clear()
        model = Spy(SMALL)
        _train(model, tiny_data, epochs=1, deform=level, batch_size=8)
        clean = to_float(tiny_data.train.images[torch.randperm(len(tiny_data.train),
                         generator=torch.Generator().manual_seed(0))[:8]])
        assert torch.equal(seen["target"], clean)              # the target is always the clean batch
        assert torch.equal(seen["input"], clean) == (level == 0.0)


# ---------------------------------------------------------------------------------------------- control
def test_stop_inside_the_loop_ends_before_the_next_step(tiny_data):
    control = Control()
    model = build(SMALL, seed=0)
    seen = []
    for m in fit(model, tiny_data, TrainConfig(epochs=5, log_every=1, **CPU), control):
        seen.append(m)
        if m.step == 2:
            control.stop()
            after_stop = _state(model)
    assert [m.step for m in seen] == [1, 2]
    assert control.stopped
    for k, v in model.state_dict().items():          # no step ran after the stop
        assert torch.equal(v, after_stop[k])


def test_stop_at_an_epoch_end(tiny_data):
    control = Control()
    seen = []
    for m in fit(build(SMALL, seed=0), tiny_data, TrainConfig(epochs=5, log_every=1, **CPU), control):
        seen.append(m)
        if m.epoch_end:
            control.stop()
    assert len(seen) == 4 and seen[-1].epoch == 1


def test_pause_blocks_progress_and_resume_continues(tiny_data):
    control = Control()
    records: queue.Queue = queue.Queue()
    go = threading.Event()
    errors = []

    def consume():
        try:
            for m in fit(build(SMALL, seed=0), tiny_data, TrainConfig(epochs=2, log_every=1, **CPU), control):
                records.put(m)
                if m.step == 1:
                    go.wait(timeout=30)   # hold the loop until the main thread has paused it
        except BaseException as e:  # noqa: BLE001 - reported to the main thread
            errors.append(e)
        finally:
            records.put(None)

    worker = threading.Thread(target=consume, daemon=True)
    worker.start()
    try:
        assert records.get(timeout=60).step == 1
        control.pause()
        assert control.paused
        go.set()
        with pytest.raises(queue.Empty):              # paused: no further step comes
            records.get(timeout=0.5)
        assert worker.is_alive()
        control.resume()
        assert not control.paused
        rest = []
        while (m := records.get(timeout=60)) is not None:
            rest.append(m)
    finally:
        go.set()
        control.stop()
        worker.join(timeout=60)
    assert not errors
    assert [m.step for m in rest] == list(range(2, 9))


def test_stop_wakes_a_paused_loop(tiny_data):
    control = Control()
    done = threading.Event()
    seen = []

    def consume():
        for m in fit(build(SMALL, seed=0), tiny_data, TrainConfig(epochs=3, log_every=1, **CPU), control):
            seen.append(m)
            if m.step == 1:
                control.pause()
        done.set()

    worker = threading.Thread(target=consume, daemon=True)
    worker.start()
    assert not done.wait(timeout=0.5)
    control.stop()
    assert done.wait(timeout=60)
    worker.join(timeout=10)
    assert [m.step for m in seen] == [1]
    assert not control.paused and control.stopped


# ---------------------------------------------------------------------------------------------- NaN guard
def test_nan_loss_raises_and_restores_the_last_finite_weights(tiny_data):
    model = build(SMALL, seed=0)
    calls = {"n": 0}

    def nan_weight_from_step_4(epochs_done):        # fit calls it before every step, whichever way it trains
        calls["n"] += 1
        if calls["n"] == 4:
            model.encoder[0].bias.data[0] = float("nan")

    model.at_epoch = nan_weight_from_step_4
    snapshots = []
    with pytest.raises(TrainingDiverged) as info:
        for m in fit(model, tiny_data, TrainConfig(epochs=3, log_every=1, **CPU)):
            snapshots.append(_state(model))
    assert len(snapshots) == 3
    assert "learning rate" in str(info.value)
    assert "nan" in str(info.value) and "step 4" in str(info.value)
    for k, v in model.state_dict().items():
        assert torch.isfinite(v).all()
        assert torch.equal(v, snapshots[-1][k])
    assert not torch.equal(snapshots[-1]["encoder.0.weight"], snapshots[0]["encoder.0.weight"])


# ---------------------------------------------------------------------------------------------- determinism
def _run(data, seed, cfg=SMALL, **kw):
    model = build(cfg, seed=0)
    records = _train(model, data, seed=seed, **{"epochs": 2, "log_every": 1, "noise": "mask",
                                                "noise_level": 0.2, **kw})
    return [m.train_loss for m in records], [m.val_loss for m in records], _state(model)


def test_same_seed_same_run_and_different_seed_differs(tiny_data):
    dropout = ModelConfig(hidden=(16,), dropout=0.3)
    losses_a, val_a, state_a = _run(tiny_data, seed=5, cfg=dropout)
    losses_b, val_b, state_b = _run(tiny_data, seed=5, cfg=dropout)
    assert losses_a == losses_b and val_a == val_b
    for k in state_a:
        assert torch.equal(state_a[k], state_b[k])
    losses_c, _, state_c = _run(tiny_data, seed=6, cfg=dropout)
    assert losses_c != losses_a
    assert not torch.equal(state_c["encoder.0.weight"], state_a["encoder.0.weight"])


# ---------------------------------------------------------------------------------------------- schedule
def test_lr_milestones_multiply_the_learning_rate(tiny_data):
    records = _train(build(SMALL, seed=0), tiny_data, epochs=4, lr=0.01, lr_milestones=(1, 3), log_every=2)
    by_epoch = {}
    for m in records:
        by_epoch.setdefault(m.epoch, []).append(m.lr)
    # a milestone takes effect after its epoch: the epoch-end record already shows the new rate
    assert by_epoch == {1: [0.01, 0.005], 2: [0.005, 0.005], 3: [0.005, 0.0025], 4: [0.0025, 0.0025]}


def test_lr_gamma(tiny_data):
    records = _train(build(SMALL, seed=0), tiny_data, epochs=2, lr=0.01, lr_milestones=(1,), lr_gamma=0.1,
                     log_every=100)
    assert [m.lr for m in records] == pytest.approx([0.001, 0.001])


# ---------------------------------------------------------------------------------------------- evaluate
@pytest.mark.parametrize("training", [True, False])
def test_evaluate_restores_mode(tiny_data, training):
    model = build(ModelConfig(hidden=(16,), dropout=0.5), seed=0).train(training)
    loss = evaluate(model, tiny_data.test.images, batch_size=10)
    assert model.training is training
    x = tiny_data.test.images.unsqueeze(1).float() / 255
    with torch.no_grad():
        expected = model.eval().loss(x, model(x)).item()
    assert loss == pytest.approx(expected, rel=1e-5)


def test_results_and_epoch_records(tiny_data):
    model = build(SMALL, seed=0)
    history = _train(model, tiny_data, epochs=2, log_every=1)
    res = results(model, tiny_data, history)
    assert res["figures"]["train_loss"] == history[-1].epoch_loss
    assert res["figures"]["val_loss"] is None
    assert res["figures"]["test_loss"] == pytest.approx(evaluate(model, tiny_data.test.images))
    assert [h["epoch"] for h in res["history"]] == [1, 2]
    assert len(res["test_error_quantiles"]) == 1001
    rec = epoch_record(history[-1], history[3])
    assert set(rec) == {"epoch", "train_loss", "val_loss", "seconds", "samples_per_s"}


# ---------------------------------------------------------------------------------------------- configs
@pytest.mark.parametrize("kwargs,field", [
    ({"epochs": 0}, "epochs"),
    ({"batch_size": 0}, "batch_size"),
    ({"lr": 0}, "lr"),
    ({"lr": -1e-3}, "lr"),
    ({"adam_eps": 0}, "adam_eps"),
    ({"lr_gamma": 1.5}, "lr_gamma"),
    ({"lr_milestones": (0,)}, "lr_milestones"),
    ({"noise_level": 1.5}, "noise_level"),
    ({"noise": "salt"}, "noise"),
    ({"deform": 2.5}, "deform"),
    ({"deform": -0.1}, "deform"),
    ({"device": "tpu"}, "device"),
    ({"log_every": 0}, "log_every"),
])
def test_invalid_train_config_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"TrainConfig\.{field} must"):
        TrainConfig(**kwargs)


def test_train_config_dict_round_trip():
    cfg = TrainConfig(lr_milestones=(10, 40), noise="mask", noise_level=0.2)
    d = cfg.to_dict()
    d["lr_milestones"] = list(d["lr_milestones"])
    assert TrainConfig.from_dict(d) == cfg


def test_cuda_without_a_gpu_is_a_value_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="cuda"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")


# ---------------------------------------------------------------------------------------------- real MNIST
@pytest.fixture
def one_thread():
    """On a small shared CPU, one intra-op thread is several times faster than threads fighting for cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.mnist
def test_one_epoch_of_the_pytorch_preset_on_real_mnist(one_thread):
    pre = presets.get("pytorch-784-200")
    data = load(pre.data)                       # found through AECORE_DATA_DIR
    assert (len(data.train), len(data.test)) == (60_000, 10_000)
    model = build(pre.model, seed=0)
    cfg = replace(pre.train, epochs=1, device="cpu", log_every=1000)
    last = [m for m in fit(model, data, cfg) if m.epoch_end][-1]
    assert last.samples == 60_000
    assert last.epoch_loss < 0.17
    assert last.val_loss < 0.17

"""TrainingJob: a run in a background thread, driven and watched from another thread."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

import aecore.runs.job as job_module
from aecore.engine import checkpoint
from aecore.engine.data import DataConfig
from aecore.engine.train import RunSpec
from aecore.runs.job import N_TIMELINE, STATES, TrainingJob, wait_for
from aecore.engine.models import ModelConfig, build
from aecore.engine.scoring import QUANTILE_STEPS
from aecore.engine.train import TrainConfig, TrainingDiverged

from idx_helpers import tiny_data

ENDED = ("finished", "stopped", "failed")
WAIT = 90.0   # generous: the machine may be busy with other work


@pytest.fixture(scope="module")
def data():
    return tiny_data(n_train=200, n_test=50)


def make_spec(name="tiny", **train) -> RunSpec:
    cfg = dict(epochs=2, batch_size=20, log_every=2, device="cpu")
    cfg.update(train)
    return RunSpec(name=name, model=ModelConfig(family="shallow", hidden=(8,)), data=DataConfig(),
                   train=TrainConfig(**cfg))


def record_count(job: TrainingJob) -> int:
    return len(job.snapshot().records)


def wait_until(predicate, timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def settled_count(job: TrainingJob, timeout: float = 15.0) -> int:
    """The record count once it no longer changes over 0.3 s; fails if it keeps growing."""
    previous, deadline = -1, time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = record_count(job)
        if n == previous:
            return n
        previous = n
        time.sleep(0.3)
    pytest.fail(f"the record count kept growing for {timeout} s after pausing")


@pytest.fixture
def jobs():
    """Jobs created by a test; any still alive at the end are stopped and joined."""
    made: list[TrainingJob] = []
    yield made
    for j in made:
        j.stop()
        j.join(WAIT)


def long_job(data, jobs) -> TrainingJob:
    """A run far too long to finish during a test (it is stopped instead), started and producing records."""
    job = TrainingJob(make_spec("long", epochs=1000, batch_size=10, log_every=5), data)
    jobs.append(job)
    job.start()
    assert wait_until(lambda: record_count(job) > 0), "the run produced no record"
    return job


# ------------------------------------------------------------------------------------------- a complete run
def test_fresh_job_is_ready_with_fixed_digits(data):
    job = TrainingJob(make_spec(), data)
    snap = job.snapshot()
    assert snap.state == "ready"
    assert snap.records == () and snap.timeline == () and snap.last is None
    assert snap.progress == 0.0 and snap.eta_s is None
    assert not job.active and job.join(0.1)
    assert snap.device == "cpu"
    # The probe digits: the first test image of each class, in test-set order, scaled to [0, 1].
    assert snap.originals.shape == (N_TIMELINE, 28, 28)
    labels = data.test.labels
    firsts = sorted(int((labels == c).nonzero()[0]) for c in range(10))[:N_TIMELINE]
    np.testing.assert_allclose(snap.originals, data.test.images[firsts].numpy() / 255.0)


def test_run_finishes_with_records_timeline_result_and_checkpoint(data, jobs):
    job = TrainingJob(make_spec(), data)
    jobs.append(job)
    job.start()
    snap = wait_for(job, ENDED, timeout=WAIT)
    assert snap.state == "finished", snap.error
    assert job.join(WAIT) and not job.active

    # 200 images / batch 20 = 10 steps per epoch, a record every 2 steps.
    assert len(snap.records) == 10
    assert [r.step for r in snap.records] == list(range(2, 21, 2))
    assert [r.epoch for r in snap.records if r.epoch_end] == [1, 2]
    assert snap.last.step == snap.last.total_steps == 20
    assert snap.progress == 1.0 and snap.eta_s == 0.0
    assert all(np.isfinite(r.train_loss) for r in snap.records)

    assert [epoch for epoch, _ in snap.timeline] == [1, 2]
    for _, frame in snap.timeline:
        assert frame.shape == (N_TIMELINE, 28, 28)
        assert frame.dtype == np.float32 and frame.min() >= 0.0 and frame.max() <= 1.0
    assert not np.array_equal(snap.timeline[0][1], snap.timeline[1][1])   # the model changed between epochs

    result = snap.result
    assert set(result["figures"]) == {"train_loss", "val_loss", "test_loss"}
    assert result["figures"]["val_loss"] is None                         # no validation split
    assert np.isfinite(result["figures"]["train_loss"]) and np.isfinite(result["figures"]["test_loss"])
    quantiles = result["test_error_quantiles"]
    assert len(quantiles) == QUANTILE_STEPS + 1 and quantiles == sorted(quantiles)
    assert [h["epoch"] for h in result["history"]] == [1, 2]

    assert job.model is not None and not job.model.training
    assert job.meta["name"] == "tiny" and job.meta["device"] == "cpu"
    loaded, meta = checkpoint.load(job.checkpoint_bytes)
    assert meta["model"] == ModelConfig(family="shallow", hidden=(8,))
    assert meta["train"] == job.spec.train and meta["name"] == "tiny"
    assert meta["test_error_quantiles"] == quantiles
    for key, value in job.model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)


def test_a_job_starts_once(data, jobs):
    job = TrainingJob(make_spec(), data)
    jobs.append(job)
    job.start()
    with pytest.raises(RuntimeError, match="starts once"):
        job.start()
    assert wait_for(job, ENDED, timeout=WAIT).state == "finished"
    with pytest.raises(RuntimeError, match="starts once"):
        job.start()


def test_same_spec_gives_same_weights(data, jobs):
    a, b = TrainingJob(make_spec("a"), data), TrainingJob(make_spec("b"), data)
    jobs.extend([a, b])
    for j in (a, b):
        j.start()
        assert wait_for(j, ENDED, timeout=WAIT).state == "finished"
    for key, value in a.model.state_dict().items():
        torch.testing.assert_close(b.model.state_dict()[key], value)


# ------------------------------------------------------------------------------------------- pause, resume, stop
def test_pause_holds_the_run_and_resume_continues(data, jobs):
    job = long_job(data, jobs)
    job.pause()
    assert job.snapshot().state == "paused"
    held = settled_count(job)             # a step under way when pausing may still add its record
    time.sleep(0.6)
    assert record_count(job) == held
    assert job.snapshot().state == "paused" and job.active

    job.resume()
    assert job.snapshot().state == "running"
    assert wait_until(lambda: record_count(job) > held), "no progress after resume"

    job.stop()
    assert job.join(WAIT), "the worker did not end after stop"
    snap = job.snapshot()
    assert snap.state == "stopped" and not job.active
    assert snap.last.step < snap.last.total_steps
    assert snap.result is not None and job.checkpoint_bytes is not None and job.model is not None


def test_stop_while_paused_ends_the_run(data, jobs):
    job = long_job(data, jobs)
    job.pause()
    time.sleep(0.2)
    job.stop()
    assert job.join(WAIT), "a paused run did not end after stop"
    assert job.snapshot().state == "stopped"
    model, meta = checkpoint.load(job.checkpoint_bytes)
    assert meta["name"] == "long"


def test_pause_and_resume_do_nothing_outside_their_state(data, jobs):
    job = TrainingJob(make_spec(), data)
    jobs.append(job)
    job.pause()
    job.resume()
    assert job.snapshot().state == "ready"
    job.start()
    assert wait_for(job, ENDED, timeout=WAIT).state == "finished"
    job.pause()
    assert job.snapshot().state == "finished"
    job.resume()
    assert job.snapshot().state == "finished"


def test_snapshot_is_safe_from_another_thread(data, jobs):
    job = long_job(data, jobs)
    problems: list[BaseException] = []
    seen: list[int] = []
    done = threading.Event()

    def hammer():
        try:
            while not done.is_set():
                snap = job.snapshot()
                assert snap.state in STATES
                assert len(snap.timeline) <= len(snap.records)
                if snap.records:
                    assert snap.last is snap.records[-1]
                    _ = snap.progress, snap.eta_s
                seen.append(len(snap.records))
        except BaseException as e:   # reported by the main thread
            problems.append(e)

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    job.pause()
    time.sleep(0.2)
    job.resume()
    time.sleep(0.5)
    job.stop()
    assert job.join(WAIT)
    time.sleep(0.1)
    done.set()
    for t in threads:
        t.join(10)
    assert not problems, problems[0]
    assert len(seen) > 10
    assert job.snapshot().state == "stopped"


def test_snapshot_is_a_copy(data, jobs):
    job = long_job(data, jobs)
    snap = job.snapshot()
    n = len(snap.records)
    assert wait_until(lambda: record_count(job) > n)
    assert len(snap.records) == n            # an earlier snapshot does not change under the caller
    job.stop()
    assert job.join(WAIT)


# ------------------------------------------------------------------------------------------- failures
def test_nan_loss_fails_with_message_and_keeps_last_good_weights(data, jobs, monkeypatch):
    calls = {"n": 0}

    def build_nan_after_a_few_steps(cfg, seed=None):
        model = build(cfg, seed=seed)

        def nan_weight_from_step_5(epochs_done):    # fit calls it before every step, whichever way it trains
            calls["n"] += 1
            if calls["n"] == 5:
                model.encoder[0].bias.data[0] = float("nan")

        model.at_epoch = nan_weight_from_step_5
        return model

    monkeypatch.setattr(job_module, "build", build_nan_after_a_few_steps)
    job = TrainingJob(make_spec("nan", epochs=3), data)
    jobs.append(job)
    job.start()
    snap = wait_for(job, ENDED, timeout=WAIT)
    assert snap.state == "failed"
    assert "nan" in snap.error.lower() and "learning rate" in snap.error
    assert job.join(WAIT)
    assert snap.result is None and job.checkpoint_bytes is None
    assert job.model is not None and not job.model.training
    assert all(torch.isfinite(p).all() for p in job.model.parameters())
    assert job.meta["error"] == snap.error and job.meta["name"] == "nan"


@pytest.mark.parametrize("error, shown", [
    (TrainingDiverged("the loss became inf at step 3 (epoch 1)"), "the loss became inf at step 3 (epoch 1)"),
    (RuntimeError("out of memory somewhere"), "RuntimeError: out of memory somewhere"),
])
def test_failing_fit_ends_failed_with_its_message(data, jobs, monkeypatch, error, shown):
    def failing_fit(model, data, cfg, control, **_):
        raise error
        yield   # a generator, like the real fit

    monkeypatch.setattr(job_module, "fit", failing_fit)
    job = TrainingJob(make_spec(), data)
    jobs.append(job)
    job.start()
    snap = wait_for(job, ENDED, timeout=WAIT)
    assert snap.state == "failed"
    assert snap.error == shown
    assert job.join(WAIT) and not job.active
    assert job.checkpoint_bytes is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_cuda_without_gpu_fails_at_construction(data):
    with pytest.raises(ValueError, match="cuda"):
        TrainingJob(make_spec(device="cuda"), data)


def test_empty_training_split_fails_in_the_thread(jobs):
    data = tiny_data(n_train=200, n_test=50)
    empty = type(data)(train=data.train.take(data.train.labels > 99), val=None, test=data.test)
    job = TrainingJob(make_spec(), empty)
    jobs.append(job)
    job.start()
    snap = wait_for(job, ENDED, timeout=WAIT)
    assert snap.state == "failed"
    assert snap.error.startswith("ValueError:") and "empty" in snap.error

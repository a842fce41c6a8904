"""The processes backend's warm training processes (aecore.runs.pool) and the data they share (aecore.runs.shared):
a run after a worker crashed, nothing of one run leaking into the next, a stop while the worker still starts up,
the data files written once and mapped, not copied; and the concurrent benchmark's structure on tiny data."""
from __future__ import annotations

import gc
import os
import signal
import time

import numpy as np
import pytest
import torch

from aecore.engine.data import DataConfig
from aecore.engine.models import ModelConfig
from aecore.engine.train import RunSpec, TrainConfig
from aecore.runs import bench, pool, shared
from aecore.runs.registry import RunRegistry
from aecore.runs.settings import RegistryConfig

from idx_helpers import tiny_data

WAIT = 90.0


@pytest.fixture(scope="module")
def data():
    return tiny_data(n_train=400, n_test=60)


def spec(epochs=2, **model) -> RunSpec:
    return RunSpec(name="tiny", model=ModelConfig(**{"family": "shallow", "hidden": (8,), **model}), data=DataConfig(),
                   train=TrainConfig(epochs=epochs, batch_size=20, log_every=2, device="cpu", seed=3))


@pytest.fixture
def registry():
    reg = RunRegistry(RegistryConfig(backend="processes", max_runs=1, max_gpu_runs=0), sweep_every=None)
    assert reg.backend.wait_ready(WAIT), "the warm process did not get ready"
    yield reg
    reg.shutdown(wait=10)


def ended(reg, run_id, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while reg.view(run_id).state not in ("finished", "stopped", "failed"):
        assert time.monotonic() < deadline, f"the run is still {reg.view(run_id).state}"
        time.sleep(0.02)
    return reg.view(run_id)


def losses(view) -> list[float]:
    return [m.train_loss for m in view.snapshot.records]


def workers(reg) -> list[pool.Worker]:
    return list(reg.backend.pool._idle)


def idle_workers(reg, n: int = 1) -> list[pool.Worker]:
    """The pool's idle workers once it has `n`: a run's end reaches the page before its worker is back."""
    deadline = time.monotonic() + WAIT
    while len(workers(reg)) < n:
        assert time.monotonic() < deadline, f"the pool has {len(workers(reg))} idle workers, not {n}"
        time.sleep(0.02)
    return workers(reg)


def test_runs_reuse_one_warm_process_and_none_leaks_into_the_next(registry, data):
    """Two runs in the same process give the losses of a run in a thread of this process, even after a run of
    another family; and the process is the one that was warm before the first run."""
    (warm,) = workers(registry)
    first = ended(registry, registry.submit(spec(), data, "a"))
    ended(registry, registry.submit(spec(family="deep", hidden=(16, 4)), data, "b"))
    again = ended(registry, registry.submit(spec(), data, "c"))
    assert first.state == again.state == "finished"
    assert idle_workers(registry) == [warm] and warm.process.is_alive()   # the same process trained all three
    # and at a lower priority than the server's page scripts
    server_nice = os.getpriority(os.PRIO_PROCESS, 0)
    assert os.getpriority(os.PRIO_PROCESS, warm.process.pid) == min(19, server_nice + pool.NICENESS)
    threads = RunRegistry(RegistryConfig(backend="threads", max_runs=1), sweep_every=None)
    try:
        alone = ended(threads, threads.submit(spec(), data, "d"))
    finally:
        threads.shutdown(wait=10)
    assert losses(first) == losses(again) == losses(alone)
    assert len(losses(first)) > 4


def test_fresh_state_resets_what_a_run_may_change():
    before = torch.get_num_threads()
    try:
        torch.set_grad_enabled(False)
        torch.set_default_dtype(torch.float64)
        torch.manual_seed(123)
        np.random.seed(7)
        pool.fresh_state(1)
        assert torch.is_grad_enabled() and torch.get_default_dtype() == torch.float32
        assert torch.get_num_threads() == 1
        a = (torch.rand(3), np.random.rand())
        pool.fresh_state(1)
        b = (torch.rand(3), np.random.rand())
        assert torch.equal(a[0], b[0]) and a[1] == b[1]
    finally:
        torch.set_default_dtype(torch.float32)
        torch.set_grad_enabled(True)
        torch.set_num_threads(before)


def test_a_run_after_a_crashed_worker(registry, data):
    """An idle process that died is passed over; one killed mid-run fails that run with a clear message; either
    way the pool is warm again and the next run trains."""
    (idle,) = workers(registry)
    os.kill(idle.process.pid, signal.SIGKILL)
    idle.process.join(10)
    assert ended(registry, registry.submit(spec(), data, "a")).state == "finished"

    warm = idle_workers(registry)                              # run a's process, once it is back in the pool
    run_id = registry.submit(spec(epochs=200), data, "b")
    deadline = time.monotonic() + WAIT
    while not registry.view(run_id).snapshot.records:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    registry.pause(run_id)                                     # mid-run however fast it trains
    (trainer,) = [w.process for w in warm if w not in workers(registry)]    # the warm one the run took
    assert trainer.is_alive() and registry.view(run_id).state in ("running", "paused")
    os.kill(trainer.pid, signal.SIGKILL)
    view = ended(registry, run_id)
    assert view.state == "failed"
    assert "the training process ended unexpectedly (exit code -9)" in view.snapshot.error
    idle_workers(registry)                                     # a new one takes its place, off the run's thread
    assert registry.backend.wait_ready(WAIT) and len(workers(registry)) == 1
    assert ended(registry, registry.submit(spec(), data, "c")).state == "finished"


def test_a_stop_while_the_process_starts_up_is_kept(data):
    """A run stopped before its process has warmed up ends stopped without training a step."""
    reg = RunRegistry(RegistryConfig(backend="processes", max_runs=1, max_gpu_runs=0), sweep_every=None)
    try:
        run_id = reg.submit(spec(epochs=50), data, "a")      # the process is still importing torch
        reg.stop(run_id)
        view = ended(reg, run_id)
        assert view.state == "stopped"
        assert not view.snapshot.records or view.snapshot.last.step <= view.spec.train.log_every
        assert ended(reg, reg.submit(spec(), data, "b")).state == "finished"     # the process trains on
    finally:
        reg.shutdown(wait=10)


def test_shared_data_is_written_once_mapped_not_copied_and_removed_with_its_tensor(data):
    files = shared.publish(data)
    assert shared.publish(data) == files                       # the same tensors: the same files
    back = shared.attach(files)
    assert torch.equal(back.train.images, data.train.images) and torch.equal(back.test.labels, data.test.labels)
    assert back.val is None and files.val is None
    maps = open("/proc/self/maps").read()
    assert files.train[0].path in maps and files.test[0].path in maps        # mapped from the files, not read in
    own = torch.arange(10, dtype=torch.uint8)
    written = shared._write(own)
    assert os.path.exists(written.path)
    del own
    gc.collect()
    assert not os.path.exists(written.path)                    # gone with its tensor
    bad = shared.SharedArray(files.train[0].path, (1, 2), "uint8")
    shared._mapped.pop(bad.path, None)
    with pytest.raises(ValueError, match="not uint8"):
        shared._map(bad)


def test_the_concurrent_benchmark_reports_its_fields(data):
    """Structure, not speed: one run alone, then 3 at once on a cap of 1."""
    reg = RunRegistry(RegistryConfig(backend="processes", max_runs=1, max_gpu_runs=0, grace_s=600), sweep_every=None)
    try:
        assert reg.backend.wait_ready(WAIT)
        out = bench.concurrent(reg, spec(epochs=1), data, 3, timeout_s=WAIT)
    finally:
        reg.shutdown(wait=10)
    assert out["concurrent"] == 3 and out["max_runs"] == 1 and len(out["per_run_fit_samples_per_s"]) == 3
    assert out["aggregate_samples_per_s"] > 0 and out["single_samples_per_s"] > 0
    assert out["aggregate_vs_single"] == pytest.approx(out["aggregate_samples_per_s"] / out["single_samples_per_s"])
    assert out["wall_s"] > 0 and out["single_wall_s"] > 0

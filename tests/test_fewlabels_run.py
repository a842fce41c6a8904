"""The few-label comparison as a run of the run service (aecore.runs.task, aecore.labs.pretrain.comparison): it
takes a slot of the cap, waits in the queue behind a full slot, stops when asked, fails with a message, and its
result is the row the lab's own `table` gives for the same seeds; the Ray backend refuses it by name."""
from __future__ import annotations

import time
from dataclasses import replace

import pytest
import torch

from aecore.engine.data import DataConfig
from aecore.engine.models import ModelConfig
from aecore.engine.train import TrainConfig
from aecore.labs import pretrain
from aecore.runs import RegistryConfig, RunRegistry, RunSpec, TaskError, TaskSpec
from aecore.runs.relay import RayBackend

from idx_helpers import tiny_data

WAIT = 120.0
SMALL = replace(pretrain.QUICK, hidden=(32, 8), deform=0.0, head_steps=10, steps=30)   # seconds on tiny data


@pytest.fixture(scope="module")
def data():
    return tiny_data(n_train=200, n_test=50)


def blocker(epochs=1000) -> RunSpec:
    """A training run that holds its slot until it is stopped."""
    return RunSpec(name="blocker", model=ModelConfig(family="shallow", hidden=(8,)), data=DataConfig(),
                   train=TrainConfig(epochs=epochs, batch_size=1, log_every=2, device="cpu"))


def wait_until(reg, run_id, done, what, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = reg.view(run_id)
        if done(view):
            return view
        time.sleep(0.05)
    pytest.fail(f"{what}: run is {reg.view(run_id).state} with {len(reg.view(run_id).snapshot.records)} records")


def lab_row(data, cfg: pretrain.ComparisonConfig) -> dict:
    """The oracle: the lab's own functions, one thread as a run has."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ae, _ = pretrain.pretrain(data, cfg.pretrain, cache=None)
        [row] = pretrain.table(data, ae, cfg.pretrain, labels=(cfg.labels,), seeds=cfg.seeds)
    finally:
        torch.set_num_threads(threads)
    return row


@pytest.mark.parametrize("backend", [pytest.param("processes", marks=pytest.mark.slow), "threads"])
def test_the_comparison_queues_behind_a_full_slot_and_returns_the_labs_row(data, backend):
    cfg = pretrain.ComparisonConfig(per_class=10, seeds=2, pretrain=SMALL)
    reg = RunRegistry(RegistryConfig(max_runs=1, backend=backend), sweep_every=None)
    try:
        a = reg.submit(blocker(), data, "v1")
        c = reg.submit(pretrain.comparison_spec(cfg), data, "v2")
        queued = reg.view(c)
        assert queued.state == "queued" and queued.position == 1 and reg.counts()["running"] == 1
        assert queued.starts_in_s is not None and isinstance(queued.spec, TaskSpec)
        reg.stop(a)
        view = wait_until(reg, c, lambda v: not v.active, "the comparison did not end")
        assert view.state == "finished", view.snapshot.error
        assert view.model is None and view.checkpoint_bytes is None          # a task keeps no model
        records = view.snapshot.records
        assert [r.step for r in records] == sorted(r.step for r in records)  # progress only grows
        assert records[-1].step == records[-1].total_steps and view.snapshot.progress == 1.0
        assert {r.phase for r in records} == {"autoencoder", "pretrained", "random"}
        assert [(arm, seed) for arm, seed, _ in records[-1].accuracies] == [
            ("pretrained", 0), ("random", 0), ("pretrained", 1), ("random", 1)]
        result = view.snapshot.result
        assert result["autoencoder"]["source"] == "trained" and result["train_images"] == 200
        oracle = lab_row(data, cfg)
        mine = {k: v for k, v in result["row"].items() if k != "seconds"}
        assert mine == {k: v for k, v in oracle.items() if k != "seconds"}
        assert mine["seeds"] == 2 and mine["labels"] == 100
    finally:
        reg.shutdown(wait=WAIT)


def test_the_comparison_holds_the_slot_and_a_stop_stops_it(data):
    long = replace(SMALL, steps=100_000)
    reg = RunRegistry(RegistryConfig(max_runs=1, backend="threads"), sweep_every=None)
    try:
        c = reg.submit(pretrain.comparison_spec(pretrain.ComparisonConfig(pretrain=long)), data, "v1")
        b = reg.submit(blocker(epochs=1), data, "v2")
        wait_until(reg, c, lambda v: v.snapshot.last is not None and v.snapshot.last.phase == "pretrained",
                   "the comparison did not reach fine-tuning")
        assert reg.view(b).state == "queued" and reg.counts()["running"] == 1   # it counts against the cap
        reg.stop(c)
        view = wait_until(reg, c, lambda v: not v.active, "the comparison did not stop")
        assert view.state == "stopped" and view.snapshot.result is None
        assert view.snapshot.last.step < view.snapshot.last.total_steps
        n = len(view.snapshot.records)
        wait_until(reg, b, lambda v: v.state == "finished", "the queued run did not start after the stop")
        assert len(reg.view(c).snapshot.records) == n                        # nothing ran after the stop
    finally:
        reg.shutdown(wait=WAIT)


def test_a_queued_comparison_stopped_leaves_the_queue(data):
    reg = RunRegistry(RegistryConfig(max_runs=1, backend="threads"), sweep_every=None)
    try:
        a = reg.submit(blocker(), data, "v1")
        c = reg.submit(pretrain.comparison_spec(pretrain.ComparisonConfig(pretrain=SMALL)), data, "v2")
        reg.stop(c)
        assert reg.view(c).state == "stopped" and reg.counts()["queued"] == 0
        assert reg.view(a).state == "running"
    finally:
        reg.shutdown(wait=WAIT)


def test_too_many_labels_for_the_data_fail_with_the_labs_message(data):
    reg = RunRegistry(RegistryConfig(max_runs=1, backend="threads"), sweep_every=None)
    try:
        c = reg.submit(pretrain.comparison_spec(pretrain.ComparisonConfig(per_class=50, pretrain=SMALL)), data, "v")
        view = wait_until(reg, c, lambda v: not v.active, "the comparison did not end")
        assert view.state == "failed" and "500 labels need 50 images of each digit" in view.snapshot.error
        assert view.snapshot.records == ()
    finally:
        reg.shutdown(wait=WAIT)


def test_one_run_per_visitor_holds_for_a_comparison_too(data):
    reg = RunRegistry(RegistryConfig(max_runs=2, backend="threads"), sweep_every=None)
    try:
        reg.submit(blocker(), data, "v1")
        with pytest.raises(ValueError, match="you already have a run in progress"):
            reg.submit(pretrain.comparison_spec(pretrain.ComparisonConfig(pretrain=SMALL)), data, "v1")
    finally:
        reg.shutdown(wait=WAIT)


@pytest.mark.parametrize("path, words", [("aecore.labs.pretrain", "package.module:function"),
                                         ("aecore.labs.nothing:run", "cannot import"),
                                         ("aecore.labs.pretrain:nothing", "has no function 'nothing'")])
def test_a_task_that_names_no_function_is_refused(path, words):
    with pytest.raises(TaskError, match=words):
        TaskSpec(name="x", task=path, config=None, data=DataConfig())


@pytest.mark.parametrize("kwargs, words", [({"seeds": 0}, "seeds must be from 1 to 3"),
                                           ({"seeds": 4}, "seeds must be from 1 to 3"),
                                           ({"per_class": 0}, "per_class must be from 1 to 100")])
def test_comparison_settings_out_of_range_are_named(kwargs, words):
    with pytest.raises(ValueError, match=words):
        pretrain.ComparisonConfig(**kwargs)


def test_the_ray_backend_refuses_a_task_by_name(data):
    backend = RayBackend.__new__(RayBackend)     # no cluster needed: the refusal comes first
    spec = pretrain.comparison_spec(pretrain.ComparisonConfig(pretrain=SMALL))
    with pytest.raises(TaskError, match="Ray backend trains single `fit` runs only.*AELAB_RUN_BACKEND=processes"):
        backend.job("id", spec, data, None, on_end=lambda: None)


def test_the_estimate_grows_with_seeds_and_drops_with_a_cached_autoencoder():
    one, three = pretrain.ComparisonConfig(seeds=1), pretrain.ComparisonConfig(seeds=3)
    assert pretrain.estimate_s(three) > pretrain.estimate_s(one) > pretrain.estimate_s(one, cached=True) > 0
    assert pretrain.comparison_spec(one).estimate_s == pretrain.estimate_s(one)

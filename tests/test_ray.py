"""The Ray backend (aecore.runs.cluster) on a local Ray instance of 2 CPUs: a tiny run streams its metrics,
pauses, resumes and stops; runs beyond the cluster's CPUs wait as "queued" and start when one frees; a second
server (a second registry on the same cluster) reattaches to a run by its id, drives it, and finds ended runs
and series; an unwatched run stops itself. Skipped where Ray is not installed (requirements-ray.txt); what
happens then is tested in test_registry.py. The same with two real app servers and a browser: test_browser_ray.py.
"""
from __future__ import annotations

import time

import pytest

ray = pytest.importorskip("ray")

from aecore.engine import checkpoint# noqa: E402
from aecore.engine.data import DataConfig  # noqa: E402
from aecore.engine.models import ModelConfig  # noqa: E402
from aecore.runs import RegistryConfig, RunRegistry, RunSpec, cluster  # noqa: E402
from aecore.engine.train import TrainConfig  # noqa: E402

from idx_helpers import tiny_data  # noqa: E402

pytestmark = pytest.mark.ray
WAIT = 120.0     # a worker process starts and imports torch before its first metric: seconds on a busy machine
CPUS = 2


@pytest.fixture(scope="module")
def data():
    return tiny_data(n_train=400, n_test=50)


def spec(name="tiny", epochs=2, **train) -> RunSpec:
    cfg = dict(epochs=epochs, batch_size=20, log_every=2, device="auto")
    cfg.update(train)
    return RunSpec(name=name, model=ModelConfig(family="shallow", hidden=(8,)), data=DataConfig(),
                   train=TrainConfig(**cfg))


@pytest.fixture
def registry(ray_address):
    reg = RunRegistry(RegistryConfig(backend="ray", ray_address=ray_address, grace_s=60))
    yield reg
    for v in [reg.view(r) for r in list(reg._runs)]:
        if v is not None and v.active:
            reg.stop(v.id, reason="test teardown")
    wait_all(reg, list(reg._runs), ("finished", "stopped", "failed"))
    reg.shutdown()


def wait_until(check, timeout=WAIT, every=0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


def wait_state(reg, run_id, states, timeout=WAIT):
    return wait_until(lambda: (v := reg.view(run_id)) is not None and v.state in states and v, timeout)


def wait_all(reg, ids, states, timeout=WAIT):
    return wait_until(lambda: all((v := reg.view(i)) is None or v.state in states for i in ids), timeout)


def records(reg, run_id) -> int:
    return len(reg.view(run_id).snapshot.records)


def named_actors() -> set[str]:
    return set(ray.util.list_named_actors())


# ---------------------------------------------------------------------------------------------- one run
@pytest.mark.slow
def test_a_run_streams_pauses_resumes_and_stops(registry, data):
    run_id = registry.submit(spec("long", epochs=400), data, "v1")
    assert run_id in named_actors() or registry.view(run_id).state == "queued"
    running = wait_until(lambda: registry.view(run_id).state == "running" and records(registry, run_id) >= 3)
    assert running, registry.view(run_id)
    view = registry.view(run_id)
    assert view.snapshot.device == "cpu" and view.snapshot.originals.shape == (8, 28, 28)
    first = view.snapshot.records
    assert [m.step for m in first] == sorted(m.step for m in first), "records arrive in order, none twice"
    assert wait_until(lambda: records(registry, run_id) > len(first) + 5), "the metrics keep streaming"

    registry.pause(run_id)
    assert registry.view(run_id).state == "paused", "a pause shows at once"
    time.sleep(1.5)                           # the actor pauses before its next step; polls come in
    held = records(registry, run_id)
    time.sleep(1.5)
    assert records(registry, run_id) == held, "no step is taken while paused"
    assert registry.view(run_id).state == "paused"

    registry.resume(run_id)
    assert registry.view(run_id).state == "running"
    assert wait_until(lambda: records(registry, run_id) > held + 3), "training goes on after resume"

    registry.stop(run_id, reason="enough")
    view = wait_state(registry, run_id, ("stopped",))
    assert view and view.stop_reason == "enough"
    assert view.model is not None and view.checkpoint_bytes is not None
    model, meta = checkpoint.load(view.checkpoint_bytes)
    assert meta["name"] == "long" and sum(p.numel() for p in model.parameters()) == 784 * 8 + 8 + 8 * 784 + 784
    assert wait_until(lambda: run_id not in named_actors(), 30), "the ended run's actor has exited"


@pytest.mark.slow
def test_a_finished_run_hands_back_its_checkpoint_and_frees_its_cpu(registry, data):
    run_id = registry.submit(spec("short", epochs=3), data, "v1")
    view = wait_state(registry, run_id, ("finished", "failed"))
    assert view and view.state == "finished", view
    steps = 3 * (400 // 20)
    assert view.snapshot.last.step == steps and len(view.snapshot.timeline) == 3
    assert view.snapshot.records[-1].epoch_end
    model, meta = checkpoint.load(view.checkpoint_bytes)
    assert meta["figures"]["test_loss"] == pytest.approx(view.snapshot.result["figures"]["test_loss"])
    assert wait_until(lambda: ray.available_resources().get("CPU", 0) == CPUS, 30), "its CPU is free again"


# ---------------------------------------------------------------------------------------------- the cluster's queue
@pytest.mark.slow
def test_runs_beyond_the_cpus_wait_as_queued_and_start_when_one_frees(registry, data):
    ids = [registry.submit(spec(f"r{i}", epochs=400), data, f"visitor-{i}") for i in range(4)]
    assert wait_until(lambda: sum(registry.view(i).state == "running" for i in ids) == 2), \
        [registry.view(i).state for i in ids]
    time.sleep(2)
    states = [registry.view(i).state for i in ids]
    assert states.count("running") == 2 and states.count("queued") == 2, states
    queued = [i for i in ids if registry.view(i).state == "queued"]
    running = [i for i in ids if registry.view(i).state == "running"]
    assert all(records(registry, i) == 0 for i in queued)
    assert registry.view(queued[0]).position is None, "the cluster keeps the queue, not this server"
    assert registry.cluster_resources()["cpus"] == CPUS

    registry.stop(queued[1], reason="changed my mind")      # a queued run leaves at once, never trained
    view = wait_state(registry, queued[1], ("stopped",), 10)
    assert view and view.stop_reason == "changed my mind" and view.model is None and records(registry, queued[1]) == 0

    registry.stop(running[0])
    assert wait_state(registry, queued[0], ("running",)), "the queued run starts when a CPU frees"
    assert registry.view(queued[1]).state == "stopped"


def test_cuda_on_a_cluster_without_gpus_is_refused(registry, data):
    with pytest.raises(ValueError, match="this Ray cluster has no GPU"):
        registry.submit(spec(device="cuda"), data, "v1")


# ---------------------------------------------------------------------------------------------- other servers
@pytest.mark.slow
def test_another_server_reattaches_by_id_and_drives_the_run(registry, ray_address, data):
    other = RunRegistry(RegistryConfig(backend="ray", ray_address=ray_address, grace_s=60))
    try:
        assert other.attach("no-such-run", "v2") is None
        run_id = registry.submit(spec("shared", epochs=400), data, "v1")
        seen = other.attach(run_id, "v2")
        assert seen is not None and seen.spec == registry.view(run_id).spec
        assert other.runs_of("v2")[0].id == run_id and registry.runs_of("v2") == []
        assert wait_until(lambda: other.view(run_id).state == "running" and records(other, run_id) > 3)

        other.pause(run_id)                                  # driven from the other server…
        assert wait_state(registry, run_id, ("paused",), 10), "…the first one sees it"
        other.resume(run_id)
        assert wait_state(registry, run_id, ("running",), 10)
        other.stop(run_id, reason="stopped on the other server")
        for reg in (registry, other):
            view = wait_state(reg, run_id, ("stopped",))
            assert view and view.stop_reason == "stopped on the other server" and view.model is not None

        third = RunRegistry(RegistryConfig(backend="ray", ray_address=ray_address))   # a run that has ended
        late = third.attach(run_id, "v3")
        assert late is not None
        view = wait_state(third, run_id, ("stopped",), 30)
        assert view and view.snapshot.records == registry.view(run_id).snapshot.records
        assert view.checkpoint_bytes == registry.view(run_id).checkpoint_bytes
        third.shutdown()
    finally:
        other.shutdown()


@pytest.mark.slow
def test_a_series_is_found_from_another_server(registry, ray_address, data):
    series_id = registry.submit_series([spec("s1", epochs=2), spec("s2", epochs=2)], data, "v1")
    other = RunRegistry(RegistryConfig(backend="ray", ray_address=ray_address))
    try:
        views = other.attach_series(series_id, "v2")
        assert views is not None and [v.spec.name for v in views] == ["s1", "s2"]
        ids = [v.id for v in views]
        assert wait_all(registry, ids, ("finished",)), [registry.view(i).state for i in ids]
        assert wait_all(other, ids, ("finished",), 30), [other.view(i).state for i in ids]
        first, second = (registry.view(i).snapshot.records for i in ids)
        assert first and second
    finally:
        other.shutdown()


@pytest.mark.slow
def test_an_unwatched_run_stops_itself(ray_address, data):
    reg = RunRegistry(RegistryConfig(backend="ray", ray_address=ray_address, grace_s=2.0))
    try:
        run_id = reg.submit(spec("forgotten", epochs=400), data, "v1")
        view = wait_state(reg, run_id, ("stopped", "finished", "failed"))
        assert view and view.state == "stopped" and view.stop_reason == "nobody watched it for 2 s"
    finally:
        reg.shutdown()


def test_the_data_set_goes_into_the_object_store_once(ray_address, data):
    conn = cluster.connect(ray_address)
    ref = conn.put(data)
    assert conn.put(data) is ref
    other = tiny_data(n_train=40, n_test=10)
    assert conn.put(other) is not ref
    train_images = ray.get(conn.put(data))[0][0]
    assert train_images.shape == (400, 28, 28) and (train_images == data.train.images.numpy()).all()

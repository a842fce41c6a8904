"""The run registry without Streamlit: ids, the caps and the FIFO queue, one run per visitor, grace stops,
retention, stopping a queued run, series of runs (studies), thread safety, and the settings that configure it."""
from __future__ import annotations

import sys
import threading
import time

import numpy as np
import pytest

import aecore.runs.registry as registry_module
from aecore.engine.data import DataConfig
from aecore.engine.models import ModelConfig
from aecore.runs import HOSTED_LIMITS, RegistryConfig, RunRefused, RunRegistry, RunSpec, Snapshot
from aecore.engine.train import TrainConfig

from idx_helpers import tiny_data

WAIT = 90.0


@pytest.fixture(scope="module")
def data():
    return tiny_data(n_train=200, n_test=50)


def spec(name="tiny", hidden=8, **train) -> RunSpec:
    cfg = dict(epochs=2, batch_size=20, log_every=2, device="cpu")
    cfg.update(train)
    return RunSpec(name=name, model=ModelConfig(family="shallow", hidden=(hidden,)), data=DataConfig(),
                   train=TrainConfig(**cfg))


class Clock:
    """A clock the test moves by hand."""
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class FakeJob:
    """Stands in for TrainingJob: starts when told, ends when the test says so, records what it was asked."""
    instances: list["FakeJob"] = []
    guards_itself, stop_reason = False, None

    def __init__(self, spec, data, threads=1, on_end=None, keep=None, resume=None):
        self.spec, self.on_end = spec, on_end
        self.device = "cuda:0" if spec.train.device == "cuda" else "cpu"
        self.state, self.model, self.meta, self.checkpoint_bytes = "ready", None, None, None
        FakeJob.instances.append(self)

    def start(self):
        assert self.state == "ready", "a job is started once"
        self.state = "running"

    def pause(self):
        if self.state == "running":
            self.state = "paused"

    def resume(self):
        if self.state == "paused":
            self.state = "running"

    def stop(self, reason=None):
        if self.state == "ready":
            self.state = "stopped"
        elif self.state in ("running", "paused"):
            self.end("stopped")

    def end(self, state="finished"):
        self.state = state
        self.on_end()

    def join(self, timeout=None):
        return True

    def snapshot(self):
        return Snapshot(state=self.state, records=(), timeline=(), originals=np.zeros((8, 28, 28)), device=self.device)


@pytest.fixture
def fake(monkeypatch):
    FakeJob.instances = []
    monkeypatch.setattr(registry_module, "TrainingJob", FakeJob)
    return FakeJob.instances


def make(clock=None, **cfg) -> RunRegistry:
    return RunRegistry(RegistryConfig(**{"max_runs": 2, "max_gpu_runs": 1, "backend": "threads", **cfg}),
                       clock=clock or Clock(), sweep_every=None)


def states(reg, ids):
    return [reg.view(i).state for i in ids]


# ---------------------------------------------------------------------------------------------- ids and views
def test_ids_are_random_unguessable_tokens(fake, data):
    reg = make(max_runs=50)
    ids = [reg.submit(spec(), data, f"v{i}") for i in range(40)]
    assert len(set(ids)) == 40
    assert all(len(i) >= 22 and i.replace("-", "").replace("_", "").isalnum() for i in ids)   # 128 bits, URL-safe
    assert reg.view("no-such-run") is None and reg.attach("no-such-run", "v0") is None
    assert not reg.heartbeat("no-such-run")


def test_a_visitor_sees_only_its_own_runs(fake, data):
    reg = make(max_runs=4)
    a = reg.submit(spec("a"), data, "alice")
    b = reg.submit(spec("b"), data, "bob")
    assert [v.id for v in reg.runs_of("alice")] == [a]
    assert [v.id for v in reg.runs_of("bob")] == [b]
    assert reg.runs_of("mallory") == []
    # Knowing the id (the link) is what lets another visitor see the run: it then lists it too.
    assert reg.attach(a, "alice-reloaded").id == a
    assert [v.id for v in reg.runs_of("alice-reloaded")] == [a]
    assert [v.id for v in reg.runs_of("bob")] == [b]


# ---------------------------------------------------------------------------------------------- cap and queue
def test_cap_and_fifo_queue(fake, data):
    reg = make(max_runs=2)
    ids = [reg.submit(spec(f"r{i}"), data, f"v{i}") for i in range(5)]
    assert states(reg, ids) == ["running", "running", "queued", "queued", "queued"]
    assert [reg.view(i).position for i in ids[2:]] == [1, 2, 3]
    assert reg.counts() == {"running": 2, "queued": 3, "ended": 0, "kept": 5}
    fake[1].end()                                  # a slot frees: the oldest queued run starts, by itself
    assert states(reg, ids) == ["running", "finished", "running", "queued", "queued"]
    assert [reg.view(i).position for i in ids[3:]] == [1, 2]
    fake[0].end()
    fake[2].end()
    assert states(reg, ids) == ["finished"] * 3 + ["running", "running"]


def test_queue_estimates_grow_with_the_place_in_line(fake, data):
    reg = make(max_runs=1)
    ids = [reg.submit(spec(f"r{i}"), data, f"v{i}") for i in range(4)]
    waits = [reg.view(i).starts_in_s for i in ids[1:]]
    assert all(w is not None and w > 0 for w in waits)
    assert waits[0] < waits[1] < waits[2]


def test_paused_run_keeps_its_slot(fake, data):
    reg = make(max_runs=1)
    a, b = reg.submit(spec("a"), data, "v1"), reg.submit(spec("b"), data, "v2")
    reg.pause(a)
    assert states(reg, [a, b]) == ["paused", "queued"]
    reg.resume(a)
    assert states(reg, [a, b]) == ["running", "queued"]


def test_gpu_runs_have_their_own_cap(fake, data):
    reg = make(max_runs=1, max_gpu_runs=1)
    cpu1 = reg.submit(spec("c1"), data, "v1")
    gpu1 = reg.submit(spec("g1", device="cuda"), data, "v2")
    gpu2 = reg.submit(spec("g2", device="cuda"), data, "v3")
    cpu2 = reg.submit(spec("c2"), data, "v4")
    # A waiting GPU run does not hold up a CPU run behind it, nor the other way round.
    assert states(reg, [cpu1, gpu1, gpu2, cpu2]) == ["running", "running", "queued", "queued"]
    assert reg.view(gpu2).position == 1 and reg.view(cpu2).position == 1
    fake[1].end()
    assert states(reg, [cpu1, gpu1, gpu2, cpu2]) == ["running", "finished", "running", "queued"]


def test_one_run_per_visitor(fake, data):
    reg = make(max_runs=4)
    first = reg.submit(spec(), data, "alice")
    with pytest.raises(RunRefused, match="already have a run in progress"):
        reg.submit(spec(), data, "alice")
    reg.stop(first)
    assert reg.view(first).state == "stopped"
    reg.submit(spec(), data, "alice")                   # the first has ended: a new one is fine


def test_a_run_shown_as_finished_no_longer_holds_its_visitor(fake, data):
    """Between a job's end (its snapshot says "finished", the page says so) and the moment its end frees the slot,
    the visitor's next run is taken: it queues for that moment, then starts."""
    reg = make(max_runs=1)
    first = reg.submit(spec(), data, "alice")
    job = fake[0]
    job.state = "finished"                              # ended; its worker has not yet told the registry
    assert reg.view(first).state == "finished"
    second = reg.submit(spec(), data, "alice")
    assert states(reg, [first, second]) == ["finished", "queued"]   # the slot is still the first's
    job.on_end()
    assert states(reg, [second]) == ["running"]


def test_one_queued_run_per_visitor(fake, data):
    reg = make(max_runs=1)
    reg.submit(spec(), data, "bob")
    reg.submit(spec(), data, "alice")
    with pytest.raises(RunRefused, match="already have a run queued"):
        reg.submit(spec(), data, "alice")


def test_stopping_a_queued_run_takes_it_out_of_the_queue(fake, data):
    reg = make(max_runs=1)
    a, b, c = (reg.submit(spec(n), data, n) for n in "abc")
    reg.stop(b)
    assert states(reg, [a, b, c]) == ["running", "stopped", "queued"]
    assert reg.view(c).position == 1
    fake[0].end()
    assert states(reg, [a, b, c]) == ["finished", "stopped", "running"]
    assert fake[1].state == "stopped"           # never started


def test_full_queue_refuses(fake, data):
    reg = make(max_runs=1, max_queued=2)
    for v in ("a", "b", "c"):
        reg.submit(spec(), data, v)
    with pytest.raises(RunRefused, match="queue is full"):
        reg.submit(spec(), data, "d")


# ---------------------------------------------------------------------------------------------- grace and retention
def test_unwatched_runs_are_stopped_after_the_grace_time(fake, data):
    clock = Clock()
    reg = make(clock, max_runs=1, grace_s=120)
    watched, unwatched, queued = (reg.submit(spec(n), data, n) for n in ("w", "u", "q"))
    reg.stop(unwatched)          # make room so that "u" is not the only running one
    unwatched = reg.submit(spec("u2"), data, "u")
    clock.now += 100
    reg.heartbeat(watched)
    reg.heartbeat(queued)
    clock.now += 30               # 130 s since "u2" was last seen, 30 s since the others
    reg.sweep()
    assert reg.view(unwatched).state == "stopped"
    assert "nobody watched it for 120 s" in reg.view(unwatched).stop_reason
    assert reg.view(watched).state == "running" and reg.view(queued).state == "queued"
    clock.now += 121              # nobody watches any more: the running one stops, the queued one leaves
    reg.sweep()
    assert states(reg, [watched, queued]) == ["stopped", "stopped"]


def test_ended_runs_are_dropped_after_the_retention_time(fake, data):
    clock = Clock()
    reg = make(clock, retention_s=1800, grace_s=10_000)
    a = reg.submit(spec(), data, "a")
    fake[0].end()
    clock.now += 1000
    reg.heartbeat(a)              # someone looked at the finished run: its retention counts from then
    clock.now += 1700
    reg.sweep()
    assert reg.view(a) is not None
    clock.now += 101
    reg.sweep()
    assert reg.view(a) is None and reg.runs_of("a") == []


def test_registry_holds_a_bounded_number_of_runs(fake, data):
    reg = make(max_runs=3, max_kept=4)
    ids = []
    for i in range(10):
        ids.append(reg.submit(spec(), data, f"v{i}"))
        fake[-1].end()
    assert reg.counts()["kept"] == 4
    assert [reg.view(i) is not None for i in ids] == [False] * 6 + [True] * 4   # the oldest ended went first
    active = [reg.submit(spec(), data, f"w{i}") for i in range(6)]                # active runs always stay
    assert all(reg.view(i) is not None for i in active)


# ---------------------------------------------------------------------------------------------- limits
def test_hosted_limits_name_the_limit(fake, data):
    reg = make(limits=HOSTED_LIMITS, profile="hosted")
    with pytest.raises(RunRefused, match=r"at most 20 epochs \(asked for 50\)"):
        reg.submit(spec(epochs=50), data, "a")
    with pytest.raises(RunRefused, match=r"at most 2,000,000 parameters \(this model has 3,138,784\)"):
        reg.submit(spec(hidden=2000), data, "a")
    with pytest.raises(RunRefused, match="batch size of at most 1024"):
        reg.submit(spec(batch_size=4096), data, "a")
    assert reg.counts()["kept"] == 0
    reg.submit(spec(hidden=1000, epochs=20), data, "a")       # the largest tutorial model fits
    assert make().submit(spec(epochs=50, hidden=2000), data, "b")   # the local profile keeps every choice open


# ---------------------------------------------------------------------------------------------- thread safety
def test_many_concurrent_starts_respect_the_cap_and_the_one_run_rule(fake, data):
    reg = make(max_runs=3, max_queued=1000)
    barrier = threading.Barrier(24)
    accepted, refused = [], []

    def visitor(i):
        barrier.wait()
        for _ in range(3):                     # each visitor tries three times at once: one must get through
            try:
                accepted.append(reg.submit(spec(), data, f"v{i}"))
            except RunRefused:
                refused.append(i)

    threads = [threading.Thread(target=visitor, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert len(accepted) == 24 and len(set(accepted)) == 24 and len(refused) == 48
    assert reg.counts() == {"running": 3, "queued": 21, "ended": 0, "kept": 24}
    positions = sorted(reg.view(i).position for i in accepted if reg.view(i).state == "queued")
    assert positions == list(range(1, 22))
    assert sum(j.state == "running" for j in fake) == 3


# ---------------------------------------------------------------------------------------------- series
def series_states(reg, series_id):
    return [v.state for v in reg.series(series_id)]


def test_a_series_trains_one_run_at_a_time(fake, data):
    reg = make(max_runs=2)
    sid = reg.submit_series([spec("a"), spec("b"), spec("c")], data, "alice")
    views = reg.series(sid)
    assert [v.spec.name for v in views] == ["a", "b", "c"] and {v.series for v in views} == {sid}
    assert series_states(reg, sid) == ["running", "queued", "queued"]
    assert [j.state for j in fake] == ["running", "ready", "ready"]      # a free slot stays free for others
    # Waiting runs have no place in the queue yet: they say how many runs of the series are ahead.
    assert [(v.position, v.series_ahead) for v in views[1:]] == [(None, 1), (None, 2)]
    assert 0 < views[1].starts_in_s < views[2].starts_in_s
    bob = reg.submit(spec("bob"), data, "bob")
    assert reg.view(bob).state == "running"
    fake[0].end()                                          # the next run starts when the one before it ends
    assert series_states(reg, sid) == ["finished", "running", "queued"]
    assert reg.series(sid)[2].series_ahead == 1
    fake[1].end("failed")                                  # a failed run is an outcome: the series goes on
    assert series_states(reg, sid) == ["finished", "failed", "running"]
    fake[2].end()
    assert series_states(reg, sid) == ["finished", "failed", "finished"]
    assert reg.counts() == {"running": 1, "queued": 0, "ended": 3, "kept": 4}


def test_the_next_run_of_a_series_joins_the_end_of_the_queue(fake, data):
    """A study shares the slots: each of its runs queues behind the visitors who came while the previous ran."""
    reg = make(max_runs=1)
    sid = reg.submit_series([spec("a"), spec("b")], data, "alice")
    bob, carol = reg.submit(spec("bob"), data, "bob"), reg.submit(spec("carol"), data, "carol")
    assert [reg.view(bob).position, reg.view(carol).position] == [1, 2]
    fake[0].end()
    assert reg.view(bob).state == "running"
    b = reg.series(sid)[1]
    assert (b.state, b.position, b.series_ahead) == ("queued", 2, None)
    assert reg.view(carol).position == 1
    fake[2].end()                                          # bob's run
    fake[3].end()                                          # carol's run
    assert series_states(reg, sid) == ["finished", "running"]


def test_stopping_any_run_of_a_series_stops_the_rest(fake, data):
    reg = make(max_runs=2)
    sid = reg.submit_series([spec("a"), spec("b"), spec("c")], data, "alice")
    fake[0].end()
    running = reg.series(sid)[1]
    reg.stop(running.id)                                   # the page's Stop button
    views = reg.series(sid)
    assert [v.state for v in views] == ["finished", "stopped", "stopped"]
    assert [v.stop_reason for v in views] == [None, None, "its series was stopped at b"]
    assert fake[2].state == "stopped"                      # never started
    assert reg.counts()["running"] == 0
    # A Stop that arrives just after the run it names has ended still stops the series.
    sid = reg.submit_series([spec("d"), spec("e")], data, "alice")
    first = reg.series(sid)[0]
    fake[3].end()
    reg.stop(first.id)
    assert series_states(reg, sid) == ["finished", "stopped"]
    assert fake[4].state == "stopped"


def test_a_visitor_with_a_series_in_progress_cannot_start_more(fake, data):
    reg = make(max_runs=4)
    sid = reg.submit_series([spec("a"), spec("b")], data, "alice")
    with pytest.raises(RunRefused, match=r"already have a series of 2 runs in progress \(0 ended, next: a\)"):
        reg.submit(spec(), data, "alice")
    fake[0].end()
    with pytest.raises(RunRefused, match=r"series of 2 runs in progress \(1 ended, next: b\)"):
        reg.submit_series([spec("c")], data, "alice")
    fake[1].end()
    single = reg.submit(spec("single"), data, "alice")     # the series has ended
    with pytest.raises(RunRefused, match="already have a run in progress"):
        reg.submit_series([spec("c")], data, "alice")
    reg.stop(single)
    assert reg.submit_series([spec("c")], data, "alice")


def test_watching_one_run_watches_the_series_and_a_grace_stop_stops_it_all(fake, data):
    clock = Clock()
    reg = make(clock, max_runs=1, grace_s=120)
    sid = reg.submit_series([spec("a"), spec("b"), spec("c")], data, "alice")
    runs = reg.series(sid)
    reg.heartbeat(runs[0].id, "alice-tab")                 # the page watches the run that trains
    clock.now += 500
    reg.sweep()
    assert series_states(reg, sid) == ["running", "queued", "queued"]
    reg.unwatch("alice-tab")                               # the tab closed
    clock.now += 121
    reg.sweep()
    views = reg.series(sid)
    assert [v.state for v in views] == ["stopped"] * 3
    assert all(v.stop_reason == "nobody watched it for 120 s" for v in views)


def test_a_series_is_found_again_by_its_id(fake, data):
    reg = make(max_runs=2)
    sid = reg.submit_series([spec("a"), spec("b")], data, "alice")
    assert len(sid) >= 22 and sid not in {v.id for v in reg.series(sid)}
    assert reg.series("no-such-series") is None and reg.attach_series("no-such-series", "x") is None
    views = reg.attach_series(sid, "alice-reloaded")       # a reload: a new session opens ?study=<id>
    assert [v.id for v in views] == [v.id for v in reg.series(sid)]
    assert [v.spec.name for v in reg.runs_of("alice-reloaded")] == ["a", "b"]
    with pytest.raises(RunRefused, match="series of 2 runs in progress"):
        reg.submit(spec(), data, "alice-reloaded")         # the series is its one piece of work too


def test_a_series_is_kept_as_a_whole(fake, data):
    clock = Clock()
    reg = make(clock, max_runs=1, retention_s=1800, grace_s=10_000, max_kept=3)
    sid = reg.submit_series([spec("a"), spec("b")], data, "alice")
    fake[0].end()
    clock.now += 2000                                      # "a" ended long ago, but its series is active
    for i in range(4):                                     # other visitors' runs come and go
        reg.submit(spec(f"o{i}"), data, f"o{i}")
        fake[-1].end()
    reg.sweep()
    assert series_states(reg, sid) == ["finished", "running"]
    fake[1].end()
    clock.now += 1000
    reg.sweep()
    assert series_states(reg, sid) == ["finished", "finished"]   # retention counts from the series' end
    clock.now += 801
    reg.sweep()
    assert reg.series(sid) is None


def test_series_refusals_are_named(fake, data):
    reg = make(limits=HOSTED_LIMITS, profile="hosted", max_queued=3)
    with pytest.raises(ValueError, match="at least one run"):
        reg.submit_series([], data, "a")
    other = RunSpec("other", spec().model, DataConfig(classes=(0,)), spec().train)
    with pytest.raises(ValueError, match="same data"):
        reg.submit_series([spec(), other], data, "a")
    with pytest.raises(RunRefused, match=r"run 2 \(big\): .*at most 20 epochs \(asked for 50\)"):
        reg.submit_series([spec(), spec("big", epochs=50)], data, "a")
    with pytest.raises(RunRefused, match=r"queue is full \(0 runs waiting, at most 3\)"):
        reg.submit_series([spec()] * 4, data, "a")
    assert reg.counts()["kept"] == 0 and fake == []


# ---------------------------------------------------------------------------------------------- real training
def wait_state(reg, run_id, wanted, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if reg.view(run_id).state in wanted:
            return reg.view(run_id)
        time.sleep(0.02)
    pytest.fail(f"run stayed {reg.view(run_id).state}, wanted {wanted}")


BACKENDS = pytest.mark.parametrize("backend", [pytest.param("processes", marks=pytest.mark.slow), "threads"])


@BACKENDS
def test_real_runs_queue_and_start_by_themselves(data, backend):
    reg = RunRegistry(RegistryConfig(max_runs=1, backend=backend), sweep_every=None)
    try:
        a = reg.submit(spec("a", epochs=3), data, "v1")
        b = reg.submit(spec("b", epochs=2), data, "v2")
        assert reg.view(b).state == "queued" and reg.view(b).snapshot.records == ()
        va = wait_state(reg, a, ("finished",))
        vb = wait_state(reg, b, ("finished",))
        assert va.model is not None and vb.model is not None and vb.checkpoint_bytes
        assert vb.snapshot.last.step == 20                          # 2 epochs of 10 steps
        losses = [m.train_loss for m in va.snapshot.records]
        assert losses[-1] < losses[0]
    finally:
        reg.shutdown(wait=WAIT)


@BACKENDS
def test_real_run_pause_resume_stop_and_shutdown(data, backend):
    reg = RunRegistry(RegistryConfig(max_runs=1, backend=backend), sweep_every=None)
    a = reg.submit(spec("a", epochs=1000, batch_size=1), data, "v1")
    b = reg.submit(spec("b"), data, "v2")
    deadline = time.monotonic() + WAIT
    while not reg.view(a).snapshot.records:          # trained a few steps (a process takes seconds to start)
        assert time.monotonic() < deadline and reg.view(a).active, reg.view(a).snapshot.error
        time.sleep(0.05)
    reg.pause(a)
    assert reg.view(a).state == "paused"
    time.sleep(0.3)                                  # the step in flight lands; then nothing more
    paused = len(reg.view(a).snapshot.records)
    time.sleep(0.7)
    assert len(reg.view(a).snapshot.records) == paused
    reg.resume(a)
    assert reg.view(a).state == "running"
    while len(reg.view(a).snapshot.records) == paused:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    reg.shutdown(wait=WAIT)
    assert reg.view(a).state == "stopped" and reg.view(b).state == "stopped"
    assert reg.view(a).model is not None              # a stopped run keeps what it learned
    assert reg.view(b).stop_reason == "the server shut down"


@BACKENDS
def test_real_series_trains_its_runs_in_turn(data, backend):
    reg = RunRegistry(RegistryConfig(max_runs=2, backend=backend), sweep_every=None)
    try:
        sid = reg.submit_series([spec("a", epochs=2), spec("b", epochs=1), spec("c", epochs=1)], data, "v1")
        ids = [v.id for v in reg.series(sid)]
        views = [wait_state(reg, i, ("finished",)) for i in ids]
        assert [v.snapshot.last.step for v in views] == [20, 10, 10]
        assert all(v.model is not None and v.snapshot.result["figures"]["test_loss"] > 0 for v in views)
        runs = [reg._runs[i] for i in ids]
        assert runs[0].ended <= runs[1].started and runs[1].ended <= runs[2].started   # never two at once
    finally:
        reg.shutdown(wait=WAIT)


def test_sweeper_thread_stops_an_unwatched_run(data):
    reg = RunRegistry(RegistryConfig(max_runs=1, grace_s=0.5, backend="threads"), sweep_every=0.1)
    try:
        a = reg.submit(spec("a", epochs=1000, batch_size=1), data, "v1")
        view = wait_state(reg, a, ("stopped",), timeout=30)
        assert "nobody watched" in view.stop_reason
    finally:
        reg.shutdown(wait=WAIT)


# ---------------------------------------------------------------------------------------------- settings
def test_settings_from_environment_or_secrets():
    cfg = RegistryConfig.from_settings({"AELAB_MAX_RUNS": "3", "AELAB_RUN_GRACE_S": "30",
                                        "AELAB_RUN_RETENTION_S": "60", "AELAB_PROFILE": "hosted"})
    assert (cfg.max_runs, cfg.grace_s, cfg.retention_s, cfg.profile) == (3, 30.0, 60.0, "hosted")
    assert cfg.limits == HOSTED_LIMITS
    default = RegistryConfig.from_settings({})
    assert default.max_runs >= 1 and default.profile == "local" and default.limits.max_epochs is None
    assert (default.grace_s, default.retention_s) == (120.0, 1800.0)
    assert RegistryConfig.from_settings({"AELAB_MAX_RUNS": 2}).max_runs == 2    # secrets give ints
    assert default.backend == "processes"
    assert RegistryConfig.from_settings({"AELAB_RUN_BACKEND": "threads"}).backend == "threads"


@pytest.mark.parametrize("key, value, message", [
    ("AELAB_MAX_RUNS", "0", "AELAB_MAX_RUNS must be an integer >= 1, got '0'"),
    ("AELAB_MAX_RUNS", "two", "AELAB_MAX_RUNS must be an integer >= 1, got 'two'"),
    ("AELAB_RUN_GRACE_S", "-5", "AELAB_RUN_GRACE_S must be a number >= 0.1"),
    ("AELAB_PROFILE", "cloud", "AELAB_PROFILE must be one of ('local', 'hosted')"),
    ("AELAB_RUN_BACKEND", "gpu", "AELAB_RUN_BACKEND must be one of ('processes', 'threads', 'ray')"),
])
def test_bad_settings_are_named(key, value, message):
    with pytest.raises(ValueError) as e:
        RegistryConfig.from_settings({key: value})
    assert message in str(e.value)


def test_ray_is_chosen_by_its_address():
    assert RegistryConfig.from_settings({"AELAB_RAY_ADDRESS": "local"}).backend == "ray"
    cfg = RegistryConfig.from_settings({"AELAB_RAY_ADDRESS": "10.0.0.5:6379", "AELAB_RUN_BACKEND": "ray"})
    assert (cfg.backend, cfg.ray_address) == ("ray", "10.0.0.5:6379")
    assert RegistryConfig.from_settings({"AELAB_RUN_BACKEND": "ray"}).ray_address == "local"
    with pytest.raises(ValueError, match="AELAB_RAY_ADDRESS='auto' asks for the ray backend but AELAB_RUN_BACKEND "
                                         "is 'threads'"):
        RegistryConfig.from_settings({"AELAB_RAY_ADDRESS": "auto", "AELAB_RUN_BACKEND": "threads"})


class _FakeRay:
    """What `Cluster` reads of Ray to size a run: the cluster's resources."""
    def __init__(self, gpus):
        self.gpus = gpus

    def remote(self, cls):          # an actor class whose instances answer at once
        class Handle:
            def __getattr__(self, name):
                return type("Method", (), {"remote": staticmethod(lambda *a: None)})()

        return type("ActorClass", (), {"options": lambda self, **kw: self, "remote": lambda self: Handle()})()

    def get(self, value):
        return value

    def cluster_resources(self):
        return {"CPU": 8.0, "GPU": float(self.gpus), "node:10.0.0.1": 1.0, "node:10.0.0.2": 1.0,
                "node:__internal_head__": 1.0}

    def available_resources(self):
        return {"CPU": 3.0, "GPU": float(self.gpus)}


def test_a_ray_run_asks_for_a_gpu_when_it_trains_on_cuda():
    from aecore.runs.cluster import Cluster
    with_gpus, without = Cluster(_FakeRay(gpus=2), "x"), Cluster(_FakeRay(gpus=0), "x")
    assert [with_gpus.gpus_for(d) for d in ("auto", "cuda", "cpu")] == [1, 1, 0]
    assert [without.gpus_for(d) for d in ("auto", "cpu")] == [0, 0]
    with pytest.raises(ValueError, match="device 'cuda' was asked for but this Ray cluster has no GPU"):
        without.gpus_for("cuda")
    assert with_gpus.resources() == {"cpus": 8.0, "gpus": 2.0, "free_cpus": 3.0, "free_gpus": 2.0, "nodes": 2}


def test_ray_asked_for_without_ray_installed_names_the_install_command(monkeypatch):
    """Without Ray (here made unimportable; in CI's CPU environment it is not installed) the registry refuses to
    start with one message that says how to install it; the other backends work as before."""
    from aecore.runs import RayUnavailable, cluster
    monkeypatch.setitem(sys.modules, "ray", None)        # `import ray` raises ImportError
    monkeypatch.setattr(cluster, "_CLUSTER", None)
    with pytest.raises(RayUnavailable) as e:
        RunRegistry(RegistryConfig.from_settings({"AELAB_RAY_ADDRESS": "local"}), sweep_every=None)
    assert "Ray is not installed" in str(e.value) and "pip install -r requirements-ray.txt" in str(e.value)
    RunRegistry(RegistryConfig(backend="threads"), sweep_every=None).shutdown()


def test_the_registry_shortens_the_interpreter_switch_interval():
    """Training threads beside a busy UI thread collapse with Python's default 5 ms switch interval."""
    before = sys.getswitchinterval()
    try:
        RunRegistry(RegistryConfig(switch_interval_s=0.0003), sweep_every=None)
        assert sys.getswitchinterval() == pytest.approx(0.0003)
        with pytest.raises(ValueError, match="switch_interval_s"):
            RegistryConfig(switch_interval_s=0)
    finally:
        sys.setswitchinterval(before)


def test_a_failing_training_process_is_reported(data, monkeypatch):
    """A training process that dies without a word (killed, out of memory) fails the run with its exit code."""
    import aecore.runs.pool as pool_module
    monkeypatch.setattr(pool_module, "_serve", _die)
    reg = RunRegistry(RegistryConfig(max_runs=1), sweep_every=None)
    try:
        a = reg.submit(spec("a"), data, "v1")
        view = wait_state(reg, a, ("failed",))
        assert "the training process ended unexpectedly (exit code 3)" in view.snapshot.error
        deadline = time.monotonic() + 10
        while reg.counts()["running"] and time.monotonic() < deadline:   # its slot frees a moment after "failed"
            time.sleep(0.02)
        assert reg.counts()["running"] == 0                         # its slot is free again
    finally:
        reg.shutdown(wait=WAIT)


def _die(*args):
    import os
    os._exit(3)

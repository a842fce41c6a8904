"""The run store against both back ends (SQLite in a folder; PostgreSQL when AELAB_TEST_POSTGRES names a server,
as .ci/run does): runs kept across a restart and shown again, a crash mid-write, resume with the same losses as an
uninterrupted run, a server killed with SIGKILL mid-run and restarted on the same store, another server's live
runs left alone, retention, the command line, and the refusals (a damaged database, a full or read-only store)."""
from __future__ import annotations

import errno
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from aecore.engine import trainstate
from aecore.engine.data import DataConfig
from aecore.engine.models import ModelConfig
from aecore.engine.train import TrainConfig, evaluate
from aecore.runs import RegistryConfig, RunRefused, RunRegistry, RunSpec
from aecore.runs.store import Retention, Store, StoreError, store as store_module
from aecore.runs.store.blobs import FileBlobs

from idx_helpers import tiny_data

REPO = Path(__file__).resolve().parent.parent
WAIT = 90.0
# location (a fresh store: a SQLite folder, or a throwaway PostgreSQL database): tests/conftest.py


@pytest.fixture(scope="module")
def data():
    return tiny_data(n_train=600, n_test=50)


def spec(name="tiny", **train) -> RunSpec:
    cfg = dict(epochs=3, batch_size=20, log_every=3, device="cpu")
    cfg.update(train)
    return RunSpec(name=name, model=ModelConfig(family="deep", hidden=(32, 8), dropout=0.1), data=DataConfig(),
                   train=TrainConfig(**cfg))


def registry(location, **cfg) -> RunRegistry:
    return RunRegistry(RegistryConfig(backend="threads", max_runs=1, store=location, **cfg))


def until(predicate, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("timed out")


def ended(reg: RunRegistry, run_id: str):
    return until(lambda: (v := reg.view(run_id)) is not None and not v.active and v)


# ---------------------------------------------------------------------------------------------- kept and shown
def test_a_finished_run_is_listed_and_shown_after_a_restart(location, data):
    first = registry(location)
    run_id = first.submit(spec(), data, "visitor-a")
    before = ended(first, run_id)
    assert before.state == "finished"
    first.shutdown(wait=10)

    second = registry(location)
    try:
        assert second.runs_of("visitor-b") == []                    # never anyone else's
        (after,) = second.runs_of("visitor-a")
        assert after.id == run_id and after.state == "finished"
        assert [m.train_loss for m in after.snapshot.records] == [m.train_loss for m in before.snapshot.records]
        assert [e for e, _ in after.snapshot.timeline] == [1, 2, 3]
        assert after.snapshot.originals.shape == before.snapshot.originals.shape
        assert after.checkpoint_bytes == before.checkpoint_bytes
        assert after.snapshot.result["figures"] == before.snapshot.result["figures"]
        # the model itself came back: its test loss is the figure the run reported
        assert evaluate(after.model, data.test.images) == pytest.approx(before.snapshot.result["figures"]["test_loss"],
                                                                         rel=1e-6)
        assert second.attach(run_id, "visitor-c").state == "finished"     # ?run=<id> after the restart
        assert [v.id for v in second.runs_of("visitor-c")] == [run_id]
    finally:
        second.shutdown()


def test_an_interrupted_run_resumes_with_the_losses_of_an_uninterrupted_one(location, data):
    """Train once straight through; train again, stop the server after some epochs (a redeploy), restart it on the
    same store, resume: every loss of the resumed run, the first step after the break included, is the
    uninterrupted run's, bit for bit (same optimiser moments, same shuffling, same dropout)."""
    run = spec("resumable", epochs=12, log_every=1, noise="mask", noise_level=0.2)
    straight = RunRegistry(RegistryConfig(backend="threads"))
    reference = ended(straight, straight.submit(run, data, "v"))
    straight.shutdown()

    first = registry(location)
    run_id = first.submit(run, data, "v")
    until(lambda: first.keeper.store.get(run_id).epochs_done >= 2)
    first.pause(run_id)
    first.shutdown(wait=10)                        # the server stops mid-run

    second = registry(location)
    try:
        stopped = second.attach(run_id, "v")
        k = max(m.epoch for m in stopped.snapshot.records if m.epoch_end)
        assert stopped.state == "interrupted" and 2 <= k < 12
        assert json.loads(cli("list", "--store", location).stdout)["epochs_done"] == k
        assert second.keeper.store.get(run_id).state == "interrupted"
        assert stopped.model is not None and len(stopped.snapshot.timeline) == k
        assert second.continue_run(run_id, data, "v") == run_id
        resumed = ended(second, run_id)
        assert resumed.state == "finished"
        assert [(m.step, m.train_loss) for m in resumed.snapshot.records] == \
            [(m.step, m.train_loss) for m in reference.snapshot.records]
        assert resumed.snapshot.result["figures"] == reference.snapshot.result["figures"]
        kept = until(lambda: (s := second.keeper.store.get(run_id)).state == "finished" and s)   # written as it ends
        assert (kept.epochs_done, kept.state_blob) == (12, None)                    # no state left to resume
        with pytest.raises(RunRefused, match="only an interrupted run"):
            second.continue_run(run_id, data, "v")
    finally:
        second.shutdown()


SERVER = textwrap.dedent("""
    import sys, time
    from idx_helpers import tiny_data
    from aecore.engine.data import DataConfig
    from aecore.engine.models import ModelConfig
    from aecore.engine.train import TrainConfig
    from aecore.runs import RegistryConfig, RunRegistry, RunSpec
    registry = RunRegistry(RegistryConfig(backend="processes", store=sys.argv[1]))
    spec = RunSpec("killed", ModelConfig(family="shallow", hidden=(16,)), DataConfig(),
                   TrainConfig(epochs=40, batch_size=20, log_every=5, device="cpu"))
    run_id = registry.submit(spec, tiny_data(n_train=600, n_test=50), "visitor")
    while registry.keeper.store.get(run_id).epochs_done < 2:
        time.sleep(0.02)
    registry.pause(run_id)
    print(run_id, flush=True)
    time.sleep(600)
""")


def test_a_server_killed_with_sigkill_mid_run_comes_back_on_the_same_store(location, tmp_path, data):
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]))
    server = subprocess.Popen([sys.executable, str(script), location], stdout=subprocess.PIPE, text=True, env=env)
    try:
        run_id = server.stdout.readline().strip()
        assert run_id, "the server printed no run id"
        assert Store(location).get(run_id).state == "running"
    finally:
        os.kill(server.pid, signal.SIGKILL)        # the whole server at once: nothing is written on the way out
        server.wait(10)

    listed = [json.loads(line) for line in cli("list", "--store", location).stdout.splitlines()]
    assert [(r["id"], r["state"], r["epochs"]) for r in listed] == [(run_id, "interrupted", 40)]
    restarted = registry(location)
    try:
        view = restarted.attach(run_id, "visitor")
        assert view.state == "interrupted" and view.snapshot.records[-1].epoch_end
        assert restarted.runs_of("visitor")[0].id == run_id
        restarted.continue_run(run_id, data, "visitor")
        assert ended(restarted, run_id).state == "finished"
        assert until(lambda: restarted.keeper.store.get(run_id).state == "finished")
        assert restarted.keeper.store.get(run_id).epochs_done == 40
    finally:
        restarted.shutdown()


# ---------------------------------------------------------------------------------------------- writing safely
def test_a_crash_mid_write_leaves_the_previous_epoch(location, monkeypatch):
    store = Store(location)
    store.register()
    store.create("run-1", spec(), "v")
    store.save_epoch("run-1", 1, b"state after epoch 1", [{"epoch": 1}])

    real = store.db.execute

    def crash(sql, params=()):
        if sql.startswith("UPDATE runs SET epochs_done"):
            raise StoreError("the server died here")
        return real(sql, params)
    monkeypatch.setattr(store.db, "execute", crash)
    with pytest.raises(StoreError):
        store.save_epoch("run-1", 2, b"state after epoch 2", [{"epoch": 1}, {"epoch": 2}])
    monkeypatch.undo()
    if isinstance(store.blobs, FileBlobs):             # a half-written file never gets the real name
        def failing_rename(*args):
            raise OSError(errno.EIO, "I/O error")
        monkeypatch.setattr(os, "replace", failing_rename)
        with pytest.raises(StoreError):
            store.save_epoch("run-1", 3, b"state after epoch 3", [])
        monkeypatch.undo()
        assert not list(Path(location, "runs", "run-1").glob("*.tmp"))

    reopened = Store(location)
    kept = reopened.get("run-1")
    assert (kept.epochs_done, kept.history) == (1, [{"epoch": 1}])
    assert reopened.blob(kept.state_blob) == b"state after epoch 1"
    if not isinstance(store.blobs, FileBlobs):        # the blob went with the transaction
        assert reopened.blob("run-1/epoch-0002.state") is None


def test_a_live_run_of_another_server_is_not_taken_for_interrupted(location):
    clock = [1000.0]
    one, other = Store(location, clock=lambda: clock[0]), Store(location, clock=lambda: clock[0])
    one.register()
    other.register()
    one.create("live", spec(), "v")
    one.started("live")
    assert other.get("live").state == "running"
    assert other.sweep() == 0 and other.get("live") is not None   # retention never takes a live run
    clock[0] += store_module.LEASE_S + 1                          # `one` stops beating: it is gone
    assert other.get("live").state == "interrupted"
    other.beat(force=True)
    one.beat(force=True)
    assert other.get("live").state == "running"
    one.leave()                                                   # it shut down
    assert other.get("live").state == "interrupted"


def test_retention_by_age_count_and_size(location):
    clock = [1000.0]
    store = Store(location, Retention(max_age_s=100, max_runs=3, max_bytes=1500), clock=lambda: clock[0])
    store.register()
    for i in range(4):
        store.create(f"r{i}", spec(), "v")
        store.finish(f"r{i}", "finished", model=b"m" * 1000, timeline=b"t" * 10)
        clock[0] += 10
    store.create("live", spec(), "v")
    store.started("live")
    # 5 runs (> 3), 4,040 bytes (> 1,500): the oldest ended go until both bounds hold; the live run stays
    assert store.sweep() == 3
    assert sorted(r.id for r in store.runs()) == ["live", "r3"]
    assert store.blob("r0/model.safetensors") is None and store.blob("r3/model.safetensors") == b"m" * 1000
    clock[0] += 101                                              # r3 is now past the age limit
    assert store.sweep() == 1 and [r.id for r in store.runs()] == ["live"]
    assert [r.id for r in store.runs_of("v")] == ["live"]


# ---------------------------------------------------------------------------------------------- refusals
def test_a_damaged_database_file_is_refused_and_left_as_it_is(tmp_path, data):
    folder = tmp_path / "store"
    folder.mkdir()
    (folder / "runs.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="is not an SQLite database .* left as it is"):
        Store(folder)
    reg = registry(str(folder))                     # the server still trains, in memory, and says why
    try:
        assert "not an SQLite database" in reg.keeper.problem
        assert ended(reg, reg.submit(spec(), data, "v")).state == "finished"
    finally:
        reg.shutdown()
    assert (folder / "runs.sqlite").read_bytes() == b"this is not a database" * 100
    out = cli("list", "--store", str(folder), check=False)
    assert out.returncode == 2 and "not an SQLite database" in out.stderr


def test_a_full_disk_loses_nothing_already_stored(location, data, monkeypatch):
    reg = registry(location)
    try:
        kept = ended(reg, reg.submit(spec("kept"), data, "v"))
        until(lambda: reg.keeper.store.get(kept.id).state == "finished")

        def full(self, key, blob, db=None):
            raise StoreError("the disk of the store folder is full; runs are not kept until there is room")
        monkeypatch.setattr(type(reg.keeper.store.blobs), "put", full)
        run = ended(reg, reg.submit(spec("during"), data, "v"))
        assert run.state == "finished" and run.model is not None     # the training never noticed
        assert "full" in reg.keeper.problem
        monkeypatch.undo()
        assert reg.keeper.store.get(kept.id).state == "finished"
        assert reg.keeper.store.blob(reg.keeper.store.get(kept.id).model_blob) == kept.checkpoint_bytes
    finally:
        reg.shutdown()


def test_store_locations_that_cannot_work_say_why(tmp_path, monkeypatch):
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("x")
    with pytest.raises(StoreError, match="cannot create the store folder"):
        Store(not_a_folder)

    def read_only(*args, **kwargs):
        raise sqlite3.OperationalError("attempt to write a readonly database")
    monkeypatch.setattr(sqlite3, "connect", read_only)
    with pytest.raises(StoreError, match="is read-only"):
        Store(tmp_path / "ro")
    monkeypatch.undo()
    with pytest.raises(StoreError) as refused:
        Store("postgresql://aelab:secret-password@127.0.0.1:1/nowhere")
    assert "secret-password" not in str(refused.value) and "127.0.0.1:1/nowhere" in str(refused.value)


def test_damaged_stored_files_show_the_run_as_failed_with_the_reason(tmp_path, data):
    reg = registry(str(tmp_path / "store"))
    run_id = ended(reg, reg.submit(spec(), data, "v")).id
    reg.shutdown()
    model = tmp_path / "store" / "runs" / run_id / "model.safetensors"
    model.write_bytes(model.read_bytes()[:100])
    again = registry(str(tmp_path / "store"))
    try:
        view = again.attach(run_id, "v")
        assert view.state == "failed" and "cannot be read" in view.snapshot.error and view.model is None
    finally:
        again.shutdown()


def test_resume_refusals(location, data):
    reg = registry(location)
    try:
        with pytest.raises(RunRefused, match="does not have it"):
            reg.continue_run("no-such-run", data, "v")
        store = reg.keeper.store
        store.create("early", spec(), "v")                # interrupted before its first epoch ended
        store.finish("early", "interrupted")
        with pytest.raises(RunRefused, match="nothing to go on from"):
            reg.continue_run("early", data, "v")
    finally:
        reg.shutdown()


def test_a_training_state_file_is_never_unpickled_and_a_bad_one_says_why():
    import pickle

    import numpy as np

    from aecore.engine import checkpoint
    from aecore.engine.checkpoint import CheckpointError
    from aecore.engine.models import build
    with pytest.raises(CheckpointError, match="pickle"):
        trainstate.load(pickle.dumps({"x": 1}))
    with pytest.raises(CheckpointError, match="truncated"):
        trainstate.load(trainstate.timeline_bytes([], np.zeros((1, 28, 28)), [])[:-1])
    model_file = checkpoint.to_bytes(build(spec().model), {"name": "a model"})
    with pytest.raises(CheckpointError, match="not an AE Lab training state"):
        trainstate.load(model_file)
    with pytest.raises(CheckpointError, match="damaged training state"):
        trainstate.load(trainstate.timeline_bytes([], np.zeros((1, 28, 28)), []))   # a timeline has no model


def test_store_settings():
    cfg = RegistryConfig.from_settings({"AELAB_STORE": "none"})
    assert cfg.store == ""
    cfg = RegistryConfig.from_settings({})
    assert cfg.store.endswith("store") and cfg.store_retention == Retention()
    cfg = RegistryConfig.from_settings({"AELAB_STORE": "/srv/aelab", "AELAB_STORE_MAX_AGE_DAYS": "2",
                                        "AELAB_STORE_MAX_RUNS": "50", "AELAB_STORE_MAX_MB": "10"})
    assert (cfg.store, cfg.store_retention) == ("/srv/aelab", Retention(2 * 86400.0, 50, 10 * 1024 ** 2))
    with pytest.raises(ValueError, match="AELAB_STORE_MAX_RUNS"):
        RegistryConfig.from_settings({"AELAB_STORE_MAX_RUNS": "0"})


def cli(*args, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "aecore.runs", *args], capture_output=True, text=True, cwd=REPO,
                         timeout=120)
    if check:
        assert out.returncode == 0, out.stderr
    return out

"""Steering a run while it trains: changes of a setting (they reach the loop, are recorded and repeat), Step while
paused, slow motion, and the Train page's controls for them."""
from __future__ import annotations

import threading
import time

import pytest
import torch

from aecore.engine import checkpoint, links, steering
from aecore.engine.data import DataConfig
from aecore.engine.fields import FIELDS
from aecore.engine.models import ModelConfig, build
from aecore.engine.train import RunSpec, TrainConfig, fit
from aecore.runs.job import TrainingJob, wait_for
from aecore.runs.registry import RunRegistry
from aecore.runs.settings import RegistryConfig

from app_helpers import custom_form, open_app
from test_app import progress_text
from idx_helpers import tiny_data

WAIT = 90.0


@pytest.fixture(scope="module")
def data():
    return tiny_data(n_train=200, n_test=50)


def train_cfg(**kw) -> TrainConfig:
    return TrainConfig(**{**dict(epochs=2, batch_size=20, log_every=2, device="cpu"), **kw})


def run_fit(data, cfg, model_cfg=ModelConfig("shallow", hidden=(16,)), send_at=None, messages=()):
    """Every record of one run; `messages` are sent to its Control right after the record of step `send_at`."""
    control, model, out = steering.Control(), build(model_cfg, seed=cfg.seed), []
    for m in fit(model, data, cfg, control):
        out.append(m)
        if m.step == send_at:
            for message in messages:
                control.send(message)
    return out, model


def until(predicate, timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.02)
    return predicate()


def at_rest(read, quiet: float = 0.5, timeout: float = WAIT):
    """What `read()` gives once it has not changed for `quiet` seconds (a paused run's last record has arrived)."""
    deadline, value, since = time.monotonic() + timeout, read(), time.monotonic()
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, f"still changing after {timeout} s"
        time.sleep(0.02)
        if (now := read()) != value:
            value, since = now, time.monotonic()
    return value


# ------------------------------------------------------------------------------------------- the schedule
def test_a_schedule_reads_and_writes_as_a_link_parameter():
    f = FIELDS["changes"]
    value = f.parse(" 300:noise_level=0.3, 120:lr=0.0005,120:noise=mask ")
    assert value == ((120, "lr", 0.0005), (120, "noise", "mask"), (300, "noise_level", 0.3))   # in step order
    assert f.parse(links.format_value(value)) == value
    vals = {**links.preset_values("pytorch-784-200"), "changes": value}
    query = links.query("pytorch-784-200", vals)
    assert query["changes"] == "120:lr=0.0005,120:noise=mask,300:noise_level=0.3"
    assert links.parse(query).values["changes"] == value
    for bad in ("12:momentum=0.9", "x:lr=0.1", "5:lr=100", "5:noise=salt", "-1:lr=0.1", "5:lr"):
        with pytest.raises(ValueError, match="step:setting=value"):
            f.parse(bad)
    assert "`changes=5:lr=100`" in " ".join(links.parse({"changes": "5:lr=100"}).problems)


def test_a_change_the_model_cannot_make_is_refused_in_words(data):
    shallow, vae = ModelConfig("shallow", hidden=(8,)), ModelConfig("vae", hidden=(16,), latent=2)
    assert steering.steerable(shallow) == ("lr", "noise", "noise_level", "sparsity")
    assert steering.steerable(vae) == ("lr", "noise", "noise_level", "beta")
    assert "dropout" in steering.steerable(ModelConfig("deep", hidden=(16, 4), dropout=0.2))
    with pytest.raises(ValueError, match="built without dropout layers"):
        steering.check_change(shallow, "dropout", 0.3)
    with pytest.raises(ValueError, match="the vae family has no sparsity"):
        steering.check_change(vae, "sparsity", 0.1)
    with pytest.raises(ValueError, match=r"lr must be in \[1e-06, 10\]"):
        steering.check_change(shallow, "lr", 50.0)
    with pytest.raises(ValueError, match="at step 3: beta cannot change"):
        list(fit(build(shallow, seed=0), data, train_cfg(changes=((3, "beta", 2.0),))))


# ------------------------------------------------------------------------------------------- in the loop
def test_a_change_reaches_the_loop_from_the_next_step_and_a_rerun_with_its_schedule_repeats_it(data):
    changes = [steering.Change("lr", 0.01), steering.Change("noise", "mask"), steering.Change("noise_level", 0.5)]
    live, model = run_fit(data, train_cfg(), send_at=4, messages=changes)
    made = [c for r in live for c in r.changes]
    assert made == [(4, "lr", 0.01), (4, "noise", "mask"), (4, "noise_level", 0.5)]
    by_step = {r.step: r for r in live}
    assert by_step[4].lr == 1e-3 and by_step[6].lr == 0.01 and by_step[6].changes == tuple(made)
    again, _ = run_fit(data, train_cfg(changes=tuple(made)))
    assert [(r.step, r.train_loss) for r in again] == [(r.step, r.train_loss) for r in live]
    plain, _ = run_fit(data, train_cfg())
    assert [r.train_loss for r in plain][:2] == [r.train_loss for r in live][:2]     # the same until the change
    assert [r.epoch_loss for r in plain if r.epoch_end] != [r.epoch_loss for r in live if r.epoch_end]


def test_the_noise_the_model_sees_follows_a_change(data):
    model, seen = build(ModelConfig("shallow", hidden=(8,)), seed=0), []
    model.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach().clone()))
    cfg = train_cfg(epochs=1, changes=((3, "noise", "mask"), (3, "noise_level", 0.5)))
    list(fit(model, data, cfg))
    lit = [float((x > 0).float().mean()) for x in seen if len(x) == 20]   # the training batches (not evaluation's)
    clean = float((data.train.images > 0).float().mean())
    assert len(lit) == 10 and all(abs(v - clean) < 0.3 * clean for v in lit[:3])   # steps 1-3: clean pictures
    assert all(abs(v - clean / 2) < 0.15 * clean for v in lit[3:])       # from step 4: half the pixels masked


def test_model_side_changes_beta_sparsity_and_dropout(data):
    vae_cfg = ModelConfig("vae", hidden=(16,), latent=2)
    _, vae = run_fit(data, train_cfg(epochs=1, changes=((2, "beta", 4.0),)), vae_cfg)
    assert vae.beta == 4.0 and vae.kl_weight == 4.0 and vae.config.beta == 1.0      # the config keeps the start
    records, sparse = run_fit(data, train_cfg(epochs=1, changes=((5, "sparsity", 0.01),)))
    assert sparse.sparsity == 0.01
    assert not records[0].terms and dict(records[-1].terms)["code L1"] > 0           # the penalty joins the loss
    deep = ModelConfig("deep", hidden=(16, 4), dropout=0.2)
    _, dropped = run_fit(data, train_cfg(epochs=1, changes=((1, "dropout", 0.6),)), deep)
    assert {m.p for m in dropped.modules() if isinstance(m, torch.nn.Dropout)} == {0.6}


def test_a_resumed_run_goes_on_with_the_changes_it_made_before_the_break(data):
    cfg = train_cfg(epochs=3, changes=((3, "noise", "gaussian"), (3, "noise_level", 0.4), (12, "lr", 0.005)))
    states, model = [], build(ModelConfig("shallow", hidden=(8,)), seed=0)
    whole = [m.epoch_loss for m in fit(model, data, cfg, at_epoch_end=states.append) if m.epoch_end]
    first = build(ModelConfig("shallow", hidden=(8,)), seed=0)
    for m in fit(first, data, cfg, at_epoch_end=states.append):
        if m.epoch_end and m.epoch == 2:
            break
    resumed = [m.epoch_loss for m in fit(first, data, cfg, resume=states[-1]) if m.epoch_end]
    assert resumed == whole[2:]


# ------------------------------------------------------------------------------------------- a job
def test_a_job_records_its_changes_in_its_spec_checkpoint_and_link(data):
    spec = RunSpec("s", ModelConfig("vae", hidden=(16,), latent=2), DataConfig(), train_cfg(epochs=400))
    job = TrainingJob(spec, data)
    job.start()
    try:
        assert until(lambda: job.snapshot().records)
        job.send(steering.Change("beta", 3.0))
        job.send(steering.Change("lr", 0.002))
        assert until(lambda: job.spec.train.changes)
        assert until(lambda: len(job.spec.train.changes) == 2)
        with pytest.raises(ValueError, match="pause it first"):
            job.send(steering.Step(5))
        with pytest.raises(ValueError, match="vae family has no"):
            job.send(steering.Change("sparsity", 0.1))
    finally:
        job.stop()
    snap = wait_for(job, ("stopped",), WAIT)
    made = job.spec.train.changes
    assert [(n, v) for _, n, v in made] == [("beta", 3.0), ("lr", 0.002)] and made[0][0] == made[1][0]
    model, meta = checkpoint.load(job.checkpoint_bytes)
    assert meta["train"].changes == made and model.beta == 3.0          # the loaded model is as the run left it
    assert links.query(*links.of_run(job.spec))["changes"] == links.format_value(made)
    with pytest.raises(ValueError, match="only a running or paused run"):
        job.send(steering.Change("lr", 0.1))
    assert snap.state == "stopped"


def test_a_pause_that_comes_after_the_record_was_decided_still_stops_on_a_record():
    """The loop decides whether a step makes a record before it hands the record on; a pause that lands in
    between lets one more batch through, which then makes the record, so a paused run never stops unrecorded."""
    control = steering.Control()
    control.between_steps()
    assert not control.record_due(time.perf_counter(), usual=False)     # a step without a record ...
    control.pause()                                                     # ... and the pause lands just after
    waited, _ = control.between_steps()                                 # one more batch, at once
    assert waited < 1.0 and control.record_due(time.perf_counter())     # which is recorded
    blocked = threading.Thread(target=control.between_steps, daemon=True)
    blocked.start()
    blocked.join(0.3)
    assert blocked.is_alive()                                           # and now it waits
    control.resume()
    blocked.join(5)
    assert not blocked.is_alive()
    control.between_steps()
    assert not control.record_due(time.perf_counter(), usual=True)      # a usual record: nothing owed
    control.pause()
    blocked = threading.Thread(target=control.between_steps, daemon=True)
    blocked.start()
    blocked.join(0.3)
    assert blocked.is_alive()                                           # the run already stands on a record
    control.stop()
    blocked.join(5)


def test_step_trains_exactly_the_batches_asked_then_pauses_again(data):
    job = TrainingJob(RunSpec("s", ModelConfig("shallow", hidden=(8,)), DataConfig(),
                              train_cfg(epochs=400, log_every=1000)), data)
    job.start()
    try:
        assert until(lambda: job.snapshot().records)        # an epoch (10 steps) ended: one record
        job.pause()
        before = at_rest(lambda: job.snapshot().records[-1].step)
        per_epoch = job.snapshot().records[0].total_steps // 400
        n = 7 if (before + 7) % per_epoch else 6      # a Step that ends an epoch makes that epoch's usual record
        job.send(steering.Step(n))
        assert until(lambda: job.snapshot().records[-1].step > before)
        time.sleep(0.5)                                       # nothing more comes: it paused again
        snap = job.snapshot()
        stepped = [r for r in snap.records if r.step > before]
        assert stepped[-1].step == before + n and stepped[-1].live
        assert snap.peek is not None and snap.peek[0] == before + n and snap.peek[1].shape == (8, 28, 28)
        job.send(steering.Step(3))
        assert until(lambda: job.snapshot().records[-1].step >= before + n + 3)
        time.sleep(0.5)
        assert job.snapshot().records[-1].step == before + n + 3
        at = before + n + 3
        to_end = per_epoch - at % per_epoch                   # a Step to the epoch's end: its usual record ...
        job.send(steering.Step(to_end))
        assert until(lambda: job.snapshot().records[-1].step >= at + to_end)
        end = job.snapshot().records[-1]
        assert end.step == at + to_end and end.epoch_end and not end.live
        assert until(lambda: job.snapshot().timeline[-1][0] == end.epoch)   # ... and that epoch's reconstructions
        with pytest.raises(ValueError, match="1 to 1,000 batches"):
            job.send(steering.Step(0))
    finally:
        job.stop()
    wait_for(job, ("stopped",), WAIT)


def test_a_slowed_down_run_waits_between_steps_and_records_as_it_goes(data):
    job = TrainingJob(RunSpec("s", ModelConfig("shallow", hidden=(8,)), DataConfig(),
                              train_cfg(epochs=400, log_every=1000)), data)
    job.send(steering.Pace(10.0))                             # before it starts: the run begins slowed down
    job.start()
    try:
        assert until(lambda: len(job.snapshot().records) >= 3)
        records = job.snapshot().records
        assert records[0].live and not records[0].epoch_end   # made before an epoch's end: the chart moves
        t0, s0 = time.monotonic(), job.snapshot().records[-1].step
        time.sleep(1.0)
        steps = job.snapshot().records[-1].step - s0
        assert steps <= 10 * (time.monotonic() - t0) + 6      # at most 10 a second (+ the records' spacing)
        job.send(steering.Pace(0.0))
        assert until(lambda: job.snapshot().records[-1].step > s0 + 200)    # full speed again
    finally:
        job.stop()
    wait_for(job, ("stopped",), WAIT)


@pytest.mark.slow
def test_the_process_backend_takes_changes_and_steps(data):
    reg = RunRegistry(RegistryConfig(backend="processes", max_runs=1, max_gpu_runs=0), sweep_every=None)
    try:
        assert reg.backend.wait_ready(120)
        run_id = reg.submit(RunSpec("p", ModelConfig("shallow", hidden=(8,)), DataConfig(),
                                    train_cfg(epochs=400, log_every=5)), data, "a")
        assert until(lambda: reg.view(run_id).snapshot.records)
        reg.send(run_id, steering.Change("lr", 0.003))
        assert until(lambda: reg.view(run_id).spec.train.changes)
        assert reg.view(run_id).spec.train.changes[0][1:] == ("lr", 0.003)
        assert until(lambda: reg.view(run_id).snapshot.records[-1].lr == 0.003)
        reg.pause(run_id)
        before = at_rest(lambda: reg.view(run_id).snapshot.records[-1].step)
        reg.send(run_id, steering.Step(4))
        assert until(lambda: reg.view(run_id).snapshot.records[-1].step == before + 4)
        time.sleep(0.5)
        assert reg.view(run_id).snapshot.records[-1].step == before + 4
    finally:
        reg.shutdown(wait=5)


# ------------------------------------------------------------------------------------------- the Train page
def test_the_train_page_changes_steps_and_slows_a_run(tiny_idx, started_jobs):
    at = custom_form(open_app(), hidden=8, epochs=200, batch=1)
    assert "train.btn_apply" not in [b.key for b in at.button]          # no run: nothing to steer
    at.button(key="train.btn_start").click().run()
    job = started_jobs[0]
    assert until(lambda: job.snapshot().records)
    at.run()
    assert at.number_input(key="train.change.lr").value == pytest.approx(1e-3)
    assert at.button(key="train.btn_apply").disabled and at.button(key="train.btn_step").disabled
    at.number_input(key="train.change.lr").set_value(0.004).run()
    at.button(key="train.btn_apply").click().run()
    assert not at.exception and not at.error
    assert until(lambda: job.spec.train.changes)
    at.run()
    chart = at.get("plotly_chart")[0].proto.spec
    assert "lr 0.004" in chart                                          # the change, marked on the loss chart
    assert job.spec.train.changes[0][1:] == ("lr", 0.004)                # the run records what the page sent
    at.button(key="train.btn_pause").click().run()
    assert progress_text(at).startswith("paused")
    before = at_rest(lambda: job.snapshot().records[-1].step)
    at.number_input(key="train.step_batches").set_value(25).run()
    at.button(key="train.btn_step").click().run()
    assert not at.exception
    assert until(lambda: job.snapshot().records[-1].step == before + 25)
    at.select_slider(key="train.pace").set_value(5.0).run()
    assert not at.exception
    at.button(key="train.btn_stop").click().run()
    assert job.join(WAIT)


def _a_run_that_ends_as_the_page_draws_it(ended: bool):
    """The steering section for a run the page read as running; by the time the page sends its speed the run has
    ended (`ended`) or it refuses for another reason."""
    from types import SimpleNamespace

    from aecore.engine.data import DataConfig
    from aecore.engine.models import ModelConfig
    from aecore.engine.train import RunSpec, TrainConfig
    from ui import steer

    class Registry:
        def send(self, run_id, message):
            raise ValueError("this run is finished; only a running or paused run can be steered" if ended
                             else "the run refuses")

        def view(self, run_id):
            return SimpleNamespace(state="finished" if ended else "running")

    spec = RunSpec("s", ModelConfig("shallow", hidden=(8,)), DataConfig(), TrainConfig(epochs=1))
    run = SimpleNamespace(id="r1", state="running", spec=spec, snapshot=SimpleNamespace(records=(), last=None))
    steer.section(Registry(), run, "train.")


def test_a_run_that_ends_while_the_page_draws_it_shows_no_error_but_a_live_refusal_does():
    from streamlit.testing.v1 import AppTest

    ended = AppTest.from_function(_a_run_that_ends_as_the_page_draws_it, args=(True,), default_timeout=30).run()
    assert not ended.exception and not ended.error                  # the run finished meanwhile: nothing to say
    live = AppTest.from_function(_a_run_that_ends_as_the_page_draws_it, args=(False,), default_timeout=30).run()
    assert not live.exception
    assert [e.value for e in live.error] == ["**Speed unchanged.** the run refuses"]

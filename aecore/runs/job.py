"""The thread backend: one training run in a background thread, driven and watched from other threads.

The worker thread iterates `fit` (or a task's generator, `aecore.runs.task`) and stores what it yields; it never
touches any UI. The run registry
(`aecore.runs.registry`) creates jobs, decides when each starts, and calls `pause`, `resume`, `stop`; anyone
may read `snapshot()` (an immutable copy) as often as they like.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import torch

from aecore.engine import checkpoint, steering, trainstate
from aecore.engine.data import Data, to_float
from aecore.engine.models import Autoencoder, build
from aecore.engine.replay import Replay, capture, pictures
from aecore.engine.scoring import reconstruct
from aecore.engine.train import (Control, Metrics, RunSpec, TrainingDiverged, epoch_history, fit, resolve_device,
                                 results)
from aecore.runs.task import TaskSpec, task_run

STATES = ("ready", "running", "paused", "finished", "stopped", "failed", "interrupted")
N_TIMELINE = 8   # fixed test digits reconstructed at every epoch end


@dataclass(frozen=True)
class Snapshot:
    state: str
    records: tuple[Metrics, ...]            # everything fit (or a task: its progress records) yielded so far
    timeline: tuple[tuple[int, np.ndarray], ...]  # (epoch, reconstructions (8, 28, 28)) per epoch end
    originals: np.ndarray                   # the 8 fixed test digits (8, 28, 28) in [0, 1]
    error: str | None = None                # why the run failed, for the user
    result: dict | None = None              # figures, history, quantiles once finished or stopped
    device: str = "cpu"
    peek: tuple[int, np.ndarray] | None = None   # (step, reconstructions (8, 28, 28)) after a Step or slowed down

    @property
    def last(self) -> Metrics | None:
        return self.records[-1] if self.records else None

    @property
    def progress(self) -> float:
        m = self.last
        return min(1.0, m.step / m.total_steps) if m else 0.0

    @property
    def eta_s(self) -> float | None:
        m = self.last
        if not m or m.step == 0:
            return None
        return m.elapsed / m.step * (m.total_steps - m.step)


class TrainingJob:
    """One run: build the model, train it on `data` in a daemon thread, keep the result."""

    guards_itself = False    # True for a backend whose runs apply the grace time themselves (Ray's)

    def __init__(self, spec: RunSpec | TaskSpec, data: Data | None, threads: int = 1,
                 on_end: Callable[[], None] | None = None, keep: Callable | None = None, resume: bytes | None = None,
                 device: str | None = None):
        self.spec = spec
        self.threads = threads   # intra-op threads for this run (see _work)
        self.data: Data | None = data   # released when the run ends: only the model and figures are kept
        self.on_end = on_end     # called by the worker thread once the run has ended (the registry's scheduler)
        self.keep = keep         # keep(epoch, training state bytes, history) after every epoch (the run store)
        self.resume_from = resume   # a training state (aecore.engine.trainstate) to go on from, or None
        self.device = device or self._resolve(spec)   # fails here, before any thread, if invalid
        self.model: Autoencoder | None = None    # set when the run ends (finished, stopped or diverged)
        self.meta: dict | None = None             # what the checkpoint stores beside the weights
        self.checkpoint_bytes: bytes | None = None
        self.stop_reason: str | None = None       # why it was stopped, when a backend records it (Ray's)
        self._control = Control()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._state = "ready"
        self._records: list[Metrics] = []
        self._timeline: list[tuple[int, np.ndarray]] = []
        self._error: str | None = None
        self._result: dict | None = None
        self._peek: tuple[int, np.ndarray] | None = None
        # The fixed test digits (8, 28, 28) uint8, and in [0, 1] for every snapshot. A job without data (one that
        # mirrors a run trained elsewhere) gets them from where the run trains.
        self._probe = _fixed_digits(data, N_TIMELINE) if data is not None else None
        self._originals = to_float(self._probe, torch.float64, channel=False).numpy() if data is not None \
            else np.zeros((0, 28, 28))
        if resume is not None:   # the chart and the reconstructions go on from where the run stopped
            saved = trainstate.load_timeline(resume)
            self._records, self._timeline = trainstate.metrics_of(saved[0]), list(saved[2])

    @staticmethod
    def ended_as(spec: RunSpec, state: str, records: list[Metrics], timeline: list, originals: np.ndarray,
                 model: Autoencoder | None = None, meta: dict | None = None, checkpoint_bytes: bytes | None = None,
                 result: dict | None = None, error: str | None = None, stop_reason: str | None = None,
                 device: str = "cpu") -> "TrainingJob":
        """A job for a run that ended before this server started (the run store has it): never started, it shows
        what the run left."""
        job = TrainingJob(spec, None, device=device)
        job._state, job._records, job._timeline, job._originals = state, list(records), list(timeline), originals
        job.model, job.meta, job.checkpoint_bytes, job._result, job._error = model, meta, checkpoint_bytes, result, error
        job.stop_reason = stop_reason
        return job

    def _resolve(self, spec: RunSpec | TaskSpec) -> str:
        """The device the run trains on; ValueError for one this machine lacks."""
        return str(resolve_device(spec.device if isinstance(spec, TaskSpec) else spec.train.device))

    # ---------------------------------------------------------------- control, from any thread
    def start(self) -> None:
        with self._lock:
            if self._state != "ready":
                raise RuntimeError(f"this run is {self._state}; a run starts once")
            self._state = "running"
            self._thread = threading.Thread(target=self._work, name=f"train-{self.spec.name}", daemon=True)
            self._thread.start()

    def pause(self) -> None:
        with self._lock:
            if self._state == "running":
                self._control.pause()
                self._state = "paused"

    def resume(self) -> None:
        with self._lock:
            if self._state == "paused":
                self._control.resume()
                self._state = "running"

    def stop(self, reason: str | None = None) -> None:
        """Stop a running or paused run before its next step; a run that never started ends as stopped. (The
        registry keeps the `reason`; a backend whose runs outlive one server keeps it with the run.)"""
        self._control.stop()
        with self._lock:
            if self._state == "ready":
                self._state = "stopped"
                self.data = None

    def send(self, message: steering.Change | steering.Step | steering.Pace) -> None:
        """Steer the run (aecore.engine.steering): a change of a setting, a few batches while paused, a pace.
        ValueError, in words, for one this run cannot take now."""
        if isinstance(self.spec, TaskSpec):
            raise ValueError("this run is a task of its page; it is steered there")
        with self._lock:
            state = self._state
            if state not in ("ready", "queued", "running", "paused"):
                raise ValueError(f"this run is {state}; only a running or paused run can be steered")
            if isinstance(message, steering.Change):
                steering.check_change(self.spec.model, message.name, message.value)
            elif isinstance(message, steering.Step):
                if state != "paused":
                    raise ValueError("Step trains a few batches of a paused run: pause it first")
                if not 1 <= message.n <= steering.MAX_STEP:
                    raise ValueError(f"Step takes 1 to {steering.MAX_STEP:,} batches, got {message.n}")
            elif not 0 <= message.steps_per_s <= 1000:
                raise ValueError(f"the pace is 0 (full speed) to 1,000 steps a second, got {message.steps_per_s}")
            self._deliver(message)

    def _deliver(self, message) -> None:
        """Hand a checked steering message to the training (holding the lock); a backend that trains elsewhere
        forwards it there."""
        self._control.send(message)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker to end; True when it has."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    @property
    def state(self) -> str:
        """"ready", "running", "paused", or how it ended ("finished", "stopped", "failed"): the snapshot's state,
        without copying its records."""
        with self._lock:
            return self._state

    @property
    def active(self) -> bool:
        """True while the worker thread is alive (running, paused or finishing up)."""
        return self._thread is not None and self._thread.is_alive()

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(state=self._state, records=tuple(self._records), timeline=tuple(self._timeline),
                            originals=self._originals, error=self._error, result=self._result,
                            device=self.device, peek=self._peek)

    # ---------------------------------------------------------------- the worker thread
    def _work(self) -> None:
        try:
            train_run(self.spec, self.data, self._probe, self._control, self.threads, self._receive, self.resume_from)
        finally:
            self._ended()

    def _receive(self, kind: str, *payload) -> None:
        """One event of `train_run`: a metrics record, an epoch's reconstructions or training state, the end."""
        if kind == "state":
            if self.keep is not None:
                self.keep(*payload)
            return
        with self._lock:
            if kind == "record":
                self._records.append(payload[0])
                if getattr(payload[0], "changes", ()):   # the run's link and checkpoint carry what it changed
                    self.spec = with_changes(self.spec, payload[0].changes)
            elif kind == "peek":
                self._peek = payload
            elif kind == "frame":
                self._timeline.append(payload)
            elif kind == "done":          # (result, checkpoint bytes, model and meta, or None: rebuilt from the bytes)
                result, blob, model, meta = payload      # a task's: (its result or None, None, None, None)
                if model is not None or blob is not None:
                    self.model, self.meta = (model.eval(), meta) if model is not None else checkpoint.load(blob)
                self.checkpoint_bytes, self._result = blob, result
                self._state = "stopped" if self._control.stopped else "finished"
            elif kind == "failed":        # (message, bytes of the last good weights or None, model, meta)
                message, blob, model, meta = payload
                self._error, self._state = message, "failed"
                if blob is not None:      # a diverged run keeps its last good weights for inspection
                    self.model, self.meta = (model.eval(), meta) if model is not None else checkpoint.load(blob)

    def _ended(self) -> None:
        self.data = self.resume_from = None
        if self.on_end is not None:
            self.on_end()


def train_run(spec: RunSpec | TaskSpec, data: Data, probe: torch.Tensor, control: Control, threads: int,
              emit, resume: bytes | None = None) -> None:
    """Train one run, telling `emit(kind, *payload)` what happens: "record" (a Metrics), "frame" (epoch,
    reconstructions of `probe`), "state" (epoch, the training state's bytes, the per-epoch history) after each
    epoch (its training state keeps the run's replay, aecore.engine.replay), then "done" or "failed", whose meta
    holds the replay too. With `resume` (a training state), it goes on from that state's epoch. Runs
    in the job's thread or in a training process. A TaskSpec runs its task instead (aecore.runs.task), with the
    same events but no frames, states or model."""
    if isinstance(spec, TaskSpec):
        return task_run(spec, data, control, threads, emit)
    # A server shares its cores between runs, sessions and itself; OpenMP teams of several threads then
    # spin-wait on each other and throughput collapses (measured on 2 busy cores: ~8,700 samples/s with
    # one thread, ~320 with two). The setting applies to this thread's own parallel regions.
    torch.set_num_threads(threads)
    device = str(resolve_device(spec.train.device))
    model, records, frames, states, replay = None, [], [], [], None
    originals = to_float(probe, channel=False).numpy()
    try:
        saved = trainstate.load(resume) if resume is not None else None
        if saved is not None:
            model, records, frames = saved.model, trainstate.metrics_of(saved.records), list(saved.frames)
            spec = with_changes(spec, steering.made(records))   # made before the break
        else:
            model = build(spec.model, seed=spec.train.seed)
        replay = saved.replay if saved is not None and saved.replay is not None else \
            Replay.start(probe, data.test.labels[:pictures(spec.model)])
        for m in fit(model, data, spec.train, control, resume=saved.state if saved else None,
                     at_epoch_end=states.append):
            records.append(m)
            emit("record", m)
            if m.live:
                emit("peek", m.step, reconstruct(model, probe))
            if m.epoch_end:
                frames.append((m.epoch, reconstruct(model, probe)))
                emit("frame", *frames[-1])
                replay = replay.added(capture(model, probe, data.test.images, m.epoch))   # one pass, 1,000 pictures
                emit("state", m.epoch, trainstate.to_bytes(model, states.pop(), trainstate.records_of(records),
                                                           originals, frames, replay), epoch_history(records))
        model.cpu()
        spec = with_changes(spec, steering.made(records))    # the checkpoint keeps its schedule
        result = results(model, data, records, binarize=spec.train.binarize)
        meta = spec.meta(device, replay=replay, **result)
        emit("done", result, checkpoint.to_bytes(model, meta), model, meta)
    except TrainingDiverged as e:       # fit restored the last weights with a finite loss
        meta = with_changes(spec, steering.made(records)).meta(device, error=str(e), replay=replay)
        emit("failed", str(e), checkpoint.to_bytes(model.cpu(), meta), model, meta)
    except Exception as e:  # anything else is shown to the user rather than lost in a thread
        emit("failed", f"{type(e).__name__}: {e}", None, None, None)


def with_changes(spec: RunSpec, made) -> RunSpec:
    """The run's spec with the changes it made while training (`made`: (step, setting, value)) in its schedule."""
    merged = steering.merge(spec.train.changes, made)
    return spec if merged == spec.train.changes else replace(spec, train=replace(spec.train, changes=merged))


def _fixed_digits(data: Data, n: int) -> torch.Tensor:
    """The first test image of each class (then the next ones), so every run shows the same digits."""
    labels = data.test.labels
    picks: list[int] = []
    for c in labels.unique().tolist():
        idx = (labels == c).nonzero().flatten()
        if len(idx):
            picks.append(int(idx[0]))
    for i in range(len(labels)):
        if len(picks) >= n:
            break
        if i not in picks:
            picks.append(i)
    return data.test.images[sorted(picks[:n])]


def wait_for(job: TrainingJob, states: tuple[str, ...], timeout: float = 30.0) -> Snapshot:
    """Poll until the job reaches one of `states` (for scripts and tests)."""
    deadline = time.monotonic() + timeout
    while True:
        snap = job.snapshot()
        if snap.state in states or time.monotonic() > deadline:
            return snap
        time.sleep(0.02)

"""The Ray backend on the server's side: `RayJob`, the relay that mirrors one run's actor, and `RayBackend`, what
the registry calls to make and find such jobs.

- `RayJob` is a `TrainingJob` whose worker thread polls the run's actor (`aecore.runs.cluster.RunActor`) for
  only what is new since the last poll, every `POLL_S`, and mirrors it, so pages read snapshots without a call to
  the cluster. Pause, resume and stop go to the actor; a run still waiting for resources is removed at once.
- Each poll tells the actor whether this server shows the run to anyone now (`watched`, set by the registry's
  sweep): the actor applies the grace time itself, so no server has to outlive its runs.
- A run another server queued is followed by its id (`RayJob.attach`): the catalogue knows its spec, and once it
  has ended the catalogue hands over its final state and checkpoint, loaded here by the safe loader.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

from aecore.engine import checkpoint
from aecore.engine.data import Data
from aecore.engine.train import RunSpec
from aecore.runs.backend import Backend
from aecore.runs.cluster import ENDED, POLL_S, Cluster, connect
from aecore.runs.job import TrainingJob, with_changes
from aecore.runs.settings import RegistryConfig
from aecore.runs.task import TaskError, TaskSpec


class RayJob(TrainingJob):
    """A TrainingJob whose training runs in a Ray actor; same interface, same snapshots. Made by the registry
    for a new run (`data` given: it creates the actor when the registry starts it), or by `RayJob.attach` for a
    run another server queued (no data: it finds the actor by the run's id)."""

    guards_itself = True     # the actor applies the grace time itself (servers report `watched`)

    def __init__(self, spec: RunSpec, data: Data | None, threads: int = 1, on_end=None, *, run_id: str,
                 cluster: Cluster, series: str | None = None, grace_s: float = 120.0, retention_s: float = 1800.0):
        self.cluster, self.run_id, self.series = cluster, run_id, series
        self.grace_s, self.retention_s = grace_s, retention_s
        self._gpus = cluster.gpus_for(spec.train.device)
        self._actor = None
        self._wanted: str | None = None   # "paused" or "running" just asked for, until the actor reports it
        self.watched = True      # set by the registry's sweep: does this server show the run to anyone now
        self._kill = threading.Event()
        super().__init__(spec, data, threads, on_end)
        if data is not None:
            cluster.add(run_id, spec, series)

    def _resolve(self, spec: RunSpec) -> str:
        return "cuda" if self._gpus else "cpu"

    @classmethod
    def attach(cls, run_id: str, cluster: Cluster, threads: int = 1, on_end=None) -> "RayJob | None":
        """A run another server queued, found on the cluster by its id; None when it is not there."""
        found = cluster.find(run_id)
        if found is None:
            return None
        spec, series = found
        job = cls(spec, None, threads, on_end, run_id=run_id, cluster=cluster, series=series)
        job.start()
        return job

    # ------------------------------------------------------------------ control: forwarded to the actor
    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("this run has started already; a run starts once")
            self._state = "queued"           # until the actor answers: it waits for its resources
            self._thread = threading.Thread(target=self._work, name=f"ray-{self.spec.name}", daemon=True)
            self._thread.start()

    def pause(self) -> None:
        with self._lock:
            if self._state == "running":
                self._state = self._wanted = "paused"   # shown at once; fit pauses before its next step
                self._actor.pause.remote()

    def resume(self) -> None:
        with self._lock:
            if self._state == "paused":
                self._state = self._wanted = "running"
                self._actor.resume.remote()

    def stop(self, reason: str | None = None) -> None:
        with self._lock:
            if self._state == "ready":                    # a series run not yet queued: it never will be
                self._state, self.data = "stopped", None
                self.stop_reason = self.stop_reason or reason
                self.cluster.cancel(self.run_id, reason)
            elif self._state == "queued":                 # waiting for resources: its actor goes at once
                self.stop_reason = self.stop_reason or reason
                self._kill.set()
            elif self._state not in ENDED:
                self._actor.stop.remote(reason)

    def _deliver(self, message) -> None:
        if self._actor is None:
            raise ValueError("this run still waits for the cluster's resources; steer it once it trains")
        self._actor.send.remote(message)

    # ------------------------------------------------------------------ the relay thread
    def _work(self) -> None:
        ray = self.cluster.ray
        try:
            if not self._find_or_create():
                return
            n_records = n_frames = 0
            while True:
                ref = self._actor.poll.remote(n_records, n_frames, self.watched)
                while not ray.wait([ref], timeout=0.5)[0]:   # a queued actor answers once it has started
                    if self._kill.is_set():
                        return self._cancel()
                try:
                    new = ray.get(ref)
                except ray.exceptions.RayActorError:
                    new = {"state": "ended"}                # it has handed over and exited between two polls
                if new["state"] in ENDED or new["state"] == "ended":
                    return self._collect(n_records, n_frames)
                n_records += len(new["records"])
                n_frames += len(new["frames"])
                self._apply(new)
                if self._kill.is_set():
                    return self._cancel()
                time.sleep(POLL_S)
        except Exception as e:               # the actor died (its node went away), or the cluster is unreachable
            with self._lock:
                self._error, self._state = f"the run's Ray actor was lost: {type(e).__name__}: {e}", "failed"
        finally:
            self._ended()

    def _find_or_create(self) -> bool:
        """Create the actor (a run this server queued) or find it (a run another server queued, maybe ended).
        False when there is nothing to poll: the run was stopped before it started, or it has ended."""
        while self._actor is None:
            reason = self.cluster.cancelled(self.run_id)
            if reason is not None or self._kill.is_set():
                if self._kill.is_set():
                    self.cluster.cancel(self.run_id, self.stop_reason)
                with self._lock:
                    self._state, self.data = "stopped", None
                    self.stop_reason = self.stop_reason or reason
                return False
            if self.data is not None:
                self._actor = self.cluster.start(self.run_id, self.spec, self.data, self.threads, self._gpus,
                                                 self.grace_s, self.retention_s)
                self.data = None             # the object store holds the images now
            else:
                self._actor = self.cluster.actor(self.run_id)
                if self._actor is None:
                    if self.cluster.final(self.run_id) is not None or self.cluster.find(self.run_id) is None:
                        self._collect(0, 0)   # it has ended (or expired)
                        return False
                    time.sleep(0.5)          # its server has not started it yet
        return True

    def _apply(self, new: dict) -> None:
        with self._lock:
            state = new["state"]
            if self._wanted is not None and state in ("running", "paused") and state != self._wanted:
                state = self._wanted         # asked for a moment ago: the actor has not seen it yet
            else:
                self._wanted = None
            self._state = state
            self._records.extend(new["records"])
            if isinstance(self.spec, RunSpec):
                self.spec = with_changes(self.spec, [c for r in new["records"] for c in r.changes])
            self._peek = new.get("peek") or self._peek
            self._timeline.extend(new["frames"])
            if new["originals"] is not None:
                self._originals = new["originals"]
            self._error, self._result, self.device = new["error"], new["result"], new["device"]
            self.stop_reason = new["stop_reason"] or self.stop_reason

    def _collect(self, n_records: int, n_frames: int) -> None:
        """The ended run's final state and weights, from the directory (the actor has exited); the checkpoint
        bytes are loaded here by the safe loader."""
        final, deadline = None, time.monotonic() + 30
        while final is None and time.monotonic() < deadline:
            final = self.cluster.final(self.run_id)   # handed over a moment after the run ends
            if final is None:
                if self.cluster.find(self.run_id) is None:
                    break                              # forgotten: expired, or removed
                time.sleep(0.1)
        if final is None:
            with self._lock:
                self._error, self._state = "the run is no longer on the cluster", "failed"
            return
        state, blob = final
        state["records"], state["frames"] = state["records"][n_records:], state["frames"][n_frames:]
        if n_records or n_frames:
            state["originals"] = None
        self._wanted = None
        self._apply(state)
        with self._lock:
            if blob is not None:
                self.model, self.meta = checkpoint.load(blob)
                self.model.eval()
                if state["state"] != "failed":
                    self.checkpoint_bytes = blob

    def _cancel(self) -> None:
        """Stop a run still waiting for resources: remove its actor (it never trained)."""
        ray = self.cluster.ray
        ray.kill(self._actor)
        ray.get(self.cluster.directory().remove.remote(self.run_id))
        with self._lock:
            self._state = "stopped"


class RayBackend(Backend):
    """The registry's runs as Ray actors on the cluster at `config.ray_address` (connected here: RayUnavailable
    when Ray is missing or unreachable). The cluster's scheduler is the cap and the queue: its actors wait for
    resources; a run another server of the cluster started is found there by its id."""

    queues_itself = True

    def __init__(self, config: RegistryConfig):
        self.config = config
        self.cluster = connect(config.ray_address)

    def job(self, run_id: str, spec: RunSpec, data: Data, series: str | None,
            on_end: Callable[[], None], keep=None, resume=None) -> RayJob:
        """As Backend.job; a run on the cluster reports no epoch states (`keep` unused) and starts afresh."""
        if isinstance(spec, TaskSpec):
            raise TaskError(f"{spec.name}: the Ray backend trains single `fit` runs only, not experiments such as "
                            f"this one; run it on a server with AELAB_RUN_BACKEND=processes (or threads)")
        cfg = self.config
        return RayJob(spec, data, cfg.threads_per_run, on_end, run_id=run_id, cluster=self.cluster, series=series,
                      grace_s=cfg.grace_s, retention_s=cfg.retention_s)

    def find(self, run_id: str, on_end: Callable[[], None]) -> RayJob | None:
        return RayJob.attach(run_id, self.cluster, self.config.threads_per_run, on_end=on_end)

    def series(self, series_id: str) -> list[str]:
        return self.cluster.series(series_id)

    def resources(self) -> dict:
        return self.cluster.resources()

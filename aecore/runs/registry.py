"""The run registry: every training on this server, by id. The only place that starts one.

A page submits a `RunSpec` and gets back a random, unguessable run id; knowing the id is what lets a visitor
watch and drive the run (the Train page keeps it in the URL, so a reload or another tab reattaches). The
registry admits at most `max_runs` CPU trainings and `max_gpu_runs` GPU trainings at once; the others wait in
one FIFO queue and start by themselves when a slot of their kind frees. A page that shows a run registers its
session as a watcher (`heartbeat(run_id, watcher)`) and unregisters it when the session closes (`unwatch`); a
run with no watcher and no heartbeat for `grace_s` is stopped (a reload has that long to reattach), and an ended run is dropped `retention_s` after it ended and was
last seen, or earlier when the registry holds more than `max_kept` runs (oldest ended first).
"""
from __future__ import annotations

import heapq
import secrets
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from aecore.data import Data
from aecore.models import build, count_params
from aecore.runs.job import RunSpec, Snapshot, TrainingJob
from aecore.runs.process import ProcessJob
from aecore.runs.settings import RegistryConfig

ENDED = ("finished", "stopped", "failed")
DEFAULT_SAMPLES_PER_S = 5_000.0    # a guess for start-time estimates until this server has measured a run


class RunRefused(ValueError):
    """A run the registry will not take (a limit, the visitor's one run, a full queue); the message says why."""


@dataclass(frozen=True)
class RunView:
    """What a page shows of one run: its state (the job's, or "queued"), its snapshot and, once it has ended,
    its model. `position` (1 = next) and `starts_in_s` are set while it is queued."""
    id: str
    spec: RunSpec
    state: str
    snapshot: Snapshot
    position: int | None = None
    starts_in_s: float | None = None
    stop_reason: str | None = None
    model: object | None = None            # aecore.models.Autoencoder once the run has ended with weights
    meta: dict | None = None
    checkpoint_bytes: bytes | None = None

    @property
    def active(self) -> bool:
        """Queued, running or paused: the run still holds (or waits for) a slot."""
        return self.state not in ENDED


@dataclass(eq=False)
class _Run:
    id: str
    spec: RunSpec
    job: TrainingJob
    gpu: bool                           # which cap it counts against
    owners: set[str]                    # visitors who started or reattached to it
    submitted: float
    seen: float                         # last heartbeat, or when its last watcher left
    watchers: set[str] = field(default_factory=set)   # open sessions showing it
    started: float | None = None
    ended: float | None = None
    stop_reason: str | None = None
    estimate_s: float = 0.0             # expected training time, for queue estimates

    @property
    def queued(self) -> bool:
        return self.started is None and self.ended is None

    @property
    def running(self) -> bool:          # running or paused: it holds a slot
        return self.started is not None and self.ended is None


class RunRegistry:
    """Thread-safe; one per server. `clock` is injectable so tests can move time."""

    def __init__(self, config: RegistryConfig | None = None, clock: Callable[[], float] = time.monotonic,
                 sweep_every: float | None = 1.0):
        self.config = config or RegistryConfig()
        sys.setswitchinterval(self.config.switch_interval_s)   # see RegistryConfig.switch_interval_s
        self._clock = clock
        self._lock = threading.RLock()       # re-entered when a job ends synchronously inside a registry call
        self._runs: dict[str, _Run] = {}     # insertion order = submission order = the FIFO queue's order
        self._rate: dict[str, float] = {}    # family -> last measured samples/s, for queue estimates
        self._closed = threading.Event()
        self._sweeper = None
        if sweep_every:
            self._sweeper = threading.Thread(target=self._sweep_loop, args=(sweep_every,), name="runs-sweeper",
                                             daemon=True)
            self._sweeper.start()

    # ------------------------------------------------------------------------------------------ submitting
    def submit(self, spec: RunSpec, data: Data, visitor: str) -> str:
        """Queue a run for `visitor` and start it at once if a slot is free; returns its id.

        Raises RunRefused when the spec breaks the profile's limits, the visitor already has a run queued or
        running, or the queue is full; ValueError (from the job) for a device this machine lacks."""
        problem = self.config.limits.problem(spec, count_params(build(spec.model, seed=0)))
        if problem:
            raise RunRefused(problem)
        with self._lock:
            mine = [r for r in self._runs.values() if visitor in r.owners and r.ended is None]
            if mine:
                raise RunRefused(f"you already have a run {'queued' if mine[0].queued else 'in progress'} "
                                 f"({mine[0].spec.name}); stop it or let it end before starting another")
            if sum(r.queued for r in self._runs.values()) >= self.config.max_queued:
                raise RunRefused(f"the queue is full ({self.config.max_queued} runs waiting); try again in a "
                                 f"few minutes")
            run_id = secrets.token_urlsafe(16)          # 128 random bits: knowing it is the key to the run
            backend = ProcessJob if self.config.backend == "processes" else TrainingJob
            job = backend(spec, data, threads=self.config.threads_per_run, on_end=lambda: self._ended(run_id))
            now = self._clock()
            run = _Run(run_id, spec, job, gpu=job.device.startswith("cuda"), owners={visitor}, submitted=now,
                       seen=now, estimate_s=self._estimate(spec, data))
            self._runs[run_id] = run
            self._schedule()
            self._trim()
            return run_id

    def _estimate(self, spec: RunSpec, data: Data) -> float:
        rate = self._rate.get(spec.model.family) or DEFAULT_SAMPLES_PER_S
        return spec.train.epochs * len(data.train) / rate

    # ------------------------------------------------------------------------------------------ watching
    def view(self, run_id: str) -> RunView | None:
        """The run as it is now, or None when no run has that id (never had, or dropped)."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                return None
            snap = run.job.snapshot()
            position = starts_in = None
            if run.queued:
                position, starts_in = self._queue_place(run)
            job = run.job
            return RunView(run.id, run.spec, "queued" if run.queued else snap.state, snap, position, starts_in,
                           run.stop_reason, job.model, job.meta, job.checkpoint_bytes)

    def attach(self, run_id: str, visitor: str) -> RunView | None:
        """A visitor opened the run's link: it becomes one of the run's visitors (its list shows it)."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                return None
            run.owners.add(visitor)
            run.seen = self._clock()
        return self.view(run_id)

    def heartbeat(self, run_id: str, watcher: str | None = None) -> bool:
        """Someone is looking at the run now; a `watcher` (a session) counts as watching until `unwatch`.
        False if the run is unknown."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is not None:
                run.seen = self._clock()
                if watcher is not None:
                    run.watchers.add(watcher)
            return run is not None

    def unwatch(self, watcher: str) -> None:
        """A session closed: it watches nothing any more. A run left without watchers gets the grace time."""
        with self._lock:
            now = self._clock()
            for run in self._runs.values():
                if watcher in run.watchers:
                    run.watchers.discard(watcher)
                    run.seen = now

    def runs_of(self, visitor: str) -> list[RunView]:
        """The runs this visitor started or reattached to, oldest first; never anyone else's."""
        with self._lock:
            ids = [r.id for r in self._runs.values() if visitor in r.owners]
        return [v for v in map(self.view, ids) if v is not None]

    def counts(self) -> dict:
        with self._lock:
            runs = list(self._runs.values())
        return {"running": sum(r.running for r in runs), "queued": sum(r.queued for r in runs),
                "ended": sum(r.ended is not None for r in runs), "kept": len(runs)}

    # ------------------------------------------------------------------------------------------ control
    def pause(self, run_id: str) -> None:
        self._job(run_id).pause()

    def resume(self, run_id: str) -> None:
        self._job(run_id).resume()

    def stop(self, run_id: str, reason: str | None = None) -> None:
        """Stop a running or paused run before its next step; a queued one leaves the queue at once."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is None or run.ended is not None:
                return
            run.stop_reason = run.stop_reason or reason
            if run.queued:
                run.job.stop()                 # never started: its state becomes "stopped" now
                run.ended = self._clock()
                return
        run.job.stop()                         # the worker notices before its next step, then calls _ended

    def _job(self, run_id: str) -> TrainingJob:
        with self._lock:
            run = self._runs.get(run_id)
        if run is None:
            raise KeyError(f"no run with id {run_id!r}")
        return run.job

    # ------------------------------------------------------------------------------------------ scheduling
    def _schedule(self) -> None:
        """Start queued runs, oldest first, while their kind (CPU or GPU) has a free slot. Holds the lock."""
        with self._lock:
            busy = {False: 0, True: 0}
            for r in self._runs.values():
                if r.running:
                    busy[r.gpu] += 1
            caps = {False: self.config.max_runs, True: self.config.max_gpu_runs}
            for r in list(self._runs.values()):
                if r.queued and busy[r.gpu] < caps[r.gpu]:
                    r.started = self._clock()
                    busy[r.gpu] += 1
                    r.job.start()

    def _ended(self, run_id: str) -> None:
        """Called by a job's worker thread when its run has ended: free the slot, start the next."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                return
            run.ended = self._clock()
            last = run.job.snapshot().last
            if last is not None and last.elapsed > 0:
                self._rate[run.spec.model.family] = last.samples / last.elapsed
            self._schedule()

    def _queue_place(self, run: _Run) -> tuple[int, float]:
        """1-based place among the queued runs of its kind, and an estimate of seconds until it starts: each
        slot frees when its run's estimated remaining time is up, and the runs ahead take their estimates."""
        same = [r for r in self._runs.values() if r.gpu == run.gpu]
        free_at = []
        for r in same:
            if r.running:
                eta = r.job.snapshot().eta_s
                if eta is None:
                    eta = max(0.0, r.estimate_s - (self._clock() - r.started))
                free_at.append(eta)
        cap = self.config.max_gpu_runs if run.gpu else self.config.max_runs
        free_at += [0.0] * max(0, cap - len(free_at))
        heapq.heapify(free_at)
        ahead = [r for r in same if r.queued]
        position = ahead.index(run) + 1
        for r in ahead[:position - 1]:
            heapq.heapreplace(free_at, free_at[0] + r.estimate_s)
        return position, free_at[0] if free_at else float("inf")

    # ------------------------------------------------------------------------------------------ housekeeping
    def sweep(self) -> None:
        """Stop runs nobody watches (grace) and drop ended runs past their retention; the sweeper thread calls
        this every second, tests call it after moving the clock."""
        now = self._clock()
        cfg = self.config
        with self._lock:
            unwatched = [r.id for r in self._runs.values()
                         if r.ended is None and not r.watchers and now - r.seen > cfg.grace_s]
            for run_id in unwatched:
                self.stop(run_id, reason=f"nobody watched it for {cfg.grace_s:g} s")
            for run_id in [r.id for r in self._runs.values()
                           if r.ended is not None and now - max(r.ended, r.seen) > cfg.retention_s]:
                del self._runs[run_id]
            self._trim()

    def _trim(self) -> None:
        """Keep at most max_kept runs: drop the ended ones, oldest ended first (active runs always stay)."""
        with self._lock:
            excess = len(self._runs) - self.config.max_kept
            if excess > 0:
                ended = sorted((r for r in self._runs.values() if r.ended is not None), key=lambda r: r.ended)
                for r in ended[:excess]:
                    del self._runs[r.id]

    def _sweep_loop(self, every: float) -> None:
        while not self._closed.wait(every):
            self.sweep()

    def shutdown(self, wait: float = 0.0) -> None:
        """Stop every run and the sweeper (server shutdown, tests); with `wait`, join the workers."""
        self._closed.set()
        with self._lock:
            runs = list(self._runs.values())
        for r in runs:
            self.stop(r.id, reason="the server shut down")
        if wait:
            for r in runs:
                r.job.join(wait)

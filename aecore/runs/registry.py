"""The run registry: every training on this server, by id. The only place that starts one.

A page submits a `RunSpec` (or a `TaskSpec`: a lab's experiment, aecore.runs.task) and gets back a random,
unguessable run id; knowing the id is what lets a visitor watch and drive the run (pause, resume, stop, and steer
it: `send`). The registry admits at most `max_runs` CPU trainings and `max_gpu_runs` GPU trainings at once; the
others wait in one FIFO queue and start by themselves when a slot of their kind frees. A page that shows a run
registers its session as a watcher (`heartbeat(run_id, watcher)`) and unregisters it when the session closes
(`unwatch`); a run with no watcher and no heartbeat for `grace_s` is stopped (a reload has that long to
reattach), and an ended run is dropped `retention_s` after it ended and was last seen, or earlier when the
registry holds more than `max_kept` runs (oldest ended first).

A series (`submit_series`: a study's runs) trains its runs one after another, each joining the end of the queue
when the one before it ends: a study holds at most one slot, and no thread of its own drives it. Its runs are
watched, stopped and kept as one, and none is dropped while the series is active or before the whole series is due.

With a run store (`RegistryConfig.store`, aecore.runs.store, written through `keeping.Keeper`), every training is
also kept on disk or in a database: a run dropped from memory, or one from before a restart, is found there by
its id; one whose server stopped or died is "interrupted" and `continue_run` resumes it from its last epoch.
"""
from __future__ import annotations

import itertools
import secrets
import sys
import threading
import time
from typing import Callable

from aecore.engine.data import Data
from aecore.engine.models import build, count_params
from aecore.engine.train import RunSpec
from aecore.runs import queue
from aecore.runs.backend import Backend, LocalBackend
from aecore.runs.job import TrainingJob
from aecore.runs.keeping import Keeper, restored
from aecore.runs.process import ProcessBackend
from aecore.runs.queue import ENDED, Run, RunRefused, RunView   # noqa: F401 (RunRefused, RunView: public here)
from aecore.runs.relay import RayBackend
from aecore.runs.settings import RegistryConfig
from aecore.runs.task import TaskSpec


class RunRegistry:
    """Thread-safe; one per server. `clock` is injectable so tests can move time."""

    def __init__(self, config: RegistryConfig | None = None, clock: Callable[[], float] = time.monotonic,
                 sweep_every: float | None = 1.0):
        self.config = config or RegistryConfig()
        sys.setswitchinterval(self.config.switch_interval_s)   # see RegistryConfig.switch_interval_s
        self._clock = clock
        self._lock = threading.RLock()       # re-entered when a job ends synchronously inside a registry call
        self._runs: dict[str, Run] = {}      # insertion order = submission order = the FIFO queue's order
        self._rate: dict[str, float] = {}    # family -> last measured samples/s, for queue estimates
        self._tickets = itertools.count()    # queue order: a series run joins the queue when its turn comes
        self._caps = {False: self.config.max_runs, True: self.config.max_gpu_runs}   # slots per kind (GPU?)
        self._closed = threading.Event()
        self.backend = self._backend_for(self.config)
        self.keeper = Keeper(self.config.store, self.config.store_retention)   # runs kept across restarts
        self._store_swept = -float("inf")
        self._sweeper = threading.Thread(target=self._sweep_loop, args=(sweep_every,), name="runs-sweeper",
                                         daemon=True) if sweep_every else None
        if self._sweeper is not None:
            self._sweeper.start()

    # ------------------------------------------------------------------------------------------ submitting
    def submit(self, spec: RunSpec | TaskSpec, data: Data, visitor: str) -> str:
        """Queue a run for `visitor` and start it at once if a slot is free; returns its id. A TaskSpec (a lab's
        experiment, aecore.runs.task) is a run like any other: it takes a slot, waits its turn, can be stopped.

        Raises RunRefused when the spec breaks the profile's limits, the visitor already has a run (or a series)
        queued or running, or the queue is full; ValueError (from the job) for a device this machine lacks."""
        return self._submit([spec], data, visitor, series=None)[0]

    def submit_series(self, specs, data: Data, visitor: str) -> str:
        """Queue `specs` as one series for `visitor`: they train one after another on `data`, each joining the
        queue when the one before it ends. Returns the series id (random, like a run id); `series(id)` lists
        its runs. Refused as `submit` is, for any of its runs; ValueError for an empty series or specs that
        ask for different data (they all train on `data`)."""
        specs = list(specs)
        if not specs:
            raise ValueError("a series needs at least one run")
        if len({s.data for s in specs}) > 1:
            raise ValueError("the runs of a series train on the same data; their data configs differ")
        series_id = secrets.token_urlsafe(16)
        self._submit(specs, data, visitor, series=series_id)
        return series_id

    def _submit(self, specs: list[RunSpec], data: Data, visitor: str, series: str | None) -> list[str]:
        for i, spec in enumerate(specs):
            if isinstance(spec, TaskSpec):      # a task's config bounds itself (its lab checks it)
                continue
            problem = self.config.limits.problem(spec, count_params(build(spec.model, seed=0)))
            if problem:
                raise RunRefused(problem if series is None else f"run {i + 1} ({spec.name}): {problem}")
        with self._lock:
            self._refuse_if_busy(visitor)
            waiting = sum(r.queued for r in self._runs.values())
            if waiting + len(specs) > self.config.max_queued:
                raise RunRefused(f"the queue is full ({waiting} runs waiting, at most {self.config.max_queued}); "
                                 f"try again in a few minutes")
            now, ids, runs = self._clock(), [], []
            for spec in specs:                          # every job first: a bad device refuses the whole series
                run_id = secrets.token_urlsafe(16)      # 128 random bits: knowing it is the key to the run
                job = self._job_for(run_id, spec, data, series)
                runs.append(Run(run_id, spec, job, gpu=job.device.startswith("cuda"), owners={visitor}, submitted=now,
                                seen=now, estimate_s=queue.estimate(spec, len(data.train), self._rate), series=series))
                ids.append(run_id)
            runs[0].ticket = next(self._tickets)        # the others take theirs when the run before them ends
            for run in runs:
                self._runs[run.id] = run
                if isinstance(run.spec, RunSpec):
                    self.keeper.write("create", run.id, run.spec, visitor, series)
            self._schedule()
            self._trim()
            return ids

    def _job_for(self, run_id: str, spec: RunSpec, data: Data, series: str | None,
                 resume: bytes | None = None) -> TrainingJob:
        keep = self.keeper.epoch_keeper(run_id) if self.keeper.store and isinstance(spec, RunSpec) else None
        return self.backend.job(run_id, spec, data, series, on_end=lambda: self._ended(run_id), keep=keep,
                                 resume=resume)

    @staticmethod
    def _backend_for(cfg: RegistryConfig) -> Backend:
        """Ray: runs on a cluster whose resources are the cap and the queue (RayUnavailable without Ray);
        processes: a warm process per slot; threads: in this process."""
        if cfg.backend == "ray":
            return RayBackend(cfg)
        return ProcessBackend(cfg.max_runs + cfg.max_gpu_runs, cfg.threads_per_run) if cfg.backend == "processes" \
            else LocalBackend(TrainingJob, cfg.threads_per_run)

    def _refuse_if_busy(self, visitor: str) -> None:
        """RunRefused when the visitor has a run queued or running. A run whose job has ended counts as ended,
        also in the moment before its end frees the slot: a page that shows "finished" takes the visitor's next
        run (it queues for that moment if it must). Holds the lock."""
        mine = [r for r in self._runs.values()
                if visitor in r.owners and r.ended is None and (r.queued or r.job.state not in ENDED)]
        if mine:
            raise RunRefused(self._busy_message(mine[0]))

    def _busy_message(self, run: Run) -> str:
        if run.series is None:
            return (f"you already have a run {'queued' if run.queued else 'in progress'} ({run.spec.name}); stop it "
                    f"or let it end before starting another")
        runs = queue.series_of(self._runs, run.series)
        done = sum(r.ended is not None for r in runs)
        return (f"you already have a series of {len(runs)} runs in progress ({done} ended, next: {run.spec.name}); "
                f"stop it or let it end before starting another")

    # ------------------------------------------------------------------------------------------ watching
    def view(self, run_id: str) -> RunView | None:
        """The run as it is now, or None when no run has that id (never had, or dropped from memory and the
        store)."""
        with self._lock:
            run = self._runs.get(run_id) or self._from_store(run_id)
            if run is None:
                return None
            snap = run.job.snapshot()
            position = starts_in = ahead = None
            if run.queued and run.ticket is not None:
                position, starts_in = queue.place(self._runs, run, self._caps[run.gpu], self._clock())
            elif run.queued:
                ahead, starts_in = queue.series_wait(self._runs, run, self._caps, self._clock())
            job = run.job     # its spec holds the changes made while it trains (job.send)
            return RunView(run.id, job.spec, "queued" if run.queued else snap.state, snap, position, starts_in,
                           run.stop_reason or job.stop_reason, job.model, job.meta, job.checkpoint_bytes, run.series,
                           ahead)

    def attach(self, run_id: str, visitor: str) -> RunView | None:
        """A visitor opened the run's link: it becomes one of the run's visitors (its list shows it)."""
        with self._lock:
            run = self._runs.get(run_id) or self._from_cluster(run_id) or self._from_store(run_id)
            if run is None:
                return None
            if visitor not in run.owners and isinstance(run.spec, RunSpec):
                self.keeper.write("add_owner", run_id, visitor)
            run.owners.add(visitor)
            run.seen = self._clock()
        return self.view(run_id)

    def _from_store(self, run_id: str) -> Run | None:
        """A run the store has but not this server's memory, as it ended (or interrupted). Holds the lock."""
        stored = self.keeper.read("get", run_id) if run_id else None
        if stored is None:
            return None
        now = self._clock()
        run = Run(run_id, stored.spec, restored(self.keeper.store, stored), gpu=False, owners=set(), submitted=now,
                  seen=now, started=now, ended=now, series=stored.series)
        self._runs[run_id] = run
        self._trim()
        return run

    def _from_cluster(self, run_id: str) -> Run | None:
        """With the ray backend, a run another server started: mirrored here from its actor. Holds the lock."""
        if not run_id:
            return None
        job = self.backend.find(run_id, on_end=lambda: self._ended(run_id))
        if job is None:
            return None
        now = self._clock()
        run = Run(run_id, job.spec, job, gpu=job.device.startswith("cuda"), owners=set(), submitted=now, seen=now,
                   started=now, series=job.series)
        self._runs[run_id] = run
        self._trim()
        return run

    def series(self, series_id: str) -> list[RunView] | None:
        """The runs of a series in their order, as they are now; None when no run of it is held (an unknown id,
        or the whole series dropped)."""
        with self._lock:
            ids = [r.id for r in queue.series_of(self._runs, series_id)]
        views = [v for v in map(self.view, ids) if v is not None]
        return views or None

    def attach_series(self, series_id: str, visitor: str) -> list[RunView] | None:
        """A visitor opened the series' link: it becomes one of the visitors of each of its runs."""
        with self._lock:
            runs = queue.series_of(self._runs, series_id)
            if not runs:                                       # started by another server of the cluster
                runs = [r for r in map(self._from_cluster, self.backend.series(series_id)) if r is not None]
            for run in runs:
                run.owners.add(visitor)
                run.seen = self._clock()
        return self.series(series_id) if runs else None

    def heartbeat(self, run_id: str, watcher: str | None = None) -> bool:
        """Someone (a `watcher`: a session, until `unwatch`) looks at the run, or its series, now; False if unknown."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is not None:
                for r in queue.together(self._runs, run):
                    r.seen = self._clock()
                    if watcher is not None:
                        r.watchers.add(watcher)
            return run is not None

    def unwatch(self, watcher: str) -> None:
        """A session closed: it watches nothing any more. A run left without watchers gets the grace time."""
        with self._lock:
            now = self._clock()
            for run in self._runs.values():
                if watcher in run.watchers:
                    run.watchers.discard(watcher)
                    run.seen = now

    def runs_of(self, visitor: str, stored: int = 12) -> list[RunView]:
        """The runs this visitor started or reattached to, never anyone else's: the `stored` newest the store has
        and this server does not hold, then this server's, oldest first."""
        with self._lock:
            ids = [r.id for r in self._runs.values() if visitor in r.owners]
        kept = [s for s in self.keeper.read("runs_of", visitor) or [] if s.id not in ids][-stored:]
        with self._lock:
            for s in kept:
                if s.id not in self._runs and self._from_store(s.id) is not None:
                    self._runs[s.id].owners.add(visitor)
        return [v for v in map(self.view, [s.id for s in kept] + ids) if v is not None]

    def cluster_resources(self) -> dict | None:
        return self.backend.resources()     # the Ray cluster's CPUs, GPUs (in all, free now) and nodes, or None

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

    def send(self, run_id: str, message) -> None:
        """Steer a running or paused run: aecore.engine.steering's Change, Step or Pace (ValueError: why not)."""
        self._job(run_id).send(message)

    def continue_run(self, run_id: str, data: Data, visitor: str) -> str:
        """Resume an interrupted run (its server stopped or died) from its last whole epoch, with the optimiser
        and random generators as they were there; the run keeps its id. Queued and capped as a new run is.
        Raises RunRefused when the run cannot be resumed (the message says why) or the visitor is busy."""
        stored, state = self.keeper.resumable(run_id, self.backend.resumes)
        with self._lock:
            self._refuse_if_busy(visitor)
            if not self.keeper.write("claim", stored):
                raise RunRefused("another server has just resumed this run; reload the page to follow it there")
            now = self._clock()
            job = self._job_for(run_id, stored.spec, data, None, resume=state)
            old = self._runs.pop(run_id, None)
            self._runs[run_id] = Run(run_id, stored.spec, job, gpu=job.device.startswith("cuda"),
                                     owners={visitor} | (old.owners if old else set()), submitted=now, seen=now,
                                     estimate_s=queue.estimate(stored.spec, len(data.train), self._rate),
                                     ticket=next(self._tickets))
            self._schedule()
        return run_id

    def stop(self, run_id: str, reason: str | None = None) -> None:
        """Stop a running or paused run before its next step; a queued one leaves the queue at once. Given any
        run of a series (even one that has just ended), every run of the series that has not ended stops: the
        run named gets `reason`, the others `reason` too or, without one, a reason that names the run."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                return
            targets = [r for r in queue.together(self._runs, run) if r.ended is None]
            running = []
            for r in targets:
                if r.stop_reason is None:
                    r.stop_reason = reason if reason or r is run else f"its series was stopped at {run.spec.name}"
                if r.queued:
                    r.job.stop(r.stop_reason)  # never started: its state becomes "stopped" now
                    r.ended = self._clock()
                else:
                    running.append(r)
        for r in running:
            r.job.stop(r.stop_reason)          # the worker notices before its next step, then calls _ended

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
            caps = self._caps
            if self.backend.queues_itself:   # the cluster's scheduler is the cap: its actors wait for resources
                caps = {False: sys.maxsize, True: sys.maxsize}
            for r in queue.to_start(self._runs, caps):
                r.started = self._clock()
                r.job.start()
                if isinstance(r.spec, RunSpec):
                    self.keeper.write("started", r.id)

    def _ended(self, run_id: str) -> None:
        """Called by a job's worker thread when its run has ended: free the slot, start the next."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                return
            run.ended = self._clock()
            last = run.job.snapshot().last
            if last is not None and last.elapsed > 0 and isinstance(run.spec, RunSpec):
                self._rate[run.spec.model.family] = last.samples / last.elapsed
            following = queue.next_in_series(self._runs, run)
            if following is not None:          # the next run of its series joins the queue now
                following.ticket = next(self._tickets)
            self._schedule()
            reason = run.stop_reason or run.job.stop_reason
        self.keeper.ended(run_id, run.job, reason, interrupted=self._closed.is_set())

    # ------------------------------------------------------------------------------------------ housekeeping
    def sweep(self) -> None:
        """Stop runs nobody watches (grace), drop ended runs past their retention: every second (tests: at will)."""
        now, cfg = self._clock(), self.config
        self.keeper.write("beat")
        if now - self._store_swept > 60.0:     # the store's retention: age, count, disk size
            self._store_swept = now
            self.keeper.write("sweep")
        with self._lock:
            for r in self._runs.values():
                if r.job.guards_itself:        # it stops itself; every server tells it whether it is watched
                    r.job.watched = bool(r.watchers) or now - r.seen <= cfg.grace_s
            unwatched = [r.id for r in self._runs.values() if r.ended is None and not r.watchers
                         and not r.job.guards_itself and now - r.seen > cfg.grace_s]
            for run_id in unwatched:
                self.stop(run_id, reason=f"nobody watched it for {cfg.grace_s:g} s")
            for run in list(self._runs.values()):
                kept_since = queue.kept_since(self._runs, run)
                if kept_since is not None and now - kept_since > cfg.retention_s:
                    del self._runs[run.id]
            self._trim()

    def _trim(self) -> None:
        """Keep at most max_kept runs: drop the ended ones, oldest ended first, a series with its last run
        (active runs, and the ended runs of an active series, always stay)."""
        with self._lock:
            for r in queue.to_drop(self._runs, self.config.max_kept):
                del self._runs[r.id]

    def _sweep_loop(self, every: float) -> None:
        while not self._closed.wait(every):
            self.sweep()

    def shutdown(self, wait: float = 0.0) -> None:
        """Stop every run and the sweeper (server shutdown, tests); with `wait`, join the workers (with a store, a
        few seconds at least: each run writes that it was interrupted). Runs on a Ray cluster are left to go on:
        other servers may show them, and unwatched they stop themselves."""
        self._closed.set()
        with self._lock:
            runs = [r for r in self._runs.values() if not r.job.guards_itself]
        for r in runs:
            self.stop(r.id, reason="the server shut down")
        for r in runs:
            r.job.join(max(wait, 5.0 if self.keeper.store else 0.0))
        self.keeper.close()
        self.backend.close()

"""Where the registry's runs train: the small interface between the registry and its backends.

The registry asks a backend for each run's job and, for runs it does not hold, whether the backend knows them;
everything else (ids, visitors, the queue, grace and retention) stays the registry's. `LocalBackend` trains on
this machine, a thread per run (`aecore.runs.job`), and knows only the runs this server started;
`ProcessBackend` (`aecore.runs.process`) trains each in a warm process of its own, one kept ready per slot. The
Ray backend (`aecore.runs.relay.RayBackend`) trains each run in an actor on a cluster, finds runs other servers
started there, and lets the cluster's scheduler be the cap and the queue.
"""
from __future__ import annotations

from typing import Callable

from aecore.engine.data import Data
from aecore.engine.train import RunSpec
from aecore.runs.job import TrainingJob


class Backend:
    """What the registry calls. The defaults are a backend that knows no runs but its own server's."""

    queues_itself = False    # True: its own scheduler is the cap (the registry starts every run at once)

    resumes = False          # True: its jobs can go on from a training state (`resume`) and report theirs (`keep`)

    def job(self, run_id: str, spec: RunSpec, data: Data, series: str | None,
            on_end: Callable[[], None], keep: Callable | None = None, resume: bytes | None = None) -> TrainingJob:
        """A new run's job, not started; `on_end` is called once the run has ended, `keep(epoch, state bytes,
        history)` after each epoch where the backend reports them; `resume` is a training state to go on from.
        ValueError for a device the backend lacks."""
        raise NotImplementedError

    def find(self, run_id: str, on_end: Callable[[], None]) -> TrainingJob | None:
        """A started job that follows a run another server started, found by its id; None when there is none."""
        return None

    def series(self, series_id: str) -> list[str]:
        """The run ids of a series another server started, in their order; [] when there is none."""
        return []

    def resources(self) -> dict | None:
        """The CPUs and GPUs (in all, free now) and nodes that the runs share, where the backend knows them."""
        return None

    def wait_ready(self, timeout_s: float) -> bool:
        """Wait until the backend could start a run at once (its warm processes are ready); True when it can."""
        return True

    def close(self) -> None:
        """Let go of what the backend holds (its warm processes) once the registry has stopped its runs."""


class LocalBackend(Backend):
    """Runs on this machine: `job_class` (TrainingJob: a thread; ProcessJob: a process) with `threads` each."""

    resumes = True

    def __init__(self, job_class: type[TrainingJob], threads: int):
        self.job_class, self.threads = job_class, threads

    def job(self, run_id, spec, data, series, on_end, keep=None, resume=None) -> TrainingJob:
        return self.job_class(spec, data, threads=self.threads, on_end=on_end, keep=keep, resume=resume)

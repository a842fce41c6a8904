"""The Ray backend: each run trains in a named Ray actor, so a class's runs spread over a cluster's machines.

Chosen by `AELAB_RAY_ADDRESS` (`local`: a Ray instance started by this server on this machine; `auto`: the cluster
started on this machine with `ray start`; `host:port`: a cluster's head). Ray is optional: without it installed,
asking for it raises `RayUnavailable` with the install command.

This module is the cluster's side and this process's connection to it; the server's side of a run, `RayJob`, and
the registry's backend are in `aecore.runs.relay`.

- A run is the actor `RunActor`, named by the run id in the namespace `aelab`. Inside it a thread-backend
  `TrainingJob` trains with the same `fit` and keeps the same snapshots; the actor answers polls, pause, resume
  and stop, and hands over the checkpoint bytes when the run has ended.
- It asks for `threads_per_run` CPUs, plus one GPU when the run asks for cuda (or for auto and the cluster has
  GPUs). The cluster's scheduler is then the cap and the queue: an actor waiting for resources is a "queued" run.
- The catalogue `RunDirectory` (aecore.runs.directory: one small actor, no CPU, no torch) knows every run's spec
  and each series' runs, so that another app server pointed at the same cluster reattaches to a run by its id,
  even one still queued there; an ended run's actor hands it its final state and checkpoint, and exits.
- A run watches over itself: each server that shows it says so on every poll; unwatched for the grace time, the
  actor stops its run, and once ended and unwatched for the retention time it removes itself. No server has to
  outlive its runs, and a reload that lands on another server keeps them going.
- The images go into Ray's object store once per data set and server; each node fetches them once, and every
  actor on that node reads the same copy.
"""
from __future__ import annotations

import pickle
import threading
import time
import warnings
from pathlib import Path

import torch

from aecore.engine import checkpoint
from aecore.engine.data import Data, Split
from aecore.runs.directory import RunDirectory
from aecore.engine.train import RunSpec
from aecore.runs.job import Snapshot, TrainingJob

NAMESPACE = "aelab"
INSTALL = "pip install -r requirements-ray.txt"
POLL_S = 0.25            # how often a server asks a running actor what is new
STATES = ("queued", "running", "paused", "finished", "stopped", "failed")
ENDED = ("finished", "stopped", "failed")


class RayUnavailable(RuntimeError):
    """Ray was asked for and cannot be used: not installed, or the cluster cannot be reached."""


def import_ray():
    try:
        import ray
    except ImportError as e:
        raise RayUnavailable(f"AELAB_RAY_ADDRESS asks for Ray, but Ray is not installed in this environment "
                             f"({e}). Install it with: {INSTALL}") from None
    return ray


# ---------------------------------------------------------------------------------------------- the connection
class Cluster:
    """This process's connection to Ray (one per process, as Ray allows). `connect(address)` makes or reuses it."""

    def __init__(self, ray, address: str):
        self.ray, self.address = ray, address
        self._data: dict[int, tuple[Data, object]] = {}      # id(Data) -> (the Data, its ObjectRef)
        self._lock = threading.Lock()
        self._actor_cls = ray.remote(RunActor)
        # The catalogue actor, made by the first server of the cluster (no CPU: it never waits in line); found
        # here at once, so that no later call waits for it to start.
        self._directory = ray.remote(RunDirectory).options(
            name="directory", namespace=NAMESPACE, lifetime="detached", num_cpus=0, get_if_exists=True).remote()
        ray.get(self._directory.find.remote(""))

    def directory(self):
        return self._directory

    def resources(self) -> dict:
        """The cluster's CPUs and GPUs, in all and free now."""
        total, free = self.ray.cluster_resources(), self.ray.available_resources()
        return {"cpus": total.get("CPU", 0.0), "gpus": total.get("GPU", 0.0), "free_cpus": free.get("CPU", 0.0),
                "free_gpus": free.get("GPU", 0.0), "nodes": sum(k.startswith("node:") and k != "node:__internal_head__"
                                                                 for k in total)}

    def gpus_for(self, device: str) -> int:
        """A run's GPUs: one for cuda (refused when the cluster has none), one for auto on a cluster with GPUs."""
        has_gpu = self.ray.cluster_resources().get("GPU", 0) > 0
        if device == "cuda" and not has_gpu:
            raise ValueError("device 'cuda' was asked for but this Ray cluster has no GPU; use 'auto' or 'cpu'")
        return int(has_gpu and device in ("auto", "cuda"))

    def put(self, data: Data):
        """The data set's images in the object store, once per Data object (pages share one per data set)."""
        with self._lock:
            held = self._data.get(id(data))
            if held is None or held[0] is not data:
                arrays = tuple(None if s is None else (s.images.numpy(), s.labels.numpy())
                               for s in (data.train, data.val, data.test))
                held = self._data[id(data)] = (data, self.ray.put(arrays))
                while len(self._data) > 4:                # a few data sets at most; the oldest go first
                    self._data.pop(next(iter(self._data)))
            return held[1]

    def add(self, run_id: str, spec: RunSpec, series: str | None) -> None:
        """Enter a queued run in the catalogue, so that other servers can find it by its id. Not waited for: one
        caller's calls reach the catalogue in order, so this server's next question finds the run there."""
        self.directory().add.remote(run_id, pickle.dumps(spec), series)

    def start(self, run_id: str, spec: RunSpec, data: Data, threads: int, gpus: int, grace_s: float,
              retention_s: float):
        """Create the run's actor (it waits in the cluster's queue until its resources are free); None when
        another server has stopped the run meanwhile (`cancelled` says why)."""
        return self._actor_cls.options(
            name=run_id, namespace=NAMESPACE, lifetime="detached", num_cpus=threads, num_gpus=gpus,
            max_concurrency=4, max_restarts=0,
        ).remote(run_id, spec, self.put(data), threads, grace_s, retention_s)

    def cancelled(self, run_id: str) -> str | None:
        return self.ray.get(self.directory().claim.remote(run_id))

    def cancel(self, run_id: str, reason: str | None) -> None:
        self.ray.get(self.directory().cancel.remote(run_id, reason))

    def final(self, run_id: str):
        """(final state, checkpoint bytes) of an ended run, or None."""
        found = self.ray.get(self.directory().final.remote(run_id))
        return None if found is None else (pickle.loads(found[0]), found[1])

    def find(self, run_id: str):
        """(spec, series id) of a run on the cluster, or None when it is not there (never was, or expired)."""
        found = self.ray.get(self.directory().find.remote(run_id))
        return None if found is None else (pickle.loads(found[0]), found[1])

    def actor(self, run_id: str):
        """The run's actor, or None while it does not exist (queued by its server, or expired)."""
        try:
            return self.ray.get_actor(run_id, namespace=NAMESPACE)
        except ValueError:
            return None

    def series(self, series_id: str) -> list[str]:
        return self.ray.get(self.directory().series.remote(series_id))


_CLUSTER: Cluster | None = None
_CONNECT_LOCK = threading.Lock()


def init_options() -> dict:
    """`ray.init` options every AE Lab driver uses: the namespace, and the aecore package shipped to the workers
    (so a cluster's nodes need AE Lab's requirements, not a copy of AE Lab)."""
    return {"namespace": NAMESPACE, "log_to_driver": False,
            "runtime_env": {"py_modules": [str(Path(__file__).resolve().parents[1])],
                            "excludes": ["__pycache__"]}}


def disconnect() -> None:
    """Forget this process's connection (tests; Ray itself stays as it is)."""
    global _CLUSTER
    with _CONNECT_LOCK:
        _CLUSTER = None


def connect(address: str) -> Cluster:
    """Connect this process to Ray at `address` (`local`, `auto` or a head's `host:port`), once.

    A process already connected (a test's `ray.init`) is reused as it is. Ray's local instance is started from a
    thread that lives as long as the process: Ray's processes end with the thread that started them, and a
    Streamlit server runs each script in a thread that ends."""
    global _CLUSTER
    with _CONNECT_LOCK:
        if _CLUSTER is not None:
            return _CLUSTER
        ray = import_ray()
        if not ray.is_initialized():
            outcome: dict = {}
            started = threading.Event()

            def hold():
                try:
                    if address == "local":
                        ray.init(include_dashboard=False, **init_options())
                    else:
                        ray.init(address=address, **init_options())
                except Exception as e:     # unreachable cluster, bad address
                    outcome["error"] = e
                started.set()
                if "error" not in outcome:
                    threading.Event().wait()   # keep the thread (and so Ray's processes) alive

            threading.Thread(target=hold, name="aelab-ray", daemon=True).start()
            started.wait()
            if "error" in outcome:
                e = outcome["error"]
                raise RayUnavailable(f"could not connect to Ray at AELAB_RAY_ADDRESS={address!r}: "
                                     f"{type(e).__name__}: {e}") from e
        _CLUSTER = Cluster(ray, address)
        return _CLUSTER


# ---------------------------------------------------------------------------------------------- on the cluster
class RunActor:
    """One run on the cluster: a thread-backend TrainingJob, started as soon as the actor has its resources. When
    the run ends, the actor hands its final state and checkpoint to the directory and exits, freeing them."""

    def __init__(self, run_id: str, spec: RunSpec, arrays, threads: int, grace_s: float, retention_s: float):
        import ray
        self._ray, self.run_id = ray, run_id
        with warnings.catch_warnings():    # the object store's arrays are read-only; training never writes them
            warnings.simplefilter("ignore", UserWarning)
            splits = [None if a is None else Split(torch.from_numpy(a[0]), torch.from_numpy(a[1])) for a in arrays]
        self.grace_s, self.retention_s = grace_s, retention_s
        self.seen = time.monotonic()
        self.stop_reason: str | None = None
        self.job = TrainingJob(spec, Data(*splits), threads=threads, on_end=self._finish)
        self.job.start()
        threading.Thread(target=self._watch, name="watchdog", daemon=True).start()

    def poll(self, n_records: int, n_frames: int, watched: bool) -> dict:
        """What is new since the caller's last poll (it has `n_records` records and `n_frames` frames)."""
        if watched:
            self.seen = time.monotonic()
        return _state(self.job.snapshot(), self.stop_reason, n_records, n_frames)

    def pause(self) -> None:
        self.job.pause()

    def resume(self) -> None:
        self.job.resume()

    def send(self, message) -> None:
        try:
            self.job.send(message)
        except ValueError:
            pass                         # checked by the server that sent it; the run has just ended meanwhile

    def stop(self, reason: str | None = None) -> None:
        if self.stop_reason is None and self.job.active:
            self.stop_reason = reason
        self.job.stop()

    def _finish(self) -> None:
        """The run has ended (the job's thread calls this): hand everything to the directory, then exit."""
        job, ray = self.job, self._ray
        blob = job.checkpoint_bytes
        if blob is None and job.model is not None:     # a diverged run's last good weights
            blob = checkpoint.to_bytes(job.model, job.meta)
        directory = ray.get_actor("directory", namespace=NAMESPACE)
        final = pickle.dumps(_state(job.snapshot(), self.stop_reason))
        ray.get(directory.finish.remote(self.run_id, final, blob, self.retention_s))
        time.sleep(POLL_S * 2)                         # polls on their way get an answer
        ray.kill(ray.get_runtime_context().current_actor)

    def _watch(self) -> None:
        """Stop the run when no server has shown it for the grace time."""
        while self.job.active:
            time.sleep(1.0)
            if self.job.active and time.monotonic() - self.seen > self.grace_s:
                self.stop(f"nobody watched it for {self.grace_s:g} s")


def _state(snap: Snapshot, stop_reason: str | None, n_records: int = 0, n_frames: int = 0) -> dict:
    """A run's state for a server that holds `n_records` records and `n_frames` frames already."""
    return {"state": snap.state, "records": snap.records[n_records:], "frames": snap.timeline[n_frames:],
            "originals": snap.originals if n_records == n_frames == 0 else None, "error": snap.error,
            "result": snap.result, "device": snap.device, "stop_reason": stop_reason, "peek": snap.peek}

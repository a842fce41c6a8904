"""Warm training processes: one per slot, started with the server, torch imported, waiting for their next run.

A process started per run spent its first seconds importing torch and unpickling its images before the first
step (12 s without one metric, measured with 8 browser sessions on 2 cores). A `Worker` here is a spawned process
that imports torch once and then trains run after run: the parent sends ("run", spec, shared data, probe,
threads, resume) down its pipe, the worker sends back every event of `train_run` until "done" or "failed", and
waits for the next. The images come as `aecore.runs.shared` files it maps, not as a copy.

What one run leaves in the process never reaches the next: before each run the worker resets the random
generators, grad mode, the default dtype and its thread count (`fresh_state`), and the run's own seed does the
rest. Pause and stop are the worker's process-shared events, reset by the parent before each run (so a stop that
comes while the worker is still starting up is kept). A worker that dies is replaced; the `Pool` keeps `size`
of them, and starts a cold one when all are busy.
"""
from __future__ import annotations

import functools
import gc
import multiprocessing as mp
import os
import random
import threading
import time
from multiprocessing import spawn

import numpy as np
import torch

from aecore.engine.data import Data, Split
from aecore.engine.models import ModelConfig, build
from aecore.engine.train import Control, TrainConfig, fit
from aecore.runs import shared
from aecore.runs.job import train_run

_CTX = mp.get_context("spawn")   # fork would copy a threaded server's locks mid-use; CUDA needs spawn too
NAME = "aelab-train-"            # every training process's name starts with this (see _without_main)
NICENESS = 10                    # training yields the cores to the server's page scripts; alone, it takes them all


def fresh_state(threads: int) -> None:
    """A training process as a new one would start a run: seeded generators, grad on, float32, `threads`."""
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    torch.set_grad_enabled(True)
    torch.set_default_dtype(torch.float32)
    torch.set_num_threads(threads)
    gc.collect()


class Worker:
    """One warm training process and the parent's ends of it: its pipe and its pause/stop events."""

    def __init__(self, index: int):
        _without_main()
        self.control = Control(stop=_CTX.Event(), running=_CTX.Event(), inbox=_CTX.SimpleQueue())
        self.conn, child = _CTX.Pipe()
        self.process = _CTX.Process(target=_serve, name=f"{NAME}worker-{index}", daemon=True,
                                    args=(child, self.control))
        self.process.start()
        child.close()                  # the worker holds the only other end: EOF means it has gone
        self.ready = False             # it says "ready" once, when it has warmed up; a job skips that word

    def wait_ready(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for the worker's "ready" (an idle worker's only message); True once it came."""
        if not self.ready and self.alive and self.conn.poll(timeout_s):
            try:
                self.ready = self.conn.recv() == ("ready",)
            except (EOFError, OSError):
                pass
        return self.ready

    @property
    def alive(self) -> bool:
        return self.process.is_alive() and not self.conn.closed

    def arm(self, control: Control) -> None:
        """Before a run: the events as the run's job has them (a stop asked during start-up stays asked), and the
        steering messages it has had so far (what an earlier run left unread is dropped)."""
        self.control._stop.clear()
        self.control.resume()
        self.control.pending()
        if control.stopped:
            self.control.stop()
        elif control.paused:
            self.control.pause()
        for message in control.pending():
            self.control.send(message)

    def close(self) -> None:
        self.conn.close()              # an idle worker reads EOF and ends; a busy one is ended below
        self.process.join(2)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(2)


class Pool:
    """`size` warm workers; `take` hands one out (a cold one when none is idle), `give` takes it back."""

    def __init__(self, size: int):
        self.size = size
        self._lock = threading.Lock()
        self._idle: list[Worker] = []
        self._count = 0
        self._closed = False
        for _ in range(size):
            self._idle.append(self._new())

    def _new(self) -> Worker:
        self._count += 1
        return Worker(self._count)

    def take(self) -> Worker:
        with self._lock:
            if self._closed:
                raise RuntimeError("the server is shutting down")
            while self._idle:
                worker = self._idle.pop(0)
                if worker.alive:
                    return worker
                worker.close()
            return self._new()

    def give(self, worker: Worker, healthy: bool) -> None:
        """A worker back after a run: kept when healthy and there is room, replaced by a new one when not."""
        with self._lock:
            keep = healthy and worker.alive and not self._closed and len(self._idle) < self.size
            if keep:
                self._idle.append(worker)
                return
            refill = not self._closed and len(self._idle) < self.size
        # Off the caller's thread: the run's slot frees at once, and the next run finds a process in the pool
        threading.Thread(target=self._replace, args=(worker, refill), name="pool-replace", daemon=True).start()

    def _replace(self, worker: Worker, refill: bool) -> None:
        worker.close()
        if refill:
            with self._lock:
                if not self._closed and len(self._idle) < self.size:
                    self._idle.append(self._new())      # the slot stays warm

    def wait_ready(self, timeout_s: float) -> bool:
        """Wait until every idle worker has warmed up (benchmarks, tests); True when all have in `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            workers = list(self._idle)
        return all([w.wait_ready(max(0.0, deadline - time.monotonic())) for w in workers])

    @property
    def idle(self) -> int:
        with self._lock:
            return sum(w.alive for w in self._idle)

    def close(self) -> None:
        with self._lock:
            self._closed, workers, self._idle = True, self._idle, []
        for w in workers:
            w.close()


def _without_main() -> None:
    """Spawn training processes without the parent's main script (once per process; later calls do nothing).

    A spawned child first runs the parent's `__main__` again (as `__mp_main__`) so that objects defined there can
    be unpickled. Under Streamlit that is the app: Streamlit installs a module whose `__file__` is app.py as
    `__main__`, so every run's process executed the whole app outside Streamlit, its models loaded, and each st.*
    call logged "missing ScriptRunContext" (some 70 lines a run). The child needs nothing from `__main__`: its
    target and arguments come from aecore. So the preparation data of processes named NAME... leave the main
    script out; every other process spawns as before."""
    prepare = spawn.get_preparation_data
    if getattr(prepare, "aelab_without_main", False):
        return

    @functools.wraps(prepare)
    def preparation_data(name):
        data = prepare(name)
        if name.startswith(NAME):
            data.pop("init_main_from_path", None)
            data.pop("init_main_from_name", None)
        return data

    preparation_data.aelab_without_main = True
    spawn.get_preparation_data = preparation_data


def _end_with(parent: int) -> None:
    """End this training process when its server has gone (killed with SIGKILL, say): a paused run would wait
    for a resume that never comes, a running one would train for no one."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def warm_up() -> None:
    """Two steps of a small dense and a small conv autoencoder on random pictures, so that a run's first step
    does not pay torch's first-use costs (its lazy imports, the optimizer's and the kernels' set-up): measured
    on 2 busy cores, a warm process's first run showed its first metric after ~1.0 s without this, ~0.15 s with."""
    pictures = Split(torch.randint(0, 256, (8, 28, 28), dtype=torch.uint8), torch.arange(8) % 10)
    for model in (ModelConfig("shallow", hidden=(8,)), ModelConfig("conv", channels=(2,))):
        for _ in fit(build(model, seed=0), Data(pictures, None, pictures), TrainConfig(epochs=1, batch_size=4, device="cpu")):
            pass


def _serve(conn, control: Control) -> None:
    """The worker: train each run its parent sends, sending every event back (the model goes as checkpoint
    bytes, each epoch's training state as bytes), until the pipe closes."""
    threading.Thread(target=_end_with, args=(os.getppid(),), name="parent-watch", daemon=True).start()
    os.nice(NICENESS)
    torch.set_num_threads(1)
    warm_up()
    conn.send(("ready",))

    def emit(kind, *payload):
        if kind in ("done", "failed"):
            payload = (*payload[:-2], None, None)    # no model objects across the pipe: the bytes carry it
        conn.send((kind, *payload))

    while True:
        try:
            _, spec, data, probe, threads, resume = conn.recv()
        except (EOFError, OSError):
            return
        fresh_state(threads)
        try:
            data = shared.attach(data)
        except (OSError, ValueError) as e:
            emit("failed", f"the training process could not read the data set: {e}", None, None, None)
            continue
        train_run(spec, data, torch.from_numpy(probe), control, threads, emit, resume)
        del data

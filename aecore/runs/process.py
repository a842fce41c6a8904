"""The process backend: each run trains in a process of its own, so runs and the UI do not share one interpreter.

A thread backend's runs and every session's page scripts take turns on one interpreter lock: measured with 20
browser sessions and two runs on 2 cores, the server used 0.6 of its 2 cores and the runs together trained at
a third of one run's speed alone. Here `ProcessJob` is a `TrainingJob` whose worker thread only relays: it
starts a spawned process that runs the same `train_run`, and applies the events it sends back (records,
reconstructions, the checkpoint bytes at the end). Pause and stop are process-shared events read by `fit`
between two steps, as in the thread backend. The images go to the process as numpy arrays (one copy, no
shared-memory files).
"""
from __future__ import annotations

import functools
import multiprocessing as mp
import os
import threading
import time
from multiprocessing import spawn

import torch

from aecore.engine.data import Data, Split
from aecore.runs.job import TrainingJob, train_run
from aecore.engine.train import Control

_CTX = mp.get_context("spawn")   # fork would copy a threaded server's locks mid-use; CUDA needs spawn too
NAME = "aelab-train-"            # every training process's name starts with this (see _without_main)


class ProcessJob(TrainingJob):
    """A TrainingJob that trains in a child process; same interface, same snapshots."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._control = Control(stop=_CTX.Event(), running=_CTX.Event())
        self._process = None

    def _work(self) -> None:
        _without_main()
        receive, send = _CTX.Pipe(duplex=False)
        self._process = _CTX.Process(target=_child, name=f"{NAME}{self.spec.name}", daemon=True,
                                     args=(self.spec, _arrays(self.data), self._probe.numpy(), self._control,
                                           self.threads, send, self.resume_from))
        try:
            self._process.start()
            send.close()               # the child holds the only sending end now: EOF means it has gone
            while True:
                try:
                    kind, *payload = receive.recv()
                except EOFError:            # the pipe closes a moment before the process is reaped
                    self._process.join(5)
                    self._receive("failed", f"the training process ended unexpectedly (exit code "
                                            f"{self._process.exitcode})", None, None, None)
                    break
                self._receive(kind, *payload)
                if kind in ("done", "failed"):
                    break
        except Exception as e:          # the process could not start, or a message could not be read
            self._receive("failed", f"{type(e).__name__}: {e}", None, None, None)
        finally:
            receive.close()
            if self._process.pid is not None:      # it started
                self._process.join(10)
                if self._process.is_alive():
                    self._process.kill()
            self._ended()


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


def _arrays(data: Data) -> tuple:
    """The splits as numpy arrays: pickled by value into the child (torch would move tensors to shared memory)."""
    return tuple(None if s is None else (s.images.numpy(), s.labels.numpy()) for s in (data.train, data.val, data.test))


def _end_with(parent: int) -> None:
    """End this training process when its server has gone (killed with SIGKILL, say): a paused run would wait
    for a resume that never comes, a running one would train for no one."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _child(spec, arrays, probe, control, threads, send, resume=None) -> None:
    """The training process: rebuild the data, train (from a training state, to resume), send every event (the
    model goes as checkpoint bytes, each epoch's training state as bytes)."""
    train, val, test = (None if a is None else Split(torch.from_numpy(a[0]), torch.from_numpy(a[1])) for a in arrays)
    threading.Thread(target=_end_with, args=(os.getppid(),), name="parent-watch", daemon=True).start()

    def emit(kind, *payload):
        if kind in ("done", "failed"):
            payload = (*payload[:-2], None, None)    # no model objects across the pipe: the bytes carry it
        send.send((kind, *payload))

    try:
        train_run(spec, Data(train, val, test), torch.from_numpy(probe), control, threads, emit, resume)
    finally:
        send.close()

"""Runs that are not one `fit`: a lab's experiment, trained through the same registry, cap, queue and backends.

A `TaskSpec` names the experiment by its import path ("aecore.labs.fewlabels:comparison") instead of holding
it: the run service sits below the labs and never imports them, and a spawned training process finds the function
by the same name. The function is called as `task(config, data)` and returns a generator: it yields small frozen
progress records (each with `step`, `total_steps` and `elapsed`, as `fit`'s Metrics, so a snapshot's progress and
ETA read the same) and returns its result, a JSON-like dict. Between two records the job honours pause and stop
(`Control`), so a task stops within one record of being asked; a stopped task keeps the records it yielded and
has no result. The job (`aecore.runs.job`: a thread; `aecore.runs.process`: a process) keeps no model for a task.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

import torch

from aecore.engine.data import Data, DataConfig
from aecore.engine.train import Control, TrainingDiverged, resolve_device


class TaskError(ValueError):
    """A TaskSpec that names no task function, or asks for something the run service cannot give it."""


@dataclass(frozen=True)
class TaskSpec:
    """What to run: a name (shown in queues and run lists), the task function's import path, its config (a frozen
    dataclass the task reads), the data it gets, and its expected seconds (for queue estimates)."""
    name: str
    task: str                 # "package.module:function"
    config: object
    data: DataConfig
    estimate_s: float = 60.0  # expected seconds on this server; the place-in-line estimates add these up
    device: str = "cpu"

    def __post_init__(self):
        if self.estimate_s < 0:
            raise TaskError(f"TaskSpec.estimate_s must be >= 0, got {self.estimate_s!r}")
        resolve(self.task)    # a wrong name fails here, on the submitting side, before any thread or process

    def meta(self, device: str, **extra) -> dict:
        return {"name": self.name, "task": self.task, "data": self.data, "device": device, **extra}


def resolve(path: str) -> Callable:
    """The function a task path names; TaskError naming the part that is wrong."""
    module_name, _, attr = str(path).partition(":")
    if not module_name or not attr:
        raise TaskError(f"a task is named 'package.module:function', got {path!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise TaskError(f"task {path!r}: cannot import {module_name!r} ({e})") from None
    task = getattr(module, attr, None)
    if not callable(task):
        raise TaskError(f"task {path!r}: {module_name} has no function {attr!r}")
    return task


def task_run(spec: TaskSpec, data: Data, control: Control, threads: int, emit) -> None:
    """Run one task, telling `emit(kind, *payload)` what happens, as `job.train_run` does: "record" per progress
    record, then "done" (result, None, None, None) or "failed" (message, None, None, None). A stop ends it at the
    next record, "done" with result None."""
    torch.set_num_threads(threads)    # one thread per run on shared cores (see job.train_run)
    try:
        device = str(resolve_device(spec.device))
        steps = resolve(spec.task)(spec.config, data)
        result = None
        while True:
            control.wait_while_paused()
            if control.stopped:
                steps.close()         # the generator's finally blocks run; its partial work is dropped
                break
            try:
                emit("record", next(steps))
            except StopIteration as end:
                result = end.value
                break
        if result is not None:
            result = {**result, "device": device}
        emit("done", result, None, None, None)
    except TrainingDiverged as e:
        emit("failed", str(e), None, None, None)
    except Exception as e:  # shown to the visitor rather than lost in a thread or process
        emit("failed", f"{type(e).__name__}: {e}", None, None, None)

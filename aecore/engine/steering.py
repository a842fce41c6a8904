"""Driving a run while it trains: pause, resume, stop, change a setting, step a few batches, slow it down.

Another thread (or, with multiprocessing events and a queue, another process) holds a `Control` and sends it
messages; `fit` reads them between two steps (`Control.between_steps`), so each takes effect before the next step:
- `Change(name, value)`: a setting of `STEERABLE` (learning rate, noise kind and level, dropout rate, β, sparsity
  weight) from the next step on. `fit` records it as (step, name, value), `step` being the steps done before it,
  and a run started with those changes as its `TrainConfig.changes` schedule repeats them at the same steps, so
  it gives the same losses for the same seed.
- `Step(n)`: while paused, train `n` more batches, then pause again (a record is made at once, so every live view
  redraws).
- `Pace(steps_per_s)`: at most that many steps a second (0: full speed), the waiting not counted as training time.

A leaf of the engine: torch and the settings table only.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, replace

from torch import nn

from aecore.engine.fields import FIELDS, PLAIN, STEERABLE, VARIATIONAL

MAX_STEP = 1000            # batches one Step may ask for
PACES = (0.0, 50.0, 20.0, 10.0, 5.0, 2.0, 1.0)   # the speeds the Train page offers (steps a second; 0 = full speed)
RECORD_EVERY_S = 0.5       # while slowed down, a metrics record at least this often, so the chart moves


@dataclass(frozen=True)
class Change:
    name: str
    value: float | str


@dataclass(frozen=True)
class Step:
    n: int


@dataclass(frozen=True)
class Pace:
    steps_per_s: float


def steerable(model_config) -> tuple[str, ...]:
    """The settings a run of this model can change while it trains: the learning rate and the noise always;
    the dropout rate when the model was built with dropout layers; β for a VAE; the sparsity weight for shallow."""
    names = ["lr", "noise", "noise_level"]
    if model_config.family in PLAIN and model_config.dropout > 0:
        names.append("dropout")
    if model_config.family in VARIATIONAL:
        names.append("beta")
    if model_config.family == "shallow":
        names.append("sparsity")
    return tuple(n for n in STEERABLE if n in names)


def check_change(model_config, name: str, value) -> None:
    """ValueError, in words, unless a run of this model can change `name` to `value` while it trains."""
    if name not in STEERABLE:
        raise ValueError(f"{name!r} cannot change while a run trains (these can: {', '.join(STEERABLE)})")
    if name not in steerable(model_config):
        why = ("the model was built without dropout layers (dropout 0): start a run with a dropout rate to change "
               "it while it trains" if name == "dropout" and model_config.family in PLAIN else
               f"the {model_config.family} family has no {FIELDS[name].label.lower()}")
        raise ValueError(f"{name} cannot change in this run: {why}")
    if not FIELDS[name].accepts(value):
        raise ValueError(f"{name} must be {FIELDS[name].allowed()}, got {value!r}")


def check_schedule(model_config, changes) -> None:
    """ValueError naming the first change of a schedule that this model cannot make."""
    for step, name, value in changes:
        try:
            check_change(model_config, name, value)
        except ValueError as e:
            raise ValueError(f"TrainConfig.changes, at step {step}: {e}") from None


def apply(name: str, value, model: nn.Module, optimizer, cfg):
    """Make one change in a training run; returns the TrainConfig the loop goes on with (noise lives there).
    `optimizer` None leaves the learning rate alone (a resumed run's optimiser state holds it already)."""
    if name == "lr":
        for group in (optimizer.param_groups if optimizer is not None else ()):
            group["lr"] = value
    elif name in ("noise", "noise_level"):
        cfg = replace(cfg, **{name: value})
    else:
        apply_to_model(model, name, value)
    return cfg


def apply_to_model(model: nn.Module, name: str, value) -> None:
    """The model's side of a change: its dropout layers' rate, a VAE's β, a shallow model's sparsity weight."""
    if name == "dropout":
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.p = float(value)
    elif name in ("beta", "sparsity"):
        setattr(model, name, float(value))


def settle(model: nn.Module, changes) -> None:
    """A trained model as its run left it: the model-side changes of its schedule applied (a loaded checkpoint's
    losses then weigh their terms as the run's end did)."""
    for _, name, value in changes:
        if name in ("dropout", "beta", "sparsity"):
            apply_to_model(model, name, value)


def current(model_config, train_config, changes=()) -> dict:
    """Each steerable setting's value now: the run's start values with `changes` ((step, name, value)) applied."""
    values = {n: getattr(train_config if FIELDS[n].config == "train" else model_config, n)
              for n in steerable(model_config)}
    for _, name, value in changes:
        if name in values:
            values[name] = value
    return values


def made(records) -> list[tuple]:
    """The changes a run made, (step, setting, value) in order, from its metrics records."""
    return [c for r in records for c in r.changes]


def merge(schedule, made) -> tuple:
    """A run's whole schedule: the one it started with and the changes it made (`made`, from its records), in
    step order, each once."""
    out = list(schedule)
    out += [tuple(c) for c in made if tuple(c) not in out]
    return tuple(sorted(out, key=lambda c: c[0]))


class Control:
    """Thread-safe pause/resume/stop and steering messages for a running `fit`; each takes effect before the next
    step. Pass multiprocessing events and a multiprocessing SimpleQueue to drive a `fit` in another process."""

    def __init__(self, stop=None, running=None, inbox=None):
        self._stop = stop or threading.Event()
        self._running = running or threading.Event()
        self._running.set()
        self._inbox = inbox if inbox is not None else queue.SimpleQueue()
        self.reset()

    def reset(self) -> None:
        """The loop's side as a new run starts: no batches to step, full speed (messages still queued count)."""
        self._budget, self._pace, self._stepped, self._last = 0, 0.0, False, 0.0
        self._unrecorded = False       # the last step made no record (a pause then lets one more batch through)

    # ------------------------------------------------------------------------ the caller's side
    def pause(self):
        self._running.clear()

    def resume(self):
        self._running.set()

    def stop(self):
        self._stop.set()
        self._running.set()  # wake a paused loop so it can see the stop

    def send(self, message: Change | Step | Pace) -> None:
        self._inbox.put(message)

    def pending(self) -> list:
        """Take the messages the loop has not read yet (a process backend hands them on to its worker)."""
        out = []
        while not self._inbox.empty():
            out.append(self._inbox.get())
        return out

    @property
    def paused(self) -> bool:
        return not self._running.is_set() and not self._stop.is_set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    # ------------------------------------------------------------------------ the loop's side
    def wait_while_paused(self) -> float:
        """Block while paused; returns the seconds spent waiting."""
        return self.between_steps()[0]

    def between_steps(self) -> tuple[float, list[Change]]:
        """Before a step: read the messages, wait while paused (unless a Step allows this batch) and while the pace
        asks; returns (seconds waited, the changes to make now)."""
        t = time.perf_counter()
        changes = self._read()
        if self._running.is_set():
            self._budget = 0           # resumed: what was left of a Step is dropped
        while not self._running.is_set() and not self._stop.is_set():
            if self._budget > 0:
                self._budget -= 1
                self._stepped = self._budget == 0
                break
            if self._unrecorded:       # paused after the last step's record was decided: one more batch, so
                self._unrecorded = False   # the run stops on a record and the chart shows where it stands
                break
            self._running.wait(0.05)
            changes += self._read()
        while self._pace > 0 and not self._stop.is_set():
            wait = self._last + 1.0 / self._pace - time.perf_counter()
            if wait <= 0:
                break
            time.sleep(min(wait, 0.05))
            changes += self._read()            # a new pace (full speed: 0) counts at once
        self._last = time.perf_counter()
        return self._last - t, changes

    def record_due(self, since: float, usual: bool = False) -> bool:
        """Whether the loop should make a metrics record now, before its usual count (`usual`: the loop makes one
        anyway): a Step has just ended, the run is about to pause (the chart then shows where it stands), or it is
        slowed down and its last record is `since` (perf_counter) RECORD_EVERY_S old."""
        due = (self._stepped or (self.paused and self._budget == 0)
               or (self._pace > 0 and time.perf_counter() - since >= RECORD_EVERY_S))
        self._stepped, self._unrecorded = False, not (due or usual)
        return due

    def _read(self) -> list[Change]:
        changes = []
        for m in self.pending():
            if isinstance(m, Change):
                changes.append(m)
            elif isinstance(m, Step):
                self._budget += max(0, min(int(m.n), MAX_STEP))
            elif isinstance(m, Pace):
                self._pace = max(0.0, float(m.steps_per_s))
        return changes

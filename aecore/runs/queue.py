"""The registry's runs as records, and the FIFO queue over them: which runs start now, where a queued run stands
and when it should start, and which ended runs may go.

Plain functions of the registry's table of runs (`id -> Run`, in submission order, which is also the order of a
series' runs); the registry holds its lock around every call, so nothing here locks, keeps state or starts a job.
A run takes a ticket (its place in line) when it joins the queue: a single run when it is submitted, a run of a
series when the run before it ends; until then a series run waits for its turn, with no place in line. Slots are
counted per kind: `caps[False]` CPU runs and `caps[True]` GPU runs at once.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from aecore.engine.train import RunSpec
from aecore.runs.job import Snapshot, TrainingJob
from aecore.runs.task import TaskSpec

DEFAULT_SAMPLES_PER_S = 5_000.0    # a guess for start-time estimates until this server has measured a run

ENDED = ("finished", "stopped", "failed", "interrupted")


class RunRefused(ValueError):
    """A run the registry will not take (a limit, the visitor's one run, a full queue); the message says why."""


@dataclass(frozen=True)
class RunView:
    """What a page shows of one run: its state (the job's, or "queued"), its snapshot and, once it has ended,
    its model. `position` (1 = next) and `starts_in_s` are set while it is queued; a run of a series that waits
    for the runs before it (`series_ahead` of them, not yet ended) has no position yet, only `starts_in_s`."""
    id: str
    spec: RunSpec | TaskSpec
    state: str
    snapshot: Snapshot
    position: int | None = None
    starts_in_s: float | None = None
    stop_reason: str | None = None
    model: object | None = None            # aecore.engine.models.Autoencoder once the run has ended with weights
    meta: dict | None = None
    checkpoint_bytes: bytes | None = None
    series: str | None = None              # the id of the series it belongs to
    series_ahead: int | None = None        # runs of its series before it that have not ended, while it waits

    @property
    def active(self) -> bool:
        """Queued, running or paused: the run still holds (or waits for) a slot."""
        return self.state not in ENDED


@dataclass(eq=False)
class Run:
    """One run as the registry holds it: its job, who may see it, and its times on the registry's clock."""
    id: str
    spec: RunSpec | TaskSpec
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
    ticket: int | None = None           # place in the FIFO queue; None while a series run waits for its turn
    series: str | None = None

    @property
    def queued(self) -> bool:           # in the queue, or a series run waiting for the runs before it
        return self.started is None and self.ended is None

    @property
    def running(self) -> bool:          # running or paused: it holds a slot
        return self.started is not None and self.ended is None


# ---------------------------------------------------------------------------------------------- the line
def line(runs: dict[str, Run]) -> list[Run]:
    """The runs in the queue, first in line first (series runs still waiting for their turn are not)."""
    return sorted((r for r in runs.values() if r.queued and r.ticket is not None), key=lambda r: r.ticket)


def series_of(runs: dict[str, Run], series_id: str | None) -> list[Run]:
    """A series' runs in their order (submitted together, so in the table's insertion order)."""
    return [r for r in runs.values() if r.series == series_id] if series_id else []


def together(runs: dict[str, Run], run: Run) -> list[Run]:
    """The run and the rest of its series, which are watched, stopped and kept as one; a single run alone."""
    return series_of(runs, run.series) if run.series else [run]


def to_start(runs: dict[str, Run], caps: dict[bool, int]) -> list[Run]:
    """The queued runs to start now: oldest first, while their kind (CPU or GPU) has a free slot."""
    busy = {False: 0, True: 0}
    for r in runs.values():
        if r.running:
            busy[r.gpu] += 1
    starting = []
    for r in line(runs):
        if busy[r.gpu] < caps[r.gpu]:
            busy[r.gpu] += 1
            starting.append(r)
    return starting


def next_in_series(runs: dict[str, Run], run: Run) -> Run | None:
    """The run of `run`'s series that joins the queue when `run` ends: the first still waiting for its turn."""
    following = [r for r in series_of(runs, run.series) if r.queued and r.ticket is None]
    return following[0] if following else None


# ---------------------------------------------------------------------------------------------- estimates
def estimate(spec: RunSpec, n_train: int, rates: dict[str, float]) -> float:
    """Expected training seconds: the epochs' samples at the last rate measured for the model's family (a task
    brings its own estimate)."""
    if isinstance(spec, TaskSpec):
        return spec.estimate_s
    rate = rates.get(spec.model.family) or DEFAULT_SAMPLES_PER_S
    return spec.train.epochs * n_train / rate


def remaining(run: Run, now: float) -> float:
    """Estimated seconds until a running run ends: its own ETA once it has one, else the estimate."""
    eta = run.job.snapshot().eta_s
    return eta if eta is not None else max(0.0, run.estimate_s - (now - run.started))


def place(runs: dict[str, Run], run: Run, cap: int, now: float) -> tuple[int, float]:
    """1-based place among the queued runs of its kind, and an estimate of seconds until it starts: each of the
    kind's `cap` slots frees when its run's estimated remaining time is up, and the runs ahead take their
    estimates."""
    same = [r for r in runs.values() if r.gpu == run.gpu]
    free_at = [remaining(r, now) for r in same if r.running]
    free_at += [0.0] * max(0, cap - len(free_at))
    heapq.heapify(free_at)
    ahead = [r for r in line(runs) if r.gpu == run.gpu]
    position = ahead.index(run) + 1
    for r in ahead[:position - 1]:
        heapq.heapreplace(free_at, free_at[0] + r.estimate_s)
    return position, free_at[0] if free_at else float("inf")


def series_wait(runs: dict[str, Run], run: Run, caps: dict[bool, int], now: float) -> tuple[int, float]:
    """For a series run waiting for its turn: how many runs of its series are ahead of it and not ended, and the
    seconds until they will have (at the earliest: it then still joins the queue)."""
    mine = series_of(runs, run.series)
    ahead = [r for r in mine[:mine.index(run)] if r.ended is None]
    if not ahead:
        return 0, 0.0
    head, wait = ahead[0], 0.0
    if head.running:
        wait = remaining(head, now)
    elif head.ticket is not None:
        wait = place(runs, head, caps[head.gpu], now)[1] + head.estimate_s
    return len(ahead), wait + sum(r.estimate_s for r in ahead[1:])


# ---------------------------------------------------------------------------------------------- keeping
def kept_since(runs: dict[str, Run], run: Run) -> float | None:
    """When the retention time of an ended run starts: the later of its end and its last heartbeat; for a series,
    the latest over all its runs, so that it is dropped as a whole. None while it (or its series) is active."""
    group = together(runs, run)
    if any(r.ended is None for r in group):
        return None
    return max(max(r.ended, r.seen) for r in group)


def to_drop(runs: dict[str, Run], max_kept: int) -> list[Run]:
    """The runs to drop so that at most `max_kept` stay: ended ones, oldest ended first, a series with its last
    run (active runs, and the ended runs of an active series, always stay)."""
    excess = len(runs) - max_kept
    if excess <= 0:
        return []
    ended = []
    for r in runs.values():
        group = together(runs, r)
        if all(x.ended is not None for x in group):
            ended.append((max(x.ended for x in group), r.ended, r))   # a series goes with its last run
    return [r for *_, r in sorted(ended, key=lambda e: e[:2])[:excess]]

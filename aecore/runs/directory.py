"""The Ray backend's catalogue of runs: one small actor per cluster (aecore.runs.cluster makes it).

It holds, by run id, what other servers need to find a run: its spec and series (entered when a server queues
the run, so a series' later runs are known before their actors exist), a stop asked for before its actor
existed, and, once the run has ended, its final state and checkpoint (handed over by its actor, which then exits
and frees its CPU or GPU). An ended run is forgotten once nobody has asked for it for its retention time.

Everything it stores arrives pickled by the servers and actors, and goes back as it came: the catalogue never
unpickles, so this module imports neither torch nor the rest of aecore, and the actor stays small.
"""
from __future__ import annotations

import time


class RunDirectory:
    """id -> (pickled spec, series id); ids stopped before they started; ended runs' (pickled final state,
    checkpoint bytes)."""

    def __init__(self):
        self._runs: dict[str, tuple[bytes, str | None]] = {}
        self._cancelled: dict[str, str] = {}       # run id -> why it was stopped before its actor existed
        self._finals: dict[str, list] = {}         # run id -> [final state, checkpoint, retention_s, last asked]

    def add(self, run_id: str, spec: bytes, series: str | None) -> None:
        self._runs[run_id] = (spec, series)

    def find(self, run_id: str) -> tuple[bytes, str | None] | None:
        """(pickled spec, series id) of a run, or None."""
        self._expire()
        return self._runs.get(run_id)

    def series(self, series_id: str) -> list[str]:
        """The series' run ids, in the order they were queued."""
        return [r for r, (_, s) in self._runs.items() if s == series_id]

    def cancel(self, run_id: str, reason: str | None) -> None:
        """A server stopped a run whose actor does not exist yet: the server that queued it will not start it."""
        if run_id in self._runs:
            self._cancelled.setdefault(run_id, reason or "stopped before it started")

    def claim(self, run_id: str) -> str | None:
        """Asked before a run's actor is made: None to go ahead, or why the run was stopped meanwhile."""
        return self._cancelled.get(run_id)

    def finish(self, run_id: str, final: bytes, blob: bytes | None, retention_s: float) -> None:
        self._finals[run_id] = [final, blob, retention_s, time.monotonic()]
        self._expire()

    def final(self, run_id: str) -> tuple[bytes, bytes | None] | None:
        """(pickled final state, checkpoint bytes) of an ended run; None while it runs (or after it expired)."""
        self._expire()
        entry = self._finals.get(run_id)
        if entry is None:
            return None
        entry[3] = time.monotonic()
        return entry[0], entry[1]

    def remove(self, run_id: str) -> None:
        self._runs.pop(run_id, None)
        self._cancelled.pop(run_id, None)
        self._finals.pop(run_id, None)

    def _expire(self) -> None:
        now = time.monotonic()
        for run_id in [r for r, e in self._finals.items() if now - e[3] > e[2]]:
            self.remove(run_id)

"""Timing marks for the load benchmark (`python -m aecore.loadtest`): where the seconds between a Start click and
the chart's first point go on the server.

With AELAB_TRACE naming a file, `mark(event, run_id)` appends one JSON line, {"t": wall-clock seconds, "event",
"run"}, the first time this server process sees that event for that run: "submitted" (the Train page has handed
the run to the registry) and "drawn" (its live view drew a training step of the run). Unset, as on any real
server, `mark` does nothing.
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

PATH = os.environ.get("AELAB_TRACE") or None
_lock = threading.Lock()
_seen: set[tuple[str, str]] = set()


def mark(event: str, run_id: str) -> None:
    if PATH is None or (event, run_id) in _seen:
        return
    with _lock:
        if (event, run_id) in _seen:
            return
        _seen.add((event, run_id))
        with open(PATH, "a", encoding="utf-8") as f:
            f.write(json.dumps({"t": time.time(), "event": event, "run": run_id}) + "\n")


def read(path) -> dict[str, dict[str, float]]:
    """A trace file as run id -> {event: wall-clock seconds} (the first of each); no file: empty."""
    runs: dict[str, dict[str, float]] = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return runs
    for line in lines:
        try:
            e = json.loads(line)
            runs.setdefault(e["run"], {}).setdefault(e["event"], float(e["t"]))
        except (ValueError, KeyError, TypeError):
            continue                 # a line cut short as the server stopped
    return runs

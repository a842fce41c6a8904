"""aecore.trace: the load benchmark's timing marks, written once per event and run, read back whole."""
from __future__ import annotations

import time

from aecore import trace


def test_marks_are_written_once_per_event_and_run_and_read_back(tmp_path, monkeypatch):
    path = tmp_path / "trace.jsonl"
    monkeypatch.setattr(trace, "PATH", str(path))
    monkeypatch.setattr(trace, "_seen", set())
    before = time.time()
    trace.mark("submitted", "r1")
    trace.mark("drawn", "r1")
    trace.mark("drawn", "r1")              # a later draw of the same run: not written again
    trace.mark("submitted", "r2")
    assert len(path.read_text().splitlines()) == 3
    with path.open("a") as f:
        f.write('{"t": 1.0, "event": "dra')   # a line cut short as the server stopped
    runs = trace.read(path)
    assert set(runs) == {"r1", "r2"} and set(runs["r1"]) == {"submitted", "drawn"}
    assert before <= runs["r1"]["submitted"] <= runs["r1"]["drawn"] <= time.time()


def test_without_the_setting_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr(trace, "PATH", None)
    monkeypatch.chdir(tmp_path)
    trace.mark("submitted", "r1")
    assert list(tmp_path.iterdir()) == []
    assert trace.read(tmp_path / "missing") == {}

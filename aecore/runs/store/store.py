"""The run store: every training's spec, state, history and model, kept across restarts of the app server.

`Store(location)` opens (or creates) the store: a folder (SQLite `runs.sqlite`, with the large pieces as files
under `runs/`) or a `postgresql://` URL (tables and large pieces in that database, shared by several app
servers). The registry writes a run when it is submitted, when it starts, at the end of every epoch (the whole
training state: weights, optimiser and generators, so that Resume goes on exactly there; written first, then
pointed to in one transaction, so a crash mid-write leaves the previous epoch) and when it ends (its model and
its timeline).

Each app server registers itself (`register`) and beats every few seconds. A run the store says is queued,
running or paused whose server is gone (its process no longer exists on this host, or it has not beaten for
`LEASE_S`) is shown as "interrupted": it can be resumed from its last whole epoch. Nothing here deletes what
another server wrote, except `sweep` (retention: age, count, disk size), which never touches a live run.
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from aecore.engine.data import DataConfig
from aecore.engine.models import ModelConfig, from_dict
from aecore.engine.train import RunSpec, TrainConfig
from aecore.runs.store.blobs import FileBlobs, TableBlobs
from aecore.runs.store.classes import ClassStore
from aecore.runs.store.sql import Database, StoreError

LIVE = ("queued", "running", "paused")
LEASE_S = 30.0          # a server that has not beaten for this long is gone
BEAT_S = 5.0            # how often a server beats
_PROCESS_STARTED = time.time()   # a server of this host with this process's pid, registered before: its past life
COLUMNS = ("id, name, spec, series, state, epochs, epochs_done, created, updated, ended, server, error, stop_reason, "
           "history, result, state_blob, model_blob, timeline_blob, bytes")


@dataclass(frozen=True)
class Retention:
    """How much the store keeps: ended runs older than `max_age_s` go, and beyond `max_runs` runs or `max_bytes`
    of models and states the oldest ended runs go first. Runs still training are always kept."""
    max_age_s: float = 30 * 86400.0
    max_runs: int = 1000
    max_bytes: int = 2 * 1024 ** 3

    def __post_init__(self):
        if self.max_age_s <= 0 or self.max_runs < 1 or self.max_bytes < 1:
            raise ValueError(f"store retention out of range: {self}")


@dataclass(frozen=True)
class StoredRun:
    """One run as the store has it. `state` is as it stands now: a run whose server is gone is "interrupted"."""
    id: str
    name: str
    spec: RunSpec
    series: str | None
    state: str
    epochs: int
    epochs_done: int
    created: float                   # seconds since the epoch (time.time)
    updated: float
    ended: float | None
    server: str | None
    error: str | None
    stop_reason: str | None
    history: list
    result: dict | None
    state_blob: str | None           # the last whole epoch's training state (trainstate): Resume starts there
    model_blob: str | None           # the checkpoint of an ended run
    timeline_blob: str | None        # an ended run's records and reconstructions
    bytes: int

    def summary(self) -> dict:
        """One line of `python -m aecore.runs list`."""
        figures = (self.result or {}).get("figures") or {}
        return {"id": self.id, "name": self.name, "state": self.state, "epochs_done": self.epochs_done,
                "epochs": self.epochs, "created": _iso(self.created), "updated": _iso(self.updated),
                "ended": _iso(self.ended) if self.ended else None, "series": self.series,
                "test_loss": figures.get("test_loss"), "error": self.error, "bytes": self.bytes}


class Store:
    """The store at `location` (a folder, or a postgresql:// URL); thread-safe. Raises StoreError when it cannot
    be opened (a read-only folder, a damaged database file, a server that does not answer)."""

    def __init__(self, location: str | os.PathLike, retention: Retention = Retention(), clock=time.time):
        location = str(location)
        self.retention, self._clock = retention, clock
        if location.startswith(("postgresql://", "postgres://")):
            self.db = Database(location)
            self.blobs = TableBlobs(self.db)
        else:
            folder = Path(location).expanduser()
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(f"cannot create the store folder {folder}: {e.strerror or e}") from None
            self.db = Database(str(folder / "runs.sqlite"))
            self.blobs = FileBlobs(folder / "runs")
        self.where = self.db.where
        self.classes = ClassStore(self.db, self._clock)      # classes, their students and boards
        self.server_id: str | None = None
        self._beaten = 0.0

    # ------------------------------------------------------------------------------------------ servers
    def register(self) -> str:
        """This process as one of the store's app servers; returns its id."""
        self.server_id = secrets.token_urlsafe(12)
        now = self._clock()
        self.db.execute("INSERT INTO servers (id, host, pid, started, beat) VALUES (?, ?, ?, ?, ?)",
                        (self.server_id, socket.gethostname(), os.getpid(), time.time(), now))   # started: real time
        self._beaten = now
        return self.server_id

    def beat(self, force: bool = False) -> None:
        """This server is alive (written at most every BEAT_S seconds)."""
        now = self._clock()
        if self.server_id and (force or now - self._beaten >= BEAT_S):
            self.db.execute("UPDATE servers SET beat = ? WHERE id = ?", (now, self.server_id))
            self._beaten = now

    def leave(self) -> None:
        """This server stops: its row goes (its live runs are interrupted from now on)."""
        if self.server_id:
            self.db.execute("DELETE FROM servers WHERE id = ?", (self.server_id,))
            self.server_id = None

    def _gone(self) -> set[str]:
        """The ids of listed servers that are gone (a server no longer listed has left: gone too)."""
        now, host, gone = self._clock(), socket.gethostname(), set()
        for sid, shost, pid, started, beat in self.db.execute("SELECT id, host, pid, started, beat FROM servers"):
            if sid == self.server_id:
                continue
            if shost == host and (not _process_exists(pid) or (pid == os.getpid() and started < _PROCESS_STARTED)):
                gone.add(sid)          # its process has ended (or this process has its pid now: it restarted)
            elif now - beat > LEASE_S:
                gone.add(sid)
        return gone

    # ------------------------------------------------------------------------------------------ writing
    def create(self, run_id: str, spec: RunSpec, visitor: str | None, series: str | None = None) -> None:
        now = self._clock()
        with self.db.transaction():
            self.db.execute("INSERT INTO runs (id, name, spec, series, state, epochs, created, updated, server) "
                            "VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?)",
                            (run_id, spec.name, json.dumps(spec_dict(spec)), series, spec.train.epochs, now, now,
                             self.server_id))
            if visitor:
                self._own(run_id, visitor)

    def add_owner(self, run_id: str, visitor: str) -> None:
        self._own(run_id, visitor)

    def _own(self, run_id: str, visitor: str) -> None:
        self.db.execute("INSERT INTO owners (run_id, visitor) VALUES (?, ?) ON CONFLICT (run_id, visitor) DO NOTHING",
                        (run_id, visitor))

    def started(self, run_id: str) -> None:
        self.db.execute("UPDATE runs SET state = 'running', updated = ?, server = ? WHERE id = ?",
                        (self._clock(), self.server_id, run_id))

    def save_epoch(self, run_id: str, epoch: int, state: bytes, history: list) -> None:
        """The training state after `epoch` whole epochs: written whole first, then pointed to (one
        transaction), then the previous epoch's removed."""
        rows = self.db.execute("SELECT state_blob FROM runs WHERE id = ?", (run_id,))
        if not rows:
            return
        key = f"{run_id}/epoch-{epoch:04d}.state"
        with self.db.transaction():
            self.blobs.put(key, state)
            self.db.execute("UPDATE runs SET epochs_done = ?, state_blob = ?, history = ?, bytes = ?, updated = ? "
                            "WHERE id = ?", (epoch, key, json.dumps(history), len(state), self._clock(), run_id))
        if rows[0][0] and rows[0][0] != key:
            self.blobs.delete(rows[0][0])

    def finish(self, run_id: str, state: str, *, error: str | None = None, stop_reason: str | None = None,
               result: dict | None = None, model: bytes | None = None, timeline: bytes | None = None,
               history: list | None = None, epochs_done: int | None = None) -> None:
        """The run has ended as `state` (finished, stopped, failed, or interrupted: its last epoch's state stays,
        for Resume). Its model and timeline are written; a run that cannot be resumed drops its training state."""
        rows = self.db.execute("SELECT state_blob, bytes FROM runs WHERE id = ?", (run_id,))
        if not rows:
            return
        old_state, old_bytes = rows[0]
        keep_state = state == "interrupted"
        size = (old_bytes if keep_state else 0) + len(model or b"") + len(timeline or b"")
        with self.db.transaction():
            for piece, data in (("model.safetensors", model), ("timeline", timeline)):
                if data is not None:
                    self.blobs.put(f"{run_id}/{piece}", data)
            self.db.execute(
                "UPDATE runs SET state = ?, error = ?, stop_reason = ?, result = ?, updated = ?, ended = ?, "
                "model_blob = ?, timeline_blob = ?, bytes = ?, state_blob = ?, "
                "history = COALESCE(?, history), epochs_done = COALESCE(?, epochs_done) WHERE id = ?",
                (state, error, stop_reason, json.dumps(result) if result is not None else None, self._clock(),
                 self._clock(), f"{run_id}/model.safetensors" if model is not None else None,
                 f"{run_id}/timeline" if timeline is not None else None, size, old_state if keep_state else None,
                 json.dumps(history) if history is not None else None, epochs_done, run_id))
        if old_state and not keep_state:
            self.blobs.delete(old_state)

    def claim(self, run: StoredRun) -> bool:
        """Take an interrupted run for this server, to resume it: False when another server took it first."""
        rows = self.db.execute("UPDATE runs SET state = 'queued', server = ?, updated = ?, ended = NULL, "
                               "stop_reason = NULL WHERE id = ? AND updated = ? RETURNING id",
                               (self.server_id, self._clock(), run.id, run.updated))
        return bool(rows)

    # ------------------------------------------------------------------------------------------ reading
    def get(self, run_id: str) -> StoredRun | None:
        rows = self.db.execute(f"SELECT {COLUMNS} FROM runs WHERE id = ?", (run_id,))
        return self._runs(rows)[0] if rows else None

    def runs(self, limit: int | None = None) -> list[StoredRun]:
        """Every stored run, newest first."""
        rows = self.db.execute(f"SELECT {COLUMNS} FROM runs ORDER BY created DESC"
                               + (f" LIMIT {int(limit)}" if limit else ""))
        return self._runs(rows)

    def runs_of(self, visitor: str) -> list[StoredRun]:
        """The runs a visitor started or opened, oldest first."""
        rows = self.db.execute(f"SELECT {', '.join('r.' + c.strip() for c in COLUMNS.split(','))} FROM runs r "
                               "JOIN owners o ON o.run_id = r.id WHERE o.visitor = ? ORDER BY r.created", (visitor,))
        return self._runs(rows)

    def blob(self, key: str | None) -> bytes | None:
        return self.blobs.get(key) if key else None

    def _runs(self, rows) -> list[StoredRun]:
        gone = self._gone() if any(r[4] in LIVE for r in rows) else set()
        out = []
        for r in rows:
            state = r[4]
            if state in LIVE and r[10] != self.server_id and (r[10] is None or r[10] in gone
                                                              or not self._known(r[10])):
                state = "interrupted"
            out.append(StoredRun(r[0], r[1], spec_from(json.loads(r[2])), r[3], state, r[5], r[6], r[7], r[8],
                                 r[9], r[10], r[11], r[12], json.loads(r[13]), json.loads(r[14]) if r[14] else None,
                                 r[15], r[16], r[17], int(r[18] or 0)))
        return out

    def _known(self, server_id: str) -> bool:
        return bool(self.db.execute("SELECT 1 FROM servers WHERE id = ?", (server_id,)))

    # ------------------------------------------------------------------------------------------ retention
    def sweep(self) -> int:
        """Drop ended runs past the retention's age, then the oldest ended beyond its count and size; returns how
        many went. A run still training (here or on another live server) stays."""
        r, now = self.retention, self._clock()
        runs = sorted(self.runs(), key=lambda s: s.updated)            # oldest first
        ended = [s for s in runs if s.state not in LIVE]
        drop = {s.id for s in ended if now - s.updated > r.max_age_s}
        count, size = len(runs) - len(drop), sum(s.bytes for s in runs if s.id not in drop)
        for s in ended:
            if s.id in drop:
                continue
            if count <= r.max_runs and size <= r.max_bytes:
                break
            drop.add(s.id)
            count, size = count - 1, size - s.bytes
        for run_id in drop:
            self.delete(run_id)
        return len(drop)

    def delete(self, run_id: str) -> None:
        with self.db.transaction():
            self.db.execute("DELETE FROM owners WHERE run_id = ?", (run_id,))
            self.db.execute("DELETE FROM runs WHERE id = ?", (run_id,))
            if isinstance(self.blobs, TableBlobs):
                self.blobs.drop_run(run_id)
        if isinstance(self.blobs, FileBlobs):
            self.blobs.drop_run(run_id)

    def close(self) -> None:
        self.db.close()


# ---------------------------------------------------------------------------------------------- helpers
def spec_dict(spec: RunSpec) -> dict:
    return {"name": spec.name, "preset": spec.preset, "model": spec.model.to_dict(), "data": asdict(spec.data),
            "train": asdict(spec.train)}


def spec_from(d: dict) -> RunSpec:
    return RunSpec(name=d["name"], preset=d.get("preset"), model=ModelConfig.from_dict(d["model"]),
                   data=from_dict(DataConfig, d["data"]), train=TrainConfig.from_dict(d["train"]))


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _iso(t: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) if t else None

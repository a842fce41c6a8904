"""Where the store keeps its large pieces (training states, models, timelines): files beside the SQLite database,
or a table of the PostgreSQL database (so that every app server reads what another wrote).

A file is written to a temporary name, flushed to disk and then renamed over the real name, so a crash mid-write
never leaves a half file under a name the database points to. Keys are `<run id>/<piece>`.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from aecore.runs.store.sql import Database, StoreError


class FileBlobs:
    """Blobs as files under `folder`."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def put(self, key: str, data: bytes, db: Database | None = None) -> None:
        path = self._path(key)
        tmp = path.with_name(path.name + ".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise StoreError(_explain(e, self.folder)) from None

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StoreError(_explain(e, self.folder)) from None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def drop_run(self, run_id: str) -> None:
        """Every file of a run, and what a crash left half-written."""
        shutil.rmtree(self._path(run_id), ignore_errors=True)

    def _path(self, key: str) -> Path:
        if not key or ".." in key.split("/") or key.startswith("/"):
            raise StoreError(f"not a blob key: {key!r}")
        return self.folder / key


class TableBlobs:
    """Blobs as rows of the database's `blobs` table (PostgreSQL); `put` inside the caller's transaction."""

    def __init__(self, db: Database):
        self.db = db

    def put(self, key: str, data: bytes, db: Database | None = None) -> None:
        self.db.execute("INSERT INTO blobs (key, data) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET data = "
                        "EXCLUDED.data", (key, data))

    def get(self, key: str) -> bytes | None:
        rows = self.db.execute("SELECT data FROM blobs WHERE key = ?", (key,))
        return bytes(rows[0][0]) if rows else None

    def delete(self, key: str) -> None:
        self.db.execute("DELETE FROM blobs WHERE key = ?", (key,))

    def drop_run(self, run_id: str) -> None:
        prefix = f"{run_id}/"
        self.db.execute("DELETE FROM blobs WHERE substr(key, 1, ?) = ?", (len(prefix), prefix))


def _explain(e: OSError, folder: Path) -> str:
    import errno
    if e.errno == errno.ENOSPC:
        return f"the disk of the store folder {folder} is full; runs are not kept until there is room"
    if e.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
        return f"the store folder {folder} is read-only; runs are not kept across restarts until it is writable"
    return f"cannot write to the store folder {folder}: {e.strerror or e}"

"""The store's database: SQLite (a file, the default) or PostgreSQL (a server several app servers share), behind
one small interface, with the same tables in both.

Statements are written once, with `?` placeholders and the SQL both understand; `Database` turns the placeholders
into psycopg's `%s` for PostgreSQL. One connection per `Database`, used under a lock (SQLite in WAL mode with a
busy timeout, so that several processes may share the file). Errors of either driver come out as `StoreError`
with a message that says which store and what went wrong.
"""
from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path

SCHEMA_VERSION = 1
TABLES = [
    """CREATE TABLE IF NOT EXISTS runs (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, spec TEXT NOT NULL, series TEXT, state TEXT NOT NULL,
        epochs INTEGER NOT NULL, epochs_done INTEGER NOT NULL DEFAULT 0, created DOUBLE PRECISION NOT NULL,
        updated DOUBLE PRECISION NOT NULL, ended DOUBLE PRECISION, server TEXT, error TEXT, stop_reason TEXT,
        history TEXT NOT NULL DEFAULT '[]', result TEXT, state_blob TEXT, model_blob TEXT, timeline_blob TEXT,
        bytes BIGINT NOT NULL DEFAULT 0)""",
    "CREATE INDEX IF NOT EXISTS runs_created ON runs (created)",
    "CREATE TABLE IF NOT EXISTS owners (run_id TEXT NOT NULL, visitor TEXT NOT NULL, PRIMARY KEY (run_id, visitor))",
    "CREATE INDEX IF NOT EXISTS owners_visitor ON owners (visitor)",
    """CREATE TABLE IF NOT EXISTS servers (id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL,
        started DOUBLE PRECISION NOT NULL, beat DOUBLE PRECISION NOT NULL)""",
    "CREATE TABLE IF NOT EXISTS about (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
]
BLOB_TABLE = "CREATE TABLE IF NOT EXISTS blobs (key TEXT PRIMARY KEY, data BYTEA NOT NULL)"   # PostgreSQL only


class StoreError(RuntimeError):
    """The store cannot be opened, read or written; the message says which store and why."""


class Database:
    """A connection to the store's database: `url` is a SQLite file's path or a postgresql:// URL."""

    def __init__(self, url: str):
        self.url = url
        self.postgres = url.startswith(("postgresql://", "postgres://"))
        self.where = _redact(url) if self.postgres else url
        self._lock = threading.RLock()
        self._conn = None
        with self._errors("open"):
            self._conn = self._connect()
            with self.transaction():
                for statement in TABLES + ([BLOB_TABLE] if self.postgres else []):
                    self.execute(statement)
                found = next(iter(self.execute("SELECT value FROM about WHERE key = 'schema'")), None)
                if found is None:
                    self.execute("INSERT INTO about (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
                elif found[0] != str(SCHEMA_VERSION):
                    raise StoreError(f"the store {self.where} has schema version {found[0]}; this AE Lab reads "
                                     f"version {SCHEMA_VERSION}")

    def _connect(self):
        if self.postgres:
            try:
                import psycopg
            except ImportError:
                raise StoreError("AELAB_STORE names a PostgreSQL server, but the psycopg package is not installed "
                                 "(pip install -r requirements-postgres.txt)") from None
            return psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        Path(self.url).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.url, timeout=10.0, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")     # readers never wait for the writer; several processes share it
        conn.execute("PRAGMA synchronous=NORMAL")   # with WAL: a crash loses no committed transaction's consistency
        return conn

    def execute(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Run one statement (`?` placeholders) and return the rows it gives (none for most); raises StoreError."""
        with self._lock, self._errors("use"):
            if self._conn is None:
                raise StoreError(f"the store {self.where} is closed")
            cursor = self._conn.execute(sql.replace("?", "%s") if self.postgres else sql, params)
            return cursor.fetchall() if cursor.description else []

    @contextmanager
    def transaction(self):
        """Statements inside commit together or not at all (the lock is held throughout)."""
        with self._lock:
            if self.postgres:
                with self._errors("use"), self._conn.transaction():
                    yield self
            else:
                self.execute("BEGIN IMMEDIATE")
                try:
                    yield self
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self.execute("COMMIT")

    @contextmanager
    def _errors(self, doing: str):
        try:
            yield
        except StoreError:
            raise
        except (sqlite3.Error, OSError) as e:
            raise StoreError(self._explain(doing, e)) from None
        except Exception as e:
            if type(e).__module__.startswith("psycopg"):
                raise StoreError(self._explain(doing, e)) from None
            raise

    def _explain(self, doing: str, e: Exception) -> str:
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "not a database" in text:
            return (f"the store file {self.where} is not an SQLite database (it is damaged or something else); it was "
                    f"left as it is. Move it away, or set AELAB_STORE to another folder")
        if "readonly" in text or "read-only" in text or "Permission denied" in text:
            return f"the store {self.where} is read-only ({text}); runs are not kept across restarts until it is writable"
        if "disk is full" in text or "No space left" in text:
            return f"the disk of the store {self.where} is full ({text}); runs are not kept until there is room"
        return f"cannot {doing} the store {self.where}: {text}"

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.close()
                except Exception:
                    pass
                self._conn = None


def _redact(url: str) -> str:
    """A PostgreSQL URL without its password, for messages."""
    head, at, tail = url.rpartition("@")
    if not at:
        return url
    scheme, _, credentials = head.partition("://")
    return f"{scheme}://{credentials.partition(':')[0]}@{tail}"

"""Classes in the run store: a class, its students (a nickname per visitor), and its board's entries (one per
class run). What a class means (its challenge, metric and scoring) is aecore.labs.classroom's; here it is rows.

A class has a short code (the student link's) and the hash of its teacher's secret (never the secret itself). An
entry is one student's run: who, the settings it trained with, and once the run has ended its state and the
challenge's metric. Everything lives in the same database as the runs, so it survives restarts as they do, and
several app servers on one PostgreSQL database share it.
"""
from __future__ import annotations

import json

from aecore.runs.store.sql import Database

TABLES = [
    """CREATE TABLE IF NOT EXISTS classes (
        code TEXT PRIMARY KEY, title TEXT NOT NULL, challenge TEXT NOT NULL, teacher TEXT NOT NULL,
        created DOUBLE PRECISION NOT NULL, expires DOUBLE PRECISION NOT NULL, closed INTEGER NOT NULL DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS class_students (
        code TEXT NOT NULL, visitor TEXT NOT NULL, nickname TEXT NOT NULL, nick_key TEXT NOT NULL,
        joined DOUBLE PRECISION NOT NULL, PRIMARY KEY (code, visitor), UNIQUE (code, nick_key))""",
    """CREATE TABLE IF NOT EXISTS class_entries (
        run_id TEXT PRIMARY KEY, code TEXT NOT NULL, nickname TEXT NOT NULL, visitor TEXT NOT NULL,
        created DOUBLE PRECISION NOT NULL, settings TEXT NOT NULL, state TEXT NOT NULL, metric DOUBLE PRECISION,
        ended DOUBLE PRECISION, note TEXT, hidden INTEGER NOT NULL DEFAULT 0)""",
    "CREATE INDEX IF NOT EXISTS class_entries_code ON class_entries (code)",
]
CLASS_COLUMNS = ("code", "title", "challenge", "teacher", "created", "expires", "closed")
ENTRY_COLUMNS = ("run_id", "code", "nickname", "visitor", "created", "settings", "state", "metric", "ended", "note",
                 "hidden")


class NicknameTaken(ValueError):
    """Another student of the class has this nickname."""


class ClassStore:
    """The classes of one store (`Store.classes`)."""

    def __init__(self, db: Database, clock):
        self.db, self._clock = db, clock
        with db.transaction():
            for statement in TABLES:
                db.execute(statement)

    # ------------------------------------------------------------------------------------------ classes
    def create(self, code: str, title: str, challenge: dict, teacher_hash: str, lifetime_s: float) -> None:
        now = self._clock()
        self.db.execute("INSERT INTO classes (code, title, challenge, teacher, created, expires) VALUES (?, ?, ?, ?, "
                        "?, ?)", (code, title, json.dumps(challenge), teacher_hash, now, now + lifetime_s))

    def get(self, code: str) -> dict | None:
        """The class as a dict (challenge parsed, closed a bool), or None; an expired class is still returned
        (with `expired` True), so that its page can say so."""
        rows = self.db.execute(f"SELECT {', '.join(CLASS_COLUMNS)} FROM classes WHERE code = ?", (code,))
        if not rows:
            return None
        c = dict(zip(CLASS_COLUMNS, rows[0]))
        return {**c, "challenge": json.loads(c["challenge"]), "closed": bool(c["closed"]),
                "expired": self._clock() > c["expires"]}

    def update(self, code: str, *, title: str | None = None, challenge: dict | None = None,
               closed: bool | None = None) -> None:
        for column, value in (("title", title), ("challenge", json.dumps(challenge) if challenge is not None
                                                  else None), ("closed", None if closed is None else int(closed))):
            if value is not None:
                self.db.execute(f"UPDATE classes SET {column} = ? WHERE code = ?", (value, code))

    # ------------------------------------------------------------------------------------------ students
    def join(self, code: str, visitor: str, nickname: str) -> str:
        """The visitor joins as `nickname` (checked by the caller); a visitor who has joined keeps their first
        nickname, which is returned. NicknameTaken when another student has it (case does not count)."""
        known = self.nickname(code, visitor)
        if known is not None:
            return known
        taken = self.db.execute("SELECT 1 FROM class_students WHERE code = ? AND nick_key = ?",
                                (code, nickname.casefold()))
        if taken:
            raise NicknameTaken(f"another student of this class is called {nickname!r}; pick another nickname")
        self.db.execute("INSERT INTO class_students (code, visitor, nickname, nick_key, joined) VALUES (?, ?, ?, ?, ?) "
                        "ON CONFLICT DO NOTHING", (code, visitor, nickname, nickname.casefold(), self._clock()))
        return self.nickname(code, visitor) or nickname

    def nickname(self, code: str, visitor: str) -> str | None:
        rows = self.db.execute("SELECT nickname FROM class_students WHERE code = ? AND visitor = ?", (code, visitor))
        return rows[0][0] if rows else None

    def students(self, code: str) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM class_students WHERE code = ?", (code,))[0][0])

    # ------------------------------------------------------------------------------------------ the board
    def add_entry(self, run_id: str, code: str, nickname: str, visitor: str, settings: dict) -> None:
        self.db.execute("INSERT INTO class_entries (run_id, code, nickname, visitor, created, settings, state) "
                        "VALUES (?, ?, ?, ?, ?, ?, 'training')",
                        (run_id, code, nickname, visitor, self._clock(), json.dumps(settings)))

    def entry(self, run_id: str) -> dict | None:
        rows = self.db.execute(f"SELECT {', '.join(ENTRY_COLUMNS)} FROM class_entries WHERE run_id = ?", (run_id,))
        return self._entries(rows)[0] if rows else None

    def set_result(self, run_id: str, state: str, metric: float | None, note: str | None = None) -> None:
        self.db.execute("UPDATE class_entries SET state = ?, metric = ?, note = ?, ended = ? WHERE run_id = ?",
                        (state, metric, note, self._clock(), run_id))

    def hide(self, code: str, run_id: str, hidden: bool = True) -> bool:
        """Hide (or show again) an entry of the class `code`; False when the class has no such entry (a run id of
        another class changes nothing)."""
        rows = self.db.execute("UPDATE class_entries SET hidden = ? WHERE run_id = ? AND code = ? RETURNING run_id",
                               (int(hidden), run_id, code))
        return bool(rows)

    def entries(self, code: str) -> list[dict]:
        """The class's entries, oldest first (settings parsed, hidden a bool)."""
        rows = self.db.execute(f"SELECT {', '.join(ENTRY_COLUMNS)} FROM class_entries WHERE code = ? "
                               f"ORDER BY created", (code,))
        return self._entries(rows)

    @staticmethod
    def _entries(rows) -> list[dict]:
        out = []
        for row in rows:
            e = dict(zip(ENTRY_COLUMNS, row))
            out.append({**e, "settings": json.loads(e["settings"]), "hidden": bool(e["hidden"])})
        return out

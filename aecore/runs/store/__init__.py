"""The run store: runs kept across restarts of the app server (see `store` for what is written when).

- `store`: `Store` (a folder with SQLite, or a postgresql:// URL), `StoredRun`, `Retention`, `LIVE`.
- `classes`: `ClassStore` (`Store.classes`): classes, their students and their boards' entries, as rows.
- `sql`: the database behind it, SQLite or PostgreSQL, and `StoreError`. `blobs`: the large pieces, as files
  beside the SQLite file or rows of the PostgreSQL database.
- `python -m aecore.runs list --store DIR` prints one JSON line per stored run (aecore/runs/__main__.py).
"""
from aecore.runs.store.classes import NicknameTaken
from aecore.runs.store.sql import StoreError
from aecore.runs.store.store import LIVE, Retention, Store, StoredRun, spec_dict, spec_from

__all__ = ["LIVE", "NicknameTaken", "Retention", "Store", "StoreError", "StoredRun", "spec_dict", "spec_from"]

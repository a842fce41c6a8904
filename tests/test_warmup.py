"""The server's start-up (ui.warmup, the st.App in app.py): `streamlit run app.py` finds the App, and its warm-up
imports what the pages need, skipping (and logging) a module that fails."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from ui import warmup

ROOT = Path(__file__).resolve().parents[1]


def test_streamlit_run_finds_the_app_with_its_start_up():
    from streamlit.web.server.app_discovery import discover_asgi_app

    found = discover_asgi_app(ROOT / "app.py")
    assert found.is_asgi_app and found.import_string == "app:app"


def test_warm_imports_each_module_and_skips_one_that_fails(caplog):
    sys.modules.pop("colorsys", None)
    with caplog.at_level(logging.INFO, logger="aelab.warmup"):
        took = warmup.warm(("colorsys", "aecore.no_such_module", "json"))
    assert list(took) == ["colorsys", "json"] and all(t >= 0 for t in took.values())
    assert "colorsys" in sys.modules
    assert "importing aecore.no_such_module failed" in caplog.text
    assert "2 modules imported" in caplog.text


def test_every_warmed_module_exists():
    import importlib.util

    assert [m for m in warmup.MODULES if importlib.util.find_spec(m) is None] == []


def test_read_ahead_hands_its_splits_to_raw_split_once(tiny_idx, monkeypatch):
    from ui import caches

    monkeypatch.setattr(caches, "DATA_DIR", str(tiny_idx))
    monkeypatch.setattr(caches, "_READ_AHEAD", {})
    caches.raw_split.clear()
    assert caches.read_ahead() == ["test", "train"]
    ahead = caches._READ_AHEAD[("mnist", "test", str(tiny_idx))]
    assert caches.raw_split("mnist", "test") is ahead                    # taken, not read again
    assert ("mnist", "test", str(tiny_idx)) not in caches._READ_AHEAD     # and only once
    caches.raw_split.clear()


def test_read_ahead_without_files_reads_nothing(tmp_path, monkeypatch):
    from ui import caches

    monkeypatch.setattr(caches, "DATA_DIR", str(tmp_path))
    monkeypatch.setattr(caches, "_READ_AHEAD", {})
    assert caches.read_ahead() == [] and caches._READ_AHEAD == {}

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

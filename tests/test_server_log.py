"""The server's log stays free of Streamlit's "missing ScriptRunContext" warning when a run starts.

That warning is what a st.* call outside a script run logs. A run of the processes backend (the default) trains in
a spawned process, and spawn runs the parent's main script again in the child: under Streamlit (and AppTest, which
runs the app the same way) that script is app.py, so each run's process used to execute the whole app outside
Streamlit and log some 70 of these lines (aecore.runs.pool._without_main). The child's output goes to the
server's own stdout and stderr, which `capfd` reads here.
"""
from __future__ import annotations

import pytest

from aecore.runs import pool
from app_helpers import custom_form, open_app, wait_for_end

# Fixtures (conftest.py): app_environment for every test here, as every AppTest needs it.
pytestmark = pytest.mark.usefixtures("app_environment")
WARNING = "missing ScriptRunContext"


def start_a_run(monkeypatch, capfd) -> str:
    """A one-epoch run started from the Train page in a process of its own; what was printed from the app's start
    until every warm process of the pool has said it is ready. The pool's processes start with the app and print as
    they start, which may be before the run (or after it, for a process that replaces one): all of it counts."""
    from ui.server import run_registry

    monkeypatch.setenv("AELAB_RUN_BACKEND", "processes")   # app_environment chose threads
    capfd.readouterr()                                      # what earlier tests and fixtures printed
    at = custom_form(open_app(), hidden=8, epochs=1, batch=20)
    at.button(key="train.btn_start").click().run()
    assert wait_for_end(at).startswith("finished")
    assert run_registry().backend.wait_ready(60), "the pool's processes did not get ready"
    out, err = capfd.readouterr()
    return out + err


def test_starting_a_run_in_a_process_logs_no_missing_script_run_context(tiny_idx, monkeypatch, capfd):
    printed = start_a_run(monkeypatch, capfd)
    assert WARNING not in printed, printed[:2000]


def test_the_check_sees_the_warning_when_the_child_runs_a_page_script(tiny_idx, monkeypatch, capfd, tmp_path):
    """The same run with a main script handed to the child, as spawn does by default, one that calls st.* at its
    top level as app.py's frame did before it ran only as `__main__`: the warnings are there, so the test above
    would see them."""
    script = tmp_path / "page.py"
    script.write_text("import streamlit as st\nst.markdown('a page')\n")
    stdlib = getattr(pool.spawn.get_preparation_data, "__wrapped__", pool.spawn.get_preparation_data)

    def with_script(name):
        data = stdlib(name)
        data.pop("init_main_from_name", None)
        data["init_main_from_path"] = str(script)
        return data

    monkeypatch.setattr(pool.spawn, "get_preparation_data", with_script)
    monkeypatch.setattr(pool, "_without_main", lambda: None)
    assert WARNING in start_a_run(monkeypatch, capfd)

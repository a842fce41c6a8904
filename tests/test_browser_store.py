"""A run started in a real Chromium survives `kill -9` of the whole server: a server restarted on the same store
(AELAB_STORE) lists the run, shows it "interrupted at epoch k of n" at its link, and Resume goes on from there.

Skipped when Chromium or the real MNIST files (AECORE_DATA_DIR) are missing.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys

import pytest

from browser_support import ARTIFACTS, GRACE_S, REPO, START, STARTUP_S, STOP, TRAIN_S, VIEWPORT, run_id_of, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow]
EPOCHS = 6


def test_a_run_survives_kill_9_of_the_server(chromium, browser, tmp_path):
    from playwright.sync_api import expect

    from aecore.loadtest import Deadline, serve

    store = tmp_path / "store"
    env = dict(os.environ, AELAB_MAX_RUNS="1", AELAB_RUN_GRACE_S=str(GRACE_S), AELAB_STORE=str(store))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(60_000)
    page = context.new_page()
    progress = page.get_by_test_id("stProgress").last
    try:
        with serve(env, ARTIFACTS / "test_browser_store.before.streamlit.log", Deadline(STARTUP_S + 60)) as (url, pid):
            page.goto(f"{url}/train?preset=pytorch-784-200&epochs={EPOCHS}", timeout=STARTUP_S * 1000)
            start = page.get_by_role("button", name=START)
            start.wait_for(timeout=STARTUP_S * 1000)
            wait_idle(page)
            start.click()
            # two whole epochs are behind it (each one's training state is in the store) once epoch 3 shows
            expect(progress).to_contain_text(re.compile(rf"running · epoch [3-{EPOCHS}]/{EPOCHS}\b"),
                                             timeout=TRAIN_S * 2000)
            run_id = run_id_of(page)
            os.kill(pid, signal.SIGKILL)          # the whole server at once, mid-run

        listed = subprocess.run([sys.executable, "-m", "aecore.runs", "list", "--store", str(store)], cwd=REPO,
                                capture_output=True, text=True, timeout=120)
        (line,) = [json.loads(x) for x in listed.stdout.splitlines()]
        assert (line["id"], line["state"], line["epochs"]) == (run_id, "interrupted", EPOCHS)
        k = line["epochs_done"]
        assert 2 <= k < EPOCHS

        with serve(env, ARTIFACTS / "test_browser_store.after.streamlit.log", Deadline(STARTUP_S + 60)) as (url, _):
            page.goto(f"{url}/train?run={run_id}", timeout=STARTUP_S * 1000)    # the same browser: its visitor
            expect(progress).to_contain_text(f"interrupted at epoch {k} of {EPOCHS}", timeout=STARTUP_S * 1000)
            expect(page.get_by_text(f"Resume goes on from the end of epoch {k}")).to_be_visible()
            wait_idle(page)
            page.get_by_role("button", name=re.compile(r"\bResume$")).click()
            expect(progress).to_contain_text(re.compile(rf"running · epoch {k + 1}/{EPOCHS}\b"), timeout=TRAIN_S * 1000)
            assert run_id_of(page) == run_id                                    # the same run, going on
            page.get_by_role("button", name=STOP).click()
            expect(progress).to_contain_text("stopped", timeout=60_000)
    except BaseException:
        with contextlib.suppress(Exception):
            page.screenshot(path=ARTIFACTS / "test_browser_store-failure.png", full_page=True)
        raise
    finally:
        context.close()

"""What the real-browser test modules share: Debian's Chromium and its flags, one `streamlit run app.py` per test
module (aecore.loadtest.serve, with AELAB_MAX_RUNS=1 and a short grace time), and waiting for the app.

Imported by tests/test_browser.py and tests/test_accessibility.py; a module that imports the `chromium` and
`server` fixtures gets a server of its own. Both skip when Chromium or the real MNIST files are missing.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from conftest import real_mnist_dir

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "tests" / "artifacts"    # git-ignored: logs, screenshots, measurements
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1400, "height": 1000}
STARTUP_S = 90          # server start and first page load
GRACE_S = 15            # the server stops a run nobody has watched for this long
SERVER_PID = [0]        # the running server's process id, for CPU readings


def chromium_path() -> str | None:
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    return shutil.which("chromium")


@pytest.fixture(scope="module")
def chromium() -> str:
    path = chromium_path()
    if path is None:
        pytest.skip("chromium not installed (/usr/bin/chromium or `chromium` on PATH)")
    if real_mnist_dir() is None:
        pytest.skip("real MNIST not available: set AECORE_DATA_DIR to a folder with the four IDX files")
    return path


@pytest.fixture(scope="module")
def server(request, chromium) -> str:
    """`streamlit run app.py` on a free port (aecore.loadtest.serve), its default page served once; its base URL,
    for this module's tests. Its log: tests/artifacts/<module>.streamlit.log."""
    from aecore.loadtest import Deadline, serve

    env = dict(os.environ, AELAB_MAX_RUNS="1", AELAB_RUN_GRACE_S=str(GRACE_S))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = ARTIFACTS / f"{request.module.__name__}.streamlit.log"
    with serve(env, log, Deadline(STARTUP_S + 60)) as (url, pid):
        SERVER_PID[0] = pid
        yield url


@pytest.fixture(scope="module")
def browser(chromium):
    """One headless Chromium for a test module (Playwright's sync API)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def wait_idle(page, timeout_s: float = 60) -> None:
    """Until the app's script is not running and no spinner shows (long-running reruns included)."""
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(timeout=timeout_s * 1000)
    page.locator('[data-testid="stSpinner"]').first.wait_for(state="hidden", timeout=timeout_s * 1000)


def goto(page, name: str, heading: str) -> None:
    """Click a page in the sidebar navigation and wait for its title."""
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=name).click()
    page.get_by_role("heading", name=heading).wait_for()

"""Plain helpers the real-browser test modules share: Debian's Chromium and its flags, waiting for the app, and
reading a run's progress, step and id off the page. The fixtures built on them (chromium, server, browser: one
`streamlit run app.py` per test module, with AELAB_MAX_RUNS=1 and a short grace time) are in conftest.py; they
skip when Chromium or the real MNIST files are missing.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "tests" / "artifacts"    # git-ignored: logs, screenshots, measurements
# Screenshots go to the git-ignored artifacts folder; AELAB_SCREENSHOTS=docs/screenshots refreshes the README's.
SCREENSHOTS = REPO / (os.environ.get("AELAB_SCREENSHOTS") or "tests/artifacts/screenshots")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1400, "height": 1000}
STARTUP_S = 90          # server start and first page load
GRACE_S = 15            # the server stops a run nobody has watched for this long
SERVER_PID = [0]        # the running server's process id, for CPU readings
TRAIN_S = 180           # a 1-epoch run of pytorch-784-200; seconds on a free machine, much longer on a busy one

START = re.compile(r"\bStart$")   # buttons carry a material icon, whose ligature text comes first
STOP = re.compile(r"\bStop$")
RUN_ID = re.compile(r"[?&]run=([\w-]+)")
STEP = re.compile(r"step ([\d,]+)/")


def chromium_path() -> str | None:
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    return shutil.which("chromium")


def wait_idle(page, timeout_s: float = 60) -> None:
    """Until the app's script is not running and no spinner shows (long-running reruns included)."""
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(timeout=timeout_s * 1000)
    page.locator('[data-testid="stSpinner"]').first.wait_for(state="hidden", timeout=timeout_s * 1000)


def goto(page, name: str, heading: str) -> None:
    """Click a page in the sidebar navigation and wait for its title."""
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=name).click()
    page.get_by_role("heading", name=heading).wait_for()


def progress_text(page) -> str:
    """The run's progress text. While the progress fragment redraws, the old bar and the new one can both be on
    the page for a moment: every test reads the last one (the newest)."""
    bar = page.get_by_test_id("stProgress").last
    return bar.inner_text() if bar.count() else ""


def step_of(text: str) -> int:
    m = STEP.search(text)
    assert m, f"no step in {text!r}"
    return int(m.group(1).replace(",", ""))


def run_id_of(page) -> str:
    m = RUN_ID.search(page.url)
    assert m, f"no run id in the URL {page.url}"
    return m.group(1)

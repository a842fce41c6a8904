"""Drive the app in a real browser: serve it, open visitor sessions, read what a page shows of a run.

`serve` runs `streamlit run app.py` on a free local port as a subprocess, stopped whatever happens; headless
Chromium (Playwright, a dev dependency) opens one browser context per `Session`, and the helpers here wait for
a page to settle, open the Train page, visit another page, and read the run id, state, rate, step and queue
place from the progress text. Every wait takes its time from one `Deadline`. Used by the load benchmark
(`aecore.loadtest`, which measures through these) and by the browser tests.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]            # as in tests/test_browser.py
VIEWPORT = {"width": 1400, "height": 1000}
TRAIN = ("Train", "Train an autoencoder")                      # (sidebar link, page heading)
SHOWN = ("queued", "running", "paused", "stopped", "finished", "failed")   # a run's states in the progress text
STATE = re.compile(r"\b(" + "|".join(SHOWN) + r")\b")
NUMBERS = {"rate": re.compile(r"([\d,]+) samples/s"), "step": re.compile(r"step ([\d,]+)/"),
           "position": re.compile(r"number (\d+) in line")}
# Clicks Start at the wall-clock moment `at` (ms), then watches the page every 25 ms, in the page itself (so the
# times do not wait for the harness to come round to this tab): when the URL first names a run other than `old`,
# when that run first reads queued, and when it first shows a training step (the chart's first point is drawn with
# it). `window.startMarks` holds those moments (ms); "clicked" is the click's; "seen" each new progress text
# (its start) from the URL's change on, with its moment.
CLICK_START_AT = """([at, old]) => {
  const marks = window.startMarks = {};
  setTimeout(() => {
    marks.clicked = Date.now();
    [...document.querySelectorAll('button')].find(b => /Start$/.test(b.innerText.trim())).click();
    const watch = setInterval(() => {
      const text = document.querySelector('[data-testid="stProgress"]')?.innerText || '';
      const run = (location.search.match(/[?&]run=([^&#]+)/) || [])[1] || null;
      const now = Date.now();
      if (run && run !== old) {
        marks.url ??= now;
        marks.run ??= run;
        const seen = marks.seen ??= [];            // what the progress text said, from the URL's change on
        if (!seen.length || seen[seen.length - 1][1] !== text.slice(0, 48)) seen.push([now, text.slice(0, 48)]);
        if (/\\bqueued\\b/.test(text)) marks.queued ??= now;
        if (/\\brunning\\b/.test(text) && /step [\\d,]+\\//.test(text)) marks.step ??= now;
      }
      if (marks.step || marks.queued || now - marks.clicked > 300000) clearInterval(watch);
    }, 25);
  }, at - Date.now());
}"""
PROGRESS_JS = "() => [document.querySelector('[data-testid=\"stProgress\"]')?.innerText || '', location.search]"


class Deadline:
    """The --timeout budget: every wait gets at most what is left of it."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def ms(self, cap_s: float = 120.0) -> float:
        """Milliseconds for one wait: at most `cap_s` seconds, and no more than is left."""
        if (left := self.end - time.monotonic()) <= 0:
            raise TimeoutError("the --timeout budget is spent")
        return min(cap_s, left) * 1000


@dataclass
class Session:
    page: object                                  # a Playwright Page, in a browser context of its own
    own: list[str] = field(default_factory=list)  # ids of the runs this session started


# ------------------------------------------------------------------------------------------------ the server
@contextlib.contextmanager
def serve(env: dict, log: Path, deadline: Deadline):
    """`streamlit run app.py` on a free local port, once it answers: yields (url, pid). Stopped on the way out
    whatever happens; the kernel stops it too (PR_SET_PDEATHSIG) should this process die first."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.address", "127.0.0.1",
           "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT, preexec_fn=(
            lambda: ctypes.CDLL(None).prctl(1, signal.SIGTERM)) if sys.platform == "linux" else None)
    try:
        end, url = time.monotonic() + deadline.ms(90) / 1000, f"http://127.0.0.1:{port}"
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=5):   # raises unless 2xx
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > end:
                    raise RuntimeError(f"streamlit did not come up (exit code {proc.poll()})") from None
                time.sleep(0.5)
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# ------------------------------------------------------------------------------------------------ the browser
def niced(executable: str, nice: int, folder: Path) -> str:
    """A launcher that runs `executable` at CPU niceness `nice` (its child processes inherit it)."""
    if nice == 0:
        return executable
    launcher = folder / f"aelab-chromium-nice{nice}-{os.getpid()}"
    launcher.write_text(f'#!/bin/sh\nexec nice -n {int(nice)} "{executable}" "$@"\n')
    launcher.chmod(0o755)
    return str(launcher)


# ------------------------------------------------------------------------------------------------ one page
def wait_idle(page, deadline: Deadline, cap_s: float = 60) -> None:
    """Until the app's script is not running and no spinner shows (as in tests/test_browser.py)."""
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(timeout=deadline.ms(cap_s))
    page.locator('[data-testid="stSpinner"]').first.wait_for(state="hidden", timeout=deadline.ms(cap_s))


def button(page, word: str):
    """A button by its word (a material icon's ligature text may come first in its accessible name)."""
    return page.get_by_role("button", name=re.compile(rf"{word}$"))


def open_session(browser, url: str, deadline: Deadline) -> tuple[Session, float]:
    """A new visitor; and the seconds from goto until the Train heading and Start show and the app is idle."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(60_000)
    page = context.new_page()
    t = time.monotonic()
    page.goto(url + "/train", timeout=deadline.ms(90))
    page.get_by_role("heading", name=TRAIN[1]).wait_for(timeout=deadline.ms(90))
    button(page, "Start").wait_for(timeout=deadline.ms(90))
    wait_idle(page, deadline)
    return Session(page), time.monotonic() - t


def visit(page, link: str, heading: str, deadline: Deadline) -> float:
    """Seconds from a click on a sidebar link until the page's heading shows and the app is idle."""
    t = time.monotonic()
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=link).click(timeout=deadline.ms(60))
    page.get_by_role("heading", name=heading).wait_for(timeout=deadline.ms(120))
    wait_idle(page, deadline, cap_s=120)
    return time.monotonic() - t


def read_run(page) -> dict:
    """The run id in the URL, and the state, rate (samples/s), step and queue position that the progress bar's
    text shows (None where absent)."""
    text, query = page.evaluate(PROGRESS_JS)
    state, run = STATE.search(text), re.search(r"[?&]run=([^&#]+)", query)
    found = {key: pattern.search(text) for key, pattern in NUMBERS.items()}
    return {"run": run and run.group(1), "state": state and state.group(1),
            **{key: m and int(m.group(1).replace(",", "")) for key, m in found.items()}, "text": text}


def wait_state(page, states: tuple[str, ...], deadline: Deadline, cap_s: float = 120, rate=False,
               not_run: str | None = "", must=True) -> dict:
    """Poll the progress text until it reads one of `states` (with `rate`: and shows samples/s) for a run other
    than `not_run` (the one shown before a Start). After `cap_s`: raise, or with must=False return the last
    reading, its "text" being what the page's main part shows."""
    end = time.monotonic() + deadline.ms(cap_s) / 1000
    while ((seen := read_run(page))["state"] not in states or (rate and not seen["rate"])
           or seen["run"] == not_run):
        if time.monotonic() > end:
            if must:
                raise TimeoutError(f"the progress never read {states}: {seen['text']!r}")
            main = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]')?.innerText || ''")
            return {**seen, "text": " ".join(main.split())[:300]}
        time.sleep(0.2)
    return seen

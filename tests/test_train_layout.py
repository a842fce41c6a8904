"""The Train page in a real Chromium, on a 1400×900 desktop and a 390×844 phone: once a run is on, the run's
controls (Start, Pause, Stop) and the top of its live loss chart are on the first screen, the settings are folded
away, and opened they say that a change applies to the next run. A screenshot of each first screen goes to
tests/artifacts/screenshots/ (train-layout-desktop.png, train-layout-phone.png) and the measured positions to
tests/artifacts/train_layout.json.

The server runs one training slot (AELAB_MAX_RUNS=1): each run is stopped before the next screen size starts one.
Skipped when Chromium or the real MNIST files (AECORE_DATA_DIR) are missing.
"""
from __future__ import annotations

import json
import re

import pytest

from browser_support import ARTIFACTS, START, STARTUP_S, STOP, TRAIN_S, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCREENS = {"desktop": dict(viewport={"width": 1400, "height": 900}),
           "phone": dict(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)}
PAUSE = re.compile(r"\bPause$")
# Streamlit scrolls inside its main block: the first screen is the page scrolled to the top.
TO_TOP = "() => { scrollTo(0, 0); document.querySelectorAll('*').forEach(e => { if (e.scrollTop) e.scrollTop = 0; }); }"


@pytest.fixture(scope="module")
def measured():
    found: dict = {}
    yield found
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "train_layout.json").write_text(json.dumps(found, indent=1) + "\n")


def main(page):
    """The page's own part: Streamlit's header shows a "Stop" of its own while a script runs."""
    return page.get_by_test_id("stMainBlockContainer")


def measure(page, chart, tries: int = 5) -> dict:
    """The boxes of Start, Pause, Stop and the chart. The run's status fragment redraws every 2 s and an element
    caught mid-redraw has no box: each is waited for visible and measured again (bounded) until all have one."""
    named = {**{name: main(page).get_by_role("button", name=pattern)
                for name, pattern in (("Start", START), ("Pause", PAUSE), ("Stop", STOP))}, "chart": chart}
    boxes: dict = {}
    for _ in range(tries):
        for name, locator in named.items():
            if boxes.get(name) is None:
                locator.wait_for(state="visible")
                boxes[name] = locator.bounding_box()
        if all(box is not None for box in boxes.values()):
            return boxes
        page.wait_for_timeout(500)
    missing = [name for name, box in boxes.items() if box is None]
    raise AssertionError(f"no box for {missing} after {tries} tries")


@pytest.mark.parametrize("screen", list(SCREENS))
def test_the_controls_and_the_chart_share_the_first_screen(browser, server, measured, screen):
    from playwright.sync_api import expect

    context = browser.new_context(**SCREENS[screen])
    context.set_default_timeout(60_000)
    page = context.new_page()
    try:
        page.goto(server + "/train?preset=pytorch-784-200", timeout=STARTUP_S * 1000)   # 10 epochs: stopped below
        main(page).get_by_role("button", name=START).wait_for(timeout=STARTUP_S * 1000)
        wait_idle(page)
        main(page).get_by_role("button", name=START).click()
        expect(page.get_by_test_id("stProgress").last).to_contain_text(re.compile(r"^running"), timeout=TRAIN_S * 1000)
        chart = page.locator(".js-plotly-plot").first
        chart.wait_for(timeout=TRAIN_S * 1000)
        wait_idle(page)
        page.evaluate(TO_TOP)
        height = SCREENS[screen]["viewport"]["height"]
        boxes = measure(page, chart)
        measured[screen] = {name: {"top": round(b["y"]), "bottom": round(b["y"] + b["height"])}
                            for name, b in boxes.items()}
        folder = ARTIFACTS / "screenshots"
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=folder / f"train-layout-{screen}.png")
        for name in ("Start", "Pause", "Stop"):
            assert 0 <= boxes[name]["y"] and boxes[name]["y"] + boxes[name]["height"] <= height, \
                f"{screen}: {name} is not on the first screen ({measured[screen]})"
        assert 0 <= boxes["chart"]["y"] < height, f"{screen}: the chart starts below the first screen ({measured[screen]})"

        # The settings are folded away during the run; opened, they say where a change goes.
        settings = page.get_by_text("Settings: data, model and training")
        note = page.get_by_text("changes here apply to the next run")
        expect(note).to_be_hidden()
        settings.click()
        expect(note).to_be_visible()
    finally:
        stop = main(page).get_by_role("button", name=STOP)
        if stop.count() and stop.is_enabled():     # free the server's one slot for the next screen
            stop.click()
            expect(page.get_by_test_id("stProgress").last).to_contain_text(re.compile(r"^stopped"), timeout=60_000)
        context.close()

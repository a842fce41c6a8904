"""End to end in a real Chromium, as a newcomer: open the link (the Start page), open the first tutorial card,
train a short run, reload during it, leave the page and come back, open Inspect, then draw a digit (the digit
detector calls it typical) and move the Anomalies page's threshold; two visitors share one training slot (one
runs, one is queued); a closed tab's run stops.

The server runs with AELAB_MAX_RUNS=1 and a short grace time (GRACE_S) for unwatched runs.

The app runs as `streamlit run app.py` on a free local port; Playwright drives Debian's Chromium (headless).
Besides the assertions, the test takes a screenshot of every page (into tests/artifacts/screenshots/, or
the folder in AELAB_SCREENSHOTS) and writes a few
measurements (chart updates per second while training, the app's samples/s, the Draw page's server time)
to tests/artifacts/browser_measurements.json.

Skipped when Chromium or the real MNIST files (AECORE_DATA_DIR) are missing.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import time
from pathlib import Path

import pytest

from browser_support import (ARTIFACTS, CHROMIUM_ARGS, GRACE_S, REPO, SCREENSHOTS, SERVER_PID, START, STARTUP_S, STOP,  # noqa: F401
                             TRAIN_S, VIEWPORT, goto, progress_text, run_id_of, step_of, wait_idle)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


# ---------------------------------------------------------------------------------------------- fixtures
# chromium and server (AELAB_MAX_RUNS=1, grace GRACE_S, its process id in SERVER_PID): tests/conftest.py
@pytest.fixture(scope="module")
def problems() -> list[str]:
    """Console errors, page errors and failed requests seen by the browser (reported, not asserted)."""
    return []


@pytest.fixture
def measurements(problems):
    """What the test measured; written to tests/artifacts/browser_measurements.json and printed, pass or fail."""
    found: dict = {}
    yield found
    found["browser_problems"] = problems
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "browser_measurements.json").write_text(json.dumps(found, indent=2, ensure_ascii=False) + "\n")
    print("\nmeasurements:", json.dumps(found, indent=2, ensure_ascii=False))


@pytest.fixture(scope="module")
def page(chromium, server, problems):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport=VIEWPORT)
        context.set_default_timeout(60_000)
        pg = context.new_page()
        pg.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text[:200]}"))
        pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        pg.on("response", lambda r: r.status >= 400 and problems.append(f"HTTP {r.status}: {r.url}"))
        try:
            yield pg
        finally:
            context.close()
            browser.close()


# ---------------------------------------------------------------------------------------------- helpers
# The loss chart's first trace (train loss per step). While a fragment rerun replaces the chart, the old and
# the new element can both be in the page for a moment; the one with the most points is the current one.
CHART_TRACES = """() => [...document.querySelectorAll('.js-plotly-plot')]
    .filter(el => el.data && el.data.length && el.data[0].x)
    .map(el => el.data)
    .sort((a, b) => b[0].x.length - a[0].x.length)"""
CHART_POINTS = f"""() => {{ const d = ({CHART_TRACES})(); return d.length ? d[0][0].x.length : 0; }}"""
CHART_SIGNATURE = f"""() => {{
    const d = ({CHART_TRACES})();
    return d.length ? JSON.stringify(d[0].map(t => [t.x.length, t.x[t.x.length - 1], t.y[t.y.length - 1]])) : null;
}}"""
SAMPLES_PER_S = re.compile(r"([\d,]+) samples/s")


def screenshot(page, name: str, folder: Path = SCREENSHOTS) -> Path:
    """The whole page: Streamlit scrolls inside <main>, so the viewport is made as tall as its content."""
    folder.mkdir(parents=True, exist_ok=True)
    height = page.evaluate("() => document.querySelector('[data-testid=stMain]')?.scrollHeight || 0")
    page.set_viewport_size({"width": VIEWPORT["width"], "height": max(VIEWPORT["height"], min(int(height), 6000))})
    try:
        time.sleep(0.5)   # let plotly and images re-layout to the new size
        path = folder / f"{name}.png"
        page.screenshot(path=path, full_page=True)
    finally:
        page.set_viewport_size(VIEWPORT)
    return path


def phone_screenshot(page, url: str, name: str, folder: Path = SCREENSHOTS, ready: str | None = None) -> Path:
    """`url` in a 390x844 phone viewport (a touch screen), the first screenful, as a visitor's phone shows it
    (once the element `ready` names, if any, is there)."""
    context = page.context.browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                                               has_touch=True, device_scale_factor=2)
    try:
        phone = context.new_page()
        phone.goto(url, timeout=STARTUP_S * 1000)
        phone.locator('[data-testid="stMain"] h1').first.wait_for(timeout=STARTUP_S * 1000)
        if ready:
            phone.locator(ready).first.wait_for(timeout=60_000)
        wait_idle(phone)
        time.sleep(0.5)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.png"
        phone.screenshot(path=path)
        return path
    finally:
        context.close()


def samples_per_s(text: str) -> int | None:
    m = SAMPLES_PER_S.search(text)
    return int(m.group(1).replace(",", "")) if m else None


# ---------------------------------------------------------------------------------------------- the test
def test_train_switch_pages_and_draw(page, server, measurements):
    try:
        train_switch_pages_and_draw(page, server, measurements)
    except BaseException:
        with contextlib.suppress(Exception):
            screenshot(page, "failure", ARTIFACTS)   # what the browser showed, beside the server's log
        raise


def train_switch_pages_and_draw(page, server, measurements):
    from playwright.sync_api import expect

    t_start = time.monotonic()

    # -- Start: the link opens on the Start page, as a newcomer sees it (and on a phone); its first tutorial card
    #    opens the Train page with that tutorial's preset in the form
    page.goto(server + "/", timeout=STARTUP_S * 1000)
    page.get_by_role("heading", name="AE Lab: what does an autoencoder learn?").wait_for(timeout=STARTUP_S * 1000)
    page.get_by_role("heading", name="The five tutorials").wait_for()
    expect(page.get_by_text(re.compile(r"^Reconstruction from the code alone: error 0\.\d{4}"))).to_be_visible()
    wait_idle(page)
    screenshot(page, "start")
    phone_screenshot(page, server + "/", "start-phone")
    page.get_by_role("button", name=re.compile(r"Train it$")).first.click()

    # -- Train: the PyTorch tutorial's preset, two epochs
    page.get_by_role("heading", name="Train an autoencoder").wait_for(timeout=STARTUP_S * 1000)
    page.wait_for_url(re.compile(r"/train\?preset=pytorch-784-200$"), timeout=30_000)
    start = page.get_by_role("button", name=START)
    start.wait_for(timeout=STARTUP_S * 1000)
    wait_idle(page)
    epochs = page.get_by_role("spinbutton", name="Epochs", exact=True)
    epochs.fill("4")   # long enough (~8 s on a free machine) that the reload below comes while it runs
    epochs.press("Enter")
    # The form now differs from the preset: the run keeps the preset's name plus what differs, and its figure.
    expect(page.get_by_text("the run will be pytorch-784-200 · epochs 4; the figure still applies")).to_be_visible(
        timeout=60_000)
    wait_idle(page)
    assert epochs.input_value() == "4"
    # The URL holds the form: the preset's name and only what differs from it.
    page.wait_for_url(re.compile(r"\?preset=pytorch-784-200&epochs=4$"), timeout=30_000)
    start.click()
    expect(page.get_by_test_id("stProgress").last).to_contain_text(re.compile(r"epoch \d+/4\b"), timeout=TRAIN_S * 1000)
    run_id = run_id_of(page)

    # the loss chart appears and gains points while the run goes on
    first = page.wait_for_function(f"({CHART_POINTS})() || false", timeout=TRAIN_S * 1000, polling=100).json_value()
    first_progress = progress_text(page)
    assert "finished" not in first_progress, f"the run ended before the chart showed any progress: {first_progress!r}"

    # chart updates per second, sampled every 100 ms for 3 s (a measurement, not an assertion)
    changes, speeds, last = 0, [], page.evaluate(CHART_SIGNATURE)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 3.0:
        time.sleep(0.1)
        sig = page.evaluate(CHART_SIGNATURE)
        if sig != last:
            changes, last = changes + 1, sig
        sps = samples_per_s(progress_text(page))
        if sps is not None and "running" in progress_text(page) and (not speeds or speeds[-1] != sps):
            speeds.append(sps)
    window = time.monotonic() - t0
    measurements["chart_updates_per_s"] = round(changes / window, 2)
    measurements["chart_sampling"] = {"window_s": round(window, 2), "changes": changes,
                                      "progress_before": first_progress, "progress_after": progress_text(page)}

    second = page.wait_for_function(f"(n => n > {first} && n)(({CHART_POINTS})())", timeout=TRAIN_S * 1000,
                                    polling=200).json_value()
    assert second > first, f"the loss chart did not gain points ({first} -> {second})"
    print(f"\nloss chart: {first} points ({first_progress!r}), later {second} points")

    # -- reload during the run: the URL brings the same run back, further along
    before = step_of(progress_text(page))
    page.reload()
    page.get_by_role("heading", name="Train an autoencoder").wait_for(timeout=STARTUP_S * 1000)
    expect(page.get_by_test_id("stProgress").last).to_contain_text(re.compile(r"^(running|finished)"),
                                                                timeout=60_000)
    assert run_id_of(page) == run_id, "the reload showed another run"
    page.wait_for_function(f"""() => {{
        const bars = document.querySelectorAll('[data-testid="stProgress"]');   // the newest: as progress_text
        const bar = bars[bars.length - 1];
        const m = bar && bar.innerText.match(/step ([\\d,]+)\\/([\\d,]+)/);
        if (!m) return false;
        const step = Number(m[1].replace(/,/g, '')), total = Number(m[2].replace(/,/g, ''));
        return step > {before} || ({before} === total && bar.innerText.startsWith('finished'));
    }}""", timeout=TRAIN_S * 1000, polling=200)
    after = step_of(progress_text(page))
    measurements["reload"] = {"step_before": before, "step_after": after, "same_run": True}
    start = page.get_by_role("button", name=START)

    # -- away to Draw and back: the run goes on (or has finished) and the page shows it
    goto(page, "Draw", "Draw a digit")
    goto(page, "Train", "Train an autoencoder")
    bar = page.get_by_test_id("stProgress").last
    bar.wait_for()
    text = bar.inner_text()
    assert "running" in text or "finished" in text, f"after switching pages the progress reads {text!r}"

    finished = page.get_by_test_id("stProgress").last.get_by_text("✅ finished").or_(
        page.get_by_role("button", name=re.compile("Download checkpoint")))
    finished.first.wait_for(timeout=TRAIN_S * 1000)
    page.get_by_role("button", name=re.compile("Download checkpoint")).wait_for(timeout=60_000)
    expect(start).to_be_enabled(timeout=60_000)   # drawn by the full rerun that follows the end of a run
    wait_idle(page)
    # Seen now and then: the full rerun that follows the end of a run (st.rerun from the auto-rerunning live
    # view) leaves out what comes after the live view, until the next interaction. Noted, not asserted.
    measurements["checkpoint_loader_shown_after_run"] = page.get_by_text("Load a checkpoint (.safetensors)").count() > 0
    final_progress = progress_text(page)
    assert "finished" in final_progress, final_progress
    measurements["samples_per_s_while_running"] = speeds
    measurements["samples_per_s_final"] = samples_per_s(final_progress)
    measurements["final_progress_text"] = final_progress
    screenshot(page, "train")
    phone_screenshot(page, page.url, "train-phone",    # the run's link on a phone: its bar and chart on one screen
                     ready='[data-testid="stProgress"]')

    # -- Inspect and Latent space: they render for the model just trained
    goto(page, "Inspect", "Look inside the model")
    page.get_by_role("heading", name="Reconstructions").wait_for()
    page.get_by_role("heading", name="Last run's timeline").wait_for()
    wait_idle(page)
    screenshot(page, "inspect")

    goto(page, "Latent space", "Explore the latent space")
    page.locator('[data-testid="stVegaLiteChart"]').first.wait_for(timeout=120_000)
    page.get_by_role("heading", name="What the decoder draws across the plane").wait_for()
    wait_idle(page, timeout_s=120)
    screenshot(page, "latent")

    # -- Draw: a stroke like a 7 on the canvas (a streamlit-drawable-canvas component; Playwright's CSS
    #    locators pierce its shadow root; fabric.js listens on the upper of its two canvases)
    goto(page, "Draw", "Draw a digit")
    page.get_by_text("Active model:").wait_for()
    measurements["active_model_on_draw"] = page.get_by_text("Active model:").inner_text().split(" (")[0]
    canvas = page.locator("canvas.upper-canvas").first
    canvas.wait_for(state="visible")
    wait_idle(page)
    box = canvas.bounding_box()
    assert box and box["width"] > 100 and box["height"] > 100, box

    def at(fx: float, fy: float) -> tuple[float, float]:
        return box["x"] + fx * box["width"], box["y"] + fy * box["height"]

    page.mouse.move(*at(0.28, 0.25))
    page.mouse.down()
    page.mouse.move(*at(0.72, 0.25), steps=15)   # the top bar
    page.mouse.move(*at(0.45, 0.82), steps=20)   # the slanted stem
    page.mouse.up()
    t_drawn = time.monotonic()

    metric = page.get_by_test_id("stMetric").filter(has_text="Reconstruction error (MSE)")
    metric.wait_for(timeout=60_000)
    value = metric.get_by_test_id("stMetricValue").inner_text().strip()
    measurements["draw_result_wall_s"] = round(time.monotonic() - t_drawn, 2)
    mse = float(value)
    assert 0.0 <= mse <= 1.0, value
    measurements["draw_mse"] = mse

    caption = page.get_by_text(re.compile(r"server time: [\d.,]+ ms"))
    caption.wait_for()
    measurements["draw_server_time_ms"] = float(
        re.search(r"server time: ([\d.,]+) ms", caption.inner_text()).group(1).replace(",", ""))
    page.get_by_role("heading", name="Is it a digit?").wait_for()
    verdict = page.get_by_text(re.compile("typical of handwritten digits|unusual: this does not look like"))
    measurements["draw_verdict"] = verdict.inner_text()
    assert "typical of handwritten digits" in measurements["draw_verdict"]     # a 7 is a digit
    wait_idle(page)
    screenshot(page, "draw")
    phone_screenshot(page, server + "/draw", "draw-phone")

    # -- Anomalies: the tutorial's case beside the recommended detector, the charts, and a threshold that moves
    goto(page, "Anomalies", "Find anomalies")
    page.get_by_role("heading", name="Where to draw the line").wait_for(timeout=60_000)
    page.get_by_text("Recommended:").first.wait_for()
    expect(page.locator(".js-plotly-plot")).to_have_count(2, timeout=30_000)     # histogram and ROC
    threshold = page.get_by_test_id("stMetric").filter(has_text="threshold (score)").get_by_test_id("stMetricValue")
    before = threshold.inner_text()
    page.get_by_role("slider").first.focus()
    for _ in range(20):
        page.keyboard.press("ArrowRight")            # a higher false-alarm target: a lower threshold
    expect(threshold).not_to_have_text(before, timeout=30_000)
    measurements["anomaly_threshold_moved"] = [before, threshold.inner_text()]
    assert float(threshold.inner_text()) < float(before)
    wait_idle(page)
    screenshot(page, "anomalies")

    # -- Compare: the run just trained beside a shipped model, their curves on one chart
    goto(page, "Compare", "Compare runs")
    page.get_by_role("heading", name="Settings that differ").wait_for(timeout=60_000)
    page.get_by_role("heading", name="First-layer filters").wait_for(timeout=60_000)
    expect(page.locator(".js-plotly-plot")).to_have_count(1, timeout=30_000)
    legend = page.locator(".js-plotly-plot .legendtext").evaluate_all("els => els.map(e => e.textContent)")
    measurements["compare_legend"] = legend
    assert any(t.startswith("pytorch-784-200 · epochs 4") for t in legend), legend
    wait_idle(page)
    screenshot(page, "compare")

    measurements["test_wall_s"] = round(time.monotonic() - t_start, 1)


def set_epochs(page, epochs: int) -> None:
    """Set the Train form's epochs and wait until the page has taken them (the form then differs from the preset)."""
    from playwright.sync_api import expect

    field = page.get_by_role("spinbutton", name="Epochs", exact=True)
    field.fill(str(epochs))
    field.press("Enter")
    expect(page.get_by_text("form differs from this preset")).to_be_visible(timeout=60_000)
    wait_idle(page)


def new_visitor(page, server):
    """A second browser context: a visitor with a session (and a run list) of its own."""
    context = page.context.browser.new_context(viewport=VIEWPORT)
    visitor = context.new_page()
    visitor.goto(server + "/train", timeout=STARTUP_S * 1000)
    visitor.get_by_role("button", name=START).wait_for(timeout=STARTUP_S * 1000)
    wait_idle(visitor)
    return context, visitor


def own_models(page) -> list[str]:
    """The sidebar's model choices marked as this visitor's own."""
    page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox").click()
    page.get_by_role("option").first.wait_for()        # the list opens a moment after the click
    options = page.get_by_role("option").all_inner_texts()
    page.keyboard.press("Escape")
    return [o for o in options if o.strip().endswith("(yours)")]


def test_two_visitors_share_one_slot_and_stay_apart(page, server, measurements):
    """AELAB_MAX_RUNS=1: the second visitor's run is queued and starts by itself when the first one ends; neither
    visitor sees the other's run or models."""
    from playwright.sync_api import expect

    first_ctx, first = new_visitor(page, server)
    second_ctx, second = new_visitor(page, server)
    try:
        set_epochs(first, 5)   # ~10 s on a free machine: still running when the second visitor clicks Start
        first.get_by_role("button", name=START).click()
        expect(first.get_by_test_id("stProgress").last).to_contain_text(re.compile(r"^running"), timeout=TRAIN_S * 1000)
        second.get_by_role("button", name=START).click()
        expect(second.get_by_test_id("stProgress").last).to_contain_text(
            re.compile(r"^queued · number 1 in line · starts in .* · 1 of 1 training slots busy"), timeout=60_000)
        measurements["queued_text"] = progress_text(second)
        first_id, second_id = run_id_of(first), run_id_of(second)
        assert first_id != second_id
        assert first_id not in second.content() and second_id not in first.content()

        # the first run ends; the queued one starts by itself
        expect(first.get_by_test_id("stProgress").last).to_contain_text(re.compile(r"^finished"), timeout=TRAIN_S * 1000)
        expect(second.get_by_test_id("stProgress").last).to_contain_text(re.compile(r"^running"), timeout=60_000)
        wait_idle(first)
        mine = own_models(first)
        assert mine and all("pytorch-784-200 · epochs 5 run 1" in o for o in mine), mine
        assert own_models(second) == [], "the second visitor sees the first one's model"
        second.get_by_role("button", name=STOP).click()
        expect(second.get_by_test_id("stProgress").last).to_contain_text(re.compile(r"^stopped"), timeout=60_000)
    finally:
        first_ctx.close()
        second_ctx.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_rate(pid: int, seconds: float = 3.0) -> float:
    """Cores the process kept busy over the next `seconds`."""
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / seconds


def test_closing_the_browser_stops_its_run(page, server, measurements):
    """A visitor who closes the tab stops watching; the server stops the run once the grace time has passed.
    Opening the run's link afterwards shows it stopped, with the server's reason."""
    from playwright.sync_api import expect

    pid = SERVER_PID[0]
    context, visitor = new_visitor(page, server)
    set_epochs(visitor, 50)   # ~90 s on a free machine: far longer than we wait (10 could end within the grace)
    visitor.get_by_role("button", name=START).click()
    expect(visitor.get_by_test_id("stProgress").last).to_contain_text("running", timeout=TRAIN_S * 1000)
    link = visitor.url
    training = cpu_rate(pid)
    context.close()
    time.sleep(GRACE_S + 3)   # the grace time, and the sweeper's one-second beat
    after = cpu_rate(pid)
    measurements["server_cores_busy"] = {"training": round(training, 2), "after_tab_closed": round(after, 2)}
    context, again = new_visitor(page, server)
    try:
        again.goto(link)
        expect(again.get_by_test_id("stProgress").last).to_contain_text(re.compile(r"^stopped"), timeout=60_000)
        expect(again.get_by_text(f"Stopped by the server: nobody watched it for {GRACE_S} s")).to_be_visible()
    finally:
        context.close()

"""Steering a run in a real Chromium: change the learning rate while it trains and see the change marked on the
loss chart, then pause and Step a number of batches. (Decoding a clicked point of the latent plane is
tests/test_browser_latent.py's.)

Skipped when Chromium or the real MNIST files (AECORE_DATA_DIR) are missing."""
from __future__ import annotations

import re

import pytest

from browser_support import SCREENSHOTS, VIEWPORT, progress_text, step_of, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.mnist, pytest.mark.slow]


def test_change_the_learning_rate_mid_run_then_step_while_paused(browser, server):
    from playwright.sync_api import expect

    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        page.set_default_timeout(90_000)
        page.goto(server.rstrip("/") + "/train?preset=pytorch-784-200&epochs=20")
        page.get_by_role("heading", name="Train an autoencoder").wait_for()
        wait_idle(page, 120)
        page.get_by_role("button", name="Start").click()
        expect(page.get_by_test_id("stProgress").last).to_contain_text(re.compile(r"running · epoch \d+/20 · step"),
                                                                       timeout=120_000)
        wait_idle(page, 60)
        page.get_by_text("Change while it trains").wait_for()
        lr = page.get_by_role("spinbutton", name="Learning rate")
        expect(lr).to_have_count(1)                  # the settings' own field is folded away while a run is on
        lr.fill("0.004")
        lr.press("Enter")
        wait_idle(page, 60)
        page.get_by_role("button", name="Apply changes").click()
        chart = page.get_by_test_id("stPlotlyChart").first
        expect(chart.get_by_text(re.compile(r"^lr 0\.004$"))).to_be_visible(timeout=60_000)   # the marker
        page.get_by_role("button", name="Pause").click()
        expect(page.get_by_test_id("stProgress").last).to_contain_text("paused", timeout=60_000)
        wait_idle(page, 60)
        before = -1
        for _ in range(40):                          # the record made as it paused comes a moment later
            page.wait_for_timeout(500)
            now = step_of(progress_text(page))
            if now == before:
                break
            before = now
        per_epoch = int(re.search(r"step [\d,]+/([\d,]+)", progress_text(page)).group(1).replace(",", "")) // 20
        n = 30 if (before + 30) % per_epoch else 29  # a Step that ends an epoch shows that epoch's reconstructions
        batches = page.get_by_role("spinbutton", name="Batches")
        batches.fill(str(n))
        batches.press("Enter")
        wait_idle(page, 60)
        page.get_by_role("button", name="Step", exact=True).click()
        expect(page.get_by_test_id("stProgress").last).to_contain_text(f"step {before + n:,}/", timeout=60_000)
        expect(page.get_by_text(f"reconstructions after step {before + n:,}")).to_be_visible(timeout=60_000)
        wait_idle(page, 60)
        page.wait_for_timeout(1000)
        assert step_of(progress_text(page)) == before + n      # and it paused again
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOTS / "train-change.png", full_page=True)
        page.get_by_role("button", name="Stop").click()
        expect(page.get_by_test_id("stProgress").last).to_contain_text("stopped", timeout=60_000)
    finally:
        context.close()

"""The Latent page in a real Chromium: hovering a point of the plane shows its test picture, clicking an empty spot
decodes it, clicking a point shows its nearest neighbours, which the walk below then starts from.

Skipped when Chromium or the real MNIST files (AECORE_DATA_DIR) are missing."""
from __future__ import annotations

import pytest

from browser_support import VIEWPORT, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.mnist, pytest.mark.slow]

CHART = '[data-testid="stVegaLiteChart"]'
TOOLTIP_PICTURE = "#vg-tooltip-element img"


def caption_with(page, text: str):
    return page.get_by_test_id("stImageCaption").filter(has_text=text)


def test_hover_click_a_spot_and_click_a_point(browser, server):
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(server.rstrip("/") + "/latent")
        page.get_by_role("heading", name="Explore the latent space").wait_for()
        wait_idle(page, 120)
        chart = page.locator(CHART).first
        chart.scroll_into_view_if_needed()
        box = chart.locator("canvas, svg").first.bounding_box()
        assert box and box["width"] > 300
        # The plane's top-left corner lies outside the cloud of codes: a click there decodes that spot.
        page.mouse.click(box["x"] + 70, box["y"] + 45)
        caption_with(page, "decoded at (").first.wait_for(timeout=60_000)
        wait_idle(page, 60)
        # Points are dense near the middle: hover and click across it until one is picked (a bounded search).
        found_picture = found_neighbours = False
        for dx in range(-60, 61, 12):
            for dy in (-24, 0, 24):
                x, y = box["x"] + box["width"] / 2 + dx, box["y"] + box["height"] / 2 + dy
                page.mouse.move(x, y)
                page.wait_for_timeout(150)
                if page.locator(TOOLTIP_PICTURE).count() and page.locator(TOOLTIP_PICTURE).first.is_visible():
                    found_picture = True
                    page.mouse.click(x, y)
                    caption_with(page, "nearest in code space").first.wait_for(timeout=60_000)
                    found_neighbours = True
                    break
            if found_neighbours:
                break
        assert found_picture, "no point of the plane showed its picture on hover"
        assert found_neighbours
        wait_idle(page, 60)
        picked = caption_with(page, "nearest in code space").first.inner_text()
        assert picked.count("#") == 8                              # eight neighbours, each named by its index
        # The walk starts from the picked picture.
        shown = page.get_by_test_id("stImageCaption").filter(has_text="and its code decoded").first.inner_text()
        index = int(shown.split("#")[1].split(" ")[0])
        assert caption_with(page, f"#{index}'s code with the sliders' values").count() == 1
    finally:
        context.close()

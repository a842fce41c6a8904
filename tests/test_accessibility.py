"""Accessibility in a real Chromium: axe-core audits every page of the app, on a desktop and a phone, in the
visitor's dark and light setting.

- Every page listed in app.py (reached by its URL path) is audited before any run, and again, in one session,
  after a short run has finished (pytorch-784-200, 1 epoch on 6,000 training images); the Draw page with a
  digit drawn on its canvas. No violation of impact "critical" or "serious" is allowed, nor a skipped heading
  level ("heading-order": a page that goes from its h1 to an h3). Each audit runs with prefers-color-scheme dark
  and light, and the page must show the background .streamlit/config.toml gives that scheme; the canvas stays
  black with a white stroke in both. The one exemption: the label of a disabled widget, which WCAG 1.4.3 leaves
  out of the contrast minimum (text of an inactive control).
- On a 390×844 touch screen no page scrolls sideways (tables scroll in their own box, pictures shrink to the
  screen), and the Draw canvas fits the screen and takes a finger stroke, after which the reconstruction and the
  verdict appear within one screen below the canvas; the canvas's toolbar stays clear of the Draw | Upload choice.
- The Train page's Start, Pause and Stop are reached with the Tab key and pressed with Enter or Space; the page is
  audited while its run trains and while it is paused.

axe-core comes with the axe-playwright-python package (requirements-dev.txt). What each audit found, whatever
its impact, goes to tests/artifacts/accessibility.json; phone screenshots to tests/artifacts/phone/.
Skipped when Chromium or the real MNIST files (AECORE_DATA_DIR) are missing.
"""
from __future__ import annotations

import ast
import io
import json
import re
import time
import tomllib
from dataclasses import dataclass

import pytest

from browser_support import ARTIFACTS, REPO, STARTUP_S, VIEWPORT, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.mnist, pytest.mark.slow]

SEVERE = ("critical", "serious")
ALSO_ASSERTED = ("heading-order",)          # moderate in axe, but a skipped level misleads a screen-reader user
PHONE = {"width": 390, "height": 844}
SMALL_RUN = "preset=pytorch-784-200&epochs=1&val_fraction=0.9"   # the preset, 1 epoch, 6,000 training images
TRAIN_S = 180                # that run, queued behind nothing; generous for a busy machine
PAGE_S = 120                 # a page's first render (the Anomalies page scores the test set once per server)
START, PAUSE, STOP = (re.compile(rf"\b{w}$") for w in ("Start", "Pause", "Stop"))   # icon ligature text first
REPORT = ARTIFACTS / "accessibility.json"
LIVE_SETTLE_MS = 800         # a live page's colour transitions (Streamlit's are 200-300 ms) end within this


@dataclass(frozen=True)
class AppPage:
    title: str
    path: str          # the URL path, "" for the default page
    heading: str       # its st.title


def title_of(script: str) -> str:
    """The text of the page script's st.title(...)."""
    for node in ast.walk(ast.parse((REPO / script).read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "title" and node.args:
            return ast.literal_eval(node.args[0])
    raise AssertionError(f"{script} has no st.title with a plain string")


def app_pages() -> list[AppPage]:
    """The pages app.py lists (its st.Page calls), in order: title and URL path as Streamlit derives them."""
    out = []
    for node in ast.walk(ast.parse((REPO / "app.py").read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "Page":
            kw = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg in ("title", "url_path", "default")}
            script = ast.literal_eval(node.args[0])
            stem = script.rsplit("/", 1)[-1].removesuffix(".py")
            path = "" if kw.get("default") else kw.get("url_path") or stem
            out.append((node.lineno, AppPage(kw.get("title") or stem, path, title_of(script))))
    return [p for _, p in sorted(out, key=lambda t: t[0])]


PAGES = app_pages()
TRAIN = next(p for p in PAGES if p.title == "Train")
DRAW = next(p for p in PAGES if p.title == "Draw")


def theme_backgrounds() -> dict[str, tuple[int, int, int]]:
    """The background colour config.toml gives each scheme, as the browser reports it (r, g, b)."""
    theme = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())["theme"]
    return {s: tuple(int(theme[s]["backgroundColor"][i:i + 2], 16) for i in (1, 3, 5)) for s in ("dark", "light")}


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def report():
    """Every audit's findings (all impacts) and the module's wall time, written to REPORT at the end."""
    found = {"audits": {}, "phone": {}}
    t0 = time.monotonic()
    yield found
    found["module_wall_s"] = round(time.monotonic() - t0, 1)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(found, indent=1, ensure_ascii=False) + "\n")


def new_page(browser, scheme: str = "dark", **options):
    context = browser.new_context(color_scheme=scheme, **({"viewport": VIEWPORT} | options))
    context.set_default_timeout(60_000)
    return context, context.new_page()


# ---------------------------------------------------------------------------------------------- helpers
# Drawn: no placeholder of an element still loading its code, every image decoded.
DRAWN = """() => !document.querySelector('[data-testid="stSkeleton"], [data-testid="stSkeletonElement"]')
                 && [...document.images].every(img => img.complete)"""


def ready(page, p: AppPage) -> None:
    """Page `p`'s title is drawn, its script has finished and everything it sent is drawn."""
    page.get_by_role("heading", level=1, name=p.heading).wait_for(timeout=PAGE_S * 1000)
    wait_idle(page, PAGE_S)
    page.wait_for_function(DRAWN, timeout=30_000)


def open_url(page, server: str, p: AppPage, query: str = "") -> None:
    page.goto(f"{server}/{p.path}" + (f"?{query}" if query else ""), timeout=STARTUP_S * 1000)
    ready(page, p)


LINK_PATHS = "links => links.map(a => new URL(a.href).pathname.replace(/^\\//, ''))"


def navigate(page, p: AppPage) -> None:
    """To page `p` by its sidebar link (the same session: this visitor's run and models stay)."""
    links = page.locator('[data-testid="stSidebarNav"] a')
    if p.path not in links.evaluate_all(LINK_PATHS):   # a long list shows its first pages and "View n more"
        page.get_by_test_id("stSidebarNavViewButton").click()
    links.nth(links.evaluate_all(LINK_PATHS).index(p.path)).click()
    ready(page, p)


def use_scheme(page, scheme: str, live: bool = False) -> None:
    """The visitor's light/dark setting changes; the app must follow it to config.toml's colours, and every
    animation end. A `live` page (a run training: its progress redraws, and animates, several times a second)
    never stops animating: it gets the colours and LIVE_SETTLE_MS instead."""
    r, g, b = theme_backgrounds()[scheme]
    page.emulate_media(color_scheme=scheme)
    try:
        page.wait_for_function(
            """([want, live]) =>
                   getComputedStyle(document.querySelector('[data-testid="stApp"]')).backgroundColor === want
                      && (live || document.getAnimations().every(a => a.playState !== 'running'))""",
            arg=[f"rgb({r}, {g}, {b})", live], timeout=10_000)
        if live:
            page.wait_for_timeout(LIVE_SETTLE_MS)
    except Exception:
        shown = page.evaluate("getComputedStyle(document.querySelector('[data-testid=\"stApp\"]')).backgroundColor")
        raise AssertionError(f"prefers-color-scheme {scheme}: the app's background is {shown}, config.toml's "
                             f"[theme.{scheme}] says rgb({r}, {g}, {b})") from None


INACTIVE_LABEL = '[data-testid="stWidgetLabel"][disabled]'


def inactive(page, node: dict) -> bool:
    """The node is the label of a disabled widget: WCAG 1.4.3 exempts the text of an inactive control from the
    contrast minimum, and Streamlit greys it out on purpose (axe cannot tell: the label is not a form control)."""
    target = node["target"]
    return len(target) == 1 and isinstance(target[0], str) and page.evaluate(
        "([sel, css]) => !!document.querySelector(sel)?.closest(css)", [target[0], INACTIVE_LABEL])


def axe(page) -> list[dict]:
    """axe-core's violations on the page as it is now: rule, impact, node count, the first targets."""
    from axe_playwright_python.sync_playwright import Axe

    found = []
    for v in Axe().run(page).response["violations"]:
        nodes = [n for n in v["nodes"] if not (v["id"] == "color-contrast" and inactive(page, n))]
        if nodes:
            found.append({"rule": v["id"], "impact": v["impact"], "count": len(nodes), "help": v["help"],
                          "targets": [" >> ".join(map(str, n["target"])) for n in nodes[:3]],
                          "html": [n["html"][:120] for n in nodes[:3]]})
    return found


def audit(page, where: str, report: dict, live: bool = False) -> None:
    """Audit the page in dark, then light (back to dark after), into report["audits"][f"{where} · scheme"]."""
    for scheme in ("dark", "light"):
        use_scheme(page, scheme, live)
        report["audits"][f"{where} · {scheme}"] = axe(page)
    use_scheme(page, "dark", live)


def failures(report: dict, state: str) -> list[str]:
    """The asserted findings of the audits in `state` ("before a run", "after a run"), one line each."""
    return [f"{where}: {v['rule']} ({v['impact']}, {v['count']} nodes) e.g. "
            + "; ".join(" > ".join(t.split(" > ")[-2:]) for t in v["targets"])   # the end of each selector
            for where, found in report["audits"].items() if f" · {state}" in where
            for v in found if v["impact"] in SEVERE or v["rule"] in ALSO_ASSERTED]


def focused_button(page) -> str:
    """The text of the focused element if it is a button (a page link in the sidebar may be named "Start" too)."""
    return page.evaluate("() => { const el = document.activeElement;"
                         " return el && el.tagName === 'BUTTON' ? el.innerText.trim() : ''; }")


def tab_to(page, name: re.Pattern, limit: int = 200) -> None:
    """Press Tab until a button whose text matches `name` has the focus (from wherever the focus is)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if name.search(focused_button(page)):
            return
    raise AssertionError(f"{limit} presses of Tab never focused a button named {name.pattern!r}")


def stroke(page, canvas, points, touch: bool = False) -> None:
    """A stroke through `points` (fractions of the canvas box), with the mouse or, via CDP, one finger."""
    box = canvas.bounding_box()
    xy = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    if not touch:
        page.mouse.move(*xy[0])
        page.mouse.down()
        for x, y in xy[1:]:
            page.mouse.move(x, y, steps=15)
        page.mouse.up()
        return
    cdp = page.context.new_cdp_session(page)
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": xy[0][0], "y": xy[0][1]}]})
    for (x0, y0), (x1, y1) in zip(xy, xy[1:]):
        for i in range(1, 16):
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [
                {"x": x0 + (x1 - x0) * i / 15, "y": y0 + (y1 - y0) * i / 15}]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    cdp.detach()


SEVEN = [(0.28, 0.25), (0.72, 0.25), (0.45, 0.82)]    # the top bar, then the slanted stem


def wait_reconstruction(page) -> None:
    """The Draw page's result: the reconstruction's picture (named for screen readers) under its caption."""
    page.get_by_test_id("stMetric").filter(has_text="Reconstruction error (MSE)").wait_for(timeout=60_000)
    page.get_by_test_id("stImage").filter(has_text=re.compile(r"^reconstruction$")).get_by_role("img").wait_for()
    wait_idle(page)


def draw_layout(page, canvas) -> dict:
    """Where the Draw page's pieces lie once a digit is drawn, in CSS pixels from the top of the screen: the input
    choice, the canvas, its toolbar as it shows while the pointer (a finger, the mouse) is over the canvas, the
    reconstruction and the detector's verdict."""
    from playwright.sync_api import expect

    toolbar = page.locator(".dc-toolbar").first
    canvas.hover()
    expect(toolbar).to_have_css("opacity", "1")
    page.wait_for_timeout(400)                       # it slides up into place (CSS transition)
    boxes = {"choice": page.get_by_test_id("stRadio").first, "canvas": canvas, "toolbar": toolbar,
             "reconstruction": page.get_by_test_id("stImage").filter(has_text=re.compile(r"^reconstruction$")),
             "verdict": page.get_by_text(re.compile("typical of handwritten digits|unusual: this does not look"))}
    return {name: {k: round(v, 1) for k, v in loc.bounding_box().items()} for name, loc in boxes.items()}


def canvas_colours(canvas) -> tuple[int, int]:
    """The canvas as shown: the brightest channel at four spots away from the SEVEN stroke (the background), and
    the darkest channel of its brightest pixel (the ink)."""
    import numpy as np
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(canvas.screenshot())).convert("RGB"))     # (H, W, 3)
    h, w, _ = rgb.shape
    spots = [rgb[int(fy * h), int(fx * w)] for fx, fy in ((0.08, 0.08), (0.92, 0.92), (0.08, 0.92), (0.92, 0.6))]
    return int(np.max(spots)), int(rgb.min(axis=2).max())


# ---------------------------------------------------------------------------------------------- the tests
def test_start_pause_stop_by_keyboard(browser, server, report):
    """Tab reaches Start, Enter starts the run; Tab reaches Pause, Space pauses it; Tab reaches Stop, Enter stops
    it. The default preset (10 epochs of 60,000 images) runs far longer than this takes. The Train page is audited
    while the run trains and while it is paused."""
    from playwright.sync_api import expect

    context, page = new_page(browser)
    try:
        open_url(page, server, TRAIN)
        expect(page.get_by_role("button", name=START)).to_be_enabled()
        tab_to(page, START)
        page.keyboard.press("Enter")
        expect(page.get_by_test_id("stProgress").last).to_contain_text(re.compile(r"^running"), timeout=TRAIN_S * 1000)
        wait_idle(page)
        audit(page, "Train · while running", report, live=True)
        tab_to(page, PAUSE)
        page.keyboard.press("Space")
        expect(page.get_by_test_id("stProgress").last).to_contain_text(re.compile(r"^paused"), timeout=60_000)
        wait_idle(page)
        audit(page, "Train · while paused", report, live=True)
        tab_to(page, STOP)
        page.keyboard.press("Enter")
        expect(page.get_by_test_id("stProgress").last).to_contain_text(re.compile(r"^stopped"), timeout=60_000)
    finally:
        context.close()
    problems = failures(report, "while")
    assert not problems, "accessibility violations:\n" + "\n".join(problems)


def test_every_page_before_a_run(browser, server, report):
    context, page = new_page(browser)
    try:
        for p in PAGES:
            open_url(page, server, p)
            audit(page, f"{p.title} · before a run", report)
    finally:
        context.close()
    problems = failures(report, "before a run")
    assert not problems, "accessibility violations:\n" + "\n".join(problems)


def test_every_page_after_a_short_run(browser, server, report):
    """One session: a short run finishes on the Train page, then every page shows its model (Draw: with a
    digit on the canvas). The canvas stays black with a white stroke whatever the scheme."""
    from playwright.sync_api import expect

    context, page = new_page(browser)
    try:
        open_url(page, server, TRAIN, SMALL_RUN)
        expect(page.get_by_role("button", name=START)).to_be_enabled()
        page.get_by_role("button", name=START).click()
        expect(page.get_by_test_id("stProgress").last).to_contain_text(re.compile(r"^finished"), timeout=TRAIN_S * 1000)
        page.get_by_role("button", name=re.compile("Download checkpoint")).wait_for(timeout=60_000)
        wait_idle(page)
        for p in [TRAIN, *(q for q in PAGES if q != TRAIN)]:     # Train first: the finished run shows there
            if p != TRAIN:
                navigate(page, p)
            if p == DRAW:
                canvas = page.locator("canvas.upper-canvas").first
                canvas.wait_for(state="visible")
                stroke(page, canvas, SEVEN)
                wait_reconstruction(page)
                for scheme in ("light", "dark"):
                    use_scheme(page, scheme)
                    background, ink = canvas_colours(canvas)
                    assert background <= 16 and ink >= 240, f"{scheme}: the canvas is not black with a white " \
                                                            f"stroke (background up to {background}, ink {ink})"
            audit(page, f"{p.title} · after a run" + (" · drawn" if p == DRAW else ""), report)
    finally:
        context.close()
    problems = failures(report, "after a run")
    assert not problems, "accessibility violations:\n" + "\n".join(problems)


def test_phone(browser, server, report):
    """390×844, touch: no page scrolls sideways; the Draw canvas fits and takes a finger stroke, and its result
    shows within a screen below it."""
    folder = ARTIFACTS / "phone"
    folder.mkdir(parents=True, exist_ok=True)
    context, page = new_page(browser, viewport=PHONE, is_mobile=True, has_touch=True)
    wide = []
    try:
        for p in PAGES:
            open_url(page, server, p)
            if p == DRAW:
                canvas = page.locator("canvas.upper-canvas").first
                canvas.wait_for(state="visible")
                box = canvas.bounding_box()
                assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], f"canvas off screen: {box}"
                stroke(page, canvas, SEVEN, touch=True)
                wait_reconstruction(page)
                # The result right under the canvas (the columns stack): the reconstruction within half a screen
                # of the canvas's bottom, the verdict within one; the canvas's toolbar clear of the Draw | Upload
                # choice above it.
                report["phone"]["Draw layout"] = box = draw_layout(page, canvas)
                bottom = box["canvas"]["y"] + box["canvas"]["height"]
                for part, most in (("reconstruction", PHONE["height"] / 2), ("verdict", PHONE["height"])):
                    assert 0 < box[part]["y"] - bottom <= most, f"{part} more than {most} px below the canvas: {box}"
                assert box["toolbar"]["y"] >= box["choice"]["y"] + box["choice"]["height"], f"toolbar on text: {box}"
            # Streamlit scrolls inside <main>: the viewport is made as tall as the page, so that every element is
            # laid out (and shot) at the phone's width
            height = page.evaluate("document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
            page.set_viewport_size({"width": PHONE["width"], "height": min(max(height, PHONE["height"]), 8000)})
            page.wait_for_function(DRAWN, timeout=30_000)
            sizes = page.evaluate("""() => {
                const main = document.querySelector('[data-testid="stMain"]');
                return {page: document.scrollingElement.scrollWidth, inner: innerWidth,
                        main: main.scrollWidth, main_box: main.clientWidth};
            }""")
            report["phone"][p.title] = sizes
            if sizes["page"] > sizes["inner"] or sizes["main"] > sizes["main_box"]:
                wide.append(f"{p.title}: {sizes}")
            page.screenshot(path=folder / f"{p.path or 'default'}.png", full_page=True)
            page.set_viewport_size(PHONE)
    finally:
        context.close()
    assert not wide, "pages that scroll sideways on a phone:\n" + "\n".join(wide)

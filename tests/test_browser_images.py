"""The Your images page in a real Chromium: a small MVTec-like zip made here with Pillow is uploaded and previewed
(its layout recognised, its counts per class), a short run trains on it through the page's form, and the anomaly
detection runs from the page: both detectors' image AUROCs are shown as numbers in [0, 1], the galleries of the
most anomalous and the least typical pictures hold loaded pictures, and no exception box nor error message appears
anywhere.

Screenshots (1400×900 viewport): images-preview.png (after the upload) and images-anomalies.png (the anomaly
section, its galleries in view), into tests/artifacts/screenshots/ and, when AELAB_SCREENSHOTS names a folder,
there too (AELAB_SCREENSHOTS=docs/screenshots refreshes the README's).

The server runs one training slot (AELAB_MAX_RUNS=1). Skipped when Chromium or the real MNIST files
(AECORE_DATA_DIR) are missing.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import zipfile

import numpy as np
import pytest
from PIL import Image, ImageDraw

from browser_support import ARTIFACTS, REPO, STARTUP_S, TRAIN_S, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow]

VIEWPORT = {"width": 1400, "height": 900}
N_TRAIN, N_GOOD, N_SCRATCH = 40, 10, 10
# 32 good pictures make one batch: an epoch is one step. The recipe's own 30 leave its decoder near grey (every
# background pixel "wrong", the heat maps a red checkerboard); 150 steps take seconds and rebuild the background.
DETECT_EPOCHS = 150
DETECT_S = 240          # the recipe and PCA on 40 pictures; seconds on a busy 2-core machine
NUMBER = re.compile(r"^\d+(\.\d+)?$")


# ---------------------------------------------------------------------------------------------- the pictures
def png(picture: Image.Image) -> bytes:
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    return buf.getvalue()


def square(rng: np.random.Generator, scratch: list | None = None) -> Image.Image:
    """A 32×32 coloured square on black, a little off centre; with `scratch` (a list), a white line across it
    whose MVTec mask picture is appended to the list."""
    im = Image.new("RGB", (32, 32), (0, 0, 0))
    d = ImageDraw.Draw(im)
    x, y = (int(v) for v in rng.integers(6, 10, size=2))
    d.rectangle([x, y, x + 14, y + 14], fill=tuple(int(v) for v in rng.integers(120, 230, size=3)))
    if scratch is not None:
        line = [(2, int(rng.integers(2, 30))), (29, int(rng.integers(2, 30)))]
        d.line(line, fill=(255, 255, 255), width=2)
        mask = Image.new("L", (32, 32), 0)
        ImageDraw.Draw(mask).line(line, fill=255, width=2)
        scratch.append(mask)
    return im


def mvtec_zip() -> bytes:
    """squares/train/good (40), squares/test/good (10), squares/test/scratch (10) and their masks."""
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for where, n in (("train", N_TRAIN), ("test", N_GOOD)):
            for i in range(n):
                z.writestr(f"squares/{where}/good/{i:03d}.png", png(square(rng)))
        for i in range(N_SCRATCH):
            masks: list = []
            z.writestr(f"squares/test/scratch/{i:03d}.png", png(square(rng, masks)))
            z.writestr(f"squares/ground_truth/scratch/{i:03d}_mask.png", png(masks[0]))
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------- helpers
def main(page):
    """The page's own part: Streamlit's header shows a "Stop" of its own while a script runs."""
    return page.get_by_test_id("stMainBlockContainer")


def widget(page, key: str):
    """The element of the widget with this key (Streamlit's class: st-key-<key, odd characters as dashes>)."""
    return page.locator(".st-key-" + re.sub(r"[^a-zA-Z0-9_-]", "-", key))


def set_number(page, key: str, value: int) -> None:
    box = widget(page, key).locator("input")
    box.fill(str(value))
    box.press("Enter")
    wait_idle(page)
    assert box.input_value() == str(value)


# Streamlit scrolls inside its main block, under a header of about 60 px: the element goes just below it.
TO_TOP = """e => {
    e.scrollIntoView({block: 'start'});
    let box = e.parentElement;
    while (box && !(box.scrollHeight > box.clientHeight && getComputedStyle(box).overflowY !== 'visible'))
        box = box.parentElement;
    (box || document.scrollingElement).scrollBy(0, e.getBoundingClientRect().top - 64);
}"""


def scroll_to_top(locator) -> None:
    locator.evaluate(TO_TOP)


def screenshot(page, name: str) -> None:
    """The viewport as it is, into the artifacts and, when AELAB_SCREENSHOTS names a folder, there too."""
    folders = [ARTIFACTS / "screenshots"]
    if os.environ.get("AELAB_SCREENSHOTS"):
        folders.append(REPO / os.environ["AELAB_SCREENSHOTS"])
    page.wait_for_timeout(500)   # let images and plotly settle after a scroll
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=folder / f"{name}.png")


ERROR = "[data-testid=stException], [data-testid=stAlertContentError]"


def no_error(page) -> None:
    """No exception box and no error message (a failed run, a refused detector) anywhere on the page."""
    boxes = page.locator(ERROR)
    assert boxes.count() == 0, "an error on the page:\n" + "\n---\n".join(boxes.all_inner_texts())


# The gallery below a bold title: its element container's next sibling; its pictures, and how many have loaded.
GALLERY = """title => {
    const strong = [...document.querySelectorAll('[data-testid=stMarkdownContainer] strong')]
        .find(s => s.textContent.trim() === title);
    if (!strong) return null;
    const gallery = strong.closest('[data-testid=stElementContainer]').nextElementSibling;
    const imgs = gallery ? [...gallery.querySelectorAll('img')] : [];
    return {shown: imgs.length, loaded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
            captions: [...gallery.querySelectorAll('[data-testid=stImageCaption]')].map(c => c.textContent)};
}"""


# ---------------------------------------------------------------------------------------------- the test
def test_upload_train_and_find_the_anomalies(browser, server):
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(60_000)
    page = context.new_page()
    try:
        upload_train_and_detect(page, server)
    except BaseException:
        with contextlib.suppress(Exception):
            page.screenshot(path=ARTIFACTS / "images-failure.png", full_page=True)
        raise
    finally:
        context.close()


def upload_train_and_detect(page, server):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout, expect

    page.goto(server + "/images", timeout=STARTUP_S * 1000)
    page.get_by_role("heading", name="Your images").wait_for(timeout=STARTUP_S * 1000)
    wait_idle(page)
    expect(page.get_by_text("No pictures yet: upload a .zip above.")).to_be_visible()

    # -- upload: the preview names the layout, the side and colour, and the counts per class and split
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(
        files=[{"name": "squares.zip", "mimeType": "application/zip", "buffer": mvtec_zip()}])
    preview = page.get_by_role("heading", name="Your pictures")
    preview.wait_for(timeout=120_000)
    wait_idle(page, 120)
    no_error(page)
    expect(main(page).get_by_text(re.compile(
        r"MVTec AD layout: trained on train/good, tested on good and 1 defect class \(with masks\)"))).to_be_visible()
    expect(main(page).get_by_text(re.compile(r"32×32.*colour \(RGB\).*60 pictures"))).to_be_visible()
    table = main(page).locator("table").first
    rows = [[c.strip() for c in r] for r in table.locator("tr").evaluate_all(
        "rows => rows.map(r => [...r.children].map(c => c.textContent))")]
    assert rows == [["class", "train", "test"], ["good", str(N_TRAIN), str(N_GOOD)], ["scratch", "0", str(N_SCRATCH)]]
    for name in ("good", "scratch"):
        expect(main(page).get_by_text(f"{name}: the first 10 pictures")).to_be_visible()
    # the set chosen, its description, its counts and the pictures of each class, on one screen
    scroll_to_top(widget(page, "images.pick"))
    screenshot(page, "images-preview")

    # -- train: a small conv model, 2 epochs, on the good pictures; the run finishes and rebuilds test pictures
    set_number(page, "images.epochs", 2)
    channels = widget(page, "images.channels").locator("input")
    channels.fill("8,4")
    channels.press("Enter")
    wait_idle(page)
    expect(widget(page, "images.good_only").locator("input")).to_be_checked()
    widget(page, "images.btn_start").locator("button").click()
    # The progress fragment redraws every 0.5 s: for a moment the old bar and the new one can both be there.
    ended = main(page).get_by_test_id("stProgress").filter(has_text=re.compile(r"^(finished|stopped|failed) ")).first
    ended.wait_for(timeout=TRAIN_S * 1000)
    text = ended.inner_text()
    no_error(page)
    assert text.startswith("finished · conv on squares · epoch 2/2"), text
    expect(main(page).get_by_text(re.compile(r"conv on squares's reconstructions below them"))).to_be_visible(
        timeout=60_000)
    wait_idle(page)
    no_error(page)

    # -- anomalies: the recipe and PCA from the page
    set_number(page, "images.detect_epochs.conv-code", DETECT_EPOCHS)
    widget(page, "images.btn_detect").locator("button").click()
    metrics = page.get_by_test_id("stMetric")
    page.locator(f"{ERROR}, [data-testid=stMetric]").first.wait_for(timeout=DETECT_S * 1000)
    wait_idle(page, DETECT_S)
    no_error(page)
    shown = {m.get_by_test_id("stMetricLabel").inner_text().strip(): m.get_by_test_id("stMetricValue").inner_text()
             .strip() for m in metrics.all()}
    print("\nmetrics:", shown, "|", main(page).get_by_text(re.compile(r"good pictures \(\d+ held out")).inner_text())
    for label in ("image AUROC, recipe", "image AUROC, PCA"):
        assert NUMBER.match(shown.get(label, "")), f"{label}: not a number in {shown}"
        assert 0.0 <= float(shown[label]) <= 1.0, f"{label} = {shown[label]}"
    galleries = {}
    for title in ("The most anomalous test pictures", "The least typical good pictures"):
        with contextlib.suppress(PlaywrightTimeout):     # the pictures load after the script has ended
            page.wait_for_function(f"t => {{ const g = ({GALLERY})(t); return g && g.shown && g.loaded === g.shown; }}",
                                   arg=title, timeout=30_000)
        g = page.evaluate(GALLERY, title)
        assert g is not None, f"no gallery titled {title!r}"
        assert g["shown"] > 0 and g["loaded"] == g["shown"], f"{title}: {g}"
        galleries[title] = g
    assert all(c.startswith("good ·") for c in galleries["The least typical good pictures"]["captions"])
    print("galleries:", galleries)

    # the anomaly section from its figures down to the galleries, in a 1400×900 viewport
    tables = main(page).locator("table")
    scroll_to_top(tables.nth(tables.count() - 1))       # the thresholds' table, the galleries below it
    screenshot(page, "images-anomalies")
    no_error(page)

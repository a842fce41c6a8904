"""Plain helpers for driving the dashboard through Streamlit's AppTest: the page titles, opening the app or a link,
going to a page, filling the Train form, waiting for a run, and canvas drawings. The fixtures built on them
(app_environment, started_jobs, tiny_idx, no_data) are in conftest.py.
"""
from __future__ import annotations

import base64
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from streamlit.testing.v1 import AppTest

from aecore.engine.data import ENV_VAR
from idx_helpers import png_bytes

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app.py"
if str(ROOT) not in sys.path:       # the pages import `ui` from the repository root
    sys.path.insert(0, str(ROOT))

from ui import caches, server  # noqa: E402,F401 (server: for the tests)

TITLES = {"app_pages/train.py": "Train an autoencoder", "app_pages/inspect.py": "Look inside the model",
          "app_pages/latent.py": "Explore the latent space", "app_pages/generate.py": "Generate digits",
          "app_pages/draw.py": "Draw a digit",
          "app_pages/anomalies.py": "Find anomalies", "app_pages/compare.py": "Compare runs",
          "app_pages/studies.py": "Studies", "app_pages/pretrain.py": "Pretraining with few labels",
          "app_pages/images.py": "Your images", "app_pages/classroom.py": "Class"}
DEFAULT_MODEL = "shipped:pytorch-784-200"
WAIT = 120.0


# ------------------------------------------------------------------------------------------- set-up
def use_data(monkeypatch, tmp_path, folder: Path | None) -> None:
    """Make `folder` (or nothing) the only place the dashboard finds data; cwd is an empty tmp folder."""
    work = tmp_path / "cwd"
    work.mkdir(exist_ok=True)
    monkeypatch.chdir(work)
    if folder is None:
        monkeypatch.delenv(ENV_VAR, raising=False)
    else:
        monkeypatch.setenv(ENV_VAR, str(folder))
    # ui/caches.py reads the setting once, when first imported; the module stays loaded across app runs.
    monkeypatch.setattr(caches, "DATA_DIR", str(folder) if folder else None)


# ------------------------------------------------------------------------------------------- driving the app
def open_app() -> AppTest:
    """A new session on the Train page (the link opens on the Start page: see test_start.py)."""
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.switch_page("app_pages/train.py").run()
    assert not at.exception, at.exception
    return at


def open_link(params: dict) -> AppTest:
    """A new visitor opening the app's address with `params` as its query."""
    at = AppTest.from_file(str(APP), default_timeout=60)
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, at.exception
    return at


def goto(at: AppTest, page: str) -> AppTest:
    at.switch_page(page).run()
    assert not at.exception, at.exception
    assert [t.value for t in at.title] == [TITLES[page]]
    return at


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def custom_form(at: AppTest, hidden: int, epochs: int, batch: int) -> AppTest:
    at.selectbox(key="train.preset").set_value("custom").run()
    at.selectbox(key="train.family").set_value("shallow")
    at.number_input(key="train.hidden").set_value(hidden)
    at.number_input(key="train.epochs").set_value(epochs)
    at.number_input(key="train.batch_size").set_value(batch)
    at.run()
    assert not at.exception
    return at


def wait_for_end(at: AppTest, timeout: float = WAIT) -> str:
    """Rerun the app as the browser's polling would until the run has ended (its progress text says so and
    Start is enabled again, so the worker thread is gone); returns the progress text."""
    deadline = time.monotonic() + timeout
    while True:
        at.run()
        assert not at.exception, at.exception
        progress = [p.proto.text for p in at.get("progress")]
        ended = progress and any(progress[0].startswith(s) for s in ("finished", "stopped", "failed"))
        if ended and not at.button(key="train.btn_start").disabled:
            return progress[0]
        assert time.monotonic() < deadline, f"the run did not end in {timeout} s: {progress}"
        time.sleep(0.3)


# ------------------------------------------------------------------------------------------- the drawing canvas
def canvas_value(image: np.ndarray) -> dict:
    """The drawing canvas's component state for an RGBA image, as the browser sends it."""
    url = "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")
    return {"drawing": {"raw": {"objects": []}, "data": url}, "backgroundFit": None}


def drawn_digit() -> np.ndarray:
    im = Image.new("RGBA", (280, 280), (0, 0, 0, 255))
    ImageDraw.Draw(im).line([(90, 60), (190, 60), (120, 220)], fill=(255, 255, 255, 255), width=18)
    return np.asarray(im)


def blank_canvas() -> np.ndarray:
    a = np.zeros((280, 280, 4), np.uint8)
    a[..., 3] = 255
    return a

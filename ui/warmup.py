"""The server's start-up: what every first visitor would otherwise wait for, done before anyone asks.

`streamlit run app.py` finds the `st.App` that app.py makes when it is imported and serves it; its lifespan
starts `warm()` in a background thread. On this 2-core host a fresh server's first page took 4.7–8.5 s, most of it
importing torch, Plotly and the engine, and reading MNIST's files; with both done at start-up the first visitor
waits about as long as the next ones (README, "Page times"). The thread imports modules and reads MNIST ahead
(ui.caches.read_ahead); it starts no run, and a failure here is logged: the pages import and read what they need
as before.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import threading
import time

# What the pages import, heaviest first: torch alone is ~2 s here.
MODULES = ("torch", "numpy", "PIL.Image", "plotly.graph_objects", "pandas", "aecore.engine.models",
           "aecore.engine.train", "aecore.engine.viz", "aecore.engine.checkpoint", "aecore.engine.preprocess",
           "aecore.engine.images", "aecore.runs.registry", "aecore.runs.process", "aecore.labs.anomaly",
           "aecore.labs.generative", "aecore.labs.classifier", "aecore.labs.compare", "aecore.labs.studies",
           "aecore.labs.pretrain", "aecore.labs.precomputed", "ui.caches", "ui.session")

_LOG = logging.getLogger("aelab.warmup")


def warm(modules=MODULES) -> dict[str, float]:
    """Import `modules`, each timed; one that fails is logged and skipped (its page will say why when it runs)."""
    took = {}
    for name in modules:
        t = time.perf_counter()
        try:
            importlib.import_module(name)
        except Exception as e:   # noqa: BLE001 — a start-up aid must never stop the server
            _LOG.warning("warm-up: importing %s failed: %s", name, e)
            continue
        took[name] = time.perf_counter() - t
    _LOG.info("warm-up: %d modules imported in %.1f s", len(took), sum(took.values()))
    return took


def start_up() -> None:
    """The imports, then MNIST's two splits read ahead (ui.caches.read_ahead), in that order."""
    warm()
    try:
        from ui import caches
        _LOG.info("warm-up: MNIST splits read ahead: %s", caches.read_ahead() or "none (no files here)")
    except Exception as e:   # noqa: BLE001 — as in warm()
        _LOG.warning("warm-up: reading MNIST ahead failed: %s", e)


@contextlib.asynccontextmanager
async def lifespan(_app):
    """st.App's lifespan: warm up in a daemon thread while the server starts answering."""
    threading.Thread(target=start_up, name="aelab-warmup", daemon=True).start()
    yield

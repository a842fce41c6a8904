"""The dashboard, run headless through Streamlit's AppTest: every page, with and without data, a tiny training
run from the Train page, and a drawing sent through the Draw page."""
from __future__ import annotations

import io
import re
import sys
import time

import numpy as np
import pytest
import streamlit as st
from PIL import Image, ImageDraw
from streamlit.testing.v1 import AppTest

import aecore.runs.job
from aecore.labs import anomaly
from aecore.engine import checkpoint
from aecore.engine.data import ENV_VAR
from aecore.engine.train import TrainingDiverged
from aecore.engine.models import ModelConfig, build

from app_helpers import (APP, DEFAULT_MODEL, TITLES, WAIT, blank_canvas, canvas_value, custom_form, drawn_digit, goto,
                         open_app, caches, server, texts, use_data, wait_for_end)
from idx_helpers import real_mnist_dir
from local_mirror import closed_port_url

# Fixtures (conftest.py): app_environment for every test here, started_jobs, tiny_idx, no_data, serve.
pytestmark = pytest.mark.usefixtures("app_environment")


def sidebar_markdown(at: AppTest) -> str:
    return "\n".join(texts(at.sidebar.markdown))


# ------------------------------------------------------------------------------------------- every page renders
def test_train_page_and_sidebar(tiny_idx):
    at = open_app()
    assert texts(at.title) == [TITLES["app_pages/train.py"]]
    preset = at.selectbox(key="train.preset")
    assert preset.value == "pytorch-784-200"
    assert "Custom (set everything by hand)" in preset.options and "Keras 784-32-784" in preset.options
    start = at.button(key="train.btn_start")
    assert not start.disabled
    assert at.button(key="train.btn_pause").disabled and at.button(key="train.btn_stop").disabled
    assert at.number_input(key="train.hidden").value == 200
    assert at.selectbox(key="train.dataset").value == "mnist"
    assert len(at.dataframe) == 1
    assert any("Total parameters: **314,584**" in t for t in texts(at.markdown))
    assert any("No run yet" in t for t in texts(at.info))
    # Sidebar: the active model, described.
    active = at.sidebar.selectbox(key="app.active")
    assert active.value == DEFAULT_MODEL
    assert {f"{n} (shipped)" for n in ("pytorch-784-200", "keras-784-32", "stacked-2d", "conv-digit0")} \
        <= set(active.options)
    side = sidebar_markdown(at)
    assert "**pytorch-784-200**" in side and "784-200-784" in side and "314,584" in side


def test_choosing_a_preset_fills_the_form(tiny_idx):
    at = open_app()
    at.selectbox(key="train.preset").set_value("keras-784-32").run()
    assert not at.exception
    assert at.number_input(key="train.hidden").value == 32
    assert at.number_input(key="train.val_fraction").value == pytest.approx(0.2)
    assert at.number_input(key="train.batch_size").value == 128
    assert at.selectbox(key="train.init").value == "keras"
    assert any("Total parameters: **50,992**" in t for t in texts(at.markdown))
    # An edited field keeps the preset (the run is named after it and what differs); Reset puts the preset back.
    at.number_input(key="train.epochs").set_value(3).run()
    assert at.selectbox(key="train.preset").value == "keras-784-32"
    assert any("form differs from this preset: the run will be **keras-784-32 · epochs 3**" in t
               for t in texts(at.caption))
    assert at.number_input(key="train.hidden").value == 32
    at.button(key="train.btn_reset").click().run()
    assert at.number_input(key="train.epochs").value == 20
    assert not any("form differs from this preset" in t for t in texts(at.caption))


def test_invalid_layer_sizes_disable_start(tiny_idx):
    at = open_app()
    at.selectbox(key="train.family").set_value("deep").run()
    at.text_input(key="train.hidden").input("64,x").run()
    assert not at.exception
    assert any("Invalid combination" in t for t in texts(at.error))
    assert at.button(key="train.btn_start").disabled


def test_inspect_page(tiny_idx):
    at = goto(open_app(), "app_pages/inspect.py")
    assert not at.error
    assert {"Encoder filters", "Decoder filters",
            "Reconstructions"} <= set(texts(at.header))
    assert len(at.get("image")) >= 3            # encoder tiles, decoder tiles, reconstructions
    table = at.dataframe[0].value
    assert list(table["index"]) == list(range(10)) and len(table) == 10
    assert (table["error (MSE)"] >= 0).all()
    assert any("pytorch-784-200" in t for t in texts(at.caption))


def test_inspect_page_rejects_bad_indices(tiny_idx):
    at = goto(open_app(), "app_pages/inspect.py")
    at.text_input(key="inspect.picks.mnist").input("3,999").run()
    assert not at.exception
    assert any("between 0 and 39" in t for t in texts(at.error))
    at.text_input(key="inspect.picks.mnist").input("5, 7").run()
    assert not at.error
    assert list(at.dataframe[0].value["index"]) == [5, 7]


def test_latent_page(tiny_idx):
    at = goto(open_app(), "app_pages/latent.py")
    assert not at.error
    assert len(at.get("vega_lite_chart")) == 1
    assert "What the decoder draws across the plane" in texts(at.header)
    assert len(at.get("image")) > 1


def test_draw_page_without_a_drawing(tiny_idx):
    at = goto(open_app(), "app_pages/draw.py")
    # One input at a time: drawing first, uploading the other choice.
    choice = at.radio(key="draw.mode")
    assert choice.options == [":material/draw: Draw", ":material/upload: Upload"] and choice.value == "draw"
    assert len(at.get("bidi_component")) == 1          # the drawing canvas
    assert at.get("bidi_component")[0].proto.component_name.endswith("streamlit_drawable_canvas")
    assert not at.get("file_uploader")
    assert any("Draw a digit on the black square with your finger or the mouse" in t for t in texts(at.info))
    assert any("with your finger or the mouse" in t for t in texts(at.caption))
    assert not at.metric and not at.error
    choice.set_value("upload").run()
    assert not at.get("bidi_component") and len(at.get("file_uploader")) == 1
    assert any("Upload a PNG or JPEG picture of one digit" in t for t in texts(at.info))
    assert not at.metric and not at.error


def test_latent_grid_follows_a_model_switch(tiny_idx):
    """The grid's range and size are the active model's defaults, also after a switch in the sidebar."""
    at = goto(open_app(), "app_pages/latent.py")
    grid = [img.proto.imgs[0].caption for img in at.get("image")][0]
    assert grid.startswith("10×10 codes from ")                    # pytorch-784-200: its test codes' spread
    at.select_slider(key="latent.range.shipped:pytorch-784-200").set_value(30.0).run()
    assert [img.proto.imgs[0].caption for img in at.get("image")][0].startswith("10×10 codes from -30 to 30")
    at.sidebar.selectbox(key="app.active").set_value("shipped:stacked-2d").run()
    assert not at.exception
    captions = [img.proto.imgs[0].caption for img in at.get("image")]
    assert captions[0] == "9×9 codes from -1 to 1 on each axis in steps of 0.25 (top row: y = 1)"
    assert any("bounded to [-1, 1]" in t for t in texts(at.caption))
    assert at.select_slider(key="latent.range.shipped:stacked-2d").value == 1.0
    assert at.slider(key="latent.grid.shipped:stacked-2d").value == 9
    # Back to the first model: its own defaults again, not the range chosen before.
    at.sidebar.selectbox(key="app.active").set_value("shipped:pytorch-784-200").run()
    assert [img.proto.imgs[0].caption for img in at.get("image")][0] == grid


def test_other_shipped_models_on_each_page(tiny_idx):
    at = open_app()
    at.sidebar.selectbox(key="app.active").set_value("shipped:conv-digit0").run()
    assert not at.exception
    assert "family: `conv`" in sidebar_markdown(at)
    goto(at, "app_pages/inspect.py")
    assert {"Convolution kernels", "Feature maps"} <= set(texts(at.header))
    goto(at, "app_pages/latent.py")
    assert len(at.get("vega_lite_chart")) == 1
    at.sidebar.selectbox(key="app.active").set_value("shipped:stacked-2d").run()
    assert not at.exception
    assert any("code of 2 numbers" in t for t in texts(at.caption))
    assert any("The test codes span" in t for t in texts(at.caption))
    goto(at, "app_pages/draw.py")
    assert any("stacked-2d" in t for t in texts(at.caption))


# ------------------------------------------------------------------------------------------- without data
@pytest.mark.parametrize("page", list(TITLES))
def test_every_page_renders_without_data(no_data, page):
    at = open_app()
    if page != "app_pages/train.py":
        goto(at, page)
    assert texts(at.title) == [TITLES[page]]
    assert at.sidebar.selectbox(key="app.active").value == DEFAULT_MODEL   # shipped models do not need data
    assert "**pytorch-784-200**" in sidebar_markdown(at)
    if page in ("app_pages/inspect.py", "app_pages/latent.py", "app_pages/generate.py", "app_pages/anomalies.py",
                "app_pages/compare.py"):
        boxes = [t for t in texts(at.error) if "Data not available" in t]
        assert len(boxes) == 1 and ENV_VAR in boxes[0]
    else:
        assert not at.error


def test_latent_2d_model_without_data_still_draws_the_plane(no_data):
    at = open_app()
    at.sidebar.selectbox(key="app.active").set_value("shipped:stacked-2d").run()
    goto(at, "app_pages/latent.py")
    assert any(ENV_VAR in t for t in texts(at.error))
    assert not at.get("vega_lite_chart")
    # Its tanh code is bounded: the tutorial's 9 x 9 grid over -1..1, then its four points outside that square.
    captions = [img.proto.imgs[0].caption for img in at.get("image")]
    assert captions == ["9×9 codes from -1 to 1 on each axis in steps of 0.25 (top row: y = 1)",
                        "(-1.5, -1.5)", "(1.5, 1.5)", "(10, 10)", "(-100, 100)"]
    assert any("Needs the test images" in t for t in texts(at.info))


def test_start_without_data_explains(no_data, started_jobs):
    at = open_app()
    assert at.selectbox(key="train.dataset").options == ["mnist", "fashion-mnist"]
    at.button(key="train.btn_start").click().run()
    assert not at.exception
    boxes = [t for t in texts(at.error) if "Data not available" in t]
    assert len(boxes) == 1 and ENV_VAR in boxes[0]
    assert any("No run yet" in t for t in texts(at.info))
    assert started_jobs == []


# ------------------------------------------------------------------------------------------- anomalies
def test_anomalies_page_with_a_shipped_detector(tiny_idx):
    at = goto(open_app(), "app_pages/anomalies.py")
    assert not at.error
    headers = texts(at.header)
    assert "The tutorial's case: trained on 0s, is a 6 abnormal?" in headers and "Where to draw the line" in headers
    metrics = {m.label: m.value for m in at.metric}
    assert {"threshold (score)", "precision", "recall (anomalies caught)", "false alarms on the test set"} <= set(metrics)
    aucs = [m for m in at.metric if m.label == "AUC, 0s vs all other digits"]
    assert len(aucs) == 2                                 # the tutorial's model and the recommended one, side by side
    assert len(at.get("plotly_chart")) == 2               # score histogram and ROC curve
    assert at.selectbox(key="anomalies.pick").value == "dense-bn-16-mnist-0 (shipped)"
    assert any("One 6 flagged proves little" in t for t in texts(at.caption))
    # A stricter false-alarm target moves the threshold up and catches fewer anomalies.
    before = float(metrics["threshold (score)"])
    at.slider(key="anomalies.rate").set_value(0.01).run()
    assert not at.exception
    after = {m.label: m.value for m in at.metric}
    assert float(after["threshold (score)"]) > before
    assert float(after["recall (anomalies caught)"].rstrip("%")) <= float(metrics["recall (anomalies caught)"].rstrip("%"))
    at.selectbox(key="anomalies.pick").set_value("dense-bn-16-mnist-7 (shipped)").run()
    assert not at.exception and any("normal: 7" in t for t in texts(at.caption))
    assert any("All 10 one-class tasks" in e.proto.label for e in at.get("expander"))


def test_anomalies_page_trains_a_detector_through_the_run_service(tiny_idx, started_jobs):
    at = goto(open_app(), "app_pages/anomalies.py")
    at.radio(key="anomalies.source").set_value("train one").run()
    at.number_input(key=f"anomalies.epochs.{anomaly.DEFAULT_RECIPE}").set_value(2).run()
    at.button(key="anomalies.btn_start").click().run()
    assert not at.exception and not at.error
    assert len(started_jobs) == 1 and started_jobs[0].spec.data.classes == (0,)
    assert "run" in at.query_params
    assert started_jobs[0].join(WAIT)
    deadline = time.monotonic() + WAIT
    while at.selectbox(key="anomalies.pick").value != "dense-bn-16-mnist-0 (yours)":
        assert time.monotonic() < deadline
        at.run()
        assert not at.exception
    assert any("trained in" in t and "normal: 0" in t for t in texts(at.caption))


# ------------------------------------------------------------------------------------------- data on first use
def wait_for_download(at: AppTest, timeout: float = WAIT) -> None:
    """Rerun as the page's polling would until the download panel is gone (the data are in place)."""
    deadline = time.monotonic() + timeout
    while True:
        at.run()
        assert not at.exception, at.exception
        if not any("is not on this server" in t for t in texts(at.markdown)):
            return
        failed = [t for t in texts(at.error) if "Download failed" in t]
        assert not failed, failed
        assert time.monotonic() < deadline, "the download did not finish"
        time.sleep(0.2)


def test_without_data_the_train_page_offers_the_download(no_data, monkeypatch):
    monkeypatch.setenv("AECORE_MNIST_MIRROR", closed_port_url())     # offline
    at = open_app()
    assert any("mnist is not on this server" in t for t in texts(at.markdown))
    at.button(key="app.download.mnist").click().run()
    caches.downloader("mnist").wait(WAIT)
    at.run()
    failures = [t for t in texts(at.error) if "Download failed" in t]
    assert len(failures) == 1
    assert "AECORE_DATA_DIR" in failures[0] and "AECORE_MNIST_MIRROR" in failures[0]
    assert "127.0.0.1" in failures[0]                                      # the URL it tried is named


def test_hosted_profile_downloads_by_itself(no_data, monkeypatch):
    monkeypatch.setenv("AECORE_MNIST_MIRROR", closed_port_url())
    monkeypatch.setenv("AELAB_PROFILE", "hosted")
    open_app()
    assert caches.downloader("mnist").status().state in ("running", "failed")   # started without a click


@pytest.mark.mnist
@pytest.mark.skipif(real_mnist_dir() is None, reason=f"real MNIST not available: set {ENV_VAR}")
def test_a_fresh_machine_trains_after_the_in_app_download(serve, tmp_path, monkeypatch, started_jobs):
    """No data anywhere: the page downloads the four real files from a local mirror (checksums and all),
    every page then finds them, and a run trains on them."""
    source = real_mnist_dir()
    use_data(monkeypatch, tmp_path, None)
    mirror = serve({f.name: f.read_bytes() for f in source.glob("*-ubyte.gz")})
    monkeypatch.setenv("AECORE_MNIST_MIRROR", mirror.url)
    at = open_app()
    at.button(key="app.download.mnist").click().run()
    assert not at.exception
    wait_for_download(at)
    assert sorted(mirror.requests.values()) == [1, 1, 1, 1]
    second = open_app()                                  # another visitor: no panel, no second download
    assert not any("is not on this server" in t for t in texts(second.markdown))
    assert sorted(mirror.requests.values()) == [1, 1, 1, 1]
    custom_form(at, hidden=8, epochs=1, batch=2000)
    at.button(key="train.btn_start").click().run()
    assert not at.error
    assert wait_for_end(at).startswith("finished")
    assert started_jobs[0].snapshot().last.samples == 60_000           # one epoch of all 60,000 images


# ------------------------------------------------------------------------------------------- real MNIST
@pytest.mark.mnist
@pytest.mark.skipif(real_mnist_dir() is None, reason=f"real MNIST not available: set {ENV_VAR}")
def test_pages_with_real_mnist(tmp_path, monkeypatch):
    use_data(monkeypatch, tmp_path, real_mnist_dir())
    at = goto(open_app(), "app_pages/latent.py")
    assert not at.error
    assert len(at.get("vega_lite_chart")) == 1
    goto(at, "app_pages/inspect.py")
    assert not at.error
    errors = at.dataframe[0].value["error (MSE)"]
    assert len(errors) == 10 and errors.max() < 0.05     # the shipped model reconstructs MNIST well


# ------------------------------------------------------------------------------------------- training
def progress_text(at: AppTest) -> str:
    bars = [p.proto.text for p in at.get("progress")]
    assert len(bars) == 1, bars
    return bars[0]


def test_tiny_training_run_from_the_train_page(tiny_idx, started_jobs):
    at = custom_form(open_app(), hidden=8, epochs=2, batch=20)
    assert any("Total parameters: **13,336**" in t for t in texts(at.markdown))   # 784*8+8 + 8*784+784
    at.button(key="train.btn_start").click().run()
    assert not at.exception and not at.error
    assert len(started_jobs) == 1
    spec = started_jobs[0].spec
    assert spec.model.hidden == (8,) and spec.train.epochs == 2 and spec.train.batch_size == 20
    assert spec.name == "custom" and spec.preset is None
    assert started_jobs[0].train_size == 120

    progress = wait_for_end(at)
    assert progress.startswith("finished") and "epoch 2/2" in progress and "step 12/12" in progress
    labels = [m.label for m in at.metric]
    assert "final train loss" in labels and "test loss" in labels
    assert all(np.isfinite(float(m.value)) for m in at.metric)
    downloads = [d.proto.label for d in at.get("download_button")]    # the checkpoint, and the run's code
    assert downloads == ["Download checkpoint (.safetensors)", "Code (.py)", "Notebook (.ipynb)"]
    assert not at.button(key="train.btn_start").disabled
    assert at.button(key="train.btn_stop").disabled

    # The trained model is the active one, in the sidebar of the same run.
    active = at.sidebar.selectbox(key="app.active")
    assert "custom run 1 (yours)" in active.options
    assert active.value == "session:custom run 1"
    side = sidebar_markdown(at)
    assert "trained on this server (finished" in side and "784-8-784" in side

    # The run's timeline shows on the Inspect page, and the new model is the one inspected.
    goto(at, "app_pages/inspect.py")
    assert any("custom run 1" in t for t in texts(at.caption))
    assert "Last run's timeline" in texts(at.header)
    assert any("one row per epoch (1 … 2)" in (img.proto.imgs[0].caption if img.proto.imgs else "")
               for img in at.get("image"))
    # Back on Train, the form kept its values.
    goto(at, "app_pages/train.py")
    assert at.number_input(key="train.hidden").value == 8
    assert at.selectbox(key="train.preset").value == "custom"


@pytest.mark.parametrize("family, param_count", [("vae", 7_092), ("conv-vae", 4_017)])   # worked out by hand
def test_a_vae_trains_from_the_train_page_and_is_inspected(tiny_idx, started_jobs, family, param_count):
    """The VAE fields appear for the VAE families; the live view charts the loss and, beside it, its two terms;
    the trained VAE is inspected like any model."""
    at = open_app()
    at.selectbox(key="train.preset").set_value("custom").run()
    at.selectbox(key="train.family").set_value(family).run()
    if family == "conv-vae":
        at.text_input(key="train.channels").set_value("4,8")
    at.text_input(key="train.hidden").set_value("4")
    at.number_input(key="train.latent").set_value(2)
    at.number_input(key="train.beta").set_value(1.5)
    at.number_input(key="train.epochs").set_value(2)
    at.number_input(key="train.batch_size").set_value(20)
    at.run()
    assert not at.exception and not at.error
    assert any(f"Total parameters: **{param_count:,}**" in t for t in texts(at.markdown)), texts(at.markdown)
    at.button(key="train.btn_start").click().run()
    spec = started_jobs[0].spec
    assert (spec.model.family, spec.model.latent, spec.model.beta) == (family, 2, 1.5)
    assert wait_for_end(at).startswith("finished")
    charts = at.get("plotly_chart")
    assert len(charts) == 2, "the loss, and its reconstruction and KL terms side by side"
    import json
    terms = json.loads(charts[1].proto.spec)
    assert [t["name"] for t in terms["data"]] == ["reconstruction", "KL"]
    assert "Gaussian" in sidebar_markdown(at)
    goto(at, "app_pages/inspect.py")
    assert not at.exception
    headings = texts(at.header)
    assert ("Convolution kernels" if family == "conv-vae" else "Encoder filters") in headings
    assert "Reconstructions" in headings


def wait_for_text(at: AppTest, wanted: str, timeout: float = WAIT) -> str:
    deadline = time.monotonic() + timeout
    while True:
        at.run()
        assert not at.exception, at.exception
        text = progress_text(at)
        if wanted in text:
            return text
        assert time.monotonic() < deadline, f"no {wanted!r} in {timeout} s: {text}"
        time.sleep(0.2)


def test_pause_resume_and_stop_buttons(tiny_idx, started_jobs):
    at = custom_form(open_app(), hidden=8, epochs=200, batch=1)      # 24,000 steps: stopped long before the end
    at.button(key="train.btn_start").click().run()
    assert not at.exception and len(started_jobs) == 1
    job = started_jobs[0]
    # The run that follows the click already shows the controls of a running job (Pause, not yet Resume: they
    # share one place in the bar).
    assert at.button(key="train.btn_start").disabled and "train.btn_resume" not in [b.key for b in at.button]
    assert not at.button(key="train.btn_pause").disabled and not at.button(key="train.btn_stop").disabled
    wait_for_text(at, "step ")                                       # the first record is in
    assert any("Training **custom**" in t for t in texts(at.sidebar.info))

    at.button(key="train.btn_pause").click().run()
    assert job.snapshot().state == "paused"
    assert progress_text(at).startswith("paused")
    assert "train.btn_pause" not in [b.key for b in at.button] and not at.button(key="train.btn_resume").disabled

    at.button(key="train.btn_resume").click().run()
    assert job.snapshot().state == "running"
    assert progress_text(at).startswith("running")

    at.button(key="train.btn_stop").click().run()
    text = wait_for_end(at)
    assert text.startswith("stopped")
    assert job.join(WAIT) and job.snapshot().state == "stopped"
    assert "trained on this server (stopped" in sidebar_markdown(at)
    assert at.sidebar.selectbox(key="app.active").value == "session:custom run 1"
    assert len(at.get("download_button")) == 3         # the checkpoint, the run's code and its notebook


def test_a_closed_session_stops_watching_and_its_run_stops_after_the_grace_time(tiny_idx, started_jobs,
                                                                               monkeypatch):
    monkeypatch.setenv("AELAB_RUN_GRACE_S", "1")
    at = custom_form(open_app(), hidden=8, epochs=200, batch=1)
    at.button(key="train.btn_start").click().run()
    job, run_id = started_jobs[0], at.query_params["run"]
    time.sleep(2.5)                   # past the grace time, but the session is open: it watches the run
    assert job.active
    server.run_registry().unwatch(at.session_state["app.watcher"])   # what closing the tab does
    assert job.join(WAIT), "the run kept going with nobody watching"  # the registry's sweeper stopped it
    at.run()
    assert progress_text(at).startswith("stopped")
    assert any("Stopped by the server: nobody watched it for 1 s" in t for t in texts(at.caption))
    assert at.query_params["run"] == run_id


def test_releasing_the_session_unwatches_its_runs(tiny_idx, started_jobs, monkeypatch):
    at = custom_form(open_app(), hidden=8, epochs=200, batch=1)
    at.button(key="train.btn_start").click().run()
    registry, visitor = server.run_registry(), at.session_state["app.watcher"]
    run = registry._runs[at.query_params["run"]]
    assert run.watchers == {visitor}
    released = []
    monkeypatch.setattr(type(registry), "unwatch", lambda self, token: released.append(token))
    st.cache_resource.clear()         # what Streamlit does with a session's resources when its tab closes
    assert released == [visitor]


def test_failed_run_is_explained_and_its_model_kept(tiny_idx, started_jobs, monkeypatch):
    def diverging_fit(model, data, cfg, control, **_):
        raise TrainingDiverged("the loss became nan at step 3 (epoch 1); try a lower learning rate")
        yield

    monkeypatch.setattr(aecore.runs.job, "fit", diverging_fit)
    at = custom_form(open_app(), hidden=8, epochs=2, batch=20)
    at.button(key="train.btn_start").click().run()
    assert wait_for_end(at).startswith("failed")
    failures = [t for t in texts(at.error) if "Training failed" in t]
    assert len(failures) == 1 and "the loss became nan at step 3" in failures[0]
    assert not at.get("download_button") and not at.metric
    assert at.sidebar.selectbox(key="app.active").value == "session:custom run 1"
    assert "trained on this server (failed" in sidebar_markdown(at)


# ------------------------------------------------------------------------------------------- runs on the server
def start_long_run(at: AppTest) -> str:
    """Start a run far longer than any test waits; returns its id (which the URL now holds)."""
    custom_form(at, hidden=8, epochs=200, batch=1)
    at.button(key="train.btn_start").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    return at.query_params["run"]


def test_a_run_beyond_the_cap_is_queued_and_starts_when_a_slot_frees(tiny_idx, started_jobs, monkeypatch):
    monkeypatch.setenv("AELAB_MAX_RUNS", "1")
    first, second = open_app(), open_app()              # two visitors, two sessions
    first_id = start_long_run(first)
    second_id = start_long_run(second)
    assert first_id != second_id
    text = progress_text(second)
    assert text.startswith("queued · number 1 in line · starts in ") and "1 of 1 training slots busy" in text
    assert any("starts by itself when a slot frees" in t for t in texts(second.caption))
    assert "queued, number 1 in line" in "\n".join(texts(second.sidebar.info))
    assert len(started_jobs) == 1                       # only the first trains
    # Stop works on a queued run: it leaves the queue, and the visitor may queue again.
    second.button(key="train.btn_stop").click().run()
    assert progress_text(second).startswith("stopped")
    second.button(key="train.btn_start").click().run()
    assert progress_text(second).startswith("queued")
    # The first run ends: the queued one starts by itself.
    first.button(key="train.btn_stop").click().run()
    assert started_jobs[0].join(WAIT)
    deadline = time.monotonic() + WAIT
    while not progress_text(second.run()).startswith("running"):
        assert time.monotonic() < deadline, progress_text(second)
        time.sleep(0.2)
    assert len(started_jobs) == 2


def test_opening_the_run_link_reattaches(tiny_idx, started_jobs):
    first = open_app()
    run_id = start_long_run(first)
    wait_for_text(first, "step ")
    steps_before = started_jobs[0].snapshot().last.step
    # A reload (or another tab) opens the same URL: a new session, the same run.
    reloaded = AppTest.from_file(str(APP), default_timeout=60)
    reloaded.query_params["run"] = run_id
    reloaded.run()
    assert not reloaded.exception
    text = wait_for_text(reloaded, "running")
    step = int(re.search(r"step ([\d,]+)/", text).group(1).replace(",", ""))
    assert step >= steps_before
    assert reloaded.query_params["run"] == run_id
    assert reloaded.button(key="train.btn_start").disabled           # its run is in progress
    reloaded.button(key="train.btn_pause").click().run()             # the controls drive the same run
    assert started_jobs[0].snapshot().state == "paused"
    reloaded.button(key="train.btn_stop").click().run()
    assert started_jobs[0].join(WAIT) and started_jobs[0].snapshot().state == "stopped"
    text = wait_for_end(reloaded)
    assert text.startswith("stopped")
    assert reloaded.sidebar.selectbox(key="app.active").value == "session:custom run 1"


def test_an_unknown_run_link_is_explained(tiny_idx):
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.query_params["run"] = "not-a-run"
    at.run()
    assert not at.exception
    assert any("The run in this link is not on the server" in t for t in texts(at.warning))
    assert "run" not in at.query_params
    assert any("No run yet" in t for t in texts(at.info))


def test_a_second_visitor_sees_neither_the_run_nor_the_model(tiny_idx, started_jobs):
    first = custom_form(open_app(), hidden=8, epochs=2, batch=20)
    first.button(key="train.btn_start").click().run()
    wait_for_end(first)
    assert "custom run 1 (yours)" in first.sidebar.selectbox(key="app.active").options
    second = open_app()
    assert any("No run yet" in t for t in texts(second.info))
    assert not second.get("progress")
    assert "run" not in second.query_params
    assert not [o for o in second.sidebar.selectbox(key="app.active").options if o.endswith("(yours)")]
    assert not second.get("expander") or not any("Your runs" in e.proto.label for e in second.get("expander"))


def test_ray_without_ray_installed_says_how_to_install_it(tiny_idx, monkeypatch):
    from aecore.runs import cluster
    monkeypatch.setitem(sys.modules, "ray", None)        # as where Ray is not installed
    monkeypatch.setattr(cluster, "_CLUSTER", None)
    monkeypatch.delenv("AELAB_RUN_BACKEND")
    monkeypatch.setenv("AELAB_RAY_ADDRESS", "local")
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    assert not at.exception
    [message] = [t for t in texts(at.error) if "misconfigured" in t]
    assert "AELAB_RAY_ADDRESS asks for Ray, but Ray is not installed" in message
    assert message.endswith("Install it with: pip install -r requirements-ray.txt")


def test_a_bad_setting_is_named(tiny_idx, monkeypatch):
    monkeypatch.setenv("AELAB_MAX_RUNS", "many")
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    assert not at.exception
    assert [t for t in texts(at.error) if "misconfigured" in t] == [
        "**This AE Lab server is misconfigured.** AELAB_MAX_RUNS must be an integer >= 1, got 'many'"]


def test_settings_come_from_secrets_too(tiny_idx, monkeypatch):
    monkeypatch.setattr(st.secrets, "load_if_toml_exists", lambda: True)
    monkeypatch.setattr(type(st.secrets), "items", lambda self: {"AELAB_MAX_RUNS": 3, "other": 1}.items())
    monkeypatch.delenv("AELAB_MAX_RUNS", raising=False)
    open_app()
    assert server.run_registry().config.max_runs == 3
    monkeypatch.setenv("AELAB_MAX_RUNS", "2")        # the environment wins
    st.cache_resource.clear()
    open_app()
    assert server.run_registry().config.max_runs == 2


def test_hosted_profile_names_the_limit(tiny_idx, started_jobs, monkeypatch):
    monkeypatch.setenv("AELAB_PROFILE", "hosted")
    at = custom_form(open_app(), hidden=8, epochs=50, batch=20)
    at.button(key="train.btn_start").click().run()
    assert not at.exception
    refusals = [t for t in texts(at.error) if "Not started" in t]
    assert len(refusals) == 1 and "at most 20 epochs (asked for 50)" in refusals[0]
    assert started_jobs == [] and "run" not in at.query_params


def test_uploading_a_checkpoint_adds_a_model(tiny_idx):
    model = build(ModelConfig(family="shallow", hidden=(12,)), seed=3)
    blob = checkpoint.to_bytes(model, {"name": "mine"})
    at = open_app()
    at.get("file_uploader")[0].set_value(("mine.safetensors", blob, "application/octet-stream")).run()
    assert not at.exception
    active = at.sidebar.selectbox(key="app.active")
    assert active.value == "session:mine"
    assert "784-12-784" in sidebar_markdown(at) and "uploaded file mine.safetensors" in sidebar_markdown(at)


def test_uploading_a_broken_checkpoint_explains(tiny_idx):
    at = open_app()
    at.get("file_uploader")[0].set_value(("bad.safetensors", b"not a checkpoint at all", "application/octet-stream"))
    at.run()
    assert not at.exception
    assert any("Cannot load bad.safetensors" in t for t in texts(at.error))
    assert at.sidebar.selectbox(key="app.active").value == DEFAULT_MODEL


# ------------------------------------------------------------------------------------------- drawing
def test_drawing_is_scored(tiny_idx):
    at = goto(open_app(), "app_pages/draw.py")
    at.session_state["draw.canvas"] = canvas_value(drawn_digit())
    at.run()
    assert not at.exception and not at.error
    assert "The result for **your drawing**:" in texts(at.markdown)
    metrics = {m.label: m.value for m in at.metric}
    error = float(metrics["Reconstruction error (MSE)"])
    assert 0.0 <= error < 1.0
    pct = float(metrics["Percentile among the test set"])
    assert 0.0 <= pct <= 100.0
    assert any(f"{pct:.1f}% of the test digits" in t for t in texts(at.caption))
    assert len(at.get("image")) == 3              # input, reconstruction, error map
    assert "Is it a digit?" in texts(at.header)
    assert 0.0 <= float(metrics["Percentile among real digits"]) <= 100.0
    # The detector's drawing set in words: how its pictures were made, not the font files they were typed in.
    detector = next(t for t in texts(at.caption) if t.startswith("Verdict by the digit detector, not by the active "
                                                                   "model"))
    assert "digits typed in fonts" in detector and "letters" in detector and "most digit-like: typed " in detector
    assert not any(font in detector for font in ("DejaVu", "Liberation", "Aileron"))


def test_the_digit_verdict_tells_a_digit_from_a_symbol(tiny_idx):
    """A 7 and a # in the same font: the page's verdicts are the detector's, at its stored threshold."""
    from aecore.labs import anomaly, drawset
    from aecore.engine.preprocess import to_mnist
    model, meta = anomaly.digit_detector()
    font = drawset.fonts_available()[0][1]
    seen = {}
    for char in "7#":
        picture = drawset.render_text(char, font)
        s = anomaly.score(model, to_mnist(picture)[None])[0]
        at = goto(open_app(), "app_pages/draw.py")
        at.session_state["draw.canvas"] = canvas_value(np.stack([picture] * 3 + [np.full_like(picture, 255)], -1))
        at.run()
        assert not at.exception and not at.error
        assert float({m.label: m.value for m in at.metric}["Digit detector score"]) == pytest.approx(s, abs=1e-4)
        seen[char] = next(t for t in texts(at.markdown) if "typical of handwritten digits" in t or "unusual" in t)
    assert "typical of handwritten digits" in seen["7"] and "unusual" in seen["#"]


def test_blank_drawing_gives_the_hint(tiny_idx):
    at = goto(open_app(), "app_pages/draw.py")
    at.session_state["draw.canvas"] = canvas_value(blank_canvas())
    at.run()
    assert not at.exception and not at.error
    assert any("The canvas is blank" in t for t in texts(at.info))
    assert not at.metric


def test_uploaded_picture_is_scored(tiny_idx):
    photo = Image.new("RGB", (400, 300), (235, 235, 235))
    ImageDraw.Draw(photo).line([(200, 40), (210, 260)], fill=(20, 20, 20), width=25)
    buf = io.BytesIO()
    photo.save(buf, "JPEG")
    at = goto(open_app(), "app_pages/draw.py")
    at.radio(key="draw.mode").set_value("upload").run()
    at.get("file_uploader")[0].set_value(("one.jpg", buf.getvalue(), "image/jpeg")).run()
    assert not at.exception and not at.error
    assert "Reconstruction error (MSE)" in [m.label for m in at.metric]
    assert "The result for **the upload one.jpg**:" in texts(at.markdown)
    assert not at.get("bidi_component")              # no canvas to draw on while the upload is the input
    # Back to drawing: the canvas is the input again, and nothing is shown until something is drawn on it.
    at.radio(key="draw.mode").set_value("draw").run()
    assert len(at.get("bidi_component")) == 1 and not at.get("file_uploader") and not at.metric
    at.session_state["draw.canvas"] = canvas_value(drawn_digit())
    at.run()
    assert "The result for **your drawing**:" in texts(at.markdown)


def test_unusable_upload_is_explained(tiny_idx):
    at = goto(open_app(), "app_pages/draw.py")
    at.radio(key="draw.mode").set_value("upload").run()
    at.get("file_uploader")[0].set_value(("notes.png", b"these are notes, not a picture", "image/png")).run()
    assert not at.exception
    assert any("Cannot use notes.png" in t and "PNG or JPEG" in t for t in texts(at.error))
    assert not at.metric

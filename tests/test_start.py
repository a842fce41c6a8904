"""The Start page (AppTest): the page the link opens on; its live example with MNIST and without any data; its
cards opening the tutorials ready to use; old links at the root going to Train; the notes for a class."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aecore.labs import anomaly, generative
from aecore.engine import checkpoint
from aecore.engine.data import load_split

from app_helpers import TITLES, open_app, open_link, texts

# Fixtures (conftest.py): app_environment for every test here, as every AppTest needs it.
pytestmark = pytest.mark.usefixtures("app_environment")

MODELS = Path(__file__).resolve().parents[1] / "models"
START_TITLE = "AE Lab: what does an autoencoder learn?"


def captions(at) -> list[str]:
    return [img.proto.imgs[0].caption for img in at.get("image") if img.proto.imgs]


def live_error(image: np.ndarray) -> float:
    """The live example's reconstruction error, recomputed from the shipped keras-784-32."""
    model, _ = checkpoint.load(MODELS / "keras-784-32.safetensors")
    recon = generative.decode_images(model, generative.encode_images(model, image[None]))[0]
    return float(((recon - image / 255.0) ** 2).mean())


def test_the_link_opens_on_start_with_a_live_mnist_digit(tiny_idx):
    at = open_link({})
    assert texts(at.title) == [START_TITLE]
    assert [h.value for h in at.header][:2] == ["An autoencoder at work", "A first visit in three steps"]
    test = load_split("mnist", "test", tiny_idx)
    shown = captions(at)
    assert shown[0] == "Input: MNIST test digit number 0, 784 pixels"
    assert shown[1].startswith("Its code: the 32 numbers the encoder made of it, as 4×8 cells")
    assert shown[2] == (f"Reconstruction from the code alone: error {live_error(test.images[0].numpy()):.4f} "
                        "(mean squared, per pixel)")
    at.button(key="start.next").click().run()
    shown = captions(at)
    assert shown[0] == "Input: MNIST test digit number 1, 784 pixels"
    assert f"error {live_error(test.images[1].numpy()):.4f}" in shown[2]
    # The conv tutorial's claim, measured on the test set's 0s and 6s (the tiny set has 4 of each).
    model, _ = checkpoint.load(MODELS / "conv-digit0.safetensors")
    keep = (test.labels == 0) | (test.labels == 6)
    auc = anomaly.auc(anomaly.score(model, test.images[keep]), (test.labels[keep] == 6).numpy())
    assert any(f"tells test 6s from test 0s with ROC-AUC {auc:.3f}" in m for m in texts(at.markdown))


def test_without_any_data_the_example_uses_digits_in_fonts(no_data):
    at = open_link({})
    assert not at.error
    assert texts(at.title) == [START_TITLE]
    shown = captions(at)
    assert shown[0] == "Input: digit rendered in a font (MNIST is not here) number 0, 784 pixels"
    assert any("The MNIST test set is not here to measure how well" in m for m in texts(at.markdown))
    # The cards' figures come from the shipped weights alone.
    assert any(c.startswith("24 first-layer filters of the shipped pytorch-784-200") for c in shown)
    assert any(c.startswith("keras-vae-2d's decoder over an 8×8 grid") for c in shown)


def test_a_tutorial_card_loads_its_preset_into_a_changed_form(tiny_idx):
    at = open_app()
    at.selectbox(key="train.preset").set_value("chainer-case1").run()
    at.number_input(key="train.epochs").set_value(3).run()
    at.query_params.clear()              # what the browser's navigation does when it leaves the Train page
    at.switch_page("app_pages/start.py").run()
    at.button(key="start.keras").click().run()
    assert not at.exception
    assert texts(at.title) == [TITLES["app_pages/train.py"]]
    assert at.selectbox(key="train.preset").value == "keras-784-32"
    assert at.number_input(key="train.epochs").value == 20            # the preset's, not the 3 typed before
    assert at.query_params["preset"] == "keras-784-32"


def test_first_step_opens_train_and_cards_make_shipped_models_active(tiny_idx):
    at = open_link({})
    at.button(key="start.step1").click().run()
    assert texts(at.title) == [TITLES["app_pages/train.py"]]
    assert at.selectbox(key="train.preset").value == "pytorch-784-200"
    at = open_link({})
    at.button(key="start.stacked").click().run()
    assert texts(at.title) == [TITLES["app_pages/latent.py"]]
    assert at.session_state["app.active"] == "shipped:stacked-2d"
    at = open_link({})
    at.button(key="start.chainer").click().run()
    assert texts(at.title) == [TITLES["app_pages/studies.py"]]
    assert at.radio(key="studies.pick").value == "chainer"


@pytest.mark.parametrize("params", [{"run": "no-such-run"}, {"preset": "keras-784-32", "epochs": "5"}])
def test_a_run_or_configuration_link_at_the_root_opens_train(tiny_idx, params):
    at = open_link(params)
    assert texts(at.title) == [TITLES["app_pages/train.py"]]
    if "epochs" in params:
        assert at.selectbox(key="train.preset").value == "keras-784-32"
        assert at.number_input(key="train.epochs").value == 5
    else:
        assert any("no-such-run" in e.value or "not on the server" in e.value for e in [*at.warning, *at.error])


def test_the_notes_for_a_class_say_this_servers_cap(tiny_idx, monkeypatch):
    monkeypatch.setenv("AELAB_MAX_RUNS", "3")
    at = open_link({})
    notes = " ".join(texts(at.markdown))
    assert "this server trains at most **3** runs at once" in notes
    assert "a run nobody watches stops after 120 s" in notes
    assert "`AELAB_PROFILE=hosted` allows at most 20 epochs, 2,000,000 parameters and a batch of 1,024" in notes


def test_a_hosted_server_says_its_limits(tiny_idx, monkeypatch):
    monkeypatch.setenv("AELAB_PROFILE", "hosted")
    notes = " ".join(texts(open_link({}).markdown))
    assert "this server is hosted: at most 20 epochs, 2,000,000 parameters and a batch of 1,024 per run" in notes

"""The digit classifier's reading on the Draw page, and the code sparsity figures on the Inspect page, run headless
through Streamlit's AppTest."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from aecore.engine import checkpoint, scoring
from aecore.labs import classifier
from aecore.engine.data import load_split
from aecore.engine.preprocess import load_image, to_mnist

from app_helpers import ROOT, blank_canvas, canvas_value, drawn_digit, goto, open_app, texts

# Fixtures (conftest.py): app_environment for every test here, as every AppTest needs it.
pytestmark = pytest.mark.usefixtures("app_environment")

SPARSE, PLAIN = "shipped:sparse-784-32", "shipped:keras-784-32"
CHARTS = "vega_lite_chart"   # what st.bar_chart shows as in AppTest


def sparsity_charts(at) -> list:
    """The code sparsity charts: every Vega-Lite chart but the class errors of "Where it fails"."""
    return [c for c in at.get(CHARTS) if getattr(c, "key", None) != "inspect.fails.chart"]


def draw(image: np.ndarray):
    at = goto(open_app(), "app_pages/draw.py")
    at.session_state["draw.canvas"] = canvas_value(image)
    at.run()
    assert not at.exception and not at.error
    return at


def readings(at) -> list[str]:
    return [t for t in texts(at.markdown) if t.startswith(("Reads as", "**unsure:**"))]


def expected_reading(image: np.ndarray) -> str:
    """The line the page must show, from the shipped classifier's probabilities for the image."""
    model, _ = classifier.digit_classifier()
    p = classifier.predict_proba(model, to_mnist(image))[0]
    best, second = np.argsort(p)[::-1][:2]
    text = f"**{best}** ({100 * p[best]:.0f} %)" + (f" or {second}, {100 * p[second]:.0f} %" if p[second] >= 0.1
                                                     else "")
    return f"Reads as {text}" if p[best] >= 0.9 else f"**unsure:** reads as {text}"


# ------------------------------------------------------------------------------------------- the Draw page
def test_the_draw_page_names_the_drawn_digit(tiny_idx):
    at = draw(drawn_digit())
    assert readings(at) == [expected_reading(drawn_digit())]
    assert readings(at)[0].startswith("Reads as **7** (")          # the drawing is a 7, read surely
    _, meta = classifier.digit_classifier()
    caption = next(t for t in texts(at.caption) if t.startswith("Read by the digit classifier"))
    acc, n = meta["drawings"]["accuracy_by_kind"], meta["drawings"]["count_by_kind"]
    assert set(acc) == {"mnist", "font digit", "stroke digit"}
    for kind, words in [("mnist", "enlarged MNIST test digits"), ("font digit", "digits typed in fonts"),
                        ("stroke digit", "digits drawn as pen strokes")]:
        assert f"{acc[kind]:.1%} of {n[kind]} {words}" in caption
    assert classifier.sureness(meta) in caption and "letters" in caption
    # The page's other verdicts stay.
    assert "Is it a digit?" in texts(at.header)
    assert {"Reconstruction error (MSE)", "Digit detector score"} <= {m.label for m in at.metric}
    assert len(at.get("image")) == 3


def test_an_unsure_reading_says_so_with_the_runner_up(tiny_idx, monkeypatch):
    probs = np.array([[0.02, 0.30, 0, 0, 0, 0, 0, 0.62, 0.06, 0]])
    monkeypatch.setattr(classifier, "predict_proba", lambda model, image: probs)
    assert readings(draw(drawn_digit())) == ["**unsure:** reads as **7** (62 %) or 1, 30 %"]
    probs = np.array([[0, 0.08, 0, 0, 0, 0, 0, 0.92, 0, 0]])      # sure; a runner-up under 10 % is left out
    assert readings(draw(drawn_digit())) == ["Reads as **7** (92 %)"]
    probs = np.array([[0, 0.1, 0, 0, 0, 0, 0, 0.9, 0, 0]])        # both lines are inclusive
    assert readings(draw(drawn_digit())) == ["Reads as **7** (90 %) or 1, 10 %"]


def test_without_the_classifier_file_the_page_goes_on(tiny_idx, monkeypatch, tmp_path):
    monkeypatch.setattr(classifier, "SHIPPED", tmp_path / "no-classifier.safetensors")
    at = draw(drawn_digit())
    assert [t for t in texts(at.info) if "digit classifier" in t] == [
        "The digit classifier (models/classifier/) is missing: no reading of which digit this is."]
    assert not readings(at)
    assert not any(t.startswith("Read by the digit classifier") for t in texts(at.caption))
    assert {"Reconstruction error (MSE)", "Digit detector score"} <= {m.label for m in at.metric}


def test_an_uploaded_picture_is_read_too(tiny_idx):
    photo = Image.new("RGB", (300, 300), (240, 240, 240))
    ImageDraw.Draw(photo).line([(80, 60), (220, 60), (130, 260)], fill=(10, 10, 10), width=24)   # a dark 7
    buf = io.BytesIO()
    photo.save(buf, "PNG")
    at = goto(open_app(), "app_pages/draw.py")
    at.radio(key="draw.mode").set_value("upload").run()
    at.get("file_uploader")[0].set_value(("seven.png", buf.getvalue(), "image/png")).run()
    assert not at.exception and not at.error
    assert readings(at) == [expected_reading(load_image(buf.getvalue()))]
    assert any(t.startswith("Read by the digit classifier") for t in texts(at.caption))


def test_a_blank_canvas_is_not_read(tiny_idx):
    at = draw(blank_canvas())
    assert any("The canvas is blank" in t for t in texts(at.info))
    assert not readings(at)


# ------------------------------------------------------------------------------------------- the Inspect page
def inspect(key: str):
    at = open_app()
    at.sidebar.selectbox(key="app.active").set_value(key).run()
    assert not at.exception
    return goto(at, "app_pages/inspect.py")


def mean_activations(at) -> list[str]:
    return [m.value for m in at.metric if m.label == "Mean code activation"]


def test_the_sparse_model_is_shown_beside_the_plain_one(tiny_idx):
    at = inspect(SPARSE)
    assert not at.error
    assert "How sparse is the code?" in texts(at.header)
    picker = at.selectbox(key="inspect.compare." + SPARSE)
    assert picker.value == PLAIN
    assert "none" in picker.options and "keras-784-32 (shipped)" in picker.options
    assert "conv-digit0 (shipped)" not in picker.options and "keras-vae-2d (shipped)" not in picker.options
    # The figures are those of aecore.engine.scoring.code_sparsity on the same test images, active model first.
    test = load_split("mnist", "test", tiny_idx)
    figures = [scoring.code_sparsity(checkpoint.load(ROOT / "models" / f"{name}.safetensors")[0], test.images)
               for name in ("sparse-784-32", "keras-784-32")]
    assert figures[0]["images"] == len(test) == 40
    assert mean_activations(at) == [f"{f['mean_activation']:.2f}" for f in figures]
    zeros = [m.value for m in at.metric if m.label == "Exact zeros"]
    assert zeros == [f"{f['zero_share_all']:.1%}" for f in figures]
    assert any(t.startswith("**sparse-784-32**") and "L1 0.0001" in t for t in texts(at.markdown))
    assert any(t.startswith("**keras-784-32**") for t in texts(at.markdown))
    assert len(sparsity_charts(at)) == 4                 # zero share per unit and histogram, for each model
    caption = next(t for t in texts(at.caption) if "Building Autoencoders in Keras" in t)
    assert "3.33" in caption and "7.30" in caption
    assert (f"over the first 40 test images: sparse-784-32 {figures[0]['mean_activation']:.2f}; "
            f"keras-784-32 {figures[1]['mean_activation']:.2f}.") in caption
    # Why the L1 model need not have more exact zeros, with the figures shown.
    note = zeros_note(at)
    assert "shrinks the activity" in note and "Exact zeros come from ReLU units" in note
    for name, l1, f in zip(("sparse-784-32", "keras-784-32"), (", L1 0.0001", ""), figures):
        assert (f"{name} (relu code{l1}): mean {f['mean_activation']:.2f}, exact zeros {f['zero_share_all']:.1%}, "
                f"{f['dead_units']} units always 0") in note
    # Without a comparison model, the active model's figures alone.
    picker.set_value("none").run()
    assert not at.exception
    assert mean_activations(at) == [f"{figures[0]['mean_activation']:.2f}"]
    assert len(sparsity_charts(at)) == 2


def test_other_mlp_models_compare_with_none_by_default(tiny_idx):
    at = inspect("shipped:pytorch-784-200")
    assert at.selectbox(key="inspect.compare.shipped:pytorch-784-200").value == "none"
    assert len(mean_activations(at)) == 1
    assert not zeros_note(at)                      # no L1 penalty shown: nothing to explain


def zeros_note(at) -> str:
    return next((t for t in texts(at.caption) if t.startswith("**Why the sparse code need not have more exact "
                                                              "zeros.**")), "")


@pytest.mark.parametrize("key", ["shipped:conv-digit0", "shipped:keras-vae-2d"])
def test_conv_and_variational_models_show_no_sparsity(tiny_idx, key):
    at = inspect(key)
    assert "How sparse is the code?" not in texts(at.header)
    assert not mean_activations(at) and not sparsity_charts(at)

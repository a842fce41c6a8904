"""The Generate page (AppTest, as tests/test_app.py drives the dashboard) and the aecore.labs.generative helpers it
calls: sampling a VAE's prior or a plain autoencoder's fitted Gaussian, interpolating two codes, the manifold's
code box, and the digit classifier's verdict on the samples."""
from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
import streamlit.testing.v1.app_test as app_test_module
import torch
from PIL import Image
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

from aecore.engine import checkpoint
from aecore.labs import classifier, generative
from aecore.engine.data import ENV_VAR, load_split, to_float
from aecore.engine.models import ModelConfig, build

from app_helpers import goto, open_app, texts
from idx_helpers import images_and_labels

# Fixtures (conftest.py): app_environment for every test here, as every AppTest needs it.
pytestmark = pytest.mark.usefixtures("app_environment")

PAGE = "app_pages/generate.py"
MODELS = Path(__file__).resolve().parents[1] / "models"
TINY_JUDGE = classifier.ClassifierConfig(channels=(2, 4), dense=8)


def grid_side(tiles: int, zoom: int = 2) -> int:
    """Pixels along one side of viz.grid's picture: each 28-pixel tile plus 1 of padding, a closing pad, zoomed."""
    return (tiles * 29 + 1) * zoom


# ------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(autouse=True)
def judge_model(tmp_path, monkeypatch):
    """An untrained tiny digit classifier saved where the page looks for the shipped one (the real one may or may
    not be shipped: every test decides which it sees)."""
    model = classifier.build(TINY_JUDGE)
    path = classifier.save(tmp_path / "judge" / "digits-cnn.safetensors", model, {"note": "untrained, tests only"})
    monkeypatch.setattr(classifier, "SHIPPED", path)
    return classifier.load(path)[0]


@pytest.fixture
def media(monkeypatch) -> list:
    """The media stores of every app run, so that a test can read the pictures the page sent."""
    stores = []

    class Recording(MemoryMediaFileStorage):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            stores.append(self)

    monkeypatch.setattr(app_test_module, "MemoryMediaFileStorage", Recording)
    return stores


def picture(stores: list, element) -> np.ndarray:
    """The pixels of an st.image element from the latest run."""
    name = element.proto.imgs[0].url.rsplit("/", 1)[-1]
    return np.asarray(Image.open(io.BytesIO(stores[-1].get_file(name).content)))


def captions(at) -> list[str]:
    return [img.proto.imgs[0].caption for img in at.get("image") if img.proto.imgs]


def image_with(at, words: str):
    found = [img for img in at.get("image") if img.proto.imgs and words in img.proto.imgs[0].caption]
    assert len(found) == 1, captions(at)
    return found[0]


def shipped_vaes() -> list[str]:
    return [f"shipped:{path.stem}" for path in sorted(MODELS.glob("*.safetensors"))
            if checkpoint.load(path)[1]["model"].variational]


def plotly_array(values) -> np.ndarray:
    """A trace's coordinates as Plotly sends numpy arrays (a typed array in base64) or as a plain list."""
    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=np.dtype(values["dtype"]))
    return np.asarray(values)


def tiny_vae(latent: int = 2, family: str = "vae"):
    cfg = ModelConfig(family=family, hidden=(16,), channels=(4, 8), latent=latent)
    return build(cfg, seed=1)


def upload(at, model, name: str):
    """Add `model` to the session through the Train page's upload widget; it becomes the active model."""
    goto(at, "app_pages/train.py")
    at.get("file_uploader")[0].set_value((f"{name}.safetensors", checkpoint.to_bytes(model, {"name": name}),
                                          "application/octet-stream")).run()
    assert not at.exception
    assert at.sidebar.selectbox(key="app.active").value == f"session:{name}"
    return at


# ------------------------------------------------------------------------------------------- the page
def test_a_plain_autoencoder_samples_its_fitted_gaussian_and_is_judged(tiny_idx, judge_model, media):
    at = goto(open_app(), PAGE)
    assert not at.error and not at.exception
    # Beside a plain autoencoder the page puts the first VAE it has, or nothing while none is shipped.
    vaes = shipped_vaes()
    assert at.selectbox(key="generate.compare").value == (vaes[0] if vaes else "none")
    at.selectbox(key="generate.compare").set_value("none").run()
    samples = image_with(at, "of 1,000 samples (seed 0)")
    assert samples.proto.imgs[0].caption.startswith(
        "8×8 = 64 of 1,000 samples (seed 0) decoded from a Gaussian N(μ, Σ) fitted to the codes of all 120 of its "
        "training images (200 numbers a code)")
    assert picture(media, samples).shape == (grid_side(8), grid_side(8))
    # The figures are the classifier's verdict on the same 1,000 samples, recomputed here through aecore.
    model, _ = checkpoint.load(MODELS / "pytorch-784-200.safetensors")
    train = load_split("mnist", "train", tiny_idx)
    images = generative.sample_images(model, 1000, 0, gaussian=generative.code_gaussian(model, train.images))
    verdict = generative.judge_images(images, judge_model)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"Read with confidence ≥ 0.9": f"{verdict['confident_share']:.1%}",
                       "Inception score (max 10)": f"{verdict['inception_score']:.2f}"}
    reference = generative.judge_images(load_split("mnist", "test", tiny_idx).images, judge_model)
    assert any(f"the same figures for 40 real test digits: {reference['confident_share']:.1%} read with "
               f"confidence ≥ 0.9, inception score {reference['inception_score']:.2f} (at most 10)" in t
               for t in texts(at.caption))
    assert len(at.get("vega_lite_chart")) == 1                    # the class histogram
    assert any("The classifier judged all 1,000 samples" in t for t in texts(at.caption))
    assert any("Drawn for 2-number codes only: pytorch-784-200's code has 200 numbers" in t for t in texts(at.info))


def test_new_samples_change_the_images_and_a_rerun_keeps_them(tiny_idx):
    at = goto(open_app(), PAGE)
    at.selectbox(key="generate.compare").set_value("none").run()     # one grid: the active model's
    first = image_with(at, "samples (seed 0)").proto.imgs[0].url       # media urls are hashes of the content
    at.run()
    assert image_with(at, "samples (seed 0)").proto.imgs[0].url == first
    at.button(key="generate.new").click().run()
    assert not at.exception
    assert image_with(at, "samples (seed 1)").proto.imgs[0].url != first
    at.slider(key="generate.n").set_value(4).run()
    assert image_with(at, "samples (seed 1)").proto.imgs[0].caption.startswith("4×4 = 16 of 1,000")


def test_a_vae_shows_prior_samples_beside_a_plain_model_and_the_keras_manifold(tiny_idx, media):
    vae = tiny_vae()
    at = upload(open_app(), vae, "tiny-vae")
    goto(at, PAGE)
    assert not at.error
    assert at.selectbox(key="generate.compare").value == "shipped:pytorch-784-200"
    prior = image_with(at, "decoded from the prior N(0, I) of its 2-number code")
    assert picture(media, prior).shape == (grid_side(8), grid_side(8))
    image_with(at, "fitted to the codes of all 120 of its training images")    # the plain model beside it
    assert len(at.metric) == 4 and len(at.get("vega_lite_chart")) == 2
    manifold = image_with(at, "15×15 codes at the prior's quantiles")
    assert picture(media, manifold).shape == (grid_side(15), grid_side(15))   # 225 tiles
    # A VAE's interpolation may go along the great circle; its 2-D path is drawn on the code scatter.
    assert at.radio(key="generate.path").options == ["linear", "spherical"]
    path = [t for t in json.loads(at.get("plotly_chart")[0].proto.spec)["data"] if t.get("name") == "path"]
    test = load_split("mnist", "test", tiny_idx)
    codes, _ = generative.interpolation(vae, test.images[1], test.images[7])
    assert len(path) == 1
    np.testing.assert_array_equal(plotly_array(path[0]["x"]), codes[:, 0])
    np.testing.assert_array_equal(plotly_array(path[0]["y"]), codes[:, 1])
    at.selectbox(key="generate.compare").set_value("none").run()
    assert len(at.metric) == 2
    # The reverse pairing: with a plain model active, the VAE goes beside it (a shipped one first).
    at.selectbox(key="generate.compare").set_value("shipped:pytorch-784-200").run()
    at.sidebar.selectbox(key="app.active").set_value("shipped:pytorch-784-200").run()
    assert not at.exception
    assert at.selectbox(key="generate.compare").value == next(iter(shipped_vaes()), "session:tiny-vae")
    assert len(at.metric) == 4


def test_the_interpolation_strip_has_ten_codes_between_the_two_digits(tiny_idx, media):
    at = goto(open_app(), PAGE)
    assert (at.number_input(key="generate.a.mnist").value, at.number_input(key="generate.b.mnist").value) == (1, 7)
    strip = image_with(at, "10 codes on the straight line from the code of test digit #1 to that of #7")
    assert picture(media, strip).shape == (grid_side(1), grid_side(10))
    at.number_input(key="generate.b.mnist").set_value(3).run()
    assert not at.exception
    image_with(at, "to that of #3, decoded")
    assert "generate.path" not in [r.key for r in at.radio]                     # linear only for a plain model


def test_2d_plain_models_get_a_grid_over_their_code_range(tiny_idx, media):
    at = open_app()
    at.sidebar.selectbox(key="app.active").set_value("shipped:stacked-2d").run()
    goto(at, PAGE)
    bounded = image_with(at, "15×15 codes evenly spaced over z[0] ∈ [-1.00, 1.00], z[1] ∈ [-1.00, 1.00] (the "
                             "code's whole range (tanh))")
    assert picture(media, bounded).shape == (grid_side(15), grid_side(15))
    # An unbounded 2-number code: the 1st to 99th percentile of its test codes, taken here with numpy.
    model = build(ModelConfig(family="deep", hidden=(8, 2), linear_code=True), seed=0)
    upload(at, model, "linear-2d")
    goto(at, PAGE)
    image_with(at, "fitted to the codes of all 120 of the mnist training images")   # its checkpoint names no data
    codes = generative.encode_images(model, load_split("mnist", "test", tiny_idx).images).numpy()
    lo, hi = np.percentile(codes, 1, axis=0), np.percentile(codes, 99, axis=0)
    image_with(at, f"z[0] ∈ [{lo[0]:.2f}, {hi[0]:.2f}], z[1] ∈ [{lo[1]:.2f}, {hi[1]:.2f}] (the 1st to 99th "
                   "percentile of the codes of its 40 test digits)")


def test_without_data_one_error_box_and_a_vae_still_samples(no_data, media):
    at = goto(open_app(), PAGE)
    boxes = [t for t in texts(at.error) if "Data not available" in t]
    assert len(boxes) == 1 and ENV_VAR in boxes[0] and len(at.error) == 1
    assert any("training images, which are not on this server" in t for t in texts(at.info))
    assert any("Needs the test images" in t for t in texts(at.info))
    at = upload(at, tiny_vae(), "tiny-vae")
    goto(at, PAGE)
    assert len(at.error) == 1 and not at.exception
    image_with(at, "decoded from the prior N(0, I)")
    assert picture(media, image_with(at, "15×15 codes at the prior's quantiles")).shape == (grid_side(15),) * 2
    assert len(at.metric) == 2                           # judged, with no reference line (no test digits)
    assert not any("real test digits:" in t for t in texts(at.caption))


def test_without_the_classifier_an_info_box_explains_and_nothing_is_judged(tiny_idx, tmp_path, monkeypatch):
    monkeypatch.setattr(classifier, "SHIPPED", tmp_path / "nowhere" / "digits-cnn.safetensors")
    at = goto(open_app(), PAGE)
    notes = [t for t in texts(at.info) if "The samples are not judged" in t]
    assert len(notes) == 1 and "no digit classifier at" in notes[0] and "python -m aecore.labs.classifier" in notes[0]
    assert not at.metric and not at.get("vega_lite_chart") and not at.error
    assert [c for c in captions(at) if "samples (seed 0)" in c], captions(at)    # the samples still show


def test_a_higher_dimensional_vae_has_no_manifold_but_samples(tiny_idx):
    at = upload(open_app(), tiny_vae(latent=3, family="conv-vae"), "conv-vae-3")
    goto(at, PAGE)
    assert not at.error
    image_with(at, "decoded from the prior N(0, I) of its 3-number code")
    assert any("Drawn for 2-number codes only: conv-vae-3's code has 3 numbers" in t for t in texts(at.info))
    assert not at.get("plotly_chart")                    # no 2-D scatter for a 3-number code


# ------------------------------------------------------------------------------------------- aecore helpers
def digits(n: int = 12) -> torch.Tensor:
    return torch.from_numpy(images_and_labels(n, seed=5)[0])


@pytest.mark.parametrize("config, width", [(ModelConfig(family="shallow", hidden=(12,)), 12),
                                           (ModelConfig(family="conv", channels=(3, 5)), 5 * 7 * 7),
                                           (ModelConfig(family="vae", hidden=(16,), latent=3), 3)])
def test_encode_images_flattens_codes_and_scales_uint8(config, width):
    model = build(config, seed=0).train()
    x = digits()
    codes = generative.encode_images(model, x, batch=5)                  # 3 batches: 5, 5, 2
    assert codes.shape == (12, width) and codes.dtype == torch.float32 and model.training
    with torch.no_grad():
        direct = model.eval().encode(to_float(x)).flatten(1)
    torch.testing.assert_close(codes, direct)
    torch.testing.assert_close(generative.encode_images(model, x.numpy() / 255.0), direct)
    with pytest.raises(ValueError, match="no images"):
        generative.encode_images(model, x[:0])


def test_code_gaussian_is_the_fit_of_the_codes():
    model = build(ModelConfig(family="shallow", hidden=(6,)), seed=0)
    mean, cov = generative.code_gaussian(model, digits())
    codes = generative.encode_images(model, digits()).double()
    torch.testing.assert_close(mean, codes.mean(0))
    torch.testing.assert_close(cov, torch.from_numpy(np.cov(codes.numpy(), rowvar=False)))


def test_sample_images_from_the_prior_or_a_gaussian_reproduce_with_their_seed():
    vae = tiny_vae()
    pics = generative.sample_images(vae, 7, seed=3)
    assert pics.shape == (7, 28, 28) and pics.dtype == np.float32 and 0 <= pics.min() and pics.max() <= 1
    np.testing.assert_array_equal(pics, generative.decode_images(vae, generative.prior_samples(vae, 7, seed=3)))
    np.testing.assert_array_equal(pics, generative.sample_images(vae, 7, seed=3))
    assert not np.array_equal(pics, generative.sample_images(vae, 7, seed=4))
    conv = build(ModelConfig(family="conv", channels=(3, 2)), seed=0)
    gaussian = generative.code_gaussian(conv, digits())                  # (98,) and (98, 98): flattened codes
    drawn = generative.sample_images(conv, 5, seed=1, gaussian=gaussian)
    assert drawn.shape == (5, 28, 28)
    np.testing.assert_array_equal(drawn, generative.decode_images(conv, generative.gaussian_samples(*gaussian, 5, 1)))
    with pytest.raises(ValueError, match="gaussian: a plain autoencoder has no prior"):
        generative.sample_images(conv, 5)


@pytest.mark.parametrize("config", [ModelConfig(family="shallow", hidden=(12,)),
                                    ModelConfig(family="conv", channels=(3, 2)),
                                    ModelConfig(family="vae", hidden=(16,), latent=2)])
@pytest.mark.parametrize("spherical", [False, True])
def test_interpolation_ends_are_the_reconstructions(config, spherical):
    model = build(config, seed=2)
    x = digits()
    codes, pics = generative.interpolation(model, x[1], x[7], steps=10, spherical=spherical)
    width = int(np.prod(config.code_shape))
    assert codes.shape == (10, width) and pics.shape == (10, 28, 28)
    with torch.no_grad():   # the oracle: the model's own forward pass in eval mode (a VAE's uses its mean)
        recon = model.eval()(to_float(x[[1, 7]])).x_hat.clamp(0, 1).reshape(2, 28, 28).numpy()
    np.testing.assert_allclose(pics[[0, -1]], recon, atol=1e-5)
    if not spherical:   # the straight line: evenly spaced codes
        np.testing.assert_allclose(np.diff(codes, axis=0), np.diff(codes, axis=0)[:1].repeat(9, 0), atol=1e-5)


def test_code_box_bounded_or_percentiles():
    tanh = ModelConfig(family="deep", hidden=(8, 2), activation="tanh")
    sigmoid = ModelConfig(family="deep", hidden=(8, 2), activation="sigmoid")
    assert [b.tolist() for b in generative.code_box(tanh)] == [[-1.0, -1.0], [1.0, 1.0]]
    assert [b.tolist() for b in generative.code_box(sigmoid)] == [[0.0, 0.0], [1.0, 1.0]]
    linear = ModelConfig(family="deep", hidden=(8, 2), linear_code=True)
    codes = np.stack([np.arange(101.0), -2 * np.arange(101.0)], 1)      # 0..100 and 0..-200
    low, high = generative.code_box(linear, codes)
    np.testing.assert_allclose(low, [1.0, -198.0])
    np.testing.assert_allclose(high, [99.0, -2.0])
    low, high = generative.code_box(linear, np.zeros((5, 2)))           # a dead code still gets a square
    assert (high > low).all()
    with pytest.raises(ValueError, match="codes: an unbounded code needs"):
        generative.code_box(linear)
    with pytest.raises(ValueError, match="got shape \\(5, 3\\)"):
        generative.code_box(linear, np.zeros((5, 3)))


def test_judge_images_asks_the_given_or_the_shipped_classifier(judge_model, tmp_path, monkeypatch):
    pics = generative.sample_images(tiny_vae(), 64, seed=0)
    verdict = generative.judge_images(pics, judge_model)
    expected = classifier.judge(classifier.predict_proba(judge_model, pics))
    assert verdict == expected and verdict["n"] == 64 and sum(verdict["class_counts"]) == 64
    assert generative.judge_images(pics) == expected                    # the shipped one: the fixture's file
    assert generative.judge_images(pics, judge_model, confident=0.05)["confident_share"] == 1.0
    monkeypatch.setattr(classifier, "SHIPPED", tmp_path / "missing.safetensors")
    with pytest.raises(classifier.ClassifierFileError, match="no digit classifier at"):
        generative.judge_images(pics)

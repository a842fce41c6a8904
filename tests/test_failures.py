"""Where a model fails (scoring.by_class, viz.gallery, ui.failures on Inspect and Compare) and the Draw page's
noise (scoring.with_noise)."""
from __future__ import annotations

import numpy as np
import pytest

from aecore.engine import scoring, viz
from aecore.engine.data import load_split

from app_helpers import canvas_value, caches, drawn_digit, goto, open_app, texts

pytestmark = pytest.mark.usefixtures("app_environment")


# ------------------------------------------------------------------------------------------- per-class errors
def test_by_class_against_a_hand_computation():
    errors = np.array([0.5, 0.1, 0.3, 0.2, 0.9, 0.4, 0.3])
    labels = np.array([2, 0, 2, 0, 2, 5, 2])
    rows = scoring.by_class(errors, labels, shown=2)
    assert [r["class"] for r in rows] == [0, 2, 5]
    assert [r["count"] for r in rows] == [2, 4, 1]
    assert rows[0]["mean"] == pytest.approx(0.15) and rows[1]["mean"] == pytest.approx(0.5)
    # class 2: 0.5, 0.3, 0.9, 0.3 -> sample std 0.28284 over sqrt(4)
    assert rows[1]["sem"] == pytest.approx(np.sqrt(((0.0 + 0.04 + 0.16 + 0.04) / 3)) / 2)
    assert rows[2]["sem"] == 0.0                       # one picture: no spread to measure
    assert rows[1]["worst"] == [4, 0] and rows[1]["best"] == [2, 6]   # ties keep the pictures' order
    assert rows[0]["worst"] == [3, 1] and rows[0]["best"] == [1, 3]
    with pytest.raises(ValueError, match="two vectors of one length"):
        scoring.by_class(errors, labels[:3])


def test_gallery_stacks_originals_reconstructions_and_error_maps():
    originals = np.zeros((4, 28, 28), np.uint8)
    originals[:, 10:18, 10:18] = 255
    recons = np.zeros((4, 28, 28), np.float32)
    picture = viz.gallery(originals, recons, zoom=2)
    assert picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[2] == 3
    assert picture.shape[0] == 3 * 28 * 2 + 4 * 2 and picture.shape[1] == 4 * 28 * 2 + 5 * 2   # 1 px pads, zoomed
    heat = picture[2 * 58 + 2:, 2:58]                          # the third row, first column
    assert (heat[2 * 14, 2 * 14] == [255, 255, 255]).all()     # error 1 is white in the heat scale
    assert (heat[2, 2] == [0, 0, 0]).all()                     # no error: black


# ------------------------------------------------------------------------------------------- noise on a picture
def test_with_noise_is_seeded_and_corrupts_as_training_does():
    x = np.full((2, 28, 28), 0.5, np.float32)
    masked = scoring.with_noise(x, "mask", 0.3, seed=4)
    assert masked.shape == x.shape and masked.dtype == np.float32
    assert np.array_equal(masked, scoring.with_noise(x, "mask", 0.3, seed=4))
    assert not np.array_equal(masked, scoring.with_noise(x, "mask", 0.3, seed=5))
    assert set(np.unique(masked)) == {0.0, 0.5}
    assert 0.25 < (masked == 0).mean() < 0.35
    noisy = scoring.with_noise(x, "gaussian", 0.4, seed=0)
    assert noisy.min() >= 0 and noisy.max() <= 1
    assert 0.3 < np.std(noisy - x) < 0.45
    assert np.array_equal(scoring.with_noise(x, "none", 0.3), x)


# ------------------------------------------------------------------------------------------- the pages
def hand_table(tiny_idx, model_key: str = "pytorch-784-200") -> list[dict]:
    test = load_split("mnist", "test", str(tiny_idx))
    model = caches.shipped_models()[model_key][0]
    return scoring.by_class(scoring.reconstruction_error(model, test.images), test.labels.numpy(), 6)


def gallery_captions(at) -> list[str]:
    return [c for img in at.get("image") for c in [img.proto.imgs[0].caption] if "rows original" in c]


def test_inspect_shows_the_classes_and_the_worst_pictures_of_the_one_picked(tiny_idx):
    at = goto(open_app(), "app_pages/inspect.py")
    assert "Where it fails" in texts(at.header)
    table = hand_table(tiny_idx)
    worst = max(table, key=lambda r: r["mean"])
    pick = at.selectbox(key="inspect.fails.class")
    assert pick.value == str(worst["class"])                 # it opens on the class rebuilt worst
    assert len(pick.options) == len(table)
    other = min(table, key=lambda r: r["mean"])
    pick.set_value(str(other["class"])).run()
    assert not at.exception
    worst_caption, best_caption = gallery_captions(at)
    assert worst_caption.startswith(f"{other['class']}, rebuilt worst")
    assert [int(s.split(" ")[0]) for s in worst_caption.split("#")[1:]] == other["worst"]
    assert [int(s.split(" ")[0]) for s in best_caption.split("#")[1:]] == other["best"]
    assert any("95 % interval" in t for t in texts(at.caption))


def test_compare_shows_two_models_side_by_side(tiny_idx):
    at = goto(open_app(), "app_pages/compare.py")
    at.multiselect(key="compare.picked").set_value(["shipped:pytorch-784-200", "shipped:keras-784-32"]).run()
    assert "Where they fail" in texts(at.header)
    assert at.selectbox(key="compare.fails.left").value == "shipped:pytorch-784-200"
    assert at.selectbox(key="compare.fails.right").value == "shipped:keras-784-32"
    first = hand_table(tiny_idx)
    assert at.selectbox(key="compare.fails.class").value == str(max(first, key=lambda r: r["mean"])["class"])
    captions = gallery_captions(at)
    assert len(captions) == 4                                 # worst and best, for each of the two
    second = hand_table(tiny_idx, "keras-784-32")
    at_class = [r["class"] for r in first].index(int(at.selectbox(key="compare.fails.class").value))
    assert [int(s.split(" ")[0]) for s in captions[2].split("#")[1:]] == second[at_class]["worst"]
    at.selectbox(key="compare.fails.right").set_value("shipped:pytorch-784-200").run()
    assert any("two different models" in t for t in texts(at.info))


def test_draw_with_noise_rebuilds_the_noisy_digit_and_measures_against_the_clean_one(tiny_idx):
    at = goto(open_app(), "app_pages/draw.py")
    at.session_state["draw.canvas"] = canvas_value(drawn_digit())
    at.run()
    assert not at.exception
    assert at.radio(key="draw.noise").value == "none"
    clean_error = float(next(m.value for m in at.metric if m.label == "Reconstruction error (MSE)"))
    at.radio(key="draw.noise").set_value("mask").run()
    at.slider(key="draw.noise_level").set_value(0.5).run()
    assert not at.exception
    captions = [img.proto.imgs[0].caption for img in at.get("image")]
    assert "with mask noise 0.5" in captions
    labels = {m.label: m.value for m in at.metric}
    assert float(labels["Noisy input's error"]) > 0
    assert float(labels["Reconstruction error (MSE)"]) != pytest.approx(clean_error)
    shown = at.session_state["draw.noise_seed"]
    at.button(key="draw.btn_new_noise").click().run()
    assert at.session_state["draw.noise_seed"] == shown + 1

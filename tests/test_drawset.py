"""The drawing sets that measure the Draw page's verdict: what they hold, that they are reproducible, that their
pictures look like canvas drawings (white ink on black, the canvas's size) and survive `to_mnist`; that the second
set shares no font, character or pen width with the first; and the detector's command line that reports both."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from aecore.labs import anomaly, drawset, drawset2
from aecore.engine.data import Split
from aecore.engine.preprocess import to_mnist


def test_the_set_holds_every_kind_on_the_canvas():
    ds = drawset.build(per_digit=3, scribbles=5)
    kinds = {k: sum(d.kind == k for d in ds) for k in drawset.DIGIT_KINDS + drawset.OTHER_KINDS}
    n_fonts = len(drawset.fonts_available())
    assert n_fonts >= 1                                  # Pillow's own font at least
    assert kinds == {"mnist": 0, "font digit": 10 * n_fonts, "stroke digit": 30,
                     "letter": len(drawset.LETTERS) * n_fonts, "symbol": len(drawset.SYMBOLS) * n_fonts,
                     "shape": 3 * len(drawset.SHAPES), "scribble": 5}
    for d in ds:
        assert d.image.shape == (280, 280) and d.image.dtype == np.uint8
        assert d.image[0, 0] == 0 and d.image.max() == 255, d.what       # black canvas, white ink
        x = to_mnist(d.image)
        assert x.shape == (28, 28) and 0.0 < x.max() <= 1.0
    assert all(d.is_digit == (d.kind in drawset.DIGIT_KINDS) for d in ds)


def test_letters_that_are_a_digits_shape_are_left_out():
    for c in "OoQIlSsZzBbgq":
        assert c not in drawset.LETTERS
    for c in "/|-()":
        assert c not in drawset.SYMBOLS


def test_the_set_is_the_same_for_a_seed_and_differs_between_seeds():
    a, b, c = (drawset.build(per_digit=2, scribbles=3, seed=s) for s in (0, 0, 1))
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b))
    strokes = [i for i, d in enumerate(a) if d.kind == "stroke digit"]
    assert not all(np.array_equal(a[i].image, c[i].image) for i in strokes)


def test_mnist_digits_are_enlarged_per_class():
    images = np.zeros((20, 28, 28), np.uint8)
    images[:, 8:20, 12:16] = 255
    labels = np.arange(20) % 10
    ds = drawset.enlarged_mnist(Split(torch.from_numpy(images), torch.from_numpy(labels)), per_digit=2)
    assert [d.what.split(":")[0] for d in ds] == [str(d) for d in range(10) for _ in range(2)]
    big = ds[0].image
    assert big.shape == (280, 280) and big[140, 140] == 255 and big[20, 20] == 0
    # each original pixel became a 10x10 block: sampled at the blocks' centres, the original comes back
    assert np.abs(big[5::10, 5::10].astype(int) - images[0]).max() <= 0.1 * 255


def test_contact_sheet_places_every_drawing():
    ds = drawset.build(per_digit=1, scribbles=2)
    sheet = drawset.contact_sheet(ds, columns=10, side=20)
    assert sheet.shape == (20 * -(-len(ds) // 10), 200)


# ---------------------------------------------------------------------------------------------- the second set
@pytest.fixture
def second_set_fonts():
    """Skips where a font of the second set is missing (the set would be smaller than the one measured)."""
    missing = drawset2.missing_fonts()
    if missing:
        pytest.skip(f"the second drawing set's fonts {sorted(missing)} are missing: "
                    f"apt-get install {' '.join(sorted(set(missing.values())))}")


@pytest.fixture(scope="module")
def second():
    return drawset2.build(per_digit=2, scribbles=4)


def test_the_second_set_holds_every_kind_on_the_canvas(second_set_fonts, second):
    kinds = {k: sum(d.kind == k for d in second) for k in drawset.DIGIT_KINDS + drawset.OTHER_KINDS}
    n_fonts = len(drawset2.fonts_available())
    assert n_fonts == len(drawset2.FONTS)
    assert kinds["mnist"] == 0
    assert kinds["font digit"] == 10 * len(drawset2.FONT_STYLES) * n_fonts
    # two templates of most digits, one of some: at least per_digit of each digit at each width
    assert kinds["stroke digit"] >= 10 * 2 * len(drawset2.PEN_WIDTHS)
    # every font has the Greek and Cyrillic of some letters, the Comic Neue and Humor Sans faces lack them
    assert len(drawset2.LETTERS) * 9 < kinds["letter"] <= (len(drawset2.LETTERS) + len(drawset2.HAND)) * n_fonts
    assert kinds["symbol"] > len(drawset2.SYMBOLS) * 9
    assert kinds["shape"] == 2 * len(drawset2.SHAPES) * len(drawset2.PEN_WIDTHS) and kinds["scribble"] == 4
    assert {d.style for d in second if d.kind == "font digit"} == set(drawset2.FONT_STYLES)
    for d in second:
        assert d.image.shape == (280, 280) and d.image.dtype == np.uint8, d.what
        assert d.image.max() >= 200, d.what                              # white ink ...
        assert d.image[[0, 0, -1, -1], [0, -1, 0, -1]].max() == 0, d.what  # ... on black, corners clear
        x = to_mnist(d.image)
        assert x.shape == (28, 28) and 0.0 < x.max() <= 1.0
    # digits say which digit first (as the classifier's drawing figures read them); the rest never start with one
    assert all(d.what[0].isdigit() == d.is_digit for d in second)


def test_the_second_set_shares_no_font_character_or_pen_width_with_the_first():
    assert not {f.rsplit(".", 1)[0] for f in drawset2.FONTS} & {f.rsplit(".", 1)[0] for f in drawset.FONT_FILES}
    firsts = set(drawset.LETTERS + drawset.SYMBOLS)
    assert not firsts & set(drawset2.LETTERS + drawset2.SYMBOLS + "".join(drawset2.HAND))
    assert not set(drawset.SHAPES) & set(drawset2.SHAPES)
    for lo, hi in drawset2.PEN_WIDTHS.values():
        assert not lo <= drawset.PEN <= hi
    for c in "οθΘιξζτςδβρΓБЗЧЭъьб∂§∫":                      # a digit's shape once cropped: left out
        assert c not in drawset2.LETTERS + drawset2.SYMBOLS and c not in drawset2.HAND
    assert set(drawset2.DIGITS) == set(range(10))


def test_the_second_set_is_the_same_for_a_seed_and_differs_between_seeds():
    a, b, c = (drawset2.build(seed=s, per_digit=1, scribbles=4, fonts=2) for s in (0, 0, 1))
    assert [d.what for d in a] == [d.what for d in b] == [d.what for d in c]
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b))
    assert sum(not np.array_equal(x.image, y.image) for x, y in zip(a, c)) > 0.9 * len(a)


def test_a_hollow_glyph_is_dark_inside_and_a_marker_one_is_thicker(second_set_fonts):
    name, path = drawset2.fonts_available()[0]
    ink = {}
    for style in ("filled", "hollow", "marker"):
        image = drawset2._typed("letter", "l", name, path, style, np.random.default_rng(0)).image
        rows, cols = np.nonzero(image > 128)
        ink[style] = image[(rows.min() + rows.max()) // 2, (cols.min() + cols.max()) // 2]
        ink[style + " width"] = cols.max() - cols.min()
    assert ink["filled"] > 200 and ink["hollow"] < 50 and ink["marker"] > 200
    assert ink["marker width"] > ink["filled width"] + 10
    assert not drawset2.has_glyph("\uffff", path) and drawset2.has_glyph("A", path)


def test_render_text_widens_the_outline_by_the_stroke():
    font = drawset.fonts_available()[-1][1]                # Pillow's own, on every machine
    plain, wide = drawset.render_text("H", font), drawset.render_text("H", font, stroke=6)
    assert (wide >= plain).all() and (wide > 128).sum() > (plain > 128).sum() + 1000


def test_the_detector_cli_refuses_evaluate_without_digits_or_a_model_file(capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        anomaly.main(["--evaluate"])
    assert e.value.code == 2 and "add --digits" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        anomaly.main(["--digits", "--evaluate", "--epochs", "3"])
    assert e.value.code == 2 and "leave out --out and --epochs" in capsys.readouterr().err
    missing = tmp_path / "no-detector.safetensors"
    assert anomaly.main(["--digits", "--evaluate", "--model", str(missing)]) == 1
    assert f"{missing}: cannot read" in capsys.readouterr().err


@pytest.mark.mnist
@pytest.mark.slow
def test_the_detector_cli_reports_the_shipped_detector_on_both_sets(capsys, second_set_fonts):
    assert anomaly.main(["--digits", "--evaluate"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    model, meta = anomaly.digit_detector()
    a = meta["anomaly"]
    assert row["auc"] == pytest.approx(a["drawings"]["auc"], abs=1e-4)          # the figures its file holds
    again = anomaly.drawing_figures(model, a["verdict_threshold"], drawset2.build())
    assert row["second_set"]["auc"] == again["auc"] and row["second_set"]["fonts_missing"] == {}
    assert row["second_set"]["count_by_kind"] == again["count_by_kind"]
    assert sum(row["second_set"]["count_by_kind"].values()) > 1500

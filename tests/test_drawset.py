"""The drawing set that measures the Draw page's verdict: what it holds, that it is reproducible, that its
pictures look like canvas drawings (white ink on black, the canvas's size) and survive `to_mnist`."""
from __future__ import annotations

import numpy as np
import torch

from aecore.labs import drawset
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

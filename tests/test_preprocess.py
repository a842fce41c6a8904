"""Drawings and uploads into MNIST form: crop, scale to 20 px, centre by mass; safe decoding of uploads."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from aecore.engine.preprocess import (BOX, CENTRE, INK, SIDE, ImageError, centre_of_mass, load_image, place, to_grey,
                               to_mnist)


def canvas(draw, size=(280, 280), mode="RGBA", background=(0, 0, 0, 255)) -> np.ndarray:
    """What the drawing canvas returns: an RGBA array, here drawn with PIL."""
    im = Image.new(mode, size, background)
    draw(ImageDraw.Draw(im))
    return np.asarray(im)


def stroke(d, colour=(255, 255, 255, 255)):
    """A thick '7'-like stroke in the upper-left part of a 280x280 canvas."""
    d.line([(30, 30), (110, 35), (60, 150)], fill=colour, width=18)


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def ink_box(x: np.ndarray) -> tuple[int, int]:
    rows, cols = np.nonzero(x > INK)
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


def check_mnist_form(x: np.ndarray) -> None:
    assert x.dtype == np.float32 and x.shape == (SIDE, SIDE)
    assert x.min() >= 0.0 and x.max() <= 1.0 and x.max() > 0.5


# ------------------------------------------------------------------------------------------- to_mnist
def test_off_centre_stroke_is_cropped_scaled_and_centred():
    image = canvas(stroke)
    x = to_mnist(image)
    check_mnist_form(x)
    cy, cx = centre_of_mass(x)
    assert abs(cy - CENTRE) <= 0.01 and abs(cx - CENTRE) <= 0.01      # sub-pixel: no rounding to whole pixels
    assert max(ink_box(x)) in (BOX, BOX + 1)       # 20 px, plus one when the fraction spreads an edge


def test_lopsided_ink_stays_inside_the_field():
    """A 7's mass sits high in its box: centring it at 14 would push the box out; it is kept inside, whole."""
    x = to_mnist(canvas(lambda d: d.line([(30, 30), (230, 30), (40, 250)], fill=(255, 255, 255, 255), width=18)))
    assert max(ink_box(x)) in (BOX, BOX + 1)       # nothing cut off
    rows, cols = np.nonzero(x > INK)
    assert rows.min() >= 0 and rows.max() <= SIDE - 1 and x[SIDE - 1].max() > 0   # pushed against the bottom


def test_position_on_the_canvas_does_not_matter():
    a = to_mnist(canvas(stroke))
    b = to_mnist(canvas(lambda d: d.line([(150, 110), (230, 115), (180, 230)], fill=(255, 255, 255, 255), width=18)))
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_aspect_ratio_is_kept():
    tall = canvas(lambda d: d.rectangle([100, 50, 139, 129], fill=(255, 255, 255, 255)))   # 40 wide, 80 high
    h, w = ink_box(to_mnist(tall))
    assert h in (BOX, BOX + 1) and abs(w - BOX // 2) <= 1
    wide = canvas(lambda d: d.rectangle([20, 100, 259, 159], fill=(255, 255, 255, 255)))   # 240 wide, 60 high
    h, w = ink_box(to_mnist(wide))
    assert w in (BOX, BOX + 1) and abs(h - BOX // 4) <= 1


def test_small_drawing_is_scaled_up_to_20_px():
    tiny = canvas(lambda d: d.rectangle([10, 10, 14, 19], fill=(255, 255, 255, 255)), size=(60, 60))  # 5x10 px
    x = to_mnist(tiny)
    h, w = ink_box(x)
    assert h in (BOX, BOX + 1) and abs(w - BOX // 2) <= 1


def test_grey_levels_are_kept():
    def two_tone(d):
        d.rectangle([50, 50, 89, 209], fill=(255, 255, 255, 255))
        d.rectangle([90, 50, 129, 209], fill=(128, 128, 128, 255))
    x = to_mnist(canvas(two_tone))
    ink_rows, ink_cols = np.nonzero(x > INK)
    rows = slice(ink_rows.min() + 2, ink_rows.max() - 1)
    left, right = x[rows, ink_cols.min() + 3], x[rows, ink_cols.max() - 3]   # well inside each half of the box
    np.testing.assert_allclose(left, 1.0, atol=0.02)
    np.testing.assert_allclose(right, 128 / 255, atol=0.02)


def test_dark_on_light_rgb_gives_the_same_as_light_on_dark():
    light_on_dark = canvas(stroke)
    dark_on_light = 255 - light_on_dark[..., :3]
    np.testing.assert_allclose(to_mnist(dark_on_light), to_mnist(light_on_dark), atol=1e-6)


def test_grey_uint8_and_float_inputs():
    rgba = canvas(stroke)
    reference = to_mnist(rgba)
    grey = rgba[..., 0]
    np.testing.assert_allclose(to_mnist(grey), reference, atol=1e-6)
    np.testing.assert_allclose(to_mnist(grey.astype(np.float32) / 255.0), reference, atol=1e-6)
    np.testing.assert_allclose(to_mnist(grey.astype(np.float64)), reference, atol=1e-6)   # 0-255 floats
    np.testing.assert_allclose(to_mnist(grey[..., None]), reference, atol=1e-6)          # (H, W, 1)


def test_transparent_background_with_black_strokes():
    transparent = canvas(lambda d: stroke(d, (0, 0, 0, 255)), background=(0, 0, 0, 0))
    np.testing.assert_allclose(to_mnist(transparent), to_mnist(canvas(stroke)), atol=1e-6)


def test_transparent_background_with_white_strokes():
    transparent = canvas(lambda d: stroke(d, (255, 255, 255, 255)), background=(255, 255, 255, 0))
    np.testing.assert_allclose(to_mnist(transparent), to_mnist(canvas(stroke)), atol=1e-6)


def test_photo_like_grey_background_is_inverted():
    rgb = canvas(lambda d: stroke(d, (30, 30, 30)), mode="RGB", background=(220, 220, 220))
    x = to_mnist(rgb)
    check_mnist_form(x)
    assert x[0].max() == 0.0                               # the light paper became black
    cy, cx = centre_of_mass(x)
    assert abs(cy - CENTRE) <= 1.0 and abs(cx - CENTRE) <= 1.0


@pytest.mark.parametrize("blank", [
    np.zeros((280, 280, 4), np.uint8) + np.array([0, 0, 0, 255], np.uint8),   # the empty canvas
    np.zeros((280, 280, 4), np.uint8),                                         # fully transparent
    np.full((50, 50, 3), 255, np.uint8),                                       # white paper
    np.zeros((28, 28), np.float32),
])
def test_blank_image_raises(blank):
    with pytest.raises(ValueError, match="blank"):
        to_mnist(blank)


@pytest.mark.parametrize("shape", [(28,), (28, 28, 2), (2, 28, 28, 3), (0, 10)])
def test_unusable_array_shapes_raise(shape):
    with pytest.raises(ValueError):
        to_grey(np.zeros(shape, np.uint8))


def test_place_shifts_by_fractions_and_keeps_the_ink():
    box = np.zeros((5, 5), np.float32)
    box[2, 2] = 1.0
    out = place(box, 10.25, 3.5)
    assert out.sum() == pytest.approx(1.0)
    assert centre_of_mass(out) == pytest.approx((12.25, 5.5))
    np.testing.assert_allclose(place(box, 10, 3)[12, 5], 1.0)


def enlarged_and_back(originals: np.ndarray, seed: int) -> np.ndarray:
    """Each 28x28 original enlarged 6-9x onto a 280x280 canvas at a random place, then through to_mnist."""
    rng = np.random.default_rng(seed)
    out = []
    for x in originals:
        side = int(28 * rng.uniform(6, 9))
        big = np.asarray(Image.fromarray(x).resize((side, side), Image.BILINEAR))
        c = np.zeros((280, 280), np.uint8)
        top, left = rng.integers(0, 280 - side + 1, 2)
        c[top:top + side, left:left + side] = big
        out.append(to_mnist(c))
    return np.stack(out)


def check_round_trip(originals: np.ndarray) -> None:
    back = enlarged_and_back(originals, seed=0)
    centres = np.array([centre_of_mass(b) for b in back])
    assert np.abs(centres - CENTRE).max() <= 0.25, np.abs(centres - CENTRE).max()
    a = originals.reshape(len(originals), -1).astype(np.float64)
    b = back.reshape(len(back), -1).astype(np.float64)
    corr = [np.corrcoef(u, v)[0, 1] for u, v in zip(a, b)]
    assert np.mean(corr) >= 0.90, np.mean(corr)


def test_digits_enlarged_anywhere_on_the_canvas_come_back_in_place():
    """Synthetic MNIST-form digits (font digits through to_mnist) enlarged at random places come back centred."""
    from aecore.labs import drawset
    fonts = drawset.fonts_available()
    originals = np.stack([(to_mnist(drawset.render_text(str(d), f)) * 255).round().astype(np.uint8)
                          for _, f in fonts for d in range(10)])
    check_round_trip(originals)


@pytest.mark.mnist
def test_real_mnist_digits_enlarged_on_the_canvas_come_back_in_place():
    from aecore.engine.data import load_split
    check_round_trip(load_split("mnist", "test").images[:300].numpy())


def test_mnist_digit_passes_through_almost_unchanged():
    """An image already in MNIST form (20x20 box, centred) comes back nearly the same."""
    x0 = to_mnist(canvas(stroke))
    x1 = to_mnist((x0 * 255).round().astype(np.uint8))
    assert np.abs(x1 - x0).mean() < 0.03


# ------------------------------------------------------------------------------------------- load_image
def test_png_bytes_decode():
    rgba = canvas(stroke)
    a = load_image(encode(Image.fromarray(rgba), "PNG"))
    assert a.shape == (280, 280, 4) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, rgba)
    np.testing.assert_allclose(to_mnist(a), to_mnist(rgba))


def test_jpeg_bytes_decode():
    rgb = canvas(stroke, mode="RGB", background=(0, 0, 0))
    a = load_image(encode(Image.fromarray(rgb), "JPEG", quality=95))
    assert a.shape[:2] == (280, 280) and a.dtype == np.uint8
    assert np.abs(to_mnist(a) - to_mnist(rgb)).mean() < 0.02


def test_palette_and_grey_alpha_pngs_are_converted():
    p = Image.fromarray(canvas(stroke, mode="RGB", background=(0, 0, 0))).convert("P")
    a = load_image(encode(p, "PNG"))
    assert a.ndim == 3 and a.shape[2] == 3
    la = Image.new("LA", (40, 40), (0, 0))
    a = load_image(encode(la, "PNG"))
    assert a.shape == (40, 40, 4)


def test_large_picture_is_shrunk_while_decoding():
    im = Image.new("L", (3000, 1500), 255)
    ImageDraw.Draw(im).line([(1000, 200), (1100, 1300)], fill=0, width=60)
    a = load_image(encode(im, "PNG"))
    assert max(a.shape[:2]) <= 1024
    check_mnist_form(to_mnist(a))


@pytest.mark.parametrize("blob", [b"just some text\n" * 20, bytes(np.random.default_rng(0).integers(0, 256, 2000,
                                                                                                    dtype=np.uint8))])
def test_non_image_raises_image_error(blob):
    with pytest.raises(ImageError, match="not an image"):
        load_image(blob)


def test_empty_upload_raises_image_error():
    with pytest.raises(ImageError, match="empty"):
        load_image(b"")


@pytest.mark.parametrize("fmt", ["GIF", "BMP"])
def test_other_formats_are_refused(fmt):
    blob = encode(Image.new("RGB", (30, 30)), fmt)
    with pytest.raises(ImageError, match="PNG or JPEG") as info:
        load_image(blob)
    assert fmt in str(info.value)


@pytest.mark.parametrize("side", [6000, 8000])   # 36M pixels: Pillow warns; 64M: Pillow refuses
def test_huge_image_is_refused(side):
    blob = encode(Image.new("L", (side, side)), "PNG")
    assert len(blob) < 200_000     # a decompression bomb: small file, huge picture
    with pytest.raises(ImageError, match="too large.*pixels"):
        load_image(blob)


def test_huge_image_does_not_change_pillow_limit():
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageError):
        load_image(encode(Image.new("L", (6000, 6000)), "PNG"))
    assert Image.MAX_IMAGE_PIXELS == before


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_image_raises_image_error(fmt):
    noise = np.random.default_rng(1).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    blob = encode(Image.fromarray(noise), fmt)
    with pytest.raises(ImageError, match="corrupt or truncated"):
        load_image(blob[: len(blob) // 3])

"""A set of drawings on the Draw page's 280×280 canvas, to measure whether a verdict tells digits from the rest.

Digits come three ways: MNIST test digits enlarged onto the canvas, digits rendered in fonts, and digits written
as pen strokes (18 px wide, as the canvas draws them) from a stroke template per digit, slanted, stretched and
jittered. Non-digits: letters and symbols in the same fonts, shapes and random scribbles. Letters and symbols
that are a digit's shape once cropped and centred (O, l, S, Z, B, b, g, q, /, |, …) are left out: calling them
digits is not a mistake.

Fonts are the DejaVu and Liberation faces when the system has them, and always Pillow's own Aileron; the set
is the same on every machine with the same fonts (it is seeded).

    python -m aecore.labs.drawset OUT.png      # a contact sheet of the whole set
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CANVAS = 280
PEN = 18                    # the Draw page's stroke width
FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/truetype/liberation")
FONT_FILES = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf",
              "DejaVuSansCondensed-Oblique.ttf", "LiberationSans-Regular.ttf", "LiberationSerif-Regular.ttf",
              "LiberationMono-Regular.ttf", "LiberationSans-Bold.ttf")
LETTERS = "ACEFHKMNPRTUVWXYacdefhkmnprtuwxy"     # no O/o/Q/D, I/l/i/j, S/s, Z/z, B/b, G, g/q, J, L, v
SYMBOLS = "#@%&*?+=$<>{}~^"                         # no / \\ | - _ ( ) [ ] ! . , : ; ' "
DIGIT_KINDS = ("mnist", "font digit", "stroke digit")
OTHER_KINDS = ("letter", "symbol", "shape", "scribble")


@dataclass(frozen=True)
class Drawing:
    kind: str            # one of DIGIT_KINDS or OTHER_KINDS
    what: str            # the character, shape or digit drawn, and how
    image: np.ndarray    # (280, 280) uint8, white ink on black
    style: str = ""      # how it was drawn, where a set draws one kind several ways ("hollow", "marker", …)

    @property
    def is_digit(self) -> bool:
        return self.kind in DIGIT_KINDS


def build(mnist_test=None, per_digit: int = 10, scribbles: int = 60, seed: int = 0) -> list[Drawing]:
    """The whole set. `mnist_test`: the MNIST test Split for the enlarged digits, `per_digit` of each class taken
    from the start; without it there are no "mnist" drawings."""
    rng = np.random.default_rng(seed)
    out = []
    if mnist_test is not None:
        out += enlarged_mnist(mnist_test, per_digit)
    fonts = fonts_available()
    out += [Drawing("font digit", f"{d} in {name}", render_text(str(d), font)) for name, font in fonts for d in range(10)]
    out += [Drawing("stroke digit", f"{d} in strokes #{i}", _strokes(STROKES[d], rng))
            for d in range(10) for i in range(per_digit)]
    out += [Drawing("letter", f"{c} in {name}", render_text(c, font)) for name, font in fonts for c in LETTERS]
    out += [Drawing("symbol", f"{c} in {name}", render_text(c, font)) for name, font in fonts for c in SYMBOLS]
    out += [Drawing("shape", f"{name} #{i}", _strokes(strokes, rng))
            for name, strokes in SHAPES.items() for i in range(3)]
    out += [Drawing("scribble", f"scribble #{i}", _scribble(rng)) for i in range(scribbles)]
    return out


def enlarged_mnist(test, per_digit: int) -> list[Drawing]:
    """The first `per_digit` test images of each class, enlarged 10× onto the canvas (bilinear)."""
    images, labels = test.images.numpy(), test.labels.numpy()
    return [Drawing("mnist", f"{d}: test image {i}", enlarge(images[i]))
            for d in range(10) for i in np.flatnonzero(labels == d)[:per_digit]]


def enlarge(image) -> np.ndarray:
    """A 28×28 uint8 image enlarged 10× to fill the canvas (bilinear)."""
    from PIL import Image
    return np.asarray(Image.fromarray(np.asarray(image, np.uint8)).resize((CANVAS, CANVAS), Image.BILINEAR))


def fonts_available() -> list[tuple[str, object]]:
    """(name, FreeType font at canvas size) for each font found, Pillow's bundled Aileron always last."""
    from PIL import ImageFont
    fonts = []
    for file in FONT_FILES:
        for folder in FONT_DIRS:
            path = Path(folder) / file
            if path.is_file():
                fonts.append((path.stem, ImageFont.truetype(str(path), 200)))
                break
    fonts.append(("Aileron", ImageFont.load_default(size=200)))
    return fonts


def render_text(char: str, font, stroke: int = 0) -> np.ndarray:
    """`char` white on the black canvas, centred; `stroke` > 0 widens its outline by that many px all round."""
    from PIL import Image, ImageDraw
    img = Image.new("L", (CANVAS, CANVAS), 0)
    ImageDraw.Draw(img).text((CANVAS / 2, CANVAS / 2), char, fill=255, font=font, anchor="mm",
                             stroke_width=stroke, stroke_fill=255)
    return np.asarray(img)


# Pen strokes in a unit box (x right, y down); each stroke is a list of points.
def _arc(cx, cy, rx, ry, a0, a1, n=24):
    """Points on an ellipse from angle a0 to a1 (degrees, 0 = right, 90 = down)."""
    return [(cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
            for a in np.linspace(a0, a1, n)]


STROKES = {
    0: [_arc(0.5, 0.5, 0.32, 0.48, -90, 270, 40)],
    1: [[(0.3, 0.2), (0.55, 0.0), (0.55, 1.0)]],
    2: [_arc(0.5, 0.28, 0.33, 0.27, 190, 360 + 25) + [(0.12, 1.0), (0.9, 1.0)]],
    3: [_arc(0.48, 0.25, 0.3, 0.25, 200, 450) + _arc(0.48, 0.73, 0.34, 0.27, 270, 520)],
    4: [[(0.65, 1.0), (0.65, 0.0), (0.1, 0.68), (0.92, 0.68)]],
    5: [[(0.85, 0.0), (0.22, 0.0), (0.17, 0.45)] + _arc(0.47, 0.68, 0.35, 0.3, 230, 500)],
    6: [[(0.75, 0.02), (0.45, 0.12), (0.22, 0.4)] + _arc(0.5, 0.7, 0.3, 0.28, 180, -180, 36)],
    7: [[(0.08, 0.02), (0.92, 0.02), (0.38, 1.0)]],
    8: [_arc(0.5, 0.26, 0.26, 0.24, 90, 450, 32), _arc(0.5, 0.74, 0.32, 0.26, -90, 270, 32)],
    9: [_arc(0.47, 0.3, 0.3, 0.28, 0, 360, 32), [(0.77, 0.3), (0.72, 1.0)]],
}
SHAPES = {
    "triangle": [[(0.5, 0.0), (1.0, 0.9), (0.0, 0.9), (0.5, 0.0)]],
    "star": [[(0.5, 0.0), (0.8, 1.0), (0.02, 0.38), (0.98, 0.38), (0.2, 1.0), (0.5, 0.0)]],
    "square with a cross": [[(0, 0), (1, 0), (1, 1), (0, 1), (0, 0)], [(0, 0), (1, 1)], [(1, 0), (0, 1)]],
    "spiral": [[(0.5 + r * math.cos(a) / 2, 0.5 + r * math.sin(a) / 2)
                for a, r in zip(np.linspace(0, 6 * math.pi, 90), np.linspace(0.05, 1, 90))]],
    "smiley": [_arc(0.5, 0.5, 0.5, 0.5, 0, 360, 40), _arc(0.5, 0.55, 0.28, 0.22, 20, 160),
               [(0.33, 0.3), (0.33, 0.38)], [(0.67, 0.3), (0.67, 0.38)]],
    "house": [[(0.1, 1.0), (0.1, 0.4), (0.5, 0.0), (0.9, 0.4), (0.9, 1.0), (0.1, 1.0)], [(0.4, 1.0), (0.4, 0.65),
                                                                                        (0.6, 0.65), (0.6, 1.0)]],
    "heart": [_arc(0.27, 0.28, 0.25, 0.25, 180, 360) + [(0.5, 0.28)] + _arc(0.73, 0.28, 0.25, 0.25, 180, 360)
              + [(0.5, 1.0), (0.02, 0.32)]],
    "arrow": [[(0.0, 0.5), (1.0, 0.5)], [(0.65, 0.15), (1.0, 0.5), (0.65, 0.85)]],
    "hash grid": [[(0.33, 0), (0.33, 1)], [(0.67, 0), (0.67, 1)], [(0, 0.33), (1, 0.33)], [(0, 0.67), (1, 0.67)]],
    "zigzag": [[(0.0, 0.2), (0.2, 0.8), (0.4, 0.2), (0.6, 0.8), (0.8, 0.2), (1.0, 0.8)]],
    "wave": [[(x, 0.5 + 0.35 * math.sin(x * 4 * math.pi)) for x in np.linspace(0, 1, 40)]],
    "sun": [_arc(0.5, 0.5, 0.22, 0.22, 0, 360, 30)] + [[(0.5 + 0.3 * math.cos(a), 0.5 + 0.3 * math.sin(a)),
                                                        (0.5 + 0.5 * math.cos(a), 0.5 + 0.5 * math.sin(a))]
                                                       for a in np.linspace(0, 2 * math.pi, 8, endpoint=False)],
}


def _strokes(strokes, rng) -> np.ndarray:
    """Pen strokes from a unit-box template, slanted, stretched, rotated a little, jittered and placed at a random
    size (150–230 px high) on the canvas."""
    from PIL import Image, ImageDraw
    slant, stretch, turn = rng.uniform(-0.25, 0.15), rng.uniform(0.75, 1.1), math.radians(rng.uniform(-8, 8))
    height = rng.uniform(150, 230)
    m = np.array([[math.cos(turn), -math.sin(turn)], [math.sin(turn), math.cos(turn)]]) @ \
        np.array([[stretch, slant], [0.0, 1.0]]) * height
    shaped = [np.asarray(s, float) @ m.T + rng.normal(0, 0.012 * height, (len(s), 2)) for s in strokes]
    allp = np.concatenate(shaped)
    lo, hi = allp.min(0), allp.max(0)
    room = np.maximum(CANVAS - PEN - (hi - lo), 0)
    shift = PEN / 2 + rng.uniform(0, 1, 2) * room - lo
    img = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(img)
    for s in shaped:
        pen(draw, [tuple(p) for p in s + shift])
    return np.asarray(img)


def pen(draw, points, width: float = PEN) -> None:
    """A stroke as the canvas draws it: `width` px wide (the canvas's PEN by default), round joins and caps."""
    draw.line(points, fill=255, width=round(width), joint="curve")
    r = width / 2
    for x, y in points:
        draw.ellipse((x - r, y - r, x + r, y + r), fill=255)


def _scribble(rng) -> np.ndarray:
    """One to three strokes of a random walk that turns smoothly: what a visitor doodles."""
    from PIL import Image, ImageDraw
    img = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(img)
    for _ in range(rng.integers(1, 4)):
        p = rng.uniform(60, CANVAS - 60, 2)
        heading, turn = rng.uniform(0, 2 * math.pi), rng.normal(0, 0.3)
        points = [tuple(p)]
        for _ in range(rng.integers(25, 70)):
            turn = 0.8 * turn + rng.normal(0, 0.25)
            heading += turn
            p = np.clip(p + 12 * np.array([math.cos(heading), math.sin(heading)]), PEN, CANVAS - PEN)
            points.append(tuple(p))
        pen(draw, points)
    return np.asarray(img)


def contact_sheet(drawings: list[Drawing], columns: int = 20, side: int = 56) -> np.ndarray:
    """All drawings as one uint8 image, `side` px each, for looking the set over."""
    from PIL import Image
    rows = math.ceil(len(drawings) / columns)
    sheet = Image.new("L", (columns * side, rows * side), 40)
    for i, d in enumerate(drawings):
        tile = Image.fromarray(d.image).resize((side - 2, side - 2), Image.BILINEAR)
        sheet.paste(tile, ((i % columns) * side + 1, (i // columns) * side + 1))
    return np.asarray(sheet)


if __name__ == "__main__":
    from PIL import Image
    from aecore.engine.data import DataError, load_split
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m aecore.labs.drawset OUT.png")
    try:
        test = load_split("mnist", "test")
    except DataError:
        test = None
    Image.fromarray(contact_sheet(build(test))).save(sys.argv[1])

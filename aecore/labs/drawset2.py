"""A second drawing set for the Draw page's verdict, made independently of the first (`aecore.labs.drawset`) so
that a detector judged on the first can be measured again on pictures it was never compared with.

Nothing is shared with the first set but the canvas and the labelling: other fonts (FreeFont, the URW base 35,
Noto, Comic Neue, Humor Sans), drawn four ways (filled at a random size and place, hollow, as a thick marker,
slanted); digits written by hand-like strokes (a smooth curve through jittered control points, with a tremor)
from other templates (a 1 with a base, an open 4, a crossed 7, a looped 2, ...) at pen widths the first set
never uses (7–12 px and 26–36 px); letters and symbols the first set has none of (Greek, Cyrillic, currency,
maths, card suits), typed and hand-drawn; other shapes; other scribbles (hatching, dots, blobs, loops of
pretend handwriting). The labelling is the first set's: a drawing of a digit is a digit, and characters that
are a digit's shape once cropped and centred (ο θ ι ξ ζ τ Γ З Ч Б Э ∂ § ∫ ...) are left out.

Only fonts present are used; `missing_fonts` names the Debian packages that bring the others. The set is seeded.

    python -m aecore.labs.drawset2 OUT.png     # a contact sheet of the whole set
"""
from __future__ import annotations

import functools
import math
import sys
from pathlib import Path

import numpy as np

from aecore.labs.drawset import CANVAS, Drawing, contact_sheet, pen, render_text

FONT_ROOT = Path("/usr/share/fonts")
FONTS = {   # file -> the Debian package that installs it
    "FreeSans.ttf": "fonts-freefont-ttf", "FreeSerifItalic.ttf": "fonts-freefont-ttf",
    "FreeMonoBold.ttf": "fonts-freefont-ttf", "NimbusSans-Bold.otf": "fonts-urw-base35",
    "URWGothic-Book.otf": "fonts-urw-base35", "URWBookman-Light.otf": "fonts-urw-base35",
    "C059-Roman.otf": "fonts-urw-base35", "P052-Bold.otf": "fonts-urw-base35",
    "Z003-MediumItalic.otf": "fonts-urw-base35", "NotoSans-Regular.ttf": "fonts-noto-core",
    "NotoSerif-Bold.ttf": "fonts-noto-core", "NotoSansDisplay-Italic.ttf": "fonts-noto-core",
    "ComicNeue-Regular.otf": "fonts-comic-neue", "ComicNeue-BoldItalic.otf": "fonts-comic-neue",
    "Humor-Sans.ttf": "fonts-humor-sans"}
FONT_STYLES = ("filled", "hollow", "marker", "slanted")
# Not in the first set, and no digit's shape: left out ο θ Θ ι ξ ζ τ ς δ β ρ Γ Б З Ч Э ъ ь б ∂ § ∫ £ ¢ ¿ ¡ …
LETTERS = "αγεημπφχψωΔΛΞΠΣΦΨΩЖИЛФЦШЩЫЮЯжилфшщыюя"
SYMBOLS = "€¥©®±×÷√∞≈≠≤≥♠♣♥♦★✓♪¤"
PEN_WIDTHS = {"thin pen": (7, 12), "marker": (26, 36)}   # px; the canvas draws 18


def fonts_available() -> list[tuple[str, Path]]:
    """(name, path) of each font of FONTS found under FONT_ROOT, in FONTS's order."""
    found = {p.name: p for p in sorted(FONT_ROOT.rglob("*")) if p.name in FONTS} if FONT_ROOT.is_dir() else {}
    return [(Path(f).stem, found[f]) for f in FONTS if f in found]


def missing_fonts() -> dict[str, str]:
    """file -> Debian package, for the fonts of FONTS this machine lacks."""
    have = {name for name, _ in fonts_available()}
    return {f: pkg for f, pkg in FONTS.items() if Path(f).stem not in have}


@functools.lru_cache(maxsize=None)
def _font(path: str):
    from PIL import ImageFont
    return ImageFont.truetype(path, 200)


def has_glyph(char: str, path) -> bool:
    """Whether the font draws `char` itself rather than its box for missing glyphs."""
    font = _font(str(path))
    picture = render_text(char, font)
    return picture.max() > 0 and not np.array_equal(picture, render_text("\uffff", font))


def build(seed: int = 0, per_digit: int = 12, scribbles: int = 60, fonts: int | None = None) -> list[Drawing]:
    """The whole set: every digit, letter and symbol in every font present (digits in all FONT_STYLES, letters
    and symbols in one style each, taken in turn), at least `per_digit` hand-drawn digits of each class at each
    pen width, each hand-drawn letter, symbol and shape at each width (shapes twice), and `scribbles`
    scribbles. `fonts`: only the first this many fonts present (a smaller set, for a quick look)."""
    rng = np.random.default_rng([seed, 2])
    fonts = fonts_available()[:fonts]
    out = [_typed("font digit", str(d), name, path, style, rng)
           for name, path in fonts for d in range(10) for style in FONT_STYLES]
    i = 0
    for kind, chars in (("letter", LETTERS), ("symbol", SYMBOLS)):
        for name, path in fonts:
            for c in chars:
                if has_glyph(c, path):
                    out.append(_typed(kind, c, name, path, FONT_STYLES[i % len(FONT_STYLES)], rng))
                    i += 1
    out += [_hand("stroke digit", f"{d}", v, style, rng) for d, variants in DIGITS.items()
            for style in PEN_WIDTHS for v in variants for _ in range(math.ceil(per_digit / len(variants)))]
    out += [_hand("letter" if c in LETTERS else "symbol", c, v, style, rng)
            for c, v in HAND.items() for style in PEN_WIDTHS]
    out += [_hand("shape", name, v, style, rng) for name, v in SHAPES.items() for style in PEN_WIDTHS
            for _ in range(2)]
    out += [_scribble(i, rng) for i in range(scribbles)]
    return out


# ---------------------------------------------------------------------------------------------- typed
def _typed(kind: str, char: str, name: str, path, style: str, rng) -> Drawing:
    """A character in a font at 200 px, drawn `style`, then slanted, scaled and placed at random."""
    font = _font(str(path))
    if style == "hollow":               # a ring 5-8 px wide round the glyph's outline, the inside left dark
        glyph = render_text(char, font, int(rng.integers(5, 9))).astype(np.int16) - render_text(char, font)
    elif style == "marker":             # the glyph thickened by 14-22 px
        glyph = render_text(char, font, int(rng.integers(7, 12)))
    else:
        glyph = render_text(char, font)
    slant = rng.uniform(0.25, 0.45) * rng.choice([-1, 1]) if style == "slanted" else rng.uniform(-0.08, 0.08)
    return Drawing(kind, f"{char} in {name}, {style}", _place(glyph.clip(0, 255).astype(np.uint8), slant, rng), style)


def _place(image: np.ndarray, slant: float, rng) -> np.ndarray:
    """`image` sheared by `slant`, scaled by 0.55–1.1 (less where it would not fit) and moved at random within
    the room its ink leaves on the canvas."""
    from PIL import Image
    c = CANVAS / 2
    shear = np.array([[1.0, -slant], [0.0, 1.0]])
    rows, cols = np.nonzero(image)
    corners = np.array([[cols.min(), rows.min()], [cols.max(), rows.max()],
                        [cols.min(), rows.max()], [cols.max(), rows.min()]], float) - c
    sheared = corners @ shear.T
    scale = min(rng.uniform(0.55, 1.1), (CANVAS - 8) / (sheared.max(0) - sheared.min(0)).max())
    moved = scale * sheared                                                 # where the ink's box lands
    # PIL's affine maps output to input: input = A^-1 (output - c - shift) + c, A = scale * shear
    a = np.linalg.inv(scale * shear)
    room_lo, room_hi = -c + 4 - moved.min(0), c - 4 - moved.max(0)
    shift = np.where(room_hi > room_lo, rng.uniform(0, 1, 2) * (room_hi - room_lo) + room_lo, 0)
    off = np.array([c, c]) - a @ (np.array([c, c]) + shift)
    out = Image.fromarray(image).transform((CANVAS, CANVAS), Image.AFFINE,
                                           (a[0, 0], a[0, 1], off[0], a[1, 0], a[1, 1], off[1]), Image.BILINEAR)
    return np.asarray(out)


# ---------------------------------------------------------------------------------------------- by hand
def _smooth(points, rng, n: int = 12) -> np.ndarray:
    """A Catmull-Rom curve through `points` (a hand's path through its control points), with a slow tremor."""
    p = np.asarray(points, float)
    if len(p) < 3:
        curve = np.linspace(p[0], p[-1], n) if len(p) == 2 else p
    else:
        q = np.vstack([p[0], p, p[-1]])
        t = np.linspace(0, 1, n, endpoint=False)[:, None]
        curve = np.vstack([0.5 * (2 * q[i] + (q[i + 1] - q[i - 1]) * t + (2 * q[i - 1] - 5 * q[i] + 4 * q[i + 1]
                                                                          - q[i + 2]) * t ** 2
                                  + (3 * q[i] - q[i - 1] - 3 * q[i + 1] + q[i + 2]) * t ** 3)
                           for i in range(1, len(q) - 2)] + [p[-1:]])
    wobble = np.cumsum(rng.normal(0, 0.004, curve.shape), 0)
    return curve + wobble - np.linspace(0, 1, len(curve))[:, None] * wobble[-1]      # the ends stay put


def _hand(kind: str, what: str, strokes, style: str, rng) -> Drawing:
    """Strokes through jittered control points (unit box), slanted and stretched, at a width of `style`."""
    from PIL import Image, ImageDraw
    width = rng.uniform(*PEN_WIDTHS[style])
    slant, stretch, height = rng.uniform(-0.35, 0.3), rng.uniform(0.6, 1.15), rng.uniform(110, 220)
    m = np.array([[stretch, -slant], [0.0, 1.0]]) * height
    lines = [_smooth(np.asarray(s, float) + rng.normal(0, 0.025, (len(s), 2)), rng) @ m.T for s in strokes]
    allp = np.concatenate(lines)
    lo, hi = allp.min(0), allp.max(0)
    room = np.maximum(CANVAS - width - (hi - lo), 0)
    shift = width / 2 + rng.uniform(0, 1, 2) * room - lo
    img = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(img)
    for s in lines:
        pen(draw, [tuple(p) for p in s + shift], width)
    return Drawing(kind, f"{what} by hand, {style}", np.asarray(img), style)


# Control points in a unit box (x right, y down); a template is a list of strokes, a digit has several.
DIGITS = {
    0: [[[(0.5, 0), (0.1, 0.3), (0.15, 0.8), (0.55, 1), (0.9, 0.6), (0.8, 0.1), (0.45, 0.02)]]],
    1: [[[(0.25, 0.2), (0.5, 0), (0.5, 1)], [(0.2, 1), (0.8, 1)]], [[(0.5, 0), (0.45, 1)]]],
    2: [[[(0.1, 0.2), (0.5, 0), (0.85, 0.25), (0.4, 0.7), (0.1, 1), (0.9, 0.95)]],
        [[(0.15, 0.15), (0.6, 0), (0.8, 0.35), (0.1, 0.95), (0.35, 0.8), (0.5, 1.0), (0.95, 0.95)]]],
    3: [[[(0.1, 0), (0.85, 0), (0.4, 0.42), (0.85, 0.65), (0.6, 1), (0.1, 0.9)]],
        [[(0.15, 0.1), (0.7, 0.05), (0.4, 0.48), (0.85, 0.75), (0.4, 1), (0.1, 0.85)]]],
    4: [[[(0.55, 0), (0.1, 0.6), (0.9, 0.6)], [(0.7, 0.25), (0.7, 1)]],
        [[(0.15, 0), (0.1, 0.55), (0.85, 0.55)], [(0.75, 0), (0.75, 1)]]],
    5: [[[(0.85, 0), (0.25, 0.02), (0.2, 0.45), (0.75, 0.5), (0.8, 0.9), (0.15, 0.95)]],
        [[(0.25, 0.02), (0.2, 0.45), (0.75, 0.5), (0.8, 0.9), (0.15, 0.95)], [(0.25, 0.02), (0.9, 0)]]],
    6: [[[(0.8, 0), (0.2, 0.45), (0.2, 0.9), (0.6, 1), (0.8, 0.7), (0.45, 0.5), (0.2, 0.7)]]],
    7: [[[(0.05, 0), (0.95, 0), (0.35, 1)], [(0.25, 0.5), (0.85, 0.5)]], [[(0.1, 0.1), (0.9, 0), (0.5, 1)]]],
    8: [[[(0.8, 0.1), (0.5, 0), (0.2, 0.2), (0.8, 0.75), (0.5, 1), (0.2, 0.75), (0.8, 0.2), (0.5, 0)]]],
    9: [[[(0.85, 0.2), (0.5, 0), (0.15, 0.25), (0.45, 0.5), (0.85, 0.25), (0.8, 1)]],
        [[(0.85, 0.15), (0.45, 0), (0.15, 0.3), (0.5, 0.5), (0.85, 0.2), (0.7, 0.75), (0.35, 1)]]],
}
HAND = {
    "Ж": [[(0, 0), (0.5, 0.5), (0, 1)], [(1, 0), (0.5, 0.5), (1, 1)], [(0.5, 0), (0.5, 1)]],
    "Ш": [[(0, 0), (0, 1), (1, 1), (1, 0)], [(0.5, 0), (0.5, 1)]],
    "Я": [[(0.8, 1), (0.8, 0), (0.3, 0.05), (0.2, 0.3), (0.8, 0.5)], [(0.6, 0.5), (0.1, 1)]],
    "Ф": [[(0.5, 0), (0.5, 1)], [(0.5, 0.25), (0.1, 0.4), (0.5, 0.7), (0.9, 0.4), (0.5, 0.25)]],
    "π": [[(0, 0.1), (1, 0)], [(0.3, 0.05), (0.25, 1)], [(0.7, 0.05), (0.8, 1)]],
    "λ": [[(0.1, 0), (0.9, 1)], [(0.5, 0.45), (0.1, 1)]],
    "Σ": [[(1, 0), (0, 0), (0.5, 0.5), (0, 1), (1, 1)]],
    "Ω": [[(0, 1), (0.35, 0.95), (0.1, 0.4), (0.5, 0), (0.9, 0.4), (0.65, 0.95), (1, 1)]],
    "ψ": [[(0, 0.1), (0.2, 0.5), (0.5, 0.6), (0.8, 0.5), (1, 0.1)], [(0.5, 0), (0.5, 1)]],
    "ω": [[(0.2, 0), (0, 0.6), (0.3, 1), (0.5, 0.5), (0.7, 1), (1, 0.6), (0.8, 0)]],
    "€": [[(0.9, 0.1), (0.5, 0), (0.15, 0.5), (0.5, 1), (0.9, 0.9)], [(0, 0.4), (0.6, 0.4)], [(0, 0.6), (0.6, 0.6)]],
    "÷": [[(0, 0.5), (1, 0.5)], [(0.5, 0.15)], [(0.5, 0.85)]],
    "√": [[(0, 0.6), (0.2, 0.5), (0.4, 1), (0.7, 0), (1, 0)]],
    "∞": [[(0.5, 0.5), (0.25, 0.2), (0, 0.5), (0.25, 0.8), (0.75, 0.2), (1, 0.5), (0.75, 0.8), (0.5, 0.5)]],
    "≠": [[(0, 0.35), (1, 0.35)], [(0, 0.65), (1, 0.65)], [(0.75, 0), (0.25, 1)]],
    "✓": [[(0, 0.55), (0.3, 1), (1, 0)]],
    "♪": [[(0.5, 0.9), (0.5, 0)], [(0.5, 0), (0.9, 0.2)],
          [(0.5, 0.85), (0.3, 0.75), (0.15, 0.9), (0.3, 1), (0.5, 0.9)]],
}
SHAPES = {   # no diamond or cloud: a hand's rounded corners make either a 0
    "flower": [[(0.5, 0.5), (0.3, 0), (0.7, 0), (0.5, 0.5), (1, 0.3), (1, 0.7), (0.5, 0.5), (0.7, 1), (0.3, 1),
                (0.5, 0.5), (0, 0.7), (0, 0.3), (0.5, 0.5)]],
    "fish": [[(1, 0.2), (0.8, 0.5), (1, 0.8), (0.6, 0.5), (0.3, 0.2), (0, 0.5), (0.3, 0.8), (0.6, 0.5)]],
    "tree": [[(0.5, 0), (0.1, 0.6), (0.9, 0.6), (0.5, 0)], [(0.5, 0.6), (0.5, 1)]],
    "envelope": [[(0, 0.2), (1, 0.2), (1, 0.8), (0, 0.8), (0, 0.2), (0.5, 0.55), (1, 0.2)]],
    "ladder": [[(0.2, 0), (0.2, 1)], [(0.8, 0), (0.8, 1)], [(0.2, 0.2), (0.8, 0.2)], [(0.2, 0.5), (0.8, 0.5)],
               [(0.2, 0.8), (0.8, 0.8)]],
    "stick figure": [[(0.5, 0.25), (0.5, 0.65), (0.2, 1)], [(0.5, 0.65), (0.8, 1)], [(0.15, 0.4), (0.85, 0.4)],
                     [(0.5, 0.25), (0.35, 0.12), (0.5, 0), (0.65, 0.12), (0.5, 0.25)]],
    "boat": [[(0, 0.6), (1, 0.6), (0.8, 0.9), (0.2, 0.9), (0, 0.6)], [(0.5, 0.6), (0.5, 0), (0.85, 0.45), (0.5, 0.45)]],
    "lightning": [[(0.6, 0), (0.2, 0.55), (0.6, 0.5), (0.35, 1)]],
}


def _scribble(i: int, rng) -> Drawing:
    """One of four doodles, in turn: hatching, dots, a filled blob, a line of pretend handwriting."""
    from PIL import Image, ImageDraw
    img = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(img)
    how = ("hatching", "dots", "blob", "handwriting")[i % 4]
    width = rng.uniform(6, 30)
    if how == "hatching":
        angle, n = rng.uniform(0, math.pi), int(rng.integers(4, 9))
        d = np.array([math.cos(angle), math.sin(angle)]) * rng.uniform(60, 120)
        for k in range(n):
            c = rng.uniform(70, CANVAS - 70, 2) if k == 0 else c + np.array([-d[1], d[0]]) / 4
            pen(draw, [tuple(np.clip(c - d, 10, CANVAS - 10)), tuple(np.clip(c + d, 10, CANVAS - 10))], width)
    elif how == "dots":
        for p in rng.uniform(30, CANVAS - 30, (int(rng.integers(5, 15)), 2)):
            pen(draw, [tuple(p)], width)
    elif how == "blob":
        a = np.sort(rng.uniform(0, 2 * math.pi, 9))
        r = rng.uniform(40, 110, 9)
        c = rng.uniform(110, CANVAS - 110, 2)
        draw.polygon([tuple(c + rr * np.array([math.cos(t), math.sin(t)])) for t, rr in zip(a, r)], fill=255)
    else:
        x = np.linspace(0.05, 0.95, int(rng.integers(14, 26)))
        y = 0.5 + rng.normal(0, 0.15, len(x)) * np.where(np.arange(len(x)) % 2, 1, -1)
        curve = _smooth(np.stack([x, y], 1), rng, 6) * CANVAS
        pen(draw, [tuple(p) for p in curve], min(width, 14))
    return Drawing("scribble", f"scribble #{i}, {how}", np.asarray(img), how)


if __name__ == "__main__":
    from PIL import Image
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m aecore.labs.drawset2 OUT.png")
    if missing_fonts():
        print(f"fonts missing, left out: {missing_fonts()}", file=sys.stderr)
    Image.fromarray(contact_sheet(build())).save(sys.argv[1])

"""Turn a drawing or a photo of a digit into MNIST form (LeCun's procedure), and decode uploads safely.

MNIST digits are white on black, their ink's bounding box scaled to fit 20x20 (aspect ratio and grey levels
kept), then placed in a 28x28 field so that the centre of mass sits at (14.0, 14.0) in 0-based pixel
coordinates — measured on the training set, not the field's middle (13.5) — to a fraction of a pixel.
"""
from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F

INK = 0.1              # a pixel brighter than this (after inversion) counts as ink
BOX = 20               # the ink's longest side after scaling
SIDE = 28
CENTRE = 14.0          # where MNIST's centres of mass lie, 0-based (training-set mean 13.997, 14.006; std 0.29)
MAX_PIXELS = 25_000_000   # uploads above this are refused (decompression-bomb guard)
MAX_SIDE = 1024           # larger uploads are shrunk while decoding; a digit needs far less


class ImageError(ValueError):
    """An upload that is not a usable PNG/JPEG image; the message says why."""


def load_image(blob: bytes) -> np.ndarray:
    """Decode PNG/JPEG bytes into an array (H, W) or (H, W, 3|4), refusing non-images and giant images.

    The size is checked from the header before any pixel is decoded; Pillow's own decompression-bomb
    guard stays on as well. Nothing global is changed, so sessions may call this at the same time.
    """
    from PIL import Image, UnidentifiedImageError

    if not blob:
        raise ImageError("the file is empty")
    try:
        img = Image.open(io.BytesIO(blob))   # reads the header only
        if img.format not in ("PNG", "JPEG"):
            raise ImageError(f"this is a {img.format} file; upload a PNG or JPEG image")
        if img.width * img.height > MAX_PIXELS:
            raise ImageError(f"the image is too large: {img.width}x{img.height} pixels, more than the {MAX_PIXELS:,} "
                             f"allowed; upload a smaller picture of the digit")
        img.draft("L", (MAX_SIDE, MAX_SIDE))   # JPEG: decode at reduced size directly
        img.thumbnail((MAX_SIDE, MAX_SIDE))
        img.load()
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise ImageError(f"the image is too large (over {MAX_PIXELS:,} pixels); upload a smaller picture") from None
    except UnidentifiedImageError:
        raise ImageError("this file is not an image Pillow can read; upload a PNG or JPEG") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"the image is corrupt or truncated ({e})") from None
    if img.mode not in ("L", "RGB", "RGBA"):
        img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
    return np.asarray(img)


def to_grey(image: np.ndarray) -> np.ndarray:
    """Any of (H, W), (H, W, 1|3|4), uint8 or float, -> float32 (H, W) in [0, 1] with the ink bright."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or min(a.shape[:2]) < 1:
        raise ValueError(f"expected a grey, RGB or RGBA image array, got shape {a.shape}")
    a = a.astype(np.float32)
    if np.issubdtype(np.asarray(image).dtype, np.integer) or a.max() > 1.0:
        a /= 255.0
    alpha = None
    if a.ndim == 3:
        if a.shape[2] == 4:
            alpha = a[..., 3]
        a = a[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    if alpha is not None and alpha.min() < 0.99:
        # Transparent background: the visible strokes are the ink, whatever their colour.
        drawn = alpha > 0.5
        ink_is_dark = drawn.any() and a[drawn].mean() < 0.5
        a = alpha * (1.0 - a if ink_is_dark else a)
    else:
        border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
        if np.median(border) > 0.5:   # dark digit on a light background: invert
            a = 1.0 - a
    return np.clip(a, 0.0, 1.0)


def to_mnist(image: np.ndarray) -> np.ndarray:
    """An RGBA/RGB/grey array of any size -> float32 (28, 28) in [0, 1], white digit centred on black.

    Raises ValueError if the image holds no ink.
    """
    a = to_grey(image)
    rows, cols = np.nonzero(a > INK)
    if len(rows) == 0:
        raise ValueError("the image is blank: no stroke or digit found")
    a = a[rows.min():rows.max() + 1, cols.min():cols.max() + 1]      # crop to the ink
    h, w = a.shape
    scale = BOX / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    t = torch.from_numpy(np.ascontiguousarray(a))[None, None]
    box = F.interpolate(t, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)[0, 0]
    box = box.clamp(0, 1).numpy()
    cy, cx = centre_of_mass(box)
    top = float(np.clip(CENTRE - cy, 0, SIDE - nh))   # kept inside the field when the ink is very lopsided
    left = float(np.clip(CENTRE - cx, 0, SIDE - nw))
    return place(box, top, left)


def place(box: np.ndarray, top: float, left: float) -> np.ndarray:
    """`box` on a black SIDE×SIDE field with its pixel (0, 0) at (top, left), fractions by linear interpolation
    (the centre of mass moves by exactly the shift; nothing is rounded). The box must fit inside the field."""
    ti, li = int(np.floor(top)), int(np.floor(left))
    fy, fx = top - ti, left - li
    h, w = box.shape
    field = np.zeros((SIDE + 1, SIDE + 1), dtype=np.float32)      # one spare row and column for the fraction
    field[ti:ti + h, li:li + w] = box
    field[1:] = (1 - fy) * field[1:] + fy * field[:-1]             # down by fy
    field[0] *= 1 - fy
    field[:, 1:] = (1 - fx) * field[:, 1:] + fx * field[:, :-1]    # right by fx
    field[:, 0] *= 1 - fx
    return np.ascontiguousarray(field[:SIDE, :SIDE])


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    """(row, col) centre of mass of a non-blank grey image."""
    a = np.asarray(image, dtype=np.float64)
    m = a.sum()
    return (float((a.sum(axis=1) * np.arange(a.shape[0])).sum() / m),
            float((a.sum(axis=0) * np.arange(a.shape[1])).sum() / m))

"""A folder or zip of one's own pictures as a data set, and the refusals that keep a bad upload harmless.

Layouts, recognised from the paths alone: a flat folder of pictures (one class, named for the folder); one
sub-folder per class; MVTec AD (`train/good/`, `test/good/`, `test/<defect>/`, optional
`ground_truth/<defect>/<name>_mask.png`), the layout of the anomaly-detection benchmark; and a generic
`train/<class>/` + `test/<class>/`. Folders and zips holding everything under one top folder count as that folder.
Every picture becomes side x side (letterboxed on black or centre-cropped, then resized by Pillow), grey or RGB,
uint8, so the models read a visitor's set as they read MNIST. A file that is not a picture, is cut short or
declares more pixels than a picture may have is skipped with its reason; what would endanger the machine or
exceed the limits refuses the set whole (`ImageSetError`; the zip's own checks live in `aecore.engine.archive`).
"""
from __future__ import annotations

import hashlib
import io
import statistics
from dataclasses import dataclass, replace
from pathlib import PurePosixPath

import numpy as np
import torch
from PIL import Image, ImageOps

from aecore.engine.archive import (FORMATS, HOSTED, LOCAL, FolderSource, ImageSetError, PictureLimits, Skipped,
                                   Source, Unreadable, open_picture, open_source, sizes)
from aecore.engine.data import Data, Split, load_picture_set
from aecore.engine.fields import COLORS, SIDES   # the sides and colours a model takes: one list

__all__ = ["ImageSetConfig", "ImageSet", "Skipped", "PictureLimits", "HOSTED", "LOCAL", "ImageSetError",
           "load_images"]

FITS = ("letterbox", "crop")
SUFFIXES = {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".dib", ".webp", ".gif"}
HEADER_BYTES = 256 * 1024    # enough of a file for its declared size (a JPEG's EXIF block is at most 64 kB)
COLOUR_SPREAD = 8            # a pixel whose channels differ by more than this is coloured (JPEG noise is less)


@dataclass(frozen=True)
class ImageSetConfig:
    """How pictures become tensors; None settings are resolved from the pictures (ImageSet.config holds them)."""
    side: int | None = None       # 28, 32 or 64; None = the nearest to the pictures' median side
    color: str | None = None      # "grey" or "rgb"; None = "rgb" when any picture has colour
    fit: str = "letterbox"        # "letterbox" pads to a square keeping the aspect; "crop" takes the centre square
    test_fraction: float = 0.2    # each class's share held out for testing when the set has no test folder
    seed: int = 0                 # the shuffle that picks the held-out pictures

    def __post_init__(self):
        if self.side is not None and (isinstance(self.side, bool) or self.side not in SIDES):
            raise ValueError(f"side must be one of {SIDES} or None (from the pictures), got {self.side!r}")
        if self.color is not None and self.color not in COLORS:
            raise ValueError(f"color must be 'grey', 'rgb' or None (from the pictures), got {self.color!r}")
        if self.fit not in FITS:
            raise ValueError(f"fit must be 'letterbox' or 'crop', got {self.fit!r}")
        if isinstance(self.test_fraction, bool) or not isinstance(self.test_fraction, (int, float)) \
                or not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must be a number between 0 and 1 (exclusive), got {self.test_fraction!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a whole number >= 0, got {self.seed!r}")


@dataclass(frozen=True, eq=False)
class ImageSet:
    """A visitor's pictures as a data set: `data` (uint8 (N, S, S) grey or (N, 3, S, S) RGB; val None)."""
    data: Data
    class_names: tuple[str, ...]
    config: ImageSetConfig          # with side and color resolved
    layout: str                     # "flat", "folders", "train-test" or "mvtec"
    good_class: int | None          # MVTec: the index of "good"
    masks: torch.Tensor | None      # MVTec: (N_test, S, S) uint8, 1 = defect pixel; zeros where no mask
    skipped: tuple[Skipped, ...]
    source_name: str
    fingerprint: str                # sha256 over the used files' names and bytes, sorted by name (16 hex digits)

    def describe(self) -> dict:
        """What a checkpoint records of the set (JSON-friendly)."""
        def counts(split: Split) -> dict:
            n = torch.bincount(split.labels, minlength=len(self.class_names)).tolist()
            return {name: k for name, k in zip(self.class_names, n)}
        c = self.config
        return {"name": self.source_name, "layout": self.layout, "side": c.side, "color": c.color, "fit": c.fit,
                "test_fraction": c.test_fraction, "seed": c.seed, "class_names": list(self.class_names),
                "good_class": self.good_class, "counts": {"train": counts(self.data.train),
                                                          "test": counts(self.data.test)},
                "skipped": len(self.skipped), "fingerprint": self.fingerprint}


def saved_set(path, data: Data | None = None) -> ImageSet:
    """A set `data.save_picture_set` wrote, as the ImageSet it was made from (its splits, or `data` when the caller
    holds them already; its masks and description; the skipped files are not kept: an empty list). DataError when
    the file is gone or not a picture set."""
    train, test, masks, about = load_picture_set(path)
    cfg = ImageSetConfig(side=about["side"], color=about["color"], fit=about["fit"],
                         test_fraction=about["test_fraction"], seed=about["seed"])
    return ImageSet(data or Data(train, None, test), tuple(about["class_names"]), cfg, about["layout"],
                    about["good_class"], masks, (), about["name"], about["fingerprint"])


# ---------------------------------------------------------------------------------------------- loading
def load_images(source, cfg: ImageSetConfig = ImageSetConfig(), limits: PictureLimits | None = None,
                workdir=None, need_classes: int = 1) -> ImageSet:
    """The pictures of a folder, a .zip path, zip bytes or a zip file object (an upload) as an ImageSet.

    `limits` default to LOCAL (pass HOSTED on the hosted demo); a spool of an upload that cannot seek goes
    under `workdir`; `need_classes` refuses sets with fewer classes (2 for a classifier)."""
    limits = limits or LOCAL
    if cfg.side is not None and cfg.side > limits.max_side:
        raise ImageSetError(f"{limits.who} takes sides up to {limits.max_side}; {cfg.side} was asked")
    src = open_source(source, limits, workdir)
    try:
        return _load(src, cfg, limits, need_classes)
    finally:
        src.close()


def _load(src: Source, cfg: ImageSetConfig, limits: PictureLimits, need_classes: int) -> ImageSet:
    skipped = list(src.skipped)
    name, prefix, rels = _strip_top(src.name, src.files)
    layout, entries, mask_files, loose = _layout(rels, name)
    skipped += [Skipped(prefix + r, why) for r, why in loose]
    if len(entries) > limits.max_pictures:
        raise ImageSetError(f"{limits.who} takes up to {limits.max_pictures:,} pictures; {name} holds "
                            f"{len(entries):,}")
    if isinstance(src, FolderSource):
        total = sum(src.size(prefix + e[0]) for e in entries)
        if total > limits.max_zip_bytes:
            most, this = sizes(limits.max_zip_bytes, total)
            raise ImageSetError(f"{limits.who} takes up to {most} of pictures; {name} holds {this}")
    side = cfg.side or _median_side(src, prefix, entries, cfg.fit, limits)
    digests, kept, arrays = {}, [], []
    for rel, split, cls in entries:
        blob = src.read(prefix + rel)
        try:
            arrays.append(_decode(blob, side, cfg.fit, limits.max_pixels))
        except Unreadable as e:
            skipped.append(Skipped(prefix + rel, str(e)))
            continue
        digests[rel] = hashlib.sha256(blob).hexdigest()
        kept.append((rel, split, cls))
    if not kept:
        reasons = "; ".join(f"{s.file}: {s.reason}" for s in skipped[:3])
        raise ImageSetError(f"no pictures in {name} (AE Lab reads PNG, JPEG, BMP, WebP and GIF)"
                            + (f"; {len(skipped)} file(s) skipped, e.g. {reasons}" if skipped else ""))
    class_names = _class_names(layout, kept)
    if len(class_names) < need_classes:
        raise ImageSetError(f"this needs at least {need_classes} classes (one sub-folder of pictures per class); "
                            f"{name} has {len(class_names)}: {', '.join(class_names)}")
    color = cfg.color or ("rgb" if any(a.ndim == 3 and _coloured(a) for a in arrays) else "grey")
    images = torch.from_numpy(np.stack([_as(color, a) for a in arrays]))
    if color == "rgb":
        images = images.permute(0, 3, 1, 2).contiguous()              # (N, S, S, 3) -> (N, 3, S, S)
    labels = torch.tensor([class_names.index(cls) for _, _, cls in kept], dtype=torch.int64)
    test = _held_out(kept, labels, cfg) if layout in ("flat", "folders") else \
        torch.tensor([split == "test" for _, split, _ in kept])
    order = torch.argsort(labels * len(kept) + torch.arange(len(kept)), stable=True)   # by class, then by name
    train_i, test_i = order[~test[order]], order[test[order]]
    if len(train_i) == 0:
        raise ImageSetError(f"{name} has no training pictures (the train folder holds none that could be read)")
    masks = None
    if layout == "mvtec":
        masks = torch.from_numpy(np.stack([_mask(src, prefix, mask_files, kept[i][0], side, cfg.fit, limits,
                                                 skipped, digests) for i in test_i.tolist()]
                                          or np.zeros((0, side, side), np.uint8)))
    fingerprint = hashlib.sha256("".join(f"{k}\0{digests[k]}\n" for k in sorted(digests)).encode()).hexdigest()
    data = Data(Split(images[train_i], labels[train_i]), None, Split(images[test_i], labels[test_i]))
    return ImageSet(data, class_names, replace(cfg, side=side, color=color), layout,
                    class_names.index("good") if layout == "mvtec" else None, masks, tuple(skipped), name,
                    fingerprint[:16])


def _strip_top(name: str, files: list[str]) -> tuple[str, str, list[str]]:
    """(the set's name, the prefix taken off, the paths under it): one top folder holding everything is the set."""
    prefix = ""
    while files and all("/" in f for f in files) and len({f.split("/", 1)[0] for f in files}) == 1:
        top = files[0].split("/", 1)[0]
        name, prefix, files = top, prefix + top + "/", [f.split("/", 1)[1] for f in files]
    return name, prefix, files


def _layout(rels: list[str], name: str):
    """(layout, [(path, split or None, class)], {(defect, stem): mask path}, [(path, why skipped)])."""
    loose = [(r, f"not a picture ({PurePosixPath(r).suffix or 'no extension'}); AE Lab reads PNG, JPEG, BMP, "
                 f"WebP and GIF") for r in rels if PurePosixPath(r).suffix.lower() not in SUFFIXES]
    rels = [r for r in rels if PurePosixPath(r).suffix.lower() in SUFFIXES]
    parts = [r.split("/") for r in rels]
    tops = {p[0].lower() for p in parts if len(p) > 1}
    entries, masks = [], {}
    if {"train", "test"} <= tops:
        for r, p in zip(rels, parts):
            if p[0].lower() == "ground_truth" and len(p) == 3 and p[2].lower().endswith("_mask.png"):
                masks[(p[1], p[2][:-len("_mask.png")])] = r
            elif len(p) >= 3 and p[0].lower() in ("train", "test"):
                entries.append((r, p[0].lower(), p[1]))
            else:
                loose.append((r, "outside the class folders of train/ and test/ (a validation folder is not read)"))
        mvtec = {cls for _, split, cls in entries if split == "train"} == {"good"}
        if not mvtec:
            loose += [(r, "a mask, read only in the MVTec AD layout (train/good/ alone)") for r in masks.values()]
        return ("mvtec" if mvtec else "train-test"), entries, (masks if mvtec else {}), loose
    if tops:
        for r, p in zip(rels, parts):
            if len(p) == 1:
                loose.append((r, "beside the class folders, in none of them"))
            else:
                entries.append((r, None, p[0]))
        return "folders", entries, masks, loose
    return "flat", [(r, None, name) for r in rels], masks, loose


def _class_names(layout: str, kept) -> tuple[str, ...]:
    names = sorted({cls for _, _, cls in kept})
    if layout == "mvtec":
        names = ["good"] + [n for n in names if n != "good"]
    return tuple(names)


def _held_out(kept, labels: torch.Tensor, cfg: ImageSetConfig) -> torch.Tensor:
    """A (N,) bool mask of the test pictures: test_fraction of each class (at least one, never all), shuffled by
    the seed; classes are drawn in order, each picture's place in its class by name."""
    rng = np.random.default_rng(cfg.seed)
    test = torch.zeros(len(kept), dtype=torch.bool)
    for c in range(int(labels.max()) + 1):
        members = torch.nonzero(labels == c).flatten().numpy()
        n = len(members)
        n_test = min(n - 1, max(1, round(n * cfg.test_fraction))) if n > 1 else 0
        test[members[rng.permutation(n)[:n_test]]] = True
    return test


def _median_side(src: Source, prefix: str, entries, fit: str, limits: PictureLimits) -> int:
    """The allowed side nearest to the pictures' median side (long side for letterbox, short for crop), read
    from the headers alone; ties go to the smaller."""
    sides = []
    for rel, _, _ in entries:
        try:
            with Image.open(io.BytesIO(src.read(prefix + rel, HEADER_BYTES)), formats=FORMATS) as img:
                sides.append(max(img.size) if fit == "letterbox" else min(img.size))
        except Exception:   # noqa: BLE001 — the full read decides why; a header we cannot read just doesn't vote
            pass
    median = statistics.median(sides) if sides else SIDES[0]
    allowed = [s for s in SIDES if s <= limits.max_side]
    return min(allowed, key=lambda s: (abs(s - median), s))


# ---------------------------------------------------------------------------------------------- decoding
def _decode(blob: bytes, side: int, fit: str, max_pixels: int) -> np.ndarray:
    """uint8 (side, side) for a grey picture or (side, side, 3) for a colour one."""
    img = open_picture(blob, max_pixels)
    try:
        img.draft(img.mode, (2 * side, 2 * side))   # JPEG: decode at a reduced scale, still twice the side or more
        img.load()                                 # GIF, WebP: the first frame
        img = _fit(_flatten(ImageOps.exif_transpose(img)), side, fit)
    except Exception as e:   # noqa: BLE001 — OSError for a truncated file; damaged data may raise others
        raise Unreadable(f"truncated or damaged ({e})") from None
    return np.asarray(img)


def _flatten(img: Image.Image) -> Image.Image:
    """Mode "L" or "RGB": 16-bit scaled to 8, palettes expanded, transparency composited on white."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        wide = np.asarray(img).astype(np.int64).clip(0, 65535)
        return Image.fromarray(((wide + 128) // 257).astype(np.uint8), "L")   # 257 * k -> k
    if img.mode in ("LA", "La", "PA", "RGBA", "RGBa", "P") or "transparency" in img.info:
        grey = img.mode in ("L", "LA", "La")
        over = Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), img.convert("RGBA"))
        return over.convert("L" if grey else "RGB")
    return img if img.mode in ("L", "RGB") else img.convert("L" if img.mode == "1" else "RGB")


def _fit(img: Image.Image, side: int, fit: str, resample=Image.Resampling.LANCZOS) -> Image.Image:
    """side x side: the centre square resized, or the whole picture resized to fit and centred on black."""
    w, h = img.size
    if fit == "crop":
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        return img.resize((side, side), resample, box=(left, top, left + s, top + s), reducing_gap=3.0)
    scale = side / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    canvas = Image.new(img.mode, (side, side), 0)
    canvas.paste(img.resize((nw, nh), resample, reducing_gap=3.0), ((side - nw) // 2, (side - nh) // 2))
    return canvas


def _coloured(rgb: np.ndarray) -> bool:
    return int((rgb.max(axis=2).astype(np.int16) - rgb.min(axis=2)).max()) > COLOUR_SPREAD


def _as(color: str, a: np.ndarray) -> np.ndarray:
    """One decoded picture in the set's colour: grey by Pillow's own weights (ITU-R 601-2), or grey repeated."""
    if color == "rgb":
        return a if a.ndim == 3 else np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim == 2:
        return a
    w = a.astype(np.uint32)
    return ((w[..., 0] * 19595 + w[..., 1] * 38470 + w[..., 2] * 7471 + 0x8000) >> 16).astype(np.uint8)


def _mask(src, prefix, mask_files, rel, side, fit, limits, skipped, digests) -> np.ndarray:
    """(side, side) uint8, 1 = defect pixel, fitted as its picture was; zeros when there is no mask file."""
    p = rel.split("/")
    path = mask_files.get((p[1], PurePosixPath(p[-1]).stem))
    if path is None:
        return np.zeros((side, side), np.uint8)
    blob = src.read(prefix + path)
    try:
        img = open_picture(blob, limits.max_pixels)
        img.load()
        mask = _fit(_flatten(img).convert("L"), side, fit, Image.Resampling.BOX)
    except Exception as e:   # noqa: BLE001 — as for a picture: the set goes on without it
        skipped.append(Skipped(prefix + path, f"a mask left out: {e}"))
        return np.zeros((side, side), np.uint8)
    digests[path] = hashlib.sha256(blob).hexdigest()
    return (np.asarray(mask) >= 128).astype(np.uint8)

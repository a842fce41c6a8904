"""One's own pictures as a data set: formats, layouts, sides and colours, letterbox vs crop, the held-out split,
and every refusal (not a picture, truncated, decompression and zip bombs, paths out of a zip, links, limits)."""
from __future__ import annotations

import io
import json
import os
import stat
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from aecore.engine import archive
from aecore.engine.data import DataError
from aecore.engine.images import (HOSTED, ImageSetConfig, ImageSetError, PictureLimits, Skipped, load_images)

RED, BLUE, GREEN = (220, 20, 20), (20, 20, 220), (20, 200, 20)


def encode(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def write(root: Path, files: dict[str, bytes]) -> Path:
    for name, blob in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(blob)
    return root


def zipped(files: dict[str, bytes], path: Path | None = None) -> bytes | Path:
    buf = io.BytesIO() if path is None else path
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, blob in files.items():
            z.writestr(name, blob)
    return buf.getvalue() if path is None else path


def solid(colour, size=(32, 32), mode="RGB") -> bytes:
    return encode(Image.new(mode, size, colour))


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def bomb_png(width: int, height: int) -> bytes:
    """A few hundred bytes declaring width x height grey pixels (the data itself is a single short row)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + \
        chunk(b"IEND", b"")


# ---------------------------------------------------------------------------------------------- formats
def test_every_format_and_mode_decodes_to_its_colour(tmp_path):
    rgba = Image.new("RGBA", (30, 30), (0, 0, 255, 0))               # fully transparent: white paper
    palette = Image.new("RGB", (30, 30), GREEN).convert("P", palette=Image.Palette.ADAPTIVE)
    wide = Image.fromarray(np.full((31, 31), 257 * 77, np.uint16))   # 16-bit grey: 257 * 77 -> 77
    gif = Image.new("P", (30, 30))
    gif.putpalette(list(RED) + list(BLUE) + [0] * 762)
    second = Image.new("P", (30, 30), 1)
    second.putpalette(list(RED) + list(BLUE) + [0] * 762)
    files = {"a_png.png": solid(RED), "b_jpeg.jpg": encode(Image.new("RGB", (37, 23), BLUE), "JPEG", quality=95),
             "c_bmp.bmp": encode(Image.new("RGB", (30, 30), GREEN), "BMP"),
             "d_webp.webp": encode(Image.new("RGB", (30, 30), RED), "WEBP", lossless=True),
             "e_gif.gif": encode(gif, "GIF", save_all=True, append_images=[second]),   # first frame red
             "f_grey.png": solid(90, mode="L"), "g_palette.png": encode(palette), "h_rgba.png": encode(rgba),
             "i_16bit.png": encode(wide), "j_big.jpg": encode(Image.new("RGB", (1501, 1103), RED), "JPEG"),
             "k_bilevel.png": encode(Image.new("1", (29, 29), 1))}
    # Each picture in a class of its own: a class of one is never held out, and labels follow the names.
    s = load_images(write(tmp_path / "pics", {f"{n[:-4]}/{n}": b for n, b in files.items()}),
                    ImageSetConfig(side=28, fit="crop"))
    assert s.skipped == () and s.config.color == "rgb" and len(s.data.test) == 0
    assert s.class_names == tuple(n[:-4] for n in sorted(files)) and s.data.train.labels.tolist() == list(range(11))
    got = s.data.train.images
    assert got.shape == (11, 3, 28, 28) and got.dtype == torch.uint8
    expected = [RED, BLUE, GREEN, RED, RED, (90,) * 3, GREEN, (255,) * 3, (77,) * 3, RED, (255,) * 3]
    for name, picture, colour in zip(s.class_names, got, expected):
        error = (picture.int() - torch.tensor(colour)[:, None, None]).abs().max()
        assert error <= (8 if "jpeg" in name or "big" in name else 1), (name, colour, picture[:, 14, 14])


def test_colour_and_side_defaults_follow_the_pictures(tmp_path):
    grey_rgb = {f"{i}.png": solid((70, 70, 70), size=(40 + i, 30)) for i in range(5)}   # RGB mode, no colour
    s = load_images(write(tmp_path / "grey", grey_rgb))
    assert s.config.color == "grey" and s.config.side == 32           # median long side 42: nearest is 32
    assert s.data.train.images.shape[1:] == (32, 32)
    assert set(s.data.train.images.unique().tolist()) <= {0, 70}
    big = {f"{i}.png": solid(RED, size=(300, 200)) for i in range(3)} | {"grey.png": solid(50, mode="L")}
    s = load_images(write(tmp_path / "colour", big))
    assert s.config.color == "rgb" and s.config.side == 64           # at most 64
    assert s.data.train.images.shape[1:] == (3, 64, 64)
    assert load_images(tmp_path / "colour", ImageSetConfig(side=28, color="grey")).data.train.images.shape[1:] \
        == (28, 28)
    small = {f"{i}.png": solid(RED, size=(10, 12)) for i in range(3)}
    assert load_images(write(tmp_path / "small", small)).config.side == 28
    with pytest.raises(ImageSetError, match="takes sides up to 32; 64 was asked"):
        load_images(tmp_path / "small", ImageSetConfig(side=64), limits=PictureLimits(10**9, 100, 32))


def test_grey_of_a_colour_picture_is_pillows_grey(tmp_path):
    s = load_images(write(tmp_path / "p", {"a.png": solid(RED), "b.png": solid(BLUE)}),
                    ImageSetConfig(side=32, color="grey", test_fraction=0.5))
    greys = sorted(int(p[5, 5]) for p in torch.cat([s.data.train.images, s.data.test.images]))
    assert greys == sorted(Image.new("RGB", (1, 1), c).convert("L").getpixel((0, 0)) for c in (RED, BLUE))


def test_letterbox_pads_and_crop_takes_the_centre(tmp_path):
    im = Image.new("RGB", (112, 56), RED)
    im.paste(BLUE, (56, 0, 112, 56))                                   # left half red, right half blue
    folder = write(tmp_path / "p", {"a.png": encode(im), "b.png": encode(im)})
    box = load_images(folder, ImageSetConfig(side=28, fit="letterbox", test_fraction=0.5)).data.train.images[0]
    assert box[:, :7].sum() == 0 and box[:, 21:].sum() == 0           # 28 x 14 in rows 7..20, black around
    assert (box[:, 7:21, :10] - torch.tensor(RED)[:, None, None]).abs().max() <= 2
    assert (box[:, 7:21, 18:] - torch.tensor(BLUE)[:, None, None]).abs().max() <= 2
    crop = load_images(folder, ImageSetConfig(side=28, fit="crop", test_fraction=0.5)).data.train.images[0]
    assert crop.min() > 0                                              # no bars: the centre 56 x 56, resized
    assert (crop[:, :, :11] - torch.tensor(RED)[:, None, None]).abs().max() <= 2
    assert (crop[:, :, 17:] - torch.tensor(BLUE)[:, None, None]).abs().max() <= 2


# ---------------------------------------------------------------------------------------------- layouts
def test_flat_folder_is_one_class_named_for_it(tmp_path):
    s = load_images(write(tmp_path / "shoes", {f"{i}.png": solid(RED) for i in range(10)}))
    assert s.layout == "flat" and s.class_names == ("shoes",) and s.source_name == "shoes"
    assert (len(s.data.train), len(s.data.test)) == (8, 2) and s.data.val is None and s.masks is None
    with pytest.raises(ImageSetError, match="at least 2 classes .* has 1: shoes"):
        load_images(tmp_path / "shoes", need_classes=2)


def test_class_folders_and_a_zip_under_one_top_folder(tmp_path):
    files = {f"set/{c}/{i}.png": solid(col) for c, col in (("cat", RED), ("dog", BLUE)) for i in range(5)}
    files["set/stray.png"] = solid(RED)
    files["set/__MACOSX/._0.png"] = b"resource fork"                   # litter, ignored without a word
    folder = write(tmp_path / "f", files)
    s = load_images(folder / "set", need_classes=2)
    assert s.layout == "folders" and s.class_names == ("cat", "dog")
    assert s.skipped == (Skipped("stray.png", "beside the class folders, in none of them"),)
    z = load_images(zipped(files), need_classes=2)                     # bytes, one top folder "set"
    assert z.source_name == "set" and z.class_names == ("cat", "dog") and z.fingerprint == s.fingerprint
    assert torch.equal(z.data.train.images, s.data.train.images)
    d = z.describe()
    assert json.loads(json.dumps(d)) == d
    assert d["counts"] == {"train": {"cat": 4, "dog": 4}, "test": {"cat": 1, "dog": 1}} and d["skipped"] == 1


def test_train_test_folders(tmp_path):
    files = {f"{split}/{c}/{i}.png": solid(RED) for split, n in (("train", 4), ("test", 2))
             for c in ("a", "b") for i in range(n)}
    files |= {"val/a/0.png": solid(RED), "train/loose.png": solid(RED), "LICENSE.txt": b"terms"}
    s = load_images(zipped(files, tmp_path / "tt.zip"))
    assert s.layout == "train-test" and s.class_names == ("a", "b") and s.good_class is None
    assert sorted(k.file for k in s.skipped) == ["LICENSE.txt", "train/loose.png", "val/a/0.png"]
    assert s.data.train.labels.tolist() == [0] * 4 + [1] * 4 and s.data.test.labels.tolist() == [0, 0, 1, 1]
    assert s.source_name == "tt"


def test_mvtec_layout_with_masks(tmp_path):
    files = {f"bottle/train/good/{i:03}.png": solid(RED, (64, 64)) for i in range(6)}
    files |= {f"bottle/test/good/{i:03}.png": solid(RED, (64, 64)) for i in range(2)}
    files |= {f"bottle/test/{d}/{i:03}.png": solid(BLUE, (64, 64)) for d in ("scratch", "hole") for i in range(2)}
    top_half = Image.new("L", (64, 64), 0)
    top_half.paste(255, (0, 0, 64, 32))
    files["bottle/ground_truth/scratch/000_mask.png"] = encode(top_half)   # scratch/001 has none
    files["bottle/ground_truth/hole/000_mask.png"] = encode(Image.new("L", (64, 64), 255))
    files["bottle/ground_truth/hole/001_mask.png"] = b"not a png"
    s = load_images(zipped(files), ImageSetConfig(side=32))
    assert s.layout == "mvtec" and s.class_names == ("good", "hole", "scratch") and s.good_class == 0
    assert s.data.train.labels.tolist() == [0] * 6
    assert s.data.test.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert s.masks.shape == (6, 32, 32) and s.masks.dtype == torch.uint8
    assert s.masks[:2].sum() == 0                                      # good pictures: no defect pixel
    assert s.masks[2].all() and s.masks[3].sum() == 0                  # hole/000 whole; hole/001 unreadable
    assert s.masks[4, :16].all() and s.masks[4, 16:].sum() == 0        # scratch/000: the top half
    assert s.masks[5].sum() == 0                                       # scratch/001: no mask file
    assert [k.file for k in s.skipped] == ["bottle/ground_truth/hole/001_mask.png"]
    assert s.describe()["counts"]["test"] == {"good": 2, "hole": 2, "scratch": 2}


def test_held_out_split_is_per_class_and_seeded(tmp_path):
    files = {f"{c}/{i:02}.png": solid((i * 10, c_i * 100, 0)) for c_i, (c, n) in enumerate((("a", 20), ("b", 10)))
             for i in range(n)}
    folder = write(tmp_path / "s", files)
    first = load_images(folder, ImageSetConfig(side=28, test_fraction=0.3, seed=1))
    again = load_images(folder, ImageSetConfig(side=28, test_fraction=0.3, seed=1))
    other = load_images(folder, ImageSetConfig(side=28, test_fraction=0.3, seed=2))
    assert torch.bincount(first.data.test.labels).tolist() == [6, 3]   # 30 % of each class
    assert torch.bincount(first.data.train.labels).tolist() == [14, 7]
    assert torch.equal(first.data.test.images, again.data.test.images)
    assert not torch.equal(first.data.test.images, other.data.test.images)
    single = load_images(write(tmp_path / "one", {"x/0.png": solid(RED), "y/0.png": solid(BLUE),
                                                  "y/1.png": solid(BLUE)}))
    assert torch.bincount(single.data.test.labels, minlength=2).tolist() == [0, 1]   # never a class's only one


# ---------------------------------------------------------------------------------------------- skipped pictures
def test_non_pictures_truncated_and_bombs_are_skipped_with_reasons(tmp_path):
    good = solid(RED, (64, 64))
    files = {"ok.png": good, "notes.txt": b"hello", "fake.png": b"plain text, not a png",
             "cut.png": encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)))[:300],
             "bomb.png": bomb_png(40_000, 40_000), "wide.png": bomb_png(6_000, 6_000)}
    pillow_state = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    s = load_images(write(tmp_path / "p", files), ImageSetConfig(side=28), limits=HOSTED)
    reasons = {k.file: k.reason for k in s.skipped}
    assert set(reasons) == {"notes.txt", "fake.png", "cut.png", "bomb.png", "wide.png"}
    assert reasons["notes.txt"].startswith("not a picture (.txt)")
    assert reasons["fake.png"].startswith("not a picture AE Lab reads")
    assert "truncated" in reasons["cut.png"]
    assert "decompression bomb" in reasons["bomb.png"]
    assert "6,000x6,000 pixels, more than the 25,000,000" in reasons["wide.png"]
    assert len(s.data.train) + len(s.data.test) == 1
    assert (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES) == pillow_state   # no global state set


def test_folder_links_are_not_followed_out(tmp_path):
    outside = write(tmp_path / "secret", {"s.png": solid(BLUE)})
    folder = write(tmp_path / "p", {"a/0.png": solid(RED), "a/1.png": solid(RED)})
    (folder / "a" / "out.png").symlink_to(outside / "s.png")
    (folder / "a" / "in.png").symlink_to(folder / "a" / "0.png")
    (folder / "linked").symlink_to(outside, target_is_directory=True)
    s = load_images(folder, ImageSetConfig(side=28))
    reasons = {k.file: k.reason for k in s.skipped}
    assert reasons == {"a/out.png": "a link out of the folder, not followed",
                       "linked": "a link to a folder, not followed"}
    assert len(s.data.train) + len(s.data.test) == 3                  # 0, 1 and the link inside


# ---------------------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("name", ["../x.png", "a/../../x.png", "/etc/x.png", "C:/x.png", "a\\..\\x.png"])
def test_zip_names_that_climb_out_are_refused_whole(name):
    with pytest.raises(ImageSetError, match="points outside the zip's folder"):
        load_images(zipped({"ok/0.png": solid(RED), name: solid(RED)}))


def test_zip_symlinks_are_refused_whole():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("0.png", solid(RED))
        link = zipfile.ZipInfo("1.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        z.writestr(link, "/etc/passwd")
    with pytest.raises(ImageSetError, match="symbolic link .*'1.png'"):
        load_images(buf.getvalue())


def test_zip_bombs_are_refused():
    with pytest.raises(ImageSetError, match=r"unpack to [\d,]+ times its packed size \(the limit is 200\)"):
        load_images(zipped({"0.png": solid(RED), "zeros.png": b"\0" * 3_000_000}))
    small = PictureLimits(10**9, 100, 64, max_unpacked_bytes=5_000, who="the hosted demo")
    noise = {f"{i}.png": np.random.default_rng(i).bytes(2_000) for i in range(4)}
    with pytest.raises(ImageSetError, match="the hosted demo takes zips that unpack to 5 kB at most; this one "
                                            "declares 8 kB"):
        load_images(zipped(noise), limits=small)
    with pytest.raises(ImageSetError, match="takes zips of up to 3 entries; this one holds 4"):
        load_images(zipped(noise), limits=PictureLimits(10**9, 100, 64, max_entries=3))


def test_limits_are_named_in_the_refusals(tmp_path):
    assert archive.size_text(73_200_000) == "73.2 MB" and archive.size_text(HOSTED.max_zip_bytes) == "50 MB"
    pics = {f"{i}.png": encode(Image.fromarray(np.random.default_rng(i).integers(0, 255, (20, 20), np.uint8)))
            for i in range(5)}
    blob = zipped(pics)
    assert 2_000 < len(blob) < 9_950
    with pytest.raises(ImageSetError, match=rf"the hosted demo takes zips up to 2 kB; this one is "
                                            rf"{len(blob) / 1000:.1f} kB"):
        load_images(blob, limits=PictureLimits(2_000, 100, 64, who="the hosted demo"))
    with pytest.raises(ImageSetError, match=rf"takes zips up to {len(blob) - 1:,} bytes; this one is "
                                            rf"{len(blob):,} bytes"):   # rounding would show the two alike
        load_images(blob, limits=PictureLimits(len(blob) - 1, 100, 64))
    with pytest.raises(ImageSetError, match="takes up to 4 pictures; upload holds 5"):
        load_images(blob, limits=PictureLimits(10**9, 4, 64))
    folder = write(tmp_path / "p", pics)
    with pytest.raises(ImageSetError, match="takes up to 4 pictures; p holds 5"):
        load_images(folder, limits=PictureLimits(10**9, 4, 64))
    with pytest.raises(ImageSetError, match="takes up to 100 bytes of pictures; p holds"):
        load_images(folder, limits=PictureLimits(100, 100, 64))


def test_empty_or_pictureless_sets_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageSetError, match="no pictures in empty"):
        load_images(tmp_path / "empty")
    with pytest.raises(ImageSetError, match=r"no pictures in docs .*2 file\(s\) skipped, e.g. a.txt: not a picture"):
        load_images(write(tmp_path / "docs", {"a.txt": b"x", "b.png": b"y"}))
    with pytest.raises(ImageSetError, match="not a zip file"):
        load_images(b"PK\x03\x04 but no more")
    with pytest.raises(ImageSetError, match="no such folder or zip file"):
        load_images(tmp_path / "missing")
    assert issubclass(ImageSetError, DataError)


def test_nothing_is_written_outside_the_sets_folder(tmp_path, monkeypatch):
    """A zip path, bytes and an upload that cannot seek (spooled, past a small SPOOL_BYTES, to disk): no file
    appears next to the zip or anywhere in tmp_path, and the workdir is left empty; refusals leave nothing."""
    files = {f"set/{c}/{i}.png": encode(Image.fromarray(np.random.default_rng(i).integers(0, 255, (40, 40, 3),
                                                                                         np.uint8)))
             for c in ("a", "b") for i in range(4)}
    (tmp_path / "up").mkdir()
    (work := tmp_path / "work").mkdir()
    path = zipped(files, tmp_path / "up" / "set.zip")
    monkeypatch.setattr(archive, "SPOOL_BYTES", 1024)
    spooled_to, temporary_file = [], tempfile.TemporaryFile

    def spy(*args, dir=None, **kw):   # where a spool past SPOOL_BYTES goes (an unnamed file)
        spooled_to.append(Path(dir))
        return temporary_file(*args, dir=dir, **kw)
    monkeypatch.setattr(tempfile, "TemporaryFile", spy)

    class Stream(io.RawIOBase):       # an upload read once, front to back
        def __init__(self, blob):
            self.inner = io.BytesIO(blob)
        def readable(self):
            return True
        def seekable(self):
            return False
        def readinto(self, b):
            return self.inner.readinto(b)

    before, temp_before = tree(tmp_path), set(os.listdir(tempfile.gettempdir()))
    sets = [load_images(path, workdir=work), load_images(path.read_bytes(), workdir=work),
            load_images(Stream(path.read_bytes()), workdir=work), load_images(Stream(path.read_bytes()))]
    assert all(torch.equal(s.data.train.images, sets[0].data.train.images) for s in sets)
    assert spooled_to[0] == work and spooled_to[1].name.startswith("aelab-pictures-") and len(spooled_to) == 2
    with pytest.raises(ImageSetError, match="takes zips up to 1 kB; this one is larger"):
        load_images(Stream(path.read_bytes()), limits=PictureLimits(1000, 100, 64), workdir=work)
    with pytest.raises(ImageSetError, match="points outside"):
        load_images(zipped({"../x.png": solid(RED)}, tmp_path / "up" / "evil.zip"), workdir=work)
    assert tree(tmp_path) - before == {"up/evil.zip"} and os.listdir(work) == []
    assert not {n for n in set(os.listdir(tempfile.gettempdir())) - temp_before if n.startswith("aelab-pictures-")}


def test_configs_check_their_values():
    for bad in (dict(side=30), dict(side=True), dict(color="gray"), dict(fit="stretch"), dict(test_fraction=0),
                dict(test_fraction=1.0), dict(seed=-1), dict(seed=1.5)):
        with pytest.raises(ValueError):
            ImageSetConfig(**bad)
    for bad in (dict(max_zip_bytes=0), dict(max_side=16), dict(max_pictures=-5)):
        with pytest.raises(ValueError, match="PictureLimits"):
            PictureLimits(**({"max_zip_bytes": 1, "max_pictures": 1, "max_side": 64} | bad))
    assert HOSTED.max_zip_bytes == 50_000_000 and HOSTED.max_pictures == 20_000 and HOSTED.max_side == 64

"""Where a visitor's pictures come from, a folder or a zip, opened so that nothing can reach outside it.

A zip is judged from its central directory before any member is read: its size, its number of entries, every
name (no climbing out with `..`, no absolute paths, drive letters or backslashes), no symbolic links, and the sizes
its members declare (in total and against their packed size: a zip bomb). A zip failing any of these is refused
whole with `ImageSetError`. Members are then read one by one from memory (never `extractall`); `zipfile` stops
each at its declared size and checks its CRC. The one thing ever written to disk is a spool of an upload that
cannot seek, and it goes only under the caller's `workdir` (else a temporary folder of the set's own), as an
unnamed temporary file. A folder is walked without following links out of it. A picture is opened
(`open_picture`) by the five formats' plug-ins only, and decoded only after the size its header declares passes
the pixel cap, so Pillow's global settings are never touched. `aecore.engine.images` makes the data set.
"""
from __future__ import annotations

import io
import os
import re
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass, fields
from pathlib import Path, PurePosixPath

from PIL import Image, UnidentifiedImageError

from aecore.engine.data import DataError

IGNORED = {"__MACOSX", "Thumbs.db", "desktop.ini"}   # and every name starting with "."; never pictures
SPOOL_BYTES = 16 * 2**20     # an upload that cannot seek is held in memory up to this, then spooled to workdir
CHUNK = 2**20
FORMATS = ("PNG", "JPEG", "BMP", "WEBP", "GIF")   # Pillow opens nothing else here (no plug-in beyond these)
_DRIVE = re.compile(r"^[A-Za-z]:")


class ImageSetError(DataError):
    """A set of pictures refused whole; the message names the problem (and the limit, when one was passed)."""


class Unreadable(Exception):
    """One file skipped (not a picture, damaged, too many pixels); the message is the reason."""


@dataclass(frozen=True)
class Skipped:
    """A file left out of a set, and why (not a picture, truncated, too many pixels...)."""
    file: str
    reason: str


@dataclass(frozen=True)
class PictureLimits:
    """How much a set of pictures may hold; `who` names whose limits they are in the refusals."""
    max_zip_bytes: int            # the zip's size (for a folder: the pictures' bytes in total)
    max_pictures: int             # picture files in the set
    max_side: int                 # the largest side a set's pictures are resized to
    max_pixels: int = 80_000_000           # one picture's declared width x height, checked before decoding
    max_unpacked_bytes: int = 16 * 10**9   # the sizes a zip's members declare, in total
    max_ratio: float = 200.0               # a member's unpacked / packed size (members over 1 MB)
    max_entries: int = 1_000_000           # a zip's entries, or a folder's files
    who: str = "AE Lab"

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "who" and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
                raise ValueError(f"PictureLimits.{f.name} must be a positive number, got {value!r}")
        if self.max_side < 28:
            raise ValueError(f"PictureLimits.max_side must be at least 28 (the smallest side), got {self.max_side}")


MB = 10**6
HOSTED = PictureLimits(50 * MB, 20_000, 64, max_pixels=25_000_000, max_unpacked_bytes=1000 * MB,
                       max_entries=40_000, who="the hosted demo")
LOCAL = PictureLimits(4000 * MB, 500_000, 64)    # a lab on one's own machine: roomy
RATIO_FLOOR = MB             # members smaller than this are not judged by their ratio


def size_text(n: float) -> str:
    """Bytes for a person: '50 MB', '73.2 MB', '1.5 GB', '312 kB'."""
    for unit, scale in (("GB", 10**9), ("MB", MB), ("kB", 10**3)):
        if n >= scale:
            return f"{n / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{int(n)} bytes"


def sizes(limit: int, actual: int) -> tuple[str, str]:
    """Both sizes for a refusal, in bytes where rounding would show them equal."""
    a, b = size_text(limit), size_text(actual)
    return (a, b) if a != b else (f"{limit:,} bytes", f"{actual:,} bytes")


def ignored(parts: tuple[str, ...]) -> bool:
    """System litter (macOS resource forks, hidden files, Windows thumbnails): left out without a word."""
    return any(p.startswith(".") or p in IGNORED for p in parts)


class Source:
    """The files of a folder or a zip: `files` (relative POSIX paths, sorted), `read(path)`, `skipped`."""

    def __init__(self, name: str, files: list[str], skipped: list[Skipped]):
        self.name, self.files, self.skipped = name, sorted(files), skipped

    def read(self, path: str, limit: int | None = None) -> bytes:   # the first `limit` bytes, or all
        raise NotImplementedError

    def close(self) -> None:
        pass


class FolderSource(Source):
    def __init__(self, root: Path, limits: PictureLimits):
        self.root = root.resolve()
        files, skipped = [], []
        for here, dirs, names in os.walk(self.root, followlinks=False):
            rel_here = Path(here).relative_to(self.root)
            for d in list(dirs):
                if ignored((d,)):
                    dirs.remove(d)
                elif os.path.islink(os.path.join(here, d)):
                    skipped.append(Skipped((rel_here / d).as_posix(), "a link to a folder, not followed"))
            for n in names:
                rel = (rel_here / n).as_posix()
                if ignored(PurePosixPath(rel).parts):
                    continue
                why = self._unsafe(Path(here) / n)
                if why:
                    skipped.append(Skipped(rel, why))
                else:
                    files.append(rel)
                if len(files) + len(skipped) > limits.max_entries:
                    raise ImageSetError(f"{limits.who} takes folders of up to {limits.max_entries:,} files; "
                                        f"{self.root.name} holds more")
        super().__init__(self.root.name, files, skipped)

    def _unsafe(self, path: Path) -> str | None:
        """Why a file may not be read: a link out of the folder, or not a plain file (a pipe would block)."""
        if path.is_symlink() and not Path(os.path.realpath(path)).is_relative_to(self.root):
            return "a link out of the folder, not followed"
        try:
            return None if stat.S_ISREG(os.stat(path).st_mode) else "not a plain file"
        except OSError as e:
            return f"cannot be read ({e.strerror})"

    def size(self, path: str) -> int:
        return os.stat(self.root / path).st_size

    def read(self, path, limit=None):
        with open(self.root / path, "rb") as f:
            return f.read(-1 if limit is None else limit)


class ZipSource(Source):
    def __init__(self, source, name: str, limits: PictureLimits, workdir: Path | None):
        self._spool = self._tmp = self.zf = None
        if workdir is None and _must_spool(source):
            workdir = self._tmp = Path(tempfile.mkdtemp(prefix="aelab-pictures-"))   # the set's own folder
        try:
            self._open(source, name, limits, workdir)
        except BaseException:
            self.close()
            raise

    def _open(self, source, name, limits, workdir):
        blob = _seekable(source, limits, workdir)
        if _must_spool(source):
            self._spool = blob
        size = os.path.getsize(source) if isinstance(source, (str, os.PathLike)) else _length(blob)
        if size > limits.max_zip_bytes:
            most, this = sizes(limits.max_zip_bytes, size)
            raise ImageSetError(f"{limits.who} takes zips up to {most}; this one is {this}")
        try:
            self.zf = zipfile.ZipFile(blob)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as e:
            raise ImageSetError(f"{name} is not a zip file, or a damaged one ({e})") from None
        infos = self.zf.infolist()
        if len(infos) > limits.max_entries:
            raise ImageSetError(f"{limits.who} takes zips of up to {limits.max_entries:,} entries; "
                                f"this one holds {len(infos):,}")
        self.members, skipped, total = {}, [], 0
        for info in infos:
            path = _safe_name(info)
            total += info.file_size
            if info.file_size > RATIO_FLOOR and info.file_size > limits.max_ratio * max(info.compress_size, 1):
                raise ImageSetError(
                    f"refused: {info.filename!r} would unpack to {info.file_size / max(info.compress_size, 1):,.0f} "
                    f"times its packed size (the limit is {limits.max_ratio:g}); this looks like a zip bomb")
            if info.is_dir() or ignored(PurePosixPath(path).parts):
                continue
            if info.flag_bits & 0x1:
                skipped.append(Skipped(path, "encrypted in the zip; zip it without a password"))
            elif path in self.members:
                skipped.append(Skipped(path, "a second entry of the same name in the zip"))
            else:
                self.members[path] = info
        if total > limits.max_unpacked_bytes:
            most, this = sizes(limits.max_unpacked_bytes, total)
            raise ImageSetError(f"{limits.who} takes zips that unpack to {most} at most; this one declares {this} "
                                f"(a zip bomb?)")
        super().__init__(name, list(self.members), skipped)

    def size(self, path: str) -> int:
        return self.members[path].file_size

    def read(self, path, limit=None):
        with self.zf.open(self.members[path]) as f:   # stops at the declared size; checks the CRC at the end
            return f.read(-1 if limit is None else limit)

    def close(self):
        if self.zf is not None:
            self.zf.close()
        if self._spool is not None:
            self._spool.close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)


def _safe_name(info: zipfile.ZipInfo) -> str:
    """The member's path, or ImageSetError when it could land outside the folder it is unpacked into."""
    for name in (info.orig_filename, info.filename):
        if "\\" in name or name.startswith("/") or _DRIVE.match(name) or ".." in name.split("/") or "\0" in name:
            raise ImageSetError(f"refused: the zip holds an entry named {name!r}, which points outside the zip's "
                                f"folder (absolute, '..', a drive letter or a backslash); nothing was read")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise ImageSetError(f"refused: the zip holds a symbolic link ({info.filename!r}); links may point anywhere "
                            f"on the machine, so nothing was read")
    return "/".join(p for p in info.filename.split("/") if p not in ("", "."))


def _length(f) -> int:
    here = f.tell()
    end = f.seek(0, io.SEEK_END)
    f.seek(here)
    return end


def _must_spool(source) -> bool:
    return not isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview)) and \
        not getattr(source, "seekable", lambda: False)()


def _seekable(source, limits: PictureLimits, workdir: Path):
    """A seekable file of the zip: a path or seekable file as given, bytes in memory, and a stream spooled (in
    memory, past SPOOL_BYTES to an unnamed file under `workdir`) and refused once it passes max_zip_bytes."""
    if isinstance(source, (str, os.PathLike)):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(source)
    if not _must_spool(source):
        return source
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES, dir=workdir)
    copied = 0
    while chunk := source.read(CHUNK):
        copied += len(chunk)
        if copied > limits.max_zip_bytes:
            spool.close()
            raise ImageSetError(f"{limits.who} takes zips up to {size_text(limits.max_zip_bytes)}; "
                                f"this one is larger")
        spool.write(chunk)
    spool.seek(0)
    return spool


def open_source(source, limits: PictureLimits, workdir: Path) -> Source:
    """A folder path, a .zip path, zip bytes or a file-like of a zip (an upload), as a Source."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            return FolderSource(path, limits)
        if not path.is_file():
            raise ImageSetError(f"{path}: no such folder or zip file")
        if path.suffix.lower() != ".zip" and not zipfile.is_zipfile(path):
            raise ImageSetError(f"{path}: neither a folder nor a .zip file")
        return ZipSource(path, path.stem, limits, workdir)
    if isinstance(source, (bytes, bytearray, memoryview)) or hasattr(source, "read"):
        name = PurePosixPath(str(getattr(source, "name", "") or "upload").replace("\\", "/")).name
        return ZipSource(source, name.removesuffix(".zip").removesuffix(".ZIP") or "upload", limits, workdir)
    raise ImageSetError(f"a set of pictures is a folder, a .zip path, zip bytes or a zip file object; "
                        f"got {type(source).__name__}")


def open_picture(blob: bytes, max_pixels: int) -> Image.Image:
    """The picture opened (its header read, no pixel decoded yet), or Unreadable: not one of FORMATS, damaged,
    or declaring more than `max_pixels` (Pillow's own bomb check, at twice its MAX_IMAGE_PIXELS, fires first)."""
    try:
        img = Image.open(io.BytesIO(blob), formats=FORMATS)   # reads the header only
    except UnidentifiedImageError:
        raise Unreadable("not a picture AE Lab reads (PNG, JPEG, BMP, WebP or GIF)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise Unreadable(f"declares too many pixels to decode (a decompression bomb?): {e}") from None
    except Exception as e:   # noqa: BLE001 — a damaged header may raise anything; the set goes on without it
        raise Unreadable(f"a damaged picture ({e})") from None
    w, h = img.size
    if w * h > max_pixels:
        img.close()
        raise Unreadable(f"declares {w:,}x{h:,} pixels, more than the {max_pixels:,} a picture may have "
                         f"(a decompression bomb?); not decoded")
    return img

"""Download MNIST or Fashion-MNIST's four IDX files into a cache folder, once, safely.

`download(dataset)` fetches whatever of the four `.gz` files is missing from `cache_dir()/<dataset>`, trying
each mirror in turn (AECORE_MNIST_MIRROR / AECORE_FASHION_MIRROR override the defaults: one base URL or
folder path, or several separated by commas). Every file is checked against the MD5 of its *uncompressed* content (copies of
the same data differ in their gzip wrappers), written under a temporary name and renamed into place, so a
half-written or corrupt file is never seen under the real name. A lock per folder (a thread lock plus an
`flock` on `<folder>/.lock`) makes concurrent callers, threads or processes, download once: the second waits
and then finds the files present. `Download` runs one download in a daemon thread for the app to poll.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import threading
import urllib.error
import urllib.request
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

try:
    import fcntl
except ImportError:  # Windows: the thread lock alone guards one process
    fcntl = None

from aecore.engine import data
from aecore.engine.data import CACHE_ENV, DATASETS, ENV_VAR, DataError, cache_dir  # noqa: F401 (cache_dir: public here too)

MIRRORS_ENV = "AECORE_MNIST_MIRROR"
FASHION_MIRRORS_ENV = "AECORE_FASHION_MIRROR"
FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
DEFAULT_MIRRORS = {  # torchvision's, in its order
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}
# MD5 of each file's uncompressed content. Fashion-MNIST's are those of Debian's dataset-fashion-mnist files,
# whose content matches the original release (their .gz differ from torchvision's only in the gzip header).
CHECKSUMS = {
    "mnist": {"train-images-idx3-ubyte.gz": "6bbc9ace898e44ae57da46a324031adb",
              "train-labels-idx1-ubyte.gz": "a25bea736e30d166cdddb491f175f624",
              "t10k-images-idx3-ubyte.gz": "2646ac647ad5339dbf082846283269ea",
              "t10k-labels-idx1-ubyte.gz": "27ae3e4e09519cfbb04c329615203637"},
    "fashion-mnist": {"train-images-idx3-ubyte.gz": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
                      "train-labels-idx1-ubyte.gz": "9018921c3c673c538a1fc5bad174d6f9",
                      "t10k-images-idx3-ubyte.gz": "8181f5470baa50b63fa0f6fddb340f0a",
                      "t10k-labels-idx1-ubyte.gz": "15d484375f8d13e6eb1aabb0c3f46965"},
}
# The official .gz sizes: the progress total for files whose Content-Length is not known yet, so the bar
# does not jump back as each file starts. Replaced by the real length as each response arrives.
_SIZE_GUESS = {
    "mnist": dict(zip(FILES, (9_912_422, 28_881, 1_648_877, 4_542))),
    "fashion-mnist": dict(zip(FILES, (26_421_880, 29_515, 4_422_102, 5_148))),
}
_CHUNK = 1 << 16
# One lock per folder for the whole process: process-wide by nature, so module-level.
_FOLDER_LOCKS: dict[str, threading.Lock] = {}
_FOLDER_LOCKS_GUARD = threading.Lock()


class FetchError(DataError):
    """A download failed; the message names the data set, every URL tried with its failure, and the fix."""


def mirror_env(dataset: str) -> str:
    return FASHION_MIRRORS_ENV if dataset == "fashion-mnist" else MIRRORS_ENV


def mirrors_for(dataset: str) -> tuple[str, ...]:
    """The base URLs tried for `dataset`: the environment's setting if any, else torchvision's."""
    value = os.environ.get(mirror_env(dataset), "")
    chosen = tuple(m.strip() for m in value.split(",") if m.strip())
    return chosen or DEFAULT_MIRRORS[dataset]


def content_md5(path: Path) -> str:
    """MD5 of a gzip file's uncompressed content; DataError when it is not readable gzip data."""
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        raise DataError(f"not valid gzip data ({e})") from None
    return digest.hexdigest()


def _is_valid(path: Path, md5: str | None) -> bool:
    if not path.is_file():
        return False
    try:
        return md5 is None or content_md5(path) == md5
    except DataError:
        return False


@contextmanager
def _folder_lock(folder: Path):
    """Hold `folder` against other threads of this process and against other processes."""
    with _FOLDER_LOCKS_GUARD:
        lock = _FOLDER_LOCKS.setdefault(str(folder.resolve()), threading.Lock())
    with lock, open(folder / ".lock", "a+b") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)   # released when the handle closes
        yield


def load(cfg: data.DataConfig, data_dir=None) -> data.Data:
    """`data.load`, downloading the data set first when its files are nowhere to be found."""
    ensure(cfg.dataset, data_dir)
    return data.load(cfg, data_dir)


def load_split(dataset: str, split: str, data_dir=None) -> data.Split:
    """`data.load_split`, downloading the data set first when its files are nowhere to be found."""
    ensure(dataset, data_dir)
    return data.load_split(dataset, split, data_dir)


def ensure(dataset: str, data_dir=None) -> None:
    """Download `dataset` (into `data_dir`, else the cache) unless its files are already somewhere searched."""
    if dataset in DATASETS and not data.found(dataset, data_dir):
        download(dataset, data_dir)


def download(dataset: str, root: str | os.PathLike | None = None, mirrors=None, checksums=None,
             progress: Callable[[int, int], None] | None = None, timeout: float = 30.0) -> Path:
    """Fetch the four files of `dataset` into `root` (default cache_dir()/<dataset>); return that folder.

    Files already present with the right content are kept. `mirrors`: base URLs tried in order for each
    file (default `mirrors_for(dataset)`); `checksums`: file name -> uncompressed MD5 (None: don't check);
    `progress(bytes_done, bytes_total)` is called as bytes arrive. Raises FetchError.
    """
    if dataset not in DATASETS:
        raise FetchError(f"unknown data set {dataset!r}; choose one of {DATASETS}")
    folder = Path(root) if root is not None else cache_dir() / dataset
    mirrors = tuple(mirrors) if mirrors is not None else mirrors_for(dataset)
    checksums = CHECKSUMS[dataset] if checksums is None else checksums
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with _folder_lock(folder):
            _fetch_missing(dataset, folder, mirrors, checksums, progress, timeout)
    except OSError as e:   # an unwritable cache folder; network and disk errors per file are caught below
        raise FetchError(f"cannot download {dataset} into {folder}: {e}. Set {CACHE_ENV} to a writable "
                         f"folder, or {ENV_VAR} to a folder holding the four IDX files") from None
    return folder


def _fetch_missing(dataset: str, folder: Path, mirrors, checksums, progress, timeout: float) -> None:
    todo = [name for name in FILES if not _is_valid(folder / name, checksums.get(name))]
    sizes = {name: _SIZE_GUESS[dataset][name] for name in todo}
    done = 0

    def advance(name: str, n: int, length: int | None = None) -> None:
        nonlocal done
        if length is not None:
            sizes[name] = length
        done += n
        if progress is not None:
            progress(done, sum(sizes.values()))

    for name in todo:
        failures = _fetch_file(folder, name, mirrors, checksums.get(name), timeout, advance)
        if failures:
            tried = "\n".join(f"  - {url}: {why}" for url, why in failures)
            raise FetchError(
                f"downloading {dataset} into {folder} failed; {name} could not be fetched from any mirror:\n"
                f"{tried}\nFix: offline? set {ENV_VAR} to a folder holding the four IDX files, or "
                f"{mirror_env(dataset)} to a reachable mirror (base URLs, comma-separated).")


def _fetch_file(folder: Path, name: str, mirrors, md5: str | None, timeout: float, advance) -> list:
    """Try each mirror for one file until one gives the right content; the failures, or [] on success."""
    failures = []
    for base in mirrors:
        if "://" not in base:   # a plain folder path serves as a mirror too
            base = Path(base).expanduser().resolve().as_uri()
        url = base.rstrip("/") + "/" + name
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder)
        got = 0
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                length = response.headers.get("Content-Length")
                length = int(length) if length and length.isdigit() else None
                advance(name, 0, length)
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    got += len(chunk)
                    advance(name, len(chunk))
                out.flush()
                os.fsync(out.fileno())   # the bytes reach the disk before the name does
            if length is not None and got != length:
                raise DataError(f"connection closed after {got:,} of {length:,} bytes")
            if md5 is not None and (actual := content_md5(Path(tmp))) != md5:
                raise DataError(f"checksum mismatch (uncompressed MD5 {actual}, expected {md5})")
            os.replace(tmp, folder / name)
            return []
        except urllib.error.HTTPError as e:
            why = f"HTTP {e.code} {e.reason}"
        except urllib.error.URLError as e:   # e.reason: e.g. [Errno 111] Connection refused
            why = str(e.reason)
        except DataError as e:
            why = str(e)
        except (OSError, ValueError) as e:   # timeouts, resets, malformed URLs, http.client errors
            why = f"{type(e).__name__}: {e}"
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        advance(name, -got)   # this attempt's bytes no longer count
        failures.append((url, why))
    return failures or [("(none)", "no mirror given")]


# ---------------------------------------------------------------------------------------------- for the app
@dataclass(frozen=True)
class DownloadStatus:
    state: str = "idle"          # "idle", "running", "done" or "failed"
    fraction: float = 0.0        # 0..1 of the bytes to fetch
    bytes_done: int = 0
    bytes_total: int = 0         # 0 until known
    error: str | None = None     # the FetchError's message when failed
    folder: Path | None = None   # where the files are, once done


class Download:
    """One background download of a data set, shared by every session of a server; poll `status()`."""

    def __init__(self, dataset: str, root: str | os.PathLike | None = None, mirrors=None):
        self.dataset, self.root, self.mirrors = dataset, root, mirrors
        self._lock = threading.Lock()
        self._status = DownloadStatus()
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        """Start the download unless it is running or done (a failed one is retried); True if started."""
        with self._lock:
            if self._status.state in ("running", "done"):
                return False
            self._status = DownloadStatus(state="running")
            self._thread = threading.Thread(target=self._run, name=f"aecore-download-{self.dataset}",
                                            daemon=True)
            self._thread.start()
            return True

    def status(self) -> DownloadStatus:
        with self._lock:
            return self._status

    def wait(self, timeout: float | None = None) -> DownloadStatus:
        """Block until the download ends or `timeout` seconds pass; the status then."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self.status()

    def _progress(self, done: int, total: int) -> None:
        with self._lock:
            fraction = min(1.0, done / total) if total else 0.0
            self._status = DownloadStatus("running", fraction, done, total)

    def _run(self) -> None:
        try:
            folder = download(self.dataset, self.root, self.mirrors, progress=self._progress)
        except Exception as e:  # not only FetchError: a thread that dies silently would stay "running"
            error = str(e) if isinstance(e, DataError) else f"{type(e).__name__}: {e}"
            with self._lock:
                self._status = DownloadStatus("failed", self._status.fraction, self._status.bytes_done,
                                              self._status.bytes_total, error=error)
        else:
            with self._lock:
                s = self._status
                self._status = DownloadStatus("done", 1.0, s.bytes_done, s.bytes_total, folder=folder)

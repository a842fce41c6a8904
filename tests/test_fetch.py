"""aecore.engine.fetch against local HTTP mirrors: checksums, mirror fallback, errors, one download per file under
concurrency (threads and processes), the app's `Download` object, the mirror settings and the CLI."""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from aecore.engine import fetch
from aecore.engine.data import ENV_VAR, DataError, load_split
from aecore.engine.fetch import FILES, Download, FetchError, download
from idx_helpers import idx_bytes, real_mnist_dir
from local_mirror import closed_port_url, tiny_files

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------- local mirror
@pytest.fixture
def tiny(arrays):
    return tiny_files(arrays)


@pytest.fixture(autouse=True)
def _no_internet(monkeypatch):
    """No test may reach the real mirrors: the mirror settings point at a closed port unless a test says."""
    monkeypatch.setenv(fetch.MIRRORS_ENV, closed_port_url())
    monkeypatch.setenv(fetch.FASHION_MIRRORS_ENV, closed_port_url())


def left_in(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} - {".lock"}


# ---------------------------------------------------------------------------------------------- downloads
@pytest.mark.mnist
def test_real_mnist_passes_the_default_checksums_and_is_found_afterwards(serve, monkeypatch, tmp_path):
    real = real_mnist_dir()
    files = {}
    for name in FILES:
        path = real / name if (real / name).is_file() else real / name[:-3]
        files[name] = path.read_bytes() if path.suffix == ".gz" else gzip.compress(path.read_bytes())
    monkeypatch.delenv(ENV_VAR)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="not found"):
        load_split("mnist", "test")
    mirror = serve(files)
    folder = download("mnist", mirrors=[mirror.url])   # default checksums
    assert folder == fetch.cache_dir() / "mnist"
    assert mirror.requests == {name: 1 for name in FILES}
    assert all((folder / name).read_bytes() == files[name] for name in FILES)
    test = load_split("mnist", "test")
    assert test.images.shape == (10_000, 28, 28) and test.labels.bincount().tolist()[0] == 980


def test_download_checks_reports_progress_and_skips_valid_files(serve, tiny, tmp_path, arrays):
    files, sums = tiny
    mirror = serve(files)
    calls = []
    folder = download("mnist", tmp_path / "dl", mirrors=[mirror.url], checksums=sums,
                      progress=lambda done, total: calls.append((done, total)))
    assert folder == tmp_path / "dl"
    assert left_in(folder) == set(FILES)
    assert all((folder / name).read_bytes() == files[name] for name in FILES)
    total = sum(len(b) for b in files.values())
    assert calls and calls[-1] == (total, total)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    test = load_split("mnist", "test", data_dir=folder)
    np.testing.assert_array_equal(test.images.numpy(), arrays["test-images"])

    assert download("mnist", folder, mirrors=[mirror.url], checksums=sums) == folder
    assert mirror.requests == {name: 1 for name in FILES}          # all present and valid: none fetched
    (folder / FILES[1]).write_bytes(gzip.compress(b"damaged"))
    download("mnist", folder, mirrors=[mirror.url], checksums=sums)
    assert mirror.requests[FILES[1]] == 2 and mirror.requests[FILES[0]] == 1   # only the bad one again
    assert (folder / FILES[1]).read_bytes() == files[FILES[1]]


@pytest.mark.parametrize("first", ["404", "refused", "corrupt"])
def test_falls_back_to_the_next_mirror(serve, tiny, tmp_path, first):
    files, sums = tiny
    bad, good = serve({} if first == "404" else {n: gzip.compress(b"bad" * 999) for n in FILES}), serve(files)
    calls = []
    download("mnist", tmp_path / "dl", mirrors=[closed_port_url() if first == "refused" else bad.url, good.url],
             checksums=sums, progress=lambda done, total: calls.append((done, total)))
    assert good.requests == {name: 1 for name in FILES}
    assert bad.requests == ({} if first == "refused" else {name: 1 for name in FILES})
    assert left_in(tmp_path / "dl") == set(FILES)
    total = sum(len(b) for b in files.values())
    assert calls[-1] == (total, total)   # a failed attempt's bytes are taken back


def test_checksum_mismatch_names_the_file_and_keeps_nothing(serve, tiny, tmp_path):
    files, sums = tiny
    bad = dict(files, **{FILES[2]: gzip.compress(b"\0\0\x08\x03 something else")})
    first, second = serve(bad), serve({})
    with pytest.raises(FetchError) as info:
        download("mnist", tmp_path / "dl", mirrors=[first.url, second.url], checksums=sums)
    message = str(info.value)
    assert f"{first.url}{FILES[2]}: checksum mismatch" in message
    assert f"{second.url}{FILES[2]}: HTTP 404" in message
    assert sums[FILES[2]] in message
    assert left_in(tmp_path / "dl") == set(FILES[:2])   # the two before it, no partial or temporary file


def test_not_gzip_is_reported_and_deleted(serve, tiny, tmp_path):
    files, sums = tiny
    mirror = serve(dict(files, **{FILES[0]: b"<html>a captive portal</html>"}))
    with pytest.raises(FetchError, match=f"{FILES[0]}: not valid gzip data"):
        download("mnist", tmp_path / "dl", mirrors=[mirror.url], checksums=sums)
    assert left_in(tmp_path / "dl") == set()


def test_nothing_reachable_says_what_was_tried_and_how_to_fix_it(tmp_path):
    url = closed_port_url()
    with pytest.raises(FetchError) as info:
        download("mnist", tmp_path / "dl", mirrors=[url], timeout=5)
    assert isinstance(info.value, DataError)
    message = str(info.value)
    assert "downloading mnist" in message
    assert f"{url}{FILES[0]}: " in message and "refused" in message.lower()
    assert ENV_VAR in message and fetch.MIRRORS_ENV in message
    assert left_in(tmp_path / "dl") == set()


def test_two_threads_download_each_file_once(serve, tiny, tmp_path):
    files, sums = tiny
    mirror = serve(files, delay=0.1)   # slow enough that the second caller arrives mid-download
    start, folders, errors = threading.Barrier(2), [], []

    def worker():
        start.wait(timeout=5)
        try:
            folders.append(download("mnist", tmp_path / "dl", mirrors=[mirror.url], checksums=sums))
        except Exception as e:  # reported below; a thread's exception would otherwise vanish
            errors.append(e)
    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert not errors and folders == [tmp_path / "dl"] * 2
    assert mirror.requests == {name: 1 for name in FILES}


_PROCESS = """
import os, sys, json, time
from pathlib import Path
from aecore.engine.fetch import download
root, url, sums, signals = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), Path(sys.argv[4])
(signals / f"ready-{os.getpid()}").touch()
for _ in range(400):   # start together when the test says go (at most 20 s)
    if (signals / "go").exists():
        break
    time.sleep(0.05)
print(download("mnist", root, mirrors=[url], checksums=sums))
"""


def test_two_processes_download_each_file_once(serve, tiny, tmp_path):
    files, sums = tiny
    mirror = serve(files, delay=0.1)
    signals = tmp_path / "signals"
    signals.mkdir()
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    args = [sys.executable, "-c", _PROCESS, str(tmp_path / "dl"), mirror.url, json.dumps(sums), str(signals)]
    procs = [subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    for _ in range(600):   # both imported (at most 30 s), so their downloads overlap
        if len(list(signals.glob("ready-*"))) == 2 or any(p.poll() is not None for p in procs):
            break
        time.sleep(0.05)
    (signals / "go").touch()
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert [out.strip() for out, _ in outs] == [str(tmp_path / "dl")] * 2
    assert mirror.requests == {name: 1 for name in FILES}


# ---------------------------------------------------------------------------------------------- Download
def test_download_object_runs_once_and_reports_progress(serve, tiny, tmp_path, monkeypatch):
    files, sums = tiny
    monkeypatch.setitem(fetch.CHECKSUMS, "mnist", sums)
    mirror = serve(files)
    mirror.hold = threading.Event()
    job = Download("mnist", tmp_path / "dl", mirrors=[mirror.url])
    assert job.status() == fetch.DownloadStatus("idle")
    assert job.start() is True
    assert job.status().state == "running"
    assert job.start() is False   # already running: no second thread
    mirror.hold.set()
    status = job.wait(timeout=10)
    assert status.state == "done" and status.error is None
    assert status.folder == tmp_path / "dl"
    assert status.fraction == 1.0 and status.bytes_done == status.bytes_total == sum(map(len, files.values()))
    assert job.start() is False   # done: nothing more
    assert job.wait(timeout=1).state == "done"
    assert mirror.requests == {name: 1 for name in FILES}


def test_download_object_failure_carries_the_message_and_can_retry(serve, tiny, tmp_path, monkeypatch):
    files, sums = tiny
    monkeypatch.setitem(fetch.CHECKSUMS, "mnist", sums)
    job = Download("mnist", tmp_path / "dl")   # mirrors from AECORE_MNIST_MIRROR: a closed port
    assert job.start() is True
    failed = job.wait(timeout=10)
    assert failed.state == "failed" and failed.folder is None
    assert fetch.MIRRORS_ENV in failed.error and ENV_VAR in failed.error and FILES[0] in failed.error
    mirror = serve(files)
    monkeypatch.setenv(fetch.MIRRORS_ENV, mirror.url)
    assert job.start() is True    # after a failure, start() tries again
    assert job.wait(timeout=10).state == "done"
    assert mirror.requests == {name: 1 for name in FILES}


# ---------------------------------------------------------------------------------------------- settings
def test_mirror_settings_are_honoured(serve, tiny, tmp_path, monkeypatch):
    files, sums = tiny
    mnist, fashion = serve(files), serve(files)
    closed = closed_port_url()
    monkeypatch.setenv(fetch.MIRRORS_ENV, f"{closed}, {mnist.url}")
    monkeypatch.setenv(fetch.FASHION_MIRRORS_ENV, fashion.url)
    assert fetch.mirrors_for("mnist") == (closed, mnist.url)
    download("mnist", tmp_path / "m", checksums=sums)
    download("fashion-mnist", tmp_path / "f", checksums=sums)
    assert mnist.requests == fashion.requests == {name: 1 for name in FILES}
    monkeypatch.delenv(fetch.MIRRORS_ENV)
    monkeypatch.delenv(fetch.FASHION_MIRRORS_ENV)
    assert fetch.mirrors_for("mnist") == fetch.DEFAULT_MIRRORS["mnist"]
    assert fetch.mirrors_for("fashion-mnist") == fetch.DEFAULT_MIRRORS["fashion-mnist"]


def test_cache_dir_setting_and_default(monkeypatch, tmp_path):
    monkeypatch.setenv(fetch.CACHE_ENV, str(tmp_path / "c"))
    assert fetch.cache_dir() == tmp_path / "c"
    monkeypatch.delenv(fetch.CACHE_ENV)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert fetch.cache_dir() == tmp_path / "home" / ".cache" / "aelab"


def test_cli_download_uses_the_fetcher_and_its_mirror_setting(serve, tiny, tmp_path):
    """Tiny files fail the real MNIST checksums: the CLI must report that, naming the mirror from the env."""
    files, _ = tiny
    mirror = serve(files)
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    env.update(PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""), **{fetch.MIRRORS_ENV: mirror.url})
    proc = subprocess.run([sys.executable, "-m", "aecore.train", "--download", "--epochs", "1"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stdout == ""
    assert f"{mirror.url}{FILES[0]}: checksum mismatch" in proc.stderr
    assert mirror.requests == {FILES[0]: 1}
    assert left_in(fetch.cache_dir() / "mnist") == set()


def test_a_folder_path_serves_as_a_mirror(tiny, tmp_path, monkeypatch):
    files, sums = tiny
    source = tmp_path / "usb stick"
    source.mkdir()
    for name, body in files.items():
        (source / name).write_bytes(body)
    monkeypatch.setenv(fetch.MIRRORS_ENV, str(source))
    folder = download("mnist", tmp_path / "dl", checksums=sums)
    assert all((folder / name).read_bytes() == files[name] for name in FILES)

"""Every shared fixture of the test suite (plain helpers live in idx_helpers.py, app_helpers.py,
browser_support.py and local_mirror.py; no test module imports another's fixtures).

Tests marked `@pytest.mark.mnist` run only when AECORE_DATA_DIR names a folder holding the four MNIST IDX
files. Every other test runs with AECORE_DATA_DIR removed and the working directory set to its own tmp_path,
so neither a developer's environment nor a stray ./data folder can change which files are found; every test,
those included, gets an empty download cache of its own (AECORE_CACHE_DIR).

Fixtures by topic: tiny IDX files and a tiny in-memory `Data` (arrays, make_dataset, mnist_dir, mnist_raw_dir,
tiny_data); the local HTTP mirror (serve); Ray (ray_address); the dashboard through AppTest (app_environment,
which a module applies with `pytestmark = pytest.mark.usefixtures("app_environment")`, started_jobs, tiny_idx,
no_data); the real browser (chromium, server, browser).
"""
from __future__ import annotations

import os
import secrets
import threading
from pathlib import Path

import pytest

from aecore.engine.data import ENV_VAR, Data
from aecore.engine.fetch import CACHE_ENV
from idx_helpers import as_data, real_mnist_dir, tiny_arrays, write_dataset, write_idx_folder

N_TRAIN, N_TEST = 64, 32


@pytest.fixture(scope="session")
def arrays() -> dict:
    """The contents every tiny IDX folder holds (64 train and 32 test images, labels 0-9)."""
    return tiny_arrays(N_TRAIN, N_TEST, seed=1)


@pytest.fixture
def make_dataset(tmp_path, arrays):
    """Factory: make_dataset(name, gz=True, layout='flat', arrays=None) -> the root folder written."""
    def make(name: str = "idx", gz: bool = True, layout: str = "flat", contents: dict | None = None) -> Path:
        root = tmp_path / name
        root.mkdir(parents=True, exist_ok=True)
        write_dataset(root, contents or arrays, gz=gz, layout=layout)
        return root
    return make


@pytest.fixture
def mnist_dir(make_dataset) -> Path:
    """A flat folder of gzip-compressed tiny IDX files."""
    return make_dataset("mnist-gz", gz=True, layout="flat")


@pytest.fixture
def mnist_raw_dir(make_dataset) -> Path:
    """A torchvision-style root (<root>/MNIST/raw) of uncompressed tiny IDX files."""
    return make_dataset("mnist-raw", gz=False, layout="torchvision")


@pytest.fixture
def tiny_data(arrays) -> Data:
    """The tiny images of `arrays` as a `Data` (no validation split), straight from tensors."""
    return as_data(arrays)


# ---------------------------------------------------------------------------------------------- real MNIST
def pytest_runtest_setup(item):
    if item.get_closest_marker("mnist") and real_mnist_dir() is None:
        pytest.skip(f"real MNIST not available: set {ENV_VAR} to a folder with the four IDX files")


# Test modules of the dashboard layer set up their own environment and working directory.
_OWN_ENVIRONMENT = ("test_app", "test_browser", "test_job", "test_preprocess")


@pytest.fixture(autouse=True)
def _isolated(request, monkeypatch, tmp_path, tmp_path_factory):
    """Every test: an empty download cache of its own (AECORE_CACHE_DIR), so a developer's real cache never
    changes which files are found. Engine tests not marked mnist also: no AECORE_DATA_DIR, and ./data means
    tmp_path/data (absent unless made)."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("aelab-cache")))
    if request.node.get_closest_marker("mnist") or request.node.path.name.startswith(_OWN_ENVIRONMENT):
        return
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)


# ---------------------------------------------------------------------------------------------- local mirror
@pytest.fixture
def serve():
    """Factory: serve(files, delay=0) -> a running Mirror, shut down after the test."""
    from local_mirror import Mirror
    started = []

    def make(files: dict[str, bytes], delay: float = 0.0) -> Mirror:
        started.append(Mirror(files, delay))
        return started[-1]
    yield make
    for m in started:
        m.close()


# ---------------------------------------------------------------------------------------------- Ray
@pytest.fixture(scope="module")
def ray_address():
    """A local Ray instance of 2 CPUs for one test module (skipped where Ray is not installed); its GCS address,
    what AELAB_RAY_ADDRESS would name."""
    ray = pytest.importorskip("ray")
    from aecore.runs import cluster
    cluster.disconnect()
    ray.init(num_cpus=2, include_dashboard=False, **cluster.init_options())
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        cluster.disconnect()
        ray.shutdown()


# ---------------------------------------------------------------------------------------------- the run store
POSTGRES = os.environ.get("AELAB_TEST_POSTGRES")   # a PostgreSQL server's URL (.ci/run starts one and sets it)


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request, tmp_path):
    """A fresh, empty store: a folder (SQLite), or a throwaway database on the PostgreSQL server."""
    if request.param == "sqlite":
        yield str(tmp_path / "store")
        return
    if not POSTGRES:
        pytest.skip("AELAB_TEST_POSTGRES is not set: no PostgreSQL server for the store's tests (.ci/run starts one)")
    psycopg = pytest.importorskip("psycopg")
    name = f"aelab_test_{secrets.token_hex(6)}"
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    yield f"{POSTGRES.rsplit('/', 1)[0]}/{name}"
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


# ---------------------------------------------------------------------------------------------- the dashboard (AppTest)
@pytest.fixture
def app_environment(monkeypatch, tmp_path):
    """For a module of AppTest tests (`pytestmark = pytest.mark.usefixtures("app_environment")`), every test:
    runs in threads, no Debian Fashion-MNIST, fresh caches; afterwards the session's resources are released (which
    stops its training run) and the run's thread is waited for."""
    import streamlit as st

    import aecore.engine.data
    from app_helpers import WAIT

    monkeypatch.setenv("AELAB_RUN_BACKEND", "threads")   # runs stay in this process: fakes and spies reach them
    monkeypatch.setattr(aecore.engine.data, "DEBIAN_FASHION", tmp_path / "no-debian-fashion-mnist")
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()
    for thread in threading.enumerate():
        if thread.name.startswith("train-"):
            thread.join(WAIT)


@pytest.fixture
def started_jobs(monkeypatch) -> list:
    """The training jobs the app starts during a test."""
    from aecore.runs import TrainingJob

    jobs: list[TrainingJob] = []
    real_start = TrainingJob.start

    def start(self):
        self.train_size = len(self.data.train)   # the job lets go of its data once it ends
        jobs.append(self)
        real_start(self)

    monkeypatch.setattr(TrainingJob, "start", start)
    return jobs


@pytest.fixture
def tiny_idx(tmp_path, monkeypatch) -> Path:
    """120 train and 40 test synthetic digits as gzip IDX files, made the dashboard's data."""
    from app_helpers import use_data

    folder = write_idx_folder(tmp_path / "idx", n_train=120, n_test=40)
    use_data(monkeypatch, tmp_path, folder)
    return folder


@pytest.fixture
def no_data(tmp_path, monkeypatch) -> None:
    """No data anywhere the dashboard looks."""
    from app_helpers import use_data

    use_data(monkeypatch, tmp_path, None)


# ---------------------------------------------------------------------------------------------- the real browser
@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's Chromium; skips the module when it, or the real MNIST files, are missing."""
    from browser_support import chromium_path

    path = chromium_path()
    if path is None:
        pytest.skip("chromium not installed (/usr/bin/chromium or `chromium` on PATH)")
    if real_mnist_dir() is None:
        pytest.skip("real MNIST not available: set AECORE_DATA_DIR to a folder with the four IDX files")
    return path


@pytest.fixture(scope="module")
def server(request, chromium) -> str:
    """`streamlit run app.py` on a free port (aecore.loadtest.serve), its default page served once, with
    AELAB_MAX_RUNS=1 and a short grace time; its base URL, for this module's tests (one server per module). Its
    log: tests/artifacts/<module>.streamlit.log; its process id: browser_support.SERVER_PID."""
    from aecore.loadtest import Deadline, serve
    from browser_support import ARTIFACTS, GRACE_S, SERVER_PID, STARTUP_S

    env = dict(os.environ, AELAB_MAX_RUNS="1", AELAB_RUN_GRACE_S=str(GRACE_S))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = ARTIFACTS / f"{request.module.__name__}.streamlit.log"
    with serve(env, log, Deadline(STARTUP_S + 60)) as (url, pid):
        SERVER_PID[0] = pid
        yield url


@pytest.fixture(scope="module")
def browser(chromium):
    """One headless Chromium for a test module (Playwright's sync API)."""
    from playwright.sync_api import sync_playwright

    from browser_support import CHROMIUM_ARGS

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()

"""State the pages share: cached read-only data and shipped models, the server's run service, the session's models.

Global caches hold read-only things (data sets, the shipped checkpoints) and the one run registry, the server
object through which every training starts. A session holds the id of the run it shows, never the run; the
models a visitor trains or uploads belong to that visitor's session (at most MAX_SESSION_MODELS of them).
"""
from __future__ import annotations

import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

from aecore.labs import anomaly
from aecore.engine import checkpoint, fetch
from aecore.engine.data import DATASETS, DataConfig, DataError, load_split, split
from aecore.runs import RegistryConfig, RunRefused, RunRegistry
from aecore.engine.models import count_params
from aecore.engine.train import resolve_device

ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = ROOT / "models"
DATA_DIR = os.environ.get("AECORE_DATA_DIR") or None
ACTIVATE = "app.activate"   # a model to make active on the next run, set by add_session_model
DEEP_LINK = "app.deep_link"  # the page a first request asked for before app.py's frame ran (require_frame)


@dataclass(frozen=True)
class ActiveModel:
    key: str          # "shipped:<name>" or "session:<name>"
    name: str
    model: object     # aecore.engine.models.Autoencoder, in eval mode; never trained further
    meta: dict
    source: str       # where it came from, in words

    @property
    def config(self):
        return self.model.config

    @property
    def dataset(self) -> str:
        """The data set it learned (a checkpoint without data settings learned MNIST)."""
        return self.meta["data"].dataset if self.meta.get("data") else "mnist"

    @property
    def uses_noise(self) -> bool:
        """True when it trained on corrupted inputs: noise, or deformation."""
        tr = self.meta.get("train")
        return bool(tr and ((tr.noise != "none" and tr.noise_level > 0) or tr.deform > 0))


# ------------------------------------------------------------------------------------------- shared, read-only
@st.cache_resource(show_spinner="Loading images…")
def raw_split(dataset: str, which: str):
    """One split ('train' or 'test') of a data set, shared by every session (never modified)."""
    return load_split(dataset, which, DATA_DIR)


def data_for(cfg: DataConfig):
    """Data for a config, built from the shared splits (views and small copies); raises DataError."""
    return split(raw_split(cfg.dataset, "train"), raw_split(cfg.dataset, "test"), cfg)


def test_split(dataset: str = "mnist"):
    """The test split, or None with the reason when the files are missing."""
    try:
        return raw_split(dataset, "test"), None
    except DataError as e:
        return None, str(e)


def available_datasets() -> list[str]:
    out = []
    for name in DATASETS:
        try:
            raw_split(name, "train")
            out.append(name)
        except DataError:
            pass
    return out


@st.cache_resource(show_spinner="Loading the shipped models…")
def shipped_models() -> dict:
    """name -> (model, meta) for every checkpoint in models/ (loaded through the safe loader)."""
    out = {}
    for path in sorted(MODELS_DIR.glob("*.safetensors")):
        model, meta = checkpoint.load(path)
        out[path.stem] = (model, meta)
    return out


@st.cache_resource(show_spinner="Loading the one-class detectors…")
def shipped_detectors() -> dict:
    """name -> (model, meta) for the one-class detectors in models/anomaly/."""
    return {name: anomaly.load_detector(path) for name, path in anomaly.shipped_detectors().items()}


@st.cache_resource(show_spinner="Loading the digit detector…")
def digit_detector():
    """The Draw page's "is this a digit?" detector, (model, meta), or None when its checkpoint is missing."""
    try:
        return anomaly.digit_detector()
    except (OSError, checkpoint.CheckpointError):
        return None


@st.cache_resource(show_spinner="Scoring the test set…", max_entries=32)
def test_scores(name: str, _model, dataset: str) -> np.ndarray:
    """A shipped model's anomaly scores on the whole test set, computed once per server (read-only)."""
    return anomaly.score(_model, raw_split(dataset, "test").images)


# ------------------------------------------------------------------------------------------- the server
def settings() -> dict:
    """AELAB_* / AECORE_* settings: Streamlit secrets (top-level keys), overridden by the environment."""
    merged = {}
    if st.secrets.load_if_toml_exists():   # reading st.secrets with no secrets file would raise
        merged.update({k: v for k, v in st.secrets.items() if k.startswith(("AELAB_", "AECORE_"))})
    merged.update({k: v for k, v in os.environ.items() if k.startswith(("AELAB_", "AECORE_"))})
    return merged


def _shutdown(registry: RunRegistry) -> None:
    registry.shutdown()


@st.cache_resource(show_spinner=False, on_release=_shutdown)
def run_registry() -> RunRegistry:
    """The server's one run service: every visitor's trainings, the cap and the queue (aecore.runs)."""
    return RunRegistry(RegistryConfig.from_settings(settings()))


def hosted() -> bool:
    return run_registry().config.profile == "hosted"


# ------------------------------------------------------------------------------------------- per session
MAX_SESSION_MODELS = 8   # models a visitor trains or uploads, kept in the session; the oldest go first
RUN_ID = "app.run_id"     # the run this session shows on the Train page (also in that page's URL)


def visitor() -> str:
    """This browser session's random token: the registry lists a visitor's own runs by it."""
    return st.session_state.setdefault("app.visitor", secrets.token_urlsafe(16))


class _Watcher:
    """This session as a watcher of runs; released (the tab closed) it stops watching them all."""
    def __init__(self, registry: RunRegistry, token: str):
        self.registry, self.token = registry, token


@st.cache_resource(scope="session", show_spinner=False, on_release=lambda w: w.registry.unwatch(w.token))
def _watcher(token: str) -> _Watcher:
    return _Watcher(run_registry(), token)


def watch(run_id: str) -> None:
    """This session shows the run: the server keeps it going while the session is open (and for the grace
    time after it closes, so that a reload can reattach)."""
    _watcher(visitor()).registry.heartbeat(run_id, visitor())


def linked_run(key: str = RUN_ID):
    """The run a page shows, kept in session_state[key]: the one in the URL (`?run=<id>`: a reload, or a link
    opened in another tab) when there is one, else the session's. The URL is kept pointing at it, and this
    session watches it. An unknown or expired link gets a warning and is removed."""
    registry = run_registry()
    linked = st.query_params.get("run")
    if linked and linked != st.session_state.get(key):
        if registry.attach(linked, visitor()) is None:
            st.warning("The run in this link is not on the server: the link is wrong, or the run ended more than "
                       f"{registry.config.retention_s / 60:g} minutes ago (or the server restarted).",
                       icon=":material/link_off:")
            del st.query_params["run"]
        else:
            st.session_state[key] = linked
    run_id = st.session_state.get(key)
    run = registry.view(run_id) if run_id else None
    if run is None:
        st.session_state.pop(key, None)   # dropped by the server after its retention time
    else:
        st.query_params["run"] = run.id
        watch(run.id)
    return run


def current_run():
    """The RunView of the run this session shows, or None (none yet, or dropped by the server)."""
    run_id = st.session_state.get(RUN_ID)
    return run_registry().view(run_id) if run_id else None


def session_models() -> dict:
    return st.session_state.setdefault("app.session_models", {})


def add_session_model(name: str, model, meta: dict, source: str, activate: bool = True) -> str:
    """Keep a model in this session; with `activate`, it becomes the active model from the next run on
    (the sidebar's selector may already exist in this run, so a page caller reruns the app)."""
    key, n = f"session:{name}", 1
    while key in session_models():        # a second upload of "model.safetensors" must not replace the first
        n += 1
        key = f"session:{name} ({n})"
        name = key.removeprefix("session:")
    models = session_models()
    models[key] = ActiveModel(key, name, model, meta, source)
    while len(models) > MAX_SESSION_MODELS:   # bounded memory per visitor: drop the oldest one not in use
        oldest = next(k for k in models if k not in (key, st.session_state.get("app.active")))
        del models[oldest]
    if activate:
        st.session_state[ACTIVATE] = key
    return key


def collect_finished_run() -> bool:
    """Add the ended run this session shows to its models (once) and make it active; True if it did. app.py
    calls this before it draws the model selector, so a run that ends while another page shows is picked up."""
    run = current_run()
    collected = st.session_state.setdefault("app.collected", set())
    if run is None or run.active or run.model is None or run.id in collected:
        return False
    collected.add(run.id)
    runs = st.session_state["train.runs"] = st.session_state.get("train.runs", 0) + 1
    add_session_model(f"{run.spec.name} run {runs}", run.model, run.meta,
                      f"trained in this session ({run.state}, {run.snapshot.device})")
    return True


def require_frame() -> None:
    """Pages run inside app.py's frame. On a fresh server whose very first request is a deep link, Streamlit's
    legacy handling of a `pages/` folder runs the page script alone; send that visitor through the frame, which
    then opens the page asked for (`open_deep_link`), with its query."""
    if not st.session_state.get("app.framed"):
        page = Path(sys._getframe(1).f_globals.get("__file__", "")).name     # the calling page's script
        st.session_state[DEEP_LINK] = f"pages/{page}"
        st.switch_page("app.py", query_params=st.query_params.to_dict())


def open_deep_link() -> None:
    """app.py, once its navigation exists: the page a deep link asked for before the frame ran, if any."""
    page = st.session_state.pop(DEEP_LINK, None)
    if page and (ROOT / page).is_file():
        st.switch_page(page, query_params=st.query_params.to_dict())


# Streamlit writes a slider's value in the primary colour, which cannot both carry white text on buttons and read
# as text on the dark background (axe's contrast rule); the value takes the text colour instead.
READABLE_SLIDERS = "<style>[data-testid='stSliderThumbValue'] { color: inherit; }</style>"


def readable_sliders() -> None:
    """Slider values in the text colour (a page with sliders calls this once; it takes no room on the page)."""
    st.html(READABLE_SLIDERS)


def model_choices() -> dict[str, ActiveModel]:
    choices = {f"shipped:{n}": ActiveModel(f"shipped:{n}", n, m, meta, "shipped pretrained checkpoint")
               for n, (m, meta) in shipped_models().items()}
    choices.update(session_models())
    return choices


def active_model() -> ActiveModel | None:
    choices = model_choices()
    if not choices:
        return None
    requested = st.session_state.pop(ACTIVATE, None)   # app.py calls this before it draws the selector
    if requested in choices:
        st.session_state["app.active"] = requested
    key = st.session_state.get("app.active")
    if key not in choices:
        key = "shipped:pytorch-784-200" if "shipped:pytorch-784-200" in choices else next(iter(choices))
        st.session_state["app.active"] = key
    return choices[key]


def page_model() -> ActiveModel:
    """The active model for a page; with none at all, a hint and the page stops."""
    am = active_model()
    if am is None:
        st.warning("No model yet: the models/ folder is empty. Train one on the Train page.")
        st.stop()
    return am


def describe(am: ActiveModel) -> dict:
    cfg = am.config
    return {"name": am.name, "family": cfg.family, "sizes": cfg.sizes_text, "parameters": f"{count_params(am.model):,}",
            "source": am.source, "device": describe_device()}


def describe_device() -> str:
    return str(resolve_device("auto"))


def about(seconds: float | None) -> str:
    """A wait in words: 'under 5 s', '40 s', '3 min'."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "an unknown time"
    if seconds < 5:
        return "under 5 s"
    return f"about {seconds:,.0f} s" if seconds < 90 else f"about {seconds / 60:,.0f} min"


def queue_text(run) -> str:
    """A queued run's place, in the words every page uses: 'queued · number k in line · starts in …', or, on a
    Ray cluster (whose scheduler keeps the queue), what the run waits for and what the cluster has free."""
    registry = run_registry()
    cluster = registry.cluster_resources()
    if cluster is not None and run.position is None:
        gpu = run.snapshot.device.startswith("cuda")
        return (f"queued · waits for the Ray cluster's resources ({registry.config.threads_per_run} CPU"
                f"{' and 1 GPU' if gpu else ''}) · {cluster['free_cpus']:g} of {cluster['cpus']:g} CPUs free"
                + (f", {cluster['free_gpus']:g} of {cluster['gpus']:g} GPUs free" if cluster["gpus"] else "")
                + f" on {cluster['nodes']} node{'s' if cluster['nodes'] != 1 else ''}")
    cfg, counts = registry.config, registry.counts()
    slots = cfg.max_gpu_runs if run.snapshot.device.startswith("cuda") else cfg.max_runs
    return (f"queued · number {run.position} in line · starts in {about(run.starts_in_s)} (estimated) · "
            f"{counts['running']} of {slots} training slots busy")


# ------------------------------------------------------------------------------------------- data on first use
@st.cache_resource(show_spinner=False)
def downloader(dataset: str) -> fetch.Download:
    """One download per data set per server, shared by every session (a second visitor sees the same one)."""
    return fetch.Download(dataset)


def data_missing(dataset: str) -> None:
    """The data set is not on this server: offer to download it (the hosted profile starts it by itself),
    with a progress bar every visitor shares; offline, one message with the setting to use instead."""
    if hosted():
        downloader(dataset).start()
    polling = downloader(dataset).status().state == "running"
    st.fragment(run_every=0.5 if polling else None)(_download_panel)(dataset, polling)


def _download_panel(dataset: str, polling: bool) -> None:
    dl = downloader(dataset)
    status = dl.status()
    if status.state == "done":
        if polling:
            st.rerun()     # the files are in place: the whole page now finds them
        return
    size = "about 11 MB" if dataset == "mnist" else "about 30 MB"
    with st.container(border=True):
        st.markdown(f"**{dataset} is not on this server.** AE Lab reads the four official IDX files; it can "
                    f"download them ({size}) into `{fetch.cache_dir()}` once, for every visitor.")
        if status.state == "running":
            mb = f"{status.bytes_done / 1e6:.1f} / {status.bytes_total / 1e6:.1f} MB" if status.bytes_total else \
                f"{status.bytes_done / 1e6:.1f} MB"
            st.progress(status.fraction, text=f"Downloading {dataset}: {mb}")
            return
        if status.state == "failed":
            st.error(f"**Download failed.** {status.error}", icon=":material/cloud_off:")
        if st.button(f"Download {dataset}", icon=":material/download:", key=f"app.download.{dataset}"):
            dl.start()
            st.rerun()


def submit(start) -> str | None:
    """Call `start()` (which loads the data and submits to the run registry) and return its id; when it cannot
    start, say why in the page and return None: missing data, a refusal by the server, or a bad setting."""
    try:
        return start()
    except DataError as e:
        data_error_box(str(e))
    except RunRefused as e:
        st.error(f"**Not started.** {e}", icon=":material/block:")
    except ValueError as e:
        st.error(f"**Cannot start.** {e}", icon=":material/warning:")
    return None


def data_error_box(message: str) -> None:
    st.error(f"**Data not available.** {message}", icon=":material/folder_off:")

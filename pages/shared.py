"""State the pages share: cached read-only data and shipped models, the session's models and its training job.

Global caches hold only read-only things (data sets, the shipped checkpoints). Models a visitor trains or
uploads, and the training job, belong to that visitor's session.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from aecore import checkpoint
from aecore.data import DATASETS, DataConfig, DataError, load_split, split
from aecore.job import TrainingJob
from aecore.models import count_params
from aecore.train import resolve_device

ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = ROOT / "models"
DATA_DIR = os.environ.get("AECORE_DATA_DIR") or None
ACTIVATE = "app.activate"   # a model to make active on the next run, set by add_session_model


@dataclass(frozen=True)
class ActiveModel:
    key: str          # "shipped:<name>" or "session:<name>"
    name: str
    model: object     # aecore.models.Autoencoder, in eval mode; never trained further
    meta: dict
    source: str       # where it came from, in words

    @property
    def config(self):
        return self.model.config

    @property
    def uses_noise(self) -> bool:
        tr = self.meta.get("train")
        return bool(tr and tr.noise != "none" and tr.noise_level > 0)


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


# ------------------------------------------------------------------------------------------- per session
class JobSlot:
    """Holds this session's training job; released (and the job stopped) when the session closes."""
    def __init__(self):
        self.job: TrainingJob | None = None
        self.collected = False    # the ended job's model is already among the session's models

    def start(self, job: TrainingJob) -> None:
        job.start()
        self.job, self.collected = job, False


def _release(slot: JobSlot) -> None:
    if slot.job is not None:
        slot.job.stop()


@st.cache_resource(scope="session", on_release=_release, show_spinner=False)
def job_slot() -> JobSlot:
    return JobSlot()


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
    session_models()[key] = ActiveModel(key, name, model, meta, source)
    if activate:
        st.session_state[ACTIVATE] = key
    return key


def collect_finished_run() -> bool:
    """Add this session's ended run to its models (once) and make it active; True if it did. app.py calls this
    before it draws the model selector, so a run that ends while another page shows is picked up there too."""
    slot = job_slot()
    job = slot.job
    if job is None or job.active or job.model is None or slot.collected:
        return False
    slot.collected = True
    runs = st.session_state["train.runs"] = st.session_state.get("train.runs", 0) + 1
    snap = job.snapshot()
    add_session_model(f"{job.spec.name} run {runs}", job.model, job.meta,
                      f"trained in this session ({snap.state}, {snap.device})")
    return True


def require_frame() -> None:
    """Pages run inside app.py's frame. On a fresh server whose very first request is a deep link, Streamlit's
    legacy handling of a `pages/` folder runs the page script alone; send that visitor through the frame."""
    if not st.session_state.get("app.framed"):
        st.switch_page("app.py")


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
    if cfg.family == "conv":
        sizes = "1→" + "→".join(map(str, cfg.channels)) + " channels, code " + "×".join(map(str, cfg.code_shape))
    else:
        sizes = "-".join(map(str, [784, *cfg.hidden, *cfg.hidden[-2::-1], 784]))
    return {"name": am.name, "family": cfg.family, "sizes": sizes, "parameters": f"{count_params(am.model):,}",
            "source": am.source, "device": describe_device()}


def describe_device() -> str:
    return str(resolve_device("auto"))


def data_error_box(message: str) -> None:
    st.error(f"**Data not available.** {message}", icon="📂")

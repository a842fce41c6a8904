"""What the server loads once and every visitor reads: the data sets' splits, the shipped checkpoints, the
shipped detectors, the test-set scores of shipped models (read from models/precomputed/ when they hold them, see
aecore.labs.precomputed), and the one download per data set.

Everything here is an `st.cache_resource`, shared by every session and never modified; a visitor's own models
live in `ui.session`.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import streamlit as st

from aecore.engine import checkpoint, fetch, scoring
from aecore.engine.data import DATASETS, DataConfig, DataError, found, load_split, split
from aecore.labs import anomaly, precomputed

ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = ROOT / "models"
DATA_DIR = os.environ.get("AECORE_DATA_DIR") or None   # read once, when first imported (tests set it here)


# ------------------------------------------------------------------------------------------- data sets
_READ_AHEAD: dict = {}   # (dataset, split, data dir) -> the split the server's start-up read (ui.warmup), used once


def read_ahead(dataset: str = "mnist", which: tuple[str, ...] = ("test", "train")) -> list[str]:
    """Read a data set's splits before any visitor asks (the server's start-up): `raw_split` takes them instead of
    reading the files again. Returns the splits read; none when the files are not here (a page will say so)."""
    done = []
    for split_name in which:
        try:
            _READ_AHEAD[(dataset, split_name, DATA_DIR)] = load_split(dataset, split_name, DATA_DIR)
        except DataError:
            break
        done.append(split_name)
    return done


@st.cache_resource(show_spinner="Loading images…")
def raw_split(dataset: str, which: str):
    """One split ('train' or 'test') of a data set, shared by every session (never modified)."""
    ahead = _READ_AHEAD.pop((dataset, which, DATA_DIR), None)
    return ahead if ahead is not None else load_split(dataset, which, DATA_DIR)


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
    """The data sets whose files are here. Only looked for, not read: a page that lists them (Train's form) need
    not load 60,000 images of each on its first render; a file that turns out unreadable is a DataError where it
    is read, as before."""
    return [name for name in DATASETS if found(name, DATA_DIR)]


@st.cache_resource(show_spinner=False)
def downloader(dataset: str) -> fetch.Download:
    """One download per data set per server, shared by every session (a second visitor sees the same one)."""
    return fetch.Download(dataset)


# ------------------------------------------------------------------------------------------- shipped models
@st.cache_resource(show_spinner="Loading the shipped models…")
def shipped_models() -> dict:
    """name -> (model, meta) for every checkpoint in models/ (loaded through the safe loader)."""
    out = {}
    for path in sorted(MODELS_DIR.glob("*.safetensors")):
        model, meta = checkpoint.load(path)
        out[path.stem] = (model, meta)
    return out


@st.cache_resource(show_spinner=False)
def detector_records() -> dict:
    """name -> meta of the one-class detectors in models/anomaly/, from their headers alone: a page lists all ten
    and shows one, so only that one's weights are loaded (`shipped_detector`)."""
    records = {name: checkpoint.metadata(path) for name, path in anomaly.shipped_detectors().items()}
    return {name: meta for name, meta in records.items() if "anomaly" in meta}


@st.cache_resource(show_spinner="Loading the detector…", max_entries=16)
def shipped_detector(name: str) -> tuple:
    """One of the detectors in models/anomaly/: (model, meta)."""
    return anomaly.load_detector(anomaly.shipped_detectors()[name])


@st.cache_resource(show_spinner="Loading the digit detector…")
def digit_detector():
    """The Draw page's "is this a digit?" detector, (model, meta), or None when its checkpoint is missing."""
    try:
        return anomaly.digit_detector()
    except (OSError, checkpoint.CheckpointError):
        return None


@st.cache_resource(show_spinner="Rebuilding the test set…", max_entries=32)
def test_errors(name: str, _model, dataset: str) -> np.ndarray:
    """A shipped model's reconstruction error (MSE) on every test picture of `dataset` (read-only), once per
    server: every visitor's Inspect and Compare read the same."""
    return scoring.reconstruction_error(_model, raw_split(dataset, "test").images)


@st.cache_resource(show_spinner="Scoring the test set…", max_entries=32)
def test_scores(name: str, _model, dataset: str) -> np.ndarray:
    """A shipped model's anomaly scores on the whole test set (read-only), once per server: the shipped ones
    (aecore.labs.precomputed) when they were computed from this model's weights and these test images, else
    computed here."""
    images = raw_split(dataset, "test").images
    shipped = precomputed.anomaly_scores(_model, images)
    return shipped if shipped is not None else anomaly.score(_model, images)

"""Take it home: the download buttons for a run's code (a training script, a notebook), its model as ONNX and its
model as one offline page (aecore.export). Each file is written only when its button is clicked (Streamlit's
deferred download), so a page that shows the buttons does no export work, and onnx is imported only then."""
from __future__ import annotations

import importlib.util
import re

import streamlit as st

from aecore.engine import checkpoint
from aecore.engine.checkpoint import ModelEntry
from aecore.engine.train import RunSpec
from aecore.export import html_page, notebook, onnx_bytes, script, spec_from_meta

CODE_HELP = ("A Python script that trains this configuration as AE Lab does, with torch and numpy only: "
             "`python run.py --data-dir DIR` prints the same losses for the same seed, data and device.")
NOTEBOOK_HELP = "The same code as a Jupyter notebook, a section per cell."
ONNX_HELP = "The whole autoencoder (pictures in [0, 1] to their reconstruction) as ONNX, for onnxruntime and others."
PAGE_HELP = ("One HTML file that holds the model and runs it in the browser, offline: draw, see the reconstruction "
             "and the error map, and for a 2-D code walk the latent plane.")


def own(key: str) -> str:
    """The buttons' keys live under "takehome.", not under the page's own prefix ("train." ...), which a page's form
    may write to (a download button's state is read-only): "train.takehome." -> "takehome.train."."""
    return "takehome." + key.removesuffix("takehome.")


def stem(name: str) -> str:
    """A file name for a run's name: letters, digits, dots and dashes."""
    return re.sub(r"[^A-Za-z0-9.-]+", "-", name).strip("-") or "model"


def code_buttons(spec: RunSpec, key: str, checkpoint_bytes: bytes | None = None) -> None:
    """The run's code as a script and as a notebook, side by side. Given the run's checkpoint, the code is written
    from what it records (the settings it was started with and every change made while it trained)."""
    def recorded() -> RunSpec:
        return recorded_spec(spec, checkpoint_bytes)
    left, right = st.columns(2)
    left.download_button("Code (.py)", data=lambda: script(recorded()), file_name=f"{stem(spec.name)}.py",
                         mime="text/x-python", key=own(key) + "py", on_click="ignore", icon=":material/code:",
                         help=CODE_HELP)
    right.download_button("Notebook (.ipynb)", data=lambda: notebook(recorded()),
                          file_name=f"{stem(spec.name)}.ipynb",
                          mime="application/x-ipynb+json", key=own(key) + "ipynb", on_click="ignore",
                          icon=":material/menu_book:", help=NOTEBOOK_HELP)


def recorded_spec(spec: RunSpec, checkpoint_bytes: bytes | None) -> RunSpec:
    """What the run's checkpoint records it was trained with, or `spec` where there is no checkpoint."""
    return spec_from_meta(checkpoint.load(checkpoint_bytes)[1]) if checkpoint_bytes else spec


def entry_spec(entry: ModelEntry) -> RunSpec:
    """What a model's record says it was trained with (AE Lab's defaults where it says nothing)."""
    return spec_from_meta({**entry.meta, "name": entry.name}, entry.config)


def model_buttons(entry: ModelEntry, key: str) -> None:
    """Everything for one model: its code, the notebook, ONNX and the offline page."""
    code_buttons(entry_spec(entry), key)
    left, right = st.columns(2)
    has_onnx = importlib.util.find_spec("onnx") is not None
    left.download_button("Model (.onnx)", data=lambda: onnx_bytes(entry.model, "all"),
                         file_name=f"{stem(entry.name)}.onnx", mime="application/octet-stream", key=own(key) + "onnx",
                         on_click="ignore", icon=":material/deployed_code:", disabled=not has_onnx,
                         help=ONNX_HELP if has_onnx else "ONNX export needs the onnx package on this server.")
    right.download_button("Offline page (.html)", data=lambda: html_page(entry.model, entry.name),
                          file_name=f"{stem(entry.name)}.html", mime="text/html", key=own(key) + "html",
                          on_click="ignore", icon=":material/web:", help=PAGE_HELP)
    st.caption("The encoder or the decoder alone: "
               "`python -m aecore.export onnx CHECKPOINT --part encoder -o enc.onnx`.")


def model_section(entry: ModelEntry, key: str) -> None:
    """Inspect's expander: the active model to take home."""
    with st.expander("Take it home: the code, ONNX, an offline page", icon=":material/download:"):
        model_buttons(entry, key)


def compare_section(entries: list[ModelEntry], key: str) -> None:
    """Compare's last part: each compared model's training code, to diff what one run did with another's."""
    with st.expander("The code of each model: diff two to see every setting that differs, line by line",
                     icon=":material/code:"):
        for i, entry in enumerate(entries):
            st.markdown(f"**{entry.name}**")
            code_buttons(entry_spec(entry), f"{key}{i}.")

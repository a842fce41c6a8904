"""The server's run service: the one `RunRegistry` through which every visitor's training starts (aecore.runs),
configured by the AELAB_* / AECORE_* settings, and shut down when Streamlit releases it."""
from __future__ import annotations

import functools
import os

import streamlit as st

from aecore.labs import classroom
from aecore.runs import RegistryConfig, RunRegistry


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
    """The server's one run service: every visitor's trainings, the cap and the queue (aecore.runs); with a run
    store, a class run is scored onto its board as it ends (aecore.labs.classroom)."""
    registry = RunRegistry(RegistryConfig.from_settings(settings()))
    if registry.keeper.store is not None:
        registry.keeper.hooks.append(functools.partial(classroom.record, registry.keeper.store))
    return registry


def hosted() -> bool:
    return run_registry().config.profile == "hosted"

"""The Epoch slider of Inspect and Latent: a run trained here replays its figures epoch by epoch
(`aecore.engine.replay`); a model without a replay (a shipped or uploaded checkpoint) has one epoch to show, and
the page says so."""
from __future__ import annotations

import streamlit as st

from aecore.engine.checkpoint import ModelEntry
from aecore.engine.replay import MAX_BYTES, Frame, Replay


def of(am: ModelEntry) -> Replay | None:
    """The active model's replay, when its run kept one."""
    replay = am.meta.get("replay")
    return replay if isinstance(replay, Replay) and replay.frames else None


def trained_epochs(am: ModelEntry, replay: Replay) -> int:
    """How many epochs the model trained (its per-epoch history; else its newest frame)."""
    return max([int(h.get("epoch", 0)) for h in am.history if isinstance(h, dict)] + [replay.epochs[-1]])


def epoch_slider(am: ModelEntry, replay: Replay, key: str, figures: str) -> Frame:
    """The Epoch slider over the epochs the replay kept (the last one first) and a line on what it replays; the
    chosen epoch's frame."""
    epochs = replay.epochs
    if st.session_state.get(key) not in epochs:     # a value left by another model's replay
        st.session_state.pop(key, None)
    epoch = st.select_slider("Epoch", epochs, value=epochs[-1], key=key,
                             help=f"Replays {figures} as they were after each epoch of this model's run.")
    trained = trained_epochs(am, replay)
    kept = (f"all {trained} epochs" if len(epochs) == trained else
            f"{len(epochs)} of its {trained} epochs (a replay stays under {MAX_BYTES / 2**20:g} MiB, so older "
            "epochs are thinned evenly; the first and the last always stay)")
    st.caption(f"{figures.capitalize()} after epoch {epoch}: the run kept a small snapshot of {kept}, "
               f"{replay.nbytes / 2**20:.1f} MiB in all.")
    return replay.at(epoch)


def one_epoch(am: ModelEntry, replay: Replay | None, figures: str) -> None:
    """The caption for a model with one epoch to show, saying why."""
    if replay is not None:
        why = "its run trained one epoch"
    elif am.shipped:
        why = "a shipped checkpoint keeps only its final weights"
    else:
        why = "its checkpoint keeps only the final weights (no per-epoch snapshots)"
    st.caption(f"**One epoch to show** for {am.name}: {why}. A run trained on the Train page keeps a small "
               f"snapshot after every epoch, and an Epoch slider here then replays how {figures} formed.")

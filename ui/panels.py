"""Pieces of page the pages share, in the same words everywhere: the download panel for a missing data set, the
result of submitting a run (or why it did not start), a queued run's place in line, the list of the visitor's runs,
readable sliders, and room for the tables' toolbars on a touch screen."""
from __future__ import annotations

import streamlit as st

from aecore.engine import fetch
from aecore.engine.data import DataError
from aecore.runs import RunRefused
from ui import caches, server, session

# Streamlit writes a slider's value in the primary colour, which cannot both carry white text on buttons and read
# as text on the dark background (axe's contrast rule); the value takes the text colour instead.
READABLE_SLIDERS = "<style>[data-testid='stSliderThumbValue'] { color: inherit; }</style>"


def readable_sliders() -> None:
    """Slider values in the text colour (a page with sliders calls this once; it takes no room on the page)."""
    st.html(READABLE_SLIDERS)


# On a touch screen (no hover) Streamlit shows a table's toolbar (search, download, full screen) at all times, 44 px
# tall above the table's top right corner: over the end of the header or caption above it. Tables get that room.
TABLE_TOOLBAR_ROOM = ("<style>@media (hover: none) { [data-testid='stElementContainer']:has("
                      "[data-testid='stDataFrame']) { margin-top: 1.75rem; } }</style>")


def table_toolbar_room() -> None:
    """Room above every table for its toolbar on a touch screen (a page with tables calls this once)."""
    st.html(TABLE_TOOLBAR_ROOM)


# ------------------------------------------------------------------------------------------- runs
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
    registry = server.run_registry()
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


# ------------------------------------------------------------------------------------------- data on first use
def data_error_box(message: str) -> None:
    st.error(f"**Data not available.** {message}", icon=":material/folder_off:")


def data_missing(dataset: str) -> None:
    """The data set is not on this server: offer to download it (the hosted profile starts it by itself),
    with a progress bar every visitor shares; offline, one message with the setting to use instead."""
    if server.hosted():
        caches.downloader(dataset).start()
    polling = caches.downloader(dataset).status().state == "running"
    st.fragment(run_every=0.5 if polling else None)(_download_panel)(dataset, polling)


def _download_panel(dataset: str, polling: bool) -> None:
    dl = caches.downloader(dataset)
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


def selected(key: str, param: str, *fields: str) -> dict | None:
    """The first entry of chart `key`'s selection `param` (`on_select`) that holds all `fields`, or None: an empty
    selection reads {} or [{}]."""
    entries = (((st.session_state.get(key) or {}).get("selection")) or {}).get(param)
    return next((e for e in entries if all(f in e for f in fields)), None) if isinstance(entries, list) else None


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A small table as Markdown: st.dataframe would import pandas (some 0.4 s for a fresh server's first visitor)
    for a few counts."""
    return "\n".join("| " + " | ".join(cells) + " |" for cells in [header, ["---"] * len(header), *rows])


def run_progress(run, epochs: int | None = None) -> None:
    """A training run's progress bar in the same words on every page: its place in line, its epoch and loss, or
    that it is getting ready. `epochs`: the run's epochs, for a lab's task that trains one model (a training
    run's are in its spec)."""
    m = run.snapshot.last
    if run.state == "queued":
        st.progress(0.0, text=queue_text(run))
    elif m:
        st.progress(run.snapshot.progress, text=f"{run.state} · {run.spec.name} · epoch {m.epoch}/"
                                                f"{epochs or run.spec.train.epochs} · loss {m.train_loss:.4f}")
    else:
        st.progress(0.0, text=f"{run.state} · {run.spec.name} · preparing on {run.snapshot.device}…")


# ------------------------------------------------------------------------------------------- the visitor's runs
def runs_list(mine: list, run, status: dict, key: str) -> None:
    """The Train page's list of this visitor's trainings (RunViews, `mine`), when there are several: picking one
    shows it (the session and the URL follow). `status` names each state; `key` is the radio's session key."""
    if len(mine) < 2:
        return
    registry = server.run_registry()

    def show_picked() -> None:
        st.session_state[session.RUN_ID] = st.query_params["run"] = st.session_state[key]

    with st.expander(f"Your runs on this server ({len(mine)})"):
        kept = (f"{registry.config.store_retention.max_age_s / 86400:g} days, across restarts of the server"
                if registry.keeper.store else f"{registry.config.retention_s / 60:g} minutes")
        st.caption(f"Only runs started in this browser, or opened from their link, are listed. Ended runs are kept "
                   f"{kept}.")
        labels = {r.id: f"{r.spec.name} · {status[r.state]} · {r.snapshot.progress:.0%}" for r in mine}
        st.session_state[key] = run.id if run else mine[-1].id
        st.radio("Show", list(labels), format_func=labels.get, key=key, on_change=show_picked)

"""Studies: a multi-run experiment in one click (aecore.labs.studies), queued through the server's run service.

Start submits a study's runs as one series; they train one after another, each taking its turn in the queue.
This page holds the series' id, in the session and in the URL (`?study=<id>`), so a reload or another tab shows
the same study: its progress while it runs, and what it has finished for as long as the server keeps its runs.
"""

import streamlit as st

from aecore.labs import classifier, studies
from aecore.engine import presets, viz
from aecore.engine.data import DataError
from ui import caches, guide, panels, server, session

K = "studies."          # every session key of this page starts with this
SERIES = K + "series"   # the id of the series this session shows (also in the URL)
TILES = 36              # filters shown per layer and case: a 6 x 6 grid
CHART = {"displayModeBar": False}   # Plotly's buttons would cover the panel titles on a phone; drag zooms anyway
EMPTY = "–"             # what a table shows where a figure is not there (yet)

st.title("Studies")
guide.intro("studies")
panels.table_toolbar_room()
registry = server.run_registry()
me = session.visitor()


def watch(views) -> None:
    """The session shows the series: watching one of its runs keeps the whole series going (see session.watch)."""
    session.watch(next((v for v in views if v.active), views[-1]).id)


def linked_series():
    """The series this page shows and its runs: the one in the URL (a reload, a link opened in another tab) when
    there is one, else the session's; (None, None) when there is none, or the server no longer holds it."""
    linked = st.query_params.get("study")
    if linked and linked != st.session_state.get(SERIES):
        views = registry.attach_series(linked, me)
        if views is None:
            st.warning("The study in this link is not on the server: the link is wrong, or the study ended more than "
                       f"{registry.config.retention_s / 60:g} minutes ago (or the server restarted).",
                       icon=":material/link_off:")
            del st.query_params["study"]
        else:
            st.session_state[SERIES] = linked
            kind = studies.identify(views)
            if kind:                  # the choice shows the study of the link
                st.session_state[K + "pick"] = st.session_state[K + "chosen"] = kind
    series_id = st.session_state.get(SERIES)
    views = registry.series(series_id) if series_id else None
    if views is None:
        st.session_state.pop(SERIES, None)
        return None, None
    st.query_params["study"] = series_id
    watch(views)
    return series_id, views


series_id, views = linked_series()
busy = views is not None and any(v.active for v in views)

# ------------------------------------------------------------------------------------------------ the choice
# Widget state is dropped while another page shows; the last choice is kept beside it.
st.session_state.setdefault(K + "pick", st.session_state.get(K + "chosen", "chainer"))
pick = st.radio("Study", list(studies.STUDIES), key=K + "pick", horizontal=True,
                format_func=lambda n: studies.get(n).title)
st.session_state[K + "chosen"] = pick
study = studies.get(pick)
st.markdown(study.shows)
took = "" if study.minutes is None else (
    f" · the whole study took {study.minutes:g} min on a 2-core CPU with real MNIST (measured once; on a busy "
    f"server its runs also wait in the queue)")
st.caption(f"{len(study.specs)} runs, trained one after another: {', '.join(study.run_names)} · "
           f"**{study.epochs_note}**, to keep the study short{took}.")

b1, b2, _ = st.columns([1, 1, 4])
if b1.button("Start", icon=":material/play_arrow:", type="primary", disabled=busy, key=K + "btn_start"):
    new_id = panels.submit(lambda: registry.submit_series(study.specs, caches.data_for(study.data), me))
    if new_id:
        st.session_state[SERIES] = new_id
        st.query_params["study"] = new_id
        st.rerun()      # draw the buttons for the running study
if b2.button("Stop", icon=":material/stop:", disabled=not busy, key=K + "btn_stop"):
    running = next((v for v in registry.series(series_id) or [] if v.active), None)
    if running is not None:
        registry.stop(running.id)    # stops the rest of the series too
    st.rerun()


# ------------------------------------------------------------------------------------------------ progress
def run_state(v) -> str:
    """One run of the series in words."""
    if v.state == "queued" and v.position is None:
        runs = "run" if v.series_ahead == 1 else "runs"
        return (f"waits for {v.series_ahead} {runs} of this study · starts in {panels.about(v.starts_in_s)} "
                f"at the earliest")
    if v.state == "queued":
        return panels.queue_text(v)
    m = v.snapshot.last
    if v.state in ("running", "paused"):
        return f"{v.state} · epoch {m.epoch}/{v.spec.train.epochs}" if m else f"{v.state} · preparing"
    if v.state == "failed":
        return f"failed: {v.snapshot.error}"
    if v.state == "stopped" and v.stop_reason:
        return f"stopped: {v.stop_reason}"
    return v.state


@st.cache_resource(show_spinner="Fitting PCA on the training set…", max_entries=8)
def pca_curve(dataset: str, sizes: tuple[int, ...]) -> tuple[float, ...]:
    """PCA's test error at each size, fitted on the shared training split; one computation per server."""
    train, test = caches.raw_split(dataset, "train"), caches.raw_split(dataset, "test")
    return tuple(float(e) for e in studies.pca_errors(train.images, test.images, sizes))


@st.cache_data(max_entries=256, show_spinner="Measuring the test error…")
def ae_mse(run_id: str, dataset: str, _model) -> float:
    """A finished run's test MSE per pixel (its own figures hold its BCE); the run id keys it."""
    return studies.ae_test_mse(_model, caches.raw_split(dataset, "test").images)


def chainer_grid(views) -> None:
    tutorial = presets.get("chainer-case1")
    st.header("The tutorial's comparison")
    st.caption(f"Per case: {TILES} first-layer filters (the input pattern each hidden unit responds to) and "
               f"{TILES} rows of the last layer, transposed (the pattern each hidden unit paints), each tile scaled "
               "on its own; the test MSE is the model's own loss on the test set, in eval mode. The tutorial "
               f"trained {tutorial.train.epochs} epochs (case 1: test MSE {tutorial.figure:g}); these runs trained "
               f"{views[0].spec.train.epochs}.")
    for case in studies.chainer_results(views, TILES):
        with st.container(border=True):
            left, enc, dec = st.columns([2, 3, 3], vertical_alignment="center")
            left.markdown(f"**{case.title}**")
            if case.test_mse is not None:
                left.metric("test MSE", f"{case.test_mse:.4f}")
            if case.state != "finished":
                left.caption(case.state)
            if case.encoder is not None:
                enc.image(viz.grid(case.encoder, nrow=6, zoom=2), caption="first layer",
                          alt=f"{case.title}: {len(case.encoder)} first-layer filters as grey 28×28 tiles, six a "
                              "row, the input pattern each hidden unit responds to.")
                dec.image(viz.grid(case.decoder, nrow=6, zoom=2), caption="last layer, transposed",
                          alt=f"{case.title}: {len(case.decoder)} last-layer filters as grey 28×28 tiles, six a "
                              "row, the pattern each hidden unit paints.")


def code_size_chart(views) -> None:
    st.header("Test error against code size")
    dataset, sizes = views[0].spec.data.dataset, tuple(v.spec.model.hidden[0] for v in views)
    try:
        pca = pca_curve(dataset, sizes)
        n_train, n_test = len(caches.raw_split(dataset, "train")), len(caches.raw_split(dataset, "test"))
    except DataError as e:
        panels.data_error_box(str(e))
        return
    points = studies.code_size_results(views, lambda v: ae_mse(v.id, dataset, v.model))
    epochs = views[0].spec.train.epochs
    st.plotly_chart(viz.readable_log_axes(studies.code_size_figure(points, sizes, pca, epochs)), key=K + "chart",
                    width="stretch", config=CHART,
                    alt="Test error against code size, both on log scales: the autoencoders' points and PCA's.")
    st.dataframe([{"code size k": p.size, "autoencoder test MSE": p.test_mse, "PCA test MSE": e,
                   "autoencoder / PCA": p.test_mse / e if p.test_mse is not None and e > 0 else None}
                  for p, e in zip(points, pca)], hide_index=True, placeholder=EMPTY,
                 column_config={c: st.column_config.NumberColumn(format="%.5f")
                                for c in ("autoencoder test MSE", "PCA test MSE")})
    st.caption(f"Both: mean squared error per pixel over the {n_test:,} test images, pixels in [0, 1]. PCA is "
               f"fitted on the {n_train:,} training images the autoencoders trained on (plain linear "
               f"reconstruction from the top k components). The autoencoders trained {epochs} epochs with BCE; "
               "their points appear as their runs finish.")


@st.cache_data(max_entries=256, show_spinner="Measuring the test set and judging prior samples…")
def beta_figures(run_id: str, dataset: str, _model) -> dict:
    """A finished β run's test terms and judged samples (studies.beta_measure); the run id keys it."""
    return studies.beta_measure(_model, caches.raw_split(dataset, "test").images)


def beta_chart(views) -> None:
    st.header("Reconstruction against samples")
    dataset, epochs = views[0].spec.data.dataset, views[0].spec.train.epochs
    try:
        points = studies.beta_results(views, lambda v: beta_figures(v.id, dataset, v.model))
    except DataError as e:
        panels.data_error_box(str(e))
        return
    except classifier.ClassifierFileError as e:
        st.warning(f"The samples cannot be judged: {e}", icon=":material/warning:")
        return
    st.plotly_chart(viz.readable_log_axes(studies.beta_figure(points, epochs)), key=K + "beta_chart",
                    width="stretch", config=CHART,
                    alt="Against β on a log scale: the test reconstruction term and KL, and the share of prior "
                        "samples the digit classifier is sure of.")
    st.dataframe([{"β": p.beta, "reconstruction (nats)": f["reconstruction"], "KL (nats)": f["KL"],
                   "samples the judge is sure of": f["confident_share"], "inception score": f["inception_score"],
                   "digits it rarely draws": ", ".join(map(str, f["rare_digits"])) or "none"}
                  for p in points if (f := p.figures)], hide_index=True, placeholder=EMPTY,
                 column_config={"reconstruction (nats)": st.column_config.NumberColumn(format="%.1f"),
                                "KL (nats)": st.column_config.NumberColumn(format="%.2f"),
                                "samples the judge is sure of": st.column_config.NumberColumn(format="percent"),
                                "inception score": st.column_config.NumberColumn(format="%.2f")})
    st.caption(f"Reconstruction: the test set's binary cross-entropy summed over the 784 pixels, with the code at "
               f"its posterior mean; KL: from q(z|x) to the prior N(0, I), unweighted; both in nats per test image. "
               f"Samples: {studies.BETA_SAMPLES:,} draws from the prior per run, decoded and read by the digit "
               f"classifier (sure: probability ≥ 0.9; inception score: at most 10, real test digits ≈ 9.8; rarely "
               f"drawn: under 2.5 % of the samples). Each run trained {epochs} epochs, from the same seed; its "
               "point appears when it finishes.")


# A study in progress redraws its progress and results every 2 s; an ended one does not poll.
@st.fragment(run_every=2.0 if busy else None)
def progress_and_results() -> None:
    if series_id is None:
        st.info("No study yet in this session. Pick one, then press **Start**.")
        return
    views = registry.series(series_id)
    if views is None:
        st.info("The server no longer holds this study's runs.")
        return
    watch(views)
    kind = studies.identify(views)
    ended = [v for v in views if not v.active]
    title = studies.get(kind).title if kind else "Study"
    st.markdown(f"**{title}**: {len(ended)} of {len(views)} runs ended")
    st.progress(len(ended) / len(views))
    st.dataframe([{"run": v.spec.name, "state": run_state(v), "progress": v.snapshot.progress,
                   "training time (s)": round(v.snapshot.last.elapsed, 1) if v.snapshot.last else None}
                  for v in views], hide_index=True, placeholder=EMPTY,
                 column_config={"progress": st.column_config.ProgressColumn(format="percent")})
    if busy:
        st.caption("Keep this tab open (any page): a study nobody watches is stopped after "
                   f"{registry.config.grace_s:g} s. **Stop** ends the run in progress and the ones still waiting.")
    if kind == "chainer":
        chainer_grid(views)
    elif kind == "code-size":
        code_size_chart(views)
    elif kind == "beta":
        beta_chart(views)
    if busy and not any(v.active for v in views):
        st.rerun()      # the study has ended: the whole page, so the buttons and the polling follow


progress_and_results()

"""AE Lab: the frame. Page config, the shared sidebar (active model, this visitor's run), and navigation.

Streamlit runs this file as the script of every page view (`__main__`: `frame()`). `streamlit run app.py` first
imports it as a module to find its server, the `st.App` at the bottom, which warms the process up at start-up
(ui.warmup)."""
import streamlit as st

from aecore.runs import RayUnavailable
from ui import server, session, visitor, warmup


def pages() -> list:
    """The pages, in the sidebar's order. Their scripts live in app_pages/: Streamlit would load a folder named
    pages/ as a legacy multipage app."""
    return [
        st.Page("app_pages/start.py", title="Start", icon=":material/home:", default=True),
        st.Page("app_pages/train.py", title="Train", icon=":material/model_training:"),
        st.Page("app_pages/inspect.py", title="Inspect", icon=":material/biotech:"),
        st.Page("app_pages/latent.py", title="Latent space", icon=":material/scatter_plot:"),
        st.Page("app_pages/generate.py", title="Generate", icon=":material/auto_awesome:"),
        st.Page("app_pages/draw.py", title="Draw", icon=":material/draw:"),
        st.Page("app_pages/images.py", title="Your images", icon=":material/photo_library:"),
        st.Page("app_pages/anomalies.py", title="Anomalies", icon=":material/troubleshoot:"),
        st.Page("app_pages/compare.py", title="Compare", icon=":material/compare:"),
        st.Page("app_pages/studies.py", title="Studies", icon=":material/science:"),
        st.Page("app_pages/pretrain.py", title="Few labels", icon=":material/label:"),
        st.Page("app_pages/classroom.py", title="Class", icon=":material/school:"),
    ]


def run_badge() -> None:
    """This visitor's run, on every page, with the same progress figure as the Train page (step / total steps).
    It polls every 2 s while the run is active; when the run ends, the whole app reruns and collects its model."""
    run = session.current_run()
    if run is None or not run.active:
        if st.session_state.pop("app.badge", False):
            st.rerun()   # it ended while this page showed: the whole app collects its model
        return
    st.session_state["app.badge"] = True
    session.watch(run.id)
    last = run.snapshot.last
    where = ({"queued": f"number {run.position} in line" if run.position else "waiting for the cluster's resources"}
             .get(run.state) or (f"epoch {last.epoch} of {run.spec.train.epochs}, {run.snapshot.progress:.0%}" if last
                                 else "starting"))
    st.info(f"Training **{run.spec.name}**: {run.state}, {where}", icon=":material/hourglass_top:")


def offer_new_model(choices: dict) -> None:
    """A run that ended while another page showed: its model is the visitor's now; say so, and let them use it."""
    key = st.session_state.get(session.NEW_MODEL)
    if key not in choices:
        st.session_state.pop(session.NEW_MODEL, None)
        return
    st.success(f"Your run ended: **{choices[key].name}** is in your models.", icon=":material/check_circle:")
    if st.button("Make it the active model", key="app.use_new_model"):
        st.session_state[session.ACTIVATE] = key
        del st.session_state[session.NEW_MODEL]
        st.rerun()


def sidebar() -> None:
    """The active model, its facts, a run that ended elsewhere, and the run badge."""
    st.markdown("## :material/science: AE Lab")
    choices = session.model_choices()
    active = session.active_model()
    if active is None:
        st.warning("No model yet: the models/ folder is empty. Train one on the Train page.")
    else:
        keys = list(choices)
        st.selectbox("Active model", keys, key="app.active",
                     format_func=lambda k: f"{choices[k].name} ({'shipped' if k.startswith('shipped') else 'yours'})")
        info = session.describe(active)
        st.markdown(
            f"**{info['name']}**  \n"
            f"family: `{info['family']}`  \n"
            f"layers: `{info['sizes']}`  \n"
            f"parameters: **{info['parameters']}**  \n"
            f"from: {info['source']}  \n"
            f"device: `{info['device']}`")
    offer_new_model(choices)
    visitor.keep_cookie()
    shown = session.current_run()
    st.fragment(run_every=2.0 if shown is not None and shown.active else None)(run_badge)()


def frame() -> None:
    """One page view: the page config, the run service, this visitor's state, the sidebar, the page."""
    st.set_page_config(page_title="AE Lab", page_icon=":material/science:", layout="wide")
    nav = st.navigation(pages())
    try:
        server.run_registry()               # the server's run service, configured by AELAB_* settings
    except (ValueError, RayUnavailable) as e:
        st.error(f"**This AE Lab server is misconfigured.** {e}", icon=":material/settings_alert:")
        st.stop()
    session.restore()                       # what this visitor's other sessions left: a reload, another tab
    session.collect_finished_run(activate=nav.url_path == "train")   # before the model selector is drawn
    try:
        with st.sidebar:
            sidebar()
        nav.run()
    finally:
        session.keep()                      # for this visitor's next session (st.rerun and st.stop end up here too)


if __name__ == "__main__":
    frame()
else:
    app = st.App(__file__, lifespan=warmup.lifespan)

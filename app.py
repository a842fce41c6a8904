"""AE Lab: the frame. Page config, the shared sidebar (active model, this visitor's run), and navigation."""
import streamlit as st

from aecore.runs import RayUnavailable
from ui import server, session

st.set_page_config(page_title="AE Lab", page_icon=":material/science:", layout="wide")

# The page scripts live in app_pages/: Streamlit would load a folder named pages/ as a legacy multipage app.
pages = [
    st.Page("app_pages/start.py", title="Start", icon=":material/home:", default=True),
    st.Page("app_pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("app_pages/inspect.py", title="Inspect", icon=":material/biotech:"),
    st.Page("app_pages/latent.py", title="Latent space", icon=":material/scatter_plot:"),
    st.Page("app_pages/generate.py", title="Generate", icon=":material/auto_awesome:"),
    st.Page("app_pages/draw.py", title="Draw", icon=":material/draw:"),
    st.Page("app_pages/anomalies.py", title="Anomalies", icon=":material/troubleshoot:"),
    st.Page("app_pages/compare.py", title="Compare", icon=":material/compare:"),
    st.Page("app_pages/studies.py", title="Studies", icon=":material/science:"),
    st.Page("app_pages/pretrain.py", title="Few labels", icon=":material/label:"),
]
nav = st.navigation(pages)
try:
    server.run_registry()               # the server's run service, configured by AELAB_* settings
except (ValueError, RayUnavailable) as e:
    st.error(f"**This AE Lab server is misconfigured.** {e}", icon=":material/settings_alert:")
    st.stop()
session.collect_finished_run()          # before the model selector is drawn


def run_badge(polling: bool) -> None:
    """This visitor's run, on every page; while it is active the badge polls (slowly: the open session itself is
    what keeps the run going, see session.watch)."""
    run = session.current_run()
    if run is None or not run.active:
        if polling:
            st.rerun()   # it ended while this page showed: the whole app collects its model and stops polling
        return
    session.watch(run.id)
    where = {"queued": f"number {run.position} in line" if run.position else "waiting for the cluster's resources"
             }.get(run.state, f"{run.snapshot.progress:.0%}")
    st.info(f"Training **{run.spec.name}**: {run.state}, {where}", icon=":material/hourglass_top:")


with st.sidebar:
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
    current = session.current_run()
    watching = current is not None and current.active
    st.fragment(run_every=5.0 if watching else None)(run_badge)(watching)

nav.run()

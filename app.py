"""AE Lab: the frame. Page config, the shared sidebar (active model), and navigation over pages/."""
import streamlit as st

from pages import shared

st.set_page_config(page_title="AE Lab", page_icon="🧪", layout="wide")

pages = [
    st.Page("pages/train.py", title="Train", icon="🏋️", default=True),
    st.Page("pages/inspect.py", title="Inspect", icon="🔬"),
    st.Page("pages/latent.py", title="Latent space", icon="🌌"),
    st.Page("pages/draw.py", title="Draw", icon="✏️"),
]
nav = st.navigation(pages)
st.session_state["app.framed"] = True   # pages check this (see shared.require_frame)
shared.collect_finished_run()           # before the model selector is drawn

with st.sidebar:
    st.markdown("## 🧪 AE Lab")
    choices = shared.model_choices()
    active = shared.active_model()
    if active is None:
        st.warning("No model yet: the models/ folder is empty. Train one on the Train page.")
    else:
        keys = list(choices)
        st.selectbox("Active model", keys, key="app.active",
                     format_func=lambda k: f"{choices[k].name} ({'shipped' if k.startswith('shipped') else 'yours'})")
        info = shared.describe(active)
        st.markdown(
            f"**{info['name']}**  \n"
            f"family: `{info['family']}`  \n"
            f"layers: `{info['sizes']}`  \n"
            f"parameters: **{info['parameters']}**  \n"
            f"from: {info['source']}  \n"
            f"device: `{info['device']}`")
    job = shared.job_slot().job
    if job is not None and job.active:
        snap = job.snapshot()
        st.info(f"Training **{job.spec.name}**: {snap.state}, {snap.progress:.0%}", icon="⏳")

nav.run()

"""Draw: a digit drawn with the mouse (or uploaded) goes through the active model; how well does it come back?"""
import time

import streamlit as st
from streamlit_drawable_canvas import st_canvas   # only importable inside a running page

from aecore import preprocess, scoring, viz
from pages import shared

shared.require_frame()
K = "draw."


def verdict(pct: float) -> str:
    if pct < 90:
        return ":material/check_circle: typical for what this model learned"
    if pct < 99:
        return ":material/warning: unusual for what this model learned"
    return ":material/flag: very unusual: this model did not learn shapes like this"


st.title("Draw a digit")
am = shared.page_model()
st.caption(f"Active model: **{am.name}**. Draw white on black, as MNIST digits are; it is cropped, scaled to "
           f"20×20 and centred by its centre of mass in 28×28, like the MNIST originals.")

left, right = st.columns([1, 2], gap="large")
with left:
    canvas = st_canvas(stroke_width=18, stroke_color="#FFFFFF", background_color="#000000", height=280, width=280,
                       drawing_mode="freedraw", return_image_data=True, key=K + "canvas")
    upload = st.file_uploader("…or upload a PNG/JPEG of a digit", type=["png", "jpg", "jpeg"], key=K + "upload")

image, where = None, "drawing"
if upload is not None:
    try:
        image, where = preprocess.load_image(upload.getvalue()), f"upload {upload.name}"
    except preprocess.ImageError as e:
        with right:
            st.error(f"**Cannot use {upload.name}.** {e}", icon=":material/block:")
        st.stop()
elif canvas.image_data is not None:
    image = canvas.image_data

with right:
    if image is None:
        st.info("Draw a digit on the black square (hold the mouse button), or upload a picture.", icon=":material/draw:")
        st.stop()
    t0 = time.perf_counter()
    try:
        x = preprocess.to_mnist(image)
    except ValueError:
        st.info("The canvas is blank: draw a digit with the mouse.", icon=":material/draw:")
        st.stop()
    recon = scoring.reconstruct(am.model, x[None])[0]
    error = float(((recon - x) ** 2).mean())
    quantiles = am.meta.get("test_error_quantiles") or []
    pct = scoring.percentile(error, quantiles) if len(quantiles) >= 2 else None
    ms = (time.perf_counter() - t0) * 1000

    a, b, c = st.columns(3)
    a.image(viz.zoom(x, 6), caption=f"input, 28×28 ({where})")
    b.image(viz.zoom(recon, 6), caption="reconstruction")
    c.image(viz.colorize(viz.error_heatmap(x, recon), 6), caption="squared error per pixel")
    m1, m2 = st.columns(2)
    m1.metric("Reconstruction error (MSE)", f"{error:.5f}")
    if pct is not None:
        m2.metric("Percentile among the test set", f"{pct:.1f}")
        st.markdown(f"**{verdict(pct)}** — {pct:.1f}% of the test digits this model was scored on reconstruct "
                    f"with a lower error.")
    else:
        m2.metric("Percentile among the test set", "–", help="This checkpoint carries no test-error distribution.")
    st.caption(f"server time: {ms:.1f} ms")

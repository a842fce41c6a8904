"""Draw: a digit drawn with the mouse (or uploaded) goes through the active model; how well does it come back?
Which digit it reads as is the digit classifier's reading, whether it is a digit at all the digit detector's
verdict, each with how well it holds on a drawing set."""
import time

import streamlit as st
from streamlit_drawable_canvas import st_canvas   # only importable inside a running page

from aecore.labs import anomaly, classifier, drawset
from aecore.engine import preprocess, scoring, viz
from ui import caches, guide, session

K = "draw."
SURE = 0.9          # below this top probability the reading is called unsure (the classifier's "confident" line)
RUNNER_UP = 0.10    # a second digit this likely is named too
KIND_NAMES = {"mnist": "enlarged MNIST test digits", "font digit": "digits typed in fonts",
              "stroke digit": "digits drawn as pen strokes"}


def reading(probs) -> str:
    """The classifier's reading of one image from its probabilities (10,), in words: the digit, how likely, the
    runner-up when it is likely enough, and "unsure" when the top probability is below SURE."""
    order = probs.argsort()[::-1]
    best, second = int(order[0]), int(order[1])
    text = f"**{best}** ({100 * probs[best]:.0f} %)"
    if probs[second] >= RUNNER_UP:
        text += f" or {second}, {100 * probs[second]:.0f} %"
    return f"Reads as {text}" if probs[best] >= SURE else f"**unsure:** reads as {text}"


def digit_reading(x, column) -> None:
    """What the shipped digit classifier reads in the 28×28 image (in `column`, under the reconstruction), and
    how well such readings hold on drawings."""
    try:
        judge, meta = classifier.digit_classifier()
    except classifier.ClassifierFileError:
        column.info("The digit classifier (models/classifier/) is missing: no reading of which digit this is.",
                    icon=":material/info:")
        return
    column.markdown(reading(classifier.predict_proba(judge, x)[0]))
    d = meta.get("drawings") or {}
    acc, n = d.get("accuracy_by_kind") or {}, d.get("count_by_kind") or {}
    held = ", ".join(f"{a:.1%} of {n.get(k, '?')} {KIND_NAMES.get(k, k + 's')}" for k, a in acc.items())
    sure = classifier.sureness(meta)
    st.caption("Read by the digit classifier (`models/classifier/`), not by the active model. "
               + (f"On drawings like this one, after the same preprocessing, it reads right {held}. " if held else
                  "Its file holds no figures on drawings. ")
               + (f"It is sure (≥ {SURE:.0%}) of {sure}: a sure reading does not make a drawing a digit — that "
                  f"is the detector's verdict below." if sure else ""))


def digit_verdict(x, detector) -> None:
    """The digit detector's score for the 28×28 image, its verdict at the stored threshold, and how often that
    verdict is right on the drawing set its checkpoint was measured on."""
    if detector is None:
        st.warning("The digit detector's checkpoint (models/digits/) is missing: no verdict on whether this is a "
                   "digit.", icon=":material/warning:")
        return
    model, meta = detector
    a = meta["anomaly"]
    s = float(anomaly.score(model, x[None])[0])
    pct = scoring.percentile(s, a["canvas_quantiles"])
    unusual = s > a["verdict_threshold"]
    st.header("Is it a digit?")
    m1, m2 = st.columns(2)
    m1.metric("Digit detector score", f"{s:.4f}", help="Squared reconstruction error over the 20 worst pixels "
              f"(aecore.labs.anomaly.score); the verdict threshold is {a['verdict_threshold']:.4f}.")
    m2.metric("Percentile among real digits", f"{pct:.1f}",
              help="Share of held-out MNIST training digits, enlarged onto this canvas and brought back, that "
                   "score lower.")
    line = f"the line is at {100 * (1 - a['verdict_false_alarm']):.0f}%"
    if unusual:
        st.markdown(f"**:material/warning: unusual: this does not look like the handwritten digits the detector "
                    f"learned** — it scores above {pct:.1f}% of real digits ({line}).")
    else:
        st.markdown(f"**:material/check_circle: typical of handwritten digits** — {pct:.1f}% of real digits score "
                    f"lower ({line}).")
    d = a["drawings"]
    n = d["count_by_kind"]
    digits = sum(n.get(k, 0) for k in drawset.DIGIT_KINDS)
    st.caption(f"Verdict by the digit detector, not by the active model: the `{a['recipe']}` recipe trained on all "
               f"ten MNIST digits (`models/digits/`). On a set of {sum(n.values())} canvas drawings "
               f"({digits} digits: enlarged MNIST, fonts, pen strokes; {sum(n.values()) - digits} letters, "
               f"symbols, shapes and scribbles) it ranks digits below the rest with AUC {d['auc']:.3f}, calls "
               f"{d['non_digits_unusual']:.0%} of the non-digits unusual and {d['digits_typical']:.0%} of the digits "
               f"typical. The non-digits it finds most digit-like: "
               f"{', '.join(d['most_digit_like_non_digits'][:6])}; the digits it finds least digit-like: "
               f"{', '.join(d['least_digit_like_digits'][:6])}.")


st.title("Draw a digit")
guide.intro("draw")
am = session.page_model()
detector = caches.digit_detector()        # loaded once per server, like the active model
st.caption(f"Active model: **{am.name}** (the reconstruction); which digit it reads as is told by the digit "
           f"classifier, whether it is a digit at all by the digit detector. Draw white on black, as MNIST digits "
           f"are; it is cropped, scaled to 20×20 and centred by its centre of mass in 28×28, like the MNIST "
           f"originals.")

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

    a, b, c = st.columns(3)
    a.image(viz.zoom(x, 6), caption=f"input, 28×28 ({where})",
            alt="The drawing as the model receives it: white strokes on black, cropped, scaled and centred in "
                "28×28 pixels.")
    b.image(viz.zoom(recon, 6), caption="reconstruction",
            alt=f"The drawing as {am.name} rebuilds it from its code, 28×28 pixels.")
    c.image(viz.colorize(viz.error_heatmap(x, recon), 6), caption="squared error per pixel",
            alt="Where the reconstruction differs from the drawing: black where they agree, through red and "
                "yellow to white where they differ most.")
    digit_reading(x, b)
    m1, m2 = st.columns(2)
    m1.metric("Reconstruction error (MSE)", f"{error:.5f}", help=f"of the active model, {am.name}")
    if pct is not None:
        m2.metric("Percentile among the test set", f"{pct:.1f}")
        st.caption(f"{pct:.1f}% of the test digits {am.name} was scored on reconstruct with a lower error. A "
                   f"low error alone does not make a digit: a model that reconstructs well reconstructs letters "
                   f"well too — the verdict below comes from a detector measured for that.")
    else:
        m2.metric("Percentile among the test set", "–", help="This checkpoint carries no test-error distribution.")
    digit_verdict(x, detector)
    st.caption(f"server time: {(time.perf_counter() - t0) * 1000:.1f} ms")

"""Draw: a digit drawn with a finger or the mouse, or uploaded, goes through the active model; how well does it
come back? Which digit it reads as is the digit classifier's reading, whether it is a digit at all the digit
detector's verdict, each with how well it holds on a drawing set."""
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
MODES = {"draw": ":material/draw: Draw", "upload": ":material/upload: Upload"}   # where the digit comes from
NOISES = {"none": "None", "mask": "Masking", "gaussian": "Gaussian"}           # the training noises (fields)
# The three result pictures share their row equally, however long their captions, down to a phone's third.
RESULT_ROW = "<style>.st-key-draw-result > * { flex: 1 1 0; min-width: 0; }</style>"


def reading(probs) -> str:
    """The classifier's reading of one image from its probabilities (10,), in words: the digit, how likely, the
    runner-up when it is likely enough, and "unsure" when the top probability is below SURE."""
    order = probs.argsort()[::-1]
    best, second = int(order[0]), int(order[1])
    text = f"**{best}** ({100 * probs[best]:.0f} %)"
    if probs[second] >= RUNNER_UP:
        text += f" or {second}, {100 * probs[second]:.0f} %"
    return f"Reads as {text}" if probs[best] >= SURE else f"**unsure:** reads as {text}"


def digit_reading(x) -> str | None:
    """What the shipped digit classifier reads in the 28×28 image (a line, shown at once), and how well such
    readings hold on drawings (a caption, returned for the details); None when its file is missing."""
    try:
        judge, meta = classifier.digit_classifier()
    except classifier.ClassifierFileError:
        st.info("The digit classifier (models/classifier/) is missing: no reading of which digit this is.",
                icon=":material/info:")
        return None
    st.markdown(reading(classifier.predict_proba(judge, x)[0]))
    d = meta.get("drawings") or {}
    acc, n = d.get("accuracy_by_kind") or {}, d.get("count_by_kind") or {}
    held = ", ".join(f"{a:.1%} of {n.get(k, '?')} {KIND_NAMES.get(k, k + 's')}" for k, a in acc.items())
    sure = classifier.sureness(meta)
    return ("Read by the digit classifier (`models/classifier/`), not by the active model. "
            + (f"On drawings like this one, after the same preprocessing, it reads right {held}. " if held else
               "Its file holds no figures on drawings. ")
            + (f"It is sure (≥ {SURE:.0%}) of {sure}: a sure reading does not make a drawing a digit — that "
               f"is the detector's verdict." if sure else ""))


def verdict(x, detector) -> dict | None:
    """The digit detector's score for the 28×28 image, its percentile among real digits and its verdict at the
    stored threshold, the verdict line shown at once; None (with a warning) when its checkpoint is missing."""
    if detector is None:
        st.warning("The digit detector's checkpoint (models/digits/) is missing: no verdict on whether this is a "
                   "digit.", icon=":material/warning:")
        return None
    model, meta = detector
    a = meta["anomaly"]
    s = float(anomaly.score(model, x[None])[0])
    pct = scoring.percentile(s, a["canvas_quantiles"])
    line = f"the line is at {100 * (1 - a['verdict_false_alarm']):.0f}%"
    if s > a["verdict_threshold"]:
        st.markdown(f"**:material/warning: unusual: this does not look like the handwritten digits the detector "
                    f"learned** — it scores above {pct:.1f}% of real digits ({line}).")
    else:
        st.markdown(f"**:material/check_circle: typical of handwritten digits** — {pct:.1f}% of real digits score "
                    f"lower ({line}).")
    return {"score": s, "percentile": pct, "anomaly": a}


def in_words(items: list[str]) -> str:
    """Drawings of the drawing set ('{ in DejaVuSans', '0: test image 25', '4 in strokes #6', 'star #1') in words,
    by how they were made: 'typed { and f, MNIST 0, pen-stroke 4, star'."""
    groups: dict[str, list[str]] = {}
    for item in items:
        if ": test image " in item:
            how, what = "MNIST", item.split(":")[0]
        elif " in strokes #" in item:
            how, what = "pen-stroke", item.split(" in ")[0]
        elif " in " in item:                            # a character in a font
            how, what = "typed", item.rsplit(" in ", 1)[0]
        else:                                           # a shape or a scribble, numbered
            how, what = "", item.split(" #")[0]
        if what not in groups.setdefault(how, []):
            groups[how].append(what)

    def listed(words: list[str]) -> str:
        return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"
    return ", ".join(f"{how} {listed(words)}".strip() for how, words in groups.items())


def verdict_details(found: dict) -> None:
    """The detector's figures for this image, and what it is and how well it does on its drawing set."""
    a, s, pct = found["anomaly"], found["score"], found["percentile"]
    st.header("Is it a digit?")
    m1, m2 = st.columns(2)
    m1.metric("Digit detector score", f"{s:.4f}", help="Squared reconstruction error over the 20 worst pixels "
              f"(aecore.labs.anomaly.score); the verdict threshold is {a['verdict_threshold']:.4f}.")
    m2.metric("Percentile among real digits", f"{pct:.1f}",
              help="Share of held-out MNIST training digits, enlarged onto this canvas and brought back, that "
                   "score lower.")
    d = a["drawings"]
    n = d["count_by_kind"]
    digits = sum(n.get(k, 0) for k in drawset.DIGIT_KINDS)

    def kinds(group) -> str:
        return ", ".join(f"{n[k]} {KIND_NAMES.get(k, k + 's')}" for k in group if n.get(k))
    st.caption(f"Verdict by the digit detector, not by the active model: the `{a['recipe']}` recipe trained on all "
               f"ten MNIST digits (`models/digits/`). Its drawing set: {sum(n.values())} pictures made for this "
               f"canvas, {digits} digits ({kinds(drawset.DIGIT_KINDS)}) and {sum(n.values()) - digits} others "
               f"({kinds(drawset.OTHER_KINDS)}). It ranks the digits below the rest with AUC {d['auc']:.3f}, calls "
               f"{d['non_digits_unusual']:.0%} of the others unusual and {d['digits_typical']:.0%} of the digits "
               f"typical. The others it finds most digit-like: {in_words(d['most_digit_like_non_digits'])}; the "
               f"digits it finds least digit-like: {in_words(d['least_digit_like_digits'])}.")


def noise_section(am, x, noisy, error: float) -> None:
    """How far the noisy input and the rebuilt one are from the clean digit, and the model rebuilding the clean
    digit, measured: a denoising model's reconstruction is much nearer the clean digit than its input was."""
    noisy_error = float(((noisy - x) ** 2).mean())
    clean_error = float(((scoring.reconstruct(am.model, x[None])[0] - x) ** 2).mean())
    n1, n2 = st.columns(2)
    n1.metric("Noisy input's error", f"{noisy_error:.5f}", help="The noisy input against your clean digit (MSE).")
    n2.metric("Rebuilt without the noise", f"{clean_error:.5f}",
              help="The reconstruction of your clean digit, against it (MSE).")
    tr = am.meta.get("train")
    trained = (f"{am.name} was trained with {tr.noise} noise {tr.noise_level:g}" if am.uses_noise and tr
               and tr.noise != "none" else f"{am.name} was trained on clean pictures")
    if error < noisy_error:
        told = (f"its reconstruction is {error:.5f} from your clean digit, {1 - error / noisy_error:.0%} less "
                f"than the noisy input's {noisy_error:.5f}")
    else:
        told = (f"its reconstruction is {error:.5f} from your clean digit, no nearer than the noisy input "
                f"({noisy_error:.5f}): it keeps the noise")
    st.caption(f"{trained}; {told}. Rebuilt from the clean digit, it is {clean_error:.5f} from it. The error "
               "above and the map compare the reconstruction with your clean digit.")


st.title("Draw a digit")
guide.intro("draw")
am = session.page_model()
detector = caches.digit_detector()        # loaded once per server, like the active model
st.caption(f"Active model: **{am.name}** (it rebuilds your digit); the digit classifier reads which digit it is, "
           f"the digit detector says whether it is a digit at all.")
if am.config.image_shape != (28, 28):     # a model of one's own pictures: it cannot read a digit drawn here
    side = am.config.side
    st.info(f"**{am.name} reads {side}×{side} {'colour' if am.config.in_channels == 3 else 'grey'} pictures**, "
            "not 28×28 digits like the ones drawn here. Choose a digit model in the sidebar (a shipped one, or one "
            "trained on MNIST) to see your drawing rebuilt.", icon=":material/swap_horiz:")
    st.stop()

# One input at a time, so that the result always says where it comes from. On a phone the two columns stack: the
# result comes right under the input.
left, right = st.columns([1, 2], gap="medium")
canvas = upload = None
with left:
    mode = st.radio("Your digit", list(MODES), format_func=MODES.get, horizontal=True, key=K + "mode")
    if mode == "draw":
        st.space(20)         # room for the canvas's undo / redo / clear buttons, which show above its corner
        canvas = st_canvas(stroke_width=18, stroke_color="#FFFFFF", background_color="#000000", height=280,
                           width=280, drawing_mode="freedraw", return_image_data=True, key=K + "canvas")
        st.caption("Draw with your finger or the mouse; the buttons above the square undo, redo and clear.")
    else:
        upload = st.file_uploader("A PNG or JPEG picture of one digit", type=["png", "jpg", "jpeg"],
                                  key=K + "upload", help="Dark on light or light on dark; it is cropped to the "
                                  "digit, so the picture may be larger than the digit.")
    noise = st.radio("Noise on your digit", list(NOISES), format_func=NOISES.get, horizontal=True, key=K + "noise",
                     help="Corrupt the digit before the active model rebuilds it, as a denoising autoencoder's "
                          "input is corrupted in training: masking zeroes a share of the pixels, Gaussian adds "
                          "noise of that σ. A denoising model rebuilds the clean digit; a plain one copies the "
                          "noise.")
    seed = st.session_state.setdefault(K + "noise_seed", 0)
    if noise != "none":
        level = st.slider("Noise ratio / σ", 0.05, 1.0, 0.3, 0.05, key=K + "noise_level",
                          help="The share of pixels masked, or the Gaussian noise's σ (pixels run from 0 to 1).")
        st.button("New noise", key=K + "btn_new_noise", icon=":material/casino:",
                  on_click=lambda: st.session_state.update({K + "noise_seed": seed + 1}),
                  help="Draw the noise again (the same noise stays while you draw).")

image, where = None, "your drawing"          # the result says which input it comes from
if mode == "upload" and upload is not None:
    try:
        image, where = preprocess.load_image(upload.getvalue()), f"the upload {upload.name}"
    except preprocess.ImageError as e:
        with right:
            st.error(f"**Cannot use {upload.name}.** {e}", icon=":material/block:")
        st.stop()
elif mode == "draw" and canvas.image_data is not None:
    image = canvas.image_data

with right:
    if image is None:
        st.info("Draw a digit on the black square with your finger or the mouse." if mode == "draw" else
                "Upload a PNG or JPEG picture of one digit.", icon=":material/draw:")
        st.stop()
    t0 = time.perf_counter()
    try:
        x = preprocess.to_mnist(image)
    except ValueError:
        st.info("The canvas is blank: draw a digit with your finger or the mouse." if mode == "draw" else
                f"No digit found in {upload.name}: nothing stands out from its background.",
                icon=":material/draw:")
        st.stop()
    shown = x if noise == "none" else scoring.with_noise(x[None], noise, level, seed)[0]   # what the model reads
    recon = scoring.reconstruct(am.model, shown[None])[0]
    error = float(((recon - x) ** 2).mean())                      # against the clean digit, with noise or without
    quantiles = am.meta.get("test_error_quantiles") or []
    pct = scoring.percentile(error, quantiles) if len(quantiles) >= 2 else None

    st.markdown(f"The result for **{where}**:")
    st.html(RESULT_ROW)
    row = st.container(horizontal=True, gap="small", key=K + "result")   # side by side on a phone too
    row.image(viz.zoom(x, 8), caption="input, 28×28", width="stretch",
              alt="The input as the model receives it: white strokes on black, cropped, scaled to 20×20 and "
                  "centred in 28×28 pixels by its centre of mass, like the MNIST originals.")
    if noise != "none":
        row.image(viz.zoom(shown, 8), caption=f"with {noise} noise {level:g}", width="stretch",
                  alt=f"The input with {NOISES[noise].lower()} noise at {level:g}: what the model is given.")
    row.image(viz.zoom(recon, 8), caption="reconstruction", width="stretch",
              alt=f"The {'noisy ' if noise != 'none' else ''}input as {am.name} rebuilds it from its code, "
                  "28×28 pixels.")
    row.image(viz.colorize(viz.error_heatmap(x, recon), 8), caption="squared error", width="stretch",
              alt="Where the reconstruction differs from the clean input, pixel by pixel: black where they agree, "
                  "through red and yellow to white where they differ most.")
    if noise != "none":
        noise_section(am, x, shown, error)
    read_note = digit_reading(x)
    found = verdict(x, detector)

    m1, m2 = st.columns(2)
    m1.metric("Reconstruction error (MSE)", f"{error:.5f}", help=f"of the active model, {am.name}")
    prepared = ("The input is cropped, scaled to 20×20 and centred by its centre of mass in 28×28, white on black, "
                "as the MNIST originals were.")
    if pct is not None:
        m2.metric("Percentile among the test set", f"{pct:.1f}")
        st.caption(f"{prepared} {pct:.1f}% of the test digits {am.name} was scored on reconstruct with a lower "
                   f"error. A low error alone does not make a digit: a model that reconstructs well reconstructs "
                   f"letters well too — the verdict comes from a detector measured for that.")
    else:
        m2.metric("Percentile among the test set", "–", help="This checkpoint carries no test-error distribution.")
        st.caption(prepared)
    if read_note:
        st.caption(read_note)
    if found:
        verdict_details(found)
    st.caption(f"server time: {(time.perf_counter() - t0) * 1000:.1f} ms")

"""Start: the page a shared link opens on. What an autoencoder is, shown live with a shipped model; the five
tutorials and the labs as cards that open ready to use; a first visit in three steps; notes for a class."""

import numpy as np
import streamlit as st
import torch

from aecore.labs import anomaly, generative
from aecore.engine import links, presets, viz
from aecore.engine.data import to_float
from aecore.engine.preprocess import to_mnist
from aecore.runs.settings import HOSTED_LIMITS
from ui import caches, guide, server, session

if st.query_params.get("run") or st.query_params.get(links.PRESET):
    # A run's or a configuration's link made before Start became the front page: it belongs to Train.
    st.switch_page("app_pages/train.py", query_params=st.query_params.to_dict())
K = "start."             # every session key of this page starts with this
LIVE = "keras-784-32"    # the model of the live example: a 32-number code is small enough to show whole


# ------------------------------------------------------------------------------------------------ the figures
@st.cache_resource(show_spinner=False)
def example_digits() -> tuple[np.ndarray, str]:
    """Digits for the live example: the MNIST test set when it is here, else digits rendered in fonts."""
    test, _ = caches.test_split("mnist")
    if test is not None:
        return test.images.numpy(), "MNIST test digit"
    from aecore.labs import drawset
    fonts = drawset.fonts_available()
    if not fonts:
        return np.zeros((0, 28, 28), np.uint8), ""
    pictures = [to_mnist(drawset.render_text(str(d), font)) for _, font in fonts for d in range(10)]
    return (np.stack(pictures) * 255).round().astype(np.uint8), "digit rendered in a font (MNIST is not here)"


@st.cache_resource(show_spinner=False)
def card_figure(name: str) -> np.ndarray | None:
    """A card's picture, from a shipped model's weights alone (no data needed); None when it is not shipped."""
    model = caches.shipped_models().get(name, (None,))[0]
    if model is None:
        return None
    if name in ("pytorch-784-200", "keras-784-32", "chainer-case7", "sparse-784-32"):
        return viz.grid(viz.encoder_filters(model, 24).numpy(), nrow=8, zoom=2)
    if name == "stacked-2d":
        low, high = model.config.code_range
        return viz.grid(generative.decode_images(model, generative.range_grid([low] * 2, [high] * 2, 8)), 8, 2)
    return viz.grid(generative.decode_images(model, generative.prior_grid(8)), nrow=8, zoom=2)   # a VAE


@st.cache_resource(show_spinner=False)
def zero_against_six() -> tuple[float, np.ndarray] | None:
    """The conv tutorial's claim, measured: the AUC of conv-digit0's error separating test 6s from test 0s, and a
    0 and a 6 beside their reconstructions. None without the test set or the model."""
    test, _ = caches.test_split("mnist")
    model = caches.shipped_models().get("conv-digit0", (None,))[0]
    if test is None or model is None:
        return None
    keep = (test.labels == 0) | (test.labels == 6)
    images, sixes = test.images[keep], (test.labels[keep] == 6).numpy()
    scores = caches.test_scores("conv-digit0", model, "mnist")      # the Anomalies page's, shipped or computed once
    auc = anomaly.auc(scores[keep.numpy()], sixes)
    pair = images[[int(np.flatnonzero(~sixes)[0]), int(np.flatnonzero(sixes)[0])]]
    recon = generative.decode_images(model, generative.encode_images(model, pair))
    return auc, viz.grid(np.concatenate([to_float(pair, channel=False).numpy(), recon]), nrow=2, zoom=3)


# ------------------------------------------------------------------------------------------------ opening
def open_preset(name: str) -> None:
    """The Train page with preset `name` in its form: the form forgets its values and reads the link."""
    saved = st.session_state.pop("train.saved", {})
    for key in [*saved, "train.preset", "train.link_problems"]:
        st.session_state.pop(key, None)
    st.switch_page("app_pages/train.py", query_params={"preset": name})


def open_model(name: str, page: str) -> None:
    """`page` with the shipped model `name` active."""
    st.session_state[session.ACTIVATE] = f"shipped:{name}"
    st.switch_page(page)


def open_study(study: str) -> None:
    st.session_state["studies.pick"] = st.session_state["studies.chosen"] = study
    st.switch_page("app_pages/studies.py")


# ------------------------------------------------------------------------------------------------ the page
st.title("AE Lab: what does an autoencoder learn?")
guide.intro("start")
st.markdown("An **autoencoder** is a network trained to copy its input through a bottleneck. The *encoder* squeezes "
            "a 28×28 image (784 numbers) into a short **code**; the *decoder* rebuilds the image from the code alone. "
            "To copy well through so few numbers, it has to learn what digits have in common: strokes, shapes, "
            "styles. Here you train one, look inside it, and draw digits for it.")

st.header("An autoencoder at work")
digits, kind = example_digits()
live = caches.shipped_models().get(LIVE)
if live is None or not len(digits):
    st.info(f"The live example needs the shipped model {LIVE} and either MNIST or a font for digits; neither is "
            "here.", icon=":material/info:")
else:
    model, meta = live
    index = st.session_state.setdefault(K + "digit", 0) % len(digits)
    image = digits[index]
    code = generative.encode_images(model, image[None])[0].numpy()              # (32,), ReLU: >= 0
    recon = generative.decode_images(model, code[None])[0]
    x = to_float(image, torch.float64, channel=False).numpy()                 # (28, 28) in [0, 1]
    error = float(((recon - x) ** 2).mean())
    c1, c2, c3 = st.columns([2, 3, 2])
    c1.image(viz.zoom(x, 6), width=168, caption=f"Input: {kind} number {index:,}, 784 pixels",
             alt=f"The input: a white handwritten-style digit on black, {kind} number {index:,}.")
    c2.image(viz.colorize(code.reshape(4, 8) / max(code.max(), 1e-6), zoom=30), width=240,
             caption=f"Its code: the {code.size} numbers the encoder made of it, as 4×8 cells (brighter is larger; "
                     f"{int((code == 0).sum())} are exactly 0)",
             alt=f"The code as a 4 by 8 block of cells from black to yellow-white: {code.size} numbers, the "
                 f"largest {code.max():.2f}.")
    c3.image(viz.zoom(recon, 6), width=168, caption=f"Reconstruction from the code alone: error {error:.4f} (mean squared, "
                                         "per pixel)",
             alt="The reconstruction: the decoder's image of the same digit, a little blurred.")
    trained = (meta.get("figures") or {}).get("test_loss")
    st.caption(f"Model: the shipped **{LIVE}** (784 → 32 → 784, the Keras tutorial's"
               + (f"; test loss {trained:.4f} BCE against the tutorial's ≈0.09" if trained else "") + ").")
    st.button("Another digit", icon=":material/casino:", key=K + "next",
              on_click=lambda: st.session_state.update({K + "digit": index + 1}))

st.header("A first visit in three steps")
s1, s2, s3 = st.columns(3)
with s1.container(border=True):
    st.markdown("**1 · Train** the PyTorch tutorial's 784-200-784 and watch its loss fall (about a minute on a "
                "laptop CPU).")
    if st.button("Open it on Train", icon=":material/model_training:", key=K + "step1"):
        open_preset("pytorch-784-200")
with s2.container(border=True):
    st.markdown("**2 · Look inside**: each hidden unit's filter, the pattern it responds to, and reconstructions.")
    if st.button("Open Inspect", icon=":material/biotech:", key=K + "step2"):
        st.switch_page("app_pages/inspect.py")
with s3.container(border=True):
    st.markdown("**3 · Draw a digit** and see how the model rebuilds it, and whether it calls it typical.")
    if st.button("Open Draw", icon=":material/draw:", key=K + "step3"):
        st.switch_page("app_pages/draw.py")

st.header("The five tutorials")
st.caption("Each card opens its experiment ready to use: the preset in the Train form, or the shipped model made "
           "active on the page that shows its figure. The tutorial's number stands beside ours.")


def card(column, title: str, shows: str, figure: np.ndarray | None, alt: str, label: str, icon: str, key: str):
    """One card: its title, what it shows, its picture with a text alternative; True when its button is pressed."""
    with column.container(border=True):
        st.markdown(f"**{title}**")
        st.markdown(shows)
        if figure is not None:
            st.image(figure, caption=alt, alt=alt)
        return st.button(label, icon=icon, key=K + key)


def versus(name: str) -> str:
    """The preset's number and the shipped model's: 'final train BCE: the tutorial: 0.066 · ours: 0.06622'."""
    p, shipped = presets.get(name), caches.shipped_models().get(name)
    ours = (shipped[1].get("figures") or {}).get(p.figure_metric) if shipped else None
    return f"{p.figure_label}: {presets.versus(p.figure, ours)}"


t1, t2, t3 = st.columns(3)
if card(t1, "PyTorch: 784-200-784", f"A one-hidden-layer autoencoder, BCE, Adam, 10 epochs. {versus('pytorch-784-200')}.",
        card_figure("pytorch-784-200"), "24 first-layer filters of the shipped pytorch-784-200: the input pattern "
        "each hidden unit responds to", "Train it", ":material/model_training:", "pytorch"):
    open_preset("pytorch-784-200")
if card(t2, "Keras: 784-32-784", f"A 32-number code, with 20% of the training set held out. "
        f"{versus('keras-784-32')}.", card_figure("keras-784-32"),
        "24 of the 32 first-layer filters of the shipped keras-784-32", "Train it", ":material/model_training:",
        "keras"):
    open_preset("keras-784-32")
if card(t3, "Chainer: seven cases", "ReLU or sigmoid; 1000, 400 or 100 units; dropout; denoising by zeroing 20% "
        "of the pixels. The filters of each case side by side, as the tutorial compares them.",
        card_figure("chainer-case7"), "24 first-layer filters of the shipped chainer-case7 (sigmoid, 100 units, "
        "trained on images with 20% of their pixels zeroed)", "Run the study", ":material/science:", "chainer"):
    open_study("chainer")
t4, t5, _ = st.columns(3)
measured = zero_against_six()
if card(t4, "Convolutional: trained on 0s only", "Its reconstruction error flags a 6 as abnormal. " + (
        f"Measured here: the error tells test 6s from test 0s with ROC-AUC {measured[0]:.3f}." if measured else
        "(The MNIST test set is not here to measure how well.)"),
        measured[1] if measured else None, "A test 0 and a test 6 (top row) and conv-digit0's reconstructions "
        "(bottom row): the 6 comes back as something like a 0", "Open it on Anomalies", ":material/troubleshoot:",
        "conv"):
    open_model("conv-digit0", "app_pages/anomalies.py")
if card(t5, "Stacked: 784-256-128-64-2", f"A tanh code of two numbers: every digit becomes a point on a plane. "
        f"{versus('stacked-2d')}.", card_figure("stacked-2d"), "stacked-2d's decoder over an 8×8 grid of its "
        "2-number code from -1 to 1: digits blend into each other", "Open its latent space", ":material/scatter_plot:",
        "stacked"):
    open_model("stacked-2d", "app_pages/latent.py")

st.header("The labs")
l1, l2, l3 = st.columns(3)
if card(l1, "Anomaly detection", "One autoencoder per digit, trained on that digit only; the other nine are the "
        "anomalies. How well the error separates them is a ROC-AUC, per digit.", None, "", "Open Anomalies",
        ":material/troubleshoot:", "anomalies"):
    st.switch_page("app_pages/anomalies.py")
if card(l2, "Compare runs and studies", "Loss curves of several runs on one chart; studies of several runs in one "
        "click: the Chainer cases, code size against PCA, β for a VAE.", None, "", "Open Compare",
        ":material/compare:", "compare"):
    st.switch_page("app_pages/compare.py")
if card(l3, "Generate digits", "A variational autoencoder's code plane is a map you can sample: digits where a "
        "plain autoencoder draws blurs. A digit classifier judges the samples.", card_figure("keras-vae-2d"),
        "keras-vae-2d's decoder over an 8×8 grid of its prior's quantiles: a map of digits", "Open Generate",
        ":material/auto_awesome:", "generate"):
    open_model("keras-vae-2d", "app_pages/generate.py")
f1, _, _ = st.columns(3)
if card(f1, "Pretraining with few labels", "An autoencoder trained on all 60,000 images without their labels, then "
        "a classifier trained on 100 to 1,000 labelled ones: does the pretraining help? Mean ± std over seeds, "
        "against a network trained from scratch.", None, "", "Open Few labels", ":material/label:", "pretrain"):
    st.switch_page("app_pages/pretrain.py")

st.header("Sharing the link with a class")
cfg = server.run_registry().config
st.markdown(
    f"- **One visitor's run**: the PyTorch preset trains 10 epochs of 60,000 images in about 43 s alone on a "
    f"2-core CPU (14,050 images/s measured, each run in a process of its own: ~150 MB with the CPU-only torch). "
    f"Every visitor's run, pages and models stay their own.\n"
    f"- **The queue**: this server trains at most **{cfg.max_runs}** run{'s' if cfg.max_runs != 1 else ''} at "
    f"once, one per visitor; later ones wait in line, told their place and an estimated start, and begin by "
    f"themselves. A reload or the run's link finds a run again; a run nobody watches stops after "
    f"{cfg.grace_s:g} s, and a finished one is kept {cfg.retention_s / 60:g} minutes.\n"
    f"- **Hosted limits**: " + (
        "this server is hosted: at most" if cfg.profile == "hosted" else
        "this server keeps every choice open; `AELAB_PROFILE=hosted` allows at most") +
    f" {HOSTED_LIMITS.max_epochs} epochs, {HOSTED_LIMITS.max_params:,} parameters and a batch of "
    f"{HOSTED_LIMITS.max_batch_size:,} per run (every preset fits). Streamlit Community Cloud gives about 1 to "
    f"2.7 GB and no GPU: each running run adds ~150 MB, and by default a server trains one run per CPU core.\n"
    "- **Measured**: 20 sessions with 10 pressing Start at once on 2 cores: the Train page rendered in 2.9 s "
    "(median), 2 runs trained at a time and 8 waited in line; each idle session costs under 1 MB of server memory.")

"""Inspect: the active model's learned filters, reconstructions of chosen digits, and the last run's timeline."""
import numpy as np
import streamlit as st

from aecore import scoring, viz
from aecore.data import add_noise, to_float
from pages import shared

shared.require_frame()
K = "inspect."

st.title("Look inside the model")
am = shared.page_model()
cfg = am.config
st.caption(f"Active model: **{am.name}** ({cfg.family}). Choose another in the sidebar.")

# ------------------------------------------------------------------------------------------------ filters
if cfg.convolutional:
    st.subheader("Convolution kernels")
    kernels = viz.conv_kernels(am.model)
    st.image(viz.grid(kernels, nrow=len(kernels), zoom=16, pad=1),
             caption=f"first layer: {len(kernels)} kernels 3×3, each scaled on its own")
else:
    n_units = cfg.hidden[0]
    count = st.slider("Tiles to show", 1, min(n_units, 400), min(n_units, 100), key=K + "count")
    a, b = st.columns(2)
    with a:
        st.subheader("Encoder filters")
        tiles = viz.encoder_filters(am.model, count)
        st.image(viz.grid(tiles, nrow=10, zoom=2), caption=f"first-layer weights: {count} of {n_units} units, each 784-vector shown 28×28")
    with b:
        st.subheader("Decoder filters")
        tiles = viz.decoder_filters(am.model, count)   # the decoder mirrors the encoder: same unit count
        st.image(viz.grid(tiles, nrow=10, zoom=2), caption=f"last-layer weights, transposed: {count} of {n_units} units, what each one paints")

# ------------------------------------------------------------------------------------------------ reconstructions
st.subheader("Reconstructions")
dataset = am.meta["data"].dataset if am.meta.get("data") else "mnist"
test, problem = shared.test_split(dataset)
if test is None:
    shared.data_error_box(problem)
    shared.data_missing(dataset)
else:
    c1, c2 = st.columns([2, 1])
    picks = c1.text_input("Test digits (indices, comma-separated)", "0,1,2,3,4,5,6,7,8,9", key=K + "picks")
    try:
        idx = [int(v) for v in picks.replace(" ", "").split(",") if v]
        if not idx or any(not 0 <= i < len(test) for i in idx) or len(idx) > 32:
            raise ValueError
    except ValueError:
        st.error(f"Give 1 to 32 indices between 0 and {len(test) - 1}, separated by commas.")
        idx = list(range(10))
    images = test.images[idx]
    originals = images.numpy() / 255.0
    rows = [originals]
    labels = ["original"]
    tr = am.meta.get("train")
    if am.uses_noise:
        noisy = add_noise(to_float(images), tr.noise, tr.noise_level).reshape(-1, 28, 28).numpy()
        rows.append(noisy)
        labels.append(f"noisy input ({tr.noise} {tr.noise_level:g})")
        recon = scoring.reconstruct(am.model, noisy)
    else:
        recon = scoring.reconstruct(am.model, images)
    rows.append(recon)
    labels.append("reconstruction")
    errors = ((recon - originals) ** 2).mean(axis=(1, 2))
    st.image(viz.grid(np.concatenate(rows), nrow=len(idx), zoom=3),
             caption=" · ".join(f"row {i + 1}: {name}" for i, name in enumerate(labels)))
    st.dataframe({"index": idx, "label": test.labels[idx].tolist(), "error (MSE)": np.round(errors, 5)},
                 hide_index=True, width="content")

    if cfg.convolutional:
        st.subheader("Feature maps")
        i = st.number_input("Test digit", 0, len(test) - 1, idx[0], key=K + "fmap")
        for name, maps in viz.feature_maps(am.model, test.images[int(i)].numpy()):
            st.image(viz.grid(maps, nrow=len(maps), zoom=max(2, 56 // maps.shape[-1]), pad=1), caption=name)

# ------------------------------------------------------------------------------------------------ timeline
st.subheader("Last run's timeline")
run = shared.current_run()
snap = run.snapshot if run else None
if not snap or not snap.timeline:
    st.info("Reconstructions of eight fixed test digits are recorded at each epoch end of a run started on the "
            "Train page in this session.")
else:
    frames = [f for _, f in snap.timeline]
    st.image(viz.grid(np.concatenate([snap.originals, *frames]), nrow=8, zoom=2),
             caption=f"{run.spec.name}: top row the digits, then one row per epoch (1 … {snap.timeline[-1][0]})")

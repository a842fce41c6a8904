"""Inspect: the active model's learned filters, how they and the fixed digits' reconstructions formed epoch by epoch
(a run trained here), reconstructions of chosen digits, where it fails (its test error class by class, and a class's
worst- and best-rebuilt pictures), how sparse its code is (beside another model's), and the last run's timeline."""
import numpy as np
import pandas as pd
import streamlit as st
import torch

from aecore.engine import replay as replays, scoring, viz
from aecore.engine.data import to_float
from aecore.engine.train import corrupt
from ui import datasets, failures, guide, panels, replayview, session
from ui import takehome

panels.readable_sliders()
panels.table_toolbar_room()
K = "inspect."
SPARSITY_IMAGES = 2000   # test images the code sparsity is measured on
BINS = 40                # histogram bins, shared by the two models shown
NONE = "none"            # the comparison selector's "no second model" (model keys start shipped: or session:)


def flat_code(m) -> bool:
    """An MLP model whose code is one vector of units (not a conv model's maps, not a VAE's Gaussian)."""
    return not m.config.convolutional and not m.config.variational


def sparsity_column(column, m, s: dict, edges: np.ndarray) -> None:
    """One model's code sparsity figures: two numbers, the zero share per unit (sorted), the histogram."""
    units = len(s["zero_share"])
    column.markdown(f"**{m.name}** · `{m.config.sizes_text}`" + (f" · L1 {m.config.sparsity:g} on the code"
                                                                 if m.config.sparsity else ""))
    m1, m2 = column.columns(2)
    m1.metric("Mean code activation", f"{s['mean_activation']:.2f}",
              help=f"The mean of all {units} code numbers over the first {s['images']:,} test images.")
    m2.metric("Exact zeros", f"{s['zero_share_all']:.1%}",
              help=f"Share of all code numbers that are exactly 0; {s['dead_units']} of {units} units are 0 for "
                   f"every one of these images.")
    share = pd.DataFrame({"rank": np.arange(1, units + 1), "share": np.sort(s["zero_share"])[::-1]})
    column.vega_lite_chart(share, {"mark": {"type": "bar", "tooltip": True}, "encoding": {
        "x": {"field": "rank", "type": "ordinal", "title": f"its {units} units, most often 0 first",
              "axis": {"labels": False, "ticks": False}},   # a rank, not a unit's name
        "y": {"field": "share", "type": "quantitative", "title": "share of images at exactly 0",
              "scale": {"domain": [0, 1]}}}}, width="stretch", height=200)
    counts, _ = np.histogram(s["values"], edges)
    hist = pd.DataFrame({"from": edges[:-1], "to": edges[1:], "count": counts})
    column.vega_lite_chart(hist, {"mark": {"type": "bar", "tooltip": True}, "encoding": {
        "x": {"field": "from", "type": "quantitative", "bin": {"binned": True},
              "title": f"code value ({len(s['values']):,} numbers)"},
        "x2": {"field": "to"},
        "y": {"field": "count", "type": "quantitative", "title": "count"}}},
        width="stretch", height=200)


def sparsity_section(am, data_key: str, images) -> None:
    """The active model's code sparsity beside a comparison model's (that learned the same images), on the same
    test images."""
    st.header("How sparse is the code?")
    choices = session.model_choices()
    others = [k for k, m in choices.items() if k != am.key and flat_code(m) and datasets.key_of(m) == data_key]
    # the Keras blog's pairing: the sparse 784-32 beside the plain one it was made from
    default = "shipped:keras-784-32" if am.key == "shipped:sparse-784-32" and "shipped:keras-784-32" in others \
        else NONE
    options = [NONE, *others]
    other = st.columns([1, 2])[0].selectbox(
        "Compare with", options, index=options.index(default), key=K + "compare." + am.key,   # one choice per model
        format_func=lambda k: k if k == NONE else
        f"{choices[k].name} ({'shipped' if k.startswith('shipped') else 'yours'})")
    shown = [am] + ([choices[other]] if other != NONE else [])
    figures = [scoring.code_sparsity(m.model, images) for m in shown]
    edges = np.histogram_bin_edges(np.concatenate([f["values"] for f in figures]), BINS)
    for column, m, f in zip(st.columns(2), shown, figures):
        sparsity_column(column, m, f, edges)
    ours = "; ".join(f"{m.name} {f['mean_activation']:.2f}" for m, f in zip(shown, figures))
    if data_key == "mnist":
        st.caption(f"For reference, the Keras blog's “Building Autoencoders in Keras” measured a mean code "
                   f"activation of 3.33 for its sparse 784-32 (L1 1e-4 on the code) against 7.30 for the plain "
                   f"784-32, over its 10,000 test images. Measured here over the first {len(images):,} test images: "
                   f"{ours}.")
    else:
        st.caption(f"Measured over the first {len(images):,} test images: {ours}.")
    if any(m.config.sparsity for m in shown):
        st.caption(zeros_note(shown, figures))


def replay_section(am, replay, noun: str) -> None:
    """The Epoch slider: the first layer and the fixed digits' reconstructions as they were after that epoch."""
    cfg = am.config
    st.header("Epoch by epoch")
    frame = replayview.epoch_slider(am, replay, K + "epoch", "the filters and the fixed digits' reconstructions")
    tiles = replays.tiles(frame)
    kind = "first-layer kernels" if cfg.convolutional else "encoder filters"
    a, b = st.columns(2)
    a.image(viz.grid(tiles, nrow=len(tiles) if cfg.convolutional else 10,
                     zoom=16 if cfg.convolutional else max(1, 56 // cfg.side), pad=1),
            caption=f"{len(tiles)} {kind} after epoch {frame.epoch}, each scaled on its own",
            alt=f"{len(tiles)} {kind} of the model after epoch {frame.epoch} of its run, light where a weight is "
                "large.")
    n = len(replay.probe)
    b.image(viz.grid(np.concatenate([replay.probe, frame.recon]) / 255.0, nrow=n, zoom=max(2, 56 // cfg.side)),
            caption=f"top: {n} fixed test {noun}; below: rebuilt after "
                    f"epoch {frame.epoch}",
            alt=f"{n} fixed test pictures in the top row; below, the model's reconstructions of them after epoch "
                f"{frame.epoch} of its run.")
    loss = next((h.get("val_loss") for h in am.history if h.get("epoch") == frame.epoch), None)
    if loss is not None:
        st.caption(f"Held-out loss after epoch {frame.epoch}: {loss:.4f}.")


def zeros_note(shown: list, figures: list[dict]) -> str:
    """Why the share of exact zeros is not the L1 penalty's measure, with the figures shown above."""
    def code(m) -> str:
        linear = m.config.family == "deep" and m.config.linear_code
        return "no activation" if linear else m.config.activation
    each = "; ".join(f"{m.name} ({code(m)} code{f', L1 {m.config.sparsity:g}' if m.config.sparsity else ''}): mean "
                     f"{f['mean_activation']:.2f}, exact zeros {f['zero_share_all']:.1%}, {f['dead_units']} units "
                     f"always 0" for m, f in zip(shown, figures))
    return ("**Why the sparse code need not have more exact zeros.** An L1 penalty on the code adds λ·|z| to the "
            "loss: it pulls every code value towards 0, so it shrinks the activity (the mean above), but a value "
            "pulled down by small steps almost never lands on exactly 0. Exact zeros come from ReLU units: a ReLU "
            "gives exactly 0 whenever its input is negative (a unit negative for every image is always 0); a sigmoid "
            "or tanh code is practically never exactly 0. So the share of exact zeros counts how often the ReLUs are "
            f"off, which the penalty changes only indirectly. Measured here: {each}.")


st.title("Look inside the model")
guide.intro("inspect")
am = session.page_model()
cfg = am.config
md = datasets.of(am)
st.caption(f"Active model: **{am.name}** ({cfg.family}), trained on {md.name}. Choose another in the sidebar.")
takehome.model_section(am, K + "takehome.")
side, colour = cfg.side, cfg.in_channels == 3
tile_words = f"{'colour' if colour else 'grey'} {side}×{side} tiles"

# ------------------------------------------------------------------------------------------------ filters
if cfg.convolutional:
    st.header("Convolution kernels")
    kernels = viz.conv_kernels(am.model)
    st.image(viz.grid(kernels, nrow=len(kernels), zoom=16, pad=1),
             caption=f"first layer: {len(kernels)} kernels 3×3{', one colour each (its red, green and blue weights)' if colour else ''}, "
                     "each scaled on its own",
             alt=f"{len(kernels)} small {'colour' if colour else 'grey'} squares in a row: the 3×3 weights of each "
                 "first-layer kernel, light where a weight is large.")
else:
    n_units = cfg.hidden[0]
    # keyed by the model: another active model (chosen on any page) starts from its own unit count
    count = st.slider("Tiles to show", 1, min(n_units, 400), min(n_units, 100), key=f"{K}count.{am.key}")
    zoom = max(1, 56 // side)
    a, b = st.columns(2)
    with a:
        st.header("Encoder filters")
        tiles = viz.encoder_filters(am.model, count)
        st.image(viz.grid(tiles, nrow=10, zoom=zoom),
                 caption=f"first-layer weights: {count} of {n_units} units, each {cfg.pixels:,}-vector shown "
                         f"{side}×{side}{' in colour' if colour else ''}",
                 alt=f"{count} {tile_words}, ten a row: for each hidden unit, the pattern of input pixels it "
                     "responds to, light where a weight is large.")
    with b:
        st.header("Decoder filters")
        tiles = viz.decoder_filters(am.model, count)   # the decoder mirrors the encoder: same unit count
        st.image(viz.grid(tiles, nrow=10, zoom=zoom),
                 caption=f"last-layer weights, transposed: {count} of {n_units} units, what each one paints",
                 alt=f"{count} {tile_words}, ten a row: for each hidden unit, the pattern it adds to the output "
                     "image, light where a weight is large.")

# ------------------------------------------------------------------------------------------------ epoch by epoch
replay = replayview.of(am)
if replay is not None and len(replay.frames) > 1:
    # a fragment: the slider redraws this section, not the whole page
    st.fragment(replay_section)(am, replay, datasets.noun(md, plural=True))
else:
    replayview.one_epoch(am, replay, "the filters and the reconstructions")

# ------------------------------------------------------------------------------------------------ reconstructions
st.header("Reconstructions")
test = md.test
if test is None:
    datasets.explain_missing(md)
else:
    c1, c2 = st.columns([2, 1])
    # kept across models of the same images (the same ones, rebuilt by each), not across data sets
    picks = c1.text_input(f"Test {datasets.noun(md, plural=True)} (indices, comma-separated)",
                          ",".join(str(i) for i in range(min(10, len(test)))), key=f"{K}picks.{md.key}")
    try:
        idx = [int(v) for v in picks.replace(" ", "").split(",") if v]
        if not idx or any(not 0 <= i < len(test) for i in idx) or len(idx) > 32:
            raise ValueError
    except ValueError:
        st.error(f"Give 1 to 32 indices between 0 and {len(test) - 1}, separated by commas.")
        idx = list(range(min(10, len(test))))
    images = test.images[idx]
    originals = to_float(images, torch.float64, channel=False).numpy()   # float64, as the errors are summed
    rows = [originals]
    labels = ["original"]
    tr = am.meta.get("train")
    if am.uses_noise:
        noisy = corrupt(to_float(images), tr).reshape(originals.shape).numpy()
        rows.append(noisy)
        labels.append("input as in training (" + ", ".join(
            ([f"{tr.noise} {tr.noise_level:g}"] if tr.noise != "none" and tr.noise_level else [])
            + ([f"deformed {tr.deform:g}"] if tr.deform else [])) + ")")
        recon = scoring.reconstruct(am.model, noisy)
    else:
        recon = scoring.reconstruct(am.model, images)
    rows.append(recon)
    labels.append("reconstruction")
    errors = ((recon - originals) ** 2).reshape(len(idx), -1).mean(axis=1)
    st.image(viz.grid(np.concatenate(rows), nrow=len(idx), zoom=max(2, 84 // side)),
             caption=" · ".join(f"row {i + 1}: {name}" for i, name in enumerate(labels)),
             alt=f"Test images {', '.join(map(str, idx))}, one a column; its rows, top to bottom: "
                 + "; ".join(labels) + ".")
    st.dataframe({"index": idx, "class": [datasets.class_name(md.class_names, c) for c in test.labels[idx].tolist()],
                  "error (MSE)": np.round(errors, 5)}, hide_index=True, width="content")
    failures.section([am], test, md.key, md.class_names, K + "fails.")

    if cfg.convolutional:
        st.header("Feature maps")
        i = st.number_input(f"Test {datasets.noun(md)}", 0, len(test) - 1, idx[0], key=f"{K}fmap.{am.key}")
        for name, maps in viz.feature_maps(am.model, test.images[int(i)].numpy()):
            st.image(viz.grid(maps, nrow=len(maps), zoom=max(2, 56 // maps.shape[-1]), pad=1), caption=name,
                     alt=f"Test image #{int(i)} after encoder {name}: one grey square per map, light where the map "
                         "responds.")
    elif flat_code(am):
        sparsity_section(am, md.key, test.images[:SPARSITY_IMAGES])

# ------------------------------------------------------------------------------------------------ timeline
st.header("Last run's timeline")
run = session.current_run()
snap = run.snapshot if run else None
if not snap or not snap.timeline:
    st.info("Reconstructions of eight fixed test digits are recorded at each epoch end of a run started on the "
            "Train page in this session.")
else:
    frames = [f for _, f in snap.timeline]
    st.image(viz.grid(np.concatenate([snap.originals, *frames]), nrow=8, zoom=2),
             caption=f"{run.spec.name}: top row the digits, then one row per epoch (1 … {snap.timeline[-1][0]})",
             alt=f"Eight test digits in the top row; below, their reconstructions after each of the {len(frames)} "
                 "recorded epochs, one row per epoch.")

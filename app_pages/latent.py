"""Latent space: where the test digits land (PCA, t-SNE or UMAP; pictures on hover, a click for neighbours or a
decoded spot) and, for a run trained here, where they landed after each epoch; what the decoder draws across the
latent plane, a few codes, and walks along code dimensions."""
from contextlib import nullcontext

import numpy as np
import streamlit as st

from aecore.engine import replay as replays, viz
from aecore.engine.data import to_float
from aecore.labs import latent
from ui import caches, datasets, guide, latentview, panels, replayview, session

panels.readable_sliders()
K = "latent."
RANGES = [0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 50.0, 100.0]
GRID_STEP = 0.25                                                  # the stacked tutorial's grid step
OUTSIDE_POINTS = ((-1.5, -1.5), (1.5, 1.5), (10.0, 10.0), (-100.0, 100.0))   # its codes outside tanh's range

st.title("Explore the latent space")
guide.intro("latent")
am = session.page_model()
cfg = am.config
code_dim = int(np.prod(cfg.code_shape))
st.caption(f"Active model: **{am.name}**, code of {code_dim} number{'s' if code_dim > 1 else ''}"
           + ("" if code_dim == 2 else " — shown on a plane by the projection chosen below"))

md = datasets.of(am)
dataset, test = md.dataset, md.test
n_points = st.slider(f"Test {datasets.noun(md, plural=True)} to encode", 500, 10_000, 5_000, step=500, key=K + "n")
method, perplexity, n_neighbors = "pca", 30, 15
if code_dim > 2:
    c1, c2 = st.columns(2)
    method = c1.radio("Projection", list(latent.METHODS), format_func=latent.METHODS.get, horizontal=True,
                      key=K + "method", help="PCA keeps the code's two widest directions (a plane the decoder can "
                      "be walked on); t-SNE and UMAP keep neighbours together, on at most 2,000 pictures.")
    if method == "tsne":
        perplexity = c2.slider("Perplexity", 5, 50, 30, key=K + "perplexity",
                               help="About how many neighbours t-SNE keeps close to each picture.")
    elif method == "umap":
        n_neighbors = c2.slider("Neighbours", 5, 50, 15, key=K + "n_neighbors",
                                help="The neighbourhood UMAP keeps: small shows local clusters, large the whole.")
projection = latent.ProjectionConfig(method=method, perplexity=float(perplexity), n_neighbors=int(n_neighbors))
shown = min(n_points, latent.MOST_POINTS[method])


# The plane: identity axes for 2-D codes (no data needed), else the chosen projection of the test codes.
def encoded_plane(model, images, projection) -> latent.Plane:
    return latent.project(viz.encode_all(model, images), projection)


@st.cache_resource(show_spinner=False, max_entries=16)
def shipped_plane(name: str, _model, dataset: str, n: int, projection) -> latent.Plane:
    """A shipped model's plane, once per server (read-only): every visitor opens this page on one."""
    return encoded_plane(_model, caches.raw_split(dataset, "test").images[:n], projection)


@st.cache_resource(show_spinner=False, max_entries=8)
def thumbnails(data_key: str, _images, n: int) -> list[str]:
    """The first n test pictures of a data set as PNG data URLs, once per server (read-only)."""
    return latent.thumbnails(_images[:n].numpy(), max(1, 56 // _images.shape[-1]))


def replay_plane(replay, epoch: int, projection) -> latent.Plane:
    """The codes the run kept after `epoch` on a plane; PCA's axes turned to run as the last epoch's do."""
    plane = latent.project(replay.at(epoch).codes, projection)
    if code_dim > 2 and projection.method == "pca" and epoch != replay.epochs[-1]:
        last = latent.project(replay.frames[-1].codes, projection)
        plane = latent.Plane(plane.codes, replays.align(plane.xy, last.xy), projection)
    return plane


def replay_view(am, replay, projection) -> None:
    """The Epoch slider and the codes of the run's first test pictures on the plane after that epoch."""
    st.header("How the codes formed, epoch by epoch")
    frame = replayview.epoch_slider(am, replay, K + "epoch", f"the codes of the first {len(replay.labels):,} test "
                                    f"{datasets.noun(md, plural=True)}")
    with st.spinner(f"Projecting {len(frame.codes):,} codes with {latent.METHODS[projection.method]}…") \
            if projection.method != "pca" else nullcontext():
        try:
            shown = session.cached(K + "replay", (am.key, id(replay), frame.epoch, projection),
                                   lambda: replay_plane(replay, frame.epoch, projection), most=24)
        except latent.ProjectionUnavailable as e:
            st.error(f"**{latent.METHODS[projection.method]} is not available on this server.** {e}",
                     icon=":material/block:")
            return
    n = len(replay.labels)         # the hover shows the run's pictures when they are here (the same labels)
    same = test is not None and len(test) >= n and np.array_equal(test.labels[:n].numpy(), replay.labels)
    thumbs = thumbnails(md.key, test.images, min(latentview.THUMBS, n)) if same else []
    title = f"after epoch {frame.epoch}: " + ("2-D codes" if code_dim == 2 else projection.label)
    data, chart = latentview.spec(shown, replay.labels, md.class_names, thumbs, title)
    st.vega_lite_chart(data, chart, key=K + "replay.plane", width="stretch", height=420)


def replay_section() -> None:
    """For a run trained here, the plane replayed epoch by epoch; otherwise a line on why there is one epoch."""
    replay = replayview.of(am)
    if replay is not None and len(replay.frames) > 1:
        st.fragment(replay_view)(am, replay, projection)     # the slider redraws this section, not the page
    else:
        replayview.one_epoch(am, replay, "these codes")


plane = None
if test is not None:
    with st.spinner(f"Projecting {shown:,} codes with {latent.METHODS[method]} (once per model)…",
                    show_time=True) if method != "pca" else nullcontext():
        try:
            if am.shipped:
                plane = shipped_plane(am.name, am.model, dataset, shown, projection)
            else:
                plane = session.cached(K + "cache", (am.key, id(am.model), md.key, shown, projection),
                                       lambda: encoded_plane(am.model, test.images[:shown], projection), most=2)
        except latent.ProjectionUnavailable as e:
            st.error(f"**{latent.METHODS[method]} is not available on this server.** {e}", icon=":material/block:")
    if plane is not None:
        labels = test.labels[:shown].numpy()
        thumbs = thumbnails(md.key, test.images, min(latentview.THUMBS, shown))
        title = "2-D codes" if code_dim == 2 else projection.label
        data, chart = latentview.spec(plane, labels, md.class_names, thumbs, title)
        st.vega_lite_chart(data, chart, key=K + "plane", on_select="rerun", selection_mode=[latentview.PICK,
                           latentview.SPOT], width="stretch", height=520)
        st.caption(f"{shown:,} test {datasets.noun(md, plural=True)}; hover one of the first {len(thumbs):,} for "
                   "its picture, click it for its nearest neighbours in code space, or click an empty spot of the "
                   "plane to decode it.")
        pick, point = latentview.clicked(K + "plane")
        zoom_in = max(1, 84 // cfg.side)
        if pick is not None:
            latentview.picked(am.model, plane, test, md.class_names, pick, zoom_in, datasets.noun(md))
            if st.session_state.get(K + "walked") != pick:      # the walk below starts from the picked picture
                st.session_state[K + "walk"] = st.session_state[K + "walked"] = pick
        elif point is not None:
            latentview.spot(am.model, plane, point, zoom_in)
    replay_section()
    codes = plane.codes if plane is not None else None
    if plane is not None and plane.axes is not None:
        xy, origin, axes = plane.xy, plane.origin, plane.axes
    elif plane is not None:                           # the decoder grid below walks the codes' PCA plane
        xy, origin, axes = viz.plane(plane.codes)
    else:
        st.stop()
else:
    datasets.explain_missing(md)
    replay_section()
    if code_dim != 2:
        st.stop()
    codes, origin, axes = None, np.zeros(2), np.eye(2)

# ------------------------------------------------------------------------------------------------ decoder grid
st.header("What the decoder draws across the plane")
bounds = cfg.code_range if code_dim == 2 else None   # a tanh or sigmoid code: every code lies in this square
c1, c2 = st.columns(2)
if bounds:
    # The stacked tutorial's grid: the whole code square in steps of 0.25 (9 x 9 codes for a tanh code).
    centre, half = (bounds[0] + bounds[1]) / 2, (bounds[1] - bounds[0]) / 2
    origin = np.full(2, centre)
    default, default_n = half, int(round(2 * half / GRID_STEP)) + 1
else:
    # The range that holds most test codes (2.5 standard deviations of the wider axis).
    spread = 2.5 * float(xy.std(0).max()) if codes is not None else 1.5
    default, default_n = min(RANGES, key=lambda r: abs(r - spread)), 10
# Keyed by the model: another active model (the sidebar's choice, on any page) starts from its own defaults.
span = c1.select_slider("Range (± around the centre)", RANGES, value=default, key=f"{K}range.{am.key}",
                        help="The stacked tutorial also tries points far outside the data: ±1.5, 10, 100.")
n = c2.slider("Grid size", 4, 20, default_n, key=f"{K}grid.{am.key}")
if codes is not None and code_dim == 2:
    lo_x, lo_y = xy.min(0)
    hi_x, hi_y = xy.max(0)
    st.caption(f"The test codes span x ∈ [{lo_x:.2f}, {hi_x:.2f}], y ∈ [{lo_y:.2f}, {hi_y:.2f}]"
               + (f"; this code is bounded to [{bounds[0]:g}, {bounds[1]:g}] on each axis." if bounds else "."))
images = viz.decode_plane(am.model, origin, axes, -span, span, n)
zoom = max(1, 56 // cfg.side)
ticks = np.linspace(-span, span, n) + (origin[0] if code_dim == 2 else 0.0)
step = f" in steps of {ticks[1] - ticks[0]:g}" if n > 1 else ""
st.image(viz.grid(images, nrow=n, zoom=zoom),
         caption=f"{n}×{n} codes from {ticks[0]:g} to {ticks[-1]:g} on each axis{step} (top row: y = {ticks[-1]:g})",
         alt=f"A {n}×{n} grid of the images the decoder draws for codes spread evenly over the plane, x growing to "
             "the right and y upwards.")

if bounds:
    st.markdown("**Codes outside the range**: the encoder never produces them, but the decoder still draws "
                "something. The stacked tutorial tries these four points.")
    outside = np.array(OUTSIDE_POINTS, dtype=np.float64)
    for col, point, image in zip(st.columns(len(outside)), OUTSIDE_POINTS, viz.decode_codes(am.model, outside)):
        col.image(viz.zoom(image, max(1, 84 // cfg.side)), caption=f"({point[0]:g}, {point[1]:g})",
                  alt=f"What the decoder draws for the code ({point[0]:g}, {point[1]:g}), outside its range.")

# ------------------------------------------------------------------------------------------------ code strips
st.header(f"Codes of a few {datasets.noun(md, plural=True)}")
if codes is None:
    st.info("Needs the test images (see above).")
else:
    most = min(10, len(codes))
    k = st.slider(datasets.noun(md, plural=True).capitalize(), 1, most, min(5, most), key=K + "strips") \
        if most > 1 else most
    strip = codes[:k]
    lo, hi = strip.min(), strip.max()
    for i in range(k):
        a, b, c = st.columns([1, 6, 1])
        a.image(viz.zoom(to_float(test.images[i], channel=False).numpy(), max(1, 84 // cfg.side)), caption=f"test #{i}",
                alt=f"Test image #{i}, a {md.class_names[int(test.labels[i])]}.")
        scaled = (strip[i] - lo) / max(hi - lo, 1e-12)                # (d,) in [0, 1]
        width = code_dim if code_dim <= 40 else 28                    # long codes wrap into rows
        rows = -(-code_dim // width)
        block = np.full(rows * width, np.nan)
        block[:code_dim] = scaled
        b.image(viz.colorize(np.nan_to_num(block.reshape(rows, width), nan=0.0), zoom=max(6, min(24, 600 // width))),
                caption=f"code: {code_dim} numbers" + (f" in rows of {width}" if rows > 1 else " (1×k)")
                        + f", colours from {lo:.2f} to {hi:.2f}",
                alt=f"The {code_dim} numbers of test image #{i}'s code as coloured cells: black for the lowest value "
                    "shown, through red and yellow to white for the highest.")
        c.image(viz.zoom(viz.decode_codes(am.model, codes[i:i + 1])[0], max(1, 84 // cfg.side)), caption="decoded",
                alt=f"What the decoder draws from test image #{i}'s code.")

# ------------------------------------------------------------------------------------------------ walks
st.header("Walk along one code dimension")
if codes is None:
    st.info("Needs the test images (see above).")
else:
    i = st.number_input(f"Test {datasets.noun(md)} to start from", 0, len(codes) - 1, 0, key=K + "walk",
                        help="Its code is the centre of every slider; clicking a point of the plane above picks it.")
    # a fragment: moving a slider redraws the walk, not the plane and its 5,000 points above
    st.fragment(latentview.walk)(am.model, codes, test, int(i), max(1, 56 // cfg.side), K + "walk.")

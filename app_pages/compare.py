"""Compare: this visitor's finished and stopped runs, their uploads and the shipped models in one table; two to
eight of them side by side (loss curves, the settings that differ, figures, reconstructions, where two of them fail
class by class, first-layer filters).
"""
import numpy as np
import streamlit as st
import torch

from aecore.labs import compare
from aecore.engine import viz
from aecore.engine.data import to_float
from ui import caches, datasets, failures, guide, panels, server, session
from ui import takehome

panels.readable_sliders()
panels.table_toolbar_room()
K = "compare."
PICKED = K + "picked"
CACHE = K + "cache"  # this session's pictures (`session.cached`)
CACHE_SIZE = 24      # pictures kept per session, about 60 KB each: a rerun redraws them all, and tiling is slow
PER_ROW = 4          # filter blocks side by side
N_DIGITS = 8
BASELINE = "shipped:pytorch-784-200"   # the Train page's default preset: the shipped model a new run is set against
CHART = {"displayModeBar": False}   # Plotly's buttons would cover the chart's top on a phone; drag zooms anyway
LOSS = st.column_config.NumberColumn(format="%.5f")
COLUMNS = {"parameters": st.column_config.NumberColumn(format="localized"), "train loss": LOSS,
           "validation loss": LOSS, "test loss": LOSS, "median test error (MSE per image)": LOSS}


def curves(chosen: list[compare.Entry]) -> None:
    st.header("Loss per epoch")
    bare = [e.name for e in chosen if not e.history]
    if len(bare) < len(chosen):
        fig = viz.readable_log_axes(compare.curves_figure(chosen))
        st.plotly_chart(fig, key=K + "chart", width="stretch", config=CHART,
                        alt="Loss per epoch on a log scale, one colour per model: its training loss solid, its "
                            "held-out loss dashed.")
        by_key = {e.key: e.name for e in chosen}
        hidden = viz.coincidence_note([t.name for t in fig.data], [dict(zip(t.x, t.y)) for t in fig.data],
                                      [by_key[t.legendgroup] for t in fig.data])
        if hidden:      # drawn later, on top: the curve below cannot be seen
            st.markdown(f":material/layers: **Hidden curves:** {hidden}")
        st.caption("Solid: mean training loss over each epoch; dashed: held-out loss after it (the validation "
                   "split when the run had one, else the test set). Each model in its own loss, named in the "
                   "legend: a BCE and an MSE curve are not on the same scale.")
    if bare:
        st.info(f"No per-epoch history recorded for: {', '.join(bare)}.", icon=":material/info:")


def settings(chosen: list[compare.Entry]) -> None:
    st.header("Settings that differ")
    rows = compare.differing_settings(chosen)
    if rows:
        st.dataframe(rows, hide_index=True, width="content", placeholder=compare.MISSING)
        shown = {v for row in rows for v in row.values()}
        notes = [f"{compare.MISSING}: not recorded in that model's checkpoint" * (compare.MISSING in shown),
                 f"{compare.NOT_USED}: the setting has no effect on that model" * (compare.NOT_USED in shown)]
        st.caption("; ".join(["Only the settings whose values are not all the same", *filter(None, notes)]) + ".")
    else:
        st.markdown("They differ in no setting: same model, data and training configuration.")


def figures(chosen: list[compare.Entry]) -> None:
    st.header("Figures")
    st.dataframe(compare.figure_rows(chosen), hide_index=True, width="stretch", column_config=COLUMNS,
                 placeholder=compare.MISSING)
    st.caption("Losses as each run measured them, in its own loss and on its own data (a model trained on one "
               "class is tested on that class). The median test error is per-image squared error in pixel "
               "space, the same measure for every model. Training time: pauses and evaluation excluded.")


def reconstructions(chosen: list[compare.Entry]) -> None:
    st.header("The same test images, reconstructed")
    st.caption(f"Each model reconstructs the test images of the data set it was trained on (MNIST when its "
               f"checkpoint does not say): the first test image of each class, {N_DIGITS} in all, the same for "
               f"every model of that data set, given clean (without the noise some were trained with).")
    groups: dict[str, list[compare.Entry]] = {}
    for e in chosen:
        groups.setdefault(datasets.key_of(e), []).append(e)
    found = {key: datasets.of(members[0]) for key, members in groups.items()}
    missing = [key for key, md in found.items() if md.test is None]
    if missing:
        names = [e.name for key in missing for e in groups[key]]
        st.caption(f"No reconstructions for {', '.join(names)}: the "
                   f"{' and '.join(found[key].name for key in missing)} test images are not on this server.")
        for key in missing:
            datasets.explain_missing(found[key])
    for key, members in groups.items():
        md = found[key]
        test = md.test
        if test is None:
            continue
        idx, images, picture = session.cached(CACHE, "digits", lambda test=test: originals(test),
                                              most=CACHE_SIZE, owner=test)
        st.image(picture, caption=f"originals: {md.name} test images #{', #'.join(map(str, idx))}",
                 alt=f"A row of {len(idx)} {md.name} test images, one of each class.")
        for e in members:
            mse, picture = session.cached(CACHE, f"recon:{id(test)}",   # the split the digits come from
                                          lambda e=e, images=images: reconstruction(e, images),
                                          most=CACHE_SIZE, owner=e.model)
            st.image(picture, caption=f"{e.name} · mean squared error on these {len(idx)}: {mse:.4f}",
                     alt=f"The same {len(idx)} images as reconstructed by {e.name}.")


def failing(chosen: list[compare.Entry]) -> None:
    """Two of the picks side by side, class by class: their test errors and each one's worst and best pictures."""
    st.header("Where they fail")
    keys = [e.key for e in chosen]
    by_key = {e.key: e for e in chosen}
    left, right = st.columns(2)
    a = left.selectbox("Left model", keys, index=0, key=K + "fails.left", format_func=lambda k: by_key[k].name)
    b = right.selectbox("Right model", keys, index=1, key=K + "fails.right", format_func=lambda k: by_key[k].name)
    pair = [by_key[a], by_key[b]]
    if a == b:
        st.info("Choose two different models to see where each fails.", icon=":material/compare:")
    elif datasets.key_of(pair[0]) != datasets.key_of(pair[1]):
        st.info(f"{pair[0].name} and {pair[1].name} learned different pictures "
                f"({datasets.of(pair[0]).name}, {datasets.of(pair[1]).name}): their errors are not measured on one "
                "test set.", icon=":material/compare:")
    elif (md := datasets.of(pair[0])).test is None:
        st.caption(f"No class-by-class errors: the {md.name} test pictures are not on this server (see above).")
    else:
        failures.section(pair, md.test, md.key, md.class_names, K + "fails.", header=False)


def originals(test) -> tuple[list[int], np.ndarray, np.ndarray]:
    """The images every model of this data set is shown: indices, uint8 images ((N, 28, 28) for MNIST), their
    picture."""
    idx = compare.digit_picks(test.labels.numpy(), N_DIGITS)
    images = test.images[idx].numpy()
    return idx, images, viz.grid(to_float(images).numpy(), nrow=N_DIGITS, zoom=zoom_for(images))


def zoom_for(images: np.ndarray) -> int:
    """About 84 px a picture whatever its side: 3× for MNIST's 28."""
    return max(1, 84 // images.shape[-1])


def reconstruction(entry: compare.Entry, images: np.ndarray) -> tuple[float, np.ndarray]:
    recon = compare.reconstructions([entry], images)[0]
    x = to_float(images, torch.float64, channel=False).numpy()             # float64, as the error is summed
    return float(((recon - x) ** 2).mean()), viz.grid(recon, nrow=N_DIGITS, zoom=zoom_for(images))


def filters(chosen: list[compare.Entry]) -> None:
    st.header("First-layer filters")
    most = min(compare.filter_count(e) for e in chosen)
    if most > 1:   # kept within the range of the current picks (a conv model has few kernels)
        st.session_state[K + "filters"] = min(st.session_state.get(K + "filters", 16), most)
        count = st.slider("Filters per model", 1, most, key=K + "filters", persist_state="session")
    else:
        count = most
    st.caption(f"The first {count} of each model, every tile scaled on its own: an MLP's first-layer weights "
               f"(one per input number, shown as a picture: 784 as 28×28 for MNIST), a conv model's first kernels; "
               f"a colour model's in colour.")
    for start in range(0, len(chosen), PER_ROW):
        for col, e in zip(st.columns(PER_ROW), chosen[start:start + PER_ROW]):
            side, picture = session.cached(CACHE, f"filters:{count}", lambda e=e: filter_picture(e, count),
                                           most=CACHE_SIZE, owner=e.model)
            what = f"kernels {side}×{side}" if e.config.convolutional else "units"
            col.image(picture, caption=f"{e.name}: {count} of {compare.filter_count(e)} {what}",
                      alt=f"A grid of {count} {'colour' if e.config.in_channels == 3 else 'grey'} tiles: the "
                          f"first-layer weights of {e.name}.")


def filter_picture(entry: compare.Entry, count: int) -> tuple[int, np.ndarray]:
    """A tile's side and the block of `count` filters, tiles of about 56 px whatever their size."""
    tiles = compare.first_layer_filters(entry, count)
    side = tiles.shape[-1]
    return side, viz.grid(tiles, nrow=compare.grid_columns(count), zoom=max(1, 56 // side))


# ------------------------------------------------------------------------------------------------ the list
st.title("Compare runs")
guide.intro("compare")
entries = compare.gather(server.run_registry().runs_of(session.visitor()), session.session_models(),
                         caches.shipped_models())
if not entries:
    st.info("Nothing to compare yet: the models/ folder is empty. Train a model on the Train page.")
else:
    st.dataframe(compare.overview_rows(entries), hide_index=True, width="stretch", column_config=COLUMNS,
                 placeholder=compare.MISSING)
    by_key = {e.key: e for e in entries}
    own = [e.key for e in entries if not e.shipped]
    seen = st.session_state.setdefault(K + "seen", set())
    active = st.session_state.get("app.active", "")
    if PICKED not in st.session_state:
        reference = active if active.startswith("shipped:") else BASELINE
        picks = compare.default_picks(entries, reference)
        if not own and active in by_key:   # shipped models only: the active one beside the first other one
            picks = [active] + [k for k in by_key if k != active][:1]
    else:   # their newest model, if new since the last visit, joins the picks; vanished ones leave them
        picks = [k for k in own if k not in seen][:1]   # one: a study's runs must not push out every pick
        picks += [k for k in st.session_state[PICKED] if k in by_key and k not in picks]
    if active in by_key and active not in picks and active != st.session_state.get(K + "active"):
        picks.insert(0, active)   # the active model, on a first visit or once chosen anew, is among the picks
    st.session_state[K + "active"] = active
    st.session_state[PICKED] = picks[:compare.MAX_PICKS]
    seen.update(own)
    picked = st.multiselect("Models to compare", list(by_key), key=PICKED, format_func=lambda k: by_key[k].name,
                            max_selections=compare.MAX_PICKS, persist_state="session",
                            placeholder="Pick two to eight models")
    chosen = [by_key[k] for k in picked]
    if len(chosen) < 2:
        st.info("Pick at least two models to compare them (up to eight).", icon=":material/compare:")
    else:
        curves(chosen)
        settings(chosen)
        figures(chosen)
        reconstructions(chosen)
        failing(chosen)
        filters(chosen)
        takehome.compare_section(chosen, K + "takehome.")

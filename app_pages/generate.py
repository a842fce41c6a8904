"""Generate: the model as a generator. Samples (a VAE's prior, or a Gaussian fitted to a plain autoencoder's codes)
judged by the digit classifier against real test digits, the path between two test digits, the decoded 2-D manifold."""
import numpy as np
import streamlit as st

from aecore.labs import classifier, generative, precomputed, studies
from aecore.engine import viz
from aecore.engine.data import DataConfig, DataError, to_float
from ui import caches, datasets, guide, panels, server, session

panels.readable_sliders()
K = "generate."
# Samples judged per model, and real test digits judged as the reference: the same count for both, because an
# inception score estimated from few images comes out lower than from many (its p(y) is a sample mean).
JUDGED = 1000
FIT_IMAGES = 5000       # training codes a plain autoencoder's Gaussian is fitted to (a conv encoder: ~2 s a model)
SCATTER_POINTS = 2000   # test codes drawn under the interpolation path
STEPS, MANIFOLD = 10, 15
NONE = "none"
MEMO = K + "memo"       # this session's results on this page (samples, verdicts, codes), a few at a time
IS_HELP = ("The classifier-based inception score exp(E_x KL(p(y|x) ‖ p(y))): 1 when every image gets the same "
           "verdict, at most 10 (the number of digits) when each image is read with certainty and the ten digits "
           "come equally often.")


def versus(verdict: dict, ref: dict | None, key: str, scale: float, digits: int, unit: str) -> str | None:
    """The difference to real digits as a metric's delta: '+0.12 vs real digits' (never '-0.00')."""
    if ref is None:
        return None
    return f"{round(scale * (verdict[key] - ref[key]), digits) + 0.0:+.{digits}f}{unit} vs real digits"


def fit_codes(model, train):
    """(mean, cov, codes used, training images) of the Gaussian fitted to a model's training codes."""
    used = train.images[:FIT_IMAGES]
    return (*generative.code_gaussian(model, used), len(used), len(train))


@st.cache_resource(show_spinner="Fitting a Gaussian to the training codes…", max_entries=16)
def shipped_gaussian(name: str, _model, data_cfg: DataConfig):
    """A shipped model's fitted Gaussian, once per server (read-only), and the digest of the training images it is
    fitted to: the key of its precomputed verdicts (aecore.labs.precomputed)."""
    fitted_on = precomputed.digest(caches.data_for(data_cfg).train.images[:FIT_IMAGES])
    return fit_codes(_model, caches.data_for(data_cfg).train), fitted_on


@st.cache_resource(show_spinner="Judging real test digits…", max_entries=4)
def reference(dataset: str, n: int, _judge, judge_id: int) -> dict:
    """The classifier's figures for the first n real test digits, once per server and classifier: the shipped ones
    when they were computed from these digits and this classifier."""
    images = caches.raw_split(dataset, "test").images[:n]
    shipped = precomputed.judged_reference(images, _judge)
    return shipped if shipped is not None else generative.judge_images(images, _judge)


@st.cache_resource(show_spinner=False, max_entries=64)
def shipped_samples(name: str, _model, seed: int, shown: int, _gaussian) -> np.ndarray:
    """The first `shown` of a shipped model's JUDGED samples (seed), once per server: only these are decoded."""
    return generative.decode_images(_model, generative.sample_codes(_model, JUDGED, seed, _gaussian)[:shown])


@st.cache_resource(show_spinner="Judging the samples…", max_entries=32)
def shipped_verdict(name: str, _model, seed: int, _judge, judge_id: int, _gaussian, fitted_on: str | None) -> dict:
    """The classifier's figures for a shipped model's JUDGED samples (seed), once per server and classifier: the
    shipped ones when they were computed from this model, classifier and (for a plain model) training images."""
    shipped = precomputed.judged_samples(_model, _judge, seed, JUDGED, fitted_on)
    if shipped is not None:
        return shipped
    return generative.judge_images(generative.sample_images(_model, JUDGED, seed, gaussian=_gaussian), _judge)


def source(am) -> tuple[tuple | None, str, str | None]:
    """What the model's samples are drawn from: (the Gaussian (mean, cov), or None for a VAE's prior; the words for
    it; for a shipped plain model, the digest of the images the Gaussian is fitted to). Raises DataError when a plain
    autoencoder's training images are missing."""
    if am.config.variational:
        return None, f"the prior N(0, I) of its {am.config.latent}-number code", None
    data_cfg = am.meta.get("data") or DataConfig()
    fitted_on = None
    if am.shipped:
        (mean, cov, used, total), fitted_on = shipped_gaussian(am.name, am.model, data_cfg)
    else:
        mean, cov, used, total = session.cached(MEMO, ("fit", am.key, id(am.model)),
                                                lambda: fit_codes(am.model, datasets.of(am).splits().train))
    whose = "its" if am.meta.get("data") else f"the {data_cfg.dataset}"   # a checkpoint may not say what it learned
    which = f"all {used:,} of {whose}" if used == total else f"the first {used:,} of {whose} {total:,}"
    return (mean, cov), (f"a Gaussian N(μ, Σ) fitted to the codes of {which} training images ({len(mean):,} numbers "
                         f"a code{', flattened' if am.config.convolutional else ''}): the naive way to sample an "
                         "autoencoder"), fitted_on


def samples(am, seed: int, shown: int, gaussian) -> tuple[np.ndarray, np.ndarray | None]:
    """The first `shown` of the model's JUDGED samples, and all JUDGED of them for a model of this session (None for
    a shipped one: its verdict is the server's, see shipped_verdict)."""
    if am.key.startswith("shipped:"):
        return shipped_samples(am.name, am.model, seed, shown, gaussian), None
    images = session.cached(MEMO, ("samples", am.key, id(am.model), seed),
                            lambda: generative.sample_images(am.model, JUDGED, seed, gaussian=gaussian))
    return images[:shown], images


def shares_chart(verdicts: dict) -> dict:
    """Bars of the share of each digit the classifier reads, one colour per verdict given (None: left out), side by
    side. Written as a Vega-Lite spec rather than st.bar_chart: that builds it with Altair from a pandas table, two
    imports that cost a fresh server's first visitor here about half a second; the values sit in the spec's one
    layer, where Streamlit leaves them as they are (from top-level data it too would make a pandas table)."""
    given = {name: v for name, v in verdicts.items() if v is not None}
    rows = [{"digit": str(d), "share": share, "of": name} for name, v in given.items()
            for d, share in enumerate(v["class_share"])]
    return {"height": 220, "layer": [{
        "data": {"values": rows}, "mark": {"type": "bar", "tooltip": True},
        "encoding": {
            "x": {"field": "digit", "type": "nominal", "title": "digit the classifier reads",
                  "axis": {"labelAngle": 0}},
            "y": {"field": "share", "type": "quantitative", "title": "share"},
            "xOffset": {"field": "of", "sort": list(given)},
            "color": {"field": "of", "type": "nominal", "sort": list(given), "title": None,
                      "scale": {"domain": list(given), "range": list(viz.TWO[:len(given)])},
                      "legend": {"orient": "bottom"}}}}]}


def show_samples(am, n: int, seed: int, judge_model, judge_meta: dict, ref: dict | None) -> None:
    st.markdown(f"**{am.name}** · `{am.config.family}`")
    try:
        gaussian, words, fitted_on = source(am)
    except DataError as e:
        st.info(f"{am.name} is a plain autoencoder: its samples come from a Gaussian fitted to the codes of its "
                f"training images, which are not on this server ({e}).", icon=":material/info:")
        return
    shown, images = samples(am, seed, n * n, gaussian)
    st.image(viz.grid(shown, nrow=n, zoom=max(1, 56 // am.config.side)),
             caption=f"{n}×{n} = {n * n} of {JUDGED:,} samples (seed {seed}) decoded from {words}",
             alt=f"{n * n} images that {am.name} generated from random codes, in {n} rows of {n}.")
    if judge_model is None:
        return
    if am.dataset != "mnist":
        st.caption(f"Not judged: the classifier reads MNIST digits, and {am.name} learned {datasets.of(am).name}.")
        return
    if images is None:
        j = shipped_verdict(am.name, am.model, seed, judge_model, id(judge_model), gaussian, fitted_on)
    else:
        j = session.cached(MEMO, ("judge", am.key, id(am.model), seed, id(judge_model)),
                           lambda: generative.judge_images(images, judge_model))
    c1, c2 = st.columns(2)
    c1.metric("Read with confidence ≥ 0.9", f"{j['confident_share']:.1%}",
              delta=versus(j, ref, "confident_share", 100, 1, " points"))
    c2.metric("Inception score (max 10)", f"{j['inception_score']:.2f}", help=IS_HELP,
              delta=versus(j, ref, "inception_score", 1, 2, ""))
    st.vega_lite_chart(shares_chart({"samples": j, "real test digits": ref}), width="stretch",
                       alt=f"Bars: the share of {am.name}'s samples the classifier reads as each digit, 0 to 9" +
                           (", beside the same for real test digits." if ref is not None else "."))
    rare = [str(d) for d, share in enumerate(j["class_share"]) if share < 0.05]
    sure = classifier.sureness(judge_meta)
    st.caption(f"The classifier judged all {j['n']:,} samples, not only those shown. Digits it reads in under 5 % "
               f"of them (10 % each if balanced): {', '.join(rare) if rare else 'none'}." + (
                   f" The classifier is sure (≥ 0.9) of {sure}: a high share alone does not show that samples are "
                   "digits; read it beside the pictures and the class balance." if sure else ""))


st.title("Generate digits")
guide.intro("generate")
am = session.page_model()
cfg = am.config
code_dim = int(np.prod(cfg.code_shape))
st.caption(f"Active model: **{am.name}**, " + (f"a variational autoencoder with a {code_dim}-number Gaussian code"
                                               if cfg.variational else
                                               f"a plain autoencoder with a code of {code_dim} numbers"))
md = datasets.of(am)
dataset, test = md.dataset, md.test
zoom = max(1, 56 // cfg.side)
if test is None:
    datasets.explain_missing(md)
try:
    (judge_model, judge_meta), judge_problem = classifier.digit_classifier(), None
except classifier.ClassifierFileError as e:
    judge_model, judge_meta, judge_problem = None, {}, str(e)

# ------------------------------------------------------------------------------------------------ samples
st.header("Samples")
choices = session.model_choices()
others = [k for k in choices if k != am.key]
if cfg.variational:   # the default pairing: a plain autoencoder beside a VAE, whichever of the two is active
    plain = [k for k in others if k.startswith("shipped:") and not choices[k].config.variational]
    partner = "shipped:pytorch-784-200" if "shipped:pytorch-784-200" in plain else next(iter(plain), NONE)
else:
    partner = next((k for k in others if choices[k].config.variational), NONE)
options = [NONE, *others]
if st.session_state.get(K + "compare") not in options:
    st.session_state.pop(K + "compare", None)
seed = st.session_state.setdefault(K + "seed", 0)
c1, c2, c3 = st.columns([2, 3, 1], vertical_alignment="bottom")
n = c1.slider("Samples shown (n × n)", 4, 10, 8, key=K + "n")
compare = c2.selectbox("Compare with", options, index=options.index(partner), key=K + "compare",
                       format_func=lambda k: "no second model" if k == NONE else choices[k].name)
c3.button("New samples", icon=":material/casino:", key=K + "new",
          on_click=lambda: st.session_state.update({K + "seed": seed + 1}))
if judge_problem:
    st.info(f"**The samples are not judged.** {judge_problem}", icon=":material/info:")
    ref = None
elif test is None or dataset != "mnist":
    ref = None
else:
    ref = reference(dataset, min(JUDGED, len(test)), judge_model, id(judge_model))
    st.caption(f"Reference, the same figures for {ref['n']:,} real test digits: {ref['confident_share']:.1%} read with "
               f"confidence ≥ 0.9, inception score {ref['inception_score']:.2f} (at most 10).")
shown = [am] if compare == NONE else [am, choices[compare]]
for column, model in zip(st.columns(len(shown)), shown):
    with column:
        show_samples(model, n, seed, judge_model, judge_meta, ref)

# ------------------------------------------------------------------------------------------------ interpolation
st.header("Interpolation")
if test is None:
    st.info("Needs the test images (see above).", icon=":material/info:")
else:
    labels = test.labels.numpy()
    ends = (0, int(labels.max())) if md.pictures else (1, 7)   # a 1 into a 7 (a trouser into a sneaker)
    first = [int(np.flatnonzero(labels == d)[0]) if (labels == d).any() else 0 for d in ends]
    noun = datasets.noun(md)
    c1, c2, c3 = st.columns(3)
    a = c1.number_input(f"From test {noun} #", 0, len(test) - 1, first[0], key=f"{K}a.{md.key}")   # keyed by data set:
    b = c2.number_input(f"To test {noun} #", 0, len(test) - 1, first[1], key=f"{K}b.{md.key}")   # another set, other defaults
    spherical = cfg.variational and c3.radio("Path", ["linear", "spherical"], horizontal=True, key=K + "path",
                                             help="Spherical (slerp) keeps the codes at typical norms under the "
                                                  "Gaussian prior") == "spherical"
    path, strip = generative.interpolation(am.model, test.images[a], test.images[b], STEPS, spherical)
    names = md.class_names
    left, middle, right = st.columns([1, 10, 1], vertical_alignment="center")
    left.image(viz.zoom(to_float(test.images[a], channel=False).numpy(), zoom), caption=f"#{a}: {names[labels[a]]}",
               alt=f"Test image #{a}, a {names[labels[a]]}, where the path starts.")
    middle.image(viz.grid(strip, nrow=STEPS, zoom=zoom),
                 caption=f"{STEPS} codes {'along the great circle' if spherical else 'on the straight line'} from the "
                         f"code of test {noun} #{a} to that of #{b}, decoded; the first and last are the two {noun}s' "
                         "reconstructions",
                 alt=f"A row of {STEPS} decoded images that change step by step from test image #{a} into #{b}.")
    right.image(viz.zoom(to_float(test.images[b], channel=False).numpy(), zoom), caption=f"#{b}: {names[labels[b]]}",
                alt=f"Test image #{b}, a {names[labels[b]]}, where the path ends.")
    if code_dim == 2:
        xy = session.cached(MEMO, ("scatter", am.key, id(am.model), md.key),
                            lambda: viz.encode_all(am.model, test.images[:SCATTER_POINTS]))
        fig = viz.latent_scatter(xy, labels[:len(xy)], names,
                                 f"2-D codes of the first {len(xy):,} test {noun}s, and the interpolation path")
        fig.add_scatter(x=path[:, 0], y=path[:, 1], mode="lines+markers", name="path",
                        line=dict(color=viz.NEUTRAL, width=3),   # seen on the light and the dark theme
                        marker=dict(size=9, color=viz.NEUTRAL, symbol="diamond"))
        st.plotly_chart(fig, key=K + "scatter", width="stretch", config={"displayModeBar": False})

# ------------------------------------------------------------------------------------------------ manifold
st.header("The decoded manifold")
if code_dim != 2:
    st.info(f"Drawn for 2-number codes only: {am.name}'s code has {code_dim:,} numbers, so a grid over two of them "
            "would leave the rest to be chosen arbitrarily.", icon=":material/info:")
elif cfg.variational:
    st.image(viz.grid(generative.decode_images(am.model, generative.prior_grid(MANIFOLD)), nrow=MANIFOLD, zoom=zoom),
             caption=f"{MANIFOLD}×{MANIFOLD} codes at the prior's quantiles Φ⁻¹(0.05 … 0.95) in each dimension, "
                     "decoded (the Keras VAE example's figure): z[0] grows to the right, z[1] downwards",
             alt=f"A {MANIFOLD}×{MANIFOLD} grid of the images {am.name} decodes across its code plane; neighbouring "
                 "images blend into each other.")
elif cfg.code_range is None and test is None:
    st.info("This code is unbounded: the grid spans the 1st to 99th percentile of the test codes, which needs the "
            "test images (see above).", icon=":material/info:")
else:
    codes = None if cfg.code_range else session.cached(MEMO, ("codes", am.key, id(am.model), md.key),
                                                       lambda: viz.encode_all(am.model, test.images))
    low, high = generative.code_box(cfg, codes)
    span = (f"the code's whole range ({cfg.activation})" if cfg.code_range else
            f"the 1st to 99th percentile of the codes of its {len(codes):,} test {datasets.noun(md, plural=True)}")
    grid = generative.range_grid(low, high, MANIFOLD)
    st.image(viz.grid(generative.decode_images(am.model, grid), nrow=MANIFOLD, zoom=zoom),
             caption=f"{MANIFOLD}×{MANIFOLD} codes evenly spaced over z[0] ∈ [{low[0]:.2f}, {high[0]:.2f}], "
                     f"z[1] ∈ [{low[1]:.2f}, {high[1]:.2f}] ({span}), decoded: z[0] grows to the right, z[1] "
                     "downwards",
             alt=f"A {MANIFOLD}×{MANIFOLD} grid of the images {am.name} decodes across its code plane; neighbouring "
                 "images blend into each other.")

# ------------------------------------------------------------------------------------------------ beta study
st.header("β study")
beta_study = studies.get("beta")
st.markdown(f"A VAE's β weighs the KL term against the reconstruction: a small β lets codes spread out and "
            f"reconstruct well, a large one pulls them to the prior, so that samples drawn from it land where "
            f"the decoder has learned something. {beta_study.shows}")
st.caption(f"{len(beta_study.specs)} runs ({', '.join(beta_study.run_names)}), queued through the server's run "
           f"service one after another; **{beta_study.epochs_note}**. The Studies page follows them and plots the "
           "figures as each run finishes.")
if st.button("Run the β study", icon=":material/play_arrow:", key=K + "beta_start"):
    registry, me = server.run_registry(), session.visitor()
    series = panels.submit(lambda: registry.submit_series(beta_study.specs, caches.data_for(beta_study.data), me))
    if series:
        st.switch_page("app_pages/studies.py", query_params={"study": series})

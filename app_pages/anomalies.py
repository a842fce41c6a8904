"""Anomalies: one-class detectors measured by ROC-AUC over the whole test set, and the tutorial's "a 6 is
abnormal" shown with how often such a verdict holds."""
import numpy as np
import streamlit as st

from aecore.labs import anomaly
from aecore.engine import viz
from aecore.engine.data import CLASS_NAMES, DATASETS, DataError, to_float
from ui import caches, guide, panels, pictures, server, session

panels.readable_sliders()
K = "anomalies."
TUTORIAL_SIX = 11      # the first 6 of the MNIST test set, the tutorial's example


st.title("Find anomalies")
guide.intro("anomalies")

detectors = caches.detector_records()       # name -> meta; a detector's weights load when it is shown
test, problem = caches.test_split("mnist")
if test is None:
    panels.data_error_box(problem)
    panels.data_missing("mnist")

yours = pictures.summary_rows()
if yours:       # this visitor's own pictures: their anomalies are found on the Your images page
    with st.container(border=True):
        st.markdown("**Your pictures.** This page studies one-class detectors on MNIST; the anomalies of your own "
                    "sets are found on the Your images page (trained on the good pictures, scored against PCA).")
        st.markdown(panels.markdown_table(["set", "pictures", "image AUROC", "PCA's"], yours))
        st.page_link("app_pages/images.py", label="Your images", icon=":material/photo_library:")

# ------------------------------------------------------------------------------------------------ the tutorial's case
st.header("The tutorial's case: trained on 0s, is a 6 abnormal?")
tutorial = caches.shipped_models().get("conv-digit0")
zeros_detector = f"{anomaly.DEFAULT_RECIPE}-mnist-0"     # the recommended recipe's detector of 0s
recommended = caches.shipped_detector(zeros_detector) if zeros_detector in detectors else None
if test is None:
    st.info("Needs the MNIST test images (see above).")
elif tutorial and recommended:
    labels = test.labels.numpy()
    zeros = labels == 0
    cols = st.columns(2)
    for col, (title, name, model) in zip(cols, [
            ("Tutorial conv AE (conv-digit0)", "conv-digit0", tutorial[0]),
            (f"Recommended: {anomaly.RECIPES[anomaly.DEFAULT_RECIPE].title}", zeros_detector, recommended[0])]):
        scores = caches.test_scores(name, model, "mnist")
        six = scores[TUTORIAL_SIX]
        pct = float((scores[zeros] < six).mean() * 100)
        with col:
            st.markdown(f"**{title}**")
            a, b = st.columns(2)
            a.metric("first test 6: percentile", f"{pct:.1f}%", help="Where the first 6 of the test set falls among the test 0s' scores: 99% means it scores above 99% of the 0s.")
            b.metric("AUC, 0s vs all other digits", f"{anomaly.auc(scores, ~zeros):.3f}")
            sixes = labels == 6
            st.caption(f"Score of that 6: {six:.4f}. Over all {int(sixes.sum())} test 6s, "
                       f"{(scores[sixes] > np.quantile(scores[zeros], 0.95)).mean():.0%} score above 95% of the 0s; "
                       f"AUC 0s vs 6s: {anomaly.auc(np.r_[scores[zeros], scores[sixes]], np.r_[np.zeros(zeros.sum()), np.ones(sixes.sum())]):.3f}.")
    st.caption("One 6 flagged proves little: the AUC says how often such a verdict holds across all 10,000 test "
               "images. The tutorial's wide code reconstructs most digits well, so its error mostly measures ink.")

# ------------------------------------------------------------------------------------------------ choose a detector
st.header("A detector")
trained = st.session_state.setdefault(K + "trained", {})     # name -> (model, meta), this session's detectors
source = st.radio("Detector", ["shipped", "train one"], horizontal=True, key=K + "source",
                  format_func={"shipped": "a shipped one (MNIST, one per digit)", "train one": "train one now"}.get)

run = session.linked_run(K + "run_id")
collected = st.session_state.setdefault(K + "collected", set())   # run ids already measured
if run is not None and not run.active and run.model is not None and run.id not in collected:
    recipe = anomaly.recipe_of(run.spec)
    try:
        data = caches.data_for(run.spec.data)
        meta = anomaly.detector_meta(run.model, run.spec, data.val, caches.raw_split(run.spec.data.dataset, "test"),
                                     recipe or "custom", run.snapshot.last.elapsed if run.snapshot.last else 0.0)
    except DataError as e:
        panels.data_error_box(str(e))
    else:
        trained[f"{run.spec.name} (yours)"] = (run.model, meta)
        collected.add(run.id)
        st.session_state[K + "pick"] = f"{run.spec.name} (yours)"

if source == "train one":
    c1, c2, c3, c4 = st.columns(4)
    dataset = c1.selectbox("Data set", DATASETS, key=K + "dataset")
    normal = c2.multiselect("Normal class(es)", list(range(10)), default=[0], key=K + "normal",
                            format_func=lambda c: CLASS_NAMES[dataset][c])
    recipe = c3.selectbox("Recipe", list(anomaly.RECIPES), index=list(anomaly.RECIPES).index(anomaly.DEFAULT_RECIPE),
                          key=K + "recipe", format_func=lambda r: anomaly.RECIPES[r].title)
    epochs = c4.number_input("Epochs", 1, 100, anomaly.RECIPES[recipe].train.epochs,
                             key=f"{K}epochs.{recipe}")     # each recipe starts from its own epochs
    st.caption(anomaly.RECIPES[recipe].note)
    busy = run is not None and run.active
    if st.button("Train detector", icon=":material/play_arrow:", type="primary", disabled=busy or not normal,
                 key=K + "btn_start"):
        def start() -> str:
            spec = anomaly.run_spec(recipe, dataset, tuple(sorted(normal)), int(epochs))
            return server.run_registry().submit(spec, caches.data_for(spec.data), session.visitor())
        run_id = panels.submit(start)
        if run_id:
            st.session_state[K + "run_id"] = run_id
            st.query_params["run"] = run_id
            st.rerun()
    if dataset not in caches.available_datasets():
        panels.data_missing(dataset)

    @st.fragment(run_every={"running": 0.5, "queued": 2.0}.get(run.state if run else None))
    def progress():
        r = server.run_registry().view(run.id) if run else None
        if r is None:
            return
        panels.run_progress(r)
        if r.active:
            if st.button("Stop", icon=":material/stop:", key=K + "btn_stop"):
                server.run_registry().stop(r.id)
        elif run.active:
            st.rerun()     # it ended: the whole page measures the new detector
    progress()

names = [f"{n} (shipped)" for n in detectors] + list(trained)
if not names:
    st.info("No detector yet: train one above.")
    st.stop()
if st.session_state.get(K + "pick") not in names:
    st.session_state[K + "pick"] = next((n for n in names if n.startswith(f"{anomaly.DEFAULT_RECIPE}-mnist-0")),
                                        names[0])
pick = st.selectbox("Detector to examine", names, key=K + "pick")
model, meta = caches.shipped_detector(pick.removesuffix(" (shipped)")) if pick.endswith(" (shipped)") else trained[pick]
info = meta["anomaly"]
dataset, normal = info["dataset"], tuple(info["normal"])
names_of = CLASS_NAMES[dataset]
st.caption(f"Recipe **{anomaly.RECIPES[info['recipe']].title if info['recipe'] in anomaly.RECIPES else info['recipe']}**"
           f" · data set {dataset} · normal: {', '.join(names_of[c] for c in normal)} · measured AUC "
           f"**{info['auc']:.3f}** · trained in {info['train_seconds']:.0f} s")

# The shipped detectors are a whole table: one per digit, same recipe.
table = sorted((m["anomaly"] for m in detectors.values() if m["anomaly"]["dataset"] == dataset
                and m["anomaly"]["recipe"] == info["recipe"] and len(m["anomaly"]["normal"]) == 1),
               key=lambda a: a["normal"][0])
if len(table) > 1:
    with st.expander(f"All {len(table)} one-class tasks with this recipe (AUC on the whole test set)"):
        st.markdown(panels.markdown_table(["normal class", "AUC", "hardest other class", "its AUC"], [
            [names_of[a["normal"][0]], f"{a['auc']:.3f}",
             names_of[int(min(a["per_class_auc"], key=a["per_class_auc"].get))],
             f"{min(a['per_class_auc'].values()):.3f}"] for a in table]))
        st.markdown(f"Mean AUC **{np.mean([a['auc'] for a in table]):.3f}**, worst "
                    f"**{min(a['auc'] for a in table):.3f}**.")

test_set, problem = caches.test_split(dataset)
if test_set is None:
    if dataset != "mnist":      # MNIST's absence is reported at the top already
        panels.data_error_box(problem)
        panels.data_missing(dataset)
    st.stop()
if pick.endswith(" (shipped)"):
    scores = caches.test_scores(pick.removesuffix(" (shipped)"), model, dataset)   # the key the tutorial's case used
else:
    # this session's detectors' test-set scores, once per model (a retrained one of the same name is a new model)
    scores = session.cached(K + "scores", pick, lambda: anomaly.score(model, test_set.images), most=8, owner=model)
labels = test_set.labels.numpy()
is_anomaly = ~np.isin(labels, list(normal))

# ------------------------------------------------------------------------------------------------ threshold
st.header("Where to draw the line")
rate = st.slider("False-alarm target: share of normal images flagged (set on held-out normal training images)",
                 0.001, 0.30, 0.05, step=0.001, format="%.3f", key=K + "rate")
threshold = anomaly.threshold_for(info["held_out_quantiles"], rate)
c = anomaly.confusion(scores, is_anomaly, threshold)
m1, m2, m3, m4 = st.columns(4)
m1.metric("threshold (score)", f"{threshold:.4f}")
m2.metric("precision", f"{c['precision']:.1%}")
m3.metric("recall (anomalies caught)", f"{c['recall']:.1%}")
m4.metric("false alarms on the test set", f"{c['false_alarm_rate']:.1%}")
st.markdown(panels.markdown_table(["test images", "called normal", "called anomalous"],
                           [["really normal", f"{c['tn']:,}", f"{c['fp']:,}"],
                            ["really anomalous", f"{c['fn']:,}", f"{c['tp']:,}"]]))

h, r = st.columns(2)
by_class = h.toggle("One histogram per class", key=K + "by_class")
# Plotly's buttons would sit over the titles on a phone; dragging still zooms, a double click zooms back out
h.plotly_chart(viz.score_histogram(scores, labels, normal, names_of, by_class, threshold), key=K + "hist",
               width="stretch", config={"displayModeBar": False})
fpr, tpr, _ = anomaly.roc_curve(scores, is_anomaly)
r.plotly_chart(viz.roc_figure(fpr, tpr, anomaly.auc(scores, is_anomaly), (c["false_alarm_rate"], c["recall"])),
               key=K + "roc", width="stretch", config={"displayModeBar": False})

per_class = anomaly.per_class_auc(scores, labels, normal)
st.markdown("**AUC per anomalous class** (normal test images against that class alone): " +
            " · ".join(f"{names_of[k]}: {v:.3f}" for k, v in per_class.items()))

# ------------------------------------------------------------------------------------------------ extremes
st.header("The most and the least anomalous test images")
order = np.argsort(scores)
most, least = order[::-1][:20].copy(), order[:20]   # copy: torch takes no negative strides
a, b = st.columns(2)
a.image(viz.grid(to_float(test_set.images[most]).numpy(), nrow=10, zoom=2),
        caption="highest scores: " + ", ".join(f"{names_of[labels[i]]} {scores[i]:.3f}" for i in most[:10]) + " …",
        alt=f"The {len(most)} test images this detector scores most anomalous, ten a row, highest score first.")
b.image(viz.grid(to_float(test_set.images[least]).numpy(), nrow=10, zoom=2),
        caption="lowest scores: " + ", ".join(f"{names_of[labels[i]]} {scores[i]:.3f}" for i in least[:10]) + " …",
        alt=f"The {len(least)} test images this detector scores least anomalous, ten a row, lowest score first.")

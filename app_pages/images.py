"""Your images: bring a zip (or, on one's own machine, a folder) of pictures, see them as the models read them,
train on them through the run service, and find the anomalies among them (aecore.labs.pictures).

The visitor's sets are theirs alone (ui.pictures: kept in their locker, saved under a folder of their own); a run
on a set is a run like any other (session.RUN_ID: the sidebar's badge follows it and its model joins the visitor's
models); the detector's results are kept in the session, per set."""
import streamlit as st

from aecore.engine import viz
from aecore.engine.data import IMAGES
from aecore.engine.images import ImageSetConfig, ImageSetError
from aecore.engine.models import ModelConfig
from aecore.engine.train import TrainConfig
from aecore.labs.picturerun import DetectConfig, Detection, detection_spec
from aecore.labs import pictureviews
from aecore.labs.pictures import DEFAULT_RECIPE, RECIPES
from aecore.runs import RunSpec
from ui import form, guide, panels, pictures, server, session

K = "images."
FAMILIES = ("conv", "deep", "shallow")


def family_changed() -> None:
    """The sizes as the new family takes them: a shallow model's one size is a number, a deep one's a list."""
    s = st.session_state
    s[K + "hidden"] = form.carry("hidden", s.get(K + "hidden"), s[K + "family"])

st.title("Your images")
guide.intro("images")
mine = pictures.shelf()

# ------------------------------------------------------------------------------------------------ bring pictures
with st.container(border=True):
    up = st.file_uploader("A .zip of pictures", type=["zip"], key=K + "upload",
                          help=f"Up to {pictures.limits().max_zip_bytes / 1e6:,.0f} MB and "
                               f"{pictures.limits().max_pictures:,} pictures")
    folder = "" if server.hosted() else st.text_input(
        "…or a folder on this server", key=K + "folder", placeholder="/path/to/pictures",
        help="A folder on the machine running AE Lab (offered only on a server of your own)")
    c1, c2, c3, c4 = st.columns([1, 1, 1, 1], vertical_alignment="bottom")
    side = c1.selectbox("Side", ["auto", 28, 32, 64], key=K + "side",
                        format_func=lambda s: "auto (from the pictures)" if s == "auto" else f"{s}×{s}")
    color = c2.selectbox("Colour", ["auto", "grey", "rgb"], key=K + "color",
                         format_func={"auto": "auto (from the pictures)", "grey": "grey", "rgb": "colour (RGB)"}.get)
    fit = c3.selectbox("Fit", ["letterbox", "crop"], key=K + "fit",
                       format_func={"letterbox": "letterbox (whole picture)", "crop": "crop (centre square)"}.get)
    read_folder = c4.button("Read the folder", key=K + "btn_folder", disabled=not folder.strip())
cfg = ImageSetConfig(side=None if side == "auto" else side, color=None if color == "auto" else color, fit=fit)
# An upload is read once per choice of side, colour and fit; a refusal is shown while that upload stays.
wanted = (up.file_id, cfg) if up is not None else None
if read_folder or (wanted is not None and st.session_state.get(K + "read") != wanted):
    st.session_state[K + "read"] = wanted
    st.session_state.pop(K + "refused", None)
    try:
        with st.spinner("Reading the pictures…"):
            ps = pictures.prepare(folder.strip() if read_folder else up.getvalue(), cfg)
    except ImageSetError as e:
        st.session_state[K + "refused"] = (wanted, str(e))
    else:
        st.session_state[K + "pick"] = ps.key
refused = st.session_state.get(K + "refused")
if refused and refused[0] == wanted:
    st.error(f"**These pictures were not used.** {refused[1]}", icon=":material/block:")

if not mine.sets:
    st.info("No pictures yet: upload a .zip above.")
    st.stop()
if st.session_state.get(K + "pick") not in mine.sets:
    st.session_state[K + "pick"] = mine.current if mine.current in mine.sets else next(reversed(mine.sets))
p1, p2 = st.columns([4, 1], vertical_alignment="bottom")
key = p1.selectbox("Picture set", list(mine.sets), key=K + "pick", format_func=lambda k: mine.sets[k].name)
mine.current = key
if p2.button("Remove this set", icon=":material/delete:", key=K + "btn_remove"):
    if mine.remove(key, pictures.in_use()):
        st.rerun()
    st.warning("Your run trains on this set: it stays until the run ends.", icon=":material/hourglass_top:")
ps = mine.sets[key]
im = ps.images

# ------------------------------------------------------------------------------------------------ preview
st.header("Your pictures")
pictures.preview(ps)

# ------------------------------------------------------------------------------------------------ train
st.header("Train on them")
run = session.linked_run()   # as on the Train page: the run in the URL (a reload, another tab) or this session's
busy = run is not None and run.active
good = ps.good_class
s = st.session_state
s.setdefault(K + "family", "conv")
for name in ("hidden", "channels", "epochs"):
    default = {"hidden": ModelConfig().hidden, "channels": ModelConfig().channels, "epochs": TrainConfig().epochs}
    s.setdefault(K + name, form.widget_value(name, default[name], s[K + "family"]))
f1, f2, f3 = st.columns(3)
family = form.draw("family", K, s[K + "family"], where=f1, options=FAMILIES, on_change=family_changed)
form.draw("channels" if family == "conv" else "hidden", K, family, where=f2)
form.draw("epochs", K, family, where=f3)
good_only = good is not None and st.checkbox(f"Train on the {im.class_names[good]} pictures only", value=True,
                                              key=K + "good_only",
                                              help="A detector learns what normal looks like from normal pictures")
try:
    model_cfg = ModelConfig(family=family, side=im.config.side, color=im.config.color,
                            **{n: form.config_value(n, s[K + n]) for n in (("channels",) if family == "conv"
                                                                          else ("hidden",))})
    train_cfg = TrainConfig(epochs=int(s[K + "epochs"]))
except ValueError as e:
    st.error(f"**Invalid combination.** {e}", icon=":material/warning:")
    model_cfg = None
if st.button("Train", icon=":material/play_arrow:", type="primary", disabled=busy or model_cfg is None,
             key=K + "btn_start"):
    data_cfg = ps.data_config(good_only)
    spec = RunSpec(name=f"{family} on {im.source_name}", model=model_cfg, data=data_cfg, train=train_cfg)
    run_id = panels.submit(lambda: server.run_registry().submit(spec, ps.data(data_cfg), session.visitor()))
    if run_id:
        s[session.RUN_ID] = run_id
        st.query_params["run"] = run_id
        st.rerun()
if busy:
    st.caption("One run at a time: this one ends first (the Train page can pause or stop it).")


@st.fragment(run_every={"running": 0.5, "queued": 2.0}.get(run.state if run else None))
def progress():
    r = session.current_run()
    if r is None or getattr(r.spec.data, "dataset", None) != IMAGES:
        return
    panels.run_progress(r)
    if r.active:
        session.watch(r.id)
    elif run is not None and run.active:
        st.rerun()     # it ended: the whole app collects its model
    elif r.snapshot.error:
        st.error(f"**The run failed.** {r.snapshot.error}", icon=":material/error:")


progress()
if run is not None and not run.active and run.model is not None and run.spec.data.images == str(ps.path):
    pictures.reconstructions(ps, run.model, run.spec.name)

# ------------------------------------------------------------------------------------------------ anomalies
st.header("Find the anomalies")
if not ps.detectable:
    st.info("Anomaly detection needs a **good** class (the MVTec AD layout, or a folder named good) with good "
            "and other pictures among the test pictures; this set has none.")
    st.stop()
registry = server.run_registry()
detections = mine.detections     # kept with the visitor's sets: a reload or another tab finds the run again
drun = registry.view(detections[key]) if key in detections else None
detecting = drun is not None and drun.active
a1, a2, a3 = st.columns([3, 1, 1], vertical_alignment="bottom")
recipe = a1.selectbox("Recipe", list(RECIPES), index=list(RECIPES).index(DEFAULT_RECIPE), key=K + "recipe",
                      format_func=lambda r: RECIPES[r].title)
most = registry.config.limits.max_epochs or 1000       # the hosted profile's limit, as for runs
epochs = a2.number_input("Epochs", 1, most, min(RECIPES[recipe].train.epochs, most), key=f"{K}detect_epochs.{recipe}")
if a3.button("Find anomalies", icon=":material/troubleshoot:", type="primary", key=K + "btn_detect",
             disabled=detecting):
    spec = detection_spec(DetectConfig(images=str(ps.path), recipe=recipe, epochs=int(epochs),
                                       good_class=int(good)), im.source_name)
    new_id = panels.submit(lambda: registry.submit(spec, ps.data(spec.data), session.visitor()))
    if new_id:
        detections[key] = new_id
        st.rerun()          # the button and the polling follow the new run
st.caption(RECIPES[recipe].note + " The recipe and PCA train on the good pictures through the server's run "
           "service, as any training does.")


@st.fragment(run_every={"running": 0.5, "queued": 2.0}.get(drun.state if drun else None))
def detection_progress() -> None:
    r = registry.view(detections[key]) if key in detections else None
    if r is None:
        return
    session.watch(r.id)
    if r.active or r.state != "finished":
        panels.run_progress(r, epochs=r.spec.config.epochs)
    if detecting and not r.active:
        st.rerun()          # it ended: the whole page draws what it found
    if r.snapshot.error:
        st.error(f"**No detector.** {r.snapshot.error}", icon=":material/block:")


detection_progress()
if drun is not None and drun.state == "finished" and drun.snapshot.result \
        and mine.found.get(key, (None,))[0] != drun.id:
    mine.found[key] = (drun.id, Detection.from_result(drun.snapshot.result))
if key not in mine.found:
    st.stop()
det = mine.found[key][1]
f, names = det.figures, im.class_names
st.markdown(f"**{f['recipe']}**, {f['epochs']} epochs, trained on {f['counts']['train']} good pictures "
            f"({f['counts']['held_out']} held out for the threshold) in {f['train_seconds']:.0f} s; "
            f"{f['counts']['test']} test pictures.")
m1, m2, m3, m4 = st.columns(4)
m1.metric("image AUROC, recipe", f"{f['image_auroc']:.3f}")
m2.metric("image AUROC, PCA", f"{f['pca_image_auroc']:.3f}", help=f"{f['pca_components']} components")
if f["pixel_auroc"] is not None:
    m3.metric("pixel AUROC, recipe", f"{f['pixel_auroc']:.3f}", help="Error maps against the defect masks")
    m4.metric("pixel AUROC, PCA", f"{f['pca_pixel_auroc']:.3f}")
st.markdown(panels.markdown_table(["defect class", "recipe's AUROC", "PCA's AUROC"], [
    [name, f"{v:.3f}", f"{f['pca_per_defect_auroc'][name]:.3f}"] for name, v in f["per_defect_auroc"].items()]))
st.plotly_chart(pictureviews.roc_figure(det, ps.good_class), key=K + "roc", width="stretch",
                config={"displayModeBar": False})
st.markdown(pictures.threshold_table(det))
for title, which in (("The most anomalous test pictures", "most_anomalous"),
                     ("The least typical good pictures", "least_typical_good")):
    shown = f["gallery"][which]
    if shown:
        st.markdown(f"**{title}**, their error maps over them")
        st.image(pictureviews.overlays(im.data.test, det, shown),
                 caption=[f"{names[det.labels[i]]} · {viz.number_text(det.scores[i])}" for i in shown],
                 alt=[f"A {names[det.labels[i]]} test picture, its reconstruction error drawn over it in a "
                      f"black-red-yellow-white heat scale" for i in shown])

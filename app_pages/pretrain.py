"""Few labels: how much an autoencoder pretrained on unlabelled images helps a classifier that sees only N labelled
ones. The page shows the measured table that `python -m aecore.labs.pretrain --out models/pretrain/results.json` wrote."""
import pandas as pd
import streamlit as st

from aecore.labs import pretrain
from aecore.engine import viz
from aecore.engine.data import DataError, to_float
from ui import caches, guide

K = "pretrain."

st.title("Pretraining with few labels")
guide.intro("pretrain")

try:
    results = pretrain.load_results(pretrain.RESULTS)
except pretrain.ResultsError as e:
    results = None
    st.warning(f"**No measured table to show.** {e}", icon=":material/table_chart:")

if results is not None:
    rows, cfg = results["rows"], results["config"]
    st.header("Test accuracy, pretrained encoder vs random initialisation")
    st.dataframe(pd.DataFrame({
        "labelled images (N)": [f"{r['labels']:,}" for r in rows],
        "pretrained": [f"{100 * r['pretrained_mean']:.1f} ± {100 * r['pretrained_std']:.1f} %" for r in rows],
        "random init": [f"{100 * r['random_mean']:.1f} ± {100 * r['random_std']:.1f} %" for r in rows],
        "gain (points)": [round(100 * (r["pretrained_mean"] - r["random_mean"]), 1) for r in rows],
        "seeds": [r.get("seeds", "") for r in rows]}), hide_index=True, width="content")
    first, last = rows[0], rows[-1]
    st.markdown(f"With **{first['labels']:,}** labels the pretrained encoder reaches "
                f"**{first['pretrained_mean']:.1%}** against **{first['random_mean']:.1%}** from random weights "
                f"({100 * (first['pretrained_mean'] - first['random_mean']):+.1f} points); with {last['labels']:,} "
                f"labels the difference is {100 * (last['pretrained_mean'] - last['random_mean']):+.1f} points.")
    st.plotly_chart(pretrain.accuracy_figure(rows), key=K + "chart", width="stretch")
    when = str(results.get("date", "?")).replace("T", " ")
    st.caption(
        f"Mean ± standard deviation over {rows[0].get('seeds', '?')} draws of the labelled images (N/10 per digit; "
        f"N = all training images takes every one). Both arms: encoder "
        f"784-{'-'.join(map(str, cfg.hidden))}{' with batch norm' if cfg.batch_norm else ''} plus a linear softmax "
        f"head, {cfg.head_steps} steps on the head alone then {cfg.steps} Adam steps (lr {cfg.lr:g}, batches of up "
        f"to {cfg.batch}, {f'shifts of up to {cfg.shift} px' if cfg.shift else 'no augmentation'}); they differ "
        f"only in where the encoder starts. The autoencoder: {cfg.ae_epochs} epochs of {cfg.noise} noise "
        f"{cfg.noise_level:g}"
        f"{f' on turned, scaled, moved and bent inputs (deform {cfg.deform:g})' if cfg.deform else ''}"
        f", {results.get('train_images', 0):,} unlabelled images. Measured {when} on "
        f"{results.get('device', '?')} in {results.get('seconds', 0):,.0f} s (torch {results.get('torch', '?')}). "
        f"Reproduce: `{results.get('command', 'python -m aecore.labs.pretrain')}`. References at 100 labels: "
        + "; ".join(f"{name} {acc:.1%}" for name, acc in pretrain.REFERENCES) + ".")

# ------------------------------------------------------------------------------------------------ the labelled images
st.header("The labelled images of one draw, N = 100")
seed = st.number_input("Draw (seed)", min_value=0, max_value=99, value=0, step=1, key=K + "seed")
try:
    train = caches.raw_split("mnist", "train")
    picked = pretrain.draw_labelled(train.labels, 100, int(seed))
except (DataError, ValueError) as e:
    st.info(f"Needs the MNIST training images to show the draw: {e}", icon=":material/folder_off:")
else:
    st.image(viz.grid(to_float(train.images[picked]), nrow=10),
             caption=f"The 100 labelled images of draw {seed}: ten of each digit, one row per digit (0 at the top). "
                     "The classifiers see these and no other labels.",
             alt="100 handwritten MNIST training digits in ten rows of ten: the 0s in the top row, then the 1s, "
                 "down to the 9s.")

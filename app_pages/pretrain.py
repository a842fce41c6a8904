"""Few labels: how much an autoencoder pretrained on unlabelled images helps a classifier that sees only N labelled
ones. The page shows the measured table that `python -m aecore.labs.pretrain --out models/pretrain/results.json` wrote,
and lets a visitor run the comparison at one N here, as a run of the server's run service (it waits in the queue
when the server is full, can be stopped, and is found again after a reload: its id is a remembered session value)."""
from dataclasses import replace

import pandas as pd
import streamlit as st

from aecore.labs import pretrain
from aecore.engine import viz
from aecore.engine.data import DataError, to_float
from ui import caches, guide, panels, server, session

K = "pretrain."
RUN = K + "run"        # the id of the comparison this session shows (ui.session.REMEMBERED: a reload finds it)
EMPTY = "—"

st.title("Pretraining with few labels")
guide.intro("pretrain")
registry = server.run_registry()
me = session.visitor()


def percent(mean: float, std: float, seeds: int) -> str:
    """'87.0 ± 2.0 %'; one seed has no spread to show."""
    return f"{100 * mean:.1f} ± {100 * std:.1f} %" if seeds > 1 else f"{100 * mean:.1f} %"


def table_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame({
        "labelled images (N)": [f"{r['labels']:,}" for r in rows],
        "pretrained": [percent(r["pretrained_mean"], r["pretrained_std"], r.get("seeds", 2)) for r in rows],
        "random init": [percent(r["random_mean"], r["random_std"], r.get("seeds", 2)) for r in rows],
        "gain (points)": [round(100 * (r["pretrained_mean"] - r["random_mean"]), 1) for r in rows],
        "seeds": [r.get("seeds", "") for r in rows]})


try:
    results = pretrain.load_results(pretrain.RESULTS)
except pretrain.ResultsError as e:
    results = None
    st.warning(f"**No measured table to show.** {e}", icon=":material/table_chart:")

if results is not None:
    rows, cfg = results["rows"], results["config"]
    st.header("Test accuracy, pretrained encoder vs random initialisation")
    st.dataframe(table_frame(rows), hide_index=True, width="content")
    first, last = rows[0], rows[-1]
    st.markdown(f"With **{first['labels']:,}** labels the pretrained encoder reaches "
                f"**{first['pretrained_mean']:.1%}** against **{first['random_mean']:.1%}** from random weights "
                f"({100 * (first['pretrained_mean'] - first['random_mean']):+.1f} points); with {last['labels']:,} "
                f"labels the difference is {100 * (last['pretrained_mean'] - last['random_mean']):+.1f} points.")
    st.plotly_chart(pretrain.accuracy_figure(rows), key=K + "chart", width="stretch",
                    config={"displayModeBar": False})   # its buttons would cover the title on a phone
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

# ------------------------------------------------------------------------------------------------ the visitor's run
st.header("Run the comparison here")
run_id = st.session_state.get(RUN)
run = registry.view(run_id) if run_id else None
if run is None:
    st.session_state.pop(RUN, None)     # never started, or dropped by the server after its retention time
else:
    session.watch(run.id)
busy = run is not None and run.active

with st.container(horizontal=True):
    per_class = st.number_input("Labels per class", min_value=1, max_value=pretrain.MAX_PER_CLASS, value=10,
                                step=1, key=K + "per_class", help="N = 10 × this: the labelled images both arms see")
    seeds = st.slider("Seeds", min_value=1, max_value=pretrain.MAX_SEEDS, value=1, key=K + "seeds",
                      help="draws of the labelled images; each trains both arms once")
    network = st.selectbox("Network", list(pretrain.NETWORKS), key=K + "hidden",
                           help="the encoder both arms share (the autoencoder's first half)")
config = pretrain.ComparisonConfig(int(per_class), int(seeds),
                                   replace(pretrain.PAGE, hidden=pretrain.NETWORKS[network]))
page = config.pretrain
TABLE_EPOCHS = (results["config"] if results else pretrain.PretrainConfig()).ae_epochs
st.caption(f"**About {pretrain.estimate_s(config):,.0f} s here** (measured on a busy two-core CPU), about "
           f"{pretrain.estimate_s(config, cached=True):,.0f} s once this server has that autoencoder from an earlier "
           f"run. To keep it short the autoencoder trains {page.ae_epochs} epochs, not the table's {TABLE_EPOCHS}, "
           f"so expect a smaller gain than the table's; with {seeds} seed{'s' if seeds > 1 else ''} the spread is "
           f"{'not measured' if seeds == 1 else 'a rough one'}. Both arms train as in the table.")

with st.container(horizontal=True, vertical_alignment="center"):
    start = st.button("Run the comparison", icon=":material/play_arrow:", type="primary", disabled=busy,
                      key=K + "btn_run")
    stop = st.button("Stop", icon=":material/stop:", disabled=not busy, key=K + "btn_stop")
if start:
    spec = pretrain.comparison_spec(config)
    new_id = panels.submit(lambda: registry.submit(spec, caches.data_for(spec.data), me))
    if new_id:
        st.session_state[RUN] = new_id
        st.rerun()          # the buttons and the polling follow the new run
if stop:
    registry.stop(run.id)
    st.rerun()

PHASE = {"autoencoder": "training the autoencoder (labels unused)", "pretrained": "fine-tuning the pretrained arm",
         "random": "fine-tuning the random-init arm"}


def progress_text(run) -> str:
    p = run.snapshot.last
    if p is None:
        return f"{run.state} · preparing…"
    if not run.active:
        return f"{run.state} · {p.step:,} of {p.total_steps:,} steps · {p.elapsed:,.0f} s"
    where = PHASE[p.phase] + (f" · seed {p.seed + 1} of {run.spec.config.seeds}" if p.seed is not None else "")
    eta = run.snapshot.eta_s
    return (f"{run.state} · {where} · step {p.phase_step:,}/{p.phase_steps:,} · {p.elapsed:,.0f} s"
            + (f" · ETA {eta:,.0f} s" if eta is not None and run.active else ""))


def show_result(run) -> None:
    result = run.snapshot.result
    mine, ae = result["row"], result["autoencoder"]
    n, cfg = mine["labels"], run.spec.config
    ours = st.columns(2)
    with ours[0]:
        st.markdown("**Your run**")
        st.dataframe(table_frame([mine]), hide_index=True, width="content")
    with ours[1]:
        stored = [r for r in (results or {"rows": []})["rows"] if r["labels"] == n]
        st.markdown("**The measured table**")
        if stored:
            st.dataframe(table_frame(stored), hide_index=True, width="content")
        else:
            st.caption(f"The measured table has no row for N = {n:,}.")
    gain = 100 * (mine["pretrained_mean"] - mine["random_mean"])
    source = ("trained in this run" if ae["source"] == "trained" else "from this server's cache (an earlier run)")
    st.markdown(f"With **{n:,}** labels your pretrained encoder reached **{mine['pretrained_mean']:.1%}** against "
                f"**{mine['random_mean']:.1%}** from random weights ({gain:+.1f} points), over {mine['seeds']} "
                f"seed{'s' if mine['seeds'] > 1 else ''}.")
    st.caption(f"Mean ± standard deviation over the seeds (one seed: no spread). Network {cfg.network}; the "
               f"autoencoder trained {cfg.pretrain.ae_epochs} epochs ({source}; the table's trained "
               f"{TABLE_EPOCHS}), so its gain is expected to be smaller. Run took "
               f"{result['seconds']:,.0f} s on {result.get('device', 'cpu')}, {result['train_images']:,} "
               f"unlabelled images, {result['test_images']:,} test images.")


state = run.state if run else None


# A running comparison redraws its progress twice a second; a queued one only its place in line, every 2 s.
@st.fragment(run_every={"running": 0.5, "paused": 2.0, "queued": 2.0}.get(state))
def comparison_view() -> None:
    run = registry.view(st.session_state[RUN]) if st.session_state.get(RUN) else None
    if run is None:
        st.info("No comparison yet in this session: pick the settings, then press **Run the comparison**.")
        return
    session.watch(run.id)
    if state == "queued" and run.state != "queued":
        st.rerun()          # it left the queue: the whole page, so the poll rate follows
    if run.state == "queued":
        st.progress(0.0, text=panels.queue_text(run))
        st.caption("This server trains a limited number of runs at once; yours starts by itself when a slot frees. "
                   f"Keep this tab open (any page): a run nobody watches is stopped after "
                   f"{registry.config.grace_s:g} s. **Stop** takes it out of the queue.")
        return
    st.progress(run.snapshot.progress, text=progress_text(run))
    p = run.snapshot.last
    if p is not None and p.accuracies:
        st.dataframe(pd.DataFrame([{"arm": arm, "seed": seed + 1, "test accuracy": f"{acc:.1%}"}
                                   for arm, seed, acc in p.accuracies]), hide_index=True, width="content")
    if run.state == "failed":
        st.error(f"**The comparison failed.** {run.snapshot.error}", icon=":material/error:")
    elif run.state == "stopped":
        reason = f" ({run.stop_reason})" if run.stop_reason else ""
        st.warning(f"**Stopped**{reason}: no table; the accuracies above are those of the arms that finished.",
                   icon=":material/stop_circle:")
    elif run.snapshot.result:
        show_result(run)
    if busy and not run.active:
        st.rerun()          # it ended: the whole page, so the buttons and the polling follow


comparison_view()

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

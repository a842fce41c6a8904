"""Train: pick a tutorial preset or set every choice by hand, then start, watch, pause and stop a run.

The run lives on the server (aecore.runs); this page holds its id, in the session and in the URL (`?run=<id>`),
so a reload or another tab with the same link shows the same run.
"""
from dataclasses import replace

import numpy as np
import streamlit as st

from aecore.engine import checkpoint, links, presets, viz
from aecore.engine.data import DATASETS, DataConfig
from aecore.engine.fields import FIELDS
from aecore.runs import RunSpec
from aecore.engine.models import ModelConfig, build, count_params, summary
from aecore.engine.train import TrainConfig, available_devices
from ui import caches, form, guide, panels, server, session

panels.readable_sliders()
CUSTOM = links.CUSTOM
K = "train."   # every session key of this page starts with this; a setting's widget is K + its field name
# Where each setting's widget goes (aecore.engine.fields has them all; a model family shows those it uses).
COLUMNS = {
    "Data": ("dataset", "val_fraction", "classes", "noise", "noise_level", "deform"),
    "Model": ("family", "channels", "hidden", "linear_code", "sparsity", "latent", "beta", "kl_warmup", "activation",
              "output", "loss", "init"),
    "Training": ("dropout", "dropout_where", "optimizer", "adam_eps", "lr", "batch_size", "epochs", "lr_milestones",
                 "lr_gamma", "seed", "binarize", "device"),
}


def form_values(v: dict) -> dict:
    """Widget values (by key) that show a configuration (aecore.engine.links.values: parameter name -> value)."""
    return form.widget_values(v, K)


def family_changed() -> None:
    """Carry the sizes over to the new family: a shallow model's one size is a number, the others' a list as text."""
    s = st.session_state
    kept = s.get(K + "saved", {})          # a widget not drawn on the last run is only there
    for name in FIELDS:
        key = K + name
        current = s.get(key, kept.get(key))
        value = form.carry(name, current, s[K + "family"])
        if value is not None and value != current:
            s[key] = value


def apply_preset() -> None:
    name = st.session_state[K + "preset"]
    if name != CUSTOM:
        st.session_state.update(form_values(links.preset_values(name)))
        st.session_state.pop(K + "link_problems", None)


def link_url(preset_name: str, vals: dict) -> str:
    """The full link to a configuration; the app's address is unknown outside a browser, then only the query."""
    base = st.context.url or ""
    return f"{base}?{links.query_string(preset_name, vals)}"


def matches(p: presets.Preset, model: ModelConfig, data: DataConfig, train: TrainConfig) -> bool:
    """True when the form holds exactly preset `p` (seed and device aside), so its figure applies."""
    return model == p.model and data == p.data and replace(train, seed=p.train.seed, device=p.train.device) == p.train


def read_form() -> tuple[ModelConfig, DataConfig, TrainConfig]:
    return form.read(st.session_state, K)


@st.cache_data(max_entries=64, show_spinner=False)
def model_summary(cfg: ModelConfig) -> tuple[list[dict], int]:
    model = build(cfg, seed=0)
    rows = [{"layer": f"{r['name']} {r['layer']}", "output shape": "(B, " + ", ".join(map(str, r["output_shape"])) + ")",
             "parameters": f"{r['params']:,}"} for r in summary(model)]
    return rows, count_params(model)


# ------------------------------------------------------------------------------------------------ form
# Widget state is dropped while another page shows; keep a copy so the form survives page switches.
saved = st.session_state.setdefault(K + "saved", {})
for key, value in saved.items():
    st.session_state.setdefault(key, value)
if K + "preset" not in st.session_state:   # a new session: the configuration in the link, else the default preset
    link = links.parse(st.query_params.to_dict(), ignore=("run",))
    st.session_state[K + "preset"] = link.preset
    st.session_state.update(form_values(link.values))
    if link.problems:
        st.session_state[K + "link_problems"] = (link.problems, form_values(link.values))

st.title("Train an autoencoder")
guide.intro("train")
names = [CUSTOM, *presets.PRESETS]
p1, p2, p3 = st.columns([4, 1, 1], vertical_alignment="bottom")
p1.selectbox("Tutorial preset", names, key=K + "preset", on_change=apply_preset,
             format_func=lambda n: "Custom (set everything by hand)" if n == CUSTOM else presets.get(n).title)
p2.button("Reset form", icon=":material/restart_alt:", on_click=apply_preset, key=K + "btn_reset", help="Put the preset's values back in the form",
          disabled=st.session_state[K + "preset"] == CUSTOM)
selected = None if st.session_state[K + "preset"] == CUSTOM else presets.get(st.session_state[K + "preset"])
if K + "link_problems" in st.session_state:    # shown until the form changes
    problems, applied = st.session_state[K + "link_problems"]
    if all(st.session_state.get(k) == v for k, v in applied.items()):
        st.warning("**Part of this link could not be used:** " + "; ".join(problems) + ". The rest of the link "
                   "is in the form.", icon=":material/link_off:")
    else:
        del st.session_state[K + "link_problems"]

# Values the form needs before its widgets are drawn (the configs are read from them just below).
datasets = caches.available_datasets() or list(DATASETS)
if st.session_state.get(K + "dataset") not in datasets:
    if selected:
        st.warning(f"This preset trains on {st.session_state.get(K + 'dataset')}, whose files are not available "
                   f"here; the form now uses {datasets[0]}, so the tutorial's figure does not apply.")
    st.session_state[K + "dataset"] = datasets[0]
devices = available_devices()
if st.session_state.get(K + "device") not in devices:
    st.session_state[K + "device"] = "auto"

config_error, preset = None, None
try:
    model_cfg, data_cfg, train_cfg = read_form()
except ValueError as e:
    config_error = str(e)
else:
    preset = selected if selected and matches(selected, model_cfg, data_cfg, train_cfg) else None
    # The URL holds the form: the preset's name and only what differs from it (a reload or a shared link keeps it).
    form_values_now = links.values(model_cfg, data_cfg, train_cfg)
    form_link = links.query(st.session_state[K + "preset"], form_values_now)
    for key in [k for k in st.query_params if k not in form_link and k != "run"]:
        del st.query_params[key]
    st.query_params.update({k: v for k, v in form_link.items() if st.query_params.get(k) != v})
if selected:
    note = "" if preset else "  \n✎ The form differs from this preset, so the run will be a custom one " \
                             "(no tutorial figure to compare with); **Reset form** restores it."
    st.caption(f"{selected.tutorial}  \n**{selected.figure_label or 'figure'}** — {selected.figure_text()}{note}")


with p3.popover("Copy link", icon=":material/link:", disabled=config_error is not None):
    if not config_error:
        st.code(link_url(st.session_state[K + "preset"], form_values_now), language=None, wrap_lines=True)
    st.caption("The copy icon on the right copies this form as a link: the preset plus what differs from it. "
               "Opening it fills the form the same way; it starts nothing.")

registry = server.run_registry()
me = session.visitor()
run = session.linked_run()   # from the URL (a reload, another tab) or this session
busy = run is not None and run.active
if not busy and session.collect_finished_run():
    st.rerun()   # the run ended after app.py looked: rerun so the sidebar shows its model as the active one

if st.session_state[K + "dataset"] not in caches.available_datasets():
    panels.data_missing(st.session_state[K + "dataset"])

left, right = st.columns([3, 2], gap="large")
with left:
    family = st.session_state[K + "family"]
    options = {"dataset": dict(options=datasets), "family": dict(on_change=family_changed),
               "device": dict(options=devices, format_func=lambda d: f"auto ({session.describe_device()})"
                              if d == "auto" else d)}
    for column, (title, names) in zip(st.columns(3), COLUMNS.items()):
        with column:
            st.markdown(f"**{title}**")
            for name in names:
                if family in FIELDS[name].families:
                    form.draw(name, K, family, **options.get(name, {}))

# Buttons, the download button and the uploader cannot be given a value, so they are not kept.
saved.update({k: v for k, v in st.session_state.items() if k.startswith(K) and k not in (K + "saved",)
              and not k.startswith((K + "btn", K + "upload", K + "download", K + "show_run"))})

with right:
    st.markdown("**Model summary**")
    if config_error:
        st.error(f"**Invalid combination.** {config_error}", icon=":material/warning:")
    else:
        rows, total = model_summary(model_cfg)
        st.dataframe(rows, hide_index=True, width="stretch", height=35 * (len(rows) + 1) + 3)
        st.markdown(f"Total parameters: **{total:,}**")
    with st.expander("Load a checkpoint (.safetensors)"):
        up = st.file_uploader("AE Lab checkpoint", type=["safetensors"], key=K + "upload")
        if up is not None and st.session_state.get(K + "upload_id") != up.file_id:
            try:
                model, meta = checkpoint.load(up.getvalue())
            except checkpoint.CheckpointError as e:
                st.error(f"**Cannot load {up.name}.** {e}", icon=":material/block:")
            else:
                st.session_state[K + "upload_id"] = up.file_id
                session.add_session_model(up.name.rsplit(".", 1)[0], model, meta, f"uploaded file {up.name}")
                st.rerun()   # the sidebar now shows the uploaded model as the active one

# ------------------------------------------------------------------------------------------------ controls
b1, b2, b3, b4, _ = st.columns([1, 1, 1, 1, 4])
if b1.button("Start", icon=":material/play_arrow:", type="primary", disabled=busy or config_error is not None,
             key=K + "btn_start"):
    spec = RunSpec(name=preset.name if preset else "custom", model=model_cfg, data=data_cfg, train=train_cfg,
                   preset=preset.name if preset else None)
    run_id = panels.submit(lambda: registry.submit(spec, caches.data_for(data_cfg), me))
    if run_id:
        st.session_state[session.RUN_ID] = run_id
        st.query_params["run"] = run_id
        st.rerun()   # draw the buttons for the new run (they were drawn above for the idle form)
state = run.state if run else None
if b2.button("Pause", icon=":material/pause:", disabled=state != "running", key=K + "btn_pause"):
    registry.pause(run.id)
    st.rerun()   # the buttons above were drawn for the old state; the live view alone would not redraw them
if b3.button("Resume", icon=":material/resume:", disabled=state != "paused", key=K + "btn_resume"):
    registry.resume(run.id)
    st.rerun()
if b4.button("Stop", icon=":material/stop:", disabled=not busy, key=K + "btn_stop"):
    registry.stop(run.id)
    st.rerun()


# ------------------------------------------------------------------------------------------------ live view
STATUS = {"queued": "queued", "running": "running", "paused": "paused", "finished": "finished",
          "stopped": "stopped", "failed": "failed", "ready": "starting"}


# A running run redraws its chart three times a second; a queued one only its place in line, every 2 s.
@st.fragment(run_every={"running": 0.3, "queued": 2.0}.get(state))
def live_view():
    run = session.current_run()
    if run is None:
        st.info("No run yet in this session. Pick a preset or set the form, then press **Start**.")
        return
    if state == "queued" and run.state != "queued":
        st.rerun()        # it left the queue: the whole page, so the buttons and the poll rate follow
    snap, spec, m = run.snapshot, run.spec, run.snapshot.last
    pre = presets.PRESETS.get(spec.preset or "")
    status = STATUS[run.state]
    if run.state == "queued":
        st.progress(0.0, text=panels.queue_text(run))
        where = ("The Ray cluster trains as many runs at once as it has free CPUs and GPUs; yours starts by "
                 "itself when they free" if registry.cluster_resources() is not None else
                 "This server trains a limited number of runs at once; yours starts by itself when a slot frees")
        st.caption(f"{where}. Keep this tab open (any page): a run nobody watches is stopped after "
                   f"{registry.config.grace_s:g} s. **Stop** takes it out of the queue.")
        return            # nothing trained yet: no chart to draw
    if m:
        eta = f"{snap.eta_s:,.0f} s" if snap.eta_s is not None else "…"
        st.progress(snap.progress, text=f"{status} · epoch {m.epoch}/{spec.train.epochs} · step {m.step:,}/"
                                        f"{m.total_steps:,} · {m.samples / max(m.elapsed, 1e-9):,.0f} samples/s · ETA {eta} · {snap.device}")
    else:
        st.progress(0.0, text=f"{status} · preparing on {snap.device}…")
    if run.stop_reason:
        st.caption(f"Stopped by the server: {run.stop_reason}.")
    steps = [(r.step, r.train_loss) for r in snap.records]
    epochs = [(r.epoch, r.val_loss) for r in snap.records if r.epoch_end and r.val_loss is not None]
    per_epoch = m.total_steps / spec.train.epochs if m else 1
    fig = viz.loss_figure(steps, epochs, per_epoch, reference=pre.figure if pre else None)
    chart, recon = st.columns([3, 2])
    chart.plotly_chart(fig, key=K + "chart", width="stretch")
    if m and m.terms:      # a VAE's reconstruction and KL, a sparse model's code penalty: each on its own scale
        chart.plotly_chart(viz.terms_figure([(r.step, r.terms) for r in snap.records], per_epoch),
                           key=K + "terms", width="stretch")
    with recon:
        if snap.timeline:
            epoch, frame = snap.timeline[-1]
            st.image(viz.grid(np.concatenate([snap.originals, frame]), nrow=8, zoom=3),
                     caption=f"top: fixed test digits · bottom: reconstructions after epoch {epoch}",
                     alt=f"Eight test digits in the top row and, below each, the model's reconstruction of it after "
                         f"epoch {epoch}.")
        else:
            st.image(viz.grid(snap.originals, nrow=8, zoom=3),
                     caption="fixed test digits (reconstructions after epoch 1)",
                     alt="Eight test digits in a row; the model's reconstructions join them after the first epoch.")
    if run.state == "failed":
        st.error(f"**Training failed.** {snap.error}", icon=":material/error:")
        if run.model is not None:
            st.caption("The weights from the last finite loss are kept: they are now the active model, so the "
                       "other pages show what the run had learned before it diverged.")
    if snap.result:
        figs = snap.result["figures"]
        shown = [(label, figs[key]) for key, label in [("train_loss", "final train loss"),
                                                       ("val_loss", "validation loss"), ("test_loss", "test loss")]
                 if figs.get(key) is not None]
        for col, (label, value) in zip(st.columns(4), shown):
            col.metric(label, f"{value:.4f}")
        if pre:
            st.markdown(f"**{pre.figure_label}** — {pre.figure_text(figs.get(pre.figure_metric))}")
        st.download_button("Download checkpoint (.safetensors)", icon=":material/download:", data=run.checkpoint_bytes,
                           file_name=f"{spec.name}.safetensors", mime="application/octet-stream",
                           key=K + "download")
        st.markdown("**This run's configuration as a link** (opening it fills the form; it starts nothing)")
        st.code(link_url(spec.preset or CUSTOM, links.values(spec.model, spec.data, spec.train)), language=None,
                wrap_lines=True)
    if not run.active and busy:
        st.rerun()   # the whole app: app.py adds the run to the models, the buttons and the poll rate follow


live_view()

mine = registry.runs_of(me)
if len(mine) > 1:
    with st.expander(f"Your runs on this server ({len(mine)})"):
        st.caption("Only runs started in this browser session, or opened from their link, are listed. Ended runs "
                   f"are kept {registry.config.retention_s / 60:g} minutes.")
        labels = {r.id: f"{r.spec.name} · {STATUS[r.state]} · {r.snapshot.progress:.0%}" for r in mine}
        st.session_state[K + "show_run"] = run.id if run else mine[-1].id
        st.radio("Show", list(labels), format_func=labels.get, key=K + "show_run",
                 on_change=lambda: st.session_state.update({session.RUN_ID: st.session_state[K + "show_run"]}))

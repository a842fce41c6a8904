"""Train: pick a tutorial preset or set every choice by hand, then start, watch, pause and stop a run.

The run lives on the server (aecore.runs); this page holds its id, in the session and in the URL (`?run=<id>`),
so a reload or another tab with the same link shows the same run. The form shows the settings of the run the page
shows (its RunSpec: what trained), unless the visitor has changed the form since; a preset edited in a few settings
stays that preset (aecore.engine.links names the run, aecore.engine.presets says whether its figure applies).

Layout: the preset picker, the Start/Pause/Resume/Stop bar and the live chart come first, so that controls and result
share the first screen on a desktop and on a phone; the settings follow in a panel, open until a run exists.
"""
import re

import numpy as np
import streamlit as st

from aecore import trace
from aecore.engine import checkpoint, links, presets, viz
from aecore.engine.data import DATASETS, DataConfig
from aecore.engine.fields import FIELDS
from aecore.runs import RunSpec, TaskSpec
from aecore.engine.models import ModelConfig, build, count_params, summary
from aecore.engine.train import TrainConfig, available_devices
from ui import caches, classroom as classes, form, guide, panels, server, session, steer
from ui import takehome

panels.readable_sliders()
panels.table_toolbar_room()   # the model summary's, on a touch screen
CUSTOM = links.CUSTOM
K = "train."   # every session key of this page starts with this; a setting's widget is K + its field name
SETTINGS = K + "settings"    # the settings panel's open state (a widget: dropped while another page shows)
FORM_RUN = K + "form_run"    # the run whose settings the form held when it last showed a run (None: no run)
# Where each setting's widget goes (aecore.engine.fields has them all; a model family shows those it uses).
COLUMNS = {
    "Data": ("dataset", "val_fraction", "classes", "noise", "noise_level", "deform"),
    "Model": ("family", "channels", "hidden", "linear_code", "sparsity", "latent", "beta", "kl_warmup", "activation",
              "output", "loss", "init"),
    "Training": ("dropout", "dropout_where", "optimizer", "adam_eps", "lr", "batch_size", "epochs", "lr_milestones",
                 "lr_gamma", "seed", "binarize", "device", "changes"),
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


def show_run_settings(spec: RunSpec) -> None:
    """Fill the form with a run's settings (before its widgets are drawn)."""
    preset, vals = links.of_run(spec)
    st.session_state[K + "preset"] = preset
    st.session_state.update(form_values(vals))
    st.session_state.pop(K + "link_problems", None)


def holds(spec: RunSpec) -> bool:
    """Whether the form holds exactly the settings of run spec `spec`."""
    return form.query(st.session_state, K) == links.query(*links.of_run(spec))


def link_url(preset_name: str, vals: dict, hidden=(), locked=()) -> str:
    """The full link to a configuration; the app's address is unknown outside a browser, then only the query."""
    base = st.context.url or ""
    return f"{base}?{links.query_string(preset_name, vals, hidden, locked)}"


def read_form() -> tuple[ModelConfig, DataConfig, TrainConfig]:
    return form.read(st.session_state, K)


def file_name(name: str) -> str:
    """A run's name as a file name: 'pytorch-784-200 · epochs 2' -> 'pytorch-784-200-epochs-2'."""
    return re.sub(r"[^\w.]+", "-", name).strip("-") or "run"


@st.cache_data(max_entries=64, show_spinner=False)
def model_summary(cfg: ModelConfig) -> tuple[list[dict], int]:
    model = build(cfg, seed=0)
    rows = [{"layer": f"{r['name']} {r['layer']}", "output shape": "(B, " + ", ".join(map(str, r["output_shape"])) + ")",
             "parameters": f"{r['params']:,}"} for r in summary(model)]
    return rows, count_params(model)


# ------------------------------------------------------------------------------------------------ the run shown
st.title("Train an autoencoder")
guide.intro("train")
registry = server.run_registry()
me = session.visitor()
run = session.linked_run()   # from the URL (a reload, another tab) or this session
classes.banner()             # training for a class: which, its challenge, the way out
busy = run is not None and run.active
if not busy and session.collect_finished_run():
    st.rerun()   # the run ended after app.py looked: rerun so the sidebar shows its model as the active one

# ------------------------------------------------------------------------------------------------ the form's values
# Widget state is dropped while another page shows; keep a copy so the form survives page switches.
saved = st.session_state.setdefault(K + "saved", {})
for key, value in saved.items():
    st.session_state.setdefault(key, value)
if K + "preset" not in st.session_state:
    # A new session (or a tutorial card of the Start page): the form the link holds; a link that names only a run
    # (or none, while this visitor has a run) shows that run's settings; else the default preset.
    params = st.query_params.to_dict()
    if run is not None and not set(params) - {"run"}:
        show_run_settings(run.spec)
    else:
        link = links.parse(params, ignore=("run", "class"))
        st.session_state[K + "preset"] = link.preset
        st.session_state.update(form_values(link.values))
        form.fix(link, K)                                  # a teacher's link: what it hides and locks
        if link.problems:
            st.session_state[K + "link_problems"] = (link.problems, form_values(link.values))
    st.session_state[FORM_RUN] = run.id if run else None
elif run is not None and run.id != st.session_state.get(FORM_RUN):
    # Another run is shown (picked from the list below): its settings replace the form's, unless the visitor has
    # changed the form since it showed the previous run.
    before = registry.view(st.session_state[FORM_RUN]) if st.session_state.get(FORM_RUN) else None
    if before is not None and holds(before.spec):
        show_run_settings(run.spec)
    st.session_state[FORM_RUN] = run.id

# ------------------------------------------------------------------------------------------------ preset, link
names = [CUSTOM, *presets.PRESETS]
p1, p2 = st.columns([3, 2], vertical_alignment="bottom")
p1.selectbox("Tutorial preset", names, key=K + "preset", on_change=apply_preset,
             format_func=lambda n: "Custom (set everything by hand)" if n == CUSTOM else presets.get(n).title)
with p2.container(horizontal=True):
    st.button("Reset form", icon=":material/restart_alt:", on_click=apply_preset, key=K + "btn_reset",
              help="Put the preset's values back in the form", disabled=st.session_state[K + "preset"] == CUSTOM)
    copy_link = st.empty()     # the Copy link popover, once the form is read
preset_name = st.session_state[K + "preset"]
selected = None if preset_name == CUSTOM else presets.get(preset_name)
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

config_error = None
form.hold_fixed(K)
try:
    model_cfg, data_cfg, train_cfg = read_form()
except ValueError as e:
    config_error = str(e)
else:
    # The URL holds the form: the preset's name and only what differs from it (a reload or a shared link keeps it).
    form_values_now = links.values(model_cfg, data_cfg, train_cfg)
    form_link = links.query(preset_name, form_values_now, *form.fixed_names(K))
    for key in [k for k in st.query_params if k not in form_link and k != "run"]:
        del st.query_params[key]
    st.query_params.update({k: v for k, v in form_link.items() if st.query_params.get(k) != v})
    if selected:
        changed = links.differences(selected.name, form_values_now)
        line, name = f"**{selected.figure_label or 'figure'}** — {selected.figure_text()}", \
            links.run_name(preset_name, form_values_now)
        if changed and selected.compares(changed):
            otherwise = selected.trained_otherwise(changed)
            line += (f" ({otherwise})" if otherwise else "") + f". ✎ The form differs from this preset: the run " \
                f"will be **{name}**; the figure still applies (same model, loss and data)."
        elif changed:
            line = f"✎ The form differs from this preset in its model, loss or data: the run will be **{name}**, " \
                "not compared with the tutorial's figure."
        st.caption(line + (" **Reset form** restores the preset." if changed else ""))

with copy_link.popover("Copy link", icon=":material/link:", disabled=config_error is not None):
    if not config_error:
        hide, lock = form.teacher_choice(K, st.session_state[K + "family"])
        st.code(link_url(preset_name, form_values_now, hide, lock), language=None, wrap_lines=True)
    st.caption("The copy icon on the right copies this form as a link: the preset plus what differs from it. "
               "Opening it fills the form the same way; it starts nothing. For a class, hide or lock settings: "
               "the link's form leaves them out, or shows them fixed, at these values.")

if st.session_state[K + "dataset"] not in caches.available_datasets():
    panels.data_missing(st.session_state[K + "dataset"])

# ------------------------------------------------------------------------------------------------ controls
with st.container(horizontal=True, vertical_alignment="center"):
    start = st.button("Start", icon=":material/play_arrow:", type="primary",
                      disabled=busy or config_error is not None, key=K + "btn_start")
    state = run.state if run else None
    pause = resume = carry_on = False    # one place for Pause and Resume, so the bar stays one row on a phone
    if state == "paused":
        resume = st.button("Resume", icon=":material/resume:", key=K + "btn_resume")
    elif state == "interrupted":         # the server stopped or died mid-run: go on from its last whole epoch
        carry_on = st.button("Resume", icon=":material/resume:", key=K + "btn_continue",
                             help="Go on from the last whole epoch, with the optimiser as it was there")
    else:
        pause = st.button("Pause", icon=":material/pause:", disabled=state != "running", key=K + "btn_pause")
    stop = st.button("Stop", icon=":material/stop:", disabled=not busy, key=K + "btn_stop")
    if config_error:
        st.caption("Start is off: the settings below do not go together.")
if start:
    spec = RunSpec(name=links.run_name(preset_name, form_values_now), model=model_cfg, data=data_cfg,
                   train=train_cfg, preset=selected.name if selected else None)
    run_id = panels.submit(lambda: classes.submit(spec, caches.data_for(data_cfg), me))   # a class's run: its board
    if run_id:
        trace.mark("submitted", run_id)
        st.session_state[session.RUN_ID] = st.session_state[FORM_RUN] = run_id
        st.session_state[SETTINGS] = False    # fold the settings away: the controls and the chart share the screen
        st.query_params["run"] = run_id
        st.rerun()   # draw the buttons for the new run (they were drawn above for the idle form)
if pause:
    steer.pause(registry, run.id)    # and the step it stopped at
    st.rerun()   # the buttons above were drawn for the old state; the live view alone would not redraw them
if resume:
    registry.resume(run.id)
    st.rerun()
if registry.keeper.problem:      # the run store cannot be written: runs train, but a restart would lose them
    st.warning(f"Runs are not kept across restarts now: {registry.keeper.problem}.", icon=":material/database:")
if carry_on and panels.submit(lambda: registry.continue_run(run.id, caches.data_for(run.spec.data), me)):
    st.rerun()
if stop:
    registry.stop(run.id)
    st.rerun()


# ------------------------------------------------------------------------------------------------ live view
STATUS = {"queued": "queued", "running": "running", "paused": "paused", "finished": "finished",
          "stopped": "stopped", "failed": "failed", "ready": "starting", "interrupted": "interrupted"}


# A running run (or a paused one taking a Step) redraws its chart three times a second; a queued one only its place
# in line, every 2 s.
@st.fragment(run_every=0.3 if steer.stepping(K, run) else {"running": 0.3, "queued": 2.0}.get(state))
def live_view():
    run = session.current_run()
    if run is None:
        st.info("No run yet in this session. Pick a preset or set the form below, then press **Start**.")
        return
    if state == "queued" and run.state != "queued":
        st.rerun()        # it left the queue: the whole page, so the buttons and the poll rate follow
    snap, spec, m = run.snapshot, run.spec, run.snapshot.last
    pre, otherwise = links.reference(spec)
    status = STATUS[run.state]
    if run.state == "queued":
        st.progress(0.0, text=panels.queue_text(run))
        where = ("The Ray cluster trains as many runs at once as it has free CPUs and GPUs; yours starts by "
                 "itself when they free" if registry.cluster_resources() is not None else
                 "This server trains a limited number of runs at once; yours starts by itself when a slot frees")
        st.caption(f"{where}. Keep this tab open (any page): a run nobody watches is stopped after "
                   f"{registry.config.grace_s:g} s. **Stop** takes it out of the queue.")
        return            # nothing trained yet: no chart to draw
    if run.state == "interrupted":
        done = max((r.epoch for r in snap.records if r.epoch_end), default=0)
        st.progress(snap.progress, text=f"interrupted at epoch {done} of {spec.train.epochs} · {snap.device}")
        st.caption("The server stopped while this run trained. **Resume** goes on from the end of epoch "
                   f"{done}, with the optimiser and the random generators as they were there.")
    elif m:
        trace.mark("drawn", run.id)
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
    label = "tutorial" + (f" ({pre.train.epochs} epochs)" if pre and pre.train.epochs != spec.train.epochs else "")
    fig = viz.loss_figure(steps, epochs, per_epoch, reference=pre.figure if pre else None, reference_label=label,
                          marks=steer.marks(run))
    chart, recon = st.columns([3, 2])
    # Plotly's buttons would sit over the legend on a phone; dragging still zooms, a double click zooms back out
    chart.plotly_chart(fig, key=K + "chart", width="stretch", config={"displayModeBar": False})
    if m and m.terms:      # a VAE's reconstruction and KL, a sparse model's code penalty: each on its own scale
        chart.plotly_chart(viz.terms_figure([(r.step, r.terms) for r in snap.records], per_epoch),
                           key=K + "terms", width="stretch", config={"displayModeBar": False})
    with recon:
        if snap.peek and snap.peek[0] > max((r.step for r in snap.records if r.epoch_end), default=0):
            st.image(viz.grid(np.concatenate([snap.originals, snap.peek[1]]), nrow=8, zoom=3),
                     caption=f"top: fixed test digits · bottom: reconstructions after step {snap.peek[0]:,}",
                     alt=f"Eight test digits in the top row and, below each, the model's reconstruction of it after "
                         f"step {snap.peek[0]}.")
        elif snap.timeline:
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
            st.markdown(f"**{pre.figure_label}** — {pre.figure_text(figs.get(pre.figure_metric))}"
                        + (f" ({otherwise})" if otherwise else ""))
        elif spec.preset in presets.PRESETS:
            st.caption(f"Not compared with the tutorial's figure: this run's model, loss or data differ from the "
                       f"{spec.preset} preset's.")
        st.download_button("Download checkpoint (.safetensors)", icon=":material/download:", data=run.checkpoint_bytes,
                           file_name=f"{file_name(spec.name)}.safetensors", mime="application/octet-stream",
                           key=K + "download")
        takehome.code_buttons(spec, K + "takehome.", run.checkpoint_bytes)
        st.markdown("**This run's configuration as a link** (opening it fills the form; it starts nothing)")
        st.code(link_url(*links.of_run(spec)), language=None, wrap_lines=True)
    if (not run.active and busy) or (state == "paused" and run.state == "paused" and not steer.stepping(K, run)
                                     and st.session_state.pop(K + "step_to", None)):
        st.rerun()   # the whole app: app.py adds the run to the models, the buttons and the poll rate follow


live_view()
steer.section(registry, run, K)     # change while it trains, step while paused, slow motion: under the chart

# ------------------------------------------------------------------------------------------------ the settings
st.session_state.setdefault(SETTINGS, run is None)    # open until a run exists; then the visitor's choice
with st.expander("Settings: data, model and training", key=SETTINGS, on_change="rerun", icon=":material/tune:"):
    if busy:
        st.info("**A run is on:** changes here apply to the next run, not to the one shown above.",
                icon=":material/edit_note:")
    elif run is not None and not holds(run.spec):
        st.caption("✎ The form no longer holds the settings of the run shown above: **Start** trains what it holds "
                   "now.")
    if selected:
        st.caption(f"**The tutorial.** {selected.tutorial}")
    if note := form.fixed_note(K):
        st.caption(note)
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
    with right:
        st.markdown("**Model summary**")
        if config_error:
            st.error(f"**Invalid combination.** {config_error}", icon=":material/warning:")
        else:
            rows, total = model_summary(model_cfg)
            st.dataframe(rows, hide_index=True, width="stretch", height=35 * (len(rows) + 1) + 3)
            st.markdown(f"Total parameters: **{total:,}**")

# Buttons, the download button and the uploader cannot be given a value, so they are not kept; nor is the
# settings panel's open state (closed when the page comes back with a run).
saved.update({k: v for k, v in st.session_state.items() if k.startswith(K) and k not in (K + "saved", SETTINGS)
              and not k.startswith((K + "btn", K + "upload", K + "download", K + "show_run"))})

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


panels.runs_list([r for r in registry.runs_of(me) if not isinstance(r.spec, TaskSpec)], run, STATUS, K + "show_run")

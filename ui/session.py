"""This visitor's state: their models and the active one (each a `checkpoint.ModelEntry`), the run a page shows
(and its link), this session as a watcher of runs, and what its pages computed (`cached`).

A session holds the id of the run it shows, never the run (the server's registry, `ui.server`, holds that). The
visitor is the browser (`ui.visitor`: a token in a cookie), not the tab: the models a visitor trains or uploads
(at most MAX_SESSION_MODELS) and the values in REMEMBERED live in the visitor's locker on the server, so a reload
or a new tab of the same browser finds them again (`restore` at the start of a script run, `keep` at its end).
Watching is per session: closing one tab stops only what that tab watched.
"""
from __future__ import annotations

import secrets
import weakref

import streamlit as st

from aecore.engine.checkpoint import ModelEntry
from aecore.engine.models import count_params
from aecore.engine.train import resolve_device
from aecore.runs import RunRegistry, TaskSpec
from ui import caches, server, visitor as visitors

ACTIVATE = "app.activate"   # a model to make active on the next run, set by add_session_model
MAX_SESSION_MODELS = 8   # models a visitor trains or uploads, kept in the session; the oldest go first
RUN_ID = "app.run_id"     # the run this session shows on the Train page (also in that page's URL)
NEW_MODEL = "app.new_model"   # a run of this visitor's that ended while another page showed: offered, not forced
COLLECTED, RUNS = "app.collected", "train.runs"   # runs already added to the visitor's models; how many so far
# Session values a reload or a new tab of the same browser finds again (kept in the visitor's locker).
REMEMBERED = (RUN_ID, "app.active", COLLECTED, RUNS, NEW_MODEL, "studies.series", "pretrain.run", "class.member",
              "class.teacher")


# ------------------------------------------------------------------------------------------- the run a page shows
def visitor() -> str:
    """This visitor's token (their browser's, see ui.visitor): the registry lists a visitor's own runs by it."""
    return visitors.token()


def watcher() -> str:
    """This session's own token as a watcher of runs (a tab: closing it releases what it watched)."""
    return st.session_state.setdefault("app.watcher", secrets.token_urlsafe(16))


def restore() -> None:
    """At the start of a script run: what this visitor's other sessions left (a reload, another tab)."""
    values = visitors.locker().values
    for key in REMEMBERED:
        if key in values and key not in st.session_state:
            st.session_state[key] = values[key]


def keep() -> None:
    """At the end of a script run: the remembered values, for this visitor's next session."""
    values = visitors.locker().values
    for key in REMEMBERED:
        if key in st.session_state:
            values[key] = st.session_state[key]
        else:
            values.pop(key, None)


class _Watcher:
    """This session as a watcher of runs; released (the tab closed) it stops watching them all."""
    def __init__(self, registry: RunRegistry, token: str):
        self.registry, self.token = registry, token


@st.cache_resource(scope="session", show_spinner=False, on_release=lambda w: w.registry.unwatch(w.token))
def _watcher(token: str) -> _Watcher:
    return _Watcher(server.run_registry(), token)


def watch(run_id: str) -> None:
    """This session shows the run: the server keeps it going while the session is open (and for the grace
    time after it closes, so that a reload can reattach)."""
    _watcher(watcher()).registry.heartbeat(run_id, watcher())


TASK_PAGES = {"aecore.labs.pretrain": ("app_pages/pretrain.py", "Few labels"),      # a lab's task -> its page
              "aecore.labs.picturerun": ("app_pages/images.py", "Your images")}


def linked_run(key: str = RUN_ID):
    """The run a page shows, kept in session_state[key]: the one in the URL (`?run=<id>`: a reload, or a link
    opened in another tab) when there is one, else the session's. The URL is kept pointing at it, and this
    session watches it. An unknown or expired link gets a warning and is removed."""
    registry = server.run_registry()
    linked = st.query_params.get("run")
    if linked and linked != st.session_state.get(key):
        found = registry.attach(linked, visitor())
        if found is None:
            kept = (f"runs are kept for {registry.config.store_retention.max_age_s / 86400:g} days"
                    if registry.keeper.store else
                    f"runs are kept for {registry.config.retention_s / 60:g} minutes, and not across restarts")
            st.warning(f"The run in this link is not on the server: the link is wrong, or the run was removed "
                       f"({kept}).", icon=":material/link_off:")
            del st.query_params["run"]
        elif isinstance(found.spec, TaskSpec):      # a lab's work, not a training: its own page shows it
            page, title = TASK_PAGES.get(found.spec.task.partition(":")[0], (None, None))
            st.info(f"This link is of **{found.spec.name}**, a lab's experiment rather than a training"
                    + (f": the {title} page shows it." if page else "."), icon=":material/science:")
            if page:
                st.page_link(page, label=title, icon=":material/arrow_forward:")
            del st.query_params["run"]
        else:
            st.session_state[key] = linked
    run_id = st.session_state.get(key)
    run = registry.view(run_id) if run_id else None
    if run is None:
        st.session_state.pop(key, None)   # dropped by the server after its retention time
    else:
        st.query_params["run"] = run.id
        watch(run.id)
    return run


def current_run():
    """The RunView of the run this session shows, or None (none yet, or dropped by the server)."""
    run_id = st.session_state.get(RUN_ID)
    return server.run_registry().view(run_id) if run_id else None


# ------------------------------------------------------------------------------------------- the session's models
def session_models() -> dict:
    """This visitor's models, key -> ModelEntry, oldest first (the same dict in every session of the visitor)."""
    return visitors.locker().models


def add_session_model(name: str, model, meta: dict, source: str, activate: bool = True) -> str:
    """Keep a model in this session; with `activate`, it becomes the active model from the next run on
    (the sidebar's selector may already exist in this run, so a page caller reruns the app)."""
    key, n = f"session:{name}", 1
    while key in session_models():        # a second upload of "model.safetensors" must not replace the first
        n += 1
        key = f"session:{name} ({n})"
        name = key.removeprefix("session:")
    models = session_models()
    models[key] = ModelEntry(key, name, source, model, meta)
    while len(models) > MAX_SESSION_MODELS:   # bounded memory per visitor: drop the oldest one not in use
        oldest = next(k for k in models if k not in (key, st.session_state.get("app.active")))
        del models[oldest]
    if activate:
        st.session_state[ACTIVATE] = key
    return key


def collect_finished_run(activate: bool = True) -> bool:
    """Add the ended run this session shows to the visitor's models (once); True if it did. It becomes the active
    model when `activate` (the visitor saw it end, or stopped it, on the Train page); otherwise it is offered
    (NEW_MODEL: the sidebar asks), so that a page never switches its model under the visitor. app.py calls this
    before it draws the model selector, so a run that ends while another page shows is picked up."""
    run = current_run()
    collected = st.session_state.setdefault(COLLECTED, set())
    if run is None or run.active or run.model is None or run.id in collected or run.state == "interrupted":
        return False     # (an interrupted run is offered once it has been resumed and has ended)
    collected.add(run.id)
    runs = st.session_state[RUNS] = st.session_state.get(RUNS, 0) + 1
    epochs = f"{run.snapshot.progress * run.spec.train.epochs:.1f} of {run.spec.train.epochs} epochs"
    key = add_session_model(f"{run.spec.name} run {runs}", run.model, run.meta,
                            f"trained on this server ({run.state} after {epochs}, {run.snapshot.device})",
                            activate=activate)
    if not activate:
        st.session_state[NEW_MODEL] = key
    return True


# ------------------------------------------------------------------------------------------- the active model
def model_choices() -> dict[str, ModelEntry]:
    choices = {f"shipped:{n}": ModelEntry(f"shipped:{n}", n, "shipped pretrained checkpoint", m, meta)
               for n, (m, meta) in caches.shipped_models().items()}
    choices.update(session_models())
    return choices


def active_model() -> ModelEntry | None:
    choices = model_choices()
    if not choices:
        return None
    requested = st.session_state.pop(ACTIVATE, None)   # app.py calls this before it draws the selector
    if requested in choices:
        st.session_state["app.active"] = requested
    key = st.session_state.get("app.active")
    if key not in choices:
        key = "shipped:pytorch-784-200" if "shipped:pytorch-784-200" in choices else next(iter(choices))
        st.session_state["app.active"] = key
    return choices[key]


def page_model() -> ModelEntry:
    """The active model for a page; with none at all, a hint and the page stops."""
    am = active_model()
    if am is None:
        st.warning("No model yet: the models/ folder is empty. Train one on the Train page.")
        st.stop()
    return am


def describe(am: ModelEntry) -> dict:
    cfg = am.config
    return {"name": am.name, "family": cfg.family, "sizes": cfg.sizes_text, "parameters": f"{count_params(am.model):,}",
            "source": am.source, "device": describe_device()}


def describe_device() -> str:
    return str(resolve_device("auto"))


# ------------------------------------------------------------------------------------------- per-session results
def cached(name: str, key, compute, most: int = 12, owner=None):
    """`compute()`, kept in this session (session_state[name], a page's namespace) under `key`, at most `most`
    results (the least recently used go first): what one visitor's models produce, never shared as
    `st.cache_resource` would. With `owner` (a model, a test split) a result also lives only as long as that
    object: found by its identity, so a new model under an old name (a second upload) is never mixed up."""
    cache = st.session_state.setdefault(name, {})
    slot = key if owner is None else (key, id(owner))
    hit = cache.pop(slot, None)
    if hit is None or (owner is not None and hit[0]() is not owner):
        hit = (None if owner is None else weakref.ref(owner), compute())
    cache[slot] = hit
    while len(cache) > most:
        del cache[next(iter(cache))]
    return hit[1]

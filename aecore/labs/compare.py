"""Models side by side: what the Compare page lists, the settings that set picked models apart, their loss curves
overlaid, the same digits reconstructed by each, and their first-layer filters.

An `Entry` (`checkpoint.ModelEntry`, also the sidebar's active model) is one model with what its checkpoint
records (`meta`: configs, figures, per-epoch history). `gather` lists a visitor's ended runs, the models the
session holds and the shipped checkpoints, each model once; the other functions are pure and return rows, arrays
or a Plotly figure.
"""
from __future__ import annotations

import math
from dataclasses import fields, is_dataclass, replace
from typing import Iterable, Mapping

import numpy as np
import plotly.graph_objects as go

from aecore.engine import viz
from aecore.engine.checkpoint import ModelEntry as Entry   # the app's one model-with-its-checkpoint record
from aecore.engine.data import IMAGES, DataConfig
from aecore.engine.fields import merged, used_by
from aecore.engine.models import ModelConfig, count_params
from aecore.engine.scoring import reconstruct
from aecore.engine.train import TrainConfig

MAX_PICKS = 8
MISSING = "—"           # the entry's checkpoint does not record this setting or figure
NOT_USED = "not used"   # the setting has no effect for this entry (e.g. model.channels of an MLP)
COLOURS = viz.LINES     # one colour per entry, by its place among the picks
SECTIONS = (("model", ModelConfig), ("data", DataConfig), ("train", TrainConfig))
EMPTY = {"data.classes": "all", "train.lr_milestones": "none"}   # what an empty tuple means for these settings
RUN_STATES = ("finished", "stopped")   # ended runs whose weights the page compares (a failed run's are not)


# ------------------------------------------------------------------------------------------- listing
def gather(runs: Iterable, session_models: Mapping, shipped: Mapping) -> list[Entry]:
    """Entries, newest first: the visitor's finished or stopped runs, the session's other models (uploads),
    then the shipped checkpoints.

    `runs` are RunViews (oldest first, as `RunRegistry.runs_of` gives them), `session_models` maps keys to
    objects with key, name, model, meta and source, `shipped` maps names to (model, meta). The app also keeps
    a run's model among the session models once it has ended: the same model object, so object identity
    tells them apart from uploads; such a run is listed once, under the session model's key and name (the
    sidebar's), and stays listed after the server has dropped the run. A failed run's last good weights
    (also kept by the session) are left out, as their checkpoint records no figures.
    """
    by_model = {id(m.model): m for m in session_models.values()}
    entries: list[Entry] = []
    taken: set[int] = set()
    for run in reversed(list(runs)):
        if run.model is None or id(run.model) in taken:
            continue
        taken.add(id(run.model))
        if run.state not in RUN_STATES:
            continue
        held = by_model.get(id(run.model))
        if held is not None:
            entries.append(Entry(held.key, held.name, held.source, run.model, run.meta or held.meta))
        else:
            entries.append(Entry(f"run:{run.id}", run.spec.name, f"your run ({run.state})", run.model,
                                 run.meta or {}))
    for held in reversed(list(session_models.values())):
        if id(held.model) in taken or held.meta.get("error"):
            continue
        taken.add(id(held.model))
        entries.append(Entry(held.key, held.name, held.source, held.model, held.meta))
    for name, (model, meta) in shipped.items():
        entries.append(Entry(f"shipped:{name}", name, "shipped pretrained checkpoint", model, meta))
    return _unique_names(entries)


def _unique_names(entries: list[Entry]) -> list[Entry]:
    """Names label table columns and legend items, so two entries never share one: 'custom (2)'."""
    seen: set[str] = set()
    out = []
    for e in entries:
        name, n = e.name, 1
        while name in seen:
            n += 1
            name = f"{e.name} ({n})"
        seen.add(name)
        out.append(e if name == e.name else replace(e, name=name))
    return out


def default_picks(entries: list[Entry], reference: str | None = None) -> list[str]:
    """The keys picked before the visitor picks: their newest three models and one shipped model (`reference`
    when it is a shipped entry's key, else the first shipped one); with no models of their own, the first two."""
    own = [e.key for e in entries if not e.shipped]
    shipped = [e.key for e in entries if e.shipped]
    if not own:
        return [e.key for e in entries[:2]]
    ref = reference if reference in shipped else (shipped[0] if shipped else None)
    return own[:3] + ([ref] if ref else [])


# ------------------------------------------------------------------------------------------- tables
def sizes(cfg: ModelConfig) -> str:
    """Layer sizes in words, as the sidebar shows them: '784-200-784' or '1→16→4 channels, code 4×7×7'."""
    return cfg.sizes_text


def training_seconds(entry: Entry) -> float | None:
    """Seconds spent training (pauses and evaluation excluded): the sum over its epochs, None if unrecorded."""
    seconds = [h.get("seconds") for h in entry.history]
    if not seconds or any(s is None for s in seconds):
        return None
    return float(sum(seconds))


def time_text(seconds: float | None) -> str:
    if seconds is None:
        return MISSING
    return f"{seconds:,.1f} s" if seconds < 120 else f"{seconds / 60:,.1f} min"


def overview_rows(entries: list[Entry]) -> list[dict]:
    """One row per entry: name, source, family, sizes, parameters, the three recorded figures (None when not
    measured) and the training time."""
    rows = []
    for e in entries:
        figs = e.figures
        rows.append({"name": e.name, "source": e.source, "family": e.config.family, "sizes": sizes(e.config),
                     "parameters": count_params(e.model), "train loss": figs.get("train_loss"),
                     "validation loss": figs.get("val_loss"), "test loss": figs.get("test_loss"),
                     "training time": time_text(training_seconds(e))})
    return rows


def data_text(entry: Entry) -> str:
    """Which images its figures were measured on: 'mnist', 'mnist, classes 0', 'images: bottles', or MISSING."""
    data = _as_dict(entry.meta.get("data"))
    if not data:
        return MISSING
    classes = tuple(data.get("classes") or ())
    about = entry.meta.get("picture_set") or {}
    named = f": {about['name']}" if data.get("dataset") == IMAGES and about.get("name") else ""
    return data.get("dataset", MISSING) + named + (", classes " + ", ".join(map(str, classes)) if classes else "")


def median_test_error(entry: Entry) -> float | None:
    """The median per-image squared error (pixel space) over its test set, from the stored quantiles: unlike
    the losses, the same measure whatever loss the model trained with."""
    q = entry.meta.get("test_error_quantiles") or []
    return float(q[len(q) // 2]) if len(q) >= 3 and len(q) % 2 else None


def figure_rows(entries: list[Entry]) -> list[dict]:
    """The picked entries' figures, with what each was measured in and on."""
    rows = []
    for e in entries:
        figs = e.figures
        rows.append({"name": e.name, "loss": e.config.loss.upper(), "data": data_text(e),
                     "epochs trained": len(e.history) or None, "train loss": figs.get("train_loss"),
                     "validation loss": figs.get("val_loss"), "test loss": figs.get("test_loss"),
                     "median test error (MSE per image)": median_test_error(e),
                     "training time": time_text(training_seconds(e)), "device": e.meta.get("device", MISSING)})
    return rows


def settings(entry: Entry) -> dict[str, object]:
    """Every setting by dotted name ('model.hidden', 'data.classes', 'train.lr') -> its value, NOT_USED when
    it has no effect on this model (`fields.used_by`: a conv model's hidden sizes, the noise level without noise),
    MISSING when the checkpoint does not record it."""
    sections = {section: _as_dict(entry.config if section == "model" else entry.meta.get(section))
                for section, _ in SECTIONS}
    every = merged(*sections.values())
    out = {}
    for section, cls in SECTIONS:
        values = sections[section]
        for f in fields(cls):
            name = f"{section}.{f.name}"
            if values is None or f.name not in values:
                out[name] = MISSING
            elif not used_by(f.name, every):
                out[name] = NOT_USED
            else:
                out[name] = values[f.name]
    return out


def differing_settings(entries: list[Entry]) -> list[dict]:
    """Rows {"setting": dotted name, <entry name>: value as text, ...} for the settings whose values are not
    all the same; a setting one entry's checkpoint lacks differs from any recorded value and shows MISSING."""
    table = [settings(e) for e in entries]
    rows = []
    for name in table[0] if table else ():
        values = [t[name] for t in table]
        if any(v != values[0] for v in values[1:]):
            rows.append({"setting": name, **{e.name: setting_text(name, v) for e, v in zip(entries, values)}})
    return rows


def setting_text(name: str, value) -> str:
    if isinstance(value, tuple):
        return ", ".join(map(str, value)) if value else EMPTY.get(name, "none")
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _as_dict(cfg) -> dict | None:
    """A config as {field: value}: a dataclass, or the JSON dict an older checkpoint may hold (lists -> tuples)."""
    if is_dataclass(cfg):
        return {f.name: getattr(cfg, f.name) for f in fields(cfg)}
    if isinstance(cfg, Mapping):
        return {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}
    return None


# ------------------------------------------------------------------------------------------- pictures
def curves_figure(entries: list[Entry]) -> go.Figure:
    """Per-epoch losses overlaid, x in epochs: train solid, held-out dashed, one colour per entry (by its place
    in `entries`); entries without a recorded history draw nothing. Losses are each model's own (BCE or MSE),
    hence the log scale and the loss named in the legend."""
    data = []
    for i, e in enumerate(entries):
        h = e.history
        if not h:
            continue
        colour, x, loss = COLOURS[i % len(COLOURS)], [r["epoch"] for r in h], e.config.loss.upper()
        for label, field, dash in (("train", "train_loss", "solid"), ("held-out", "val_loss", "dash")):
            data.append({"type": "scatter", "mode": "lines+markers", "name": f"{e.name} · {label} ({loss})",
                         "legendgroup": e.key, "x": x, "y": [r.get(field) for r in h],
                         "line": {"color": colour, "dash": dash}, "marker": {"color": colour, "size": 5},
                         "hovertemplate": f"{e.name} · {label}<br>epoch %{{x}}<br>loss %{{y:.5f}}<extra></extra>"})
    layout = {"xaxis": {"title": {"text": "epoch"}}, "yaxis": {"title": {"text": "loss (log scale)"}, "type": "log"},
              "height": 420, "margin": {"l": 10, "r": 10, "t": 30, "b": 10},
              "legend": {"orientation": "h", "y": -0.18}}
    return go.Figure({"data": data, "layout": layout}, _validate=False)   # plain dicts: no validation cost


def digit_picks(labels, n: int = 8) -> list[int]:
    """Indices of the first test image of each class in class order (0, 1, 2, …), then the next images, n in
    all: every model of one data set is shown the same digits."""
    labels = np.asarray(labels)
    picks = [int(np.flatnonzero(labels == c)[0]) for c in np.unique(labels)][:n]
    picks += [i for i in range(len(labels)) if i not in picks][:n - len(picks)]
    return picks


def reconstructions(entries: list[Entry], images) -> list[np.ndarray]:
    """Each entry's reconstructions of the same images ((N, 28, 28) for MNIST; (N, S, S) or (N, 3, S, S)): a list of
    float32 arrays of that shape in [0, 1]."""
    return [reconstruct(e.model, images) for e in entries]


def filter_count(entry: Entry) -> int:
    """How many first-layer filters it has: units of the first linear layer, or kernels of the first conv."""
    cfg = entry.config
    return cfg.channels[0] if cfg.convolutional else cfg.hidden[0]


def first_layer_filters(entry: Entry, count: int) -> np.ndarray:
    """The first `count` first-layer filters, each scaled to [0, 1] on its own: MLP weights as picture tiles
    (count, 28, 28) for MNIST (count, 3, S, S) in colour, or conv kernels (count, k, k) ((count, 3, k, k))."""
    n = max(0, min(count, filter_count(entry)))
    tiles = viz.conv_kernels(entry.model)[:n] if entry.config.convolutional else viz.encoder_filters(entry.model, n)
    return tiles.numpy()


def grid_columns(count: int) -> int:
    """Tiles a row for a squarish block of `count` filters."""
    return max(1, math.ceil(math.sqrt(count)))

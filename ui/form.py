"""A configuration form drawn from the settings table (aecore.engine.fields): one widget per setting, keyed
`<prefix><field name>` (the Train page's `train.batch_size`), with the table's label, help, range and step, and
the conversions between a config's values and its widgets' (a list of sizes is typed as text; a shallow model's one
hidden size is a number). The page decides where each widget goes; this module, what it is.
"""
from __future__ import annotations

from typing import Mapping

import streamlit as st

from aecore.engine import links
from aecore.engine.data import DataConfig
from aecore.engine.fields import FIELDS, fields_for, is_on, parse_ints
from aecore.engine.models import ModelConfig
from aecore.engine.train import TrainConfig

CONFIGS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}
SLIDERS = ("noise_level", "deform", "dropout")            # numbers drawn as sliders; the rest as number inputs
FORMATS = {"lr": "%.6f", "sparsity": "%.5f", "adam_eps": "%.1e"}


def widget_value(name: str, value, family: str):
    """A config's value of setting `name` as its widget holds it for a model of `family`."""
    f = FIELDS[name].for_family(family)
    if f.kind == "ints":
        if f.distinct:
            return list(value)
        if f.single:
            return int(value[0]) if value else _default(name)
        return ",".join(map(str, value))
    return {"int": int, "float": float}.get(f.kind, lambda v: v)(value)


def widget_values(values: Mapping, prefix: str) -> dict:
    """Widget values by key that show a configuration (`links.values`: setting name -> config value)."""
    return {prefix + name: widget_value(name, values[name], values["family"]) for name in FIELDS if name in values}


def config_value(name: str, value):
    """A widget's value as the config takes it; ValueError for text that is not comma-separated numbers."""
    if FIELDS[name].kind != "ints":
        return value
    if isinstance(value, (list, tuple)):
        return tuple(int(v) for v in value)
    if isinstance(value, (int, float)):
        return (int(value),)
    try:
        return parse_ints(value)
    except ValueError:
        raise ValueError(f"expected comma-separated whole numbers, got {value!r}") from None


def read(state: Mapping, prefix: str) -> tuple[ModelConfig, DataConfig, TrainConfig]:
    """The three configs the widgets hold; a setting the family does not use keeps its default (ValueError, from
    the configs' checks, when the values do not go together)."""
    family = state[prefix + "family"]
    kwargs: dict[str, dict] = {section: {} for section in CONFIGS}
    for name in fields_for(family):
        kwargs[FIELDS[name].config][name] = config_value(name, state[prefix + name])
    return tuple(cls(**kwargs[section]) for section, cls in CONFIGS.items())


def query(state: Mapping, prefix: str) -> dict | None:
    """The form as a link's parameters (its preset, widget `<prefix>preset`, and what differs from it); None while
    its values do not go together."""
    try:
        vals = links.values(*read(state, prefix))
    except ValueError:
        return None
    return links.query(state[prefix + "preset"], vals)


def carry(name: str, value, family: str):
    """The widget value of setting `name` once the family has become `family`: sizes typed as text become one
    number where the family takes one (the first size, within range), and a number becomes text again."""
    f = FIELDS[name].for_family(family)
    if f.kind != "ints" or f.distinct or family not in f.families or value is None:
        return value
    if not f.single:
        return value if isinstance(value, str) else str(int(value))
    if isinstance(value, (int, float)):
        return int(value)
    try:
        first = parse_ints(value)[:1]
    except ValueError:
        first = ()
    return min(max(first[0], int(f.low)), int(f.high)) if first else _default(name)


def _default(name: str) -> int:
    """The first number of the setting's default (ModelConfig's hidden: 200)."""
    return getattr(CONFIGS[FIELDS[name].config](), name)[0]


def draw(name: str, prefix: str, family: str, where=None, **kwargs):
    """The widget of setting `name`, as a model of `family` takes it, in `where` (default: the page). Disabled while
    the setting it needs is off (the noise level without noise). `kwargs` go to the widget (options, format_func,
    on_change)."""
    where = where or st
    f = FIELDS[name].for_family(family)
    label = f.label_for(family)
    kwargs = {"key": prefix + name, "help": f.help,
              "disabled": f.needs is not None and not is_on(st.session_state.get(prefix + f.needs)), **kwargs}
    if f.kind == "choice":
        return where.selectbox(label, kwargs.pop("options", f.choices),
                               format_func=kwargs.pop("format_func", f.choice_label), **kwargs)
    if f.kind == "bool":
        return where.checkbox(label, **kwargs)
    if f.kind == "ints" and f.distinct:
        return where.multiselect(label, list(range(int(f.low), int(f.high) + 1)), **kwargs)
    if f.kind == "ints" and not f.single:
        return where.text_input(label, **kwargs)
    num = float if f.kind == "float" else int
    low, high, step = num(f.low), num(f.high), num(f.step or 1)
    if name in SLIDERS:
        return where.slider(label, low, high, step=step, **kwargs)
    return where.number_input(label, low, high, step=step, format=FORMATS.get(name), **kwargs)

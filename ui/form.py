"""A configuration form drawn from the settings table (aecore.engine.fields): one widget per setting, keyed
`<prefix><field name>` (the Train page's `train.batch_size`), with the table's label, help, range and step, and
the conversions between a config's values and its widgets' (a list of sizes is typed as text; a shallow model's one
hidden size is a number). The page decides where each widget goes; this module, what it is.
"""
from __future__ import annotations

from typing import Mapping

import streamlit as st

from aecore.engine import links, steering
from aecore.engine.data import DataConfig
from aecore.engine.fields import FIELDS, fields_for, format_value, is_on, parse_ints, parse_schedule
from aecore.engine.models import ModelConfig
from aecore.engine.train import TrainConfig

CONFIGS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}
FIXED = "fixed"           # session key (after the prefix): {setting: ("hide" or "lock", the link's config value)}
SLIDERS = ("noise_level", "deform", "dropout")            # numbers drawn as sliders; the rest as number inputs
FORMATS = {"lr": "%.6f", "sparsity": "%.5f", "adam_eps": "%.1e"}


def widget_value(name: str, value, family: str):
    """A config's value of setting `name` as its widget holds it for a model of `family`."""
    f = FIELDS[name].for_family(family)
    if f.kind == "schedule":
        return format_value(value)
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
    """A widget's value as the config takes it; ValueError for text that is not comma-separated numbers (or, for
    the changes while training, not a schedule of them)."""
    if FIELDS[name].kind == "schedule":
        return parse_schedule(value) if isinstance(value, str) else value
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
    model, data, train = (cls(**kwargs[section]) for section, cls in CONFIGS.items())
    steering.check_schedule(model, train.changes)      # a change this model cannot make (dropout without layers)
    return model, data, train


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
    mode = st.session_state.get(prefix + FIXED, {}).get(name, (None,))[0]
    if mode == "hide":                          # a teacher's link left it out: its value stays the link's
        return st.session_state.get(prefix + name)
    kwargs = {"key": prefix + name, "help": f.help,
              "disabled": f.needs is not None and not is_on(st.session_state.get(prefix + f.needs)), **kwargs}
    if mode == "lock":
        kwargs.update(disabled=True, help=f"{f.help} Fixed by this link.".strip())
    if f.kind == "choice":
        return where.selectbox(label, kwargs.pop("options", f.choices),
                               format_func=kwargs.pop("format_func", f.choice_label), **kwargs)
    if f.kind == "bool":
        return where.checkbox(label, **kwargs)
    if f.kind == "ints" and f.distinct:
        return where.multiselect(label, list(range(int(f.low), int(f.high) + 1)), **kwargs)
    if f.kind == "schedule" or (f.kind == "ints" and not f.single):
        return where.text_input(label, **kwargs)
    num = float if f.kind == "float" else int
    low, high, step = num(f.low), num(f.high), num(f.step or 1)
    if name in SLIDERS:
        return where.slider(label, low, high, step=step, **kwargs)
    return where.number_input(label, low, high, step=step, format=FORMATS.get(name), **kwargs)


# ------------------------------------------------------------------------------------------- a teacher's link
def fix(link: links.Link, prefix: str) -> None:
    """Remember the settings a link hides and locks, with the values it gives them (`hold_fixed` keeps them)."""
    v = link.values
    st.session_state[prefix + FIXED] = {**{n: ("hide", v[n]) for n in link.hidden},
                                        **{n: ("lock", v[n]) for n in link.locked}}


def hold_fixed(prefix: str) -> None:
    """Put the link's values back in its hidden and locked settings, before the form is read (a preset chosen
    since, or a family change, may have moved them), each as the form's current family shows it."""
    fixed = st.session_state.get(prefix + FIXED, {})
    if "family" in fixed:
        st.session_state[prefix + "family"] = fixed["family"][1]
    family = st.session_state[prefix + "family"]
    for name, (_, value) in fixed.items():
        st.session_state[prefix + name] = widget_value(name, value, family)


def fixed_names(prefix: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(hidden, locked) setting names of the link this session opened."""
    fixed = st.session_state.get(prefix + FIXED, {})
    return (tuple(n for n, (m, _) in fixed.items() if m == "hide"), tuple(n for n, (m, _) in fixed.items() if m == "lock"))


def fixed_note(prefix: str) -> str | None:
    """What the link fixes, in words, for the visitor (None when it fixes nothing)."""
    hidden, locked = fixed_names(prefix)
    if not hidden and not locked:
        return None
    parts = ([f"sets and hides {', '.join(FIELDS[n].label for n in hidden)}"] if hidden else []) + \
        ([f"fixes {', '.join(FIELDS[n].label for n in locked)}"] if locked else [])
    return f":material/lock: **This link {' and '.join(parts)}**: the rest is yours to change."


def teacher_choice(prefix: str, family: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The Copy link popover's choice of settings to hide and to lock in the link (a teacher tailoring a form for
    a class), starting from what this session's link fixed. Returns (hidden, locked); hidden wins."""
    names = [n for n in FIELDS if family in FIELDS[n].families]
    hidden, locked = fixed_names(prefix)
    label = {n: FIELDS[n].label_for(family) for n in names}.get
    hide = st.multiselect("Hide in the link", names, default=[n for n in hidden if n in names], format_func=label,
                          key=prefix + "link_hide", placeholder="settings the class does not see")
    lock = st.multiselect("Lock in the link", names, default=[n for n in locked if n in names], format_func=label,
                          key=prefix + "link_lock", placeholder="settings the class sees but cannot change")
    return tuple(hide), tuple(n for n in lock if n not in hide)

"""Shareable links: a training configuration as a short query string, the preset's name plus what differs from it.

`?preset=keras-784-32&epochs=5&lr=0.01` is the Keras tutorial with 5 epochs at learning rate 0.01. Parameter names
are the config fields of the settings table (aecore.engine.fields: ModelConfig, DataConfig, TrainConfig), whose
ranges a link is read against. `parse` reads a query back: each parameter is checked on its own, so one bad value is
named and the rest of the link still applies; whether the values go together is the configs' own check, as for
anything typed into the form. A run is named the same way, shorter: `run_name` gives 'keras-784-32 · epochs 5, lr
0.01' (the preset stays the run's preset; aecore.engine.presets says when its figure still applies).

A teacher's link may also carry `hide=` and `lock=`, each a comma-separated list of setting names: the form leaves
hidden settings out and shows locked ones fixed, both at the link's values (`?preset=pytorch-784-200&epochs=2&
lock=epochs&hide=lr,batch_size`). They tailor what a class sees; they are not a security boundary (the link can be
edited), and the server's limits still apply to every run.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import urlencode

from aecore.engine import presets
from aecore.engine.data import DataConfig
from aecore.engine.fields import FIELDS, Field, format_value, merged, used_by  # noqa: F401 (Field, format_value: public)
from aecore.engine.models import ModelConfig
from aecore.engine.train import RunSpec, TrainConfig

PRESET = "preset"            # the query parameter naming the preset
HIDE, LOCK = "hide", "lock"  # the query parameters listing the settings a teacher's link hides and locks
CUSTOM = "custom"            # a configuration built by hand: its differences are counted from DEFAULT_PRESET
DEFAULT_PRESET = "pytorch-784-200"
NAME_SETTINGS = 3            # a run's name lists at most this many differences, then "+2 more"
NAME_VALUE = 10              # and at most this many characters of each value
DEFAULTS = merged(ModelConfig(), DataConfig(), TrainConfig())   # where a value fits no family's rule


@dataclass(frozen=True)
class Link:
    """A parsed query: the preset (or CUSTOM), every form value, and what could not be used, in words."""
    preset: str
    values: dict
    problems: tuple[str, ...] = ()
    hidden: tuple[str, ...] = ()      # settings the form leaves out (at the link's values)
    locked: tuple[str, ...] = ()      # settings the form shows fixed


def values(model: ModelConfig, data: DataConfig, train: TrainConfig) -> dict:
    """The form's values of three configs, by parameter name."""
    return {name: getattr({"model": model, "data": data, "train": train}[f.config], name)
            for name, f in FIELDS.items()}


def preset_values(name: str) -> dict:
    p = presets.get(DEFAULT_PRESET if name == CUSTOM else name)
    return values(p.model, p.data, p.train)


def query(preset: str, vals: Mapping, hidden=(), locked=()) -> dict[str, str]:
    """The query parameters of a configuration: the preset's name, then only the values that differ from it, then
    the settings a teacher's link hides and locks (in the settings table's order)."""
    base = preset_values(preset)
    out = {PRESET: preset}
    for name in FIELDS:
        if name in vals and not _same(vals[name], base[name]):
            out[name] = format_value(vals[name])
    for param, names in ((HIDE, hidden), (LOCK, locked)):
        if names:
            out[param] = ",".join(n for n in FIELDS if n in names)
    return out


def query_string(preset: str, vals: Mapping, hidden=(), locked=()) -> str:
    return urlencode(query(preset, vals, hidden, locked), safe=",")


def differences(preset: str, vals: Mapping) -> dict[str, tuple]:
    """What a configuration changes in a preset, in link order: name -> (the preset's value, this one). Only the
    settings one of the two uses count (fields.used_by: a shallow model's `latent`, a noise level without noise
    do not), so a form that went to another family and back differs in nothing."""
    base = preset_values(preset)
    return {name: (base[name], vals[name]) for name in FIELDS
            if name in vals and not _same(vals[name], base[name]) and (used_by(name, vals) or used_by(name, base))}


def of_run(spec: RunSpec) -> tuple[str, dict]:
    """A run's configuration as a link holds it: the preset it started from (CUSTOM for none) and every value."""
    return (spec.preset if spec.preset in presets.PRESETS else CUSTOM), values(spec.model, spec.data, spec.train)


def reference(spec: RunSpec) -> tuple[presets.Preset | None, str]:
    """The preset whose figure a run compares with and what the tutorial did otherwise ('the tutorial trained 10
    epochs', or ''); (None, '') for a run started from no preset, or whose model, loss or data differ from the
    preset's (presets.Preset.compares)."""
    preset, vals = of_run(spec)
    if preset == CUSTOM:
        return None, ""
    p, changed = presets.get(preset), differences(preset, vals)
    return (p, p.trained_otherwise(changed)) if p.compares(changed) else (None, "")


def run_name(preset: str, vals: Mapping) -> str:
    """A run's name: the preset's, then what differs from it, short enough for a list or a legend
    ('pytorch-784-200 · epochs 2'; 'keras-784-32 · hidden 64, lr 0.01, epochs 5 +2 more'); CUSTOM for a form not
    started from a preset."""
    if preset == CUSTOM:
        return CUSTOM
    changed = differences(preset, vals)
    shown = [f"{name} {_clip(format_value(ours) or 'none')}" for name, (_, ours) in changed.items()][:NAME_SETTINGS]
    more = f" +{len(changed) - len(shown)} more" if len(changed) > len(shown) else ""
    return f"{preset} · {', '.join(shown)}{more}" if shown else preset


def parse(params: Mapping[str, str], ignore: tuple[str, ...] = ()) -> Link:
    """Read a link's parameters (names in `ignore` belong to something else, such as a run id). Unknown names and
    values the form cannot take are reported in `problems`; everything else is applied over the preset."""
    problems = []
    preset = params.get(PRESET) or (CUSTOM if set(params) & set(FIELDS) else DEFAULT_PRESET)
    if preset != CUSTOM and preset not in presets.PRESETS:
        problems.append(f"`{PRESET}={preset}`: no such preset (choose one of {', '.join(presets.PRESETS)})")
        preset = CUSTOM
    vals = preset_values(preset)
    unknown = sorted(set(params) - set(FIELDS) - {PRESET, HIDE, LOCK, *ignore})
    if unknown:
        problems.append("unknown parameter" + ("s " if len(unknown) > 1 else " ") +
                        ", ".join(f"`{n}`" for n in unknown) + f" (known: {', '.join(FIELDS)})")
    for name, field in FIELDS.items():
        if name in params:
            try:
                vals[name] = field.parse(params[name])
            except ValueError:
                problems.append(f"`{name}={params[name]}`: expected {field.describe()}")
    family = vals["family"]
    for name, field in FIELDS.items():        # a setting some families take more strictly (shallow: one size)
        rule = field.for_family(family)
        if family in field.families and not rule.accepts(vals[name]):
            problems.append(f"`{name}={format_value(vals[name])}`: the {family} family takes {rule.allowed()}")
            vals[name] = DEFAULTS[name]
    hidden, locked = (_names(params, param, problems) for param in (HIDE, LOCK))
    locked = tuple(n for n in locked if n not in hidden)          # hidden wins: a setting is hidden or shown
    return Link(preset, vals, tuple(problems), hidden, locked)


def _names(params: Mapping[str, str], param: str, problems: list) -> tuple[str, ...]:
    """The setting names a `hide=` or `lock=` parameter lists, in the table's order; unknown ones are named in
    `problems` and left out."""
    given = [n.strip() for n in str(params.get(param) or "").split(",") if n.strip()]
    bad = [n for n in given if n not in FIELDS]
    if bad:
        problems.append(f"`{param}=`: no setting named {', '.join(f'`{_clip(n)}`' for n in bad[:5])} (known: "
                        f"{', '.join(FIELDS)})")
    return tuple(n for n in FIELDS if n in given)


def parse_value(field: Field, text: str):
    """One parameter's text as the form's value; ValueError when the form cannot take it."""
    return field.parse(text)


def _clip(text: str) -> str:
    return text if len(text) <= NAME_VALUE else text[:NAME_VALUE - 1] + "…"


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    return tuple(a) == tuple(b) if isinstance(a, (tuple, list)) else a == b

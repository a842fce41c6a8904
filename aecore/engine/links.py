"""Shareable links: a training configuration as a short query string, the preset's name plus what differs from it.

`?preset=keras-784-32&epochs=5&lr=0.01` is the Keras tutorial with 5 epochs at learning rate 0.01. Parameter names
are the config fields (ModelConfig, DataConfig, TrainConfig) the Train form shows. `parse` reads a query back:
each parameter is checked on its own, so one bad value is named and the rest of the link still applies; whether
the values go together is the configs' own check, as for anything typed into the form.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import urlencode

from aecore.engine import presets
from aecore.engine.data import DATASETS, NOISE_KINDS, DataConfig
from aecore.engine.models import ACTIVATIONS, DROPOUT_PLACES, FAMILIES, INITS, LOSSES, OUTPUTS, ModelConfig
from aecore.engine.train import OPTIMIZERS, TrainConfig

PRESET = "preset"            # the query parameter naming the preset
CUSTOM = "custom"            # a configuration built by hand: its differences are counted from DEFAULT_PRESET
DEFAULT_PRESET = "pytorch-784-200"


@dataclass(frozen=True)
class Field:
    """One parameter of a link: the config it belongs to, its kind, and the values the Train form accepts."""
    config: type
    kind: str                          # int, float, bool, ints (comma-separated) or choice
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices)
        if self.kind == "bool":
            return "true or false"
        what = {"int": "a whole number", "float": "a number", "ints": "whole numbers separated by commas"}[self.kind]
        if self.low is not None and self.high is not None:
            what += f" from {self.low:g} to {self.high:g}"
        elif self.low is not None:
            what += f" of at least {self.low:g}"
        return what


FIELDS: dict[str, Field] = {
    "dataset": Field(DataConfig, "choice", choices=DATASETS),
    "val_fraction": Field(DataConfig, "float", 0.0, 0.9),
    "classes": Field(DataConfig, "ints", 0, 9),
    "family": Field(ModelConfig, "choice", choices=FAMILIES),
    "hidden": Field(ModelConfig, "ints", 1, 4096),
    "channels": Field(ModelConfig, "ints", 1, 256),
    "activation": Field(ModelConfig, "choice", choices=tuple(ACTIVATIONS)),
    "linear_code": Field(ModelConfig, "bool"),
    "output": Field(ModelConfig, "choice", choices=OUTPUTS),
    "loss": Field(ModelConfig, "choice", choices=LOSSES),
    "dropout": Field(ModelConfig, "float", 0.0, 0.9),
    "dropout_where": Field(ModelConfig, "choice", choices=DROPOUT_PLACES),
    "init": Field(ModelConfig, "choice", choices=INITS),
    "sparsity": Field(ModelConfig, "float", 0.0, 10.0),
    "latent": Field(ModelConfig, "int", 1, 512),
    "beta": Field(ModelConfig, "float", 0.0, 100.0),
    "kl_warmup": Field(ModelConfig, "int", 0, 1000),
    "noise": Field(TrainConfig, "choice", choices=NOISE_KINDS),
    "noise_level": Field(TrainConfig, "float", 0.0, 1.0),
    "deform": Field(TrainConfig, "float", 0.0, 2.0),
    "lr": Field(TrainConfig, "float", 1e-6, 10.0),
    "adam_eps": Field(TrainConfig, "float", 1e-12, 1.0),
    "batch_size": Field(TrainConfig, "int", 1, 4096),
    "epochs": Field(TrainConfig, "int", 1, 200),
    "lr_milestones": Field(TrainConfig, "ints", 1, None),
    "seed": Field(TrainConfig, "int", 0, 2**31 - 1),
    "optimizer": Field(TrainConfig, "choice", choices=OPTIMIZERS),
    "binarize": Field(TrainConfig, "bool"),
}
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


@dataclass(frozen=True)
class Link:
    """A parsed query: the preset (or CUSTOM), every form value, and what could not be used, in words."""
    preset: str
    values: dict
    problems: tuple[str, ...] = ()


def values(model: ModelConfig, data: DataConfig, train: TrainConfig) -> dict:
    """The form's values of three configs, by parameter name."""
    return {name: getattr({ModelConfig: model, DataConfig: data, TrainConfig: train}[f.config], name)
            for name, f in FIELDS.items()}


def preset_values(name: str) -> dict:
    p = presets.get(DEFAULT_PRESET if name == CUSTOM else name)
    return values(p.model, p.data, p.train)


def query(preset: str, vals: Mapping) -> dict[str, str]:
    """The query parameters of a configuration: the preset's name, then only the values that differ from it."""
    base = preset_values(preset)
    out = {PRESET: preset}
    for name in FIELDS:
        if name in vals and not _same(vals[name], base[name]):
            out[name] = format_value(vals[name])
    return out


def query_string(preset: str, vals: Mapping) -> str:
    return urlencode(query(preset, vals), safe=",")


def parse(params: Mapping[str, str], ignore: tuple[str, ...] = ()) -> Link:
    """Read a link's parameters (names in `ignore` belong to something else, such as a run id). Unknown names and
    values the form cannot take are reported in `problems`; everything else is applied over the preset."""
    problems = []
    preset = params.get(PRESET) or (CUSTOM if set(params) & set(FIELDS) else DEFAULT_PRESET)
    if preset != CUSTOM and preset not in presets.PRESETS:
        problems.append(f"`{PRESET}={preset}`: no such preset (choose one of {', '.join(presets.PRESETS)})")
        preset = CUSTOM
    vals = preset_values(preset)
    unknown = sorted(set(params) - set(FIELDS) - {PRESET, *ignore})
    if unknown:
        problems.append("unknown parameter" + ("s " if len(unknown) > 1 else " ") +
                        ", ".join(f"`{n}`" for n in unknown) + f" (known: {', '.join(FIELDS)})")
    for name, field in FIELDS.items():
        if name in params:
            try:
                vals[name] = parse_value(field, params[name])
            except ValueError:
                problems.append(f"`{name}={params[name]}`: expected {field.describe()}")
    if vals["family"] == "shallow" and not (len(vals["hidden"]) == 1 and 2 <= vals["hidden"][0] <= 2000):
        problems.append(f"`hidden={format_value(vals['hidden'])}`: the shallow family takes one size from 2 to 2000")
        vals["hidden"] = (200,)
    return Link(preset, vals, tuple(problems))


def parse_value(field: Field, text: str):
    """One parameter's text as the form's value; ValueError when the form cannot take it."""
    text = str(text).strip()
    if field.kind == "choice":
        if text not in field.choices:
            raise ValueError(text)
        return text
    if field.kind == "bool":
        if text.lower() not in _TRUE + _FALSE:
            raise ValueError(text)
        return text.lower() in _TRUE
    if field.kind == "ints":
        items = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
        if field.config is DataConfig:
            items = tuple(sorted(set(items)))     # classes: a set, in order
        for v in items:
            _check_range(field, v)
        return items
    value = int(text) if field.kind == "int" else float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    _check_range(field, value)
    return value


def format_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, float):
        return repr(value) if value != int(value) or abs(value) >= 1e16 else str(int(value))
    return str(value)


def _check_range(field: Field, value) -> None:
    if (field.low is not None and value < field.low) or (field.high is not None and value > field.high):
        raise ValueError(value)


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    return tuple(a) == tuple(b) if isinstance(a, (tuple, list)) else a == b


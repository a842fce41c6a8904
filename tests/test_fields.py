"""One vocabulary for a configuration (aecore.engine.fields): every setting of the table keeps its name as the Train
form's widget key (`train.<name>`), as a link's parameter and as a command-line option (`--<name-with-dashes>`),
round-trips through each, has one range that the configs, the form, the links and the command line all enforce, and
the table's answer to "does this family use it?" is what the model does."""
from __future__ import annotations

import itertools
from dataclasses import fields, replace
from urllib.parse import parse_qsl

import pytest
import torch

from aecore.engine import links, presets
from aecore.engine.data import DataConfig
from aecore.engine.fields import FAMILIES, FIELDS, fields_for, format_value, used_by
from aecore.engine.models import ACTIVATIONS, ModelConfig, build
from aecore.engine.train import TrainConfig, corrupt, fit
from aecore.train import configs as cli_configs, main as cli_main, parser as cli_parser

from app_helpers import open_app
from ui import form

CLASSES = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}
K = "train."
# The Train page's widgets that are not settings: the preset picker, the run's controls, the uploader.
CONTROLS = {"preset", "btn_reset", "btn_start", "btn_pause", "btn_resume", "btn_stop", "upload", "download",
            "show_run", "link_hide", "link_lock"}   # the last two: the Copy link popover's choice for a class
WIDGETS = ("selectbox", "number_input", "slider", "text_input", "checkbox", "multiselect", "radio", "button",
           "toggle", "text_area", "select_slider", "date_input", "time_input", "color_picker", "file_uploader",
           "download_button")

# For every setting, a value other than its default, with what it needs to be a valid configuration.
SAMPLES = {
    "dataset": {"dataset": "fashion-mnist"},
    "val_fraction": {"val_fraction": 0.25},
    "classes": {"classes": (0, 6)},
    "family": {"family": "conv"},
    "hidden": {"family": "deep", "hidden": (64, 8, 2)},
    "channels": {"family": "conv", "channels": (8,)},
    "activation": {"activation": "tanh"},
    "linear_code": {"family": "deep", "hidden": (64, 2), "linear_code": True},
    "output": {"output": "identity", "loss": "mse"},
    "loss": {"loss": "mse"},
    "dropout": {"dropout": 0.25},
    "dropout_where": {"dropout": 0.5, "dropout_where": "hidden+output"},
    "init": {"init": "chainer"},
    "sparsity": {"sparsity": 1e-4},
    "latent": {"family": "vae", "hidden": (64,), "latent": 16},
    "beta": {"family": "vae", "beta": 4.0},
    "kl_warmup": {"family": "vae", "kl_warmup": 5},
    "noise": {"noise": "gaussian", "noise_level": 0.3},
    "noise_level": {"noise": "mask", "noise_level": 0.35},
    "deform": {"deform": 1.25},
    "lr": {"lr": 3e-4},
    "adam_eps": {"adam_eps": 1e-7},
    "batch_size": {"batch_size": 4096},
    "epochs": {"epochs": 1000},
    "lr_milestones": {"lr_milestones": (3, 7)},
    "lr_gamma": {"lr_milestones": (5,), "lr_gamma": 0.1},
    "seed": {"seed": 2**31 - 1},
    "optimizer": {"optimizer": "rmsprop"},
    "binarize": {"binarize": True},
    "device": {"device": "cpu"},
    "changes": {"changes": ((0, "noise", "mask"), (120, "lr", 5e-4), (300, "noise_level", 0.3))},
}


def configs(settings: dict) -> tuple[ModelConfig, DataConfig, TrainConfig]:
    """The defaults with `settings` (field name -> value) over them."""
    return tuple(cls(**{n: v for n, v in settings.items() if FIELDS[n].config == section})
                 for section, cls in CLASSES.items())


def test_the_table_names_config_fields_and_every_sample_is_valid():
    assert set(SAMPLES) == set(FIELDS)
    for name, f in FIELDS.items():
        assert name in {x.name for x in fields(CLASSES[f.config])}
        assert f.option == "--" + name.replace("_", "-")
        assert set(f.families) | set(f.fixed) <= set(FAMILIES) and not set(f.families) & set(f.fixed)
        assert f.needs is None or f.needs in FIELDS
    assert FIELDS["activation"].choices == tuple(ACTIVATIONS)
    for name, settings in SAMPLES.items():
        model, data, train = configs(settings)
        assert getattr({"model": model, "data": data, "train": train}[FIELDS[name].config], name) == settings[name]


# ------------------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("name", list(SAMPLES))
def test_every_setting_round_trips_through_a_link(name):
    value = SAMPLES[name][name]
    vals = links.values(*configs(SAMPLES[name]))
    q = links.query(links.CUSTOM, vals)
    assert q[name] == format_value(value)
    address = links.query_string(links.CUSTOM, vals)              # as a browser sends it back
    assert links.parse(dict(parse_qsl(address))) == links.Link(links.CUSTOM, vals)


@pytest.mark.parametrize("name", list(SAMPLES))
def test_every_setting_round_trips_through_the_command_line(name):
    argv = []
    for n, v in SAMPLES[name].items():
        f = FIELDS[n]
        argv += ([f.option if v else "--no-" + f.option[2:]] if f.kind == "bool" else [f.option, format_value(v)])
    assert cli_configs(cli_parser().parse_args(argv)) == configs(SAMPLES[name])


@pytest.mark.parametrize("name", list(SAMPLES))
def test_every_setting_round_trips_through_the_form(name):
    cfgs = configs(SAMPLES[name])
    state = form.widget_values(links.values(*cfgs), K)
    assert set(state) == {K + n for n in FIELDS}
    assert form.read(state, K) == cfgs


@pytest.mark.parametrize("name", list(presets.PRESETS))
def test_every_preset_validates_and_comes_back_from_the_form_a_link_and_the_command_line(name):
    p = presets.get(name)
    cfgs = (p.model, p.data, p.train)
    assert form.read(form.widget_values(links.preset_values(name), K), K) == cfgs
    assert links.parse({"preset": name}).problems == ()
    assert cli_configs(cli_parser().parse_args(["--preset", name])) == cfgs
    for f in (FIELDS[n] for n in FIELDS if FIELDS[n].config == "model" and n not in fields_for(p.model.family)):
        assert getattr(p.model, f.name) == getattr(ModelConfig(), f.name), f"{name} sets {f.name}, unused"


# ------------------------------------------------------------------------------------------- one range
def ranged(family: str = "shallow") -> list[tuple[str, str]]:
    """(name, family) for every setting with a range, with a family that takes it (`family` where it does)."""
    return [(name, family if family in f.families else SAMPLES[name]["family"])
            for name, f in FIELDS.items() if f.kind in ("int", "float", "ints")]


def outside(rule) -> list:
    """Values just outside the rule's range (a whole number for an int)."""
    step = rule.step or 1
    below = rule.low / 2 if rule.kind == "float" and rule.low > 0 else rule.low - step
    return [below] + ([rule.high + step] if rule.high is not None else [])


def as_setting(rule, value):
    return (int(value),) if rule.kind == "ints" else value


@pytest.mark.parametrize("name,family", [*ranged(), ("hidden", "deep"), ("channels", "conv-vae")])
def test_the_configs_the_links_and_the_command_line_share_one_range(name, family):
    rule = FIELDS[name].for_family(family)
    base = {**SAMPLES[name], "family": family} if FIELDS[name].config == "model" else dict(SAMPLES[name])
    if name == "hidden":
        base.pop("hidden")
    for edge in (rule.low, rule.high) if rule.high is not None else (rule.low,):
        settings = {**base, name: as_setting(rule, edge)}
        configs(settings)                                                       # the config takes it
        assert links.parse({k: format_value(v) for k, v in settings.items()}).problems == ()
        cli_configs(cli_parser().parse_args([f"{FIELDS[name].option}={format_value(settings[name])}",
                                             "--family", family]))
    for bad in outside(rule):
        settings = {**base, name: as_setting(rule, bad)}
        with pytest.raises(ValueError, match=rf"Config\.{name} must be"):
            configs(settings)
        problems = links.parse({k: format_value(v) for k, v in settings.items()}).problems
        assert any(p.startswith(f"`{name}=") for p in problems), problems
        with pytest.raises(ValueError, match=name):
            cli_configs(cli_parser().parse_args([f"{FIELDS[name].option}={format_value(settings[name])}",
                                                 "--family", family]))


def test_the_most_epochs_are_the_same_everywhere(capsys):
    """The example the brief gave: the config allowed 1,000 epochs, the form and the links 200; now all 1,000."""
    assert FIELDS["epochs"].high == 1000
    TrainConfig(epochs=1000)
    with pytest.raises(ValueError, match="TrainConfig.epochs must be an integer from 1 to 1000"):
        TrainConfig(epochs=1001)
    assert links.parse({"epochs": "1000"}).values["epochs"] == 1000
    assert links.parse({"epochs": "1001"}).problems == ("`epochs=1001`: expected a whole number from 1 to 1000",)
    with pytest.raises(SystemExit) as info:
        cli_main(["--epochs", "1001"])
    assert info.value.code == 2 and "epochs" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- the Train page
def page_widgets(at) -> dict:
    """The Train page's widgets (the main area; the sidebar is the app's frame) by key."""
    found = {}
    for kind in WIDGETS:
        for w in at.main.get(kind):
            assert w.key is not None, f"a {kind} without a key: {getattr(w, 'label', '')}"
            found[w.key] = w
    return found


@pytest.mark.usefixtures("app_environment")
def test_every_widget_of_the_train_page_is_a_setting_named_as_its_field(tiny_idx):
    at = open_app()
    drawn = set()
    for family in FAMILIES:
        at.selectbox(key=K + "family").set_value(family).run()
        assert not at.exception and not at.error, (family, at.exception, at.error)
        widgets = page_widgets(at)
        assert all(k.startswith(K) for k in widgets), sorted(widgets)
        settings = {k[len(K):]: w for k, w in widgets.items() if k[len(K):] not in CONTROLS}
        assert set(settings) == set(fields_for(family)), family           # exactly what the family uses
        drawn |= set(settings)
        for name, w in settings.items():
            rule = FIELDS[name].for_family(family)
            assert w.label == rule.label_for(family) and w.help == rule.help
            if hasattr(w, "min") and hasattr(w, "max"):                     # number inputs and sliders
                assert (w.min, w.max, w.step) == pytest.approx((rule.low, rule.high, rule.step or 1)), name
            elif name == "classes":
                assert w.options == [str(c) for c in range(int(rule.low), int(rule.high) + 1)]
            elif rule.kind == "choice":
                assert set(w.options) <= {rule.choice_label(c) for c in rule.choices} or name == "device", name
    assert drawn == set(FIELDS)


@pytest.mark.usefixtures("app_environment")
def test_a_setting_is_disabled_while_the_one_it_needs_is_off(tiny_idx):
    at = open_app()
    assert at.slider(key=K + "noise_level").disabled and at.number_input(key=K + "lr_gamma").disabled
    at.selectbox(key=K + "noise").set_value("mask").run()
    at.text_input(key=K + "lr_milestones").input("3").run()
    assert not at.slider(key=K + "noise_level").disabled and not at.number_input(key=K + "lr_gamma").disabled


@pytest.mark.usefixtures("app_environment")
def test_switching_family_carries_the_sizes_over(tiny_idx):
    at = open_app()
    assert at.number_input(key=K + "hidden").value == 200                   # shallow: one size, a number
    at.selectbox(key=K + "family").set_value("deep").run()
    assert at.text_input(key=K + "hidden").value == "200"                   # deep: a list, typed
    at.text_input(key=K + "hidden").input("300,2").run()
    at.selectbox(key=K + "family").set_value("conv").run()
    at.selectbox(key=K + "family").set_value("shallow").run()
    assert at.number_input(key=K + "hidden").value == 300 and not at.exception


# ------------------------------------------------------------------------------------------- who uses what
SMALL = {"shallow": dict(hidden=(8,)), "deep": dict(hidden=(16, 4)), "conv": dict(channels=(4, 2)),
         "vae": dict(hidden=(8,)), "conv-vae": dict(channels=(4, 8), hidden=(8,))}
# A second value for each model setting (and what it needs to be valid where the family takes it).
OTHER = {"hidden": {"hidden": (12,)}, "channels": {"channels": (6,)}, "activation": {"activation": "tanh"},
         "linear_code": {"linear_code": True}, "output": {"output": "identity", "loss": "mse"},
         "loss": {"loss": "mse"}, "dropout": {"dropout": 0.5}, "dropout_where": {"dropout_where": "hidden+output"},
         "init": {"init": "keras"}, "sparsity": {"sparsity": 0.5}, "latent": {"latent": 3}, "beta": {"beta": 3.0},
         "kl_warmup": {"kl_warmup": 2}}


def behaviour(cfg: ModelConfig):
    """What a model does: its parameters' shapes and values, its training-mode output and loss on a fixed batch
    halfway through its first epoch (a VAE's KL warm-up under way)."""
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    model = build(cfg, seed=0).train()
    model.at_epoch(0.5)
    torch.manual_seed(2)                     # dropout and a VAE's sampling
    out = model(x)
    return model.state_dict(), out.raw.detach(), model.loss(x, out).item()


def same(a, b) -> bool:
    (sa, ra, la), (sb, rb, lb) = a, b
    return (sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape and torch.equal(sa[k], sb[k]) for k in sa)
            and torch.equal(ra, rb) and la == lb)


@pytest.mark.parametrize("family,name", list(itertools.product(FAMILIES, OTHER)))
def test_what_the_table_says_a_family_uses_is_what_the_model_does(family, name):
    assert set(OTHER) == {n for n, f in FIELDS.items() if f.config == "model"} - {"family"}
    # dropout_where matters only with dropout on: look at it with dropout on where the family takes dropout
    base = ModelConfig(family=family, **SMALL[family],
                       **({"dropout": 0.3} if name == "dropout_where" and "dropout" in fields_for(family) else {}))
    f = FIELDS[name]
    if family in f.fixed:          # the family reads it at one value: any other is refused
        with pytest.raises(ValueError, match=f"ModelConfig.{name} must be"):
            replace(base, **OTHER[name])
        assert getattr(base, name) == f.fixed[family] and used_by(name, base)
        return
    changed = replace(base, **OTHER[name])
    assert same(behaviour(base), behaviour(changed)) != used_by(name, base), \
        f"{family}: changing {name} {'changes nothing' if used_by(name, base) else 'changes the model'}"
    assert used_by(name, base) == (name in fields_for(family))      # the form shows what the model reads


def test_dropout_where_without_dropout_is_not_used():
    base = ModelConfig(hidden=(8,))
    assert not used_by("dropout_where", base)
    assert same(behaviour(base), behaviour(replace(base, dropout_where="hidden+output")))


def test_noise_level_without_noise_is_not_used():
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    quiet, loud = TrainConfig(noise="none", noise_level=0.0), TrainConfig(noise="none", noise_level=0.5)
    assert not used_by("noise_level", quiet) and torch.equal(corrupt(x, quiet), corrupt(x, loud))
    masked = TrainConfig(noise="mask", noise_level=0.5)
    assert used_by("noise_level", masked) and not torch.equal(corrupt(x, masked), x)


def test_lr_gamma_without_milestones_is_not_used(tiny_data):
    def last_lr(**kw):
        cfg = TrainConfig(epochs=2, batch_size=64, device="cpu", **kw)
        return [m.lr for m in fit(build(ModelConfig(hidden=(4,)), seed=0), tiny_data, cfg) if m.epoch_end][-1]

    assert not used_by("lr_gamma", TrainConfig(lr_gamma=0.1))
    assert last_lr(lr_gamma=0.1) == last_lr(lr_gamma=0.5) == 1e-3
    assert used_by("lr_gamma", TrainConfig(lr_milestones=(1,), lr_gamma=0.1))
    assert last_lr(lr_milestones=(1,), lr_gamma=0.1) == pytest.approx(1e-4)

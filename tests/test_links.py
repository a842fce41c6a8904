"""Shareable links: a configuration as the preset's name plus what differs, read back exactly; bad parameters are
named and the rest applies; a run named the same way. On the Train page the URL follows the form, opening a link
starts nothing, an edited preset keeps its name (and its figure while it applies), and a linked run's settings fill
the form."""
from __future__ import annotations

import json
from dataclasses import fields, replace

import pytest

from aecore.engine import links, presets
from aecore.engine.data import DataConfig
from aecore.engine.models import ModelConfig
from aecore.engine.train import TrainConfig

from app_helpers import custom_form, goto, open_app, open_link, texts, wait_for_end

# Fixtures (conftest.py): app_environment for every test here, as every AppTest needs it.
pytestmark = pytest.mark.usefixtures("app_environment")


def configs(name):
    p = presets.get(name)
    return p.model, p.data, p.train


def test_every_field_is_a_config_field():
    known = {f.name for c in (ModelConfig, DataConfig, TrainConfig) for f in fields(c)}
    assert set(links.FIELDS) <= known
    classes = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}
    for name, field in links.FIELDS.items():
        assert name in {f.name for f in fields(classes[field.config])}


@pytest.mark.parametrize("name", list(presets.PRESETS))
def test_a_preset_as_it_is_is_its_name_alone(name):
    assert links.query(name, links.values(*configs(name))) == {"preset": name}
    assert links.parse({"preset": name}) == links.Link(name, links.preset_values(name))


def test_only_the_differences_are_written_and_read_back():
    model, data, train = configs("keras-784-32")
    changed = links.values(replace(model, hidden=(64,), dropout=0.25), data, replace(train, epochs=5, lr=0.01))
    assert links.query("keras-784-32", changed) == {"preset": "keras-784-32", "hidden": "64", "dropout": "0.25",
                                                    "lr": "0.01", "epochs": "5"}
    assert links.query_string("keras-784-32", changed) == \
        "preset=keras-784-32&hidden=64&dropout=0.25&lr=0.01&epochs=5"
    back = links.parse(links.query("keras-784-32", changed))
    assert back.preset == "keras-784-32" and back.problems == ()
    assert back.values == changed


def test_tuples_booleans_and_small_floats_round_trip():
    model, data, train = configs("stacked-2d")
    vals = links.values(replace(model, hidden=(128, 2), linear_code=True), replace(data, classes=(0, 6)),
                        replace(train, adam_eps=1e-7, lr_milestones=(3, 7), noise="gaussian", noise_level=0.3,
                                deform=1.25))
    q = links.query("stacked-2d", vals)
    assert q == {"preset": "stacked-2d", "classes": "0,6", "hidden": "128,2", "linear_code": "true",
                 "noise": "gaussian", "noise_level": "0.3", "deform": "1.25", "adam_eps": "1e-07",
                 "lr_milestones": "3,7"}
    assert links.parse(q).values == vals


def test_a_custom_configuration_counts_from_the_default_preset():
    model, data, train = configs("pytorch-784-200")
    vals = links.values(replace(model, family="conv"), data, train)
    q = links.query("custom", vals)
    assert q == {"preset": "custom", "family": "conv"}
    assert links.parse(q) == links.Link("custom", vals)
    assert links.parse({"epochs": "3"}).preset == "custom"            # values without a preset: a custom form
    assert links.parse({}).preset == links.parse({"run": "x"}, ignore=("run",)).preset == "pytorch-784-200"


def test_a_run_is_named_after_its_preset_and_what_differs():
    vals = links.preset_values("keras-784-32")
    assert links.run_name("keras-784-32", vals) == "keras-784-32"
    assert links.run_name("keras-784-32", {**vals, "epochs": 1}) == "keras-784-32 · epochs 1"
    assert links.run_name("keras-784-32", {**vals, "epochs": 5, "lr": 0.01}) == "keras-784-32 · lr 0.01, epochs 5"
    many = {**vals, "classes": tuple(range(9)), "hidden": (64,), "dropout": 0.25, "lr": 0.01, "epochs": 5}
    assert links.run_name("keras-784-32", many) == "keras-784-32 · classes 0,1,2,3,4…, hidden 64, dropout 0.25 +2 more"
    assert len(links.run_name("pytorch-784-200", {**vals, "classes": tuple(range(9)), "lr_milestones": (1, 2, 3, 4)})) \
        <= 15 + 3 + 3 * (len("lr_milestones ") + links.NAME_VALUE + 2) + len(" +99 more")
    assert links.run_name("custom", {**vals, "epochs": 1}) == "custom"          # a form not started from a preset
    # a setting the model does not use is no difference (a shallow model's latent size, a level without noise)
    assert links.run_name("keras-784-32", {**vals, "latent": 7, "noise_level": 0.4}) == "keras-784-32"
    assert links.differences("keras-784-32", {**vals, "epochs": 1}) == {"epochs": (20, 1)}


def test_bad_parameters_are_named_and_the_rest_applies():
    link = links.parse({"preset": "keras-784-32", "epochs": "abc", "lr": "0.01", "family": "rnn",
                        "dropout": "0.95", "colour": "blue", "seed": "7", "run": "xyz"}, ignore=("run",))
    assert link.preset == "keras-784-32"
    assert link.values["lr"] == 0.01 and link.values["seed"] == 7
    base = links.preset_values("keras-784-32")
    assert (link.values["epochs"], link.values["family"], link.values["dropout"]) == \
        (base["epochs"], base["family"], base["dropout"])
    text = " | ".join(link.problems)
    assert "`epochs=abc`: expected a whole number from 1 to 1000" in text
    assert "`family=rnn`: expected one of shallow, deep, conv" in text
    assert "`dropout=0.95`: expected a number from 0 to 0.9" in text
    assert "unknown parameter `colour`" in text
    assert "run" not in text and len(link.problems) == 4


@pytest.mark.parametrize("params,wanted", [
    ({"preset": "nope"}, "`preset=nope`: no such preset"),
    ({"lr": "nan"}, "`lr=nan`: expected a number from 1e-06 to 10"),
    ({"classes": "0,12"}, "`classes=0,12`: expected whole numbers separated by commas from 0 to 9"),
    ({"linear_code": "maybe"}, "`linear_code=maybe`: expected true or false"),
    ({"hidden": "256,2"}, "`hidden=256,2`: the shallow family takes one size from 2 to 2000"),
])
def test_each_kind_of_bad_value(params, wanted):
    link = links.parse(params)
    assert any(p.startswith(wanted) for p in link.problems), link.problems
    ModelConfig(**{k: v for k, v in link.values.items() if k in {f.name for f in fields(ModelConfig)}})


# ------------------------------------------------------------------------------------------- the Train page
def test_a_deformation_set_in_the_form_reaches_the_run_and_its_link(tiny_idx, started_jobs):
    at = open_link({"preset": "pytorch-784-200", "deform": "1"})
    assert at.slider(key="train.deform").value == 1.0 and not at.warning
    at = custom_form(at, hidden=8, epochs=1, batch=40)
    at.button(key="train.btn_start").click().run()
    assert wait_for_end(at).startswith("finished")
    assert started_jobs[-1].spec.train.deform == 1.0
    assert any("deform=1" in c.value for c in at.code)
    inspect = goto(at, "app_pages/inspect.py")                  # Inspect shows the inputs as the run saw them
    captions = [img.proto.imgs[0].caption for img in inspect.get("image") if img.proto.imgs]
    assert any("row 2: input as in training (deformed 1)" in c for c in captions), captions
    assert "deform=3" in " ".join(texts(open_link({"preset": "pytorch-784-200", "deform": "3"}).warning))


def test_opening_a_link_fills_the_form_and_starts_nothing(tiny_idx, started_jobs):
    at = open_link({"preset": "keras-784-32", "epochs": "5", "hidden": "64"})
    assert at.selectbox(key="train.preset").value == "keras-784-32"
    assert at.number_input(key="train.epochs").value == 5
    assert at.number_input(key="train.hidden").value == 64
    assert at.number_input(key="train.batch_size").value == 128                # the rest is the preset's
    assert any("differs from this preset" in t for t in texts(at.caption))
    assert not at.warning and not at.error and started_jobs == []
    assert dict(at.query_params) == {"preset": "keras-784-32", "hidden": "64", "epochs": "5"} or \
        {k: at.query_params[k] for k in at.query_params} == {"preset": "keras-784-32", "hidden": "64", "epochs": "5"}
    assert any(c.value.endswith("?preset=keras-784-32&hidden=64&epochs=5") for c in at.code)


def test_the_url_follows_the_form(tiny_idx):
    at = open_app()
    assert at.query_params["preset"] == "pytorch-784-200" and "epochs" not in at.query_params
    at.number_input(key="train.epochs").set_value(3).run()
    assert at.query_params["epochs"] == "3"
    at.selectbox(key="train.preset").set_value("stacked-2d").run()
    assert at.query_params["preset"] == "stacked-2d" and "epochs" not in at.query_params
    assert any(c.value.endswith("?preset=stacked-2d") for c in at.code)


def test_a_link_with_bad_parameters_names_them_and_applies_the_rest(tiny_idx, started_jobs):
    at = open_link({"preset": "keras-784-32", "epochs": "lots", "lr": "0.01", "colour": "blue"})
    warning = " ".join(texts(at.warning))
    assert "Part of this link could not be used" in warning
    assert "`epochs=lots`" in warning and "`colour`" in warning
    assert at.number_input(key="train.lr").value == pytest.approx(0.01)
    assert at.number_input(key="train.epochs").value == 20                 # the preset's
    assert "colour" not in at.query_params and started_jobs == []
    at.number_input(key="train.epochs").set_value(4).run()                 # once the form changes, it goes
    assert not any("could not be used" in t for t in texts(at.warning))


def test_a_finished_run_offers_its_link(tiny_idx, started_jobs):
    at = custom_form(open_app(), hidden=8, epochs=1, batch=40)
    at.button(key="train.btn_start").click().run()
    assert wait_for_end(at).startswith("finished")
    run_links = [c.value for c in at.code if "hidden=8" in c.value]
    assert run_links and all("preset=custom" in v and "epochs=1" in v and "batch_size=40" in v for v in run_links)
    params = dict(p.split("=") for p in run_links[-1].split("?", 1)[1].split("&"))
    again = open_link(params)
    assert again.number_input(key="train.hidden").value == 8 and again.number_input(key="train.epochs").value == 1


def run_of(at) -> str:
    """Start the form as it is, wait for the end; the run's id."""
    at.button(key="train.btn_start").click().run()
    assert not at.exception and not at.error, texts(at.error)
    assert wait_for_end(at).startswith("finished")
    return at.query_params["run"]


def loss_chart(at) -> dict:
    return json.loads(at.get("plotly_chart")[0].proto.spec)


def test_an_edited_preset_keeps_its_name_its_link_and_its_figure(tiny_idx, started_jobs):
    at = open_link({"preset": "pytorch-784-200", "epochs": "2"})
    note = " ".join(texts(at.caption))
    assert "the run will be **pytorch-784-200 · epochs 2**" in note and "the figure still applies" in note
    assert "(the tutorial trained 10 epochs)" in note
    run_of(at)
    spec = started_jobs[-1].spec
    assert (spec.name, spec.preset) == ("pytorch-784-200 · epochs 2", "pytorch-784-200")
    assert {k: at.query_params[k] for k in at.query_params if k != "run"} == {"preset": "pytorch-784-200",
                                                                            "epochs": "2"}
    layout = loss_chart(at)["layout"]                         # the tutorial's figure as the chart's dashed line
    assert [s["y0"] for s in layout["shapes"]] == [0.066]
    assert layout["annotations"][0]["text"] == "tutorial (10 epochs): 0.066"
    [figure] = [t for t in texts(at.markdown) if t.startswith("**final train BCE**")]
    assert "tutorial: 0.066 · this run: " in figure and figure.endswith("(the tutorial trained 10 epochs)")
    assert any(c.value.endswith("?preset=pytorch-784-200&epochs=2") for c in at.code)      # the run's link


def test_an_edited_preset_whose_model_differs_is_not_compared(tiny_idx, started_jobs):
    at = open_link({"preset": "pytorch-784-200", "epochs": "1", "hidden": "8"})
    assert any("not compared with the tutorial's figure" in t for t in texts(at.caption))
    run_of(at)
    spec = started_jobs[-1].spec
    assert (spec.name, spec.preset) == ("pytorch-784-200 · hidden 8, epochs 1", "pytorch-784-200")
    assert "shapes" not in loss_chart(at)["layout"]
    assert not [t for t in texts(at.markdown) if t.startswith("**final train BCE**")]
    assert any("Not compared with the tutorial's figure" in t for t in texts(at.caption))
    assert any(c.value.endswith("?preset=pytorch-784-200&hidden=8&epochs=1") for c in at.code)


def test_a_linked_run_shows_its_settings_in_the_form(tiny_idx, started_jobs):
    run_id = run_of(open_link({"preset": "keras-784-32", "epochs": "1", "hidden": "8"}))
    other = open_link({"run": run_id})                 # the run's bare link, in another browser
    assert other.selectbox(key="train.preset").value == "keras-784-32"
    assert other.number_input(key="train.epochs").value == 1 and other.number_input(key="train.hidden").value == 8
    assert {k: other.query_params[k] for k in other.query_params} == {"preset": "keras-784-32", "hidden": "8",
                                                                      "epochs": "1", "run": run_id}
    assert not any("no longer holds" in t for t in texts(other.caption))
    # the visitor's edits stay: the page says the form is no longer the run's
    other.number_input(key="train.epochs").set_value(3).run()
    other.run()
    assert other.number_input(key="train.epochs").value == 3
    assert any("no longer holds the settings of the run shown above" in t for t in texts(other.caption))
    # a link that carries a form besides the run: the form it carries (a reload after an edit keeps the edit)
    again = open_link({"run": run_id, "preset": "keras-784-32", "epochs": "3", "hidden": "8"})
    assert again.number_input(key="train.epochs").value == 3
    assert any("no longer holds" in t for t in texts(again.caption))


def test_picking_another_of_ones_runs_shows_its_settings(tiny_idx, started_jobs):
    at = open_link({"preset": "pytorch-784-200", "epochs": "1", "hidden": "8"})
    first = run_of(at)
    at.number_input(key="train.epochs").set_value(2).run()
    second = run_of(at)
    assert first != second and at.number_input(key="train.epochs").value == 2
    at.radio(key="train.show_run").set_value(first).run()
    assert at.query_params["run"] == first
    assert at.number_input(key="train.epochs").value == 1                   # the form follows the run shown
    assert not at.button(key="train.btn_start").disabled


# ---------------------------------------------------------------------------------------------- a teacher's link
def test_a_link_reads_and_writes_what_it_hides_and_locks():
    link = links.parse({"preset": "pytorch-784-200", "epochs": "2", "hide": "lr, batch_size", "lock": "epochs,lr"})
    assert link.hidden == ("lr", "batch_size") and link.locked == ("epochs",)   # hidden wins over locked
    assert link.values["epochs"] == 2 and not link.problems
    q = links.query(link.preset, link.values, link.hidden, link.locked)
    assert q == {"preset": "pytorch-784-200", "epochs": "2", "hide": "lr,batch_size", "lock": "epochs"}
    assert links.parse(q).hidden == link.hidden and links.parse(q).locked == link.locked      # round trip
    bad = links.parse({"hide": "lr,<b>x</b>", "lock": "nope"})
    assert bad.hidden == ("lr",) and bad.locked == ()
    assert [p.split(":")[0] for p in bad.problems] == ["`hide=`", "`lock=`"] and "`<b>x</b>`" in bad.problems[0]
    assert "hide" not in links.query("pytorch-784-200", link.values)        # a plain link says nothing of it


def test_a_teachers_link_hides_and_locks_settings_at_its_values(tiny_idx, started_jobs):
    at = open_link({"preset": "pytorch-784-200", "epochs": "1", "batch_size": "60", "lock": "epochs",
                    "hide": "lr,batch_size"})
    assert not at.exception and not at.warning
    keys = {w.key for w in at.number_input} | {w.key for w in at.slider} | {w.key for w in at.selectbox}
    assert "train.lr" not in keys and "train.batch_size" not in keys       # hidden
    assert at.number_input(key="train.epochs").disabled and at.number_input(key="train.epochs").value == 1
    assert any("This link sets and hides Learning rate, Batch size and fixes Epochs" in c for c in texts(at.caption))
    assert at.query_params["hide"] == "lr,batch_size" and at.query_params["lock"] == "epochs"   # a reload keeps them
    # another preset moves nothing the link fixed
    at.selectbox(key="train.preset").set_value("keras-784-32").run()
    assert not at.exception and at.number_input(key="train.epochs").value == 1
    at.button(key="train.btn_start").click().run()
    (job,) = started_jobs
    assert job.spec.train.epochs == 1 and job.spec.train.batch_size == 60 and job.spec.train.lr == 1e-3
    assert job.spec.model.hidden == (32,)                                  # what the link left free did change
    # the Copy link popover: the teacher's choice goes into the link it shows
    at.multiselect(key="train.link_hide").set_value(["lr"]).run()
    at.multiselect(key="train.link_lock").set_value(["epochs", "lr"]).run()
    assert any(c.value.endswith("&hide=lr&lock=epochs") for c in at.code)

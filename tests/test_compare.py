"""The Compare page: its table rows, differing settings, overlaid curves, reconstructions and filters
(aecore.labs.compare), and the page itself through AppTest (shipped models, a run trained on the Train page, no data)."""
from __future__ import annotations

import json
from dataclasses import fields
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from aecore.engine import checkpoint
from aecore.labs import compare
from aecore.labs.compare import MISSING, NOT_USED, Entry
from aecore.engine.data import DataConfig
from aecore.engine.models import ModelConfig, build
from aecore.engine.train import TrainConfig

from app_helpers import ROOT, caches, custom_form, goto, open_app, texts, wait_for_end

# Fixtures (conftest.py): app_environment for every test here, as every AppTest needs it.
pytestmark = pytest.mark.usefixtures("app_environment")

PAGE = "app_pages/compare.py"
SHIPPED = ("chainer-case7", "conv-digit0", "conv-vae-2d", "keras-784-32", "keras-vae-2d", "pytorch-784-200",
           "sparse-784-32", "stacked-2d")   # models/*.safetensors, in name order


def entry(name: str, model_cfg: ModelConfig | None = None, meta: dict | None = None, key: str | None = None,
          **train) -> Entry:
    meta = {"data": DataConfig(), "train": TrainConfig(**train)} if meta is None else meta
    model = build(model_cfg or ModelConfig(family="shallow", hidden=(8,)), seed=0)
    return Entry(key or f"session:{name}", name, "test", model, meta)


def history(*losses: tuple[float, float]) -> list[dict]:
    return [{"epoch": i + 1, "train_loss": t, "val_loss": v, "seconds": 1.5, "samples_per_s": 100.0}
            for i, (t, v) in enumerate(losses)]


def shipped(name: str) -> Entry:
    model, meta = checkpoint.load(ROOT / "models" / f"{name}.safetensors")
    return Entry(f"shipped:{name}", name, "shipped pretrained checkpoint", model, meta)


# ------------------------------------------------------------------------------------------- settings
def test_differing_settings_are_exactly_those_that_differ():
    a = entry("a", ModelConfig(family="shallow", hidden=(8,)), lr=1e-3)
    b = entry("b", ModelConfig(family="shallow", hidden=(16,)), lr=1e-2)
    assert compare.differing_settings([a, b]) == [
        {"setting": "model.hidden", "a": "8", "b": "16"},
        {"setting": "train.lr", "a": "0.001", "b": "0.01"},
    ]
    assert compare.differing_settings([a, entry("a2", lr=1e-3)]) == []      # identical configs, other weights


def test_a_setting_missing_from_one_checkpoint_differs():
    full, bare = entry("full"), entry("bare", meta={"name": "bare"})      # an uploaded checkpoint with no configs
    rows = compare.differing_settings([full, bare])
    expected = [f"data.{f.name}" for f in fields(DataConfig)] + [f"train.{f.name}" for f in fields(TrainConfig)]
    assert [r["setting"] for r in rows] == expected
    assert {r["bare"] for r in rows} == {MISSING}
    assert next(r for r in rows if r["setting"] == "data.classes")["full"] == "all"
    # A checkpoint written as JSON (lists, not tuples) compares equal to the same config as a dataclass.
    as_json = entry("json", meta={"data": {"dataset": "mnist", "val_fraction": 0.0, "classes": [], "images": ""},
                                  "train": TrainConfig().to_dict()})
    assert compare.differing_settings([full, as_json]) == []


def test_settings_a_model_does_not_use_are_marked():
    conv = entry("conv", ModelConfig(family="conv", channels=(16, 4)))
    mlp = entry("mlp", ModelConfig(family="shallow", hidden=(200,)))   # the conv default hidden is (200,) too
    rows = {r["setting"]: (r["conv"], r["mlp"]) for r in compare.differing_settings([conv, mlp])}
    assert rows == {"model.family": ("conv", "shallow"), "model.hidden": (NOT_USED, "200"),
                    "model.channels": ("16, 4", NOT_USED)}


# ------------------------------------------------------------------------------------------- tables
def test_overview_row_of_a_shipped_model_matches_its_checkpoint():
    e = shipped("pytorch-784-200")
    (row,) = compare.overview_rows([e])
    figs = e.meta["figures"]
    seconds = sum(h["seconds"] for h in e.meta["history"])
    assert row == {"name": "pytorch-784-200", "source": "shipped pretrained checkpoint", "family": "shallow",
                   "sizes": "784-200-784", "parameters": 314_584,      # 784*200+200 + 200*784+784, as the tutorial
                   "train loss": figs["train_loss"], "validation loss": None, "test loss": figs["test_loss"],
                   "training time": f"{seconds:,.1f} s"}
    assert len(e.meta["history"]) == 10 and 0 < seconds


def test_overview_without_a_history_says_the_time_is_unknown():
    (row,) = compare.overview_rows([entry("bare", meta={})])
    assert row["training time"] == MISSING and row["test loss"] is None and row["parameters"] == 13_336


def test_figure_rows_name_the_loss_and_the_data():
    conv = shipped("conv-digit0")
    (row,) = compare.figure_rows([conv])
    assert row["loss"] == "MSE" and row["data"] == "mnist, classes 0" and row["epochs trained"] == 30
    assert row["median test error (MSE per image)"] == conv.meta["test_error_quantiles"][500]


# ------------------------------------------------------------------------------------------- curves
def test_curves_figure_has_train_and_held_out_per_entry():
    a = entry("a", meta={"history": history((0.3, 0.25), (0.2, 0.18), (0.15, 0.14))})
    b = entry("b", meta={"history": history((0.5, None), (0.4, 0.35))})
    bare = entry("bare", meta={})
    fig = compare.curves_figure([a, bare, b])
    assert [t.name for t in fig.data] == ["a · train (BCE)", "a · held-out (BCE)", "b · train (BCE)",
                                         "b · held-out (BCE)"]
    assert [list(t.x) for t in fig.data] == [[1, 2, 3], [1, 2, 3], [1, 2], [1, 2]]
    assert list(fig.data[1].y) == [0.25, 0.18, 0.14] and list(fig.data[3].y) == [None, 0.35]
    assert [t.line.dash for t in fig.data] == ["solid", "dash", "solid", "dash"]
    colours = [t.line.color for t in fig.data]
    assert colours[0] == colours[1] == compare.COLOURS[0] and colours[2] == colours[3] == compare.COLOURS[2]
    assert fig.layout.xaxis.title.text == "epoch"


# ------------------------------------------------------------------------------------------- pictures
def test_reconstructions_and_filters_have_the_right_shapes():
    images = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)
    mlp = entry("mlp", ModelConfig(family="shallow", hidden=(12,)))
    conv = entry("conv", ModelConfig(family="conv", channels=(6, 4)))
    recons = compare.reconstructions([mlp, conv], images)
    assert [r.shape for r in recons] == [(5, 28, 28), (5, 28, 28)]
    assert all(r.dtype == np.float32 and 0 <= r.min() and r.max() <= 1 for r in recons)
    assert not np.allclose(recons[0], recons[1])
    tiles = compare.first_layer_filters(mlp, 10)
    assert tiles.shape == (10, 28, 28)
    w = mlp.model.encoder[0].weight.detach()[3].numpy()           # unit 3's 784 weights, min-max scaled
    np.testing.assert_allclose(tiles[3].ravel(), (w - w.min()) / (w.max() - w.min()), atol=1e-6)
    assert compare.first_layer_filters(conv, 10).shape == (6, 3, 3)   # only 6 kernels: all of them
    assert compare.filter_count(conv) == 6 and compare.filter_count(mlp) == 12


def test_digit_picks_take_the_first_of_each_class():
    labels = np.array([3, 1, 3, 0, 1, 2, 0])
    assert compare.digit_picks(labels, 3) == [3, 1, 5]                # the first 0, 1 and 2
    assert compare.digit_picks(labels, 6) == [3, 1, 5, 0, 2, 4]        # then the next images in order


# ------------------------------------------------------------------------------------------- listing
def test_gather_lists_each_model_once():
    def run(run_id, state, model, name="custom"):
        return SimpleNamespace(id=run_id, state=state, model=model, meta={"figures": {}},
                               spec=SimpleNamespace(name=name))

    def held(key, model, meta=None):
        return SimpleNamespace(key=key, name=key.removeprefix("session:"), model=model, meta=meta or {},
                               source="trained in this session")

    finished, stopped, failed, uploaded = (build(ModelConfig(hidden=(h,)), seed=0) for h in (4, 5, 6, 7))
    runs = [run("r1", "finished", finished), run("r2", "failed", failed), run("r3", "stopped", stopped),
            run("r4", "running", None)]
    session = {"session:custom run 1": held("session:custom run 1", finished),   # the app collected it
               "session:custom run 2": held("session:custom run 2", failed, {"error": "nan"}),
               "session:mine": held("session:mine", uploaded)}
    ship = {"pytorch-784-200": (build(ModelConfig()), {})}
    entries = compare.gather(runs, session, ship)
    assert [(e.key, e.name) for e in entries] == [("run:r3", "custom"), ("session:custom run 1", "custom run 1"),
                                                  ("session:mine", "mine"), ("shipped:pytorch-784-200",
                                                                             "pytorch-784-200")]
    assert entries[1].model is finished and entries[1].meta == {"figures": {}}   # the run's own record
    # The server dropped run r1 after its retention time: the session's copy is still listed, once.
    assert [e.key for e in compare.gather(runs[1:], session, {})] == ["run:r3", "session:mine",
                                                                      "session:custom run 1"]
    # Two runs of the same name stay apart in every table.
    twins = compare.gather([run("a", "finished", finished), run("b", "finished", stopped)], {}, {})
    assert [e.name for e in twins] == ["custom", "custom (2)"]


def test_default_picks():
    own = [entry("mine")]
    ship = [shipped("keras-784-32"), shipped("pytorch-784-200")]
    assert compare.default_picks(ship) == ["shipped:keras-784-32", "shipped:pytorch-784-200"]
    assert compare.default_picks(own + ship, "shipped:pytorch-784-200") == ["session:mine", "shipped:pytorch-784-200"]
    assert compare.default_picks(own + ship, "session:mine") == ["session:mine", "shipped:keras-784-32"]


# ------------------------------------------------------------------------------------------- the page
def overview_names(at) -> list[str]:
    return list(at.dataframe[0].value["name"])


def chart_traces(at) -> list[dict]:
    charts = at.get("plotly_chart")
    assert len(charts) == 1
    return json.loads(charts[0].proto.spec)["data"]


def captions(at) -> list[str]:
    """The pictures' captions, less the class galleries of "Where they fail" (tests/test_failures.py)."""
    return [c for img in at.get("image") for c in [img.proto.imgs[0].caption] if "rows original" not in c]


def test_the_page_lists_the_shipped_models(tiny_idx):
    at = goto(open_app(), PAGE)
    assert overview_names(at) == list(SHIPPED)
    table = at.dataframe[0].value
    row = table[table["name"] == "keras-784-32"].iloc[0]
    assert row["parameters"] == 50_992 and row["sizes"] == "784-32-784" and row["validation loss"] > 0
    # Shipped models only: the active one (the sidebar's) beside the first other one.
    assert at.multiselect(key="compare.picked").value == ["shipped:pytorch-784-200", "shipped:chainer-case7"]
    at.multiselect(key="compare.picked").set_value(["shipped:stacked-2d"]).run()
    assert not at.exception
    assert any("Pick at least two" in t for t in texts(at.info))
    assert not at.get("plotly_chart") and len(at.dataframe) == 1


def test_two_shipped_models_side_by_side(tiny_idx):
    at = goto(open_app(), PAGE)
    at.multiselect(key="compare.picked").set_value(["shipped:pytorch-784-200", "shipped:keras-784-32"]).run()
    assert not at.exception and not at.error
    assert texts(at.header) == ["Loss per epoch", "Settings that differ", "Figures",
                                   "The same test images, reconstructed", "Where they fail", "First-layer filters"]
    traces = chart_traces(at)
    assert [t["name"] for t in traces] == ["pytorch-784-200 · train (BCE)", "pytorch-784-200 · held-out (BCE)",
                                           "keras-784-32 · train (BCE)", "keras-784-32 · held-out (BCE)"]
    assert traces[0]["x"] == list(range(1, 11)) and traces[2]["x"] == list(range(1, 21))
    differ = at.dataframe[1].value
    assert list(differ["setting"]) == ["model.hidden", "model.init", "data.val_fraction", "train.epochs",
                                       "train.batch_size", "train.adam_eps"]
    assert list(differ["pytorch-784-200"]) == ["200", "torch", "0", "10", "124", "1e-08"]
    assert list(differ["keras-784-32"]) == ["32", "keras", "0.2", "20", "128", "1e-07"]
    figures = at.dataframe[2].value
    assert list(figures["name"]) == ["pytorch-784-200", "keras-784-32"] and list(figures["loss"]) == ["BCE"] * 2
    # Originals, one reconstruction row per model, then one filter block per model (16 tiles each).
    caps = captions(at)
    assert len(caps) == 5 and caps[0].startswith("originals: MNIST test images #")
    assert caps[1].startswith("pytorch-784-200 · mean squared error on these 8: ")
    assert caps[2].startswith("keras-784-32 · mean squared error on these 8: ")
    assert caps[3:] == ["pytorch-784-200: 16 of 200 units", "keras-784-32: 16 of 32 units"]
    at.slider(key="compare.filters").set_value(32).run()
    assert captions(at)[3:] == ["pytorch-784-200: 32 of 200 units", "keras-784-32: 32 of 32 units"]
    # A conv model joins: the slider now stops at its 16 kernels, and every model shows 16 filters.
    at.multiselect(key="compare.picked").set_value(["shipped:pytorch-784-200", "shipped:keras-784-32",
                                                    "shipped:conv-digit0"]).run()
    assert not at.exception
    assert at.slider(key="compare.filters").max == 16
    assert captions(at)[4:] == ["pytorch-784-200: 16 of 200 units", "keras-784-32: 16 of 32 units",
                                "conv-digit0: 16 of 16 kernels 3×3"]
    assert len(chart_traces(at)) == 6


def test_the_active_model_joins_the_picks_when_it_changes(tiny_idx):
    at = goto(open_app(), PAGE)
    at.multiselect(key="compare.picked").set_value(["shipped:keras-784-32", "shipped:chainer-case7"]).run()
    at.sidebar.selectbox(key="app.active").set_value("shipped:sparse-784-32").run()
    assert not at.exception
    assert at.multiselect(key="compare.picked").value == ["shipped:sparse-784-32", "shipped:keras-784-32",
                                                          "shipped:chainer-case7"]
    # Taken out, it stays out while it stays the active model.
    at.multiselect(key="compare.picked").set_value(["shipped:keras-784-32", "shipped:chainer-case7"]).run()
    at.run()
    assert at.multiselect(key="compare.picked").value == ["shipped:keras-784-32", "shipped:chainer-case7"]


def test_a_curve_hidden_under_another_is_named_and_the_log_axis_reads(tiny_idx):
    """A copy of the shipped pytorch-784-200 (same history) is drawn first, under the shipped one: the page says
    so. The loss axis's ticks are written in full, and Plotly's buttons are not drawn over the chart."""
    blob = (ROOT / "models" / "pytorch-784-200.safetensors").read_bytes()
    at = open_app()
    at.get("file_uploader")[0].set_value(("twin.safetensors", blob, "application/octet-stream")).run()
    goto(at, PAGE)
    assert at.multiselect(key="compare.picked").value == ["session:twin", "shipped:pytorch-784-200"]
    assert ":material/layers: **Hidden curves:** twin lies exactly under pytorch-784-200 (both its curves): equal " \
           "within 0.5% at every point they share." in texts(at.markdown)
    chart = at.get("plotly_chart")[0].proto
    axis = json.loads(chart.spec)["layout"]["yaxis"]
    losses = [y for t in chart_traces(at) for y in t["y"] if y is not None]
    assert axis["type"] == "log" and axis["ticktext"] == ["0.07", "0.08", "0.09", "0.1"]
    assert min(losses) <= 0.07 and max(losses) >= 0.1
    assert json.loads(chart.config) == {"displayModeBar": False}
    # Two different models: no note.
    at.multiselect(key="compare.picked").set_value(["shipped:keras-784-32", "shipped:pytorch-784-200"]).run()
    assert not any("Hidden curves" in t for t in texts(at.markdown))


def test_a_run_from_the_train_page_is_listed_once_and_joins_the_picks(tiny_idx, started_jobs):
    at = goto(open_app(), PAGE)
    at.multiselect(key="compare.picked").set_value(["shipped:keras-784-32", "shipped:pytorch-784-200"]).run()
    goto(at, "app_pages/train.py")
    custom_form(at, hidden=8, epochs=2, batch=20)
    at.button(key="train.btn_start").click().run()
    assert wait_for_end(at).startswith("finished")
    goto(at, PAGE)
    names = overview_names(at)
    assert names == ["custom run 1", *SHIPPED]            # the run and the session's copy of it: one row
    table = at.dataframe[0].value
    assert table.iloc[0]["parameters"] == 13_336 and table.iloc[0]["sizes"] == "784-8-784"
    # The picks made before survived the page switches, and the new run joined them.
    assert at.multiselect(key="compare.picked").value == ["session:custom run 1", "shipped:keras-784-32",
                                                          "shipped:pytorch-784-200"]
    traces = chart_traces(at)
    assert traces[0]["name"] == "custom run 1 · train (BCE)" and traces[0]["x"] == [1, 2] and len(traces) == 6
    rows = {r["setting"]: r["custom run 1"] for r in at.dataframe[1].value.to_dict("records")}
    assert rows["model.hidden"] == "8" and rows["train.epochs"] == "2" and rows["train.batch_size"] == "20"
    assert not at.error
    # Taken out, it stays out: it joins only once, when it is new.
    at.multiselect(key="compare.picked").set_value(["shipped:keras-784-32", "shipped:pytorch-784-200"]).run()
    at.run()
    assert at.multiselect(key="compare.picked").value == ["shipped:keras-784-32", "shipped:pytorch-784-200"]


def test_an_uploaded_checkpoint_is_compared_with_the_baseline(tiny_idx):
    blob = checkpoint.to_bytes(build(ModelConfig(family="shallow", hidden=(12,)), seed=3), {"name": "mine"})
    at = open_app()
    at.get("file_uploader")[0].set_value(("mine.safetensors", blob, "application/octet-stream")).run()
    goto(at, PAGE)
    assert overview_names(at) == ["mine", *SHIPPED]
    assert at.dataframe[0].value.iloc[0]["training time"] == MISSING
    # Picked by default beside the Train page's default preset.
    assert at.multiselect(key="compare.picked").value == ["session:mine", "shipped:pytorch-784-200"]
    assert any("No per-epoch history recorded for: mine." in t for t in texts(at.info))
    assert [t["name"] for t in chart_traces(at)] == ["pytorch-784-200 · train (BCE)",
                                                    "pytorch-784-200 · held-out (BCE)"]
    rows = {r["setting"]: (r["mine"], r["pytorch-784-200"]) for r in at.dataframe[1].value.to_dict("records")}
    assert rows["model.hidden"] == ("12", "200") and rows["train.lr"] == (MISSING, "0.001")
    assert "model.loss" not in rows
    assert captions(at)[1].startswith("mine · mean squared error on these 8: ")   # MNIST: the checkpoint is silent


def test_without_data_the_page_renders_with_one_data_error_box(no_data):
    at = goto(open_app(), PAGE)
    assert overview_names(at) == list(SHIPPED)
    boxes = [t for t in texts(at.error) if "Data not available" in t]
    assert len(at.error) == 1 and len(boxes) == 1 and "AECORE_DATA_DIR" in boxes[0]
    assert len(chart_traces(at)) == 4                      # everything else still shows
    assert len(at.dataframe) == 3
    assert captions(at) == ["pytorch-784-200: 16 of 200 units", "chainer-case7: 16 of 100 units"]
    assert any("No reconstructions for pytorch-784-200, chainer-case7" in t for t in texts(at.caption))


def test_each_model_reconstructs_its_own_data_set(tiny_idx, monkeypatch):
    """A Fashion-MNIST model beside an MNIST one: each is shown its own data set's test images, originals first;
    a data set missing from the server gets the data error box, once, and the other rows still show."""
    model = build(ModelConfig(family="shallow", hidden=(12,)), seed=3)
    blob = checkpoint.to_bytes(model, {"name": "shirts", "data": DataConfig(dataset="fashion-mnist")})
    at = open_app()
    at.get("file_uploader")[0].set_value(("shirts.safetensors", blob, "application/octet-stream")).run()
    goto(at, PAGE)
    assert at.multiselect(key="compare.picked").value == ["session:shirts", "shipped:pytorch-784-200"]
    assert not at.error
    caps = captions(at)
    assert caps[0].startswith("originals: Fashion-MNIST test images #") and caps[1].startswith("shirts · ")
    assert caps[2].startswith("originals: MNIST test images #") and caps[3].startswith("pytorch-784-200 · ")
    assert caps[4:] == ["shirts: 12 of 12 units", "pytorch-784-200: 12 of 200 units"]
    rows = {r["setting"]: (r["shirts"], r["pytorch-784-200"]) for r in at.dataframe[1].value.to_dict("records")}
    assert rows["data.dataset"] == ("fashion-mnist", "mnist")

    real = caches.test_split
    monkeypatch.setattr(caches, "test_split", lambda ds="mnist": (None, "fashion-mnist test data not found.")
                        if ds == "fashion-mnist" else real(ds))
    at.run()
    assert not at.exception
    boxes = [t for t in texts(at.error) if "Data not available" in t]
    assert len(at.error) == 1 and boxes == ["**Data not available.** fashion-mnist test data not found."]
    assert any("No reconstructions for shirts: the Fashion-MNIST test images are not on this server" in t
               for t in texts(at.caption))
    caps = captions(at)
    assert caps[0].startswith("originals: MNIST test images #") and caps[1].startswith("pytorch-784-200 · ")
    assert len(caps) == 4

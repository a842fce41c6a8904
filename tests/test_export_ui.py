"""The take-home downloads on Inspect and Compare (AppTest), and what their files hold."""
from __future__ import annotations

import pytest

from aecore.engine import checkpoint
from aecore.engine.presets import PRESETS
from aecore.export import script
from app_helpers import ROOT, goto, open_app

pytestmark = pytest.mark.usefixtures("app_environment")


def downloads(at) -> dict[str, object]:
    return {b.proto.label: b for b in at.get("download_button")}


def test_inspect_offers_the_active_models_code_onnx_and_page(tiny_idx):
    at = goto(open_app(), "app_pages/inspect.py")
    assert not at.exception
    labels = set(downloads(at))
    assert {"Code (.py)", "Notebook (.ipynb)", "Model (.onnx)", "Offline page (.html)"} <= labels


def test_compare_offers_each_models_code(tiny_idx):
    at = goto(open_app(), "app_pages/compare.py")
    assert not at.exception
    assert sum(label == "Code (.py)" for label in (b.proto.label for b in at.get("download_button"))) >= 2


def test_a_shipped_models_code_is_its_recorded_run():
    from ui import takehome
    path = ROOT / "models" / "keras-784-32.safetensors"
    if not path.is_file():
        pytest.skip("no shipped keras-784-32")
    model, meta = checkpoint.load(path)
    entry = checkpoint.ModelEntry("shipped:keras-784-32", "keras-784-32", "shipped", model, meta)
    spec = takehome.entry_spec(entry)
    pre = PRESETS["keras-784-32"]
    assert (spec.model, spec.data, spec.train.batch_size) == (pre.model, pre.data, pre.train.batch_size)
    assert "VAL_FRACTION = 0.2" in script(spec) and "nn.init.xavier_uniform_" in script(spec)


def test_a_finished_run_offers_its_code_on_train(tiny_idx):
    from app_helpers import custom_form, wait_for_end
    at = custom_form(open_app(), hidden=8, epochs=1, batch=60)
    at.button(key="train.btn_start").click().run()
    assert wait_for_end(at).startswith("finished")
    assert {"Code (.py)", "Notebook (.ipynb)"} <= set(downloads(at))


def test_a_runs_code_is_what_its_checkpoint_records():
    from dataclasses import replace
    from aecore.engine.models import build
    from aecore.engine.train import RunSpec
    from ui import takehome
    pre = PRESETS["keras-784-32"]
    started = RunSpec("keras-784-32", pre.model, pre.data, pre.train, preset=pre.name)
    # what the run ended with (a schedule of changes made while it trained, where TrainConfig has one)
    train = replace(pre.train, changes=((5, "lr", 5e-4),)) if hasattr(pre.train, "changes") else \
        replace(pre.train, epochs=3)
    blob = checkpoint.to_bytes(build(pre.model, seed=0), replace(started, train=train).meta("cpu"))
    assert takehome.recorded_spec(started, blob).train == train
    assert takehome.recorded_spec(started, None) is started

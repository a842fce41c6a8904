"""The Train page lists and follows trainings only: a lab's task (the Few labels comparison, an `aecore.runs.TaskSpec`
run of the same registry) is left out of the visitor's list of runs there, and its `?run=` link says which page shows
it instead of being shown as a training (the page reads a training's model and train configs)."""
from __future__ import annotations

from dataclasses import replace

import pytest
from streamlit.testing.v1 import AppTest

from aecore.labs import pretrain
from aecore.runs import TaskSpec

from app_helpers import APP, open_app, open_link, texts, wait_for_end
from idx_helpers import tiny_data
from ui import server, session, visitor

# Fixtures (conftest.py): app_environment for every test here, as every AppTest needs it.
pytestmark = pytest.mark.usefixtures("app_environment")

TRAIN = "app_pages/train.py"
SMALL = replace(pretrain.QUICK, hidden=(32, 8), deform=0.0, head_steps=10, steps=30)   # seconds on tiny data
POINTS_TO_ITS_PAGE = "a lab's experiment rather than a training: the Few labels page shows it."


def submit_comparison(visitor_token: str) -> str:
    """A Few labels comparison of `visitor_token`'s, submitted as the Few labels page does, and stopped at once:
    an ended task, kept by the registry as long as a training is."""
    registry = server.run_registry()
    run_id = registry.submit(pretrain.comparison_spec(pretrain.ComparisonConfig(pretrain=SMALL)),
                             tiny_data(n_train=200, n_test=50), visitor_token)
    registry.stop(run_id)
    assert isinstance(registry.view(run_id).spec, TaskSpec)
    return run_id


def points_to_few_labels(at: AppTest, run_id: str) -> None:
    """The page says the link is a lab's experiment, names it, and links the Few labels page."""
    spec = server.run_registry().view(run_id).spec
    assert any(spec.name in i and POINTS_TO_ITS_PAGE in i for i in texts(at.info)), texts(at.info)
    assert [(p.proto.label, p.proto.page) for p in at.get("page_link")] == [("Few labels", "pretrain")]


def test_a_comparisons_link_points_to_its_page_and_shows_no_run(tiny_idx):
    owner = open_app()
    run_id = submit_comparison(owner.session_state[visitor.KEY])
    at = AppTest.from_file(str(APP), default_timeout=60)       # someone opens the comparison's link on Train
    at.query_params["run"] = run_id
    at.switch_page(TRAIN).run()
    assert not at.exception and not at.error, (at.exception, texts(at.error))
    points_to_few_labels(at, run_id)
    assert any("No run yet in this session" in i for i in texts(at.info))
    assert not at.get("progress")                                   # no live view of the task as a training
    assert "run" not in at.query_params and session.RUN_ID not in at.session_state
    assert not at.button(key="train.btn_start").disabled and at.button(key="train.btn_stop").disabled
    at.run()                                                        # the next rerun: the link is gone, so is the note
    assert not at.exception and not any(POINTS_TO_ITS_PAGE in i for i in texts(at.info))


def test_the_visitors_list_holds_their_trainings_and_a_comparisons_link_keeps_the_training_shown(tiny_idx):
    at = open_link({"preset": "pytorch-784-200", "hidden": "8", "epochs": "1"})
    me = at.session_state[visitor.KEY]
    trainings = []
    for epochs in (1, 2):                 # two trainings, named apart ('pytorch-784-200 · hidden 8, epochs 1')
        at.number_input(key="train.epochs").set_value(epochs).run()
        at.button(key="train.btn_start").click().run()
        assert not at.exception and not at.error, texts(at.error)
        trainings.append(at.session_state[session.RUN_ID])
        assert wait_for_end(at).startswith("finished")
    task = submit_comparison(me)
    registry = server.run_registry()
    assert [r.id for r in registry.runs_of(me)] == [*trainings, task]
    at.run()
    assert not at.exception
    [runs] = [e for e in at.get("expander") if "Your runs" in e.proto.label]
    assert runs.proto.label == "Your runs on this server (2)"
    assert at.radio(key="train.show_run").options == [
        f"{registry.view(r).spec.name} · finished · 100%" for r in trainings]
    # picking the first training from the list shows it; then the comparison's link, opened in this session
    at.radio(key="train.show_run").set_value(trainings[0]).run()
    assert not at.exception and at.session_state[session.RUN_ID] == trainings[0]
    at.query_params["run"] = task
    at.run()
    assert not at.exception and not at.error, (at.exception, texts(at.error))
    points_to_few_labels(at, task)
    assert at.session_state[session.RUN_ID] == trainings[0] and at.query_params["run"] == trainings[0]
    assert [p.proto.text for p in at.get("progress")][0].startswith("finished")

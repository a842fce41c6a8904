"""A class: its rules (aecore.labs.classroom: codes, secrets, nicknames, the challenge's limits, scoring, ranking,
CSV), its rows in the run store (both back ends), and the Class page's flows through AppTest: a teacher creates a
class, students join and train in a locked form, their runs are scored onto the board, the teacher closes the
class, hides an entry, downloads the board; and every refusal (a wrong or expired code, a forged secret, a bad
nickname, a run of another class, a server without a store)."""
from __future__ import annotations

import csv
import io
import time

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from aecore.engine.data import DataConfig
from aecore.engine.models import ModelConfig, build
from aecore.engine.train import RunSpec, TrainConfig
from aecore.labs import anomaly, classroom
from aecore.labs.classroom import Challenge
from aecore.runs.store import NicknameTaken, Store

from app_helpers import APP, texts
from idx_helpers import tiny_data
from ui import server

CLASS_PAGE, TRAIN = "app_pages/classroom.py", "app_pages/train.py"


# ---------------------------------------------------------------------------------------------- the rules
def test_codes_secrets_and_nicknames():
    assert classroom.CODE.fullmatch(classroom.new_code())
    assert classroom.check_code(" abcd-efgh ") == "ABCDEFGH"
    for bad in ("", "ABC", "ABCDEFG0", "<script>", "A" * 9):
        with pytest.raises(ValueError, match="8 letters and digits"):
            classroom.check_code(bad)
    secret = classroom.new_secret()
    assert len(secret) >= 22                                       # 16 random bytes, URL-safe: 128 bits
    stored = classroom.secret_hash(secret)
    assert secret not in stored
    assert classroom.is_teacher(stored, secret)
    assert not classroom.is_teacher(stored, secret[:-1] + ("A" if secret[-1] != "A" else "B"))
    assert not classroom.is_teacher(stored, None) and not classroom.is_teacher(stored, "")
    assert classroom.check_nickname("  Ann   Lee ") == "Ann Lee"
    assert classroom.check_nickname("Zoë_2") == "Zoë_2"
    with pytest.raises(ValueError, match="pick a nickname"):
        classroom.check_nickname("   ")
    with pytest.raises(ValueError, match="at most 24 characters .* 10,000"):
        classroom.check_nickname("x" * 10_000)
    for markup in ("<b>Ann</b>", "[Ann](javascript:x)", "**Ann**", "Ann;", "-Ann"):
        with pytest.raises(ValueError, match="letters, digits"):
            classroom.check_nickname(markup)


def test_the_secret_is_compared_in_constant_time(monkeypatch):
    seen = []
    real = classroom.hmac.compare_digest
    monkeypatch.setattr(classroom.hmac, "compare_digest", lambda a, b: seen.append((a, b)) or real(a, b))
    classroom.is_teacher(classroom.secret_hash("s"), "s")
    assert seen == [(classroom.secret_hash("s"), classroom.secret_hash("s"))]


def spec(epochs=2, hidden=(32,), classes=(), lr=1e-3, family="shallow") -> RunSpec:
    return RunSpec("keras-784-32", ModelConfig(family=family, hidden=hidden, activation="relu", loss="bce",
                                               init="keras"),
                   DataConfig(val_fraction=0.2, classes=classes), TrainConfig(epochs=epochs, batch_size=128, lr=lr,
                                                                              adam_eps=1e-7), preset="keras-784-32")


def test_a_challenge_holds_runs_to_its_limits_and_locked_settings():
    c = Challenge(max_epochs=3, max_code=16, editable=("hidden", "epochs", "lr"), hide=("seed", "lr"))
    assert c.hide == ("seed",)                                           # an editable setting is never hidden
    assert c.values()["epochs"] == 3 and "hidden" not in c.locked() and "batch_size" in c.locked()
    assert c.problem(spec(epochs=3, hidden=(16,))) is None
    assert "at most 3 epochs (this run has 5)" in c.problem(spec(epochs=5, hidden=(16,)))
    assert "a code of at most 16 numbers (this model's has 32)" in c.problem(spec(epochs=2))
    changed = c.problem(RunSpec("x", spec().model, spec().data, TrainConfig(epochs=2, batch_size=64, adam_eps=1e-7)))
    assert "this run changes batch_size" in changed
    one = Challenge(metric="one_class_auc", digit=6)
    assert one.values()["classes"] == (6,) and "classes" in one.locked()
    assert Challenge.from_dict(one.to_dict()) == one
    for bad in ({"metric": "speed"}, {"preset": "nope"}, {"digit": 10}, {"max_epochs": 0}, {"editable": ("x",)}):
        with pytest.raises(ValueError):
            Challenge(**bad)


def entry(run_id, metric, ended, hidden=False, nickname="a", settings=None, state="finished"):
    return {"run_id": run_id, "nickname": nickname, "metric": metric, "ended": ended, "hidden": hidden,
            "settings": settings or {"lr": 0.001}, "state": state}


def test_ranking_by_the_metric_ties_by_time_and_the_csv():
    entries = [entry("late", 0.10, 30.0, nickname="Bo"), entry("early", 0.10, 10.0, nickname="Al"),
               entry("best", 0.05, 20.0), entry("hid", 0.01, 5.0, hidden=True), entry("run", None, None, state="training"),
               entry("neg", 0.2, 40.0, nickname="Cy", settings={"lr": -0.5, "note": "=cmd()"})]
    lower = Challenge()
    assert [e["run_id"] for e in classroom.ranking(entries, lower)] == ["best", "early", "late", "neg"]
    assert [e["run_id"] for e in classroom.ranking(entries, lower, hidden=True)][0] == "hid"
    higher = Challenge(metric="one_class_auc")
    assert [e["run_id"] for e in classroom.ranking(entries, higher)] == ["neg", "early", "late", "best"]
    rows = list(csv.reader(io.StringIO(classroom.board_csv(entries, lower))))
    assert rows[0][:6] == ["rank", "student", "run", "state", "test_loss", "hidden"]
    assert [r[2] for r in rows[1:]] == ["hid", "best", "early", "late", "neg", "run"]    # every entry, hidden marked
    assert rows[1][5] == "1" and rows[-1][0] == "" and rows[-1][3] == "training"
    neg = rows[5]
    assert "-0.5" in neg and "'=cmd()" in neg                        # a number stays; a formula does not run
    table = classroom.board_rows(entries, Challenge(editable=("lr",)))
    assert [r["student"] for r in table] == ["a", "Al", "Bo", "Cy"] and table[0]["Learning rate"] == "0.001"


def test_each_metric_is_measured_as_it_says():
    data = tiny_data(n_train=200, n_test=60)
    torch.manual_seed(0)
    model = build(ModelConfig(family="shallow", hidden=(8,)), seed=0).eval()
    assert classroom.score(Challenge(), model, {"figures": {"test_loss": 0.25}}, data) == 0.25
    auc = classroom.score(Challenge(metric="one_class_auc", digit=3), model, None, data)
    assert auc == anomaly.auc(anomaly.score(model, data.test.images), data.test.labels.numpy() != 3)
    # accuracy with 100 labels: the oracle is a plain nearest neighbour over the codes, in numpy
    accuracy = classroom.score(Challenge(metric="accuracy_100"), model, None, data)
    picks = classroom.draw_labelled(data.train.labels, 100, seed=0).numpy()
    known = classroom.codes(model, data.train.images[picks]).numpy()
    test = classroom.codes(model, data.test.images).numpy()
    nearest = ((test[:, None, :] - known[None, :, :]) ** 2).sum(-1).argmin(1)
    oracle = float((data.train.labels.numpy()[picks][nearest] == data.test.labels.numpy()).mean())
    assert accuracy == pytest.approx(oracle) and 0.0 <= accuracy <= 1.0


# ---------------------------------------------------------------------------------------------- the store's rows
def test_classes_in_the_store(location):
    store = Store(location)
    new = classroom.create(store, "Digits 101", Challenge(max_epochs=2))
    assert store.classes.get(new.code)["teacher"] == classroom.secret_hash(new.secret)
    assert store.classes.join(new.code, "v1", "Ann") == "Ann"
    assert store.classes.join(new.code, "v1", "Another name") == "Ann"            # one nickname per visitor
    with pytest.raises(NicknameTaken, match="another student"):
        store.classes.join(new.code, "v2", "ANN")
    store.classes.add_entry("r1", new.code, "Ann", "v1", {"lr": 0.01})
    store.classes.set_result("r1", "finished", 0.1)
    other = classroom.create(store, "Another class", Challenge())
    assert store.classes.hide(other.code, "r1") is False                         # a run id of another class
    assert store.classes.hide(new.code, "r1") is True
    store.classes.update(new.code, closed=True, challenge=Challenge(metric="accuracy_100").to_dict())
    again = Store(location)                                                      # another server, or a restart
    kept = again.classes.get(new.code)
    assert kept["closed"] and kept["challenge"]["metric"] == "accuracy_100" and not kept["expired"]
    (e,) = again.classes.entries(new.code)
    assert (e["nickname"], e["metric"], e["hidden"], e["settings"]) == ("Ann", 0.1, True, {"lr": 0.01})
    assert again.classes.students(new.code) == 1 and again.classes.get("NOSUCHCL") is None
    for bad in ("", "a <b> title", "x" * 81):
        with pytest.raises(ValueError):
            classroom.create(store, bad, Challenge())


# ---------------------------------------------------------------------------------------------- the page
@pytest.fixture
def class_app(app_environment, tiny_idx):
    classroom.full_data.cache_clear()            # the scorer's data: this test's tiny files
    yield
    classroom.full_data.cache_clear()


def page(params: dict | None = None) -> AppTest:
    """A new visitor (its own browser) on the Class page."""
    at = AppTest.from_file(str(APP), default_timeout=60)
    for k, v in (params or {}).items():
        at.query_params[k] = v
    at.switch_page(CLASS_PAGE).run()
    assert not at.exception, at.exception
    return at


def create_class(title="Digits 101", max_epochs=1, hide=()) -> tuple[AppTest, str, str]:
    teacher = page()
    teacher.text_input(key="class.title").input(title)
    teacher.number_input(key="class.new.max_epochs").set_value(max_epochs)
    teacher.multiselect(key="class.new.hide").set_value(list(hide))
    teacher.button(key="FormSubmitter:class.create-Create the class").click().run()
    code = teacher.query_params["class"]
    secret = [c.value for c in teacher.code if "teacher=" in c.value][0].split("teacher=")[1]
    return teacher, code, secret


def join(code: str, nickname: str) -> AppTest:
    student = page({"class": code})
    student.text_input(key="class.nickname").input(nickname)
    student.button(key="FormSubmitter:class.nick-Join").click().run()
    return student


def train_for_the_class(student: AppTest) -> AppTest:
    student.button(key="class.train").click().run()           # the Train page with the class's form
    student.switch_page(TRAIN).run()                           # (AppTest reruns the page it was told to show)
    assert not student.exception, student.exception
    return student


def wait_board(teacher: AppTest, runs: int, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        teacher.run()
        if teacher.dataframe and len(teacher.dataframe[0].value) >= runs:
            return
        time.sleep(0.2)
    raise AssertionError(f"the board did not show {runs} runs: {texts(teacher.caption)}")


def test_a_class_from_creation_to_the_board(class_app):
    teacher, code, secret = create_class(hide=("init", "seed", "lr"))      # lr is the students': it stays shown
    assert "teacher" not in teacher.query_params                  # the secret leaves the address bar
    assert any(c.value.endswith(f"?class={code}") for c in teacher.code)
    assert any("No finished run yet" in i for i in texts(teacher.info))

    ann = join(code, "Ann")
    assert any("You are **Ann**" in m for m in texts(ann.markdown))
    assert not any(secret in c.value for c in ann.code) and not any(secret in m for m in texts(ann.markdown))
    ann = train_for_the_class(ann)
    assert any("**Class: Digits 101**" in m and "you are **Ann**" in m for m in texts(ann.markdown))
    assert ann.number_input(key="train.val_fraction").disabled             # locked at the class's value
    assert not ann.number_input(key="train.lr").disabled                    # the students' to change
    shown = [w.key for w in ann.main.number_input] + [w.key for w in ann.main.selectbox]
    assert "train.seed" not in shown and "train.init" not in shown          # hidden: not even shown
    ann.number_input(key="train.epochs").set_value(3).run()
    ann.button(key="train.btn_start").click().run()                         # over the class's limit
    assert any("at most 1 epoch (this run has 3)" in e for e in texts(ann.error)), texts(ann.error)
    ann.number_input(key="train.epochs").set_value(1).run()
    ann.button(key="train.btn_start").click().run()
    assert not ann.error, texts(ann.error)

    bo = train_for_the_class(join(code, "Bo"))
    bo.number_input(key="train.lr").set_value(0.01).run()
    bo.button(key="train.btn_start").click().run()
    wait_board(teacher, 2)
    table = teacher.dataframe[0].value
    assert sorted(table["student"]) == ["Ann", "Bo"] and list(table["rank"]) == [1, 2]
    assert table["test loss"].is_monotonic_increasing
    assert teacher.get("plotly_chart")                                      # the scatter
    assert [b.proto.label for b in teacher.get("download_button")] == ["Download the board (CSV)"]
    store = server.run_registry().keeper.store
    rows = list(csv.DictReader(io.StringIO(classroom.board_csv(store.classes.entries(code), Challenge.from_dict(
        store.classes.get(code)["challenge"])))))                           # what the button holds
    assert [(r["student"], round(float(r["test_loss"]), 5)) for r in rows] == \
        list(zip(table["student"], table["test loss"]))

    # the teacher hides Bo's entry: the students' board leaves it out, the teacher's marks it
    bo_id = [e["run_id"] for e in server.run_registry().keeper.store.classes.entries(code) if e["nickname"] == "Bo"][0]
    teacher.selectbox(key="class.pick").set_value(bo_id).run()
    teacher.button(key="class.hide").click().run()
    assert any("(hidden)" in o for o in teacher.selectbox(key="class.pick").options)
    board = page({"class": code})
    assert list(board.dataframe[0].value["student"]) == ["Ann"]

    # a student opens a run of the board: its model becomes theirs, the run stays its owner's
    board.button(key="class.open").click().run()                           # the first of the board: Ann's
    assert any("Added to your models" in s for s in texts(board.success))

    # closed: no new runs for the class, and the students are told
    teacher.button(key="class.close").click().run()
    assert any("closed to new runs" in w for w in texts(teacher.warning))
    ann.run()
    ann.switch_page(TRAIN).run()
    ann.button(key="train.btn_start").click().run()
    assert any("closed this class to new runs" in e for e in texts(ann.error)), texts(ann.error)
    assert join(code, "Cy").button(key="class.train").disabled              # a new student cannot start either


def test_refusals_on_the_class_page(class_app):
    _, code, secret = create_class()
    wrong = page({"class": "nonsense!"})
    assert any("holds no class code" in e for e in texts(wrong.error))
    unknown = page({"class": "ABCDEFGH" if code != "ABCDEFGH" else "HGFEDCBA"})
    assert any("No class has the code" in e for e in texts(unknown.error))
    forged = page({"class": code, "teacher": secret[:-2] + "xx"})
    assert any("teacher link is not valid" in e for e in texts(forged.error))
    assert not [c for c in forged.code if "teacher=" in c.value]           # shown as to a student
    assert forged.text_input(key="class.nickname")
    join(code, "Ann")
    taken = join(code, "ann")
    assert any("another student of this class is called 'ann'" in e for e in texts(taken.error))
    student = page({"class": code})
    assert student.text_input(key="class.nickname").max_chars == 24   # a browser types no more (check_nickname
    student.text_input(key="class.nickname").input("<b>Ann</b>")   # refuses 10,000 anyway)
    student.button(key="FormSubmitter:class.nick-Join").click().run()
    assert any("letters, digits" in e for e in texts(student.error)), texts(student.error)
    store = server.run_registry().keeper.store
    store.classes.create("EXPRD234", "Old class", Challenge().to_dict(), "h", lifetime_s=-1.0)
    expired = page({"class": "EXPRD234"})
    assert any("has ended" in e for e in texts(expired.error))


def test_a_server_without_a_store_says_classes_need_one(app_environment, monkeypatch):
    monkeypatch.setenv("AELAB_STORE", "none")
    at = page()
    assert any("Classes need the run store" in e and "AELAB_STORE=none" in e for e in texts(at.error))

"""A class in the dashboard: the Class page's pieces (creating a class, the teacher's panel, the board) and the
Train page's class mode (aecore.labs.classroom has what a class means; the run store keeps it).

A student who joins a class trains "for the class": the Train page opens with the class's form (the settings the
teacher did not give the students locked at the class's values), says so at the top, refuses a run that breaks the
challenge's limits, and puts each run it starts on the class board, where the run service's end hook scores it.
The session remembers the class it trains for (MEMBER) and the teacher secrets it holds (TEACHER).
"""
from __future__ import annotations

import streamlit as st

from aecore.engine import links, presets
from aecore.engine.fields import FIELDS
from aecore.labs import classroom
from aecore.labs.classroom import Challenge
from aecore.runs import RunRefused
from ui import server, session

MEMBER = "class.member"      # {"code", "nickname"}: the class this visitor's Train page trains for
TEACHER = "class.teacher"    # {code: secret}: the classes this visitor teaches (the secret came with the link)
TRAIN_KEYS = ("train.preset", "train.saved", "train.fixed", "train.link_problems")   # the Train form to replace


def store():
    """The run store, where classes live; None when this server keeps none (AELAB_STORE=none, or it failed)."""
    return server.run_registry().keeper.store


def train_query(code: str, challenge: Challenge) -> dict:
    """The Train page's link for a class: its form, every setting the students may not change locked (or hidden,
    those the teacher chose to hide)."""
    locked = tuple(n for n in challenge.locked() if n not in challenge.hide)
    return {**links.query(challenge.preset, challenge.values(), hidden=challenge.hide, locked=locked), "class": code}


def go_train(code: str, nickname: str, challenge: Challenge) -> None:
    """Open the Train page in class mode, its form replaced by the class's."""
    st.session_state[MEMBER] = {"code": code, "nickname": nickname}
    for key in TRAIN_KEYS:
        st.session_state.pop(key, None)
    st.switch_page("app_pages/train.py", query_params=train_query(code, challenge))


def membership():
    """(class, challenge, nickname) of the class this session trains for, or None (none, or the class is gone)."""
    member, kept = st.session_state.get(MEMBER), store()
    if not member or kept is None:
        return None
    cls = kept.classes.get(member["code"])
    if cls is None or cls["expired"]:
        st.session_state.pop(MEMBER, None)
        return None
    return cls, Challenge.from_dict(cls["challenge"]), member["nickname"]


def banner() -> None:
    """At the top of the Train page in class mode: for which class, the challenge, and the way out."""
    found = membership()
    if found is None:
        return
    cls, challenge, nickname = found
    with st.container(border=True):
        st.markdown(f"**Class: {cls['title']}** · you are **{nickname}**. {challenge.describe()} Each run you start "
                    f"here goes to the class board.")
        if cls["closed"]:
            st.warning("Your teacher has closed this class to new runs.", icon=":material/lock:")
        left, right = st.columns(2)
        left.page_link("app_pages/classroom.py", label="The class board", icon=":material/leaderboard:",
                       query_params={"class": cls["code"]})
        if right.button("Leave class mode", icon=":material/logout:", key="class.leave"):
            st.session_state.pop(MEMBER, None)
            st.rerun()


def submit(spec, data, visitor: str) -> str:
    """Start a run (as the Train page's Start does); in class mode, only within the challenge, and onto the board."""
    registry, found = server.run_registry(), membership()
    if found is None:
        return registry.submit(spec, data, visitor)
    cls, challenge, nickname = found
    if cls["closed"]:
        raise RunRefused("your teacher has closed this class to new runs; leave class mode to train on your own")
    problem = challenge.problem(spec)
    if problem:
        raise RunRefused(f"{problem}. Change the form, or leave class mode to train on your own")
    run_id = registry.submit(spec, data, visitor)
    store().classes.add_entry(run_id, cls["code"], nickname, visitor, classroom.settings_of(spec))
    return run_id


# ---------------------------------------------------------------------------------------------- the teacher's
def challenge_form(key: str, current: Challenge | None = None) -> Challenge | None:
    """The challenge's widgets (inside a form); the Challenge they describe, or None with the reason shown."""
    current = current or Challenge()
    metric = st.selectbox("Metric", list(classroom.METRICS), index=list(classroom.METRICS).index(current.metric),
                          format_func=lambda m: classroom.METRICS[m].label, key=key + "metric")
    names = list(presets.PRESETS)
    preset = st.selectbox("Students start from", names, index=names.index(current.preset) if current.preset in names
                          else 0, key=key + "preset")
    c1, c2, c3 = st.columns(3)
    digit = c1.number_input("Digit (one-class AUC)", 0, 9, current.digit, key=key + "digit")
    epochs = c2.number_input("At most epochs (0: no limit)", 0, 100, current.max_epochs or 0, key=key + "max_epochs")
    code = c3.number_input("At most code numbers (0: no limit)", 0, 4096, current.max_code or 0, key=key + "max_code")
    editable = st.multiselect("Settings students may change (the others are locked)", list(FIELDS),
                              default=list(current.editable), format_func=lambda n: FIELDS[n].label,
                              key=key + "editable")
    hide = st.multiselect("Locked settings to hide from the students", list(FIELDS), default=list(current.hide),
                          format_func=lambda n: FIELDS[n].label, key=key + "hide")
    try:
        return Challenge(metric=metric, preset=preset, digit=int(digit), max_epochs=int(epochs) or None,
                         max_code=int(code) or None, editable=tuple(editable), hide=tuple(hide))
    except ValueError as e:
        st.error(f"**Not a challenge.** {e}", icon=":material/error:")
        return None


def links_panel(code: str, secret: str) -> None:
    """The two links of a class: the students' and the teacher's (which carries the secret)."""
    base = (st.context.url or "").split("?")[0]      # this page's address; unknown outside a browser
    st.markdown("**Student link**: share it with the class.")
    st.code(f"{base}?class={code}", language=None)
    st.markdown("**Your teacher link**: keep it to yourself; it lets whoever has it run the class.")
    st.code(f"{base}?class={code}&teacher={secret}", language=None)
    st.caption("A student who opens the student link joins with a nickname. The teacher link opens this class as "
               "its teacher from any browser.")


def model_of(run_id: str):
    """(model, spec, result) of a class run the server still keeps, for scoring again; None when it is gone."""
    view = server.run_registry().view(run_id)
    if view is None or view.model is None:
        return None
    return view.model, view.spec, view.snapshot.result


def open_run(entry: dict, title: str) -> bool:
    """Add a board entry's model to this visitor's models (read only: nothing of the run can be driven from
    here); False when the run is no longer kept."""
    view = server.run_registry().view(entry["run_id"])
    if view is None or view.model is None:
        return False
    session.add_session_model(f"{entry['nickname']}'s run", view.model, view.meta,
                              f"the board of the class {title}", activate=True)
    return True
